//! The store itself: load, create, the compare-and-swap update, touch and delete, and the
//! TTL arithmetic they share. Every TTL is relative to the app's wall clock.

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::Pipeline;
use fred::interfaces::{ClientLike as _, KeysInterface as _};
use fred::types::{Expiration, Key, SetOptions, Value};
use time::OffsetDateTime;

use super::script::{self, error_code, sha1_hex, status, unexpected};
use super::value::{self, Stored};
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
    /// The record of the session `key`, from Redis (the load without the local cache).
    ///
    /// Our values carry their expiry in a header (`value.rs`): one `GET`. Django's layout,
    /// and our values written before the header, keep it only in the key's TTL: `PTTL` too.
    async fn fetch(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        if self.binary {
            return self.fetch_with_ttl(key, now).await;
        }
        let redis_key = self.redis_key(key);
        let reply: Result<Value, _> = self
            .client
            .with_options(&self.options)
            .get(redis_key.as_str())
            .await;
        let raw = match reply {
            Ok(Value::Null) => return Ok(None),
            Ok(value) => value,
            Err(e) if error_code(&e) == "WRONGTYPE" => return Ok(not_a_string()),
            Err(e) => return Err(self.error(e)),
        };
        let Some(raw) = value::bytes_of(raw) else {
            return Err(unexpected("GET", &[]));
        };
        match value::read(false, raw) {
            Some(Stored::Framed { data, expires_at }) => {
                Ok((expires_at > now).then_some(Record { data, expires_at }))
            }
            // Written before the header: its expiry is the key's TTL. The next save writes
            // the header.
            Some(Stored::Bare(data)) => {
                let pttl: i64 = self
                    .client
                    .with_options(&self.options)
                    .pttl(redis_key)
                    .await
                    .map_err(|e| self.error(e))?;
                if pttl == -2 {
                    // Deleted or expired between the two commands.
                    return Ok(None);
                }
                let expires_at = expiry_of(pttl, OffsetDateTime::now_utc());
                Ok((expires_at > now).then_some(Record { data, expires_at }))
            }
            None => Ok(not_session_data()),
        }
    }

    /// `GET` and `PTTL` of the session `key`: Django's layout, where the TTL is the expiry.
    async fn fetch_with_ttl(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
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
            Some(Err(e)) if error_code(&e) == "WRONGTYPE" => return Ok(not_a_string()),
            Some(Err(e)) => return Err(self.error(e)),
            None => return Err(unexpected("GET", &[])),
        };
        let pttl = match replies.next() {
            Some(Ok(pttl)) => pttl,
            Some(Err(e)) => return Err(self.error(e)),
            None => return Err(unexpected("PTTL", &[])),
        };
        let Some(pttl) = pttl.as_i64() else {
            return Err(unexpected("GET and PTTL", &[raw, pttl]));
        };
        let Some(raw) = value::bytes_of(raw) else {
            return Err(unexpected("GET", &[]));
        };
        if pttl == -2 {
            // Deleted or expired between the two commands.
            return Ok(None);
        }
        let Some(Stored::Bare(data)) = value::read(true, raw) else {
            return Ok(not_session_data());
        };
        let expires_at = expiry_of(pttl, wall);
        Ok((expires_at > now).then_some(Record { data, expires_at }))
    }

    /// The answer of the update or touch script (`script` names it in errors).
    fn updated(&self, reply: Vec<Value>, script: &str) -> Result<Updated, StoreError> {
        match status(&reply) {
            Some(0) => Ok(Updated::Missing),
            Some(1) => Ok(Updated::Stored),
            Some(2) => {
                let pttl = reply.get(2).and_then(Value::as_i64);
                let Some(raw) = reply.get(1).cloned().and_then(value::bytes_of) else {
                    return Err(unexpected(script, &reply));
                };
                let record = match (value::read(self.binary, raw), pttl) {
                    (Some(Stored::Framed { data, expires_at }), _) => Record { data, expires_at },
                    (Some(Stored::Bare(data)), Some(pttl)) => Record {
                        data,
                        expires_at: expiry_of(pttl, OffsetDateTime::now_utc()),
                    },
                    (Some(Stored::Bare(_)), None) => return Err(unexpected(script, &reply)),
                    (None, _) => {
                        tracing::warn!(
                            engine = ENGINE,
                            "a session key holds a value that is not session data; not updating it"
                        );
                        return Ok(Updated::Missing);
                    }
                };
                Ok(Updated::Conflict(record))
            }
            Some(3) => {
                tracing::warn!(
                    engine = ENGINE,
                    "a session key holds another Redis type, not a string; not updating it"
                );
                Ok(Updated::Missing)
            }
            _ => Err(unexpected(script, &reply)),
        }
    }
}

/// A session key holding a hash, a set …: no session (logged, as it is no key we wrote).
fn not_a_string() -> Option<Record> {
    tracing::warn!(
        engine = ENGINE,
        "a session key holds another Redis type, not a string; treating it as absent"
    );
    None
}

/// A value that no codec of this store wrote: no session.
fn not_session_data() -> Option<Record> {
    tracing::warn!(
        engine = ENGINE,
        "a session key holds a value that is not session data; treating it as absent"
    );
    None
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
        let stored = if self.binary || self.legacy {
            record.data.clone()
        } else {
            value::frame(&record.data, record.expires_at)
        };
        let reply: Result<Value, _> = self
            .client
            .with_options(&self.options)
            .set(
                self.redis_key(key),
                stored,
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
        // Redis 7.0 notifies a script's own writes even under `NOLOOP`: keeping the new record
        // would only be undone by that notice.
        self.forget(key);
        let reply = if self.binary {
            let args = || {
                [
                    Value::Bytes(Bytes::copy_from_slice(expected)),
                    Value::Bytes(record.data.clone()),
                    Value::Integer(ttl),
                    Value::Integer(ahead),
                ]
            };
            self.run(&script::UPDATE, &self.redis_key(key), args)
                .await?
        } else {
            // The digest of what was loaded stands for it: 8 bytes sent, not the whole value.
            let expected = Bytes::copy_from_slice(&value::digest(expected));
            let stored = if self.legacy {
                record.data.clone()
            } else {
                value::frame(&record.data, record.expires_at)
            };
            let args = || {
                [
                    Value::Bytes(expected.clone()),
                    Value::Bytes(stored.clone()),
                    Value::Integer(ttl),
                    Value::Integer(ahead),
                ]
            };
            self.run(&script::UPDATE_FRAMED, &self.redis_key(key), args)
                .await?
        };
        self.updated(reply, "the update script")
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (ttl, ahead) = ttl_and_lead(record.expires_at, now);
        self.forget(key);
        let reply = if self.binary {
            let digest = sha1_hex(&record.data);
            let args = || {
                [
                    Value::from(digest.as_str()),
                    Value::Integer(ttl),
                    Value::Integer(ahead),
                ]
            };
            self.run(&script::TOUCH, &self.redis_key(key), args).await?
        } else {
            let digest = value::digest(&record.data);
            let header = value::header(&digest, record.expires_at);
            let args = || {
                [
                    Value::Bytes(Bytes::copy_from_slice(&digest)),
                    Value::Integer(ttl),
                    Value::Integer(ahead),
                    Value::Bytes(Bytes::copy_from_slice(&header)),
                    Value::Integer(i64::from(self.legacy)),
                ]
            };
            self.run(&script::TOUCH_FRAMED, &self.redis_key(key), args)
                .await?
        };
        self.updated(reply, "the touch script")
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
