//! Signed identity tokens (JWT): signing keys, claims, signing, the JWKS document and the rule
//! that reuses a token on a connection.
//!
//! Nothing here knows nginx: the module hands in key file bytes, the authenticated certificate,
//! the evaluated extra claims and the time, and gets back tokens and JSON documents. Keys are
//! parsed once, at configuration time, by the RustCrypto crates, which also sign; a token is
//! the JWS compact serialization of a fixed header and the claims (RFC 7515 section 7.1).

use core::ptr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{DecodePrivateKey as _, PrivateKeyInfo};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::rand_core::OsRng;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::cert::CertificateInfo;
use crate::policy;

/// `auth_cert_token_ttl` when not set: five minutes.
pub const DEFAULT_TTL: i64 = 300;
/// The shortest RSA modulus accepted for signing (NIST SP 800-57, RFC 7518 section 3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// The shortest HMAC secret: the SHA-256 output size (RFC 7518 section 3.2).
pub const MIN_HMAC_BYTES: usize = 32;
/// How many differently configured tokens one connection keeps for reuse.
const CACHE_ENTRIES: usize = 4;

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

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// Key algorithms and curves people try, named in the error that refuses them.
const UNSUPPORTED_NAMES: [(&str, &str); 7] = [
    ("1.3.132.0.34", "EC curve P-384"),
    ("1.3.132.0.35", "EC curve P-521"),
    ("1.3.132.0.10", "EC curve secp256k1"),
    ("1.3.101.113", "Ed448"),
    ("1.3.101.110", "X25519"),
    ("1.2.840.10040.4.1", "DSA"),
    ("1.2.840.113549.1.1.10", "RSA-PSS"),
];

/// A public key in JWK form (RFC 7517, 7518, 8037), or a secret for its thumbprint only.
enum Jwk {
    Ec { x: String, y: String },
    Okp { x: String },
    Rsa { n: String, e: String },
    Oct { k: String },
}

impl Jwk {
    /// The RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        // Every value is base64url or a fixed name, so no JSON escaping is needed.
        let canonical = match self {
            Self::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
            Self::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            Self::Oct { k } => format!(r#"{{"k":"{k}","kty":"oct"}}"#),
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    /// The members a JWKS publishes; `None` for a secret, which is never published.
    fn public_members(&self) -> Option<Map<String, Value>> {
        let value = match self {
            Self::Ec { x, y } => json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            Self::Okp { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            Self::Rsa { n, e } => json!({"kty": "RSA", "n": n, "e": e}),
            Self::Oct { .. } => return None,
        };
        match value {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWS algorithms of the keys the module signs with (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    EdDsa,
    Rs256,
    Hs256,
}

impl Algorithm {
    /// The `alg` of the JOSE header and of the JWKS.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Hs256 => "HS256",
        }
    }
}

/// A private key or secret, parsed once, ready to sign.
enum SigningKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    Rs256(rsa::pkcs1v15::SigningKey<Sha256>),
    Hs256(Hmac<Sha256>),
}

impl SigningKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Es256(_) => Algorithm::Es256,
            Self::EdDsa(_) => Algorithm::EdDsa,
            Self::Rs256(_) => Algorithm::Rs256,
            Self::Hs256(_) => Algorithm::Hs256,
        }
    }

    /// The JWS signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |e: rsa::signature::Error| format!("signing failed: {e}");
        Ok(match self {
            // RFC 7518 section 3.4: R and S, 32 bytes each; RFC 6979 deterministic nonces.
            Self::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.try_sign(message).map_err(failed)?;
                signature.to_bytes().to_vec()
            }
            Self::EdDsa(key) => key.sign(message).to_bytes().to_vec(),
            // With a random blinding factor against timing attacks on the private key.
            Self::Rs256(key) => key
                .try_sign_with_rng(&mut OsRng, message)
                .map_err(failed)?
                .to_vec(),
            Self::Hs256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        })
    }
}

/// One key of `auth_cert_token_key`.
pub struct TokenKey {
    pub kid: String,
    pub algorithm: Algorithm,
    /// RFC 7638 thumbprint of the key, also the default `kid`.
    pub thumbprint: String,
    signing: SigningKey,
    /// The JOSE header of every token signed with this key, base64url-encoded.
    header: String,
    /// What the JWKS publishes besides `kid`, `alg` and `use`; `None` for an HMAC secret.
    public: Option<Map<String, Value>>,
}

impl core::fmt::Debug for TokenKey {
    // The key material stays out of every debug output.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A private key in PEM: PKCS #8 (`PRIVATE KEY`), SEC 1 (`EC PRIVATE KEY`, P-256 only) or
    /// PKCS #1 (`RSA PRIVATE KEY`). Other PEM blocks (such as `EC PARAMETERS`) are skipped.
    pub fn from_pem(pem_text: &[u8], kid: Option<&str>) -> Result<Self, String> {
        let blocks = pem::parse_many(pem_text).map_err(|e| format!("not a PEM file: {e}"))?;
        if blocks.iter().any(|b| b.tag() == "ENCRYPTED PRIVATE KEY") {
            return Err("encrypted private keys are not supported".into());
        }
        let mut keys = blocks.iter().filter(|b| {
            matches!(
                b.tag(),
                "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY"
            )
        });
        let (Some(block), None) = (keys.next(), keys.next()) else {
            return Err(
                "expected exactly one \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" \
                 PEM block"
                    .into(),
            );
        };
        let der = block.contents();
        let (signing, jwk) = match block.tag() {
            "EC PRIVATE KEY" => ec_key(
                p256::SecretKey::from_sec1_der(der)
                    .map_err(|_| "not a valid P-256 EC private key")?,
            )?,
            "RSA PRIVATE KEY" => rsa_key(
                rsa::RsaPrivateKey::from_pkcs1_der(der)
                    .map_err(|e| format!("not a valid RSA private key: {e}"))?,
            )?,
            _ => pkcs8_key(der)?,
        };
        Ok(Self::new(signing, &jwk, kid))
    }

    /// An HMAC secret: the raw bytes of a file, used as they are.
    pub fn from_secret(secret: &[u8], kid: Option<&str>) -> Result<Self, String> {
        if secret.len() < MIN_HMAC_BYTES {
            return Err(format!(
                "HMAC secret of {} bytes is too short, at least {MIN_HMAC_BYTES} bytes are needed",
                secret.len()
            ));
        }
        let jwk = Jwk::Oct { k: b64(secret) };
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(Self::new(SigningKey::Hs256(mac), &jwk, kid))
    }

    fn new(signing: SigningKey, jwk: &Jwk, kid: Option<&str>) -> Self {
        let thumbprint = jwk.thumbprint();
        let kid = kid.map_or_else(|| thumbprint.clone(), str::to_owned);
        let algorithm = signing.algorithm();
        let header = json!({"typ": "JWT", "alg": algorithm.name(), "kid": kid});
        Self {
            header: b64(header.to_string().as_bytes()),
            kid,
            algorithm,
            thumbprint,
            signing,
            public: jwk.public_members(),
        }
    }

    /// Whether the JWKS publishes this key (every key but an HMAC secret).
    pub fn is_public(&self) -> bool {
        self.public.is_some()
    }

    /// Signs `claims` with this key; the header names the key by `kid`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut token = format!("{}.{}", self.header, b64(&payload));
        let signature = self.signing.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// This key's JWKS entry.
    fn jwk(&self) -> Option<Value> {
        let mut members = self.public.clone()?;
        members.insert("kid".into(), self.kid.clone().into());
        members.insert("alg".into(), self.algorithm.name().into());
        members.insert("use".into(), "sig".into());
        Some(Value::Object(members))
    }
}

type LoadedKey = (SigningKey, Jwk);

fn pkcs8_key(der: &[u8]) -> Result<LoadedKey, String> {
    let info =
        PrivateKeyInfo::try_from(der).map_err(|e| format!("not a valid PKCS #8 key: {e}"))?;
    let oid = info.algorithm.oid.to_string();
    match oid.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|c| c.to_string())
                .unwrap_or_default();
            if curve != OID_P256 {
                return Err(format!(
                    "unsupported key algorithm: {}, expected P-256",
                    unsupported_name(&curve)
                ));
            }
            ec_key(p256::SecretKey::from_pkcs8_der(der).map_err(|e| e.to_string())?)
        }
        OID_ED25519 => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
            Ok(ed25519_key(key))
        }
        OID_RSA => rsa_key(rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| e.to_string())?),
        _ => Err(format!(
            "unsupported key algorithm: {}, expected P-256, Ed25519 or RSA",
            unsupported_name(&oid)
        )),
    }
}

fn unsupported_name(oid: &str) -> String {
    UNSUPPORTED_NAMES
        .iter()
        .find(|(o, _)| *o == oid)
        .map_or_else(|| format!("OID {oid}"), |(_, name)| (*name).to_owned())
}

fn ec_key(key: p256::SecretKey) -> Result<LoadedKey, String> {
    let point = key.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err("invalid P-256 public point".into());
    };
    Ok((
        SigningKey::Es256(key.into()),
        Jwk::Ec {
            x: b64(x),
            y: b64(y),
        },
    ))
}

fn ed25519_key(key: ed25519_dalek::SigningKey) -> LoadedKey {
    let jwk = Jwk::Okp {
        x: b64(key.verifying_key().as_bytes()),
    };
    (SigningKey::EdDsa(key), jwk)
}

fn rsa_key(key: rsa::RsaPrivateKey) -> Result<LoadedKey, String> {
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {bits} bits is too weak, at least {MIN_RSA_BITS} bits are needed"
        ));
    }
    key.validate()
        .map_err(|e| format!("not a valid RSA private key: {e}"))?;
    let jwk = Jwk::Rsa {
        n: b64(&key.n().to_bytes_be()),
        e: b64(&key.e().to_bytes_be()),
    };
    Ok((SigningKey::Rs256(rsa::pkcs1v15::SigningKey::new(key)), jwk))
}

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

/// The token directives of one configuration level.
#[derive(Debug, Clone, Default)]
pub struct TokenSettings {
    /// Signing keys: the first signs, all of them are published (secrets excepted).
    pub keys: Vec<Arc<TokenKey>>,
    ttl: Option<i64>,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub claims: Option<Vec<ClaimTemplate>>,
    /// Content handlers: never inherited, as nginx's own content handlers.
    pub login: Option<Login>,
    pub jwks: bool,
}

impl TokenSettings {
    /// Whether `name` is one of the directives [`Self::apply`] takes.
    pub fn is_directive(name: &str) -> bool {
        matches!(
            name,
            "auth_cert_token_key"
                | "auth_cert_token_ttl"
                | "auth_cert_token_issuer"
                | "auth_cert_token_audience"
                | "auth_cert_token_claim"
                | "auth_cert_login"
                | "auth_cert_jwks"
        )
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
    pub fn apply(&mut self, name: &str, args: &[&str], prefix: &Path) -> Result<(), String> {
        let duplicate = || format!("\"{name}\" directive is duplicate");
        let count = || format!("invalid number of arguments in \"{name}\" directive");
        let both = || "\"auth_cert_login\" and \"auth_cert_jwks\" exclude each other".to_owned();
        match (name, args) {
            ("auth_cert_token_key", [file, options @ ..]) => {
                let key = load_key(file, options, prefix)
                    .map_err(|e| format!("{e} in \"{name}\" directive"))?;
                if self.keys.iter().any(|k| k.kid == key.kid) {
                    return Err(format!(
                        "duplicate kid \"{}\" in \"{name}\" directive",
                        key.kid
                    ));
                }
                self.keys.push(Arc::new(key));
            }
            ("auth_cert_token_ttl", [word]) => {
                if self.ttl.is_some() {
                    return Err(duplicate());
                }
                self.ttl =
                    Some(parse_seconds(word).filter(|&s| s > 0).ok_or_else(|| {
                        format!("invalid value \"{word}\" in \"{name}\" directive")
                    })?);
            }
            ("auth_cert_token_issuer", [word]) => {
                if self.issuer.is_some() {
                    return Err(duplicate());
                }
                self.issuer = Some((*word).to_owned());
            }
            ("auth_cert_token_audience", [_, ..]) => {
                if self.audience.is_some() {
                    return Err(duplicate());
                }
                self.audience = Some(args.iter().map(|&a| a.to_owned()).collect());
            }
            ("auth_cert_token_claim", [claim, value]) => {
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
            ("auth_cert_login", _) => {
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
            ("auth_cert_jwks", []) => {
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

    /// The JWKS document of the keys, in their configured order.
    pub fn jwks_document(&self) -> String {
        let keys: Vec<Value> = self.keys.iter().filter_map(|k| k.jwk()).collect();
        json!({ "keys": keys }).to_string()
    }
}

fn load_key(word: &str, options: &[&str], prefix: &Path) -> Result<TokenKey, String> {
    let mut kid = None;
    for option in options {
        match option.strip_prefix("kid=") {
            Some(id) if !id.is_empty() && kid.is_none() => kid = Some(id),
            _ => return Err(format!("invalid parameter \"{option}\"")),
        }
    }
    let (file, secret) = match word.strip_prefix("hmac:") {
        Some(file) => (file, true),
        None => (word, false),
    };
    if file.is_empty() {
        return Err(format!("invalid key file \"{word}\""));
    }
    let path = prefix.join(file);
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read \"{}\": {e}", path.display()))?;
    let key = if secret {
        TokenKey::from_secret(&bytes, kid)
    } else {
        TokenKey::from_pem(&bytes, kid)
    };
    key.map_err(|e| format!("invalid key \"{}\": {e}", path.display()))
}

/// A time in nginx's notation (`300`, `30s`, `5m`, `1h30m`, `2d`), in seconds.
pub fn parse_seconds(word: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut number: Option<i64> = None;
    for c in word.chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(i64::from(digit))?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    match number {
        Some(seconds) => total.checked_add(seconds),
        None if !word.is_empty() => Some(total),
        None => None,
    }
}

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
    // RFC 8176 methods: x509 certificate, proof of possession of its key, smartcard.
    let amr: &[&str] = if policy::is_smartcard(subject.cert) {
        &["sc", "hwk", "x509"]
    } else {
        &["hwk", "x509"]
    };
    claims.insert("amr".into(), json!(amr));
    // RFC 8705 section 3.1: the certificate the token is bound to.
    if let Some(digest) = hex_bytes(subject.cert.fingerprint()) {
        claims.insert("cnf".into(), json!({ "x5t#S256": b64(&digest) }));
    }
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

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
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
    fn is_reusable(&self, now: i64) -> bool {
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

/// What makes two requests' tokens interchangeable: the same location settings (key, TTL,
/// issuer, audience, claim names), the same authentication, the same expiry bound and the
/// same values of the configured claims. Compared field by field: building the claims just
/// to compare them would cost more than the reuse saves.
#[derive(Debug, Clone)]
pub struct CacheKey {
    /// By address: a configuration outlives the connections it serves.
    settings: *const TokenSettings,
    identity: Rc<str>,
    cert: Rc<CertificateInfo>,
    auth_time: Option<i64>,
    limit: i64,
    extra: Vec<String>,
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
    entries: Vec<(CacheKey, Issued)>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{CertificateBuilder, Field};
    use jsonwebtoken::{decode, decode_header, Algorithm as Alg, DecodingKey, Validation};
    use std::process::Command;

    /// Makes a key with the openssl command, as an administrator would.
    fn openssl_key(args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn genpkey(args: &[&str]) -> Vec<u8> {
        let mut all = vec!["genpkey"];
        all.extend_from_slice(args);
        openssl_key(&all)
    }

    fn ec() -> Vec<u8> {
        genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    }

    fn cert_builder() -> CertificateBuilder {
        let mut b = CertificateBuilder::default();
        b.fingerprint(&"00ff".repeat(16)).validity(0, 4_000_000_000);
        b
    }

    fn cert() -> CertificateInfo {
        cert_builder().build()
    }

    fn with_fingerprint(fingerprint: &str) -> Rc<CertificateInfo> {
        let mut b = CertificateBuilder::default();
        b.fingerprint(fingerprint);
        Rc::new(b.build())
    }

    fn jwk_value(settings: &TokenSettings, index: usize) -> Value {
        let doc: Value = serde_json::from_str(&settings.jwks_document()).unwrap();
        doc["keys"][index].clone()
    }

    fn decoding_key(jwk: &Value) -> DecodingKey {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        DecodingKey::from_jwk(&jwk).unwrap()
    }

    fn verify(token: &str, key: &DecodingKey, alg: Alg) -> Map<String, Value> {
        let mut validation = Validation::new(alg);
        // Fixed test times lie in the past; expiry is checked by the .t tests.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        decode::<Map<String, Value>>(token, key, &validation)
            .unwrap()
            .claims
    }

    fn settings_with(key: TokenKey) -> TokenSettings {
        TokenSettings {
            keys: vec![Arc::new(key)],
            ..Default::default()
        }
    }

    fn sign_and_verify(pem: &[u8], alg: Alg, kty: &str) {
        let key = TokenKey::from_pem(pem, None).unwrap();
        assert_eq!(key.algorithm.name(), format!("{alg:?}"));
        let settings = settings_with(key);
        let jwk = jwk_value(&settings, 0);
        assert_eq!(jwk["kty"], kty);
        assert_eq!(jwk["alg"], format!("{alg:?}"));
        assert_eq!(jwk["use"], "sig");
        let key = settings.signing_key().unwrap();
        assert_eq!(jwk["kid"], key.thumbprint.as_str());

        let cert = cert();
        let subject = Subject {
            identity: "jdoe",
            cert: &cert,
            auth_time: Some(1_700_000_000),
        };
        let base = claims(&settings, &subject, &[]);
        let now = 1_800_000_000;
        let issued = issue(key, &base, now, 300, i64::MAX).unwrap();
        let header = decode_header(&issued.token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.alg, alg);
        let claims = verify(&issued.token, &decoding_key(&jwk), alg);
        assert_eq!(claims["sub"], "jdoe");
        assert_eq!(claims["exp"], now + 300);

        // The independent thumbprint of jsonwebtoken agrees with ours (RFC 7638).
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        assert_eq!(
            parsed.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256),
            key.thumbprint
        );
    }

    #[test]
    fn es256_from_pkcs8_and_sec1() {
        sign_and_verify(&ec(), Alg::ES256, "EC");
        let sec1 = openssl_key(&["ecparam", "-genkey", "-name", "prime256v1"]);
        sign_and_verify(&sec1, Alg::ES256, "EC");
    }

    #[test]
    fn eddsa_from_pkcs8() {
        sign_and_verify(&genpkey(&["-algorithm", "ED25519"]), Alg::EdDSA, "OKP");
    }

    #[test]
    fn rs256_from_pkcs8_and_pkcs1() {
        let pem = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        sign_and_verify(&pem, Alg::RS256, "RSA");
        let dir = std::env::temp_dir().join(format!("token-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rsa.key");
        std::fs::write(&file, &pem).unwrap();
        let pkcs1 = openssl_key(&["rsa", "-traditional", "-in", file.to_str().unwrap()]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(String::from_utf8_lossy(&pkcs1).contains("RSA PRIVATE KEY"));
        sign_and_verify(&pkcs1, Alg::RS256, "RSA");
    }

    #[test]
    fn hs256_secret_is_never_published() {
        let secret = [7u8; 32];
        let settings = settings_with(TokenKey::from_secret(&secret, Some("s1")).unwrap());
        assert_eq!(settings.jwks_document(), r#"{"keys":[]}"#);
        assert!(settings.check().is_ok());
        let key = settings.signing_key().unwrap();
        let cert = cert();
        let subject = Subject {
            identity: "jdoe",
            cert: &cert,
            auth_time: None,
        };
        let issued = issue(key, &claims(&settings, &subject, &[]), 100, 60, i64::MAX).unwrap();
        let claims = verify(
            &issued.token,
            &DecodingKey::from_secret(&secret),
            Alg::HS256,
        );
        assert_eq!(claims["sub"], "jdoe");
        assert!(claims.get("auth_time").is_none());

        let jwks_only = TokenSettings {
            jwks: true,
            ..settings
        };
        assert_eq!(
            jwks_only.check().unwrap_err(),
            "\"auth_cert_jwks\" requires an \"auth_cert_token_key\" with a public key"
        );
    }

    #[test]
    fn weak_and_unsupported_keys_are_refused() {
        let short = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
        assert_eq!(
            TokenKey::from_pem(&short, None).unwrap_err(),
            "RSA key of 1024 bits is too weak, at least 2048 bits are needed"
        );
        let p384 = genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]);
        assert_eq!(
            TokenKey::from_pem(&p384, None).unwrap_err(),
            "unsupported key algorithm: EC curve P-384, expected P-256"
        );
        let ed448 = genpkey(&["-algorithm", "ED448"]);
        assert_eq!(
            TokenKey::from_pem(&ed448, None).unwrap_err(),
            "unsupported key algorithm: Ed448, expected P-256, Ed25519 or RSA"
        );
        assert_eq!(
            TokenKey::from_secret(b"short", None).unwrap_err(),
            "HMAC secret of 5 bytes is too short, at least 32 bytes are needed"
        );
        let err = TokenKey::from_pem(b"hello", None).unwrap_err();
        assert!(err.starts_with("expected exactly one"), "{err}");
        let cert_only = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = TokenKey::from_pem(cert_only, None).unwrap_err();
        assert!(err.starts_with("expected exactly one"), "{err}");
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            TokenKey::from_pem(encrypted, None).unwrap_err(),
            "encrypted private keys are not supported"
        );
        let garbage = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = TokenKey::from_pem(garbage, None).unwrap_err();
        assert!(err.starts_with("not a valid PKCS #8 key"), "{err}");
    }

    #[test]
    fn key_directive_reads_files_under_the_prefix() {
        let dir = std::env::temp_dir().join(format!("token-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("keys/ec.key"), ec()).unwrap();
        std::fs::write(dir.join("keys/secret"), [1u8; 40]).unwrap();
        std::fs::write(dir.join("keys/short"), [1u8; 8]).unwrap();

        let mut s = TokenSettings::default();
        s.apply("auth_cert_token_key", &["keys/ec.key", "kid=one"], &dir)
            .unwrap();
        s.apply(
            "auth_cert_token_key",
            &["hmac:keys/secret", "kid=two"],
            &dir,
        )
        .unwrap();
        assert_eq!(s.signing_key().unwrap().kid, "one");
        assert_eq!(s.keys[1].algorithm, Algorithm::Hs256);

        let err = s
            .apply("auth_cert_token_key", &["keys/ec.key", "kid=one"], &dir)
            .unwrap_err();
        assert_eq!(
            err,
            "duplicate kid \"one\" in \"auth_cert_token_key\" directive"
        );
        let err = s
            .apply("auth_cert_token_key", &["keys/missing.key"], &dir)
            .unwrap_err();
        let missing = dir.join("keys/missing.key");
        assert!(
            err.starts_with(&format!("cannot read \"{}\": ", missing.display())),
            "{err}"
        );
        assert!(
            err.ends_with(" in \"auth_cert_token_key\" directive"),
            "{err}"
        );
        let err = s
            .apply("auth_cert_token_key", &["hmac:keys/short"], &dir)
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "invalid key \"{}\": HMAC secret of 8 bytes is too short, at least 32 bytes \
                 are needed in \"auth_cert_token_key\" directive",
                dir.join("keys/short").display()
            )
        );
        let err = s
            .apply("auth_cert_token_key", &["keys/ec.key", "alg=ES512"], &dir)
            .unwrap_err();
        assert_eq!(
            err,
            "invalid parameter \"alg=ES512\" in \"auth_cert_token_key\" directive"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_directives() {
        let p = Path::new("/");
        let mut s = TokenSettings::default();
        assert_eq!(s.ttl(), DEFAULT_TTL);
        s.apply("auth_cert_token_ttl", &["1h30m"], p).unwrap();
        assert_eq!(s.ttl(), 5400);
        assert_eq!(
            s.apply("auth_cert_token_ttl", &["1m"], p).unwrap_err(),
            "\"auth_cert_token_ttl\" directive is duplicate"
        );
        let mut t = TokenSettings::default();
        for bad in ["0", "5x", "m", "", "99999999999999999999"] {
            assert_eq!(
                t.apply("auth_cert_token_ttl", &[bad], p).unwrap_err(),
                format!("invalid value \"{bad}\" in \"auth_cert_token_ttl\" directive")
            );
        }
        s.apply("auth_cert_token_audience", &["a", "b"], p).unwrap();
        s.apply("auth_cert_token_claim", &["role", "$x"], p)
            .unwrap();
        assert_eq!(
            s.apply("auth_cert_token_claim", &["role", "y"], p)
                .unwrap_err(),
            "duplicate claim \"role\" in \"auth_cert_token_claim\" directive"
        );
        assert_eq!(
            s.apply("auth_cert_token_claim", &["exp", "1"], p)
                .unwrap_err(),
            "claim \"exp\" cannot be set in \"auth_cert_token_claim\" directive"
        );
        assert_eq!(
            s.apply("auth_cert_token_claim", &["x"], p).unwrap_err(),
            "invalid number of arguments in \"auth_cert_token_claim\" directive"
        );
        assert_eq!(
            s.apply("auth_cert_jwks", &["x"], p).unwrap_err(),
            "invalid number of arguments in \"auth_cert_jwks\" directive"
        );
        s.apply("auth_cert_login", &[], p).unwrap();
        assert_eq!(s.login, Some(Login::Json));
        assert_eq!(
            s.check().unwrap_err(),
            "\"auth_cert_login\" requires \"auth_cert_token_key\""
        );
        assert_eq!(
            s.apply("auth_cert_jwks", &[], p).unwrap_err(),
            "\"auth_cert_login\" and \"auth_cert_jwks\" exclude each other"
        );
        assert_eq!(
            s.apply("auth_cert_login", &["json"], p).unwrap_err(),
            "\"auth_cert_login\" directive is duplicate"
        );

        let mut child = TokenSettings::default();
        child.merge(&s);
        assert_eq!(child.ttl(), 5400);
        assert_eq!(child.audience.as_deref().unwrap().len(), 2);
        assert_eq!(child.claims.as_ref().unwrap()[0].value, "$x");
        assert_eq!(child.login, None);
    }

    #[test]
    fn login_modes() {
        assert_eq!(Login::parse(&[]).unwrap(), Login::Json);
        assert_eq!(Login::parse(&["json"]).unwrap(), Login::Json);
        assert_eq!(
            Login::parse(&["redirect=https://app.example/cb"]).unwrap(),
            Login::Redirect("https://app.example/cb".into())
        );
        assert!(Login::parse(&["redirect=https://a/#x"]).is_err());
        assert!(Login::parse(&["redirect="]).is_err());
        assert!(Login::parse(&["html"]).is_err());
    }

    #[test]
    fn time_notation() {
        assert_eq!(parse_seconds("300"), Some(300));
        assert_eq!(parse_seconds("5m"), Some(300));
        assert_eq!(parse_seconds("1h30m10"), Some(5410));
        assert_eq!(parse_seconds("1w1d"), Some(8 * 86_400));
        assert_eq!(parse_seconds("1.5h"), None);
        assert_eq!(parse_seconds("h"), None);
    }

    #[test]
    fn every_claim() {
        let mut settings = settings_with(TokenKey::from_pem(&ec(), Some("k1")).unwrap());
        settings.issuer = Some("https://login.example".into());
        settings.audience = Some(vec!["api".into()]);
        let cert = cert();
        let subject = Subject {
            identity: "jdoe",
            cert: &cert,
            auth_time: Some(1_700_000_000),
        };
        let extra = [("role", "admin".to_owned())];
        let base = claims(&settings, &subject, &extra);
        let key = settings.signing_key().unwrap();
        let issued = issue(key, &base, 1_700_000_010, 300, i64::MAX).unwrap();
        let c = verify(
            &issued.token,
            &decoding_key(&jwk_value(&settings, 0)),
            Alg::ES256,
        );
        assert_eq!(c["sub"], "jdoe");
        assert_eq!(c["iat"], 1_700_000_010);
        assert_eq!(c["nbf"], 1_700_000_010);
        assert_eq!(c["exp"], 1_700_000_310);
        assert_eq!(c["auth_time"], 1_700_000_000);
        assert_eq!(c["amr"], json!(["hwk", "x509"]));
        assert_eq!(c["iss"], "https://login.example");
        assert_eq!(c["aud"], "api");
        assert_eq!(c["role"], "admin");
        assert_eq!(c["cnf"]["x5t#S256"], b64(&[0x00, 0xff].repeat(16)));
        assert_eq!(c["jti"].as_str().unwrap().len(), 22);

        settings.audience = Some(vec!["a".into(), "b".into()]);
        let mut smartcard = cert_builder();
        smartcard.add(Field::ExtendedKeyUsage, policy::OID_SMARTCARD_LOGON);
        let cert = smartcard.build();
        let subject = Subject {
            identity: "jdoe",
            cert: &cert,
            auth_time: None,
        };
        let base = claims(&settings, &subject, &[]);
        assert_eq!(base["aud"], json!(["a", "b"]));
        assert_eq!(base["amr"], json!(["sc", "hwk", "x509"]));
    }

    #[test]
    fn lifetime_is_bounded_by_the_limit() {
        let settings = settings_with(TokenKey::from_secret(&[3u8; 32], None).unwrap());
        let key = settings.signing_key().unwrap();
        let base = Map::new();
        let issued = issue(key, &base, 1000, 300, 1100).unwrap();
        assert_eq!(issued.expires_at, 1100);
        assert!(issue(key, &base, 1000, 300, 1000).is_err());
        let a = issue(key, &base, 1000, 300, i64::MAX).unwrap();
        let b = issue(key, &base, 1000, 300, i64::MAX).unwrap();
        assert_ne!(a.token, b.token, "jti differs");
    }

    #[test]
    fn cache_reuses_until_half_the_lifetime() {
        let settings = settings_with(TokenKey::from_secret(&[3u8; 32], None).unwrap());
        let key = settings.signing_key().unwrap();
        let cert = with_fingerprint(&"ab".repeat(32));
        let cache_key = |identity: &str| {
            CacheKey::new(
                &settings,
                identity.into(),
                cert.clone(),
                None,
                i64::MAX,
                vec![],
            )
        };
        let base = Map::new();
        let mut cache = TokenCache::default();
        let signed = core::cell::Cell::new(0);
        let get = |cache: &mut TokenCache, now: i64, k: CacheKey| {
            cache
                .get_or_issue(k, now, || {
                    signed.set(signed.get() + 1);
                    issue(key, &base, now, 300, i64::MAX)
                })
                .unwrap()
        };
        let first = get(&mut cache, 1000, cache_key("a"));
        assert_eq!(get(&mut cache, 1149, cache_key("a")), first);
        let second = get(&mut cache, 1150, cache_key("a"));
        assert_ne!(second, first);
        assert_eq!(second.issued_at, 1150);
        // Another identity gets its own token.
        let other = get(&mut cache, 1151, cache_key("other"));
        assert_ne!(other, second);
        assert_eq!(get(&mut cache, 1152, cache_key("a")), second);
        for i in 0..CACHE_ENTRIES {
            get(&mut cache, 1153, cache_key(&format!("k{i}")));
        }
        assert_eq!(cache.entries.len(), CACHE_ENTRIES);
        assert_eq!(signed.get(), 3 + CACHE_ENTRIES);
    }

    #[test]
    fn cache_key_covers_authentication_claims_and_limits() {
        let settings = settings_with(TokenKey::from_secret(&[3u8; 32], None).unwrap());
        let other_settings = settings_with(TokenKey::from_secret(&[4u8; 32], None).unwrap());
        let base = || {
            CacheKey::new(
                &settings,
                "a".into(),
                with_fingerprint("f1"),
                Some(5),
                9,
                vec!["x".into()],
            )
        };
        assert_eq!(base(), base());
        let mut k = base();
        k.extra = vec!["y".into()];
        assert_ne!(k, base());
        let mut k = base();
        k.limit = 8;
        assert_ne!(k, base());
        let mut k = base();
        k.auth_time = Some(6);
        assert_ne!(k, base());
        let mut k = base();
        k.cert = with_fingerprint("f2");
        assert_ne!(k, base());
        let mut k = base();
        k.identity = "b".into();
        assert_ne!(k, base());
        let mut k = base();
        k.settings = &other_settings;
        assert_ne!(k, base());
    }
}
