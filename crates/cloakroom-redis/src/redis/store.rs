//! The store itself: load, create, the compare-and-swap update, touch and delete, and the
//! TTL arithmetic they share. Every TTL is relative to the app's wall clock.

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::Pipeline;
use fred::interfaces::{ClientLike as _, KeysInterface as _};
use fred::types::{Expiration, Key, SetOptions, Value};
use time::OffsetDateTime;

use super::django::decode_value;
use super::script::{self, error_code, sha1_hex, status, unexpected};
use super::{RedisStore, ENGINE};
use crate::error::StoreError;
use crate::store::{ClearExpired, Created, Record, SessionStore, Updated};

/// What a key without a TTL expires at: never, as far as a session can tell.
pub(super) const NO_EXPIRY: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);
/// The longest TTL sent: Redis refuses one that overflows its clock (a thousand years is far
/// past any `cookie_age` the settings accept).
const MAX_TTL_MS: i64 = 1_000 * 365 * 86_400 * 1_000;

/// The TTL in ms for a record expiring at `expires_at`, counted on the wall clock; `None` when
/// that instant has passed.
fn ttl_ms(expires_at: OffsetDateTime, wall: OffsetDateTime) -> Option<i64> {
    let ms = (expires_at - wall).whole_milliseconds();
    (ms > 0).then(|| i64::try_from(ms).unwrap_or(MAX_TTL_MS).min(MAX_TTL_MS))
}

/// What the update and touch scripts take: the TTL in ms for `expires_at` (0: already passed)
/// and how many ms the caller's `now` runs ahead of the wall clock.
fn ttl_and_lead(expires_at: OffsetDateTime, now: OffsetDateTime) -> (i64, i64) {
    let wall = OffsetDateTime::now_utc();
    let ttl = ttl_ms(expires_at, wall).unwrap_or(0);
    let ahead = i64::try_from((now - wall).whole_milliseconds()).unwrap_or(i64::MAX);
    (ttl, ahead)
}

/// The instant a key with `pttl` ms left (as `PTTL` answers; negative for no TTL) expires.
fn expiry_of(pttl: i64, wall: OffsetDateTime) -> OffsetDateTime {
    if pttl < 0 {
        return NO_EXPIRY;
    }
    wall.checked_add(time::Duration::milliseconds(pttl))
        .unwrap_or(NO_EXPIRY)
}

impl RedisStore {
    /// `GET` and `PTTL` of the session `key`, from Redis (the load without the local cache).
    async fn fetch(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let redis_key = Key::from(self.redis_key(key));
        // `GET` and `PTTL`, pipelined: one round trip and two of Redis's cheapest commands,
        // where a Lua script cost Redis about ten times as much. They are not atomic, and
        // need not be: a write between them is a newer save of this session, whose TTL is
        // then paired with the older data; the compare-and-swap of this request's save finds
        // the newer data and merges, and the expiry is at worst a save's worth later.
        let pipeline = Pipeline::from(self.client.with_options(&self.options));
        // Queued in memory, not sent: these answer at once.
        let _: () = pipeline
            .get(redis_key.clone())
            .await
            .map_err(|e| self.error(e))?;
        let _: () = pipeline.pttl(redis_key).await.map_err(|e| self.error(e))?;
        let mut replies = pipeline.try_all::<Value>().await.into_iter();
        let wall = OffsetDateTime::now_utc();
        let raw = match replies.next() {
            Some(Ok(Value::Null)) => return Ok(None),
            Some(Ok(value)) => value,
            Some(Err(e)) if error_code(&e) == "WRONGTYPE" => {
                tracing::warn!(
                    engine = ENGINE,
                    "a session key holds another Redis type, not a string; treating it as absent"
                );
                return Ok(None);
            }
            Some(Err(e)) => return Err(self.error(e)),
            None => return Err(unexpected("GET", &[])),
        };
        let pttl = match replies.next() {
            Some(Ok(pttl)) => pttl,
            Some(Err(e)) => return Err(self.error(e)),
            None => return Err(unexpected("PTTL", &[])),
        };
        let (Some(bytes), Some(pttl)) = (raw.as_bytes(), pttl.as_i64()) else {
            return Err(unexpected("GET and PTTL", &[raw, pttl]));
        };
        if pttl == -2 {
            // Deleted or expired between the two commands.
            return Ok(None);
        }
        let Some(data) = decode_value(self.binary, bytes) else {
            tracing::warn!(
                engine = ENGINE,
                "a session key holds a value that is not session data; treating it as absent"
            );
            return Ok(None);
        };
        let expires_at = expiry_of(pttl, wall);
        Ok((expires_at > now).then_some(Record { data, expires_at }))
    }

    /// The answer of the update or touch script (`script` names it in errors).
    fn updated(&self, reply: &[Value], script: &str) -> Result<Updated, StoreError> {
        match status(reply) {
            Some(0) => Ok(Updated::Missing),
            Some(1) => Ok(Updated::Stored),
            Some(2) => {
                let (Some(raw), Some(pttl)) = (
                    reply.get(1).and_then(Value::as_bytes),
                    reply.get(2).and_then(Value::as_i64),
                ) else {
                    return Err(unexpected(script, reply));
                };
                match decode_value(self.binary, raw) {
                    Some(data) => Ok(Updated::Conflict(Record {
                        data,
                        expires_at: expiry_of(pttl, OffsetDateTime::now_utc()),
                    })),
                    None => {
                        tracing::warn!(
                            engine = ENGINE,
                            "a session key holds a value that is not session data; not updating it"
                        );
                        Ok(Updated::Missing)
                    }
                }
            }
            Some(3) => {
                tracing::warn!(
                    engine = ENGINE,
                    "a session key holds another Redis type, not a string; not updating it"
                );
                Ok(Updated::Missing)
            }
            _ => Err(unexpected(script, reply)),
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        let Some(local) = &self.local else {
            return self.fetch(key, now).await;
        };
        if let Some(record) = local.get(key, now) {
            return Ok(Some(record));
        }
        let token = local.reserve(key);
        let found = self.fetch(key, now).await;
        local.fill(key, token, found.as_ref().ok().and_then(Option::as_ref));
        found
    }

    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        let Some(ttl) = ttl_ms(record.expires_at, OffsetDateTime::now_utc()) else {
            // Already expired: nothing to write (Django's cache backend writes nothing for a
            // timeout of 0 either), but a key in use is still taken.
            return Ok(if self.exists(key).await? {
                Created::Taken
            } else {
                Created::Stored
            });
        };
        // Not kept in the client-side cache: most new sessions are never read again (a bench's
        // new visitors filled it with hundreds of thousands of them), and a returning one is
        // kept at its first load. Whatever was kept under this key is stale now.
        self.forget(key);
        let reply: Result<Value, _> = self
            .client
            .with_options(&self.options)
            .set(
                self.redis_key(key),
                record.data.clone(),
                Some(Expiration::PX(ttl)),
                Some(SetOptions::NX),
                false,
            )
            .await;
        // `SET … NX` answers nil when the key exists.
        Ok(match reply.map_err(|e| self.error(e))? {
            reply if reply.is_null() => Created::Taken,
            _ => Created::Stored,
        })
    }

    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (ttl, ahead) = ttl_and_lead(record.expires_at, now);
        let args = || {
            [
                Value::Bytes(Bytes::copy_from_slice(expected)),
                Value::Bytes(record.data.clone()),
                Value::Integer(ttl),
                Value::Integer(ahead),
            ]
        };
        // Redis 7.0 notifies a script's own writes even under `NOLOOP`: keeping the new record
        // would only be undone by that notice.
        self.forget(key);
        let reply = self
            .run(&script::UPDATE, &self.redis_key(key), args)
            .await?;
        self.updated(&reply, "the update script")
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (ttl, ahead) = ttl_and_lead(record.expires_at, now);
        let digest = sha1_hex(&record.data.clone());
        let args = || {
            [
                Value::from(digest.as_str()),
                Value::Integer(ttl),
                Value::Integer(ahead),
            ]
        };
        self.forget(key);
        let reply = self.run(&script::TOUCH, &self.redis_key(key), args).await?;
        self.updated(&reply, "the touch script")
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.forget(key);
        let _: i64 = self
            .client
            .with_options(&self.options)
            .del(self.redis_key(key))
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// Nothing to do: every key carries its TTL and the server deletes it when that ends
/// (Django's cache backend has no `clear_expired` either). Answers 0 so that
/// `cloakroom clearsessions` works on every engine.
#[async_trait]
impl ClearExpired for RedisStore {
    async fn clear_expired(&self, _now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(0)
    }
}

impl RedisStore {
    /// Whether any record (live or expired) holds `key`: for tests and tools that look at
    /// the store itself (the core never asks).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .client
            .with_options(&self.options)
            .exists(self.redis_key(key))
            .await
            .map_err(|e| self.error(e))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::datetime;

    #[test]
    fn ttls_follow_the_wall_clock() {
        let wall = datetime!(2025-01-01 00:00:00 UTC);
        assert_eq!(ttl_ms(wall + Duration::from_millis(1500), wall), Some(1500));
        assert_eq!(ttl_ms(wall, wall), None);
        assert_eq!(ttl_ms(wall - Duration::from_secs(1), wall), None);
        assert_eq!(
            ttl_ms(NO_EXPIRY, OffsetDateTime::UNIX_EPOCH),
            Some(MAX_TTL_MS)
        );
        assert_eq!(expiry_of(1500, wall), wall + Duration::from_millis(1500));
        assert_eq!(expiry_of(-1, wall), NO_EXPIRY);
        assert_eq!(expiry_of(i64::MAX, wall), NO_EXPIRY);
    }
}
