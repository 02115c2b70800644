//! The Redis store's connection task runs on a thread of its own (`cloakroom-redis`
//! `redis/io_thread.rs`), not among the app's tasks, so commands sent while the app's worker is
//! busy go out together: the store works after the runtime that opened it is gone, and the
//! thread ends with the store's last copy.
#![cfg(feature = "redis")]

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cloakroom::SessionStore;
use time::OffsetDateTime;

/// The tests count this process's connection threads: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How many threads of this process are a Redis store's connection thread.
fn connection_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == "cloakroom-redis")
        })
        .count()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn a_store_keeps_working_after_the_runtime_that_opened_it_is_gone() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let opening = runtime();
    let store = opening
        .block_on(support::redis::connect())
        .with_command_timeout(Duration::from_secs(2));
    // With the connection task among the opening runtime's tasks, this ended it.
    drop(opening);
    runtime().block_on(async {
        let key = cloakroom::key::generate().unwrap();
        let loaded = store.load(&key, OffsetDateTime::now_utc()).await;
        assert!(matches!(loaded, Ok(None)), "{loaded:?}");
        assert_eq!(
            store.command(&["PING"]).await.unwrap().as_deref(),
            Some("PONG")
        );
    });
}

#[test]
fn the_connection_thread_ends_with_the_last_copy_of_the_store() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    runtime().block_on(async {
        let before = connection_threads();
        let store = support::redis::connect().await;
        assert_eq!(connection_threads(), before + 1);
        let copy = store.clone();
        drop(store);
        assert_eq!(
            copy.command(&["PING"]).await.unwrap().as_deref(),
            Some("PONG")
        );
        assert_eq!(connection_threads(), before + 1);
        drop(copy);
        let deadline = Instant::now() + Duration::from_secs(5);
        while connection_threads() > before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            connection_threads(),
            before,
            "the thread outlived the store"
        );
    });
}
