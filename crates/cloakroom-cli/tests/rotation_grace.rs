//! `rotation_grace` over HTTP (issue 14, point 2): inside the window the pre-login key is
//! served the session as it was before the login, read-only, with no cookie; it never leads to
//! the new key, the data written after the login, or the logged-in user.

mod support;

use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::json;
use support::{bare, send, Demo, Reply};

fn with_key(key: &str) -> String {
    format!("sessionid={key}")
}

/// Neither a header nor the body of `reply` carries `secret`.
fn reveals(reply: &Reply, secret: &str) -> bool {
    reply.body.contains(secret)
        || reply
            .headers
            .values()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(secret))
}

/// The attacker plants key K before the victim logs in; within the 30 s window, K gets the
/// pre-login snapshot read-only and nothing else. Today K received `Set-Cookie: sessionid=K′`
/// and the victim's logged-in session.
#[tokio::test]
async fn rotation_grace_hijack_old_key_gets_no_new_key_no_login_and_no_writes() {
    let demo = Demo::start(&["--rotation-grace", "30"]);
    let http = bare();
    let post = |path: &str, key: &str, body: serde_json::Value| {
        http.post(demo.url(path))
            .header(COOKIE, with_key(key))
            .json(&body)
    };
    let get = |path: &str, key: &str| http.get(demo.url(path)).header(COOKIE, with_key(key));

    // The attacker gets a key and plants it in the victim's browser.
    let k = send(
        http.post(demo.url("/api/cart"))
            .json(&json!({ "item": "planted" })),
    )
    .await
    .new_key();
    // The victim, under K, fills the cart, logs in (K′), and goes on under K′.
    assert_eq!(
        send(post("/api/cart", &k, json!({ "item": "socks" })))
            .await
            .status,
        200
    );
    let login = send(post("/api/login", &k, json!({ "username": "victim" }))).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let k2 = login.new_key();
    assert_ne!(k2, k, "the login rotated the key");
    let after = send(post("/api/cart", &k2, json!({ "item": "after-login" }))).await;
    assert_eq!(after.status, 200);

    // The attacker, with K, inside the window.
    let whoami = send(get("/api/whoami", &k)).await;
    assert_eq!(whoami.status, 200);
    assert_eq!(
        whoami.json()["username"],
        serde_json::Value::Null,
        "K is not logged in"
    );
    let django = send(get("/api/django-user", &k)).await;
    assert_eq!(django.json()["user_id"], serde_json::Value::Null);
    let cart = send(get("/api/cart", &k)).await;
    assert_eq!(
        cart.json()["items"],
        json!(["planted", "socks"]),
        "K sees the session as it was at the login, nothing written after it"
    );
    let sessions = send(get("/api/sessions", &k)).await;
    assert_eq!(sessions.status, 401, "K cannot list the user's sessions");
    for reply in [&whoami, &django, &cart, &sessions] {
        assert!(
            reply.set_cookies().is_empty(),
            "a request under the old key got a cookie: {:?}",
            reply.headers
        );
        assert!(!reveals(reply, &k2), "the new key leaked: {reply:?}");
    }

    // K cannot write: not to its snapshot, not to the new session, not by logging in again.
    for (path, body) in [
        ("/api/cart", json!({ "item": "evil" })),
        ("/api/login", json!({ "username": "attacker" })),
        ("/api/flash", json!({ "message": "evil" })),
    ] {
        let reply = send(post(path, &k, body)).await;
        assert_eq!(
            reply.status, 409,
            "{path} under the old key: {}",
            reply.body
        );
        assert!(
            reply.set_cookies().is_empty(),
            "{path}: {:?}",
            reply.headers
        );
        assert!(!reveals(&reply, &k2));
        assert!(
            reply.body.contains("rotation_grace"),
            "the body names the setting: {}",
            reply.body
        );
    }
    let cart = send(get("/api/cart", &k)).await;
    assert_eq!(cart.json()["items"], json!(["planted", "socks"]));

    // The victim, with K′, is unaffected.
    let whoami = send(get("/api/whoami", &k2)).await;
    assert_eq!(whoami.json()["username"], "victim");
    let cart = send(get("/api/cart", &k2)).await;
    assert_eq!(
        cart.json()["items"],
        json!(["planted", "socks", "after-login"])
    );
    let sessions = send(get("/api/sessions", &k2)).await;
    assert_eq!(sessions.status, 200);
    assert_eq!(
        sessions.json()["sessions"].as_array().map(Vec::len),
        Some(1)
    );
}

/// After the window the old key leads nowhere: a fresh anonymous session, and K′ still works.
#[tokio::test]
async fn rotation_grace_old_key_is_dead_after_the_window() {
    let demo = Demo::start(&["--rotation-grace", "1"]);
    let http = bare();
    let k = send(
        http.post(demo.url("/api/cart"))
            .json(&json!({ "item": "planted" })),
    )
    .await
    .new_key();
    let login = send(
        http.post(demo.url("/api/login"))
            .header(COOKIE, with_key(&k))
            .json(&json!({ "username": "victim" })),
    )
    .await;
    let k2 = login.new_key();
    let cart = send(http.get(demo.url("/api/cart")).header(COOKIE, with_key(&k))).await;
    assert_eq!(
        cart.json()["items"],
        json!(["planted"]),
        "inside the window"
    );

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let cart = send(http.get(demo.url("/api/cart")).header(COOKIE, with_key(&k))).await;
    assert_eq!(
        cart.json()["count"],
        0,
        "the old key is dead: {}",
        cart.body
    );
    let whoami = send(
        http.get(demo.url("/api/whoami"))
            .header(COOKIE, with_key(&k2)),
    )
    .await;
    assert_eq!(whoami.json()["username"], "victim");
}
