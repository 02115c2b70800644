//! `cloakroom::test`, as an app's own tests use it: handlers and routers run in-process
//! against sessions the test sets up, and what the response and the store show afterwards.

use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use cloakroom::clock::ManualClock;
use cloakroom::test::TestSessions;
use cloakroom::{Session, SessionLayer, Settings};
use http::{Request, StatusCode};
use serde_json::json;

async fn whoami(session: Session) -> Result<String, cloakroom::Error> {
    session.get_or("user", "nobody".to_owned())
}

async fn login(session: Session, user: String) -> Result<&'static str, cloakroom::Error> {
    session.cycle_key()?;
    session.insert("user", user)?;
    Ok("ok")
}

async fn logout(session: Session) -> Result<&'static str, cloakroom::Error> {
    session.flush()?;
    Ok("bye")
}

fn routes() -> Router {
    Router::new()
        .route("/", get(whoami))
        .route("/login", post(login))
        .route("/logout", post(logout))
}

fn get_with(sessions: &TestSessions, key: &str) -> Request<Body> {
    Request::get("/")
        .header("cookie", sessions.cookie_header(key))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_handler_sees_the_data_the_test_stored_and_a_read_writes_nothing() {
    let sessions = TestSessions::new();
    let key = sessions.create([("user", "alice")]).await.unwrap();
    let response = sessions
        .call(routes(), get_with(&sessions, &key))
        .await
        .unwrap();
    assert_eq!(
        (response.status(), response.text()),
        (StatusCode::OK, "alice".into())
    );
    assert!(response.changes().is_empty(), "{:?}", response.changes());
    assert_eq!(response.set_cookie(), None);
    assert_eq!(sessions.stored_keys().await.unwrap(), [key]);
}

#[tokio::test]
async fn login_shows_as_a_new_key_created_and_the_old_one_deleted() {
    let sessions = TestSessions::new();
    let old = sessions.create([("cart", json!(["apple"]))]).await.unwrap();
    let request = Request::post("/login")
        .header("cookie", sessions.cookie_header(&old))
        .body(Body::from("bob"))
        .unwrap();
    let response = sessions.call(routes(), request).await.unwrap();
    let new = response.session_key().expect("a new cookie").to_owned();
    assert_ne!(new, old);
    assert_eq!(response.changes().created, std::slice::from_ref(&new));
    assert_eq!(response.changes().deleted, std::slice::from_ref(&old));
    let stored = sessions.stored(&new).await.unwrap().unwrap();
    assert_eq!(
        (stored["user"].clone(), stored["cart"].clone()),
        (json!("bob"), json!(["apple"]))
    );
    assert_eq!(sessions.stored(&old).await.unwrap(), None);
    assert_eq!(
        response.next_cookie_header(),
        Some(format!("sessionid={new}"))
    );
}

#[tokio::test]
async fn logout_removes_the_cookie_and_deletes_the_session() {
    let sessions = TestSessions::new();
    let key = sessions.create([("user", "alice")]).await.unwrap();
    let request = Request::post("/logout")
        .header("cookie", sessions.cookie_header(&key))
        .body(Body::empty())
        .unwrap();
    let response = sessions.call(routes(), request).await.unwrap();
    assert!(response.cookie_removed(), "{:?}", response.set_cookie());
    assert_eq!(response.session_key(), None);
    assert_eq!(response.changes().deleted, [key]);
    assert!(sessions.stored_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_app_with_its_own_layer_runs_as_it_is() {
    let sessions =
        TestSessions::with_settings(Settings::default().with_cookie_name("sid")).unwrap();
    let app = routes().layer(SessionLayer::new(sessions.sessions().clone()));
    let key = sessions.create([("user", "carol")]).await.unwrap();
    assert_eq!(sessions.cookie_header(&key), format!("sid={key}"));
    let response = sessions
        .call_app(app, get_with(&sessions, &key))
        .await
        .unwrap();
    assert_eq!(response.text(), "carol");
}

#[tokio::test]
async fn a_rolling_session_shows_as_extended_once_the_clock_moves() {
    let clock = ManualClock::starting_now();
    let settings = Settings::default().with_idle_timeout(600);
    let sessions = TestSessions::with_settings(settings)
        .unwrap()
        .with_clock(clock.clone());
    let key = sessions.create([("user", "dave")]).await.unwrap();
    clock.advance(Duration::from_secs(300));
    let response = sessions
        .call(routes(), get_with(&sessions, &key))
        .await
        .unwrap();
    assert_eq!(response.changes().extended, std::slice::from_ref(&key));
    assert!(response.changes().updated.is_empty());
    clock.advance(Duration::from_secs(601));
    assert_eq!(
        sessions.stored(&key).await.unwrap(),
        None,
        "expired after 600 s idle"
    );
}
