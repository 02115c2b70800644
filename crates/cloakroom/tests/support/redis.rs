//! The machine's Redis for single-server tests: each store gets a key prefix of its own, and its
//! keys are deleted when the store is dropped, so test runs never see or leave each other's keys.

use std::sync::Arc;

use cloakroom::decorate::{Decorated, Decorator};
use cloakroom::engines::redis::{RedisOptions, RedisStore};
use fred::interfaces::{ClientLike, KeysInterface};
use futures_util::StreamExt;

/// The Redis the single-server tests use: `CLOAKROOM_TEST_REDIS_URL`, default the local one.
pub fn url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// Connects to the test Redis, failing loudly (never skipping) when it is not running.
pub async fn connect() -> RedisStore {
    let url = url();
    match RedisStore::connect(&url).await {
        Ok(store) => store,
        Err(e) => panic!(
            "the test Redis at {url} is unreachable ({e}); start it or set CLOAKROOM_TEST_REDIS_URL"
        ),
    }
}

/// A store on the test Redis whose keys all start with `prefix:` and are deleted on drop:
/// [`Scope`] around the Redis store (`inner()` is the store itself).
pub type Scoped = Decorated<Scope, RedisStore>;

/// Deletes the keys under its prefix when dropped, with the store it decorates.
pub struct Scope {
    prefix: String,
}

impl Decorator for Scope {}

/// `store` with the key prefix `prefix`, its keys deleted on drop.
pub fn scope(store: RedisStore, prefix: String) -> Scoped {
    Scope {
        prefix: prefix.clone(),
    }
    .around(store.with_key_prefix(prefix))
}

/// A store on the test Redis with a prefix of its own (Django's `cache` key layout).
pub async fn scoped() -> Arc<Scoped> {
    Arc::new(scope(connect().await, super::unique("cloakroom-test")))
}

/// As [`scoped`], with the client-side cache on (`ttl`, 10,000 sessions), tracking already on
/// for the store's own prefix when this returns.
pub async fn scoped_cached_for(ttl: std::time::Duration) -> Arc<Scoped> {
    let url = url();
    let options = RedisOptions::default().with_client_cache(ttl, 10_000);
    let unreachable = |e: &dyn std::fmt::Display| -> ! {
        panic!(
            "the test Redis at {url} is unreachable or refuses client tracking ({e}); start it \
             or set CLOAKROOM_TEST_REDIS_URL"
        )
    };
    let store = RedisStore::connect_with(&url, &options)
        .await
        .unwrap_or_else(|e| unreachable(&e));
    let scoped = scope(store, super::unique("cloakroom-test"));
    if let Err(e) = scoped.inner().start_client_cache().await {
        unreachable(&e);
    }
    assert!(
        scoped.inner().client_cache_on(),
        "client tracking did not come on for the new prefix"
    );
    Arc::new(scoped)
}

/// [`scoped_cached_for`] a minute.
pub async fn scoped_cached() -> Arc<Scoped> {
    scoped_cached_for(std::time::Duration::from_secs(60)).await
}

/// A plain client of the Redis at `url` (fred's URL format), for what a test does behind a
/// store's back, as Django or another app server would.
pub async fn raw_at(url: &str) -> fred::clients::Client {
    let client =
        fred::types::Builder::from_config(fred::types::config::Config::from_url(url).unwrap())
            .build()
            .unwrap();
    client.init().await.unwrap();
    client
}

/// [`raw_at`] the test Redis.
pub async fn raw() -> fred::clients::Client {
    raw_at(&url()).await
}

/// Values as cloakroom wrote them before the header (the bare data text, the expiry in the
/// key's TTL), written with `raw` behind the store's back: the store loads them (a second
/// command reads the TTL), merges on a conflict, and rewrites them with the header on an
/// update or a touch.
pub async fn values_written_before_the_header_work(
    store: &RedisStore,
    raw: &fred::clients::Client,
) {
    use std::time::Duration;

    use cloakroom::{Record, SessionStore, Updated};
    use fred::types::{Expiration, Value};
    use time::OffsetDateTime;

    let old_shape = |key: String, data: &'static str| async move {
        let _: Value = raw
            .set(key, data, Some(Expiration::PX(600_000)), None, false)
            .await
            .unwrap();
    };
    // Expiries to the millisecond, as the header keeps them.
    let record = |data: &str, ttl: Duration| {
        let at = OffsetDateTime::now_utc() + ttl;
        Record {
            data: data.to_owned().into(),
            expires_at: at
                .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
                .unwrap(),
        }
    };
    let near = |at: OffsetDateTime, ttl: Duration| {
        let off = (at - (OffsetDateTime::now_utc() + ttl)).abs();
        assert!(off < Duration::from_secs(5), "expiry {at}, {off} off");
    };
    let header_on = |key: String| async move {
        let value: Vec<u8> = raw.get(key).await.unwrap();
        assert_eq!(value.first(), Some(&0xFF), "no header: {value:?}");
        value[15..].to_vec()
    };
    let now = OffsetDateTime::now_utc();
    let minutes = |m: u64| Duration::from_secs(60 * m);

    // Loaded, with its TTL as the expiry.
    let key = cloakroom::key::generate().unwrap();
    old_shape(store.redis_key(&key), r#"{"n":1}"#).await;
    let loaded = store.load(&key, now).await.unwrap().expect("read");
    assert_eq!(loaded.data, r#"{"n":1}"#);
    near(loaded.expires_at, minutes(10));

    // A stale save is a conflict that hands back the record as it is.
    let stale = store
        .update(&key, br#"{"n":0}"#, &record(r#"{"n":5}"#, minutes(20)), now)
        .await
        .unwrap();
    let Updated::Conflict(current) = stale else {
        panic!("a stale save went through: {stale:?}");
    };
    assert_eq!(current.data, r#"{"n":1}"#);
    near(current.expires_at, minutes(10));

    // A save on what was loaded goes through and writes the header.
    let next = record(r#"{"n":2}"#, minutes(20));
    let saved = store.update(&key, &loaded.data, &next, now).await.unwrap();
    assert_eq!(saved, Updated::Stored);
    assert_eq!(header_on(store.redis_key(&key)).await, br#"{"n":2}"#);
    let loaded = store.load(&key, now).await.unwrap().expect("read");
    assert_eq!(loaded.data, r#"{"n":2}"#);
    near(loaded.expires_at, minutes(20));
    // … and the next stale save on the new shape is a conflict too.
    let stale = store
        .update(&key, br#"{"n":1}"#, &record(r#"{"n":9}"#, minutes(20)), now)
        .await
        .unwrap();
    assert_eq!(
        stale,
        Updated::Conflict(Record {
            data: r#"{"n":2}"#.into(),
            expires_at: next.expires_at,
        })
    );

    // A touch moves the expiry and writes the header; a stale touch is a conflict.
    let key = cloakroom::key::generate().unwrap();
    old_shape(store.redis_key(&key), r#"{"t":1}"#).await;
    let stale = store
        .touch(&key, &record(r#"{"t":0}"#, minutes(30)), now)
        .await
        .unwrap();
    assert!(
        matches!(stale, Updated::Conflict(ref r) if r.data == r#"{"t":1}"#),
        "{stale:?}"
    );
    let touched = record(r#"{"t":1}"#, minutes(30));
    let done = store.touch(&key, &touched, now).await.unwrap();
    assert_eq!(done, Updated::Stored);
    assert_eq!(header_on(store.redis_key(&key)).await, br#"{"t":1}"#);
    let pttl: i64 = raw.pttl(store.redis_key(&key)).await.unwrap();
    assert!((1_790_000..=1_800_000).contains(&pttl), "TTL {pttl} ms");
    let loaded = store.load(&key, now).await.unwrap().expect("read");
    assert_eq!(loaded, touched);
    // A touch on the new shape moves the expiry in the header too.
    let later = record(r#"{"t":1}"#, minutes(40));
    assert_eq!(
        store.touch(&key, &later, now).await.unwrap(),
        Updated::Stored
    );
    assert_eq!(store.load(&key, now).await.unwrap(), Some(later));
    store.delete(&key).await.unwrap();
}

/// Deletes every key under `prefix:` (SCAN, so the shared server is never blocked).
pub async fn delete_prefixed(url: &str, prefix: &str) {
    let client = raw_at(url).await;
    let mut keys = client.scan_buffered(format!("{prefix}:*"), Some(500), None);
    let mut found = Vec::new();
    while let Some(key) = keys.next().await {
        found.push(key.unwrap());
    }
    for key in found {
        let _: i64 = client.del(key).await.unwrap();
    }
    let _ = client.quit().await;
}

impl Drop for Scope {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside or outside a runtime: clean up on a thread
        // with a runtime of its own.
        let (url, prefix) = (url(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(delete_prefixed(&url, &prefix));
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("could not delete the test keys under `{}:`", self.prefix);
        }
    }
}
