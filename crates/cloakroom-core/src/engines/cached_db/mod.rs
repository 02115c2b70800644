//! The `cached_db` engine: a database table, with a write-through cache in front of it.
//!
//! As Django's `cached_db`, the database holds the truth and the cache a copy: reads hit the
//! cache and fall back to the database (a cache that fails or vanishes costs reads nothing but
//! time), writes go to the database and then to the cache.
//!
//! A copy never outlives a write that replaced it, since Django (or another app server) reads
//! the cache first and would serve it: before an update or a delete the copy is dropped, and
//! the database is written only once the cache confirmed that; after the write the copy moves
//! by compare-and-swap on what the database held before, or is dropped again (a database
//! conflict, a deleted session, another writer's copy, a cache error). A drop the cache does
//! not confirm, after a few quick retries, fails the call as [`StoreError::Backend`]: before
//! the database write nothing is written; after it (only a read that refilled the copy in
//! between can have left one) the write stands and the failure is reported. Either way the
//! request follows `on_store_error`, as for any store failure; a cache that is not connected
//! yet (the engine starts without waiting for it) is such a failure. Expiry-only writes
//! (`touch`) and fills after a read stay best-effort: a copy that expires sooner is not stale.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::store::{
    user_index, ClearExpired, ClearedSession, Created, Record, SessionStore, Updated, UserIndex,
    UserSession,
};

mod django;

pub use self::django::DjangoCacheCopy;

const ENGINE: &str = "cached_db";
/// Pauses before each new attempt to drop a copy: a cache that blinks (a reconnection, a
/// failover) usually answers within these; one that is down fails the write in about 0.1 s.
const DROP_RETRIES: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(20),
    std::time::Duration::from_millis(80),
];

/// The cache could not confirm that its copy of a session is gone, so a write that would have
/// left that copy stale was refused (or, after the database write, reported).
#[derive(Debug, thiserror::Error)]
#[error("the session cache ({cache}) did not confirm that its copy of the session is gone, {what}; a copy left there would be served stale by Django or another app server. Check that the cache at `cache_url` is reachable")]
struct CopyNotDropped {
    cache: &'static str,
    what: &'static str,
    #[source]
    source: StoreError,
}

/// A database store with a cache store in front of it (Redis, or the in-process cache).
#[derive(Clone)]
pub struct CachedDbStore {
    db: Arc<dyn SessionStore>,
    cache: Arc<dyn SessionStore>,
    clear: Option<Arc<dyn ClearExpired>>,
    users: Option<Arc<dyn UserIndex>>,
}

impl std::fmt::Debug for CachedDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDbStore")
            .field("db", &self.db.engine())
            .field("cache", &self.cache.engine())
            .finish()
    }
}

impl CachedDbStore {
    /// Sessions in `db`, with copies in `cache`.
    ///
    /// # Examples
    /// ```no_run
    /// use std::sync::Arc;
    /// use cloakroom_core::engines::{cached_db::CachedDbStore, memory::MemoryStore};
    /// // In an app the database is `cloakroom::engines::sqlite::SqliteStore` (or PostgreSQL,
    /// // MySQL); any store works, as here.
    /// let db = Arc::new(MemoryStore::default());
    /// let store = CachedDbStore::new(db.clone(), Arc::new(MemoryStore::default()))
    ///     .with_clear_expired(db);
    /// ```
    pub fn new(db: Arc<dyn SessionStore>, cache: Arc<dyn SessionStore>) -> Self {
        Self {
            db,
            cache,
            clear: None,
            users: None,
        }
    }

    /// Lets [`ClearExpired`] delete expired rows through `clear` (usually the database store
    /// itself); without it `clear_expired` fails with a message saying so.
    #[must_use]
    pub fn with_clear_expired(mut self, clear: Arc<dyn ClearExpired>) -> Self {
        self.clear = Some(clear);
        self
    }

    /// Keeps the index of sessions by user in `users`, the database's: the store answers
    /// [`UserIndex`] from it (revoking evicts the cached copy too). Without it, every index
    /// call is [`StoreError::NoUserIndex`].
    #[must_use]
    pub fn with_user_index(mut self, users: Arc<dyn UserIndex>) -> Self {
        self.users = Some(users);
        self
    }

    /// The database store, which holds the truth.
    pub fn db(&self) -> &Arc<dyn SessionStore> {
        &self.db
    }

    /// The cache store, which holds copies.
    pub fn cache(&self) -> &Arc<dyn SessionStore> {
        &self.cache
    }

    fn cache_failed(&self, step: &'static str, e: &StoreError) {
        // Rate-limited with every store failure: a cache outage fails each request's step.
        if let Some(held) = crate::observe::STORE_FAILURES.admit() {
            tracing::warn!(engine = ENGINE, cache = self.cache.engine(), step, error = %e,
                not_logged = held, "session cache failed; the database still answers");
        }
    }

    /// Drops the cache's copy, so the next read refills it from the database; best-effort.
    async fn drop_copy(&self, key: &str) {
        if let Err(e) = self.cache.delete(key).await {
            self.cache_failed("drop", &e);
        }
    }

    /// Drops the cache's copy and insists on the cache's answer, retrying briefly: `what`
    /// says, for the error, where the write stands.
    async fn drop_confirmed(&self, key: &str, what: &'static str) -> Result<(), StoreError> {
        let mut result = self.cache.delete(key).await;
        for pause in DROP_RETRIES {
            let Err(e) = &result else {
                return Ok(());
            };
            self.cache_failed("drop", e);
            tokio::time::sleep(pause).await;
            result = self.cache.delete(key).await;
        }
        result.map_err(|source| {
            StoreError::backend(
                ENGINE,
                CopyNotDropped {
                    cache: self.cache.engine(),
                    what,
                    source,
                },
            )
        })
    }

    /// Brings the cache in step with a write the database answered `db` to: `cache_write` (the
    /// same write on the copy, run only if the database stored it) or a confirmed drop.
    async fn follow(
        &self,
        key: &str,
        db: &Updated,
        step: &'static str,
        cache_write: impl std::future::Future<Output = Result<Updated, StoreError>>,
    ) -> Result<(), StoreError> {
        const AFTER: &str = "after the database write (which stands)";
        match db {
            // The cache's copy moves only from the same data the database moved from; any
            // other copy is stale or another writer's, and goes. A missing copy stays missing.
            Updated::Stored => match cache_write.await {
                Ok(Updated::Stored | Updated::Missing) => Ok(()),
                Ok(Updated::Conflict(_)) => self.drop_confirmed(key, AFTER).await,
                Err(e) => {
                    self.cache_failed(step, &e);
                    self.drop_confirmed(key, AFTER).await
                }
            },
            // The caller read a stale copy (perhaps from this cache), or the session is gone:
            // drop it so the cache cannot serve it again.
            Updated::Conflict(_) | Updated::Missing => self.drop_confirmed(key, AFTER).await,
        }
    }

    /// Puts a record the database holds into the cache unless the cache holds something under
    /// the key already; that something is dropped rather than overwritten, since it may be a
    /// newer copy written meanwhile.
    async fn fill(&self, key: &str, record: &Record) {
        match self.cache.create(key, record).await {
            Ok(Created::Stored) => {}
            Ok(Created::Taken) => self.drop_copy(key).await,
            Err(e) => self.cache_failed("fill", &e),
        }
    }
}

#[async_trait]
impl SessionStore for CachedDbStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        match self.cache.load(key, now).await {
            Ok(Some(record)) => return Ok(Some(record)),
            Ok(None) => {}
            Err(e) => self.cache_failed("load", &e),
        }
        let record = self.db.load(key, now).await?;
        if let Some(record) = &record {
            self.fill(key, record).await;
        }
        Ok(record)
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let created = self.db.create(key, record).await?;
        if created == Created::Stored {
            self.fill(key, record).await;
        }
        Ok(created)
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.drop_confirmed(key, "so the database was not written")
            .await?;
        let updated = self.db.update(key, expected, record, now).await?;
        self.follow(
            key,
            &updated,
            "update",
            self.cache.update(key, expected, record, now),
        )
        .await?;
        Ok(updated)
    }

    /// The database's expiry moves (a TTL-only write there), then the cache's copy, in step.
    /// Best-effort on the cache: a copy whose expiry did not move ends sooner, and the next
    /// read refills it from the database; the data it holds is not stale.
    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let touched = self.db.touch(key, record, now).await?;
        match (&touched, self.cache.touch(key, record, now).await) {
            (Updated::Stored, Ok(Updated::Stored | Updated::Missing)) => {}
            (Updated::Stored, Err(e)) => {
                self.cache_failed("touch", &e);
                self.drop_copy(key).await;
            }
            _ => self.drop_copy(key).await,
        }
        Ok(touched)
    }

    /// The copy goes first (confirmed, or the session stays whole), then the row, then any copy
    /// a read put back in between: a deleted session (a logout) must not live on in the cache.
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.drop_confirmed(key, "so the session was not deleted")
            .await?;
        self.db.delete(key).await?;
        self.drop_confirmed(key, "after the session was deleted from the database")
            .await
    }
}

/// The database's index: it holds every session, the cache only copies. Revoking drops the
/// cache's copy too, so the cache cannot serve a revoked session.
#[async_trait]
impl UserIndex for CachedDbStore {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        user_index(self.users.as_ref(), self.db.engine())?
            .link(entry)
            .await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        user_index(self.users.as_ref(), self.db.engine())?
            .unlink(user_id, id)
            .await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        user_index(self.users.as_ref(), self.db.engine())?
            .sessions_of(user_id, now)
            .await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        // As `delete`: the copy goes before the row and again after it. Dropping the copy of a
        // session the index then refuses to revoke (another user's) costs only a cache miss.
        self.drop_confirmed(id, "so the session was not revoked")
            .await?;
        user_index(self.users.as_ref(), self.db.engine())?
            .revoke(user_id, id)
            .await?;
        if self.db.load(id, OffsetDateTime::now_utc()).await?.is_none() {
            self.drop_confirmed(id, "after the session was revoked in the database")
                .await?;
        }
        Ok(())
    }
}

/// Clears the database's expired rows; the cache's copies expire by themselves.
#[async_trait]
impl ClearExpired for CachedDbStore {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        match &self.clear {
            Some(clear) => clear.clear_expired(now).await,
            None => Err(StoreError::backend(
                ENGINE,
                format!(
                    "this cached_db store cannot clear expired sessions: build it with \
                     `with_clear_expired` (its {} database store)",
                    self.db.engine()
                ),
            )),
        }
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        match &self.clear {
            Some(clear) => clear.clear_expired_batch(now).await,
            None => self.clear_expired(now).await,
        }
    }

    async fn clear_expired_named(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<ClearedSession>>, StoreError> {
        match &self.clear {
            Some(clear) => clear.clear_expired_named(now).await,
            None => Ok(None),
        }
    }
}
