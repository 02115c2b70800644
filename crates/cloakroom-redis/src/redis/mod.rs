//! The `cache` engine on Redis or Valkey: one server, a Redis Cluster, or a primary and its
//! replicas watched by Redis Sentinel.
//!
//! - **URLs**: `redis://[user:password@]host:port[/db]` for one server,
//!   `redis-cluster://[user:password@]host:port,host:port,...` for a cluster (any reachable
//!   node will do; the client learns the rest of the topology, follows `MOVED`/`ASK` redirects
//!   and reconnects after a failover), and
//!   `redis-sentinel://[user:password@]sentinel:port,...[/db]?sentinelServiceName=<name>`
//!   for a primary found through its sentinels (port 26379 unless given; `sentinelUsername`
//!   and `sentinelPassword` are the sentinels' own credentials, the userinfo the data
//!   servers'). The client asks a sentinel for the primary and checks its `ROLE`; when the
//!   connection is lost (the primary died, or the sentinels demoted it, which closes its
//!   clients' connections) it asks again, with the backoff of any reconnection: a failover is
//!   followed without a restart. `valkey://`, `valkey-cluster://`
//!   and `valkey-sentinel://` are the same. `rediss…://` (TLS) needs the `redis-tls` feature.
//! - **Keys** are Django's (`docs/format.md` §5): `<prefix>:<version>:django.contrib.sessions.cache<key>`,
//!   with prefix `""` and version `1` unless set, so a Django app with the same cache settings
//!   sees the same keys.
//! - **Values** (`value.rs`): with Django's format (binary values) the data itself, a pickle,
//!   as Django's `RedisCache` reads and writes it. Otherwise a 15-byte header (`0xFF`, the
//!   expiry in ms, 8 bytes of the data's SHA-1) then the data, so that `load` is one `GET`;
//!   values written before the header are still read (their expiry with a `PTTL`) and get it at
//!   their next save or touch.
//! - **Expiry** is also the server's own TTL, set from the record's expiry on every write, so
//!   the server drops dead sessions by itself and [`ClearExpired`] has nothing to do.
//! - **Compare-and-swap**: `update` is one Lua script that compares and writes atomically, and
//!   `touch` one that compares and sets only the expiry; each touches one key, so it runs on
//!   whichever cluster node owns that key's slot. On our values they compare the header's
//!   digest with the digest of what the caller loaded (`GETRANGE` of 15 bytes); on Django's the
//!   whole value (`update`) or its SHA-1 (`touch`). Django's `load` is a plain `GET` and
//!   `PTTL`, pipelined in one round trip.
//! - **Lock across app servers** ([`Exclusive`](cloakroom_core::Exclusive), for the scheduled
//!   cleanup): `SET <prefix>:<version>:cloakroom.lock:<name> <token> NX PX 60000`, let go of
//!   by a script that deletes it only while it holds the holder's token (`lua/release.lua`).
//! - **Sessions of a user** ([`UserIndex`]): a sorted set per user,
//!   `<prefix>:<version>:cloakroom.users{u:<user id>}`, of the user's session keys scored by
//!   their expiry (ms), and beside it one hash per session (`…{u:<user id>}:<session key>`:
//!   login, last write, client) expiring with the session. Both carry the user's hash tag, so
//!   each index script touches one slot; the set's own expiry is its latest member's, and every
//!   write or listing drops members whose expiry passed, so nothing outlives its session. A
//!   listing also checks that each session key still exists (Django may have deleted it).
//! - **Client-side cache** (off by default; [`RedisOptions::with_client_cache`] then
//!   [`RedisStore::start_client_cache`], the `redis_client_cache_ms` setting): a returning visitor's load is answered from process
//!   memory, with no round trip, while Redis's client tracking (RESP3, `CLIENT TRACKING ON BCAST
//!   PREFIX <key prefix> NOLOOP`) says no other client has written the session. Writes still go
//!   to Redis through the same compare-and-swap, so a stale copy cannot lose an update; the
//!   worst it does is show a read-only request data one invalidation old. What keeps it
//!   correct: a load reserves its key before its `GET` goes out and keeps the answer only if no
//!   invalidation (or reconnection) removed the reservation meanwhile; a reconnection empties
//!   the cache and keeps it off until tracking is on again for the new connection; an entry is
//!   answered until the session's own expiry and for `redis_client_cache_ms` at most, the bound
//!   on what tracking cannot report (fred drops the notice of a `FLUSHDB`/`FLUSHALL`, a
//!   connection can die silently); at most `cache_capacity` sessions are kept. Several app
//!   servers stay coherent: each hears of the others' writes, Django's too. It pays on pages
//!   that read more than they write: Redis 7.0 notifies a client of its own scripts' writes
//!   even under `NOLOOP`, so a session this process saved is read from Redis again on its next
//!   request, and each save costs one more notice. One server (or the primary Sentinel names: a failover is a reconnection, which empties the
//!   cache), not a cluster.
//!
//! The store keeps **one multiplexed connection** per server (fred pipelines every request
//! over it) rather than a pool: Redis serves each connection from one thread, and one busy
//! connection costs it far less CPU in reads, writes and wake-ups than the same traffic spread
//! over many idle-then-busy sockets, while a single socket already carries tens of thousands
//! of requests a second. That connection's task (fred's, which writes the commands and reads
//! the replies) runs on a thread of the store's own (`io_thread.rs`), ended with the store's
//! last copy: among the app's tasks it ran right after each request that sent a command and
//! sent it alone, where on its own thread the commands of many requests go out in one write
//! (1.9× the read-only requests a second on the benchmark's server).
//!
//! # Where each part lives
//!
//! `url.rs` (`cache_url` to a configuration: topology, node lists, redaction), `connect.rs`
//! (constructors, options, the reconnection policy, errors), `io_thread.rs` (the connection's
//! thread), `store.rs` (load, create, the
//! compare-and-swap update, touch, delete), `value.rs` (what a value holds: Django's layout or
//! ours with its header), `scan.rs`, `users.rs` (the user index), `django.rs` (Django's key
//! layout), `lock.rs` (the lock across servers), `script.rs` with the scripts in `lua/`, and the
//! client-side cache in `client_cache.rs` (its memory) and `tracking.rs` (its start and task).

mod announce;
mod client_cache;
mod connect;
mod django;
mod io_thread;
mod lock;
mod scan;
mod script;
mod store;
mod tracking;
mod url;
mod users;
mod value;

use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike as _;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};

use self::client_cache::Local;
pub use self::connect::{ClientCache, RedisOptions};
pub use self::django::{CACHED_DB_SESSION_PREFIX, CACHE_SESSION_PREFIX};
pub use self::url::check_url;
use crate::error::StoreError;

const ENGINE: &str = "redis";

/// How long a command may take unless [`RedisStore::with_command_timeout`] says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// Sessions in Redis or Valkey (one server, a cluster, or a primary found through Sentinel),
/// expired by the server's TTL.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use cloakroom_redis::RedisStore;
/// let store = RedisStore::connect("redis://127.0.0.1:6379/0")
///     .await?
///     .with_key_prefix("myapp");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    target: String,
    key_prefix: String,
    version: i64,
    session_prefix: String,
    /// `<prefix>:<version>:<session prefix>`, what every key starts with.
    head: String,
    options: Options,
    /// Values may be any bytes (Django's pickled sessions), not only UTF-8 text.
    binary: bool,
    /// Own-format values are written without their header (`with_legacy_values`).
    legacy: bool,
    /// The client-side cache, when chosen ([`RedisOptions::with_client_cache`]).
    local: Option<Arc<Local>>,
    /// Set once the live listener warned that Redis does not publish expired keys (and may
    /// not be told to): one warning per store, not one per reconnection.
    expiry_warned: Arc<std::sync::atomic::AtomicBool>,
    /// The thread the connection task runs on (`io_thread.rs`), ended with the last copy.
    io: Arc<io_thread::IoThread>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("keys", &format_args!("{}<session key>", self.head))
            .field("timeout", &self.options.timeout)
            .field("fail_fast", &self.options.fail_fast)
            .field(
                "client_cache",
                &self.local.as_ref().map(|l| (l.ttl, l.capacity)),
            )
            .finish()
    }
}

impl RedisStore {
    /// How many sessions (and reservations of loads in flight) the client-side cache holds
    /// now: 0 without one. For tests and metrics.
    pub fn client_cache_len(&self) -> usize {
        self.local.as_ref().map_or(0, |l| l.state().entries.len())
    }

    /// Whether the client-side cache is on and answering loads (it is started and tracking is
    /// on for the current connection). Always `false` without one.
    pub fn client_cache_on(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.is_on())
    }

    /// Accepts values that are not UTF-8 text: for
    /// [`Codec::DjangoCache`](cloakroom_core::codec::Codec::DjangoCache), whose records are
    /// pickles, stored byte for byte, so Django's `RedisCache` finds its own format under its
    /// own keys. Without it a value that is not UTF-8 is not session data (a text codec never
    /// wrote it) and loads as absent.
    #[must_use]
    pub fn with_binary_values(mut self, binary: bool) -> Self {
        self.binary = binary;
        self
    }

    /// Writes our own format's values without their header (the `redis_legacy_values`
    /// setting), as releases before 0.2 wrote them, so that app servers still running one read
    /// them during a rolling deploy. Loads read both shapes either way; a save still compares
    /// digests (the update script takes either shape), and a touch leaves a value's shape as
    /// it found it. No effect with [`with_binary_values`](Self::with_binary_values).
    #[must_use]
    pub fn with_legacy_values(mut self, legacy: bool) -> Self {
        self.legacy = legacy;
        self
    }

    /// After a change of key layout: the new prefix, and the client-side cache moved to it
    /// (tracking follows the prefix). A copy of a store whose cache is shared with the
    /// original drops the cache instead: one cache tracks one prefix.
    fn relayout(&mut self) {
        self.head = self.head();
        if let Some(local) = self.local.take() {
            if Arc::strong_count(&local) == 1 {
                local.rehead(self.head.clone());
                self.local = Some(local);
            } else {
                tracing::warn!(
                    engine = ENGINE,
                    "a copy of a Redis store changed its key prefix; its client-side cache is off \
                     (set the key layout before copying the store)"
                );
            }
        }
    }

    fn head(&self) -> String {
        django::key_head(&self.key_prefix, self.version, &self.session_prefix)
    }

    /// Uses Django's cache `KEY_PREFIX` (default `""`).
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self.relayout();
        self
    }

    /// Uses Django's cache `VERSION` (default `1`).
    #[must_use]
    pub fn with_version(mut self, version: i64) -> Self {
        self.version = version;
        self.relayout();
        self
    }

    /// Uses another session engine's part of the key, such as [`CACHED_DB_SESSION_PREFIX`]
    /// when this store is the cache of a `cached_db` engine (default [`CACHE_SESSION_PREFIX`]).
    #[must_use]
    pub fn with_session_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.session_prefix = prefix.into();
        self.relayout();
        self
    }

    /// Bounds every command (default [`DEFAULT_COMMAND_TIMEOUT`]).
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Whether commands fail at once while the connection is down (`true`), or wait for the
    /// reconnection up to the command timeout (`false`, the default). A cache in front of a
    /// database wants `true`: the database answers sooner than a reconnection.
    #[must_use]
    pub fn with_fail_fast(mut self, fail_fast: bool) -> Self {
        self.options.fail_fast = fail_fast;
        self
    }

    /// The Redis key the session `session_key` is kept under.
    pub fn redis_key(&self, session_key: &str) -> String {
        let mut key = String::with_capacity(self.head.len() + session_key.len());
        key.push_str(&self.head);
        key.push_str(session_key);
        key
    }

    /// Runs one command of the application's own over the store's connection (on a cluster,
    /// on any node): `args` are the command's name and arguments, as `redis-cli` takes them.
    /// The reply comes back as text (an integer in decimal), `None` for nil. What the store
    /// does not do itself, such as `CLIENT ID` or `INFO`, without exposing the client library.
    ///
    /// # Errors
    /// [`StoreError::Backend`] for an error reply or a reply that is not one value (an array),
    /// [`StoreError::Timeout`] after the command timeout.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run(store: &cloakroom_redis::RedisStore) -> Result<(), cloakroom_core::StoreError> {
    /// let id = store.command(&["CLIENT", "ID"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn command(&self, args: &[&str]) -> Result<Option<String>, StoreError> {
        let Some((name, args)) = args.split_first() else {
            return Err(StoreError::backend(ENGINE, "an empty command"));
        };
        let command = CustomCommand::new(name.to_string(), ClusterHash::Random, false);
        let args: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
        let reply: Value = self
            .client
            .with_options(&self.options)
            .custom(command, args)
            .await
            .map_err(|e| self.error(e))?;
        match reply {
            Value::Null => Ok(None),
            Value::Array(_) | Value::Map(_) => Err(script::unexpected(name, &[reply])),
            other => Ok(other.as_string()),
        }
    }

    /// Closes the connection after the commands in flight (the store is unusable after).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the client was already closed.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.client.quit().await.map_err(|e| self.error(e))
    }

    /// Drops `key` from the client-side cache (a write is about to make it stale).
    fn forget(&self, key: &str) {
        if let Some(local) = &self.local {
            local.forget(key);
        }
    }
}
