//! The engines, by driver family, and [`open`]: the one place that turns settings into an
//! engine.
//!
//! The in-process cache, the file engine, signed and private cookies and the two compositions
//! (`cached_db`, `migrating`) come from `cloakroom-core`; the SQL engines from `cloakroom-sql`; Redis from
//! `cloakroom-redis`. Each is here under the name it always had (`cloakroom::engines::sqlite`,
//! `cloakroom::engines::redis` …), behind its cargo feature.

use std::sync::Arc;

use cloakroom_core::config::{Backend as UrlFamily, Engine, Settings};
pub use cloakroom_core::engines::*;
use cloakroom_core::{Backend, Backing, ClientSide};
use cloakroom_core::{ClearExpired, ConfigError, SessionStore, UserIndex};

#[cfg(feature = "mysql")]
pub use cloakroom_sql::mysql;
#[cfg(feature = "postgres")]
pub use cloakroom_sql::postgres;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use cloakroom_sql::sql;
#[cfg(feature = "sqlite")]
pub use cloakroom_sql::sqlite;

/// The `cache` engine on Redis, Valkey and Redis Cluster (the `cloakroom-redis` crate).
#[cfg(feature = "redis")]
pub mod redis {
    pub use cloakroom_redis::*;
}

fn unsupported(what: &str, feature: &str) -> OpenError {
    OpenError::Config(ConfigError::Invalid {
        setting: "engine",
        reason: format!("{what} needs cloakroom built with the `{feature}` feature"),
    })
}

/// The database URL the `db` engine uses when none is given: a SQLite file in the working
/// folder, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://cloakroom.sqlite3";

async fn open_db(settings: &Settings) -> Result<Backend, OpenError> {
    let wiring = &settings.store;
    let url = wiring
        .database_url
        .as_deref()
        .unwrap_or(DEFAULT_DATABASE_URL);
    let backend = UrlFamily::of_url(url).filter(|b| b.engine() == Engine::Db);
    match backend {
        #[cfg(feature = "sqlite")]
        Some(UrlFamily::Sqlite) => {
            let store = Arc::new(
                sqlite::SqliteStore::connect(url)
                    .await?
                    .with_table(&wiring.table)?,
            );
            Ok(Backend::sql(store.clone()).with_exclusive(store))
        }
        #[cfg(feature = "postgres")]
        Some(UrlFamily::Postgres) => {
            let store = Arc::new(
                postgres::PostgresStore::connect(url)
                    .await?
                    .with_table(&wiring.table)?,
            );
            // LISTEN/NOTIFY carries live revocation between app servers.
            Ok(Backend::sql(store.clone())
                .with_exclusive(store.clone())
                .with_announce(store))
        }
        #[cfg(feature = "mysql")]
        Some(UrlFamily::MySql) => {
            let store = Arc::new(
                mysql::MySqlStore::connect(url)
                    .await?
                    .with_table(&wiring.table)?,
            );
            Ok(Backend::sql(store.clone()).with_exclusive(store))
        }
        Some(other) => Err(unsupported(
            &format!("a {url_scheme} database", url_scheme = scheme_of(url)),
            other.feature(),
        )),
        None => Err(OpenError::Config(ConfigError::Invalid {
            setting: "database_url",
            reason: format!(
                "`{}` is not a supported database; use sqlite://, postgres:// or mysql:// (mariadb://)",
                scheme_of(url)
            ),
        })),
    }
}

/// The scheme of `url`, for messages (never the credentials after it).
fn scheme_of(url: &str) -> &str {
    url.split(':').next().unwrap_or_default()
}

/// The `cache` engine on the server `cache_url` names, connected (a stopped server shows now).
async fn open_cache_server(settings: &Settings) -> Result<Backend, OpenError> {
    let url = settings.store.cache_url.as_deref().unwrap_or_default();
    #[cfg(feature = "redis")]
    {
        redis::check_url(url)?;
        let mut options = redis::RedisOptions::default();
        if settings.store.redis_client_cache_ms > 0 {
            options = options.with_client_cache(
                std::time::Duration::from_millis(settings.store.redis_client_cache_ms),
                usize::try_from(settings.store.cache_capacity).unwrap_or(usize::MAX),
            );
        }
        let store = redis::RedisStore::connect_with(url, &options)
            .await?
            .with_command_timeout(settings.store_timeout())
            // Django's pickles, the records of `Codec::DjangoCache` (see Settings::codec).
            .with_binary_values(settings.session.data_format == cloakroom_core::DataFormat::Django)
            .with_legacy_values(settings.store.redis_legacy_values);
        // Started here, explicitly: its task ends when the store is dropped.
        store.start_client_cache().await?;
        let store = Arc::new(store);
        // Pub/sub (sharded on a cluster) carries live revocation between app servers.
        Ok(Backend::server(store.clone())
            .with_exclusive(store.clone())
            .with_announce(store))
    }
    #[cfg(not(feature = "redis"))]
    Err(unsupported(
        &format!("cache_url `{}`", cloakroom_core::config::redact_url(url)),
        "redis",
    ))
}

/// The cache of the `cached_db` engine: Redis when `cache_url` names it, else in-process.
async fn open_db_cache(settings: &Settings) -> Result<Arc<dyn SessionStore>, OpenError> {
    match settings.store.cache_url.as_deref() {
        #[cfg(feature = "redis")]
        Some(url) => {
            redis::check_url(url)?;
            // Started in the background and failing fast while down: the app starts without
            // the cache, reads go to the database, and writes fail as store errors until the
            // cache answers (see cached_db: no copy may go stale). A reachable cache is waited
            // for, so the first requests do not meet a connection still opening. A short
            // timeout leaves the database most of the request's time when the cache hangs.
            let django = settings.session.data_format == cloakroom_core::DataFormat::Django;
            let store = redis::RedisStore::connect_lazy(url).await?;
            if !store.wait_connected(settings.store_timeout()).await {
                tracing::warn!("the session cache (`cache_url`) does not answer yet: sessions are read from the database, and changes fail under `on_store_error` until it does");
            }
            let store = store
                .with_session_prefix(redis::CACHED_DB_SESSION_PREFIX)
                .with_fail_fast(true)
                .with_binary_values(django)
                .with_legacy_values(settings.store.redis_legacy_values)
                .with_command_timeout(
                    (settings.store_timeout() / 4).max(std::time::Duration::from_millis(50)),
                );
            if django {
                // Django's own cache entries are pickles of the dict (see DjangoCacheCopy).
                return Ok(Arc::new(cached_db::DjangoCacheCopy::new(
                    Arc::new(store),
                    settings.codec(),
                )));
            }
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "redis"))]
        Some(url) => Err(unsupported(
            &format!("cache_url `{}`", cloakroom_core::config::redact_url(url)),
            "redis",
        )),
        #[cfg(feature = "memory")]
        None => Ok(Arc::new(memory::MemoryStore::with_limits(
            settings.store.cache_capacity,
            settings.store.cache_max_bytes,
        ))),
        #[cfg(not(feature = "memory"))]
        None => Err(unsupported(
            "the `cached_db` engine without a cache_url (the in-process cache)",
            "memory",
        )),
    }
}

/// The `cached_db` engine: the `db` engine's database, with a cache in front.
async fn open_cached_db(settings: &Settings) -> Result<Backend, OpenError> {
    let db = open_db(settings).await?;
    let cache = open_db_cache(settings).await?;
    let mut store = cached_db::CachedDbStore::new(db.store, cache);
    if let Some(clear) = db.clear.clone() {
        store = store.with_clear_expired(clear);
    }
    if let Some(users) = db.users.clone() {
        store = store.with_user_index(users);
    }
    let store = Arc::new(store);
    let mut backend = Backend::new(store.clone());
    backend.users = db.users.map(|_| store.clone() as Arc<dyn UserIndex>);
    backend.clear = db.clear.map(|_| store as Arc<dyn ClearExpired>);
    backend.migrate = db.migrate;
    // The database is what every app server shares, and what the cleanup clears.
    backend.exclusive = db.exclusive;
    // The database holds every session; the cache only some.
    backend.scan = db.scan;
    Ok(backend)
}

/// Opens the engine the settings name, connected and ready (but not migrated): a store on the
/// server with its abilities ([`Backing::Server`]), or, for `signed_cookies` and
/// `private_cookies`, the sealing of the data into the cookie ([`Backing::Cookie`]). [`Sessions::from_backing`] takes either.
///
/// [`Sessions::from_backing`]: cloakroom_core::Sessions::from_backing
///
/// # Errors
/// [`OpenError::Config`] when the settings name an engine or URL this build cannot use,
/// [`OpenError::Store`] when the server cannot be reached.
pub async fn open(settings: &Settings) -> Result<Backing, OpenError> {
    settings.validate()?;
    let backend = match settings.store.engine {
        Engine::Db => open_db(settings).await?,
        Engine::Cache if settings.store.cache_url.is_some() => open_cache_server(settings).await?,
        Engine::CachedDb => open_cached_db(settings).await?,
        #[cfg(feature = "memory")]
        Engine::Cache if settings.store.cache_url.is_none() => {
            let store = memory::MemoryStore::with_limits(
                settings.store.cache_capacity,
                settings.store.cache_max_bytes,
            );
            Backend::server(Arc::new(store))
        }
        #[cfg(feature = "file")]
        Engine::File => {
            let store = match &settings.store.file_path {
                Some(dir) => file::FileStore::new(
                    dir,
                    &settings.session.cookie_name,
                    settings.session.cookie_age,
                ),
                None => file::FileStore::in_temp_dir(
                    &settings.session.cookie_name,
                    settings.session.cookie_age,
                ),
            }?;
            let store = Arc::new(store);
            Backend::server(store.clone()).with_exclusive(store)
        }
        Engine::SignedCookies | Engine::PrivateCookies => {
            return open_client_side(settings).map(Backing::Cookie)
        }
        other => {
            return Err(unsupported(
                &format!("the `{other}` engine"),
                &other.to_string(),
            ))
        }
    };
    Ok(Backing::Server(backend))
}

/// The client-side engines: the data signed (`signed_cookies`) or encrypted
/// (`private_cookies`) into the cookie with `secret_key`.
fn open_client_side(settings: &Settings) -> Result<ClientSide, OpenError> {
    let engine = settings.store.engine;
    let secret = settings
        .session
        .secret_key
        .clone()
        .ok_or_else(|| ConfigError::Invalid {
            setting: "secret_key",
            reason: format!(
                "the {engine} engine seals the session into the cookie and needs a secret key: \
                 set `secret_key` in the config file, or pass `--secret-key`"
            ),
        })?;
    let (fallbacks, age, name) = (
        settings.session.secret_key_fallbacks.clone(),
        settings.session.cookie_age,
        settings.session.cookie_name.clone(),
    );
    Ok(if engine == Engine::PrivateCookies {
        private_cookie::PrivateCookies::new(secret, fallbacks, age, name)?.into()
    } else {
        cookie::SignedCookies::new(secret, fallbacks, age, name)?.into()
    })
}
