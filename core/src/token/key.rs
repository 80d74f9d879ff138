//! Signing keys of `auth_cert_token_key`: read once, at configuration time, from PEM files or
//! raw HMAC secrets, with their JWK public parameters and RFC 7638 thumbprint.
//!
//! The core finds the key in the file and tells its algorithm; a [`Signer`] made by the
//! module's [`LoadSigner`] (OpenSSL, nginx's own libcrypto) holds the private key and signs.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use pkcs8::PrivateKeyInfo;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

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

/// The encoding of a private key's DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PKCS #8 `PRIVATE KEY`, any algorithm.
    Pkcs8,
    /// SEC 1 `EC PRIVATE KEY`; its curve is for the signer to check.
    Sec1,
    /// PKCS #1 `RSA PRIVATE KEY`.
    Pkcs1,
}

/// What a [`LoadSigner`] makes a signer of.
#[derive(Debug, Clone, Copy)]
pub enum KeyMaterial<'a> {
    /// A private key of `algorithm` (never [`Algorithm::Hs256`]).
    Private {
        algorithm: Algorithm,
        format: KeyFormat,
        der: &'a [u8],
    },
    /// An HMAC secret, at least [`MIN_HMAC_BYTES`] long.
    Secret(&'a [u8]),
}

/// The public half of a key, big-endian unsigned integers and raw points as RFC 7518 and
/// RFC 8037 publish them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// P-256: the affine coordinates, 32 bytes each.
    Ec { x: Vec<u8>, y: Vec<u8> },
    /// Ed25519: the 32-byte public key.
    Ed25519 { x: Vec<u8> },
    /// RSA: the modulus and the public exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An HMAC secret has none.
    None,
}

/// A key ready to sign JWS signing inputs. It holds the private key and erases it when
/// dropped.
pub trait Signer: Send + Sync {
    fn algorithm(&self) -> Algorithm;

    fn public_key(&self) -> PublicKey;

    /// The JWS signature of `message` (RFC 7518 section 3): for ES256 the raw `R || S`, 32
    /// bytes each.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// Makes the signer of a key, or says why the key cannot sign ("not a valid ...").
pub type LoadSigner = fn(KeyMaterial<'_>) -> Result<Box<dyn Signer>, String>;

/// A public key in JWK form (RFC 7517, 7518, 8037), or a secret for its thumbprint only.
enum Jwk {
    Ec { x: String, y: String },
    Okp { x: String },
    Rsa { n: String, e: String },
    Oct { k: Zeroizing<String> },
}

impl Jwk {
    /// The RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        // Every value is base64url or a fixed name, so no JSON escaping is needed.
        let canonical = Zeroizing::new(match self {
            Self::Ec { x, y } => format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
            Self::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            Self::Oct { k } => format!(r#"{{"k":"{}","kty":"oct"}}"#, k.as_str()),
        });
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
    /// Every algorithm, in the order of [`Algorithm::index`].
    pub const ALL: [Algorithm; 4] = [Self::Es256, Self::EdDsa, Self::Rs256, Self::Hs256];

    /// The position of this algorithm in [`Algorithm::ALL`] (an exhaustive match: a new
    /// algorithm cannot be added without a place).
    pub const fn index(self) -> usize {
        match self {
            Self::Es256 => 0,
            Self::EdDsa => 1,
            Self::Rs256 => 2,
            Self::Hs256 => 3,
        }
    }

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

/// One key of `auth_cert_token_key`.
pub struct TokenKey {
    pub kid: String,
    pub algorithm: Algorithm,
    /// RFC 7638 thumbprint of the key, also the default `kid`.
    pub thumbprint: String,
    pub(super) signing: Box<dyn Signer>,
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
    pub fn from_pem(pem_text: &[u8], kid: Option<&str>, load: LoadSigner) -> Result<Self, String> {
        let blocks = pem::parse_many(pem_text).map_err(|e| format!("not a PEM file: {e}"))?;
        // The decoded key blocks are erased when dropped.
        let blocks: Vec<(String, Zeroizing<Vec<u8>>)> = blocks
            .into_iter()
            .map(|b| (b.tag().to_owned(), Zeroizing::new(b.into_contents())))
            .collect();
        if blocks.iter().any(|(tag, _)| tag == "ENCRYPTED PRIVATE KEY") {
            return Err("encrypted private keys are not supported".into());
        }
        let mut keys = blocks.iter().filter(|(tag, _)| {
            matches!(
                tag.as_str(),
                "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY"
            )
        });
        let (Some((tag, der)), None) = (keys.next(), keys.next()) else {
            return Err(
                "expected exactly one \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" \
                 PEM block"
                    .into(),
            );
        };
        let (algorithm, format) = match tag.as_str() {
            "EC PRIVATE KEY" => (Algorithm::Es256, KeyFormat::Sec1),
            "RSA PRIVATE KEY" => (Algorithm::Rs256, KeyFormat::Pkcs1),
            _ => (pkcs8_algorithm(der)?, KeyFormat::Pkcs8),
        };
        let signer = load(KeyMaterial::Private {
            algorithm,
            format,
            der,
        })?;
        if signer.algorithm() != algorithm {
            return Err(format!(
                "the signer made a {} key of a {} key",
                signer.algorithm().name(),
                algorithm.name()
            ));
        }
        let jwk = match signer.public_key() {
            PublicKey::Ec { x, y } if x.len() == 32 && y.len() == 32 => Jwk::Ec {
                x: b64(&x),
                y: b64(&y),
            },
            PublicKey::Ed25519 { x } if x.len() == 32 => Jwk::Okp { x: b64(&x) },
            PublicKey::Rsa { n, e } => {
                let bits = bit_length(&n);
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA key of {bits} bits is too weak, at least {MIN_RSA_BITS} bits are \
                         needed"
                    ));
                }
                Jwk::Rsa {
                    n: b64(&n),
                    e: b64(&e),
                }
            }
            other => return Err(format!("invalid public key {other:?}")),
        };
        Ok(Self::new(signer, &jwk, kid))
    }

    /// An HMAC secret: the raw bytes of a file, used as they are.
    pub fn from_secret(secret: &[u8], kid: Option<&str>, load: LoadSigner) -> Result<Self, String> {
        if secret.len() < MIN_HMAC_BYTES {
            return Err(format!(
                "HMAC secret of {} bytes is too short, at least {MIN_HMAC_BYTES} bytes are needed",
                secret.len()
            ));
        }
        let signer = load(KeyMaterial::Secret(secret))?;
        if signer.algorithm() != Algorithm::Hs256 {
            return Err("the signer made no HMAC key of a secret".into());
        }
        let jwk = Jwk::Oct {
            k: Zeroizing::new(b64(secret)),
        };
        Ok(Self::new(signer, &jwk, kid))
    }

    fn new(signing: Box<dyn Signer>, jwk: &Jwk, kid: Option<&str>) -> Self {
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

/// The number of significant bits of a big-endian unsigned integer.
fn bit_length(be: &[u8]) -> usize {
    let mut digits = be.iter().skip_while(|&&b| b == 0);
    match digits.next() {
        Some(first) => 8 * digits.count() + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// The algorithm of a PKCS #8 key, from its AlgorithmIdentifier: P-256 EC, Ed25519 or RSA.
fn pkcs8_algorithm(der: &[u8]) -> Result<Algorithm, String> {
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
            Ok(Algorithm::Es256)
        }
        OID_ED25519 => Ok(Algorithm::EdDsa),
        OID_RSA => Ok(Algorithm::Rs256),
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

/// The key of an `auth_cert_token_key` directive: `file` or `hmac:file`, relative to `prefix`
/// (nginx's configuration prefix), with its options (`kid=`), made ready to sign by `load`.
pub(super) fn load_key(
    word: &str,
    options: &[&str],
    prefix: &Path,
    load: LoadSigner,
) -> Result<TokenKey, String> {
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
    // The file's bytes are erased once the signer holds the key.
    let bytes = Zeroizing::new(
        std::fs::read(&path).map_err(|e| format!("cannot read \"{}\": {e}", path.display()))?,
    );
    let key = if secret {
        TokenKey::from_secret(&bytes, kid, load)
    } else {
        TokenKey::from_pem(&bytes, kid, load)
    };
    key.map_err(|e| format!("invalid key \"{}\": {e}", path.display()))
}
