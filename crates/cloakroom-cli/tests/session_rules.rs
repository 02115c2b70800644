//! What the demo's SQLite table holds as Django's save and delete rules play out. What the
//! visitor sees of the same rules (which responses set or delete the cookie) is the HTTP
//! suite's (`tests/http_suite.rs`); these tests look behind it, at the records.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{count_rows, row, send, visitor, Demo};

#[tokio::test]
async fn one_record_per_visitor_and_login_replaces_it() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    let (ana, ben) = (visitor(), visitor());
    let before = send(ana.get(demo.url("/api/visits"))).await.new_key();
    send(ana.get(demo.url("/api/visits"))).await;
    send(ben.get(demo.url("/api/visits"))).await;
    assert_eq!(count_rows(&db).await, 2, "one record per visitor");

    let after = send(
        ana.post(demo.url("/api/login"))
            .json(&json!({ "username": "ana" })),
    )
    .await
    .new_key();
    assert_eq!(row(&db, &before).await, None, "the old record is deleted");
    assert!(row(&db, &after).await.is_some());
    assert_eq!(count_rows(&db).await, 2, "replaced, not added");
}

#[tokio::test]
async fn read_only_requests_write_nothing() {
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
        assert_eq!(send(ana.get(demo.url(path))).await.status, 200, "{path}");
    }
    // A save would at least move expire_date forward.
    assert_eq!(
        row(&db, &key).await,
        Some(stored),
        "read-only requests write nothing"
    );

    // A new visitor who only reads gets no record at all.
    send(visitor().get(demo.url("/api/cart"))).await;
    assert_eq!(count_rows(&db).await, 1, "reading created no record");
}

#[tokio::test]
async fn save_every_request_refreshes_the_stored_expiry() {
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
    assert_eq!(
        reply.session_cookie().value,
        key,
        "the same session, re-sent"
    );
    let (data_after, expires_after) = row(&db, &key).await.unwrap();
    assert_eq!(data_after, data);
    // Django's SQLite text datetimes compare in time order.
    assert!(
        expires_after > expires,
        "the record's expiry moved forward: {expires} -> {expires_after}"
    );

    // A new session that holds nothing is never saved, even so.
    send(visitor().get(demo.url("/api/whoami"))).await;
    assert_eq!(count_rows(&db).await, 1);
}

#[tokio::test]
async fn flush_deletes_the_record() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;

    let ana = visitor();
    send(ana.get(demo.url("/api/visits"))).await;
    let key = send(
        ana.post(demo.url("/api/login"))
            .json(&json!({ "username": "ana" })),
    )
    .await
    .new_key();
    let logout = send(ana.post(demo.url("/api/logout"))).await;
    assert_eq!(logout.status, 204);
    assert_eq!(row(&db, &key).await, None, "flush deletes the record");
    assert_eq!(count_rows(&db).await, 0, "no record outlives its session");

    // Visiting again after logout makes a new record, never the old key's.
    let again = send(ana.get(demo.url("/api/visits"))).await.new_key();
    assert_ne!(again, key);
    assert_eq!(row(&db, &key).await, None);
}

#[tokio::test]
async fn emptied_sessions_keep_their_record() {
    // Django saves `{}` under the same key when the last value goes (`pop`, `del`, `clear`);
    // only `flush()` deletes.
    let demo = Demo::start(&[]);
    let db = demo.db().await;

    let ben = visitor();
    let key = send(
        ben.post(demo.url("/api/cart"))
            .json(&json!({ "item": "pear" })),
    )
    .await
    .new_key();
    send(ben.post(demo.url("/api/checkout"))).await;
    assert!(
        row(&db, &key).await.is_some(),
        "the emptied session is kept"
    );

    let cleo = visitor();
    let key = send(
        cleo.post(demo.url("/api/flash"))
            .json(&json!({ "message": "Saved!" })),
    )
    .await
    .new_key();
    send(cleo.get(demo.url("/api/flash"))).await;
    send(cleo.get(demo.url("/api/flash"))).await;
    assert!(row(&db, &key).await.is_some());
    assert_eq!(count_rows(&db).await, 2);
}
