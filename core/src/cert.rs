//! What the module needs to know about a client certificate, read once from its DER encoding.
//!
//! [`CertificateInfo`] owns every value, so it is parsed once and then shared by all the
//! requests of a connection, and by all the connections that present the same certificate
//! ([`ParsedCertificates`]), without parsing the DER again. Its texts live in one allocation
//! and its list of attributes, SAN entries, EKUs and policies in another: a few hundred bytes
//! per certificate, whatever the number of values, besides the DER itself, kept to hand the
//! certificate on to a backend.

use core::cell::Cell;
use core::fmt::{self, Write as _};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

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

/// Larger certificates are refused: real ones are a few KiB, and the limit keeps every offset
/// into the texts of a certificate within `u32`.
const MAX_DER_LEN: usize = 1 << 20;

/// Why a DER blob could not be read as a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Key usage bits, in the order of RFC 5280 section 4.2.1.3.
pub type KeyUsageBits = u16;

/// The lists a certificate's values belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// SAN rfc822Name.
    SanEmail,
    /// SAN otherName UPN (UTF8String values).
    SanUpn,
    SanDns,
    SanUri,
    /// Extended key usage OIDs, dotted.
    ExtendedKeyUsage,
    /// Certificate policy OIDs, dotted.
    Policy,
}

impl Field {
    /// How the log names values of this list.
    pub fn name(self) -> &'static str {
        match self {
            Self::SanEmail => "SAN email",
            Self::SanUpn => "SAN UPN",
            Self::SanDns => "SAN DNS",
            Self::SanUri => "SAN URI",
            Self::ExtendedKeyUsage => "extended key usage",
            Self::Policy => "certificate policies",
        }
    }

    /// Every list.
    pub const ALL: [Field; 6] = [
        Self::SanEmail,
        Self::SanUpn,
        Self::SanDns,
        Self::SanUri,
        Self::ExtendedKeyUsage,
        Self::Policy,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Whether `s` holds a control character (Unicode category Cc: U+0000 to U+001F, U+007F to
/// U+009F), which could split a header or a log line. No variable ever carries one.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// The kinds of value of a certificate that were left out because they hold control
/// characters: values of the lists ([`Field`]) and the subject emailAddress as
/// [`CertificateInfo::email`] would show it. The variables and the identity sources then show
/// the next value, or nothing; the log says which once ([`fmt::Display`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeftOut(u8);

impl LeftOut {
    const EMAIL_ATTRIBUTE: u8 = 1 << 7;

    /// Whether nothing was left out.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether values of `field` were left out.
    pub fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    /// Whether a subject emailAddress was passed over by [`CertificateInfo::email`].
    pub fn email_attribute(self) -> bool {
        self.0 & Self::EMAIL_ATTRIBUTE != 0
    }
}

impl fmt::Display for LeftOut {
    /// The kinds left out, comma-separated: `SAN email, SAN DNS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = Field::ALL
            .into_iter()
            .filter(|&field| self.contains(field))
            .map(Field::name);
        let attribute = self.email_attribute().then_some("subject emailAddress");
        for (i, name) in fields.chain(attribute).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// Whether the values left out of a certificate were logged: bookkeeping of the holder, not a
/// fact of the certificate, so equal and cloned certificates do not compare or copy it.
#[derive(Debug, Default)]
struct Noted(Cell<bool>);

impl Clone for Noted {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Noted {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Noted {}

/// A range of [`CertificateInfo::text`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// One value of a list, or one subject attribute (`field` is `None`): then `text` is its OID
/// and `value` its value, if it is a string type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    field: Option<Field>,
    text: Span,
    value: Option<Span>,
}

/// The facts of a certificate that identity, policy and variables use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Every text of the certificate, one after the other.
    text: Box<str>,
    subject: Span,
    issuer: Span,
    serial: Span,
    /// SHA-256 of the DER encoding.
    sha256: [u8; 32],
    /// The same, lower-case hex, for identity and variables.
    fingerprint: Span,
    /// Subject attributes in DER order, then the lists in certificate order.
    entries: Box<[Entry]>,
    /// SHA-256 of the issuer name's DER encoding: with [`Self::authority_key_id`], which CA
    /// issued the certificate, as a CRL names it.
    pub issuer_key: [u8; 32],
    /// The key identifier of the authority key identifier extension, when present.
    pub authority_key_id: Option<Box<[u8]>>,
    /// notBefore and notAfter, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Key usage bits, when the extension is present.
    pub key_usage: Option<KeyUsageBits>,
    /// The values left out because they hold control characters.
    left_out: LeftOut,
    noted: Noted,
    /// The DER encoding, to hand the certificate on (`$auth_cert_client_cert`).
    der: Box<[u8]>,
}

impl CertificateInfo {
    /// Reads a DER-encoded certificate. Trailing bytes after the certificate are an error.
    pub fn from_der(der: &[u8]) -> Result<Self, ParseError> {
        Self::parse(der, &Sha256::digest(der).into())
    }

    /// [`Self::from_der`] with the SHA-256 of `der` already at hand.
    fn parse(der: &[u8], sha256: &[u8; 32]) -> Result<Self, ParseError> {
        if der.len() > MAX_DER_LEN {
            return Err(ParseError("certificate too large".into()));
        }
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| ParseError(format!("malformed certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(ParseError("trailing data after certificate".into()));
        }

        let mut info = CertificateBuilder::default();
        info.subject(&rfc4514(cert.subject()))
            .issuer(&rfc4514(cert.issuer()))
            .serial(&serial_hex(cert.raw_serial()))
            .issuer_key(Sha256::digest(cert.issuer().as_raw()).into())
            .fingerprint(*sha256)
            .der(der)
            .validity(
                cert.validity().not_before.timestamp(),
                cert.validity().not_after.timestamp(),
            );
        for atv in cert.subject().iter_attributes() {
            let value = attribute_text(atv.attr_value());
            info.attribute(&atv.attr_type().to_id_string(), value.as_deref());
        }
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        add_general_name(&mut info, name);
                    }
                }
                ParsedExtension::ExtendedKeyUsage(eku) => add_extended_key_usage(&mut info, eku),
                ParsedExtension::KeyUsage(ku) => {
                    info.key_usage(ku.flags);
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    if let Some(id) = &aki.key_identifier {
                        info.authority_key_id(id.0);
                    }
                }
                ParsedExtension::CertificatePolicies(policies) => {
                    for policy in policies.iter() {
                        info.add(Field::Policy, &policy.policy_id.to_id_string());
                    }
                }
                _ => {}
            }
        }
        Ok(info.build())
    }

    fn text(&self, span: Span) -> &str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    /// Subject DN as an RFC 4514 string (most significant RDN last, as `$ssl_client_s_dn`).
    pub fn subject(&self) -> &str {
        self.text(self.subject)
    }

    /// Issuer DN as an RFC 4514 string.
    pub fn issuer(&self) -> &str {
        self.text(self.issuer)
    }

    /// Serial number in upper-case hex, as `$ssl_client_serial`.
    pub fn serial(&self) -> &str {
        self.text(self.serial)
    }

    /// SHA-256 of the DER encoding.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The DER encoding; empty for a certificate made without one ([`CertificateBuilder`]).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER encoding, lower-case hex, as `$ssl_client_fingerprint` shows SHA-1.
    pub fn fingerprint_hex(&self) -> &str {
        self.text(self.fingerprint)
    }

    /// Values of a subject attribute, in DER order, skipping values that are not text.
    pub fn attribute_values<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.field.is_none() && self.text(e.text) == oid)
            .filter_map(|e| e.value.map(|v| self.text(v)))
    }

    /// The values of one list, in certificate order.
    pub fn values(&self, field: Field) -> impl Iterator<Item = &str> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.field == Some(field))
            .map(|e| self.text(e.text))
    }

    /// First e-mail address: subject emailAddress, then SAN rfc822Name. Values with control
    /// characters are passed over (SAN values are not even kept, see [`Self::left_out`]).
    pub fn email(&self) -> Option<&str> {
        self.attribute_values(OID_EMAIL)
            .chain(self.values(Field::SanEmail))
            .find(|s| !s.is_empty() && !has_control(s))
    }

    /// First UPN from the SAN.
    pub fn upn(&self) -> Option<&str> {
        self.values(Field::SanUpn)
            .find(|s| !s.is_empty() && !has_control(s))
    }

    /// The values left out because they hold control characters. Subject attributes other
    /// than emailAddress are kept: the subject escapes them, and an identity taken from one
    /// is refused ([`crate::identity::IdentityError::Unsafe`]).
    pub fn left_out(&self) -> LeftOut {
        self.left_out
    }

    /// [`Self::left_out`] the first time it is asked for, when something was left out; `None`
    /// afterwards: the log tells it once per parse (one per worker while the certificate is in
    /// use, see [`ParsedCertificates`]), not once per request. [`Self::left_out`] still answers.
    pub fn left_out_once(&self) -> Option<LeftOut> {
        (!self.left_out.is_empty() && !self.noted.0.replace(true)).then_some(self.left_out)
    }

    /// Whether `now` (Unix seconds) is inside notBefore..=notAfter.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Puts together a [`CertificateInfo`]: the parser's way of building one, and the tests' way
/// of making one without a certificate.
#[derive(Debug, Default)]
pub struct CertificateBuilder {
    text: String,
    entries: Vec<Entry>,
    info: CertificateInfo,
}

impl CertificateBuilder {
    fn push(&mut self, text: &str) -> Span {
        let offset = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        let start = offset(self.text.len());
        self.text.push_str(text);
        Span {
            start,
            end: offset(self.text.len()),
        }
    }

    pub fn subject(&mut self, subject: &str) -> &mut Self {
        self.info.subject = self.push(subject);
        self
    }

    pub fn issuer(&mut self, issuer: &str) -> &mut Self {
        self.info.issuer = self.push(issuer);
        self
    }

    pub fn serial(&mut self, serial: &str) -> &mut Self {
        self.info.serial = self.push(serial);
        self
    }

    /// The SHA-256 of the DER encoding.
    pub fn fingerprint(&mut self, sha256: [u8; 32]) -> &mut Self {
        self.info.sha256 = sha256;
        self.info.fingerprint = self.push(&hex(&sha256, HEX_LOWER));
        self
    }

    /// The DER encoding the facts were read from.
    pub fn der(&mut self, der: &[u8]) -> &mut Self {
        self.info.der = der.into();
        self
    }

    pub fn validity(&mut self, not_before: i64, not_after: i64) -> &mut Self {
        self.info.not_before = not_before;
        self.info.not_after = not_after;
        self
    }

    /// The SHA-256 of the issuer name's DER encoding.
    pub fn issuer_key(&mut self, sha256: [u8; 32]) -> &mut Self {
        self.info.issuer_key = sha256;
        self
    }

    pub fn authority_key_id(&mut self, id: &[u8]) -> &mut Self {
        self.info.authority_key_id = Some(id.into());
        self
    }

    pub fn key_usage(&mut self, bits: KeyUsageBits) -> &mut Self {
        self.info.key_usage = Some(bits);
        self
    }

    /// A subject attribute; `value` is `None` when it is not a string type.
    pub fn attribute(&mut self, oid: &str, value: Option<&str>) -> &mut Self {
        if oid == OID_EMAIL && value.is_some_and(has_control) {
            self.info.left_out.0 |= LeftOut::EMAIL_ATTRIBUTE;
        }
        let text = self.push(oid);
        let value = value.map(|v| self.push(v));
        self.entries.push(Entry {
            field: None,
            text,
            value,
        });
        self
    }

    /// A value of one of the lists; left out, and noted in [`CertificateInfo::left_out`], when
    /// it holds a control character. A SAN value is a name as a whole: escaped, it would be
    /// another name (and could equal the name of another certificate).
    pub fn add(&mut self, field: Field, value: &str) -> &mut Self {
        if has_control(value) {
            self.info.left_out.0 |= field.bit();
            return self;
        }
        let text = self.push(value);
        self.entries.push(Entry {
            field: Some(field),
            text,
            value: None,
        });
        self
    }

    /// The certificate, in exactly sized allocations. Subject attributes stay before the lists,
    /// each group in the order it was given.
    pub fn build(mut self) -> CertificateInfo {
        self.entries.sort_by_key(|e| e.field.is_some());
        CertificateInfo {
            text: self.text.into_boxed_str(),
            entries: self.entries.into_boxed_slice(),
            ..self.info
        }
    }
}

fn add_general_name(info: &mut CertificateBuilder, name: &GeneralName<'_>) {
    match name {
        GeneralName::RFC822Name(s) => {
            info.add(Field::SanEmail, s);
        }
        GeneralName::DNSName(s) => {
            info.add(Field::SanDns, s);
        }
        GeneralName::URI(s) => {
            info.add(Field::SanUri, s);
        }
        GeneralName::OtherName(oid, value) if oid.to_id_string() == OID_UPN => {
            if let Some(upn) = other_name_utf8(value) {
                info.add(Field::SanUpn, upn);
            }
        }
        _ => {}
    }
}

fn add_extended_key_usage(
    info: &mut CertificateBuilder,
    eku: &x509_parser::extensions::ExtendedKeyUsage<'_>,
) {
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
            info.add(Field::ExtendedKeyUsage, oid);
        }
    }
    for oid in &eku.other {
        info.add(Field::ExtendedKeyUsage, &oid.to_id_string());
    }
}

/// The parsed certificates of a worker, by the SHA-256 of their DER: the connections that
/// present one certificate (a browser's parallel connections, every resumed session) share
/// one parse. A certificate is kept while a connection holds it and, once [`Self::keep`] has
/// been asked for it, while it is among the last [`RECENT_CERTIFICATES`] kept, so that a
/// client coming back finds its parse. The map's entries of certificates gone are dropped
/// whenever the map has doubled.
#[derive(Debug, Default)]
pub struct ParsedCertificates {
    by_sha256: HashMap<[u8; 32], Weak<CertificateInfo>>,
    recent: VecDeque<Rc<CertificateInfo>>,
    prune_at: usize,
}

/// How many recently met certificates [`ParsedCertificates`] keeps: a bound on the memory it
/// holds beyond the live connections (a few hundred bytes each, and their DER).
pub const RECENT_CERTIFICATES: usize = 256;

impl ParsedCertificates {
    /// The parsed certificate `der`, shared with the other holders of the same certificate.
    pub fn get_or_parse(&mut self, der: &[u8]) -> Result<Rc<CertificateInfo>, ParseError> {
        let sha256: [u8; 32] = Sha256::digest(der).into();
        if let Some(info) = self.by_sha256.get(&sha256).and_then(Weak::upgrade) {
            return Ok(info);
        }
        let info = Rc::new(CertificateInfo::parse(der, &sha256)?);
        if self.by_sha256.len() >= self.prune_at {
            self.by_sha256.retain(|_, kept| kept.strong_count() > 0);
            self.prune_at = (2 * self.by_sha256.len()).max(2 * RECENT_CERTIFICATES);
        }
        self.by_sha256.insert(sha256, Rc::downgrade(&info));
        Ok(info)
    }

    /// Keeps `info` among the recent certificates, past its connections. Only for certificates
    /// that verified: anyone can make certificates that do not, as large as a handshake allows.
    pub fn keep(&mut self, info: &Rc<CertificateInfo>) {
        if self
            .recent
            .back()
            .is_some_and(|last| Rc::ptr_eq(last, info))
        {
            return;
        }
        if self.recent.len() == RECENT_CERTIFICATES {
            self.recent.pop_front();
        }
        self.recent.push_back(info.clone());
    }
}

/// The UTF8String inside an otherName value (`[0] EXPLICIT UTF8String`).
fn other_name_utf8(value: &[u8]) -> Option<&str> {
    let (_, explicit) = Any::from_der(value).ok()?;
    if explicit.tag() != Tag(0) {
        return None;
    }
    let (_, inner) = Any::from_der(explicit.data).ok()?;
    match inner.tag() {
        Tag::Utf8String => core::str::from_utf8(inner.data).ok(),
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
            out.push_str(&hex(
                &atv.attr_value().to_der_vec().unwrap_or_default(),
                HEX_LOWER,
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
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    match &raw[start..] {
        [] => "00".into(),
        magnitude => hex(magnitude, HEX_UPPER),
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `bytes` in hex with `digits`.
fn hex(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(digits[usize::from(b >> 4)]));
        out.push(char::from(digits[usize::from(b & 0xf)]));
    }
    out
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
            info.subject(),
            "CN=LAST.FIRST.MIDDLE.1234567890,O=U.S. Government,C=US"
        );
        assert_eq!(info.issuer(), info.subject());
        assert_eq!(info.serial(), "0A1B");
        assert_eq!(
            info.fingerprint_hex(),
            hex(&Sha256::digest(&der), HEX_LOWER)
        );
        assert_eq!(info.fingerprint(), &<[u8; 32]>::from(Sha256::digest(&der)));
        assert_eq!(info.der(), der.as_slice());
        assert_eq!(info.email(), Some("first.last@mail.mil"));
        assert_eq!(info.upn(), Some("1234567890@mil"));
        assert_eq!(
            info.values(Field::SanUri).collect::<Vec<_>>(),
            ["urn:uuid:1"]
        );
        assert_eq!(
            info.values(Field::SanDns).collect::<Vec<_>>(),
            ["host.example.org"]
        );
        assert_eq!(
            info.values(Field::ExtendedKeyUsage).collect::<Vec<_>>(),
            ["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"]
        );
        assert_eq!(info.key_usage, Some(0b11));
        assert_eq!(
            info.values(Field::Policy).collect::<Vec<_>>(),
            ["2.16.840.1.101.2.1.11.42"]
        );
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
        assert_eq!(info.subject(), "OU=Ops,O=Øst 𝄞,CN=Zoë Ørsted");
    }

    #[test]
    fn special_characters_are_escaped() {
        let der = with_subject(vec![
            (DnType::CommonName, "#Doe, \"J\" <j+d>; \\ ".into()),
            (DnType::OrganizationName, "tab\there\r\n".into()),
        ]);
        let info = CertificateInfo::from_der(&der).unwrap();
        assert_eq!(
            info.subject(),
            "O=tab\\09here\\0D\\0A,CN=\\#Doe\\, \\\"J\\\" \\<j\\+d\\>\\; \\\\\\ "
        );
        assert!(!info.subject().chars().any(char::is_control));
    }

    #[test]
    fn san_values_with_control_characters_are_left_out() {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "crlf");
        params.subject_alt_names = vec![
            SanType::Rfc822Name("bob@corp\r\nX-Admin: 1".try_into().unwrap()),
            SanType::Rfc822Name("bob@corp.example".try_into().unwrap()),
            SanType::OtherName((
                UPN.to_vec(),
                OtherNameValue::Utf8String("bob\u{85}@corp".into()),
            )),
            SanType::OtherName((UPN.to_vec(), OtherNameValue::Utf8String("bob@corp".into()))),
            SanType::URI("urn:a\x7fb".try_into().unwrap()),
            SanType::URI("urn:ok".try_into().unwrap()),
        ];
        let info = CertificateInfo::from_der(&der(params)).unwrap();
        assert_eq!(info.email(), Some("bob@corp.example"));
        assert_eq!(info.upn(), Some("bob@corp"));
        assert_eq!(info.values(Field::SanUri).collect::<Vec<_>>(), ["urn:ok"]);
        assert_eq!(info.values(Field::SanDns).next(), None);
        let left_out = info.left_out();
        assert!(left_out.contains(Field::SanEmail) && left_out.contains(Field::SanUpn));
        assert!(left_out.contains(Field::SanUri) && !left_out.contains(Field::SanDns));
        assert!(!left_out.email_attribute());
        assert_eq!(left_out.to_string(), "SAN email, SAN UPN, SAN URI");
    }

    #[test]
    fn a_dns_name_with_control_characters_is_left_out() {
        // rcgen refuses such a dNSName: write it over a placeholder of the same length.
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::DnsName("MARKER.example".try_into().unwrap()),
            SanType::DnsName("ok.example".try_into().unwrap()),
        ];
        let mut der = der(params);
        let at = der.windows(6).position(|w| w == b"MARKER").unwrap();
        der[at..at + 6].copy_from_slice(b"a\r\nb\x01\x7f");
        let info = CertificateInfo::from_der(&der).unwrap();
        assert_eq!(
            info.values(Field::SanDns).collect::<Vec<_>>(),
            ["ok.example"]
        );
        assert_eq!(info.left_out().to_string(), "SAN DNS");
    }

    #[test]
    fn a_subject_email_with_control_characters_is_passed_over() {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "x");
        params.distinguished_name.push(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            DnValue::Ia5String("x@corp\r\nX-Admin: 1".try_into().unwrap()),
        );
        params.subject_alt_names = vec![SanType::Rfc822Name("x@corp.example".try_into().unwrap())];
        let info = CertificateInfo::from_der(&der(params)).unwrap();
        assert_eq!(info.email(), Some("x@corp.example"));
        // Kept as an attribute: the subject escapes it, an identity refuses it.
        assert_eq!(
            info.attribute_values(OID_EMAIL).next(),
            Some("x@corp\r\nX-Admin: 1")
        );
        assert_eq!(info.subject(), "emailAddress=x@corp\\0D\\0AX-Admin: 1,CN=x");
        assert!(info.left_out().email_attribute());
        assert_eq!(info.left_out().to_string(), "subject emailAddress");
    }

    #[test]
    fn what_was_left_out_is_told_once() {
        let mut b = CertificateBuilder::default();
        b.add(Field::SanEmail, "a\r\n@corp");
        let info = b.build();
        let copy = info.clone();
        assert_eq!(
            info.left_out_once().map(|l| l.to_string()).as_deref(),
            Some("SAN email")
        );
        assert_eq!(info.left_out_once(), None);
        assert!(info.left_out().contains(Field::SanEmail));
        // Not a fact of the certificate: equal to, and not shared with, its copy.
        assert_eq!(info, copy);
        assert!(copy.left_out_once().is_some());
        let ordinary = CertificateBuilder::default().build();
        assert_eq!(ordinary.left_out_once(), None);
    }

    #[test]
    fn nothing_left_out_of_an_ordinary_certificate() {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::Rfc822Name("a@corp.example".try_into().unwrap()),
            SanType::DnsName("h.example".try_into().unwrap()),
        ];
        let info = CertificateInfo::from_der(&der(params)).unwrap();
        assert!(info.left_out().is_empty());
        assert_eq!(info.left_out().to_string(), "");
        assert_eq!(
            info.values(Field::SanDns).collect::<Vec<_>>(),
            ["h.example"]
        );
    }

    #[test]
    fn no_text_of_a_certificate_holds_a_control_character() {
        let mut b = CertificateBuilder::default();
        b.attribute(OID_EMAIL, Some("a\tb@corp"))
            .add(Field::SanEmail, "\u{9f}@corp")
            .add(Field::SanUpn, "\0")
            .add(Field::SanDns, "a\x1b.example")
            .add(Field::SanUri, "urn:\n");
        let info = b.build();
        assert_eq!((info.email(), info.upn()), (None, None));
        for field in Field::ALL {
            assert_eq!(info.values(field).next(), None);
        }
        assert_eq!(
            info.left_out().to_string(),
            "SAN email, SAN UPN, SAN DNS, SAN URI, subject emailAddress"
        );
    }

    #[test]
    fn empty_subject() {
        let info = CertificateInfo::from_der(&with_subject(vec![])).unwrap();
        assert_eq!(info.subject(), "");
        assert!(!info.entries.iter().any(|e| e.field.is_none()));
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
        assert_eq!(info.subject(), "CN=#0c06ff424144fe00");
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

    #[test]
    fn builder_keeps_attributes_before_lists_in_given_order() {
        let mut b = CertificateBuilder::default();
        b.add(Field::SanEmail, "a@example.org")
            .attribute(OID_CN, Some("first"))
            .add(Field::SanEmail, "b@example.org")
            .attribute("2.5.4.5", None)
            .attribute(OID_CN, Some("second"))
            .subject("CN=second+CN=first");
        let info = b.build();
        assert_eq!(
            info.attribute_values(OID_CN).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(info.attribute_values("2.5.4.5").next(), None);
        assert_eq!(
            info.values(Field::SanEmail).collect::<Vec<_>>(),
            ["a@example.org", "b@example.org"]
        );
        assert_eq!(info.email(), Some("a@example.org"));
        assert_eq!(info.subject(), "CN=second+CN=first");
        assert_eq!(info.issuer(), "");
    }

    #[test]
    fn connections_of_one_certificate_share_one_parse() {
        let alice = with_subject(vec![(DnType::CommonName, "alice".into())]);
        let bob = with_subject(vec![(DnType::CommonName, "bob".into())]);
        let mut parsed = ParsedCertificates::default();
        let first = parsed.get_or_parse(&alice).unwrap();
        let again = parsed.get_or_parse(&alice).unwrap();
        assert!(Rc::ptr_eq(&first, &again));
        let other = parsed.get_or_parse(&bob).unwrap();
        assert_eq!(other.attribute_values(OID_CN).next(), Some("bob"));
        assert!(parsed.get_or_parse(b"\x30\x00").is_err());

        // A kept certificate outlives its connections; another one does not.
        parsed.keep(&first);
        let address = Rc::as_ptr(&first);
        drop((first, again));
        assert_eq!(Rc::as_ptr(&parsed.get_or_parse(&alice).unwrap()), address);
        let bob_gone = Rc::downgrade(&other);
        drop(other);
        assert_eq!(bob_gone.strong_count(), 0);
    }

    #[test]
    fn only_recent_and_live_certificates_are_kept() {
        let ders: Vec<_> = (0..3 * RECENT_CERTIFICATES)
            .map(|i| with_subject(vec![(DnType::CommonName, format!("user{i}").into())]))
            .collect();
        let mut parsed = ParsedCertificates::default();
        let live = parsed.get_or_parse(&ders[0]).unwrap();
        let gone = {
            let info = parsed.get_or_parse(&ders[1]).unwrap();
            parsed.keep(&info);
            Rc::downgrade(&info)
        };
        for der in &ders[2..] {
            let info = parsed.get_or_parse(der).unwrap();
            parsed.keep(&info);
            assert!(parsed.recent.len() <= RECENT_CERTIFICATES);
            assert!(parsed.by_sha256.len() <= 4 * RECENT_CERTIFICATES);
        }
        // Out of the recent ones and held by nobody: freed, and its entry pruned.
        assert_eq!(gone.strong_count(), 0);
        assert!(parsed.by_sha256.len() < ders.len());
        // Among the recent ones: still shared.
        let last = Rc::as_ptr(parsed.recent.back().unwrap());
        assert_eq!(
            Rc::as_ptr(&parsed.get_or_parse(&ders[ders.len() - 1]).unwrap()),
            last
        );
        // Held by a connection: still shared.
        assert!(Rc::ptr_eq(&live, &parsed.get_or_parse(&ders[0]).unwrap()));
    }

    #[test]
    fn too_large_is_refused() {
        assert_eq!(
            CertificateInfo::from_der(&vec![0; MAX_DER_LEN + 1]),
            Err(ParseError("certificate too large".into()))
        );
    }
}
