//! Locks keyed by exactly one session key, made on demand and dropped when nobody holds or
//! awaits them.
//!
//! Two things use them, and neither holds one across a handler by default:
//! - a save that met a concurrent save (a compare-and-swap conflict) waits for the other
//!   savers of the same key in this process before it merges, so that N racing requests
//!   merge about once each instead of colliding N times; the wait covers store calls only;
//! - an exclusive route (`ExclusiveLayer` in the `cloakroom` crate), opt-in, holds its visitor's lock
//!   from load to save.
//!
//! Keyed by the exact key, never by a hash bucket: a visitor can only ever wait for requests
//! carrying the same session key, and a key the store does not hold is never locked (the
//! callers lock after a load found the record). An earlier design used 4,096 stripes held for
//! the whole handler: 5,000 long-polls then made 71% of other visitors' requests wait over 1 s.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

/// Shards of the key table: the table's own (std) mutex is held for a map insert or remove,
/// never across an await; 64 shards keep two cores from meeting on it.
const SHARDS: usize = 64;

type Table = HashMap<Box<str>, Arc<tokio::sync::Mutex<()>>>;

/// A table of per-key async mutexes. Cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct KeyLocks {
    inner: Arc<Shards>,
}

struct Shards {
    shards: Box<[Mutex<Table>]>,
    /// How many entries exist (keys held or awaited), so that [`KeyLocks::busy`] costs one
    /// atomic load while nobody queues.
    entries: AtomicUsize,
    /// Seeded per process, so a client cannot aim its keys at one shard.
    hasher: foldhash::quality::RandomState,
}

impl Default for Shards {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::new())).collect(),
            entries: AtomicUsize::new(0),
            hasher: foldhash::quality::RandomState::default(),
        }
    }
}

impl Shards {
    fn shard(&self, key: &str) -> &Mutex<Table> {
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// Drops `key`'s entry when nothing but the table holds its mutex any more.
    fn release(&self, key: &str) {
        let mut table = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Clones are only made under this shard lock, so the count cannot grow meanwhile.
        if table.get(key).is_some_and(|m| Arc::strong_count(m) == 1) {
            table.remove(key);
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A held lock on one key; released (and its entry dropped when unused) on drop.
pub(crate) struct KeyGuard {
    // Field order matters: the mutex guard is released before the entry is looked at.
    guard: Option<OwnedMutexGuard<()>>,
    _entry: Entry,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.guard.take();
    }
}

/// A claim on a key's entry; drops the entry when the last claim goes.
struct Entry {
    locks: Arc<Shards>,
    key: Box<str>,
    mutex: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Our own count goes first, so that the last claim sees only the table's.
        self.mutex.take();
        self.locks.release(&self.key);
    }
}

impl KeyLocks {
    /// Takes `key`'s lock, waiting at most `wait`; `None` when the wait ran out.
    pub(crate) async fn lock(&self, key: &str, wait: Duration) -> Option<KeyGuard> {
        let mutex = {
            let mut table = self
                .inner
                .shard(key)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(table.entry(key.into()).or_insert_with(|| {
                self.inner.entries.fetch_add(1, Ordering::Relaxed);
                Arc::default()
            }))
        };
        // From here on, dropping `entry` (a timeout, a cancelled request) cleans up.
        let entry = Entry {
            locks: Arc::clone(&self.inner),
            key: key.into(),
            mutex: Some(Arc::clone(&mutex)),
        };
        let guard = match Arc::clone(&mutex).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => tokio::time::timeout(wait, mutex.lock_owned()).await.ok()?,
        };
        Some(KeyGuard {
            guard: Some(guard),
            _entry: entry,
        })
    }

    /// Whether `key`'s lock is held or awaited: a saver that has not met a conflict yet joins
    /// the queue when it is, rather than overtake the savers waiting in it. One atomic load
    /// while no key of the process is queued.
    pub(crate) fn busy(&self, key: &str) -> bool {
        if self.inner.entries.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.inner
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// How many keys have an entry (held or awaited): zero when nobody waits.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_waits_for_its_holder_and_other_keys_do_not() {
        let locks = KeyLocks::default();
        let held = locks.lock("alpha", Duration::from_secs(1)).await;
        assert!(held.is_some());
        // Another key is free at once, whatever shard it falls in.
        for other in ["beta", "gamma", "delta", "epsilon"] {
            assert!(locks.lock(other, Duration::ZERO).await.is_some());
        }
        // The same key is not.
        assert!(locks
            .lock("alpha", Duration::from_millis(20))
            .await
            .is_none());
        drop(held);
        assert!(locks.lock("alpha", Duration::ZERO).await.is_some());
    }

    #[tokio::test]
    async fn a_key_is_busy_while_held_or_awaited_and_not_after() {
        let locks = KeyLocks::default();
        assert!(!locks.busy("a"));
        let held = locks.lock("a", Duration::from_secs(1)).await.unwrap();
        assert!(locks.busy("a"));
        assert!(!locks.busy("b"), "another key is not busy");
        drop(held);
        assert!(!locks.busy("a"));
        assert_eq!(locks.inner.entries.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn entries_go_when_nobody_holds_or_waits() {
        let locks = KeyLocks::default();
        let held = locks.lock("alpha", Duration::ZERO).await;
        assert_eq!(locks.len(), 1);
        // A waiter that gives up leaves no entry behind it once the holder goes.
        assert!(locks
            .lock("alpha", Duration::from_millis(5))
            .await
            .is_none());
        assert_eq!(locks.len(), 1);
        drop(held);
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_lock_when_the_holder_drops_it() {
        let locks = KeyLocks::default();
        let held = locks.lock("alpha", Duration::ZERO).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock("alpha", Duration::from_secs(5)).await.is_some() })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiter.await.unwrap_or(false));
        assert_eq!(locks.len(), 0);
    }
}
