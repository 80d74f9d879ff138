//! The reuse rule: a token serves every request of the same authentication until half its
//! lifetime has passed, on any connection of the worker: keep-alive requests, HTTP/2 streams,
//! resumed sessions and the parallel connections of one client.

use std::collections::HashMap;
use std::mem::size_of;
use std::rc::Rc;

use super::jws::Issued;
use super::settings::TokenSettings;
use crate::cert::CertificateInfo;

/// How many tokens a cache keeps at most.
pub const CACHE_ENTRIES: usize = 1024;

/// How many bytes the tokens, their keys and the bookkeeping of a cache take at most (as
/// [`CacheKey::cost`] counts them): a token with large claim values takes the room of several.
pub const CACHE_BYTES: usize = 1024 * 1024;

/// The hash table's slots per entry, at most: a table that evicts one entry per insertion
/// fills with tombstones and, holding more than half of its slots, grows once more rather than
/// rehash in place, to up to four slots per entry.
const TABLE_SLOTS_PER_ENTRY: usize = 4;

/// One slot of the table: the two boxes, and a control byte. The key and the entry live in
/// their boxes, so that the spare slots stay small.
const SLOT_BYTES: usize = size_of::<(Box<CacheKey>, Box<Entry>)>() + 1;

/// What makes two requests' tokens interchangeable: the same token settings (key, TTL,
/// issuer, audience, claim names), the same authentication (identity, certificate and the
/// time of the handshake that authenticated it, which resumed sessions keep), the same
/// expiry bound and the same values of the configured claims. Compared field by field:
/// building the claims just to compare them would cost more than the reuse saves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// [`TokenSettings::serial`]: unique in the process, never reused, even by the settings
    /// of a later configuration.
    pub(super) settings: u64,
    pub(super) identity: Rc<str>,
    /// SHA-256 of the certificate.
    pub(super) fingerprint: [u8; 32],
    pub(super) auth_time: Option<i64>,
    pub(super) limit: i64,
    pub(super) extra: Vec<String>,
}

impl CacheKey {
    pub fn new(
        settings: &TokenSettings,
        identity: Rc<str>,
        cert: &CertificateInfo,
        auth_time: Option<i64>,
        limit: i64,
        extra: Vec<String>,
    ) -> Self {
        CacheKey {
            settings: settings.serial(),
            identity,
            fingerprint: *cert.fingerprint(),
            auth_time,
            limit,
            extra,
        }
    }

    /// The bytes an entry with this key and `issued` takes: its slots in the hash table, the
    /// key and the entry in their boxes, the identity (shared with the request that made the
    /// entry, but it may outlive it), the claim values and the token.
    fn cost(&self, issued: &Issued) -> usize {
        TABLE_SLOTS_PER_ENTRY * SLOT_BYTES
            + size_of::<CacheKey>()
            + size_of::<Entry>()
            + 2 * size_of::<usize>()
            + self.identity.len()
            + self
                .extra
                .iter()
                .map(|v| v.capacity() + size_of::<String>())
                .sum::<usize>()
            + issued.token.capacity()
    }
}

#[derive(Debug)]
struct Entry {
    issued: Issued,
    /// When the entry was last used, in calls of [`TokenCache::get_or_issue`].
    used: u64,
    cost: usize,
}

/// The tokens of one worker: a bounded cache, least recently used first out.
#[derive(Debug)]
pub struct TokenCache {
    entries: HashMap<Box<CacheKey>, Box<Entry>>,
    clock: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_bounds(CACHE_ENTRIES, CACHE_BYTES)
    }
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens and `max_bytes` bytes.
    pub fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        TokenCache {
            entries: HashMap::new(),
            clock: 0,
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// How many tokens the cache holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many bytes its entries take, as [`CacheKey::cost`] counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes of its hash table: every bucket (the table holds at most 7/8 of them) with
    /// its control byte.
    pub fn table_bytes(&self) -> usize {
        table_bytes(&self.entries)
    }

    /// What the entries' costs count for the table.
    pub fn table_bytes_counted(&self) -> usize {
        self.entries.len() * TABLE_SLOTS_PER_ENTRY * SLOT_BYTES
    }

    /// The token for `key`: the kept one while it is reusable, else a new one from `sign`,
    /// kept for the next requests of the same authentication.
    pub fn get_or_issue(
        &mut self,
        key: CacheKey,
        now: i64,
        sign: impl FnOnce() -> Result<Issued, String>,
    ) -> Result<Issued, String> {
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.issued.is_reusable(now) {
                entry.used = self.clock;
                return Ok(entry.issued.clone());
            }
            self.remove(&key);
        }
        let issued = sign()?;
        // A clone's string has no spare capacity.
        let kept = issued.clone();
        let cost = key.cost(&kept);
        if cost > self.max_bytes || self.max_entries == 0 {
            return Ok(issued);
        }
        if self.entries.len() >= self.max_entries || self.bytes + cost > self.max_bytes {
            self.evict(now, cost);
        }
        self.bytes += cost;
        let entry = Entry {
            issued: kept,
            used: self.clock,
            cost,
        };
        self.entries.insert(Box::new(key), Box::new(entry));
        Ok(issued)
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.cost;
        }
    }

    /// Makes room for an entry of `cost` bytes: drops the tokens no longer reusable, then
    /// the least recently used ones.
    fn evict(&mut self, now: i64, cost: usize) {
        let mut freed = 0;
        self.entries.retain(|_, entry| {
            let keep = entry.issued.is_reusable(now);
            if !keep {
                freed += entry.cost;
            }
            keep
        });
        self.bytes -= freed;
        while self.entries.len() >= self.max_entries || self.bytes + cost > self.max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| CacheKey::clone(key))
            else {
                break;
            };
            self.remove(&oldest);
        }
    }
}

fn table_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    let buckets = (map.capacity() * 8).div_ceil(7).next_power_of_two();
    buckets * (size_of::<(K, V)>() + 1)
}
