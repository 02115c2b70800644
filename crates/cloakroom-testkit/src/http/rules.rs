//! Django's cookie rules on the wire: which responses carry `Set-Cookie`, with which
//! attributes, and which vary on `Cookie`.

use serde_json::{json, Value};

use super::client::{bare, send, session, visitor, SetCookie};
use super::contract::{get, get_with_cookie, post};
use super::{AppUnderTest, Setup, Start};

/// The session cookie a new visitor's first write gets.
async fn first_cookie(app: &AppUnderTest) -> SetCookie {
    let reply = get(&bare(), app, "/api/visits").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.session_cookie()
}

/// Values a client might put in the session cookie that the server never issued, each with
/// what it is: the suite sends each one; an app's own tests can check its store for them.
pub fn foreign_cookie_values() -> Vec<(&'static str, String)> {
    vec![
        ("unknown well-formed key", "k".repeat(32)),
        ("short key", "abc123".to_owned()),
        (
            "uppercase key",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".to_owned(),
        ),
        ("key with uppercase letters", format!("{}X", "a".repeat(31))),
        ("path", "../../../etc/passwd".to_owned()),
        (
            "path in a key-sized value",
            format!("{}/..", "a".repeat(29)),
        ),
        ("SQL", "x' OR '1'='1".to_owned()),
        ("SQL comment", format!("{}'--", "a".repeat(29))),
        ("41 characters", "a".repeat(41)),
        (
            "a signed value with a bad signature",
            "eyJ2aXNpdHMiOjF9:1tZ5lz:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ),
    ]
}

/// Reads every read-only route as `client`, failing on any `Set-Cookie`.
async fn reads_set_no_cookie(client: &reqwest::Client, app: &AppUnderTest, session: &str) {
    for path in ["/api/cart", "/api/whoami", "/api/flash", "/api/cart"] {
        let reply = get(client, app, path).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert!(
            reply.set_cookies().is_empty(),
            "read-only {path} on {session} must not set a cookie: {:?}",
            reply.headers
        );
    }
}

/// Django's attributes and nothing else: `HttpOnly`, `SameSite=Lax`, `Path=/`, and a two-week
/// `Max-Age` with the matching `Expires`.
pub async fn the_session_cookie_has_djangos_attributes(start: Start) {
    let app = start.app(Setup::django()).await;
    let cookie = first_cookie(&app).await;
    assert_eq!(
        cookie.attr_names(),
        ["expires", "httponly", "max-age", "path", "samesite"],
        "exactly Django's attributes: {}",
        cookie.raw
    );
    assert_eq!(cookie.get("path"), Some("/"), "{}", cookie.raw);
    assert_eq!(cookie.get("samesite"), Some("Lax"), "{}", cookie.raw);
    cookie.assert_lifetime(1_209_600);
}

/// `SESSION_COOKIE_AGE` sets `Max-Age` and `Expires`.
pub async fn cookie_age_sets_max_age_and_expires(start: Start) {
    let app = start.app(Setup::cookie_age(300)).await;
    first_cookie(&app).await.assert_lifetime(300);
}

/// `SESSION_EXPIRE_AT_BROWSER_CLOSE` drops `Max-Age` and `Expires`, and only them.
pub async fn expire_at_browser_close_drops_max_age_and_expires(start: Start) {
    let app = start.app(Setup::expire_at_browser_close()).await;
    let cookie = first_cookie(&app).await;
    cookie.assert_browser_session();
    assert!(cookie.has("httponly"), "{}", cookie.raw);
    assert_eq!(cookie.get("path"), Some("/"), "{}", cookie.raw);
}

/// A new visitor who only reads gets no cookie: a session never written is never sent.
pub async fn a_session_never_written_sends_no_cookie(start: Start) {
    let app = start.app(Setup::django()).await;
    let reader = visitor();
    reads_set_no_cookie(&reader, &app, "a session never written").await;
    assert_eq!(
        get(&reader, &app, "/api/flash").await.json(),
        json!({ "message": null })
    );
}

/// Reading an existing session sends no cookie (nothing changed, so nothing is saved).
pub async fn read_only_requests_send_no_cookie(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    post(&ana, &app, "/api/cart", json!({ "item": "apple" }))
        .await
        .session_cookie();
    reads_set_no_cookie(&ana, &app, "an existing session").await;
    assert_eq!(
        get(&ana, &app, "/api/cart").await.json(),
        json!({ "count": 1, "items": ["apple"] })
    );
}

/// With `SESSION_SAVE_EVERY_REQUEST`, every request that used a session resends its cookie
/// with a fresh lifetime; a new session that holds nothing is still never sent.
pub async fn save_every_request_resends_the_cookie(start: Start) {
    let app = start.app(Setup::save_every_request()).await;
    let ana = visitor();
    post(&ana, &app, "/api/cart", json!({ "item": "apple" }))
        .await
        .session_cookie();
    for _ in 0..2 {
        let reply = get(&ana, &app, "/api/cart").await;
        assert_eq!(reply.json(), json!({ "count": 1, "items": ["apple"] }));
        let cookie = reply.session_cookie();
        assert!(!cookie.is_deletion(), "{}", cookie.raw);
        cookie.assert_lifetime(1_209_600);
    }
    let reader = get(&visitor(), &app, "/api/whoami").await;
    assert!(reader.set_cookies().is_empty(), "{:?}", reader.headers);
}

/// Every response that used the session says `Vary: Cookie`, so that shared caches never serve
/// one visitor's answer to another, also when the answer deletes a stale cookie.
pub async fn responses_that_used_the_session_vary_on_cookie(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    let calls: &[(&str, &str, Option<Value>)] = &[
        ("GET", "/api/whoami", None),
        ("GET", "/api/cart", None),
        ("GET", "/api/flash", None),
        ("GET", "/api/visits", None),
        ("POST", "/api/flash", Some(json!({ "message": "Saved!" }))),
        ("GET", "/api/flash", None),
        ("POST", "/api/cart", Some(json!({ "item": "apple" }))),
        ("GET", "/api/cart", None),
        ("POST", "/api/checkout", None),
        ("POST", "/api/login", Some(json!({ "username": "ana" }))),
        ("GET", "/api/whoami", None),
        ("POST", "/api/expiry", Some(json!({ "seconds": 300 }))),
        ("POST", "/api/logout", None),
        ("GET", "/api/whoami", None),
    ];
    for (method, path, body) in calls {
        let mut request = match *method {
            "GET" => ana.get(app.url(path)),
            _ => ana.post(app.url(path)),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = send(request).await;
        assert!(reply.status < 400, "{method} {path}: {reply:?}");
        assert!(
            reply.varies_on_cookie(),
            "{method} {path} used the session but has no Vary: Cookie: {:?}",
            reply.headers
        );
    }
    let stale = get_with_cookie(&app, "/api/cart", &"a".repeat(32)).await;
    assert!(stale.session_cookie().is_deletion(), "{stale:?}");
    assert!(stale.varies_on_cookie(), "{:?}", stale.headers);
}

/// A route that never extracts the session answers without `Set-Cookie` or `Vary: Cookie`,
/// whatever cookie comes in.
pub async fn a_route_that_never_uses_the_session_sends_no_cookie_and_no_vary(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    get(&ana, &app, "/api/visits").await.session_cookie();
    let unknown = session(&"b".repeat(32));
    for (what, request) in [
        ("no cookie", bare().get(app.url("/health"))),
        ("a session", ana.get(app.url("/health"))),
        (
            "an unknown key",
            bare().get(app.url("/health")).header("cookie", &unknown),
        ),
    ] {
        let reply = send(request).await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        assert!(!reply.varies_on_cookie(), "{what}: {:?}", reply.headers);
        assert!(
            reply.set_cookies().is_empty(),
            "{what}: {:?}",
            reply.headers
        );
    }
}

/// A cookie the server never issued (unknown, malformed, hostile) is never adopted: the
/// visitor gets a fresh session under a new cookie, which then works.
pub async fn a_malformed_or_unknown_cookie_starts_a_fresh_session(start: Start) {
    let app = start.app(Setup::django()).await;
    for (what, value) in foreign_cookie_values() {
        let reply = get_with_cookie(&app, "/api/visits", &value).await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        assert_eq!(reply.json(), json!({ "visits": 1 }), "{what}");
        let fresh = reply.session_cookie().value;
        assert_ne!(
            fresh, value,
            "{what}: the server adopted a cookie it did not issue"
        );
        let again = get_with_cookie(&app, "/api/visits", &fresh).await;
        assert_eq!(
            again.json(),
            json!({ "visits": 2 }),
            "{what}: the new cookie works"
        );
    }
}

/// A cookie the server never issued, on a request that only reads, is deleted (Django deletes
/// the cookie of a session that is empty at the end of the request).
pub async fn an_unknown_cookie_on_a_read_only_request_is_deleted(start: Start) {
    let app = start.app(Setup::django()).await;
    for (what, value) in foreign_cookie_values() {
        for path in ["/api/cart", "/api/whoami"] {
            let reply = get_with_cookie(&app, path, &value).await;
            assert_eq!(reply.status, 200, "{what} {path}: {reply:?}");
            let cookie = reply.session_cookie();
            assert!(cookie.is_deletion(), "{what} {path}: {}", cookie.raw);
        }
    }
}
