//! Session keys: 32 characters of `[a-z0-9]`, distinct per visitor, and only ever issued by the
//! server: a key the server did not issue (unknown, malformed, expired) is never adopted.

mod support;

use std::collections::HashSet;

use cloakroom_testkit::http::foreign_cookie_values;
use support::{bare, count_rows, row, send, session, Demo};

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

#[tokio::test]
async fn unknown_or_malformed_keys_are_never_stored() {
    // The wire (a fresh session under a new key, which works) is the HTTP suite's
    // `a_malformed_or_unknown_cookie_starts_a_fresh_session`; here, what the store holds.
    let demo = Demo::start(&[]);
    let db = demo.db().await;
    for (what, value) in foreign_cookie_values() {
        let reply = send(
            bare()
                .get(demo.url("/api/visits"))
                .header("cookie", session(&value)),
        )
        .await;
        let key = reply.new_key();
        assert_eq!(
            row(&db, &value).await,
            None,
            "{what}: stored under the client's value"
        );
        assert!(row(&db, &key).await.is_some(), "{what}");
    }
    assert_eq!(count_rows(&db).await, foreign_cookie_values().len() as i64);
}

#[tokio::test]
async fn an_unknown_key_on_a_read_only_request_stores_nothing() {
    // The cookie's deletion is the HTTP suite's
    // `an_unknown_cookie_on_a_read_only_request_is_deleted`.
    let demo = Demo::start(&[]);
    for (what, value) in foreign_cookie_values() {
        for path in ["/api/cart", "/api/whoami"] {
            let reply = send(bare().get(demo.url(path)).header("cookie", session(&value))).await;
            assert_eq!(reply.status, 200, "{what} {path}: {reply:?}");
        }
    }
    assert_eq!(
        count_rows(&demo.db().await).await,
        0,
        "reading created nothing"
    );
}
