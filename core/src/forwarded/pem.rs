//! A certificate chain forwarded in a request header, decoded to DER: URL-escaped PEM (as
//! nginx's `$ssl_client_escaped_cert`), or raw PEM, also with spaces or tabs where the
//! newlines were (as some load balancers send it). The first block is the client
//! certificate, the others are intermediates offered for its chain.

use core::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::percent_decode;

/// Longest header value accepted; a client certificate with two intermediates, escaped, is
/// far below it.
pub const MAX_HEADER_LEN: usize = 32 * 1024;
/// Most certificates accepted in one header value.
pub const MAX_CHAIN: usize = 8;

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

/// Why a header value is not a certificate chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemError {
    TooLong,
    Escaping,
    NoCertificate,
    Unterminated,
    Base64,
    TooMany,
    Garbage,
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "header value too long",
            Self::Escaping => "invalid percent-encoding",
            Self::NoCertificate => "no PEM certificate",
            Self::Unterminated => "PEM certificate without END line",
            Self::Base64 => "invalid base64 in PEM certificate",
            Self::TooMany => "too many certificates",
            Self::Garbage => "unexpected data around PEM certificates",
        })
    }
}

/// The DER certificates of a header value, client certificate first.
pub fn decode_chain(value: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(PemError::TooLong);
    }
    let decoded;
    let mut text = value;
    if value.contains(&b'%') {
        decoded = percent_decode(value).ok_or(PemError::Escaping)?;
        text = &decoded;
    }
    let mut chain = Vec::new();
    loop {
        text = trim_start(text);
        if text.is_empty() {
            break;
        }
        let body = text.strip_prefix(BEGIN).ok_or(PemError::Garbage)?;
        let end = find(body, END).ok_or(PemError::Unterminated)?;
        if chain.len() == MAX_CHAIN {
            return Err(PemError::TooMany);
        }
        chain.push(base64_decode(&body[..end]).ok_or(PemError::Base64)?);
        text = &body[end + END.len()..];
    }
    if chain.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(chain)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    &s[start..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Standard base64 with canonical padding; whitespace anywhere is ignored.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let symbols: Vec<u8> = input.iter().copied().filter(|&b| !is_space(b)).collect();
    if symbols.is_empty() {
        return None;
    }
    STANDARD.decode(symbols).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DER: &[u8] = b"\x30\x03\x02\x01\x05-any bytes-\xff\x00";

    fn pem(der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(16)
            .map(|l| core::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    fn escape(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn raw_pem() {
        assert_eq!(decode_chain(pem(DER).as_bytes()), Ok(vec![DER.to_vec()]));
    }

    #[test]
    fn url_escaped_pem_as_nginx_sends_it() {
        let escaped = escape(&pem(DER));
        assert!(escaped.contains("%0A"));
        assert_eq!(decode_chain(escaped.as_bytes()), Ok(vec![DER.to_vec()]));
    }

    #[test]
    fn spaces_or_tabs_instead_of_newlines() {
        let spaced = pem(DER).replace('\n', " ");
        assert_eq!(decode_chain(spaced.as_bytes()), Ok(vec![DER.to_vec()]));
        let tabbed = pem(DER).replace('\n', "\t");
        assert_eq!(decode_chain(tabbed.as_bytes()), Ok(vec![DER.to_vec()]));
        let crlf = pem(DER).replace('\n', "\r\n");
        assert_eq!(decode_chain(crlf.as_bytes()), Ok(vec![DER.to_vec()]));
    }

    #[test]
    fn chain_keeps_order() {
        let chain = format!("{}{}", pem(b"leaf"), pem(b"intermediate"));
        assert_eq!(
            decode_chain(chain.as_bytes()),
            Ok(vec![b"leaf".to_vec(), b"intermediate".to_vec()])
        );
        let too_many = pem(b"x").repeat(MAX_CHAIN + 1);
        assert_eq!(decode_chain(too_many.as_bytes()), Err(PemError::TooMany));
        assert_eq!(
            decode_chain(pem(b"x").repeat(MAX_CHAIN).as_bytes()).map(|c| c.len()),
            Ok(MAX_CHAIN)
        );
    }

    #[test]
    fn bad_values() {
        let full = pem(DER);
        assert_eq!(decode_chain(b""), Err(PemError::NoCertificate));
        assert_eq!(decode_chain(b"  \t "), Err(PemError::NoCertificate));
        assert_eq!(decode_chain(b"hello"), Err(PemError::Garbage));
        assert_eq!(
            decode_chain(format!("junk{full}").as_bytes()),
            Err(PemError::Garbage)
        );
        assert_eq!(
            decode_chain(format!("{full}junk").as_bytes()),
            Err(PemError::Garbage)
        );
        assert_eq!(
            decode_chain(&full.as_bytes()[..full.len() / 2]),
            Err(PemError::Unterminated)
        );
        assert_eq!(
            decode_chain(full.replace("MAMC", "MA*C").as_bytes()),
            Err(PemError::Base64)
        );
        assert_eq!(
            decode_chain(b"-----BEGIN CERTIFICATE----------END CERTIFICATE-----"),
            Err(PemError::Base64)
        );
        assert_eq!(decode_chain(b"%0G"), Err(PemError::Escaping));
        let long = vec![b' '; MAX_HEADER_LEN + 1];
        assert_eq!(decode_chain(&long), Err(PemError::TooLong));
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(base64_decode(b"TWFu"), Some(b"Man".to_vec()));
        assert_eq!(base64_decode(b"TWE="), Some(b"Ma".to_vec()));
        assert_eq!(base64_decode(b"TQ=="), Some(b"M".to_vec()));
        assert_eq!(base64_decode(b"TQ"), None);
        assert_eq!(base64_decode(b"T==="), None);
        assert_eq!(base64_decode(b"TQ==TWFu"), None);
        assert_eq!(base64_decode(b"TW-u"), None);
        assert_eq!(base64_decode(b""), None);
    }
}
