//! `cloakroom demo --engine E …` runs the whole JSON contract for every engine E, over real
//! HTTP against the real server of each engine.

mod support;

use serde_json::{json, Value};
use support::{send, visitor, Demo};

/// The demo's whole JSON contract, as one visitor sees it.
async fn contract(demo: &Demo) {
    let c = visitor();
    for n in 1..=3 {
        let r = send(c.get(demo.url("/api/visits"))).await;
        assert_eq!(r.json(), json!({ "visits": n }), "visits");
    }
    let r = send(
        c.post(demo.url("/api/flash"))
            .json(&json!({ "message": "Saved!" })),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = send(c.get(demo.url("/api/flash"))).await;
    assert_eq!(r.json(), json!({ "message": "Saved!" }));
    let r = send(c.get(demo.url("/api/flash"))).await;
    assert_eq!(
        r.json(),
        json!({ "message": null }),
        "the flash showed twice"
    );

    for (i, item) in ["apple", "pear"].iter().enumerate() {
        let r = send(c.post(demo.url("/api/cart")).json(&json!({ "item": item }))).await;
        assert_eq!(r.json()["count"], json!(i + 1));
    }
    let r = send(c.get(demo.url("/api/cart"))).await;
    assert_eq!(r.json(), json!({ "count": 2, "items": ["apple", "pear"] }));

    let before = send(c.get(demo.url("/api/whoami"))).await;
    assert_eq!(before.json(), json!({ "username": null }));
    let login = send(
        c.post(demo.url("/api/login"))
            .json(&json!({ "username": "ana" })),
    )
    .await;
    assert_eq!(login.status, 200);
    assert!(
        !login.set_cookies().is_empty(),
        "login must send the new key"
    );
    let r = send(c.get(demo.url("/api/whoami"))).await;
    assert_eq!(r.json(), json!({ "username": "ana" }));
    let r = send(c.get(demo.url("/api/cart"))).await;
    assert_eq!(r.json()["count"], json!(2), "login lost the cart");

    let r = send(c.post(demo.url("/api/checkout"))).await;
    assert_eq!(r.json(), json!({ "count": 0, "items": [] }));

    let r = send(
        c.post(demo.url("/api/expiry"))
            .json(&json!({ "seconds": 300 })),
    )
    .await;
    assert_eq!(r.json()["expiry_age"], json!(300));
    let r = send(
        c.post(demo.url("/api/expiry"))
            .json(&json!({ "seconds": 0 })),
    )
    .await;
    assert_eq!(r.json()["expire_at_browser_close"], json!(true));
    r.session_cookie().assert_browser_session();

    let r = send(c.post(demo.url("/api/logout"))).await;
    assert_eq!(r.status, 204);
    let r = send(c.get(demo.url("/api/whoami"))).await;
    assert_eq!(
        r.json(),
        json!({ "username": null }),
        "logout did not log out"
    );
    let r: Value = send(c.get(demo.url("/api/visits"))).await.json();
    assert_eq!(r, json!({ "visits": 1 }), "logout kept the data");
}

#[tokio::test]
async fn sqlite() {
    contract(&Demo::start(&[])).await;
}

#[tokio::test]
async fn in_process_cache() {
    contract(&Demo::start(&["--engine", "cache"])).await;
}

#[tokio::test]
async fn postgres() {
    let (url, table) = (support::postgres_url(), support::unique_table("contract"));
    support::migrate(&url, &table);
    contract(&Demo::start(&["--database-url", &url, "--table", &table])).await;
}

#[tokio::test]
async fn mysql() {
    let (url, table) = (support::mysql_url(), support::unique_table("contract"));
    support::migrate(&url, &table);
    contract(&Demo::start(&["--database-url", &url, "--table", &table])).await;
}

#[tokio::test]
async fn redis() {
    contract(&Demo::start(&[
        "--engine",
        "cache",
        "--cache-url",
        &support::redis_url(),
    ]))
    .await;
}

#[tokio::test]
async fn cached_db_on_sqlite_and_redis() {
    contract(&Demo::start(&[
        "--engine",
        "cached_db",
        "--cache-url",
        &support::redis_url(),
    ]))
    .await;
}

#[tokio::test]
async fn cached_db_on_sqlite_and_in_process_cache() {
    contract(&Demo::start(&["--engine", "cached_db"])).await;
}

#[tokio::test]
async fn file() {
    let dir = support::temp_dir("contract-files");
    contract(&Demo::start(&[
        "--engine",
        "file",
        "--file-path",
        dir.to_str().unwrap(),
    ]))
    .await;
}

#[tokio::test]
async fn signed_cookies() {
    contract(&Demo::start(&[
        "--engine",
        "signed_cookies",
        "--secret-key",
        "contract-secret",
    ]))
    .await;
}
