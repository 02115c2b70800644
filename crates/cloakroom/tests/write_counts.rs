//! How many store writes 1,000 read-only requests cause (one per second of a settable clock),
//! under each expiry setting; the README's table comes from `cargo test --test write_counts
//! -- --nocapture`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom::clock::ManualClock;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{
    CookieAction, Created, Record, SessionStore, Sessions, Settings, StoreError, Updated,
};
use time::OffsetDateTime;

/// Counts every call that writes, around a real in-process store.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    writes: AtomicU64,
    loads: AtomicU64,
}

#[async_trait]
impl SessionStore for Counting {
    fn engine(&self) -> &'static str {
        "counting"
    }
    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key, now).await
    }
    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.create(key, record).await
    }
    async fn update(
        &self,
        key: &str,
        expected: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.update(key, expected, record, now).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }
}

/// (store writes, cookies sent, loads) for 1,000 read-only requests one second apart.
async fn run(settings: Settings) -> (u64, u64, u64) {
    let store = Arc::new(Counting::default());
    let clock = ManualClock::starting_now();
    let sessions = Sessions::from_arc(store.clone(), settings)
        .unwrap()
        .with_clock(clock.clone());
    let lazy = sessions.start(None);
    lazy.load().await.unwrap().insert("user", "ana").unwrap();
    let CookieAction::Set { value: key, .. } = lazy.commit(200).await.unwrap().cookie else {
        panic!("no cookie");
    };
    let before = store.writes.load(Ordering::SeqCst);
    let loads_before = store.loads.load(Ordering::SeqCst);
    let mut cookies = 0;
    for _ in 0..1000 {
        clock.advance(Duration::from_secs(1));
        let lazy = sessions.start(Some(&key));
        let s = lazy.load().await.unwrap();
        assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("ana"));
        if matches!(
            lazy.commit(200).await.unwrap().cookie,
            CookieAction::Set { .. }
        ) {
            cookies += 1;
        }
    }
    (
        store.writes.load(Ordering::SeqCst) - before,
        cookies,
        store.loads.load(Ordering::SeqCst) - loads_before,
    )
}

#[tokio::test]
async fn read_only_requests_write_only_as_often_as_the_setting_says() {
    let cases: Vec<(&str, Settings, u64)> = vec![
        (
            "Django default (lifetime from last save)",
            Settings::default(),
            0,
        ),
        (
            "save_every_request",
            Settings::default().with_save_every_request(true),
            1000,
        ),
        (
            "idle_timeout 1800 s, refresh_threshold 0.2",
            Settings::default().with_idle_timeout(Some(1800)),
            3,
        ),
        (
            "idle_timeout 1800 s, refresh_threshold 0.5",
            Settings::default()
                .with_idle_timeout(Some(1800))
                .with_refresh_threshold(0.5),
            2,
        ),
        (
            "idle_timeout 300 s, refresh_threshold 0.2",
            Settings::default().with_idle_timeout(Some(300)),
            17,
        ),
        (
            "idle_timeout 1800 s, refresh_threshold 0 (every request)",
            Settings::default()
                .with_idle_timeout(Some(1800))
                .with_refresh_threshold(0.0),
            1000,
        ),
    ];
    println!("| setting | store writes | Set-Cookie sent | loads |");
    println!("|---|---|---|---|");
    for (name, settings, most) in cases {
        let (writes, cookies, loads) = run(settings).await;
        println!("| {name} | {writes} | {cookies} | {loads} |");
        assert!(
            writes <= most,
            "{name}: {writes} writes, expected at most {most}"
        );
        assert_eq!(loads, 1000, "{name}: one load per request");
        assert_eq!(
            writes, cookies,
            "{name}: the cookie is re-sent exactly when the store is written"
        );
    }
}
