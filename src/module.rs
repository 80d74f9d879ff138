//! The nginx module: its directives, its context and the hooks nginx calls at configuration.

use core::ffi::CStr;
use core::ptr;

use ngx::ffi::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_CONF_1MORE,
    NGX_CONF_2MORE, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE2, NGX_ERROR,
    NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MODULE,
    NGX_HTTP_SRV_CONF, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use crate::conf::{self, LocConf};
use crate::{handler, login, session, tls, variables};

pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is only written by nginx while loading configuration.
        unsafe { &*ptr::addr_of!(ngx_http_auth_cert_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        if unsafe { variables::add(cf) && login::add_variable(cf) } {
            NGX_OK as ngx_int_t
        } else {
            NGX_ERROR as ngx_int_t
        }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        let cf = unsafe { &*cf };
        let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(cf) else {
            return NGX_ERROR as ngx_int_t;
        };
        let phase = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize];
        // SAFETY: the phase's handlers array holds ngx_http_handler_pt elements.
        let slot = unsafe { ngx_array_push(&mut phase.handlers) }.cast::<ngx_http_handler_pt>();
        if slot.is_null() || !tls::PEERS.init() || !login::init() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: postconfiguration: every server is merged, none is serving.
        if !unsafe { session::install(cmcf) } {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: `slot` is a fresh element of the array.
        unsafe { *slot = Some(handler::access_handler) };
        NGX_OK as ngx_int_t
    }
}

// SAFETY: the location configuration slot of this module holds a `LocConf` made by
// `conf::create_loc_conf`.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// A directive of the module; nginx compares names with strcmp, hence C strings.
const fn directive(name: &'static CStr, arguments: u32) -> ngx_command_t {
    ngx_command_t {
        name: ngx::ffi::ngx_str_t {
            len: name.to_bytes().len(),
            data: name.as_ptr().cast_mut().cast(),
        },
        type_: (ANY_LEVEL | arguments) as ngx_uint_t,
        set: Some(conf::set_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// A directive of a location only (content handlers).
const fn location_directive(name: &'static CStr, arguments: u32) -> ngx_command_t {
    let mut command = directive(name, arguments);
    command.type_ = (NGX_HTTP_LOC_CONF | arguments) as ngx_uint_t;
    command
}

static mut COMMANDS: [ngx_command_t; 19] = [
    directive(c"auth_cert", NGX_CONF_TAKE1),
    directive(c"auth_cert_identity", NGX_CONF_1MORE),
    directive(c"auth_cert_identity_regex", NGX_CONF_TAKE1),
    directive(c"auth_cert_eku", NGX_CONF_1MORE),
    directive(c"auth_cert_key_usage", NGX_CONF_1MORE),
    directive(c"auth_cert_policy", NGX_CONF_1MORE),
    directive(c"auth_cert_issuer", NGX_CONF_TAKE1),
    directive(c"auth_cert_max_age", NGX_CONF_TAKE1),
    directive(c"auth_cert_stale", NGX_CONF_TAKE1),
    directive(c"auth_cert_header", NGX_CONF_2MORE),
    directive(c"auth_cert_identity_arg", NGX_CONF_2MORE),
    directive(c"auth_cert_token_key", NGX_CONF_TAKE12),
    directive(c"auth_cert_token_ttl", NGX_CONF_TAKE1),
    directive(c"auth_cert_token_issuer", NGX_CONF_TAKE1),
    directive(c"auth_cert_token_audience", NGX_CONF_1MORE),
    directive(c"auth_cert_token_claim", NGX_CONF_TAKE2),
    location_directive(c"auth_cert_login", NGX_CONF_NOARGS | NGX_CONF_TAKE1),
    location_directive(c"auth_cert_jwks", NGX_CONF_NOARGS),
    ngx_command_t::empty(),
];

static CONTEXT: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: None,
    init_main_conf: None,
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
    ..ngx_module_t::default()
};
