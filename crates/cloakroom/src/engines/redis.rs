//! The `cache` engine on Redis or Valkey: one server, or a Redis Cluster.
//!
//! - **URLs**: `redis://[user:password@]host:port[/db]` for one server, and
//!   `redis-cluster://[user:password@]host:port,host:port,...` for a cluster (any reachable
//!   node will do; the client learns the rest of the topology, follows `MOVED`/`ASK` redirects
//!   and reconnects after a failover). `valkey://` and `valkey-cluster://` are the same.
//!   `rediss://` (TLS) needs the `redis-tls` feature.
//! - **Keys** are Django's (`FORMAT.md` §5): `<prefix>:<version>:django.contrib.sessions.cache<key>`,
//!   with prefix `""` and version `1` unless set, so a Django app with the same cache settings
//!   sees the same keys.
//! - **Expiry** is the server's own TTL, set from the record's expiry on every write, so the
//!   server drops dead sessions by itself and [`ClearExpired`] has nothing to do.
//! - **Compare-and-swap**: `update` is one Lua script that compares and writes atomically, and
//!   `touch` one that compares the value's SHA-1 and sets only the TTL; each touches one key, so
//!   it runs on whichever cluster node owns that key's slot. `load` is a plain `GET` and `PTTL`,
//!   pipelined in one round trip.
//! - **Sessions of a user** ([`UserIndex`]): a sorted set per user,
//!   `<prefix>:<version>:cloakroom.users{u:<user id>}`, of the user's session keys scored by
//!   their expiry (ms), and beside it one hash per session (`…{u:<user id>}:<session key>`:
//!   login, last write, client) expiring with the session. Both carry the user's hash tag, so
//!   each index script touches one slot; the set's own expiry is its latest member's, and every
//!   write or listing drops members whose expiry passed, so nothing outlives its session. A
//!   listing also checks that each session key still exists (Django may have deleted it).
//!
//! - **Client-side cache** (off by default; [`RedisStore::connect_with_client_cache`], the
//!   `redis_client_cache_ms` setting): a returning visitor's load is answered from process
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
//!   request, and each save costs one more notice. One server only, not a cluster.
//!
//! The store keeps **one multiplexed connection** per server (fred pipelines every request
//! over it) rather than a pool: Redis serves each connection from one thread, and one busy
//! connection costs it far less CPU in reads, writes and wake-ups than the same traffic spread
//! over many idle-then-busy sockets, while a single socket already carries tens of thousands
//! of requests a second.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use fred::clients::{Client, Pipeline};
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::config::{Config, Options, ReconnectPolicy};
use fred::types::{Builder, ClusterHash, CustomCommand, Expiration, Key, SetOptions, Value};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;

use crate::error::{ConfigError, OpenError, StoreError};
use crate::store::{
    Batch, ClearExpired, Counts, Created, Record, Scan, SessionStore, Updated, UserIndex,
    UserSession,
};

const ENGINE: &str = "redis";

/// The part of the key Django's `cache` session engine puts before the session key.
pub const CACHE_SESSION_PREFIX: &str = "django.contrib.sessions.cache";
/// The part of the key Django's `cached_db` session engine puts before the session key.
pub const CACHED_DB_SESSION_PREFIX: &str = "django.contrib.sessions.cached_db";

/// How long a command may take unless [`RedisStore::with_command_timeout`] says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening a connection (and the cluster handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a key without a TTL expires at: never, as far as a session can tell.
const NO_EXPIRY: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);
/// The longest TTL sent: Redis refuses one that overflows its clock (a thousand years is far
/// past any `cookie_age` the settings accept).
const MAX_TTL_MS: i64 = 1_000 * 365 * 86_400 * 1_000;

/// The compare-and-swap: writes ARGV[2] with a TTL of ARGV[3] ms (deletes when that is 0) only
/// if the key still holds ARGV[1].
///
/// ARGV[4] is how many ms the caller's clock runs ahead of the wall clock, so a key whose TTL
/// ends before the caller's "now" counts as gone, as it does in `load` (tests move the clock).
/// Replies `{0}` missing, `{1}` stored, `{2, current, pttl}` conflict, `{3}` not a string.
///
/// The common path is two calls (`GET`, `SET`): a `WRONGTYPE` error from `GET` stands in for a
/// `TYPE` check, and the TTL is read only when it is needed (a clock ahead, or a conflict).
/// Every call inside a script costs Redis a command dispatch; this script used to make four.
const UPDATE_LUA: &str = r"
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' then return {3} end
if not current then return {0} end
local ahead = tonumber(ARGV[4])
local ttl = nil
if ahead > 0 then
  ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 and ttl <= ahead then return {0} end
end
if current ~= ARGV[1] then
  return {2, current, ttl or redis.call('PTTL', KEYS[1])}
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return {1}
";

/// The TTL-only refresh: sets a TTL of ARGV[2] ms (deletes when that is 0) only if the key's
/// value still has the SHA-1 ARGV[1] (the caller sends 40 hex digits, never the session).
///
/// `PEXPIRE` with a TTL counted on the app's wall clock, not `PEXPIREAT`: every TTL this engine
/// sets and reads is relative to the app's clock (`SET … PX` on writes, `PTTL` on loads), so a
/// skew between the app's and the server's clocks never moves an expiry; an absolute instant
/// would bring the server's clock in. ARGV[3] is the caller's clock lead, as in the update.
/// Replies as the update script does.
const TOUCH_LUA: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return {0} end
if kind ~= 'string' then return {3} end
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl <= tonumber(ARGV[3]) then return {0} end
local current = redis.call('GET', KEYS[1])
if redis.sha1hex(current) ~= ARGV[1] then return {2, current, ttl} end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return {1}
";

/// Drops a user's index members whose expiry (the score, ms) is at or before ARGV[1], with
/// their entries, and moves the set's own expiry to its latest member's. Shared by the index
/// scripts below (KEYS[1] is the user's set; an entry is the set's key, `:`, the session key,
/// so it shares the set's hash tag and slot).
const PRUNE_LUA: &str = r"
local function prune(set, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now)) do
    redis.call('DEL', set .. ':' .. id)
  end
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', set, last[2]) end
end
";

/// Links session ARGV[1] (expiring at ARGV[2] ms) to the user whose set is KEYS[1]: its entry
/// keeps the first `created` (ARGV[3]) and takes `last_seen` ARGV[4], user agent ARGV[5] and
/// address ARGV[6] (empty: none); then prunes with the wall clock ARGV[7].
const LINK_LUA: &str = r"
local entry = KEYS[1] .. ':' .. ARGV[1]
local created = redis.call('HGET', entry, 'created') or ARGV[3]
redis.call('HSET', entry, 'created', created, 'last_seen', ARGV[4], 'ua', ARGV[5], 'ip', ARGV[6])
redis.call('PEXPIREAT', entry, ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
prune(KEYS[1], ARGV[7])
return 1
";

/// Forgets session ARGV[1] from the set KEYS[1], and its entry.
const UNLINK_LUA: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[1] .. ':' .. ARGV[1])
return 1
";

/// Prunes the set KEYS[1] at ARGV[1] ms, then answers `{id, expires, created, last_seen, ua,
/// ip}` per member left (times in ms; a member whose entry is gone answers only its id).
const LIST_LUA: &str = r"
prune(KEYS[1], ARGV[1])
local out = {}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local f = redis.call('HMGET', KEYS[1] .. ':' .. members[i], 'created', 'last_seen', 'ua', 'ip')
  if f[1] and f[2] then
    table.insert(out, {members[i], tonumber(members[i + 1]), tonumber(f[1]), tonumber(f[2]), f[3] or '', f[4] or ''})
  else
    table.insert(out, {members[i]})
  end
end
return out
";

/// Whether session ARGV[1] is in the set KEYS[1] (1) or not (0).
const OWNS_LUA: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
return 0
";

/// A Lua script and its SHA-1, the name `EVALSHA` knows it by.
struct Script {
    /// The source, sent once per server (`EVAL`) when it does not know the script yet.
    lua: Value,
    /// Shared bytes, so that sending it is a refcount and not a copy.
    sha1: Bytes,
}

impl Script {
    fn new(lua: &'static str) -> Self {
        Self::of(Value::from_static_str(lua), lua)
    }

    /// A script that calls `prune` (see [`PRUNE_LUA`]).
    fn with_prune(lua: &'static str) -> Self {
        let source = format!("{PRUNE_LUA}{lua}");
        let sha1 = sha1_hex(source.as_bytes());
        Self {
            lua: Value::from(source),
            sha1: Bytes::from(sha1),
        }
    }

    fn of(lua: Value, source: &str) -> Self {
        Self {
            lua,
            sha1: Bytes::from(sha1_hex(source.as_bytes())),
        }
    }
}

/// SHA-1 in lower-case hex, as Redis names scripts and as its Lua `redis.sha1hex` answers.
fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

static UPDATE: LazyLock<Script> = LazyLock::new(|| Script::new(UPDATE_LUA));
static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(TOUCH_LUA));
static LINK: LazyLock<Script> = LazyLock::new(|| Script::with_prune(LINK_LUA));
static UNLINK: LazyLock<Script> = LazyLock::new(|| Script::new(UNLINK_LUA));
static LIST: LazyLock<Script> = LazyLock::new(|| Script::with_prune(LIST_LUA));
static OWNS: LazyLock<Script> = LazyLock::new(|| Script::new(OWNS_LUA));

/// How session data is kept in a Redis value.
///
/// The one place that knows the value encoding. By default the record's text is the value, as
/// is. With [`RedisStore::with_binary_values`] the record's text is the standard base64 of
/// the value's bytes (what [`Codec::DjangoCache`](crate::codec::Codec::DjangoCache) writes: a
/// pickle), so Redis holds exactly the bytes Django's `RedisCache` reads and writes. The
/// compare-and-swap compares encoded values, which are then the bytes as stored.
fn encode_value(binary: bool, data: &str) -> Bytes {
    if binary {
        // Text that is not base64 cannot come from the binary codec; storing it as is keeps it
        // visible to a reader instead of losing the write.
        if let Ok(bytes) = STANDARD.decode(data) {
            return Bytes::from(bytes);
        }
    }
    Bytes::copy_from_slice(data.as_bytes())
}

/// The record text of a Redis value, or `None` when the value is not one we could have written.
fn decode_value(binary: bool, raw: &[u8]) -> Option<String> {
    if binary {
        return Some(STANDARD.encode(raw));
    }
    std::str::from_utf8(raw).ok().map(str::to_owned)
}

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

/// The Redis error code: the first word of an error reply (`NOSCRIPT`, `WRONGTYPE` …).
fn error_code(e: &FredError) -> &str {
    e.details().split_whitespace().next().unwrap_or_default()
}

/// A URL with its credentials replaced, for logs and error messages (one rule for every URL:
/// [`crate::config::redact_url`]).
fn redact(url: &str) -> String {
    crate::config::redact_url(url).into_owned()
}

fn bad_url(reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: "cache_url",
        reason: reason.into(),
    }
}

/// Rewrites `redis-cluster://[auth@]h1:p1,h2:p2,...` into fred's `...://[auth@]h1:p1?node=h2:p2&...`.
fn cluster_url(scheme: &str, rest: &str) -> Result<String, ConfigError> {
    let (before_query, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((authority, path)) => (authority, path),
        None => (before_query, ""),
    };
    if !path.is_empty() && path != "0" {
        return Err(bad_url(
            "a Redis Cluster has only database 0; remove the `/db` from the URL",
        ));
    }
    let (auth, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut hosts = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
    let first = hosts
        .next()
        .ok_or_else(|| bad_url("a cluster URL needs at least one `host:port`"))?;
    let mut url = format!("{scheme}://{auth}{first}");
    let mut params: Vec<String> = hosts.map(|h| format!("node={h}")).collect();
    params.extend(query.map(str::to_owned));
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    Ok(url)
}

/// Turns a `cache_url` into a client configuration.
fn config_of(url: &str) -> Result<Config, ConfigError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        bad_url("expected `redis://host:port` or `redis-cluster://host:port,...`")
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let tls = matches!(
        scheme.as_str(),
        "rediss" | "valkeys" | "rediss-cluster" | "valkeys-cluster"
    );
    if tls && !cfg!(feature = "redis-tls") {
        return Err(bad_url(format!(
            "`{scheme}://` is Redis over TLS, which needs cloakroom built with the `redis-tls` feature"
        )));
    }
    let fred_url = match scheme.as_str() {
        "redis" | "valkey" | "rediss" | "valkeys" => url.to_owned(),
        "redis-cluster" | "valkey-cluster" | "rediss-cluster" | "valkeys-cluster" => {
            cluster_url(&scheme, rest)?
        }
        other => {
            return Err(bad_url(format!(
                "`{other}://` is not a Redis URL; use redis://, rediss://, redis-cluster:// or valkey://"
            )))
        }
    };
    Config::from_url(&fred_url).map_err(|e| bad_url(format!("{}: {}", redact(url), e.details())))
}

/// Checks that `url` is a Redis URL this build can use, without connecting.
pub(crate) fn check_url(url: &str) -> Result<(), ConfigError> {
    config_of(url).map(drop)
}

/// Sessions in Redis or Valkey (one server or a cluster), expired by the server's TTL.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), cloakroom::OpenError> {
/// use cloakroom::engines::redis::RedisStore;
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
    /// Values are bytes carried as base64 in the record (Django's pickled sessions).
    binary: bool,
    /// The client-side cache, when on ([`RedisStore::connect_with_client_cache`]).
    local: Option<std::sync::Arc<Local>>,
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

/// The first connection could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {target}")]
struct Unreachable {
    target: String,
    #[source]
    source: FredError,
}

impl RedisStore {
    /// Connects and waits until the server answers; an unreachable one is named in the error.
    async fn init(&self) -> Result<(), StoreError> {
        self.client.init().await.map_err(|source| {
            StoreError::backend(
                ENGINE,
                Unreachable {
                    target: self.target.clone(),
                    source,
                },
            )
        })?;
        Ok(())
    }

    /// Connects to the server or cluster at `url` and waits until it answers, so a wrong URL
    /// or a stopped server shows at startup. Later disconnections are retried in the background.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `cache_url` when the URL is not a Redis URL,
    /// [`OpenError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let store = Self::build(url, true)?;
        store.init().await?;
        Ok(store)
    }

    /// Connects to `url` in the background, without waiting: the store is usable at once, and
    /// commands fail (or wait, see [`with_fail_fast`](Self::with_fail_fast)) until the server
    /// answers. For a cache in front of a database, so the app starts while the cache is down.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `cache_url` when the URL is not a Redis URL.
    pub async fn connect_lazy(url: &str) -> Result<Self, OpenError> {
        let store = Self::build(url, false)?;
        // The task retries with the reconnect policy until the server answers; dropping its
        // handle only detaches it.
        drop(store.client.connect());
        Ok(store)
    }

    /// Waits up to `limit` for the connection [`connect_lazy`](Self::connect_lazy) started;
    /// whether it is up. A process should not take requests on a connection still opening:
    /// its first commands fail as if the server were down.
    pub async fn wait_connected(&self, limit: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.client.wait_for_connect()).await,
            Ok(Ok(()))
        )
    }

    fn build(url: &str, fail_at_first_connection: bool) -> Result<Self, OpenError> {
        let config = config_of(url)?;
        Self::build_from(config, url, fail_at_first_connection)
    }

    fn build_from(
        mut config: Config,
        url: &str,
        fail_at_first_connection: bool,
    ) -> Result<Self, OpenError> {
        config.fail_fast = fail_at_first_connection;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
            })
            // Unlimited attempts, 100 ms doubling to 1 s: a restarted server or a promoted
            // replica is picked up without restarting the app, within about a second of
            // answering (the breaker's default cooldown). With a 5 s ceiling the demo answered
            // 503 for 1-3 s after a restarted Redis was back; one connection attempt a second
            // costs a down server nothing.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            // Room for bursts of invalidation notices; a lagging reader empties the cache.
            .with_performance_config(|p| p.broadcast_channel_capacity = 4_096);
        let client = builder.build().map_err(|e| ConfigError::Rejected {
            setting: "cache_url",
            source: e.into(),
        })?;
        let mut store = Self {
            client,
            target: redact(url),
            key_prefix: String::new(),
            version: 1,
            session_prefix: CACHE_SESSION_PREFIX.to_owned(),
            head: String::new(),
            options: Options {
                timeout: Some(DEFAULT_COMMAND_TIMEOUT),
                ..Options::default()
            },
            binary: false,
            local: None,
        };
        store.head = store.head();
        Ok(store)
    }

    /// As [`connect`](Self::connect), with a client-side cache: a load is answered from
    /// process memory when the same session was read less than `ttl` ago and no other client
    /// has written it since, as Redis's client tracking reports (RESP3, `CLIENT TRACKING ON
    /// BCAST` on the key prefix). At most `capacity` sessions are kept. Writes always go to
    /// Redis, with the same compare-and-swap, so a stale copy can never cause a lost update;
    /// it can only show a read-only request data up to one invalidation (or at worst `ttl`)
    /// old. A reconnection empties the cache. See the module docs.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); and [`OpenError::Config`] naming
    /// `redis_client_cache_ms` for a cluster URL (the cache needs one server).
    pub async fn connect_with_client_cache(
        url: &str,
        ttl: Duration,
        capacity: usize,
    ) -> Result<Self, OpenError> {
        let mut config = config_of(url)?;
        if config.server.is_clustered() {
            return Err(ConfigError::Invalid {
                setting: "redis_client_cache_ms",
                reason:
                    "the client-side cache works with one Redis server, not a cluster; set it to 0"
                        .to_owned(),
            }
            .into());
        }
        // Invalidation notices arrive on the command connection itself (RESP3 push frames).
        config.version = fred::types::RespVersion::RESP3;
        let mut store = Self::build_from(config, url, true)?;
        let (stop_tx, stop) = tokio::sync::oneshot::channel();
        let retrack = std::sync::Arc::new(tokio::sync::Notify::new());
        let local = std::sync::Arc::new(Local {
            ttl,
            capacity: capacity.max(1),
            state: std::sync::Mutex::new(LocalState {
                head: store.head.clone(),
                ..LocalState::default()
            }),
            retrack: retrack.clone(),
            _stop: stop_tx,
        });
        let watcher = Watch {
            client: store.client.clone(),
            local: std::sync::Arc::downgrade(&local),
            retrack,
            stop,
            invalidations: fred::interfaces::TrackingInterface::invalidation_rx(&store.client),
            reconnections: fred::interfaces::EventInterface::reconnect_rx(&store.client),
        };
        store.local = Some(local);
        tokio::spawn(watch(watcher));
        store.init().await?;
        // Tracking is turned on by the watcher as the connection's notice arrives; wait for
        // it, so the cache works from the first request and a refusal shows at startup.
        let started = std::time::Instant::now();
        while !store.local.as_ref().is_some_and(|l| l.state().on) {
            if started.elapsed() > CONNECT_TIMEOUT {
                return Err(StoreError::backend(
                    ENGINE,
                    format!(
                        "{} did not turn on client tracking (Redis 6 or later is needed for \
                         redis_client_cache_ms; set it to 0 on older servers)",
                        store.target
                    ),
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(store)
    }

    /// How many sessions (and reservations of loads in flight) the client-side cache holds
    /// now: 0 without one. For tests and metrics.
    pub fn client_cache_len(&self) -> usize {
        self.local.as_ref().map_or(0, |l| l.state().entries.len())
    }

    /// Whether the client-side cache is on and answering loads (tracking is on for the
    /// current connection). Always `false` without one.
    pub fn client_cache_on(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.state().on)
    }

    /// Stores the bytes a record's text carries as base64, instead of the text: for
    /// [`Codec::DjangoCache`](crate::codec::Codec::DjangoCache), whose records are base64
    /// pickles, so Django's `RedisCache` finds its own pickle format under its own keys.
    #[must_use]
    pub fn with_binary_values(mut self, binary: bool) -> Self {
        self.binary = binary;
        self
    }

    /// After a change of key layout: the new prefix, and the client-side cache moved to it
    /// (tracking follows the prefix). A copy of a store whose cache is shared with the
    /// original drops the cache instead: one cache tracks one prefix.
    fn relayout(&mut self) {
        self.head = self.head();
        if let Some(local) = self.local.take() {
            if std::sync::Arc::strong_count(&local) == 1 {
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
        format!(
            "{}:{}:{}",
            self.key_prefix, self.version, self.session_prefix
        )
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

    /// The sorted set of `user_id`'s sessions in the user index (see the module docs).
    pub fn user_set_key(&self, user_id: &str) -> String {
        // `u:` keeps the hash tag non-empty for an empty id (an empty tag would not count).
        format!(
            "{}:{}:cloakroom.users{{u:{user_id}}}",
            self.key_prefix, self.version
        )
    }

    /// The hash holding session `id`'s entry in `user_id`'s index.
    pub fn user_entry_key(&self, user_id: &str, id: &str) -> String {
        format!("{}:{id}", self.user_set_key(user_id))
    }

    /// The client, for the application's own commands over the same connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Closes the connection after the commands in flight (the store is unusable after).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the client was already closed.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.client.quit().await.map_err(|e| self.error(e))
    }

    fn error(&self, e: FredError) -> StoreError {
        match (e.kind(), self.options.timeout) {
            (ErrorKind::Timeout, Some(after)) => StoreError::Timeout {
                engine: ENGINE,
                after,
            },
            _ => StoreError::backend(ENGINE, e),
        }
    }

    /// Runs a script by its SHA-1, sending the source only when the server does not have it
    /// yet (after a restart, or on a node that never ran it); `EVAL` then caches it there.
    ///
    /// Sent as custom commands routed by the key's slot: fred 10.1's own `evalsha`/`eval`
    /// ignore the command timeout and fail-fast while the connection is down, and would hang.
    async fn run<const N: usize>(
        &self,
        script: &Script,
        redis_key: &str,
        args: impl Fn() -> [Value; N],
    ) -> Result<Vec<Value>, StoreError> {
        let client = self.client.with_options(&self.options);
        // Route by the key (the third argument), so a cluster sends it to its slot's node.
        // The arguments are built for each try rather than cloned for a retry that almost
        // never comes.
        let send = |name, script: Value| {
            let mut values = Vec::with_capacity(3 + N);
            values.extend([script, Value::Integer(1), Value::from(redis_key)]);
            values.extend(args());
            let command = CustomCommand::new_static(name, ClusterHash::Offset(2), false);
            client.custom::<Value, Value>(command, values)
        };
        let reply = match send("EVALSHA", Value::Bytes(script.sha1.clone())).await {
            Err(e) if error_code(&e) == "NOSCRIPT" => send("EVAL", script.lua.clone()).await,
            other => other,
        };
        Ok(reply.map_err(|e| self.error(e))?.into_array())
    }
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

fn unexpected(what: &str, reply: &[Value]) -> StoreError {
    StoreError::backend(ENGINE, format!("unexpected reply to {what}: {reply:?}"))
}

fn status(reply: &[Value]) -> Option<i64> {
    reply.first().and_then(Value::as_i64)
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
                encode_value(self.binary, &record.data),
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
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (ttl, ahead) = ttl_and_lead(record.expires_at, now);
        let args = || {
            [
                Value::Bytes(encode_value(self.binary, expected)),
                Value::Bytes(encode_value(self.binary, &record.data)),
                Value::Integer(ttl),
                Value::Integer(ahead),
            ]
        };
        // Redis 7.0 notifies a script's own writes even under `NOLOOP`: keeping the new record
        // would only be undone by that notice.
        self.forget(key);
        let reply = self.run(&UPDATE, &self.redis_key(key), args).await?;
        self.updated(&reply, "the update script")
    }

    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let (ttl, ahead) = ttl_and_lead(record.expires_at, now);
        let digest = sha1_hex(&encode_value(self.binary, &record.data));
        let args = || {
            [
                Value::from(digest.as_str()),
                Value::Integer(ttl),
                Value::Integer(ahead),
            ]
        };
        self.forget(key);
        let reply = self.run(&TOUCH, &self.redis_key(key), args).await?;
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

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .client
            .with_options(&self.options)
            .exists(self.redis_key(key))
            .await
            .map_err(|e| self.error(e))?;
        Ok(n > 0)
    }

    fn users(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }
}

/// Milliseconds since the Unix epoch, as the index scores and stamps instants.
fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(NO_EXPIRY)
}

/// One member of a [`LIST_LUA`] reply, or `None` when its entry is gone.
fn listed_entry(user_id: &str, member: &Value) -> Option<UserSession> {
    let Value::Array(fields) = member else {
        return None;
    };
    let text = |i: usize| {
        fields
            .get(i)
            .and_then(Value::as_string)
            .filter(|s| !s.is_empty())
    };
    let at = |i: usize| fields.get(i).and_then(Value::as_i64).map(from_unix_ms);
    Some(UserSession {
        id: text(0)?,
        user_id: user_id.to_owned(),
        expires_at: at(1)?,
        created_at: at(2)?,
        last_seen: at(3)?,
        user_agent: text(4),
        ip: text(5),
    })
}

#[async_trait]
impl UserIndex for RedisStore {
    async fn link(&self, entry: &UserSession) -> Result<(), StoreError> {
        let wall = unix_ms(OffsetDateTime::now_utc());
        let args = || {
            [
                Value::from(entry.id.as_str()),
                Value::Integer(unix_ms(entry.expires_at)),
                Value::Integer(unix_ms(entry.created_at)),
                Value::Integer(unix_ms(entry.last_seen)),
                Value::from(entry.user_agent.as_deref().unwrap_or_default()),
                Value::from(entry.ip.as_deref().unwrap_or_default()),
                Value::Integer(wall),
            ]
        };
        self.run(&LINK, &self.user_set_key(&entry.user_id), args)
            .await
            .map(drop)
    }

    async fn unlink(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let args = || [Value::from(id)];
        self.run(&UNLINK, &self.user_set_key(user_id), args)
            .await
            .map(drop)
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<UserSession>, StoreError> {
        let args = || [Value::Integer(unix_ms(now))];
        let reply = self.run(&LIST, &self.user_set_key(user_id), args).await?;
        let mut listed = Vec::with_capacity(reply.len());
        let mut dead = Vec::new();
        for member in &reply {
            match listed_entry(user_id, member) {
                Some(entry) => listed.push(entry),
                None => dead.extend(match member {
                    Value::Array(fields) => fields.first().and_then(Value::as_string),
                    _ => None,
                }),
            }
        }
        // A session deleted without its entry (by Django, or a failed unlink): its key is
        // gone. The checks go out together (each to its own slot's node).
        let present = futures_util::future::join_all(listed.iter().map(|s| self.exists(&s.id)))
            .await
            .into_iter()
            .collect::<Result<Vec<bool>, StoreError>>()?;
        let mut live = Vec::with_capacity(listed.len());
        for (entry, present) in listed.into_iter().zip(present) {
            if present {
                live.push(entry);
            } else {
                dead.push(entry.id);
            }
        }
        for id in dead {
            self.unlink(user_id, &id).await?;
        }
        live.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(live)
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let args = || [Value::from(id)];
        let owns = self.run(&OWNS, &self.user_set_key(user_id), args).await?;
        if status(&owns) == Some(1) {
            self.delete(id).await?;
        }
        self.unlink(user_id, id).await
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

/// `pattern` with Redis glob characters escaped, so a key prefix holding `*`, `?`, `[` or `\\`
/// matches only itself.
fn glob_escape(pattern: &str) -> String {
    let mut escaped = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl RedisStore {
    /// Drops `key` from the client-side cache (a write is about to make it stale).
    fn forget(&self, key: &str) {
        if let Some(local) = &self.local {
            local.forget(key);
        }
    }

    /// The primary nodes of a cluster, in a stable order (empty for one server).
    fn primaries(&self) -> Vec<fred::types::config::Server> {
        use fred::interfaces::ClusterInterface as _;
        if !self.client.is_clustered() {
            return Vec::new();
        }
        let mut nodes = self
            .client
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        nodes.sort_by_key(ToString::to_string);
        nodes
    }
}

/// Walks the keys under this store's prefix with `SCAN` (never `KEYS`, which blocks the
/// server). On a cluster it walks every primary in turn; the cursor is `node:cursor`.
#[async_trait]
impl Scan for RedisStore {
    async fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<Batch, StoreError> {
        let primaries = self.primaries();
        let (node, redis_cursor) = match cursor {
            None => (0usize, "0".to_owned()),
            Some(c) => {
                let (node, rest) = c.split_once(':').unwrap_or(("0", c));
                let node = node
                    .parse()
                    .map_err(|_| StoreError::backend(ENGINE, format!("bad scan cursor `{c}`")))?;
                (node, rest.to_owned())
            }
        };
        let mut options = self.options.clone();
        if let Some(server) = primaries.get(node) {
            options.cluster_node = Some(server.clone());
        } else if !primaries.is_empty() {
            return Ok(Batch::default());
        }
        let client = self.client.with_options(&options);
        let pattern = format!("{}*", glob_escape(&self.head));
        let count = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
        let (next, keys): (String, Vec<String>) = client
            .scan_page(redis_cursor, pattern, Some(count), None)
            .await
            .map_err(|e| self.error(e))?;
        let mut sessions = Vec::with_capacity(keys.len());
        for redis_key in keys {
            let Some(key) = redis_key.strip_prefix(&self.head) else {
                continue;
            };
            if let Some(record) = self.load(key, now).await? {
                sessions.push((key.to_owned(), record));
            }
        }
        let next = match (next.as_str(), primaries.len()) {
            ("0", 0) => None,
            ("0", n) if node + 1 >= n => None,
            ("0", _) => Some(format!("{}:0", node + 1)),
            (more, _) => Some(format!("{node}:{more}")),
        };
        Ok(Batch { sessions, next })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<Counts, StoreError> {
        let mut live = 0;
        let mut cursor: Option<String> = None;
        loop {
            let batch = self.scan(cursor.as_deref(), 1_000, now).await?;
            live += batch.sessions.len() as u64;
            match batch.next {
                Some(next) => cursor = Some(next),
                // The server drops expired keys by itself.
                None => return Ok(Counts { live, expired: 0 }),
            }
        }
    }
}

/// The client-side cache ([`RedisStore::with_client_cache`]): sessions read from Redis, kept
/// in process memory for a bounded time and dropped when Redis says another client wrote them.
///
/// Correctness rests on three rules:
/// - A load *reserves* its key (a token) before its command goes out, and keeps its answer
///   only if the reservation is still there when the answer is back; a write drops the key
///   before it goes out (Redis notifies us of it anyway, see the module docs). An
///   invalidation, a reconnection or an overflow removes reservations with the entries, so an
///   answer that raced with any of them is never kept.
/// - Nothing is kept unless tracking is on for the connection in use: a reconnection turns the
///   cache off and empties it, and only the `CLIENT TRACKING` reply on the new connection turns
///   it back on (commands after that reply are tracked).
/// - An entry is trusted for `ttl` at most, and never past the session's own expiry: what
///   tracking cannot report (Redis 7.0 drops the `FLUSHDB` notice for the client library, a
///   connection lost without notice) is seen within `ttl`.
struct Local {
    /// How long an entry is answered from memory.
    ttl: std::time::Duration,
    /// The most entries kept (reservations included).
    capacity: usize,
    state: std::sync::Mutex<LocalState>,
    /// Tells the watcher to turn tracking on again (the key prefix changed).
    retrack: std::sync::Arc<tokio::sync::Notify>,
    /// Dropped with the store: ends the task that applies invalidations.
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct LocalState {
    /// Tracking is on for the current connection, for the prefix `head`.
    on: bool,
    /// What every key of the store starts with: the prefix tracked.
    head: String,
    /// The next reservation token.
    next: u64,
    /// By session key (not Redis key).
    entries: std::collections::HashMap<String, Slot>,
}

enum Slot {
    /// A command for the key is in flight; its answer may be kept if this token is still here.
    Reserved(u64),
    /// A live record, read (or written) at `at`.
    Kept {
        record: Record,
        at: std::time::Instant,
    },
}

impl Local {
    fn state(&self) -> std::sync::MutexGuard<'_, LocalState> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters: every entry is self-contained. Keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The kept record for `key` if it is fresh and live at `now`.
    fn get(&self, key: &str, now: OffsetDateTime) -> Option<Record> {
        let st = self.state();
        match st.entries.get(key)? {
            Slot::Kept { record, at }
                if st.on
                    && at.elapsed() < self.ttl
                    && record.expires_at > now
                    && record.expires_at > OffsetDateTime::now_utc() =>
            {
                Some(record.clone())
            }
            _ => None,
        }
    }

    /// Reserves `key` for a command about to go out; `None` when nothing may be kept now.
    fn reserve(&self, key: &str) -> Option<u64> {
        let mut st = self.state();
        if !st.on {
            return None;
        }
        st.next += 1;
        let token = st.next;
        if st.entries.len() >= self.capacity && !st.entries.contains_key(key) {
            // Full: drop one entry (any; a full cache is a sign `capacity` is too small).
            let victim = st.entries.keys().next().cloned();
            if let Some(victim) = victim {
                st.entries.remove(&victim);
            }
        }
        st.entries.insert(key.to_owned(), Slot::Reserved(token));
        Some(token)
    }

    /// Keeps `record` under `key` if the reservation `token` still holds; forgets the key when
    /// there is no record.
    fn fill(&self, key: &str, token: Option<u64>, record: Option<&Record>) {
        let Some(token) = token else { return };
        let mut st = self.state();
        if matches!(st.entries.get(key), Some(Slot::Reserved(t)) if *t == token) {
            match record {
                Some(record) => {
                    st.entries.insert(
                        key.to_owned(),
                        Slot::Kept {
                            record: record.clone(),
                            at: std::time::Instant::now(),
                        },
                    );
                }
                None => {
                    st.entries.remove(key);
                }
            }
        }
    }

    fn forget(&self, key: &str) {
        self.state().entries.remove(key);
    }

    /// Empties the cache and turns it off until tracking is on again.
    fn reset(&self) {
        let mut st = self.state();
        st.on = false;
        st.entries.clear();
    }

    fn clear(&self) {
        self.state().entries.clear();
    }

    /// Turns tracking on for `head`, if that is still the prefix wanted.
    fn turn_on(&self, head: &str) {
        let mut st = self.state();
        if st.head == head {
            st.on = true;
        }
    }

    /// Moves the cache to another key prefix: empty and off until tracking is on for it.
    fn rehead(&self, head: String) {
        let mut st = self.state();
        st.on = false;
        st.entries.clear();
        st.head = head;
        self.retrack.notify_one();
    }
}

/// Applies Redis's invalidations and reconnections to `local` until the store is dropped: on
/// every (re)connection it empties the cache and turns tracking on for the new connection
/// (`BCAST` on the store's key prefix, so Redis keeps no per-key table for us; `NOLOOP`, so a
/// plain command of ours does not notify us).
///
/// The receivers are taken before the first connection, so its notice is not missed.
struct Watch {
    client: Client,
    local: std::sync::Weak<Local>,
    retrack: std::sync::Arc<tokio::sync::Notify>,
    stop: tokio::sync::oneshot::Receiver<()>,
    invalidations: tokio::sync::broadcast::Receiver<fred::types::client::Invalidation>,
    reconnections: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
}

async fn watch(watch: Watch) {
    use fred::interfaces::TrackingInterface as _;
    use tokio::sync::broadcast::error::RecvError;
    let Watch {
        client,
        local,
        retrack,
        mut stop,
        mut invalidations,
        mut reconnections,
    } = watch;
    // The first connection's notice is in `reconnections` (taken before it was made).
    let mut enable = false;
    loop {
        if enable {
            enable = false;
            let Some(cache) = local.upgrade() else { return };
            cache.reset();
            let head = cache.state().head.clone();
            drop(cache);
            // Off first: a connection whose tracking is already on (a notice seen twice)
            // refuses the same prefix again.
            let _ = client.stop_tracking().await;
            match client
                .start_tracking(head.as_str(), true, false, false, true)
                .await
            {
                Ok(()) => match local.upgrade() {
                    Some(cache) => cache.turn_on(&head),
                    None => return,
                },
                Err(e) => tracing::warn!(engine = ENGINE, error = %e,
                    "cannot turn on client tracking; the client-side cache stays off until the next reconnection"),
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = retrack.notified() => enable = true,
            event = reconnections.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => enable = true,
                Err(RecvError::Closed) => return,
            },
            event = invalidations.recv() => {
                let Some(cache) = local.upgrade() else { return };
                match event {
                    Ok(invalidation) if invalidation.keys.is_empty() => cache.clear(),
                    Ok(invalidation) => {
                        let mut st = cache.state();
                        let LocalState { head, entries, .. } = &mut *st;
                        for key in &invalidation.keys {
                            let session_key = key
                                .as_bytes()
                                .strip_prefix(head.as_bytes())
                                .and_then(|k| std::str::from_utf8(k).ok());
                            // A key under another prefix was tracked before a change of
                            // prefix: nothing kept now is under it (the change emptied the cache).
                            if let Some(session_key) = session_key {
                                entries.remove(session_key);
                            }
                        }
                    }
                    // Missed notices: anything may be stale.
                    Err(RecvError::Lagged(_)) => cache.clear(),
                    Err(RecvError::Closed) => {
                        cache.reset();
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cluster_urls_list_their_nodes() {
        assert_eq!(
            cluster_url("redis-cluster", "a:1,b:2, c:3").unwrap(),
            "redis-cluster://a:1?node=b:2&node=c:3"
        );
        assert_eq!(
            cluster_url("redis-cluster", "u:pw@a:1,b:2/0?x=y").unwrap(),
            "redis-cluster://u:pw@a:1?node=b:2&x=y"
        );
        assert!(cluster_url("redis-cluster", "a:1/3").is_err());
        assert!(cluster_url("redis-cluster", "").is_err());
    }

    #[test]
    fn urls_pick_the_topology() {
        use fred::types::config::ServerConfig;
        let single = config_of("redis://127.0.0.1:6379/2").unwrap();
        assert_eq!(single.database, Some(2));
        assert!(matches!(single.server, ServerConfig::Centralized { .. }));
        let cluster = config_of("redis-cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap();
        match cluster.server {
            ServerConfig::Clustered { hosts, .. } => assert_eq!(hosts.len(), 2),
            other => panic!("not a cluster: {other:?}"),
        }
        let err = config_of("memcached://x").unwrap_err();
        assert!(err.to_string().contains("cache_url"), "{err}");
        if !cfg!(feature = "redis-tls") {
            let err = config_of("rediss://127.0.0.1:6380").unwrap_err();
            assert!(err.to_string().contains("redis-tls"), "{err}");
        }
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let err = config_of("redis://user:secret@host:notaport").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

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

    fn local(capacity: usize) -> Local {
        let (stop, _) = tokio::sync::oneshot::channel();
        let local = Local {
            ttl: Duration::from_secs(60),
            capacity,
            state: std::sync::Mutex::default(),
            retrack: std::sync::Arc::new(tokio::sync::Notify::new()),
            _stop: stop,
        };
        local.turn_on("");
        local
    }

    fn live(data: &str) -> Record {
        Record {
            data: data.to_owned(),
            expires_at: OffsetDateTime::now_utc() + Duration::from_secs(60),
        }
    }

    #[test]
    fn an_answer_that_raced_an_invalidation_is_not_kept() {
        let now = OffsetDateTime::now_utc();
        let cache = local(10);
        let token = cache.reserve("k");
        // The invalidation is applied before the load's answer is.
        cache.forget("k");
        cache.fill("k", token, Some(&live("old")));
        assert_eq!(cache.get("k", now), None);
        // Without a race the answer is kept.
        let token = cache.reserve("k");
        cache.fill("k", token, Some(&live("new")));
        assert_eq!(cache.get("k", now).map(|r| r.data).as_deref(), Some("new"));
        // A later load's reservation wins over an earlier one's answer.
        let first = cache.reserve("j");
        let second = cache.reserve("j");
        cache.fill("j", first, Some(&live("first")));
        assert_eq!(cache.get("j", now), None);
        cache.fill("j", second, Some(&live("second")));
        assert_eq!(
            cache.get("j", now).map(|r| r.data).as_deref(),
            Some("second")
        );
    }

    #[test]
    fn a_reconnection_drops_entries_and_reservations_and_turns_the_cache_off() {
        let now = OffsetDateTime::now_utc();
        let cache = local(10);
        let kept = cache.reserve("a");
        cache.fill("a", kept, Some(&live("a")));
        let in_flight = cache.reserve("b");
        cache.reset();
        cache.fill("b", in_flight, Some(&live("b")));
        assert_eq!(cache.get("a", now), None);
        assert_eq!(cache.get("b", now), None);
        assert_eq!(cache.reserve("c"), None, "off until tracking is on again");
        cache.turn_on("");
        assert!(cache.reserve("c").is_some());
    }

    #[test]
    fn the_cache_is_bounded_and_respects_expiry() {
        let now = OffsetDateTime::now_utc();
        let cache = local(3);
        for i in 0..10 {
            let key = format!("k{i}");
            let token = cache.reserve(&key);
            cache.fill(&key, token, Some(&live(&key)));
        }
        assert!(cache.state().entries.len() <= 3);
        let token = cache.reserve("short");
        let short = Record {
            data: "short".to_owned(),
            expires_at: now + Duration::from_secs(1),
        };
        cache.fill("short", token, Some(&short));
        assert!(cache.get("short", now).is_some());
        assert_eq!(cache.get("short", now + Duration::from_secs(2)), None);
    }

    #[test]
    fn script_names_are_their_sha1() {
        // SHA-1 of "return 1", as `SCRIPT LOAD` answers it.
        assert_eq!(
            Script::new("return 1").sha1,
            &b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"[..]
        );
    }
}
