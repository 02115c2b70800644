//! `cached_db` across two app servers on one database, with the cache unreachable for a while:
//! a copy in the cache never outlives a write that replaced it. The cache is a redis-server of
//! the test's own (persistent, so it comes back with the copies it held), killed by pid and
//! started again on the same port; the machine's Redis is never touched.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::servers::{Redis, Server};
use support::{row, send, session, visitor, Demo, Scratch};

/// The cart the database holds for `key` (the truth).
async fn cart_in_db(demo: &Demo, key: &str) -> Value {
    let db = demo.db().await;
    let (data, _) = row(&db, key).await.expect("the session is in the database");
    let data: Value = serde_json::from_str(&data).expect("the demo stores JSON");
    data["cart"].clone()
}

/// The cache's copy of session `key`, the data Redis holds ("" when there is none).
fn copy_of(redis: &Redis, key: &str) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "--raw", "GET"])
        .arg(format!(":1:django.contrib.sessions.cached_db{key}"))
        .output()
        .expect("redis-cli runs");
    let mut value = out.stdout;
    if value.last() == Some(&b'\n') {
        value.pop(); // redis-cli's newline
    }
    // cloakroom's own format: a 15-byte header (the expiry, a digest) before the data
    // (docs/format.md §5).
    let data = match value.first() {
        Some(0xFF) => value.get(15..).unwrap_or_default(),
        _ => &value[..],
    };
    String::from_utf8_lossy(data).trim().to_owned()
}

async fn cart_via(demo: &Demo, key: &str) -> (u16, Value) {
    let reply = send(
        visitor()
            .get(demo.url("/api/cart"))
            .header("cookie", session(key)),
    )
    .await;
    let items = if reply.status == 200 {
        reply.json()["items"].clone()
    } else {
        Value::Null
    };
    (reply.status, items)
}

async fn add_via(demo: &Demo, key: &str, item: &str) -> u16 {
    send(
        visitor()
            .post(demo.url("/api/cart"))
            .header("cookie", session(key))
            .json(&json!({ "item": item })),
    )
    .await
    .status
}

#[tokio::test]
async fn a_cache_copy_never_outlives_a_write_made_while_the_cache_was_unreachable() {
    let mut redis = Redis::persistent();
    let dir = Scratch::new("cache-copies");
    let args = ["--engine", "cached_db", "--cache-url", &redis.url()];
    let a = Demo::start_in(&dir, &args);

    let key = send(
        visitor()
            .post(a.url("/api/cart"))
            .json(&json!({ "item": "apple" })),
    )
    .await
    .new_key();
    // A's reads put a copy of the cart in the cache (once its connection is up).
    let mut copied = false;
    for _ in 0..50 {
        assert_eq!(cart_via(&a, &key).await, (200, json!(["apple"])));
        if !copy_of(&redis, &key).is_empty() {
            copied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(copied, "server A never put a copy in the cache");

    redis.kill();
    // B starts while the cache is unreachable (its connection is not up), and changes the
    // session. Longer than any retry: the cache stays down through the whole request.
    let b = Demo::start_in(&dir, &args);
    let status = add_via(&b, &key, "pear").await;
    assert!(
        status == 200 || status == 503,
        "a write with the cache down answered {status}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.start();
    // Long enough for both servers to reconnect (the reconnect policy backs off to 1 s), so
    // their reads go through the cache again.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let truth = cart_in_db(&a, &key).await;
    // The copy itself, straight from the cache: none, or the database's data.
    let copy = copy_of(&redis, &key);
    if !copy.is_empty() {
        let copy: Value = serde_json::from_str(&copy).expect("the copy is the session's JSON");
        assert_eq!(
            copy["cart"], truth,
            "the cache holds a copy older than the database (write answered {status})"
        );
    }
    if status == 200 {
        assert_eq!(truth, json!(["apple", "pear"]), "a 200 saved the change");
    }
    for (name, demo) in [("A", &a), ("B", &b)] {
        for _ in 0..3 {
            let (code, seen) = cart_via(demo, &key).await;
            assert_eq!(code, 200, "server {name} reads once the cache is back");
            assert_eq!(
                seen, truth,
                "server {name} served a copy older than the database (write answered {status})"
            );
        }
    }

    // Once the cache is back, writes work again and both servers see them.
    assert_eq!(add_via(&b, &key, "plum").await, 200);
    let truth = cart_in_db(&a, &key).await;
    assert_eq!(
        truth.as_array().map(Vec::len),
        Some(if status == 200 { 3 } else { 2 })
    );
    assert_eq!(cart_via(&a, &key).await, (200, truth.clone()));
    assert_eq!(cart_via(&b, &key).await, (200, truth));
}
