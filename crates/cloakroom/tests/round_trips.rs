//! Store round trips per request, counted: a read-only request loads once, writes nothing and
//! sends no `Set-Cookie`; a changing request loads once and saves once.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::testing::Counting;
use cloakroom::{Session, SessionLayer, Sessions, Settings};
use tower::ServiceExt as _;

async fn visits(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
}

async fn read(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.get_or::<u64>("visits", 0)?.to_string())
}

fn app(calls: &Counting) -> Router {
    let store = calls.clone();
    Router::new()
        .route("/visits", get(visits))
        .route("/read", get(read))
        .route("/plain", get(|| async { "plain" }))
        .layer(SessionLayer::new(
            Sessions::new(store, Settings::default()).unwrap(),
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
    let calls = Counting::new(MemoryStore::new(1000));
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
    let calls = Counting::new(MemoryStore::new(1000));
    let app = app(&calls);
    let (_, set_cookie) = send(&app, "/plain", Some("sessionid=abcdefgh12345678")).await;
    assert_eq!(set_cookie, None);
    assert_eq!(calls.take().round_trips(), (0, 0));
}
