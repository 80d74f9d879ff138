//! The client certificate of a TLS connection, read once and kept with the connection.
//!
//! The parsed certificate is stored in the `SSL` object's ex_data, so every request of a
//! keep-alive connection and every stream of an HTTP/2 connection shares one parse; it is
//! freed with the connection's pool (see [`crate::ex_data`]). The connections of a worker that present the same
//! certificate share one parse too ([`ParsedCertificates`]).

use core::cell::RefCell;
use core::ffi::c_long;
use core::ptr;
use std::rc::Rc;

use auth_cert_core::cert::{CertificateInfo, ParsedCertificates};
use auth_cert_core::decision::{PeerCertificate, Verified};
use ngx::ffi::{
    i2d_X509, SSL_get1_peer_certificate, SSL_get_verify_result, X509_free, SSL, X509_V_OK,
};

use crate::ex_data::Slot;

/// The parsed client certificates of the connections.
pub static PEERS: Slot<SSL, PeerCertificate> = Slot::new();

thread_local! {
    /// The certificates of the worker's live connections (a worker runs on one thread).
    static PARSED: RefCell<ParsedCertificates> = RefCell::default();
}

/// The certificate of DER `der`, parsed once for all the connections that present it.
pub fn parse(der: &[u8]) -> Option<Rc<CertificateInfo>> {
    PARSED.with(|parsed| parsed.borrow_mut().get_or_parse(der).ok())
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
        if len <= 0 || i2d_X509(x509, &raw mut out) != len {
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
        (true, Some(info)) => PeerCertificate::Verified(Verified::new(info)),
        (true, None) => PeerCertificate::Unparseable,
        (false, info) => PeerCertificate::Unverified(info),
    }
}
