//! Signing keys of `auth_cert_token_key`: loaded from PEM files or raw HMAC secrets once, at
//! configuration time, with their JWK public parameters and RFC 7638 thumbprint.

use std::path::Path;

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

/// The shortest RSA modulus accepted for signing (NIST SP 800-57, RFC 7518 section 3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// The shortest HMAC secret: the SHA-256 output size (RFC 7518 section 3.2).
pub const MIN_HMAC_BYTES: usize = 32;

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

pub(super) fn b64(bytes: &[u8]) -> String {
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
pub(super) enum SigningKey {
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
    pub(super) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
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
    pub(super) signing: SigningKey,
    /// The JOSE header of every token signed with this key, base64url-encoded.
    pub(super) header: String,
    /// What the JWKS publishes besides `kid`, `alg` and `use`; `None` for an HMAC secret.
    pub(super) public: Option<Map<String, Value>>,
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

/// The key of an `auth_cert_token_key` directive: `file` or `hmac:file`, relative to `prefix`
/// (nginx's configuration prefix), with its options (`kid=`).
pub(super) fn load_key(word: &str, options: &[&str], prefix: &Path) -> Result<TokenKey, String> {
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
