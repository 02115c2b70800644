//! The store contract on the machine's Redis (`CLOAKROOM_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379/0`), plus what is Redis's own: Django's key layout, the server's
//! TTL, keys of another type, and an unreachable server.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use cloakroom::engines::redis::RedisStore;
use cloakroom::{Created, Record, SessionStore, StoreError, Updated};
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use time::OffsetDateTime;

// Without `clear`: the server's TTL expires keys on the wall clock, so `clear_expired` has
// nothing to do and is a no-op (pinned below), while the suite's clause moves a test clock.
cloakroom::conformance_tests!(support::redis::scoped());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_entries_are_held_by_their_user() {
    cloakroom::testing::index_entries_are_held_by_their_user(
        support::redis::scoped().await.inner(),
    )
    .await;
}

fn record(data: &str, ttl: Duration) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at: OffsetDateTime::now_utc() + ttl,
    }
}

fn fresh_key() -> String {
    cloakroom::key::generate().unwrap()
}

#[tokio::test]
async fn keys_are_djangos_cache_keys() {
    let store = support::redis::connect().await;
    let key = fresh_key();
    assert_eq!(
        store.redis_key(&key),
        format!(":1:django.contrib.sessions.cache{key}")
    );
    let custom = store.clone().with_key_prefix("myapp").with_version(3);
    assert_eq!(
        custom.redis_key(&key),
        format!("myapp:3:django.contrib.sessions.cache{key}")
    );

    // With Django's format (binary values) what create writes sits under exactly that key,
    // as the data itself, with a TTL: what Django's cache engine reads.
    let django = store.clone().with_binary_values(true);
    let rec = record(r#"{"a":1}"#, Duration::from_secs(600));
    assert_eq!(django.create(&key, &rec).await.unwrap(), Created::Stored);
    let client = support::redis::raw().await;
    let raw: Option<Vec<u8>> = client.get(store.redis_key(&key)).await.unwrap();
    let ttl: i64 = client.pttl(store.redis_key(&key)).await.unwrap();
    assert_eq!(raw.as_deref(), Some(&br#"{"a":1}"#[..]));
    assert!((590_000..=600_000).contains(&ttl), "TTL {ttl} ms");
    // Its update and touch leave it so.
    let now = OffsetDateTime::now_utc();
    let next = record(r#"{"a":2}"#, Duration::from_secs(700));
    let updated = django.update(&key, br#"{"a":1}"#, &next, now).await;
    assert_eq!(updated.unwrap(), Updated::Stored);
    let touched = record(r#"{"a":2}"#, Duration::from_secs(800));
    assert_eq!(
        django.touch(&key, &touched, now).await.unwrap(),
        Updated::Stored
    );
    let raw: Option<Vec<u8>> = client.get(store.redis_key(&key)).await.unwrap();
    let ttl: i64 = client.pttl(store.redis_key(&key)).await.unwrap();
    django.delete(&key).await.unwrap();
    assert_eq!(raw.as_deref(), Some(&br#"{"a":2}"#[..]));
    assert!((790_000..=800_000).contains(&ttl), "TTL {ttl} ms");

    // Our own format: the 15-byte header (0xFF, the expiry, a digest), then the data; the
    // key's TTL is set too, so Redis drops it when it ends.
    assert_eq!(store.create(&key, &rec).await.unwrap(), Created::Stored);
    let raw: Option<Vec<u8>> = client.get(store.redis_key(&key)).await.unwrap();
    let ttl: i64 = client.pttl(store.redis_key(&key)).await.unwrap();
    store.delete(&key).await.unwrap();
    let raw = raw.expect("written");
    assert_eq!(raw[0], 0xFF, "{raw:?}");
    assert_eq!(&raw[15..], br#"{"a":1}"#);
    assert!((590_000..=600_000).contains(&ttl), "TTL {ttl} ms");
}

// A rolling deploy leaves values written before the header beside the new ones.
#[tokio::test]
async fn values_written_before_the_header_are_read_updated_and_touched() {
    let scoped = support::redis::scoped().await;
    support::redis::values_written_before_the_header_work(
        scoped.inner(),
        &support::redis::raw().await,
    )
    .await;
}

/// `redis_legacy_values`, the first step of a rolling deploy: a store so set writes values
/// without the header (what servers of an earlier release read), moves only the TTL on a
/// touch, still reads and updates values with the header, and a store without it reads what
/// it wrote.
#[tokio::test]
async fn legacy_values_keep_the_old_shape_for_older_servers() {
    let prefix = support::unique("cloakroom-test");
    let legacy = support::redis::scope(
        support::redis::connect().await.with_legacy_values(true),
        prefix.clone(),
    );
    let framed = support::redis::scope(support::redis::connect().await, prefix);
    let (legacy, framed) = (legacy.inner(), framed.inner());
    let raw = support::redis::raw().await;
    let stored = |key: String| {
        let raw = raw.clone();
        async move {
            let value: Vec<u8> = raw.get(&key).await.unwrap();
            let pttl: i64 = raw.pttl(&key).await.unwrap();
            (value, pttl)
        }
    };
    let now = OffsetDateTime::now_utc();
    let minutes = |m: u64| Duration::from_secs(60 * m);

    // Create, update and touch by the legacy store: the bare data, the expiry in the TTL.
    let key = fresh_key();
    let created = record(r#"{"n":1}"#, minutes(10));
    assert_eq!(
        legacy.create(&key, &created).await.unwrap(),
        Created::Stored
    );
    assert_eq!(stored(legacy.redis_key(&key)).await.0, br#"{"n":1}"#);
    let saved = record(r#"{"n":2}"#, minutes(20));
    let done = legacy
        .update(&key, br#"{"n":1}"#, &saved, now)
        .await
        .unwrap();
    assert_eq!(done, Updated::Stored);
    let stale = legacy
        .update(&key, br#"{"n":1}"#, &saved, now)
        .await
        .unwrap();
    assert!(matches!(stale, Updated::Conflict(_)), "{stale:?}");
    let touched = record(r#"{"n":2}"#, minutes(30));
    assert_eq!(
        legacy.touch(&key, &touched, now).await.unwrap(),
        Updated::Stored
    );
    let (value, pttl) = stored(legacy.redis_key(&key)).await;
    assert_eq!(value, br#"{"n":2}"#, "the legacy touch wrote the header");
    assert!((1_790_000..=1_800_000).contains(&pttl), "TTL {pttl} ms");
    // What an upgraded server without the setting reads of it.
    let loaded = framed.load(&key, now).await.unwrap().expect("read");
    assert_eq!(loaded.data, r#"{"n":2}"#);
    assert!((loaded.expires_at - touched.expires_at).abs() < Duration::from_secs(2));

    // A value with the header (written by a server without the setting): the legacy store
    // reads it, touches it keeping its shape, and its save writes the old shape back.
    let key = fresh_key();
    let created = record(r#"{"m":1}"#, minutes(10));
    assert_eq!(
        framed.create(&key, &created).await.unwrap(),
        Created::Stored
    );
    assert_eq!(stored(framed.redis_key(&key)).await.0[0], 0xFF);
    let loaded = legacy.load(&key, now).await.unwrap().expect("read");
    assert_eq!(loaded.data, r#"{"m":1}"#);
    let touched = record(r#"{"m":1}"#, minutes(40));
    assert_eq!(
        legacy.touch(&key, &touched, now).await.unwrap(),
        Updated::Stored
    );
    let reloaded = framed.load(&key, now).await.unwrap().expect("read");
    assert!((reloaded.expires_at - touched.expires_at).abs() < Duration::from_secs(2));
    let saved = record(r#"{"m":2}"#, minutes(20));
    let done = legacy
        .update(&key, &loaded.data, &saved, now)
        .await
        .unwrap();
    assert_eq!(done, Updated::Stored);
    assert_eq!(stored(legacy.redis_key(&key)).await.0, br#"{"m":2}"#);
}

#[tokio::test]
async fn clear_expired_is_a_no_op() {
    use cloakroom::ClearExpired;
    let scoped = support::redis::scoped().await;
    let store = scoped.inner();
    let key = fresh_key();
    store
        .create(&key, &record("{}", Duration::from_secs(60)))
        .await
        .unwrap();
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    assert_eq!(store.clear_expired(later).await.unwrap(), 0);
    assert!(
        store.exists(&key).await.unwrap(),
        "the server's TTL decides, not clear_expired"
    );
}

#[tokio::test]
async fn the_server_ttl_expires_sessions() {
    let scoped = support::redis::scoped().await;
    let store = scoped.inner();
    let key = fresh_key();
    let rec = record("{}", Duration::from_millis(300));
    store.create(&key, &rec).await.unwrap();
    assert!(store.exists(&key).await.unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!store.exists(&key).await.unwrap(), "the server kept it");
}

#[tokio::test]
async fn records_already_expired_are_not_written() {
    let scoped = support::redis::scoped().await;
    let store = scoped.inner();
    let key = fresh_key();
    let past = Record {
        data: "{}".into(),
        expires_at: OffsetDateTime::now_utc() - Duration::from_secs(1),
    };
    assert_eq!(store.create(&key, &past).await.unwrap(), Created::Stored);
    assert!(!store.exists(&key).await.unwrap());

    // An update to an already-past expiry deletes the record.
    let live = record("{}", Duration::from_secs(60));
    store.create(&key, &live).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store.update(&key, b"{}", &past, now).await.unwrap(),
        Updated::Stored
    );
    assert!(!store.exists(&key).await.unwrap());
}

#[tokio::test]
async fn a_key_of_another_type_is_absent_not_a_crash() {
    let scoped = support::redis::scoped().await;
    let store = scoped.inner();
    let key = fresh_key();
    let lpush = CustomCommand::new_static("LPUSH", ClusterHash::FirstKey, false);
    let _: Value = support::redis::raw()
        .await
        .custom(lpush, vec![store.redis_key(&key), "x".to_owned()])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.load(&key, now).await.unwrap(), None);
    let rec = record("{}", Duration::from_secs(60));
    assert_eq!(
        store.update(&key, b"[]", &rec, now).await.unwrap(),
        Updated::Missing
    );
    assert_eq!(store.create(&key, &rec).await.unwrap(), Created::Taken);
    assert!(store.exists(&key).await.unwrap());
    store.delete(&key).await.unwrap();
    assert!(!store.exists(&key).await.unwrap());
}

#[tokio::test]
async fn a_value_that_is_not_text_is_absent() {
    let scoped = support::redis::scoped().await;
    let store = scoped.inner();
    let key = fresh_key();
    let _: Value = support::redis::raw()
        .await
        .set(
            store.redis_key(&key),
            Value::Bytes(vec![0x80, 0x05, 0x95, 0xff].into()),
            None,
            None,
            false,
        )
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.load(&key, now).await.unwrap(), None);
    let rec = record("{}", Duration::from_secs(60));
    assert_eq!(
        store.update(&key, b"{}", &rec, now).await.unwrap(),
        Updated::Missing
    );
}

#[tokio::test]
async fn a_key_without_ttl_loads_as_long_lived() {
    let scoped = support::redis::scoped().await;
    let store = scoped.inner();
    let key = fresh_key();
    let _: Value = support::redis::raw()
        .await
        .set(store.redis_key(&key), "{}", None, None, false)
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let loaded = store.load(&key, now).await.unwrap().expect("live");
    assert!(loaded.expires_at > now + Duration::from_secs(86_400 * 365 * 100));
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error_naming_it() {
    let url = format!("redis://127.0.0.1:{}", support::closed_port());
    let err = RedisStore::connect(&url).await.unwrap_err();
    assert!(
        matches!(err, cloakroom::OpenError::Store(StoreError::Backend { .. })),
        "{err:?}"
    );
    let message = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(message.contains(&url), "{message}");
}

#[tokio::test]
async fn a_lost_server_fails_fast_when_asked_to() {
    let url = format!("redis://127.0.0.1:{}", support::closed_port());
    let store = RedisStore::connect_lazy(&url)
        .await
        .unwrap()
        .with_fail_fast(true);
    let started = std::time::Instant::now();
    let err = store
        .load(&fresh_key(), OffsetDateTime::now_utc())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Without fail-fast a command waits for the reconnection, up to the command timeout.
    let waiting = RedisStore::connect_lazy(&url)
        .await
        .unwrap()
        .with_command_timeout(Duration::from_millis(200));
    let err = waiting
        .load(&fresh_key(), OffsetDateTime::now_utc())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn bad_urls_name_the_setting() {
    for url in [
        "memcached://127.0.0.1:11211",
        "redis-cluster://",
        "nonsense",
    ] {
        // A configuration problem, not an outage: its own variant, naming the setting.
        let err = RedisStore::connect(url).await.unwrap_err();
        assert!(
            matches!(err, cloakroom::OpenError::Config(_)) && err.to_string().contains("cache_url"),
            "{url}: {err:?}"
        );
    }
}

#[tokio::test]
async fn open_builds_the_redis_cache_engine() {
    use cloakroom::{engines, Engine, Settings};
    let settings = Settings::default()
        .with_engine(Engine::Cache)
        .with_cache_url(Some(support::redis::url()));
    let opened = engines::open(&settings)
        .await
        .unwrap()
        .into_server()
        .unwrap();
    assert_eq!(opened.store.engine(), "redis");
    let clear = opened.clear.expect("clear_expired answers");
    assert_eq!(
        clear
            .clear_expired(OffsetDateTime::now_utc())
            .await
            .unwrap(),
        0
    );

    let bad = settings.with_cache_url(Some("memcached://127.0.0.1:1".to_owned()));
    let err = engines::open(&bad).await.unwrap_err();
    assert!(matches!(err, engines::OpenError::Config(_)), "{err:?}");
}
