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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_are_held_by_their_user() {
    cloakroom::testing::index_entries_are_held_by_their_user(&*store().await).await;
}

fn record(data: &str) -> Record {
    Record {
        data: data.to_owned().into(),
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
                .update(key, br#"{"a":1}"#, &record(r#"{"a":2}"#), now)
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

/// The user index never outlives its sessions on a cluster: when a session's TTL ends, its
/// entry goes with it, and the user's set goes when its last session does, with no request
/// and no `clearsessions` (the set and entries share the user's slot; the sessions do not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_take_their_index_entries_and_the_user_set_along() {
    use fred::interfaces::KeysInterface as _;
    let store = store().await;
    let sessions = cloakroom::Sessions::from_backend(
        cloakroom::Backend::indexed(store.clone()),
        cloakroom::Settings::default(),
    )
    .unwrap();
    let user = support::unique("user");
    let mut cookies = Vec::new();
    for ttl in [1, 2] {
        let lazy = sessions.start(None);
        let s = lazy.load().await.unwrap();
        s.login_as(&user, "django.contrib.auth.backends.ModelBackend", "h")
            .unwrap();
        s.set_expiry(cloakroom::Expiry::seconds(ttl)).unwrap();
        match lazy.commit(200).await.unwrap().cookie {
            cloakroom::CookieAction::Set { value, .. } => cookies.push(value),
            other => panic!("no cookie: {other:?}"),
        }
    }
    // A plain client, as `redis-cli -c` would look.
    let cluster = tokio::task::spawn_blocking(support::redis_cluster::shared)
        .await
        .unwrap();
    let node = format!("redis-cluster://127.0.0.1:{}", cluster.ports()[0]);
    let client = support::redis::raw_at(&node).await;
    let exists = |key: String| {
        let client = client.clone();
        async move { client.exists::<i64, _>(key).await.unwrap() == 1 }
    };
    let set = store.user_set_key(&user);
    let entries: Vec<String> = cookies
        .iter()
        .map(|c| store.user_entry_key(&user, c))
        .collect();
    assert!(exists(set.clone()).await && exists(entries[0].clone()).await);
    assert_eq!(sessions.sessions_of(&user).await.unwrap().len(), 2);

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(
        !exists(entries[0].clone()).await,
        "an expired session's entry stayed"
    );
    assert!(exists(entries[1].clone()).await && exists(set.clone()).await);
    assert_eq!(sessions.sessions_of(&user).await.unwrap().len(), 1);

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(!exists(entries[1].clone()).await, "the last entry stayed");
    assert!(
        !exists(set).await,
        "the user's set outlived all their sessions"
    );
}

// A rolling deploy leaves values written before the header beside the new ones, on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_written_before_the_header_are_read_updated_and_touched() {
    let cluster = tokio::task::spawn_blocking(support::redis_cluster::shared)
        .await
        .unwrap();
    let raw =
        support::redis::raw_at(&format!("redis-cluster://127.0.0.1:{}", cluster.ports()[0])).await;
    let store = store().await;
    for _ in 0..3 {
        // Fresh keys each time: slots on more than one node.
        support::redis::values_written_before_the_header_work(&store, &raw).await;
    }
}
