//! The token directives of one configuration level: parsing and merging.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::amr::AmrRule;
use super::key::{load_key, LoadSigner, TokenKey};
use crate::directive::Directive;
use crate::time;

/// `auth_cert_token_ttl` when not set: five minutes.
pub const DEFAULT_TTL: i64 = 300;

/// Claims the module sets itself; `auth_cert_token_claim` cannot replace them.
const RESERVED_CLAIMS: [&str; 10] = [
    "sub",
    "iat",
    "nbf",
    "exp",
    "jti",
    "auth_time",
    "amr",
    "cnf",
    "iss",
    "aud",
];

/// `auth_cert_login`: how the login endpoint hands out the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// A JSON document.
    Json,
    /// A redirect to this URL with the token in the fragment.
    Redirect(String),
}

impl Login {
    pub fn parse(args: &[&str]) -> Result<Self, String> {
        match args {
            [] | ["json"] => Ok(Self::Json),
            [word] => match word.strip_prefix("redirect=") {
                Some(url) if url.is_empty() || url.contains('#') => Err(format!(
                    "invalid redirect URL \"{url}\", it must be non-empty and have no fragment"
                )),
                Some(url) if url.bytes().any(|b| b.is_ascii_control() || b == b' ') => {
                    Err(format!("invalid redirect URL \"{}\"", url.escape_debug()))
                }
                Some(url) => Ok(Self::Redirect(url.to_owned())),
                None => Err(format!(
                    "invalid value \"{word}\", it must be \"json\" or \"redirect=URL\""
                )),
            },
            _ => Err("invalid number of arguments".into()),
        }
    }
}

/// An extra claim of `auth_cert_token_claim`, its value as written (it may hold variables,
/// which the nginx side evaluates per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTemplate {
    pub name: String,
    pub value: String,
}

/// The serial number of the next [`TokenSettings`] made in this process.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// The token directives of one configuration level.
#[derive(Debug)]
pub struct TokenSettings {
    /// Unique in the process: it names these settings in the token cache, which outlives a
    /// configuration, so that a later configuration's settings never find its tokens (an
    /// address could be reused). A clone gets its own.
    pub(super) serial: u64,
    /// Signing keys: the first signs, all of them are published (secrets excepted).
    pub keys: Vec<Arc<TokenKey>>,
    pub(super) ttl: Option<i64>,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub claims: Option<Vec<ClaimTemplate>>,
    /// `auth_cert_token_amr`: the policies that show a hardware key or a card.
    pub amr: Option<Vec<AmrRule>>,
    /// Makes the signers of `auth_cert_token_key`: the module's, OpenSSL.
    pub signer: Option<LoadSigner>,
    /// Content handlers: never inherited, as nginx's own content handlers.
    pub login: Option<Login>,
    pub jwks: bool,
}

/// Where nothing sets [`TokenSettings::signer`]: none, or in the unit tests the RustCrypto one.
fn default_signer() -> Option<LoadSigner> {
    #[cfg(test)]
    return Some(super::rustcrypto::load);
    #[cfg(not(test))]
    None
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            keys: Vec::new(),
            ttl: None,
            issuer: None,
            audience: None,
            claims: None,
            amr: None,
            signer: default_signer(),
            login: None,
            jwks: false,
        }
    }
}

impl Clone for TokenSettings {
    fn clone(&self) -> Self {
        TokenSettings {
            keys: self.keys.clone(),
            ttl: self.ttl,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            claims: self.claims.clone(),
            amr: self.amr.clone(),
            signer: self.signer,
            login: self.login.clone(),
            jwks: self.jwks,
            ..TokenSettings::default()
        }
    }
}

impl TokenSettings {
    /// The serial number of these settings, unique in the process.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn ttl(&self) -> i64 {
        self.ttl.unwrap_or(DEFAULT_TTL)
    }

    /// The key that signs, when keys are configured.
    pub fn signing_key(&self) -> Option<&TokenKey> {
        self.keys.first().map(|k| &**k)
    }

    /// Applies a token directive; relative key file names are found under `prefix` (nginx's
    /// configuration prefix).
    pub fn apply(
        &mut self,
        directive: Directive,
        args: &[&str],
        prefix: &Path,
    ) -> Result<(), String> {
        let name = directive.name();
        let duplicate = || format!("\"{name}\" directive is duplicate");
        let count = || format!("invalid number of arguments in \"{name}\" directive");
        let both = || "\"auth_cert_login\" and \"auth_cert_jwks\" exclude each other".to_owned();
        match (directive, args) {
            (Directive::TokenKey, [file, options @ ..]) => {
                let load = self
                    .signer
                    .ok_or_else(|| format!("no token signer in \"{name}\" directive"))?;
                let key = load_key(file, options, prefix, load)
                    .map_err(|e| format!("{e} in \"{name}\" directive"))?;
                if self.keys.iter().any(|k| k.kid == key.kid) {
                    return Err(format!(
                        "duplicate kid \"{}\" in \"{name}\" directive",
                        key.kid
                    ));
                }
                self.keys.push(Arc::new(key));
            }
            (Directive::TokenTtl, [word]) => {
                if self.ttl.is_some() {
                    return Err(duplicate());
                }
                let ttl = time::parse(word).ok().filter(|&s| s > 0);
                self.ttl =
                    Some(ttl.ok_or_else(|| {
                        format!("invalid value \"{word}\" in \"{name}\" directive")
                    })?);
            }
            (Directive::TokenIssuer, [word]) => {
                if self.issuer.is_some() {
                    return Err(duplicate());
                }
                self.issuer = Some((*word).to_owned());
            }
            (Directive::TokenAudience, [_, ..]) => {
                if self.audience.is_some() {
                    return Err(duplicate());
                }
                self.audience = Some(args.iter().map(|&a| a.to_owned()).collect());
            }
            (Directive::TokenClaim, [claim, value]) => {
                if claim.is_empty() || RESERVED_CLAIMS.contains(claim) {
                    return Err(format!(
                        "claim \"{claim}\" cannot be set in \"{name}\" directive"
                    ));
                }
                let claims = self.claims.get_or_insert_with(Vec::new);
                if claims.iter().any(|c| c.name == *claim) {
                    return Err(format!(
                        "duplicate claim \"{claim}\" in \"{name}\" directive"
                    ));
                }
                claims.push(ClaimTemplate {
                    name: (*claim).to_owned(),
                    value: (*value).to_owned(),
                });
            }
            (Directive::TokenAmr, _) => {
                let rule = AmrRule::parse(name, args)?;
                let rules = self.amr.get_or_insert_with(Vec::new);
                if rules.iter().any(|r| r.method == rule.method) {
                    return Err(format!(
                        "duplicate method \"{}\" in \"{name}\" directive",
                        rule.method.name()
                    ));
                }
                rules.push(rule);
            }
            (Directive::Login, _) => {
                if self.login.is_some() {
                    return Err(duplicate());
                }
                if self.jwks {
                    return Err(both());
                }
                self.login = Some(Login::parse(args).map_err(|e| {
                    if e.starts_with("invalid number") {
                        count()
                    } else {
                        format!("{e} in \"{name}\" directive")
                    }
                })?);
            }
            (Directive::Jwks, []) => {
                if self.jwks {
                    return Err(duplicate());
                }
                if self.login.is_some() {
                    return Err(both());
                }
                self.jwks = true;
            }
            _ => return Err(count()),
        }
        Ok(())
    }

    /// Inherits what this level does not set; the content handlers are not inherited.
    pub fn merge(&mut self, parent: &TokenSettings) {
        if self.keys.is_empty() {
            self.keys.clone_from(&parent.keys);
        }
        if self.ttl.is_none() {
            self.ttl = parent.ttl;
        }
        if self.issuer.is_none() {
            self.issuer.clone_from(&parent.issuer);
        }
        if self.audience.is_none() {
            self.audience.clone_from(&parent.audience);
        }
        if self.claims.is_none() {
            self.claims.clone_from(&parent.claims);
        }
        if self.amr.is_none() {
            self.amr.clone_from(&parent.amr);
        }
    }

    /// Checks a merged location: the content handlers need keys to work with.
    pub fn check(&self) -> Result<(), String> {
        if self.login.is_some() && self.keys.is_empty() {
            return Err("\"auth_cert_login\" requires \"auth_cert_token_key\"".into());
        }
        if self.jwks && !self.keys.iter().any(|k| k.is_public()) {
            return Err(
                "\"auth_cert_jwks\" requires an \"auth_cert_token_key\" with a public key".into(),
            );
        }
        Ok(())
    }
}
