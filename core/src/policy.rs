//! Whether a verified certificate may log in, and as whom.

use regex::Regex;

use crate::cert::{CertificateInfo, Field, KeyUsageBits};
use crate::identity::{self, IdentityError, IdentityRegex, IdentitySource, DEFAULT_SOURCES};
use crate::verdict::Reason;

/// `smartcardLogon` (Microsoft), present on CAC/PIV authentication certificates.
pub const OID_SMARTCARD_LOGON: &str = "1.3.6.1.4.1.311.20.2.2";

/// `id-PIV-cardAuth` (FIPS 201), on PIV card authentication certificates.
pub const OID_PIV_CARD_AUTH: &str = "2.16.840.1.101.3.6.8";

/// Extended key usage names accepted by `auth_cert_eku`, with their OIDs.
const EKU_NAMES: [(&str, &str); 6] = [
    ("serverAuth", "1.3.6.1.5.5.7.3.1"),
    ("clientAuth", "1.3.6.1.5.5.7.3.2"),
    ("codeSigning", "1.3.6.1.5.5.7.3.3"),
    ("emailProtection", "1.3.6.1.5.5.7.3.4"),
    ("smartcardLogon", OID_SMARTCARD_LOGON),
    ("pivCardAuth", OID_PIV_CARD_AUTH),
];

/// Key usage names accepted by `auth_cert_key_usage`, with their bit (RFC 5280 4.2.1.3).
const KEY_USAGE_NAMES: [(&str, u8); 5] = [
    ("digitalSignature", 0),
    ("nonRepudiation", 1),
    ("keyEncipherment", 2),
    ("dataEncipherment", 3),
    ("keyAgreement", 4),
];

/// An EKU name or dotted OID, as its dotted OID.
pub fn parse_eku(word: &str) -> Result<String, String> {
    if let Some((_, oid)) = EKU_NAMES.iter().find(|(name, _)| *name == word) {
        return Ok((*oid).to_owned());
    }
    if identity::is_dotted_oid(word) {
        return Ok(word.to_owned());
    }
    Err(format!("unknown extended key usage \"{word}\""))
}

/// A key usage name, as its bit mask.
pub fn parse_key_usage(word: &str) -> Result<KeyUsageBits, String> {
    KEY_USAGE_NAMES
        .iter()
        .find(|(name, _)| *name == word)
        .map(|(_, bit)| 1 << bit)
        .ok_or_else(|| format!("unknown key usage \"{word}\""))
}

/// A certificate policy OID.
pub fn parse_policy_oid(word: &str) -> Result<String, String> {
    if identity::is_dotted_oid(word) {
        Ok(word.to_owned())
    } else {
        Err(format!("invalid certificate policy OID \"{word}\""))
    }
}

/// The rules of one location. Empty lists mean "no requirement".
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `auth_cert_identity`; `None` means the default `uid cn`.
    pub sources: Option<Vec<IdentitySource>>,
    pub identity_regex: Option<IdentityRegex>,
    /// All of these EKUs are required.
    pub eku: Vec<String>,
    /// All of these key usage bits are required.
    pub key_usage: KeyUsageBits,
    /// At least one of these policies is required.
    pub policies: Vec<String>,
    pub issuer: Option<Regex>,
}

impl Policy {
    /// Inherits every rule this level does not set, as nginx merges directives.
    pub fn merge(&mut self, parent: &Policy) {
        if self.sources.is_none() {
            self.sources.clone_from(&parent.sources);
        }
        if self.identity_regex.is_none() {
            self.identity_regex.clone_from(&parent.identity_regex);
        }
        if self.eku.is_empty() {
            self.eku.clone_from(&parent.eku);
        }
        if self.key_usage == 0 {
            self.key_usage = parent.key_usage;
        }
        if self.policies.is_empty() {
            self.policies.clone_from(&parent.policies);
        }
        if self.issuer.is_none() {
            self.issuer.clone_from(&parent.issuer);
        }
    }

    pub fn sources(&self) -> &[IdentitySource] {
        self.sources.as_deref().unwrap_or(&DEFAULT_SOURCES)
    }

    /// Checks `cert` at time `now` (Unix seconds) and returns its identity.
    pub fn evaluate<'a>(&'a self, cert: &'a CertificateInfo, now: i64) -> Result<&'a str, Reason> {
        if !cert.is_valid_at(now) {
            return Err(Reason::Expired);
        }
        self.judge(cert)
    }

    /// Everything [`Policy::evaluate`] checks but the time: the same for every request of a
    /// connection, so it can be kept with the connection.
    pub fn judge<'a>(&'a self, cert: &'a CertificateInfo) -> Result<&'a str, Reason> {
        if !self.eku.iter().all(|required| {
            cert.values(Field::ExtendedKeyUsage)
                .any(|eku| eku == required)
        }) {
            return Err(Reason::Eku);
        }
        if self.key_usage != 0 && cert.key_usage.unwrap_or(0) & self.key_usage != self.key_usage {
            return Err(Reason::KeyUsage);
        }
        if !self.policies.is_empty()
            && !cert
                .values(Field::Policy)
                .any(|p| self.policies.iter().any(|wanted| wanted == p))
        {
            return Err(Reason::Policy);
        }
        if let Some(issuer) = &self.issuer {
            if !issuer.is_match(cert.issuer()) {
                return Err(Reason::Issuer);
            }
        }
        identity::resolve(self.sources(), self.identity_regex.as_ref(), cert)
            .map_err(|_: IdentityError| Reason::Identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{CertificateBuilder, OID_CN};

    fn cac() -> CertificateInfo {
        let mut b = CertificateBuilder::default();
        b.subject("CN=DOE.JOHN.Q.1234567890,OU=USA,OU=PKI,OU=DoD,O=U.S. Government,C=US")
            .issuer("CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US")
            .validity(1_000, 2_000)
            .attribute(OID_CN, Some("DOE.JOHN.Q.1234567890"))
            .add(Field::ExtendedKeyUsage, "1.3.6.1.5.5.7.3.2")
            .add(Field::ExtendedKeyUsage, OID_SMARTCARD_LOGON)
            .key_usage(0b11)
            .add(Field::Policy, "2.16.840.1.101.2.1.11.42");
        b.build()
    }

    #[test]
    fn default_policy_accepts_a_valid_certificate() {
        assert_eq!(
            Policy::default().evaluate(&cac(), 1_500),
            Ok("DOE.JOHN.Q.1234567890")
        );
    }

    #[test]
    fn validity_is_checked_against_now() {
        let p = Policy::default();
        assert_eq!(p.evaluate(&cac(), 999), Err(Reason::Expired));
        assert_eq!(p.evaluate(&cac(), 2_000), Ok("DOE.JOHN.Q.1234567890"));
        assert_eq!(p.evaluate(&cac(), 2_001), Err(Reason::Expired));
    }

    #[test]
    fn every_required_eku_must_be_present() {
        let mut p = Policy {
            eku: vec![
                parse_eku("clientAuth").unwrap(),
                parse_eku("smartcardLogon").unwrap(),
            ],
            ..Default::default()
        };
        assert!(p.evaluate(&cac(), 1_500).is_ok());
        p.eku.push(parse_eku("1.2.3.4").unwrap());
        assert_eq!(p.evaluate(&cac(), 1_500), Err(Reason::Eku));
    }

    #[test]
    fn key_usage_bits_are_all_required() {
        let mut p = Policy {
            key_usage: parse_key_usage("digitalSignature").unwrap()
                | parse_key_usage("nonRepudiation").unwrap(),
            ..Default::default()
        };
        assert!(p.evaluate(&cac(), 1_500).is_ok());
        p.key_usage |= parse_key_usage("keyAgreement").unwrap();
        assert_eq!(p.evaluate(&cac(), 1_500), Err(Reason::KeyUsage));
        let mut no_ext = cac();
        no_ext.key_usage = None;
        p.key_usage = 1;
        assert_eq!(p.evaluate(&no_ext, 1_500), Err(Reason::KeyUsage));
    }

    #[test]
    fn one_of_the_policies_is_enough() {
        let mut p = Policy {
            policies: vec!["1.2.3".into(), "2.16.840.1.101.2.1.11.42".into()],
            ..Default::default()
        };
        assert!(p.evaluate(&cac(), 1_500).is_ok());
        p.policies = vec!["1.2.3".into()];
        assert_eq!(p.evaluate(&cac(), 1_500), Err(Reason::Policy));
    }

    #[test]
    fn issuer_regex_must_match() {
        let mut p = Policy {
            issuer: Some(Regex::new(r"^CN=DOD ID CA-\d+,").unwrap()),
            ..Default::default()
        };
        assert!(p.evaluate(&cac(), 1_500).is_ok());
        p.issuer = Some(Regex::new("^CN=Evil").unwrap());
        assert_eq!(p.evaluate(&cac(), 1_500), Err(Reason::Issuer));
    }

    #[test]
    fn identity_failure_is_a_denial() {
        let p = Policy {
            sources: Some(vec![IdentitySource::Upn]),
            ..Default::default()
        };
        assert_eq!(p.evaluate(&cac(), 1_500), Err(Reason::Identity));
    }

    #[test]
    fn merge_inherits_unset_rules_only() {
        let parent = Policy {
            sources: Some(vec![IdentitySource::Email]),
            eku: vec!["1.2.3".into()],
            key_usage: 1,
            ..Default::default()
        };
        let mut child = Policy {
            eku: vec!["1.2.4".into()],
            ..Default::default()
        };
        child.merge(&parent);
        assert_eq!(child.sources(), &[IdentitySource::Email]);
        assert_eq!(child.eku, vec!["1.2.4".to_owned()]);
        assert_eq!(child.key_usage, 1);
        assert_eq!(Policy::default().sources(), &DEFAULT_SOURCES);
    }

    #[test]
    fn names_parse_to_oids_and_bits() {
        assert_eq!(parse_eku("smartcardLogon").unwrap(), OID_SMARTCARD_LOGON);
        assert!(parse_eku("clientauth").is_err());
        assert_eq!(parse_key_usage("keyAgreement"), Ok(16));
        assert!(parse_key_usage("cRLSign").is_err());
        assert!(parse_policy_oid("2.16.840.1.101.2.1.11.42").is_ok());
        assert!(parse_policy_oid("anyPolicy").is_err());
        assert_eq!(parse_eku("pivCardAuth").unwrap(), OID_PIV_CARD_AUTH);
    }
}
