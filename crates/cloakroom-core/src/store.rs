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
//! - `touch` (a rolling session's refresh) moves only the expiry, under the same guard as
//!   `update`: it writes nothing when the record no longer holds the data the caller loaded
//!   ([`Updated::Conflict`]) or is gone ([`Updated::Missing`], and it creates nothing).
//! - `delete` of a missing key succeeds.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::StoreError;

/// What a store keeps for one session: the encoded data and the instant it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The session data as the codec encoded it: JSON or Django's signed format (UTF-8 text,
    /// which SQL engines keep in a text column), or a Django cache pickle (bytes, which Redis
    /// keeps as they are).
    pub data: Bytes,
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

/// A place on the server where sessions live: a database table, a cache, a folder. (Signed
/// cookies keep nothing on the server and are no store: see [`crate::Backing`].)
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
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError>;

    /// Moves the expiry of the live record under `key` to `record.expires_at`, where
    /// `record.data` is the data the caller loaded; the data itself is neither written nor
    /// (where the store is across a network) sent. A TTL-only write where the engine has one:
    /// Redis `PEXPIRE`, an `UPDATE` of the expiry column, a file's mtime.
    ///
    /// It is guarded as [`update`](Self::update) is: when the record no longer holds
    /// `record.data`, nothing is written and the answer is [`Updated::Conflict`] with the
    /// current record. Another request saved meanwhile and set its own expiry, from data this
    /// caller never saw (a "remember me", a key rotation's short-lived pointer), which a touch
    /// computed from the stale data must not stretch or cut. Engines check the data without
    /// moving it: in place, by a digest the server computes, or (SQLite) in-process.
    /// A missing or expired record answers [`Updated::Missing`] and is not brought back.
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
}

/// An optional ability of a store that moves records in from another store as it reads them
/// (a live migration, see [`crate::engines::migrating`]).
///
/// The core links a moved session in the user index, as it does every session it writes: the
/// move was a write the core did not make, and the store cannot link it itself, for it sees
/// only encoded data and knows no user. A store without this ability moves nothing.
#[async_trait]
pub trait MovesOnLoad: Send + Sync {
    /// As [`SessionStore::load`], also saying whether this very call moved the record into
    /// this store from another one (`true`: a live migration's first use of an old session).
    async fn load_moved(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(Record, bool)>, StoreError>;
}

/// One session in a user's index: what a "your devices" page or support staff see.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSession {
    /// The session's name in the store: its key, or the key's hash under `hash_keys`. It is
    /// what [`UserIndex::revoke`] takes; without `hash_keys` it is the visitor's live ticket,
    /// so show only a prefix of it.
    pub id: String,
    /// The user the session belongs to (Django's `_auth_user_id`).
    pub user_id: String,
    /// When the session was linked to the user (its login).
    pub created_at: OffsetDateTime,
    /// When the session was last written (a save or a rolling refresh).
    pub last_seen: OffsetDateTime,
    /// When the session expires unless it is written again.
    pub expires_at: OffsetDateTime,
    /// The `User-Agent` the app recorded for the session, if any.
    pub user_agent: Option<String>,
    /// The client address the app recorded for the session, if any.
    pub ip: Option<String>,
}

impl std::fmt::Debug for UserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id may be a live session key: never print it whole.
        f.debug_struct("UserSession")
            .field("id", &format_args!("{}…", self.id.get(..6).unwrap_or("")))
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .field("expires_at", &self.expires_at)
            .field("user_agent", &self.user_agent)
            .field("ip", &self.ip)
            .finish()
    }
}

/// An optional ability of server-side stores: an index of sessions by user, so an app can list
/// a user's live sessions and revoke one or all ("log out everywhere").
///
/// The contract: an entry never outlives its session (an expired or deleted session is not
/// listed, and its entry is removed by the store or by `clearsessions`); revoking deletes the
/// session itself, so it ends on that session's next request, on every app server.
///
/// An engine does not implement this trait itself: it implements the small primitive
/// [`IndexEntries`](crate::users::IndexEntries) on its storage, and gets this trait from the
/// core, which holds the rules (which entries a listing forgets, its order, what revoking may
/// delete) once for every engine. Stores that forward to another store's index
/// (`cached_db`, `migrating`, decorators) implement it directly.
#[async_trait]
pub trait UserIndex: Send + Sync {
    /// Records (or refreshes: `last_seen`, `expires_at`, client) that session `entry.id`
    /// belongs to `entry.user_id`. Keeps the first `created_at` of an entry that exists.
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError>;

    /// Forgets session `id` from `user_id`'s index (logout, another user, a rotated key).
    /// A missing entry is not an error.
    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError>;

    /// `user_id`'s live sessions at `now`, newest `created_at` first.
    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError>;

    /// Deletes session `id` (as [`UserSession::id`] names it) and its entry in `user_id`'s
    /// index, but only if the index holds it for `user_id`: an id of another user's session
    /// is left alone, so a user can never end someone else's session by naming it. Revoking a
    /// session that is already gone is not an error.
    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError>;
}

/// The index `users`, or [`StoreError::NoUserIndex`] naming `engine` when there is none: what
/// a wrapper store calls to forward [`UserIndex`] to the index of the store it wraps.
///
/// # Errors
/// [`StoreError::NoUserIndex`] when the engine keeps no index.
pub fn user_index<'a>(
    users: Option<&'a Arc<dyn UserIndex>>,
    engine: &'static str,
) -> Result<&'a dyn UserIndex, StoreError> {
    users
        .map(|users| &**users)
        .ok_or(StoreError::NoUserIndex { engine })
}

/// One session a sweep of expired records deleted ([`ClearExpired::clear_expired_named`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ClearedSession {
    /// Its name in the store: the index id ([`UserSession::id`]: the key, or its hash under
    /// `hash_keys`). Events carry its digest ([`crate::live::wire_id`]), never this.
    pub id: String,
    /// The user the store's index linked it to, where the engine can tell in the same
    /// statement (the SQL engines); `None` otherwise.
    pub user_id: Option<String>,
}

impl std::fmt::Debug for ClearedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Without `hash_keys` the id is a session key (expired, but keep it out of logs).
        f.debug_struct("ClearedSession")
            .field("id", &format_args!("{}…", self.id.get(..6).unwrap_or("")))
            .field("user_id", &self.user_id)
            .finish()
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

    /// Deletes one batch of records that expired before `now` (a few thousand at most, one
    /// short statement where the engine has them), returning how many went; 0 means none are
    /// left. Lets a command show progress on a large store. The default clears them all at once.
    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.clear_expired(now).await
    }

    /// As [`clear_expired_batch`](Self::clear_expired_batch), naming the sessions that went,
    /// so the scheduled cleanup can send an [`Expired`](crate::EventKind::Expired) event for
    /// each (`DELETE … RETURNING` where the database has it). An empty list means none are
    /// left. `None` (the default) when the engine cannot name them: the caller then counts
    /// with `clear_expired_batch`. The core calls it only while somebody subscribes to
    /// events or waits on a session, so the counting path (`clearsessions`) stays as cheap as
    /// it is.
    async fn clear_expired_named(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<ClearedSession>>, StoreError> {
        let _ = now;
        Ok(None)
    }
}

/// One batch of sessions from [`Scan::scan`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Live sessions: their keys and records.
    pub sessions: Vec<(String, Record)>,
    /// The cursor of the next batch; `None` when this was the last one.
    pub next: Option<String>,
}

/// How many records a store holds, from [`Scan::count`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records still live.
    pub live: u64,
    /// Records expired but still stored (0 where the server drops them by itself).
    pub expired: u64,
}

/// An optional ability: walking every live session in batches (`cloakroom copy`, `stats`,
/// admin listings).
///
/// A scan is not a snapshot: sessions created or deleted while it runs may or may not show up,
/// but every session live from the first batch to the last shows up once at least.
#[async_trait]
pub trait Scan: Send + Sync {
    /// Up to about `limit` live sessions after `cursor` (`None`: from the start), with the
    /// cursor of the next batch. A batch may be shorter than `limit`, even empty, before the
    /// end: only `next == None` ends the walk.
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError>;

    /// How many records are live and how many expired at `now`.
    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError>;
}
