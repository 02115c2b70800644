//! The `hash_keys` setting: the store holds a SHA-256 of each session key, never the key.
//!
//! The cookie still carries the key itself; every key the core hands the store (`load`,
//! `create`, `update`, `touch`, `delete`) goes through [`stored_key`] first. A dump of
//! the session table, a listing of Redis keys or of the session folder then yields nothing a
//! browser could present as a cookie: finding a key from its hash means inverting SHA-256 over
//! 32 characters drawn from the OS CSPRNG (about 165 bits).
//!
//! A Django app looks sessions up by the raw key, so it cannot share a store written this way.

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::Settings;
use crate::error::StoreError;
use crate::store::{user_index, Created, Record, SessionStore, Updated, UserIndex, UserSession};

/// How many hex characters of the digest are kept: Django's `session_key` is a
/// `varchar(40)`, and 160 bits is far beyond any guessing.
pub const STORED_KEY_LEN: usize = 40;

/// The name a store used with `settings` knows session `key` by: the key itself, or under
/// `hash_keys` its [`stored_key`]. It is the [`UserSession::id`] that
/// [`Sessions::sessions_of`](crate::Sessions::sessions_of) lists, so an app can mark the
/// current session in that list.
pub fn stored_id(settings: &Settings, key: &str) -> String {
    if settings.session.hash_keys {
        stored_key(key)
    } else {
        key.to_owned()
    }
}

/// The name under which the store keeps the session `key`: the first 40 hex characters
/// (lowercase) of SHA-256 of the key. It is still a well-formed key (`[a-z0-9]`, 40 long), so
/// every engine accepts it.
pub fn stored_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(STORED_KEY_LEN);
    for byte in digest.iter() {
        if hex.len() >= STORED_KEY_LEN {
            break;
        }
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A server-side store seen through [`stored_key`]: what the core uses when `hash_keys` is on.
#[derive(Clone)]
pub struct HashedKeys {
    inner: Arc<dyn SessionStore>,
    users: Option<Arc<dyn UserIndex>>,
}

impl HashedKeys {
    /// Wraps `inner` (signed cookies are no store and have no key to hash;
    /// [`crate::Sessions`] refuses `hash_keys` with them).
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self { inner, users: None }
    }

    /// Hashes the ids of `users`, `inner`'s index of sessions by user, too.
    #[must_use]
    pub fn with_users(self, users: Option<Arc<dyn UserIndex>>) -> Self {
        Self { users, ..self }
    }
}

impl std::fmt::Debug for HashedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashedKeys")
            .field("engine", &self.inner.engine())
            .finish()
    }
}

#[async_trait]
impl SessionStore for HashedKeys {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        self.inner.load(&stored_key(key), now).await
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        self.inner.create(&stored_key(key), record).await
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.inner
            .update(&stored_key(key), expected, record, now)
            .await
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.inner.touch(&stored_key(key), record, now).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(&stored_key(key)).await
    }
}

/// The core links and unlinks raw keys, which are hashed here like every other key; listed
/// ids are already hashes (what the store holds), and [`UserIndex::revoke`] takes them as
/// listed. So a listing never shows a key that works as a cookie.
#[async_trait]
impl UserIndex for HashedKeys {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        let entry = UserSession {
            id: stored_key(&entry.id),
            ..entry.clone()
        };
        user_index(self.users.as_ref(), self.inner.engine())?
            .link(&entry)
            .await
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        user_index(self.users.as_ref(), self.inner.engine())?
            .unlink(user_id, &stored_key(id))
            .await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        user_index(self.users.as_ref(), self.inner.engine())?
            .sessions_of(user_id, now)
            .await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        user_index(self.users.as_ref(), self.inner.engine())?
            .revoke(user_id, id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_are_40_hex_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(
            stored_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a3"
        );
        let k = stored_key("abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(k.len(), STORED_KEY_LEN);
        assert!(crate::key::is_well_formed(&k));
    }
}
