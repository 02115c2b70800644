//! Settings, with Django's names and defaults.
//!
//! Build them in code (`Settings::default().with_cookie_secure(true)`), read them from a TOML
//! file ([`Settings::from_toml_file`]), or let the `cloakroom` command fill them from flags and
//! `CLOAKROOM_*` environment variables.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

/// Django's `SESSION_COOKIE_AGE`: two weeks, in seconds.
pub const DEFAULT_COOKIE_AGE: u64 = 1_209_600;

/// The longest session lifetime cloakroom accepts, in seconds (about 110 years): far beyond any
/// real use, and small enough that "now + lifetime" is always a representable date.
pub const MAX_COOKIE_AGE: u64 = 400 * 86_400 * 100;

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    // The aliases accept Django's spelling (`SESSION_COOKIE_SAMESITE = "Strict"`) in a TOML
    // file, as the flag and the environment variable do.
    /// Sent on same-site requests only.
    #[serde(alias = "Strict")]
    Strict,
    /// Sent on same-site requests and top-level navigations (Django's default).
    #[default]
    #[serde(alias = "Lax")]
    Lax,
    /// Sent on every request; browsers require `Secure` with it.
    #[serde(alias = "None")]
    None,
}

impl std::str::FromStr for SameSite {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "lax" => Ok(Self::Lax),
            "none" => Ok(Self::None),
            _ => Err(ConfigError::Invalid {
                setting: "cookie_samesite",
                reason: format!("`{s}` is not one of Strict, Lax, None"),
            }),
        }
    }
}

/// Where sessions are kept, with Django's engine names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// A database table: SQLite (the default), PostgreSQL or MySQL/MariaDB.
    #[default]
    Db,
    /// A cache: in-process, or Redis/Valkey (single server or cluster).
    Cache,
    /// A write-through cache in front of a database table.
    CachedDb,
    /// One file per session in a folder.
    File,
    /// The data itself, signed, in the cookie.
    SignedCookies,
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
            _ => Err(ConfigError::Invalid {
                setting: "engine",
                reason: format!(
                    "`{s}` is not an engine; use db, cache, cached_db, file or signed_cookies"
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
        })
    }
}

/// How server-side stores keep the session data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// Plain JSON: the fastest form, for stores only cloakroom reads.
    #[default]
    Json,
    /// Django's own `session_data` format (signed with `secret_key`, see
    /// [`Codec::Django`](crate::codec::Codec::Django)) in the `db`, `cached_db` and `file`
    /// engines, so a Django app with the same `SECRET_KEY` shares the store. The
    /// `signed_cookies` engine always writes Django's cookie format, whatever this says.
    Django,
}

impl std::str::FromStr for DataFormat {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "django" => Ok(Self::Django),
            _ => Err(ConfigError::Invalid {
                setting: "data_format",
                reason: format!("`{s}` is not a data format; use json or django"),
            }),
        }
    }
}

/// What a request gets when the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Answer 503 with `Retry-After` and a clear body (the default).
    #[default]
    FailClosed,
    /// Go on as an anonymous visitor with an empty session that is not saved.
    FailOpen,
}

/// A secret that `Debug` never prints.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `url` with its credentials replaced by `***`, for `Debug`, logs and error messages: the
/// password in the userinfo (`postgres://user:***@host/db`, `redis://:***@host`) and the
/// value of any query parameter that names a secret (`?password=***`, `sslpassword`, `token`,
/// `secret`). A URL without credentials comes back unchanged.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
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

/// Every cloakroom setting. Field names are Django's without the `SESSION_` prefix.
///
/// `Debug` redacts the credentials in `database_url` and `cache_url` (see [`redact_url`]) and
/// every [`Secret`].
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Settings {
    /// `SESSION_COOKIE_NAME`: the cookie that carries the session key.
    pub cookie_name: String,
    /// `SESSION_COOKIE_AGE`: session lifetime in seconds, counted from the last save.
    pub cookie_age: u64,
    /// `SESSION_COOKIE_DOMAIN`: `None` for a host-only cookie.
    pub cookie_domain: Option<String>,
    /// `SESSION_COOKIE_PATH`.
    pub cookie_path: String,
    /// `SESSION_COOKIE_SECURE`: send the cookie over HTTPS only.
    pub cookie_secure: bool,
    /// `SESSION_COOKIE_HTTPONLY`: hide the cookie from JavaScript.
    pub cookie_httponly: bool,
    /// `SESSION_COOKIE_SAMESITE`.
    pub cookie_samesite: SameSite,
    /// The CHIPS `Partitioned` attribute (Django lacks it).
    pub cookie_partitioned: bool,
    /// `SESSION_EXPIRE_AT_BROWSER_CLOSE`: a cookie without Max-Age/Expires.
    pub expire_at_browser_close: bool,
    /// `SESSION_SAVE_EVERY_REQUEST`: save (and so extend) non-empty sessions on every request.
    pub save_every_request: bool,
    /// `SESSION_ENGINE`.
    pub engine: Engine,
    /// The database URL of the `db` and `cached_db` engines (`sqlite://…`, `postgres://…`, `mysql://…`).
    pub database_url: Option<String>,
    /// The session table.
    pub table: String,
    /// The cache URL of the `cache` and `cached_db` engines (`redis://…`, `redis-cluster://…`);
    /// none means the in-process cache.
    pub cache_url: Option<String>,
    /// `SESSION_FILE_PATH`: the folder of the `file` engine (default: the OS temp dir).
    pub file_path: Option<PathBuf>,
    /// `SECRET_KEY`: signs cookies (and data in Django's format).
    pub secret_key: Option<Secret>,
    /// `SECRET_KEY_FALLBACKS`: older keys still accepted when reading.
    pub secret_key_fallbacks: Vec<Secret>,
    /// How server-side stores keep the data: `json` (the default) or `django` (Django's
    /// signed `session_data`, to share a store with a Django app; needs `secret_key`).
    pub data_format: DataFormat,
    /// The bound on every store call, in milliseconds.
    pub store_timeout_ms: u64,
    /// What a request gets when the store fails.
    pub on_store_error: OnStoreError,
    /// How long a request on an [exclusive route](crate::layer::ExclusiveLayer) waits, in
    /// milliseconds, for the same visitor's other exclusive requests before it fails with
    /// [`Error::ExclusiveTimeout`](crate::Error::ExclusiveTimeout). Other routes never wait.
    pub lock_timeout_ms: u64,
    /// The largest number of sessions the in-process cache holds.
    pub cache_capacity: u64,
    /// The most bytes the in-process cache holds (session keys and data, plus a fixed
    /// overhead per entry); least recently used sessions go first, as for `cache_capacity`.
    /// Default 256 MiB. With the in-process cache it must be at least 64 ×
    /// `max_session_bytes` (the cache has 64 shards, each holding at least one session).
    pub cache_max_bytes: u64,
    /// The largest session, in bytes of its encoded record (the JSON, or Django's signed or
    /// pickled text): a save over it fails as [`Error::TooLarge`](crate::Error::TooLarge)
    /// (413 from the layer) and writes nothing. Default 64 KiB. Checked in the core, so every
    /// engine and cookie format is bounded.
    pub max_session_bytes: usize,
    /// How long, in milliseconds, the `cache` engine on Redis may answer a load from process memory
    /// instead of asking Redis (0, the default: never). Redis's client tracking drops a kept
    /// session as soon as another client writes it; this bound covers what tracking cannot
    /// tell (a `FLUSHDB`, a lost connection). At most `cache_capacity` sessions are kept. One
    /// Redis server only (not a cluster, not the `cached_db` engine's cache); see
    /// `engines::redis`.
    pub redis_client_cache_ms: u64,
    /// After this many store failures in a row the circuit breaker opens: the store is not
    /// called for `breaker_cooldown_ms`, and requests fail fast under the store-error policy.
    pub breaker_threshold: u32,
    /// How long an open circuit breaker waits before letting one trial call through.
    pub breaker_cooldown_ms: u64,
    /// An idle timeout in seconds: the session ends after this long without a request, and a
    /// request that only reads extends it (see `refresh_threshold`). `None`: Django's model,
    /// where the lifetime counts from the last save.
    pub idle_timeout: Option<u64>,
    /// An absolute lifetime in seconds: the session ends this long after it was created or
    /// its key was cycled (login), however active it is.
    pub absolute_lifetime: Option<u64>,
    /// With an idle timeout, a read-only request writes the new expiry to the store only once
    /// this fraction of the idle timeout has passed since the last write (0.2: after 20%).
    pub refresh_threshold: f64,
    /// After `cycle_key()`, the old key keeps working this many seconds, read-only: it is
    /// served the session as it was before the rotation (logged out), gets no cookie, and a
    /// change under it fails as [`Error::Rotated`](crate::Error::Rotated) (0: off, the
    /// default; at most 60). `flush()` has no grace.
    pub rotation_grace: u64,
    /// The lifetime `remember_me(true)` gives a session, in seconds (30 days).
    pub remember_me_age: u64,
    /// Store only a hash of each session key (the first 40 hex characters of its SHA-256), so
    /// a dump of the store yields no cookie that works (see [`crate::hashed`]). Off by default:
    /// a Django app sharing the store looks sessions up by the raw key and would find none.
    /// Cannot be combined with `rotation_grace` (whose pointer to the new session would put a
    /// live key in the store) nor with the `signed_cookies` engine (no key to hash).
    pub hash_keys: bool,
    /// The token that opens the demo's admin page (`/admin/sessions`, in `cloakroom demo`);
    /// `None`, the default, turns the page off (its routes answer 404). Not a Django setting:
    /// the library itself never reads it.
    pub admin_token: Option<Secret>,
    /// The most live sessions one user may have (`None`, the default: no limit). A login that
    /// goes over it revokes the user's oldest sessions (see [`crate::Sessions::sessions_of`]).
    pub max_sessions_per_user: Option<u32>,
}

/// The default `max_session_bytes`: 64 KiB, far above what a session of ids and flags needs
/// (a few hundred bytes) and far below what lets a few visitors fill a store (issue 14: 30
/// posts of 1.9 MB made one 57 MB session).
pub const DEFAULT_MAX_SESSION_BYTES: usize = 64 * 1024;

/// The default `cache_max_bytes`: 256 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The in-process cache's shards (see `engines::memory`): `cache_max_bytes` must give each
/// room for one session of `max_session_bytes`.
const CACHE_SHARDS: u64 = 64;

// By hand, for the URLs; the destructuring makes a new field a compile error here.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            cookie_name,
            cookie_age,
            cookie_domain,
            cookie_path,
            cookie_secure,
            cookie_httponly,
            cookie_samesite,
            cookie_partitioned,
            expire_at_browser_close,
            save_every_request,
            engine,
            database_url,
            table,
            cache_url,
            file_path,
            secret_key,
            secret_key_fallbacks,
            data_format,
            store_timeout_ms,
            on_store_error,
            lock_timeout_ms,
            cache_capacity,
            redis_client_cache_ms,
            breaker_threshold,
            breaker_cooldown_ms,
            idle_timeout,
            absolute_lifetime,
            refresh_threshold,
            rotation_grace,
            remember_me_age,
            hash_keys,
            admin_token,
            max_sessions_per_user,
            max_session_bytes,
            cache_max_bytes,
        } = self;
        f.debug_struct("Settings")
            .field("cookie_name", cookie_name)
            .field("cookie_age", cookie_age)
            .field("cookie_domain", cookie_domain)
            .field("cookie_path", cookie_path)
            .field("cookie_secure", cookie_secure)
            .field("cookie_httponly", cookie_httponly)
            .field("cookie_samesite", cookie_samesite)
            .field("cookie_partitioned", cookie_partitioned)
            .field("expire_at_browser_close", expire_at_browser_close)
            .field("save_every_request", save_every_request)
            .field("engine", engine)
            .field("database_url", &RedactedUrl(database_url))
            .field("table", table)
            .field("cache_url", &RedactedUrl(cache_url))
            .field("file_path", file_path)
            .field("secret_key", secret_key)
            .field("secret_key_fallbacks", secret_key_fallbacks)
            .field("data_format", data_format)
            .field("store_timeout_ms", store_timeout_ms)
            .field("on_store_error", on_store_error)
            .field("lock_timeout_ms", lock_timeout_ms)
            .field("cache_capacity", cache_capacity)
            .field("redis_client_cache_ms", redis_client_cache_ms)
            .field("breaker_threshold", breaker_threshold)
            .field("breaker_cooldown_ms", breaker_cooldown_ms)
            .field("idle_timeout", idle_timeout)
            .field("absolute_lifetime", absolute_lifetime)
            .field("refresh_threshold", refresh_threshold)
            .field("rotation_grace", rotation_grace)
            .field("remember_me_age", remember_me_age)
            .field("hash_keys", hash_keys)
            .field("admin_token", admin_token)
            .field("max_sessions_per_user", max_sessions_per_user)
            .field("max_session_bytes", max_session_bytes)
            .field("cache_max_bytes", cache_max_bytes)
            .finish()
    }
}

/// The default session table (Django's own is `django_session`; same columns).
pub const DEFAULT_TABLE: &str = "cloakroom_session";

impl Default for Settings {
    fn default() -> Self {
        Self {
            cookie_name: "sessionid".into(),
            cookie_age: DEFAULT_COOKIE_AGE,
            cookie_domain: None,
            cookie_path: "/".into(),
            cookie_secure: false,
            cookie_httponly: true,
            cookie_samesite: SameSite::Lax,
            cookie_partitioned: false,
            expire_at_browser_close: false,
            save_every_request: false,
            engine: Engine::Db,
            database_url: None,
            table: DEFAULT_TABLE.into(),
            cache_url: None,
            file_path: None,
            secret_key: None,
            secret_key_fallbacks: Vec::new(),
            data_format: DataFormat::Json,
            store_timeout_ms: 3_000,
            on_store_error: OnStoreError::FailClosed,
            lock_timeout_ms: 10_000,
            cache_capacity: 1_000_000,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            redis_client_cache_ms: 0,
            breaker_threshold: 5,
            breaker_cooldown_ms: 1_000,
            idle_timeout: None,
            absolute_lifetime: None,
            refresh_threshold: 0.2,
            rotation_grace: 0,
            remember_me_age: 30 * 86_400,
            hash_keys: false,
            admin_token: None,
            max_sessions_per_user: None,
        }
    }
}

macro_rules! with {
    ($(#[$doc:meta] $name:ident: $field:ident: $ty:ty;)*) => {
        $(
            #[$doc]
            #[must_use]
            pub fn $name(mut self, value: impl Into<$ty>) -> Self {
                self.$field = value.into();
                self
            }
        )*
    };
}

impl Settings {
    with! {
        /// Sets `cookie_name`.
        with_cookie_name: cookie_name: String;
        /// Sets `cookie_age` in seconds.
        with_cookie_age: cookie_age: u64;
        /// Sets `cookie_domain`.
        with_cookie_domain: cookie_domain: Option<String>;
        /// Sets `cookie_path`.
        with_cookie_path: cookie_path: String;
        /// Sets `cookie_secure`.
        with_cookie_secure: cookie_secure: bool;
        /// Sets `cookie_httponly`.
        with_cookie_httponly: cookie_httponly: bool;
        /// Sets `cookie_samesite`.
        with_cookie_samesite: cookie_samesite: SameSite;
        /// Sets `cookie_partitioned`.
        with_cookie_partitioned: cookie_partitioned: bool;
        /// Sets `expire_at_browser_close`.
        with_expire_at_browser_close: expire_at_browser_close: bool;
        /// Sets `save_every_request`.
        with_save_every_request: save_every_request: bool;
        /// Sets `engine`.
        with_engine: engine: Engine;
        /// Sets `database_url`.
        with_database_url: database_url: Option<String>;
        /// Sets `table`.
        with_table: table: String;
        /// Sets `cache_url`.
        with_cache_url: cache_url: Option<String>;
        /// Sets `file_path`.
        with_file_path: file_path: Option<PathBuf>;
        /// Sets `secret_key`.
        with_secret_key: secret_key: Option<Secret>;
        /// Sets `secret_key_fallbacks` (older keys still accepted when reading, tried in order).
        with_secret_key_fallbacks: secret_key_fallbacks: Vec<Secret>;
        /// Sets `data_format`.
        with_data_format: data_format: DataFormat;
        /// Sets `store_timeout_ms`.
        with_store_timeout_ms: store_timeout_ms: u64;
        /// Sets `on_store_error`.
        with_on_store_error: on_store_error: OnStoreError;
        /// Sets `lock_timeout_ms`.
        with_lock_timeout_ms: lock_timeout_ms: u64;
        /// Sets `cache_capacity`.
        with_cache_capacity: cache_capacity: u64;
        /// Sets `cache_max_bytes` (the in-process cache's bound in bytes).
        with_cache_max_bytes: cache_max_bytes: u64;
        /// Sets `max_session_bytes` (the largest encoded session).
        with_max_session_bytes: max_session_bytes: usize;
        /// Sets `redis_client_cache_ms` (0 turns the Redis client-side cache off).
        with_redis_client_cache_ms: redis_client_cache_ms: u64;
        /// Sets `breaker_threshold` (0 turns the breaker off).
        with_breaker_threshold: breaker_threshold: u32;
        /// Sets `breaker_cooldown_ms`.
        with_breaker_cooldown_ms: breaker_cooldown_ms: u64;
        /// Sets `idle_timeout` in seconds.
        with_idle_timeout: idle_timeout: Option<u64>;
        /// Sets `absolute_lifetime` in seconds.
        with_absolute_lifetime: absolute_lifetime: Option<u64>;
        /// Sets `refresh_threshold` (a fraction between 0 and 1).
        with_refresh_threshold: refresh_threshold: f64;
        /// Sets `rotation_grace` in seconds (at most 60).
        with_rotation_grace: rotation_grace: u64;
        /// Sets `remember_me_age` in seconds.
        with_remember_me_age: remember_me_age: u64;
        /// Sets `hash_keys` (the store keeps only a SHA-256 of each key).
        with_hash_keys: hash_keys: bool;
        /// Sets `admin_token` (opens the demo's admin page; at least 16 characters).
        with_admin_token: admin_token: Option<Secret>;
        /// Sets `max_sessions_per_user` (at least 1; `None` for no limit).
        with_max_sessions_per_user: max_sessions_per_user: Option<u32>;
    }

    /// Reads settings from a TOML file; keys missing from the file keep their defaults.
    ///
    /// # Errors
    /// [`ConfigError::File`] when the file cannot be read, has unknown keys or wrong types.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::File { reason, .. } => ConfigError::File {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Reads settings from TOML text.
    ///
    /// # Errors
    /// [`ConfigError`] when the text is not valid TOML for these settings, or a value cannot work.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let settings: Self = toml::from_str(text).map_err(|e| ConfigError::File {
            path: "<toml>".into(),
            reason: e.to_string(),
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// The codec the data format asks for on this engine. Under `data_format = "django"`:
    /// Django's signed `session_data` for the `db`, `cached_db` and `file` engines, and Django's
    /// pickled cache value for the `cache` engine. Otherwise, and always for `signed_cookies`
    /// (which signs the cookie itself), plain JSON.
    ///
    /// With `cached_db`, the cache in front of the database holds the database's text (so a
    /// Django app's cache entries are not shared, only its table).
    pub fn codec(&self) -> crate::codec::Codec {
        match (self.data_format, &self.secret_key, self.engine) {
            (DataFormat::Django, Some(secret), Engine::Db | Engine::CachedDb | Engine::File) => {
                crate::codec::Codec::django(secret.clone(), self.secret_key_fallbacks.clone())
            }
            (DataFormat::Django, _, Engine::Cache) => crate::codec::Codec::DjangoCache,
            _ => crate::codec::Codec::Json,
        }
    }

    /// The bound on every store call.
    pub fn store_timeout(&self) -> Duration {
        Duration::from_millis(self.store_timeout_ms)
    }

    /// Checks settings that cannot work together, naming the setting to change.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first setting found wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        let name = &self.cookie_name;
        // RFC 6265 cookie-name is an RFC 7230 token.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return invalid(
                "cookie_name",
                "must be a non-empty token (letters, digits and !#$%&'*+-.^_`|~)",
            );
        }
        if name.starts_with("__Secure-") && !self.cookie_secure {
            return invalid(
                "cookie_secure",
                "a `__Secure-` cookie name needs cookie_secure = true",
            );
        }
        if name.starts_with("__Host-")
            && (!self.cookie_secure || self.cookie_path != "/" || self.cookie_domain.is_some())
        {
            return invalid(
                "cookie_name",
                "a `__Host-` cookie needs cookie_secure = true, cookie_path = \"/\" and no cookie_domain",
            );
        }
        if self.cookie_samesite == SameSite::None && !self.cookie_secure {
            return invalid(
                "cookie_samesite",
                "browsers reject SameSite=None without Secure; set cookie_secure = true",
            );
        }
        if self.cookie_partitioned && !self.cookie_secure {
            return invalid(
                "cookie_partitioned",
                "browsers reject Partitioned cookies without Secure; set cookie_secure = true",
            );
        }
        if !self.cookie_path.starts_with('/') {
            return invalid("cookie_path", "must start with `/`");
        }
        if self.cookie_age > MAX_COOKIE_AGE {
            return Err(ConfigError::Invalid {
                setting: "cookie_age",
                reason: format!("must be at most {MAX_COOKIE_AGE} seconds (about 110 years)"),
            });
        }
        if self.table.is_empty()
            || !self
                .table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return invalid("table", "must be letters, digits and `_` only");
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
        if !(0.0..=1.0).contains(&self.refresh_threshold) {
            return invalid("refresh_threshold", "must be a fraction between 0 and 1");
        }
        if self.rotation_grace > 60 {
            return invalid(
                "rotation_grace",
                "is bounded to 60 seconds: the old key stays usable for that long",
            );
        }
        if self.max_sessions_per_user == Some(0) {
            return invalid(
                "max_sessions_per_user",
                "must be at least 1 (leave it unset for no limit)",
            );
        }
        // Each of these is added to "now"; past MAX_COOKIE_AGE the sum leaves the calendar.
        for (setting, value) in [
            ("idle_timeout", self.idle_timeout),
            ("absolute_lifetime", self.absolute_lifetime),
            ("remember_me_age", Some(self.remember_me_age)),
        ] {
            if value.is_some_and(|v| v == 0 || v > MAX_COOKIE_AGE) {
                return Err(ConfigError::Invalid {
                    setting,
                    reason: format!(
                        "must be between 1 and {MAX_COOKIE_AGE} seconds (about 110 years); \
                         leave it unset for none"
                    ),
                });
            }
        }
        if self.data_format == DataFormat::Django
            && self.secret_key.is_none()
            && matches!(self.engine, Engine::Db | Engine::CachedDb | Engine::File)
        {
            return invalid(
                "secret_key",
                "data_format = \"django\" signs the data with Django's SECRET_KEY; set `secret_key` \
                 (`--secret-key`) to the Django app's SECRET_KEY",
            );
        }
        if self.max_session_bytes == 0 {
            return invalid(
                "max_session_bytes",
                "must be above 0 (the default is 65536, 64 KiB)",
            );
        }
        let in_process_cache =
            matches!(self.engine, Engine::Cache | Engine::CachedDb) && self.cache_url.is_none();
        let largest = u64::try_from(self.max_session_bytes).unwrap_or(u64::MAX);
        if in_process_cache && self.cache_max_bytes < largest.saturating_mul(CACHE_SHARDS) {
            return Err(ConfigError::Invalid {
                setting: "cache_max_bytes",
                reason: format!(
                    "must be at least 64 × max_session_bytes ({} bytes) so that each of the \
                     in-process cache's 64 shards holds a session of the largest size; raise \
                     cache_max_bytes or lower max_session_bytes",
                    largest.saturating_mul(CACHE_SHARDS)
                ),
            });
        }
        if self.store_timeout_ms == 0 {
            return invalid("store_timeout_ms", "must be above 0");
        }
        if self.hash_keys && self.rotation_grace > 0 {
            return invalid(
                "hash_keys",
                "cannot be combined with rotation_grace: the old record would point to the new \
                 session by its raw key, a live key in the store",
            );
        }
        if self.hash_keys && self.engine == Engine::SignedCookies {
            return invalid(
                "hash_keys",
                "the signed_cookies engine keeps the data in the cookie: there is no key to hash",
            );
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().chars().count() < MIN_ADMIN_TOKEN_LEN)
        {
            return invalid(
                "admin_token",
                "must be at least 16 characters: it is the only lock on the admin page \
                 (e.g. `openssl rand -hex 24`)",
            );
        }
        Ok(())
    }
}

/// The longest suffix a SQL store adds to `table` for the names it creates
/// (`<table>_user_user_id_idx`; see `engines::sql::Table`, whose test holds it to this).
pub(crate) const LONGEST_DERIVED_SUFFIX: &str = "_user_user_id_idx";

impl Settings {
    /// The database `database_url` names and its limit on identifier length, in bytes, when
    /// the engine keeps a table there and the database has one short enough to matter.
    fn identifier_limit(&self) -> Option<(&'static str, usize)> {
        if !matches!(self.engine, Engine::Db | Engine::CachedDb) {
            return None;
        }
        let scheme = self.database_url.as_deref()?.split(':').next()?;
        match scheme {
            "postgres" | "postgresql" => Some(("PostgreSQL", 63)),
            "mysql" | "mariadb" => Some(("MySQL", 64)),
            _ => None,
        }
    }
}

/// The shortest `admin_token` accepted: a guessable token would open every session.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_djangos() {
        let s = Settings::default();
        assert_eq!(s.cookie_name, "sessionid");
        assert_eq!(s.cookie_age, 1_209_600);
        assert_eq!(s.cookie_domain, None);
        assert_eq!(s.cookie_path, "/");
        assert!(!s.cookie_secure);
        assert!(s.cookie_httponly);
        assert_eq!(s.cookie_samesite, SameSite::Lax);
        assert!(!s.cookie_partitioned);
        assert!(!s.expire_at_browser_close);
        assert!(!s.save_every_request);
        assert_eq!(s.engine, Engine::Db);
        s.validate().unwrap();
    }

    #[test]
    fn toml_overrides_and_rejects_unknown_keys() {
        let s = Settings::from_toml_str(
            "cookie_name = \"sid\"\ncookie_age = 60\ncookie_samesite = \"strict\"\nengine = \"cache\"",
        )
        .unwrap();
        assert_eq!(s.cookie_name, "sid");
        assert_eq!(s.cookie_age, 60);
        assert_eq!(s.cookie_samesite, SameSite::Strict);
        assert_eq!(s.engine, Engine::Cache);
        let err = Settings::from_toml_str("cookie_nam = \"x\"").unwrap_err();
        assert!(err.to_string().contains("cookie_nam"), "{err}");
    }

    #[test]
    fn max_sessions_per_user_reads_from_toml_and_refuses_zero() {
        let s = Settings::from_toml_str("max_sessions_per_user = 3").unwrap();
        assert_eq!(s.max_sessions_per_user, Some(3));
        let err = Settings::from_toml_str("max_sessions_per_user = 0").unwrap_err();
        assert!(err.to_string().contains("max_sessions_per_user"), "{err}");
    }

    #[test]
    fn toml_accepts_djangos_samesite_spelling() {
        for (text, expected) in [
            ("Strict", SameSite::Strict),
            ("Lax", SameSite::Lax),
            ("lax", SameSite::Lax),
        ] {
            let s = Settings::from_toml_str(&format!("cookie_samesite = \"{text}\"")).unwrap();
            assert_eq!(s.cookie_samesite, expected, "{text}");
        }
        let none = Settings::from_toml_str("cookie_samesite = \"None\"\ncookie_secure = true");
        assert_eq!(none.unwrap().cookie_samesite, SameSite::None);
    }

    #[test]
    fn a_short_admin_token_is_refused_naming_the_setting() {
        let err = Settings::from_toml_str("admin_token = \"hunter2\"").unwrap_err();
        assert!(err.to_string().contains("admin_token"), "{err}");
        let s = Settings::from_toml_str("admin_token = \"0123456789abcdef\"").unwrap();
        assert_eq!(
            s.admin_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
    }

    #[test]
    fn host_prefix_requires_secure_root_path_and_no_domain() {
        let host = Settings::default().with_cookie_name("__Host-sid");
        assert!(host.validate().is_err());
        let host = host.with_cookie_secure(true);
        host.validate().unwrap();
        assert!(host
            .clone()
            .with_cookie_domain(Some("example.com".to_owned()))
            .validate()
            .is_err());
        assert!(host.with_cookie_path("/app").validate().is_err());
        let secure = Settings::default().with_cookie_name("__Secure-sid");
        assert!(secure.validate().is_err());
    }

    #[test]
    fn the_django_data_format_picks_djangos_codec_per_engine() {
        use crate::codec::Codec;
        let s = Settings::from_toml_str("data_format = \"django\"\nsecret_key = \"k\"").unwrap();
        assert!(matches!(s.codec(), Codec::Django { .. }));
        let file = s.clone().with_engine(Engine::File);
        assert!(matches!(file.codec(), Codec::Django { .. }));
        let cache = s.clone().with_engine(Engine::Cache);
        assert!(matches!(cache.codec(), Codec::DjangoCache));
        let cookies = s.with_engine(Engine::SignedCookies);
        assert!(matches!(cookies.codec(), Codec::Json));
        assert!(matches!(Settings::default().codec(), Codec::Json));

        let err = Settings::from_toml_str("data_format = \"django\"").unwrap_err();
        assert!(err.to_string().contains("secret_key"), "{err}");
        assert!("pickle".parse::<DataFormat>().is_err());
    }

    #[test]
    fn size_bounds_read_from_toml_and_refuse_what_cannot_work() {
        let s = Settings::default();
        assert_eq!(s.max_session_bytes, 65_536);
        assert_eq!(s.cache_max_bytes, 256 * 1024 * 1024);
        let s =
            Settings::from_toml_str("max_session_bytes = 1000\ncache_max_bytes = 64000").unwrap();
        assert_eq!((s.max_session_bytes, s.cache_max_bytes), (1000, 64_000));
        let err = Settings::from_toml_str("max_session_bytes = 0").unwrap_err();
        assert!(err.to_string().contains("max_session_bytes"), "{err}");
        let err =
            Settings::from_toml_str("engine = \"cache\"\ncache_max_bytes = 1000").unwrap_err();
        assert!(err.to_string().contains("cache_max_bytes"), "{err}");
        // A Redis cache is not bounded by the in-process cache's setting.
        Settings::from_toml_str(
            "engine = \"cache\"\ncache_url = \"redis://127.0.0.1\"\ncache_max_bytes = 1000",
        )
        .unwrap();
    }

    #[test]
    fn debug_of_settings_redacts_url_passwords() {
        let s = Settings::default()
            .with_database_url(Some("postgres://u:hunter2@h/db".to_owned()))
            .with_cache_url(Some("redis://:hunter2@h".to_owned()));
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("postgres://u:***@h/db"), "{debug}");
        assert!(debug.contains("redis://:***@h"), "{debug}");
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
            ("not a url", "not a url"),
            ("postgres:/u:hunter2@h", "***@h"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn a_table_whose_derived_names_exceed_the_identifier_limit_is_refused() {
        let on = |url: &str, table: &str| {
            Settings::default()
                .with_database_url(Some(url.to_owned()))
                .with_table(table)
                .validate()
        };
        let t63 = "t".repeat(63);
        let err = on("postgres://127.0.0.1/test", &t63)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`table`") && err.contains(&format!("{t63}_user_user_id_idx")),
            "{err}"
        );
        assert!(err.contains("at most 46 bytes"), "{err}");
        on("postgres://127.0.0.1/test", &"t".repeat(46)).unwrap();
        on("postgres://127.0.0.1/test", &"t".repeat(47)).unwrap_err();
        on("mysql://root@127.0.0.1/test", &"t".repeat(47)).unwrap();
        on("mysql://root@127.0.0.1/test", &"t".repeat(48)).unwrap_err();
        // SQLite has no such limit.
        on("sqlite://x.sqlite3", &t63).unwrap();
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Settings::default().with_secret_key(Some(Secret::new("hunter2")));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
