//! Format `pem`: a certificate chain forwarded in a request header, decoded to DER.
//! URL-escaped PEM (nginx's `$ssl_client_escaped_cert`; AWS ALB's `X-Amzn-Mtls-Clientcert`,
//! which leaves `+`, `=` and `/` literal: a `+` is never a space), or raw PEM, also with
//! spaces or tabs where the newlines were (Apache's `SSL_CLIENT_CERT` with spaces, nginx's
//! deprecated `$ssl_client_cert` with a tab after each newline). The first block is the
//! client certificate, the others are intermediates offered for its chain.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{percent_decode, HeaderError, MAX_CHAIN, MAX_HEADER_LEN};

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

/// The DER certificates of a header value, client certificate first.
pub fn decode_chain(value: &[u8]) -> Result<Vec<Vec<u8>>, HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong);
    }
    let decoded;
    let mut text = value;
    if value.contains(&b'%') {
        decoded = percent_decode(value).ok_or(HeaderError::Escaping)?;
        text = &decoded;
    }
    let mut chain = Vec::new();
    loop {
        text = trim_start(text);
        if text.is_empty() {
            break;
        }
        let body = text.strip_prefix(BEGIN).ok_or(HeaderError::Garbage)?;
        let end = find(body, END).ok_or(HeaderError::Unterminated)?;
        if chain.len() == MAX_CHAIN {
            return Err(HeaderError::TooMany);
        }
        chain.push(base64_decode(&body[..end]).ok_or(HeaderError::PemBase64)?);
        text = &body[end + END.len()..];
    }
    if chain.is_empty() {
        return Err(HeaderError::NoCertificate);
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

    /// nginx's deprecated `$ssl_client_cert`: a tab after every newline, the last newline
    /// dropped.
    #[test]
    fn nginx_tab_indented_pem() {
        let pem = pem(DER);
        let value = pem.trim_end_matches('\n').replace('\n', "\n\t");
        assert!(value.contains("-----\n\t") && !value.ends_with('\n'));
        assert_eq!(decode_chain(value.as_bytes()), Ok(vec![DER.to_vec()]));
    }

    /// Apache's `SSL_CLIENT_CERT` forwarded with a space for each newline.
    #[test]
    fn apache_pem_with_spaces() {
        let value = "-----BEGIN CERTIFICATE----- MAMCAQU= -----END CERTIFICATE-----";
        assert_eq!(
            decode_chain(value.as_bytes()),
            Ok(vec![b"\x30\x03\x02\x01\x05".to_vec()])
        );
    }

    /// AWS ALB `X-Amzn-Mtls-Clientcert`: URL-encoded, but `+`, `=` and `/` left literal; the
    /// `+` is a base64 character, never a space.
    #[test]
    fn alb_literal_plus() {
        let der = [0xfb, 0xef, 0xbe, 0xff, 0xff];
        let value = "-----BEGIN%20CERTIFICATE-----%0A++++//8=%0A-----END%20CERTIFICATE-----%0A";
        assert_eq!(decode_chain(value.as_bytes()), Ok(vec![der.to_vec()]));
        let chain = format!("{value}{}", value.replace("++++", "+++/"));
        assert_eq!(decode_chain(chain.as_bytes()).map(|c| c.len()), Ok(2));
    }

    #[test]
    fn chain_keeps_order() {
        let chain = format!("{}{}", pem(b"leaf"), pem(b"intermediate"));
        assert_eq!(
            decode_chain(chain.as_bytes()),
            Ok(vec![b"leaf".to_vec(), b"intermediate".to_vec()])
        );
        let too_many = pem(b"x").repeat(MAX_CHAIN + 1);
        assert_eq!(decode_chain(too_many.as_bytes()), Err(HeaderError::TooMany));
        assert_eq!(
            decode_chain(pem(b"x").repeat(MAX_CHAIN).as_bytes()).map(|c| c.len()),
            Ok(MAX_CHAIN)
        );
    }

    #[test]
    fn bad_values() {
        let full = pem(DER);
        assert_eq!(decode_chain(b""), Err(HeaderError::NoCertificate));
        assert_eq!(decode_chain(b"  \t "), Err(HeaderError::NoCertificate));
        assert_eq!(decode_chain(b"hello"), Err(HeaderError::Garbage));
        assert_eq!(
            decode_chain(format!("junk{full}").as_bytes()),
            Err(HeaderError::Garbage)
        );
        assert_eq!(
            decode_chain(format!("{full}junk").as_bytes()),
            Err(HeaderError::Garbage)
        );
        assert_eq!(
            decode_chain(&full.as_bytes()[..full.len() / 2]),
            Err(HeaderError::Unterminated)
        );
        assert_eq!(
            decode_chain(full.replace("MAMC", "MA*C").as_bytes()),
            Err(HeaderError::PemBase64)
        );
        assert_eq!(
            decode_chain(b"-----BEGIN CERTIFICATE----------END CERTIFICATE-----"),
            Err(HeaderError::PemBase64)
        );
        assert_eq!(decode_chain(b"%0G"), Err(HeaderError::Escaping));
        let long = vec![b' '; MAX_HEADER_LEN + 1];
        assert_eq!(decode_chain(&long), Err(HeaderError::TooLong));
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
