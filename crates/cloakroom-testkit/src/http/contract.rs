//! The JSON contract, as visitors see it: each handler's effect on the session, on any engine.

use std::time::Duration;

use serde_json::{json, Value};

use super::client::{bare, send, session, visitor, Reply};
use super::{AppUnderTest, Setup, Start};

/// `POST path` with a JSON body, from `client`.
pub(super) async fn post(
    client: &reqwest::Client,
    app: &AppUnderTest,
    path: &str,
    body: Value,
) -> Reply {
    send(client.post(app.url(path)).json(&body)).await
}

/// `GET path`, from `client`.
pub(super) async fn get(client: &reqwest::Client, app: &AppUnderTest, path: &str) -> Reply {
    send(client.get(app.url(path))).await
}

/// `GET path` from a client without a cookie jar, sending a session cookie holding `value`.
pub(super) async fn get_with_cookie(app: &AppUnderTest, path: &str, value: &str) -> Reply {
    send(bare().get(app.url(path)).header("cookie", session(value))).await
}

/// Each visitor has a count of their own; a second visitor starts at one and leaves the first
/// visitor's count intact.
pub async fn visits_count_per_visitor(start: Start) {
    let app = start.app(Setup::django()).await;
    let (ana, ben) = (visitor(), visitor());
    for n in 1..=3 {
        let reply = get(&ana, &app, "/api/visits").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json(), json!({ "visits": n }));
    }
    for n in 1..=2 {
        let reply = get(&ben, &app, "/api/visits").await;
        assert_eq!(
            reply.json(),
            json!({ "visits": n }),
            "a second visitor has a count of their own"
        );
    }
    assert_eq!(
        get(&ana, &app, "/api/visits").await.json(),
        json!({ "visits": 4 }),
        "the first visitor's count is intact"
    );
}

/// A flash message shows once, to the visitor who left it.
pub async fn flash_is_shown_once(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    let posted = post(&ana, &app, "/api/flash", json!({ "message": "Saved!" })).await;
    assert_eq!(posted.status, 204, "{posted:?}");
    assert!(posted.body.is_empty(), "{posted:?}");
    let first = get(&ana, &app, "/api/flash").await;
    assert_eq!(first.json(), json!({ "message": "Saved!" }));
    let second = get(&ana, &app, "/api/flash").await;
    assert_eq!(
        second.json(),
        json!({ "message": null }),
        "the flash showed twice"
    );
    let other = get(&visitor(), &app, "/api/flash").await;
    assert_eq!(
        other.json(),
        json!({ "message": null }),
        "another visitor never sees it"
    );
}

/// The cart adds, lists without changing, and checks out; emptying it keeps the session (and
/// its cookie), as Django does: only a flush deletes.
pub async fn cart_adds_lists_and_checks_out(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    let add = |item: &'static str| post(&ana, &app, "/api/cart", json!({ "item": item }));
    assert_eq!(
        add("apple").await.json(),
        json!({ "count": 1, "items": ["apple"] })
    );
    assert_eq!(
        add("pear").await.json(),
        json!({ "count": 2, "items": ["apple", "pear"] })
    );
    for _ in 0..2 {
        assert_eq!(
            get(&ana, &app, "/api/cart").await.json(),
            json!({ "count": 2, "items": ["apple", "pear"] }),
            "reading the cart leaves it unchanged"
        );
    }
    let checkout = post(&ana, &app, "/api/checkout", Value::Null).await;
    assert_eq!(checkout.json(), json!({ "count": 0, "items": [] }));
    let cookie = checkout.session_cookie();
    assert!(
        !cookie.is_deletion(),
        "emptying the session must not delete its cookie: {}",
        cookie.raw
    );
    assert_eq!(
        get(&ana, &app, "/api/cart").await.json(),
        json!({ "count": 0, "items": [] })
    );
}

/// Login sends a new cookie (session fixation) and keeps what the session held.
pub async fn login_keeps_the_data_and_sends_a_new_cookie(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    let before = post(&ana, &app, "/api/cart", json!({ "item": "apple" }))
        .await
        .session_cookie();
    post(&ana, &app, "/api/cart", json!({ "item": "pear" })).await;
    assert_eq!(
        get(&ana, &app, "/api/whoami").await.json(),
        json!({ "username": null })
    );

    let login = post(&ana, &app, "/api/login", json!({ "username": "ana" })).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.json(), json!({ "username": "ana" }));
    let after = login.session_cookie();
    assert_ne!(
        after.value, before.value,
        "login must send a new cookie value (session fixation)"
    );
    assert_eq!(
        get(&ana, &app, "/api/whoami").await.json(),
        json!({ "username": "ana" })
    );
    assert_eq!(
        get(&ana, &app, "/api/cart").await.json(),
        json!({ "count": 2, "items": ["apple", "pear"] }),
        "login lost the cart"
    );
    assert_eq!(
        post(&ana, &app, "/api/checkout", Value::Null).await.json(),
        json!({ "count": 0, "items": [] })
    );
    assert_eq!(
        get(&ana, &app, "/api/whoami").await.json(),
        json!({ "username": "ana" }),
        "checkout logged out"
    );
}

/// Logout (`flush`) deletes the cookie the way Django's middleware does (empty value,
/// `Max-Age=0`, `Expires` in 1970, the cookie's `Path` and `SameSite`) and the data with it.
pub async fn logout_deletes_the_cookie_and_the_data(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    get(&ana, &app, "/api/visits").await;
    post(&ana, &app, "/api/login", json!({ "username": "ana" })).await;

    let logout = post(&ana, &app, "/api/logout", Value::Null).await;
    assert_eq!(logout.status, 204, "{logout:?}");
    let deleted = logout.session_cookie();
    assert!(
        deleted.is_deletion(),
        "logout deletes the cookie: {}",
        deleted.raw
    );
    assert_eq!(deleted.get("path"), Some("/"), "{}", deleted.raw);
    assert_eq!(deleted.get("samesite"), Some("Lax"), "{}", deleted.raw);

    assert_eq!(
        get(&ana, &app, "/api/whoami").await.json(),
        json!({ "username": null }),
        "logout did not log out"
    );
    assert_eq!(
        get(&ana, &app, "/api/visits").await.json(),
        json!({ "visits": 1 }),
        "logout kept the data"
    );
}

/// `set_expiry(s)` gives the cookie `s` seconds, renewed by every later save (an idle
/// timeout); `set_expiry(0)` makes a browser-session cookie, whose record still lives
/// `SESSION_COOKIE_AGE` (Django's `get_expiry_age`).
pub async fn per_session_expiry_sets_the_cookie_lifetime(start: Start) {
    let app = start.app(Setup::django()).await;
    let expiry = |client: &reqwest::Client, seconds: u64| {
        send(
            client
                .post(app.url("/api/expiry"))
                .json(&json!({ "seconds": seconds })),
        )
    };

    let ana = visitor();
    let set = expiry(&ana, 300).await;
    assert_eq!(
        set.json(),
        json!({ "expiry_age": 300, "expire_at_browser_close": false })
    );
    set.session_cookie().assert_lifetime(300);
    get(&ana, &app, "/api/visits")
        .await
        .session_cookie()
        .assert_lifetime(300);

    let ben = visitor();
    let set = expiry(&ben, 0).await;
    assert_eq!(
        set.json(),
        json!({ "expiry_age": 1_209_600, "expire_at_browser_close": true })
    );
    set.session_cookie().assert_browser_session();
    get(&ben, &app, "/api/visits")
        .await
        .session_cookie()
        .assert_browser_session();
    expiry(&ben, 300)
        .await
        .session_cookie()
        .assert_lifetime(300);
}

/// A session past its per-session expiry is gone: the visitor starts again with a new cookie.
pub async fn an_expired_session_starts_fresh(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    post(&ana, &app, "/api/expiry", json!({ "seconds": 1 })).await;
    let old = get(&ana, &app, "/api/visits").await.session_cookie();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Sent by hand: the jar would drop the cookie by its own Max-Age.
    let reply = get_with_cookie(&app, "/api/visits", &old.value).await;
    assert_eq!(
        reply.json(),
        json!({ "visits": 1 }),
        "the expired data is gone"
    );
    assert_ne!(reply.session_cookie().value, old.value);
}
