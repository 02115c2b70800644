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
//!   a few steps per write on average.
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
    writes: u32,
    /// Counts loads and saves: the shard's clock for least-recently-used eviction.
    uses: u64,
}

impl Shard {
    fn tick(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// Drops the sessions `keep` refuses, adding the linked ones to `orphans`.
    fn drop_where(
        &mut self,
        orphans: &mut Vec<Orphan>,
        mut keep: impl FnMut(&Entry) -> bool,
    ) -> usize {
        let before = self.map.len();
        self.map.retain(|key, e| {
            let kept = keep(e);
            if !kept {
                orphans.extend(orphan(key, e));
            }
            kept
        });
        before - self.map.len()
    }

    fn sweep_expired(&mut self, now: OffsetDateTime, orphans: &mut Vec<Orphan>) -> usize {
        self.drop_where(orphans, |e| e.expires_at > now)
    }

    /// Makes room for one more session: expired ones go first, then the least recently used.
    fn make_room(&mut self, limit: usize, orphans: &mut Vec<Orphan>) {
        self.writes += 1;
        if self.writes >= SWEEP_EVERY {
            self.writes = 0;
            self.sweep_expired(OffsetDateTime::now_utc(), orphans);
        }
        if self.map.len() < limit {
            return;
        }
        self.sweep_expired(OffsetDateTime::now_utc(), orphans);
        if self.map.len() < limit {
            return;
        }
        // Evict a sixteenth at once, so the next fifteen-sixteenths of writes find room.
        let evict = (limit / 16).max(1);
        let mut used: Vec<u64> = self.map.values().map(|e| e.used).collect();
        let (_, &mut cutoff, _) = used.select_nth_unstable(evict - 1);
        let mut left = evict;
        self.drop_where(orphans, |e| {
            if left > 0 && e.used <= cutoff {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::quality::RandomState,
    per_shard: usize,
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
    /// A cache that holds at most `capacity` sessions.
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: foldhash::quality::RandomState::default(),
                per_shard: capacity.div_ceil(SHARDS).max(1),
                users: Mutex::default(),
            }),
        }
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
        write(entry);
        entry.used = used;
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
            let gone = shard.map.remove(key).and_then(|e| orphan(key, &e));
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
        let mut orphans = Vec::new();
        shard.make_room(limit, &mut orphans);
        shard.map.insert(
            Box::from(key),
            Entry {
                data: Box::from(record.data.as_str()),
                expires_at: record.expires_at,
                used,
                linked: None,
            },
        );
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
        let gone = self
            .shard(key)
            .map
            .remove(key)
            .and_then(|e| orphan(key, &e));
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
            shard.map.remove(id);
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
