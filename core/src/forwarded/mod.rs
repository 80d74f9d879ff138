//! Credentials that arrive in the request rather than in the TLS handshake, and the networks
//! they are accepted from: `auth_cert_header` and `auth_cert_identity_arg`.

pub mod pem;

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

/// `auth_cert_header name from=cidr... ca=file [depth=n]`.
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
            } else {
                return Err(format!("invalid parameter \"{word}\""));
            }
        }
        if from.0.is_empty() {
            return Err("missing \"from=\" parameter".into());
        }
        let ca = ca.ok_or("missing \"ca=\" parameter")?;
        Ok(Self {
            name,
            from,
            ca,
            depth: depth.unwrap_or(DEFAULT_HEADER_DEPTH),
        })
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
    let valid = !name.is_empty()
        && !name.contains('=')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!("invalid name \"{name}\""));
    }
    Ok(((*name).to_owned(), rest))
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

/// A forwarded header value as verified against one trust store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainKey {
    store: u64,
    sha256: [u8; 32],
}

impl ChainKey {
    pub fn new(store: u64, header: &[u8]) -> Self {
        Self {
            store,
            sha256: Sha256::digest(header).into(),
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
        let key = ChainKey::new(1, b"chain");
        chains.insert(key, (100, 200), "alice");
        assert_eq!(chains.get(&key, 100), Some("alice"));
        assert_eq!(chains.get(&key, 200), Some("alice"));
        assert_eq!(chains.get(&key, 99), None);
        assert_eq!(chains.get(&key, 201), None);
        assert_eq!(
            chains.get(&ChainKey::new(2, b"chain"), 150),
            None,
            "another trust store"
        );
        assert_eq!(
            chains.get(&ChainKey::new(1, b"chain2"), 150),
            None,
            "another header value"
        );

        chains.insert(key, (100, 300), "alice again");
        assert_eq!(chains.get(&key, 250), Some("alice again"));
        assert_eq!(chains.entries.len(), 1);
    }

    #[test]
    fn verified_chains_keep_the_latest() {
        let mut chains = VerifiedChains::default();
        let key = |i: usize| ChainKey::new(1, format!("chain{i}").as_bytes());
        for i in 0..=VERIFIED_CHAINS {
            chains.insert(key(i), (0, 10), i);
        }
        assert_eq!(chains.entries.len(), VERIFIED_CHAINS);
        assert_eq!(chains.get(&key(0), 5), None);
        assert_eq!(chains.get(&key(1), 5), Some(1));
        assert_eq!(chains.get(&key(VERIFIED_CHAINS), 5), Some(VERIFIED_CHAINS));
    }
}
