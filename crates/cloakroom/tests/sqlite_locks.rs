//! The SQLite engine runs a request's statements inline on the runtime, so it must never wait
//! there: while ANOTHER process holds the database's write lock (Django saving, a
//! `clearsessions`, an administrator's open transaction), a write waits on a blocking thread and
//! the runtime keeps serving; when the lock outlives the busy timeout, the app gets a
//! `StoreError` naming the fix, not a panic and not a hung worker.
//!
//! The other process is real: python3's sqlite3 module opening the same file and holding
//! `BEGIN IMMEDIATE` until told to commit.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::{Record, SessionStore, StoreError, Updated};
use time::OffsetDateTime;

/// A python3 process holding the write lock of `db` from `new` until `release`.
struct LockHolder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl LockHolder {
    fn new(db: &Path) -> Self {
        let script = r#"
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"#;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with its sqlite3 module runs");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the lock holder answers");
        assert_eq!(
            line.trim(),
            "locked",
            "python3 could not lock {}",
            db.display()
        );
        Self { child, stdin }
    }

    /// Commits and waits for the process to end.
    fn release(mut self) {
        let mut stdin = self.stdin.take().expect("released once");
        stdin.write_all(b"go\n").expect("the lock holder reads");
        drop(stdin);
        assert!(self.child.wait().expect("the lock holder ends").success());
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-locks-{}-{}",
        std::process::id(),
        cloakroom::key::generate().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("s.sqlite3")
}

async fn store(db: &Path) -> SqliteStore {
    let store = SqliteStore::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn record(data: &str, now: OffsetDateTime) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at: now + Duration::from_secs(3600),
    }
}

/// Counts the ticks of a 5 ms interval on the test's runtime: they stop if a store call blocks
/// the (single) runtime thread.
fn ticker() -> Arc<AtomicU64> {
    let ticks = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&ticks);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(5));
        // A blocked runtime's missed ticks are not made up afterwards.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    ticks
}

/// On a current-thread runtime, an update issued while another process holds the write lock
/// leaves the runtime serving (the ticker and a read go on), and succeeds once the lock goes.
#[tokio::test(flavor = "current_thread")]
async fn a_write_waiting_for_another_process_never_blocks_the_runtime() {
    let db = scratch();
    let store = Arc::new(store(&db).await);
    let key = cloakroom::key::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    store.create(&key, &record("{}", now)).await.unwrap();

    let holder = LockHolder::new(&db);
    let ticks = ticker();
    let writing = {
        let (store, key) = (Arc::clone(&store), key.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let done = store
                .update(&key, b"{}", &record(r#"{"n":1}"#, now), now)
                .await;
            (done, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!writing.is_finished(), "the update waits for the lock");
    let during = ticks.load(Ordering::Relaxed);
    assert!(
        during >= 40,
        "the runtime kept ticking while the update waited: {during} ticks in 400 ms"
    );
    // WAL readers are not blocked by a writer.
    let read_started = Instant::now();
    let seen = store.load(&key, now).await.unwrap().unwrap();
    assert_eq!(seen.data, "{}");
    assert!(read_started.elapsed() < Duration::from_millis(200));

    tokio::task::spawn_blocking(move || holder.release())
        .await
        .unwrap();
    let (done, waited) = writing.await.unwrap();
    assert_eq!(done.unwrap(), Updated::Stored);
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert_eq!(
        store.load(&key, now).await.unwrap().unwrap().data,
        r#"{"n":1}"#
    );
}

/// A lock held past the busy timeout (5 s) fails the write with a `StoreError` that says what
/// to look for; the runtime kept serving all along, and the store works once the lock goes.
#[tokio::test(flavor = "current_thread")]
async fn a_lock_held_past_the_busy_timeout_is_a_store_error_naming_the_fix() {
    let db = scratch();
    let store = store(&db).await;
    let key = cloakroom::key::generate().unwrap();
    let now = OffsetDateTime::now_utc();

    let holder = LockHolder::new(&db);
    let ticks = ticker();
    let started = Instant::now();
    let err = store
        .create(&key, &record("{}", now))
        .await
        .expect_err("the lock outlives the busy timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(8),
        "one busy timeout: {waited:?}"
    );
    // One tick per 5 ms had the runtime been free all along; leave room for a loaded machine.
    let ticks = ticks.load(Ordering::Relaxed);
    let free_all_along = u64::try_from(waited.as_millis() / 5).unwrap();
    assert!(
        ticks >= free_all_along * 7 / 10,
        "the runtime kept ticking while the create waited: {ticks} ticks in {waited:?}"
    );
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("locked by another connection"), "{msg}");
    assert!(msg.contains("transaction left open"), "{msg}");

    tokio::task::spawn_blocking(move || holder.release())
        .await
        .unwrap();
    assert_eq!(
        store.create(&key, &record("{}", now)).await.unwrap(),
        cloakroom::Created::Stored
    );
}
