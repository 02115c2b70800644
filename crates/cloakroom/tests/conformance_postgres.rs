//! The store contract and PostgreSQL's specifics, on the machine's real server.
//!
//! The server is `CLOAKROOM_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! when it cannot be reached every test fails, naming it. This binary keeps its sessions in a
//! table of its own (`conf_pg_<pid>_<random>`), so it can run beside other test runs.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cloakroom::engines::postgres::PostgresStore;
use cloakroom::engines::sql::CLEAR_BATCH;
use cloakroom::{ClearExpired, Created, Record, SessionStore, StoreError, Updated};
use sqlx::postgres::{PgConnectOptions, PgPool};
use time::OffsetDateTime;

const PREFIX: &str = "conf_pg_";

fn url() -> String {
    std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A name no other run uses: `conf_pg_<pid>_<random>`, plus `suffix`.
fn unique(suffix: &str) -> String {
    static RUN: OnceLock<String> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let random = cloakroom::key::generate().unwrap();
        format!("{PREFIX}{}_{}", std::process::id(), &random[..8])
    });
    format!("{run}{suffix}")
}

/// A pool of the test's own, for the statements the store does not run.
async fn db() -> PgPool {
    PgPool::connect(&url()).await.unwrap()
}

async fn connect() -> PostgresStore {
    let url = url();
    let store = PostgresStore::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} (CLOAKROOM_TEST_POSTGRES_URL) is unreachable: {e}")
    });
    drop_leftovers(&db().await).await;
    store
}

/// Drops tables and schemas that earlier runs of this binary left behind (their process is
/// gone), so the test database does not fill up with them.
async fn drop_leftovers(pool: &PgPool) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let names: Vec<(String, String)> = sqlx::query_as(
            "SELECT 'TABLE', table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'conf\\_pg\\_%' \
             UNION ALL SELECT 'SCHEMA', schema_name::text FROM information_schema.schemata WHERE schema_name LIKE 'conf\\_pg\\_%'",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        for (kind, name) in names {
            let pid = name[PREFIX.len()..].split('_').next().unwrap_or_default();
            let alive = pid.parse::<u32>().map_or(true, |pid| {
                pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if !alive {
                // Another cleaner may race us; either one dropping it is enough.
                let _ = sqlx::query(&format!(r#"DROP {kind} IF EXISTS "{name}" CASCADE"#))
                    .execute(pool)
                    .await;
            }
        }
    })
    .await;
}

/// A store on a table of this run, migrated.
async fn store_on(suffix: &str) -> PostgresStore {
    let store = connect().await.with_table(&unique(suffix)).unwrap();
    store.migrate().await.unwrap();
    store
}

async fn store() -> Arc<PostgresStore> {
    Arc::new(store_on("").await)
}

cloakroom::conformance_tests!(store(), clear);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_are_held_by_their_user() {
    cloakroom::testing::index_entries_are_held_by_their_user(&*store().await).await;
}

fn record(data: &str, expires_at: OffsetDateTime) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at,
    }
}

/// Drops a session table and the user index whose foreign key points to it.
async fn drop_table(table: &str) {
    sqlx::query(&format!(
        r#"DROP TABLE IF EXISTS "{table}_user", "{table}""#
    ))
    .execute(&db().await)
    .await
    .unwrap();
}

#[tokio::test]
async fn migrate_twice_is_harmless() {
    let store = store_on("_twice").await;
    let key = cloakroom::key::generate().unwrap();
    let rec = record("{}", OffsetDateTime::now_utc() + Duration::from_secs(60));
    assert_eq!(store.create(&key, &rec).await.unwrap(), Created::Stored);
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(
        store.exists(&key).await.unwrap(),
        "a second migrate lost data"
    );
    drop_table(&unique("_twice")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_do_not_race() {
    let store = connect().await.with_table(&unique("_race")).unwrap();
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    drop_table(&unique("_race")).await;
}

/// Columns and indexes of `django_session` in `schema`, as the catalog describes them, with
/// the schema name taken out.
async fn describe(pool: &PgPool, schema: &str) -> Vec<String> {
    let columns: Vec<(String, String, Option<i32>, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, character_maximum_length, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'django_session' \
         ORDER BY ordinal_position",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'django_session' \
         ORDER BY indexname",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    columns
        .into_iter()
        .map(|(name, ty, len, null)| format!("{name} {ty}({len:?}) nullable={null}"))
        .chain(
            indexes
                .into_iter()
                .map(|(def,)| def.replace(&format!("{schema}."), "")),
        )
        .collect()
}

#[tokio::test]
async fn migrating_django_session_makes_djangos_table() {
    connect().await;
    let (ours, djangos) = (unique("_ours"), unique("_django"));
    for schema in [&ours, &djangos] {
        sqlx::query(&format!(r#"CREATE SCHEMA "{schema}""#))
            .execute(&db().await)
            .await
            .unwrap();
    }
    // Django's DDL, verbatim from `sqlmigrate sessions 0001` on PostgreSQL (docs/format.md §3).
    sqlx::raw_sql(&format!(
        r#"SET LOCAL search_path TO "{djangos}";
CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" timestamp with time zone NOT NULL);
CREATE INDEX "django_session_session_key_c0390e0f_like" ON "django_session" ("session_key" varchar_pattern_ops);
CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date");"#
    ))
    .execute(&db().await)
    .await
    .unwrap();
    let options = PgConnectOptions::from_str(&url())
        .unwrap()
        .options([("search_path", ours.as_str())]);
    let pool = PgPool::connect_with(options).await.unwrap();
    let base = url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = PostgresStore::connect(&format!("{base}{sep}options[search_path]={ours}"))
        .await
        .unwrap()
        .with_table("django_session")
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();

    let made = describe(&pool, &ours).await;
    assert_eq!(made, describe(&pool, &djangos).await);
    assert_eq!(
        made,
        [
            "session_key character varying(Some(40)) nullable=NO",
            "session_data text(None) nullable=NO",
            "expire_date timestamp with time zone(None) nullable=NO",
            "CREATE INDEX django_session_expire_date_a5c62663 ON django_session USING btree (expire_date)",
            "CREATE UNIQUE INDEX django_session_pkey ON django_session USING btree (session_key)",
            "CREATE INDEX django_session_session_key_c0390e0f_like ON django_session USING btree (session_key varchar_pattern_ops)",
        ]
    );
    for schema in [&ours, &djangos] {
        sqlx::query(&format!(r#"DROP SCHEMA "{schema}" CASCADE"#))
            .execute(&db().await)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn other_tables_get_readable_index_names() {
    let table = unique("_names");
    store_on("_names").await;
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname",
    )
    .bind(&table)
    .fetch_all(&db().await)
    .await
    .unwrap();
    let names: Vec<String> = names.into_iter().map(|(n,)| n).collect();
    assert_eq!(
        names,
        [
            format!("{table}_expire_date_idx"),
            format!("{table}_pkey"),
            format!("{table}_session_key_like"),
        ]
    );
    drop_table(&table).await;
}

fn assert_missing_table<T: std::fmt::Debug>(result: Result<T, StoreError>, table: &str) {
    match result {
        Err(e @ StoreError::MissingTable { .. }) => {
            let message = e.to_string();
            assert!(message.contains("cloakroom migrate"), "{message}");
            assert!(message.contains(table), "{message}");
        }
        other => panic!("expected MissingTable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_table_says_to_run_migrate() {
    let table = unique("_never_migrated");
    let store = connect().await.with_table(&table).unwrap();
    let now = OffsetDateTime::now_utc();
    let rec = record("{}", now + Duration::from_secs(60));
    let key = cloakroom::key::generate().unwrap();
    assert_missing_table(store.load(&key, now).await, &table);
    assert_missing_table(store.create(&key, &rec).await, &table);
    assert_missing_table(store.update(&key, b"{}", &rec, now).await, &table);
    assert_missing_table(store.delete(&key).await, &table);
    assert_missing_table(store.exists(&key).await, &table);
    assert_missing_table(store.clear_expired(now).await, &table);
    assert_missing_table(store.count_live(now).await, &table);
}

#[tokio::test]
async fn rewriting_identical_data_and_expiry_is_stored() {
    let store = store().await;
    let key = cloakroom::key::generate().unwrap();
    // Nanoseconds the column cannot keep: the stored value is what a rewrite writes again.
    let at = OffsetDateTime::now_utc() + Duration::from_nanos(3_600_000_000_123);
    let rec = record(r#"{"a":1}"#, at);
    store.create(&key, &rec).await.unwrap();
    for _ in 0..3 {
        let out = store
            .update(&key, &rec.data, &rec, OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(out, Updated::Stored);
    }
}

#[tokio::test]
async fn clear_expired_deletes_in_batches() {
    let table = unique("_clear");
    let store = store_on("_clear").await;
    let expired = 2 * CLEAR_BATCH + 7;
    sqlx::query(&format!(
        r#"INSERT INTO "{table}" (session_key, session_data, expire_date)
           SELECT 'expired' || g, '{{}}', now() - interval '1 day' FROM generate_series(1, $1) g"#
    ))
    .bind(expired)
    .execute(&db().await)
    .await
    .unwrap();
    let now = OffsetDateTime::now_utc();
    for _ in 0..3 {
        let key = cloakroom::key::generate().unwrap();
        store
            .create(&key, &record("{}", now + Duration::from_secs(3600)))
            .await
            .unwrap();
    }
    let cleared = store.clear_expired(now).await.unwrap();
    assert_eq!(cleared, u64::try_from(expired).unwrap());
    let left: i64 = sqlx::query_scalar(&format!(r#"SELECT COUNT(*) FROM "{table}""#))
        .fetch_one(&db().await)
        .await
        .unwrap();
    assert_eq!(left, 3, "live sessions were cleared");
    assert_eq!(store.count_live(now).await.unwrap(), 3);
    assert_eq!(store.clear_expired(now).await.unwrap(), 0);
    drop_table(&table).await;
}

#[tokio::test]
async fn settings_open_postgres_and_postgresql_urls() {
    for scheme in ["postgres", "postgresql"] {
        let url = url();
        let (_, rest) = url.split_once("://").unwrap();
        let url = format!("{scheme}://{rest}");
        let settings = cloakroom::Settings::default()
            .with_database_url(Some(url))
            .with_table(unique("_open"));
        let opened = cloakroom::engines::open(&settings)
            .await
            .unwrap()
            .into_server()
            .unwrap();
        assert_eq!(opened.store.engine(), "postgres");
        opened
            .migrate
            .expect("postgres migrates")
            .migrate()
            .await
            .unwrap();
        let clear = opened.clear.expect("postgres clears expired sessions");
        clear
            .clear_expired(OffsetDateTime::now_utc())
            .await
            .unwrap();
    }
    drop_table(&unique("_open")).await;
}

/// A touch moves `expire_date` alone: a trigger that refuses any write of `session_data` lets it
/// through, and stops a full update.
#[tokio::test]
async fn touch_never_writes_the_session_data() {
    let table = unique("_touch");
    let store = store_on("_touch").await;
    sqlx::raw_sql(&format!(
        r#"CREATE FUNCTION "{table}_frozen"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'session_data written'; END $$;
           CREATE TRIGGER "{table}_frozen" BEFORE UPDATE OF session_data ON "{table}" FOR EACH ROW EXECUTE FUNCTION "{table}_frozen"();"#
    ))
    .execute(&db().await)
    .await
    .unwrap();
    let key = cloakroom::key::generate().unwrap();
    let t = OffsetDateTime::now_utc();
    let data = r#"{"a":"é"}"#;
    store
        .create(&key, &record(data, t + Duration::from_secs(60)))
        .await
        .unwrap();
    let later = t + Duration::from_secs(3600);
    assert_eq!(
        store.touch(&key, &record(data, later), t).await.unwrap(),
        Updated::Stored
    );
    let loaded = store.load(&key, t).await.unwrap().unwrap();
    assert!((loaded.expires_at - later).abs() < time::Duration::milliseconds(1));
    assert!(
        store
            .update(&key, data.as_bytes(), &record(data, later), t)
            .await
            .is_err(),
        "the trigger does not see a write of session_data"
    );
    drop_table(&table).await;
    sqlx::query(&format!(r#"DROP FUNCTION IF EXISTS "{table}_frozen"()"#))
        .execute(&db().await)
        .await
        .unwrap();
}

/// What a client sent PostgreSQL, counted by [`WireCounter`] from the frontend messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// `Sync`: one per round trip (a query, a statement's preparation, or sqlx's ping, which
    /// is a bare `Sync`).
    syncs: u64,
    /// `Bind`: one per prepared statement run.
    binds: u64,
    /// `Parse`: one per statement prepared (a statement cache miss).
    parses: u64,
    /// `Query`: one per simple-protocol query (`BEGIN`, `COMMIT`, raw SQL).
    queries: u64,
}

impl Sent {
    /// What was sent after `before`.
    fn since(self, before: Self) -> Self {
        Self {
            syncs: self.syncs - before.syncs,
            binds: self.binds - before.binds,
            parses: self.parses - before.parses,
            queries: self.queries - before.queries,
        }
    }
}

/// A loopback TCP proxy in front of the test server that counts the frontend messages of every
/// connection through it (TLS off, so the messages can be read).
struct WireCounter {
    url: String,
    sent: Arc<std::sync::Mutex<Sent>>,
}

impl WireCounter {
    async fn start() -> Self {
        let real = PgConnectOptions::from_str(&url()).unwrap();
        let upstream = format!("{}:{}", real.get_host(), real.get_port());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(std::sync::Mutex::new(Sent::default()));
        let counts = Arc::clone(&sent);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(Self::relay(client, server, Arc::clone(&counts)));
            }
        });
        // The test server's URL with the proxy as its address and TLS off.
        let rest = url();
        let (scheme, rest) = rest.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!(
            "{scheme}://{}127.0.0.1:{port}/{path}{sep}sslmode=disable",
            user.unwrap_or_default()
        );
        Self { url, sent }
    }

    async fn relay(
        client: tokio::net::TcpStream,
        server: tokio::net::TcpStream,
        sent: Arc<std::sync::Mutex<Sent>>,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut client_rx, mut client_tx) = client.into_split();
        let (mut server_rx, mut server_tx) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        });
        let mut pending = Vec::new();
        let mut started = false;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match client_rx.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&chunk[..n]);
            // Whole messages: the startup message is a length and a body, every later one a
            // type byte, a length (counting itself) and a body.
            loop {
                let head = usize::from(started);
                let Some(len) = pending.get(head..head + 4) else {
                    break;
                };
                let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
                if pending.len() < head + len {
                    break;
                }
                if started {
                    let mut s = sent.lock().unwrap();
                    match pending[0] {
                        b'S' => s.syncs += 1,
                        b'B' => s.binds += 1,
                        b'P' => s.parses += 1,
                        b'Q' => s.queries += 1,
                        _ => {}
                    }
                }
                pending.drain(..head + len);
                started = true;
            }
            if server_tx.write_all(&chunk[..n]).await.is_err() {
                return;
            }
        }
    }

    fn sent(&self) -> Sent {
        *self.sent.lock().unwrap()
    }
}

/// Sends one request to `app`; returns the `Set-Cookie` pair, if any.
async fn get(app: &axum::Router, path: &str, cookie: Option<&str>) -> Option<String> {
    use tower::ServiceExt as _;
    let mut request = axum::http::Request::get(path);
    if let Some(c) = cookie {
        request = request.header(axum::http::header::COOKIE, c);
    }
    let response = app
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    response
        .headers()
        .get(axum::http::header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
}

/// Waits until every connection of the store's pool is back in it (the pool takes a
/// connection back as its statement ends; sqlx's own pool did so in a task of its own).
async fn settle(store: &PostgresStore) {
    for _ in 0..500 {
        if store.pool_status().idle == store.pool_status().size as usize {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the pool's connections never came back");
}

/// The pool `connect` builds spends one statement per store call: no ping before each use
/// (sqlx's default), no transaction around a statement, no statement prepared twice on a
/// connection. A returning visitor's counter is one load and one compare-and-swap save; a
/// read-only page is one load. Each statement is one round trip, one `Sync`: sqlx 0.8's own
/// pool pinged every connection it took back (a bare `Sync`, unconditional in
/// `PoolConnection`'s release), two per statement; the store's pool does not.
#[tokio::test]
async fn a_request_costs_one_statement_per_store_call_and_nothing_else() {
    use axum::routing::get as route;
    use cloakroom::{Session, SessionLayer, Sessions, Settings};
    async fn visits(session: Session) -> Result<String, cloakroom::Error> {
        Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
    }
    async fn read(session: Session) -> Result<String, cloakroom::Error> {
        Ok(session.get_or::<u64>("visits", 0)?.to_string())
    }

    let wire = WireCounter::start().await;
    let table = unique("_trips");
    let store = PostgresStore::connect(&wire.url)
        .await
        .unwrap()
        .with_table(&table)
        .unwrap();
    store.migrate().await.unwrap();
    let sessions = Sessions::new(store.clone(), Settings::default()).unwrap();
    let app = axum::Router::new()
        .route("/visits", route(visits))
        .route("/read", route(read))
        .layer(SessionLayer::new(sessions));

    let cookie = get(&app, "/visits", None).await.unwrap();
    // Each statement is prepared on first use (a round trip of its own), once per connection:
    // every pooled connection (the pool hands idle ones out in turn) runs both requests once.
    // Waiting for each release keeps the pool from opening more while one is still pinged.
    for _ in 0..2 * store.pool_status().size + 2 {
        settle(&store).await;
        get(&app, "/visits", Some(&cookie)).await;
        settle(&store).await;
        get(&app, "/read", Some(&cookie)).await;
    }

    settle(&store).await;
    let before = wire.sent();
    get(&app, "/visits", Some(&cookie)).await;
    settle(&store).await;
    let counter = wire.sent().since(before);
    let expected = Sent {
        syncs: 2,
        binds: 2,
        parses: 0,
        queries: 0,
    };
    assert_eq!(
        counter, expected,
        "counter: a SELECT and an UPDATE, one round trip each"
    );

    let before = wire.sent();
    assert_eq!(
        get(&app, "/read", Some(&cookie)).await,
        None,
        "no Set-Cookie"
    );
    settle(&store).await;
    let read_only = wire.sent().since(before);
    let expected = Sent {
        syncs: 1,
        binds: 1,
        parses: 0,
        queries: 0,
    };
    assert_eq!(
        read_only, expected,
        "read-only page: one SELECT, one round trip"
    );
    drop_table(&table).await;
}

/// A store whose connections carry `name` as their `application_name`, so that the test can
/// find (and terminate) exactly its backends in `pg_stat_activity`.
async fn named_store(
    name: &str,
    options: &cloakroom::engines::sql::ServerOptions,
) -> PostgresStore {
    let url = url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let table = unique(&format!("_{name}"));
    let store = PostgresStore::connect_with(&format!("{url}{sep}application_name={name}"), options)
        .await
        .unwrap()
        .with_table(&table)
        .unwrap();
    store.migrate().await.unwrap();
    store
}

/// Bursts of loads until the pool holds `n` open connections.
async fn open_connections(store: &PostgresStore, n: u32, now: OffsetDateTime) {
    for _ in 0..50 {
        if store.pool_status().size >= n {
            break;
        }
        let loads = (0..32).map(|_| store.load("nobody", now));
        for loaded in futures_util::future::join_all(loads).await {
            loaded.unwrap();
        }
    }
    settle(store).await;
}

/// The pool takes connections back without a round trip, so nothing proves an idle one alive
/// until it is used. Connections killed by the server (here `pg_terminate_backend`, as a
/// restart or an administrator would) cost at most the one call that met the first of them:
/// that failure marks the others suspect, and each is pinged, found dead and replaced as it
/// is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_cost_one_failed_call_and_are_replaced() {
    let name = format!("cr_term_{}", std::process::id());
    let store = named_store(&name, &Default::default()).await;
    let now = OffsetDateTime::now_utc();
    open_connections(&store, 4, now).await;
    assert!(store.pool_status().size >= 4, "{:?}", store.pool_status());

    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&db().await)
    .await
    .unwrap();
    assert!(killed.len() >= 4, "terminated {} backends", killed.len());
    // Until the backends have gone: their sockets are closed by then.
    for _ in 0..200 {
        let left: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&name)
                .fetch_one(&db().await)
                .await
                .unwrap();
        if left.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut failed = 0;
    for _ in 0..20 {
        if store.load("nobody", now).await.is_err() {
            failed += 1;
        }
    }
    assert!(
        failed <= 1,
        "{failed} calls failed on terminated connections"
    );
    let key = cloakroom::key::generate().unwrap();
    let expires = now + time::Duration::hours(1);
    assert_eq!(
        store.create(&key, &record("{}", expires)).await.unwrap(),
        Created::Stored
    );
    drop_table(&store_table(&name)).await;
}

/// The table [`named_store`] made for `name`.
fn store_table(name: &str) -> String {
    unique(&format!("_{name}"))
}

/// A statement cancelled while it waits (the core's `store_timeout` drops its future) leaves
/// its reply on the way; the connection goes back into the pool unclean, and the next call on
/// it reads its own answer, not the cancelled one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_does_not_answer_the_next_call() {
    let mut options = cloakroom::engines::sql::ServerOptions::default();
    options.max_connections = 1;
    let name = format!("cr_cancel_{}", std::process::id());
    let store = named_store(&name, &options).await;
    let table = store_table(&name);
    let now = OffsetDateTime::now_utc();
    let expires = now + time::Duration::hours(1);
    let (a, b) = (
        cloakroom::key::generate().unwrap(),
        cloakroom::key::generate().unwrap(),
    );
    store
        .create(&a, &record(r#"{"a":1}"#, expires))
        .await
        .unwrap();
    store
        .create(&b, &record(r#"{"b":2}"#, expires))
        .await
        .unwrap();

    // Another transaction holds `a`'s row, so the store's update of it waits until cancelled.
    let db = db().await;
    let mut blocker = db.begin().await.unwrap();
    sqlx::query(&format!(
        r#"SELECT 1 FROM "{table}" WHERE session_key = $1 FOR UPDATE"#
    ))
    .bind(&a)
    .execute(&mut *blocker)
    .await
    .unwrap();
    let newer = record(r#"{"a":2}"#, expires);
    let update = store.update(&a, br#"{"a":1}"#, &newer, now);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), update)
            .await
            .is_err(),
        "the update did not wait for the row lock"
    );
    blocker.rollback().await.unwrap();

    // The pool's one connection still has the update's reply to read.
    let loaded = store.load(&b, now).await.unwrap().unwrap();
    assert_eq!(&*loaded.data, br#"{"b":2}"#);
    let loaded = store.load(&a, now).await.unwrap().unwrap();
    assert_eq!(
        &*loaded.data, br#"{"a":2}"#,
        "the cancelled update still ran once the lock was free"
    );
    drop_table(&table).await;
}

/// The pool pings a connection only when it is suspect: a statement on a connection used a
/// moment ago is one `Sync`, on one idle past `ping_after_idle` two (the ping, then the
/// statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_connection_idle_past_ping_after_idle_is_pinged() {
    let wire = WireCounter::start().await;
    let mut options = cloakroom::engines::sql::ServerOptions::default();
    options.max_connections = 1;
    options.ping_after_idle = Duration::from_millis(300);
    let table = unique("_idle_ping");
    let store = PostgresStore::connect_with(&wire.url, &options)
        .await
        .unwrap()
        .with_table(&table)
        .unwrap();
    store.migrate().await.unwrap();
    let now = OffsetDateTime::now_utc();
    // Prepared on first use.
    store.load("nobody", now).await.unwrap();

    let before = wire.sent();
    store.load("nobody", now).await.unwrap();
    assert_eq!(wire.sent().since(before).syncs, 1, "a busy connection");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = wire.sent();
    store.load("nobody", now).await.unwrap();
    assert_eq!(
        wire.sent().since(before).syncs,
        2,
        "idle past ping_after_idle: a ping first"
    );
    drop_table(&table).await;
}

/// Idle connections beyond `min_connections` close after `idle_timeout` (the pool's reaper),
/// and the store opens new ones when it needs them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_idle_timeout_down_to_min_connections() {
    let mut options = cloakroom::engines::sql::ServerOptions::default();
    options.idle_timeout = Duration::from_millis(400);
    options.min_connections = 1;
    let name = format!("cr_idle_{}", std::process::id());
    let store = named_store(&name, &options).await;
    let now = OffsetDateTime::now_utc();
    open_connections(&store, 3, now).await;
    assert!(store.pool_status().size >= 3, "{:?}", store.pool_status());

    let mut size = store.pool_status().size;
    for _ in 0..40 {
        size = store.pool_status().size;
        if size == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        size,
        1,
        "idle connections left open: {:?}",
        store.pool_status()
    );
    open_connections(&store, 2, now).await;
    drop_table(&store_table(&name)).await;
}
