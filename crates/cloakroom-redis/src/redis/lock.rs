//! The lock across app servers ([`Exclusive`]) on Redis: `SET <lock key> <token> NX PX <ttl>`,
//! let go of by a script that deletes the key only while it still holds the holder's token.
//! A holder that dies lets go when the TTL runs out.

use async_trait::async_trait;
use fred::interfaces::{ClientLike as _, KeysInterface as _};
use fred::types::{Expiration, SetOptions, Value};

use super::script::{self, status, unexpected};
use super::{RedisStore, ENGINE};
use crate::error::StoreError;
use crate::exclusive::{Exclusive, LockGuard, Release};

/// How long a lock outlives a holder that died without letting go. A cleanup run on Redis
/// clears nothing (the server expires sessions by itself), so it is over in one round trip.
pub const LOCK_TTL_MS: i64 = 60_000;

impl RedisStore {
    /// The key of lock `name`: `<prefix>:<version>:cloakroom.lock:<name>`, beside the
    /// sessions' keys and the user index's.
    pub fn lock_key(&self, name: &str) -> String {
        format!("{}:{}:cloakroom.lock:{name}", self.key_prefix, self.version)
    }
}

#[async_trait]
impl Exclusive for RedisStore {
    async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, StoreError> {
        let key = self.lock_key(name);
        let token = token()?;
        let reply: Value = self
            .client
            .with_options(&self.options)
            .set(
                key.as_str(),
                token.as_str(),
                Some(Expiration::PX(LOCK_TTL_MS)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| self.error(e))?;
        // `SET … NX` answers nil when the key exists: another holder has the lock.
        Ok((!reply.is_null()).then(|| {
            LockGuard::new(RedisLock {
                store: self.clone(),
                key,
                token,
            })
        }))
    }
}

/// 128 random bits in hex: what tells this holder's lock from a later holder's.
fn token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::backend(ENGINE, e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A held lock: its key and the token it holds.
struct RedisLock {
    store: RedisStore,
    key: String,
    token: String,
}

#[async_trait]
impl Release for RedisLock {
    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        let token = self.token.clone();
        let reply = self
            .store
            .run(&script::RELEASE, &self.key, || {
                [Value::from(token.as_str())]
            })
            .await?;
        match status(&reply) {
            Some(0 | 1) => Ok(()),
            _ => Err(unexpected("the lock release script", &reply)),
        }
    }
}
