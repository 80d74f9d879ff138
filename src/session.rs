//! The time of the certificate authentication, carried by TLS sessions.
//!
//! OpenSSL resets a TLS 1.3 session's own time each time it issues a ticket (nginx renews every
//! TLS 1.3 ticket), so `SSL_SESSION_get_time` cannot tell when the certificate was verified.
//! The module therefore stamps the time of the full handshake that verified the certificate
//! into the session's ticket application data: OpenSSL copies it when a session is duplicated
//! and serialises it into tickets and into nginx's shared session cache, so it survives
//! resumption by ticket (TLS 1.2 and 1.3), by session cache, and on every host sharing
//! `ssl_session_ticket_key`.
//!
//! Hooks on every server's `SSL_CTX`, installed at the end of configuration:
//! - the verify callback (nginx's, wrapped) stamps the time when the leaf certificate is
//!   verified;
//! - the ticket decrypt callback refuses to resume a ticket whose stamp is older than the
//!   handshake limit (or missing), so the client falls back to a full handshake and must
//!   present its certificate again; the ticket generate callback shortens each new session's
//!   lifetime to what is left of that limit;
//! - nginx's shared-cache lookup (wrapped) refuses such sessions too; OpenSSL's internal cache
//!   (`ssl_session_cache builtin`), which no callback can check, is not consulted where a limit
//!   applies;
//! - with `auth_cert_crl`, both also refuse the sessions of a client certificate that a CRL of
//!   the configuration revokes, and the internal cache is not consulted.
//!
//! With `auth_cert_handshake require` in a server, its context also fails the handshake when
//! the client sends no certificate (`SSL_VERIFY_FAIL_IF_NO_PEER_CERT`: alert
//! `certificate_required` in TLS 1.3, `handshake_failure` in 1.2) or one that does not verify
//! (the wrapper returns OpenSSL's verdict instead of nginx's, which always accepts, so that
//! OpenSSL sends the alert of the error: `unknown_ca`, `bad_certificate`, ...). nginx's SNI
//! callback copies the verify mode and callback of the server it selects into the connection,
//! so the mode of that server applies.
//!
//! Sessions are looked up in the context of the listen socket's default server (OpenSSL's
//! `session_ctx`, which SNI does not change, even when a HelloRetryRequest makes the lookup
//! come after the server was selected), so the handshake limit of that context is the smallest
//! `auth_cert_max_age` of every server sharing one of its addresses; each request is then
//! checked against its own location's limit.

use core::ffi::{c_int, c_long, c_uchar, c_void};
use core::ptr;
use std::rc::Rc;

use ngx::ffi::{
    ngx_http_conf_addr_t, ngx_http_conf_port_t, ngx_http_core_main_conf_t,
    ngx_http_core_srv_conf_t, ngx_pool_t, ngx_time, SSL_CTX_ctrl, SSL_CTX_get_timeout,
    SSL_CTX_get_verify_callback, SSL_CTX_get_verify_mode, SSL_CTX_remove_session,
    SSL_CTX_sess_get_get_cb, SSL_CTX_sess_set_get_cb, SSL_CTX_set_msg_callback,
    SSL_CTX_set_session_ticket_cb, SSL_CTX_set_timeout, SSL_CTX_set_verify, SSL_SESSION_free,
    SSL_SESSION_get0_ticket_appdata, SSL_SESSION_get_time, SSL_SESSION_get_timeout,
    SSL_SESSION_set1_ticket_appdata, SSL_SESSION_set_timeout, SSL_get_SSL_CTX,
    SSL_get_ex_data_X509_STORE_CTX_idx, SSL_get_session, SSL_verify_cb, SSL_version,
    X509_STORE_CTX_get_error_depth, X509_STORE_CTX_get_ex_data, SSL, SSL3_MT_CERTIFICATE,
    SSL3_RT_HANDSHAKE, SSL_CTRL_GET_SESS_CACHE_MODE, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_CTX,
    SSL_SESSION, SSL_SESS_CACHE_NO_INTERNAL_LOOKUP, SSL_TICKET_RETURN,
    SSL_TICKET_RETURN_IGNORE_RENEW, SSL_TICKET_RETURN_USE, SSL_TICKET_RETURN_USE_RENEW,
    SSL_TICKET_STATUS, SSL_TICKET_SUCCESS, SSL_TICKET_SUCCESS_RENEW,
    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, SSL_VERIFY_NONE, TLS1_3_VERSION, X509_STORE_CTX,
};
use ngx::http::{HttpModuleServerConf, NgxHttpSslModule};

use auth_cert_core::age;
use auth_cert_core::metrics::Refusal;

use crate::alert;
use crate::crl::{self, CrlFile};
use crate::ex_data::{self, Slot};

/// nginx's shared-cache lookup, as `SSL_CTX_sess_get_get_cb` returns it.
type GetSession =
    Option<unsafe extern "C" fn(*mut SSL, *const c_uchar, c_int, *mut c_int) -> *mut SSL_SESSION>;

/// What the module keeps with one `SSL_CTX` (in its ex_data, freed with the configuration).
#[derive(Default)]
struct Hooks {
    /// nginx's verify callback, called first.
    verify: SSL_verify_cb,
    /// `auth_cert_handshake require` of the server, noted while merging.
    wants_require: bool,
    /// `auth_cert_handshake require` in force: a certificate that does not verify fails the
    /// handshake.
    require: bool,
    /// nginx's shared-cache lookup.
    get_session: GetSession,
    /// The smallest `auth_cert_max_age` of the locations of this context's server.
    server_max_age: Option<i64>,
    /// The largest one.
    server_max_age_longest: Option<i64>,
    /// The limit applied when a session is resumed in this context: the largest age of its
    /// address with a zone (step-up), the smallest without.
    handshake_max_age: Option<i64>,
    /// Every `auth_cert_crl` file of the configuration: a session of a revoked certificate is
    /// not resumed.
    crl_files: Vec<Rc<CrlFile>>,
    /// The smallest age of its address: the limit while step-up cannot apply.
    strict_max_age: Option<i64>,
    installed: bool,
}

impl Hooks {
    /// The limit a resumed session is held to now: the smallest age of the address, unless
    /// step-up applies (a zone, none of whose marks was dropped for room), when a stale
    /// request on a stricter location marks its authentication instead.
    fn limit(&self) -> Option<i64> {
        if crate::zone::step_up() {
            self.handshake_max_age
        } else {
            self.strict_max_age
        }
    }
}

/// The hooks of each server's context.
static HOOKS: Slot<SSL_CTX, Hooks> = Slot::new();

/// The hooks of `ctx`, if the module set them up.
///
/// # Safety
/// `ctx` must be null or a live `SSL_CTX`.
unsafe fn hooks<'a>(ctx: *const SSL_CTX) -> Option<&'a Hooks> {
    // SAFETY: caller.
    unsafe { HOOKS.get(ctx) }
}

/// The hooks of `ctx`, made on first use and freed with the configuration pool `pool`; only
/// at configuration time.
///
/// # Safety
/// `ctx` must be a live `SSL_CTX` of the configuration being read, not used by any connection
/// yet, and `pool` that configuration's pool.
unsafe fn hooks_mut<'a>(ctx: *mut SSL_CTX, pool: *mut ngx_pool_t) -> Option<&'a mut Hooks> {
    // SAFETY: caller; configuration is single-threaded and no connection uses the context
    // yet, so nothing else refers to its Hooks.
    unsafe { HOOKS.get_or_make_mut(ctx, pool, Hooks::default) }
}

/// The SSL context of a server configuration, if the server has TLS.
///
/// # Safety
/// `cscf` must be a server configuration of the http block being configured.
unsafe fn server_ctx(cscf: *const ngx_http_core_srv_conf_t) -> *mut SSL_CTX {
    // SAFETY: caller: a server configuration of the http block, whose ctx is set.
    unsafe { cscf.as_ref() }
        .and_then(NgxHttpSslModule::server_conf)
        .map_or(ptr::null_mut(), |sscf| sscf.ssl.ctx.cast())
}

/// Records `auth_cert_handshake require` for a server's context; called while merging.
///
/// # Safety
/// `ctx` must be null or the `SSL_CTX` of the server being merged, `pool` the configuration's
/// pool.
pub unsafe fn note_handshake_require(ctx: *mut SSL_CTX, pool: *mut ngx_pool_t) -> bool {
    if ctx.is_null() {
        return true;
    }
    // SAFETY: caller.
    let Some(hooks) = (unsafe { hooks_mut(ctx, pool) }) else {
        return false;
    };
    hooks.wants_require = true;
    true
}

/// Records a location's `auth_cert_max_age` for its server's context; called while merging.
///
/// # Safety
/// `ctx` must be null or the `SSL_CTX` of the server being merged, `pool` the configuration's
/// pool.
pub unsafe fn note_max_age(ctx: *mut SSL_CTX, pool: *mut ngx_pool_t, max_age: i64) -> bool {
    if ctx.is_null() {
        return true;
    }
    // SAFETY: caller.
    let Some(hooks) = (unsafe { hooks_mut(ctx, pool) }) else {
        return false;
    };
    hooks.server_max_age = age::stricter(hooks.server_max_age, Some(max_age));
    hooks.server_max_age_longest = age::longer(hooks.server_max_age_longest, Some(max_age));
    true
}

/// Installs the hooks on every server's context and sets each context's handshake limit:
/// the longest age of its address with `step_up` (a zone), the shortest without; `crl_files`
/// are the `auth_cert_crl` files of the configuration.
///
/// # Safety
/// Postconfiguration only: `cmcf` is the http block's core main configuration, with its
/// servers merged, and `pool` the configuration's pool.
pub unsafe fn install(
    cmcf: &ngx_http_core_main_conf_t,
    pool: *mut ngx_pool_t,
    crl_files: &[Rc<CrlFile>],
    step_up: bool,
) -> bool {
    // SAFETY: cmcf.servers is an array of server configuration pointers.
    let servers = unsafe { cmcf.servers.as_slice::<*mut ngx_http_core_srv_conf_t>() };
    for &cscf in servers {
        // SAFETY: a server of this configuration.
        let ctx = unsafe { server_ctx(cscf) };
        // SAFETY: a context of this configuration, not serving yet.
        if !ctx.is_null() && !unsafe { install_on(ctx, pool, crl_files) } {
            return false;
        }
    }
    // SAFETY: cmcf.ports is null or an array of ngx_http_conf_port_t.
    let Some(ports) = (unsafe { cmcf.ports.as_ref() }) else {
        return true;
    };
    // SAFETY: as above.
    for port in unsafe { ports.as_slice::<ngx_http_conf_port_t>() } {
        // SAFETY: each port's addrs is an array of ngx_http_conf_addr_t.
        for addr in unsafe { port.addrs.as_slice::<ngx_http_conf_addr_t>() } {
            // SAFETY: addresses reference servers of this configuration.
            unsafe {
                limit_address(addr, pool, step_up);
                watch_address(addr);
            }
        }
    }
    true
}

/// Where a server of `addr` has `auth_cert_handshake require`, the connections of the
/// address (made from its default server's context, whichever server SNI selects) get the
/// [`message`] callback.
///
/// # Safety
/// `addr` must be an address of the configuration being finished, its hooks installed.
unsafe fn watch_address(addr: &ngx_http_conf_addr_t) {
    // SAFETY: caller.
    let default_ctx = unsafe { server_ctx(addr.default_server) };
    // SAFETY: addr.servers is an array of server configuration pointers.
    let servers = unsafe { addr.servers.as_slice::<*mut ngx_http_core_srv_conf_t>() };
    let require = servers.iter().chain([&addr.default_server]).any(|&cscf| {
        // SAFETY: servers of this configuration.
        unsafe { hooks(server_ctx(cscf)) }.is_some_and(|h| h.require)
    });
    if require && !default_ctx.is_null() {
        // SAFETY: a live context, configuration time.
        unsafe { SSL_CTX_set_msg_callback(default_ctx, Some(message)) };
    }
}

/// Stops OpenSSL's internal session cache (`ssl_session_cache builtin`) from answering on
/// every server's context: it would resume a session before any callback could check it,
/// and each worker keeps its own. Sessions are then resumed from tickets and nginx's shared
/// cache only, which check the marks of `auth_cert_logout`.
///
/// # Safety
/// Postconfiguration only, as [`install`].
pub unsafe fn refuse_internal_lookup(cmcf: &ngx_http_core_main_conf_t) {
    // SAFETY: cmcf.servers is an array of server configuration pointers.
    let servers = unsafe { cmcf.servers.as_slice::<*mut ngx_http_core_srv_conf_t>() };
    for &cscf in servers {
        // SAFETY: a server of this configuration; its context is live, not serving yet.
        unsafe {
            let ctx = server_ctx(cscf);
            if !ctx.is_null() {
                no_internal_lookup(ctx);
            }
        }
    }
}

/// Gives the default server's context of `addr` its limits: the smallest age among its
/// servers, and the handshake limit (the largest with `step_up`, else the smallest).
///
/// # Safety
/// `addr` must be an address of the configuration being finished, `pool` its pool.
unsafe fn limit_address(addr: &ngx_http_conf_addr_t, pool: *mut ngx_pool_t, step_up: bool) {
    // SAFETY: caller.
    let default_ctx = unsafe { server_ctx(addr.default_server) };
    let (mut strict, mut longest) = (None, None);
    // SAFETY: addr.servers is an array of server configuration pointers.
    let servers = unsafe { addr.servers.as_slice::<*mut ngx_http_core_srv_conf_t>() };
    for &cscf in servers.iter().chain([&addr.default_server]) {
        // SAFETY: servers of this configuration.
        let ctx = unsafe { server_ctx(cscf) };
        // SAFETY: as above.
        if let Some(hooks) = unsafe { hooks(ctx) } {
            strict = age::stricter(strict, hooks.server_max_age);
            longest = age::longer(longest, hooks.server_max_age_longest);
        }
    }
    let Some(limit) = (if step_up { longest } else { strict }) else {
        return;
    };
    // SAFETY: the context is live and not serving yet.
    if let Some(hooks) = unsafe { default_ctx.as_mut().and_then(|c| hooks_mut(c, pool)) } {
        hooks.handshake_max_age = age::stricter(hooks.handshake_max_age, Some(limit));
        hooks.strict_max_age = age::stricter(hooks.strict_max_age, strict);
        // SAFETY: live context, configuration time.
        unsafe {
            // TLS 1.2 sessions keep the time of their full handshake: a context timeout
            // within the limit bounds them wherever they are kept.
            let timeout = SSL_CTX_get_timeout(default_ctx);
            let limit = c_long::try_from(limit).unwrap_or(c_long::MAX);
            if timeout <= 0 || timeout > limit {
                SSL_CTX_set_timeout(default_ctx, limit);
            }
            // OpenSSL's internal cache (`ssl_session_cache builtin`) answers before any
            // callback could check a session, and would resume sessions made without a
            // certificate: with a limit, sessions are resumed from tickets and nginx's shared
            // cache only, which are checked.
            no_internal_lookup(default_ctx);
        }
    }
}

/// Makes OpenSSL resume sessions of `ctx` from tickets and nginx's shared cache only.
///
/// # Safety
/// `ctx` must be a live context at configuration time.
unsafe fn no_internal_lookup(ctx: *mut SSL_CTX) {
    // SAFETY: caller.
    unsafe {
        let mode = SSL_CTX_ctrl(
            ctx,
            SSL_CTRL_GET_SESS_CACHE_MODE as c_int,
            0,
            ptr::null_mut(),
        );
        SSL_CTX_ctrl(
            ctx,
            SSL_CTRL_SET_SESS_CACHE_MODE as c_int,
            mode | SSL_SESS_CACHE_NO_INTERNAL_LOOKUP as c_long,
            ptr::null_mut(),
        );
    }
}

/// # Safety
/// `ctx` must be a live context not serving yet, `pool` its configuration's pool;
/// `crl_files` the configuration's
/// `auth_cert_crl` files.
unsafe fn install_on(ctx: *mut SSL_CTX, pool: *mut ngx_pool_t, crl_files: &[Rc<CrlFile>]) -> bool {
    // SAFETY: caller.
    let Some(hooks) = (unsafe { hooks_mut(ctx, pool) }) else {
        return false;
    };
    if hooks.installed {
        return true;
    }
    hooks.installed = true;
    if !crl_files.is_empty() {
        hooks.crl_files = crl_files.to_vec();
        // As with a handshake limit: OpenSSL's internal cache would resume sessions that no
        // callback checks.
        // SAFETY: live context at configuration time.
        unsafe { no_internal_lookup(ctx) };
    }
    let arg: *mut Hooks = hooks;
    // SAFETY: live context at configuration time; the hooks live as long as the context.
    unsafe {
        let mut mode = SSL_CTX_get_verify_mode(ctx);
        if mode != SSL_VERIFY_NONE as c_int {
            hooks.verify = SSL_CTX_get_verify_callback(ctx);
            if hooks.wants_require {
                // (`nginx -t` refused `require` without `ssl_verify_client`.)
                hooks.require = true;
                mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT as c_int;
            }
            SSL_CTX_set_verify(ctx, mode, Some(verify));
        }
        hooks.get_session = SSL_CTX_sess_get_get_cb(ctx);
        if hooks.get_session.is_some() {
            SSL_CTX_sess_set_get_cb(ctx, Some(get_session));
        }
        SSL_CTX_set_session_ticket_cb(ctx, Some(generate_ticket), Some(decrypt_ticket), arg.cast())
            == 1
    }
}

/// The stamp bytes of a session, as the module wrote them.
///
/// # Safety
/// `session` must be null or a live session; the bytes live as long as it does.
unsafe fn stamp_bytes<'a>(session: *mut SSL_SESSION) -> Option<&'a [u8]> {
    if session.is_null() {
        return None;
    }
    let mut data: *mut c_void = ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: live session; the data stays owned by it.
    unsafe {
        if SSL_SESSION_get0_ticket_appdata(session, &raw mut data, &raw mut len) != 1
            || data.is_null()
        {
            return None;
        }
        Some(core::slice::from_raw_parts(data.cast::<u8>(), len))
    }
}

/// The authentication time stamped into a session.
///
/// # Safety
/// `session` must be null or a live session.
unsafe fn stamp_of(session: *mut SSL_SESSION) -> Option<i64> {
    // SAFETY: caller.
    unsafe { stamp_bytes(session) }.and_then(age::decode_stamp)
}

/// The id of the authentication of the connection `ssl`, and until when its sessions may be
/// resumed: its session context's timeout from now (every session or ticket of that
/// authentication was issued with at most that lifetime). `None` when the session has no id.
///
/// # Safety
/// `ssl` must be a live connection whose handshake has completed.
pub unsafe fn authentication_id(ssl: *mut SSL) -> Option<([u64; 2], i64)> {
    // SAFETY: caller; the session is owned by the connection, the context outlives it.
    unsafe {
        let id = stamp_bytes(SSL_get_session(ssl)).and_then(age::stamp_id)?;
        #[allow(clippy::unnecessary_cast)] // c_long is i32 on some targets.
        let timeout = SSL_CTX_get_timeout(session_ctx(ssl)) as i64;
        Some((id, ngx_time().saturating_add(timeout.max(0))))
    }
}

/// Takes the session of `ssl` out of OpenSSL's internal cache of its session context (and
/// marks it not resumable there); the zone's mark refuses it wherever else it is kept
/// (tickets, nginx's shared cache, other workers).
///
/// # Safety
/// `ssl` must be a live connection whose handshake has completed.
pub unsafe fn forget(ssl: *mut SSL) {
    // SAFETY: caller; the session and its context outlive the call.
    unsafe { SSL_CTX_remove_session(session_ctx(ssl), SSL_get_session(ssl)) };
}

/// Whether the authentication of `session` was ended (`auth_cert_logout`): not resumed.
///
/// # Safety
/// `session` must be null or a live session.
unsafe fn ended(session: *mut SSL_SESSION) -> bool {
    // SAFETY: caller.
    unsafe { stamp_bytes(session) }
        .and_then(age::stamp_id)
        .is_some_and(crate::zone::is_ended)
}

/// The authentication time of the connection `ssl`.
///
/// # Safety
/// `ssl` must be a live connection whose handshake has completed.
pub unsafe fn auth_time(ssl: *mut SSL) -> Option<i64> {
    // SAFETY: caller; the session is owned by the connection.
    unsafe { stamp_of(SSL_get_session(ssl)) }
}

/// Wraps nginx's verify callback: a verified leaf certificate stamps the session. Under
/// `auth_cert_handshake require`, OpenSSL's verdict decides (nginx's callback accepts every
/// certificate and leaves the verdict to the HTTP level).
unsafe extern "C" fn verify(ok: c_int, store: *mut X509_STORE_CTX) -> c_int {
    // SAFETY: OpenSSL calls this during a handshake with the store of that handshake, whose
    // ex_data holds its SSL.
    unsafe {
        let ssl =
            X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()).cast::<SSL>();
        if ssl.is_null() {
            return ok;
        }
        let hooks = hooks(SSL_get_SSL_CTX(ssl));
        let result = match hooks.and_then(|h| h.verify) {
            Some(nginx_verify) => nginx_verify(ok, store),
            None => ok,
        };
        if ok != 1 && hooks.is_some_and(|h| h.require) {
            alert::hold(ssl);
            return ok;
        }
        if ok == 1 && X509_STORE_CTX_get_error_depth(store) == 0 {
            let session = SSL_get_session(ssl);
            if !session.is_null() {
                let stamp = age::encode_stamp(ngx_time(), crate::zone::new_id());
                SSL_SESSION_set1_ticket_appdata(session, stamp.as_ptr().cast(), stamp.len());
            }
        }
        result
    }
}

/// Watches the handshake messages of connections that may meet a server with
/// `auth_cert_handshake require`: an empty client Certificate there fails the handshake
/// (`SSL_VERIFY_FAIL_IF_NO_PEER_CERT`), and its alert is held (see [`alert`]).
unsafe extern "C" fn message(
    write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut SSL,
    _arg: *mut c_void,
) {
    // Certificate (11) messages received: type, length (3), [TLS 1.3: context length (1),
    // context], list length (3).
    if write_p != 0 || content_type != SSL3_RT_HANDSHAKE as c_int || buf.is_null() || len < 7 {
        return;
    }
    // SAFETY: OpenSSL passes the whole message, `len` bytes; `ssl` is the connection in its
    // handshake, made by nginx.
    unsafe {
        let msg = core::slice::from_raw_parts(buf.cast::<u8>(), len);
        if msg[0] != SSL3_MT_CERTIFICATE as u8 {
            return;
        }
        let list = if SSL_version(ssl) >= TLS1_3_VERSION as c_int {
            msg.get(5 + usize::from(msg[4])..)
        } else {
            msg.get(4..)
        };
        let empty = list.is_some_and(|l| l.len() >= 3 && l[..3] == [0, 0, 0]);
        if empty && hooks(SSL_get_SSL_CTX(ssl)).is_some_and(|h| h.require) {
            alert::hold(ssl);
        }
    }
}

/// Refuses to resume a ticket whose authentication is too old or unknown, or whose client
/// certificate is revoked.
unsafe extern "C" fn decrypt_ticket(
    ssl: *mut SSL,
    session: *mut SSL_SESSION,
    _key_name: *const c_uchar,
    _key_name_len: usize,
    status: SSL_TICKET_STATUS,
    arg: *mut c_void,
) -> SSL_TICKET_RETURN {
    let renew = status == SSL_TICKET_SUCCESS_RENEW as SSL_TICKET_STATUS;
    if !renew && status != SSL_TICKET_SUCCESS as SSL_TICKET_STATUS {
        // Empty or undecryptable: a full handshake and a new ticket, as without this hook.
        // (Never IGNORE: in TLS 1.2 it would fall back to a session cache lookup.)
        return SSL_TICKET_RETURN_IGNORE_RENEW as SSL_TICKET_RETURN;
    }
    // SAFETY: OpenSSL passes the decrypted session on success.
    if unsafe { ended(session) } {
        return SSL_TICKET_RETURN_IGNORE_RENEW as SSL_TICKET_RETURN;
    }
    // SAFETY: `arg` is the context's Hooks, which live as long as the context.
    let hooks = unsafe { arg.cast::<Hooks>().as_ref() };
    if let Some(limit) = hooks.and_then(Hooks::limit) {
        // SAFETY: OpenSSL passes the decrypted session on success.
        if age::is_stale(unsafe { stamp_of(session) }, ngx_time(), limit) {
            crate::zone::count(|c| c.refused(Refusal::Stale));
            return SSL_TICKET_RETURN_IGNORE_RENEW as SSL_TICKET_RETURN;
        }
    }
    let crl_files = hooks.map_or(&[][..], |h| &h.crl_files);
    // SAFETY: the connection in its handshake and the session OpenSSL decrypted.
    if unsafe { crl::session_revoked(crl_files, ssl, session) } {
        crate::zone::count(|c| c.refused(Refusal::Revoked));
        return SSL_TICKET_RETURN_IGNORE_RENEW as SSL_TICKET_RETURN;
    }
    if renew {
        SSL_TICKET_RETURN_USE_RENEW as SSL_TICKET_RETURN
    } else {
        SSL_TICKET_RETURN_USE as SSL_TICKET_RETURN
    }
}

/// Before a ticket is made (and a TLS 1.3 session is cached): the session may live only as
/// long as its authentication stays within the handshake limit.
unsafe extern "C" fn generate_ticket(ssl: *mut SSL, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the context's Hooks; `ssl` is the connection issuing the ticket.
    unsafe {
        let Some(limit) = arg
            .cast::<Hooks>()
            .as_ref()
            .and_then(|h| h.handshake_max_age)
        else {
            return 1;
        };
        let session = SSL_get_session(ssl);
        if let Some(auth_time) = stamp_of(session) {
            let left = age::remaining_lifetime(auth_time, SSL_SESSION_get_time(session), limit);
            let left = c_long::try_from(left).unwrap_or(c_long::MAX);
            if left < SSL_SESSION_get_timeout(session) {
                SSL_SESSION_set_timeout(session, left);
            }
        }
    }
    1
}

/// The context that holds the sessions of `ssl`: the one its connection started with, the
/// default server's of its address, whose Hooks wrap nginx's lookup and hold the handshake
/// limit. OpenSSL calls the session callbacks of that context (its `session_ctx`), while
/// `SSL_get_SSL_CTX` is the server chosen by SNI once the server name is known: after a
/// HelloRetryRequest, the second ClientHello's session lookup comes after the first one
/// selected the server. nginx keeps that context with the connection (as its own lookup
/// uses it); `SSL_get_SSL_CTX` only for an `SSL` that nginx did not make.
///
/// # Safety
/// `ssl` must be a live `SSL` object.
unsafe fn session_ctx(ssl: *mut SSL) -> *mut SSL_CTX {
    // SAFETY: caller; nginx sets the connection's `ssl` before the handshake starts.
    unsafe {
        ex_data::connection(ssl)
            .as_ref()
            .and_then(|c| c.ssl.as_ref())
            .map_or_else(|| SSL_get_SSL_CTX(ssl), |sc| sc.session_ctx)
    }
}

/// Wraps nginx's shared-cache lookup: a session too old for the handshake limit, or of a
/// revoked certificate, is a miss.
unsafe extern "C" fn get_session(
    ssl: *mut SSL,
    id: *const c_uchar,
    len: c_int,
    copy: *mut c_int,
) -> *mut SSL_SESSION {
    // SAFETY: OpenSSL calls this during the handshake of `ssl`, a connection of nginx.
    unsafe {
        let Some(hooks) = hooks(session_ctx(ssl)) else {
            return ptr::null_mut();
        };
        let Some(nginx_get) = hooks.get_session else {
            return ptr::null_mut();
        };
        let session = nginx_get(ssl, id, len, copy);
        if session.is_null() {
            return session;
        }
        if ended(session) {
            // With *copy == 0 the reference was handed to us: release it.
            if !copy.is_null() && *copy == 0 {
                SSL_SESSION_free(session);
            }
            return ptr::null_mut();
        }
        let stale = hooks
            .limit()
            .is_some_and(|limit| age::is_stale(stamp_of(session), ngx_time(), limit));
        let revoked = !stale && crl::session_revoked(&hooks.crl_files, ssl, session);
        if stale || revoked {
            let refusal = if stale {
                Refusal::Stale
            } else {
                Refusal::Revoked
            };
            crate::zone::count(|c| c.refused(refusal));
            // With *copy == 0 the reference was handed to us: release it.
            if !copy.is_null() && *copy == 0 {
                SSL_SESSION_free(session);
            }
            return ptr::null_mut();
        }
        session
    }
}
