//! Format `xfcc`: Envoy's `x-forwarded-client-cert`. Elements separated by `,`, one per
//! proxy, each appending its own: the last is the nearest proxy's, the only one used. An
//! element is `key=value` pairs separated by `;`, keys without regard to case, values that
//! hold `,`, `;` or `=` double-quoted with `\"` for a quote. Its `Cert` is the client
//! certificate (URL-encoded PEM), its `Chain` the whole chain (URL-encoded PEMs, the client
//! certificate included).

use super::{pem, HeaderError, MAX_CHAIN};

/// One element's pairs, keys lower-cased, values unquoted.
type Element = Vec<(String, Vec<u8>)>;

/// The DER certificates of the last element: its `Cert`, then the other certificates of its
/// `Chain`.
pub fn decode(value: &[u8]) -> Result<Vec<Vec<u8>>, HeaderError> {
    let elements = parse(value)?;
    let last = elements
        .last()
        .ok_or(HeaderError::Syntax("empty XFCC value"))?;
    let one = |key: &str| -> Result<Option<&[u8]>, HeaderError> {
        let mut values = last.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(HeaderError::Syntax(if key == "cert" {
                "several Cert in the last XFCC element"
            } else {
                "several Chain in the last XFCC element"
            }));
        }
        Ok(first.map(Vec::as_slice))
    };
    let cert = one("cert")?.ok_or(HeaderError::Syntax("no Cert in the last XFCC element"))?;
    let chain = one("chain")?;
    let mut certs = pem::decode_chain(cert)?;
    if certs.len() != 1 {
        return Err(HeaderError::Syntax(
            "more than one certificate in XFCC Cert",
        ));
    }
    if let Some(chain) = chain {
        for der in pem::decode_chain(chain)? {
            if der != certs[0] {
                certs.push(der);
            }
        }
        if certs.len() > MAX_CHAIN {
            return Err(HeaderError::TooMany);
        }
    }
    Ok(certs)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The elements of a value, in order.
fn parse(value: &[u8]) -> Result<Vec<Element>, HeaderError> {
    if value.iter().all(|&b| is_ows(b)) {
        return Err(HeaderError::Syntax("empty XFCC value"));
    }
    let mut elements = Vec::new();
    let mut element = Element::new();
    let mut i = 0;
    loop {
        while value.get(i).is_some_and(|&b| is_ows(b)) {
            i += 1;
        }
        let key_start = i;
        while value
            .get(i)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            i += 1;
        }
        let key = &value[key_start..i];
        if key.is_empty() || value.get(i) != Some(&b'=') {
            return Err(HeaderError::Syntax("XFCC pair without key=value"));
        }
        i += 1;
        let mut pair_value = Vec::new();
        if value.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match value.get(i) {
                    None => return Err(HeaderError::Syntax("unterminated quoted XFCC value")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let escaped = value
                            .get(i + 1)
                            .ok_or(HeaderError::Syntax("unterminated quoted XFCC value"))?;
                        pair_value.push(*escaped);
                        i += 2;
                    }
                    Some(&b) => {
                        pair_value.push(b);
                        i += 1;
                    }
                }
            }
            i += 1;
            while value.get(i).is_some_and(|&b| is_ows(b)) {
                i += 1;
            }
            if !matches!(value.get(i), None | Some(b';' | b',')) {
                return Err(HeaderError::Syntax(
                    "unexpected data after a quoted XFCC value",
                ));
            }
        } else {
            let start = i;
            while !matches!(value.get(i), None | Some(b';' | b',')) {
                i += 1;
            }
            let raw = &value[start..i];
            let end = raw.iter().rposition(|&b| !is_ows(b)).map_or(0, |e| e + 1);
            if raw.contains(&b'"') {
                return Err(HeaderError::Syntax("quote inside an unquoted XFCC value"));
            }
            pair_value.extend_from_slice(&raw[..end]);
        }
        let key = String::from_utf8_lossy(key).to_ascii_lowercase();
        element.push((key, pair_value));
        match value.get(i) {
            Some(b';') => i += 1,
            Some(_) => {
                elements.push(core::mem::take(&mut element));
                i += 1;
            }
            None => {
                elements.push(element);
                return Ok(elements);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &[u8] = b"\x30\x03\x02\x01\x01";
    const TWO: &[u8] = b"\x30\x03\x02\x01\x02";
    const THREE: &[u8] = b"\x30\x03\x02\x01\x03";

    /// A certificate as Envoy writes it in `Cert`: PEM, URL-encoded (newline, space, `+`, `/`
    /// and `=` escaped).
    fn envoy_pem(b64: &str) -> String {
        format!("-----BEGIN%20CERTIFICATE-----%0A{b64}%0A-----END%20CERTIFICATE-----%0A")
            .replace('=', "%3D")
    }

    /// Envoy's documented shape: `By`, `Hash`, `Cert`, `Chain`, a quoted `Subject`, `URI`.
    #[test]
    fn as_envoy_writes_it() {
        let (one, two) = (envoy_pem("MAMCAQE="), envoy_pem("MAMCAQI="));
        let value = format!(
            "By=spiffe://cluster.local/ns/default/sa/backend;\
             Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;\
             Cert=\"{one}\";Chain=\"{one}{two}\";\
             Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";\
             URI=spiffe://cluster.local/ns/default/sa/frontend;DNS=example.com;DNS=example.org"
        );
        assert_eq!(
            decode(value.as_bytes()),
            Ok(vec![ONE.to_vec(), TWO.to_vec()])
        );
        // Without a chain, and with unquoted values and keys in another case.
        let value = format!("By=http://frontend.lyft.com;cert={one};URI=spiffe://lyft.com/test");
        assert_eq!(decode(value.as_bytes()), Ok(vec![ONE.to_vec()]));
    }

    /// Each proxy appends its element: the last one is the nearest proxy's.
    #[test]
    fn the_last_element_counts() {
        let (one, three) = (envoy_pem("MAMCAQE="), envoy_pem("MAMCAQM="));
        let value = format!(
            "By=spiffe://a;Cert=\"{one}\";Subject=\"CN=\\\"x\\\", O=y;z\",\
             By=spiffe://b;Cert=\"{three}\""
        );
        assert_eq!(decode(value.as_bytes()), Ok(vec![THREE.to_vec()]));
        let value = format!("By=spiffe://a;Cert=\"{one}\" , By=spiffe://b;Hash=abc");
        assert_eq!(
            decode(value.as_bytes()),
            Err(HeaderError::Syntax("no Cert in the last XFCC element"))
        );
    }

    #[test]
    fn quoted_values() {
        let parsed = parse(br#"Subject="CN=\"a,b;c=d\"";By=x , URI="""#).unwrap();
        assert_eq!(
            parsed,
            vec![
                vec![
                    ("subject".to_owned(), br#"CN="a,b;c=d""#.to_vec()),
                    ("by".to_owned(), b"x".to_vec()),
                ],
                vec![("uri".to_owned(), b"".to_vec())],
            ]
        );
    }

    #[test]
    fn bad_values() {
        let one = envoy_pem("MAMCAQE=");
        let syntax = |what| Err(HeaderError::Syntax(what));
        assert_eq!(decode(b""), syntax("empty XFCC value"));
        assert_eq!(decode(b"By=x"), syntax("no Cert in the last XFCC element"));
        assert_eq!(decode(b"By"), syntax("XFCC pair without key=value"));
        assert_eq!(decode(b"By=x;"), syntax("XFCC pair without key=value"));
        assert_eq!(decode(b"By=x,,By=y"), syntax("XFCC pair without key=value"));
        assert_eq!(decode(b"=x"), syntax("XFCC pair without key=value"));
        assert_eq!(
            decode(b"Subject=\"CN=a"),
            syntax("unterminated quoted XFCC value")
        );
        assert_eq!(
            decode(b"Subject=\"a\\"),
            syntax("unterminated quoted XFCC value")
        );
        assert_eq!(
            decode(b"Subject=\"a\"b"),
            syntax("unexpected data after a quoted XFCC value")
        );
        assert_eq!(
            decode(b"Subject=a\"b\""),
            syntax("quote inside an unquoted XFCC value")
        );
        let twice = format!("Cert={one};Cert={one}");
        assert_eq!(
            decode(twice.as_bytes()),
            syntax("several Cert in the last XFCC element")
        );
        let twice = format!("Cert={one};Chain={one};chain={one}");
        assert_eq!(
            decode(twice.as_bytes()),
            syntax("several Chain in the last XFCC element")
        );
        let two = format!("Cert=\"{one}{one}\"");
        assert_eq!(
            decode(two.as_bytes()),
            syntax("more than one certificate in XFCC Cert")
        );
        assert_eq!(decode(b"Cert=garbage"), Err(HeaderError::Garbage));
        assert_eq!(decode(b"Cert=%zz"), Err(HeaderError::Escaping));
        let chain: String = (0..MAX_CHAIN)
            .map(|i| {
                envoy_pem(&format!(
                    "MAMCAQ{}",
                    ["I=", "M=", "Q=", "U=", "Y=", "c=", "g=", "k="][i]
                ))
            })
            .collect();
        let long = format!("Cert=\"{one}\";Chain=\"{chain}\"");
        assert_eq!(decode(long.as_bytes()), Err(HeaderError::TooMany));
    }
}
