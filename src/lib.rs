//! `ngx_http_auth_cert_module`: X.509 client certificate authentication for nginx.
//!
//! This crate is the nginx side: it reads nginx's and OpenSSL's state, hands it to the pure
//! core crate (`auth_cert_core`), which decides, and writes the answer. One file per nginx
//! concern; this file wires them into the module nginx loads (its context, its command table
//! and its configuration hooks), as nginx's C modules do at the end of their file.
//!
//! - [`conf`]: the location configuration, its creation, merging and directives;
//! - [`access`]: the access phase handler; [`reauth`]: the re-authentication redirect;
//! - [`tls`]: the peer certificate of a TLS connection; [`session`]: the `SSL_CTX` hooks that
//!   carry the authentication time in TLS sessions and refuse handshakes under
//!   `auth_cert_handshake require`; [`alert`]: the alert of such a refusal, held until the
//!   client's request;
//! - [`forwarded`]: certificates forwarded by trusted peers, verified with OpenSSL;
//! - [`crl`]: the CRL files of `auth_cert_crl`, verified with OpenSSL and re-read on change by
//!   a timer in each worker;
//! - [`variables`]: `$auth_cert_*`; [`token`]: `$auth_cert_token`, the login and JWKS
//!   handlers; [`signer`]: the token keys, loaded and signing with OpenSSL;
//! - [`http`] and [`ex_data`]: the small helper layers over the `ngx` crate and OpenSSL.

use core::ffi::{c_char, c_void};
use core::ptr;

use auth_cert_core::directive::{Arguments, Context, Directive};
use ngx::core::{Status, NGX_CONF_ERROR};
use ngx::ffi::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_int_t, ngx_module_t, ngx_str_t, ngx_uint_t,
    NGX_CONF_1MORE, NGX_CONF_2MORE, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12,
    NGX_CONF_TAKE2, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_log_error;

mod access;
mod alert;
mod conf;
mod crl;
mod ex_data;
mod forwarded;
mod http;
mod logout;
mod reauth;
mod session;
mod signer;
mod tls;
mod token;
mod variables;
mod zone;

use conf::LocConf;

/// The module, as the `ngx` crate's traits know it.
pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is only written by nginx while loading configuration.
        unsafe { &*ptr::addr_of!(ngx_http_auth_cert_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        crl::start_configuration();
        // SAFETY: nginx passes the configuration being parsed.
        let added = unsafe { variables::add(cf) && token::add_variable(cf) };
        if added {
            Status::NGX_OK.0
        } else {
            // nginx has logged which variable and why (memory, or a conflicting definition).
            Status::NGX_ERROR.0
        }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        let cf = unsafe { &*cf };
        let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else {
            return Status::NGX_ERROR.0;
        };
        let phase = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize];
        // SAFETY: the phase's handlers array holds ngx_http_handler_pt elements.
        let slot = unsafe { ngx_array_push(&raw mut phase.handlers) }.cast::<ngx_http_handler_pt>();
        if slot.is_null() {
            ngx_log_error!(
                NGX_LOG_EMERG,
                cf.log,
                "auth_cert: no memory for the access handler"
            );
            return Status::NGX_ERROR.0;
        }
        if !tls::PEERS.init() {
            ngx_log_error!(
                NGX_LOG_EMERG,
                cf.log,
                "auth_cert: CRYPTO_get_ex_new_index() failed for the connections' certificates"
            );
            return Status::NGX_ERROR.0;
        }
        let crl_files = match crl::load_all() {
            Ok(files) => files,
            Err(message) => {
                ngx_log_error!(NGX_LOG_EMERG, cf.log, "{}", message);
                return Status::NGX_ERROR.0;
            }
        };
        let zone = Module::main_conf(cf).is_some_and(zone::MainConf::has_zone);
        // SAFETY: postconfiguration: every server is merged, none is serving; `cf.pool` is
        // the pool of the configuration.
        if !unsafe { session::install(cmcf, cf.pool, &crl_files, zone) } {
            ngx_log_error!(
                NGX_LOG_EMERG,
                cf.log,
                "auth_cert: cannot install the session hooks on a server's SSL context \
                 (CRYPTO_get_ex_new_index, SSL_CTX_set_ex_data, \
                 SSL_CTX_set_session_ticket_cb or memory)"
            );
            return Status::NGX_ERROR.0;
        }
        if let Some(conf) = Module::main_conf_mut(cf) {
            if conf.logout {
                // SAFETY: as above.
                unsafe { session::refuse_internal_lookup(cmcf) };
            }
            conf.crl.set_files(crl_files);
        }
        // SAFETY: `slot` is a fresh element of the array.
        unsafe { *slot = Some(access::access_handler) };
        Status::NGX_OK.0
    }
}

// SAFETY: the location configuration slot of this module holds a `LocConf` made by
// `conf::create_loc_conf`.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

// SAFETY: the main configuration slot of this module holds a `MainConf` made by
// `zone::create_main_conf`.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = zone::MainConf;
}

/// When a process starts: the zone of its cycle, and the timer of its CRL files.
unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the cycle the process runs, after the event modules' own
    // `init_process` (they come first in the module list), so its timers are ready.
    unsafe {
        crl::init_process(cycle);
        zone::init_process(cycle)
    }
}

/// The handler of the content handler directives (`auth_cert_login`, `auth_cert_jwks`,
/// `auth_cert_metrics`, `auth_cert_logout`): the words go to [`conf::set_directive`], then the
/// location's content handler is set, at directive time, as nginx's own content handlers
/// (`proxy_pass`, `stub_status`) do.
unsafe extern "C" fn set_content_handler(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf, its command and this module's
    // location configuration.
    let rv = unsafe { conf::set_directive(cf, cmd, conf) };
    if !rv.is_null() {
        return rv;
    }
    // SAFETY: as above; cmd is one of the commands of this module's table.
    let name = unsafe { (*cmd).name.as_bytes() };
    let handler = if name == Directive::Jwks.name().as_bytes() {
        token::jwks_handler
    } else if name == Directive::Metrics.name().as_bytes() {
        // SAFETY: as above.
        unsafe { zone::require_zone(&*cf, Directive::Metrics) };
        zone::metrics_handler
    } else if name == Directive::Logout.name().as_bytes() {
        // SAFETY: as above.
        unsafe { zone::require_zone(&*cf, Directive::Logout) };
        logout::logout_handler
    } else {
        token::login_handler
    };
    // SAFETY: as above; while a directive is read, cf->ctx is its location.
    match NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }) {
        Some(clcf) => {
            clcf.handler = Some(handler);
            ptr::null_mut()
        }
        None => NGX_CONF_ERROR,
    }
}

/// nginx's command of a directive.
const fn command(directive: Directive) -> ngx_command_t {
    let name = directive.c_name();
    let arguments = match directive.arguments() {
        Arguments::None => NGX_CONF_NOARGS,
        Arguments::NoneOrOne => NGX_CONF_NOARGS | NGX_CONF_TAKE1,
        Arguments::One => NGX_CONF_TAKE1,
        Arguments::OneOrTwo => NGX_CONF_TAKE12,
        Arguments::Two => NGX_CONF_TAKE2,
        Arguments::OneOrMore => NGX_CONF_1MORE,
        Arguments::TwoOrMore => NGX_CONF_2MORE,
    };
    let (context, set, conf): (u32, ngx::ffi::ngx_conf_handler_pt, _) = match directive.context() {
        Context::Any => (
            NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF,
            Some(conf::set_directive),
            NGX_HTTP_LOC_CONF_OFFSET,
        ),
        Context::Location => (
            NGX_HTTP_LOC_CONF,
            Some(set_content_handler),
            NGX_HTTP_LOC_CONF_OFFSET,
        ),
        Context::Http => (
            NGX_HTTP_MAIN_CONF,
            Some(zone::set_zone),
            NGX_HTTP_MAIN_CONF_OFFSET,
        ),
        Context::Server => (
            NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF,
            Some(conf::set_directive),
            NGX_HTTP_LOC_CONF_OFFSET,
        ),
    };
    ngx_command_t {
        name: ngx_str_t {
            len: name.count_bytes(),
            data: name.as_ptr().cast_mut().cast(),
        },
        type_: (context | arguments) as ngx_uint_t,
        set,
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// The command table: every [`Directive`], then the terminating empty command.
static mut COMMANDS: [ngx_command_t; Directive::ALL.len() + 1] = {
    let mut table = [ngx_command_t::empty(); Directive::ALL.len() + 1];
    let mut i = 0;
    while i < Directive::ALL.len() {
        table[i] = command(Directive::ALL[i]);
        i += 1;
    }
    table
};

static CONTEXT: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(zone::create_main_conf),
    init_main_conf: Some(zone::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(conf::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

// The module list nginx reads from a dynamic module built outside its build system.
#[cfg(feature = "export-modules")]
ngx::ngx_modules!(ngx_http_auth_cert_module);

#[used]
#[allow(non_upper_case_globals)]
#[cfg_attr(not(feature = "export-modules"), no_mangle)]
pub static mut ngx_http_auth_cert_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(CONTEXT) as _,
    // SAFETY: nginx only reads the commands table.
    commands: unsafe { ptr::addr_of_mut!(COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as _,
    init_process: Some(init_process),
    ..ngx_module_t::default()
};
