//! The `amr` claim (RFC 8176): how the subject authenticated, from the evidence in the
//! certificate only. A certificate says nothing of where its key lives unless its CA says so,
//! by an extended key usage of smartcards or by a certificate policy the operator lists.

use crate::cert::{CertificateInfo, Field};
use crate::policy::{self, OID_PIV_CARD_AUTH, OID_SMARTCARD_LOGON};

/// A method `auth_cert_token_amr` may claim, beyond `x509`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `hwk`: proof of possession of a hardware-secured key.
    Hwk,
    /// `sc`: a smart card (whose key is in hardware: `hwk` too).
    Sc,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::Hwk => "hwk",
            Self::Sc => "sc",
        }
    }
}

/// One `auth_cert_token_amr` line: the method claimed for certificates with one of these
/// policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmrRule {
    pub method: Method,
    pub policies: Vec<String>,
}

impl AmrRule {
    /// `method policy=OID ...`, the arguments of the directive `name`.
    pub fn parse(name: &str, args: &[&str]) -> Result<Self, String> {
        let [method, policies @ ..] = args else {
            return Err(format!(
                "invalid number of arguments in \"{name}\" directive"
            ));
        };
        let method = match *method {
            "hwk" => Method::Hwk,
            "sc" => Method::Sc,
            other => {
                return Err(format!(
                    "invalid method \"{}\" in \"{name}\" directive, it must be \"hwk\" or \"sc\"",
                    other.escape_debug()
                ))
            }
        };
        if policies.is_empty() {
            return Err(format!(
                "invalid number of arguments in \"{name}\" directive"
            ));
        }
        let policies = policies
            .iter()
            .map(|word| match word.strip_prefix("policy=") {
                Some(oid) => policy::parse_policy_oid(oid)
                    .map_err(|e| format!("{e} in \"{name}\" directive")),
                None => Err(format!(
                    "invalid parameter \"{}\" in \"{name}\" directive, it must be \"policy=OID\"",
                    word.escape_debug()
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AmrRule { method, policies })
    }

    fn matches(&self, cert: &CertificateInfo) -> bool {
        cert.values(Field::Policy)
            .any(|p| self.policies.iter().any(|listed| listed == p))
    }
}

/// Whether the certificate carries the EKU of a smartcard: Microsoft's `smartcardLogon` (CAC,
/// PIV authentication certificates) or PIV card authentication (`id-PIV-cardAuth`).
pub fn has_card_eku(cert: &CertificateInfo) -> bool {
    cert.values(Field::ExtendedKeyUsage)
        .any(|o| o == OID_SMARTCARD_LOGON || o == OID_PIV_CARD_AUTH)
}

/// The `amr` values for `cert`: `["sc","hwk","x509"]` for a card, `["hwk","x509"]` for a
/// hardware key, else `["x509"]`.
pub fn methods(rules: &[AmrRule], cert: &CertificateInfo) -> &'static [&'static str] {
    let claimed = |method| rules.iter().any(|r| r.method == method && r.matches(cert));
    if has_card_eku(cert) || claimed(Method::Sc) {
        &["sc", "hwk", "x509"]
    } else if claimed(Method::Hwk) {
        &["hwk", "x509"]
    } else {
        &["x509"]
    }
}
