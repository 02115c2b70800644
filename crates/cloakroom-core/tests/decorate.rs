//! Decorators: one written in a few lines sees every call the core and the app make to a real
//! store; `hash_keys` is one (keys and index ids hashed, listed ids revoked as listed); and the
//! app's calls through `Sessions::store` go through the breaker and the timeout, as the core's
//! own do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloakroom_core::decorate::{CallOutcome, Decorator, Operation, StoreCall};
use cloakroom_core::engines::memory::MemoryStore;
use cloakroom_core::hashed::{stored_key, HashKeys};
use cloakroom_core::{
    CookieAction, Record, SessionStore, Sessions, Settings, StoreError, UserSession,
};
use time::OffsetDateTime;

/// The whole decorator under test: every operation and the key the store was asked about.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Decorator for Log {
    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        async move {
            let result = call.await;
            let outcome = result.as_ref().map_or("error", CallOutcome::outcome);
            let line = format!("{} {outcome}", op.name());
            self.0.lock().unwrap().push(line);
            result
        }
    }
}

impl Log {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn record(data: &str) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(600),
    }
}

fn entry(id: &str) -> UserSession {
    let now = OffsetDateTime::now_utc();
    UserSession {
        id: id.to_owned(),
        user_id: "42".to_owned(),
        created_at: now,
        last_seen: now,
        expires_at: now + Duration::from_secs(600),
        user_agent: None,
        ip: None,
    }
}

#[tokio::test]
async fn a_few_line_decorator_sees_every_store_and_index_call_with_its_answer() {
    let log = Arc::new(Log::default());
    let decorated = Arc::new(log.clone().around(MemoryStore::default()));
    let store: Arc<dyn SessionStore> = decorated.clone();
    let now = OffsetDateTime::now_utc();
    let key = "abcdefgh12345678abcdefgh12345678";
    assert_eq!(store.load(key, now).await.unwrap(), None);
    store.create(key, &record("{}")).await.unwrap();
    store.create(key, &record("{}")).await.unwrap();
    store
        .update(key, b"{}", &record(r#"{"a":1}"#), now)
        .await
        .unwrap();
    store.touch(key, &record("{}"), now).await.unwrap();
    // The memory store's index shows through the same decorator.
    let index: Arc<dyn cloakroom_core::UserIndex> = decorated;
    index.link(&entry(key)).await.unwrap();
    assert_eq!(index.sessions_of("42", now).await.unwrap().len(), 1);
    index.unlink("42", key).await.unwrap();
    index.revoke("42", key).await.unwrap();
    store.delete(key).await.unwrap();
    assert_eq!(
        log.take(),
        [
            "load miss",
            "create stored",
            "create taken",
            "update stored",
            "touch conflict",
            "link ok",
            "sessions_of ok",
            "unlink ok",
            "revoke ok",
            "delete ok",
        ]
    );
}

#[tokio::test]
async fn the_core_calls_its_store_through_the_decorator() {
    let log = Arc::new(Log::default());
    let store = log.clone().around(MemoryStore::default());
    let sessions = Sessions::new(store, Settings::default()).unwrap();
    let lazy = sessions.start(None);
    lazy.load()
        .await
        .unwrap()
        .insert("_auth_user_id", "42")
        .unwrap();
    let CookieAction::Set { value: key, .. } = lazy.commit(200).await.unwrap().cookie else {
        panic!("a login sets the cookie");
    };
    assert_eq!(log.take(), ["create stored", "link ok"]);
    let lazy = sessions.start(Some(&key));
    lazy.load().await.unwrap().insert("n", 1).unwrap();
    lazy.commit(200).await.unwrap();
    // Every write refreshes the entry (its `last_seen`).
    assert_eq!(log.take(), ["load hit", "update stored", "link ok"]);
    assert_eq!(sessions.revoke_user("42").await.unwrap(), 1);
    assert_eq!(log.take(), ["sessions_of ok", "revoke ok"]);
    // The app's own calls go through it too.
    let revoked = sessions
        .store()
        .expect("a server store")
        .load(&key, OffsetDateTime::now_utc())
        .await;
    assert_eq!(revoked.unwrap(), None);
    assert_eq!(log.take(), ["load miss"]);
}

#[tokio::test]
async fn hash_keys_hashes_keys_and_linked_ids_and_revokes_listed_ids_as_listed() {
    let inner = Arc::new(MemoryStore::default());
    let store = cloakroom_core::decorate::Decorated::new(HashKeys, inner.clone())
        .with_users(Some(inner.clone()));
    let now = OffsetDateTime::now_utc();
    let key = "abcdefgh12345678abcdefgh12345678";
    store.create(key, &record("{}")).await.unwrap();
    assert!(
        inner.load(key, now).await.unwrap().is_none(),
        "the raw key is stored"
    );
    assert!(inner.load(&stored_key(key), now).await.unwrap().is_some());
    assert_eq!(
        store.load(key, now).await.unwrap().map(|r| r.data),
        Some("{}".into())
    );
    store.link(&entry(key)).await.unwrap();
    let listed = store.sessions_of("42", now).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].id,
        stored_key(key),
        "a listing shows a usable key"
    );
    store.revoke("42", &listed[0].id).await.unwrap();
    assert_eq!(
        store.load(key, now).await.unwrap(),
        None,
        "revoke took the listed id"
    );
    assert!(store.sessions_of("42", now).await.unwrap().is_empty());
}

/// A store that never answers, as a server that accepted the connection and hangs.
struct Hang;

impl Decorator for Hang {
    fn wrap<T: CallOutcome>(&self, _: Operation, _: impl StoreCall<T>) -> impl StoreCall<T> {
        std::future::pending()
    }
}

#[tokio::test]
async fn the_apps_own_store_calls_go_through_the_timeout_and_the_breaker() {
    let settings = Settings::default()
        .with_store_timeout_ms(50_u64)
        .with_breaker_threshold(2_u32)
        .with_breaker_cooldown_ms(60_000_u64);
    let sessions = Sessions::new(Hang.around(MemoryStore::default()), settings).unwrap();
    let store = sessions.store().expect("a server store");
    let now = OffsetDateTime::now_utc();
    for _ in 0..2 {
        let hung = tokio::time::timeout(Duration::from_secs(5), store.load("k", now))
            .await
            .expect("the store timeout ends the call");
        assert!(
            matches!(
                hung,
                Err(StoreError::Timeout {
                    engine: "memory",
                    ..
                })
            ),
            "{hung:?}"
        );
    }
    let refused = store.delete("k").await;
    assert!(
        matches!(refused, Err(StoreError::CircuitOpen { .. })),
        "{refused:?}"
    );
}
