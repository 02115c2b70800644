//! Sessions of a user: the one [`UserIndex`] every engine gets, written over the small
//! primitive [`IndexEntries`] each engine implements on its own storage (SQL `<table>_user`,
//! Redis sorted sets and hashes, files, the in-process map).
//!
//! The rules live here once: a listing forgets the entries whose session is gone, expired or
//! linked to another user since, and answers the rest newest login first; revoking deletes a
//! session only if the user's index holds it, then forgets the entry. What the engines keep
//! is what only their storage can do: the upsert that keeps the first `created_at` in one step,
//! and whatever drops dead entries more cheaply than one check each (SQL's join, Redis's
//! prune by score).

use std::cmp::Reverse;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::store::{SessionStore, UserIndex, UserSession};

/// One entry of a user's index as an engine stores it, with what the engine knows of its
/// session (what [`IndexEntries::entries`] answers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexEntry {
    /// The session exists under the entry's id and is linked to `user_id` as the entry says;
    /// `expires_at` is the session's own expiry where the engine reads it (Django may have
    /// saved the session since its last link), else the expiry it was linked with.
    Found(UserSession),
    /// An entry to forget, named by the session's id: its session is gone, or the entry
    /// cannot be read.
    Stale(String),
}

/// The small primitive an engine implements to keep an index of sessions by user; the core
/// implements [`UserIndex`] on top of it for every such store, with the shared rules (see the
/// module docs). The engine's storage layout is its own.
#[async_trait]
pub trait IndexEntries: SessionStore {
    /// Stores `entry` under `entry.user_id`, replacing an entry of the same session but
    /// keeping its `created_at` (the login), in one step where the engine can so that two
    /// concurrent writes cannot lose it. A session already gone (a concurrent logout) may be
    /// left unlinked.
    async fn put(&self, entry: &UserSession) -> Result<(), StoreError>;

    /// Forgets session `id` from `user_id`'s index; a missing entry is not an error.
    async fn remove(&self, user_id: &str, id: &str) -> Result<(), StoreError>;

    /// The entries stored for `user_id`, in any order, stale ones included: the core forgets
    /// those. An engine may leave out entries it knows are dead at `now` when its storage
    /// drops them anyway (a join on the session row, a prune by expiry).
    async fn entries(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<IndexEntry>, StoreError>;

    /// Whether `user_id`'s index holds session `id`.
    async fn holds(&self, user_id: &str, id: &str) -> Result<bool, StoreError>;

    /// Deletes session `id` if `user_id`'s index holds it, so a user can never end another
    /// user's session by naming it. The default asks [`holds`](Self::holds), then deletes;
    /// engines that can check and delete in one step (one SQL statement, one lock) override
    /// it.
    async fn delete_held(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        if self.holds(user_id, id).await? {
            self.delete(id).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<S: IndexEntries> UserIndex for S {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        self.put(entry).await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.remove(user_id, id).await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let entries = self.entries(user_id, now).await?;
        let mut live = Vec::with_capacity(entries.len());
        for entry in entries {
            let dead = match entry {
                IndexEntry::Found(s) if s.user_id == user_id && s.expires_at > now => {
                    live.push(s);
                    continue;
                }
                // Expired, or another user's since: the entry leaves this user's index.
                IndexEntry::Found(s) => s.id,
                IndexEntry::Stale(id) => id,
            };
            self.remove(user_id, &dead).await?;
        }
        // Stable: an engine's own order breaks ties between logins of the same instant.
        live.sort_by_key(|s| Reverse(s.created_at));
        Ok(live)
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        self.delete_held(user_id, id).await?;
        self.remove(user_id, id).await
    }
}

#[cfg(test)]
mod tests;
