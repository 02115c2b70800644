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
//! The user index ([`UserIndex`](crate::UserIndex)) keeps each session's entry on the session
//! itself, so it goes with it, plus a map from each user to their session keys; whatever drops
//! a linked session (a delete, an expiry, an eviction) takes its key out of that map too.

mod shard;
#[cfg(test)]
mod tests;
mod users;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use self::shard::{cost, orphan, Entry, Limits, Orphan, Shard};
use super::listed::ListAll;
use crate::error::StoreError;
use crate::store::{ClearExpired, Counts, Created, Record, SessionStore, Updated};

/// How many shards: enough that app threads rarely meet on one lock.
const SHARDS: usize = 64;

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
        expected: &[u8],
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
        if entry.data != expected {
            return Updated::Conflict(Record {
                data: entry.data.clone(),
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
            data: entry.data.clone(),
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
            data: record.data.clone(),
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
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        Ok(self.swap(key, expected, now, |entry| {
            entry.data = record.data.clone();
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

/// Every session, for [`Scan`](crate::store::Scan) (see [`ListAll`]).
#[async_trait]
impl ListAll for MemoryStore {
    async fn all(&self) -> Result<Vec<(String, Record)>, StoreError> {
        let shards = self.inner.shards.iter();
        let all = shards.flat_map(|shard| {
            let shard = lock(shard);
            let records = shard.map.iter().map(|(key, e)| {
                let data = e.data.clone();
                (
                    key.to_string(),
                    Record {
                        data,
                        expires_at: e.expires_at,
                    },
                )
            });
            records.collect::<Vec<_>>()
        });
        Ok(all.collect())
    }

    async fn counts(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
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

impl MemoryStore {
    /// Whether any record (live or expired) holds `key`: for tests and tools that look at
    /// the store itself (the core never asks).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.shard(key).map.contains_key(key))
    }
}
