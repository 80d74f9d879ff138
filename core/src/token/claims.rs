//! The claims of a token: the authentication's (`sub`, `auth_time`, `amr`, `cnf`), the
//! location's (`iss`, `aud`) and the configured extra claims.

use serde_json::{json, Map, Value};

use super::amr;
use super::key::b64;
use super::settings::TokenSettings;
use crate::cert::CertificateInfo;

/// The certificate authentication a token is issued for.
pub struct Subject<'a> {
    pub identity: &'a str,
    pub cert: &'a CertificateInfo,
    /// Unix time of the handshake that authenticated the certificate.
    pub auth_time: Option<i64>,
}

/// The claims every token of this authentication shares (everything but `iat`, `nbf`, `exp`
/// and `jti`). `extra` holds the evaluated `auth_cert_token_claim` values.
pub fn claims(
    settings: &TokenSettings,
    subject: &Subject<'_>,
    extra: &[(&str, String)],
) -> Map<String, Value> {
    let mut claims = Map::new();
    for (name, value) in extra {
        claims.insert((*name).to_owned(), Value::String(value.clone()));
    }
    claims.insert("sub".into(), subject.identity.into());
    if let Some(auth_time) = subject.auth_time {
        claims.insert("auth_time".into(), auth_time.into());
    }
    // RFC 8176 methods: x509 certificate, and a hardware key or a smartcard on evidence.
    let amr = amr::methods(settings.amr.as_deref().unwrap_or_default(), subject.cert);
    claims.insert("amr".into(), json!(amr));
    // RFC 8705 section 3.1: the certificate the token is bound to.
    let thumbprint = b64(subject.cert.fingerprint());
    claims.insert("cnf".into(), json!({ "x5t#S256": thumbprint }));
    if let Some(issuer) = &settings.issuer {
        claims.insert("iss".into(), issuer.as_str().into());
    }
    match settings.audience.as_deref() {
        Some([one]) => {
            claims.insert("aud".into(), one.as_str().into());
        }
        Some(many) if !many.is_empty() => {
            claims.insert("aud".into(), json!(many));
        }
        _ => {}
    }
    claims
}
