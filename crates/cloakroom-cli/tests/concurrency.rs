//! A visitor's requests run in parallel and nobody waits for anybody's handler: the
//! compare-and-swap with change-set replay is what keeps updates from being lost, not a lock
//! held across the handler. Pinned without timing where a test can be: handlers park on a
//! semaphore the test opens, and "did not wait" means "completed while the other was parked".
//!
//! Also here: the opt-in exclusive routes (one at a time per visitor, bounded wait, typed
//! error through the layer's error handler), the bound on merges, and writes after the save.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::engines::memory::MemoryStore;
use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::layer::{error_response, ExclusiveLayer};
use cloakroom::{
    Created, Error, Record, Session, SessionLayer, SessionStore, Sessions, Settings, StoreError,
    Updated,
};
use serde_json::{json, Value};
use support::{bare, send, session, Scratch};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Mutex, Semaphore};

/// Where parked handlers say they arrived, and the gate the test opens to let them go on.
#[derive(Clone)]
struct Gate {
    arrived: mpsc::UnboundedSender<&'static str>,
    go: Arc<Semaphore>,
}

impl Gate {
    async fn park(&self, who: &'static str) {
        let _ = self.arrived.send(who);
        if let Ok(permit) = self.go.acquire().await {
            permit.forget();
        }
    }
}

struct Harness {
    addr: SocketAddr,
    arrived: Mutex<mpsc::UnboundedReceiver<&'static str>>,
    go: Arc<Semaphore>,
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits (bounded, so a regression fails instead of hanging) for `n` handlers to park.
    async fn parked(&self, n: usize) -> Vec<&'static str> {
        let mut got = Vec::new();
        let mut arrived = self.arrived.lock().await;
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), arrived.recv()).await {
                Ok(Some(who)) => got.push(who),
                _ => panic!("only {} of {n} handlers ran at once: {got:?}", got.len()),
            }
        }
        got
    }

    fn release(&self, n: usize) {
        self.go.add_permits(n);
    }
}

async fn read(session: Session) -> Result<Json<Value>, Error> {
    Ok(Json(json!({ "visits": session.get_or("visits", 0u64)? })))
}

async fn read_parked(State(gate): State<Gate>, session: Session) -> Result<Json<Value>, Error> {
    let visits: u64 = session.get_or("visits", 0)?;
    gate.park("read").await;
    Ok(Json(json!({ "visits": visits })))
}

async fn visit(session: Session) -> Result<Json<Value>, Error> {
    let parked: u64 = session.get_or("parked", 0)?;
    let visits = session.update("visits", |n: &mut u64| *n += 1)?;
    Ok(Json(json!({ "visits": visits, "parked_seen": parked })))
}

async fn park_write(State(gate): State<Gate>, session: Session) -> Result<Json<Value>, Error> {
    session.get_or("visits", 0u64)?;
    gate.park("writer").await;
    let parked = session.update("parked", |n: &mut u64| *n += 1)?;
    Ok(Json(json!({ "parked": parked })))
}

/// A streaming body that still holds the session when the response head (and so the save) has
/// gone out: it may read, and its write fails instead of vanishing.
async fn stream(State(gate): State<Gate>, session: Session) -> Result<Body, Error> {
    session.insert("before", 1)?;
    let chunks = futures_util::stream::unfold(Some((gate, session)), |state| async move {
        let (gate, session) = state?;
        gate.park("stream").await;
        let seen: Option<u64> = session.get("before").ok().flatten();
        let late = match session.insert("late", 1) {
            Ok(()) => "late write accepted".to_owned(),
            Err(e) => format!("late write refused: {e}"),
        };
        let chunk = format!("read after save: {seen:?}; {late}");
        Some((Ok::<_, std::io::Error>(chunk), None))
    });
    Ok(Body::from_stream(chunks))
}

fn app(gate: Gate, exclusive: ExclusiveLayer) -> Router {
    let exclusive_routes = Router::new()
        .route("/x/park-write", post(park_write))
        .route("/x/visit", post(visit))
        .route_layer(exclusive);
    Router::new()
        .route("/read", get(read))
        .route("/data", get(data))
        .route("/read-parked", get(read_parked))
        .route("/visit", post(visit))
        .route("/park-write", post(park_write))
        .route("/stream", get(stream))
        .merge(exclusive_routes)
        .with_state(gate)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

async fn harness_with(layer: impl FnOnce(Sessions) -> SessionLayer, sessions: Sessions) -> Harness {
    harness_full(layer, sessions, ExclusiveLayer::new()).await
}

async fn harness_full(
    layer: impl FnOnce(Sessions) -> SessionLayer,
    sessions: Sessions,
    exclusive: ExclusiveLayer,
) -> Harness {
    let (tx, rx) = mpsc::unbounded_channel();
    let go = Arc::new(Semaphore::new(0));
    let gate = Gate {
        arrived: tx,
        go: Arc::clone(&go),
    };
    let addr = serve(app(gate, exclusive).layer(layer(sessions))).await;
    Harness {
        addr,
        arrived: Mutex::new(rx),
        go,
    }
}

/// The engines these rules are pinned on: in-process and SQLite (the core's rules, not the
/// store's; every engine's races are in races.rs).
async fn engines(tag: &str) -> Vec<(&'static str, Sessions, Scratch)> {
    let dir = Scratch::new(tag);
    let sqlite = SqliteStore::connect(&format!("sqlite://{}/s.sqlite3", dir.display()))
        .await
        .unwrap();
    sqlite.migrate().await.unwrap();
    vec![
        (
            "memory",
            Sessions::new(MemoryStore::new(10_000), Settings::default()).unwrap(),
            Scratch::new(&format!("{tag}-m")),
        ),
        (
            "sqlite",
            Sessions::new(sqlite, Settings::default()).unwrap(),
            dir,
        ),
    ]
}

/// A visitor with a stored session: its key.
async fn returning_visitor(h: &Harness) -> String {
    answered(bare().post(h.url("/visit"))).await.new_key()
}

/// A request that must not wait for any other request's handler: bounded far above its own
/// few milliseconds, far below the 30 s a lock held across a handler used to cost.
async fn answered(request: reqwest::RequestBuilder) -> support::Reply {
    tokio::time::timeout(Duration::from_secs(5), send(request))
        .await
        .expect("the request waited for another request's handler")
}

async fn post_as(h: &Harness, path: &str, key: &str) -> support::Reply {
    answered(bare().post(h.url(path)).header("cookie", session(key))).await
}

async fn get_as(h: &Harness, path: &str, key: &str) -> support::Reply {
    answered(bare().get(h.url(path)).header("cookie", session(key))).await
}

#[tokio::test]
async fn a_visitors_request_completes_while_their_slow_request_is_parked() {
    for (engine, sessions, _dir) in engines("same-visitor").await {
        let h = harness_with(SessionLayer::new, sessions).await;
        let key = returning_visitor(&h).await;
        let slow = {
            let (url, cookie) = (h.url("/park-write"), session(&key));
            tokio::spawn(async move { send(bare().post(url).header("cookie", cookie)).await })
        };
        h.parked(1).await;

        // The same visitor's fast requests, a read and a write, are answered meanwhile.
        let fast = post_as(&h, "/visit", &key).await;
        assert_eq!(fast.status, 200, "{engine}: {fast:?}");
        assert_eq!(fast.json()["visits"], 2, "{engine}");
        assert_eq!(get_as(&h, "/read", &key).await.json()["visits"], 2);
        assert!(
            !slow.is_finished(),
            "{engine}: the slow handler is still parked"
        );

        // Then the slow one saves, merged with what the fast one saved: nothing lost.
        h.release(1);
        let slow = slow.await.unwrap();
        assert_eq!(slow.status, 200, "{engine}: {slow:?}");
        let both = get_as(&h, "/read", &key).await.json();
        assert_eq!(both["visits"], 2, "{engine}");
        let parked = post_as(&h, "/visit", &key).await.json();
        assert_eq!(
            parked["parked_seen"], 1,
            "{engine}: the slow request's change was lost"
        );
    }
}

#[tokio::test]
async fn another_visitors_request_never_waits_for_a_parked_one() {
    for (engine, sessions, _dir) in engines("other-visitor").await {
        let h = harness_with(SessionLayer::new, sessions).await;
        let keys: Vec<String> = {
            let mut keys = Vec::new();
            for _ in 0..50 {
                keys.push(returning_visitor(&h).await);
            }
            keys
        };
        // Fifty visitors park (a long-poll each); a fifty-first is served meanwhile, as is a
        // new visitor.
        let parked: Vec<_> = keys
            .iter()
            .map(|key| {
                let (url, cookie) = (h.url("/read-parked"), session(key));
                tokio::spawn(async move { send(bare().get(url).header("cookie", cookie)).await })
            })
            .collect();
        h.parked(keys.len()).await;
        let other = returning_visitor(&h).await;
        assert_eq!(
            post_as(&h, "/visit", &other).await.json()["visits"],
            2,
            "{engine}"
        );
        assert_eq!(answered(bare().get(h.url("/read"))).await.status, 200);
        h.release(keys.len());
        for p in parked {
            assert_eq!(p.await.unwrap().status, 200, "{engine}");
        }
    }
}

#[tokio::test]
async fn twenty_parallel_reads_of_one_visitor_all_run_at_once() {
    for (engine, sessions, _dir) in engines("parallel-reads").await {
        let h = harness_with(SessionLayer::new, sessions).await;
        let key = returning_visitor(&h).await;
        let reads: Vec<_> = (0..20)
            .map(|_| {
                let (url, cookie) = (h.url("/read-parked"), session(&key));
                tokio::spawn(async move { send(bare().get(url).header("cookie", cookie)).await })
            })
            .collect();
        // All twenty are inside their handlers at the same moment: none waits for another.
        h.parked(20).await;
        h.release(20);
        for r in reads {
            let r = r.await.unwrap();
            assert_eq!(r.status, 200, "{engine}: {r:?}");
            assert!(
                r.set_cookies().is_empty(),
                "{engine}: a read writes nothing"
            );
        }
    }
}

#[tokio::test]
async fn exclusive_routes_of_one_visitor_take_turns_and_others_do_not_wait() {
    for (engine, sessions, _dir) in engines("exclusive").await {
        let h = harness_with(SessionLayer::new, sessions).await;
        let key = returning_visitor(&h).await;
        let first = {
            let (url, cookie) = (h.url("/x/park-write"), session(&key));
            tokio::spawn(async move { send(bare().post(url).header("cookie", cookie)).await })
        };
        h.parked(1).await;
        let second = {
            let (url, cookie) = (h.url("/x/visit"), session(&key));
            tokio::spawn(async move { send(bare().post(url).header("cookie", cookie)).await })
        };
        // A route that is not exclusive is served while the exclusive one holds its turn, and
        // another visitor's exclusive route too.
        assert_eq!(
            post_as(&h, "/visit", &key).await.json()["visits"],
            2,
            "{engine}"
        );
        let other = returning_visitor(&h).await;
        assert_eq!(
            post_as(&h, "/x/visit", &other).await.status,
            200,
            "{engine}"
        );
        // The second exclusive request of the first visitor waits for its turn.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !second.is_finished(),
            "{engine}: an exclusive request did not wait"
        );

        h.release(1);
        assert_eq!(first.await.unwrap().status, 200, "{engine}");
        let second = second.await.unwrap();
        assert_eq!(second.status, 200, "{engine}: {second:?}");
        // It ran after the first had saved, and loaded what the first saved.
        assert_eq!(second.json()["parked_seen"], 1, "{engine}: {second:?}");
        assert_eq!(second.json()["visits"], 3, "{engine}: {second:?}");
    }
}

#[tokio::test]
async fn an_exclusive_wait_past_its_bound_is_a_typed_error_answered_by_the_error_handler() {
    for (engine, sessions, _dir) in engines("exclusive-timeout").await {
        let layer = |s| {
            SessionLayer::new(s).with_error_handler(|e: &Error| match e {
                Error::ExclusiveTimeout { waited } => axum::http::Response::builder()
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .body(format!("busy after {} ms\n", waited.as_millis()))
                    .unwrap_or_default(),
                other => error_response(other),
            })
        };
        let exclusive = ExclusiveLayer::new().with_wait(Duration::from_millis(100));
        let h = harness_full(layer, sessions.clone(), exclusive).await;
        let key = returning_visitor(&h).await;
        let first = {
            let (url, cookie) = (h.url("/x/park-write"), session(&key));
            tokio::spawn(async move { send(bare().post(url).header("cookie", cookie)).await })
        };
        h.parked(1).await;
        let refused = post_as(&h, "/x/visit", &key).await;
        assert_eq!(refused.status, 429, "{engine}: {refused:?}");
        assert_eq!(refused.body, "busy after 100 ms\n", "{engine}");

        // Without a handler of the app's, the default: 409 with Retry-After, saying what to do.
        let plain = harness_full(SessionLayer::new, sessions, exclusive).await;
        let key2 = returning_visitor(&plain).await;
        let first2 = {
            let (url, cookie) = (plain.url("/x/park-write"), session(&key2));
            tokio::spawn(async move { send(bare().post(url).header("cookie", cookie)).await })
        };
        plain.parked(1).await;
        let refused = post_as(&plain, "/x/visit", &key2).await;
        assert_eq!(refused.status, 409, "{engine}: {refused:?}");
        assert_eq!(
            refused.headers.get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert!(
            refused.body.contains("with_wait"),
            "{engine}: {}",
            refused.body
        );

        h.release(1);
        plain.release(1);
        assert_eq!(first.await.unwrap().status, 200);
        assert_eq!(first2.await.unwrap().status, 200);
        // The refused requests changed nothing.
        assert_eq!(
            get_as(&h, "/read", &key).await.json()["visits"],
            1,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_write_after_the_save_in_a_streaming_body_is_refused_not_lost() {
    for (engine, sessions, _dir) in engines("stream").await {
        let h = harness_with(SessionLayer::new, sessions).await;
        let key = returning_visitor(&h).await;
        let streamed = {
            let (url, cookie) = (h.url("/stream"), session(&key));
            tokio::spawn(async move { send(bare().get(url).header("cookie", cookie)).await })
        };
        h.parked(1).await;
        h.release(1);
        let streamed = streamed.await.unwrap();
        assert_eq!(streamed.status, 200, "{engine}");
        assert!(
            streamed.body.contains("read after save: Some(1)"),
            "{engine}: {}",
            streamed.body
        );
        assert!(
            streamed
                .body
                .contains("late write refused: the session was already saved"),
            "{engine}: {}",
            streamed.body
        );
        // The write before the head went out was saved; the one after was not.
        let data = sessions_data(&h, &key).await;
        assert_eq!(data["before"], 1, "{engine}: {data}");
        assert_eq!(data.get("late"), None, "{engine}: {data}");
    }
}

/// The whole session as the app sees it now.
async fn sessions_data(h: &Harness, key: &str) -> Value {
    get_as(h, "/data", key).await.json()
}

async fn data(session: Session) -> Json<Value> {
    Json(Value::Object(session.data()))
}

/// A store where another writer always saves first: every compare-and-swap of the request
/// meets a newer record (as under heavy contention from other app servers).
struct AlwaysOutraced {
    inner: MemoryStore,
    codec: cloakroom::codec::Codec,
    rivals: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl SessionStore for AlwaysOutraced {
    fn engine(&self) -> &'static str {
        "outraced"
    }
    async fn load(&self, key: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        self.inner.load(key, now).await
    }
    async fn create(&self, key: &str, record: &Record) -> Result<Created, StoreError> {
        self.inner.create(key, record).await
    }
    async fn update(
        &self,
        key: &str,
        expected: &[u8],
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        // The rival's save lands first.
        if let Some(current) = self.inner.load(key, now).await? {
            let mut data = self.codec.decode(&current.data).unwrap();
            let n = self
                .rivals
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            data.insert("rival".into(), json!(n));
            let rival = Record {
                data: self.codec.encode(&data).expect("JSON encoding cannot fail"),
                expires_at: current.expires_at,
            };
            self.inner.update(key, &current.data, &rival, now).await?;
        }
        self.inner.update(key, expected, record, now).await
    }
    async fn touch(
        &self,
        key: &str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.inner.touch(key, record, now).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

#[tokio::test]
async fn a_save_outraced_past_the_merge_bound_fails_typed_and_writes_nothing_of_its_own() {
    let settings = Settings::default();
    let store = AlwaysOutraced {
        inner: MemoryStore::new(10_000),
        codec: settings.codec(),
        rivals: Default::default(),
    };
    let sessions = Sessions::from_arc(std::sync::Arc::new(store), settings).unwrap();
    let h = harness_with(SessionLayer::new, sessions).await;
    // Created (no compare-and-swap), then every save loses.
    let key = returning_visitor(&h).await;
    let lost = post_as(&h, "/visit", &key).await;
    assert_eq!(lost.status, 503, "{lost:?}");
    assert!(
        lost.body
            .contains("changed under this request 65 times in a row; retry the request"),
        "{}",
        lost.body
    );
    assert!(lost.set_cookies().is_empty(), "{lost:?}");
    let stored = get_as(&h, "/read", &key).await.json();
    assert_eq!(
        stored["visits"], 1,
        "the refused request's change must not be half-applied"
    );
}
