//! Credentials that arrive in the request rather than in the TLS handshake, and the networks
//! they are accepted from: `auth_cert_header` and `auth_cert_identity_arg`.

pub mod der64;
pub mod pem;
pub mod rfc9440;
pub mod xfcc;

use core::fmt;
use core::net::IpAddr;
use std::collections::VecDeque;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

/// The peer addresses a forwarded credential is accepted from (`from=cidr`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedNetworks(Vec<IpNet>);

impl TrustedNetworks {
    /// Whether `peer` is inside one of the networks. IPv4-mapped IPv6 addresses
    /// (`::ffff:192.0.2.1`, from a dual-stack listener) count as their IPv4 address.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }

    /// A CIDR (`192.0.2.0/24`, `2001:db8::/32`) or a single address.
    fn push(&mut self, word: &str) -> Result<(), String> {
        let net = match word.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => word
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("invalid network \"{word}\""))?,
        };
        self.0.push(net);
        Ok(())
    }
}

/// Where the evaluated credential came from: `$auth_cert_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client certificate of the TLS handshake.
    Tls,
    /// A certificate forwarded in `auth_cert_header`.
    Header,
    /// The query argument of `auth_cert_identity_arg`.
    Arg,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Header => "header",
            Self::Arg => "arg",
        }
    }
}

/// `auth_cert_header name from=cidr... ca=file [depth=n] [format=...] [chain=name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSource {
    /// Header name as written; matched without regard to case.
    pub name: String,
    pub from: TrustedNetworks,
    /// The CA file, as written (nginx resolves it against its configuration prefix).
    pub ca: String,
    /// The most intermediate CAs a chain may have between the client certificate and the
    /// trust anchor, as nginx's `ssl_verify_depth` counts (OpenSSL's verify depth).
    pub depth: u32,
    /// How the sender writes the certificates (`format=`), declared, never guessed.
    pub format: Format,
    /// The header with the intermediates, when the sender sends them apart (`chain=`).
    pub chain: Option<String>,
}

/// The encodings of a forwarded certificate header (`format=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// PEM, URL-escaped (nginx, AWS ALB) or raw with newlines, spaces or tabs.
    #[default]
    Pem,
    /// RFC 9440 `Client-Cert`: a structured-field byte sequence of the DER.
    Rfc9440,
    /// Envoy's `x-forwarded-client-cert`: the `Cert=` and `Chain=` of the last element.
    Xfcc,
    /// Base64 DER, several separated by commas (Traefik, HAProxy, Cloudflare).
    Der64,
}

impl Format {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "pem" => Self::Pem,
            "rfc9440" => Self::Rfc9440,
            "xfcc" => Self::Xfcc,
            "der64" => Self::Der64,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::Rfc9440 => "rfc9440",
            Self::Xfcc => "xfcc",
            Self::Der64 => "der64",
        }
    }

    /// The DER certificates of one value of the certificate header, client certificate first.
    pub fn decode(self, value: &[u8]) -> Result<Vec<Vec<u8>>, HeaderError> {
        if value.len() > MAX_HEADER_LEN {
            return Err(HeaderError::TooLong);
        }
        match self {
            Self::Pem => pem::decode_chain(value),
            Self::Rfc9440 => rfc9440::decode_item(value).map(|der| vec![der]),
            Self::Xfcc => xfcc::decode(value),
            Self::Der64 => der64::decode(value),
        }
    }

    /// The DER certificates of one line of the chain header; an empty line holds none.
    pub fn decode_chain(self, value: &[u8]) -> Result<Vec<Vec<u8>>, HeaderError> {
        if value.iter().all(|&b| b == b' ' || b == b'\t') {
            return Ok(Vec::new());
        }
        match self {
            Self::Pem => pem::decode_chain(value),
            Self::Rfc9440 => rfc9440::decode_list(value),
            // `chain=` is refused with `xfcc` (its chain is in `Chain=`).
            Self::Xfcc => Err(HeaderError::Syntax("no chain header in format xfcc")),
            Self::Der64 => der64::decode(value),
        }
    }
}

/// Longest header value accepted (and longest chain header, all its lines together); a
/// client certificate with two intermediates, escaped, is far below it.
pub const MAX_HEADER_LEN: usize = 32 * 1024;
/// Most certificates accepted for one request, client certificate and intermediates.
pub const MAX_CHAIN: usize = 8;

/// Why a forwarded header is not a certificate chain: the precise cause, for the log line
/// of reason `header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    TooLong,
    ChainTooLong,
    Escaping,
    NoCertificate,
    Unterminated,
    PemBase64,
    TooMany,
    Garbage,
    /// Base64 of DER (formats `rfc9440`, `der64`, not PEM).
    Base64,
    /// An empty member of a list of certificates.
    Empty,
    /// Decoded bytes that are not DER certificates one after the other.
    Der,
    /// A value that breaks its format's syntax, with what is wrong.
    Syntax(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "header value too long",
            Self::ChainTooLong => "chain header too long",
            Self::Escaping => "invalid percent-encoding",
            Self::NoCertificate => "no PEM certificate",
            Self::Unterminated => "PEM certificate without END line",
            Self::PemBase64 => "invalid base64 in PEM certificate",
            Self::TooMany => "too many certificates",
            Self::Garbage => "unexpected data around PEM certificates",
            Self::Base64 => "invalid base64",
            Self::Empty => "empty certificate",
            Self::Der => "not a DER certificate",
            Self::Syntax(what) => what,
        })
    }
}

/// Splits decoded bytes into the DER certificates they hold one after the other (HAProxy's
/// `ssl_c_chain_der` concatenates a chain): each must be a SEQUENCE with a definite length.
pub fn split_der(mut der: &[u8]) -> Result<Vec<Vec<u8>>, HeaderError> {
    let mut certs = Vec::new();
    while !der.is_empty() {
        let len = der_len(der).ok_or(HeaderError::Der)?;
        if certs.len() == MAX_CHAIN {
            return Err(HeaderError::TooMany);
        }
        certs.push(der[..len].to_vec());
        der = &der[len..];
    }
    if certs.is_empty() {
        return Err(HeaderError::Empty);
    }
    Ok(certs)
}

/// The length, header included, of the SEQUENCE at the start of `der`, when it fits.
fn der_len(der: &[u8]) -> Option<usize> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (body, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let body = rest[..n]
            .iter()
            .fold(0usize, |len, &b| len << 8 | usize::from(b));
        (body, 2 + n)
    };
    let len = header.checked_add(body)?;
    (len <= der.len()).then_some(len)
}

/// `depth=` of `auth_cert_header` when not written: the usual smartcard chain (client
/// certificate, issuing CA, root) and one more intermediate.
pub const DEFAULT_HEADER_DEPTH: u32 = 2;

/// The largest `depth=`: OpenSSL's own default limit.
pub const MAX_HEADER_DEPTH: u32 = 100;

/// `auth_cert_identity_arg name from=cidr...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSource {
    pub name: String,
    pub from: TrustedNetworks,
}

/// Longest identity accepted from a query argument.
pub const MAX_ARG_IDENTITY: usize = 256;

impl HeaderSource {
    pub fn parse(args: &[&str]) -> Result<Self, String> {
        let (name, rest) = split_name(args)?;
        let mut from = TrustedNetworks::default();
        let mut ca = None;
        let mut depth = None;
        let (mut format, mut chain) = (None, None);
        for word in rest {
            if let Some(value) = word.strip_prefix("from=") {
                from.push(value)?;
            } else if let Some(value) = word.strip_prefix("ca=") {
                if ca.is_some() || value.is_empty() {
                    return Err(format!("invalid parameter \"{word}\""));
                }
                ca = Some(value.to_owned());
            } else if let Some(value) = word.strip_prefix("depth=") {
                if depth.is_some() {
                    return Err(format!("invalid parameter \"{word}\""));
                }
                depth = Some(parse_depth(value)?);
            } else if let Some(value) = word.strip_prefix("format=") {
                if format.is_some() {
                    return Err(format!("invalid parameter \"{word}\""));
                }
                format = Some(Format::from_name(value).ok_or_else(|| {
                    format!("invalid parameter \"{word}\": format is pem, rfc9440, xfcc or der64")
                })?);
            } else if let Some(value) = word.strip_prefix("chain=") {
                if chain.is_some() || !is_header_name(value) || value.eq_ignore_ascii_case(&name) {
                    return Err(format!("invalid parameter \"{word}\""));
                }
                chain = Some(value.to_owned());
            } else {
                return Err(format!("invalid parameter \"{word}\""));
            }
        }
        if from.0.is_empty() {
            return Err("missing \"from=\" parameter".into());
        }
        let ca = ca.ok_or("missing \"ca=\" parameter")?;
        let format = format.unwrap_or_default();
        if format == Format::Xfcc && chain.is_some() {
            return Err("\"chain=\" with \"format=xfcc\": the chain is in its \"Chain=\"".into());
        }
        Ok(Self {
            name,
            from,
            ca,
            depth: depth.unwrap_or(DEFAULT_HEADER_DEPTH),
            format,
            chain,
        })
    }

    /// The DER certificates of the header's value and of the chain header's lines, client
    /// certificate first, within [`MAX_HEADER_LEN`] and [`MAX_CHAIN`].
    pub fn decode(&self, value: &[u8], chain: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, HeaderError> {
        if chain.iter().map(Vec::len).sum::<usize>() > MAX_HEADER_LEN {
            return Err(HeaderError::ChainTooLong);
        }
        let mut certs = self.format.decode(value)?;
        for line in chain {
            certs.extend(self.format.decode_chain(line)?);
            if certs.len() > MAX_CHAIN {
                return Err(HeaderError::TooMany);
            }
        }
        Ok(certs)
    }
}

/// The value of `depth=`: a decimal number from 0 to [`MAX_HEADER_DEPTH`].
fn parse_depth(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|d| value.bytes().all(|b| b.is_ascii_digit()) && *d <= MAX_HEADER_DEPTH)
        .ok_or_else(|| {
            format!("invalid depth \"{value}\", it must be a number from 0 to {MAX_HEADER_DEPTH}")
        })
}

impl ArgSource {
    pub fn parse(args: &[&str]) -> Result<Self, String> {
        let (name, rest) = split_name(args)?;
        let mut from = TrustedNetworks::default();
        for word in rest {
            match word.strip_prefix("from=") {
                Some(value) => from.push(value)?,
                None => return Err(format!("invalid parameter \"{word}\"")),
            }
        }
        if from.0.is_empty() {
            return Err("missing \"from=\" parameter".into());
        }
        Ok(Self { name, from })
    }

    /// The identity carried by the raw (still URL-escaped) argument value: percent-decoded,
    /// UTF-8, non-empty, bounded and free of control characters.
    pub fn identity(raw: &[u8]) -> Result<String, &'static str> {
        let bytes = percent_decode(raw).ok_or("invalid percent-encoding")?;
        let text = String::from_utf8(bytes).map_err(|_| "not UTF-8")?;
        if text.is_empty() {
            return Err("empty");
        }
        if text.len() > MAX_ARG_IDENTITY {
            return Err("too long");
        }
        if text.chars().any(char::is_control) {
            return Err("control characters");
        }
        Ok(text)
    }
}

/// The name (first word) of a directive with `key=value` parameters after it.
fn split_name<'a, 'b>(args: &'b [&'a str]) -> Result<(String, &'b [&'a str]), String> {
    let (name, rest) = args
        .split_first()
        .ok_or_else(|| "missing name".to_owned())?;
    if !is_header_name(name) {
        return Err(format!("invalid name \"{name}\""));
    }
    Ok(((*name).to_owned(), rest))
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Decodes `%XX` escapes; `None` for a `%` not followed by two hex digits. `+` is kept, as it
/// is a base64 character in an escaped certificate.
pub fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hi = hex_digit(*input.get(i + 1)?)?;
            let lo = hex_digit(*input.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// How many verified forwarded chains a worker remembers.
pub const VERIFIED_CHAINS: usize = 64;

/// The forwarded header values whose chains verified lately, so that the stream of requests a
/// load balancer forwards for one client does not verify the same chain for each of them.
/// A verdict holds only for the trust store that gave it and inside the validity window of the
/// chain that was verified (the latest notBefore to the earliest notAfter), which is all that
/// the verification depends on; failures are not kept.
#[derive(Debug)]
pub struct VerifiedChains<T> {
    entries: VecDeque<(ChainKey, (i64, i64), T)>,
}

/// A forwarded header value, in its format and with the lines of its chain header, as
/// verified against one trust store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainKey {
    store: u64,
    sha256: [u8; 32],
}

impl ChainKey {
    pub fn new(store: u64, format: Format, header: &[u8], chain: &[Vec<u8>]) -> Self {
        let mut hash = Sha256::new();
        hash.update(format.as_str());
        for part in core::iter::once(header).chain(chain.iter().map(Vec::as_slice)) {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Self {
            store,
            sha256: hash.finalize().into(),
        }
    }
}

impl<T> Default for VerifiedChains<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }
}

impl<T: Clone> VerifiedChains<T> {
    /// What `insert` kept for `key`, if its chain's verdict holds at `now`.
    pub fn get(&self, key: &ChainKey, now: i64) -> Option<T> {
        self.entries
            .iter()
            .find(|(kept, ..)| kept == key)
            .filter(|(_, valid, _)| valid.0 <= now && now <= valid.1)
            .map(|(.., value)| value.clone())
    }

    /// Remembers that `key` verified, for `valid` (Unix seconds, both ends included),
    /// dropping the oldest entry when full.
    pub fn insert(&mut self, key: ChainKey, valid: (i64, i64), value: T) {
        self.entries.retain(|(kept, ..)| *kept != key);
        if self.entries.len() == VERIFIED_CHAINS {
            self.entries.pop_front();
        }
        self.entries.push_back((key, valid, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn header_directive() {
        let h = HeaderSource::parse(&[
            "X-Client-Cert",
            "from=10.0.0.0/8",
            "from=2001:db8::/32",
            "from=192.0.2.7",
            "ca=certs/lb-ca.crt",
        ])
        .unwrap();
        assert_eq!(h.name, "X-Client-Cert");
        assert_eq!(h.ca, "certs/lb-ca.crt");
        assert_eq!(h.depth, DEFAULT_HEADER_DEPTH);
        assert!(h.from.contains(ip("10.1.2.3")));
        assert!(h.from.contains(ip("2001:db8::1")));
        assert!(h.from.contains(ip("192.0.2.7")));
        assert!(!h.from.contains(ip("192.0.2.8")));
        assert!(h.from.contains(ip("::ffff:10.9.9.9")));
        assert!(!h.from.contains(ip("127.0.0.1")));
        assert_eq!((h.format, h.chain), (Format::Pem, None));
    }

    #[test]
    fn header_formats() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["Client-Cert", "from=10.0.0.0/8", "ca=ca.pem"];
            args.extend(extra);
            HeaderSource::parse(&args)
        };
        for (word, format) in [
            ("format=pem", Format::Pem),
            ("format=rfc9440", Format::Rfc9440),
            ("format=xfcc", Format::Xfcc),
            ("format=der64", Format::Der64),
        ] {
            assert_eq!(parse(&[word]).unwrap().format, format);
            assert_eq!(Format::from_name(format.as_str()), Some(format));
        }
        let h = parse(&["format=rfc9440", "chain=Client-Cert-Chain"]).unwrap();
        assert_eq!(h.chain.as_deref(), Some("Client-Cert-Chain"));
        let err = |extra: &[&str]| parse(extra).unwrap_err();
        assert_eq!(
            err(&["format=PEM"]),
            "invalid parameter \"format=PEM\": format is pem, rfc9440, xfcc or der64"
        );
        assert_eq!(
            err(&["format=pem", "format=der64"]),
            "invalid parameter \"format=der64\""
        );
        assert_eq!(err(&["chain="]), "invalid parameter \"chain=\"");
        assert_eq!(err(&["chain=a b"]), "invalid parameter \"chain=a b\"");
        assert_eq!(
            err(&["chain=client-cert"]),
            "invalid parameter \"chain=client-cert\""
        );
        assert_eq!(
            err(&["chain=a", "chain=b"]),
            "invalid parameter \"chain=b\""
        );
        assert_eq!(
            err(&["format=xfcc", "chain=X"]),
            "\"chain=\" with \"format=xfcc\": the chain is in its \"Chain=\""
        );
    }

    #[test]
    fn header_and_chain_header_decoded_together() {
        let source = |format: &str| {
            HeaderSource::parse(&["C", "from=::1", "ca=a", format, "chain=D"]).unwrap()
        };
        let (one, two, three) = (
            b"\x30\x03\x02\x01\x01".to_vec(),
            b"\x30\x03\x02\x01\x02".to_vec(),
            b"\x30\x03\x02\x01\x03".to_vec(),
        );
        let rfc = source("format=rfc9440");
        assert_eq!(
            rfc.decode(
                b":MAMCAQE=:",
                &[b":MAMCAQI=:".to_vec(), b" :MAMCAQM=:".to_vec()]
            ),
            Ok(vec![one.clone(), two.clone(), three.clone()])
        );
        assert_eq!(
            rfc.decode(b":MAMCAQE=:", &[b"".to_vec()]),
            Ok(vec![one.clone()])
        );
        assert_eq!(
            rfc.decode(b":MAMCAQE=:", &[b"MAMCAQI=".to_vec()]),
            Err(HeaderError::Syntax("not a byte sequence (\":base64:\")"))
        );
        let der64 = source("format=der64");
        assert_eq!(
            der64.decode(b"MAMCAQE=", &[b"MAMCAQIwAwIBAw==".to_vec()]),
            Ok(vec![one.clone(), two, three])
        );
        assert_eq!(der64.decode(b"MAMCAQE=", &[]), Ok(vec![one.clone()]));
        let eight = vec![b"MAMCAQE=".to_vec(); MAX_CHAIN];
        assert_eq!(der64.decode(b"MAMCAQE=", &eight), Err(HeaderError::TooMany));
        let long = vec![b'A'; MAX_HEADER_LEN / 2 + 1];
        assert_eq!(
            der64.decode(b"MAMCAQE=", &[long.clone(), long]),
            Err(HeaderError::ChainTooLong)
        );
        assert_eq!(
            der64.decode(&vec![b'A'; MAX_HEADER_LEN + 1], &[]),
            Err(HeaderError::TooLong)
        );
        let pem = source("format=pem");
        let block = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem.decode(block.as_bytes(), &[block.as_bytes().to_vec()]),
            Ok(vec![one.clone(), one])
        );
    }

    /// A real certificate, written as each sender writes it, decodes to its DER, which
    /// `$auth_cert_client_cert` hands on as RFC 9440 writes it.
    #[test]
    fn every_format_carries_a_real_certificate() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let b64 = STANDARD.encode(&der);
        let pem = cert.pem();
        let escaped: String = pem
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let values = [
            (Format::Pem, escaped.clone()),
            (Format::Pem, pem.trim_end().replace('\n', "\n\t")),
            (Format::Pem, pem.replace('\n', " ")),
            (Format::Rfc9440, format!(":{b64}:")),
            (
                Format::Xfcc,
                format!("By=spiffe://a;Hash=00;Cert=\"{escaped}\";Subject=\"CN=client\""),
            ),
            (Format::Der64, b64.clone()),
        ];
        for (format, value) in values {
            let certs = format.decode(value.as_bytes());
            assert_eq!(certs, Ok(vec![der.clone()]), "{format:?}: {value}");
            let info = crate::cert::CertificateInfo::from_der(&certs.unwrap()[0]).unwrap();
            assert_eq!(rfc9440::encode(info.der()), format!(":{b64}:"));
        }
    }

    #[test]
    fn der_sequences() {
        assert_eq!(split_der(b""), Err(HeaderError::Empty));
        assert_eq!(split_der(b"\x30\x00"), Ok(vec![b"\x30\x00".to_vec()]));
        assert_eq!(split_der(b"\x31\x00"), Err(HeaderError::Der));
        assert_eq!(split_der(b"\x30"), Err(HeaderError::Der));
        assert_eq!(split_der(b"\x30\x80\x00\x00"), Err(HeaderError::Der));
        assert_eq!(
            split_der(b"\x30\x85\x00\x00\x00\x00\x00"),
            Err(HeaderError::Der)
        );
        assert_eq!(
            split_der(b"\x30\x84\xff\xff\xff\xff"),
            Err(HeaderError::Der)
        );
        assert_eq!(
            split_der(b"\x30\x82\x00\x01\x05\x30\x00"),
            Ok(vec![b"\x30\x82\x00\x01\x05".to_vec(), b"\x30\x00".to_vec()])
        );
    }

    #[test]
    fn header_depth() {
        let depth = |d: &str| HeaderSource::parse(&["X", "from=::1", "ca=a", d]).map(|h| h.depth);
        assert_eq!(depth("depth=0"), Ok(0));
        assert_eq!(depth("depth=1"), Ok(1));
        assert_eq!(depth("depth=3"), Ok(3));
        assert_eq!(depth("depth=100"), Ok(100));
        assert_eq!(
            HeaderSource::parse(&["X", "depth=1", "from=::1", "ca=a"]).map(|h| h.depth),
            Ok(1)
        );
        for bad in ["", "-1", "+1", "101", "1.5", "x", " 1", "4294967296", "0x2"] {
            assert_eq!(
                depth(&format!("depth={bad}")),
                Err(format!(
                    "invalid depth \"{bad}\", it must be a number from 0 to 100"
                )),
                "{bad:?}"
            );
        }
        assert_eq!(
            HeaderSource::parse(&["X", "from=::1", "ca=a", "depth=1", "depth=2"]).unwrap_err(),
            "invalid parameter \"depth=2\""
        );
    }

    #[test]
    fn header_directive_errors() {
        let err = |args: &[&str]| HeaderSource::parse(args).unwrap_err();
        assert_eq!(err(&[]), "missing name");
        assert_eq!(
            err(&["from=10.0.0.0/8"]),
            "invalid name \"from=10.0.0.0/8\""
        );
        assert_eq!(err(&["X a", "from=10.0.0.0/8"]), "invalid name \"X a\"");
        assert_eq!(
            err(&["X", "from=10.0.0.0/33", "ca=a"]),
            "invalid network \"10.0.0.0/33\""
        );
        assert_eq!(
            err(&["X", "from=10.0.0.300", "ca=a"]),
            "invalid network \"10.0.0.300\""
        );
        assert_eq!(err(&["X", "ca=a"]), "missing \"from=\" parameter");
        assert_eq!(err(&["X", "from=::1"]), "missing \"ca=\" parameter");
        assert_eq!(err(&["X", "from=::1", "ca="]), "invalid parameter \"ca=\"");
        assert_eq!(
            err(&["X", "from=::1", "ca=a", "ca=b"]),
            "invalid parameter \"ca=b\""
        );
        assert_eq!(
            err(&["X", "from=::1", "ca=a", "trust=all"]),
            "invalid parameter \"trust=all\""
        );
    }

    #[test]
    fn arg_directive() {
        let a = ArgSource::parse(&["as_user", "from=127.0.0.1/32"]).unwrap();
        assert_eq!(a.name, "as_user");
        assert!(a.from.contains(ip("127.0.0.1")));
        assert!(!a.from.contains(ip("127.0.0.2")));
        assert_eq!(
            ArgSource::parse(&["as_user"]).unwrap_err(),
            "missing \"from=\" parameter"
        );
        assert_eq!(
            ArgSource::parse(&["as_user", "from=x"]).unwrap_err(),
            "invalid network \"x\""
        );
        assert_eq!(
            ArgSource::parse(&["as_user", "ca=x"]).unwrap_err(),
            "invalid parameter \"ca=x\""
        );
    }

    #[test]
    fn arg_identity_is_decoded_and_checked() {
        assert_eq!(ArgSource::identity(b"jdoe"), Ok("jdoe".into()));
        assert_eq!(ArgSource::identity(b"Zo%C3%AB+X"), Ok("Zoë+X".into()));
        assert_eq!(ArgSource::identity(b""), Err("empty"));
        assert_eq!(
            ArgSource::identity(b"a%0d%0aX: y"),
            Err("control characters")
        );
        assert_eq!(ArgSource::identity(b"%FF"), Err("not UTF-8"));
        assert_eq!(ArgSource::identity(b"%4"), Err("invalid percent-encoding"));
        assert!(ArgSource::identity(&[b'a'; 256]).is_ok());
        assert_eq!(ArgSource::identity(&[b'a'; 257]), Err("too long"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%2Bb%0a+"), Some(b"a+b\n+".to_vec()));
        assert_eq!(percent_decode(b"%zz"), None);
        assert_eq!(percent_decode(b"%"), None);
        assert_eq!(percent_decode(b"%a"), None);
        assert_eq!(percent_decode(b""), Some(vec![]));
    }

    #[test]
    fn verified_chains_hold_for_their_store_and_window_only() {
        let mut chains = VerifiedChains::default();
        let key = ChainKey::new(1, Format::Pem, b"chain", &[]);
        chains.insert(key, (100, 200), "alice");
        assert_eq!(chains.get(&key, 100), Some("alice"));
        assert_eq!(chains.get(&key, 200), Some("alice"));
        assert_eq!(chains.get(&key, 99), None);
        assert_eq!(chains.get(&key, 201), None);
        assert_eq!(
            chains.get(&ChainKey::new(2, Format::Pem, b"chain", &[]), 150),
            None,
            "another trust store"
        );
        assert_eq!(
            chains.get(&ChainKey::new(1, Format::Pem, b"chain2", &[]), 150),
            None,
            "another header value"
        );
        assert_eq!(
            chains.get(&ChainKey::new(1, Format::Der64, b"chain", &[]), 150),
            None,
            "another format"
        );
        assert_eq!(
            chains.get(
                &ChainKey::new(1, Format::Pem, b"chain", &[b"".to_vec()]),
                150
            ),
            None,
            "another chain header"
        );
        assert_ne!(
            ChainKey::new(1, Format::Pem, b"ab", &[b"c".to_vec()]),
            ChainKey::new(1, Format::Pem, b"a", &[b"bc".to_vec()]),
            "the parts are delimited"
        );

        chains.insert(key, (100, 300), "alice again");
        assert_eq!(chains.get(&key, 250), Some("alice again"));
        assert_eq!(chains.entries.len(), 1);
    }

    #[test]
    fn verified_chains_keep_the_latest() {
        let mut chains = VerifiedChains::default();
        let key = |i: usize| ChainKey::new(1, Format::Pem, format!("chain{i}").as_bytes(), &[]);
        for i in 0..=VERIFIED_CHAINS {
            chains.insert(key(i), (0, 10), i);
        }
        assert_eq!(chains.entries.len(), VERIFIED_CHAINS);
        assert_eq!(chains.get(&key(0), 5), None);
        assert_eq!(chains.get(&key(1), 5), Some(1));
        assert_eq!(chains.get(&key(VERIFIED_CHAINS), 5), Some(VERIFIED_CHAINS));
    }
}
