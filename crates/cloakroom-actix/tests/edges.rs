//! What is the actix-web adapter's own, beyond the HTTP suite: the extractor without the
//! middleware, a handler's error, a store outage per route (fail open, fail closed, the app's
//! error handler, a save that fails), exclusive routes and a streaming body. Real HTTP against a
//! real actix-web server on loopback; the outage kills a Redis of the test's own.

mod support;

use std::time::Duration;

use actix_web::{web, HttpResponse};
use cloakroom::{Error, OnStoreError, Session, SessionRejection, Settings, Transport};
use cloakroom_actix::{
    error_response, ExclusiveLayer, OnStoreErrorLayer, SessionMiddleware, TransportLayer,
};
use cloakroom_testkit::http::{
    bare, send, session as cookie, visitor, Reply, COOKIE_NAME, KEY_HEADER,
};
use cloakroom_testkit::servers::{Redis, Server as _};
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use support::{serve, Server};

fn in_process() -> Settings {
    Settings::from_toml_str(r#"engine = "cache""#).expect("settings parse")
}

async fn visits(session: Session) -> Result<String, Error> {
    Ok(session.update("visits", |n: &mut u64| *n += 1)?.to_string())
}

fn session_key(reply: &Reply) -> String {
    let cookies = reply.set_cookies();
    let set = cookies
        .iter()
        .find(|c| c.name == COOKIE_NAME)
        .unwrap_or_else(|| panic!("a session cookie in {reply:?}"));
    set.value.clone()
}

// ---- the extractor without the middleware ----

fn unwrapped_routes(config: &mut web::ServiceConfig) {
    config
        .route("/session", web::get().to(visits))
        .route(
            "/optional",
            web::get().to(|session: Option<Session>| async move {
                if session.is_some() {
                    "a session"
                } else {
                    "no session"
                }
            }),
        )
        .route(
            "/result",
            web::get().to(|session: Result<Session, SessionRejection>| async move {
                match session {
                    Err(SessionRejection::MissingMiddleware) => "missing middleware".to_owned(),
                    other => format!("{other:?}"),
                }
            }),
        );
}

#[tokio::test]
async fn the_extractor_without_the_middleware_is_a_500_that_names_what_to_add() {
    let app = serve(in_process(), None, unwrapped_routes, None);
    let reply = send(bare().get(app.url("/session"))).await;
    assert_eq!(reply.status, 500, "{reply:?}");
    assert!(
        reply
            .body
            .contains(".wrap(cloakroom_actix::SessionMiddleware::new(sessions))"),
        "the body says what to add: {}",
        reply.body
    );
    assert!(reply.headers.get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn option_and_result_of_session_tell_a_missing_middleware_to_the_handler() {
    let app = serve(in_process(), None, unwrapped_routes, None);
    let reply = send(bare().get(app.url("/optional"))).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "no session"));
    let reply = send(bare().get(app.url("/result"))).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "missing middleware")
    );
}

#[tokio::test]
async fn option_of_session_is_some_under_the_middleware() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        unwrapped_routes,
        None,
    );
    let reply = send(bare().get(app.url("/optional"))).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "a session"));
}

// ---- a handler's error ----

fn failing_routes(config: &mut web::ServiceConfig) {
    config
        .route("/visits", web::get().to(visits))
        .route(
            "/server-error",
            web::get().to(|session: Session| async move {
                session.insert("doomed", true)?;
                Ok::<_, Error>(HttpResponse::InternalServerError().body("broke"))
            }),
        )
        .route(
            "/bad-request",
            web::get().to(|session: Session| async move {
                session.insert("kept", true)?;
                Err::<String, _>(actix_web::error::ErrorBadRequest("no such thing"))
            }),
        )
        .route(
            "/session-error",
            web::get().to(|_session: Session| async { Err::<String, _>(Error::Interrupted) }),
        )
        .route(
            "/read",
            web::get().to(|session: Session| async move {
                let keys = session.keys().join(",");
                Ok::<_, Error>(keys)
            }),
        );
}

#[tokio::test]
async fn a_handlers_5xx_saves_nothing_and_sends_no_cookie() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        failing_routes,
        None,
    );
    let client = visitor();
    send(client.get(app.url("/visits"))).await;
    let reply = send(client.get(app.url("/server-error"))).await;
    assert_eq!((reply.status, reply.body.as_str()), (500, "broke"));
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    let reply = send(client.get(app.url("/read"))).await;
    assert_eq!(reply.body, "visits", "the 500's change was not saved");
}

#[tokio::test]
async fn a_handlers_4xx_error_still_saves_as_django_does() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        failing_routes,
        None,
    );
    let client = visitor();
    let reply = send(client.get(app.url("/bad-request"))).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        !session_key(&reply).is_empty(),
        "a new session's cookie on a 400"
    );
    let reply = send(client.get(app.url("/read"))).await;
    assert_eq!(reply.body, "kept");
}

#[tokio::test]
async fn a_handlers_session_error_answers_as_the_default_error_response() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        failing_routes,
        None,
    );
    let reply = send(bare().get(app.url("/session-error"))).await;
    assert_eq!(
        reply.status, 400,
        "Interrupted is Django's SessionInterrupted: {reply:?}"
    );
    assert_eq!(reply.body, format!("{}\n", Error::Interrupted));
    assert_eq!(
        reply.headers["content-type"], "text/plain; charset=utf-8",
        "{reply:?}"
    );
}

// ---- a store outage, per route ----

fn outage_routes(config: &mut web::ServiceConfig) {
    config.route("/closed", web::get().to(visits)).service(
        web::resource("/open")
            .wrap(OnStoreErrorLayer::new(OnStoreError::FailOpen))
            .route(web::get().to(visits)),
    );
}

fn teapot_on_store_errors(sessions: cloakroom::Sessions) -> SessionMiddleware {
    SessionMiddleware::new(sessions).with_error_handler(|error: &Error| match error {
        Error::Store(_) => {
            let mut teapot = http::Response::new("the store is resting\n".to_owned());
            *teapot.status_mut() = http::StatusCode::IM_A_TEAPOT;
            teapot
        }
        other => error_response(other),
    })
}

/// A Redis of the test's own, and the settings of an app on it with short store timeouts.
fn own_redis() -> (Redis, Settings) {
    let redis = Redis::new();
    let settings = Settings::from_toml_str(&format!(
        "engine = \"cache\"\ncache_url = \"{}\"\nstore_timeout_ms = 300\nbreaker_threshold = 0",
        redis.url()
    ))
    .expect("settings parse");
    (redis, settings)
}

async fn returning_visitor(app: &Server, path: &str) -> String {
    let reply = send(bare().get(app.url(path))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    cookie(&session_key(&reply))
}

#[tokio::test]
async fn a_store_outage_fails_closed_by_default_and_open_on_the_routes_that_ask() {
    let (mut redis, settings) = own_redis();
    let app = serve(settings, Some(SessionMiddleware::new), outage_routes, None);
    let returning = returning_visitor(&app, "/closed").await;
    redis.kill();

    let reply = send(bare().get(app.url("/closed")).header(COOKIE, &returning)).await;
    assert_eq!(reply.status, 503, "fail-closed by default: {reply:?}");
    assert!(reply.headers.get(RETRY_AFTER).is_some(), "{reply:?}");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");

    let reply = send(bare().get(app.url("/open")).header(COOKIE, &returning)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "1"),
        "fail-open: an empty session: {reply:?}"
    );
    assert!(
        reply.headers.get(SET_COOKIE).is_none(),
        "the empty session is never saved, the visitor keeps their cookie: {reply:?}"
    );
}

#[tokio::test]
async fn the_error_handler_answers_a_failed_load_and_a_failed_save() {
    let (mut redis, settings) = own_redis();
    let app = serve(settings, Some(teapot_on_store_errors), outage_routes, None);
    let returning = returning_visitor(&app, "/closed").await;
    redis.kill();

    // A returning visitor's load fails (the extractor's rejection).
    let reply = send(bare().get(app.url("/closed")).header(COOKIE, &returning)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (418, "the store is resting\n"),
        "{reply:?}"
    );
    // A new visitor loads nothing, so the handler runs; its save fails after it.
    let reply = send(bare().get(app.url("/closed"))).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (418, "the store is resting\n"),
        "the handler's 200 is replaced: {reply:?}"
    );
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
}

#[tokio::test]
async fn a_failed_save_replaces_the_response_with_the_default_503() {
    let (mut redis, settings) = own_redis();
    let app = serve(settings, Some(SessionMiddleware::new), outage_routes, None);
    redis.kill();
    let reply = send(bare().get(app.url("/closed"))).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(reply.headers.get(RETRY_AFTER).is_some(), "{reply:?}");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
}

// ---- exclusive routes ----

async fn slow_visit(session: Session) -> Result<String, Error> {
    let n = session.update("visits", |n: &mut u64| *n += 1)?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    Ok(n.to_string())
}

fn exclusive_routes(config: &mut web::ServiceConfig) {
    config
        .route("/visits", web::get().to(visits))
        .route("/slow", web::get().to(slow_visit))
        .service(
            web::resource("/slow-exclusive")
                .wrap(ExclusiveLayer::new().with_wait(Duration::from_millis(100)))
                .route(web::get().to(slow_visit)),
        );
}

/// Two requests of one visitor to `path` at once.
async fn twice_at_once(app: &Server, visitor_cookie: &str, path: &str) -> (Reply, Reply) {
    let one = send(bare().get(app.url(path)).header(COOKIE, visitor_cookie));
    let two = async {
        // The second starts while the first is inside its handler.
        tokio::time::sleep(Duration::from_millis(150)).await;
        send(bare().get(app.url(path)).header(COOKIE, visitor_cookie)).await
    };
    tokio::join!(one, two)
}

#[tokio::test]
async fn an_exclusive_route_turns_away_a_second_request_that_waits_too_long() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        exclusive_routes,
        None,
    );
    let returning = returning_visitor(&app, "/visits").await;
    let (first, second) = twice_at_once(&app, &returning, "/slow-exclusive").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        second.status, 409,
        "waited 100 ms for a 600 ms turn: {second:?}"
    );
    assert!(second.headers.get(RETRY_AFTER).is_some(), "{second:?}");
}

#[tokio::test]
async fn routes_without_exclusive_mode_never_wait_and_both_saves_land() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        exclusive_routes,
        None,
    );
    let returning = returning_visitor(&app, "/visits").await;
    let (first, second) = twice_at_once(&app, &returning, "/slow").await;
    assert_eq!((first.status, second.status), (200, 200));
    let reply = send(bare().get(app.url("/visits")).header(COOKIE, &returning)).await;
    assert_eq!(
        reply.body, "4",
        "1 + two concurrent visits merged + this one"
    );
}

// ---- a streaming body ----

async fn countdown(session: Session) -> Result<HttpResponse, Error> {
    let run = session.update("runs", |n: &mut u64| *n += 1)?;
    // Three lines a tenth of a second apart, then whether a write to the session is refused
    // by now (it must be: the session was saved when the response started).
    let lines = futures_util::stream::unfold(Some(3u32), move |left| {
        let session = session.clone();
        async move {
            let (line, next) = match left? {
                0 => match session.insert("late", true) {
                    Err(Error::AlreadySaved) => ("late write refused\n".to_owned(), None),
                    _ => ("late write accepted\n".to_owned(), None),
                },
                n => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    (format!("run {run}: {n}\n"), Some(n - 1))
                }
            };
            Some((Ok::<_, std::io::Error>(web::Bytes::from(line)), next))
        }
    });
    Ok(HttpResponse::Ok().streaming(lines))
}

fn streaming_routes(config: &mut web::ServiceConfig) {
    config.route("/countdown", web::get().to(countdown));
}

#[tokio::test]
async fn a_streaming_response_carries_the_cookie_and_the_session_is_saved_before_the_body() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        streaming_routes,
        None,
    );
    let client = visitor();
    let reply = send(client.get(app.url("/countdown"))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!session_key(&reply).is_empty(), "the cookie is in the head");
    assert_eq!(
        reply.body,
        "run 1: 3\nrun 1: 2\nrun 1: 1\nlate write refused\n"
    );
    let reply = send(client.get(app.url("/countdown"))).await;
    assert!(reply.body.starts_with("run 2: 3\n"), "{reply:?}");
}

// ---- the key in a header, per route ----

fn transport_routes(config: &mut web::ServiceConfig) {
    config.route("/page/visits", web::get().to(visits)).service(
        web::scope("/api")
            .wrap(TransportLayer::new(Transport::Header))
            .route("/visits", web::get().to(visits)),
    );
}

#[tokio::test]
async fn a_header_scope_takes_and_gives_the_key_in_the_header_and_the_rest_keeps_the_cookie() {
    let app = serve(
        in_process(),
        Some(SessionMiddleware::new),
        transport_routes,
        None,
    );

    // Under the header scope: the key comes back in X-Session-Token, no cookie is set, and
    // the response varies on the header.
    let first = send(bare().get(app.url("/api/visits"))).await;
    assert_eq!((first.status, first.body.as_str()), (200, "1"), "{first:?}");
    assert!(first.headers.get(SET_COOKIE).is_none(), "{first:?}");
    let key = first.key_in_header();
    assert!(first.varies_on(KEY_HEADER), "{first:?}");

    // The header's key is the session: the count goes on; a cookie with the same key on the
    // header scope is not looked at.
    let second = send(bare().get(app.url("/api/visits")).header(KEY_HEADER, &key)).await;
    assert_eq!(second.body, "2", "{second:?}");
    let by_cookie = send(
        bare()
            .get(app.url("/api/visits"))
            .header(COOKIE, format!("{COOKIE_NAME}={key}")),
    )
    .await;
    assert_eq!(
        by_cookie.body, "1",
        "the cookie is not the header: {by_cookie:?}"
    );

    // Outside the scope the cookie transport holds: the header's key is ignored.
    let page = send(bare().get(app.url("/page/visits")).header(KEY_HEADER, &key)).await;
    assert_eq!(page.body, "1", "{page:?}");
    assert_eq!(page.key_header(), None, "{page:?}");
    assert_ne!(session_key(&page), key);
}
