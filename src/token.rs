//! Tokens on the nginx side: `$auth_cert_token`, the `auth_cert_login` and `auth_cert_jwks`
//! content handlers, and the worker's tokens kept for reuse.

use core::cell::RefCell;
use std::rc::Rc;

use auth_cert_core::decision;
use auth_cert_core::token::{self, CacheKey, Issued, Login, Subject, TokenCache};
use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_time, ngx_variable_value_t, NGX_LOG_ERR,
};
use ngx::http::{HTTPStatus, Method, Request};
use ngx::ngx_log_error;
use serde_json::json;

use crate::access::{self, RequestAuth};
use crate::conf::LocConf;
use crate::http;

/// How long clients may cache the JWKS document: a key added to the configuration is
/// published this long before it is used for signing if it is added second, then moved first.
const JWKS_MAX_AGE: u32 = 300;

thread_local! {
    /// The tokens of this worker (a worker is one thread; nginx's thread pools never run
    /// request handlers), shared by all its connections. The keys name the token settings
    /// by a serial number that no later configuration reuses.
    static CACHE: RefCell<TokenCache> = RefCell::new(TokenCache::default());
}

/// Runs `f` with the worker's token cache; `None` when it is in use (it never is: signing
/// does not come back here) or already destroyed (at the thread's exit).
fn with_cache<T>(f: impl FnOnce(&mut TokenCache) -> T) -> Option<T> {
    CACHE
        .try_with(|cache| cache.try_borrow_mut().ok().map(|mut cache| f(&mut cache)))
        .ok()
        .flatten()
}

/// The token of this request's authentication: the worker's kept token while it may be
/// reused, else a newly signed one. `None` when the request is not authenticated, no key is
/// configured, or signing failed (logged).
fn token_for(r: &Request, conf: &LocConf, auth: &RequestAuth) -> Option<Issued> {
    let auth = &auth.evaluation;
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
    let limit = decision::token_expiry_bound(cert, auth.auth_time, conf.settings.max_age());
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
        let issued = token::issue(
            key,
            &token::claims(settings, &subject, &extra),
            now,
            ttl,
            limit,
        );
        if issued.is_ok() {
            crate::zone::count(|c| c.token_signed(key.algorithm));
        }
        issued
    };
    let cache_key = CacheKey::new(
        settings,
        identity.clone(),
        cert,
        auth.auth_time,
        limit,
        extra.clone(),
    );
    let issued = match with_cache(|cache| cache.get_or_issue(cache_key, now, sign)) {
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
    // SAFETY: caller.
    unsafe { http::add_variable(cf, "auth_cert_token", token_variable, 0) }
}

unsafe extern "C" fn token_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx calls variable getters with a valid request and value slot.
    let (request, v) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let (Some(conf), Some(auth)) = (LocConf::of(request), access::evaluate(request)) else {
        return Status::NGX_ERROR.0;
    };
    let Some(issued) = token_for(request, conf, auth) else {
        v.set_not_found(1);
        return Status::NGX_OK.0;
    };
    // The token goes into the request pool: the worker's cache may replace its copy while
    // this request still uses the value.
    let Some(value) = http::copy_to_pool(request, issued.token.as_bytes()) else {
        return Status::NGX_ERROR.0;
    };
    http::set_variable(v, value.as_bytes());
    Status::NGX_OK.0
}

/// The content handler of `auth_cert_login`. The access phase has already authenticated the
/// request as `auth_cert on` does (see `Settings::mode`).
pub unsafe extern "C" fn login_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    login(unsafe { Request::from_ngx_http_request(r) }).0
}

fn login(r: &mut Request) -> Status {
    let method = r.method();
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return HTTPStatus::NOT_ALLOWED.into();
    }
    let (Some(conf), Some(auth)) = (LocConf::of(r), access::evaluate(r)) else {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    };
    if let Err(reason) = auth.evaluation.outcome {
        // Reached only when `satisfy any` let another access module admit the request.
        access::log_rejection(r, conf, &auth.evaluation, reason);
        return http::status(reason.http_status());
    }
    let Some(issued) = token_for(r, conf, auth) else {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    };
    let expires_in = issued.expires_at - ngx_time();
    let identity = auth
        .evaluation
        .outcome
        .clone()
        .unwrap_or_else(|_| Rc::from(""));
    if !http::add_response_header(r, "Cache-Control", "no-store")
        || !http::add_response_header(r, "Pragma", "no-cache")
    {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    }
    match &conf.settings.token.login {
        Some(Login::Redirect(url)) => {
            // The fragment never reaches a server or its logs (as OAuth's implicit flow).
            let location = format!(
                "{url}#access_token={}&token_type=Bearer&expires_in={expires_in}",
                issued.token
            );
            http::send_response(r, HTTPStatus::MOVED_TEMPORARILY, None, location.as_bytes())
        }
        _ => {
            let body = json!({
                "identity": &*identity,
                "token": issued.token,
                "expires_in": expires_in,
                "auth_time": auth.evaluation.auth_time,
            });
            let body = format!("{body}\n");
            http::send_response(r, HTTPStatus::OK, Some("application/json"), body.as_bytes())
        }
    }
}

/// The content handler of `auth_cert_jwks`: the location's public keys.
pub unsafe extern "C" fn jwks_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    jwks(unsafe { Request::from_ngx_http_request(r) }).0
}

fn jwks(r: &mut Request) -> Status {
    let method = r.method();
    if method != Method::GET && method != Method::HEAD {
        return HTTPStatus::NOT_ALLOWED.into();
    }
    let Some(conf) = LocConf::of(r) else {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    };
    let cache_control = format!("public, max-age={JWKS_MAX_AGE}");
    if !http::add_response_header(r, "Cache-Control", &cache_control) {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    }
    let body = format!("{}\n", conf.settings.token.jwks_document());
    http::send_response(r, HTTPStatus::OK, Some("application/json"), body.as_bytes())
}
