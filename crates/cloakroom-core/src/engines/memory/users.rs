//! The in-process cache's index entries ([`IndexEntries`]): each session's entry lives on the
//! session itself, so it goes with it, plus a map from each user to their session keys. The
//! rules of the index are the core's (`crate::users`).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::shard::Entry;
use super::{lock, MemoryStore};
use crate::error::StoreError;
use crate::store::UserSession;
use crate::users::{IndexEntries, IndexEntry};

#[async_trait]
impl IndexEntries for MemoryStore {
    async fn put(&self, entry: &UserSession) -> Result<(), StoreError> {
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

    async fn remove(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
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

    /// The entries as they sit on the sessions, with each session's own expiry; a key whose
    /// session is gone or carries no entry is stale.
    async fn entries(
        &self,
        user_id: &str,
        _now: OffsetDateTime,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let keys: Vec<Box<str>> = lock(&self.inner.users)
            .get(user_id)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default();
        Ok(keys
            .into_iter()
            .map(|key| {
                let shard = self.shard(&key);
                match shard
                    .map
                    .get(&*key)
                    .and_then(|e| Some((e, e.linked.as_ref()?)))
                {
                    Some((session, linked)) => IndexEntry::Found(UserSession {
                        expires_at: session.expires_at,
                        ..(**linked).clone()
                    }),
                    None => IndexEntry::Stale(key.into()),
                }
            })
            .collect())
    }

    async fn holds(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        Ok(linked_to(self.shard(id).map.get(id), user_id))
    }

    /// Checks and deletes under the shard's lock, so the session cannot change hands between.
    async fn delete_held(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let mut shard = self.shard(id);
        if linked_to(shard.map.get(id), user_id) {
            shard.remove(id);
        }
        Ok(())
    }
}

/// Whether `session` exists and carries an entry of `user_id`.
fn linked_to(session: Option<&Entry>, user_id: &str) -> bool {
    session
        .and_then(|e| e.linked.as_ref())
        .is_some_and(|l| l.user_id == user_id)
}
