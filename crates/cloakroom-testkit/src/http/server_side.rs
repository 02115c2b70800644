//! What only an app with server-side sessions can do: forget a key (revocation) and keep one.
//! An app that keeps the session in the cookie declares `without(server_side)` and these tests
//! are skipped with that reason.

use serde_json::{json, Value};

use super::client::visitor;
use super::contract::{get, get_with_cookie, post};
use super::{Setup, Start};

/// After login, whoever held the cookie from before (a session fixation attacker) reaches
/// nothing: the old key was revoked.
pub async fn the_cookie_from_before_login_no_longer_works(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    let before = post(&ana, &app, "/api/cart", json!({ "item": "apple" }))
        .await
        .session_cookie()
        .value;
    let after = post(&ana, &app, "/api/login", json!({ "username": "ana" }))
        .await
        .session_cookie()
        .value;
    assert_ne!(after, before);

    let replay = |path: &'static str| get_with_cookie(&app, path, &before);
    assert_eq!(
        replay("/api/cart").await.json(),
        json!({ "count": 0, "items": [] }),
        "the key from before login still reaches the session"
    );
    assert_eq!(
        replay("/api/whoami").await.json(),
        json!({ "username": null })
    );
    assert_eq!(
        get(&ana, &app, "/api/cart").await.json(),
        json!({ "count": 1, "items": ["apple"] }),
        "the new key holds the session"
    );
}

/// After logout, replaying the logged-in cookie (a stolen cookie) reaches nothing, and the
/// key is never handed out again.
pub async fn a_logged_out_cookie_no_longer_works(start: Start) {
    let app = start.app(Setup::django()).await;
    let ana = visitor();
    get(&ana, &app, "/api/visits").await;
    let key = post(&ana, &app, "/api/login", json!({ "username": "ana" }))
        .await
        .session_cookie()
        .value;
    let logout = post(&ana, &app, "/api/logout", Value::Null).await;
    assert!(logout.session_cookie().is_deletion(), "{logout:?}");

    // A thief replaying the stolen cookie, with no jar of their own.
    let whoami = get_with_cookie(&app, "/api/whoami", &key).await;
    assert_eq!(
        whoami.json(),
        json!({ "username": null }),
        "a logged-out key still logs in"
    );
    assert!(
        whoami.session_cookie().is_deletion(),
        "the dead key's cookie is deleted: {:?}",
        whoami.headers
    );
    let visits = get_with_cookie(&app, "/api/visits", &key).await;
    assert_eq!(visits.json(), json!({ "visits": 1 }), "visits restart");
    assert_ne!(
        visits.session_cookie().value,
        key,
        "the old key is never reused"
    );
}

/// Django saves `{}` under the same key when the last value goes (`pop`, `del`) and keeps
/// the cookie; only `flush()` deletes.
pub async fn an_emptied_session_keeps_its_key(start: Start) {
    let app = start.app(Setup::django()).await;

    // Checkout removes the only value.
    let ben = visitor();
    let key = post(&ben, &app, "/api/cart", json!({ "item": "pear" }))
        .await
        .session_cookie()
        .value;
    let checkout = post(&ben, &app, "/api/checkout", Value::Null).await;
    assert_eq!(
        checkout.session_cookie().value,
        key,
        "{:?}",
        checkout.headers
    );

    // Reading the flash pops the only value.
    let cleo = visitor();
    let key = post(&cleo, &app, "/api/flash", json!({ "message": "Saved!" }))
        .await
        .session_cookie()
        .value;
    let read = get(&cleo, &app, "/api/flash").await;
    assert_eq!(read.json(), json!({ "message": "Saved!" }));
    assert_eq!(read.session_cookie().value, key, "{:?}", read.headers);

    // Reading the empty session keeps its cookie: no Set-Cookie at all.
    let again = get(&cleo, &app, "/api/flash").await;
    assert_eq!(again.json(), json!({ "message": null }));
    assert!(again.set_cookies().is_empty(), "{:?}", again.headers);
}
