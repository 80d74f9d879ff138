//! Credentials in the request itself, accepted only from trusted peers: a client certificate
//! forwarded by a TLS-terminating load balancer (`auth_cert_header`), verified here with
//! nginx's OpenSSL against a CA loaded at configuration time, and the test-rig identity of
//! `auth_cert_identity_arg`.

use core::cell::RefCell;
use core::ffi::{c_int, c_long, c_void, CStr};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::ffi::CString;
use std::rc::Rc;

use ngx::ffi::{
    d2i_X509, ngx_conf_full_name, ngx_conf_t, ngx_connection_t, ngx_http_arg, ngx_http_request_t,
    ngx_list_part_t, ngx_list_t, ngx_palloc, ngx_pool_cleanup_add, ngx_pool_t, ngx_str_t,
    ngx_table_elt_t, sockaddr_in, sockaddr_in6, ASN1_TIME_diff, ERR_clear_error, OPENSSL_sk_free,
    OPENSSL_sk_new_null, OPENSSL_sk_num, OPENSSL_sk_push, OPENSSL_sk_value, SSL_CTX_free,
    SSL_CTX_get_security_level, SSL_CTX_new, TLS_method, X509_STORE_CTX_free,
    X509_STORE_CTX_get0_chain, X509_STORE_CTX_get0_param, X509_STORE_CTX_get_error,
    X509_STORE_CTX_get_error_depth, X509_STORE_CTX_init, X509_STORE_CTX_new,
    X509_STORE_CTX_set_depth, X509_STORE_CTX_set_purpose, X509_STORE_free, X509_STORE_get0_objects,
    X509_STORE_load_file, X509_STORE_new, X509_VERIFY_PARAM_set_auth_level, X509_free,
    X509_get0_notAfter, X509_get0_notBefore, X509_verify_cert, X509_verify_cert_error_string,
    AF_INET, AF_INET6, ASN1_TIME, NGX_LOG_WARN, NGX_OK, OPENSSL_STACK, X509,
    X509_PURPOSE_SSL_CLIENT, X509_STORE, X509_STORE_CTX, X509_V_ERR_CERT_HAS_EXPIRED,
    X509_V_ERR_CERT_NOT_YET_VALID,
};
use ngx::http::Request;
use ngx::ngx_log_error;

use auth_cert_core::cert::CertificateInfo;
use auth_cert_core::decision::{Credential, Forwarded};
use auth_cert_core::forwarded::{ArgSource, ChainKey, HeaderSource, Source, VerifiedChains};
use auth_cert_core::policy::Policy;
use auth_cert_core::verdict::Reason;

/// The CAs that forwarded certificates must chain to, with the limits a chain is verified
/// with. Each `auth_cert_header` directive loads its own, so the verdicts kept by store (see
/// [`VERIFIED`]) are verdicts under these limits.
#[derive(Debug)]
pub struct TrustStore {
    store: *mut X509_STORE,
    /// Names this store among all the stores the process loads, reloads included, for the
    /// verdicts kept in [`VERIFIED`].
    id: u64,
    /// `depth=`: the most intermediate CAs below the trust anchor (OpenSSL's verify depth).
    depth: c_int,
    /// OpenSSL's security level, as a new TLS context gets it: the level nginx verifies TLS
    /// clients with unless `ssl_ciphers` sets another.
    level: c_int,
}

impl Drop for TrustStore {
    fn drop(&mut self) {
        // SAFETY: the store was made by X509_STORE_new and is owned by this value.
        unsafe { X509_STORE_free(self.store) };
    }
}

impl TrustStore {
    /// The OpenSSL store, owned by this value.
    pub fn raw(&self) -> *mut X509_STORE {
        self.store
    }
}

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The forwarded chains that verified lately in this worker, with their certificate.
    static VERIFIED: RefCell<VerifiedChains<Rc<CertificateInfo>>> = RefCell::default();
}

/// Loads the PEM CA file of `auth_cert_header`, relative to the configuration prefix as
/// nginx's `ssl_client_certificate`, with the directive's depth and OpenSSL's default
/// security level.
pub fn load_store(cf: &ngx_conf_t, header: &HeaderSource) -> Result<TrustStore, String> {
    let file = header.ca.as_str();
    let level = default_security_level()
        .ok_or_else(|| "cannot create an SSL context for the security level".to_owned())?;
    let mut name = ngx_str_t {
        len: file.len(),
        data: file.as_ptr().cast_mut(),
    };
    // SAFETY: cf->cycle is the cycle being configured; nginx only reads `name` and replaces
    // it with a full path allocated in the cycle pool when it is relative.
    if unsafe { ngx_conf_full_name(cf.cycle, &raw mut name, 1) } != NGX_OK as isize {
        return Err(format!("cannot resolve \"{file}\""));
    }
    let path = String::from_utf8_lossy(name.as_bytes()).into_owned();
    let fail = || {
        // SAFETY: plain OpenSSL call; clears the errors of the failed load.
        unsafe { ERR_clear_error() };
        format!("cannot load CA certificates from \"{path}\"")
    };
    let c_path = CString::new(path.as_bytes()).map_err(|_| fail())?;
    let store = TrustStore {
        // SAFETY: a new store, owned by the TrustStore from here on.
        store: unsafe { X509_STORE_new() },
        id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
        depth: c_int::try_from(header.depth).unwrap_or(c_int::MAX),
        level,
    };
    if store.store.is_null() {
        return Err(fail());
    }
    // SAFETY: valid store and NUL-terminated path; the objects stack belongs to the store.
    let loaded = unsafe {
        X509_STORE_load_file(store.store, c_path.as_ptr()) == 1
            && OPENSSL_sk_num(X509_STORE_get0_objects(store.store).cast()) > 0
    };
    if !loaded {
        return Err(fail());
    }
    Ok(store)
}

/// The security level of a new TLS context: OpenSSL's default (1 in OpenSSL 3.0), or what
/// the system's OpenSSL configuration sets (`CipherString = ...:@SECLEVEL=2`).
fn default_security_level() -> Option<c_int> {
    // SAFETY: a new context, only read, and freed before returning.
    unsafe {
        let ctx = SSL_CTX_new(TLS_method());
        if ctx.is_null() {
            ERR_clear_error();
            return None;
        }
        let level = SSL_CTX_get_security_level(ctx);
        SSL_CTX_free(ctx);
        Some(level)
    }
}

/// Evaluates the identity argument and the forwarded certificate, in that order, and takes
/// the forwarded header and its chain header out of the request so that they never reach an
/// upstream.
pub fn evaluate(
    r: &mut Request,
    header: Option<(&HeaderSource, &TrustStore)>,
    arg: Option<&ArgSource>,
    policy: &Policy,
    now: i64,
) -> Result<Forwarded, ()> {
    let peer = peer_address(r);
    let (values, chain) = match header {
        Some((header, _)) => take_headers(r, header)?,
        None => (&[][..], &[][..]),
    };
    if let Some(credential) = arg.and_then(|arg| identity_arg(r, arg, peer)) {
        return Ok(Forwarded::Evaluated(credential));
    }
    let Some((header, store)) = header.filter(|_| !values.is_empty()) else {
        return Ok(Forwarded::Nothing);
    };
    if !peer.is_some_and(|ip| header.from.contains(ip)) {
        return Ok(Forwarded::Untrusted);
    }
    let rejected = |reason, detail: String| Credential {
        source: Source::Header,
        cert: None,
        outcome: Err(reason),
        detail: Some(detail),
    };
    let value = match values {
        [value] => value,
        _ => {
            return Ok(Forwarded::Evaluated(rejected(
                Reason::Header,
                format!("{} \"{}\" headers", values.len(), header.name),
            )))
        }
    };
    let credential = match verify_header(store, header, value, chain, now) {
        Ok(cert) => Credential {
            source: Source::Header,
            outcome: policy.evaluate(&cert, now).map(str::to_owned),
            cert: Some(cert),
            detail: None,
        },
        Err((Reason::Expired, detail, Some(cert))) => Credential {
            cert: Some(cert),
            ..rejected(Reason::Expired, detail)
        },
        Err((reason, detail, _)) => rejected(reason, detail),
    };
    Ok(Forwarded::Evaluated(credential))
}

/// The values of the forwarded header's fields, and of its chain header's.
type HeaderValues<'a> = (&'a [Vec<u8>], &'a [Vec<u8>]);

/// Takes the forwarded header and its chain header (`chain=`) out of the request, on first
/// use, and returns their values. `Err` only when memory runs out.
pub fn take_headers<'a>(r: &mut Request, header: &HeaderSource) -> Result<HeaderValues<'a>, ()> {
    let values = take_header(r, &header.name)?;
    let chain = match &header.chain {
        Some(name) => take_header(r, name)?,
        None => &[],
    };
    Ok((values, chain))
}

/// The identity of the query argument, when the peer may use it. Logged at `warn` each time.
fn identity_arg(r: &mut Request, arg: &ArgSource, peer: Option<IpAddr>) -> Option<Credential> {
    if !peer.is_some_and(|ip| arg.from.contains(ip)) {
        return None;
    }
    let mut raw = ngx_str_t::default();
    let request: *mut ngx_http_request_t = r.into();
    // SAFETY: a live request; nginx reads the name and points `raw` into the request line.
    let found = unsafe {
        ngx_http_arg(
            request,
            arg.name.as_ptr().cast_mut(),
            arg.name.len(),
            &raw mut raw,
        )
    };
    if found != NGX_OK as isize {
        return None;
    }
    let outcome = ArgSource::identity(raw.as_bytes());
    let log = r.log();
    match &outcome {
        Ok(identity) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "auth_cert: identity \"{}\" taken from query argument \"{}\" \
                 (auth_cert_identity_arg)",
                identity.escape_debug(),
                arg.name
            );
        }
        Err(why) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "auth_cert: query argument \"{}\" (auth_cert_identity_arg) refused: {}",
                arg.name,
                why
            );
        }
    }
    Some(Credential {
        source: Source::Arg,
        cert: None,
        detail: outcome
            .as_ref()
            .err()
            .map(|why| format!("identity argument {why}")),
        outcome: outcome.map_err(|_| Reason::Identity),
    })
}

/// The peer's address; after the realip module, the client address it set.
fn peer_address(r: &Request) -> Option<IpAddr> {
    // SAFETY: a request's connection is live while the request is; c->sockaddr is its address
    // of c->socklen bytes, and the family tells which structure it is.
    unsafe {
        let c: &ngx_connection_t = &*r.connection();
        let sa = c.sockaddr.as_ref()?;
        match u32::from(sa.sa_family) {
            AF_INET => {
                let sin = &*c.sockaddr.cast::<sockaddr_in>();
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            AF_INET6 => {
                let sin6 = &*c.sockaddr.cast::<sockaddr_in6>();
                Some(IpAddr::V6(Ipv6Addr::from(
                    sin6.sin6_addr.__in6_u.__u6_addr8,
                )))
            }
            _ => None,
        }
    }
}

/// Why a forwarded header was refused: the reason, the detail for the log and, for `expired`,
/// the certificate's facts.
type Refusal = (Reason, String, Option<Rc<CertificateInfo>>);

/// Decodes (in the declared format, with the chain header's lines), parses and verifies a
/// forwarded chain; the client certificate's facts when it verifies. A client certificate
/// that verifies but for its validity period is `expired`, with its facts. A chain that
/// verified lately against the same store is not verified again while its validity window
/// lasts (decoding and verifying cost about a hundred times what the rest of a request does).
fn verify_header(
    store: &TrustStore,
    source: &HeaderSource,
    value: &[u8],
    chain_values: &[Vec<u8>],
    now: i64,
) -> Result<Rc<CertificateInfo>, Refusal> {
    let key = ChainKey::new(store.id, source.format, value, chain_values);
    if let Some(info) = VERIFIED.with(|verified| verified.borrow().get(&key, now)) {
        return Ok(info);
    }
    let header = |detail: String| (Reason::Header, detail, None);
    let chain = source
        .decode(value, chain_values)
        .map_err(|e| header(e.to_string()))?;
    let info = Rc::new(CertificateInfo::from_der(&chain[0]).map_err(|e| header(e.to_string()))?);
    let certs = chain
        .iter()
        .map(|der| X509Ref::from_der(der).ok_or_else(|| header("not a certificate".into())))
        .collect::<Result<Vec<_>, _>>()?;
    match verify_chain(store, &certs) {
        Ok(valid) => {
            VERIFIED.with(|verified| verified.borrow_mut().insert(key, valid, info.clone()));
            Ok(info)
        }
        Err((code, depth, text))
            if depth == 0
                && (code == X509_V_ERR_CERT_HAS_EXPIRED as c_int
                    || code == X509_V_ERR_CERT_NOT_YET_VALID as c_int) =>
        {
            Err((Reason::Expired, text, Some(info)))
        }
        Err((_, depth, text)) => Err(header(format!("verify failed at depth {depth}: {text}"))),
    }
}

/// An owned OpenSSL certificate.
struct X509Ref(*mut X509);

impl X509Ref {
    fn from_der(der: &[u8]) -> Option<Self> {
        let len = c_long::try_from(der.len()).ok()?;
        let mut p = der.as_ptr();
        // SAFETY: d2i reads at most `len` bytes from `p`; the result is a new certificate.
        let x509 = unsafe { d2i_X509(ptr::null_mut(), &raw mut p, len) };
        if x509.is_null() {
            // SAFETY: plain OpenSSL call; drops the parse errors of this request.
            unsafe { ERR_clear_error() };
            return None;
        }
        Some(Self(x509))
    }
}

impl Drop for X509Ref {
    fn drop(&mut self) {
        // SAFETY: owned certificate from d2i_X509.
        unsafe { X509_free(self.0) };
    }
}

/// Verifies `certs[0]` against `store` with the others as untrusted intermediates, for the
/// `sslclient` purpose, the depth and the security level, as nginx verifies client
/// certificates. The window in which the verified chain is valid, Unix seconds; errors: code,
/// depth, text.
fn verify_chain(
    store: &TrustStore,
    certs: &[X509Ref],
) -> Result<(i64, i64), (c_int, c_int, String)> {
    let internal = || (-1, 0, "out of memory".to_owned());
    // SAFETY: the stack and context are freed below on every path; the certificates outlive
    // them (owned by `certs`), and the stack does not own its elements.
    unsafe {
        let untrusted = OPENSSL_sk_new_null();
        if untrusted.is_null() {
            return Err(internal());
        }
        let ctx = X509_STORE_CTX_new();
        let mut result = Err(internal());
        let pushed = certs[1..]
            .iter()
            .all(|c| OPENSSL_sk_push(untrusted, c.0.cast::<c_void>()) > 0);
        if pushed
            && !ctx.is_null()
            && X509_STORE_CTX_init(ctx, store.store, certs[0].0, untrusted.cast()) == 1
            && X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT as c_int) == 1
        {
            X509_STORE_CTX_set_depth(ctx, store.depth);
            X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx), store.level);
            result = if X509_verify_cert(ctx) == 1 {
                chain_validity(ctx).ok_or_else(internal)
            } else {
                let code = X509_STORE_CTX_get_error(ctx);
                let text = CStr::from_ptr(X509_verify_cert_error_string(c_long::from(code)))
                    .to_string_lossy()
                    .into_owned();
                Err((code, X509_STORE_CTX_get_error_depth(ctx), text))
            };
        }
        X509_STORE_CTX_free(ctx);
        OPENSSL_sk_free(untrusted);
        ERR_clear_error();
        result
    }
}

/// The latest notBefore and the earliest notAfter of the chain `ctx` verified, Unix seconds.
///
/// # Safety
/// `ctx` must be a store context whose `X509_verify_cert` succeeded.
unsafe fn chain_validity(ctx: *mut X509_STORE_CTX) -> Option<(i64, i64)> {
    // SAFETY: the chain belongs to `ctx` (caller); its certificates live as long as it does.
    unsafe {
        let chain = X509_STORE_CTX_get0_chain(ctx).cast::<OPENSSL_STACK>();
        let mut window = (i64::MIN, i64::MAX);
        for i in 0..OPENSSL_sk_num(chain) {
            let cert = OPENSSL_sk_value(chain, i).cast::<X509>();
            window.0 = window.0.max(unix_time(X509_get0_notBefore(cert))?);
            window.1 = window.1.min(unix_time(X509_get0_notAfter(cert))?);
        }
        (window.0 <= window.1).then_some(window)
    }
}

/// An ASN.1 time as Unix seconds.
///
/// # Safety
/// `time` must be null or a valid ASN.1 time.
unsafe fn unix_time(time: *const ASN1_TIME) -> Option<i64> {
    let (mut days, mut seconds) = (0, 0);
    if time.is_null() {
        return None;
    }
    // SAFETY: a null `from` means now; `time` is valid (caller).
    if unsafe { ASN1_TIME_diff(&raw mut days, &raw mut seconds, ptr::null(), time) } != 1 {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    i64::try_from(now)
        .ok()?
        .checked_add(i64::from(days) * 86_400 + i64::from(seconds))
}

/// The values of the forwarded header that this request carried, kept past its removal.
#[derive(Default)]
struct TakenHeaders(Vec<(String, Vec<Vec<u8>>)>);

/// The cleanup handler that marks the request's [`TakenHeaders`]; always read from this
/// static, so the stored and the compared pointers are the same value.
static DROP_TAKEN: unsafe extern "C" fn(*mut c_void) = drop_taken;

unsafe extern "C" fn drop_taken(data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: the cleanup's data is only ever a Box made in `taken_headers`.
        drop(unsafe { Box::from_raw(data.cast::<TakenHeaders>()) });
    }
}

/// The request's taken headers, kept in a pool cleanup (as the realip module keeps its
/// context) so that they survive internal redirects, which clear module contexts.
fn taken_headers(pool: *mut ngx_pool_t) -> Option<&'static mut TakenHeaders> {
    // SAFETY: the pool's cleanup list is a valid chain; ours holds a TakenHeaders, freed
    // only with the pool, which outlives the request's use of it.
    unsafe {
        let mut cln = (*pool).cleanup;
        while let Some(c) = cln.as_ref() {
            if c.handler.is_some_and(|h| h as usize == DROP_TAKEN as usize) {
                return c.data.cast::<TakenHeaders>().as_mut();
            }
            cln = c.next;
        }
        let cln = ngx_pool_cleanup_add(pool, 0).as_mut()?;
        let taken = Box::into_raw(Box::<TakenHeaders>::default());
        cln.data = taken.cast();
        cln.handler = Some(DROP_TAKEN);
        taken.as_mut()
    }
}

/// Takes every `name` header out of the request (on first use) and returns their values.
/// `Err` only when memory runs out.
pub fn take_header<'a>(r: &mut Request, name: &str) -> Result<&'a [Vec<u8>], ()> {
    let r: &mut ngx_http_request_t = r.as_mut();
    let taken = taken_headers(r.pool).ok_or(())?;
    if let Some(i) = taken
        .0
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Ok(&taken.0[i].1);
    }
    // SAFETY: the request's header list and pool are valid for the request.
    let values = unsafe { remove_headers(&mut r.headers_in.headers, r.pool, name) }?;
    taken.0.push((name.to_owned(), values));
    Ok(taken.0.last().map_or(&[], |(_, v)| v.as_slice()))
}

/// Removes the `name` headers from `list` without moving any element, since the request
/// keeps pointers to elements (`r->headers_in.host`, ...): the remaining elements are
/// relinked as runs, each run a list part of its own.
///
/// # Safety
/// `list` must be a valid list of `ngx_table_elt_t` allocated from `pool`.
unsafe fn remove_headers(
    list: &mut ngx_list_t,
    pool: *mut ngx_pool_t,
    name: &str,
) -> Result<Vec<Vec<u8>>, ()> {
    let mut removed = Vec::new();
    let mut runs: Vec<(*mut ngx_table_elt_t, usize)> = Vec::new();
    let mut part: *mut ngx_list_part_t = &raw mut list.part;
    // SAFETY: (whole body) parts and elements are those of the valid list.
    unsafe {
        while let Some(p) = part.as_mut() {
            let elts = p.elts.cast::<ngx_table_elt_t>();
            let mut run_start = None;
            for i in 0..p.nelts {
                let h = &mut *elts.add(i);
                if h.key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
                    removed.push(h.value.as_bytes().to_vec());
                    h.hash = 0;
                    if let Some(start) = run_start.take() {
                        runs.push((elts.add(start), i - start));
                    }
                } else if run_start.is_none() {
                    run_start = Some(i);
                }
            }
            if let Some(start) = run_start {
                runs.push((elts.add(start), p.nelts - start));
            }
            part = p.next;
        }
        if removed.is_empty() {
            return Ok(removed);
        }
        let Some((&(first, first_len), rest)) = runs.split_first() else {
            // Nothing left: a fresh array, so that later pushes have room.
            let elts = ngx_palloc(pool, list.nalloc * list.size);
            if elts.is_null() {
                return Err(());
            }
            list.part = ngx_list_part_t {
                elts,
                nelts: 0,
                next: ptr::null_mut(),
            };
            list.last = &raw mut list.part;
            return Ok(removed);
        };
        let mut parts = Vec::with_capacity(rest.len());
        for &(elts, nelts) in rest {
            let p = ngx_palloc(pool, size_of::<ngx_list_part_t>()).cast::<ngx_list_part_t>();
            if p.is_null() {
                return Err(());
            }
            p.write(ngx_list_part_t {
                elts: elts.cast(),
                nelts,
                next: ptr::null_mut(),
            });
            parts.push(p);
        }
        list.part = ngx_list_part_t {
            elts: first.cast(),
            nelts: first_len,
            next: ptr::null_mut(),
        };
        let mut last: *mut ngx_list_part_t = &raw mut list.part;
        let mut last_len = first_len;
        for (p, &(_, nelts)) in parts.into_iter().zip(rest) {
            (*last).next = p;
            last = p;
            last_len = nelts;
        }
        list.last = last;
        // The last run may end before its array does: claiming it full makes the next push
        // start a new part instead of writing past the run.
        list.nalloc = last_len;
        Ok(removed)
    }
}
