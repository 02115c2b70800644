//! cloakroom with each of its engines, opened from settings exactly as an app opens them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use axum::routing::get;
use axum::Router;
use cloakroom::store::{Created, Record, SessionStore, Updated};
use cloakroom::{Backing, Session, SessionLayer, Sessions, Settings, StoreError};
use time::OffsetDateTime;

use super::{stats_json, Result, ServeArgs, LOADS, PREFILL_DATA, SESSION_SECONDS, WRITES};

/// The settings of each cloakroom server, as TOML (`{dir}` and `{tag}` are filled in). Adding
/// an engine is one line here and one in `SERVERS`.
fn settings_toml(args: &ServeArgs) -> Option<String> {
    Some(match axum_twin(&args.server) {
        "cloakroom-memory" => r#"engine = "cache""#.to_owned(),
        "cloakroom-sqlite" => r#"database_url = "sqlite://{dir}/cloakroom.sqlite3""#.to_owned(),
        "cloakroom-postgres" => {
            let url = super::postgres_url();
            format!("database_url = \"{url}\"\ntable = \"{{tag}}_cr\"")
        }
        // Saves keep the stored expiry until refresh_threshold says it must move, so that
        // PostgreSQL's updates leave the indexed expire_date alone (HOT updates).
        "cloakroom-postgres-hot" => {
            let url = super::postgres_url();
            format!("database_url = \"{url}\"\ntable = \"{{tag}}_cr\"\nsave_keeps_expiry = true")
        }
        "cloakroom-redis" => format!("engine = \"cache\"\ncache_url = \"{}\"", args.redis_url()),
        // The data encrypted into the cookie, as actix-session's cookie store keeps it by
        // default (`CookieContentSecurity::Private`).
        "cloakroom-cookies" => {
            "engine = \"private_cookies\"\nsecret_key = \"bench-secret-bench-secret\"".to_owned()
        }
        // The same with the client-side cache on (loads answered from memory while Redis's
        // client tracking says no one else wrote the session).
        "cloakroom-redis-cached" => format!(
            "engine = \"cache\"\ncache_url = \"{}\"\nredis_client_cache_ms = 1000",
            args.redis_url()
        ),
        _ => return None,
    })
}

/// The axum server whose settings `server` runs with: itself, or the axum twin of a
/// `cloakroom-actix-…` server.
fn axum_twin(server: &str) -> &str {
    match server.strip_prefix("cloakroom-actix-") {
        Some(engine) => match engine {
            "memory" => "cloakroom-memory",
            "sqlite" => "cloakroom-sqlite",
            "postgres" => "cloakroom-postgres",
            "redis" => "cloakroom-redis",
            "cookies" => "cloakroom-cookies",
            _ => server,
        },
        None => server,
    }
}

/// The settings of `args.server`.
pub fn settings(args: &ServeArgs) -> Result<Settings> {
    let toml = settings_toml(args)
        .ok_or_else(|| format!("no cloakroom server named `{}`", args.server))?
        .replace("{dir}", &args.dir.display().to_string())
        .replace("{tag}", &args.tag);
    let settings = Settings::from_toml_str(&toml)?
        .with_cookie_age(SESSION_SECONDS)
        // Room for the one-million-session runs next to the cookie pool.
        .with_cache_capacity(2_000_000u64);
    Ok(settings)
}

async fn visits(session: Session) -> std::result::Result<String, cloakroom::Error> {
    Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
}

async fn read(session: Session) -> std::result::Result<String, cloakroom::Error> {
    Ok(session.get_or::<u64>("visits", 0)?.to_string())
}

/// `GET /slow?ms=N`: reads the session, then takes N milliseconds (a slow report, a
/// long-poll): the latency phase's slow handler.
async fn slow(
    session: Session,
    query: axum::extract::RawQuery,
) -> std::result::Result<String, cloakroom::Error> {
    let visits = session.get_or::<u64>("visits", 0)?;
    tokio::time::sleep(super::slow_for(query.0.as_deref())).await;
    Ok(visits.to_string())
}

/// The session machinery of `args.server`, its store prefilled; and how many were stored.
pub async fn sessions(args: &ServeArgs) -> Result<(Sessions, u64)> {
    let settings = settings(args)?;
    let server = match cloakroom::engines::open(&settings).await? {
        Backing::Server(server) => server,
        // Signed cookies: nothing stored on the server, nothing to prefill or count.
        cookies => return Ok((Sessions::from_backing(cookies, settings)?, 0)),
    };
    let (store, migrate) = (server.store, server.migrate);
    if let Some(migrate) = migrate {
        migrate.migrate().await?;
    }
    let stored = prefill(args, &settings, &store).await?;
    let store: Arc<dyn SessionStore> = if args.count_writes {
        Arc::new(Counting(store))
    } else {
        store
    };
    Ok((Sessions::from_arc(store, settings)?, stored))
}

/// The cloakroom app for `args.server`, with its store prefilled; and how many were stored.
pub async fn app(args: &ServeArgs) -> Result<(Router, u64)> {
    let (sessions, stored) = sessions(args).await?;
    let app = Router::new()
        .route("/visits", get(visits))
        .route("/read", get(read))
        .route("/slow", get(slow))
        .route("/__stats", get(|| async { stats_json() }))
        .layer(SessionLayer::new(sessions));
    Ok((app, stored))
}

/// Stores `args.prefill` sessions straight into the store (SQL engines in one statement).
async fn prefill(
    args: &ServeArgs,
    settings: &Settings,
    store: &Arc<dyn SessionStore>,
) -> Result<u64> {
    let n = args.prefill;
    if n == 0 {
        return Ok(0);
    }
    let url = settings.store.database_url.as_deref().unwrap_or_default();
    if axum_twin(&args.server) == "cloakroom-sqlite" {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let sql = format!(
            r#"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
               INSERT INTO "{t}" (session_key, session_data, expire_date)
               SELECT lower(hex(randomblob(16))), '{PREFILL_DATA}',
                      strftime('%Y-%m-%d %H:%M:%S', 'now', '+{SESSION_SECONDS} seconds') FROM c"#,
            t = settings.store.table
        );
        sqlx::query(&sql).execute(&pool).await?;
        pool.close().await;
        return Ok(n);
    }
    if matches!(
        axum_twin(&args.server),
        "cloakroom-postgres" | "cloakroom-postgres-hot"
    ) {
        let pool = sqlx::PgPool::connect(url).await?;
        let sql = format!(
            r#"INSERT INTO "{t}" (session_key, session_data, expire_date)
               SELECT md5(random()::text || g::text), '{PREFILL_DATA}',
                      now() + interval '{SESSION_SECONDS} seconds'
               FROM generate_series(1, {n}) g"#,
            t = settings.store.table
        );
        sqlx::query(&sql).execute(&pool).await?;
        pool.close().await;
        return Ok(n);
    }
    // Any other engine: its own `create`, many at a time.
    let record = Record {
        data: PREFILL_DATA.into(),
        expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(SESSION_SECONDS as i64),
    };
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 64;
    for w in 0..workers {
        let store = Arc::clone(store);
        let record = record.clone();
        let count = n / workers + u64::from(w < n % workers);
        tasks.spawn(async move {
            for _ in 0..count {
                let key = cloakroom::key::generate().map_err(|e| e.to_string())?;
                store
                    .create(&key, &record)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(n)
}

/// A store that counts the calls reaching the real one (`--count-writes`).
struct Counting(Arc<dyn SessionStore>);

#[async_trait]
impl SessionStore for Counting {
    fn engine(&self) -> &'static str {
        self.0.engine()
    }
    async fn load(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> std::result::Result<Option<Record>, StoreError> {
        LOADS.fetch_add(1, Ordering::Relaxed);
        self.0.load(key, now).await
    }
    async fn create(&self, key: &str, record: &Record) -> std::result::Result<Created, StoreError> {
        WRITES.fetch_add(1, Ordering::Relaxed);
        self.0.create(key, record).await
    }
    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> std::result::Result<Updated, StoreError> {
        WRITES.fetch_add(1, Ordering::Relaxed);
        self.0.update(key, expected, record, now).await
    }
    async fn delete(&self, key: &str) -> std::result::Result<(), StoreError> {
        WRITES.fetch_add(1, Ordering::Relaxed);
        self.0.delete(key).await
    }
    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> std::result::Result<Updated, StoreError> {
        WRITES.fetch_add(1, Ordering::Relaxed);
        self.0.touch(key, record, now).await
    }
}
