//! The store contract on `cached_db`: SQLite behind the in-process cache, behind the machine's
//! Redis, and behind a Redis that is down; plus the cache never serving data older than the
//! database after a conflict.
#![cfg(all(feature = "sqlite", feature = "memory"))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use cloakroom::engines::cached_db::CachedDbStore;
use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::{Record, SessionStore, Updated};
use time::OffsetDateTime;

/// A SQLite database of its own, migrated.
async fn sqlite() -> Arc<SqliteStore> {
    let dir = std::env::temp_dir().join(support::unique("cloakroom-cached-db"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/sessions.sqlite3", dir.display());
    let db = SqliteStore::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    Arc::new(db)
}

async fn cached_db(cache: Arc<dyn SessionStore>) -> (Arc<CachedDbStore>, Arc<SqliteStore>) {
    let db = sqlite().await;
    let store = CachedDbStore::new(db.clone(), cache)
        .with_clear_expired(db.clone())
        .with_user_index(db.clone());
    (Arc::new(store), db)
}

fn record(data: &str) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(600),
    }
}

/// A stale copy in the cache (the database was changed behind this store's back, as by
/// another app server whose cache step failed) is never served after the conflict it causes.
async fn conflict_drops_the_stale_copy(cache: Arc<dyn SessionStore>) {
    let (store, db) = cached_db(cache).await;
    let key = cloakroom::key::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    store.create(&key, &record("v1")).await.unwrap();
    assert_eq!(store.load(&key, now).await.unwrap().unwrap().data, "v1");
    assert_eq!(
        db.update(&key, b"v1", &record("v2"), now).await.unwrap(),
        Updated::Stored
    );
    // The cache still has v1, so a read serves it; the write based on it then conflicts.
    assert_eq!(
        store.load(&key, now).await.unwrap().unwrap().data,
        "v1",
        "reads are not served from the cache"
    );
    match store.update(&key, b"v1", &record("v3"), now).await.unwrap() {
        Updated::Conflict(current) => assert_eq!(current.data, "v2"),
        other => panic!("stale write answered {other:?}"),
    }
    assert_eq!(
        store.load(&key, now).await.unwrap().unwrap().data,
        "v2",
        "the cache served data older than the database"
    );
    assert_eq!(
        store.update(&key, b"v2", &record("v4"), now).await.unwrap(),
        Updated::Stored
    );
    assert_eq!(store.load(&key, now).await.unwrap().unwrap().data, "v4");
    assert_eq!(db.load(&key, now).await.unwrap().unwrap().data, "v4");
}

/// A session deleted behind the store's back stays deleted once a write finds it missing.
async fn missing_drops_the_copy(cache: Arc<dyn SessionStore>) {
    let (store, db) = cached_db(cache).await;
    let key = cloakroom::key::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    store.create(&key, &record("v1")).await.unwrap();
    db.delete(&key).await.unwrap();
    assert_eq!(
        store.update(&key, b"v1", &record("v2"), now).await.unwrap(),
        Updated::Missing
    );
    assert_eq!(store.load(&key, now).await.unwrap(), None);
}

mod memory_cache {
    use super::*;
    use cloakroom::engines::memory::MemoryStore;

    fn cache() -> Arc<dyn SessionStore> {
        Arc::new(MemoryStore::new(10_000))
    }

    async fn store() -> Arc<CachedDbStore> {
        cached_db(cache()).await.0
    }

    cloakroom::conformance_tests!(store(), clear);

    #[tokio::test]
    async fn conflict_never_leaves_a_stale_copy() {
        conflict_drops_the_stale_copy(cache()).await;
    }

    #[tokio::test]
    async fn a_missing_session_is_not_served_from_the_cache() {
        missing_drops_the_copy(cache()).await;
    }

    #[tokio::test]
    async fn reads_are_served_from_the_cache() {
        let cache = Arc::new(MemoryStore::new(100));
        let (store, _db) = cached_db(cache.clone()).await;
        let key = cloakroom::key::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        store.create(&key, &record("v1")).await.unwrap();
        assert_eq!(cache.load(&key, now).await.unwrap().unwrap().data, "v1");
        // A miss refills the cache from the database.
        cache.delete(&key).await.unwrap();
        assert_eq!(store.load(&key, now).await.unwrap().unwrap().data, "v1");
        assert_eq!(cache.load(&key, now).await.unwrap().unwrap().data, "v1");
    }
}

#[cfg(feature = "redis")]
mod redis_cache {
    use super::*;
    use cloakroom::engines::redis::CACHED_DB_SESSION_PREFIX;
    use support::redis::{scope, Scoped};

    async fn cache() -> Arc<Scoped> {
        let redis = support::redis::connect()
            .await
            .with_session_prefix(CACHED_DB_SESSION_PREFIX);
        Arc::new(scope(redis, support::unique("cloakroom-test")))
    }

    async fn store() -> Arc<CachedDbStore> {
        cached_db(cache().await).await.0
    }

    cloakroom::conformance_tests!(store(), clear);

    #[tokio::test]
    async fn conflict_never_leaves_a_stale_copy() {
        conflict_drops_the_stale_copy(cache().await).await;
    }

    #[tokio::test]
    async fn a_missing_session_is_not_served_from_the_cache() {
        missing_drops_the_copy(cache().await).await;
    }

    #[tokio::test]
    async fn copies_use_djangos_cached_db_keys() {
        let cache = cache().await;
        let (store, _) = cached_db(cache.clone()).await;
        let key = cloakroom::key::generate().unwrap();
        assert!(cache
            .inner()
            .redis_key(&key)
            .ends_with(&format!(":1:django.contrib.sessions.cached_db{key}")));
        store.create(&key, &record("v1")).await.unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(cache.load(&key, now).await.unwrap().unwrap().data, "v1");
    }
}

/// The cache server is down (a closed port): reads and creates answer from the database at
/// once; an update or a delete, which cannot confirm that the copy is gone, is refused before
/// the database is written, so no copy can outlive it.
#[cfg(feature = "redis")]
mod unreachable_cache {
    use super::*;
    use cloakroom::engines::redis::RedisStore;
    use cloakroom::StoreError;

    async fn cache() -> Arc<RedisStore> {
        let url = format!("redis://127.0.0.1:{}", support::closed_port());
        Arc::new(
            RedisStore::connect_lazy(&url)
                .await
                .unwrap()
                .with_fail_fast(true),
        )
    }

    #[tokio::test]
    async fn reads_answer_from_the_database_and_writes_that_would_leave_a_copy_are_refused() {
        let (store, db) = cached_db(cache().await).await;
        let key = cloakroom::key::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let started = std::time::Instant::now();
        store.create(&key, &record("v1")).await.unwrap();
        assert_eq!(store.load(&key, now).await.unwrap().unwrap().data, "v1");
        let refused = store.update(&key, b"v1", &record("v2"), now).await;
        assert!(
            matches!(refused, Err(StoreError::Backend { .. })),
            "{refused:?}"
        );
        let message = refused.unwrap_err().to_string();
        assert!(message.contains("cache_url"), "{message}");
        assert_eq!(
            db.load(&key, now).await.unwrap().unwrap().data,
            "v1",
            "the database was not written"
        );
        assert!(store.delete(&key).await.is_err());
        assert!(
            db.exists(&key).await.unwrap(),
            "the session was not deleted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waited for the cache: {:?}",
            started.elapsed()
        );
    }
}

mod open {
    use cloakroom::{engines, Engine, Settings};

    #[tokio::test]
    async fn cached_db_opens_sqlite_with_an_in_process_cache() {
        let dir = std::env::temp_dir().join(super::support::unique("cloakroom-open"));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = Settings::default()
            .with_engine(Engine::CachedDb)
            .with_database_url(Some(format!("sqlite://{}/s.sqlite3", dir.display())));
        let opened = engines::open(&settings)
            .await
            .unwrap()
            .into_server()
            .unwrap();
        assert_eq!(opened.store.engine(), "cached_db");
        opened
            .migrate
            .expect("the database migrates")
            .migrate()
            .await
            .unwrap();
        let clear = opened.clear.expect("clear_expired goes to the database");
        clear
            .clear_expired(time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn cached_db_opens_even_when_its_cache_is_down() {
        let dir = std::env::temp_dir().join(super::support::unique("cloakroom-open"));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = Settings::default()
            .with_engine(Engine::CachedDb)
            .with_database_url(Some(format!("sqlite://{}/s.sqlite3", dir.display())))
            .with_cache_url(Some(format!(
                "redis://127.0.0.1:{}",
                super::support::closed_port()
            )));
        let opened = engines::open(&settings)
            .await
            .unwrap()
            .into_server()
            .unwrap();
        opened.migrate.unwrap().migrate().await.unwrap();
        let store = opened.store;
        let key = cloakroom::key::generate().unwrap();
        let now = time::OffsetDateTime::now_utc();
        store.create(&key, &super::record("v1")).await.unwrap();
        assert_eq!(store.load(&key, now).await.unwrap().unwrap().data, "v1");
    }
}
