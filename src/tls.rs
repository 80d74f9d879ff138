//! The client certificate of a TLS connection, read once and kept with the connection.
//!
//! The parsed certificate is stored in the `SSL` object's ex_data, so every request of a
//! keep-alive connection and every stream of an HTTP/2 connection shares one parse, and
//! OpenSSL frees it with the connection. The connections of a worker that present the same
//! certificate share one parse too ([`ParsedCertificates`]).

use core::cell::RefCell;
use core::ffi::{c_int, c_long, c_void};
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{AtomicI32, Ordering};
use std::rc::Rc;

use ngx::ffi::{
    i2d_X509, CRYPTO_get_ex_new_index, SSL_get1_peer_certificate, SSL_get_ex_data,
    SSL_get_verify_result, SSL_set_ex_data, X509_free, CRYPTO_EX_DATA, CRYPTO_EX_INDEX_SSL, SSL,
    X509_V_OK,
};

use crate::cert::{CertificateInfo, ParsedCertificates};
use crate::policy::Policy;
use crate::verdict::Reason;

/// What the connection's handshake established about the client certificate.
#[derive(Debug)]
pub enum PeerCertificate {
    /// The client sent none.
    Absent,
    /// Sent, but the chain did not verify (`ssl_verify_client optional_no_ca`). Its facts
    /// serve the log only, never a variable.
    Unverified(Option<Rc<CertificateInfo>>),
    /// Verified, but not parseable by this module.
    Unparseable,
    Verified(Verified),
}

/// A policy's decision on a certificate: the identity, or why it is refused.
pub type Decision = Result<Rc<str>, Reason>;

/// A verified certificate, with the last policy decision made on it.
#[derive(Debug)]
pub struct Verified {
    pub info: Rc<CertificateInfo>,
    /// The requests of a connection mostly meet the same location: its policy's decision is
    /// kept, by the address of the policy (configurations outlive their connections).
    decision: RefCell<Option<(*const Policy, Decision)>>,
}

impl Verified {
    /// `policy.judge` of this certificate, made once per connection and policy.
    pub fn judge(&self, policy: &Policy) -> Decision {
        if let Some((judged_by, decision)) = &*self.decision.borrow() {
            if ptr::eq(*judged_by, policy) {
                return decision.clone();
            }
        }
        let decision = policy.judge(&self.info).map(Rc::from);
        *self.decision.borrow_mut() = Some((policy, decision.clone()));
        decision
    }
}

/// A value kept with each TLS connection, in the `SSL` object's ex_data, made on first use
/// and freed by OpenSSL with the connection: every request of a keep-alive connection and
/// every stream of an HTTP/2 connection share it.
pub struct ConnectionSlot<T> {
    index: AtomicI32,
    value: PhantomData<fn() -> T>,
}

impl<T> ConnectionSlot<T> {
    pub const fn new() -> Self {
        ConnectionSlot {
            index: AtomicI32::new(-1),
            value: PhantomData,
        }
    }

    /// Reserves the slot; called at configuration time, before workers start.
    pub fn init(&self) -> bool {
        if self.index.load(Ordering::Relaxed) >= 0 {
            return true;
        }
        // SAFETY: plain OpenSSL call; `free_boxed::<T>` matches CRYPTO_EX_free.
        let index = unsafe {
            CRYPTO_get_ex_new_index(
                CRYPTO_EX_INDEX_SSL as c_int,
                0,
                ptr::null_mut(),
                None,
                None,
                Some(free_boxed::<T>),
            )
        };
        self.index.store(index, Ordering::Relaxed);
        index >= 0
    }

    /// The value of the connection `ssl`, made by `make` on first use; `None` when it cannot
    /// be kept.
    ///
    /// # Safety
    /// `ssl` must be the live `SSL` object of a connection; the result must not be used after
    /// the connection is closed.
    pub unsafe fn get_or_make<'a>(&self, ssl: *mut SSL, make: impl FnOnce() -> T) -> Option<&'a T> {
        let index = self.index.load(Ordering::Relaxed);
        if index < 0 {
            return None;
        }
        // SAFETY: `ssl` is valid (caller) and the slot holds null or a `T` boxed below.
        let kept = unsafe { SSL_get_ex_data(ssl, index) }.cast::<T>();
        if let Some(value) = unsafe { kept.as_ref() } {
            return Some(value);
        }
        let value = Box::into_raw(Box::new(make()));
        // SAFETY: on failure the box is ours to free; on success OpenSSL frees it through
        // `free_boxed` when the connection goes, which outlives every request using it.
        unsafe {
            if SSL_set_ex_data(ssl, index, value.cast()) == 0 {
                drop(Box::from_raw(value));
                return None;
            }
            Some(&*value)
        }
    }
}

/// The `CRYPTO_EX_free` of ex_data slots that hold a `Box<T>`.
pub unsafe extern "C" fn free_boxed<T>(
    _parent: *mut c_void,
    data: *mut c_void,
    _ad: *mut CRYPTO_EX_DATA,
    _index: c_int,
    _argl: c_long,
    _argp: *mut c_void,
) {
    if !data.is_null() {
        // SAFETY: registered only for slots that hold pointers from `Box::<T>::into_raw`.
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
    }
}

/// The parsed client certificates of the connections.
pub static PEERS: ConnectionSlot<PeerCertificate> = ConnectionSlot::new();

thread_local! {
    /// The certificates of the worker's live connections (a worker runs on one thread).
    static PARSED: RefCell<ParsedCertificates> = RefCell::default();
}

/// The client certificate of `ssl`, read on first use; `None` when it cannot be kept.
///
/// # Safety
/// `ssl` must be the live `SSL` object of a connection whose handshake has completed; the
/// result must not be used after the connection is closed.
pub unsafe fn peer<'a>(ssl: *mut SSL) -> Option<&'a PeerCertificate> {
    // SAFETY: as required of the caller; `read_peer` releases the certificate it reads.
    unsafe { PEERS.get_or_make(ssl, || read_peer(ssl)) }
}

/// # Safety
/// `ssl` must be a live `SSL` object.
unsafe fn read_peer(ssl: *mut SSL) -> PeerCertificate {
    // SAFETY: returns a new reference or null; freed below.
    let x509 = unsafe { SSL_get1_peer_certificate(ssl) };
    if x509.is_null() {
        return PeerCertificate::Absent;
    }
    // SAFETY: i2d with a null output pointer only measures; with a buffer of that length it
    // writes exactly that many bytes.
    let der = unsafe {
        let len = i2d_X509(x509, ptr::null_mut());
        let mut der = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let mut out = der.as_mut_ptr();
        if len <= 0 || i2d_X509(x509, &mut out) != len {
            der.clear();
        }
        X509_free(x509);
        der
    };
    // SAFETY: valid `ssl`; the result is the verification outcome of this session.
    let verified = unsafe { SSL_get_verify_result(ssl) } == X509_V_OK as c_long;
    let info = PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        let info = parsed.get_or_parse(&der).ok()?;
        if verified {
            parsed.keep(&info);
        }
        Some(info)
    });
    match (verified, info) {
        (true, Some(info)) => PeerCertificate::Verified(Verified {
            info,
            decision: RefCell::new(None),
        }),
        (true, None) => PeerCertificate::Unparseable,
        (false, info) => PeerCertificate::Unverified(info),
    }
}
