//! The shared memory zone of `auth_cert_zone`: its directive, its creation (and reuse across
//! reloads), and the worker's view of it. The layout and everything done with it are the
//! core's ([`auth_cert_core::zone`], [`auth_cert_core::metrics`]).
//!
//! A worker finds the zone of the cycle it serves once, when it starts ([`init_process`]),
//! and counts with atomics in it: no lock on the request path.

use core::ffi::{c_char, c_void};
use core::ptr;
use core::slice;
use core::sync::atomic::{AtomicPtr, Ordering};

use auth_cert_core::decision::{Action, Evaluation, Forwarded};
use auth_cert_core::directive::Directive;
use auth_cert_core::metrics::{Counters, ForwardedResult};
use auth_cert_core::zone::{self, Header, Kind, Mark, Region};
use ngx::core::{Pool, Status, NGX_CONF_ERROR};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_shared_memory_add, ngx_shm_zone_t,
    ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc, ngx_slab_pool_t, ngx_str_t, RAND_bytes,
    NGX_LOG_EMERG,
};
use ngx::http::{HttpModule, HttpModuleMainConf, Request};
use ngx::{ngx_conf_log_error, ngx_log_error};

use crate::Module;

/// The module's `http` configuration.
#[derive(Debug)]
pub struct MainConf {
    /// `auth_cert_zone`, or null.
    zone: *mut ngx_shm_zone_t,
    /// Where the first directive that needs the zone was written, for the error when none is
    /// declared.
    needs_zone: Option<(&'static str, String, usize)>,
    /// Whether `auth_cert_logout` is written: sessions must then be checked at resumption.
    pub logout: bool,
    /// The worker's timer over the `auth_cert_crl` files of the configuration.
    pub crl: crate::crl::Refresh,
}

impl Default for MainConf {
    fn default() -> Self {
        Self {
            zone: ptr::null_mut(),
            needs_zone: None,
            logout: false,
            crl: crate::crl::Refresh::default(),
        }
    }
}

impl MainConf {
    /// Whether `auth_cert_zone` is declared.
    pub fn has_zone(&self) -> bool {
        !self.zone.is_null()
    }
}

/// The zone's region in this worker, or null without a zone.
static REGION: AtomicPtr<Region> = AtomicPtr::new(ptr::null_mut());
/// The zone's slab pool, whose mutex guards the marks.
static POOL: AtomicPtr<ngx_slab_pool_t> = AtomicPtr::new(ptr::null_mut());

/// The zone's region, when `auth_cert_zone` is declared.
pub fn region() -> Option<&'static Region> {
    // SAFETY: set by `init_process` to the region of the cycle this worker serves, which
    // lives (mapped, laid out by `init_zone`) as long as the worker; a `Region` is atomics and
    // plain numbers only, so sharing it between processes is sound.
    unsafe { REGION.load(Ordering::Relaxed).as_ref() }
}

/// The counters of the zone, when there is one.
pub fn counters() -> Option<&'static Counters> {
    region().map(|r| &r.counters)
}

/// Runs `f` on the zone's table of marks, under the zone's lock; `None` without a zone.
fn with_marks<T>(f: impl FnOnce(&mut [Mark]) -> T) -> Option<T> {
    let region = REGION.load(Ordering::Relaxed);
    let pool = POOL.load(Ordering::Relaxed);
    if region.is_null() || pool.is_null() {
        return None;
    }
    // SAFETY: `init_zone` laid out `capacity` marks right after the region, in the zone of
    // this worker's cycle; every worker reads or writes them only under the slab pool's
    // mutex, taken here, and `f` (the core's table operations) does not panic.
    unsafe {
        let capacity = usize::try_from((*region).header.capacity).unwrap_or(0);
        let marks = region.cast::<u8>().add(size_of::<Region>()).cast::<Mark>();
        ngx_shmtx_lock(&raw mut (*pool).mutex);
        let out = f(slice::from_raw_parts_mut(marks, capacity));
        ngx_shmtx_unlock(&raw mut (*pool).mutex);
        Some(out)
    }
}

/// Marks the authentication `id` ended (for `kind`) until `expires`: its sessions are not
/// resumed. `None` without a zone; `Some(true)` when a live mark made room for it (the zone
/// is full).
pub fn end(id: [u64; 2], expires: i64, kind: Kind) -> Option<bool> {
    let now = ngx::ffi::ngx_time();
    let dropped = with_marks(|table| zone::mark(table, id, expires, kind, now))?;
    if let (Some(expires), Some(region)) = (dropped, region()) {
        region.overflowed(expires);
    }
    Some(dropped.is_some())
}

/// Whether the authentication `id` was ended. Counts the refusal.
pub fn is_ended(id: [u64; 2]) -> bool {
    let now = ngx::ffi::ngx_time();
    match with_marks(|table| zone::marked(table, id, now)).flatten() {
        Some(kind) => {
            count(|c| c.refused(Kind::refusal(kind)));
            true
        }
        None => false,
    }
}

/// Whether step-up applies: a zone whose marks are all kept. While a mark dropped for room
/// could still refuse a session, the strictest age applies at the handshake instead.
pub fn step_up() -> bool {
    region().is_some_and(|r| !r.overflowing(ngx::ffi::ngx_time()))
}

/// A new random id for an authentication; `[0, 0]` (no id) if OpenSSL has no randomness.
pub fn new_id() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    // SAFETY: OpenSSL writes the 16 bytes of the buffer.
    if unsafe { RAND_bytes(bytes.as_mut_ptr(), 16) } != 1 {
        return [0, 0];
    }
    let (a, b) = bytes.split_at(8);
    [
        u64::from_ne_bytes(a.try_into().unwrap_or_default()),
        u64::from_ne_bytes(b.try_into().unwrap_or_default()),
    ]
}

/// Counts with the zone's counters, when there is a zone.
pub fn count(f: impl FnOnce(&Counters)) {
    if let Some(counters) = counters() {
        f(counters);
    }
}

/// Notes a request the access phase decided on: counts its outcome and its
/// re-authentication, and marks `authentication` (the id and expiry of a re-authenticated TLS
/// connection's authentication: step-up), whose sessions are then refused, so that the
/// redirect ends in a full handshake.
pub fn note_request(
    evaluation: &Evaluation,
    action: Action,
    authentication: Option<([u64; 2], i64)>,
) {
    count(|c| {
        c.request(
            evaluation
                .outcome
                .as_ref()
                .map(|_| evaluation.age)
                .map_err(|r| *r),
        );
        if action == Action::Reauthenticate {
            c.reauth();
        }
    });
    if let Some((id, expires)) = authentication.filter(|_| action == Action::Reauthenticate) {
        end(id, expires, Kind::Stepup);
    }
}

/// Counts what a request forwarded (nothing when it forwarded nothing).
pub fn count_forwarded(forwarded: &Result<Forwarded, ()>) {
    if let Some(result) = forwarded.as_ref().ok().and_then(ForwardedResult::of) {
        count(|c| c.forwarded(result));
    }
}

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: nginx calls this with a valid configuration, whose pool outlives the conf.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    pool.allocate(MainConf::default()).cast()
}

/// After the `http` block is read: a directive that needs the zone without one is an error.
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the configuration and this module's main conf.
    let (cf, conf) = unsafe { (&*cf, &*conf.cast::<MainConf>()) };
    if let (true, Some((name, file, line))) = (conf.zone.is_null(), &conf.needs_zone) {
        ngx_log_error!(
            NGX_LOG_EMERG,
            cf.log,
            "\"{}\" in {}:{} requires \"{}\" in the http block",
            name,
            file,
            line,
            Directive::Zone.name()
        );
        return NGX_CONF_ERROR;
    }
    ptr::null_mut()
}

/// Notes that the directive being read needs the zone: checked once the `http` block is read.
///
/// # Safety
/// `cf` must be the configuration being read, inside the `http` block.
pub unsafe fn require_zone(cf: &ngx_conf_t, directive: Directive) {
    let Some(conf) = Module::main_conf_mut(cf) else {
        return;
    };
    conf.logout |= directive == Directive::Logout;
    if conf.needs_zone.is_some() {
        return;
    }
    // SAFETY: caller; while a directive is read, cf->conf_file is the file being read.
    if let Some(file) = unsafe { cf.conf_file.as_ref() } {
        conf.needs_zone = Some((
            directive.name(),
            String::from_utf8_lossy(file.file.name.as_bytes()).into_owned(),
            file.line,
        ));
    }
}

/// The handler of `auth_cert_zone name:size`.
pub unsafe extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf, whose args hold the name and
    // one argument (checked by nginx), and this module's main conf.
    let (cf_ref, conf) = unsafe { (&*cf, &mut *conf.cast::<MainConf>()) };
    // SAFETY: as above.
    let words = unsafe { (*cf_ref.args).as_slice::<ngx_str_t>() };
    let name = Directive::Zone.name();
    if !conf.zone.is_null() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{}\" directive is duplicate", name);
        return NGX_CONF_ERROR;
    }
    let Some(arg) = words.get(1) else {
        return NGX_CONF_ERROR;
    };
    let parsed = arg
        .to_str()
        .map_err(|_| "invalid UTF-8 in directive".to_owned())
        .and_then(zone::parse);
    let (zone_name, size) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{} in \"{}\" directive", message, name);
            return NGX_CONF_ERROR;
        }
    };
    // The name is the start of the argument, which lives in the configuration pool.
    let mut zone_name = ngx_str_t {
        len: zone_name.len(),
        data: arg.data,
    };
    // SAFETY: valid cf; the tag is this module, as nginx's modules tag their zones.
    let shm_zone = unsafe {
        ngx_shared_memory_add(
            cf,
            &raw mut zone_name,
            size,
            ptr::from_ref(Module::module()).cast_mut().cast(),
        )
    };
    // SAFETY: null, or the zone nginx keeps for this cycle.
    let Some(shm_zone_ref) = (unsafe { shm_zone.as_mut() }) else {
        return NGX_CONF_ERROR;
    };
    if !shm_zone_ref.data.is_null() || shm_zone_ref.init.is_some() {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "zone \"{}\" is already used",
            String::from_utf8_lossy(zone_name.as_bytes())
        );
        return NGX_CONF_ERROR;
    }
    shm_zone_ref.init = Some(init_zone);
    conf.zone = shm_zone;
    ptr::null_mut()
}

/// Lays out a new zone, or takes over the region of the previous cycle's zone of the same
/// name and size (`data`), whose counters and marks then carry on across the reload.
unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls this with its zone, mapped at `shm.addr`, whose slab pool it has
    // initialised (for a new zone) at the start of the mapping.
    let shm_zone = unsafe { &mut *shm_zone };
    let log = shm_zone.shm.log;
    if !data.is_null() {
        // SAFETY: `data` is the region this function laid out for the previous cycle.
        let header = unsafe { &*data.cast::<Header>() };
        if header.magic != zone::MAGIC || header.version != zone::VERSION {
            ngx_log_error!(
                NGX_LOG_EMERG,
                log,
                "auth_cert: zone \"{}\" has another layout: change its name or size",
                String::from_utf8_lossy(shm_zone.shm.name.as_bytes())
            );
            return Status::NGX_ERROR.0;
        }
        shm_zone.data = data;
        return Status::NGX_OK.0;
    }
    let pool = shm_zone.shm.addr.cast::<ngx_slab_pool_t>();
    let capacity = zone::capacity(shm_zone.shm.size);
    let bytes = zone::region_bytes(capacity);
    // SAFETY: the zone's slab pool; nothing else allocates from it.
    let region = unsafe { ngx_slab_alloc(pool, bytes) }.cast::<Region>();
    if region.is_null() {
        ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "auth_cert: zone \"{}\" is too small",
            String::from_utf8_lossy(shm_zone.shm.name.as_bytes())
        );
        return Status::NGX_ERROR.0;
    }
    // SAFETY: `bytes` were just allocated for the region; all zeroes are valid counters and
    // empty marks, and the header is written next.
    unsafe {
        ptr::write_bytes(region.cast::<u8>(), 0, bytes);
        (*region).header = Header {
            magic: zone::MAGIC,
            version: zone::VERSION,
            capacity: capacity as u64,
        };
        (*pool).data = region.cast();
    }
    shm_zone.data = region.cast();
    Status::NGX_OK.0
}

/// When a worker starts: the region of the zone of the cycle it serves.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the cycle the worker runs; its zones are mapped and laid out.
    let zone = unsafe { cycle.as_ref() }
        .and_then(Module::main_conf)
        // SAFETY: the zone of this cycle, whose `data` `init_zone` set to the region.
        .and_then(|conf| unsafe { conf.zone.as_ref() });
    let (region, pool) = zone.map_or((ptr::null_mut(), ptr::null_mut()), |zone| {
        (
            zone.data.cast::<Region>(),
            zone.shm.addr.cast::<ngx_slab_pool_t>(),
        )
    });
    REGION.store(region, Ordering::Relaxed);
    POOL.store(pool, Ordering::Relaxed);
    Status::NGX_OK.0
}

/// The content handler of `auth_cert_metrics`: the counters in Prometheus text format.
pub unsafe extern "C" fn metrics_handler(r: *mut ngx::ffi::ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    metrics(unsafe { Request::from_ngx_http_request(r) }).0
}

fn metrics(r: &mut Request) -> Status {
    use ngx::http::{HTTPStatus, Method};
    let method = r.method();
    if method != Method::GET && method != Method::HEAD {
        return HTTPStatus::NOT_ALLOWED.into();
    }
    let Some(counters) = counters() else {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    };
    if !crate::http::add_response_header(r, "Cache-Control", "no-store") {
        return HTTPStatus::INTERNAL_SERVER_ERROR.into();
    }
    let body = counters.render();
    crate::http::send_response(
        r,
        HTTPStatus::OK,
        Some("text/plain; version=0.0.4; charset=utf-8"),
        body.as_bytes(),
    )
}
