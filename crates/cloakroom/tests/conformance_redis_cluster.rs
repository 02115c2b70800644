//! The store contract on a Redis Cluster of three masters that this test binary starts itself
//! (see `support/redis_cluster.rs`), plus: keys really spread over the nodes, a client that
//! knows one node finds the others, and scripts survive a flushed script cache.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use cloakroom::engines::redis::RedisStore;
use cloakroom::{Created, Record, SessionStore, Updated};
use time::OffsetDateTime;

async fn store() -> Arc<RedisStore> {
    let cluster = tokio::task::spawn_blocking(support::redis_cluster::shared)
        .await
        .unwrap();
    let store = RedisStore::connect(&cluster.url()).await.unwrap();
    // The cluster is this binary's own, but tests share it: a prefix each keeps them apart.
    Arc::new(store.with_key_prefix(support::unique("t")))
}

// Without `clear`, as on one server: the TTL expires keys (see `conformance_redis.rs`).
cloakroom::conformance_tests!(store());

fn record(data: &str) -> Record {
    Record {
        data: data.to_owned(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_the_nodes_from_one_known_node() {
    let cluster = tokio::task::spawn_blocking(support::redis_cluster::shared)
        .await
        .unwrap();
    // Only one node in the URL: the client learns the others from it.
    let url = format!("redis-cluster://127.0.0.1:{}", cluster.ports()[0]);
    let prefix = support::unique("spread");
    let store = RedisStore::connect(&url)
        .await
        .unwrap()
        .with_key_prefix(prefix.clone());
    let keys: Vec<String> = (0..30)
        .map(|_| cloakroom::key::generate().unwrap())
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let rec = record(&format!(r#"{{"i":{i}}}"#));
        assert_eq!(store.create(key, &rec).await.unwrap(), Created::Stored);
    }
    let now = OffsetDateTime::now_utc();
    for (i, key) in keys.iter().enumerate() {
        let loaded = store.load(key, now).await.unwrap().expect("stored");
        assert_eq!(loaded.data, format!(r#"{{"i":{i}}}"#));
        let next = record(&format!(r#"{{"i":{i},"x":1}}"#));
        assert_eq!(
            store.update(key, &loaded.data, &next, now).await.unwrap(),
            Updated::Stored
        );
    }
    let per_node: Vec<usize> = cluster
        .ports()
        .iter()
        .map(|&port| cluster.keys_on(port, &format!("{prefix}:*")).len())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), keys.len(), "{per_node:?}");
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() > 1,
        "all keys on one node: {per_node:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_resent_after_the_script_cache_is_flushed() {
    let cluster = tokio::task::spawn_blocking(support::redis_cluster::shared)
        .await
        .unwrap();
    let store = store().await;
    let keys: Vec<String> = (0..12)
        .map(|_| cloakroom::key::generate().unwrap())
        .collect();
    for key in &keys {
        store.create(key, &record(r#"{"a":1}"#)).await.unwrap();
    }
    // As after a restart or a failover to a fresh node: EVALSHA answers NOSCRIPT everywhere.
    for &port in cluster.ports() {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "script", "flush"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let now = OffsetDateTime::now_utc();
    for key in &keys {
        assert_eq!(
            store.load(key, now).await.unwrap().unwrap().data,
            r#"{"a":1}"#
        );
        assert_eq!(
            store
                .update(key, r#"{"a":1}"#, &record(r#"{"a":2}"#), now)
                .await
                .unwrap(),
            Updated::Stored
        );
    }
}

#[test]
fn a_dropped_cluster_stops_its_servers() {
    let cluster = support::redis_cluster::RedisCluster::start();
    let ports = cluster.ports().to_vec();
    drop(cluster);
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a node still listens on {port}"
        );
    }
}
