//! Switching stores under live traffic: read the new store, fall back to the old one, write
//! only to the new one.
//!
//! Deploy the app on a [`MigratingStore`] whose `new` is the store you are moving to and `old`
//! the one you are leaving. A session found only in the old store is moved over on its first
//! use (created in the new store with its key, data and expiry, then deleted from the old one),
//! so nobody is logged out and no session is written to the old store again. Run
//! `cloakroom copy` meanwhile to move the sessions nobody uses; once `cloakroom stats` on the
//! old store says 0 live, deploy on the new store alone.
//!
//! A deletion (a logout) removes the key from both stores, so an old copy can never bring a
//! revoked session back.
//!
//! The user index is the new store's. A move is reported by
//! [`load_moved`](MovesOnLoad::load_moved) (open the core with
//! [`Backend::moving`](crate::Backend::moving) so it asks), and the core links a moved session that holds a
//! user there at once, even on a request that only reads it: this store sees encoded data only,
//! and the core is the one place that decodes it and knows where the user is. A session the
//! old store's index listed is listed again from its first use (with that first use as its
//! login time); one nobody uses meanwhile shows up once `cloakroom copy` moves it.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::store::{
    user_index, Created, MovesOnLoad, Record, SessionStore, Updated, UserIndex, UserSession,
};

/// How many times a move is retried when another request races it.
const MAX_MOVES: usize = 4;

/// A store in the middle of a switch from `old` to `new` (see the module docs).
///
/// A store, not a [`Decorator`](crate::decorate::Decorator): a decorator maps one store's keys
/// and wraps its calls, while this one decides which of two stores a call goes to and what
/// follows an answer (a `Missing` update moves the session over and tries again, a delete and
/// a revoke reach both stores). It composes with decorators as any store does: the core's
/// (breaker, timeout, metrics, key hashing) sit above it.
#[derive(Clone)]
pub struct MigratingStore {
    new: Arc<dyn SessionStore>,
    old: Arc<dyn SessionStore>,
    users: Option<Arc<dyn UserIndex>>,
}

impl std::fmt::Debug for MigratingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigratingStore")
            .field("new", &self.new.engine())
            .field("old", &self.old.engine())
            .finish()
    }
}

impl MigratingStore {
    /// Reads `new` then `old`; writes only `new`.
    pub fn new(new: Arc<dyn SessionStore>, old: Arc<dyn SessionStore>) -> Self {
        Self {
            new,
            old,
            users: None,
        }
    }

    /// Keeps the index of sessions by user in `users`, the new store's: the store answers
    /// [`UserIndex`] from it (revoking deletes from the old store too). Without it, every
    /// index call is [`StoreError::NoUserIndex`].
    #[must_use]
    pub fn with_user_index(mut self, users: Arc<dyn UserIndex>) -> Self {
        self.users = Some(users);
        self
    }

    /// Whether [`with_user_index`](Self::with_user_index) gave it an index.
    pub fn has_user_index(&self) -> bool {
        self.users.is_some()
    }

    /// Moves the live session under `key` from the old store to the new one, returning what the
    /// new store holds afterwards (`None` when neither store has it) and whether this call
    /// moved it.
    async fn move_over(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Record, bool)>, StoreError> {
        for _ in 0..MAX_MOVES {
            if let Some(found) = self.new.load(key, now).await? {
                return Ok(Some((found, false)));
            }
            let Some(record) = self.old.load(key, now).await? else {
                return Ok(None);
            };
            match self.new.create(key, &record).await? {
                Created::Stored => {
                    self.old.delete(key).await?;
                    return Ok(Some((record, true)));
                }
                // Another request moved it first, or an expired record holds the key in the
                // new store: look again, clearing the dead one.
                Created::Taken => {
                    if self.new.load(key, now).await?.is_none() {
                        self.new.delete(key).await?;
                    }
                }
            }
        }
        Ok(self.new.load(key, now).await?.map(|found| (found, false)))
    }
}

#[async_trait]
impl SessionStore for MigratingStore {
    fn engine(&self) -> &'static str {
        self.new.engine()
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        Ok(self.load_moved(key, now).await?.map(|(record, _)| record))
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        // A key the old store still holds live is taken too: a new session must not shadow
        // it. (An expired one is never moved over, so it shadows nothing.)
        if self
            .old
            .load(key, OffsetDateTime::now_utc())
            .await?
            .is_some()
        {
            return Ok(Created::Taken);
        }
        self.new.create(key, record).await
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        match self.new.update(key, expected, record, now).await? {
            Updated::Missing => match self.move_over(key, now).await? {
                Some(_) => self.new.update(key, expected, record, now).await,
                None => Ok(Updated::Missing),
            },
            other => Ok(other),
        }
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        match self.new.touch(key, record, now).await? {
            Updated::Missing => match self.move_over(key, now).await? {
                Some(_) => self.new.touch(key, record, now).await,
                None => Ok(Updated::Missing),
            },
            other => Ok(other),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.old.delete(key).await?;
        self.new.delete(key).await
    }
}

/// Reads the new store, and moves a session found only in the old one over.
#[async_trait]
impl MovesOnLoad for MigratingStore {
    async fn load_moved(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Record, bool)>, StoreError> {
        match self.new.load(key, now).await? {
            Some(found) => Ok(Some((found, false))),
            None => self.move_over(key, now).await,
        }
    }
}

/// The new store's index: every session used under the migration is linked there, by its
/// first write or (for a moved one) at its move. Revoking deletes the session from the old store too, as a logout does,
/// so an old copy cannot bring it back.
#[async_trait]
impl UserIndex for MigratingStore {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        user_index(self.users.as_ref(), self.new.engine())?
            .link(entry)
            .await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        user_index(self.users.as_ref(), self.new.engine())?
            .unlink(user_id, id)
            .await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        user_index(self.users.as_ref(), self.new.engine())?
            .sessions_of(user_id, now)
            .await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let index = user_index(self.users.as_ref(), self.new.engine())?;
        let listed = index
            .sessions_of(user_id, OffsetDateTime::now_utc())
            .await?
            .iter()
            .any(|s| s.id == id);
        index.revoke(user_id, id).await?;
        if listed {
            self.old.delete(id).await?;
        }
        Ok(())
    }
}
