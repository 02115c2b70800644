//! The scheduled cleanup (`Sessions::start_cleanup`) against the real servers, two "app
//! servers" (two stores opened from the same settings, each with its own connections) per
//! engine: one clears at a time (the other's run reports `Skipped` while the lock is held),
//! expired sessions go within an interval and live ones stay, and a stopped or dropped
//! handle ends its task. While somebody subscribes to events, the sweep reports each session it
//! deletes as `Expired` (with its user where the SQL index knows it), ends the waits on it, and
//! says nothing of live sessions; nobody subscribed, it runs the counting statement only.
//! Redis reports its own expiries through keyspace notifications, heard by the live listener.
//! The tests that measure the delay from expiry to event print it:
//!
//! ```text
//! cargo nextest run -p cloakroom --all-features --test cleanup expired --success-output immediate
//! ```
//!
//! (Built with every engine's feature: `required-features` in the manifest.)

mod support;

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cloakroom::advanced::hashed::stored_key;
use cloakroom::cleanup::CLEANUP_LOCK;
use cloakroom::clock::ManualClock;
use cloakroom::live::wire_id;
use cloakroom::{
    engines, Backend, CleanupRun, ClearExpired, ClearedSession, CookieAction, Created, Ended,
    Engine, Event, EventKind, Expiry, Record, Session, SessionStore, Sessions, Settings,
    StoreError,
};
use cloakroom_testkit::servers::Scratch;
use time::OffsetDateTime;
use tokio::sync::broadcast;

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

// ---- Expired events ----

/// One request carrying `cookie`: loads, runs `handler`, saves; returns the session (as a
/// WebSocket handler keeps it) and the cookie's key afterwards.
async fn request(
    sessions: &Sessions,
    cookie: Option<&str>,
    handler: impl FnOnce(&Session),
) -> (Session, String) {
    let lazy = sessions.start(cookie);
    let session = lazy.load().await.unwrap();
    handler(&session);
    let outcome = lazy.commit(200).await.unwrap();
    let key = match outcome.cookie {
        CookieAction::Set { value, .. } => value,
        other => panic!("a new session sets its cookie, got {other:?}"),
    };
    (session, key)
}

/// A session saved now that lives `secs`, logged in as `user` if given.
async fn short_session(sessions: &Sessions, user: Option<&str>, secs: u64) -> (Session, String) {
    request(sessions, None, |s| {
        match user {
            Some(user) => s.login_as(user, "backend", "").unwrap(),
            None => s.insert("cart", 1).unwrap(),
        }
        s.set_expiry(Expiry::AfterEachSave(Duration::from_secs(secs)))
            .unwrap();
    })
    .await
}

/// The index id of the session whose cookie holds `key`, as events name it by digest.
fn index_id(settings: &Settings, key: &str) -> String {
    if settings.session.hash_keys {
        stored_key(key)
    } else {
        key.to_owned()
    }
}

fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<(EventKind, String, Option<String>)> {
    let mut seen = vec![];
    while let Ok(e) = rx.try_recv() {
        seen.push((e.kind, e.id, e.user_id));
    }
    seen.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
    seen
}

/// The sweep on an engine that keeps expired records (SQL, files), on a clock moved by hand:
/// ana's and an anonymous cart's sessions expire, bob's lives on. A subscriber gets one
/// `Expired` per deleted session, named by the digest of its index id, with the user where
/// `users_known` (the SQL index, read in the delete's statement); ana's waiting `ended()`
/// resolves as `Expired` from the sweep (its own timer would wait for the real minute) and is
/// reported once; bob's wait goes on and nothing names his session.
async fn the_sweep_reports_each_expired_session(settings: Settings, users_known: bool) {
    let clock = ManualClock::starting_now();
    let (_, sessions) = server(&settings).await;
    let sessions = sessions.with_clock(clock.clone());
    let engine = sessions.engine();
    let (ana, ana_key) = short_session(&sessions, Some("ana"), 60).await;
    let (_, cart_key) = short_session(&sessions, None, 60).await;
    let (bob, _) = short_session(&sessions, Some("bob"), 3600).await;
    let ana_id = sessions.sessions_of("ana").await.unwrap()[0].id.clone();
    assert_eq!(ana_id, index_id(&settings, &ana_key), "{engine}");
    let bob_id = sessions.sessions_of("bob").await.unwrap()[0].id.clone();

    let mut events = sessions.events();
    let (ana_ends, bob_ends) = (tokio::spawn(ana.ended()), tokio::spawn(bob.ended()));
    // The waits' first check of the store is done: they sleep until the (real) minute.
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.advance(Duration::from_secs(61));
    let run = sessions.clear_expired_now().await.unwrap();
    assert_eq!(cleared(&run), Some(2), "{engine}: {run:?}");
    let ana_user = users_known.then(|| "ana".to_owned());
    let mut expected = vec![
        (EventKind::Expired, wire_id(&ana_id), ana_user),
        (
            EventKind::Expired,
            wire_id(&index_id(&settings, &cart_key)),
            None,
        ),
    ];
    expected.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
    let ended = tokio::time::timeout(Duration::from_secs(2), ana_ends).await;
    assert_eq!(
        ended.expect("the sweep ends the wait").unwrap(),
        Ended::Expired,
        "{engine}"
    );
    assert_eq!(drain(&mut events), expected, "{engine}: one event each");
    assert!(
        expected.iter().all(|(_, id, _)| *id != wire_id(&bob_id)),
        "{engine}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!bob_ends.is_finished(), "{engine}: bob's session lives on");
    bob_ends.abort();
    // A second sweep finds nothing: no event.
    let run = sessions.clear_expired_now().await.unwrap();
    assert_eq!(cleared(&run), Some(0), "{engine}");
    assert_eq!(drain(&mut events), vec![], "{engine}");
}

#[tokio::test]
async fn sqlite_sweep_sends_expired_events_with_the_user() {
    let dir = Scratch::new("expired-sqlite");
    let mut settings = sqlite(&dir);
    settings.session.hash_keys = true;
    the_sweep_reports_each_expired_session(settings, true).await;
}

#[tokio::test]
async fn postgres_sweep_sends_expired_events_with_the_user() {
    let settings = postgres();
    the_sweep_reports_each_expired_session(settings.clone(), true).await;
    drop_tables(&settings).await;
}

#[tokio::test]
async fn mariadb_sweep_sends_expired_events_with_the_user() {
    let mut settings = mysql();
    settings.session.hash_keys = true;
    the_sweep_reports_each_expired_session(settings.clone(), true).await;
    drop_tables(&settings).await;
}

#[tokio::test]
async fn file_sweep_sends_expired_events() {
    let dir = Scratch::new("expired-files");
    the_sweep_reports_each_expired_session(files(&dir), false).await;
}

/// Counts which of the sweep's statements run: the counting one or the naming one.
struct Counting {
    inner: Arc<dyn ClearExpired>,
    counted: AtomicUsize,
    named: AtomicUsize,
}

#[async_trait]
impl ClearExpired for Counting {
    async fn clear_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.counted.fetch_add(1, Ordering::SeqCst);
        self.inner.clear_expired(now).await
    }

    async fn clear_expired_batch(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.counted.fetch_add(1, Ordering::SeqCst);
        self.inner.clear_expired_batch(now).await
    }

    async fn clear_expired_named(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<ClearedSession>>, StoreError> {
        self.named.fetch_add(1, Ordering::SeqCst);
        self.inner.clear_expired_named(now).await
    }
}

#[tokio::test]
async fn nobody_subscribed_the_sweep_only_counts() {
    let dir = Scratch::new("expired-count");
    let settings = sqlite(&dir);
    let (mut backend, _) = server(&settings).await;
    let counting = Arc::new(Counting {
        inner: backend.clear.clone().unwrap(),
        counted: AtomicUsize::new(0),
        named: AtomicUsize::new(0),
    });
    backend.clear = Some(counting.clone());
    let sessions = Sessions::from_backend(backend, settings).unwrap();
    seed_expired(&**sessions.store().unwrap(), 2).await;
    let run = sessions.clear_expired_now().await.unwrap();
    assert_eq!(cleared(&run), Some(2));
    assert_eq!(
        counting.named.load(Ordering::SeqCst),
        0,
        "no name was asked"
    );
    assert!(counting.counted.load(Ordering::SeqCst) > 0);
    // A subscriber: the sweep names what it deletes.
    let mut events = sessions.events();
    seed_expired(&**sessions.store().unwrap(), 1).await;
    let counted = counting.counted.load(Ordering::SeqCst);
    let run = sessions.clear_expired_now().await.unwrap();
    assert_eq!(cleared(&run), Some(1));
    assert!(counting.named.load(Ordering::SeqCst) > 0);
    assert_eq!(counting.counted.load(Ordering::SeqCst), counted);
    assert_eq!(drain(&mut events).len(), 1);
    // Gone again: counting once more.
    drop(events);
    seed_expired(&**sessions.store().unwrap(), 1).await;
    let named = counting.named.load(Ordering::SeqCst);
    sessions.clear_expired_now().await.unwrap();
    assert_eq!(counting.named.load(Ordering::SeqCst), named);
}

/// The scheduled sweep on real time, every `every`: how long after a session's expiry its
/// `Expired` event arrives (printed; at most about one interval).
async fn expired_delay_of_the_scheduled_sweep(settings: Settings, every: Duration) -> Duration {
    let (_, sessions) = server(&settings).await;
    let engine = sessions.engine();
    let mut events = sessions.events();
    let (_, key) = short_session(&sessions, Some("ana"), 1).await;
    let expires = Instant::now() + Duration::from_secs(1);
    let cleanup = sessions.start_cleanup(every).unwrap();
    let want = wire_id(&index_id(&settings, &key));
    let event = tokio::time::timeout(every * 3 + Duration::from_secs(2), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.kind == EventKind::Expired && event.id == want {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{engine}: the expired event comes"));
    let delay = Instant::now().saturating_duration_since(expires);
    println!("{engine}: expired event {delay:?} after the expiry (sweep every {every:?})");
    assert_eq!(
        event.user_id.as_deref(),
        Some("ana").filter(|_| engine != "file")
    );
    cleanup.stop().await;
    delay
}

#[tokio::test]
async fn sqlite_expired_delay_is_within_the_sweep_interval() {
    let dir = Scratch::new("expired-delay-sqlite");
    let every = Duration::from_secs(1);
    let delay = expired_delay_of_the_scheduled_sweep(sqlite(&dir), every).await;
    assert!(delay <= every + Duration::from_millis(500), "{delay:?}");
}

#[tokio::test]
async fn postgres_expired_delay_is_within_the_sweep_interval() {
    let settings = postgres();
    let every = Duration::from_secs(1);
    let delay = expired_delay_of_the_scheduled_sweep(settings.clone(), every).await;
    drop_tables(&settings).await;
    assert!(delay <= every + Duration::from_millis(500), "{delay:?}");
}

#[tokio::test]
async fn mariadb_expired_delay_is_within_the_sweep_interval() {
    let settings = mysql();
    let every = Duration::from_secs(1);
    let delay = expired_delay_of_the_scheduled_sweep(settings.clone(), every).await;
    drop_tables(&settings).await;
    assert!(delay <= every + Duration::from_millis(500), "{delay:?}");
}

#[tokio::test]
async fn file_expired_delay_is_within_the_sweep_interval() {
    let dir = Scratch::new("expired-delay-files");
    let every = Duration::from_secs(1);
    let delay = expired_delay_of_the_scheduled_sweep(files(&dir), every).await;
    assert!(delay <= every + Duration::from_millis(500), "{delay:?}");
}

/// Sessions on the test Redis under a key prefix of this run's own, with its abilities
/// (the channel, the lock), as `engines::open` wires them.
/// The test Redis's database 9, which only these tests use. Redis reports an expiry when
/// it deletes the key: on its next access, or when its active expiry cycle samples it (20
/// random keys with a TTL, ten times a second), so in a database that other tests fill with
/// TTL keys a key can stay undeleted, and unreported, for seconds.
fn expiry_db_url() -> String {
    let url = support::redis::url();
    match url.rsplit_once('/') {
        Some((base, db)) if db.chars().all(|c| c.is_ascii_digit()) && !base.ends_with('/') => {
            format!("{base}/9")
        }
        _ => format!("{}/9", url.trim_end_matches('/')),
    }
}

async fn redis_sessions(
    settings: &Settings,
) -> (Arc<cloakroom::engines::redis::RedisStore>, Sessions) {
    let url = expiry_db_url();
    let store = cloakroom::engines::redis::RedisStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("the test Redis at {url} is unreachable: {e}"));
    let store = Arc::new(store.with_key_prefix(support::unique("expired")));
    let backend = Backend::server(store.clone())
        .with_exclusive(store.clone())
        .with_announce(store.clone());
    (
        store,
        Sessions::from_backend(backend, settings.clone()).unwrap(),
    )
}

/// Redis drops an expired session itself and says so (keyspace notifications): the live
/// listener turns it into an `Expired` event named as every other event of that session
/// (the digest of its index id, with or without `hash_keys`), with no sweep and nobody
/// waiting; bob's live session and other keys that expire (this store's lock, another
/// prefix's session) say nothing. A handler waits on dan's session: it sees his expiry at
/// about the same moment as Redis, and the expiry is still reported once. Prints the delay
/// from expiry to event.
async fn redis_keyspace_notices_are_expired_events(hash_keys: bool) {
    let mut settings = Settings::default();
    settings.session.hash_keys = hash_keys;
    let (_, sessions) = redis_sessions(&settings).await;
    let (_, other) = redis_sessions(&settings).await;
    let live = sessions.start_live(Duration::from_secs(10)).unwrap();
    assert!(live.wait_listening(Duration::from_secs(5)).await);
    let mut events = sessions.events();
    let (_, key) = short_session(&sessions, Some("ana"), 1).await;
    let created = drain(&mut events);
    let id = sessions.sessions_of("ana").await.unwrap()[0].id.clone();
    assert_eq!(id, index_id(&settings, &key));
    assert!(
        created
            .iter()
            .any(|(kind, eid, _)| *kind == EventKind::LoggedIn && *eid == wire_id(&id)),
        "{created:?}"
    );
    let expires = Instant::now() + Duration::from_secs(1);
    // Dan's expiry is seen twice (his wait's timer, Redis's notice): reported once.
    let (dan, dan_key) = short_session(&sessions, Some("dan"), 1).await;
    let dan_ends = tokio::spawn(dan.ended());
    short_session(&sessions, Some("bob"), 3600).await;
    short_session(&other, Some("cy"), 1).await;
    let _ = drain(&mut events);
    let mut expired = Vec::new();
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.kind == EventKind::Expired {
                if event.id == wire_id(&id) {
                    return event;
                }
                expired.push((event.kind, event.id, event.user_id));
            }
        }
    })
    .await
    .expect("Redis's notice becomes an Expired event");
    let delay = Instant::now().saturating_duration_since(expires);
    println!("redis (hash_keys = {hash_keys}): expired event {delay:?} after the expiry");
    assert_eq!(event.user_id, None, "a notice names the key only");
    // cy's session (another prefix) expires too: nothing of it here, and dan's once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    expired.extend(drain(&mut events));
    let dan_id = wire_id(&index_id(&settings, &dan_key));
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(
        (expired[0].0, &expired[0].1),
        (EventKind::Expired, &dan_id),
        "other keys are not this store's sessions, and an expiry is reported once"
    );
    assert_eq!(dan_ends.await.unwrap(), Ended::Expired);
    live.stop().await;
}

#[tokio::test]
async fn redis_expired_sessions_are_events_from_keyspace_notifications() {
    redis_keyspace_notices_are_expired_events(false).await;
}

#[tokio::test]
async fn redis_expired_sessions_are_events_with_hash_keys() {
    redis_keyspace_notices_are_expired_events(true).await;
}

/// A handler waiting on a Redis session hears its expiry from Redis, as `Expired`: the key's
/// TTL is cut to 0.5 s behind the app's back (its known expiry is an hour away, and the
/// channel is up, so nothing else would wake the wait for 10 s); bob's wait goes on.
#[tokio::test]
async fn redis_expiry_ends_a_waiting_session() {
    let (store, sessions) = redis_sessions(&Settings::default()).await;
    let live = sessions.start_live(Duration::from_secs(10)).unwrap();
    assert!(live.wait_listening(Duration::from_secs(5)).await);
    let (ana, key) = short_session(&sessions, Some("ana"), 3600).await;
    let (bob, _) = short_session(&sessions, Some("bob"), 3600).await;
    let bob_ends = tokio::spawn(bob.ended());
    let ana_ends = tokio::spawn(ana.ended());
    // Its first check of the store is done: it now sleeps until the known expiry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .command(&["PEXPIRE", &store.redis_key(&key), "500"])
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(3), ana_ends).await;
    assert_eq!(ended.expect("ana's wait ends").unwrap(), Ended::Expired);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!bob_ends.is_finished(), "bob's session lives on");
    bob_ends.abort();
    live.stop().await;
}

/// Another server deletes a session, then announces why: a wait whose check falls between
/// the two (here the wait begins after the delete, so its first check finds nothing) still
/// ends with the announced reason, `Revoked`, not `Gone`. A session deleted with no notice at
/// all (by Django, say) ends as `Gone`, a moment later.
#[tokio::test]
async fn a_wait_that_finds_its_session_deleted_tells_the_announced_reason() {
    use cloakroom::{Announce as _, SessionStore as _};
    let (store, sessions) = redis_sessions(&Settings::default()).await;
    let live = sessions.start_live(Duration::from_secs(10)).unwrap();
    assert!(live.wait_listening(Duration::from_secs(5)).await);
    let (ana, ana_key) = short_session(&sessions, Some("ana"), 3600).await;
    let (bob, bob_key) = short_session(&sessions, Some("bob"), 3600).await;
    for key in [&ana_key, &bob_key] {
        store.delete(key).await.unwrap();
    }
    let (ana_ends, bob_ends) = (tokio::spawn(ana.ended()), tokio::spawn(bob.ended()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let notice = cloakroom::live::message(&ana_key, Ended::Revoked);
    store.announce(&notice).await.unwrap();
    let within = Duration::from_secs(2);
    let ana_ended = tokio::time::timeout(within, ana_ends).await;
    assert_eq!(ana_ended.expect("ana's wait ends").unwrap(), Ended::Revoked);
    let bob_ended = tokio::time::timeout(within, bob_ends).await;
    assert_eq!(bob_ended.expect("bob's wait ends").unwrap(), Ended::Gone);
    live.stop().await;
}

/// On a Redis Cluster each node publishes its keyspace notifications to its own clients
/// only, and the listener (sharded pub/sub on one node) does not subscribe to each primary:
/// what is done there is that a session's expiry is seen by the waits on it, at its known
/// expiry, and reported once by them; a session nobody waits on expires without an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_expiries_are_seen_by_the_waits_only() {
    let cluster = tokio::task::spawn_blocking(support::redis_cluster::shared)
        .await
        .unwrap();
    let store = cloakroom::engines::redis::RedisStore::connect(&cluster.url())
        .await
        .unwrap()
        .with_key_prefix(support::unique("expired"));
    let store = Arc::new(store);
    let backend = Backend::server(store.clone())
        .with_exclusive(store.clone())
        .with_announce(store);
    let sessions = Sessions::from_backend(backend, Settings::default()).unwrap();
    let live = sessions.start_live(Duration::from_secs(10)).unwrap();
    assert!(live.wait_listening(Duration::from_secs(5)).await);
    let mut events = sessions.events();
    let (ana, ana_key) = short_session(&sessions, Some("ana"), 1).await;
    let (_, cart_key) = short_session(&sessions, None, 1).await;
    let _ = drain(&mut events);
    let ended = tokio::time::timeout(Duration::from_secs(3), ana.ended()).await;
    assert_eq!(ended.expect("the wait ends at the expiry"), Ended::Expired);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        drain(&mut events),
        vec![(
            EventKind::Expired,
            wire_id(&ana_key),
            Some("ana".to_owned())
        )],
        "the wait's report only; the cart {}… expired unheard",
        &cart_key[..6]
    );
    live.stop().await;
}
