//! What the user index costs and how its failures surface: sessions without a user and
//! read-only requests make no index call; a failing index is a `StoreError` under the
//! store-error policy (fail-closed reports it, fail-open keeps the saved session).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cloakroom::decorate::{CallOutcome, Decorator, Operation, StoreCall};
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{CookieAction, Error, OnStoreError, Sessions, Settings, StoreError};

/// Around a real in-process store: counts the user index calls, and can make them fail.
#[derive(Default)]
struct Counting {
    index_calls: AtomicU64,
    failing: AtomicBool,
}

impl Decorator for Counting {
    fn wrap<T: CallOutcome>(&self, op: Operation, call: impl StoreCall<T>) -> impl StoreCall<T> {
        let index = op.is_index();
        if index {
            self.index_calls.fetch_add(1, Ordering::SeqCst);
        }
        let failing = index && self.failing.load(Ordering::SeqCst);
        async move {
            if failing {
                return Err(StoreError::backend("counting", "the index is down"));
            }
            call.await
        }
    }
}

fn setup(policy: OnStoreError) -> (Arc<Counting>, Sessions) {
    let counting = Arc::new(Counting::default());
    let settings = Settings::default().with_on_store_error(policy);
    let store = counting.clone().around(MemoryStore::default());
    let sessions = Sessions::new(store, settings).unwrap();
    (counting, sessions)
}

/// One request that runs `f` on the session; its cookie outcome, or the commit's error.
async fn request(
    sessions: &Sessions,
    cookie: Option<&str>,
    f: impl FnOnce(&cloakroom::Session),
) -> Result<CookieAction, Error> {
    let lazy = sessions.start(cookie);
    f(&lazy.load().await?);
    Ok(lazy.commit(200).await?.cookie)
}

fn value(action: CookieAction) -> String {
    match action {
        CookieAction::Set { value, .. } => value,
        other => panic!("no cookie set: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sessions_and_read_only_requests_make_no_index_call() {
    let (store, sessions) = setup(OnStoreError::FailClosed);
    let anon = value(
        request(&sessions, None, |s| s.insert("n", 0).unwrap())
            .await
            .unwrap(),
    );
    for i in 1..=10 {
        request(&sessions, Some(&anon), |s| s.insert("n", i).unwrap())
            .await
            .unwrap();
    }
    assert_eq!(
        store.index_calls.load(Ordering::SeqCst),
        0,
        "anonymous writes"
    );

    let login = |s: &cloakroom::Session| s.login_as("42", "backend", "hash").unwrap();
    let user = value(request(&sessions, Some(&anon), login).await.unwrap());
    let after_login = store.index_calls.load(Ordering::SeqCst);
    assert!(after_login >= 1, "a login did not link");
    for _ in 0..10 {
        request(&sessions, Some(&user), |s| {
            s.user_id();
        })
        .await
        .unwrap();
    }
    assert_eq!(
        store.index_calls.load(Ordering::SeqCst),
        after_login,
        "read-only requests called the index"
    );
    request(&sessions, Some(&user), |s| s.insert("cart", 1).unwrap())
        .await
        .unwrap();
    assert_eq!(
        store.index_calls.load(Ordering::SeqCst),
        after_login + 1,
        "a write of a logged-in session is one link"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_index_is_a_store_error_when_fail_closed() {
    let (store, sessions) = setup(OnStoreError::FailClosed);
    store.failing.store(true, Ordering::SeqCst);
    let login = |s: &cloakroom::Session| s.login_as("42", "backend", "hash").unwrap();
    match request(&sessions, None, login).await {
        Err(Error::Store(StoreError::Backend { engine, .. })) => assert_eq!(engine, "counting"),
        other => panic!("a failed link answered {other:?}"),
    }
    assert!(matches!(
        sessions.sessions_of("42").await,
        Err(StoreError::Backend { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_index_keeps_the_saved_session_when_fail_open() {
    let (store, sessions) = setup(OnStoreError::FailOpen);
    store.failing.store(true, Ordering::SeqCst);
    let login = |s: &cloakroom::Session| s.login_as("42", "backend", "hash").unwrap();
    let cookie = value(request(&sessions, None, login).await.unwrap());
    let s = sessions.start(Some(&cookie)).load().await.unwrap();
    assert_eq!(s.user_id().as_deref(), Some("42"), "the login was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_cookies_have_no_index_and_say_so() {
    let cookies = cloakroom::engines::cookie::SignedCookies::new(
        cloakroom::Secret::new("secret"),
        Vec::new(),
        1_209_600,
        "sessionid".to_owned(),
    )
    .unwrap();
    let sessions = Sessions::from_backing(cookies, Settings::default()).unwrap();
    let err = sessions.revoke_user("42").await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NoUserIndex {
                engine: "signed_cookies"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("server-side engine"), "{err}");
}
