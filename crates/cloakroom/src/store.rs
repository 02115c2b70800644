//! The store contract: what every engine must do, and nothing more.
//!
//! A store moves encoded session data and an expiry instant; the core owns keys, encoding,
//! expiry rules, change tracking and the cookie. That keeps every engine short, and lets one
//! conformance suite (`cloakroom::testing`, feature `testing`) pin each clause below.
//!
//! The contract, after Django's backends:
//! - `load` returns only live records: an expired or missing key is `None`, and loading creates
//!   nothing.
//! - `create` never overwrites: a key that is taken (even by an expired record that is still
//!   stored) answers [`Created::Taken`], and the core draws another key.
//! - `update` is a compare-and-swap on the stored data: it writes only when the record still
//!   holds `expected`. Otherwise it answers [`Updated::Conflict`] with the current record, so
//!   the core re-applies the request's changes to it, or [`Updated::Missing`] when the record is
//!   gone, which the core reports instead of bringing a deleted session back.
//! - `delete` of a missing key succeeds.

use std::borrow::Cow;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::StoreError;

/// What a store keeps for one session: the encoded data and the instant it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The session data as the codec encoded it (JSON, or Django's signed format).
    pub data: String,
    /// When the record stops being live.
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Session data can hold anything the app put there; keep it out of logs.
        f.debug_struct("Record")
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The answer to [`SessionStore::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The record was stored under the key.
    Stored,
    /// The key is already taken; nothing was written.
    Taken,
}

/// The answer to [`SessionStore::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    /// The record held the expected data and now holds the new data.
    Stored,
    /// The record holds other data (another request saved first); nothing was written.
    Conflict(Record),
    /// There is no live record under the key (deleted or expired); nothing was written.
    Missing,
}

/// A place where sessions live: a database table, a cache, a folder, or the cookie itself.
///
/// Implement this to add an engine; run `cloakroom::testing::conformance` against it to check
/// the contract in the module docs.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The engine's name for logs and errors (`"sqlite"`, `"redis"` …).
    fn engine(&self) -> &'static str;

    /// The live record under `key`, or `None` when there is none or it has expired.
    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError>;

    /// Stores a new record under `key`, never overwriting an existing one.
    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError>;

    /// Replaces the record under `key` if it still holds `expected`.
    async fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError>;

    /// Moves the expiry of the live record under `key` to `record.expires_at`, where
    /// `record.data` is the data the caller loaded (a TTL-only write where the engine has one:
    /// Redis `PEXPIREAT`, an `UPDATE` of the expiry column, a file's mtime).
    ///
    /// The default is an [`update`](Self::update) that writes the same data back, which is
    /// always correct; engines override it when they have something cheaper.
    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.update(key, &record.data, record, now).await
    }

    /// Deletes the record under `key`; a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Whether any record (live or expired) holds `key`.
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// The value the cookie carries for a record saved under `key`.
    ///
    /// Server-side stores send the key; a store that keeps the data in the cookie itself sends
    /// the data, and then reads it back in [`load`](Self::load) from the cookie value. `now` is
    /// the core's clock at the save (a signed cookie carries it as its timestamp).
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] when the value cannot fit in a cookie.
    fn cookie_value<'a>(
        &self,
        key: &'a str,
        _record: &Record,
        _now: OffsetDateTime,
    ) -> Result<Cow<'a, str>, StoreError> {
        Ok(Cow::Borrowed(key))
    }

    /// Whether the data lives in the cookie (and so the server can neither revoke a session nor
    /// merge two requests' changes). Such a store accepts any cookie value in `load`.
    fn keeps_data_in_cookie(&self) -> bool {
        false
    }
}

/// An optional ability: deleting expired records (`cloakroom clearsessions`).
///
/// Stores whose server expires entries by itself (Redis TTLs, the in-process cache) need not do
/// anything here but still answer, so the command works on every engine.
#[async_trait]
pub trait ClearExpired: Send + Sync {
    /// Deletes every record that expired before `now`, returning how many went.
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}
