//! The JWS compact serialization of a token (RFC 7515 section 7.1) and its lifetime.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::key::{b64, TokenKey};

impl TokenKey {
    /// Signs `claims` with this key; the header names the key by `kid`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut token = format!("{}.{}", self.header, b64(&payload));
        let signature = self.signing.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// A signed token and its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl Issued {
    /// Reused until half its lifetime has passed: a client always gets a token with at least
    /// half of its lifetime left.
    pub(super) fn is_reusable(&self, now: i64) -> bool {
        now < self.issued_at + (self.expires_at - self.issued_at) / 2
    }
}

/// Signs a new token with `claims` at `now`, expiring after `ttl` seconds but never after
/// `limit` (the end of the certificate's validity or of the authentication's allowed age).
pub fn issue(
    key: &TokenKey,
    claims: &Map<String, Value>,
    now: i64,
    ttl: i64,
    limit: i64,
) -> Result<Issued, String> {
    let expires_at = now.saturating_add(ttl).min(limit);
    if expires_at <= now {
        return Err("the authentication allows no token lifetime".into());
    }
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|e| format!("no random bytes for jti: {e}"))?;
    let mut claims = claims.clone();
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), expires_at.into());
    claims.insert("jti".into(), b64(&jti).into());
    Ok(Issued {
        token: key.sign(&claims)?,
        issued_at: now,
        expires_at,
    })
}
