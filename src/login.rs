//! Tokens on the nginx side: `$auth_cert_token`, the `auth_cert_login` and `auth_cert_jwks`
//! content handlers, and the tokens kept with each TLS connection for reuse.

use core::cell::RefCell;
use core::ptr;
use std::rc::Rc;

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_complex_value_t, ngx_http_request_t,
    ngx_http_send_response, ngx_int_t, ngx_str_t, ngx_time, ngx_uint_t, ngx_variable_value_t,
    NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_MOVED_TEMPORARILY, NGX_HTTP_NOT_ALLOWED,
    NGX_HTTP_OK, NGX_HTTP_VAR_NOCACHEABLE, NGX_LOG_ERR, NGX_OK, SSL,
};
use ngx::http::{HttpModuleLocationConf, Method, Request};
use ngx::{ngx_log_error, ngx_string};
use serde_json::json;

use crate::conf::LocConf;
use crate::handler::{self, RequestAuth};
use crate::module::Module;
use crate::tls::ConnectionSlot;
use crate::token::{self, CacheKey, Issued, Login, Subject, TokenCache};

/// How long clients may cache the JWKS document: a key added to the configuration is
/// published this long before it is used for signing if it is added second, then moved first.
const JWKS_MAX_AGE: u32 = 300;

/// The tokens kept with each TLS connection.
static CACHES: ConnectionSlot<RefCell<TokenCache>> = ConnectionSlot::new();

/// Reserves the slot of the connections' token caches; called at configuration time.
pub fn init() -> bool {
    CACHES.init()
}

/// Runs `f` with the token cache of the TLS connection of `r`, made on first use; `None`
/// on a connection without TLS or when the cache cannot be kept.
fn with_cache<T>(r: &Request, f: impl FnOnce(&mut TokenCache) -> T) -> Option<T> {
    // SAFETY: a request's connection is valid while the request is; `ssl` is null without TLS.
    let ssl: *mut SSL = unsafe { (*r.connection()).ssl.as_ref() }?.connection.cast();
    // SAFETY: `ssl` is the live connection of the request, which the cache does not outlive.
    let cache = unsafe { CACHES.get_or_make(ssl, RefCell::default) }?;
    Some(f(&mut *cache.try_borrow_mut().ok()?))
}

/// The token of this request's authentication: the connection's kept token while it may be
/// reused, else a newly signed one. `None` when the request is not authenticated, no key is
/// configured, or signing failed (logged).
fn token_for(r: &Request, conf: &LocConf, auth: &RequestAuth) -> Option<Issued> {
    let identity = auth.outcome.as_ref().ok()?;
    let cert = auth.cert.as_ref().filter(|_| auth.trusted)?;
    let settings = &conf.settings.token;
    let key = settings.signing_key()?;
    let extra = settings
        .claims
        .iter()
        .flatten()
        .zip(&conf.claim_values)
        .map(|(_, &cv)| {
            // SAFETY: compiled at configuration time in the configuration pool.
            let cv = unsafe { cv.as_ref() }?;
            Some(r.get_complex_value(cv)?.to_string_lossy().into_owned())
        })
        .collect::<Option<Vec<_>>>()?;
    // A token outlives neither the certificate nor, with auth_cert_max_age, its authentication.
    let limit = match (auth.auth_time, conf.settings.max_age()) {
        (Some(auth_time), Some(max_age)) => cert.not_after.min(auth_time + max_age),
        _ => cert.not_after,
    };
    let (ttl, now) = (settings.ttl(), ngx_time());
    // The claims are built only to sign: a kept token is found by its key alone.
    let sign = || {
        let names = settings.claims.iter().flatten().map(|c| c.name.as_str());
        let extra: Vec<(&str, String)> = names.zip(extra.iter().cloned()).collect();
        let subject = Subject {
            identity,
            cert,
            auth_time: auth.auth_time,
        };
        token::issue(
            key,
            &token::claims(settings, &subject, &extra),
            now,
            ttl,
            limit,
        )
    };
    let cache_key = CacheKey::new(
        settings,
        identity.clone(),
        cert.clone(),
        auth.auth_time,
        limit,
        extra.clone(),
    );
    let issued = match with_cache(r, |cache| cache.get_or_issue(cache_key, now, sign)) {
        Some(issued) => issued,
        None => sign(),
    };
    match issued {
        Ok(issued) => Some(issued),
        Err(error) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "auth_cert: no token for \"{}\": {}",
                identity.escape_debug(),
                error
            );
            None
        }
    }
}

/// Registers `$auth_cert_token`; called from preconfiguration.
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn add_variable(cf: *mut ngx_conf_t) -> bool {
    let mut name = ngx_string!("auth_cert_token");
    // SAFETY: nginx copies the name; null means failure, already logged.
    let var =
        unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t) };
    // SAFETY: non-null results point to the variable nginx keeps for the name.
    match unsafe { var.as_mut() } {
        Some(var) => {
            var.get_handler = Some(token_variable);
            true
        }
        None => false,
    }
}

unsafe extern "C" fn token_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls variable getters with a valid request and value slot.
    let (request, v) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let (Some(conf), Some(auth)) = (Module::location_conf(request), handler::evaluate(request))
    else {
        return NGX_ERROR as ngx_int_t;
    };
    let Some(issued) = token_for(request, conf, auth) else {
        v.set_not_found(1);
        return NGX_OK as ngx_int_t;
    };
    // The token goes into the request pool: the connection's cache may replace its copy
    // while this request still uses the value.
    let Some(value) = copy_to_pool(request, &issued.token) else {
        return NGX_ERROR as ngx_int_t;
    };
    v.set_len(value.len as u32);
    v.set_valid(1);
    v.set_no_cacheable(0);
    v.set_not_found(0);
    v.data = value.data;
    NGX_OK as ngx_int_t
}

fn copy_to_pool(r: &Request, text: &str) -> Option<ngx_str_t> {
    let data = r.pool().alloc_unaligned(text.len()).cast::<u8>();
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` has room for exactly `text.len()` bytes.
    unsafe { ptr::copy_nonoverlapping(text.as_ptr(), data, text.len()) };
    Some(ngx_str_t {
        len: text.len(),
        data,
    })
}

/// Sends `value` as the body (or, for a redirect, as the location) with `status`; returns what
/// the content handler returns.
fn send(r: &mut Request, status: u32, content_type: Option<ngx_str_t>, value: &str) -> ngx_int_t {
    let Some(value) = copy_to_pool(r, value) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let mut content_type = content_type;
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: `r` is the valid request of the content handler; the value lives in its pool and
    // a complex value without lengths is a plain string.
    unsafe {
        let mut cv: ngx_http_complex_value_t = core::mem::zeroed();
        cv.value = value;
        ngx_http_send_response(
            r,
            status as ngx_uint_t,
            content_type.as_mut().map_or(ptr::null_mut(), ptr::from_mut),
            &mut cv,
        )
    }
}

/// The content handler of `auth_cert_login`. The access phase has already authenticated the
/// request as `auth_cert on` does (see `Settings::mode`).
pub unsafe extern "C" fn login_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    let request = unsafe { Request::from_ngx_http_request(r) };
    let method = request.method();
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let Some(conf) = Module::location_conf(request) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let Some(auth) = handler::evaluate(request) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    if let Err(reason) = auth.outcome {
        // Reached only when `satisfy any` let another access module admit the request.
        handler::log_rejection(request, conf, auth, reason);
        return reason.http_status() as ngx_int_t;
    }
    let Some(issued) = token_for(request, conf, auth) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let expires_in = issued.expires_at - ngx_time();
    let (identity, auth_time) = (
        auth.outcome.clone().unwrap_or_else(|_| Rc::from("")),
        auth.auth_time,
    );
    if !handler::add_response_header(request, "Cache-Control", "no-store")
        || !handler::add_response_header(request, "Pragma", "no-cache")
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    match &conf.settings.token.login {
        Some(Login::Redirect(url)) => {
            // The fragment never reaches a server or its logs (as OAuth's implicit flow).
            let location = format!(
                "{url}#access_token={}&token_type=Bearer&expires_in={expires_in}",
                issued.token
            );
            send(request, NGX_HTTP_MOVED_TEMPORARILY, None, &location)
        }
        _ => {
            let body = json!({
                "identity": &*identity,
                "token": issued.token,
                "expires_in": expires_in,
                "auth_time": auth_time,
            });
            send(
                request,
                NGX_HTTP_OK,
                Some(ngx_string!("application/json")),
                &format!("{body}\n"),
            )
        }
    }
}

/// The content handler of `auth_cert_jwks`: the location's public keys.
pub unsafe extern "C" fn jwks_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    let request = unsafe { Request::from_ngx_http_request(r) };
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let Some(conf) = Module::location_conf(request) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let body = conf.settings.token.jwks_document();
    if !handler::add_response_header(
        request,
        "Cache-Control",
        &format!("public, max-age={JWKS_MAX_AGE}"),
    ) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    send(
        request,
        NGX_HTTP_OK,
        Some(ngx_string!("application/json")),
        &format!("{body}\n"),
    )
}
