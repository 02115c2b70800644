//! Connection and configuration: `cache_url` to a client, the constructors, the options that
//! are ours (no fred type is public), and how fred's errors become [`StoreError`]s.

use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::ClientLike as _;
use fred::types::config::{Config, Options, ReconnectPolicy, UnresponsiveConfig};
use fred::types::Builder;

use super::client_cache::Local;
use super::django::CACHE_SESSION_PREFIX;
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

/// A URL with its credentials replaced, for logs and error messages (one rule for every URL:
/// [`crate::config::redact_url`]).
pub(super) fn redact(url: &str) -> String {
    crate::config::redact_url(url).into_owned()
}

fn bad_url(reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: "cache_url",
        reason: reason.into(),
    }
}

/// The port of a sentinel named without one (Redis's default for `redis-sentinel`).
const SENTINEL_PORT: u16 = 26_379;

/// A URL scheme's topology: the text after `redis`/`valkey` (and its TLS `s`) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// `redis://`: one server.
    Single,
    /// `redis-cluster://`: any nodes of a Redis Cluster.
    Cluster,
    /// `redis-sentinel://`: the sentinels that know the primary.
    Sentinel,
}

/// Rewrites our `scheme://[auth@]h1:p1,h2:p2,...[/db][?query]` (a list of nodes, as users
/// write it and as `redis-cli` prints it) into fred's `scheme://[auth@]h1:p1[/db]?node=h2:p2&...`.
fn node_list_url(scheme: &str, rest: &str, topology: Topology) -> Result<String, ConfigError> {
    let (before_query, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((authority, path)) => (authority, path),
        None => (before_query, ""),
    };
    let (auth, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| match topology {
            // A sentinel is on 26379 unless said otherwise (fred needs the port of every
            // `node=`). An IPv6 address holds colons of its own: it must give its port.
            Topology::Sentinel if !h.contains(':') => format!("{h}:{SENTINEL_PORT}"),
            _ => h.to_owned(),
        });
    let first = hosts.next().ok_or_else(|| match topology {
        Topology::Sentinel => bad_url("a Sentinel URL needs at least one sentinel `host:port`"),
        _ => bad_url("a cluster URL needs at least one `host:port`"),
    })?;
    let mut url = format!("{scheme}://{auth}{first}");
    match topology {
        Topology::Cluster if !path.is_empty() && path != "0" => {
            return Err(bad_url(
                "a Redis Cluster has only database 0; remove the `/db` from the URL",
            ));
        }
        Topology::Sentinel if !path.is_empty() => {
            url.push('/');
            url.push_str(path);
        }
        _ => {}
    }
    if topology == Topology::Sentinel
        && !query.is_some_and(|q| {
            q.split('&').any(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, v)| k == SERVICE_NAME && !v.is_empty())
            })
        })
    {
        return Err(bad_url(format!(
            "a Sentinel URL names the primary the sentinels watch: add \
             `?{SERVICE_NAME}=<name>`, the name in the sentinels' `sentinel monitor <name> …` line"
        )));
    }
    let mut params: Vec<String> = hosts.map(|h| format!("node={h}")).collect();
    params.extend(query.map(str::to_owned));
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    Ok(url)
}

/// The query parameter naming the primary in a Sentinel URL (fred's name for it).
const SERVICE_NAME: &str = "sentinelServiceName";

/// Turns a `cache_url` into a client configuration.
fn config_of(url: &str) -> Result<Config, ConfigError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        bad_url(
            "expected `redis://host:port`, `redis-cluster://host:port,...` or \
             `redis-sentinel://host:port,...?sentinelServiceName=<name>`",
        )
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let (family, topology) = match scheme.split_once('-') {
        None => (scheme.as_str(), Topology::Single),
        Some((family, "cluster")) => (family, Topology::Cluster),
        Some((family, "sentinel")) => (family, Topology::Sentinel),
        Some(_) => ("", Topology::Single),
    };
    let tls = match family {
        "redis" | "valkey" => false,
        "rediss" | "valkeys" => true,
        _ => {
            return Err(bad_url(format!(
                "`{scheme}://` is not a Redis URL; use redis://, rediss://, redis-cluster://, \
                 redis-sentinel:// or valkey://"
            )))
        }
    };
    if tls && !cfg!(feature = "tls") {
        return Err(bad_url(format!(
            "`{scheme}://` is Redis over TLS, which needs cloakroom built with the `redis-tls` feature"
        )));
    }
    let fred_url = match topology {
        Topology::Single => url.to_owned(),
        Topology::Cluster | Topology::Sentinel => node_list_url(&scheme, rest, topology)?,
    };
    Config::from_url(&fred_url).map_err(|e| bad_url(format!("{}: {}", redact(url), e.details())))
}

/// Checks that `url` is a Redis URL this build can use, without connecting.
pub fn check_url(url: &str) -> Result<(), ConfigError> {
    config_of(url).map(drop)
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
        store.client.init().await.map_err(|source| {
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
        // dropping its handle only detaches it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_list_their_nodes() {
        let cluster = |rest| node_list_url("redis-cluster", rest, Topology::Cluster);
        assert_eq!(
            cluster("a:1,b:2, c:3").unwrap(),
            "redis-cluster://a:1?node=b:2&node=c:3"
        );
        assert_eq!(
            cluster("u:pw@a:1,b:2/0?x=y").unwrap(),
            "redis-cluster://u:pw@a:1?node=b:2&x=y"
        );
        assert!(cluster("a:1/3").is_err());
        assert!(cluster("").is_err());
    }

    #[test]
    fn sentinel_urls_list_their_sentinels_and_keep_the_database() {
        let sentinel = |rest| node_list_url("redis-sentinel", rest, Topology::Sentinel);
        assert_eq!(
            sentinel("s1:26380,s2, s3:26381/2?sentinelServiceName=mymaster").unwrap(),
            "redis-sentinel://s1:26380/2?node=s2:26379&node=s3:26381&sentinelServiceName=mymaster"
        );
        assert_eq!(
            sentinel("u:pw@s1?sentinelServiceName=m&sentinelPassword=x").unwrap(),
            "redis-sentinel://u:pw@s1:26379?sentinelServiceName=m&sentinelPassword=x"
        );
        for missing in [
            "s1:26379",
            "s1:26379/0?x=y",
            "s1:26379?sentinelServiceName=",
        ] {
            let err = sentinel(missing).unwrap_err().to_string();
            assert!(
                err.contains("cache_url") && err.contains("sentinelServiceName="),
                "{missing}: {err}"
            );
        }
        assert!(sentinel("?sentinelServiceName=m").is_err());
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
        let sentinel = config_of(
            "redis-sentinel://u:pw@127.0.0.1:26379,127.0.0.1:26380/3?sentinelServiceName=m\
             &sentinelUsername=su&sentinelPassword=sp",
        )
        .unwrap();
        assert_eq!(sentinel.database, Some(3));
        assert_eq!(sentinel.password.as_deref(), Some("pw"));
        match sentinel.server {
            ServerConfig::Sentinel {
                hosts,
                service_name,
                username,
                password,
            } => {
                assert_eq!(hosts.len(), 2);
                assert_eq!(service_name, "m");
                // The sentinels' own credentials, apart from the data servers'.
                assert_eq!(
                    (username.as_deref(), password.as_deref()),
                    (Some("su"), Some("sp"))
                );
            }
            other => panic!("not a sentinel setup: {other:?}"),
        }
        assert!(matches!(
            config_of("valkey-sentinel://h?sentinelServiceName=m")
                .unwrap()
                .server,
            ServerConfig::Sentinel { .. }
        ));
        let err = config_of("redis-replicas://h").unwrap_err();
        assert!(err.to_string().contains("redis-sentinel://"), "{err}");
        let err = config_of("memcached://x").unwrap_err();
        assert!(err.to_string().contains("cache_url"), "{err}");
        if !cfg!(feature = "tls") {
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
        let err = config_of(
            "redis-sentinel://u:secret@h:bad?sentinelServiceName=m&sentinelPassword=hush",
        )
        .unwrap_err();
        assert!(
            !err.to_string().contains("secret") && !err.to_string().contains("hush"),
            "{err}"
        );
    }
}
