//! The `private_cookies` engine over real HTTP, beyond the HTTP suite (tests/http_suite.rs):
//! what the browser holds is encrypted, and only a demo with the same secret reads it.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use support::{bare, send, session, Demo};

const SECRET: &str = "private-cookies-test-secret";
const MARKER: &str = "plain-marker-2f9c1e";

fn private_demo(secret: &str) -> Demo {
    Demo::start(&["--engine", "private_cookies", "--secret-key", secret])
}

/// Puts `item` in a new visitor's cart and returns the session cookie's value.
async fn cart_with(demo: &Demo, item: &str) -> String {
    let reply = send(
        bare()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": item })),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.session_cookie().value
}

async fn cart_of(demo: &Demo, cookie: &str) -> serde_json::Value {
    let reply = send(
        bare()
            .get(demo.url("/api/cart"))
            .header("cookie", session(cookie)),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["items"].clone()
}

#[tokio::test]
async fn the_cookie_carries_the_cart_without_showing_it() {
    let demo = private_demo(SECRET);
    let cookie = cart_with(&demo, MARKER).await;
    assert!(!cookie.contains(MARKER), "{cookie}");
    let raw = URL_SAFE_NO_PAD
        .decode(&cookie)
        .expect("a private cookie is base64url without padding");
    assert!(
        !raw.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
        "the cart item is in the decoded cookie in clear"
    );
    assert!(
        !raw.windows(4).any(|w| w == b"cart"),
        "the session's key names are in clear"
    );
    // Yet the data is in the cookie: nothing is stored, and the cart comes back from it.
    assert_eq!(cart_of(&demo, &cookie).await, json!([MARKER]));
}

#[tokio::test]
async fn another_secret_or_a_changed_byte_reads_as_an_empty_cart() {
    let demo = private_demo(SECRET);
    let cookie = cart_with(&demo, MARKER).await;
    let other = private_demo("another-secret");
    assert_eq!(cart_of(&other, &cookie).await, json!([]));

    let mut raw = URL_SAFE_NO_PAD.decode(&cookie).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let changed = URL_SAFE_NO_PAD.encode(raw);
    assert_eq!(cart_of(&demo, &changed).await, json!([]));
    assert_eq!(cart_of(&demo, &cookie[..cookie.len() / 2]).await, json!([]));
}

#[tokio::test]
async fn a_cookie_of_the_old_secret_is_read_after_a_rotation() {
    let before = private_demo("old-secret");
    let cookie = cart_with(&before, MARKER).await;
    let after = Demo::start(&[
        "--engine",
        "private_cookies",
        "--secret-key",
        SECRET,
        "--secret-key-fallbacks",
        "old-secret",
    ]);
    assert_eq!(cart_of(&after, &cookie).await, json!([MARKER]));
}

/// Encryption does not compress: 4 000 bytes of data cannot fit in a 4 KB cookie.
#[tokio::test]
async fn an_oversized_private_session_is_413_naming_the_limit() {
    let demo = private_demo(SECRET);
    let reply = send(
        bare()
            .post(demo.url("/api/cart"))
            .json(&json!({ "item": "x".repeat(4_000) })),
    )
    .await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(
        reply.body.contains("4096") && reply.body.contains("private_cookies"),
        "{}",
        reply.body
    );
}
