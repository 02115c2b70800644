//! tower-sessions 0.14 with the stores published for it: its MemoryStore, the sqlx stores
//! (SQLite on sqlx's defaults and on WAL + `synchronous = NORMAL`; PostgreSQL) and the Redis
//! store on a fred pool, each set up as its README shows.

use std::str::FromStr;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use super::{stats_json, Result, ServeArgs, LOADS, SESSION_SECONDS, WRITES};

type Handler = std::result::Result<String, StatusCode>;

fn failed<E: std::fmt::Display>(e: E) -> StatusCode {
    eprintln!("session error: {e}");
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn visits(session: Session) -> Handler {
    let n: u64 = session.get("visits").await.map_err(failed)?.unwrap_or(0);
    session.insert("visits", n + 1).await.map_err(failed)?;
    Ok((n + 1).to_string())
}

async fn read(session: Session) -> Handler {
    let n: u64 = session.get("visits").await.map_err(failed)?.unwrap_or(0);
    Ok(n.to_string())
}

/// `GET /slow?ms=N`: reads the session, then takes N milliseconds.
async fn slow(session: Session, query: axum::extract::RawQuery) -> Handler {
    let n: u64 = session.get("visits").await.map_err(failed)?.unwrap_or(0);
    tokio::time::sleep(super::slow_for(query.0.as_deref())).await;
    Ok(n.to_string())
}

fn router<S: SessionStore + Clone>(store: S, count: bool) -> Router {
    let routes = Router::new()
        .route("/visits", get(visits))
        .route("/read", get(read))
        .route("/slow", get(slow))
        .route("/__stats", get(|| async { stats_json() }));
    let expiry = Expiry::OnInactivity(Duration::seconds(SESSION_SECONDS as i64));
    if count {
        routes.layer(
            SessionManagerLayer::new(Counting(store))
                .with_secure(false)
                .with_expiry(expiry),
        )
    } else {
        routes.layer(
            SessionManagerLayer::new(store)
                .with_secure(false)
                .with_expiry(expiry),
        )
    }
}

async fn prefill<S: SessionStore>(store: &S, n: u64) -> Result<u64> {
    for _ in 0..n {
        let mut record = Record {
            id: Id::default(),
            data: [("visits".to_owned(), serde_json::Value::from(1))].into(),
            expiry_date: OffsetDateTime::now_utc() + Duration::seconds(SESSION_SECONDS as i64),
        };
        store.create(&mut record).await?;
    }
    Ok(n)
}

/// The tower-sessions app for `args.server`.
pub async fn app(args: &ServeArgs) -> Result<(Router, u64)> {
    let count = args.count_writes;
    let db = args.dir.join("tower-sessions.sqlite3");
    Ok(match args.server.as_str() {
        "tower-sessions-memory" => {
            let store = MemoryStore::default();
            let n = prefill(&store, args.prefill).await?;
            (router(store, count), n)
        }
        "tower-sessions-sqlite" => {
            // sqlx's defaults: rollback journal, synchronous = FULL, a pool of 10.
            let pool =
                sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display())).await?;
            let store = SqliteStore::new(pool);
            store.migrate().await?;
            (router(store, count), 0)
        }
        "tower-sessions-sqlite-wal" => {
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            let pool = sqlx::SqlitePool::connect_with(options).await?;
            let store = SqliteStore::new(pool);
            store.migrate().await?;
            (router(store, count), 0)
        }
        "tower-sessions-postgres" => {
            let pool = sqlx::PgPool::connect(&super::postgres_url()).await?;
            let store = PostgresStore::new(pool).with_table_name(format!("{}_ts", args.tag))?;
            store.migrate().await?;
            (router(store, count), 0)
        }
        "tower-sessions-redis" => {
            let pool = Pool::new(Config::from_url(&args.redis_url())?, None, None, None, 6)?;
            let _connection = pool.connect();
            pool.wait_for_connect().await?;
            let store = RedisStore::new(pool);
            (router(store, count), 0)
        }
        other => return Err(format!("no tower-sessions server named `{other}`").into()),
    })
}

/// A store that counts the calls reaching the real one (`--count-writes`).
#[derive(Debug, Clone)]
struct Counting<S>(S);

#[async_trait]
impl<S: SessionStore> SessionStore for Counting<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        WRITES.fetch_add(1, Ordering::Relaxed);
        self.0.create(record).await
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        WRITES.fetch_add(1, Ordering::Relaxed);
        self.0.save(record).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        LOADS.fetch_add(1, Ordering::Relaxed);
        self.0.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        WRITES.fetch_add(1, Ordering::Relaxed);
        self.0.delete(id).await
    }
}
