//! Session keys: 32 characters of `[a-z0-9]`, distinct per visitor, and only ever issued by the
//! server: a key the server did not issue (unknown, malformed, expired) is never adopted.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::{bare, count_rows, is_key, row, send, session, visitor, Demo};

#[tokio::test]
async fn new_visitors_get_distinct_well_formed_keys() {
    let demo = Demo::start(&[]);
    let client = bare();
    let replies = futures_join(
        (0..100)
            .map(|_| send(client.get(demo.url("/api/visits"))))
            .collect(),
    )
    .await;
    let keys: HashSet<String> = replies.iter().map(support::Reply::new_key).collect();
    assert_eq!(keys.len(), 100, "every new visitor gets a key of its own");
    assert_eq!(count_rows(&demo.db().await).await, 100);
}

/// Runs the futures concurrently on the test's runtime.
async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// Values a client might put in the session cookie that the server never issued.
fn foreign_values() -> Vec<(&'static str, String)> {
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
    ]
}

#[tokio::test]
async fn unknown_or_malformed_keys_are_never_adopted() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    for (what, value) in foreign_values() {
        let reply = send(
            bare()
                .get(demo.url("/api/visits"))
                .header("cookie", session(&value)),
        )
        .await;
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        assert_eq!(reply.json(), json!({ "visits": 1 }), "{what}");
        let key = reply.new_key();
        assert_ne!(
            key, value,
            "{what}: the server adopted a key it did not issue"
        );
        assert_eq!(
            row(&db, &value).await,
            None,
            "{what}: stored under the client's value"
        );
        assert!(row(&db, &key).await.is_some(), "{what}");
        let again = send(
            bare()
                .get(demo.url("/api/visits"))
                .header("cookie", session(&key)),
        )
        .await;
        assert_eq!(
            again.json(),
            json!({ "visits": 2 }),
            "{what}: the new key works"
        );
    }
    assert_eq!(count_rows(&db).await, foreign_values().len() as i64);
}

#[tokio::test]
async fn an_unknown_key_on_a_read_only_request_deletes_the_cookie() {
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    for (what, value) in foreign_values() {
        for path in ["/api/cart", "/api/whoami"] {
            let reply = send(bare().get(demo.url(path)).header("cookie", session(&value))).await;
            assert_eq!(reply.status, 200, "{what} {path}: {reply:?}");
            let cookie = reply.session_cookie();
            assert!(cookie.is_deletion(), "{what} {path}: {cookie:?}");
        }
    }
    assert_eq!(count_rows(&db).await, 0, "reading created nothing");
}

#[tokio::test]
async fn an_expired_key_is_not_adopted() {
    let demo = Demo::start(&[]);
    let ana = visitor();
    let reply = send(
        ana.post(demo.url("/api/expiry"))
            .json(&json!({ "seconds": 1 })),
    )
    .await;
    let key = reply.new_key();
    send(ana.get(demo.url("/api/visits"))).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let reply = send(
        bare()
            .get(demo.url("/api/visits"))
            .header("cookie", session(&key)),
    )
    .await;
    assert_eq!(
        reply.json(),
        json!({ "visits": 1 }),
        "the expired data is gone"
    );
    let new = reply.new_key();
    assert_ne!(new, key);
    assert!(is_key(&new));
}
