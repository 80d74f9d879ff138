//! Signed identity tokens (JWT), one concern a file: signing keys ([`key`]), the directives
//! ([`settings`]), the claims of an authentication ([`claims`]) and its `amr` ([`amr`]), the JWS serialization and a
//! token's lifetime ([`jws`]), the JWKS document ([`jwks`]) and the reuse rule ([`cache`]).
//!
//! Nothing here knows nginx: the module hands in key file bytes, the authenticated certificate,
//! the evaluated extra claims and the time, and gets back tokens and JSON documents.

mod amr;
mod cache;
mod claims;
mod jwks;
mod jws;
mod key;
#[cfg(test)]
mod rustcrypto;
mod settings;

pub use amr::{has_card_eku, AmrRule, Method};
pub use cache::{CacheKey, TokenCache, CACHE_BYTES, CACHE_ENTRIES};
pub use claims::{claims, Subject};
pub use jws::{issue, Issued};
pub use key::{
    Algorithm, KeyFormat, KeyMaterial, LoadSigner, PublicKey, Signer, TokenKey, MIN_HMAC_BYTES,
    MIN_RSA_BITS,
};
pub use settings::{ClaimTemplate, Login, TokenSettings, DEFAULT_TTL};

#[cfg(test)]
mod tests;
