//! The access phase: evaluate the request's certificate, let it pass or reject it.

use core::cell::OnceCell;
use core::ffi::c_void;
use core::ptr;
use std::rc::Rc;

use ngx::core::Pool;

use ngx::ffi::SSL_get_SSL_CTX;
use ngx::ffi::{
    add_to_ngx_table, ngx_http_complex_value_t, ngx_http_err_page_t, ngx_http_finalize_request,
    ngx_http_request_t, ngx_http_send_response, ngx_int_t, ngx_list_push, ngx_str_t,
    ngx_table_elt_t, ngx_time, ngx_uint_t, NGX_DECLINED, NGX_DONE, NGX_ERROR, NGX_HTTP_FORBIDDEN,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SATISFY_ALL, NGX_LOG_INFO, NGX_OK, SSL,
};
use ngx::http::{
    HttpModule, HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule, NgxHttpSslModule,
    Request,
};
use ngx::{ngx_log_error, ngx_string};

use crate::age::{self, Decimal};
use crate::cert::CertificateInfo;
use crate::conf::LocConf;
use crate::forwarded::{self, Forwarded};
use crate::identity;
use crate::module::Module;
use crate::settings::{Mode, Stale};
use crate::tls::{self, PeerCertificate};
use crate::trusted::Source;
use crate::verdict::{wire_status, Reason};
use crate::{reauth, session};

/// The evaluation of one request, kept in its module context for the variables.
pub struct RequestAuth {
    /// The configuration it was evaluated with: a variable read in another location
    /// (after a rewrite, say) evaluates again.
    conf: *const LocConf,
    /// The certificate, verified or not; variables expose it only when `trusted`.
    pub cert: Option<Rc<CertificateInfo>>,
    pub trusted: bool,
    /// The identity, or why the request is not authenticated.
    pub outcome: Result<Rc<str>, Reason>,
    /// Unix seconds of the full TLS handshake that verified the client certificate, whatever
    /// resumption or keep-alive happened since; `None` when unknown.
    pub auth_time: Option<i64>,
    /// Seconds since `auth_time` when the request was evaluated.
    pub age: Option<i64>,
    /// `$auth_cert_auth_time` and `$auth_cert_age`, formatted on first use, without
    /// allocating.
    pub auth_time_text: OnceCell<Decimal>,
    pub age_text: OnceCell<Decimal>,
    /// Where the evaluated credential came from; `None` when there was none.
    pub source: Option<Source>,
    /// `$auth_cert_not_after`, formatted on first use.
    pub not_after_text: OnceCell<Decimal>,
    /// What exactly was wrong, for the log line of a rejection.
    pub detail: Option<String>,
}

fn loc_conf(r: &Request) -> Option<&LocConf> {
    Module::location_conf(r.as_ref())
}

/// This request's evaluation, computed on first use. `None` only when memory runs out.
pub fn evaluate(r: &Request) -> Option<&RequestAuth> {
    let conf = loc_conf(r)?;
    let conf_ptr: *const LocConf = conf;
    if let Some(auth) = r.get_module_ctx::<RequestAuth>(Module::module()) {
        if auth.conf == conf_ptr {
            return Some(auth);
        }
    }
    let auth = compute(r, conf);
    let ctx = r.pool().allocate(auth);
    if ctx.is_null() {
        return None;
    }
    r.set_module_ctx(ctx.cast::<c_void>(), Module::module());
    // SAFETY: allocated above in the request pool, which outlives every use of the request.
    Some(unsafe { &*ctx })
}

fn compute(r: &Request, conf: &LocConf) -> RequestAuth {
    let settings = &conf.settings;
    let now = ngx_time();
    let header = settings.header.as_ref().zip(conf.header_ca.as_deref());
    let raw = <*const ngx_http_request_t>::from(r).cast_mut();
    // SAFETY: `r` is a valid request; see `forwarded::evaluate`.
    let forwarded = unsafe {
        forwarded::evaluate(
            raw,
            header,
            settings.identity_arg.as_ref(),
            &settings.policy,
            now,
        )
    };
    let untrusted_header = match forwarded {
        Ok(Forwarded::Evaluated(c)) => {
            let outcome = c.outcome.map(Rc::from);
            return RequestAuth::new(conf, c.cert, true, outcome, Some(c.source), c.detail);
        }
        Ok(Forwarded::Untrusted) => true,
        Ok(Forwarded::Nothing) => false,
        Err(()) => return RequestAuth::new(conf, None, false, Err(Reason::Internal), None, None),
    };
    // SAFETY: a request's connection is valid while the request is; its `ssl` is null on
    // plain connections and is the TLS connection (shared by HTTP/2 streams) otherwise.
    let (peer, auth_time, other_server) = unsafe {
        match (*r.connection()).ssl.as_ref() {
            Some(ssl) => (
                tls::peer(ssl.connection.cast()),
                session::auth_time(ssl.connection.cast()),
                !verified_for_this_server(r, ssl.connection.cast()),
            ),
            None => (Some(&PeerCertificate::Absent), None, false),
        }
    };
    let (cert, trusted, outcome) = match peer {
        // Verified in the handshake of another server of the address (no SNI, or a session of
        // another server), against that server's client CAs: not this server's verification.
        Some(PeerCertificate::Verified(verified)) if other_server => {
            let detail = "certificate verified for another server".to_owned();
            return RequestAuth::new(
                conf,
                Some(verified.info.clone()),
                false,
                Err(Reason::Verify),
                Some(Source::Tls),
                Some(detail),
            );
        }
        None => (None, false, Err(Reason::Internal)),
        Some(PeerCertificate::Absent) if untrusted_header => (None, false, Err(Reason::Network)),
        Some(PeerCertificate::Absent) => (None, false, Err(Reason::NoCert)),
        Some(PeerCertificate::Unverified(info)) => (info.clone(), false, Err(Reason::Verify)),
        Some(PeerCertificate::Unparseable) => (None, false, Err(Reason::Parse)),
        Some(PeerCertificate::Verified(verified)) => {
            let outcome = if verified.info.is_valid_at(now) {
                verified.judge(&settings.policy)
            } else {
                Err(Reason::Expired)
            };
            (Some(verified.info.clone()), true, outcome)
        }
    };
    let source = match peer {
        Some(PeerCertificate::Absent) | None => None,
        Some(_) => Some(Source::Tls),
    };
    // auth_cert_max_age holds for certificates verified in this nginx's TLS handshakes.
    let outcome = match (outcome, settings.max_age()) {
        (Ok(_), Some(max_age)) if age::is_stale(auth_time, now, max_age) => Err(Reason::Stale),
        (outcome, _) => outcome,
    };
    let detail = untrusted_header.then(|| "forwarded certificate header ignored".to_owned());
    RequestAuth::new(conf, cert, trusted, outcome, source, detail)
        .with_auth_time(auth_time.filter(|_| trusted), now)
}

/// Whether the TLS handshake of `ssl` ran in the SSL context of the server that serves `r`,
/// and so verified the client certificate against that server's `ssl_client_certificate`.
/// Without SNI (a client connecting to an IP literal), the handshake runs in the default
/// server's context while `Host` may select another server, whose CAs were never consulted;
/// nginx's own check of the host against the SNI name only runs when SNI was sent.
///
/// # Safety
/// `ssl` must be the live `SSL` object of the connection of `r`.
unsafe fn verified_for_this_server(r: &Request, ssl: *mut SSL) -> bool {
    let served_by = NgxHttpSslModule::server_conf(r).map_or(ptr::null_mut(), |s| s.ssl.ctx);
    // SAFETY: caller: live connection; the context is the one its handshake finished in.
    let handshake = unsafe { SSL_get_SSL_CTX(ssl) };
    ptr::eq(handshake.cast::<c_void>(), served_by.cast::<c_void>())
}

impl RequestAuth {
    fn new(
        conf: &LocConf,
        cert: Option<Rc<CertificateInfo>>,
        trusted: bool,
        outcome: Result<Rc<str>, Reason>,
        source: Option<Source>,
        detail: Option<String>,
    ) -> Self {
        RequestAuth {
            conf,
            cert,
            trusted,
            outcome,
            source,
            not_after_text: OnceCell::new(),
            detail,
            auth_time: None,
            age: None,
            auth_time_text: OnceCell::new(),
            age_text: OnceCell::new(),
        }
    }

    fn with_auth_time(mut self, auth_time: Option<i64>, now: i64) -> Self {
        self.auth_time = auth_time;
        self.age = auth_time.map(|t| age::age(t, now));
        self
    }
}

pub unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a valid request.
    let request = unsafe { Request::from_ngx_http_request(r) };
    let Some(conf) = loc_conf(request) else {
        return NGX_DECLINED as ngx_int_t;
    };
    let mode = conf.settings.mode();
    if mode == Mode::Off {
        // A forwarded certificate header never reaches an upstream, even unevaluated.
        if let Some(header) = &conf.settings.header {
            // SAFETY: `r` is the valid request of this handler.
            if unsafe { forwarded::take_header(r, &header.name) }.is_err() {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
        }
        return NGX_DECLINED as ngx_int_t;
    }
    let Some(auth) = evaluate(request) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    match (&auth.outcome, mode) {
        (Ok(_), Mode::On) => NGX_OK as ngx_int_t,
        (Err(Reason::Stale), Mode::On)
            if conf.settings.stale() == Stale::Reauth && satisfy_all(request) =>
        {
            log_reauth(request, auth);
            // SAFETY: the request of this access phase handler.
            unsafe { reauth::redirect(r) }
        }
        (Err(reason), Mode::On) => {
            let reason = *reason;
            log_rejection(request, conf, auth, reason);
            reject(request, reason)
        }
        _ => NGX_DECLINED as ngx_int_t,
    }
}

pub fn log_rejection(r: &Request, conf: &LocConf, auth: &RequestAuth, reason: Reason) {
    let policy = &conf.settings.policy;
    let identity = auth
        .cert
        .as_deref()
        .and_then(|c| identity::resolve(policy.sources(), policy.identity_regex.as_ref(), c).ok())
        .unwrap_or("");
    let serial = auth.cert.as_deref().map_or("-", CertificateInfo::serial);
    // SAFETY: the request's connection and its log are valid for the request's lifetime.
    let log = unsafe { (*r.connection()).log };
    let detail = auth
        .detail
        .as_deref()
        .map_or(String::new(), |d| format!(" ({d})"));
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "auth_cert: access denied: {}{}, reason: {}, identity: \"{}\", serial: {}",
        reason.message(),
        detail,
        reason.as_str(),
        identity.escape_debug(),
        serial
    );
}

/// Whether the location needs every access module to allow (`satisfy all`): under
/// `satisfy any`, a stale request is a plain rejection that another module may overrule.
fn satisfy_all(r: &Request) -> bool {
    NgxHttpCoreModule::location_conf(r.as_ref())
        .is_some_and(|clcf| clcf.satisfy == NGX_HTTP_SATISFY_ALL as ngx_uint_t)
}

fn log_reauth(r: &Request, auth: &RequestAuth) {
    let serial = auth.cert.as_deref().map_or("-", CertificateInfo::serial);
    // SAFETY: the request's connection and its log are valid for the request's lifetime.
    let log = unsafe { (*r.connection()).log };
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "auth_cert: re-authentication required: {}, reason: stale, auth_time: {}, age: {}, \
         serial: {}",
        Reason::Stale.message(),
        auth.auth_time.unwrap_or(0),
        auth.age.unwrap_or(0),
        serial
    );
}

/// Answers a rejected request: the status goes to nginx when `error_page` or `satisfy any`
/// must see it, otherwise the module answers with a one-line body naming the reason.
fn reject(r: &mut Request, reason: Reason) -> ngx_int_t {
    let Some(clcf) = NgxHttpCoreModule::location_conf(r.as_ref()) else {
        return NGX_ERROR as ngx_int_t;
    };
    if matches!(reason, Reason::NoCert | Reason::Verify) {
        // No certificate can arrive on this connection any more: let the client reconnect.
        r.as_mut().set_keepalive(0);
    }
    if clcf.satisfy != NGX_HTTP_SATISFY_ALL as ngx_uint_t {
        // Another access module may still allow the request; only 401/403 let it.
        return NGX_HTTP_FORBIDDEN as ngx_int_t;
    }
    let code = reason.http_status();
    if has_error_page(clcf.error_pages, code) {
        return code as ngx_int_t;
    }
    let body = format!("auth_cert: {}: {}\n", reason.as_str(), reason.message());
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: `r` is the valid request of this handler; the body is copied into its pool
    // before being referenced by the complex value.
    unsafe {
        let data = Pool::from_ngx_pool((*r).pool)
            .alloc_unaligned(body.len())
            .cast::<u8>();
        if data.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        ptr::copy_nonoverlapping(body.as_ptr(), data, body.len());
        let mut content_type = ngx_string!("text/plain");
        let mut value: ngx_http_complex_value_t = core::mem::zeroed();
        value.value = ngx_str_t {
            len: body.len(),
            data,
        };
        let rc = ngx_http_send_response(
            r,
            ngx_uint_t::from(wire_status(code)),
            &mut content_type,
            &mut value,
        );
        ngx_http_finalize_request(r, rc);
    }
    NGX_DONE as ngx_int_t
}

fn has_error_page(pages: *mut ngx::ffi::ngx_array_t, code: u16) -> bool {
    // SAFETY: clcf->error_pages is null or an array of ngx_http_err_page_t.
    let Some(pages) = (unsafe { pages.as_ref() }) else {
        return false;
    };
    // SAFETY: as above.
    unsafe { pages.as_slice::<ngx_http_err_page_t>() }
        .iter()
        .any(|p| p.status == code as ngx_int_t)
}

/// Adds a response header; `false` when memory runs out.
pub fn add_response_header(r: &mut Request, key: &str, value: &str) -> bool {
    let r: *mut ngx_http_request_t = r.into();
    // SAFETY: `r` is a valid request; a pushed list element is ours to fill, from its pool.
    unsafe {
        let header = ngx_list_push(&mut (*r).headers_out.headers).cast::<ngx_table_elt_t>();
        if add_to_ngx_table(header, (*r).pool, key, value).is_none() {
            return false;
        }
        // Since nginx 1.23, headers of one name are chained; this one stands alone.
        #[cfg(ngx_table_elt_next)]
        {
            (*header).next = ptr::null_mut();
        }
    }
    true
}
