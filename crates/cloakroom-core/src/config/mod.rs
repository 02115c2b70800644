//! Settings, with Django's names and defaults, in three groups by concern:
//!
//! | group | what it decides | examples |
//! |---|---|---|
//! | [`Settings::session`] ([`SessionSettings`]) | the cookie, the lifetime, the signing and size of one session: Django's settings and cloakroom's additions to them | `cookie_age`, `secret_key`, `idle_timeout`, `max_session_bytes` |
//! | [`Settings::resilience`] ([`ResilienceSettings`]) | what happens when the store is slow or down | `store_timeout_ms`, `on_store_error`, `breaker_threshold` |
//! | [`Settings::store`] ([`StoreSettings`]) | which engine keeps the sessions, and where | `engine`, `database_url`, `cache_url`, `table` |
//!
//! Build them in code (`Settings::default().with_cookie_secure(true)`: one `with_*` method per
//! setting, whatever its group), read them from a TOML file ([`Settings::from_toml_file`]; the
//! file stays flat, one key per setting), or let the `cloakroom` command fill them from flags
//! and `CLOAKROOM_*` environment variables.

mod resilience;
mod session;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

use crate::codec::Codec;
pub use crate::codec::DataFormat;
use crate::error::{ConfigError, FileError};
pub use crate::keys::MAX_COOKIE_AGE;
pub use crate::signing::Secret;
pub use resilience::{OnStoreError, ResilienceSettings};
pub use session::{
    SameSite, SessionSettings, Transport, DEFAULT_COOKIE_AGE, DEFAULT_HEADER_NAME,
    DEFAULT_MAX_SESSION_BYTES,
};
#[doc(hidden)]
pub use store::LONGEST_DERIVED_SUFFIX;
pub use store::{
    redact_url, Backend, Engine, StoreSettings, DEFAULT_CACHE_MAX_BYTES, DEFAULT_TABLE, SCHEMES,
};

/// Every cloakroom setting, grouped by concern (see the [module docs](self)).
///
/// `Debug` redacts the credentials in `database_url` and `cache_url` (see [`redact_url`]) and
/// every [`Secret`].
///
/// # Examples
/// ```
/// use cloakroom_core::{Engine, Settings};
///
/// let settings = Settings::from_toml_str("cookie_age = 3600\nengine = \"cache\"")?
///     .with_cookie_secure(true);
/// assert_eq!(settings.session.cookie_age, 3600);
/// assert_eq!(settings.store.engine, Engine::Cache);
///
/// // Numbers are plain literals: seconds, milliseconds, bytes, counts.
/// let settings = Settings::default()
///     .with_cookie_age(3600)
///     .with_idle_timeout(900)
///     .with_absolute_lifetime(None)
///     .with_store_timeout_ms(500)
///     .with_max_session_bytes(32 * 1024)
///     .with_breaker_threshold(5);
/// assert_eq!(settings.session.idle_timeout, Some(900));
/// # Ok::<(), cloakroom_core::ConfigError>(())
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(try_from = "Flat")]
#[non_exhaustive]
pub struct Settings {
    /// The cookie and Django settings: how the cookie looks, how long a session lives, how its
    /// data is signed and bounded.
    pub session: SessionSettings,
    /// Timeouts, the circuit breaker and the outage policy.
    pub resilience: ResilienceSettings,
    /// Engine wiring: which engine, its URL, its table, its in-process cache.
    pub store: StoreSettings,
}

/// The settings as a TOML file holds them: one flat table. Every group takes its own keys;
/// whatever is left is a name no setting has, refused rather than silently ignored (serde's
/// `deny_unknown_fields` does not work together with `flatten`).
#[derive(Deserialize)]
struct Flat {
    #[serde(flatten)]
    session: SessionSettings,
    #[serde(flatten)]
    resilience: ResilienceSettings,
    #[serde(flatten)]
    store: StoreSettings,
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

impl TryFrom<Flat> for Settings {
    type Error = String;
    fn try_from(flat: Flat) -> Result<Self, String> {
        if let Some(name) = flat.unknown.keys().next() {
            return Err(format!(
                "unknown setting `{name}`; the settings are listed in the README's Settings table \
                 (a demo setting such as `admin_token` belongs to `cloakroom demo`'s file)"
            ));
        }
        Ok(Self {
            session: flat.session,
            resilience: flat.resilience,
            store: flat.store,
        })
    }
}

// By hand, as each group: the destructuring makes a new group a compile error here.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            session,
            resilience,
            store,
        } = self;
        f.debug_struct("Settings")
            .field("session", session)
            .field("resilience", resilience)
            .field("store", store)
            .finish()
    }
}

/// One `with_*` setter per setting. A number takes its own type (`value: u64`), not
/// `impl Into<u64>`: with several integer types converting into the target, a plain literal
/// such as `with_cookie_age(3600)` would fall back to `i32` and not compile. Everything else
/// (strings, options, enums) takes `impl Into<T>`, where a literal has one way in.
macro_rules! with {
    ($(#[$doc:meta] $name:ident: $group:ident.$field:ident: $kind:ident $ty:ty;)*) => {
        $( with!(@one #[$doc] $name $group $field $kind $ty); )*
    };
    (@one #[$doc:meta] $name:ident $group:ident $field:ident into $ty:ty) => {
        #[$doc]
        #[must_use]
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$group.$field = value.into();
            self
        }
    };
    (@one #[$doc:meta] $name:ident $group:ident $field:ident number $ty:ty) => {
        #[$doc]
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$group.$field = value;
            self
        }
    };
}

impl Settings {
    with! {
        /// Sets `cookie_name`.
        with_cookie_name: session.cookie_name: into String;
        /// Sets `cookie_age` in seconds.
        with_cookie_age: session.cookie_age: number u64;
        /// Sets `cookie_domain`.
        with_cookie_domain: session.cookie_domain: into Option<String>;
        /// Sets `cookie_path`.
        with_cookie_path: session.cookie_path: into String;
        /// Sets `cookie_secure`.
        with_cookie_secure: session.cookie_secure: into bool;
        /// Sets `cookie_httponly`.
        with_cookie_httponly: session.cookie_httponly: into bool;
        /// Sets `cookie_samesite`.
        with_cookie_samesite: session.cookie_samesite: into SameSite;
        /// Sets `cookie_partitioned`.
        with_cookie_partitioned: session.cookie_partitioned: into bool;
        /// Sets `expire_at_browser_close`.
        with_expire_at_browser_close: session.expire_at_browser_close: into bool;
        /// Sets `save_every_request`.
        with_save_every_request: session.save_every_request: into bool;
        /// Sets `secret_key`.
        with_secret_key: session.secret_key: into Option<Secret>;
        /// Sets `secret_key_fallbacks` (older keys still accepted when reading, tried in order).
        with_secret_key_fallbacks: session.secret_key_fallbacks: into Vec<Secret>;
        /// Sets `data_format`.
        with_data_format: session.data_format: into DataFormat;
        /// Sets `idle_timeout` in seconds.
        with_idle_timeout: session.idle_timeout: into Option<u64>;
        /// Sets `absolute_lifetime` in seconds.
        with_absolute_lifetime: session.absolute_lifetime: into Option<u64>;
        /// Sets `refresh_threshold` (a fraction between 0 and 1).
        with_refresh_threshold: session.refresh_threshold: into f64;
        /// Sets `save_keeps_expiry` (saves keep the stored expiry within `refresh_threshold`).
        with_save_keeps_expiry: session.save_keeps_expiry: into bool;
        /// Sets `rotation_grace` in seconds (at most 60).
        with_rotation_grace: session.rotation_grace: number u64;
        /// Sets `remember_me_age` in seconds.
        with_remember_me_age: session.remember_me_age: number u64;
        /// Sets `hash_keys` (the store keeps only a SHA-256 of each key).
        with_hash_keys: session.hash_keys: into bool;
        /// Sets `max_session_bytes` (the largest encoded session).
        with_max_session_bytes: session.max_session_bytes: number usize;
        /// Sets `max_sessions_per_user` (at least 1; `None` for no limit).
        with_max_sessions_per_user: session.max_sessions_per_user: into Option<u32>;
        /// Sets `transport` (where the session key travels: cookie, header or both).
        with_transport: session.transport: into Transport;
        /// Sets `header_name` (the header that carries the key under the header transport).
        with_header_name: session.header_name: into String;
        /// Sets `encrypt_data` (the store keeps the session data encrypted).
        with_encrypt_data: session.encrypt_data: into bool;
        /// Sets `store_timeout_ms`.
        with_store_timeout_ms: resilience.store_timeout_ms: number u64;
        /// Sets `on_store_error`.
        with_on_store_error: resilience.on_store_error: into OnStoreError;
        /// Sets `lock_timeout_ms`.
        with_lock_timeout_ms: resilience.lock_timeout_ms: number u64;
        /// Sets `breaker_threshold` (0 turns the breaker off).
        with_breaker_threshold: resilience.breaker_threshold: number u32;
        /// Sets `breaker_cooldown_ms`.
        with_breaker_cooldown_ms: resilience.breaker_cooldown_ms: number u64;
        /// Sets `engine`.
        with_engine: store.engine: into Engine;
        /// Sets `database_url`.
        with_database_url: store.database_url: into Option<String>;
        /// Sets `table`.
        with_table: store.table: into String;
        /// Sets `cache_url`.
        with_cache_url: store.cache_url: into Option<String>;
        /// Sets `file_path`.
        with_file_path: store.file_path: into Option<PathBuf>;
        /// Sets `cache_capacity`.
        with_cache_capacity: store.cache_capacity: number u64;
        /// Sets `cache_max_bytes` (the in-process cache's bound in bytes).
        with_cache_max_bytes: store.cache_max_bytes: number u64;
        /// Sets `redis_client_cache_ms` (0 turns the Redis client-side cache off).
        with_redis_client_cache_ms: store.redis_client_cache_ms: number u64;
        /// Sets `redis_legacy_values` (Redis values without the header, for a rolling deploy).
        with_redis_legacy_values: store.redis_legacy_values: into bool;
        /// Sets `cleanup_interval_secs` (0 turns the scheduled cleanup off).
        with_cleanup_interval_secs: store.cleanup_interval_secs: number u64;
    }

    /// Reads settings from a TOML file; keys missing from the file keep their defaults.
    ///
    /// # Errors
    /// [`ConfigError::File`] when the file cannot be read, has unknown keys or wrong types;
    /// [`ConfigError::Invalid`] when a value cannot work.
    ///
    /// # Examples
    /// ```no_run
    /// // A `&str`, a `String`, a `PathBuf` or a `&Path`: anything that is a path.
    /// let settings = cloakroom_core::Settings::from_toml_file("cloakroom.toml")?;
    /// # Ok::<(), cloakroom_core::ConfigError>(())
    /// ```
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (settings, IgnoredExtra {}) = Self::from_toml_file_with(path)?;
        Ok(settings)
    }

    /// Reads settings from a TOML file that also holds an application's own settings `T` (a
    /// struct whose fields are the extra keys, beside cloakroom's in the same flat table):
    /// `T` takes its keys first, and any key neither knows is refused.
    ///
    /// # Errors
    /// As [`from_toml_file`](Self::from_toml_file).
    ///
    /// # Examples
    /// ```no_run
    /// #[derive(serde::Deserialize, Default)]
    /// #[serde(default)]
    /// struct App {
    ///     greeting: String,
    /// }
    /// let (settings, app) =
    ///     cloakroom_core::Settings::from_toml_file_with::<App>("app.toml")?;
    /// # Ok::<(), cloakroom_core::ConfigError>(())
    /// ```
    pub fn from_toml_file_with<T: DeserializeOwned>(
        path: impl AsRef<Path>,
    ) -> Result<(Self, T), ConfigError> {
        let path = path.as_ref();
        let file = |source| ConfigError::File {
            path: path.display().to_string(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file(FileError::Read(e)))?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::File { source, .. } => file(source),
            other => other,
        })
    }

    /// Reads settings from TOML text.
    ///
    /// # Errors
    /// [`ConfigError`] when the text is not valid TOML for these settings, or a value cannot work.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let (settings, IgnoredExtra {}) = Self::parse(text)?;
        Ok(settings)
    }

    fn parse<T: DeserializeOwned>(text: &str) -> Result<(Self, T), ConfigError> {
        /// The application's keys first, so cloakroom's refusal of unknown keys sees only
        /// what neither knows.
        #[derive(Deserialize)]
        struct WithExtra<T> {
            #[serde(flatten)]
            extra: T,
            #[serde(flatten)]
            settings: Settings,
        }
        let parsed: WithExtra<T> = toml::from_str(text).map_err(|e| ConfigError::File {
            path: "<toml>".into(),
            source: FileError::Toml(Box::new(name_the_setting(text, e))),
        })?;
        parsed.settings.validate()?;
        Ok((parsed.settings, parsed.extra))
    }

    /// The codec the data format asks for on this engine. Under `data_format = "django"`:
    /// Django's signed `session_data` for the `db`, `cached_db` and `file` engines, and Django's
    /// pickled cache value for the `cache` engine. Otherwise, and always for `signed_cookies`
    /// and `private_cookies` (which seal the cookie themselves), plain JSON.
    ///
    /// With `cached_db`, the cache in front of the database holds the database's text (so a
    /// Django app's cache entries are not shared, only its table).
    ///
    /// Under `encrypt_data` (server-side engines), the JSON encrypted
    /// ([`Codec::Encrypted`]).
    pub fn codec(&self) -> Codec {
        let session = &self.session;
        if let (true, Some(secret), false) = (
            session.encrypt_data,
            &session.secret_key,
            self.store.engine.is_client_side(),
        ) {
            return Codec::encrypted(secret, &session.secret_key_fallbacks);
        }
        match (session.data_format, &session.secret_key, self.store.engine) {
            (DataFormat::Django, Some(secret), Engine::Db | Engine::CachedDb | Engine::File) => {
                Codec::django(secret.clone(), session.secret_key_fallbacks.clone())
            }
            (DataFormat::Django, _, Engine::Cache) => Codec::DjangoCache,
            _ => Codec::Json,
        }
    }

    /// The bound on every store call.
    pub fn store_timeout(&self) -> Duration {
        self.resilience.store_timeout()
    }

    /// These settings pointed at the engine `url` names (see [`StoreSettings::point_at`]), and
    /// checked: what `cloakroom copy --from URL` opens.
    ///
    /// # Errors
    /// [`ConfigError::Url`] when the URL names no engine, [`ConfigError::Invalid`] when the
    /// result cannot work.
    pub fn for_url(&self, url: &str) -> Result<Self, ConfigError> {
        let mut settings = self.clone();
        settings.store.point_at(url)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks settings that cannot work, alone or together, naming the setting to change.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first setting found wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Self {
            session,
            resilience,
            store,
        } = self;
        session.validate()?;
        resilience.validate()?;
        store.validate()?;
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        if session.data_format == DataFormat::Django
            && session.secret_key.is_none()
            && matches!(store.engine, Engine::Db | Engine::CachedDb | Engine::File)
        {
            return invalid(
                "secret_key",
                "data_format = \"django\" signs the data with Django's SECRET_KEY; set `secret_key` \
                 (`--secret-key`) to the Django app's SECRET_KEY",
            );
        }
        let in_process_cache =
            matches!(store.engine, Engine::Cache | Engine::CachedDb) && store.cache_url.is_none();
        let largest = u64::try_from(session.max_session_bytes).unwrap_or(u64::MAX);
        let shards = store::CACHE_SHARDS;
        if in_process_cache && store.cache_max_bytes < largest.saturating_mul(shards) {
            return Err(ConfigError::Invalid {
                setting: "cache_max_bytes",
                reason: format!(
                    "must be at least 64 × max_session_bytes ({} bytes) so that each of the \
                     in-process cache's 64 shards holds a session of the largest size; raise \
                     cache_max_bytes or lower max_session_bytes",
                    largest.saturating_mul(shards)
                ),
            });
        }
        if store.engine.is_client_side() {
            if session.transport != Transport::Cookie {
                return invalid(
                    "transport",
                    &format!(
                        "the {} engine keeps the data in the cookie itself: its key cannot travel \
                         in a header; use a server-side engine (db, cache, cached_db, file) for \
                         transport = \"{}\"",
                        store.engine, session.transport
                    ),
                );
            }
            if session.encrypt_data {
                return invalid(
                    "encrypt_data",
                    &format!(
                        "the {} engine stores nothing on the server; encrypt_data is for \
                         server-side engines (private_cookies already encrypts the cookie)",
                        store.engine
                    ),
                );
            }
        }
        if session.hash_keys && store.engine.is_client_side() {
            return invalid(
                "hash_keys",
                &format!(
                    "the {} engine keeps the data in the cookie: there is no key to hash",
                    store.engine
                ),
            );
        }
        Ok(())
    }
}

/// `error` with the setting it is about named, when it is a value of the wrong type: through
/// `flatten`, the TOML reader loses the key (it says "invalid type: string, expected u64" and
/// no more), so each key is tried alone against each group to find the one refused. Runs only
/// on a file already refused.
fn name_the_setting(text: &str, error: toml::de::Error) -> toml::de::Error {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return error; // not TOML at all: the reader's own message has the line
    };
    for (key, value) in table {
        let alone = toml::Value::Table(toml::Table::from_iter([(key.clone(), value)]));
        let refused = SessionSettings::deserialize(alone.clone())
            .err()
            .or_else(|| ResilienceSettings::deserialize(alone.clone()).err())
            .or_else(|| StoreSettings::deserialize(alone).err());
        if let Some(refused) = refused {
            return serde::de::Error::custom(format!("setting `{key}`: {}", refused.message()));
        }
    }
    error
}

/// No extra settings: what [`Settings::from_toml_file`] reads beside cloakroom's.
#[derive(Deserialize)]
struct IgnoredExtra {}

#[cfg(test)]
mod tests;
