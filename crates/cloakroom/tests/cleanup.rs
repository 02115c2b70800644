//! The scheduled cleanup (`Sessions::start_cleanup`) against the real servers, two "app
//! servers" (two stores opened from the same settings, each with its own connections) per
//! engine: one clears at a time (the other's run reports `Skipped` while the lock is held),
//! expired sessions go within an interval and live ones stay, and a stopped or dropped
//! handle ends its task. (Built with every engine's feature: `required-features` in the
//! manifest.)

mod support;

use std::time::{Duration, Instant};

use cloakroom::cleanup::CLEANUP_LOCK;
use cloakroom::{
    engines, Backend, CleanupRun, Created, Engine, Record, SessionStore, Sessions, Settings,
};
use cloakroom_testkit::servers::Scratch;
use time::OffsetDateTime;

fn postgres_url() -> String {
    std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn mysql_url() -> String {
    std::env::var("CLOAKROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A table of this run's own: `cleanup_<pid>_<random>`.
fn table() -> String {
    support::unique("cleanup").replace('-', "_")
}

/// A well-formed session key (32 of `[a-z0-9]`).
fn key() -> String {
    cloakroom::key::generate().unwrap()
}

/// One app server: the engine the settings name, opened with connections of its own.
async fn server(settings: &Settings) -> (Backend, Sessions) {
    let backend = engines::open(settings)
        .await
        .unwrap()
        .into_server()
        .expect("a server-side engine");
    if let Some(migrate) = &backend.migrate {
        migrate.migrate().await.unwrap();
    }
    let sessions = Sessions::from_backend(backend.clone(), settings.clone()).unwrap();
    (backend, sessions)
}

/// Stores `n` sessions that expired a minute ago (where the engine keeps expired records) and
/// returns their keys.
async fn seed_expired(store: &dyn SessionStore, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for _ in 0..n {
        let key = key();
        let record = Record {
            data: "{}".into(),
            expires_at: OffsetDateTime::now_utc() - Duration::from_secs(60),
        };
        assert_eq!(store.create(&key, &record).await.unwrap(), Created::Stored);
        keys.push(key);
    }
    keys
}

/// Stores one session that lives for an hour.
async fn seed_live(store: &dyn SessionStore) -> String {
    let key = key();
    let record = Record {
        data: r#"{"live":true}"#.into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(3600),
    };
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Stored);
    key
}

/// How many of `keys` are still stored, live or not (`Scan::count` would count other runs'
/// sessions on a shared server).
async fn still_stored(backend: &Backend, keys: &[String]) -> usize {
    let scan = backend.scan.as_ref().expect("the engine scans");
    // Far in the past: every stored record reads as live, so `scan` lists them all.
    let long_ago = OffsetDateTime::now_utc() - Duration::from_secs(86_400);
    let mut cursor = None;
    let mut found = 0;
    loop {
        let batch = scan.scan(cursor.as_deref(), 500, long_ago).await.unwrap();
        found += batch
            .sessions
            .iter()
            .filter(|(k, _)| keys.contains(k))
            .count();
        match batch.next {
            Some(next) => cursor = Some(next),
            None => return found,
        }
    }
}

/// Fails unless session `key` is still live.
async fn assert_live(backend: &Backend, key: &str) {
    let loaded = backend.store.load(key, OffsetDateTime::now_utc()).await;
    let engine = backend.store.engine();
    assert!(
        loaded.unwrap().is_some(),
        "{engine}: the live session stays"
    );
}

fn cleared(run: &CleanupRun) -> Option<u64> {
    match run {
        CleanupRun::Cleared { count } => Some(*count),
        _ => None,
    }
}

/// The whole story on one engine. `keeps_expired`: the engine stores expired records until
/// something clears them (SQL, files); Redis drops them itself, so its runs clear 0.
async fn one_clears_at_a_time(settings: Settings, keeps_expired: bool) {
    let (a, a_sessions) = server(&settings).await;
    let (b, b_sessions) = server(&settings).await;
    let engine = a.store.engine();
    let expired = if keeps_expired {
        seed_expired(&*a.store, 3).await
    } else {
        Vec::new()
    };
    let live = seed_live(&*a.store).await;

    // Server A is in the middle of a run: it holds the cleanup lock.
    let lock = a.exclusive.as_ref().expect("a shared engine has a lock");
    let held = lock.try_lock(CLEANUP_LOCK).await.unwrap();
    let held = held.unwrap_or_else(|| panic!("{engine}: the lock is free at first"));
    let run = b_sessions.clear_expired_now().await.unwrap();
    assert!(
        matches!(run, CleanupRun::Skipped),
        "{engine}: B skips while A holds the lock, got {run:?}"
    );
    assert!(
        b.exclusive
            .as_ref()
            .unwrap()
            .try_lock(CLEANUP_LOCK)
            .await
            .unwrap()
            .is_none(),
        "{engine}: one holder at a time"
    );
    if keeps_expired {
        assert_eq!(
            still_stored(&b, &expired).await,
            3,
            "{engine}: B cleared nothing"
        );
    }

    // A lets go: B's next run clears, and leaves the live session alone.
    held.release().await.unwrap();
    let run = b_sessions.clear_expired_now().await.unwrap();
    let count = cleared(&run).unwrap_or_else(|| panic!("{engine}: B clears now, got {run:?}"));
    if keeps_expired {
        assert!(count >= 3, "{engine}: B cleared {count}, at least ours");
        assert_eq!(still_stored(&b, &expired).await, 0, "{engine}");
    } else {
        assert_eq!(count, 0, "{engine}: the server expires sessions itself");
    }
    assert_live(&a, &live).await;

    // On a schedule: both servers run every 200 ms; newly expired sessions go within a few
    // intervals, no run fails, and every run either cleared or skipped.
    let expired = if keeps_expired {
        seed_expired(&*a.store, 4).await
    } else {
        Vec::new()
    };
    let every = Duration::from_millis(200);
    let on_a = a_sessions.start_cleanup(every).unwrap();
    let on_b = b_sessions.start_cleanup(every).unwrap();
    let (mut reports_a, mut reports_b) = (on_a.reports(), on_b.reports());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut runs = 0;
    while runs < 6 {
        assert!(Instant::now() < deadline, "{engine}: runs keep coming");
        tokio::select! {
            r = reports_a.changed() => r.unwrap(),
            r = reports_b.changed() => r.unwrap(),
        }
        runs += 1;
        for run in [on_a.last_run(), on_b.last_run()].into_iter().flatten() {
            assert!(
                !matches!(run, CleanupRun::Failed(_)),
                "{engine}: a run failed: {run:?}"
            );
        }
    }
    if keeps_expired {
        assert_eq!(
            still_stored(&a, &expired).await,
            0,
            "{engine}: expired sessions went on schedule"
        );
    }
    assert_live(&a, &live).await;

    // Stopping ends the task: `stop` returns, and its report channel closes.
    tokio::time::timeout(Duration::from_secs(5), on_a.stop())
        .await
        .unwrap_or_else(|_| panic!("{engine}: stop returns once the task ended"));
    assert!(
        reports_a.changed().await.is_err(),
        "{engine}: A's task is gone"
    );
    // Dropping the handle ends it too.
    drop(on_b);
    tokio::time::timeout(Duration::from_secs(5), async {
        while reports_b.changed().await.is_ok() {}
    })
    .await
    .unwrap_or_else(|_| panic!("{engine}: a dropped handle's task ends"));

    // Each server has let go of the lock: it can be taken again.
    let again = lock.try_lock(CLEANUP_LOCK).await.unwrap();
    assert!(again.is_some(), "{engine}: no run kept the lock");
    again.unwrap().release().await.unwrap();
}

/// A holder that goes away without letting go (its task cancelled, its process killed) does
/// not keep the lock: the connection or file closes with it.
async fn a_dropped_lock_is_let_go(settings: Settings) {
    let (a, _) = server(&settings).await;
    let (b, _) = server(&settings).await;
    let engine = a.store.engine();
    let held = a.exclusive.as_ref().unwrap().try_lock(CLEANUP_LOCK).await;
    let held = held.unwrap().expect("free at first");
    drop(held);
    // The database notices the closed connection within moments.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let taken = b.exclusive.as_ref().unwrap().try_lock(CLEANUP_LOCK).await;
        if let Some(guard) = taken.unwrap() {
            guard.release().await.unwrap();
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{engine}: a dropped lock is let go"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn postgres() -> Settings {
    Settings::default()
        .with_database_url(Some(postgres_url()))
        .with_table(table())
}

fn mysql() -> Settings {
    Settings::default()
        .with_database_url(Some(mysql_url()))
        .with_table(table())
}

fn sqlite(dir: &Scratch) -> Settings {
    let url = format!("sqlite://{}", dir.join("sessions.sqlite3").display());
    Settings::default().with_database_url(Some(url))
}

fn files(dir: &Scratch) -> Settings {
    Settings::default()
        .with_engine(Engine::File)
        .with_file_path(Some(dir.to_path_buf()))
}

/// Drops the run's tables from the server database `settings` name.
async fn drop_tables(settings: &Settings) {
    let (url, t) = (
        settings.store.database_url.clone().unwrap(),
        &settings.store.table,
    );
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let drop = format!(r#"DROP TABLE IF EXISTS "{t}_user", "{t}""#);
        sqlx::query(&drop).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
        let drop = format!("DROP TABLE IF EXISTS `{t}_user`, `{t}`");
        sqlx::query(&drop).execute(&pool).await.unwrap();
    }
}

#[tokio::test]
async fn postgres_one_server_clears_at_a_time() {
    let settings = postgres();
    one_clears_at_a_time(settings.clone(), true).await;
    drop_tables(&settings).await;
}

#[tokio::test]
async fn mysql_one_server_clears_at_a_time() {
    let settings = mysql();
    one_clears_at_a_time(settings.clone(), true).await;
    drop_tables(&settings).await;
}

#[tokio::test]
async fn redis_one_server_runs_at_a_time_and_clears_nothing() {
    let settings = Settings::default()
        .with_engine(Engine::Cache)
        .with_cache_url(Some("redis://127.0.0.1:6379/0".to_owned()));
    one_clears_at_a_time(settings, false).await;
}

#[tokio::test]
async fn file_one_process_clears_at_a_time() {
    let dir = Scratch::new("cleanup-files");
    one_clears_at_a_time(files(&dir), true).await;
}

#[tokio::test]
async fn sqlite_one_process_clears_at_a_time() {
    let dir = Scratch::new("cleanup-sqlite");
    one_clears_at_a_time(sqlite(&dir), true).await;
}

#[tokio::test]
async fn postgres_lock_of_a_vanished_holder_is_let_go() {
    let settings = postgres();
    a_dropped_lock_is_let_go(settings.clone()).await;
    drop_tables(&settings).await;
}

#[tokio::test]
async fn mysql_lock_of_a_vanished_holder_is_let_go() {
    let settings = mysql();
    a_dropped_lock_is_let_go(settings.clone()).await;
    drop_tables(&settings).await;
}

#[tokio::test]
async fn file_and_sqlite_locks_of_a_vanished_holder_are_let_go() {
    let dir = Scratch::new("cleanup-drop");
    a_dropped_lock_is_let_go(files(&dir)).await;
    a_dropped_lock_is_let_go(sqlite(&dir)).await;
}

#[tokio::test]
async fn redis_lock_has_one_holder_until_released() {
    let settings = Settings::default()
        .with_engine(Engine::Cache)
        .with_cache_url(Some("redis://127.0.0.1:6379/0".to_owned()));
    let (a, _) = server(&settings).await;
    let lock = a.exclusive.as_ref().unwrap();
    let name = support::unique("lock");
    let first = lock.try_lock(&name).await.unwrap().expect("free at first");
    assert!(lock.try_lock(&name).await.unwrap().is_none());
    first.release().await.unwrap();
    let second = lock.try_lock(&name).await.unwrap().expect("let go");
    second.release().await.unwrap();
}

#[tokio::test]
async fn the_in_process_cache_clears_without_a_lock() {
    let settings = Settings::default().with_engine(Engine::Cache);
    let (backend, sessions) = server(&settings).await;
    assert!(
        backend.exclusive.is_none(),
        "one process's cache needs no lock"
    );
    let run = sessions.clear_expired_now().await.unwrap();
    assert!(cleared(&run).is_some(), "{run:?}");
}

#[tokio::test]
async fn cached_db_takes_its_databases_lock() {
    let dir = Scratch::new("cleanup-cached-db");
    let settings = sqlite(&dir).with_engine(Engine::CachedDb);
    let (backend, sessions) = server(&settings).await;
    let held = backend.exclusive.as_ref().expect("the database's lock");
    let held = held.try_lock(CLEANUP_LOCK).await.unwrap().unwrap();
    let run = sessions.clear_expired_now().await.unwrap();
    assert!(matches!(run, CleanupRun::Skipped), "{run:?}");
    held.release().await.unwrap();
}

#[tokio::test]
async fn start_cleanup_names_what_is_wrong() {
    let store = cloakroom::engines::memory::MemoryStore::new(1000);
    // A bare store: Sessions does not know it can clear.
    let sessions = Sessions::new(store, Settings::default()).unwrap();
    let err = sessions.start_cleanup(Duration::from_secs(60)).unwrap_err();
    assert!(err.to_string().contains("from_backend"), "{err}");
    let (_, sessions) = server(&Settings::default().with_engine(Engine::Cache)).await;
    let err = sessions.start_cleanup(Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("cleanup_interval_secs"), "{err}");
}
