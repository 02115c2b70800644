//! Out-of-range lifetimes (issue 14, point 6): a stored value or a setting that would put an
//! expiry past the calendar is refused or clamped, never a panic. Stored values arrive through
//! any store (a row an app wrote, a validly signed cookie), so they go through the whole layer.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cloakroom::config::MAX_COOKIE_AGE;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Expiry, Record, Session, SessionLayer, SessionStore, Sessions, Settings};
use proptest::prelude::*;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower::ServiceExt as _;

async fn visits(session: Session) -> Result<String, cloakroom::Error> {
    Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
}

/// A handler that asks for lifetimes beyond any calendar.
async fn forever(session: Session) -> Result<String, cloakroom::Error> {
    session.set_idle_timeout(Some(Duration::MAX)).unwrap();
    session.set_expiry(Expiry::In(Duration::MAX)).unwrap();
    session.insert("forever", true)?;
    Ok(session.expiry_age().to_string())
}

fn app(store: MemoryStore, settings: Settings) -> Router {
    Router::new()
        .route("/visits", get(visits))
        .route("/forever", get(forever))
        .layer(SessionLayer::new(Sessions::new(store, settings).unwrap()))
}

/// A session stored as if another app (or a crafted cookie) wrote it.
async fn stored(store: &MemoryStore, data: &Value) -> String {
    let key = cloakroom::key::generate().unwrap();
    let record = Record {
        data: data.to_string().into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(3600),
    };
    store.create(&key, &record).await.unwrap();
    key
}

/// Sends one request; returns the status, the body and the `Set-Cookie` header, if any.
async fn send(app: &Router, path: &str, key: Option<&str>) -> (StatusCode, String, Option<String>) {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header(header::COOKIE, format!("sessionid={key}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
    )
}

#[tokio::test]
async fn stored_idle_of_i64_max_is_corrupt_data_not_a_panic() {
    let store = MemoryStore::default();
    let app = app(store.clone(), Settings::default());
    for idle in [
        json!(i64::MAX),
        json!(u64::MAX),
        json!(-1),
        json!(1.5),
        json!(MAX_COOKIE_AGE + 1),
    ] {
        let key = stored(&store, &json!({"visits": 41, "_cloakroom_idle": idle})).await;
        let (status, body, set_cookie) = send(&app, "/visits", Some(&key)).await;
        assert_eq!(status, StatusCode::OK, "_cloakroom_idle = {idle}");
        assert_eq!(
            body, "1",
            "_cloakroom_idle = {idle}: a fresh session, not the stored one"
        );
        let set_cookie = set_cookie.unwrap();
        assert!(
            !set_cookie.contains(&key),
            "the corrupt key is not adopted: {set_cookie}"
        );
    }
    // In range, the stored session is kept.
    let key = stored(
        &store,
        &json!({"visits": 41, "_cloakroom_idle": MAX_COOKIE_AGE}),
    )
    .await;
    assert_eq!(send(&app, "/visits", Some(&key)).await.1, "42");
}

#[tokio::test]
async fn a_handler_asking_for_endless_lifetimes_gets_the_longest_not_a_panic() {
    let store = MemoryStore::default();
    let app = app(store.clone(), Settings::default());
    let (status, age, set_cookie) = send(&app, "/forever", None).await;
    assert_eq!(status, StatusCode::OK);
    // The expiry instant is kept to the microsecond, the age in whole seconds below it.
    let age: u64 = age.parse().unwrap();
    assert!(
        (MAX_COOKIE_AGE - 1..=MAX_COOKIE_AGE).contains(&age),
        "{age}"
    );
    // What it stored loads back (the clamped idle timeout is in range).
    let cookie = set_cookie.unwrap();
    let key = cookie
        .strip_prefix("sessionid=")
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    assert_eq!(send(&app, "/visits", Some(key)).await.1, "1");
    assert!(store
        .load(key, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .is_some());
}

#[test]
fn idle_timeout_and_absolute_lifetime_beyond_the_calendar_are_refused_naming_the_setting() {
    let cases = [
        (
            "idle_timeout",
            Settings::default().with_idle_timeout(Some(i64::MAX as u64)),
        ),
        (
            "absolute_lifetime",
            Settings::default().with_absolute_lifetime(Some(u64::MAX)),
        ),
        (
            "remember_me_age",
            Settings::default().with_remember_me_age(u64::MAX),
        ),
        (
            "cookie_age",
            Settings::default().with_cookie_age(MAX_COOKIE_AGE + 1),
        ),
    ];
    for (setting, settings) in cases {
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains(setting), "{setting}: {err}");
        assert!(
            err.contains(&MAX_COOKIE_AGE.to_string()),
            "names the range: {err}"
        );
    }
    Settings::default()
        .with_idle_timeout(Some(MAX_COOKIE_AGE))
        .with_absolute_lifetime(Some(MAX_COOKIE_AGE))
        .with_remember_me_age(MAX_COOKIE_AGE)
        .with_cookie_age(MAX_COOKIE_AGE)
        .validate()
        .unwrap();
}

/// Any JSON a stored reserved key might hold, with the extremes over-represented.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(MAX_COOKIE_AGE)),
        Just(json!(MAX_COOKIE_AGE + 1)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(json!("9999-12-31T23:59:59.999999+00:00")),
        Just(json!("0001-01-01T00:00:00-23:59")),
        Just(json!("-9999-01-01T00:00:00+00:00")),
        (1i32..=9999, 1u8..=12, -23i8..=23)
            .prop_map(|(y, m, h)| json!(format!("{y:04}-{m:02}-01T00:00:00{h:+03}:00"))),
        ".{0,40}".prop_map(Value::from),
    ]
}

fn lifetime_setting() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        Just(Some(1)),
        Just(Some(MAX_COOKIE_AGE)),
        (1..=MAX_COOKIE_AGE).prop_map(Some)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the stored expiry keys hold and whatever valid settings say: a request answers
    /// 200, and a session whose own idle key is out of range starts afresh.
    #[test]
    fn hostile_stored_lifetimes_never_panic(
        expiry in hostile_value(),
        idle in hostile_value(),
        deadline in hostile_value(),
        idle_timeout in lifetime_setting(),
        absolute_lifetime in lifetime_setting(),
        cookie_age in 0..=MAX_COOKIE_AGE,
        browser_close in any::<bool>(),
    ) {
        let settings = Settings::default()
            .with_idle_timeout(idle_timeout)
            .with_absolute_lifetime(absolute_lifetime)
            .with_cookie_age(cookie_age)
            .with_expire_at_browser_close(browser_close);
        let idle_in_range = match &idle {
            Value::Null => true,
            v => v.as_u64().is_some_and(|s| (1..=MAX_COOKIE_AGE).contains(&s)),
        };
        let data = json!({
            "visits": 1,
            "_session_expiry": expiry,
            "_cloakroom_idle": idle,
            "_cloakroom_deadline": deadline,
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, body) = runtime.block_on(async {
            let store = MemoryStore::default();
            let app = app(store.clone(), settings);
            let key = stored(&store, &data).await;
            let (status, body, _) = send(&app, "/visits", Some(&key)).await;
            (status, body)
        });
        prop_assert_eq!(status, StatusCode::OK);
        if !idle_in_range {
            prop_assert_eq!(body, "1");
        }
    }
}
