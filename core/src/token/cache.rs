//! The reuse rule: a token serves every request of the same authentication until half its
//! lifetime has passed.

use core::ptr;
use std::rc::Rc;

use super::jws::Issued;
use super::settings::TokenSettings;
use crate::cert::CertificateInfo;

/// How many differently configured tokens one connection keeps for reuse.
pub(super) const CACHE_ENTRIES: usize = 4;

/// What makes two requests' tokens interchangeable: the same location settings (key, TTL,
/// issuer, audience, claim names), the same authentication, the same expiry bound and the
/// same values of the configured claims. Compared field by field: building the claims just
/// to compare them would cost more than the reuse saves.
#[derive(Debug, Clone)]
pub struct CacheKey {
    /// By address: a configuration outlives the connections it serves.
    pub(super) settings: *const TokenSettings,
    pub(super) identity: Rc<str>,
    pub(super) cert: Rc<CertificateInfo>,
    pub(super) auth_time: Option<i64>,
    pub(super) limit: i64,
    pub(super) extra: Vec<String>,
}

impl CacheKey {
    pub fn new(
        settings: &TokenSettings,
        identity: Rc<str>,
        cert: Rc<CertificateInfo>,
        auth_time: Option<i64>,
        limit: i64,
        extra: Vec<String>,
    ) -> Self {
        CacheKey {
            settings,
            identity,
            cert,
            auth_time,
            limit,
            extra,
        }
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.settings, other.settings)
            && self.identity == other.identity
            && self.cert.fingerprint() == other.cert.fingerprint()
            && self.auth_time == other.auth_time
            && self.limit == other.limit
            && self.extra == other.extra
    }
}

/// The tokens of one TLS connection, so that keep-alive requests and HTTP/2 streams of one
/// authentication share a signature.
#[derive(Debug, Default)]
pub struct TokenCache {
    pub(super) entries: Vec<(CacheKey, Issued)>,
}

impl TokenCache {
    /// The token for `key`: the kept one while it is reusable, else a new one from `sign`.
    pub fn get_or_issue(
        &mut self,
        key: CacheKey,
        now: i64,
        sign: impl FnOnce() -> Result<Issued, String>,
    ) -> Result<Issued, String> {
        self.entries.retain(|(_, issued)| issued.is_reusable(now));
        if let Some((_, issued)) = self.entries.iter().find(|(k, _)| *k == key) {
            return Ok(issued.clone());
        }
        let issued = sign()?;
        if self.entries.len() >= CACHE_ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push((key, issued.clone()));
        Ok(issued)
    }
}
