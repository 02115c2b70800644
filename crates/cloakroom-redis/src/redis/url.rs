//! `cache_url` to a client configuration: the scheme picks the topology (one server, a Redis
//! Cluster, Sentinel) and TLS, a list of nodes becomes fred's URL, and credentials stay out of
//! messages.

use fred::types::config::Config;

use crate::error::ConfigError;

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
pub(super) fn config_of(url: &str) -> Result<Config, ConfigError> {
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
