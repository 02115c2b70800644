//! The in-process `cache` engine: a bounded, sharded hash map with a per-entry expiry.
//!
//! Fast and simple, but per process: sessions are lost on restart and not shared between app
//! servers. Use Redis for that.
//!
//! Sessions are spread over shards by key hash, each a plain `HashMap` behind its own mutex, so
//! a load or a save is one hash and one short, almost never contended lock. Bounds:
//! - expired sessions are dropped when a load meets them, and each shard sweeps out its expired
//!   sessions every few thousand writes;
//! - a full shard first sweeps its expired sessions, then evicts the least recently used
//!   sixteenth of itself, so a write never waits on more than one shard's sweep and the cost is
//!   a few steps per write on average;
//! - full counts bytes too (`cache_max_bytes`, split evenly between shards): a shard over its
//!   share evicts least recently used sessions until it is a sixteenth under it. A count bound
//!   alone let 400 anonymous 1.9 MB sessions take 790 MB (issue 14).
//!
//! The user index ([`UserIndex`]) keeps each session's entry on the session itself, so it goes
//! with it, plus a map from each user to their session keys; whatever drops a linked session
//! (a delete, an expiry, an eviction) takes its key out of that map too.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::store::{
    Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated, UserIndex,
    UserSession,
};

/// How many shards: enough that app threads rarely meet on one lock.
const SHARDS: usize = 64;
/// A shard sweeps its expired sessions after this many writes.
const SWEEP_EVERY: u32 = 4096;
/// What an entry costs beyond its key and data: the entry itself, the map's slot and the
/// allocations' headers (about 100 bytes on 64-bit targets), rounded up.
const ENTRY_OVERHEAD: usize = 128;

/// The bytes one session counts for against the cache's byte bound.
fn cost(key: &str, entry: &Entry) -> usize {
    key.len() + entry.data.len() + ENTRY_OVERHEAD
}

struct Entry {
    data: Box<str>,
    expires_at: OffsetDateTime,
    /// The shard's access count when the session was last loaded or saved (for LRU).
    used: u64,
    /// The session's entry in the user index, when a user is linked to it.
    linked: Option<Box<UserSession>>,
}

/// A linked session that left a shard: its user and key, to take out of the user map.
type Orphan = (String, Box<str>);

fn orphan(key: &str, entry: &Entry) -> Option<Orphan> {
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
struct Shard {
    map: HashMap<Box<str>, Entry, Hasher>,
    /// What the sessions in `map` cost (see [`cost`]).
    bytes: usize,
    writes: u32,
    /// Counts loads and saves: the shard's clock for least-recently-used eviction.
    uses: u64,
}

impl Shard {
    fn tick(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// Stores a session, keeping `bytes` in step.
    fn insert(&mut self, key: Box<str>, entry: Entry) {
        let key_len = key.len();
        self.bytes += cost(&key, &entry);
        if let Some(old) = self.map.insert(key, entry) {
            self.bytes = self
                .bytes
                .saturating_sub(key_len + old.data.len() + ENTRY_OVERHEAD);
        }
    }

    /// Takes a session out, keeping `bytes` in step.
    fn remove(&mut self, key: &str) -> Option<Entry> {
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

    fn sweep_expired(&mut self, now: OffsetDateTime, orphans: &mut Vec<Orphan>) -> usize {
        self.drop_where(orphans, |e| e.expires_at > now)
    }

    /// Makes room for `incoming` more bytes (a new session's, or 0 after an update grew one),
    /// within `limit` sessions and `max_bytes`: expired ones go first, then the least recently
    /// used. The most recently used session always stays (an update's own).
    fn make_room(&mut self, limit: Limits, incoming: usize, orphans: &mut Vec<Orphan>) {
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
struct Limits {
    count: usize,
    bytes: usize,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::quality::RandomState,
    per_shard: Limits,
    /// Each user's linked session keys (the entries themselves live on the sessions).
    users: Mutex<HashMap<String, HashSet<Box<str>>>>,
}

/// Sessions in this process's memory, at most `capacity` of them (least recently used go
/// first when full; expired ones go on their own). Clones share one store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// A cache that holds at most `capacity` sessions, and at most the default
    /// `cache_max_bytes` (256 MiB) of them.
    pub fn new(capacity: u64) -> Self {
        Self::with_limits(capacity, crate::config::DEFAULT_CACHE_MAX_BYTES)
    }

    /// A cache that holds at most `capacity` sessions and `max_bytes` bytes of them (keys and
    /// data, plus about 128 bytes per session); least recently used sessions go first.
    ///
    /// The bytes are split evenly between the cache's 64 shards; a single session larger than
    /// a shard's share is still kept (alone in its shard), so `max_bytes` should be at least 64
    /// times the largest session (`max_session_bytes`, which settings validation checks).
    pub fn with_limits(capacity: u64, max_bytes: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: foldhash::quality::RandomState::default(),
                per_shard: Limits {
                    count: capacity.div_ceil(SHARDS).max(1),
                    bytes: (max_bytes / SHARDS).max(1),
                },
                users: Mutex::default(),
            }),
        }
    }

    /// How many bytes the cache's sessions count for against its byte bound (see
    /// [`with_limits`](Self::with_limits)).
    pub fn bytes(&self) -> u64 {
        let n: usize = self.inner.shards.iter().map(|s| lock(s).bytes).sum();
        n as u64
    }

    /// How many sessions the cache holds (expired ones not yet swept included).
    pub fn len(&self) -> u64 {
        let n: usize = self.inner.shards.iter().map(|s| lock(s).map.len()).sum();
        n as u64
    }

    /// Whether the cache holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let hash = self.inner.hasher.hash_one(key);
        // The high bits pick the shard; the map inside uses its own hasher.
        let index = usize::try_from(hash >> 58).unwrap_or(0) % SHARDS;
        lock(&self.inner.shards[index])
    }
}

impl MemoryStore {
    /// The compare-and-swap `update` and `touch` share: `write` changes the entry only when it
    /// is live and still holds `expected`.
    fn swap(
        &self,
        key: &str,
        expected: &str,
        now: OffsetDateTime,
        write: impl FnOnce(&mut Entry),
    ) -> Updated {
        let limits = self.inner.per_shard;
        let mut shard = self.shard(key);
        let used = shard.tick();
        let Some(entry) = shard.map.get_mut(key) else {
            return Updated::Missing;
        };
        if entry.expires_at <= now {
            return Updated::Missing;
        }
        if &*entry.data != expected {
            return Updated::Conflict(Record {
                data: String::from(&*entry.data),
                expires_at: entry.expires_at,
            });
        }
        let before = entry.data.len();
        write(entry);
        entry.used = used;
        let after = entry.data.len();
        shard.bytes = (shard.bytes + after).saturating_sub(before);
        let mut orphans = Vec::new();
        if after > before {
            shard.make_room(limits, 0, &mut orphans);
        }
        drop(shard);
        self.forget(orphans);
        Updated::Stored
    }
}

/// A lock poisoned by a panic still guards whole entries (every change is one insert or
/// remove), so it is taken over.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStore {
    /// Takes sessions that left the shards out of their users' key sets. Called with no shard
    /// lock held, so the two kinds of lock are never nested.
    fn forget(&self, orphans: Vec<Orphan>) {
        if orphans.is_empty() {
            return;
        }
        let mut users = lock(&self.inner.users);
        for (user, key) in orphans {
            if let Some(keys) = users.get_mut(&user) {
                keys.remove(&key);
                if keys.is_empty() {
                    users.remove(&user);
                }
            }
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn engine(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let mut shard = self.shard(key);
        let used = shard.tick();
        let Some(entry) = shard.map.get_mut(key) else {
            return Ok(None);
        };
        if entry.expires_at <= now {
            let gone = shard.remove(key).and_then(|e| orphan(key, &e));
            drop(shard);
            self.forget(gone.into_iter().collect());
            return Ok(None);
        }
        entry.used = used;
        Ok(Some(Record {
            data: String::from(&*entry.data),
            expires_at: entry.expires_at,
        }))
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let limit = self.inner.per_shard;
        let mut shard = self.shard(key);
        let used = shard.tick();
        if shard.map.contains_key(key) {
            return Ok(Created::Taken);
        }
        let entry = Entry {
            data: Box::from(record.data.as_str()),
            expires_at: record.expires_at,
            used,
            linked: None,
        };
        let mut orphans = Vec::new();
        shard.make_room(limit, cost(key, &entry), &mut orphans);
        shard.insert(Box::from(key), entry);
        drop(shard);
        self.forget(orphans);
        Ok(Created::Stored)
    }

    async fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        Ok(self.swap(key, expected, now, |entry| {
            entry.data = Box::from(record.data.as_str());
            entry.expires_at = record.expires_at;
        }))
    }

    /// The expiry moved in place; the data is compared where it lies and never copied.
    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        Ok(self.swap(key, &record.data, now, |entry| {
            entry.expires_at = record.expires_at;
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let gone = self.shard(key).remove(key).and_then(|e| orphan(key, &e));
        self.forget(gone.into_iter().collect());
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.shard(key).map.contains_key(key))
    }

    fn users(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }
}

#[async_trait]
impl UserIndex for MemoryStore {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        {
            let mut shard = self.shard(&entry.id);
            // A session that is gone (a concurrent logout) gets no entry.
            let Some(session) = shard.map.get_mut(&*entry.id) else {
                return Ok(());
            };
            let created_at = match &session.linked {
                Some(old) if old.user_id == entry.user_id => old.created_at,
                _ => entry.created_at,
            };
            session.linked = Some(Box::new(UserSession {
                created_at,
                ..entry.clone()
            }));
        }
        lock(&self.inner.users)
            .entry(entry.user_id.clone())
            .or_default()
            .insert(Box::from(entry.id.as_str()));
        Ok(())
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        if let Some(session) = self.shard(id).map.get_mut(id) {
            if session
                .linked
                .as_ref()
                .is_some_and(|l| l.user_id == user_id)
            {
                session.linked = None;
            }
        }
        self.forget(vec![(user_id.to_owned(), Box::from(id))]);
        Ok(())
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let keys: Vec<Box<str>> = lock(&self.inner.users)
            .get(user_id)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default();
        let mut listed = Vec::with_capacity(keys.len());
        let mut dead = Vec::new();
        for key in keys {
            let shard = self.shard(&key);
            let live = shard.map.get(&*key).filter(|e| e.expires_at > now);
            match live.and_then(|e| Some((e, e.linked.as_ref()?))) {
                Some((session, linked)) if linked.user_id == user_id => {
                    listed.push(UserSession {
                        expires_at: session.expires_at,
                        ..(**linked).clone()
                    });
                }
                // Expired, gone or another user's now: the key leaves this user's set.
                _ => dead.push((user_id.to_owned(), key)),
            }
        }
        self.forget(dead);
        listed.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(listed)
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let mut shard = self.shard(id);
        let theirs = shard
            .map
            .get(id)
            .and_then(|e| e.linked.as_ref())
            .is_some_and(|l| l.user_id == user_id);
        if theirs {
            shard.remove(id);
        }
        drop(shard);
        self.forget(vec![(user_id.to_owned(), Box::from(id))]);
        Ok(())
    }
}

#[async_trait]
impl ClearExpired for MemoryStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut orphans = Vec::new();
        let cleared: usize = self
            .inner
            .shards
            .iter()
            .map(|s| lock(s).sweep_expired(now, &mut orphans))
            .sum();
        self.forget(orphans);
        Ok(cleared as u64)
    }
}

#[async_trait]
impl Scan for MemoryStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let live = self
            .inner
            .shards
            .iter()
            .flat_map(|shard| {
                lock(shard)
                    .map
                    .iter()
                    .filter(|(_, e)| e.expires_at > now)
                    .map(|(key, e)| {
                        (
                            key.to_string(),
                            Record {
                                data: e.data.to_string(),
                                expires_at: e.expires_at,
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(super::batch_after(live, cursor, limit))
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let (mut live, mut expired) = (0u64, 0u64);
        for shard in self.inner.shards.iter() {
            for entry in lock(shard).map.values() {
                if entry.expires_at > now {
                    live += 1;
                } else {
                    expired += 1;
                }
            }
        }
        Ok(Counts { live, expired })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &str, secs: i64) -> Record {
        Record {
            data: data.to_owned(),
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(secs),
        }
    }

    #[tokio::test]
    async fn stays_within_its_capacity_and_keeps_recent_sessions() {
        let store = MemoryStore::new(6400);
        let now = OffsetDateTime::now_utc();
        let recent = "recentkey0001";
        store.create(recent, &record("{}", 3600)).await.unwrap();
        for i in 0..20_000 {
            // Keep one session in use while many others arrive.
            if i % 100 == 0 {
                assert!(store.load(recent, now).await.unwrap().is_some(), "at {i}");
            }
            store
                .create(&format!("key{i:010}"), &record("{}", 3600))
                .await
                .unwrap();
        }
        assert!(store.len() <= 6400, "{} sessions kept", store.len());
        assert!(store.len() >= 5000, "evicted too eagerly: {}", store.len());
    }

    /// Issue 14: 400 anonymous 1.9 MB sessions took 790 MB under a count-only bound.
    #[tokio::test]
    async fn unbounded_session_size_cache_stays_under_its_byte_bound() {
        let max_bytes = 64 * 1024 * 1024;
        let store = MemoryStore::with_limits(1_000_000, max_bytes);
        let big = "x".repeat(60_000);
        let recent = "recentkey0001";
        store.create(recent, &record(&big, 3600)).await.unwrap();
        let now = OffsetDateTime::now_utc();
        for i in 0..2_000 {
            if i % 10 == 0 {
                assert!(store.load(recent, now).await.unwrap().is_some(), "at {i}");
            }
            store
                .create(&format!("key{i:010}"), &record(&big, 3600))
                .await
                .unwrap();
            // A session that grows through updates counts too.
            let key = format!("key{:010}", i / 2);
            if let Some(old) = store.load(&key, now).await.unwrap() {
                let grown = record(&format!("{big}{big}"), 3600);
                store.update(&key, &old.data, &grown, now).await.unwrap();
            }
        }
        let counted: usize = store
            .inner
            .shards
            .iter()
            .map(|s| {
                let shard = lock(s);
                shard.map.iter().map(|(k, e)| cost(k, e)).sum::<usize>()
            })
            .sum();
        assert_eq!(store.bytes(), counted as u64, "the byte count drifted");
        assert!(
            store.bytes() <= max_bytes,
            "{} bytes kept, bound {max_bytes}",
            store.bytes()
        );
        assert!(
            store.bytes() >= max_bytes / 4,
            "evicted too eagerly: {}",
            store.bytes()
        );
        for i in 0..2_000 {
            store.delete(&format!("key{i:010}")).await.unwrap();
        }
        store.delete(recent).await.unwrap();
        assert_eq!(store.bytes(), 0);
    }

    #[tokio::test]
    async fn a_full_shard_drops_expired_sessions_before_live_ones() {
        let store = MemoryStore::new(SHARDS as u64 * 4);
        let live = "livekey000001";
        store.create(live, &record("{}", 3600)).await.unwrap();
        for i in 0..1000 {
            store
                .create(&format!("dead{i:010}"), &record("{}", -1))
                .await
                .unwrap();
        }
        assert!(store.exists(live).await.unwrap());
    }
}
