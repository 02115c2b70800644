//! Several app servers over one store: a visitor who alternates between two demo servers sees
//! one session (the counter keeps counting; a login on one is seen by the other; logout on one
//! is logout on both).

mod support;

use serde_json::{json, Value};
use support::{visitor, Demo};

async fn get(client: &reqwest::Client, url: String) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> u16 {
    client
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub async fn one_session_across(a: &Demo, b: &Demo) {
    let client = visitor();
    for (i, demo) in [a, b, a, b].iter().enumerate() {
        assert_eq!(
            get(&client, demo.url("/api/visits")).await,
            json!({ "visits": i + 1 }),
            "the counter did not carry over"
        );
    }
    assert_eq!(
        post(&client, a.url("/api/login"), json!({ "username": "ana" })).await,
        200
    );
    assert_eq!(
        get(&client, b.url("/api/whoami")).await,
        json!({ "username": "ana" })
    );
    assert_eq!(
        get(&client, b.url("/api/visits")).await,
        json!({ "visits": 5 })
    );
    assert_eq!(post(&client, b.url("/api/logout"), json!({})).await, 204);
    assert_eq!(
        get(&client, a.url("/api/whoami")).await,
        json!({ "username": null })
    );
}

#[tokio::test]
async fn two_servers_share_one_postgres_database() {
    let (url, table) = (support::postgres_url(), support::unique_table("shared"));
    support::migrate(&url, &table);
    let args = ["--database-url", url.as_str(), "--table", table.as_str()];
    let (a, b) = (Demo::start(&args), Demo::start(&args));
    one_session_across(&a, &b).await;
}
