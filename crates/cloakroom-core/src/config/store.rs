//! Engine wiring: which engine keeps the sessions, where its server is, and the sizes of the
//! in-process cache. Also the one table from URL scheme to engine ([`SCHEMES`]) that
//! [`engines::open`](crate::engines::open) and the `cloakroom` command both read.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::ConfigError;

/// Where sessions are kept, with Django's engine names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// A database table: SQLite (the default), PostgreSQL or MySQL/MariaDB.
    #[default]
    Db,
    /// A cache: in-process, or Redis/Valkey (single server, cluster, or Sentinel).
    Cache,
    /// A write-through cache in front of a database table.
    CachedDb,
    /// One file per session in a folder.
    File,
    /// The data itself, signed, in the cookie.
    SignedCookies,
    /// The data itself, encrypted and authenticated, in the cookie (a cloakroom format).
    PrivateCookies,
}

impl std::str::FromStr for Engine {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "db" => Ok(Self::Db),
            "cache" => Ok(Self::Cache),
            "cached_db" => Ok(Self::CachedDb),
            "file" => Ok(Self::File),
            "signed_cookies" => Ok(Self::SignedCookies),
            "private_cookies" => Ok(Self::PrivateCookies),
            _ => Err(ConfigError::Invalid {
                setting: "engine",
                reason: format!(
                    "`{s}` is not an engine; use db, cache, cached_db, file, signed_cookies or private_cookies"
                ),
            }),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Db => "db",
            Self::Cache => "cache",
            Self::CachedDb => "cached_db",
            Self::File => "file",
            Self::SignedCookies => "signed_cookies",
            Self::PrivateCookies => "private_cookies",
        })
    }
}

impl Engine {
    /// Whether the data travels in the cookie (signed or private cookies): no store, no key.
    pub fn is_client_side(self) -> bool {
        matches!(self, Self::SignedCookies | Self::PrivateCookies)
    }

    /// The engine a URL names by its scheme (see [`SCHEMES`]): `db` for a database, `cache`
    /// for Redis, `file` for a folder; `None` for a scheme no engine reads.
    pub fn from_url(url: &str) -> Option<Self> {
        Backend::of_url(url).map(Backend::engine)
    }
}

/// The server family a URL scheme names, within its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// A SQLite file (`db` engine, feature `sqlite`).
    Sqlite,
    /// A PostgreSQL database (`db` engine, feature `postgres`).
    Postgres,
    /// A MySQL or MariaDB database (`db` engine, feature `mysql`).
    MySql,
    /// A Redis or Valkey server, cluster, or primary found through Sentinel (`cache` engine,
    /// feature `redis`).
    Redis,
    /// A folder of session files (`file` engine, feature `file`).
    File,
}

/// Every URL scheme cloakroom reads, and what it names: the one table behind
/// [`Engine::from_url`], `cloakroom::engines::open` and `cloakroom copy`.
pub const SCHEMES: &[(&str, Backend)] = &[
    ("sqlite", Backend::Sqlite),
    ("postgres", Backend::Postgres),
    ("postgresql", Backend::Postgres),
    ("mysql", Backend::MySql),
    ("mariadb", Backend::MySql),
    ("redis", Backend::Redis),
    ("rediss", Backend::Redis),
    ("redis-cluster", Backend::Redis),
    ("rediss-cluster", Backend::Redis),
    ("valkey", Backend::Redis),
    ("valkeys", Backend::Redis),
    ("valkey-cluster", Backend::Redis),
    ("valkeys-cluster", Backend::Redis),
    ("redis-sentinel", Backend::Redis),
    ("rediss-sentinel", Backend::Redis),
    ("valkey-sentinel", Backend::Redis),
    ("valkeys-sentinel", Backend::Redis),
    ("file", Backend::File),
];

impl Backend {
    /// What `url`'s scheme (the text before its first `:`, in any case) names; `None` for a
    /// scheme not in [`SCHEMES`].
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next()?;
        SCHEMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(scheme))
            .map(|&(_, backend)| backend)
    }

    /// The engine that keeps sessions on this backend.
    pub fn engine(self) -> Engine {
        match self {
            Self::Sqlite | Self::Postgres | Self::MySql => Engine::Db,
            Self::Redis => Engine::Cache,
            Self::File => Engine::File,
        }
    }

    /// The cargo feature that builds this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
            Self::Redis => "redis",
            Self::File => "file",
        }
    }

    /// The database's name and its limit on identifier length in bytes, where it has one short
    /// enough to matter for the names made from `table`.
    fn identifier_limit(self) -> Option<(&'static str, usize)> {
        match self {
            Self::Postgres => Some(("PostgreSQL", 63)),
            Self::MySql => Some(("MySQL", 64)),
            _ => None,
        }
    }
}

/// The default session table (Django's own is `django_session`; same columns).
pub const DEFAULT_TABLE: &str = "cloakroom_session";

/// The default `cache_max_bytes`: 256 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The in-process cache's shards (see `engines::memory`): `cache_max_bytes` must give each
/// room for one session of `max_session_bytes`.
pub(crate) const CACHE_SHARDS: u64 = 64;

/// The longest suffix a SQL store adds to `table` for the names it creates
/// (`<table>_user_user_id_idx`; see `engines::sql::Table`, whose test holds it to this).
#[doc(hidden)]
pub const LONGEST_DERIVED_SUFFIX: &str = "_user_user_id_idx";

/// Engine wiring: which engine, where its server is, how big its in-process cache may grow.
/// None of these is one of Django's cookie settings; they decide where the bytes go.
///
/// `Debug` redacts the credentials in `database_url` and `cache_url` (see [`redact_url`]).
#[derive(Clone, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StoreSettings {
    /// `SESSION_ENGINE`.
    pub engine: Engine,
    /// The database URL of the `db` and `cached_db` engines (`sqlite://…`, `postgres://…`, `mysql://…`).
    pub database_url: Option<String>,
    /// The session table.
    pub table: String,
    /// The cache URL of the `cache` and `cached_db` engines (`redis://…`, `redis-cluster://…`,
    /// `redis-sentinel://…`);
    /// none means the in-process cache.
    pub cache_url: Option<String>,
    /// `SESSION_FILE_PATH`: the folder of the `file` engine (default: the OS temp dir).
    pub file_path: Option<PathBuf>,
    /// The largest number of sessions the in-process cache holds.
    pub cache_capacity: u64,
    /// The most bytes the in-process cache holds (session keys and data, plus a fixed
    /// overhead per entry); least recently used sessions go first, as for `cache_capacity`.
    /// Default 256 MiB. With the in-process cache it must be at least 64 ×
    /// `max_session_bytes` (the cache has 64 shards, each holding at least one session).
    pub cache_max_bytes: u64,
    /// How long, in milliseconds, the `cache` engine on Redis may answer a load from process memory
    /// instead of asking Redis (0, the default: never). Redis's client tracking drops a kept
    /// session as soon as another client writes it; this bound covers what tracking cannot
    /// tell (a `FLUSHDB`, a lost connection). At most `cache_capacity` sessions are kept. One
    /// Redis server or Sentinel primary only (not a cluster, not the `cached_db` engine's
    /// cache); see
    /// `engines::redis`.
    pub redis_client_cache_ms: u64,
    /// The `cache` engine on Redis (and `cached_db`'s Redis cache) writes values without the
    /// header that carries their expiry and digest, as releases before 0.2 did, so that app
    /// servers still running such a release read them. Off by default. Values of both shapes
    /// are read either way. A rolling deploy onto a Redis store shared with older servers
    /// takes two steps: deploy with this on, then turn it off once no older server runs. With
    /// `data_format = "django"` it changes nothing (values are Django's).
    pub redis_legacy_values: bool,
    /// How often, in seconds, the app clears expired sessions itself
    /// ([`Sessions::start_cleanup`](crate::Sessions::start_cleanup); the `cloakroom demo`
    /// starts it when set). 0, the default: never (run `cloakroom clearsessions` from cron
    /// instead). One app server clears at a time, under a lock in the store.
    pub cleanup_interval_secs: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            engine: Engine::Db,
            database_url: None,
            table: DEFAULT_TABLE.into(),
            cache_url: None,
            file_path: None,
            cache_capacity: 1_000_000,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            redis_client_cache_ms: 0,
            redis_legacy_values: false,
            cleanup_interval_secs: 0,
        }
    }
}

// By hand, for the URLs; the destructuring makes a new field a compile error here.
impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            engine,
            database_url,
            table,
            cache_url,
            file_path,
            cache_capacity,
            cache_max_bytes,
            redis_client_cache_ms,
            redis_legacy_values,
            cleanup_interval_secs,
        } = self;
        f.debug_struct("StoreSettings")
            .field("engine", engine)
            .field("database_url", &RedactedUrl(database_url))
            .field("table", table)
            .field("cache_url", &RedactedUrl(cache_url))
            .field("file_path", file_path)
            .field("cache_capacity", cache_capacity)
            .field("cache_max_bytes", cache_max_bytes)
            .field("redis_client_cache_ms", redis_client_cache_ms)
            .field("redis_legacy_values", redis_legacy_values)
            .field("cleanup_interval_secs", cleanup_interval_secs)
            .finish()
    }
}

impl StoreSettings {
    /// The interval of the scheduled cleanup, or `None` when it is off
    /// (`cleanup_interval_secs = 0`).
    pub fn cleanup_interval(&self) -> Option<std::time::Duration> {
        (self.cleanup_interval_secs > 0)
            .then(|| std::time::Duration::from_secs(self.cleanup_interval_secs))
    }

    /// Checks the wiring on its own, naming the setting to change.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first setting found wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.table.is_empty()
            || !self
                .table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ConfigError::Invalid {
                setting: "table",
                reason: "must be letters, digits and `_` only".into(),
            });
        }
        if let Some((dialect, limit)) = self.identifier_limit() {
            // PostgreSQL truncates a longer name silently, so `<table>_user` would lose its
            // tail and `migrate` fail on a column; MySQL refuses it. The longest name made
            // from `table` is its user index's index (engines::sql::Table).
            let longest = format!("{}{LONGEST_DERIVED_SUFFIX}", self.table);
            if longest.len() > limit {
                return Err(ConfigError::Invalid {
                    setting: "table",
                    reason: format!(
                        "`{}` makes the name `{longest}` ({} bytes), over {dialect}'s \
                         {limit}-byte limit on identifiers; use a table name of at most {} bytes",
                        self.table,
                        longest.len(),
                        limit - LONGEST_DERIVED_SUFFIX.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The database `database_url` names and its limit on identifier length, in bytes, when
    /// the engine keeps a table there and the database has one short enough to matter.
    fn identifier_limit(&self) -> Option<(&'static str, usize)> {
        if !matches!(self.engine, Engine::Db | Engine::CachedDb) {
            return None;
        }
        Backend::of_url(self.database_url.as_deref()?)?.identifier_limit()
    }

    /// Points the wiring at the engine `url` names by its scheme ([`SCHEMES`]): a database
    /// URL sets `engine = db` and `database_url`, a Redis URL `engine = cache` and
    /// `cache_url`, `file:///FOLDER` `engine = file` and `file_path`. A `?table=NAME`
    /// query parameter sets `table` and is taken off the URL; the others stay for the driver.
    ///
    /// # Errors
    /// [`ConfigError::Url`] when the URL has no scheme, a scheme no engine reads, or no folder
    /// after `file://`. The URL in the error has its credentials redacted.
    pub fn point_at(&mut self, url: &str) -> Result<(), ConfigError> {
        let bad = |reason| ConfigError::Url {
            url: redact_url(url).into_owned(),
            reason,
        };
        if !url.contains("://") {
            return Err(bad("no scheme (`sqlite://`, `redis://` …)"));
        }
        let backend = Backend::of_url(url).ok_or_else(|| {
            bad("not an engine URL: use sqlite://, postgres://, mysql://, redis://, redis-cluster://, redis-sentinel:// or file://")
        })?;
        let (without_table, table) = take_table(url);
        match backend {
            Backend::Sqlite | Backend::Postgres | Backend::MySql => {
                self.database_url = Some(without_table);
            }
            Backend::Redis => self.cache_url = Some(without_table),
            Backend::File => {
                let path = without_table.split_once("://").map_or("", |(_, path)| path);
                if path.is_empty() {
                    return Err(bad("no folder after `file://`"));
                }
                self.file_path = Some(path.into());
            }
        }
        self.engine = backend.engine();
        if let Some(table) = table {
            self.table = table;
        }
        Ok(())
    }
}

/// Splits `?table=NAME` off a URL, keeping the other query parameters.
fn take_table(url: &str) -> (String, Option<String>) {
    let Some((head, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut table = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("table=") {
            Some(name) => {
                table = Some(name.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    if rest.is_empty() {
        (head.to_owned(), table)
    } else {
        (format!("{head}?{}", rest.join("&")), table)
    }
}

/// `url` with its credentials replaced by `***`, for `Debug`, logs and error messages: the
/// password in the userinfo (`postgres://user:***@host/db`, `redis://:***@host`) and the
/// value of any query parameter that names a secret (`?password=***`, `sslpassword`, `token`,
/// `secret`). A URL without credentials comes back unchanged.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL we can take apart (`postgres:/u:pw@h`): hide whatever precedes an `@`.
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]).into(),
            None => url.into(),
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The userinfo ends at the last `@` before the path: a password may hold an `@` itself.
    let (user, host_and_rest) = match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _password)) => (Some(format!("{user}:***")), &rest[at..]),
            None => (None, rest),
        },
        None => (None, rest),
    };
    let (head, query) = match host_and_rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (host_and_rest, None),
    };
    let secret_key = |k: &str| {
        let k = k.to_ascii_lowercase();
        ["pass", "secret", "token", "auth", "key"]
            .iter()
            .any(|s| k.contains(s))
    };
    let query = query.map(|q| {
        let (q, fragment) = match q.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (q, None),
        };
        let mut out: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_key(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        if let Some(f) = fragment {
            if let Some(last) = out.last_mut() {
                last.push('#');
                last.push_str(f);
            }
        }
        out.join("&")
    });
    let redacted = match (user, query) {
        (None, None) => return url.into(),
        (user, query) => {
            let mut out = format!("{scheme}://{}{head}", user.unwrap_or_default());
            if let Some(q) = query {
                out.push('?');
                out.push_str(&q);
            }
            out
        }
    };
    if redacted == url {
        url.into()
    } else {
        redacted.into()
    }
}

/// A URL setting as `Debug` shows it: credentials redacted.
struct RedactedUrl<'a>(&'a Option<String>);

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0.as_deref().map(redact_url), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_names_one_engine() {
        for (scheme, backend) in SCHEMES {
            let url = format!("{scheme}://somewhere/x");
            assert_eq!(Backend::of_url(&url), Some(*backend), "{scheme}");
            assert_eq!(Engine::from_url(&url), Some(backend.engine()), "{scheme}");
        }
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("POSTGRES://h/db"), Some(Backend::Postgres));
        assert_eq!(Engine::from_url("ftp://h"), None);
        assert_eq!(Engine::from_url("nothing"), None);
    }

    #[test]
    fn table_comes_off_the_query() {
        assert_eq!(
            take_table("postgres://u@h/db?table=t1&sslmode=disable"),
            (
                "postgres://u@h/db?sslmode=disable".to_owned(),
                Some("t1".to_owned())
            )
        );
        assert_eq!(
            take_table("sqlite://x.db?table=s"),
            ("sqlite://x.db".to_owned(), Some("s".to_owned()))
        );
        assert_eq!(
            take_table("redis://h:1/0"),
            ("redis://h:1/0".to_owned(), None)
        );
    }

    #[test]
    fn point_at_sets_the_engine_its_url_and_the_table() {
        let mut s = StoreSettings::default();
        s.point_at("file:///tmp/x").unwrap();
        assert_eq!(s.engine, Engine::File);
        assert_eq!(s.file_path.as_deref(), Some(std::path::Path::new("/tmp/x")));
        s.point_at("redis-cluster://127.0.0.1:7000").unwrap();
        assert_eq!(s.engine, Engine::Cache);
        assert_eq!(
            s.cache_url.as_deref(),
            Some("redis-cluster://127.0.0.1:7000")
        );
        s.point_at("mysql://root@127.0.0.1/test?table=abc").unwrap();
        assert_eq!(s.engine, Engine::Db);
        assert_eq!(s.table, "abc");
        assert_eq!(
            s.database_url.as_deref(),
            Some("mysql://root@127.0.0.1/test")
        );
        for url in ["ftp://x", "nothing", "file://", "file://?table=t"] {
            let err = s.point_at(url).unwrap_err();
            assert!(matches!(err, ConfigError::Url { .. }), "{url}: {err}");
        }
    }

    #[test]
    fn redact_url_hides_passwords_and_secret_parameters_only() {
        for (url, want) in [
            ("postgres://u:p@ss@h:5432/db", "postgres://u:***@h:5432/db"),
            ("redis://:hunter2@h", "redis://:***@h"),
            ("mysql://root@127.0.0.1/test", "mysql://root@127.0.0.1/test"),
            (
                "sqlite://sessions.sqlite3?mode=rwc",
                "sqlite://sessions.sqlite3?mode=rwc",
            ),
            (
                "postgres://h/db?user=u&password=hunter2&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "rediss://u:hunter2@h:6380/0?token=abc#x",
                "rediss://u:***@h:6380/0?token=***#x",
            ),
            (
                "redis-sentinel://u:hunter2@s1:26379,s2:26379/0?sentinelServiceName=m&sentinelPassword=hush",
                "redis-sentinel://u:***@s1:26379,s2:26379/0?sentinelServiceName=m&sentinelPassword=***",
            ),
            ("not a url", "not a url"),
            ("postgres:/u:hunter2@h", "***@h"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
