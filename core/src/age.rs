//! The age of a certificate authentication, as plain arithmetic: the `auth_cert_max_age` value,
//! staleness, the lifetime left to a TLS session, and the authentication time carried inside
//! TLS sessions and tickets.
//!
//! Times are Unix seconds. Nothing here allocates: the per-request check is a few comparisons.

/// The age of an authentication at `now` (never negative, for clocks stepping back).
pub fn age(auth_time: i64, now: i64) -> i64 {
    now.saturating_sub(auth_time).max(0)
}

/// Whether an authentication made at `auth_time` is too old at `now`. An authentication of
/// unknown time (a session made before the module was loaded) is always too old.
pub fn is_stale(auth_time: Option<i64>, now: i64, max_age: i64) -> bool {
    match auth_time {
        Some(t) => age(t, now) > max_age,
        None => true,
    }
}

/// The lifetime, in seconds, a TLS session may still have so that it cannot be resumed once
/// its authentication is older than `max_age`; at least 1 (OpenSSL treats 0 specially).
pub fn remaining_lifetime(auth_time: i64, now: i64, max_age: i64) -> i64 {
    max_age.saturating_sub(age(auth_time, now)).max(1)
}

/// The smaller of two optional limits; `None` means no limit.
pub fn stricter(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The longer of two optional limits (`None`: no limit set).
pub fn longer(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Version byte of the first authentication stamp: the authentication time alone. Still read,
/// for the sessions and tickets issued before the id.
const STAMP_V1: u8 = 1;
/// Version byte of the authentication stamp with an id.
const STAMP_V2: u8 = 2;

/// Length of a version 1 stamp: version byte and big-endian Unix seconds.
const STAMP_V1_LEN: usize = 9;

/// Length of an encoded stamp: version byte, big-endian Unix seconds, then the 16 bytes of
/// the authentication's id.
pub const STAMP_LEN: usize = STAMP_V1_LEN + 16;

/// The stamp carried in a TLS session (and so in its tickets and in nginx's shared cache):
/// the time of the full handshake that verified the client certificate, and a random id of
/// that authentication, which every session resumed from it carries too (`auth_cert_logout`
/// marks it ended).
pub fn encode_stamp(auth_time: i64, id: [u64; 2]) -> [u8; STAMP_LEN] {
    let mut out = [0u8; STAMP_LEN];
    out[0] = STAMP_V2;
    out[1..STAMP_V1_LEN].copy_from_slice(&auth_time.to_be_bytes());
    out[STAMP_V1_LEN..STAMP_V1_LEN + 8].copy_from_slice(&id[0].to_be_bytes());
    out[STAMP_V1_LEN + 8..].copy_from_slice(&id[1].to_be_bytes());
    out
}

/// The authentication time of a stamp (version 1 or 2); `None` for anything else.
pub fn decode_stamp(data: &[u8]) -> Option<i64> {
    let time = match data {
        [STAMP_V1, rest @ ..] if rest.len() == 8 => rest,
        [STAMP_V2, rest @ ..] if rest.len() == STAMP_LEN - 1 => &rest[..8],
        _ => return None,
    };
    Some(i64::from_be_bytes(time.try_into().ok()?)).filter(|t| *t > 0)
}

/// The id of the authentication of a stamp; `None` for a version 1 stamp (which has none),
/// or anything that is not a stamp.
pub fn stamp_id(data: &[u8]) -> Option<[u64; 2]> {
    decode_stamp(data)?;
    match data {
        [STAMP_V2, rest @ ..] => {
            let word = |at: usize| Some(u64::from_be_bytes(rest.get(at..at + 8)?.try_into().ok()?));
            Some([word(8)?, word(16)?]).filter(|id| *id != [0, 0])
        }
        _ => None,
    }
}

/// A decimal number kept inline, for variables that must not allocate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decimal {
    digits: [u8; 20],
    len: u8,
}

impl Decimal {
    pub fn new(value: i64) -> Self {
        let mut out = Self::default();
        let mut n = value.unsigned_abs();
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if value < 0 && i > 0 {
            i -= 1;
            tmp[i] = b'-';
        }
        let len = tmp.len() - i;
        out.digits[..len].copy_from_slice(&tmp[i..]);
        out.len = len as u8;
        out
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and '-' are ever written.
        core::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness() {
        assert!(!is_stale(Some(100), 100, 2));
        assert!(!is_stale(Some(100), 102, 2));
        assert!(is_stale(Some(100), 103, 2));
        assert!(is_stale(None, 100, 3600));
        // A clock that stepped back gives age 0, not a negative age.
        assert_eq!(age(200, 100), 0);
        assert!(!is_stale(Some(200), 100, 2));
    }

    #[test]
    fn lifetime_left() {
        assert_eq!(remaining_lifetime(100, 100, 900), 900);
        assert_eq!(remaining_lifetime(100, 400, 900), 600);
        assert_eq!(remaining_lifetime(100, 1000, 900), 1);
        assert_eq!(remaining_lifetime(100, 5000, 900), 1);
    }

    #[test]
    fn stricter_limit_wins() {
        assert_eq!(stricter(None, None), None);
        assert_eq!(stricter(Some(5), None), Some(5));
        assert_eq!(stricter(None, Some(7)), Some(7));
        assert_eq!(stricter(Some(9), Some(7)), Some(7));
    }

    #[test]
    fn longer_limit_wins() {
        assert_eq!(longer(None, None), None);
        assert_eq!(longer(Some(5), None), Some(5));
        assert_eq!(longer(None, Some(7)), Some(7));
        assert_eq!(longer(Some(9), Some(7)), Some(9));
    }

    #[test]
    fn stamps_round_trip_and_refuse_others() {
        let t = 1_764_000_000;
        let id = [0x0102_0304_0506_0708, 0x1112_1314_1516_1718];
        let stamp = encode_stamp(t, id);
        assert_eq!(stamp.len(), STAMP_LEN);
        assert_eq!(stamp[0], 2);
        assert_eq!(decode_stamp(&stamp), Some(t));
        assert_eq!(stamp_id(&stamp), Some(id));
        assert_eq!(decode_stamp(&[]), None);
        assert_eq!(decode_stamp(&stamp[..8]), None);
        assert_eq!(decode_stamp(&stamp[..9]), None);
        assert_eq!(stamp_id(&stamp[..24]), None);
        let mut other = stamp;
        other[0] = 3;
        assert_eq!(decode_stamp(&other), None);
        assert_eq!(stamp_id(&other), None);
        assert_eq!(decode_stamp(&[&stamp[..], &[0]].concat()), None);
        assert_eq!(decode_stamp(&encode_stamp(0, id)), None);
        assert_eq!(decode_stamp(&encode_stamp(-5, id)), None);
        assert_eq!(stamp_id(&encode_stamp(0, id)), None);
        assert_eq!(stamp_id(&encode_stamp(t, [0, 0])), None);
    }

    /// Sessions issued before the id keep their authentication time, without an id.
    #[test]
    fn version_1_stamps_are_still_read() {
        let t: i64 = 1_764_000_000;
        let v1 = [&[1u8][..], &t.to_be_bytes()].concat();
        assert_eq!(decode_stamp(&v1), Some(t));
        assert_eq!(stamp_id(&v1), None);
        assert_eq!(decode_stamp(&[&v1[..], &[0]].concat()), None);
        assert_eq!(decode_stamp(&[1u8, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(Decimal::new(0).as_str(), "0");
        assert_eq!(Decimal::new(7).as_str(), "7");
        assert_eq!(Decimal::new(1_764_000_000).as_str(), "1764000000");
        assert_eq!(Decimal::new(-12).as_str(), "-12");
        assert_eq!(Decimal::new(i64::MAX).as_str(), "9223372036854775807");
        assert_eq!(Decimal::new(i64::MIN).as_str(), "-9223372036854775808");
        assert_eq!(Decimal::default().as_str(), "");
    }
}
