//! One shard of the in-process cache: a plain map behind the store's per-shard mutex, with the
//! byte count, the least-recently-used clock and the eviction that keep it within its bounds.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::store::UserSession;

/// A shard sweeps its expired sessions after this many writes.
const SWEEP_EVERY: u32 = 4096;
/// What an entry costs beyond its key and data: the entry itself, the map's slot and the
/// allocations' headers (about 100 bytes on 64-bit targets), rounded up.
const ENTRY_OVERHEAD: usize = 128;

/// The bytes one session counts for against the cache's byte bound.
pub(super) fn cost(key: &str, entry: &Entry) -> usize {
    key.len() + entry.data.len() + ENTRY_OVERHEAD
}

pub(super) struct Entry {
    pub(super) data: bytes::Bytes,
    pub(super) expires_at: OffsetDateTime,
    /// The shard's access count when the session was last loaded or saved (for LRU).
    pub(super) used: u64,
    /// The session's entry in the user index, when a user is linked to it.
    pub(super) linked: Option<Box<UserSession>>,
}

/// A linked session that left a shard: its user and key, to take out of the user map.
pub(super) type Orphan = (String, Box<str>);

pub(super) fn orphan(key: &str, entry: &Entry) -> Option<Orphan> {
    entry
        .linked
        .as_ref()
        .map(|l| (l.user_id.clone(), Box::from(key)))
}

/// The map's hasher: keyed per map, and much cheaper than SipHash on a 32-byte key. Flooding
/// a map with colliding keys is not open to a client anyway: every stored key is one the
/// server drew.
type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
pub(super) struct Shard {
    pub(super) map: HashMap<Box<str>, Entry, Hasher>,
    /// What the sessions in `map` cost (see [`cost`]).
    pub(super) bytes: usize,
    writes: u32,
    /// Counts loads and saves: the shard's clock for least-recently-used eviction.
    uses: u64,
}

impl Shard {
    pub(super) fn tick(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// Stores a session, keeping `bytes` in step.
    pub(super) fn insert(&mut self, key: Box<str>, entry: Entry) {
        let key_len = key.len();
        self.bytes += cost(&key, &entry);
        if let Some(old) = self.map.insert(key, entry) {
            self.bytes = self
                .bytes
                .saturating_sub(key_len + old.data.len() + ENTRY_OVERHEAD);
        }
    }

    /// Takes a session out, keeping `bytes` in step.
    pub(super) fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.bytes = self.bytes.saturating_sub(cost(key, &entry));
        Some(entry)
    }

    /// Drops the sessions `keep` refuses, adding the linked ones to `orphans`.
    fn drop_where(
        &mut self,
        orphans: &mut Vec<Orphan>,
        mut keep: impl FnMut(&Entry) -> bool,
    ) -> usize {
        let before = self.map.len();
        let mut freed = 0;
        self.map.retain(|key, e| {
            let kept = keep(e);
            if !kept {
                freed += cost(key, e);
                orphans.extend(orphan(key, e));
            }
            kept
        });
        self.bytes = self.bytes.saturating_sub(freed);
        before - self.map.len()
    }

    pub(super) fn sweep_expired(
        &mut self,
        now: OffsetDateTime,
        orphans: &mut Vec<Orphan>,
    ) -> usize {
        self.drop_where(orphans, |e| e.expires_at > now)
    }

    /// Makes room for `incoming` more bytes (a new session's, or 0 after an update grew one),
    /// within `limit` sessions and `max_bytes`: expired ones go first, then the least recently
    /// used. The most recently used session always stays (an update's own).
    pub(super) fn make_room(&mut self, limit: Limits, incoming: usize, orphans: &mut Vec<Orphan>) {
        self.writes += 1;
        if self.writes >= SWEEP_EVERY {
            self.writes = 0;
            self.sweep_expired(OffsetDateTime::now_utc(), orphans);
        }
        let new = usize::from(incoming > 0);
        let fits = |s: &Self| s.map.len() + new <= limit.count && s.bytes + incoming <= limit.bytes;
        if fits(self) {
            return;
        }
        self.sweep_expired(OffsetDateTime::now_utc(), orphans);
        if fits(self) {
            return;
        }
        // Evict at least a sixteenth of the count or of the bytes at once, so the next
        // fifteen-sixteenths of writes find room.
        let mut by_age: Vec<(u64, usize)> = self
            .map
            .iter()
            .map(|(key, e)| (e.used, cost(key, e)))
            .collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        let by_count = if self.map.len() + new > limit.count {
            (limit.count / 16).max(1)
        } else {
            0
        };
        let target = limit.bytes - limit.bytes / 16;
        let (mut by_bytes, mut left) = (0, self.bytes + incoming);
        for (_, bytes) in &by_age {
            if left <= target {
                break;
            }
            left = left.saturating_sub(*bytes);
            by_bytes += 1;
        }
        let evict = by_count
            .max(by_bytes)
            .min(by_age.len().saturating_sub(1 - new));
        let Some(&(cutoff, _)) = evict.checked_sub(1).and_then(|i| by_age.get(i)) else {
            return;
        };
        // `used` values are unique within a shard (one tick per use): exactly `evict` go.
        self.drop_where(orphans, |e| e.used > cutoff);
    }
}

/// A shard's share of the cache's bounds.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub(super) count: usize,
    pub(super) bytes: usize,
}
