//! Token inputs: key files (PEM or HMAC secret bytes) and the texts that become claims. Checks
//! that a key file is read or refused without panicking, and that claims built from any
//! identity and claim values are valid JSON that reads back the same.

#![no_main]

use std::rc::Rc;

use auth_cert_core::cert::CertificateBuilder;
use auth_cert_core::token::{claims, KeyMaterial, Signer, Subject, TokenKey, TokenSettings};
use libfuzzer_sys::fuzz_target;

/// The key material the core found, refused: the target exercises the core's reading of key
/// files (PEM, PKCS #8, SEC 1, PKCS #1 detection), not OpenSSL's.
fn no_signer(_: KeyMaterial<'_>) -> Result<Box<dyn Signer>, String> {
    Err("no signer".into())
}

fuzz_target!(|data: &[u8]| {
    let _ = TokenKey::from_pem(data, None, no_signer);
    let _ = TokenKey::from_secret(data, Some("k"), no_signer);
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let identity = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("x");
    let value = parts.next().unwrap_or("");
    let mut b = CertificateBuilder::default();
    b.fingerprint([7; 32]).validity(0, 1);
    let cert = Rc::new(b.build());
    let subject = Subject {
        identity,
        cert: &cert,
        auth_time: Some(1),
    };
    let map = claims(
        &TokenSettings::default(),
        &subject,
        &[(name, value.to_owned())],
    );
    let json = serde_json::to_string(&map).expect("claims serialize");
    let back: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).expect("claims are valid JSON");
    assert_eq!(back["sub"], identity);
});
