//! The store contract and MySQL/MariaDB's specifics, on the machine's real server.
//!
//! The server is `CLOAKROOM_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`); when
//! it cannot be reached every test fails, naming it. This binary keeps its sessions in a table
//! of its own (`conf_my_<pid>_<random>`), so it can run beside other test runs.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cloakroom::engines::mysql::MySqlStore;
use cloakroom::engines::sql::CLEAR_BATCH;
use cloakroom::{ClearExpired, Created, Record, SessionStore, StoreError, Updated};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use time::OffsetDateTime;

const PREFIX: &str = "conf_my_";

fn url() -> String {
    std::env::var("CLOAKROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A name no other run uses: `conf_my_<pid>_<random>`, plus `suffix`.
fn unique(suffix: &str) -> String {
    static RUN: OnceLock<String> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let random = cloakroom::key::generate().unwrap();
        format!("{PREFIX}{}_{}", std::process::id(), &random[..8])
    });
    format!("{run}{suffix}")
}

/// A pool of the test's own, for the statements the store does not run.
async fn db() -> MySqlPool {
    MySqlPool::connect(&url()).await.unwrap()
}

async fn connect() -> MySqlStore {
    let url = url();
    let store = MySqlStore::connect(&url).await.unwrap_or_else(|e| {
        panic!("MySQL/MariaDB at {url} (CLOAKROOM_TEST_MYSQL_URL) is unreachable: {e}")
    });
    drop_leftovers(&db().await).await;
    store
}

/// Drops tables and databases that earlier runs of this binary left behind (their process is
/// gone), so the test database does not fill up with them.
async fn drop_leftovers(pool: &MySqlPool) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let names: Vec<(String, String)> = sqlx::query_as(
            "SELECT 'TABLE', CAST(table_name AS CHAR) FROM information_schema.tables \
               WHERE table_schema = DATABASE() AND table_name LIKE 'conf\\_my\\_%' \
             UNION ALL SELECT 'DATABASE', CAST(schema_name AS CHAR) FROM information_schema.schemata \
               WHERE schema_name LIKE 'conf\\_my\\_%' \
             ORDER BY 2 DESC",
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
                // Another cleaner may race us; either one dropping it is enough. Names sort
                // descending, so a `<table>_user` index goes before the table it points to.
                let _ = sqlx::query(&format!("DROP {kind} IF EXISTS `{name}`"))
                    .execute(pool)
                    .await;
            }
        }
    })
    .await;
}

/// A store on a table of this run, migrated.
async fn store_on(suffix: &str) -> MySqlStore {
    let store = connect().await.with_table(&unique(suffix)).unwrap();
    store.migrate().await.unwrap();
    store
}

async fn store() -> Arc<MySqlStore> {
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
    sqlx::query(&format!("DROP TABLE IF EXISTS `{table}_user`, `{table}`"))
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

/// `django_session` in the pool's database: its columns and indexes as information_schema
/// describes them, then `SHOW CREATE TABLE`.
async fn describe(pool: &MySqlPool) -> Vec<String> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR), CAST(is_nullable AS CHAR), \
                CAST(column_key AS CHAR) \
         FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'django_session' \
         ORDER BY ordinal_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let indexes: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT CAST(index_name AS CHAR), CAST(column_name AS CHAR), CAST(non_unique AS SIGNED) \
         FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'django_session' \
         ORDER BY index_name, seq_in_index",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let (_, create): (String, String) = sqlx::query_as("SHOW CREATE TABLE django_session")
        .fetch_one(pool)
        .await
        .unwrap();
    columns
        .into_iter()
        .map(|(name, ty, null, key)| format!("{name} {ty} nullable={null} key={key}"))
        .chain(indexes.into_iter().map(|(index, column, non_unique)| {
            format!("index {index} ({column}) non_unique={non_unique}")
        }))
        .chain([create])
        .collect()
}

async fn pool_on_database(admin: &MySqlPool, database: &str) -> MySqlPool {
    sqlx::query(&format!("CREATE DATABASE `{database}`"))
        .execute(admin)
        .await
        .unwrap();
    let options = MySqlConnectOptions::from_str(&url())
        .unwrap()
        .database(database);
    MySqlPool::connect_with(options).await.unwrap()
}

#[tokio::test]
async fn migrating_django_session_makes_djangos_table() {
    connect().await;
    let (ours, djangos) = (unique("_ours"), unique("_django"));
    let ours_pool = pool_on_database(&db().await, &ours).await;
    let djangos_pool = pool_on_database(&db().await, &djangos).await;
    // Django's DDL, verbatim from its MySQL schema editor (docs/format.md §3).
    sqlx::raw_sql(
        "CREATE TABLE `django_session` (`session_key` varchar(40) NOT NULL PRIMARY KEY, `session_data` longtext NOT NULL, `expire_date` datetime(6) NOT NULL);
CREATE INDEX `django_session_expire_date_a5c62663` ON `django_session` (`expire_date`);",
    )
    .execute(&djangos_pool)
    .await
    .unwrap();
    // The test server's URL on database `ours`.
    let base = url();
    let (base, query) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _) = base.rsplit_once('/').unwrap();
    let store = MySqlStore::connect(&format!("{server}/{ours}?{query}"))
        .await
        .unwrap()
        .with_table("django_session")
        .unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();

    let made = describe(&ours_pool).await;
    assert_eq!(made, describe(&djangos_pool).await);
    assert_eq!(
        made[..5],
        [
            "session_key varchar(40) nullable=NO key=PRI",
            "session_data longtext nullable=NO key=",
            "expire_date datetime(6) nullable=NO key=MUL",
            "index django_session_expire_date_a5c62663 (expire_date) non_unique=1",
            "index PRIMARY (session_key) non_unique=0",
        ]
    );
    for database in [&ours, &djangos] {
        sqlx::query(&format!("DROP DATABASE `{database}`"))
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
        "SELECT DISTINCT CAST(index_name AS CHAR) FROM information_schema.statistics \
         WHERE table_schema = DATABASE() AND table_name = ?",
    )
    .bind(&table)
    .fetch_all(&db().await)
    .await
    .unwrap();
    let mut names: Vec<String> = names.into_iter().map(|(n,)| n).collect();
    names.sort();
    assert_eq!(
        names,
        ["PRIMARY".to_owned(), format!("{table}_expire_date_idx")]
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

/// Regression: with a plain `session_data = ?`, a case-insensitive, accent-insensitive,
/// PAD SPACE collation let a stale `expected` match and overwrite newer data.
#[tokio::test]
async fn compare_and_swap_is_byte_exact_under_a_case_insensitive_collation() {
    let table = unique("_ci");
    let store = store_on("_ci").await;
    // Whatever the server's default, give the table the collation that sets the trap.
    sqlx::query(&format!(
        "ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    ))
    .execute(&db().await)
    .await
    .unwrap();
    let key = cloakroom::key::generate().unwrap();
    let at = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let stored = r#"{"a":"x","b":"é"}"#;
    store.create(&key, &record(stored, at)).await.unwrap();

    let stale = [
        r#"{"a":"X","b":"é"}"#,
        r#"{"a":"x","b":"e"}"#,
        r#"{"a":"x","b":"é"} "#,
    ];
    for expected in stale {
        // The trap is real: the column's own `=` calls them equal.
        let equal: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM `{table}` WHERE session_key = ? AND session_data = ?"
        ))
        .bind(&key)
        .bind(expected)
        .fetch_one(&db().await)
        .await
        .unwrap();
        assert_eq!(equal, 1, "collation does not fold `{expected}`");

        let out = store
            .update(
                &key,
                expected.as_bytes(),
                &record(r#"{"a":"y"}"#, at),
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        match out {
            Updated::Conflict(current) => assert_eq!(current.data, stored),
            other => panic!("stale `{expected}` answered {other:?}, not Conflict"),
        }
    }
    let out = store
        .update(
            &key,
            stored.as_bytes(),
            &record(r#"{"a":"y"}"#, at),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(out, Updated::Stored);
    assert_eq!(
        store
            .load(&key, OffsetDateTime::now_utc())
            .await
            .unwrap()
            .unwrap()
            .data,
        r#"{"a":"y"}"#
    );
    drop_table(&table).await;
}

/// Regression guard: MySQL reports *changed* rows unless the client asks for found rows, and
/// then a save that changes nothing would read as a lost race, forever.
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
async fn expiry_round_trips_as_the_utc_wall_clock() {
    let store = store().await;
    let key = cloakroom::key::generate().unwrap();
    let at = time::macros::datetime!(2099-01-01 00:00:00.25 UTC);
    store.create(&key, &record("{}", at)).await.unwrap();
    let wall: String = sqlx::query_scalar(&format!(
        "SELECT CAST(expire_date AS CHAR) FROM `{}` WHERE session_key = ?",
        unique("")
    ))
    .bind(&key)
    .fetch_one(&db().await)
    .await
    .unwrap();
    assert_eq!(wall, "2099-01-01 00:00:00.250000");
    let loaded = store
        .load(&key, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.expires_at, at);
}

#[tokio::test]
async fn clear_expired_deletes_in_batches() {
    let table = unique("_clear");
    let store = store_on("_clear").await;
    let expired = 2 * CLEAR_BATCH + 7;
    // 0..99_999 from five cross-joined digit tables: portable, no recursion limits.
    let digit = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL \
                 SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL \
                 SELECT 8 UNION ALL SELECT 9)";
    sqlx::query(&format!(
        "INSERT INTO `{table}` (session_key, session_data, expire_date) \
         SELECT CONCAT('expired', n), '{{}}', '2000-01-01' FROM \
           (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d AS n \
            FROM {digit} a, {digit} b, {digit} c, {digit} e, {digit} f) s \
         WHERE n < ?"
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
    let left: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM `{table}`"))
        .fetch_one(&db().await)
        .await
        .unwrap();
    assert_eq!(left, 3, "live sessions were cleared");
    assert_eq!(store.count_live(now).await.unwrap(), 3);
    assert_eq!(store.clear_expired(now).await.unwrap(), 0);
    drop_table(&table).await;
}

#[tokio::test]
async fn settings_open_mysql_and_mariadb_urls() {
    for scheme in ["mysql", "mariadb"] {
        let url = url();
        let (_, rest) = url.split_once("://").unwrap();
        let settings = cloakroom::Settings::default()
            .with_database_url(Some(format!("{scheme}://{rest}")))
            .with_table(unique("_open"));
        let opened = cloakroom::engines::open(&settings)
            .await
            .unwrap()
            .into_server()
            .unwrap();
        assert_eq!(opened.store.engine(), "mysql");
        opened
            .migrate
            .expect("mysql migrates")
            .migrate()
            .await
            .unwrap();
        let clear = opened.clear.expect("mysql clears expired sessions");
        clear
            .clear_expired(OffsetDateTime::now_utc())
            .await
            .unwrap();
    }
    drop_table(&unique("_open")).await;
}
