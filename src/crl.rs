//! `auth_cert_crl`: CRL files read at configuration load, their signatures verified with
//! nginx's OpenSSL against the CAs trusted where the directive applies, and re-read by each
//! worker, without a reload, when the file changes.
//!
//! One [`CrlFile`] per file and configuration, shared by every location that names the file.
//! While the configuration is merged, each location adds the CA stores it trusts
//! ([`register`]); after the merge ([`load_all`]) every file is read and each CRL must verify
//! against one of them. Each worker (or the single process with `master_process off`) then
//! runs a timer ([`Refresh`], held by the module's main configuration and armed in
//! [`init_process`]) that stats each file once per `refresh`; a changed file is read and
//! verified again and replaces the CRLs in force, a bad one is logged and ignored. Requests and
//! resumptions only take the CRLs in force ([`CrlFile::current`]): no file access.

use core::cell::{Cell, RefCell, UnsafeCell};
use core::ffi::c_long;
use core::{mem, ptr};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

use ngx::ffi::{
    d2i_X509_CRL, i2d_X509, ngx_add_timer, ngx_conf_full_name, ngx_conf_t, ngx_cycle, ngx_cycle_t,
    ngx_del_timer, ngx_event_t, ngx_log_t, ngx_msec_t, ngx_process, ngx_str_t, ngx_time,
    ERR_clear_error, OPENSSL_sk_num, OPENSSL_sk_value, SSL_SESSION_get0_peer, X509_CRL_free,
    X509_CRL_get_issuer, X509_CRL_verify, X509_NAME_cmp, X509_OBJECT_get0_X509, X509_STORE_free,
    X509_STORE_get0_objects, X509_STORE_up_ref, X509_get0_pubkey, X509_get_key_usage,
    X509_get_subject_name, KU_CRL_SIGN, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN,
    NGX_OK, NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER, SSL, SSL_SESSION, X509, X509_OBJECT,
    X509_STORE,
};
use ngx::http::HttpModuleMainConf;
use ngx::ngx_log_error;

use auth_cert_core::directive::Directive;
use auth_cert_core::revocation::{pem_crls, utc_text, Crl, RevocationList};
use auth_cert_core::settings::CrlSource;

use crate::{ex_data, tls, Module};

/// A CA store a CRL file trusts, with a reference of its own.
#[derive(Debug)]
struct Store(*mut X509_STORE);

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the reference taken with X509_STORE_up_ref in `register`.
        unsafe { X509_STORE_free(self.0) };
    }
}

/// What tells that a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(metadata: &fs::Metadata) -> Self {
        Stamp {
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
            size: metadata.size(),
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

/// The CRLs of one file, and what keeps them current.
#[derive(Debug)]
pub struct CrlFile {
    /// The full path.
    path: String,
    /// The shortest `refresh=` of the directives naming the file.
    refresh: Cell<i64>,
    /// The CA stores trusted by the locations naming the file.
    stores: RefCell<Vec<Store>>,
    /// The CRLs in force.
    list: RefCell<Rc<RevocationList>>,
    /// The file as last read (or last refused).
    stamp: Cell<Option<Stamp>>,
    /// When this worker's timer next looks at the file.
    next_check: Cell<i64>,
}

/// The timer that keeps the files of a configuration current in a worker. The module's main
/// configuration holds it, so it lives in the configuration's pool: when the pool is freed (a
/// worker's exit), dropping it takes the timer out of the worker's timers first.
#[derive(Debug)]
pub struct Refresh {
    /// Every file of the configuration.
    files: Vec<Rc<CrlFile>>,
    /// The timer; nginx writes it while it is armed.
    event: UnsafeCell<ngx_event_t>,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh {
            files: Vec::new(),
            // SAFETY: ngx_event_t is a C struct of integers, bit fields, nullable pointers and
            // an optional function pointer, for which all zeroes is the unarmed event nginx's
            // own modules get from ngx_pcalloc.
            event: UnsafeCell::new(unsafe { mem::zeroed() }),
        }
    }
}

impl Drop for Refresh {
    fn drop(&mut self) {
        let event = self.event.get_mut();
        if event.timer_set() != 0 {
            // SAFETY: armed by `start` in this process, in this process's timers, which outlive
            // every configuration.
            unsafe { ngx_del_timer(event) };
        }
    }
}

impl Refresh {
    /// The files the timer keeps current (postconfiguration, before any worker runs).
    pub fn set_files(&mut self, files: Vec<Rc<CrlFile>>) {
        self.files = files;
    }

    /// Arms the timer in a process that serves requests, for a first check at once (the file
    /// may have changed since the configuration was read). Nothing without CRL files.
    ///
    /// # Safety
    /// `cycle` must be the cycle whose main configuration holds `self`, and this process's
    /// timers must be initialised (the event modules' `init_process` has run).
    unsafe fn start(&self, cycle: *mut ngx_cycle_t) {
        if self.files.is_empty() {
            return;
        }
        let event = self.event.get();
        // SAFETY: caller; the event lives in the configuration, as long as the cycle whose
        // `new_log` it logs to, and `Drop` disarms it before it goes. nginx's timers touch only
        // the event, never the files, which `on_timer` reads through `data`.
        unsafe {
            (*event).handler = Some(on_timer);
            (*event).data = ptr::from_ref(self).cast_mut().cast();
            (*event).log = &raw mut (*cycle).new_log;
            // A graceful shutdown does not wait for this timer.
            (*event).set_cancelable(1);
            ngx_add_timer(event, 0);
        }
    }
}

/// When a process starts: a worker, or the single process of `master_process off`, arms the
/// timer of its configuration's CRL files; the master and the cache processes do not serve
/// requests and do not look at them.
///
/// # Safety
/// `cycle` must be the cycle the process runs, its event modules initialised.
pub unsafe fn init_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: set once by nginx before the process's modules are initialised.
    let process = unsafe { ngx_process };
    if process != NGX_PROCESS_WORKER as usize && process != NGX_PROCESS_SINGLE as usize {
        return;
    }
    // SAFETY: caller; the module's main configuration of that cycle, when it has `http`.
    if let Some(conf) = unsafe { cycle.as_ref() }.and_then(Module::main_conf) {
        // SAFETY: caller.
        unsafe { conf.crl.start(cycle) };
    }
}

/// The timer: checks each file whose `refresh` is due, then sleeps until the next one is.
unsafe extern "C" fn on_timer(event: *mut ngx_event_t) {
    // SAFETY: nginx calls the handler with the event `Refresh::start` armed; its `data` is that
    // `Refresh`, live while the timer is armed (its `Drop` disarms it). Only the files are
    // borrowed: the event itself is written through `event`.
    let (files, log) = unsafe { (&(*(*event).data.cast::<Refresh>()).files, (*event).log) };
    let now = ngx_time();
    let mut next = i64::MAX;
    for file in files {
        // Due, or the clock went back by more than `refresh` since the last check.
        let next_check = file.next_check.get();
        if now >= next_check || next_check.saturating_sub(now) > file.refresh.get() {
            file.next_check.set(now.saturating_add(file.refresh.get()));
            file.check(log, now);
        }
        next = next.min(file.next_check.get());
    }
    // At least one second (every `refresh` is), at most a day, well inside what nginx's timers
    // compare on 32 bits: waking up early only finds nothing due.
    let seconds = next.saturating_sub(now).clamp(1, 24 * 60 * 60);
    let delay = ngx_msec_t::try_from(seconds * 1000).unwrap_or(1000);
    // SAFETY: the event of this handler, which nginx disarmed before calling it.
    unsafe { ngx_add_timer(event, delay) };
}

thread_local! {
    /// The files of the configuration being loaded, by full path.
    static LOADING: RefCell<HashMap<String, Rc<CrlFile>>> = RefCell::default();
}

/// Forgets the files of a configuration that failed to load (preconfiguration).
pub fn start_configuration() {
    LOADING.with(|files| files.borrow_mut().clear());
}

/// The file of `source` for a location that trusts `stores` (null ones are skipped): the CA
/// stores of its server's `ssl_client_certificate` and `ssl_trusted_certificate`, and of its
/// `auth_cert_header`.
pub fn register(
    cf: &ngx_conf_t,
    source: &CrlSource,
    stores: &[*mut X509_STORE],
) -> Result<Rc<CrlFile>, String> {
    let mut name = ngx_str_t {
        len: source.file.len(),
        data: source.file.as_ptr().cast_mut(),
    };
    // SAFETY: cf->cycle is the cycle being configured; nginx only reads `name` and replaces
    // it with a full path allocated in the cycle pool when it is relative.
    if unsafe { ngx_conf_full_name(cf.cycle, &raw mut name, 1) } != NGX_OK as isize {
        return Err(format!("cannot resolve \"{}\"", source.file));
    }
    let path = String::from_utf8_lossy(name.as_bytes()).into_owned();
    let file = LOADING.with(|files| {
        files
            .borrow_mut()
            .entry(path.clone())
            .or_insert_with(|| {
                Rc::new(CrlFile {
                    path,
                    refresh: Cell::new(source.refresh),
                    stores: RefCell::default(),
                    list: RefCell::default(),
                    stamp: Cell::new(None),
                    next_check: Cell::new(0),
                })
            })
            .clone()
    });
    file.refresh.set(file.refresh.get().min(source.refresh));
    let mut known = file.stores.borrow_mut();
    for &store in stores {
        if store.is_null() || known.iter().any(|s| ptr::eq(s.0, store)) {
            continue;
        }
        // SAFETY: a live store of the configuration; the reference is released on drop.
        if unsafe { X509_STORE_up_ref(store) } != 1 {
            return Err("cannot reference the trusted CAs".to_owned());
        }
        known.push(Store(store));
    }
    drop(known);
    Ok(file)
}

/// Reads and verifies every file of the configuration (postconfiguration), and returns them.
/// The error names the directive and the file.
pub fn load_all() -> Result<Vec<Rc<CrlFile>>, String> {
    let files: Vec<Rc<CrlFile>> =
        LOADING.with(|files| files.borrow_mut().drain().map(|(_, f)| f).collect());
    for file in &files {
        let (list, stamp) = file
            .read()
            .map_err(|e| format!("\"{}\" \"{}\": {e}", Directive::Crl.name(), file.path))?;
        *file.list.borrow_mut() = Rc::new(list);
        file.stamp.set(Some(stamp));
    }
    Ok(files)
}

/// Whether a session offered for resumption on `ssl` holds a client certificate that one of
/// `files` revokes; then its resumption is refused, so that the client makes a full handshake
/// (logged at `info`). Every CRL file of the configuration counts: a refused resumption only
/// costs a full handshake, after which each request is checked against its location's CRLs.
///
/// # Safety
/// `ssl` must be a live connection in its handshake and `session` a live session.
pub unsafe fn session_revoked(
    files: &[Rc<CrlFile>],
    ssl: *mut SSL,
    session: *mut SSL_SESSION,
) -> bool {
    if files.is_empty() || session.is_null() {
        return false;
    }
    // SAFETY: caller; the certificate stays owned by the session.
    let peer = unsafe { SSL_SESSION_get0_peer(session) };
    if peer.is_null() {
        return false;
    }
    let Some(info) = der_of(peer).and_then(|der| tls::parse(&der)) else {
        return false;
    };
    // SAFETY: caller: a connection of nginx has its ngx_connection_t, whose log lives as long
    // as it; else the cycle's log.
    let log = unsafe {
        ex_data::connection(ssl)
            .as_ref()
            .map_or_else(|| (*ngx_cycle).log, |c| c.log)
    };
    let Some(revocation) = files.iter().find_map(|file| file.current().check(&info)) else {
        return false;
    };
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "auth_cert: session not resumed: {}",
        revocation.describe(&info)
    );
    true
}

impl CrlFile {
    /// The CRLs in force, as the worker's timer last left them.
    pub fn current(&self) -> Rc<RevocationList> {
        self.list.borrow().clone()
    }

    /// Stats the file; reads and verifies it again when it changed, and swaps it in if it is
    /// good. Warns of each CRL in force past its nextUpdate at `now`. Problems go to `log`.
    fn check(&self, log: *mut ngx_log_t, now: i64) {
        let stamp = match fs::metadata(&self.path) {
            Ok(metadata) => Some(Stamp::of(&metadata)),
            Err(e) => {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "auth_cert: \"{}\" \"{}\": {}; the CRLs in force stay",
                    Directive::Crl.name(),
                    self.path,
                    e
                );
                None
            }
        };
        if stamp.is_some() && stamp != self.stamp.get() {
            match self.read() {
                Ok((list, stamp)) => {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        log,
                        "auth_cert: \"{}\" \"{}\" re-read: {} CRLs, {} revoked certificates",
                        Directive::Crl.name(),
                        self.path,
                        list.crls().len(),
                        list.crls().iter().map(Crl::len).sum::<usize>()
                    );
                    *self.list.borrow_mut() = Rc::new(list);
                    self.stamp.set(Some(stamp));
                }
                Err(e) => {
                    ngx_log_error!(
                        NGX_LOG_ERR,
                        log,
                        "auth_cert: \"{}\" \"{}\" refused: {}; the CRLs in force stay",
                        Directive::Crl.name(),
                        self.path,
                        e
                    );
                    // Read again once the file changes again, not at every refresh.
                    self.stamp.set(stamp);
                }
            }
        }
        for crl in self.list.borrow().outdated(now) {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "auth_cert: \"{}\" \"{}\": the CRL of \"{}\" is past its nextUpdate {}; it is \
                 still applied",
                Directive::Crl.name(),
                self.path,
                crl.issuer.escape_debug(),
                utc_text(crl.next_update.unwrap_or_default())
            );
        }
    }

    /// Reads the file: every CRL must parse and verify.
    fn read(&self) -> Result<(RevocationList, Stamp), String> {
        let metadata = fs::metadata(&self.path).map_err(|e| e.to_string())?;
        let text = fs::read(&self.path).map_err(|e| e.to_string())?;
        let ders = pem_crls(&text).map_err(|e| e.to_string())?;
        let mut crls = Vec::with_capacity(ders.len());
        for (i, der) in ders.iter().enumerate() {
            let mut crl = Crl::from_der(der, None).map_err(|e| format!("CRL #{}: {e}", i + 1))?;
            let ca = self.verify(der).ok_or_else(|| {
                format!(
                    "the CRL of \"{}\" does not verify against the trusted CAs",
                    crl.issuer.escape_debug()
                )
            })?;
            crl.issued_by(&ca).map_err(|e| e.to_string())?;
            crls.push(crl);
        }
        Ok((RevocationList::new(crls), Stamp::of(&metadata)))
    }

    /// The DER certificate of a trusted CA whose name is the CRL's issuer and whose key
    /// verifies its signature.
    fn verify(&self, der: &[u8]) -> Option<Vec<u8>> {
        let len = c_long::try_from(der.len()).ok()?;
        let mut p = der.as_ptr();
        // SAFETY: `p` points at `len` bytes; the CRL is freed below.
        let crl = unsafe { d2i_X509_CRL(ptr::null_mut(), &raw mut p, len) };
        if crl.is_null() {
            // SAFETY: plain OpenSSL call.
            unsafe { ERR_clear_error() };
            return None;
        }
        let mut found = None;
        'stores: for store in self.stores.borrow().iter() {
            // SAFETY: a live store, referenced by this file; one process, one thread.
            let objects = unsafe { X509_STORE_get0_objects(store.0) }.cast();
            // SAFETY: the store's objects stack.
            let count = unsafe { OPENSSL_sk_num(objects) };
            for i in 0..count {
                // SAFETY: `i` is an index of the stack, whose elements are X509_OBJECTs;
                // X509_OBJECT_get0_X509 is null for the objects that are not certificates.
                let ca: *mut X509 = unsafe {
                    X509_OBJECT_get0_X509(OPENSSL_sk_value(objects, i).cast::<X509_OBJECT>())
                };
                // SAFETY: a certificate of the store and the CRL parsed above, both live. A CA
                // whose key usage extension lacks cRLSign does not sign CRLs (RFC 5280
                // 4.2.1.3); X509_get_key_usage is all bits without the extension.
                let verified = !ca.is_null()
                    && unsafe {
                        X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0
                            && X509_get_key_usage(ca) & KU_CRL_SIGN != 0
                            && !X509_get0_pubkey(ca).is_null()
                            && X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1
                    };
                if verified {
                    found = der_of(ca);
                    if found.is_some() {
                        break 'stores;
                    }
                }
            }
        }
        // SAFETY: the CRL made above, no longer used; clears the errors of failed attempts.
        unsafe {
            X509_CRL_free(crl);
            ERR_clear_error();
        }
        found
    }
}

/// The DER encoding of a certificate.
fn der_of(cert: *mut X509) -> Option<Vec<u8>> {
    // SAFETY: a live certificate; with a null output, i2d_X509 returns the length only.
    let len = usize::try_from(unsafe { i2d_X509(cert, ptr::null_mut()) }).ok()?;
    let mut der = vec![0u8; len];
    let mut out = der.as_mut_ptr();
    // SAFETY: `der` has the room i2d_X509 asked for.
    let written = unsafe { i2d_X509(cert, &raw mut out) };
    (usize::try_from(written).ok()? == len).then_some(der)
}
