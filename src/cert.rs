//! What the module needs to know about a client certificate, read once from its DER encoding.
//!
//! [`CertificateInfo`] owns every value, so it is parsed once per TLS connection and then shared
//! by all the requests of that connection without touching the DER again.

use core::fmt::{self, Write as _};

use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::{Any, FromDer, Tag, ToDer};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// `id-ms-san-upn`: the Microsoft User Principal Name in a SAN otherName.
pub const OID_UPN: &str = "1.3.6.1.4.1.311.20.2.3";
/// `userId` (UID), the attribute smartcard and LDAP PKIs put the login name in.
pub const OID_UID: &str = "0.9.2342.19200300.100.1.1";
/// `commonName`.
pub const OID_CN: &str = "2.5.4.3";
/// `emailAddress` (PKCS #9), still common in subjects.
pub const OID_EMAIL: &str = "1.2.840.113549.1.9.1";

/// Why a DER blob could not be read as a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// One subject attribute: its dotted OID and its value as text, if it is a string type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub oid: String,
    pub value: Option<String>,
}

/// Key usage bits, in the order of RFC 5280 section 4.2.1.3.
pub type KeyUsageBits = u16;

/// The facts of a certificate that identity, policy and variables use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject DN as an RFC 4514 string (most significant RDN last, as `$ssl_client_s_dn`).
    pub subject: String,
    /// Issuer DN as an RFC 4514 string.
    pub issuer: String,
    /// Serial number in upper-case hex, as `$ssl_client_serial`.
    pub serial: String,
    /// SHA-256 of the DER encoding, lower-case hex.
    pub fingerprint: String,
    /// notBefore and notAfter, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Subject attributes in DER order.
    pub subject_attributes: Vec<Attribute>,
    /// SAN rfc822Name entries.
    pub san_email: Vec<String>,
    /// SAN otherName UPN entries (UTF8String values).
    pub san_upn: Vec<String>,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
    /// Extended key usage OIDs, dotted.
    pub extended_key_usage: Vec<String>,
    /// Key usage bits, when the extension is present.
    pub key_usage: Option<KeyUsageBits>,
    /// Certificate policy OIDs, dotted.
    pub policies: Vec<String>,
}

impl CertificateInfo {
    /// Reads a DER-encoded certificate. Trailing bytes after the certificate are an error.
    pub fn from_der(der: &[u8]) -> Result<Self, ParseError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| ParseError(format!("malformed certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(ParseError("trailing data after certificate".into()));
        }

        let mut info = CertificateInfo {
            subject: rfc4514(cert.subject()),
            issuer: rfc4514(cert.issuer()),
            serial: serial_hex(cert.raw_serial()),
            fingerprint: hex_lower(&Sha256::digest(der)),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            subject_attributes: cert
                .subject()
                .iter_attributes()
                .map(|atv| Attribute {
                    oid: atv.attr_type().to_id_string(),
                    value: attribute_text(atv.attr_value()),
                })
                .collect(),
            ..Default::default()
        };

        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        info.add_general_name(name);
                    }
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    info.extended_key_usage = extended_key_usage_oids(eku);
                }
                ParsedExtension::KeyUsage(ku) => info.key_usage = Some(ku.flags),
                ParsedExtension::CertificatePolicies(policies) => {
                    info.policies = policies
                        .iter()
                        .map(|p| p.policy_id.to_id_string())
                        .collect();
                }
                _ => {}
            }
        }
        Ok(info)
    }

    fn add_general_name(&mut self, name: &GeneralName<'_>) {
        match name {
            GeneralName::RFC822Name(s) => self.san_email.push((*s).to_owned()),
            GeneralName::DNSName(s) => self.san_dns.push((*s).to_owned()),
            GeneralName::URI(s) => self.san_uri.push((*s).to_owned()),
            GeneralName::OtherName(oid, value) if oid.to_id_string() == OID_UPN => {
                if let Some(upn) = other_name_utf8(value) {
                    self.san_upn.push(upn);
                }
            }
            _ => {}
        }
    }

    /// Values of a subject attribute, in DER order, skipping values that are not text.
    pub fn attribute_values<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.subject_attributes
            .iter()
            .filter(move |a| a.oid == oid)
            .filter_map(|a| a.value.as_deref())
    }

    /// First e-mail address: subject emailAddress, then SAN rfc822Name.
    pub fn email(&self) -> Option<&str> {
        self.attribute_values(OID_EMAIL)
            .chain(self.san_email.iter().map(String::as_str))
            .find(|s| !s.is_empty())
    }

    /// First UPN from the SAN.
    pub fn upn(&self) -> Option<&str> {
        self.san_upn
            .iter()
            .map(String::as_str)
            .find(|s| !s.is_empty())
    }

    /// Whether `now` (Unix seconds) is inside notBefore..=notAfter.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn extended_key_usage_oids(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let mut oids = Vec::new();
    let flags = [
        (eku.any, "2.5.29.37.0"),
        (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
        (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
        (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
    ];
    for (present, oid) in flags {
        if present {
            oids.push(oid.to_owned());
        }
    }
    oids.extend(eku.other.iter().map(|o| o.to_id_string()));
    oids
}

/// The UTF8String inside an otherName value (`[0] EXPLICIT UTF8String`).
fn other_name_utf8(value: &[u8]) -> Option<String> {
    let (_, explicit) = Any::from_der(value).ok()?;
    if explicit.tag() != Tag(0) {
        return None;
    }
    let (_, inner) = Any::from_der(explicit.data).ok()?;
    match inner.tag() {
        Tag::Utf8String => core::str::from_utf8(inner.data).ok().map(str::to_owned),
        _ => None,
    }
}

/// Decodes the directory string types to UTF-8; `None` for anything else or invalid data.
fn attribute_text(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString => {
            core::str::from_utf8(data).ok().map(str::to_owned)
        }
        // T.61 is treated as Latin-1, as OpenSSL does.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// Short names OpenSSL prints in RFC 2253 mode; other types are printed as dotted OIDs.
fn attribute_short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 4514 string of a distinguished name: RDNs from last to first, multi-valued RDNs joined
/// with `+`, special characters escaped, UTF-8 kept as is, non-string values as `#` hex of DER.
/// For ASCII names this is nginx's `$ssl_client_s_dn`; nginx (OpenSSL's RFC 2253 mode) writes
/// each byte of a non-ASCII character as `\XX` instead.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Within a multi-valued RDN too, the last attribute first, as OpenSSL prints it.
        let attributes: Vec<_> = rdn.iter().collect();
        for (j, atv) in attributes.iter().rev().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, atv);
        }
    }
    out
}

fn write_attribute(out: &mut String, atv: &AttributeTypeAndValue<'_>) {
    let oid = atv.attr_type().to_id_string();
    match attribute_short_name(&oid) {
        Some(short) => out.push_str(short),
        None => out.push_str(&oid),
    }
    out.push('=');
    match attribute_text(atv.attr_value()) {
        Some(text) => escape_rfc4514_value(out, &text),
        None => {
            out.push('#');
            out.push_str(&hex_lower(
                &atv.attr_value().to_der_vec().unwrap_or_default(),
            ));
        }
    }
}

/// Escapes an attribute value as RFC 4514 section 2.4 requires; control characters are
/// written as `\XX` so that the result is always printable.
pub fn escape_rfc4514_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// Serial number as OpenSSL prints it: upper-case hex of the magnitude, at least one byte.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let magnitude = &raw[start..];
    if magnitude.is_empty() {
        return "00".into();
    }
    magnitude.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

pub fn hex_lower(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::string::{BmpString, TeletexString, UniversalString};
    use rcgen::{
        CertificateParams, CustomExtension, DnType, DnValue, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose, OtherNameValue, SanType, SerialNumber,
    };

    const SMARTCARD_LOGON: [u64; 10] = [1, 3, 6, 1, 4, 1, 311, 20, 2, 2];
    const UPN: [u64; 10] = [1, 3, 6, 1, 4, 1, 311, 20, 2, 3];
    /// certificatePolicies with the one policy 2.16.840.1.101.2.1.11.42.
    const POLICIES_DER: [u8; 15] = [
        0x30, 0x0d, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x0b, 0x2a,
    ];

    fn der(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn with_subject(attrs: Vec<(DnType, DnValue)>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in attrs {
            params.distinguished_name.push(ty, value);
        }
        der(params)
    }

    #[test]
    fn cac_like_certificate() {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "US");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "U.S. Government");
        params
            .distinguished_name
            .push(DnType::CommonName, "LAST.FIRST.MIDDLE.1234567890");
        params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x0a, 0x1b]));
        params.subject_alt_names = vec![
            SanType::Rfc822Name("first.last@mail.mil".try_into().unwrap()),
            SanType::OtherName((
                UPN.to_vec(),
                OtherNameValue::Utf8String("1234567890@mil".into()),
            )),
            SanType::URI("urn:uuid:1".try_into().unwrap()),
            SanType::DnsName("host.example.org".try_into().unwrap()),
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::Other(SMARTCARD_LOGON.to_vec()),
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[2, 5, 29, 32],
            POLICIES_DER.to_vec(),
        )];
        let der = der(params);
        let info = CertificateInfo::from_der(&der).unwrap();
        assert_eq!(
            info.subject,
            "CN=LAST.FIRST.MIDDLE.1234567890,O=U.S. Government,C=US"
        );
        assert_eq!(info.issuer, info.subject);
        assert_eq!(info.serial, "0A1B");
        assert_eq!(info.fingerprint, hex_lower(&Sha256::digest(&der)));
        assert_eq!(info.email(), Some("first.last@mail.mil"));
        assert_eq!(info.upn(), Some("1234567890@mil"));
        assert_eq!(info.san_uri, vec!["urn:uuid:1".to_owned()]);
        assert_eq!(info.san_dns, vec!["host.example.org".to_owned()]);
        assert_eq!(
            info.extended_key_usage,
            vec![
                "1.3.6.1.5.5.7.3.2".to_owned(),
                "1.3.6.1.4.1.311.20.2.2".to_owned()
            ]
        );
        assert_eq!(info.key_usage, Some(0b11));
        assert_eq!(info.policies, vec!["2.16.840.1.101.2.1.11.42".to_owned()]);
        assert!(info.not_before < info.not_after);
    }

    #[test]
    fn string_types_decode_to_utf8() {
        let der = with_subject(vec![
            (
                DnType::CommonName,
                DnValue::BmpString(BmpString::try_from("Zoë Ørsted").unwrap()),
            ),
            (
                DnType::OrganizationName,
                DnValue::UniversalString(UniversalString::try_from("Øst 𝄞").unwrap()),
            ),
            (
                DnType::OrganizationalUnitName,
                DnValue::TeletexString(TeletexString::try_from("Ops").unwrap()),
            ),
        ]);
        let info = CertificateInfo::from_der(&der).unwrap();
        assert_eq!(info.attribute_values(OID_CN).next(), Some("Zoë Ørsted"));
        assert_eq!(info.subject, "OU=Ops,O=Øst 𝄞,CN=Zoë Ørsted");
    }

    #[test]
    fn special_characters_are_escaped() {
        let der = with_subject(vec![
            (DnType::CommonName, "#Doe, \"J\" <j+d>; \\ ".into()),
            (DnType::OrganizationName, "tab\there\r\n".into()),
        ]);
        let info = CertificateInfo::from_der(&der).unwrap();
        assert_eq!(
            info.subject,
            "O=tab\\09here\\0D\\0A,CN=\\#Doe\\, \\\"J\\\" \\<j\\+d\\>\\; \\\\\\ "
        );
        assert!(!info.subject.chars().any(char::is_control));
    }

    #[test]
    fn empty_subject() {
        let info = CertificateInfo::from_der(&with_subject(vec![])).unwrap();
        assert_eq!(info.subject, "");
        assert!(info.subject_attributes.is_empty());
        assert_eq!(info.email(), None);
    }

    #[test]
    fn invalid_utf8_is_no_text() {
        let mut der = with_subject(vec![(DnType::CommonName, "MARKER".into())]);
        // In the issuer and in the subject (the certificate is self-signed).
        while let Some(at) = der.windows(6).position(|w| w == b"MARKER") {
            der[at..at + 6].copy_from_slice(b"\xffBAD\xfe\x00");
        }
        let info = CertificateInfo::from_der(&der).unwrap();
        assert_eq!(info.attribute_values(OID_CN).next(), None);
        assert_eq!(info.subject, "CN=#0c06ff424144fe00");
    }

    #[test]
    fn not_a_certificate() {
        let der = with_subject(vec![(DnType::CommonName, "x".into())]);
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(CertificateInfo::from_der(&trailing).is_err());
        assert!(CertificateInfo::from_der(&der[..der.len() - 1]).is_err());
        assert!(CertificateInfo::from_der(b"").is_err());
        assert!(CertificateInfo::from_der(b"\x30\x03\x02\x01\x05").is_err());
    }

    #[test]
    fn serial_numbers() {
        assert_eq!(serial_hex(&[0x00, 0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
        assert_eq!(serial_hex(&[0x00, 0xff, 0x01]), "FF01");
    }
}
