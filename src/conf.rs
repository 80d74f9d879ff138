//! nginx side of the configuration: location conf creation, merging and directive handlers.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::rc::Rc;

use ngx::core::{Pool, NGX_CONF_ERROR};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_compile_complex_value, ngx_http_compile_complex_value_t,
    ngx_http_complex_value_t, ngx_pcalloc, ngx_str_t, ngx_uint_t, SSL_CTX_get_cert_store,
    NGX_HTTP_SATISFY_ALL, NGX_LOG_EMERG, NGX_OK,
};
#[cfg(ngx_http_v3)]
use ngx::ffi::{ngx_http_conf_addr_t, ngx_http_conf_port_t, ngx_http_core_srv_conf_t};
#[cfg(ngx_http_v3)]
use ngx::http::HttpModuleMainConf;
use ngx::http::{
    HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule, NgxHttpSslModule, Request,
};
use ngx::{ngx_conf_log_error, ngx_log_error};

use auth_cert_core::decision;
use auth_cert_core::directive::Directive;
use auth_cert_core::settings::{Handshake, Mode, Settings};

use crate::crl::{self, CrlFile};
use crate::forwarded::{self, TrustStore};
use crate::{session, Module};

/// `ssl_verify_client off` in `ngx_http_ssl_srv_conf_t.verify`.
const SSL_VERIFY_OFF: usize = 0;

/// The module's location configuration.
#[derive(Debug, Default)]
pub struct LocConf {
    pub settings: Settings,
    /// Where `auth_cert` (or `auth_cert_login`) was written, for the error found only when
    /// merging.
    mode_origin: (&'static str, String, usize),
    /// The compiled values of `settings.token.claims`, in the same order; they live in the
    /// configuration pool.
    pub claim_values: Vec<*mut ngx_http_complex_value_t>,
    /// The CAs of `auth_cert_header`, loaded when the directive is read.
    pub header_ca: Option<Rc<TrustStore>>,
    /// The file of `auth_cert_crl`, shared by every location naming it.
    pub crl: Option<Rc<CrlFile>>,
}

impl LocConf {
    /// The configuration of the location that serves `r`.
    pub fn of<'a>(r: &Request) -> Option<&'a LocConf> {
        let conf: *const LocConf = Module::location_conf(r)?;
        // SAFETY: location configurations live as long as the configuration cycle, which
        // outlives its requests.
        Some(unsafe { &*conf })
    }
}

pub unsafe extern "C" fn create_loc_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: nginx calls this with a valid configuration; its pool lives as long as the
    // configuration and runs the drop cleanup that `allocate` registers.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    let mut conf = LocConf::default();
    // SAFETY: as above; the cycle and its conf_prefix outlive the configuration.
    let prefix = unsafe { (*(*cf).cycle).conf_prefix };
    conf.settings.conf_prefix = String::from_utf8_lossy(prefix.as_bytes())
        .into_owned()
        .into();
    conf.settings.token.signer = Some(crate::signer::load);
    pool.allocate(conf).cast()
}

pub unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    parent: *mut c_void,
    child: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes a valid cf and two distinct confs made by `create_loc_conf`.
    let (cf, parent, conf) = unsafe {
        (
            &*cf,
            &*parent.cast::<LocConf>(),
            &mut *child.cast::<LocConf>(),
        )
    };
    if !conf.settings.has_mode() && conf.settings.token.login.is_none() {
        conf.mode_origin.clone_from(&parent.mode_origin);
    }
    if conf.settings.token.claims.is_none() {
        conf.claim_values.clone_from(&parent.claim_values);
    }
    if conf.settings.header.is_none() {
        conf.header_ca.clone_from(&parent.header_ca);
    }
    conf.settings.merge(&parent.settings);
    if let Err(message) = conf.settings.token.check() {
        ngx_log_error!(NGX_LOG_EMERG, cf.log, "{}", message);
        return NGX_CONF_ERROR;
    }
    if let Some(source) = &conf.settings.crl {
        // The CAs trusted here: the server's client CAs, and those of auth_cert_header. The
        // file is read and its CRLs verified in postconfiguration, once every location has
        // added its CAs.
        let ssl_ctx = NgxHttpSslModule::server_conf(cf).map_or(ptr::null_mut(), |s| s.ssl.ctx);
        let client_cas = if ssl_ctx.is_null() {
            ptr::null_mut()
        } else {
            // SAFETY: the SSL context of the server being merged, live with the configuration.
            unsafe { SSL_CTX_get_cert_store(ssl_ctx.cast()) }
        };
        let header_cas = conf.header_ca.as_ref().map_or(ptr::null_mut(), |s| s.raw());
        match crl::register(cf, source, &[client_cas, header_cas]) {
            Ok(file) => conf.crl = Some(file),
            Err(message) => {
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    cf.log,
                    "{} in \"{}\" directive",
                    message,
                    Directive::Crl.name()
                );
                return NGX_CONF_ERROR;
            }
        }
    }

    if let (Some(max_age), false) = (conf.settings.max_age(), conf.settings.mode() == Mode::Off) {
        let ctx = NgxHttpSslModule::server_conf(cf).map_or(ptr::null_mut(), |s| s.ssl.ctx);
        // SAFETY: the SSL context of the server being merged, not serving yet; `cf.pool` is
        // the pool of the configuration, which frees that context.
        if !unsafe { session::note_max_age(ctx.cast(), cf.pool, max_age) } {
            ngx_log_error!(
                NGX_LOG_EMERG,
                cf.log,
                "auth_cert: cannot keep the handshake limit with the server's SSL context \
                 (SSL_CTX_set_ex_data or memory)"
            );
            return NGX_CONF_ERROR;
        }
    }

    // `auth_cert_handshake require` where the server has TLS (a plain server may inherit it).
    if let Some(sscf) = NgxHttpSslModule::server_conf(cf).filter(|s| !s.ssl.ctx.is_null()) {
        let handshake = conf.settings.handshake();
        if let Err(message) = handshake.check_verify_client(sscf.verify) {
            ngx_log_error!(NGX_LOG_EMERG, cf.log, "{}", message);
            return NGX_CONF_ERROR;
        }
        let require = handshake == Handshake::Require;
        // SAFETY: the SSL context of the server being merged, not serving yet; `cf.pool` is
        // the pool of the configuration, which frees that context.
        if require && !unsafe { session::note_handshake_require(sscf.ssl.ctx.cast(), cf.pool) } {
            ngx_log_error!(
                NGX_LOG_EMERG,
                cf.log,
                "auth_cert: cannot keep \"auth_cert_handshake require\" with the server's SSL \
                 context (SSL_CTX_set_ex_data or memory)"
            );
            return NGX_CONF_ERROR;
        }
    }

    // HTTP/3 ends no connection after the re-authentication redirect or a logout (see
    // `auth_cert_core::decision::check_http3`).
    if server_listens_quic(cf) {
        let origin = format!(
            "\"{}\" in {}:{}",
            conf.mode_origin.0, conf.mode_origin.1, conf.mode_origin.2
        );
        // While merging, cf->ctx is the location being merged, whose core configuration
        // (a static module's) is merged already.
        let satisfy_all = NgxHttpCoreModule::location_conf(cf)
            .is_none_or(|clcf| clcf.satisfy == NGX_HTTP_SATISFY_ALL as ngx_uint_t);
        if let Err(message) = decision::check_http3(&conf.settings, satisfy_all, &origin) {
            ngx_log_error!(NGX_LOG_EMERG, cf.log, "{}", message);
            return NGX_CONF_ERROR;
        }
        let location = NgxHttpCoreModule::location_conf(cf)
            .map(|clcf| String::from_utf8_lossy(clcf.name.as_bytes()).into_owned())
            .unwrap_or_default();
        if let Err(message) = decision::check_http3_logout(&conf.settings, &location) {
            ngx_log_error!(NGX_LOG_EMERG, cf.log, "{}", message);
            return NGX_CONF_ERROR;
        }
    }

    // Behind a load balancer, or on a test rig, the credential may come without TLS.
    let forwarded = conf.settings.header.is_some() || conf.settings.identity_arg.is_some();
    if conf.settings.mode() == Mode::Off || forwarded {
        return ptr::null_mut();
    }
    // While merging, cf->ctx is the server being merged, and ngx_http_ssl_module, a static
    // module, has merged its server configuration before this dynamic module.
    let verify = NgxHttpSslModule::server_conf(cf).map_or(SSL_VERIFY_OFF, |s| s.verify);
    if verify == SSL_VERIFY_OFF {
        ngx_log_error!(
            NGX_LOG_EMERG,
            cf.log,
            "\"{}\" in {}:{} requires \"ssl_verify_client on\", \"optional\" or \
             \"optional_no_ca\" in its server",
            conf.mode_origin.0,
            conf.mode_origin.1,
            conf.mode_origin.2
        );
        return NGX_CONF_ERROR;
    }
    ptr::null_mut()
}

/// Whether the server being merged has a `listen ... quic` (HTTP/3) on one of its addresses.
#[cfg(ngx_http_v3)]
fn server_listens_quic(cf: &ngx_conf_t) -> bool {
    let (Some(cmcf), Some(cscf)) = (
        NgxHttpCoreModule::main_conf(cf),
        NgxHttpCoreModule::server_conf(cf),
    ) else {
        return false;
    };
    let cscf: *const ngx_http_core_srv_conf_t = cscf;
    // SAFETY: while merging, cf->ctx is the server being merged; cmcf.ports is null or the
    // array of ngx_http_conf_port_t that the `listen` directives filled, each port's addrs
    // an array of ngx_http_conf_addr_t, each address's servers an array of server
    // configuration pointers.
    unsafe {
        let Some(ports) = cmcf.ports.as_ref() else {
            return false;
        };
        ports.as_slice::<ngx_http_conf_port_t>().iter().any(|port| {
            port.addrs
                .as_slice::<ngx_http_conf_addr_t>()
                .iter()
                .filter(|addr| addr.opt.quic() != 0)
                .flat_map(|addr| addr.servers.as_slice::<*mut ngx_http_core_srv_conf_t>())
                .any(|&server| ptr::eq(server, cscf))
        })
    }
}

/// Without `ngx_http_v3_module`, nginx refuses `listen ... quic` itself.
#[cfg(not(ngx_http_v3))]
fn server_listens_quic(_cf: &ngx_conf_t) -> bool {
    false
}

/// # Safety
/// `cf` must be a valid configuration; `value` must live as long as its pool.
unsafe fn compile_complex_value(
    cf: *mut ngx_conf_t,
    value: &ngx_str_t,
) -> *mut ngx_http_complex_value_t {
    // SAFETY: allocation in the configuration pool, zeroed as nginx expects.
    let cv = unsafe { ngx_pcalloc((*cf).pool, size_of::<ngx_http_complex_value_t>()) }
        .cast::<ngx_http_complex_value_t>();
    if cv.is_null() {
        return cv;
    }
    // SAFETY: an all-zero ngx_http_compile_complex_value_t is the documented starting state.
    let mut ccv: ngx_http_compile_complex_value_t = unsafe { core::mem::zeroed() };
    ccv.cf = cf;
    ccv.value = ptr::from_ref(value).cast_mut();
    ccv.complex_value = cv;
    // SAFETY: ccv is complete; nginx logs its own error on failure.
    if unsafe { ngx_http_compile_complex_value(&raw mut ccv) } != NGX_OK as ngx::ffi::ngx_int_t {
        return ptr::null_mut();
    }
    cv
}

/// Handler of every directive of the module: the words go to [`Settings::apply`].
pub unsafe extern "C" fn set_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf, whose args hold the directive
    // name and its arguments, and with this module's location configuration.
    let (cf_ref, conf) = unsafe { (&*cf, &mut *conf.cast::<LocConf>()) };
    // SAFETY: as above, cf->args is an array of ngx_str_t.
    let words = unsafe { (*cf_ref.args).as_slice::<ngx_str_t>() };
    let result = words
        .iter()
        .map(|w| w.to_str())
        .collect::<Result<Vec<&str>, _>>()
        .map_err(|_| "invalid UTF-8 in directive".to_owned())
        .and_then(|words| match words.split_first() {
            Some((name, args)) => match Directive::from_name(name) {
                Some(directive) => conf.settings.apply(directive, args),
                None => Err(format!("unknown directive \"{name}\"")),
            },
            None => Err("empty directive".to_owned()),
        });
    let result = result.and_then(|()| match (&conf.settings.header, &conf.header_ca) {
        (Some(header), None) => forwarded::load_store(cf_ref, header)
            .map(|store| conf.header_ca = Some(Rc::new(store)))
            .map_err(|e| format!("{e} in \"auth_cert_header\" directive")),
        _ => Ok(()),
    });
    if let Err(message) = result {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
        return NGX_CONF_ERROR;
    }
    if let [name, _, value] = words {
        if name.as_bytes() == Directive::TokenClaim.name().as_bytes() {
            // SAFETY: valid cf; the complex value and the argument string live in its pool.
            let compiled = unsafe { compile_complex_value(cf, value) };
            if compiled.is_null() {
                return NGX_CONF_ERROR;
            }
            conf.claim_values.push(compiled);
        }
    }
    if (conf.settings.has_mode() || conf.settings.token.login.is_some())
        && conf.mode_origin.1.is_empty()
    {
        // SAFETY: while a directive is parsed, cf->conf_file is the file being read.
        if let Some(file) = unsafe { cf_ref.conf_file.as_ref() } {
            let directive = if conf.settings.has_mode() {
                Directive::AuthCert
            } else {
                Directive::Login
            };
            conf.mode_origin = (
                directive.name(),
                String::from_utf8_lossy(file.file.name.as_bytes()).into_owned(),
                file.line,
            );
        }
    }
    ptr::null_mut()
}
