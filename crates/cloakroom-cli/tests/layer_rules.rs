//! Rules the demo cannot show on its own, pinned on small axum apps built here against the
//! `cloakroom` library and served over real HTTP on loopback: nothing is saved on a 5xx (but a
//! flush still logs out), a session deleted meanwhile is not resurrected, `clear` deletes, and
//! loading is lazy.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use cloakroom::decorate::Decorator as _;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::testing::Counting;
use cloakroom::{Record, Session, SessionLayer, SessionStore, Sessions, Settings};
use support::{bare, send, session, Reply, Scratch};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// Serves `app` on a free loopback port for the rest of the test.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// `POST path` with the session cookie of `key`.
async fn post_as(client: &reqwest::Client, addr: SocketAddr, path: &str, key: &str) -> Reply {
    send(client.post(url(addr, path)).header("cookie", session(key))).await
}

/// `GET path` with the session cookie of `key`.
async fn get_as(client: &reqwest::Client, addr: SocketAddr, path: &str, key: &str) -> Reply {
    send(client.get(url(addr, path)).header("cookie", session(key))).await
}

// ---- Nothing is saved on a 5xx ----

async fn write(session: Session) -> Result<StatusCode, cloakroom::Error> {
    session.insert("a", 1)?;
    Ok(StatusCode::OK)
}

async fn write_then_fail(session: Session) -> Result<StatusCode, cloakroom::Error> {
    session.insert("b", 2)?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn write_then_unavailable(session: Session) -> Result<StatusCode, cloakroom::Error> {
    session.insert("b", 2)?;
    Ok(StatusCode::SERVICE_UNAVAILABLE)
}

async fn write_then_refuse(session: Session) -> Result<StatusCode, cloakroom::Error> {
    session.insert("c", 3)?;
    Ok(StatusCode::BAD_REQUEST)
}

async fn cycle_then_fail(session: Session) -> Result<StatusCode, cloakroom::Error> {
    session.cycle_key().unwrap();
    session.insert("user", "ana")?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn flush_then_fail(session: Session) -> StatusCode {
    session.flush().unwrap();
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn flush_write_then_fail(session: Session) -> Result<StatusCode, cloakroom::Error> {
    session.flush().unwrap();
    session.insert("flash", "logged out")?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn clear_then_fail(session: Session) -> StatusCode {
    session.clear().unwrap();
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn clear(session: Session) -> StatusCode {
    session.clear().unwrap();
    StatusCode::NO_CONTENT
}

async fn read_a(session: Session) -> Result<String, cloakroom::Error> {
    Ok(format!("{:?}", session.get::<i64>("a")?))
}

fn saving_app(store: MemoryStore) -> Router {
    let sessions = Sessions::new(store, Settings::default()).unwrap();
    Router::new()
        .route("/write", post(write))
        .route("/write-then-fail", post(write_then_fail))
        .route("/write-then-unavailable", post(write_then_unavailable))
        .route("/write-then-refuse", post(write_then_refuse))
        .route("/cycle-then-fail", post(cycle_then_fail))
        .route("/flush-then-fail", post(flush_then_fail))
        .route("/flush-write-then-fail", post(flush_write_then_fail))
        .route("/clear-then-fail", post(clear_then_fail))
        .route("/clear", post(clear))
        .route("/read", get(read_a))
        .layer(SessionLayer::new(sessions))
}

async fn stored(store: &MemoryStore, key: &str) -> Option<Record> {
    store.load(key, OffsetDateTime::now_utc()).await.unwrap()
}

#[tokio::test]
async fn nothing_is_saved_on_a_5xx() {
    let store = MemoryStore::new(1_000);
    let addr = serve(saving_app(store.clone())).await;
    let client = bare();

    // A new visitor whose request fails gets no session.
    let failed = send(client.post(url(addr, "/write-then-fail"))).await;
    assert_eq!(failed.status, 500);
    assert!(failed.set_cookies().is_empty(), "{:?}", failed.headers);
    assert!(store.is_empty(), "a failed request created a record");

    let key = send(client.post(url(addr, "/write"))).await.new_key();
    let before = stored(&store, &key).await.expect("saved on a 200");

    // (A flush is the exception: see `a_logout_whose_response_fails_still_logs_out`.)
    for path in [
        "/write-then-fail",
        "/write-then-unavailable",
        "/cycle-then-fail",
        "/clear-then-fail",
    ] {
        let reply = post_as(&client, addr, path, &key).await;
        assert!(reply.status >= 500, "{path}: {}", reply.status);
        assert!(
            reply.set_cookies().is_empty(),
            "{path}: a 5xx must leave the cookie alone: {:?}",
            reply.headers
        );
        assert_eq!(
            stored(&store, &key).await,
            Some(before.clone()),
            "{path}: a 5xx must leave the store unchanged"
        );
        assert_eq!(store.len(), 1, "{path}: a 5xx must create no record");
    }

    // The boundary: a 4xx is not a server error, so its changes are saved (Django: `< 500`).
    let refused = post_as(&client, addr, "/write-then-refuse", &key).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.session_cookie().value, key);
    let after = stored(&store, &key).await.unwrap();
    assert_eq!(after.data, r#"{"a":1,"c":3}"#);
}

#[tokio::test]
async fn a_logout_whose_response_fails_still_logs_out() {
    let store = MemoryStore::new(1_000);
    let addr = serve(saving_app(store.clone())).await;
    let client = bare();
    let key = send(client.post(url(addr, "/write"))).await.new_key();

    let reply = post_as(&client, addr, "/flush-then-fail", &key).await;
    assert_eq!(reply.status, 500);
    assert!(
        reply.session_cookie().is_deletion(),
        "the emptied session's cookie goes, as Django's middleware does on any status: {:?}",
        reply.headers
    );
    assert_eq!(
        stored(&store, &key).await,
        None,
        "the flushed record is gone"
    );
    assert!(store.is_empty());

    // A browser that kept the old cookie anyway is logged out.
    let read = get_as(&client, addr, "/read", &key).await;
    assert_eq!((read.status, read.body.as_str()), (200, "None"));

    // A logout that writes a message and then fails: the old record goes all the same, and
    // the message is not saved (nothing is, on a 5xx).
    let key = send(client.post(url(addr, "/write"))).await.new_key();
    let reply = post_as(&client, addr, "/flush-write-then-fail", &key).await;
    assert_eq!(reply.status, 500);
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.headers);
    assert!(
        store.is_empty(),
        "the old record went and nothing was created"
    );
}

#[tokio::test]
async fn a_login_whose_response_fails_keeps_the_old_session() {
    let store = MemoryStore::new(1_000);
    let addr = serve(saving_app(store.clone())).await;
    let client = bare();
    let key = send(client.post(url(addr, "/write"))).await.new_key();

    // `cycle_key` and then a 500: the new key was never stored, so the old one must not go.
    let reply = post_as(&client, addr, "/cycle-then-fail", &key).await;
    assert_eq!(reply.status, 500);
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.headers);

    let read = get_as(&client, addr, "/read", &key).await;
    assert_eq!(
        (read.status, read.body.as_str()),
        (200, "Some(1)"),
        "the session from before the failed login"
    );
    assert!(
        read.set_cookies().is_empty(),
        "the old key is still the key"
    );
    assert_eq!(store.len(), 1, "nothing of the failed login was stored");
}

#[tokio::test]
async fn clear_keeps_the_key_and_stores_an_empty_session() {
    // Django saves `{}` under the same key after `clear()` and keeps the cookie; only
    // `flush()` deletes.
    let store = MemoryStore::new(1_000);
    let addr = serve(saving_app(store.clone())).await;
    let client = bare();
    let key = send(client.post(url(addr, "/write"))).await.new_key();
    assert!(stored(&store, &key).await.is_some());

    let reply = post_as(&client, addr, "/clear", &key).await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.session_cookie().value,
        key,
        "clear keeps the cookie and its key: {:?}",
        reply.headers
    );
    assert_eq!(
        stored(&store, &key).await.map(|r| r.data).as_deref(),
        Some(&b"{}"[..]),
        "clear stores an empty session under the same key"
    );
}

// ---- Logout in another tab ----

/// Lets the test hold request A between its load and its save.
#[derive(Clone, Default)]
struct Gate {
    loaded: Arc<Notify>,
    go: Arc<Notify>,
}

async fn slow_write(
    State(gate): State<Gate>,
    session: Session,
) -> Result<StatusCode, cloakroom::Error> {
    // The session is loaded: let the other tab log out, then change it.
    gate.loaded.notify_one();
    gate.go.notified().await;
    session.insert("cart", vec!["apple"])?;
    Ok(StatusCode::OK)
}

async fn login(session: Session) -> Result<StatusCode, cloakroom::Error> {
    session.cycle_key().unwrap();
    session.insert("user", "ana")?;
    Ok(StatusCode::OK)
}

async fn logout(session: Session) -> StatusCode {
    session.flush().unwrap();
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn a_session_deleted_by_another_request_is_not_resurrected() {
    let dir = Scratch::new("interrupted");
    let store = SqliteStore::connect(&format!("sqlite://{}/s.sqlite3", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let sessions = Sessions::new(store.clone(), Settings::default()).unwrap();
    let gate = Gate::default();
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/slow", post(slow_write))
        .with_state(gate.clone())
        .layer(SessionLayer::new(sessions));
    let addr = serve(app).await;
    let client = bare();
    let key = send(client.post(url(addr, "/login"))).await.new_key();

    let tab_a = tokio::spawn(send(
        client
            .post(url(addr, "/slow"))
            .header("cookie", session(&key)),
    ));
    gate.loaded.notified().await;

    let tab_b = post_as(&client, addr, "/logout", &key).await;
    assert_eq!(tab_b.status, 204);
    assert!(tab_b.session_cookie().is_deletion());
    assert!(!store.exists(&key).await.unwrap());

    gate.go.notify_one();
    let a = tab_a.await.unwrap();
    assert_eq!(
        a.status, 400,
        "a save after another request's logout is Django's SessionInterrupted: {a:?}"
    );
    assert!(
        a.body.contains("deleted by another request"),
        "the body says what happened: {:?}",
        a.body
    );
    assert!(a.set_cookies().is_empty(), "{:?}", a.headers);
    assert!(
        !store.exists(&key).await.unwrap(),
        "the logged-out session was resurrected"
    );
    assert_eq!(
        store.count_live(OffsetDateTime::now_utc()).await.unwrap(),
        0,
        "nor saved under another key"
    );
}

// ---- Lazy loading ----

async fn untouched() -> &'static str {
    "ok"
}

async fn read(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.get::<u64>("n")?.unwrap_or(0).to_string())
}

async fn read_twice(a: Session, b: Session) -> Result<String, cloakroom::Error> {
    let n = a.get::<u64>("n")?.unwrap_or(0) + b.get::<u64>("n")?.unwrap_or(0);
    Ok(n.to_string())
}

async fn bump(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.update("n", |n: &mut u64| *n += 1)?.to_string())
}

#[tokio::test]
async fn the_store_is_called_only_as_much_as_the_handler_needs() {
    let counts = Counting::default();
    let store = counts.clone().around(MemoryStore::new(1_000));
    let sessions = Sessions::new(store, Settings::default()).unwrap();
    let app = Router::new()
        .route("/untouched", get(untouched))
        .route("/read", get(read))
        .route("/read-twice", get(read_twice))
        .route("/bump", post(bump))
        .layer(SessionLayer::new(sessions));
    let addr = serve(app).await;
    let client = bare();

    // A new visitor: nothing to load, one create.
    let key = send(client.post(url(addr, "/bump"))).await.new_key();
    assert_eq!(
        counts.take().round_trips(),
        (0, 1),
        "new visitor writing: (loads, writes)"
    );
    let cookie = session(&key);

    let reply = send(
        client
            .get(url(addr, "/untouched"))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(reply.body, "ok");
    assert_eq!(
        counts.take().round_trips(),
        (0, 0),
        "a handler that never extracts Session costs no round trip"
    );
    assert!(reply.set_cookies().is_empty() && !reply.varies_on_cookie());

    let reply = send(client.get(url(addr, "/read")).header("cookie", &cookie)).await;
    assert_eq!(reply.body, "1");
    assert_eq!(
        counts.take().round_trips(),
        (1, 0),
        "reading: exactly one load, no write"
    );

    let reply = send(
        client
            .get(url(addr, "/read-twice"))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(reply.body, "2");
    assert_eq!(
        counts.take().round_trips(),
        (1, 0),
        "two extractors share one load"
    );

    let reply = send(client.post(url(addr, "/bump")).header("cookie", &cookie)).await;
    assert_eq!(reply.body, "2");
    assert_eq!(
        counts.take().round_trips(),
        (1, 1),
        "writing: one load and one write"
    );

    let reply = send(client.get(url(addr, "/untouched"))).await;
    assert_eq!(reply.body, "ok");
    assert_eq!(counts.take().round_trips(), (0, 0));

    // A value that cannot be a key is not even looked up.
    for foreign in [
        "../../etc/passwd",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "x'OR'1'='1",
        "abc",
    ] {
        let reply = send(
            client
                .get(url(addr, "/read"))
                .header("cookie", session(foreign)),
        )
        .await;
        assert_eq!(reply.body, "0");
        assert_eq!(
            counts.take().round_trips(),
            (0, 0),
            "the malformed key {foreign:?} reached the store"
        );
    }
}
