//! Building and connecting the client: the constructors, the options that are ours (no fred
//! type is public), the reconnection and liveness policy, and how fred's errors become
//! [`StoreError`]s. The URL's parsing is in `url.rs`.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::ClientLike as _;
use fred::types::config::{Config, Options, ReconnectPolicy, UnresponsiveConfig};
use fred::types::Builder;

use super::client_cache::Local;
use super::django::CACHE_SESSION_PREFIX;
use super::io_thread::IoThread;
use super::url::{config_of, redact};
use super::{RedisStore, DEFAULT_COMMAND_TIMEOUT, ENGINE};
use crate::error::{ConfigError, OpenError, StoreError};

/// How long opening a connection (and the cluster handshake) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may go without any reply while a command waits on it before it is
/// taken for dead, closed and opened again (through the sentinels, to whichever primary they
/// name now). A server that stops answering without closing anything (frozen, or cut off by a
/// network partition) gives no other sign: without this a Sentinel client kept its connection
/// to a frozen primary for good after the sentinels had promoted the replica
/// (`tests/outages.rs`). fred measures from the latest write, so under steady traffic this
/// fires only once the breaker has stopped the commands; hence shorter than the breaker's
/// default cooldown (1 s). A session command takes well under a millisecond on a healthy
/// server.
const UNRESPONSIVE_AFTER: Duration = Duration::from_millis(500);

/// What a store is opened with beyond its URL: the abilities that must be chosen before the
/// connection is made. Key layout, timeouts and value format are set on the store afterwards
/// (`with_*`).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The client-side cache, off when `None` (the default). See
    /// [`RedisStore::start_client_cache`].
    pub client_cache: Option<ClientCache>,
}

impl RedisOptions {
    /// With a client-side cache that answers a session for `ttl` at most and keeps at most
    /// `capacity` sessions (the `redis_client_cache_ms` and `cache_capacity` settings).
    #[must_use]
    pub fn with_client_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.client_cache = Some(ClientCache { ttl, capacity });
        self
    }
}

/// The bounds of the client-side cache ([`RedisOptions::with_client_cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCache {
    /// How long a session read from Redis is answered from memory at most.
    pub ttl: Duration,
    /// The most sessions kept (loads in flight included).
    pub capacity: usize,
}

/// The first connection could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {target}{hint}")]
struct Unreachable {
    target: String,
    /// What to check beyond the address, where the topology says more (Sentinel).
    hint: String,
    #[source]
    source: FredError,
}

impl RedisStore {
    /// Connects to the server or cluster at `url` and waits until it answers, so a wrong URL
    /// or a stopped server shows at startup. Later disconnections are retried in the background.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `cache_url` when the URL is not a Redis URL,
    /// [`OpenError::Store`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        Self::connect_with(url, &RedisOptions::default()).await
    }

    /// As [`connect`](Self::connect), with `options`. With a client-side cache the connection
    /// speaks RESP3 (invalidation notices arrive on it as push frames), and the cache stays off
    /// until [`start_client_cache`](Self::start_client_cache) is called: no task is started
    /// here.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); and [`OpenError::Config`] naming
    /// `redis_client_cache_ms` for a client-side cache on a cluster URL (the cache needs one
    /// server).
    pub async fn connect_with(url: &str, options: &RedisOptions) -> Result<Self, OpenError> {
        let mut config = config_of(url)?;
        if options.client_cache.is_some() {
            if config.server.is_clustered() {
                return Err(ConfigError::Invalid {
                    setting: "redis_client_cache_ms",
                    reason: "the client-side cache works with one Redis server, not a cluster; \
                             set it to 0"
                        .to_owned(),
                }
                .into());
            }
            config.version = fred::types::RespVersion::RESP3;
        }
        // Through sentinels, two more things must hold than a server listening: say which.
        let hint = match &config.server {
            fred::types::config::ServerConfig::Sentinel { service_name, .. } => format!(
                " through its sentinels: one of them must answer and know a primary named \
                 `{service_name}` (their `sentinel monitor` line)"
            ),
            _ => String::new(),
        };
        let mut store = Self::build_from(config, url, true)?;
        if let Some(cache) = options.client_cache {
            store.local = Some(Arc::new(Local::new(cache, store.head.clone())));
        }
        // `init` spawns the connection task where it runs: on the store's own thread.
        let client = store.client.clone();
        let connected = store
            .io
            .handle()
            .spawn(async move { client.init().await })
            .await
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        connected.map_err(|source| {
            StoreError::backend(
                ENGINE,
                Unreachable {
                    target: store.target.clone(),
                    hint,
                    source,
                },
            )
        })?;
        Ok(store)
    }

    /// Connects to `url` in the background, without waiting: the store is usable at once, and
    /// commands fail (or wait, see [`with_fail_fast`](Self::with_fail_fast)) until the server
    /// answers. For a cache in front of a database, so the app starts while the cache is down.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `cache_url` when the URL is not a Redis URL.
    pub async fn connect_lazy(url: &str) -> Result<Self, OpenError> {
        let config = config_of(url)?;
        let store = Self::build_from(config, url, false)?;
        // fred's connection task retries with the reconnect policy until the server answers;
        // dropping its handle only detaches it. It is spawned on the store's own thread.
        let _on_io_thread = store.io.handle().enter();
        drop(store.client.connect());
        Ok(store)
    }

    /// Waits up to `limit` for the connection [`connect_lazy`](Self::connect_lazy) started;
    /// whether it is up. A process should not take requests on a connection still opening:
    /// its first commands fail as if the server were down.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.client.wait_for_connect()).await,
            Ok(Ok(()))
        )
    }

    fn build_from(
        mut config: Config,
        url: &str,
        fail_at_first_connection: bool,
    ) -> Result<Self, StoreError> {
        config.fail_fast = fail_at_first_connection;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(UNRESPONSIVE_AFTER),
                    interval: UNRESPONSIVE_AFTER / 4,
                };
            })
            // Unlimited attempts, 100 ms doubling to 1 s: a restarted server or a promoted
            // replica is picked up without restarting the app, within about a second of
            // answering (the breaker's default cooldown). With a 5 s ceiling the demo answered
            // 503 for 1-3 s after a restarted Redis was back; one connection attempt a second
            // costs a down server nothing.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            // Room for bursts of invalidation notices; a lagging reader empties the cache.
            .with_performance_config(|p| p.broadcast_channel_capacity = 4_096);
        let client: Client = builder
            .build()
            .map_err(|e| StoreError::backend(ENGINE, e))?;
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
            legacy: false,
            local: None,
            expiry_warned: Arc::default(),
            io: IoThread::start().map_err(|e| StoreError::backend(ENGINE, e))?,
        };
        store.head = store.head();
        Ok(store)
    }

    /// A fred error as a store error: a command timeout is [`StoreError::Timeout`].
    pub(super) fn error(&self, e: FredError) -> StoreError {
        match (e.kind(), self.options.timeout) {
            (ErrorKind::Timeout, Some(after)) => StoreError::Timeout {
                engine: ENGINE,
                after,
            },
            _ => StoreError::backend(ENGINE, e),
        }
    }
}
