//! A [`Signer`] on the RustCrypto crates, for the unit tests only (dev-dependencies): the
//! module signs with OpenSSL, and these tests check the core's part (finding keys in files,
//! JWK parameters, thumbprints, JWS serialization) against an independent implementation,
//! with jsonwebtoken verifying every token.

use hmac::{Hmac, Mac as _};
use p256::pkcs8::DecodePrivateKey as _;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::rand_core::OsRng;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use sha2::Sha256;

use super::key::{Algorithm, KeyFormat, KeyMaterial, PublicKey, Signer};

enum Key {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    Rs256(Box<rsa::RsaPrivateKey>),
    Hs256(Hmac<Sha256>),
}

impl Signer for Key {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Es256(_) => Algorithm::Es256,
            Self::EdDsa(_) => Algorithm::EdDsa,
            Self::Rs256(_) => Algorithm::Rs256,
            Self::Hs256(_) => Algorithm::Hs256,
        }
    }

    fn public_key(&self) -> PublicKey {
        match self {
            Self::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                PublicKey::Ec {
                    x: point.x().map(|x| x.to_vec()).unwrap_or_default(),
                    y: point.y().map(|y| y.to_vec()).unwrap_or_default(),
                }
            }
            Self::EdDsa(key) => PublicKey::Ed25519 {
                x: key.verifying_key().as_bytes().to_vec(),
            },
            Self::Rs256(key) => PublicKey::Rsa {
                n: key.n().to_bytes_be(),
                e: key.e().to_bytes_be(),
            },
            Self::Hs256(_) => PublicKey::None,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |e: rsa::signature::Error| format!("signing failed: {e}");
        Ok(match self {
            Self::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.try_sign(message).map_err(failed)?;
                signature.to_bytes().to_vec()
            }
            Self::EdDsa(key) => key.sign(message).to_bytes().to_vec(),
            Self::Rs256(key) => rsa::pkcs1v15::SigningKey::<Sha256>::new((**key).clone())
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

/// The [`super::LoadSigner`] of the unit tests.
pub fn load(material: KeyMaterial<'_>) -> Result<Box<dyn Signer>, String> {
    let key = match material {
        KeyMaterial::Secret(secret) => {
            Key::Hs256(Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?)
        }
        KeyMaterial::Private {
            algorithm,
            format,
            der,
        } => match (algorithm, format) {
            (Algorithm::Es256, KeyFormat::Sec1) => Key::Es256(
                p256::SecretKey::from_sec1_der(der)
                    .map_err(|_| "not a valid P-256 EC private key")?
                    .into(),
            ),
            (Algorithm::Es256, KeyFormat::Pkcs8) => Key::Es256(
                p256::SecretKey::from_pkcs8_der(der)
                    .map_err(|e| e.to_string())?
                    .into(),
            ),
            (Algorithm::EdDsa, KeyFormat::Pkcs8) => Key::EdDsa(
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| e.to_string())?,
            ),
            (Algorithm::Rs256, format) => {
                let key = match format {
                    KeyFormat::Pkcs1 => {
                        rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| e.to_string())
                    }
                    _ => rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| e.to_string()),
                };
                let key = key.map_err(|e| format!("not a valid RSA private key: {e}"))?;
                key.validate()
                    .map_err(|e| format!("not a valid RSA private key: {e}"))?;
                Key::Rs256(Box::new(key))
            }
            other => return Err(format!("unexpected key {other:?}")),
        },
    };
    Ok(Box::new(key))
}
