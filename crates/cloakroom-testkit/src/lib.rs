//! # cloakroom-testkit
//!
//! The test suites of cloakroom, each written once and run on every engine and adapter:
//!
//! - **The store conformance suite**: every clause of the [store contract](cloakroom_core::store),
//!   run against a store on its real server. A third-party store runs it with one line
//!   (`cloakroom::conformance_tests!` is the same macro, re-exported by the facade's `testing`
//!   feature):
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use cloakroom_core::engines::memory::MemoryStore;
//!
//! async fn store() -> Arc<MemoryStore> {
//!     Arc::new(MemoryStore::new(1_000))
//! }
//!
//! // One `#[tokio::test]` per clause; `clear` adds the clauses of `ClearExpired`.
//! cloakroom_testkit::conformance_tests!(store(), clear);
//! # // The generated tests exist only under `--test`; this checks `store` fits all the same.
//! # fn main() {
//! #     let _ = async {
//! #         let store = store().await;
//! #         let _: Arc<dyn cloakroom_core::SessionStore> = store.clone();
//! #         let _: Arc<dyn cloakroom_core::ClearExpired> = store;
//! #     };
//! # }
//! ```
//!
//! - **The cookie conformance suite** ([`cookie_conformance_tests!`]): the clauses that apply
//!   to an engine keeping the session in the cookie, signed or private.
//! - **The HTTP suite** (feature `http`: the `http` module and `http_suite!`): what a visitor
//!   sees over HTTP (the JSON contract, Django's cookie rules), run against any framework
//!   adapter serving the HTTP contract written down in the `http` module, on a loopback port.
//! - **Servers of our own** (feature `servers`): PostgreSQL, MariaDB, Redis, a Redis Cluster
//!   and Redis Sentinel (a primary, a replica, three sentinels) on free loopback ports, for
//!   tests that stop a server.
//!
//! Each check panics with a message that names the clause it broke (this crate is for tests).
// Feature badges on docs.rs (which builds with `--cfg docsrs`, see Cargo.toml).
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Servers of our own for tests (PostgreSQL, MariaDB, Redis, a Redis Cluster, Redis Sentinel), started on free
/// loopback ports and stopped by pid: what the HTTP suites and the load test share (feature
/// `servers`). They never touch the machine's own services.
#[cfg(feature = "servers")]
pub mod servers;

// The HTTP suite (feature `http`); its own docs say what it is.
#[cfg(feature = "http")]
pub mod http;

// The core's modules under the names this suite uses.
#[allow(unused_imports)]
use cloakroom_core::{clock, config, hashed, key, keys, signing, store, Settings, StoreError};
// What the exported macros name through `$crate`.
#[doc(hidden)]
pub use cloakroom_core::{
    engines::cookie::SignedCookies, Backend, ClearExpired, ClientSide, SessionStore,
};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use cloakroom_core::decorate::{CallOutcome, Decorator, Operation, StoreCall};
use cloakroom_core::{Backing, CookieAction, Sessions};
use clock::{Clock, ManualClock};
use store::{Created, Record, Updated};

fn record(data: &str, expires_at: OffsetDateTime) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at,
    }
}

fn fresh_key() -> String {
    key::generate().expect("the OS has randomness")
}

/// Whether any record, live or expired, holds `key`: a load as of the Unix epoch, before
/// any record expires.
async fn stored(store: &dyn SessionStore, key: &str) -> bool {
    store
        .load(key, OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .is_some()
}

/// Whole seconds only: some servers keep expiry at second precision.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// `load` of a key that was never stored is `None`, and creates nothing.
pub async fn load_missing_is_none(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    assert_eq!(store.load(&key, now()).await.unwrap(), None);
    assert!(!stored(&*store, &key).await, "load created a record");
}

/// What `create` stores, `load` returns: data and expiry.
pub async fn create_then_load(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let at = now() + Duration::from_secs(3600);
    let rec = record(r#"{"a":1,"é":"😀"}"#, at);
    assert_eq!(store.create(&key, &rec).await.unwrap(), Created::Stored);
    let loaded = store
        .load(&key, now())
        .await
        .unwrap()
        .expect("record stored");
    assert_eq!(loaded.data, rec.data);
    assert!((loaded.expires_at - at).abs() <= time::Duration::seconds(1));
    assert!(stored(&*store, &key).await);
}

/// `create` never overwrites: a taken key answers `Taken` and keeps its record.
pub async fn create_never_overwrites(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let at = now() + Duration::from_secs(3600);
    store.create(&key, &record(r#"{"a":1}"#, at)).await.unwrap();
    assert_eq!(
        store.create(&key, &record(r#"{"a":2}"#, at)).await.unwrap(),
        Created::Taken
    );
    let loaded = store.load(&key, now()).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"a":1}"#);
}

/// A record past its expiry is not loaded, and cannot be updated.
pub async fn expired_is_gone(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let at = now() + Duration::from_secs(2);
    store.create(&key, &record(r#"{"a":1}"#, at)).await.unwrap();
    let later = at + Duration::from_secs(1);
    assert_eq!(
        store.load(&key, later).await.unwrap(),
        None,
        "expired record loaded"
    );
    let out = store
        .update(
            &key,
            br#"{"a":1}"#,
            &record(r#"{"a":2}"#, later + Duration::from_secs(60)),
            later,
        )
        .await
        .unwrap();
    assert_eq!(out, Updated::Missing, "an expired record was updated");
}

/// `update` with the stored data as `expected` writes the new data and expiry.
pub async fn update_swaps_when_unchanged(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let at = now() + Duration::from_secs(60);
    store.create(&key, &record(r#"{"a":1}"#, at)).await.unwrap();
    let later = at + Duration::from_secs(3600);
    let out = store
        .update(&key, br#"{"a":1}"#, &record(r#"{"a":2}"#, later), now())
        .await
        .unwrap();
    assert_eq!(out, Updated::Stored);
    let loaded = store.load(&key, now()).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"a":2}"#);
    assert!(
        (loaded.expires_at - later).abs() <= time::Duration::seconds(1),
        "expiry not moved"
    );
}

/// `update` with stale `expected` writes nothing and returns what is stored now.
pub async fn update_conflict_returns_current(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let at = now() + Duration::from_secs(3600);
    store.create(&key, &record(r#"{"a":1}"#, at)).await.unwrap();
    let out = store
        .update(&key, br#"{"a":0}"#, &record(r#"{"a":2}"#, at), now())
        .await
        .unwrap();
    match out {
        Updated::Conflict(current) => assert_eq!(current.data, r#"{"a":1}"#),
        other => panic!("stale update answered {other:?}, not Conflict"),
    }
    assert_eq!(
        store.load(&key, now()).await.unwrap().unwrap().data,
        r#"{"a":1}"#
    );
}

/// `update` never brings back a deleted session.
pub async fn update_never_resurrects(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let at = now() + Duration::from_secs(3600);
    store.create(&key, &record(r#"{"a":1}"#, at)).await.unwrap();
    store.delete(&key).await.unwrap();
    let out = store
        .update(&key, br#"{"a":1}"#, &record(r#"{"a":2}"#, at), now())
        .await
        .unwrap();
    assert_eq!(out, Updated::Missing);
    assert_eq!(
        store.load(&key, now()).await.unwrap(),
        None,
        "deleted session came back"
    );
    assert!(!stored(&*store, &key).await);
}

/// Within a second: some servers keep expiry at second precision.
fn assert_near(at: OffsetDateTime, want: OffsetDateTime, what: &str) {
    assert!(
        (at - want).abs() <= time::Duration::seconds(1),
        "{what}: expires at {at}, not {want}"
    );
}

/// `touch` moves the expiry of a live record and keeps its data.
pub async fn touch_moves_the_expiry_and_keeps_the_data(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    let data = r#"{"a":1,"é":"😀"}"#;
    store
        .create(&key, &record(data, t + Duration::from_secs(60)))
        .await
        .unwrap();
    let later = t + Duration::from_secs(3600);
    let out = store.touch(&key, &record(data, later), t).await.unwrap();
    assert_eq!(out, Updated::Stored, "touch of a live record");
    let loaded = store.load(&key, t).await.unwrap().expect("touched record");
    assert_eq!(loaded.data, data, "touch changed the data");
    assert_near(loaded.expires_at, later, "touch did not move the expiry");
}

/// A touched record is still loadable past its old expiry, and gone after the new one.
pub async fn touched_record_outlives_its_old_expiry(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    let old = t + Duration::from_secs(10);
    let new = t + Duration::from_secs(100);
    store.create(&key, &record("{}", old)).await.unwrap();
    assert_eq!(
        store.touch(&key, &record("{}", new), t).await.unwrap(),
        Updated::Stored
    );
    assert!(
        store
            .load(&key, old + Duration::from_secs(40))
            .await
            .unwrap()
            .is_some(),
        "the touched record ended at its old expiry"
    );
    assert_eq!(
        store
            .load(&key, new + Duration::from_secs(2))
            .await
            .unwrap(),
        None,
        "the touched record outlived its new expiry"
    );
}

/// `touch` of a missing, deleted or expired key is `Missing`, and creates nothing.
pub async fn touch_of_missing_or_expired_is_missing(store: Arc<dyn SessionStore>) {
    let t = now();
    let far = record("{}", t + Duration::from_secs(3600));
    let never = fresh_key();
    assert_eq!(
        store.touch(&never, &far, t).await.unwrap(),
        Updated::Missing
    );
    assert!(!stored(&*store, &never).await, "touch created a record");

    let deleted = fresh_key();
    store.create(&deleted, &far).await.unwrap();
    store.delete(&deleted).await.unwrap();
    assert_eq!(
        store.touch(&deleted, &far, t).await.unwrap(),
        Updated::Missing
    );
    assert!(
        !stored(&*store, &deleted).await,
        "touch brought a deleted session back"
    );

    let expired = fresh_key();
    let at = t + Duration::from_secs(2);
    store.create(&expired, &record("{}", at)).await.unwrap();
    let later = at + Duration::from_secs(1);
    let out = store
        .touch(
            &expired,
            &record("{}", later + Duration::from_secs(3600)),
            later,
        )
        .await
        .unwrap();
    assert_eq!(out, Updated::Missing, "an expired record was touched");
    assert_eq!(
        store.load(&expired, later).await.unwrap(),
        None,
        "touch brought an expired session back"
    );
}

/// `touch` with data the record no longer holds writes nothing: another request saved
/// meanwhile and set its own expiry, which a touch from stale data must not move.
pub async fn touch_of_changed_data_is_conflict(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    let saved = t + Duration::from_secs(60);
    store
        .create(&key, &record(r#"{"a":1}"#, t + Duration::from_secs(30)))
        .await
        .unwrap();
    store
        .update(&key, br#"{"a":1}"#, &record(r#"{"a":2}"#, saved), t)
        .await
        .unwrap();
    let stale = record(r#"{"a":1}"#, t + Duration::from_secs(3600));
    match store.touch(&key, &stale, t).await.unwrap() {
        Updated::Conflict(current) => assert_eq!(current.data, r#"{"a":2}"#),
        other => panic!("a touch from stale data answered {other:?}, not Conflict"),
    }
    let loaded = store.load(&key, t).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"a":2}"#);
    assert_near(loaded.expires_at, saved, "a stale touch moved the expiry");
}

/// `delete` removes; deleting a missing key succeeds.
pub async fn delete_is_idempotent(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    store.delete(&key).await.unwrap();
    store
        .create(&key, &record("{}", now() + Duration::from_secs(60)))
        .await
        .unwrap();
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert!(!stored(&*store, &key).await);
}

/// Keys a client made up (SQL, paths, quotes, unicode) are just absent, never an error.
pub async fn hostile_keys_are_absent(store: Arc<dyn SessionStore>) {
    for key in [
        "'; DROP TABLE sessions; --",
        "../../../../etc/passwd",
        "a\"b\\c",
        "ключ-🔑",
        "%00%2e%2e",
    ] {
        assert_eq!(store.load(key, now()).await.unwrap(), None, "{key}");
        assert!(!stored(&*store, key).await, "{key}");
        store.delete(key).await.unwrap();
    }
}

/// `clear_expired` deletes expired records and only those.
pub async fn clear_expired_keeps_live(store: Arc<dyn SessionStore>, clear: Arc<dyn ClearExpired>) {
    let (dead, live) = (fresh_key(), fresh_key());
    let at = now() + Duration::from_secs(2);
    store.create(&dead, &record("{}", at)).await.unwrap();
    store
        .create(&live, &record("{}", at + Duration::from_secs(3600)))
        .await
        .unwrap();
    clear
        .clear_expired(at + Duration::from_secs(5))
        .await
        .unwrap();
    // Asked by a touch to the record's own expiry as of the real now (before `at`): it answers
    // from the store of record, past a cache in front of it (`cached_db`, whose cache keeps
    // its copies until they expire), and writes nothing new.
    let held = |key: String, expires_at: OffsetDateTime| {
        let store = Arc::clone(&store);
        async move {
            let probe = record("{}", expires_at);
            store.touch(&key, &probe, now()).await.unwrap() != Updated::Missing
        }
    };
    assert!(!held(dead, at).await, "expired record kept");
    assert!(
        held(live, at + Duration::from_secs(3600)).await,
        "live record cleared"
    );
}

fn sessions(backing: impl Into<Backing>) -> (Sessions, ManualClock) {
    sessions_with(backing, Settings::default())
}

fn sessions_with(backing: impl Into<Backing>, settings: Settings) -> (Sessions, ManualClock) {
    let clock = ManualClock::starting_now();
    let sessions = Sessions::from_backing(backing, settings)
        .expect("test settings are valid")
        .with_clock(clock.clone());
    (sessions, clock)
}

/// Starts a session holding `visits = 1` and returns its cookie value.
async fn new_session(sessions: &Sessions) -> String {
    let lazy = sessions.start(None);
    lazy.load().await.unwrap().insert("visits", 1).unwrap();
    cookie_of(&lazy.commit(200).await.unwrap().cookie)
}

/// One read-only request; returns what it did to the cookie and whether the session was live.
async fn read_only(sessions: &Sessions, cookie: &str) -> (CookieAction, bool) {
    let lazy = sessions.start(Some(cookie));
    let live = !lazy.load().await.unwrap().is_empty();
    (lazy.commit(200).await.unwrap().cookie, live)
}

fn cookie_of(action: &CookieAction) -> String {
    match action {
        CookieAction::Set { value, .. } => value.clone(),
        other => panic!("expected a cookie to be set, got {other:?}"),
    }
}

/// Through the core: a new session is saved under a fresh key, loads back, `cycle_key` moves
/// it to a new key and makes the old one useless, and `flush` deletes it. (Signed cookies
/// keep nothing to make useless or delete: a copy of an old cookie still loads.)
pub async fn session_lifecycle(backing: impl Into<Backing>) {
    let backing = backing.into();
    let on_server = backing.server().is_some();
    let (sessions, clock) = sessions(backing);
    let lazy = sessions.start(None);
    let s = lazy.load().await.unwrap();
    assert_eq!(
        s.session_key(),
        None,
        "a new session has no key before its save"
    );
    s.insert("visits", 1).unwrap();
    let first = cookie_of(&lazy.commit(200).await.unwrap().cookie);

    // A second later, so that a signed cookie re-signed by `cycle_key` differs too.
    clock.advance(Duration::from_secs(1));
    let lazy = sessions.start(Some(&first));
    let s = lazy.load().await.unwrap();
    assert_eq!(s.get::<u32>("visits").unwrap(), Some(1));
    s.cycle_key().unwrap();
    let second = cookie_of(&lazy.commit(200).await.unwrap().cookie);
    assert_ne!(first, second, "cycle_key kept the key");

    if on_server {
        let old = sessions.start(Some(&first)).load().await.unwrap();
        assert!(old.is_empty(), "the key before cycle_key still works");
    }
    let lazy = sessions.start(Some(&second));
    let s = lazy.load().await.unwrap();
    assert_eq!(
        s.get::<u32>("visits").unwrap(),
        Some(1),
        "cycle_key lost the data"
    );
    s.flush().unwrap();
    assert_eq!(lazy.commit(200).await.unwrap().cookie, CookieAction::Delete);
    if on_server {
        let gone = sessions.start(Some(&second)).load().await.unwrap();
        assert!(gone.is_empty(), "flush left the session readable");
    }
}

/// Through the core: a key the store does not know, or a malformed one, is never adopted.
pub async fn unknown_keys_are_not_adopted(backing: impl Into<Backing>) {
    let (sessions, _) = sessions(backing);
    for made_up in [fresh_key(), "short".to_owned(), "../../x".repeat(5)] {
        let lazy = sessions.start(Some(&made_up));
        let s = lazy.load().await.unwrap();
        assert!(s.is_empty());
        s.insert("x", 1).unwrap();
        let issued = cookie_of(&lazy.commit(200).await.unwrap().cookie);
        assert_ne!(issued, made_up, "adopted a client-chosen key");
    }
}

/// Through the core: a session saved with a 60 s expiry is gone once the clock passes it.
pub async fn session_expiry_follows_the_clock(backing: impl Into<Backing>) {
    let (sessions, clock) = sessions(backing);
    let lazy = sessions.start(None);
    let s = lazy.load().await.unwrap();
    s.insert("a", 1).unwrap();
    s.set_expiry(cloakroom_core::Expiry::seconds(60)).unwrap();
    let key = cookie_of(&lazy.commit(200).await.unwrap().cookie);
    clock.advance(Duration::from_secs(30));
    assert!(!sessions.start(Some(&key)).load().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(31));
    assert!(
        sessions.start(Some(&key)).load().await.unwrap().is_empty(),
        "expired session still loads at {}",
        clock.now()
    );
}

/// Through the core: concurrent requests of one visitor, on one app server and on two, lose
/// none of each other's changes.
pub async fn no_lost_updates(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (one, _) = sessions(backing.clone());
    let (two, _) = sessions(backing);
    let lazy = one.start(None);
    lazy.load().await.unwrap().insert("n", 0).unwrap();
    let key = cookie_of(&lazy.commit(200).await.unwrap().cookie);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let server = if i % 2 == 0 { one.clone() } else { two.clone() };
            let key = key.clone();
            tokio::spawn(async move {
                let lazy = server.start(Some(&key));
                let s = lazy.load().await.unwrap();
                s.update("n", |n: &mut u64| *n += 1).unwrap();
                s.update("items", move |v: &mut Vec<u32>| v.push(i))
                    .unwrap();
                lazy.commit(200).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = one.start(Some(&key)).load().await.unwrap();
    assert_eq!(s.get::<u64>("n").unwrap(), Some(40), "lost increments");
    let mut items: Vec<u32> = s.get("items").unwrap().unwrap();
    items.sort_unstable();
    assert_eq!(items, (0..40).collect::<Vec<_>>(), "lost items");
}

/// Idle timeout: a read-only request extends the session, but the store is written (and the
/// cookie re-sent) only once `refresh_threshold` of the timeout has passed since the last write.
pub async fn idle_timeout_rolls_without_write_storm(backing: impl Into<Backing>) {
    let backing = backing.into();
    let settings = Settings::default().with_idle_timeout(Some(600));
    let (sessions, clock) = sessions_with(backing, settings);
    let key = new_session(&sessions).await;
    clock.advance(Duration::from_secs(60));
    let (cookie, live) = read_only(&sessions, &key).await;
    assert!(live);
    assert_eq!(
        cookie,
        CookieAction::Keep,
        "refreshed after only 10% of the idle timeout"
    );
    clock.advance(Duration::from_secs(70));
    let (cookie, _) = read_only(&sessions, &key).await;
    match cookie {
        CookieAction::Set { max_age, .. } => assert_eq!(max_age, Some(600)),
        other => panic!("no refresh after 22% of the idle timeout: {other:?}"),
    }
    // The refresh moved the expiry: 590 s after it the session is still there…
    clock.advance(Duration::from_secs(590));
    assert!(
        read_only(&sessions, &key).await.1,
        "the refresh did not reach the store"
    );
    // …and 600 s without any request ends it.
    clock.advance(Duration::from_secs(601));
    assert!(
        !read_only(&sessions, &key).await.1,
        "idle session still alive"
    );
}

/// Absolute lifetime: however active, the session ends this long after creation.
pub async fn absolute_lifetime_caps_an_active_session(backing: impl Into<Backing>) {
    let backing = backing.into();
    let settings = Settings::default()
        .with_idle_timeout(Some(600))
        .with_absolute_lifetime(Some(1000));
    let (sessions, clock) = sessions_with(backing, settings);
    let key = new_session(&sessions).await;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(300));
        assert!(
            read_only(&sessions, &key).await.1,
            "active session ended early"
        );
    }
    clock.advance(Duration::from_secs(101));
    assert!(
        !read_only(&sessions, &key).await.1,
        "session outlived its absolute lifetime"
    );
}

/// Rotation grace: for a few seconds the old key is served the session as it was before the
/// rotation, read-only and without the logged-in user; it never leads to the new key. A request
/// under it that changes anything (whether it loaded before or after the rotation) fails as
/// [`Error::Rotated`](cloakroom_core::Error::Rotated) and writes nothing. Then the old key is useless.
pub async fn rotation_grace_serves_the_old_key_read_only(backing: impl Into<Backing>) {
    let backing = backing.into();
    let settings = Settings::default().with_rotation_grace(5_u64);
    let (sessions, clock) = sessions_with(backing, settings);
    let old = new_session(&sessions).await;

    // A request of the same page load reads the session with the old key…
    let in_flight = sessions.start(Some(&old));
    in_flight.load().await.unwrap();
    // …meanwhile another one logs in (the in-flight one holds this server's lock, so the
    // login runs as if on a second app server).
    let (other_server, _) = sessions_with(
        Arc::clone(sessions.store().expect("a store on the server")),
        Settings::default().with_rotation_grace(5_u64),
    );
    let login = other_server.start(Some(&old));
    let s = login.load().await.unwrap();
    s.cycle_key().unwrap();
    s.login_as("ana", "django.contrib.auth.backends.ModelBackend", "hash")
        .unwrap();
    let new = cookie_of(&login.commit(200).await.unwrap().cookie);
    assert_ne!(new, old);

    // Its changes stay out of the new session: the old key may be an attacker's.
    let s = in_flight.load().await.unwrap();
    s.update("cart", |c: &mut Vec<String>| c.push("apple".into()))
        .unwrap();
    assert!(matches!(
        in_flight.commit(200).await,
        Err(cloakroom_core::Error::Rotated)
    ));

    // A later request under the old key reads the pre-login snapshot, and sets no cookie.
    let late = sessions.start(Some(&old));
    let s = late.load().await.unwrap();
    assert_eq!(s.get::<u64>("visits").unwrap(), Some(1));
    assert_eq!(s.user_id(), None, "the old key is never logged in");
    assert_eq!(s.session_key().as_deref(), Some(old.as_str()));
    assert_eq!(late.commit(200).await.unwrap().cookie, CookieAction::Keep);
    // Nothing stored under the old key leads to the new one.
    let store = sessions.store().expect("a store on the server");
    let parked = store.load(&old, clock.now()).await.unwrap();
    let parked = parked.expect("the snapshot is there");
    assert!(!String::from_utf8_lossy(&parked.data).contains(&new));

    // A write under the old key fails, and writes nothing anywhere.
    let late = sessions.start(Some(&old));
    let s = late.load().await.unwrap();
    s.insert("visits", 99).unwrap();
    assert!(matches!(
        late.commit(200).await,
        Err(cloakroom_core::Error::Rotated)
    ));
    let fresh = sessions.start(Some(&old));
    let s = fresh.load().await.unwrap();
    assert_eq!(s.get::<u64>("visits").unwrap(), Some(1));
    fresh.commit(200).await.unwrap();

    let current = sessions.start(Some(&new));
    let s = current.load().await.unwrap();
    assert_eq!(s.user_id().as_deref(), Some("ana"));
    assert_eq!(s.get::<Vec<String>>("cart").unwrap(), None);
    assert_eq!(s.get::<u64>("visits").unwrap(), Some(1));
    current.commit(200).await.unwrap();

    clock.advance(Duration::from_secs(6));
    assert!(
        !read_only(&sessions, &old).await.1,
        "old key still works after the grace window"
    );
    assert!(read_only(&sessions, &new).await.1);
}

/// Flush has no grace: logout makes the old key useless at once, window or not.
pub async fn flush_has_no_grace(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, _) = sessions_with(backing, Settings::default().with_rotation_grace(5_u64));
    let key = new_session(&sessions).await;
    let lazy = sessions.start(Some(&key));
    let s = lazy.load().await.unwrap();
    s.cycle_key().unwrap();
    s.flush().unwrap();
    lazy.commit(200).await.unwrap();
    assert!(
        !read_only(&sessions, &key).await.1,
        "flushed key still works"
    );
}

/// A user id no other test uses (stores are shared between tests).
fn fresh_user() -> String {
    format!("user-{}", fresh_key())
}

/// Logs `user` in on a new session, recording a client, and returns the cookie value.
async fn login(sessions: &Sessions, user: &str, user_agent: &str) -> String {
    let lazy = sessions.start(None);
    let s = lazy.load().await.unwrap();
    s.login_as(user, "django.contrib.auth.backends.ModelBackend", "hash")
        .unwrap();
    s.record_client(Some(user_agent), Some("203.0.113.7"))
        .unwrap();
    cookie_of(&lazy.commit(200).await.unwrap().cookie)
}

/// What the user index lists for `user` now, as ids.
async fn listed(sessions: &Sessions, user: &str) -> Vec<String> {
    let all = sessions.sessions_of(user).await.unwrap();
    all.into_iter().map(|s| s.id).collect()
}

/// The id the index lists for the session behind `cookie` (its key, or the key's hash).
fn id_of(sessions: &Sessions, cookie: &str) -> String {
    hashed::stored_id(sessions.settings(), cookie)
}

fn near(a: OffsetDateTime, b: OffsetDateTime) -> bool {
    (a - b).abs() <= time::Duration::seconds(1)
}

/// User index: a login links the session; the list holds the user's sessions, newest login
/// first, with when each started, was last written and expires, and the recorded client; a
/// later write moves `last_seen` and the expiry and keeps `created_at`.
pub async fn user_login_links_and_lists(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, clock) = sessions(backing);
    let user = fresh_user();
    let start = clock.now();
    let first = login(&sessions, &user, "Firefox").await;
    clock.advance(Duration::from_secs(5));
    let second = login(&sessions, &user, "Safari").await;
    let all = sessions.sessions_of(&user).await.unwrap();
    let ids: Vec<_> = all.iter().map(|s| s.id.clone()).collect();
    assert_eq!(
        ids,
        [id_of(&sessions, &second), id_of(&sessions, &first)],
        "not the user's two sessions, newest first"
    );
    let newest = &all[0];
    assert_eq!(newest.user_id, user);
    assert_eq!(newest.user_agent.as_deref(), Some("Safari"));
    assert_eq!(newest.ip.as_deref(), Some("203.0.113.7"));
    let at = start + Duration::from_secs(5);
    assert!(
        near(newest.created_at, at),
        "created_at {}",
        newest.created_at
    );
    assert!(near(newest.last_seen, at), "last_seen {}", newest.last_seen);
    let age = Duration::from_secs(sessions.settings().session.cookie_age);
    assert!(
        near(newest.expires_at, at + age),
        "expires_at {}",
        newest.expires_at
    );
    assert_eq!(all[1].user_agent.as_deref(), Some("Firefox"));

    // A later write of the first session refreshes its entry.
    clock.advance(Duration::from_secs(60));
    let lazy = sessions.start(Some(&first));
    lazy.load().await.unwrap().insert("cart", 1).unwrap();
    lazy.commit(200).await.unwrap();
    let all = sessions.sessions_of(&user).await.unwrap();
    let entry = all
        .iter()
        .find(|s| s.id == id_of(&sessions, &first))
        .expect("the written session is still listed");
    assert!(near(entry.created_at, start), "a write moved created_at");
    assert!(
        near(entry.last_seen, start + Duration::from_secs(65)),
        "last_seen not moved"
    );
    assert!(
        near(entry.expires_at, start + Duration::from_secs(65) + age),
        "expiry not moved"
    );
}

/// User index: revoking one session ends it on its next request and leaves the user's other
/// sessions; an id that is not one of the user's sessions is left alone.
pub async fn user_revoke_ends_one_session(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, _) = sessions(backing);
    let (ana, bob) = (fresh_user(), fresh_user());
    let phone = login(&sessions, &ana, "phone").await;
    let laptop = login(&sessions, &ana, "laptop").await;
    let bobs = login(&sessions, &bob, "bob").await;
    sessions
        .revoke(&ana, &id_of(&sessions, &phone))
        .await
        .unwrap();
    assert!(
        !read_only(&sessions, &phone).await.1,
        "the revoked session still loads"
    );
    assert!(
        read_only(&sessions, &laptop).await.1,
        "revoking one ended another"
    );
    assert_eq!(listed(&sessions, &ana).await, [id_of(&sessions, &laptop)]);
    // Ana cannot end Bob's session by naming it.
    sessions
        .revoke(&ana, &id_of(&sessions, &bobs))
        .await
        .unwrap();
    assert!(
        read_only(&sessions, &bobs).await.1,
        "one user revoked another's session"
    );
    assert_eq!(listed(&sessions, &bob).await, [id_of(&sessions, &bobs)]);
    // Revoking what is gone already is not an error.
    sessions
        .revoke(&ana, &id_of(&sessions, &phone))
        .await
        .unwrap();
}

/// User index: "log out everywhere" ends every session of the user, counts them, and leaves
/// other users' sessions alone.
pub async fn user_revoke_all_logs_out_everywhere(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, _) = sessions(backing);
    let (ana, bob) = (fresh_user(), fresh_user());
    let mut anas = Vec::new();
    for device in ["phone", "laptop", "tablet"] {
        anas.push(login(&sessions, &ana, device).await);
    }
    let bobs = login(&sessions, &bob, "bob").await;
    assert_eq!(sessions.revoke_user(&ana).await.unwrap(), 3);
    for cookie in &anas {
        assert!(
            !read_only(&sessions, cookie).await.1,
            "a session outlived log out everywhere"
        );
    }
    assert!(listed(&sessions, &ana).await.is_empty());
    assert!(
        read_only(&sessions, &bobs).await.1,
        "another user was logged out"
    );
    assert_eq!(listed(&sessions, &bob).await.len(), 1);
    assert_eq!(sessions.revoke_user(&ana).await.unwrap(), 0);
}

/// User index: logout unlinks the session, and so does logging in as another user on it.
pub async fn user_logout_unlinks(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, _) = sessions(backing);
    let (ana, bob) = (fresh_user(), fresh_user());
    let cookie = login(&sessions, &ana, "phone").await;
    let lazy = sessions.start(Some(&cookie));
    lazy.load().await.unwrap().logout().unwrap();
    lazy.commit(200).await.unwrap();
    assert!(
        listed(&sessions, &ana).await.is_empty(),
        "logout left an entry"
    );

    let cookie = login(&sessions, &ana, "phone").await;
    let lazy = sessions.start(Some(&cookie));
    let s = lazy.load().await.unwrap();
    s.login_as(&bob, "django.contrib.auth.backends.ModelBackend", "hash")
        .unwrap();
    let bobs = cookie_of(&lazy.commit(200).await.unwrap().cookie);
    assert!(
        listed(&sessions, &ana).await.is_empty(),
        "the previous user keeps the session"
    );
    assert_eq!(listed(&sessions, &bob).await, [id_of(&sessions, &bobs)]);

    // Removing the user id from the data (a hand-made logout) unlinks too.
    let lazy = sessions.start(Some(&bobs));
    let s = lazy.load().await.unwrap();
    s.remove_value("_auth_user_id").unwrap();
    s.insert("kept", true).unwrap();
    lazy.commit(200).await.unwrap();
    assert!(
        listed(&sessions, &bob).await.is_empty(),
        "an anonymous session stayed listed"
    );
}

/// User index: `cycle_key` moves the entry to the new key, keeping the client.
pub async fn user_cycle_key_moves_the_entry(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, _) = sessions(backing);
    let user = fresh_user();
    let old = login(&sessions, &user, "phone").await;
    let lazy = sessions.start(Some(&old));
    lazy.load().await.unwrap().cycle_key().unwrap();
    let new = cookie_of(&lazy.commit(200).await.unwrap().cookie);
    assert_ne!(old, new);
    let all = sessions.sessions_of(&user).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].id, id_of(&sessions, &new));
    assert_eq!(all[0].user_agent.as_deref(), Some("phone"));
}

/// User index: an expired session is not listed, and its entry goes.
pub async fn user_expired_sessions_are_not_listed(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, clock) = sessions(backing);
    let user = fresh_user();
    let lazy = sessions.start(None);
    let s = lazy.load().await.unwrap();
    s.login_as(&user, "b", "h").unwrap();
    s.set_expiry(cloakroom_core::Expiry::seconds(60)).unwrap();
    let short = cookie_of(&lazy.commit(200).await.unwrap().cookie);
    let long = login(&sessions, &user, "laptop").await;
    clock.advance(Duration::from_secs(61));
    assert!(!read_only(&sessions, &short).await.1);
    assert_eq!(
        listed(&sessions, &user).await,
        [id_of(&sessions, &long)],
        "an expired session is listed"
    );
}

/// User index: a session deleted behind the core's back (by Django's logout on a shared store)
/// is not listed.
pub async fn user_sessions_deleted_elsewhere_are_not_listed(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, _) = sessions(backing);
    let user = fresh_user();
    let gone = login(&sessions, &user, "phone").await;
    let kept = login(&sessions, &user, "laptop").await;
    let store = sessions.store().expect("a store on the server");
    store.delete(&gone).await.unwrap();
    assert_eq!(
        listed(&sessions, &user).await,
        [id_of(&sessions, &kept)],
        "a deleted session is listed"
    );
}

/// User index: `clear_expired` takes the entries of the sessions it deletes along, so a
/// listing as of before their expiry no longer finds them.
pub async fn user_entries_go_with_clear_expired(
    backing: impl Into<Backing>,
    clear: Arc<dyn ClearExpired>,
) {
    let (sessions, clock) = sessions(backing);
    let user = fresh_user();
    let before = clock.now();
    let lazy = sessions.start(None);
    let s = lazy.load().await.unwrap();
    s.login_as(&user, "b", "h").unwrap();
    s.set_expiry(cloakroom_core::Expiry::seconds(60)).unwrap();
    lazy.commit(200).await.unwrap();
    assert_eq!(listed(&sessions, &user).await.len(), 1);
    clear
        .clear_expired(before + Duration::from_secs(120))
        .await
        .unwrap();
    let index = sessions
        .users()
        .expect("a server-side store keeps a user index");
    assert!(
        index.sessions_of(&user, before).await.unwrap().is_empty(),
        "the entry of a cleared session stayed"
    );
}

/// Index entries (the primitive an engine implements, [`IndexEntries`](cloakroom_core::IndexEntries)):
/// `holds` and `delete_held` answer for the user an entry was put under and no other, and a
/// second `put` of the same session keeps the first `created_at`. Called on the engine
/// itself, for the parts the core's index may not reach on every engine (SQL deletes a held
/// session in one statement and never asks `holds`).
pub async fn index_entries_are_held_by_their_user(store: &impl cloakroom_core::IndexEntries) {
    let now = OffsetDateTime::now_utc();
    let (key, ana, bob) = (fresh_key(), fresh_user(), fresh_user());
    let live = record("{}", now + Duration::from_secs(600));
    assert_eq!(store.create(&key, &live).await.unwrap(), Created::Stored);
    let login = store::UserSession {
        id: key.clone(),
        user_id: ana.clone(),
        created_at: now - Duration::from_secs(3600),
        last_seen: now,
        expires_at: live.expires_at,
        user_agent: None,
        ip: None,
    };
    store.put(&login).await.unwrap();
    let later = store::UserSession {
        created_at: now,
        ..login.clone()
    };
    store.put(&later).await.unwrap();
    let found = store.entries(&ana, now).await.unwrap();
    let created = found.iter().find_map(|e| match e {
        cloakroom_core::IndexEntry::Found(s) if s.id == key => Some(s.created_at),
        _ => None,
    });
    let created = created.expect("the entry put is not among the user's entries");
    assert!(near(created, login.created_at), "a relink moved the login");

    assert!(store.holds(&ana, &key).await.unwrap());
    assert!(
        !store.holds(&bob, &key).await.unwrap(),
        "held for another user"
    );
    store.delete_held(&bob, &key).await.unwrap();
    assert!(
        store.load(&key, now).await.unwrap().is_some(),
        "deleted for a user whose index does not hold it"
    );
    store.delete_held(&ana, &key).await.unwrap();
    assert_eq!(store.load(&key, now).await.unwrap(), None, "not deleted");
}

/// User index: with `max_sessions_per_user`, a login over the cap revokes the oldest sessions.
pub async fn user_cap_revokes_the_oldest(backing: impl Into<Backing>) {
    let backing = backing.into();
    let settings = Settings::default().with_max_sessions_per_user(Some(2));
    let (sessions, clock) = sessions_with(backing, settings);
    let (ana, bob) = (fresh_user(), fresh_user());
    let bobs = login(&sessions, &bob, "bob").await;
    let mut anas = Vec::new();
    for device in ["first", "second", "third"] {
        clock.advance(Duration::from_secs(1));
        anas.push(login(&sessions, &ana, device).await);
    }
    assert!(
        !read_only(&sessions, &anas[0]).await.1,
        "the oldest session outlived the cap"
    );
    assert!(read_only(&sessions, &anas[1]).await.1);
    assert!(read_only(&sessions, &anas[2]).await.1);
    assert_eq!(
        listed(&sessions, &ana).await,
        [id_of(&sessions, &anas[2]), id_of(&sessions, &anas[1])]
    );
    assert!(
        read_only(&sessions, &bobs).await.1,
        "the cap touched another user"
    );
}

/// User index under `hash_keys`: ids are the stored hashes (never a working cookie), and
/// revoking by a listed id works.
pub async fn user_index_under_hash_keys(backing: impl Into<Backing>) {
    let backing = backing.into();
    let (sessions, _) = sessions_with(backing, Settings::default().with_hash_keys(true));
    let user = fresh_user();
    let cookie = login(&sessions, &user, "phone").await;
    let ids = listed(&sessions, &user).await;
    assert_eq!(ids, [hashed::stored_key(&cookie)]);
    sessions.revoke(&user, &ids[0]).await.unwrap();
    assert!(
        !read_only(&sessions, &cookie).await.1,
        "revoked by hash, still loads"
    );
}

/// "Remember me" switches between a browser-close cookie and a long fixed lifetime.
pub async fn remember_me_switches_the_cookie(backing: impl Into<Backing>) {
    let (sessions, _) = sessions(backing);
    let key = new_session(&sessions).await;
    let lazy = sessions.start(Some(&key));
    lazy.load().await.unwrap().remember_me(false).unwrap();
    let CookieAction::Set { value, max_age } = lazy.commit(200).await.unwrap().cookie else {
        panic!("remember_me(false) sent no cookie");
    };
    assert_eq!(max_age, None, "a browser-close cookie has no Max-Age");
    let lazy = sessions.start(Some(&value));
    lazy.load().await.unwrap().remember_me(true).unwrap();
    let CookieAction::Set { max_age, .. } = lazy.commit(200).await.unwrap().cookie else {
        panic!("remember_me(true) sent no cookie");
    };
    // Whole seconds, truncated as Django's get_expiry_age does.
    let age = max_age.expect("a remembered session has a Max-Age");
    assert!((30 * 86_400 - 1..=30 * 86_400).contains(&age), "{age}");
}

/// The secret the cookie clauses sign with.
pub const COOKIE_SECRET: &str = "cloakroom-conformance-secret";
/// The retired secret the cookie clauses rotate away from.
pub const OLD_COOKIE_SECRET: &str = "cloakroom-conformance-old-secret";

fn set_whole_second(clock: &ManualClock) {
    let t = clock.now();
    clock.set(t.replace_nanosecond(0).unwrap_or(t));
}

async fn save_new(sessions: &Sessions, pairs: &[(&str, serde_json::Value)]) -> String {
    let lazy = sessions.start(None);
    let s = lazy.load().await.unwrap();
    for (k, v) in pairs {
        s.insert_value(*k, v.clone()).unwrap();
    }
    cookie_of(&lazy.commit(200).await.unwrap().cookie)
}

/// Client-side engines: a value the client made up (SQL, paths, quotes, unicode, empty, huge) or
/// that another salt signed decodes to nothing, never to an error or a panic.
pub async fn cookie_made_up_values_decode_to_nothing<C: Into<ClientSide>>(
    make: impl Fn(&str, &[&str]) -> C,
) {
    let cookies: ClientSide = make(COOKIE_SECRET, &[]).into();
    let other_salt = signing::Signer::new(
        &cloakroom_core::Secret::new(COOKIE_SECRET),
        &[],
        signing::SESSION_SALT,
    )
    .dumps(&serde_json::from_str(r#"{"a":1}"#).unwrap(), true, now());
    for value in [
        "'; DROP TABLE sessions; --",
        "../../../../etc/passwd",
        "a\"b\\c",
        "ключ-🔑",
        "%00%2e%2e",
        "",
        ":::",
        &"x".repeat(100_000),
        &other_salt,
    ] {
        assert!(cookies.decode(value, now()).is_none(), "{value}");
    }
    let made = cookies
        .encode(&serde_json::from_str(r#"{"a":1}"#).unwrap(), now())
        .unwrap();
    assert!(
        cookies.decode(&made, now()).is_some(),
        "its own value refused"
    );
}

/// Client-side engines: what a session saves comes back from its cookie alone, and under
/// `signed_cookies` the cookie is Django's signed-cookie value (so Django reads it too).
pub async fn cookie_round_trip<C: Into<ClientSide>>(make: impl Fn(&str, &[&str]) -> C) {
    let client: ClientSide = make(COOKIE_SECRET, &[]).into();
    let (sessions, clock) = sessions(client.clone());
    let stored = [
        ("name", serde_json::json!("Jürgen 😀")),
        ("n", serde_json::json!(1.5)),
        (
            "cart",
            serde_json::json!({"items": [{"sku": "A-1", "qty": 2}]}),
        ),
    ];
    let cookie = save_new(&sessions, &stored).await;
    assert!(
        cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
        "the cookie value needs quoting: {cookie}"
    );
    let s = sessions.start(Some(&cookie)).load().await.unwrap();
    for (k, v) in &stored {
        assert_eq!(
            s.get_value(k).as_ref(),
            Some(v),
            "{k} did not survive the cookie"
        );
    }
    if !matches!(client, ClientSide::Signed(_)) {
        return;
    }
    let django = signing::Signer::new(
        &cloakroom_core::Secret::new(COOKIE_SECRET),
        &[],
        signing::COOKIE_SALT,
    );
    let data = django
        .loads(
            &cookie,
            Some(Duration::from_secs(config::DEFAULT_COOKIE_AGE)),
            clock.now(),
        )
        .expect("the cookie is not a Django signed_cookies value");
    assert_eq!(data, s.data());
}

/// Client-side engines: a changed, truncated, re-salted or made-up cookie gives an empty session, and
/// the response deletes it.
pub async fn cookie_tampered_is_empty<C: Into<ClientSide>>(make: impl Fn(&str, &[&str]) -> C) {
    let (sessions, clock) = sessions(make(COOKIE_SECRET, &[]).into());
    let cookie = save_new(&sessions, &[("user", serde_json::json!("42"))]).await;
    let flip = |at: usize| {
        let mut bytes = cookie.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let other_salt = signing::Signer::new(
        &cloakroom_core::Secret::new(COOKIE_SECRET),
        &[],
        signing::SESSION_SALT,
    )
    .dumps(
        &serde_json::from_str(r#"{"user":"1"}"#).unwrap(),
        true,
        clock.now(),
    );
    let mut forgeries = vec![
        flip(0),
        flip(cookie.len() / 2),
        flip(cookie.len() - 1),
        cookie[..cookie.len() - 1].to_owned(),
        cookie[..cookie.len() / 2].to_owned(),
        format!("{cookie}A"),
        other_salt,
        "e30".to_owned(),
        String::new(),
        "x".repeat(10_000),
    ];
    // Django's format: `payload:timestamp:signature`; change the timestamp, drop the colons.
    if let Some(ts) = cookie.find(':') {
        forgeries.extend([flip(ts + 1), cookie.replace(':', "")]);
    }
    for forged in forgeries {
        let lazy = sessions.start(Some(&forged));
        let s = lazy.load().await.unwrap();
        assert!(s.is_empty(), "a forged cookie loaded: {forged}");
        assert_eq!(lazy.commit(200).await.unwrap().cookie, CookieAction::Delete);
    }
}

/// Client-side engines: a cookie exactly `cookie_age` old still loads (Django's `age > max_age`
/// rule); one second older it is empty.
pub async fn cookie_expired_is_empty<C: Into<ClientSide>>(make: impl Fn(&str, &[&str]) -> C) {
    let (sessions, clock) = sessions(make(COOKIE_SECRET, &[]).into());
    set_whole_second(&clock);
    let cookie = save_new(&sessions, &[("a", serde_json::json!(1))]).await;
    clock.advance(Duration::from_secs(config::DEFAULT_COOKIE_AGE));
    assert!(
        !sessions
            .start(Some(&cookie))
            .load()
            .await
            .unwrap()
            .is_empty(),
        "a cookie exactly cookie_age old is still valid"
    );
    clock.advance(Duration::from_secs(1));
    let lazy = sessions.start(Some(&cookie));
    assert!(
        lazy.load().await.unwrap().is_empty(),
        "an expired cookie loaded"
    );
    assert_eq!(lazy.commit(200).await.unwrap().cookie, CookieAction::Delete);
}

/// Client-side engines: after a key rotation, cookies signed with the old key still load (it is a
/// fallback), are re-signed with the new key on the next save, and the old key alone no longer
/// verifies them.
pub async fn cookie_fallback_key_accepted<C: Into<ClientSide>>(make: impl Fn(&str, &[&str]) -> C) {
    let (before, _) = sessions(make(OLD_COOKIE_SECRET, &[]).into());
    let old_cookie = save_new(&before, &[("user", serde_json::json!("7"))]).await;

    let (rotated, _) = sessions(make(COOKIE_SECRET, &[OLD_COOKIE_SECRET]).into());
    let lazy = rotated.start(Some(&old_cookie));
    let s = lazy.load().await.unwrap();
    assert_eq!(
        s.get::<String>("user").unwrap().as_deref(),
        Some("7"),
        "fallback refused"
    );
    s.insert("seen", true).unwrap();
    let new_cookie = cookie_of(&lazy.commit(200).await.unwrap().cookie);

    let (only_new, _) = sessions(make(COOKIE_SECRET, &[]).into());
    assert!(only_new
        .start(Some(&old_cookie))
        .load()
        .await
        .unwrap()
        .is_empty());
    let s = only_new.start(Some(&new_cookie)).load().await.unwrap();
    assert_eq!(
        s.get::<bool>("seen").unwrap(),
        Some(true),
        "not re-signed with the new key"
    );
    let (only_old, _) = sessions(make(OLD_COOKIE_SECRET, &[]).into());
    assert!(only_old
        .start(Some(&new_cookie))
        .load()
        .await
        .unwrap()
        .is_empty());
}

/// Client-side engines: a session too large for a browser cookie fails with `TooLarge` (saying the size
/// and the limit) instead of being silently dropped by the browser.
pub async fn cookie_oversized_is_too_large<C: Into<ClientSide>>(make: impl Fn(&str, &[&str]) -> C) {
    let (sessions, _) = sessions(make(COOKIE_SECRET, &[]).into());
    // Random text barely compresses.
    let noise: String = (0..200).map(|_| fresh_key()).collect();
    let lazy = sessions.start(None);
    lazy.load().await.unwrap().insert("blob", &noise).unwrap();
    match lazy.commit(200).await {
        Err(cloakroom_core::Error::Store(e @ cloakroom_core::StoreError::TooLarge { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains("4096"), "the message lacks the limit: {msg}");
            assert!(msg.contains("bytes"), "the message lacks the size: {msg}");
        }
        other => panic!("a {}-byte session was answered {other:?}", noise.len()),
    }
}

/// Client-side engines: `flush` deletes the cookie.
pub async fn cookie_flush_deletes_the_cookie<C: Into<ClientSide>>(
    make: impl Fn(&str, &[&str]) -> C,
) {
    let (sessions, _) = sessions(make(COOKIE_SECRET, &[]).into());
    let cookie = save_new(&sessions, &[("user", serde_json::json!("42"))]).await;
    let lazy = sessions.start(Some(&cookie));
    lazy.load().await.unwrap().flush().unwrap();
    let outcome = lazy.commit(200).await.unwrap();
    assert_eq!(outcome.cookie, CookieAction::Delete);
    assert!(outcome.vary);
}

/// Expands to one `#[tokio::test]` per clause of the store contract, for the store that
/// `$make` (an async block or future yielding `Arc<dyn SessionStore>`) builds.
///
/// `$make` yields an `Arc` of the store type, which keeps an index of sessions by user
/// ([`UserIndex`](cloakroom_core::UserIndex)); add `, clear` when it implements
/// [`ClearExpired`] too. The [crate docs](crate) show it on the in-process store.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@tests $make;
            load_missing_is_none, create_then_load, create_never_overwrites, expired_is_gone,
            update_swaps_when_unchanged, update_conflict_returns_current, update_never_resurrects,
            touch_moves_the_expiry_and_keeps_the_data, touched_record_outlives_its_old_expiry,
            touch_of_missing_or_expired_is_missing, touch_of_changed_data_is_conflict,
            delete_is_idempotent, hostile_keys_are_absent);
        $crate::conformance_tests!(@core $make;
            session_lifecycle, unknown_keys_are_not_adopted, session_expiry_follows_the_clock, no_lost_updates,
            idle_timeout_rolls_without_write_storm, absolute_lifetime_caps_an_active_session,
            rotation_grace_serves_the_old_key_read_only, flush_has_no_grace,
            remember_me_switches_the_cookie, user_login_links_and_lists,
            user_revoke_ends_one_session, user_revoke_all_logs_out_everywhere,
            user_logout_unlinks, user_cycle_key_moves_the_entry,
            user_expired_sessions_are_not_listed, user_sessions_deleted_elsewhere_are_not_listed,
            user_cap_revokes_the_oldest,
            user_index_under_hash_keys);
    };
    ($make:expr, clear) => {
        $crate::conformance_tests!($make);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn clear_expired_keeps_live() {
            let store = $make.await;
            let clear: ::std::sync::Arc<dyn $crate::ClearExpired> = store.clone();
            $crate::clear_expired_keeps_live(store, clear).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn user_entries_go_with_clear_expired() {
            let store = $make.await;
            let clear: ::std::sync::Arc<dyn $crate::ClearExpired> = store.clone();
            $crate::user_entries_go_with_clear_expired($crate::Backend::indexed(store), clear)
                .await;
        }
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::SessionStore> = $make.await;
                $crate::$name(store).await;
            }
        )*
    };
    (@core $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::$name($crate::Backend::indexed($make.await)).await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per clause that applies to sessions whose data travels in
/// the cookie, signed or private (nothing on the server: no compare-and-swap, no revocation):
/// the round trip through the core, tampered, made-up and expired values, fallback keys and
/// the size limit.
///
/// `$make` is a closure or function `Fn(&str, &[&str]) -> C` (`C` being `SignedCookies`,
/// `PrivateCookies` or a [`ClientSide`]) that seals with the first argument and accepts the
/// fallbacks in the second, with Django's default `cookie_age` and cookie name.
///
/// ```no_run
/// use cloakroom_core::config::DEFAULT_COOKIE_AGE;
/// use cloakroom_core::engines::cookie::SignedCookies;
/// use cloakroom_core::Secret;
///
/// fn make(secret: &str, fallbacks: &[&str]) -> SignedCookies {
///     let fallbacks = fallbacks.iter().map(|f| Secret::new(*f)).collect();
///     SignedCookies::new(Secret::new(secret), fallbacks, DEFAULT_COOKIE_AGE, "sessionid")
///         .expect("a valid signing setup")
/// }
///
/// cloakroom_testkit::cookie_conformance_tests!(make);
/// # fn main() { let _ = make(cloakroom_testkit::COOKIE_SECRET, &[]); }
/// ```
#[macro_export]
macro_rules! cookie_conformance_tests {
    ($make:expr) => {
        $crate::cookie_conformance_tests!(@backing $make;
            session_lifecycle, unknown_keys_are_not_adopted, session_expiry_follows_the_clock,
            remember_me_switches_the_cookie);
        $crate::cookie_conformance_tests!(@make $make;
            cookie_made_up_values_decode_to_nothing, cookie_round_trip,
            cookie_tampered_is_empty, cookie_expired_is_empty, cookie_fallback_key_accepted,
            cookie_oversized_is_too_large, cookie_flush_deletes_the_cookie);
    };
    (@backing $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let cookies: $crate::ClientSide = ($make)($crate::COOKIE_SECRET, &[]).into();
                $crate::$name(cookies).await;
            }
        )*
    };
    (@make $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::$name($make).await;
            }
        )*
    };
}

/// How many calls of each kind a [`Counting`] store has seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// `load` calls.
    pub loads: u64,
    /// `create` calls.
    pub creates: u64,
    /// `update` calls: writes that carry the session data.
    pub updates: u64,
    /// `touch` calls: expiry-only writes.
    pub touches: u64,
    /// `delete` calls.
    pub deletes: u64,
}

impl Calls {
    /// Round trips that read: `load`.
    pub fn reads(&self) -> u64 {
        self.loads
    }

    /// Round trips that write: `create`, `update`, `touch` and `delete`.
    pub fn writes(&self) -> u64 {
        self.creates + self.updates + self.touches + self.deletes
    }

    /// `(reads, writes)`: the round trips a request cost, for one assertion.
    pub fn round_trips(&self) -> (u64, u64) {
        (self.reads(), self.writes())
    }
}

#[derive(Default)]
struct Counters {
    loads: AtomicU64,
    creates: AtomicU64,
    updates: AtomicU64,
    touches: AtomicU64,
    deletes: AtomicU64,
}

/// A decorator that counts the calls the core makes to the store it wraps, by kind: for tests
/// that pin how many round trips (and which writes) a request costs. Clones share the counts,
/// so a test keeps one while the layer owns the store around the other:
///
/// ```
/// use cloakroom_core::decorate::Decorator;
/// use cloakroom_core::engines::memory::MemoryStore;
/// use cloakroom_testkit::Counting;
///
/// let counts = Counting::default();
/// let store = counts.clone().around(MemoryStore::default());
/// # drop(store);
/// assert_eq!(counts.take().round_trips(), (0, 0));
/// ```
#[derive(Clone, Default)]
pub struct Counting {
    counters: Arc<Counters>,
}

impl Counting {
    /// The calls so far.
    pub fn calls(&self) -> Calls {
        self.read(AtomicU64::load)
    }

    /// The calls since the last `take`, resetting the counts to zero.
    pub fn take(&self) -> Calls {
        self.read(|c, order| c.swap(0, order))
    }

    fn read(&self, get: impl Fn(&AtomicU64, Ordering) -> u64) -> Calls {
        let c = &self.counters;
        let get = |counter| get(counter, Ordering::SeqCst);
        Calls {
            loads: get(&c.loads),
            creates: get(&c.creates),
            updates: get(&c.updates),
            touches: get(&c.touches),
            deletes: get(&c.deletes),
        }
    }
}

impl Decorator for Counting {
    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        let c = &self.counters;
        let counter = match op {
            Operation::Load => Some(&c.loads),
            Operation::Create => Some(&c.creates),
            Operation::Update => Some(&c.updates),
            Operation::Touch => Some(&c.touches),
            Operation::Delete => Some(&c.deletes),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        call
    }
}
