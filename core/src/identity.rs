//! Who a certificate belongs to: ordered identity sources, the first non-empty one wins.

use core::fmt;

use regex::Regex;

use crate::cert::{CertificateInfo, Field, OID_CN, OID_UID};

/// Where an identity may be taken from (`auth_cert_identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    Uid,
    Cn,
    Email,
    Upn,
    SanDns,
    SanUri,
    Serial,
    Fingerprint,
    Subject,
    /// Any subject attribute, by dotted OID.
    Oid(String),
}

/// The default order: `uid cn`.
pub const DEFAULT_SOURCES: [IdentitySource; 2] = [IdentitySource::Uid, IdentitySource::Cn];

impl IdentitySource {
    /// Parses one word of `auth_cert_identity`.
    pub fn parse(word: &str) -> Result<Self, String> {
        Ok(match word {
            "uid" => Self::Uid,
            "cn" => Self::Cn,
            "email" => Self::Email,
            "upn" => Self::Upn,
            "san_dns" => Self::SanDns,
            "san_uri" => Self::SanUri,
            "serial" => Self::Serial,
            "fingerprint" => Self::Fingerprint,
            "subject" => Self::Subject,
            _ => match word.strip_prefix("oid:") {
                Some(oid) if is_dotted_oid(oid) => Self::Oid(oid.to_owned()),
                Some(_) => return Err(format!("invalid OID in \"{word}\"")),
                None => return Err(format!("unknown identity source \"{word}\"")),
            },
        })
    }

    /// The first non-empty value of this source in `cert`. Multi-valued attributes and SANs
    /// yield their first value in certificate (DER) order.
    pub fn value<'a>(&'a self, cert: &'a CertificateInfo) -> Option<&'a str> {
        let non_empty = |s: &&str| !s.is_empty();
        match self {
            Self::Uid => cert.attribute_values(OID_UID).find(non_empty),
            Self::Cn => cert.attribute_values(OID_CN).find(non_empty),
            Self::Email => cert.email(),
            Self::Upn => cert.upn(),
            Self::SanDns => cert.values(Field::SanDns).find(non_empty),
            Self::SanUri => cert.values(Field::SanUri).find(non_empty),
            Self::Serial => Some(cert.serial()),
            Self::Fingerprint => Some(cert.fingerprint_hex()),
            Self::Subject => Some(cert.subject()).filter(non_empty),
            Self::Oid(oid) => cert.attribute_values(oid).find(non_empty),
        }
    }
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid => f.write_str("uid"),
            Self::Cn => f.write_str("cn"),
            Self::Email => f.write_str("email"),
            Self::Upn => f.write_str("upn"),
            Self::SanDns => f.write_str("san_dns"),
            Self::SanUri => f.write_str("san_uri"),
            Self::Serial => f.write_str("serial"),
            Self::Fingerprint => f.write_str("fingerprint"),
            Self::Subject => f.write_str("subject"),
            Self::Oid(oid) => write!(f, "oid:{oid}"),
        }
    }
}

/// A dotted OID: at least two arcs, digits only, first arc 0..=2.
pub fn is_dotted_oid(s: &str) -> bool {
    let arcs: Vec<&str> = s.split('.').collect();
    arcs.len() >= 2
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
        && matches!(arcs[0], "0" | "1" | "2")
}

/// `auth_cert_identity_regex`: the group named `id`, else the first group, else the match.
#[derive(Debug, Clone)]
pub struct IdentityRegex(Regex);

impl IdentityRegex {
    pub fn new(pattern: &str) -> Result<Self, String> {
        Regex::new(pattern).map(Self).map_err(|e| e.to_string())
    }

    /// The part of `value` that is the identity, or `None` when the pattern does not match.
    pub fn extract<'a>(&self, value: &'a str) -> Option<&'a str> {
        let caps = self.0.captures(value)?;
        caps.name("id")
            .or_else(|| caps.get(1))
            .or_else(|| caps.get(0))
            .map(|m| m.as_str())
    }
}

/// Why no identity came out of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// None of the sources has a value.
    NoValue,
    /// The regex did not match the chosen value.
    NoMatch,
    /// The value holds characters that must never reach a header or a log (controls).
    Unsafe,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoValue => "no identity source has a value",
            Self::NoMatch => "identity regex does not match",
            Self::Unsafe => "identity contains control characters",
        })
    }
}

/// Resolves the identity: the first source with a value, then the regex if any.
pub fn resolve<'a>(
    sources: &'a [IdentitySource],
    regex: Option<&IdentityRegex>,
    cert: &'a CertificateInfo,
) -> Result<&'a str, IdentityError> {
    let value = sources
        .iter()
        .find_map(|s| s.value(cert))
        .ok_or(IdentityError::NoValue)?;
    let identity = match regex {
        Some(re) => re.extract(value).ok_or(IdentityError::NoMatch)?,
        None => value,
    };
    if identity.is_empty() {
        return Err(IdentityError::NoMatch);
    }
    if identity.chars().any(char::is_control) {
        return Err(IdentityError::Unsafe);
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{CertificateBuilder, OID_EMAIL};

    fn builder(attrs: &[(&str, &str)]) -> CertificateBuilder {
        let mut b = CertificateBuilder::default();
        b.subject("CN=x").serial("0A1B").fingerprint([0xab; 32]);
        for (oid, value) in attrs {
            b.attribute(oid, Some(value));
        }
        b
    }

    fn cert(attrs: &[(&str, &str)]) -> CertificateInfo {
        builder(attrs).build()
    }

    #[test]
    fn default_sources_prefer_uid_then_cn() {
        let c = cert(&[(OID_CN, "Jane Doe"), (OID_UID, "jdoe")]);
        assert_eq!(resolve(&DEFAULT_SOURCES, None, &c), Ok("jdoe"));
        let c = cert(&[(OID_CN, "Jane Doe")]);
        assert_eq!(resolve(&DEFAULT_SOURCES, None, &c), Ok("Jane Doe"));
    }

    #[test]
    fn empty_values_are_skipped() {
        let c = cert(&[(OID_UID, ""), (OID_CN, "Jane")]);
        assert_eq!(resolve(&DEFAULT_SOURCES, None, &c), Ok("Jane"));
    }

    #[test]
    fn multi_valued_attribute_takes_first_in_der_order() {
        let c = cert(&[(OID_CN, "first"), (OID_CN, "second")]);
        assert_eq!(resolve(&[IdentitySource::Cn], None, &c), Ok("first"));
    }

    #[test]
    fn no_source_has_a_value() {
        let c = cert(&[(OID_CN, "Jane")]);
        assert_eq!(
            resolve(&[IdentitySource::Uid, IdentitySource::Upn], None, &c),
            Err(IdentityError::NoValue)
        );
    }

    #[test]
    fn email_prefers_subject_then_san() {
        let mut b = builder(&[]);
        b.add(Field::SanEmail, "san@example.org");
        assert_eq!(
            IdentitySource::Email.value(&b.build()),
            Some("san@example.org")
        );
        let mut b = builder(&[]);
        b.add(Field::SanEmail, "san@example.org")
            .attribute(OID_EMAIL, Some("dn@example.org"));
        assert_eq!(
            IdentitySource::Email.value(&b.build()),
            Some("dn@example.org")
        );
    }

    #[test]
    fn san_and_fixed_sources() {
        let mut b = builder(&[]);
        b.add(Field::SanUpn, "1234567890@mil")
            .add(Field::SanDns, "host.example.org")
            .add(Field::SanUri, "urn:uuid:1");
        let c = b.build();
        assert_eq!(IdentitySource::Upn.value(&c), Some("1234567890@mil"));
        assert_eq!(IdentitySource::SanDns.value(&c), Some("host.example.org"));
        assert_eq!(IdentitySource::SanUri.value(&c), Some("urn:uuid:1"));
        assert_eq!(IdentitySource::Serial.value(&c), Some("0A1B"));
        assert_eq!(IdentitySource::Subject.value(&c), Some("CN=x"));
        assert_eq!(
            IdentitySource::Fingerprint.value(&c).map(str::len),
            Some(64)
        );
    }

    #[test]
    fn oid_source_reads_any_attribute() {
        let c = cert(&[("2.5.4.5", "SN-42")]);
        let source = IdentitySource::parse("oid:2.5.4.5").unwrap();
        assert_eq!(resolve(&[source], None, &c), Ok("SN-42"));
    }

    #[test]
    fn parse_rejects_unknown_words_and_bad_oids() {
        assert_eq!(IdentitySource::parse("uid"), Ok(IdentitySource::Uid));
        assert!(IdentitySource::parse("UID").is_err());
        assert!(IdentitySource::parse("nickname").is_err());
        assert!(IdentitySource::parse("oid:").is_err());
        assert!(IdentitySource::parse("oid:2.5..4").is_err());
        assert!(IdentitySource::parse("oid:7.1").is_err());
        assert!(IdentitySource::parse("oid:2").is_err());
        for word in [
            "uid",
            "cn",
            "email",
            "upn",
            "san_dns",
            "san_uri",
            "serial",
            "fingerprint",
        ] {
            assert_eq!(IdentitySource::parse(word).unwrap().to_string(), word);
        }
        assert_eq!(
            IdentitySource::parse("oid:2.5.4.5").unwrap().to_string(),
            "oid:2.5.4.5"
        );
    }

    #[test]
    fn regex_extracts_edipi_from_cac_cn() {
        let re = IdentityRegex::new(r"\.(\d{10})$").unwrap();
        let c = cert(&[(OID_CN, "DOE.JOHN.Q.1234567890")]);
        assert_eq!(resolve(&DEFAULT_SOURCES, Some(&re), &c), Ok("1234567890"));
        let c = cert(&[(OID_CN, "DOE.JOHN.Q")]);
        assert_eq!(
            resolve(&DEFAULT_SOURCES, Some(&re), &c),
            Err(IdentityError::NoMatch)
        );
    }

    #[test]
    fn regex_named_group_wins_over_first_group() {
        let re = IdentityRegex::new(r"^(\w+)\.(?P<id>\d+)$").unwrap();
        assert_eq!(re.extract("DOE.42"), Some("42"));
        let re = IdentityRegex::new(r"^\w+").unwrap();
        assert_eq!(re.extract("DOE.42"), Some("DOE"));
        assert!(IdentityRegex::new("(unclosed").is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        let c = cert(&[(OID_CN, "evil\r\nX-Admin: 1")]);
        assert_eq!(
            resolve(&DEFAULT_SOURCES, None, &c),
            Err(IdentityError::Unsafe)
        );
    }

    #[test]
    fn san_values_with_control_characters_give_way_to_the_next() {
        let mut b = builder(&[(OID_EMAIL, "dn@corp\r\nX-Admin: 1")]);
        b.add(Field::SanDns, "bad\r\n.example")
            .add(Field::SanDns, "good.example")
            .add(Field::SanUri, "urn:\x7f")
            .add(Field::SanEmail, "san@corp")
            .add(Field::SanUpn, "u\x01@corp");
        let c = b.build();
        let source = |word| [IdentitySource::parse(word).unwrap()];
        assert_eq!(resolve(&source("san_dns"), None, &c), Ok("good.example"));
        assert_eq!(resolve(&source("email"), None, &c), Ok("san@corp"));
        assert_eq!(
            resolve(&source("san_uri"), None, &c),
            Err(IdentityError::NoValue)
        );
        assert_eq!(
            resolve(&source("upn"), None, &c),
            Err(IdentityError::NoValue)
        );
        // The attribute itself, by OID, is refused as before.
        assert_eq!(
            resolve(&source("oid:1.2.840.113549.1.9.1"), None, &c),
            Err(IdentityError::Unsafe)
        );
    }

    #[test]
    fn non_ascii_identity_is_kept_as_utf8() {
        let c = cert(&[(OID_CN, "Zoë Ørsted")]);
        assert_eq!(resolve(&DEFAULT_SOURCES, None, &c), Ok("Zoë Ørsted"));
    }
}
