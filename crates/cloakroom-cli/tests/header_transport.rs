//! The key in a header (`--transport header`), on the demo over real HTTP, for what the test
//! kit's HTTP suite cannot set up: the rotation grace window, the user index, the size bound,
//! and a store outage. The suite's header tests run on every engine in `http_suite.rs`.

mod support;

use serde_json::{json, Value};
use support::servers::{Redis, Server};
use support::Demo;

const KEY_HEADER: &str = "X-Session-Token";

/// What a response said: status, the key header (if sent), the body as JSON (or null).
#[derive(Debug)]
struct Seen {
    status: u16,
    key: Option<String>,
    set_cookie: bool,
    retry_after: bool,
    body: Value,
}

async fn call(
    method: reqwest::Method,
    demo: &Demo,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> Seen {
    let client = reqwest::Client::new();
    let mut request = client.request(method, demo.url(path));
    if let Some(key) = key {
        request = request.header(KEY_HEADER, key);
    }
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the demo answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let values: Vec<_> = headers.get_all(KEY_HEADER).iter().collect();
    assert!(values.len() <= 1, "several key headers: {headers:?}");
    let text = response.text().await.expect("a body");
    Seen {
        status,
        key: values.first().map(|v| v.to_str().unwrap().to_owned()),
        set_cookie: headers.contains_key("set-cookie"),
        retry_after: headers.contains_key("retry-after"),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn get(demo: &Demo, path: &str, key: Option<&str>) -> Seen {
    call(reqwest::Method::GET, demo, path, key, Value::Null).await
}

async fn post(demo: &Demo, path: &str, key: Option<&str>, body: Value) -> Seen {
    call(reqwest::Method::POST, demo, path, key, body).await
}

/// The key a response hands out in the header.
fn key_of(seen: &Seen) -> String {
    match &seen.key {
        Some(key) if key.len() == 32 => key.clone(),
        _ => panic!("expected a key in {KEY_HEADER}: {seen:?}"),
    }
}

/// Inside `rotation_grace`, the key from before login is served the session as it was,
/// read-only, and is sent no key header at all: not the new key (it may be a fixation
/// attacker's), not an empty one (the client may hold the new key by now).
#[tokio::test]
async fn a_rotated_away_key_gets_no_key_header_inside_the_grace_window() {
    let demo = Demo::start(&["--transport", "header", "--rotation-grace", "30"]);
    let before = key_of(&post(&demo, "/api/cart", None, json!({ "item": "apple" })).await);
    let login = post(
        &demo,
        "/api/login",
        Some(&before),
        json!({ "username": "ana" }),
    )
    .await;
    let after = key_of(&login);
    assert_ne!(after, before);

    let late = get(&demo, "/api/cart", Some(&before)).await;
    assert_eq!(
        late.body,
        json!({ "count": 1, "items": ["apple"] }),
        "{late:?}"
    );
    assert_eq!(
        late.key, None,
        "a rotated-away key was sent a key header: {late:?}"
    );
    let whoami = get(&demo, "/api/whoami", Some(&before)).await;
    assert_eq!(
        whoami.body,
        json!({ "username": null }),
        "the old key is logged in"
    );
    assert_eq!(whoami.key, None, "{whoami:?}");
    let write = post(&demo, "/api/cart", Some(&before), json!({ "item": "fig" })).await;
    assert_eq!(
        write.status, 409,
        "a change under a rotated-away key: {write:?}"
    );
    assert_eq!(write.key, None, "{write:?}");
    let cart = get(&demo, "/api/cart", Some(&after)).await;
    assert_eq!(cart.body, json!({ "count": 1, "items": ["apple"] }));
}

/// The user index does not care how the key travelled: a header client's logins are listed,
/// and "log out everywhere" ends them.
#[tokio::test]
async fn the_user_index_lists_and_revokes_header_sessions() {
    let demo = Demo::start(&["--transport", "header"]);
    let phone = key_of(&post(&demo, "/api/login", None, json!({ "username": "ana" })).await);
    let tablet = key_of(&post(&demo, "/api/login", None, json!({ "username": "ana" })).await);
    let listed = get(&demo, "/api/sessions", Some(&phone)).await;
    assert_eq!(listed.body["user"], json!("ana"), "{listed:?}");
    let sessions = listed.body["sessions"].as_array().expect("a list");
    assert_eq!(sessions.len(), 2, "{listed:?}");
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s["current"] == json!(true))
            .count(),
        1,
        "the listing marks the header's session as current: {listed:?}"
    );
    let revoked = post(&demo, "/api/logout-everywhere", Some(&phone), Value::Null).await;
    assert_eq!(revoked.body, json!({ "revoked": 2 }), "{revoked:?}");
    let gone = get(&demo, "/api/whoami", Some(&tablet)).await;
    assert_eq!(gone.body, json!({ "username": null }));
    assert_eq!(
        gone.key.as_deref(),
        Some(""),
        "the revoked key is told to forget"
    );
}

/// `max_session_bytes` holds for header sessions: a save over it is a 413 that writes nothing
/// and hands out no key, and the session keeps its key and data. A key header longer than any
/// key is no key.
#[tokio::test]
async fn the_size_bounds_hold_for_the_header() {
    let demo = Demo::start(&["--transport", "header", "--max-session-bytes", "300"]);
    let key = key_of(&post(&demo, "/api/cart", None, json!({ "item": "apple" })).await);
    let big = post(
        &demo,
        "/api/cart",
        Some(&key),
        json!({ "item": "x".repeat(400) }),
    )
    .await;
    assert_eq!(big.status, 413, "{big:?}");
    assert_eq!(big.key, None, "{big:?}");
    let cart = get(&demo, "/api/cart", Some(&key)).await;
    assert_eq!(cart.body, json!({ "count": 1, "items": ["apple"] }));

    let long = format!("{key}{}", "a".repeat(300));
    let fresh = get(&demo, "/api/cart", Some(&long)).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
    assert_eq!(fresh.body, json!({ "count": 0, "items": [] }));
}

/// A store outage under the header transport follows the outage policy: fail closed answers
/// 503 with `Retry-After`, fail open serves an anonymous session; neither hands out or
/// withdraws a key (the client keeps it for when the store is back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_keeps_the_key_and_follows_the_policy() {
    let mut redis = Redis::new();
    let url = redis.url();
    let store = [
        "--transport",
        "header",
        "--engine",
        "cache",
        "--cache-url",
        url.as_str(),
    ];
    let closed = Demo::start(&[&store[..], &["--store-timeout-ms", "500"]].concat());
    let open = Demo::start(
        &[
            &store[..],
            &["--store-timeout-ms", "500", "--on-store-error", "fail_open"],
        ]
        .concat(),
    );
    let key = key_of(&get(&closed, "/api/visits", None).await);
    redis.kill();

    let refused = get(&closed, "/api/visits", Some(&key)).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.retry_after, "{refused:?}");
    assert_eq!(refused.key, None, "{refused:?}");
    let anonymous = get(&open, "/api/visits", Some(&key)).await;
    assert_eq!(anonymous.status, 200, "{anonymous:?}");
    assert_eq!(anonymous.body, json!({ "visits": 1 }));
    assert_eq!(anonymous.key, None, "{anonymous:?}");
    assert!(!anonymous.set_cookie);

    redis.start();
    let mut back = get(&closed, "/api/visits", Some(&key)).await;
    for _ in 0..40 {
        if back.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        back = get(&closed, "/api/visits", Some(&key)).await;
    }
    assert_eq!(back.status, 200, "the demo did not recover: {back:?}");
}
