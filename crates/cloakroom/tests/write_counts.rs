//! How many store writes 1,000 read-only requests cause (one per second of a settable clock),
//! under each expiry setting, and of which kind: expiry-only touches or full writes carrying the
//! data. The README's table comes from
//! `cargo test -p cloakroom --test write_counts -- --nocapture`.

use std::time::Duration;

use cloakroom::clock::ManualClock;
use cloakroom::decorate::Decorator as _;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::testing::{Calls, Counting};
use cloakroom::{CookieAction, Sessions, Settings};

/// A server with a counted in-process store, a settable clock, and one session holding
/// `user = ana`; returns them with the session's cookie value.
async fn server(settings: Settings) -> (Counting, ManualClock, Sessions, String) {
    let counts = Counting::default();
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(counts.clone().around(MemoryStore::default()), settings)
        .unwrap()
        .with_clock(clock.clone());
    let lazy = sessions.start(None);
    lazy.load().await.unwrap().insert("user", "ana").unwrap();
    let CookieAction::Set { value: key, .. } = lazy.commit(200).await.unwrap().cookie else {
        panic!("no cookie");
    };
    counts.take();
    (counts, clock, sessions, key)
}

/// One read-only request; returns whether it sent a cookie.
async fn read_only(sessions: &Sessions, key: &str) -> bool {
    let lazy = sessions.start(Some(key));
    let s = lazy.load().await.unwrap();
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("ana"));
    matches!(
        lazy.commit(200).await.unwrap().cookie,
        CookieAction::Set { .. }
    )
}

/// The store calls and the cookies sent for 1,000 read-only requests one second apart.
async fn run(settings: Settings) -> (Calls, u64) {
    let (store, clock, sessions, key) = server(settings).await;
    let mut cookies = 0;
    for _ in 0..1000 {
        clock.advance(Duration::from_secs(1));
        if read_only(&sessions, &key).await {
            cookies += 1;
        }
    }
    (store.take(), cookies)
}

#[tokio::test]
async fn a_rolling_refresh_is_a_touch_not_a_write_of_the_data() {
    let (store, clock, sessions, key) =
        server(Settings::default().with_idle_timeout(Some(600))).await;
    clock.advance(Duration::from_secs(100));
    assert!(!read_only(&sessions, &key).await);
    assert_eq!(
        store.take().writes(),
        0,
        "a read before 20% of the idle timeout wrote"
    );
    clock.advance(Duration::from_secs(30));
    assert!(read_only(&sessions, &key).await, "no refresh past 20%");
    let calls = store.take();
    assert_eq!(
        (calls.touches, calls.updates, calls.creates),
        (1, 0, 0),
        "the refresh past the threshold: {calls:?}"
    );
}

#[tokio::test]
async fn read_only_requests_write_only_as_often_as_the_setting_says() {
    // (setting, touches, full writes): exact, since the clock is settable.
    let cases: Vec<(&str, Settings, u64, u64)> = vec![
        (
            "Django default (lifetime from last save)",
            Settings::default(),
            0,
            0,
        ),
        (
            "save_every_request",
            Settings::default().with_save_every_request(true),
            0,
            1000,
        ),
        (
            "idle_timeout 1800 s, refresh_threshold 0.2",
            Settings::default().with_idle_timeout(Some(1800)),
            2,
            0,
        ),
        (
            "idle_timeout 1800 s, refresh_threshold 0.5",
            Settings::default()
                .with_idle_timeout(Some(1800))
                .with_refresh_threshold(0.5),
            1,
            0,
        ),
        (
            "idle_timeout 300 s, refresh_threshold 0.2",
            Settings::default().with_idle_timeout(Some(300)),
            16,
            0,
        ),
        (
            "idle_timeout 1800 s, refresh_threshold 0 (every request)",
            Settings::default()
                .with_idle_timeout(Some(1800))
                .with_refresh_threshold(0.0),
            1000,
            0,
        ),
    ];
    println!("| setting | store writes | of which touches (expiry only) | of which full writes (data) | Set-Cookie sent | loads |");
    println!("|---|---|---|---|---|---|");
    for (name, settings, touches, full) in cases {
        let (calls, cookies) = run(settings).await;
        let writes = calls.writes();
        println!(
            "| {name} | {writes} | {} | {} | {cookies} | {} |",
            calls.touches,
            writes - calls.touches,
            calls.loads
        );
        assert_eq!(calls.touches, touches, "{name}: touches");
        assert_eq!(writes - calls.touches, full, "{name}: full writes");
        assert_eq!(calls.loads, 1000, "{name}: one load per request");
        assert_eq!(
            writes, cookies,
            "{name}: the cookie is re-sent exactly when the store is written"
        );
    }
}
