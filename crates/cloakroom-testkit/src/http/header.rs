//! The key in a header: what an API client sees when the app runs with `transport = "header"`
//! or `"both"` ([`Setup::header`], [`Setup::both`]) and the default `header_name`,
//! [`KEY_HEADER`]. The rules are `cloakroom_core::transport`'s: the key comes back in the
//! header when it is created or rotated, empty when the client must forget it, never as a
//! cookie under `header`; under `both`, the header's key wins and the answer goes the way the
//! key came. Only server-side sessions have a key to carry, so these tests are skipped under
//! `without(server_side)`.

use reqwest::header::VARY;
use serde_json::{json, Value};

use super::client::{bare, is_key, send, session, Reply, COOKIE_NAME};
use super::{AppUnderTest, Setup, Start};

/// The header the suite expects the key in: `header_name`'s default, `X-Session-Token`.
pub const KEY_HEADER: &str = "X-Session-Token";

/// `GET path` from a client without a cookie jar, sending `key` in the key header.
async fn get_with_key(app: &AppUnderTest, path: &str, key: &str) -> Reply {
    send(bare().get(app.url(path)).header(KEY_HEADER, key)).await
}

/// `POST path` with a JSON body, sending `key` in the key header.
async fn post_with_key(app: &AppUnderTest, path: &str, key: &str, body: Value) -> Reply {
    send(
        bare()
            .post(app.url(path))
            .header(KEY_HEADER, key)
            .json(&body),
    )
    .await
}

/// `POST path` with a JSON body and no key at all.
async fn post_bare(app: &AppUnderTest, path: &str, body: Value) -> Reply {
    send(bare().post(app.url(path)).json(&body)).await
}

impl Reply {
    /// The key header's value, if the response sends it (two would be a bug).
    pub fn key_header(&self) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(KEY_HEADER)
            .iter()
            .map(|v| v.to_str().expect("the key header is ASCII").to_owned())
            .collect();
        assert!(
            values.len() <= 1,
            "several {KEY_HEADER} headers: {values:?}"
        );
        values.into_iter().next()
    }

    /// The new key the response hands out in the key header (checked to be a key).
    pub fn key_in_header(&self) -> String {
        let key = self
            .key_header()
            .unwrap_or_else(|| panic!("expected a {KEY_HEADER} header, got {:?}", self.headers));
        assert!(is_key(&key), "not a session key in {KEY_HEADER}: {key:?}");
        key
    }

    /// Whether the response tells the client to forget its key: the key header, empty.
    pub fn forgets_the_key(&self) -> bool {
        self.key_header().is_some_and(|v| v.is_empty())
    }

    /// Whether `Vary` names `header` (case-insensitive).
    pub fn varies_on(&self, header: &str) -> bool {
        self.headers.get_all(VARY).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case(header))
        })
    }
}

/// Under the header transport, a new session's key comes back in the header and never as a
/// cookie; a save sends it again, a read-only request does not; responses that used the
/// session vary on the header, not on `Cookie`.
pub async fn header_transport_hands_out_the_key_in_the_header_not_a_cookie(start: Start) {
    let app = start.app(Setup::header()).await;
    let first = send(bare().get(app.url("/api/visits"))).await;
    assert_eq!(first.json(), json!({ "visits": 1 }), "{first:?}");
    let key = first.key_in_header();
    assert!(first.set_cookies().is_empty(), "a cookie: {first:?}");
    assert!(
        first.varies_on(KEY_HEADER) && !first.varies_on("cookie"),
        "{first:?}"
    );

    let again = get_with_key(&app, "/api/visits", &key).await;
    assert_eq!(
        again.json(),
        json!({ "visits": 2 }),
        "the header's key holds the session"
    );
    assert_eq!(
        again.key_header().as_deref(),
        Some(key.as_str()),
        "a save resends the key"
    );
    assert!(again.set_cookies().is_empty(), "{again:?}");

    let read = get_with_key(&app, "/api/whoami", &key).await;
    assert_eq!(read.json(), json!({ "username": null }));
    assert_eq!(
        read.key_header(),
        None,
        "a read-only request sends no key: {read:?}"
    );
    assert!(read.varies_on(KEY_HEADER), "{read:?}");

    let health = get_with_key(&app, "/health", &key).await;
    assert_eq!(health.key_header(), None);
    assert!(!health.varies_on(KEY_HEADER), "{health:?}");
}

/// Under the header transport the session cookie is not a key: the same key sent as a cookie
/// reaches nothing.
pub async fn header_transport_ignores_the_session_cookie(start: Start) {
    let app = start.app(Setup::header()).await;
    let key = send(bare().get(app.url("/api/visits")))
        .await
        .key_in_header();
    let by_cookie = send(
        bare()
            .get(app.url("/api/visits"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(
        by_cookie.json(),
        json!({ "visits": 1 }),
        "the cookie reached the session"
    );
    assert_ne!(by_cookie.key_in_header(), key);
    assert!(by_cookie.set_cookies().is_empty(), "{by_cookie:?}");
}

/// Login (`cycle_key`) sends a new key in the header, keeps the data, and the key from
/// before no longer reaches anything; its holder is told to forget it.
pub async fn header_login_hands_out_a_new_key_and_the_old_one_stops_working(start: Start) {
    let app = start.app(Setup::header()).await;
    let before = post_bare(&app, "/api/cart", json!({ "item": "apple" }))
        .await
        .key_in_header();
    let login = post_with_key(&app, "/api/login", &before, json!({ "username": "ana" })).await;
    assert_eq!(login.json(), json!({ "username": "ana" }), "{login:?}");
    let after = login.key_in_header();
    assert_ne!(after, before, "login keeps the key");

    let replay = get_with_key(&app, "/api/whoami", &before).await;
    assert_eq!(
        replay.json(),
        json!({ "username": null }),
        "the old key logs in"
    );
    assert!(replay.forgets_the_key(), "{replay:?}");
    assert_eq!(
        get_with_key(&app, "/api/cart", &after).await.json(),
        json!({ "count": 1, "items": ["apple"] }),
        "the new key holds the data"
    );
}

/// Logout (`flush`) answers with an empty key header, "forget the key", and the key reaches
/// nothing afterwards.
pub async fn header_logout_sends_an_empty_header_and_the_key_stops_working(start: Start) {
    let app = start.app(Setup::header()).await;
    let key = post_bare(&app, "/api/login", json!({ "username": "ana" }))
        .await
        .key_in_header();
    let logout = post_with_key(&app, "/api/logout", &key, Value::Null).await;
    assert_eq!(logout.status, 204, "{logout:?}");
    assert!(logout.forgets_the_key(), "{logout:?}");
    let replay = get_with_key(&app, "/api/whoami", &key).await;
    assert_eq!(
        replay.json(),
        json!({ "username": null }),
        "a logged-out key logs in"
    );
    assert!(replay.forgets_the_key(), "{replay:?}");
}

/// A key header that names no session (malformed, unknown, empty) starts a fresh session under
/// a new key, and a read-only request with an unknown key is told to forget it.
pub async fn header_an_unknown_or_malformed_key_starts_afresh(start: Start) {
    let app = start.app(Setup::header()).await;
    let unknown = "a".repeat(32);
    for sent in ["not a key!", "x", unknown.as_str()] {
        let reply = get_with_key(&app, "/api/visits", sent).await;
        assert_eq!(reply.status, 200, "{sent:?}: {reply:?}");
        assert_eq!(reply.json(), json!({ "visits": 1 }), "{sent:?}");
        assert_ne!(reply.key_in_header(), sent);
    }
    let read = get_with_key(&app, "/api/whoami", &unknown).await;
    assert!(read.forgets_the_key(), "{read:?}");
}

/// The key header obeys the session's expiry as the cookie does: an expired session starts
/// over under a new key.
pub async fn header_an_expired_session_starts_fresh(start: Start) {
    let app = start
        .app(Setup {
            cookie_age: Some(1),
            ..Setup::header()
        })
        .await;
    let key = send(bare().get(app.url("/api/visits")))
        .await
        .key_in_header();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let later = get_with_key(&app, "/api/visits", &key).await;
    assert_eq!(
        later.json(),
        json!({ "visits": 1 }),
        "the expired session lived on"
    );
    assert_ne!(later.key_in_header(), key);
}

/// Concurrent requests of one header key all land: the compare-and-swap merge does not care
/// how the key travelled.
pub async fn header_concurrent_requests_all_land(start: Start) {
    let app = start.app(Setup::header()).await;
    let key = post_bare(&app, "/api/cart", json!({ "item": "item-0" }))
        .await
        .key_in_header();
    let adds: Vec<_> = (1..10)
        .map(|n| {
            let request = bare()
                .post(app.url("/api/cart"))
                .header(KEY_HEADER, key.as_str())
                .json(&json!({ "item": format!("item-{n}") }));
            tokio::spawn(send(request))
        })
        .collect();
    for add in adds {
        let reply = add.await.expect("the request task ends");
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let cart = get_with_key(&app, "/api/cart", &key).await.json();
    assert_eq!(cart["count"], json!(10), "lost updates: {cart}");
}

/// Under `both`, a request without a key gets it both ways; a cookie's request is answered
/// with a cookie only, a header's with the header only; when a request carries both, the
/// header's key serves it and the cookie is left alone. Responses vary on both.
pub async fn both_transports_prefer_the_header_and_answer_the_way_the_key_came(start: Start) {
    let app = start.app(Setup::both()).await;
    let first = send(bare().get(app.url("/api/visits"))).await;
    let a = first.key_in_header();
    assert_eq!(
        first.new_key(),
        a,
        "a request without a key gets it both ways"
    );
    assert!(
        first.varies_on("cookie") && first.varies_on(KEY_HEADER),
        "{first:?}"
    );

    let by_cookie = send(
        bare()
            .post(app.url("/api/login"))
            .header("cookie", session(&a))
            .json(&json!({ "username": "ana" })),
    )
    .await;
    let a = by_cookie.new_key();
    assert_eq!(
        by_cookie.key_header(),
        None,
        "a cookie client got the key header"
    );

    let b = post_bare(&app, "/api/cart", json!({ "item": "pear" }))
        .await
        .key_in_header();
    let by_both = send(
        bare()
            .post(app.url("/api/cart"))
            .header("cookie", session(&a))
            .header(KEY_HEADER, b.as_str())
            .json(&json!({ "item": "fig" })),
    )
    .await;
    assert_eq!(
        by_both.json(),
        json!({ "count": 2, "items": ["pear", "fig"] }),
        "the header's key serves the request"
    );
    assert_eq!(by_both.key_header().as_deref(), Some(b.as_str()));
    assert_eq!(
        by_both.cookie(COOKIE_NAME).map(|c| c.value),
        None,
        "{by_both:?}"
    );

    let ana = send(
        bare()
            .get(app.url("/api/whoami"))
            .header("cookie", session(&a)),
    )
    .await;
    assert_eq!(
        ana.json(),
        json!({ "username": "ana" }),
        "the cookie's session is intact"
    );
    let ana_cart = send(
        bare()
            .get(app.url("/api/cart"))
            .header("cookie", session(&a)),
    )
    .await;
    assert_eq!(ana_cart.json(), json!({ "count": 0, "items": [] }));
}
