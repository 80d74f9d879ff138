//! Format `rfc9440`: `Client-Cert`, one structured-field byte sequence (RFC 8941 section
//! 3.3.5) of the certificate's DER, `:` base64 `:`; and `Client-Cert-Chain`, a list of byte
//! sequences, the intermediates in TLS order, possibly over several header lines. Parameters
//! are not defined for either field and are refused, as anything else after a byte sequence.

use base64::alphabet::STANDARD as ALPHABET;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::{HeaderError, MAX_CHAIN};

/// RFC 8941: parsers should accept a missing `=` padding and non-zero pad bits.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &ALPHABET,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The value of `$auth_cert_client_cert`: the DER as a `Client-Cert` field value; empty for
/// no DER.
pub fn encode(der: &[u8]) -> String {
    if der.is_empty() {
        return String::new();
    }
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// The DER of a `Client-Cert` value.
/// An empty value (Cloudflare sends one for a certificate above its size limit) is refused
/// as such.
pub fn decode_item(value: &[u8]) -> Result<Vec<u8>, HeaderError> {
    let value = trim(value);
    if value.is_empty() {
        return Err(HeaderError::Syntax("empty value"));
    }
    let (der, rest) = byte_sequence(value)?;
    if !rest.is_empty() {
        return Err(HeaderError::Syntax(
            "unexpected data after the byte sequence",
        ));
    }
    Ok(der)
}

/// The DER certificates of one `Client-Cert-Chain` line: byte sequences separated by commas
/// and optional whitespace. An empty line is an empty list.
pub fn decode_list(value: &[u8]) -> Result<Vec<Vec<u8>>, HeaderError> {
    let mut rest = trim(value);
    let mut certs = Vec::new();
    while !rest.is_empty() {
        if certs.len() == MAX_CHAIN {
            return Err(HeaderError::TooMany);
        }
        let (der, after) = byte_sequence(rest)?;
        certs.push(der);
        rest = trim(after);
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(b",").ok_or(HeaderError::Syntax(
            "unexpected data after the byte sequence",
        ))?;
        rest = trim(rest);
        if rest.is_empty() {
            return Err(HeaderError::Syntax("trailing comma in the list"));
        }
    }
    Ok(certs)
}

/// A byte sequence at the start of `s`, decoded, and what follows it.
fn byte_sequence(s: &[u8]) -> Result<(Vec<u8>, &[u8]), HeaderError> {
    let not_bytes = HeaderError::Syntax("not a byte sequence (\":base64:\")");
    let body = s.strip_prefix(b":").ok_or(not_bytes)?;
    let end = body.iter().position(|&b| b == b':').ok_or(not_bytes)?;
    let b64 = &body[..end];
    if b64.is_empty() {
        return Err(HeaderError::Empty);
    }
    if !b64
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(HeaderError::Base64);
    }
    let der = LENIENT.decode(b64).map_err(|_| HeaderError::Base64)?;
    Ok((der, &body[end + 1..]))
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of RFC 9440's example certificate (appendix A), as its `Client-Cert` shows it.
    const EXAMPLE: &str = ":MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdGUxGzAZBgNVBAMMEkxBIEludGVybWVkaWF0ZSBDQTAeFw0yMDAxMTQyMjU1MzNaFw0yMTAxMjMyMjU1MzNaMA0xCzAJBgNVBAMMAkJDMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8YnXXfaUgmnMtOXU/IncWalRhebrXmckC8vdgJ1p5Be5F/3YC8OthxM4+k1M6aEAEFcGzkJiNy6J84y7uzo9M6NyMHAwCQYDVR0TBAIwADAfBgNVHSMEGDAWgBRm3WjLa38lbEYCuiCPct0ZaSED2DAOBgNVHQ8BAf8EBAMCBsAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0RAQH/BBMwEYEPYmRjQGV4YW1wbGUuY29tMAoGCCqGSM49BAMCA0gAMEUCIBHda/r1vaL6G3VliL4/Di6YK0Q6bMjeSkC3dFCOOB8TAiEAx/kHSB4urmiZ0NX5r5XarmPk0wmuydBVoU4hBVZ1yhk=:";

    #[test]
    fn client_cert_as_rfc9440_writes_it() {
        let der = decode_item(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(&der[..4], b"\x30\x82\x01\xa8");
        assert_eq!(der.len(), 0x1a8 + 4);
        assert_eq!(encode(&der), EXAMPLE);
        assert_eq!(decode_item(format!(" {EXAMPLE}\t").as_bytes()), Ok(der));
    }

    #[test]
    fn padding_is_optional() {
        assert_eq!(
            decode_item(b":MAMCAQU=:"),
            Ok(b"\x30\x03\x02\x01\x05".to_vec())
        );
        assert_eq!(
            decode_item(b":MAMCAQU:"),
            Ok(b"\x30\x03\x02\x01\x05".to_vec())
        );
    }

    #[test]
    fn bad_items() {
        let syntax = |what| Err(HeaderError::Syntax(what));
        let not_bytes = syntax("not a byte sequence (\":base64:\")");
        assert_eq!(decode_item(b""), syntax("empty value"));
        assert_eq!(decode_item(b" \t"), syntax("empty value"));
        assert_eq!(decode_item(b"MAMCAQU="), not_bytes);
        assert_eq!(decode_item(b":MAMCAQU="), not_bytes);
        assert_eq!(decode_item(b"::"), Err(HeaderError::Empty));
        assert_eq!(decode_item(b":MA MCAQU=:"), Err(HeaderError::Base64));
        assert_eq!(decode_item(b":MAMC-QU=:"), Err(HeaderError::Base64));
        assert_eq!(decode_item(b":M:"), Err(HeaderError::Base64));
        assert_eq!(
            decode_item(b":MAMCAQU=:;a=1"),
            syntax("unexpected data after the byte sequence")
        );
        assert_eq!(
            decode_item(b":MAMCAQU=:, :MAMCAQU=:"),
            syntax("unexpected data after the byte sequence")
        );
        assert_eq!(decode_item(b"\"MAMCAQU=\""), not_bytes);
    }

    /// `Client-Cert-Chain: :<int1>:, :<int2>:` as RFC 9440 appendix A writes it.
    #[test]
    fn chain_list() {
        let one = b"\x30\x03\x02\x01\x01".to_vec();
        let two = b"\x30\x03\x02\x01\x02".to_vec();
        assert_eq!(
            decode_list(b":MAMCAQE=:, :MAMCAQI=:"),
            Ok(vec![one.clone(), two.clone()])
        );
        assert_eq!(
            decode_list(b":MAMCAQE=:,:MAMCAQI=:").map(|c| c.len()),
            Ok(2)
        );
        assert_eq!(
            decode_list(b":MAMCAQE=: ,\t:MAMCAQI=: "),
            Ok(vec![one, two])
        );
        assert_eq!(decode_list(b""), Ok(vec![]));
        assert_eq!(
            decode_list(b":MAMCAQE=:,"),
            Err(HeaderError::Syntax("trailing comma in the list"))
        );
        assert_eq!(
            decode_list(b":MAMCAQE=: :MAMCAQI=:"),
            Err(HeaderError::Syntax(
                "unexpected data after the byte sequence"
            ))
        );
        assert_eq!(
            decode_list(b",:MAMCAQE=:"),
            Err(HeaderError::Syntax("not a byte sequence (\":base64:\")"))
        );
        let many = [":MAMCAQE=:"; MAX_CHAIN + 1].join(", ");
        assert_eq!(decode_list(many.as_bytes()), Err(HeaderError::TooMany));
    }
}
