//! No lost updates through the demo: 400 concurrent requests of ONE visitor (one session
//! cookie) on each server-side engine leave exactly 400 cart items and raise the counter by
//! exactly 400.

mod support;

use serde_json::{json, Value};
use support::{visitor, Demo};

const N: usize = 400;

async fn race(demo: &Demo) {
    let client = visitor();
    let first: Value = client
        .get(demo.url("/api/visits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, json!({ "visits": 1 }));

    let carts = (0..N).map(|i| {
        let client = client.clone();
        let url = demo.url("/api/cart");
        tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({ "item": format!("item-{i}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        })
    });
    let visits = (0..N).map(|_| {
        let client = client.clone();
        let url = demo.url("/api/visits");
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        })
    });
    let all: Vec<_> = carts.chain(visits).collect();
    for task in all {
        task.await.unwrap();
    }

    let cart: Value = client
        .get(demo.url("/api/cart"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["count"], json!(N), "lost cart items");
    let mut items: Vec<String> = serde_json::from_value(cart["items"].clone()).unwrap();
    items.sort();
    items.dedup();
    assert_eq!(items.len(), N, "duplicated or lost items");
    let after: Value = client
        .get(demo.url("/api/visits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after, json!({ "visits": N + 2 }), "lost visits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loses_no_updates() {
    race(&Demo::start(&[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_cache_loses_no_updates() {
    race(&Demo::start(&["--engine", "cache"])).await;
}

/// Two app servers over one SQLite file: the in-process lock cannot help, so every save
/// that meets a newer record must merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_lose_no_updates() {
    let dir = support::temp_dir("race2");
    let a = Demo::start_in(&dir, &[]);
    let b = Demo::start_in(&dir, &[]);
    let client = visitor();
    client.get(a.url("/api/visits")).send().await.unwrap();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let client = client.clone();
            let url = if i % 2 == 0 {
                a.url("/api/cart")
            } else {
                b.url("/api/cart")
            };
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({ "item": format!("item-{i}") }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let cart: Value = client
        .get(b.url("/api/cart"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cart["count"], json!(N), "lost cart items across servers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loses_no_updates() {
    let (url, table) = (support::postgres_url(), support::unique_table("race"));
    support::migrate(&url, &table);
    race(&Demo::start(&["--database-url", &url, "--table", &table])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_loses_no_updates() {
    let (url, table) = (support::mysql_url(), support::unique_table("race"));
    support::migrate(&url, &table);
    race(&Demo::start(&["--database-url", &url, "--table", &table])).await;
}
