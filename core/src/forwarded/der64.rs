//! Format `der64`: base64 of the DER, several certificates separated by commas, client
//! certificate first: Traefik's `X-Forwarded-Tls-Client-Cert` (since 2.9.4; raw, not
//! URL-escaped), HAProxy's `%[ssl_c_der,base64]`, Cloudflare's `Cf-Client-Cert-Der-Base64`.
//! An item may hold several DER certificates one after the other, as HAProxy's
//! `%[ssl_c_chain_der,base64]` does for the intermediates.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{split_der, HeaderError, MAX_CHAIN};

/// The DER certificates of a value.
pub fn decode(value: &[u8]) -> Result<Vec<Vec<u8>>, HeaderError> {
    let mut certs = Vec::new();
    for item in value.split(|&b| b == b',') {
        let item = trim(item);
        if item.is_empty() {
            return Err(HeaderError::Empty);
        }
        let der = STANDARD.decode(item).map_err(|_| HeaderError::Base64)?;
        certs.extend(split_der(&der)?);
        if certs.len() > MAX_CHAIN {
            return Err(HeaderError::TooMany);
        }
    }
    Ok(certs)
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

    const ONE: &[u8] = b"\x30\x03\x02\x01\x01";
    const TWO: &[u8] = b"\x30\x03\x02\x01\x02";

    /// Traefik: `X-Forwarded-Tls-Client-Cert: <leaf>,<intermediate>`, and HAProxy's
    /// `%[ssl_c_der,base64]`, one certificate.
    #[test]
    fn as_traefik_and_haproxy_write_it() {
        assert_eq!(decode(b"MAMCAQE="), Ok(vec![ONE.to_vec()]));
        assert_eq!(
            decode(b"MAMCAQE=,MAMCAQI="),
            Ok(vec![ONE.to_vec(), TWO.to_vec()])
        );
        assert_eq!(decode(b"MAMCAQE=, MAMCAQI=").map(|c| c.len()), Ok(2));
    }

    /// HAProxy's `%[ssl_c_chain_der,base64]`: the DER of the intermediates concatenated.
    #[test]
    fn concatenated_der() {
        assert_eq!(
            decode(b"MAMCAQEwAwIBAg=="),
            Ok(vec![ONE.to_vec(), TWO.to_vec()])
        );
        // Long-form lengths: a 200-byte body.
        let mut long = vec![0x30, 0x81, 200];
        long.extend([0u8; 200]);
        let b64 = STANDARD.encode([long.as_slice(), ONE].concat());
        assert_eq!(decode(b64.as_bytes()), Ok(vec![long, ONE.to_vec()]));
    }

    #[test]
    fn bad_values() {
        assert_eq!(decode(b""), Err(HeaderError::Empty));
        assert_eq!(decode(b"MAMCAQE=,"), Err(HeaderError::Empty));
        assert_eq!(decode(b"MAMCAQE=,,MAMCAQI="), Err(HeaderError::Empty));
        assert_eq!(decode(b"MAMCAQE"), Err(HeaderError::Base64));
        assert_eq!(decode(b"MAMC AQE="), Err(HeaderError::Base64));
        // Traefik before 2.9.4 URL-escaped the value: refused, not guessed.
        assert_eq!(decode(b"MAMCAQE%3D"), Err(HeaderError::Base64));
        // PEM is another format.
        assert_eq!(
            decode(b"-----BEGIN CERTIFICATE-----"),
            Err(HeaderError::Base64)
        );
        // Base64 of something that is not DER, or a truncated certificate.
        assert_eq!(decode(b"aGVsbG8="), Err(HeaderError::Der));
        assert_eq!(decode(b"MAQCAQE="), Err(HeaderError::Der));
        assert_eq!(decode(b"MIQ="), Err(HeaderError::Der));
        let many = ["MAMCAQE="; MAX_CHAIN + 1].join(",");
        assert_eq!(decode(many.as_bytes()), Err(HeaderError::TooMany));
        let many = STANDARD.encode(ONE.repeat(MAX_CHAIN + 1));
        assert_eq!(decode(many.as_bytes()), Err(HeaderError::TooMany));
        assert_eq!(
            decode(STANDARD.encode(ONE.repeat(MAX_CHAIN)).as_bytes()).map(|c| c.len()),
            Ok(MAX_CHAIN)
        );
    }
}
