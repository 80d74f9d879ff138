//! The token signer: OpenSSL, the libcrypto nginx itself runs with (and so its FIPS provider
//! where it is configured). The core finds the key in its file and serializes the JWS; this
//! file loads the key, gives its public parameters and signs.
//!
//! OpenSSL holds the private keys and erases them when they are freed, with the
//! configuration that loaded them.

use core::ptr;

use auth_cert_core::token::{Algorithm, KeyFormat, KeyMaterial, PublicKey, Signer};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;

/// P-256 coordinates and ECDSA `R` and `S`: 32 bytes each (RFC 7518 section 3.4).
const P256_BYTES: i32 = 32;

/// A key loaded into OpenSSL.
struct OpensslSigner {
    algorithm: Algorithm,
    key: PKey<Private>,
    public: PublicKey,
}

/// Whether OpenSSL fetches only FIPS-approved algorithms (the FIPS provider, with
/// `default_properties = fips=yes`).
fn fips_enabled() -> bool {
    openssl_sys::init();
    // SAFETY: a null library context is OpenSSL's default one; the call only reads it.
    unsafe { openssl_sys::EVP_default_properties_is_fips_enabled(ptr::null_mut()) == 1 }
}

/// The error of OpenSSL, in one line.
fn reason(e: &ErrorStack) -> String {
    e.errors()
        .iter()
        .map(|e| e.reason().unwrap_or("unknown error").to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The [`auth_cert_core::token::LoadSigner`] of the module.
pub fn load(material: KeyMaterial<'_>) -> Result<Box<dyn Signer>, String> {
    let signer = match material {
        KeyMaterial::Secret(secret) => OpensslSigner {
            algorithm: Algorithm::Hs256,
            key: PKey::hmac(secret).map_err(|e| format!("not a usable secret: {}", reason(&e)))?,
            public: PublicKey::None,
        },
        KeyMaterial::Private {
            algorithm: Algorithm::Es256,
            format,
            der,
        } => ec_key(format, der)?,
        KeyMaterial::Private {
            algorithm: Algorithm::EdDsa,
            der,
            ..
        } => {
            if fips_enabled() {
                return Err(
                    "Ed25519 is not approved by the FIPS provider OpenSSL runs with, \
                            use a P-256 or RSA key"
                        .into(),
                );
            }
            let key = PKey::private_key_from_pkcs8(der)
                .ok()
                .filter(|k| k.id() == Id::ED25519)
                .ok_or("not a valid Ed25519 private key")?;
            let x = key
                .raw_public_key()
                .map_err(|e| format!("not a valid Ed25519 private key: {}", reason(&e)))?;
            OpensslSigner {
                algorithm: Algorithm::EdDsa,
                key,
                public: PublicKey::Ed25519 { x },
            }
        }
        KeyMaterial::Private {
            algorithm: Algorithm::Rs256,
            format,
            der,
        } => rsa_key(format, der)?,
        KeyMaterial::Private { algorithm, .. } => {
            return Err(format!("{} is not a private key", algorithm.name()))
        }
    };
    Ok(Box::new(signer))
}

fn ec_key(format: KeyFormat, der: &[u8]) -> Result<OpensslSigner, String> {
    let invalid = || "not a valid P-256 EC private key".to_owned();
    let ec = match format {
        KeyFormat::Sec1 => EcKey::private_key_from_der(der).map_err(|_| invalid())?,
        _ => PKey::private_key_from_pkcs8(der)
            .and_then(|k| k.ec_key())
            .map_err(|_| invalid())?,
    };
    if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) || ec.check_key().is_err() {
        return Err(invalid());
    }
    let coordinates = || -> Result<PublicKey, ErrorStack> {
        let (mut x, mut y, mut ctx) = (BigNum::new()?, BigNum::new()?, BigNumContext::new()?);
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
        Ok(PublicKey::Ec {
            x: x.to_vec_padded(P256_BYTES)?,
            y: y.to_vec_padded(P256_BYTES)?,
        })
    };
    let public = coordinates().map_err(|_| invalid())?;
    Ok(OpensslSigner {
        algorithm: Algorithm::Es256,
        key: PKey::from_ec_key(ec).map_err(|_| invalid())?,
        public,
    })
}

fn rsa_key(format: KeyFormat, der: &[u8]) -> Result<OpensslSigner, String> {
    let invalid = |e: &ErrorStack| format!("not a valid RSA private key: {}", reason(e));
    let rsa = match format {
        KeyFormat::Pkcs1 => Rsa::private_key_from_der(der).map_err(|e| invalid(&e))?,
        _ => PKey::private_key_from_pkcs8(der)
            .and_then(|k| k.rsa())
            .map_err(|e| invalid(&e))?,
    };
    if !rsa.check_key().map_err(|e| invalid(&e))? {
        return Err("not a valid RSA private key".into());
    }
    let public = PublicKey::Rsa {
        n: rsa.n().to_vec(),
        e: rsa.e().to_vec(),
    };
    Ok(OpensslSigner {
        algorithm: Algorithm::Rs256,
        key: PKey::from_rsa(rsa).map_err(|e| invalid(&e))?,
        public,
    })
}

impl OpensslSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        use openssl::sign::Signer as Sign;
        Ok(match self.algorithm {
            // Ed25519 signs the message itself, in one pass.
            Algorithm::EdDsa => {
                Sign::new_without_digest(&self.key)?.sign_oneshot_to_vec(message)?
            }
            // RSA: PKCS #1 v1.5 padding, OpenSSL's default, with blinding.
            Algorithm::Rs256 | Algorithm::Hs256 => {
                let mut signer = Sign::new(MessageDigest::sha256(), &self.key)?;
                signer.update(message)?;
                signer.sign_to_vec()?
            }
            // OpenSSL writes ECDSA signatures in DER; JOSE wants R || S.
            Algorithm::Es256 => {
                let mut signer = Sign::new(MessageDigest::sha256(), &self.key)?;
                signer.update(message)?;
                let signature = EcdsaSig::from_der(&signer.sign_to_vec()?)?;
                let mut raw = signature.r().to_vec_padded(P256_BYTES)?;
                raw.extend(signature.s().to_vec_padded(P256_BYTES)?);
                raw
            }
        })
    }
}

impl Signer for OpensslSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.try_sign(message)
            .map_err(|e| format!("signing failed: {}", reason(&e)))
    }
}
