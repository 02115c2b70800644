//! The Redis engine's client-side cache (`RedisStore::start_client_cache`) on the
//! machine's Redis: the whole store contract with the cache on, and what the cache itself must
//! guarantee: another client's write is seen once its invalidation arrives, a reconnection
//! empties the cache, expiry is respected, and the compare-and-swap still refuses stale data.
#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use cloakroom::{Created, Record, SessionStore, Updated};
use fred::interfaces::KeysInterface;
use time::OffsetDateTime;

cloakroom::conformance_tests!(support::redis::scoped_cached());

fn record(data: &str, ttl: Duration) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at: OffsetDateTime::now_utc() + ttl,
    }
}

/// Waits (up to 5 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Writes `value` under `redis_key` through another client (as another app server or Django
/// would), with a ten-minute TTL.
async fn write_elsewhere(other: &fred::clients::Client, redis_key: String, value: &str) {
    let _: () = other
        .set(
            redis_key,
            value,
            Some(fred::types::Expiration::EX(600)),
            None,
            false,
        )
        .await
        .unwrap();
}

/// Runs `CLIENT <args>` on `store`'s connection.
async fn client_command(store: &cloakroom::engines::redis::RedisStore, args: &[&str]) -> String {
    let command = [&["CLIENT"], args].concat();
    store.command(&command).await.unwrap().unwrap_or_default()
}

async fn data_of(store: &impl SessionStore, key: &str) -> Option<String> {
    store
        .load(key, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_are_kept_and_another_clients_write_is_seen() {
    let scoped = support::redis::scoped_cached().await;
    let store = scoped.inner();
    let key = cloakroom::key::generate().unwrap();
    let rec = record("one", Duration::from_secs(600));
    assert_eq!(store.create(&key, &rec).await.unwrap(), Created::Stored);
    assert_eq!(data_of(store, &key).await.as_deref(), Some("one"));
    assert_eq!(store.client_cache_len(), 1, "the session is kept");

    // Another process (here a plain client, as Django would be) overwrites the value.
    let other = support::redis::raw().await;
    write_elsewhere(&other, store.redis_key(&key), "two").await;
    until("the invalidation arrives", || store.client_cache_len() == 0).await;
    assert_eq!(data_of(store, &key).await.as_deref(), Some("two"));

    // And a delete by another client.
    let _: i64 = other.del(store.redis_key(&key)).await.unwrap();
    until("the delete's invalidation arrives", || {
        store.client_cache_len() == 0
    })
    .await;
    assert_eq!(data_of(store, &key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_never_wins_the_compare_and_swap() {
    let scoped = support::redis::scoped_cached().await;
    let store = scoped.inner();
    let key = cloakroom::key::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    store
        .create(&key, &record("one", Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(data_of(store, &key).await.as_deref(), Some("one"));
    // Another app server saves first; this one still holds "one", whatever the cache says.
    let other = support::redis::connect().await.with_key_prefix(
        store
            .redis_key("")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned(),
    );
    assert_eq!(
        other
            .update(&key, b"one", &record("two", Duration::from_secs(600)), now)
            .await
            .unwrap(),
        Updated::Stored
    );
    match store
        .update(
            &key,
            b"one",
            &record("three", Duration::from_secs(600)),
            now,
        )
        .await
        .unwrap()
    {
        Updated::Conflict(current) => assert_eq!(current.data, "two"),
        other => panic!("a stale save went through: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_empties_the_cache() {
    let scoped = support::redis::scoped_cached().await;
    let store = scoped.inner();
    let key = cloakroom::key::generate().unwrap();
    store
        .create(&key, &record("one", Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(data_of(store, &key).await.as_deref(), Some("one"));
    assert_eq!(store.client_cache_len(), 1);

    // Cut the store's connection, then write while it is down: that invalidation is lost.
    let id = client_command(store, &["ID"]).await;
    let other = support::redis::connect().await;
    client_command(&other, &["KILL", "ID", &id]).await;
    write_elsewhere(&support::redis::raw().await, store.redis_key(&key), "two").await;
    // The client reconnects by itself; the cache comes back on, empty, with tracking on.
    until("the reconnection empties the cache", || {
        store.client_cache_len() == 0
    })
    .await;
    until("tracking is on again", || store.client_cache_on()).await;
    assert_eq!(data_of(store, &key).await.as_deref(), Some("two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_sessions_expire_on_time() {
    let scoped = support::redis::scoped_cached().await;
    let store = scoped.inner();
    let key = cloakroom::key::generate().unwrap();
    store
        .create(&key, &record("short", Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(data_of(store, &key).await.as_deref(), Some("short"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        data_of(store, &key).await,
        None,
        "an expired session was answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_sessions_are_read_again_after_the_ttl() {
    // What tracking cannot report (a FLUSHDB, whose notice the client library drops) is seen
    // within the TTL. Simulated by a write the store cannot be told about: tracking is turned
    // off on its connection from outside, behind its back.
    let scoped = support::redis::scoped_cached_for(Duration::from_millis(200)).await;
    let store = scoped.inner();
    let key = cloakroom::key::generate().unwrap();
    store
        .create(&key, &record("one", Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(data_of(store, &key).await.as_deref(), Some("one"));
    client_command(store, &["TRACKING", "OFF"]).await;
    let other = support::redis::raw().await;
    write_elsewhere(&other, store.redis_key(&key), "two").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(data_of(store, &key).await.as_deref(), Some("two"));
}

#[tokio::test]
async fn a_cluster_url_is_refused() {
    use cloakroom::engines::redis::{RedisOptions, RedisStore};
    let options = RedisOptions::default().with_client_cache(Duration::from_secs(1), 10);
    let err = RedisStore::connect_with("redis-cluster://127.0.0.1:1,127.0.0.1:2", &options)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("redis_client_cache_ms")
            || format!("{err:?}").contains("redis_client_cache_ms"),
        "{err:?}"
    );
}
