//! When the demo saves a session, and when it deletes one: Django's rules, seen from the wire
//! and in the demo's SQLite table.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{bare, count_rows, row, send, session, visitor, Demo};

#[tokio::test]
async fn read_only_requests_send_no_cookie_and_write_nothing() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    let ana = visitor();
    let key = send(
        ana.post(demo.url("/api/cart"))
            .json(&json!({ "item": "apple" })),
    )
    .await
    .new_key();
    let stored = row(&db, &key).await.expect("the cart is stored");
    tokio::time::sleep(Duration::from_millis(5)).await;

    for path in ["/api/cart", "/api/whoami", "/api/flash", "/api/cart"] {
        let reply = send(ana.get(demo.url(path))).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.set_cookies().is_empty(),
            "read-only {path} on an existing session must not set a cookie: {:?}",
            reply.headers
        );
    }
    // A save would at least move expire_date forward.
    assert_eq!(
        row(&db, &key).await,
        Some(stored),
        "read-only requests write nothing"
    );

    // A new visitor who only reads gets no session at all.
    let reader = send(visitor().get(demo.url("/api/cart"))).await;
    assert!(reader.set_cookies().is_empty(), "{:?}", reader.headers);
    assert_eq!(count_rows(&db).await, 1, "reading created no record");
}

#[tokio::test]
async fn save_every_request_resends_the_cookie_and_refreshes_expiry() {
    let demo = Demo::start(&["--save-every-request"]);
    let db = demo.db().await;
    let ana = visitor();
    let key = send(
        ana.post(demo.url("/api/cart"))
            .json(&json!({ "item": "apple" })),
    )
    .await
    .new_key();
    let (data, expires) = row(&db, &key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let reply = send(ana.get(demo.url("/api/cart"))).await;
    assert_eq!(reply.json(), json!({ "count": 1, "items": ["apple"] }));
    let cookie = reply.session_cookie();
    assert_eq!(cookie.value, key, "the same session, re-sent");
    cookie.assert_lifetime(1_209_600);
    let (data_after, expires_after) = row(&db, &key).await.unwrap();
    assert_eq!(data_after, data);
    // Django's SQLite text datetimes compare in time order.
    assert!(
        expires_after > expires,
        "the record's expiry moved forward: {expires} -> {expires_after}"
    );

    // A new session that holds nothing has no key and is never saved, even so.
    let reader = send(visitor().get(demo.url("/api/whoami"))).await;
    assert!(reader.set_cookies().is_empty(), "{:?}", reader.headers);
    assert_eq!(count_rows(&db).await, 1);
}

#[tokio::test]
async fn flush_deletes_the_record_and_the_cookie() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;

    let ana = visitor();
    let key = send(ana.get(demo.url("/api/visits"))).await.new_key();
    let logout = send(ana.post(demo.url("/api/logout"))).await;
    assert!(
        logout.session_cookie().is_deletion(),
        "{:?}",
        logout.headers
    );
    assert_eq!(row(&db, &key).await, None, "flush deletes the record");
    assert_eq!(count_rows(&db).await, 0, "no record outlives its session");

    // The deleted key stays dead.
    let replay = send(
        bare()
            .get(demo.url("/api/whoami"))
            .header("cookie", session(&key)),
    )
    .await;
    assert!(replay.session_cookie().is_deletion());
}

#[tokio::test]
async fn emptied_sessions_keep_their_key_as_in_django() {
    // Django saves `{}` under the same key when the last key goes (`pop`, `del`, `clear`),
    // and keeps the cookie; only `flush()` deletes.
    let demo = Demo::start(&[]);
    let db = demo.db().await;

    // Checkout removes the only key.
    let ben = visitor();
    let key = send(
        ben.post(demo.url("/api/cart"))
            .json(&json!({ "item": "pear" })),
    )
    .await
    .new_key();
    let checkout = send(ben.post(demo.url("/api/checkout"))).await;
    assert_eq!(
        checkout.session_cookie().value,
        key,
        "{:?}",
        checkout.headers
    );
    assert!(
        row(&db, &key).await.is_some(),
        "the emptied session is kept"
    );

    // Reading the flash pops the only key.
    let cleo = visitor();
    let posted = send(
        cleo.post(demo.url("/api/flash"))
            .json(&json!({ "message": "Saved!" })),
    )
    .await;
    let key = posted.new_key();
    let read = send(cleo.get(demo.url("/api/flash"))).await;
    assert_eq!(read.json(), json!({ "message": "Saved!" }));
    assert_eq!(read.session_cookie().value, key, "{:?}", read.headers);

    // Reading the empty session keeps its cookie and its record.
    let again = send(cleo.get(demo.url("/api/flash"))).await;
    assert_eq!(again.json(), json!({ "message": null }));
    assert!(again.set_cookies().is_empty(), "{:?}", again.headers);
    assert!(row(&db, &key).await.is_some());
    assert_eq!(count_rows(&db).await, 2);
}
