//! `max_session_bytes` over HTTP (issue 14, point 3): a save over the bound answers 413 naming
//! the size, the limit and the setting, and writes nothing, whatever the engine.

mod support;

use reqwest::header::COOKIE;
use serde_json::json;
use support::{bare, count_rows, row, send, session, Demo, Reply};

/// About 70 KB of text that compression cannot shrink much (hex of random bytes).
fn big_item() -> String {
    let mut bytes = vec![0u8; 35_000];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_too_large(reply: &Reply) {
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        reply.body.contains("max_session_bytes") && reply.body.contains("65536"),
        "the body names the setting and the limit: {}",
        reply.body
    );
    assert!(reply.set_cookies().is_empty(), "{:?}", reply.headers);
}

/// Issue 14: 30 cart posts of 1.9 MB made a 57 MB session on SQLite.
#[tokio::test]
async fn unbounded_session_size_is_refused_with_413_and_nothing_written() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    let http = bare();
    let key = send(
        http.post(demo.url("/api/cart"))
            .json(&json!({ "item": "apple" })),
    )
    .await
    .new_key();
    let stored = row(&db, &key).await.expect("the cart is stored");

    let item = big_item();
    let reply = send(
        http.post(demo.url("/api/cart"))
            .header(COOKIE, session(&key))
            .json(&json!({ "item": item })),
    )
    .await;
    assert_too_large(&reply);
    let size: usize = reply
        .body
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("the body names the size");
    assert!(size > 65_536, "{}", reply.body);
    assert_eq!(row(&db, &key).await, Some(stored), "nothing was written");
    let cart = send(
        http.get(demo.url("/api/cart"))
            .header(COOKIE, session(&key)),
    )
    .await;
    assert_eq!(cart.json()["items"], json!(["apple"]));

    // A new visitor's too-large first save creates nothing.
    let reply = send(
        http.post(demo.url("/api/cart"))
            .json(&json!({ "item": item })),
    )
    .await;
    assert_too_large(&reply);
    assert_eq!(count_rows(&db).await, 1);

    // A login (which rotates the key) with a too-large session keeps the old session.
    let reply = send(
        http.post(demo.url("/api/login"))
            .header(COOKIE, session(&key))
            .json(&json!({ "username": item })),
    )
    .await;
    assert_too_large(&reply);
    let cart = send(
        http.get(demo.url("/api/cart"))
            .header(COOKIE, session(&key)),
    )
    .await;
    assert_eq!(
        cart.json()["items"],
        json!(["apple"]),
        "the login lost the session"
    );
}

/// The bound is in the core: the signed-cookie engine gets the same 413 (it answered 503
/// with `Retry-After` before), and the setting can be raised by flag.
#[tokio::test]
async fn unbounded_session_size_applies_to_signed_cookies_and_the_flag_raises_it() {
    let demo = Demo::start(&[
        "--engine",
        "signed_cookies",
        "--secret-key",
        "a-test-secret-that-is-long-enough",
    ]);
    let reply = send(
        bare()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": big_item() })),
    )
    .await;
    assert_too_large(&reply);

    let demo = Demo::start(&["--max-session-bytes", "200000"]);
    let reply = send(
        bare()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": big_item() })),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}
