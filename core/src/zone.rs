//! The shared memory zone of `auth_cert_zone`: its argument, its layout and its table of
//! marks (authentications ended before their sessions).
//!
//! The zone holds one [`Region`]: a header telling its layout, the [`Counters`] of
//! `auth_cert_metrics`, then a fixed table of [`Mark`]s. Its size is fixed when the zone is
//! created, so nothing is allocated afterwards. The module crate places it in nginx's shared
//! memory; this module only computes and operates on plain values.

use core::mem::size_of;
use core::sync::atomic::{AtomicI64, Ordering};

use crate::metrics::{Counters, Refusal};

/// The smallest zone: eight pages of 4 KiB, as nginx's own zones require.
pub const MIN_SIZE: usize = 32 * 1024;
/// The largest zone accepted.
pub const MAX_SIZE: usize = 1 << 30;

/// Written first in the zone: a zone left by another layout is never read as this one.
pub const MAGIC: u64 = u64::from_be_bytes(*b"authcrt\0");
/// The layout version, raised whenever [`Header`], [`Counters`] or [`Mark`] change.
pub const VERSION: u64 = 2;

/// The header of the zone.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Header {
    pub magic: u64,
    pub version: u64,
    /// How many marks follow the counters.
    pub capacity: u64,
}

/// The beginning of the zone; `capacity` marks follow it.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Region {
    pub header: Header,
    pub counters: Counters,
    /// Until when (Unix seconds) a mark dropped to make room could still refuse a session:
    /// while it could, step-up falls back to the strictest age at the handshake.
    pub overflow_until: AtomicI64,
}

impl Region {
    /// Notes that a live mark expiring at `expires` was dropped.
    pub fn overflowed(&self, expires: i64) {
        self.overflow_until.fetch_max(expires, Ordering::Relaxed);
    }

    /// Whether a mark dropped to make room could still refuse a session at `now`.
    pub fn overflowing(&self, now: i64) -> bool {
        self.overflow_until.load(Ordering::Relaxed) > now
    }
}

/// Why an authentication was marked, which is why its sessions are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `auth_cert_logout`.
    Logout = 1,
    /// A stale request on a location stricter than the handshake limit.
    Stepup = 2,
}

impl Kind {
    /// The refusal a mark of this kind counts as.
    pub fn refusal(kind: u64) -> Refusal {
        if kind == Self::Stepup as u64 {
            Refusal::Stepup
        } else {
            Refusal::Logout
        }
    }
}

/// An authentication ended before its TLS session: resuming a session stamped with `id` is
/// refused until `expires` (Unix seconds), when no such session can be resumed any more.
/// An all-zero mark is an empty slot.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub id: [u64; 2],
    pub expires: i64,
    /// A [`Kind`], as a number.
    pub kind: u64,
}

/// Memory per mark, in bytes.
pub const MARK_BYTES: usize = size_of::<Mark>();

/// How many slots a mark may take from its home slot: lookups read at most this many.
pub const PROBE: usize = 8;

/// Parses `name:size` of `auth_cert_zone`; the size takes nginx's `k` and `m` suffixes.
pub fn parse(arg: &str) -> Result<(&str, usize), String> {
    let invalid = || format!("invalid zone \"{arg}\", it must be \"name:size\"");
    let (name, size) = arg.rsplit_once(':').ok_or_else(invalid)?;
    if name.is_empty() {
        return Err(invalid());
    }
    let (digits, unit) = match size.as_bytes().last() {
        Some(b'k' | b'K') => (&size[..size.len() - 1], 1024),
        Some(b'm' | b'M') => (&size[..size.len() - 1], 1024 * 1024),
        _ => (size, 1),
    };
    let bytes = digits
        .parse::<usize>()
        .ok()
        .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("invalid zone size \"{size}\""))?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&bytes) {
        return Err(format!(
            "zone \"{name}\" of {bytes} bytes, it must be from 32k to 1024m"
        ));
    }
    Ok((name, bytes))
}

/// How many marks a zone of `zone_size` bytes holds, after nginx's slab allocator (its page
/// table, under 1/128 of the zone, and a few pages of its own) and the [`Region`].
pub fn capacity(zone_size: usize) -> usize {
    let overhead = zone_size / 32 + 2 * 4096 + size_of::<Region>();
    zone_size.saturating_sub(overhead) / MARK_BYTES
}

/// The bytes of the region with `capacity` marks.
pub fn region_bytes(capacity: usize) -> usize {
    size_of::<Region>() + capacity * MARK_BYTES
}

fn home(table: &[Mark], id: [u64; 2]) -> usize {
    // Ids are random: their low bits are as good as a hash.
    (id[0] % table.len() as u64) as usize
}

fn window(table: &[Mark], id: [u64; 2]) -> impl Iterator<Item = usize> {
    let (len, start) = (table.len(), home(table, id));
    (0..PROBE.min(len)).map(move |i| (start + i) % len)
}

/// Marks `id` ended (for `kind`) until `expires`. Its slot is the first of its window that
/// holds it, is empty or has expired at `now`; in a full window, the mark that expires first
/// gives way (the oldest marks go first). Returns the expiry of a live mark dropped for it.
pub fn mark(table: &mut [Mark], id: [u64; 2], expires: i64, kind: Kind, now: i64) -> Option<i64> {
    if table.is_empty() || id == [0, 0] {
        return None;
    }
    let kind = kind as u64;
    let mut slot = None;
    for i in window(table, id) {
        let m = table[i];
        if m.id == id {
            table[i].expires = m.expires.max(expires);
            table[i].kind = kind;
            return None;
        }
        if slot.is_none() && (m.id == [0, 0] || m.expires <= now) {
            slot = Some(i);
        }
    }
    let (slot, dropped) = match slot {
        Some(i) => (i, None),
        None => {
            let oldest = window(table, id)
                .min_by_key(|&i| table[i].expires)
                .unwrap_or(0);
            (oldest, Some(table[oldest].expires))
        }
    };
    table[slot] = Mark { id, expires, kind };
    dropped
}

/// The kind of the mark of `id` at `now`, if it is marked.
pub fn marked(table: &[Mark], id: [u64; 2], now: i64) -> Option<u64> {
    if table.is_empty() || id == [0, 0] {
        return None;
    }
    window(table, id)
        .find(|&i| table[i].id == id && table[i].expires > now)
        .map(|i| table[i].kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_argument() {
        assert_eq!(parse("auth:1m"), Ok(("auth", 1024 * 1024)));
        assert_eq!(parse("a:64k"), Ok(("a", 64 * 1024)));
        assert_eq!(parse("a:32768"), Ok(("a", 32768)));
        assert!(parse("a").is_err());
        assert!(parse(":1m").is_err());
        assert!(parse("a:").is_err());
        assert!(parse("a:+1m").is_err());
        assert!(parse("a:1g").is_err());
        assert!(parse("a:16k").unwrap_err().contains("32k"));
        assert!(parse("a:2048m").is_err());
        assert!(parse("a:99999999999999999999k").is_err());
    }

    #[test]
    fn the_region_fits_the_zone() {
        for size in [MIN_SIZE, 64 * 1024, 1024 * 1024, MAX_SIZE] {
            let capacity = capacity(size);
            assert!(capacity > 0);
            // What the slab allocator keeps: its pool, a page entry per page, and the
            // rounding of the region to whole pages.
            let slab = 1024 + size / 4096 * 48 + 4096;
            assert!(region_bytes(capacity) + slab <= size, "{size}");
        }
        assert_eq!(MARK_BYTES, 32);
        assert!(capacity(1024 * 1024) > 30_000);
    }

    #[test]
    fn marks_expire_and_the_oldest_give_way() {
        const L: Kind = Kind::Logout;
        let logout = Some(Kind::Logout as u64);
        let mut table = vec![Mark::default(); 64];
        assert_eq!(marked(&table, [40, 1], 100), None);
        assert_eq!(mark(&mut table, [40, 1], 200, L, 100), None);
        assert_eq!(marked(&table, [40, 1], 100), logout);
        assert_eq!(marked(&table, [40, 2], 100), None);
        assert_eq!(marked(&table, [40, 1], 200), None);
        // Marking again keeps the later expiry, and takes the new kind.
        mark(&mut table, [40, 1], 150, Kind::Stepup, 100);
        assert_eq!(marked(&table, [40, 1], 199), Some(Kind::Stepup as u64));
        // Ids with one home slot fill its window; the mark that expires first goes.
        for n in 0..PROBE as u64 {
            assert_eq!(
                mark(&mut table, [64 * (n + 1) + 3, 9], 300 + n as i64, L, 100),
                None
            );
        }
        assert_eq!(mark(&mut table, [64 * 100 + 3, 9], 1000, L, 100), Some(300));
        assert_eq!(marked(&table, [64 + 3, 9], 100), None);
        assert_eq!(marked(&table, [128 + 3, 9], 100), logout);
        assert_eq!(marked(&table, [6400 + 3, 9], 100), logout);
        // An expired mark's slot is reused without dropping a live one.
        assert_eq!(mark(&mut table, [64 * 200 + 3, 9], 2000, L, 302), None);
        assert_eq!(marked(&table, [64 * 200 + 3, 9], 302), logout);
        // The zero id is never marked; an empty table marks nothing.
        assert_eq!(mark(&mut table, [0, 0], 500, L, 100), None);
        assert_eq!(marked(&table, [0, 0], 100), None);
        assert_eq!(mark(&mut [], [1, 1], 500, L, 100), None);
    }

    #[test]
    fn kinds_and_overflow() {
        assert_eq!(Kind::refusal(Kind::Logout as u64), Refusal::Logout);
        assert_eq!(Kind::refusal(Kind::Stepup as u64), Refusal::Stepup);
        let region = Region::default();
        assert!(!region.overflowing(100));
        region.overflowed(300);
        region.overflowed(200);
        assert!(region.overflowing(299));
        assert!(!region.overflowing(300));
    }
}
