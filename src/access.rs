//! The access phase: gather what nginx and OpenSSL know of a request, let the core decide,
//! and carry out its decision.

use core::cell::OnceCell;
use core::ffi::c_void;
use core::ptr;

use auth_cert_core::age::Decimal;
use auth_cert_core::cert::CertificateInfo;
use auth_cert_core::decision::{self, Action, Evaluation, Tls};
use auth_cert_core::identity;
use auth_cert_core::verdict::{self, Reason};
use ngx::core::Status;
use ngx::ffi::{
    ngx_http_err_page_t, ngx_http_request_t, ngx_int_t, ngx_ssl_connection_t, ngx_time, ngx_uint_t,
    SSL_get_SSL_CTX, SSL_is_init_finished, NGX_HTTP_SATISFY_ALL, NGX_LOG_INFO, SSL,
};
use ngx::http::{
    HTTPStatus, HttpModule, HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule,
    NgxHttpSslModule, Request,
};
use ngx::{ngx_log_debug_http, ngx_log_error};

use crate::conf::LocConf;
use crate::{forwarded, http, reauth, session, tls, zone, Module};

/// The evaluation of one request, kept in its module context for the variables.
pub struct RequestAuth {
    /// The configuration it was evaluated with: a variable read in another location (after a
    /// rewrite, say) evaluates again.
    conf: *const LocConf,
    pub evaluation: Evaluation,
    /// Variable texts, formatted on first use without allocating (numbers) or once (hex).
    pub auth_time_text: OnceCell<Decimal>,
    pub age_text: OnceCell<Decimal>,
    pub not_after_text: OnceCell<Decimal>,
    /// `$auth_cert_client_cert`, encoded on first use.
    pub client_cert_text: OnceCell<String>,
}

/// This request's evaluation, computed on first use. `None` only when memory runs out.
pub fn evaluate<'a>(r: &mut Request) -> Option<&'a RequestAuth> {
    let conf = LocConf::of(r)?;
    let conf_ptr: *const LocConf = conf;
    if let Some(auth) = r.get_module_ctx::<RequestAuth>(Module::module()) {
        if ptr::eq(auth.conf, conf_ptr) {
            // SAFETY: the context lives in the request pool, which outlives every use of it.
            return Some(unsafe { &*ptr::from_ref(auth) });
        }
    }
    let evaluation = compute(r, conf);
    log_left_out(r, conf, &evaluation);
    let auth = RequestAuth {
        conf: conf_ptr,
        evaluation,
        auth_time_text: OnceCell::new(),
        age_text: OnceCell::new(),
        not_after_text: OnceCell::new(),
        client_cert_text: OnceCell::new(),
    };
    let ctx = r.pool().allocate(auth);
    if ctx.is_null() {
        return None;
    }
    r.set_module_ctx(ctx.cast::<c_void>(), Module::module());
    // SAFETY: allocated above in the request pool, which outlives every use of the request.
    Some(unsafe { &*ctx })
}

fn compute(r: &mut Request, conf: &LocConf) -> Evaluation {
    let settings = &conf.settings;
    let now = ngx_time();
    let header = settings.header.as_ref().zip(conf.header_ca.as_deref());
    let forwarded = forwarded::evaluate(
        r,
        header,
        settings.identity_arg.as_ref(),
        &settings.policy,
        now,
    );
    zone::count_forwarded(&forwarded);
    // SAFETY: a request's connection is live while the request is; its `ssl` is null on plain
    // connections and is the TLS connection (shared by HTTP/2 streams) otherwise.
    let ssl_connection = unsafe { (*r.connection()).ssl.as_ref() };
    let tls = match ssl_connection {
        None => Tls::Plain,
        // SAFETY: the live TLS connection of the request; nginx hands a request over once the
        // handshake is complete, or once it has read early data.
        Some(c) => unsafe {
            let ssl = c.connection.cast::<SSL>();
            Tls::Connection {
                peer: tls::peer(ssl),
                auth_time: session::auth_time(ssl),
                this_server: verified_for_this_server(r, ssl),
                early_data: in_early_data(c),
            }
        },
    };
    let crl = conf.crl.as_deref().map(crate::crl::CrlFile::current);
    let evaluation = decision::evaluate(settings, forwarded, tls, crl.as_deref(), now);
    ngx_log_debug_http!(
        r,
        "auth_cert: evaluated: {}, source: {}, auth_time: {:?}, age: {:?}",
        match &evaluation.outcome {
            Ok(identity) => format!("identity \"{}\"", identity.escape_debug()),
            Err(reason) => format!("reason {}", reason.as_str()),
        },
        evaluation.source.map_or("-", |s| s.as_str()),
        evaluation.auth_time,
        evaluation.age
    );
    evaluation
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

/// Whether the request being evaluated on TLS connection `c` arrived in TLS 1.3 early data:
/// the handshake is not finished yet, so the client has not proved that it is live, and the
/// request may be a replay of a captured first flight. nginx reads early data while
/// `in_early` is set (its `ngx_ssl_try_early_data` and `ngx_ssl_recv_early`); it clears the
/// flag on OpenSSL's `SSL_READ_EARLY_DATA_FINISH`, i.e. once the `EndOfEarlyData` message is
/// read, which a replayed flight may carry too, while the client's `Finished` (which no replay
/// can make) may still be missing. So, as nginx's own `$ssl_early_data`, the test is also
/// `!SSL_is_init_finished`. HTTP/2 streams share the connection's `c`: a stream opened in early
/// data is evaluated while the handshake is still unfinished.
///
/// # Safety
/// `c` must be the live TLS connection of the request.
unsafe fn in_early_data(c: &ngx_ssl_connection_t) -> bool {
    // SAFETY: caller: the `SSL` object of a live connection.
    c.in_early() != 0 || unsafe { SSL_is_init_finished(c.connection.cast::<SSL>()) } != 1
}

/// The handler of the access phase.
pub unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a valid request.
    let request = unsafe { Request::from_ngx_http_request(r) };
    handle(request).0
}

fn handle(r: &mut Request) -> Status {
    let Some(conf) = LocConf::of(r) else {
        return Status::NGX_DECLINED;
    };
    if conf.settings.mode() == auth_cert_core::settings::Mode::Off {
        // A forwarded certificate header (and its chain header) never reaches an upstream,
        // even unevaluated.
        if let Some(header) = &conf.settings.header {
            if forwarded::take_headers(r, header).is_err() {
                return HTTPStatus::INTERNAL_SERVER_ERROR.into();
            }
        }
        return Status::NGX_DECLINED;
    }
    let Some(auth) = evaluate(r) else {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    };
    let satisfy_all = satisfy_all(r);
    let action = decision::action(&conf.settings, &auth.evaluation.outcome, satisfy_all);
    ngx_log_debug_http!(
        r,
        "auth_cert: access: {action:?}, satisfy all: {satisfy_all}"
    );
    let authentication = match action {
        // SAFETY: a request's connection is live while the request is; its `ssl` is null
        // without TLS, else the live TLS connection, its handshake complete.
        Action::Reauthenticate if zone::region().is_some() => unsafe {
            (*r.connection())
                .ssl
                .as_ref()
                .and_then(|c| session::authentication_id(c.connection.cast()))
        },
        _ => None,
    };
    zone::note_request(&auth.evaluation, action, authentication);
    match action {
        Action::Decline => Status::NGX_DECLINED,
        Action::Allow => Status::NGX_OK,
        Action::Reauthenticate => {
            log_reauth(r, &auth.evaluation);
            reauth::redirect(r)
        }
        Action::Reject(reason) => {
            log_rejection(r, conf, &auth.evaluation, reason);
            reject(r, reason, satisfy_all)
        }
    }
}

/// The one `error_log` line of a rejected request.
pub fn log_rejection(r: &Request, conf: &LocConf, evaluation: &Evaluation, reason: Reason) {
    let policy = &conf.settings.policy;
    let cert = evaluation.cert.as_deref();
    let identity = cert
        .and_then(|c| identity::resolve(policy.sources(), policy.identity_regex.as_ref(), c).ok())
        .unwrap_or("");
    let serial = cert.map_or("-", CertificateInfo::serial);
    let details: Vec<String> = evaluation
        .detail
        .iter()
        .cloned()
        .chain(left_out_detail(evaluation))
        .collect();
    let detail = if details.is_empty() {
        String::new()
    } else {
        format!(" ({})", details.join("; "))
    };
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "auth_cert: access denied: {}{}, reason: {}, identity: \"{}\", serial: {}",
        reason.message(),
        detail,
        reason.as_str(),
        identity.escape_debug(),
        serial
    );
}

/// What was left out of the trusted certificate for its control characters, for the line of
/// a rejection or a re-authentication, which then tells it (every time).
fn left_out_detail(evaluation: &Evaluation) -> Option<String> {
    let cert = evaluation.trusted_cert()?;
    let left_out = cert.left_out();
    if left_out.is_empty() {
        return None;
    }
    cert.left_out_once();
    Some(format!(
        "values with control characters left out: {left_out}"
    ))
}

/// The `info` line telling, once per parse of a trusted certificate, that values with
/// control characters were left out of it, so that the variables and identity sources do not
/// show them. Not for a request that the gate rejects or re-authenticates: its one line tells.
fn log_left_out(r: &Request, conf: &LocConf, evaluation: &Evaluation) {
    if decision::gate_logs(&conf.settings, &evaluation.outcome) {
        return;
    }
    let Some(cert) = evaluation.trusted_cert() else {
        return;
    };
    if let Some(left_out) = cert.left_out_once() {
        ngx_log_error!(
            NGX_LOG_INFO,
            r.log(),
            "auth_cert: values with control characters left out of the client certificate \
             ({}), serial: {}",
            left_out,
            cert.serial()
        );
    }
}

fn log_reauth(r: &Request, evaluation: &Evaluation) {
    let serial = evaluation
        .cert
        .as_deref()
        .map_or("-", CertificateInfo::serial);
    let detail = left_out_detail(evaluation).map_or(String::new(), |d| format!(" ({d})"));
    ngx_log_error!(
        NGX_LOG_INFO,
        r.log(),
        "auth_cert: re-authentication required: {}{}, reason: stale, auth_time: {}, age: {}, \
         serial: {}",
        Reason::Stale.message(),
        detail,
        evaluation.auth_time.unwrap_or(0),
        evaluation.age.unwrap_or(0),
        serial
    );
}

/// Whether the location needs every access module to allow (`satisfy all`).
fn satisfy_all(r: &Request) -> bool {
    NgxHttpCoreModule::location_conf(r)
        .is_some_and(|clcf| clcf.satisfy == NGX_HTTP_SATISFY_ALL as ngx_uint_t)
}

/// Answers a rejected request as the core's [`decision::rejection`] says.
fn reject(r: &mut Request, reason: Reason, satisfy_all: bool) -> Status {
    let Some(rejection) = rejection(r, reason, satisfy_all) else {
        return Status::NGX_ERROR;
    };
    if !rejection.close_connection {
        return send_rejection(r, &rejection);
    }
    // No certificate can arrive on this connection any more: let the client reconnect.
    if satisfy_all {
        // HTTP/2 too: GOAWAY, then the answer.
        return http::answer_then_close(r, answer_closing);
    }
    // Under `satisfy any` another access module may still allow the request, which must go on
    // now: only an HTTP/1.x connection is closed.
    r.as_mut().set_keepalive(0);
    send_rejection(r, &rejection)
}

/// The answer of [`reject`] that ends the connection, made once the connection is ending
/// (HTTP/2: after the GOAWAY): the reason is the one of the request's evaluation.
fn answer_closing(r: &mut Request) -> Status {
    let reason = r
        .get_module_ctx::<RequestAuth>(Module::module())
        .and_then(|auth| auth.evaluation.outcome.as_ref().err().copied());
    let Some(reason) = reason else {
        return Status::NGX_ERROR;
    };
    match rejection(r, reason, satisfy_all(r)) {
        Some(rejection) => send_rejection(r, &rejection),
        None => Status::NGX_ERROR,
    }
}

/// The core's [`decision::rejection`] for `r`.
fn rejection(r: &Request, reason: Reason, satisfy_all: bool) -> Option<decision::Rejection> {
    let error_pages = NgxHttpCoreModule::location_conf(r)?.error_pages;
    Some(decision::rejection(reason, satisfy_all, |code| {
        has_error_page(error_pages, code)
    }))
}

/// Sends the module's body of `rejection`, or hands its code to nginx.
fn send_rejection(r: &mut Request, rejection: &decision::Rejection) -> Status {
    let status = HTTPStatus(ngx_uint_t::from(rejection.wire_status()));
    let status_line = verdict::status_line(rejection.wire_status());
    let Some(body) = &rejection.body else {
        return http::status(rejection.code);
    };
    if let Some(line) = status_line {
        http::set_status_line(r, line);
    }
    let rc = http::send_response(r, status, Some("text/plain"), body.as_bytes());
    http::finalize(r, rc)
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
