//! Store round trips per request, counted: a read-only request loads once, writes nothing and
//! sends no `Set-Cookie`; a changing request loads once and saves once. On Redis, the commands
//! themselves are counted by a private `redis-server`.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cloakroom::decorate::Decorator as _;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::testing::Counting;
use cloakroom::{Session, SessionLayer, SessionStore, Sessions, Settings};
use tower::ServiceExt as _;

async fn visits(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
}

async fn read(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.get_or::<u64>("visits", 0)?.to_string())
}

fn app(calls: &Counting) -> Router {
    app_on(calls.clone().around(MemoryStore::new(1000)))
}

fn app_on(store: impl SessionStore) -> Router {
    Router::new()
        .route("/visits", get(visits))
        .route("/read", get(read))
        .route("/plain", get(|| async { "plain" }))
        .layer(SessionLayer::new(
            Sessions::from_arc(std::sync::Arc::new(store), Settings::default()).unwrap(),
        ))
}

/// Sends one request; returns the body and the `Set-Cookie` header, if any.
async fn send(app: &Router, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let mut request = Request::get(path);
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (String::from_utf8(body.to_vec()).unwrap(), set_cookie)
}

#[tokio::test]
async fn read_only_requests_load_once_and_never_write_or_set_a_cookie() {
    let calls = Counting::default();
    let app = app(&calls);
    let (body, set_cookie) = send(&app, "/visits", None).await;
    assert_eq!(body, "1");
    assert_eq!(
        calls.take().round_trips(),
        (0, 1),
        "a new visitor: no load, one create"
    );
    let cookie = set_cookie.unwrap().split(';').next().unwrap().to_owned();

    for _ in 0..1000 {
        let (body, set_cookie) = send(&app, "/read", Some(&cookie)).await;
        assert_eq!(body, "1");
        assert_eq!(set_cookie, None, "a read-only request sends no Set-Cookie");
    }
    assert_eq!(
        calls.take().round_trips(),
        (1000, 0),
        "1,000 reads: one load each, no write"
    );

    let (body, set_cookie) = send(&app, "/visits", Some(&cookie)).await;
    assert_eq!(body, "2");
    assert!(set_cookie.is_some());
    assert_eq!(
        calls.take().round_trips(),
        (1, 1),
        "a change: one load, one save"
    );
}

#[tokio::test]
async fn a_request_that_never_touches_the_session_never_calls_the_store() {
    let calls = Counting::default();
    let app = app(&calls);
    let (_, set_cookie) = send(&app, "/plain", Some("sessionid=abcdefgh12345678")).await;
    assert_eq!(set_cookie, None);
    assert_eq!(calls.take().round_trips(), (0, 0));
}

/// A `redis-server` of this test's own on a free loopback port, so that its command
/// statistics count this test's commands only; killed by PID when dropped.
#[cfg(feature = "redis")]
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

#[cfg(feature = "redis")]
impl PrivateRedis {
    async fn start() -> Self {
        let port = support::closed_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let server = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {port} did not start");
    }

    /// Calls per command since the last reset, from `INFO commandstats` (commands that a
    /// script runs are counted too, under their own names).
    async fn commands(&self, store: &cloakroom::engines::redis::RedisStore) -> Vec<(String, u64)> {
        let text = store
            .command(&["INFO", "commandstats"])
            .await
            .unwrap()
            .unwrap_or_default();
        let mut counts: Vec<(String, u64)> = text
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .filter(|(name, _)| name != "info" && !name.starts_with("config"))
            .collect();
        counts.sort();
        store.command(&["CONFIG", "RESETSTAT"]).await.unwrap();
        counts
    }
}

#[cfg(feature = "redis")]
impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Regression: the load was a Lua script (TYPE, GET and PTTL inside an EVALSHA), which cost
/// Redis ten times a GET, then a pipelined GET and PTTL. Now our values carry their expiry in a
/// header: a read is one GET and nothing else, and a change adds one compare-and-swap script
/// that reads the header (GETRANGE) and writes (SET). Django's layout keeps GET and PTTL.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_reads_are_one_get_and_a_change_adds_one_script() {
    use cloakroom::engines::redis::RedisStore;
    let redis = PrivateRedis::start().await;
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let store = RedisStore::connect(&url).await.unwrap();
    let app = app_on(store.clone());
    let (_, set_cookie) = send(&app, "/visits", None).await;
    let cookie = set_cookie.unwrap().split(';').next().unwrap().to_owned();
    // The first change sends the script's source once (EVAL); later ones name it (EVALSHA).
    send(&app, "/visits", Some(&cookie)).await;
    redis.commands(&store).await;

    for _ in 0..10 {
        let (body, set_cookie) = send(&app, "/read", Some(&cookie)).await;
        assert_eq!(body, "2");
        assert_eq!(set_cookie, None, "a read-only request sends no Set-Cookie");
    }
    assert_eq!(
        redis.commands(&store).await,
        vec![("get".to_owned(), 10)],
        "10 reads: one GET each, no write"
    );

    for _ in 0..10 {
        send(&app, "/visits", Some(&cookie)).await;
    }
    let (body, _) = send(&app, "/read", Some(&cookie)).await;
    assert_eq!(body, "12");
    let mut expected = vec![
        ("evalsha".to_owned(), 10),
        ("get".to_owned(), 10 + 1),
        ("getrange".to_owned(), 10),
        ("set".to_owned(), 10),
    ];
    expected.sort();
    assert_eq!(
        redis.commands(&store).await,
        expected,
        "10 changes: the load's GET, then one script (its GETRANGE and SET), then a read"
    );

    // Django's layout (binary values): the expiry is the TTL alone, read beside the value.
    let django = store.with_binary_values(true);
    let key = "djangolayout0000000000000000000a";
    let record = cloakroom::Record {
        data: "{}".into(),
        expires_at: time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(60),
    };
    django.create(key, &record).await.unwrap();
    redis.commands(&django).await;
    let now = time::OffsetDateTime::now_utc();
    assert!(django.load(key, now).await.unwrap().is_some());
    assert_eq!(
        redis.commands(&django).await,
        vec![("get".to_owned(), 1), ("pttl".to_owned(), 1)],
        "Django's layout: GET and PTTL"
    );
}
