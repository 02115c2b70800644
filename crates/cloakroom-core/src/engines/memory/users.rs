//! Sessions of a user ([`UserIndex`]) in the in-process cache: each session's entry lives on
//! the session itself, so it goes with it, plus a map from each user to their session keys.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{lock, MemoryStore};
use crate::error::StoreError;
use crate::store::{UserIndex, UserSession};

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
