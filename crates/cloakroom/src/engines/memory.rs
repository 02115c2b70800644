//! The in-process `cache` engine: a bounded cache (moka) with a per-entry expiry.
//!
//! Fast and simple, but per process: sessions are lost on restart and not shared between app
//! servers. Use Redis for that.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;
use moka::Expiry;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::store::{Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated};

struct UntilExpiry;

fn remaining(record: &Record) -> Duration {
    let left = record.expires_at - OffsetDateTime::now_utc();
    left.try_into().unwrap_or(Duration::ZERO)
}

impl Expiry<Arc<str>, Arc<Record>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Arc<Record>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(remaining(value))
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Arc<Record>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(remaining(value))
    }
}

/// Sessions in this process's memory, at most `capacity` of them (least recently used go
/// first when full; expired ones go on their own).
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<Arc<str>, Arc<Record>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// A cache that holds at most `capacity` sessions.
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// How many sessions the cache holds (an estimate while evictions are pending).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Whether the cache holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        Ok(self
            .cache
            .get(key)
            .filter(|r| r.expires_at > now)
            .map(|r| Record::clone(&r)))
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let result = self
            .cache
            .entry(Arc::from(key))
            .and_compute_with(|existing| match existing {
                Some(_) => Op::Nop,
                None => Op::Put(Arc::new(record.clone())),
            });
        Ok(match result {
            CompResult::Inserted(_) => Created::Stored,
            _ => Created::Taken,
        })
    }

    async fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let mut outcome = Updated::Missing;
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|existing| match existing {
                Some(entry) if entry.value().expires_at > now => {
                    if entry.value().data == expected {
                        outcome = Updated::Stored;
                        Op::Put(Arc::new(record.clone()))
                    } else {
                        outcome = Updated::Conflict(Record::clone(entry.value()));
                        Op::Nop
                    }
                }
                _ => Op::Nop,
            });
        Ok(outcome)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.cache.invalidate(key);
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.cache.contains_key(key))
    }
}

#[async_trait]
impl ClearExpired for MemoryStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut cleared = 0;
        let expired: Vec<Arc<str>> = self
            .cache
            .iter()
            .filter(|(_, r)| r.expires_at <= now)
            .map(|(k, _)| Arc::clone(&*k))
            .collect();
        for key in expired {
            if self.cache.remove(&key).is_some() {
                cleared += 1;
            }
        }
        Ok(cleared)
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
            .cache
            .iter()
            .filter(|(_, record)| record.expires_at > now)
            .map(|(key, record)| (key.to_string(), Record::clone(&record)))
            .collect();
        Ok(super::batch_after(live, cursor, limit))
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let live = self
            .cache
            .iter()
            .filter(|(_, record)| record.expires_at > now)
            .count();
        // The cache drops expired entries by itself.
        Ok(Counts {
            live: live as u64,
            expired: 0,
        })
    }
}
