//! The `Scan` ability on every engine that has it, against the real servers: every live
//! session comes back once across small batches, with its record; expired ones never do; and
//! `count` tells live from expired.
#![cfg(all(
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "file",
    feature = "memory"
))]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use cloakroom::store::{Counts, Scan};
use cloakroom::{Created, Record, SessionStore};
use time::OffsetDateTime;

/// A well-formed session key (32 of `[a-z0-9]`) unique to this run.
fn key(i: usize, run: &str) -> String {
    let base = format!("{run}x{i:04}");
    format!("{base:a<32}")
}

fn record(i: usize) -> Record {
    Record {
        data: format!(r#"{{"n":{i}}}"#).into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(600 + i as u64),
    }
}

/// Stores `n` live sessions, walks the store in batches of 3, and checks that each comes back
/// exactly once with its record. Other sessions (a shared server) may show up too.
async fn walk(store: &(impl SessionStore + Scan), n: usize) -> HashMap<String, Record> {
    let run = support::unique("s").replace('-', "");
    let mut ours = HashMap::new();
    for i in 0..n {
        let k = key(i, &run);
        let r = record(i);
        assert_eq!(store.create(&k, &r).await.unwrap(), Created::Stored);
        ours.insert(k, r);
    }
    let now = OffsetDateTime::now_utc();
    let mut seen: HashMap<String, Record> = HashMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let batch = store.scan(cursor.as_deref(), 3, now).await.unwrap();
        for (k, r) in batch.sessions {
            if ours.contains_key(&k) {
                assert!(seen.insert(k.clone(), r).is_none(), "{k} came back twice");
            }
        }
        match batch.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), n, "every session came back once");
    for (k, r) in &ours {
        let back = &seen[k];
        assert_eq!(back.data, r.data);
        // Within a millisecond: some engines keep milliseconds only.
        let off = (back.expires_at - r.expires_at).abs();
        assert!(off < time::Duration::seconds(1), "{k}: {off}");
    }
    ours
}

#[tokio::test]
async fn sqlite_scans_and_counts() {
    let store = cloakroom::engines::sqlite::SqliteStore::connect("sqlite::memory:")
        .await
        .unwrap();
    store.migrate().await.unwrap();
    walk(&store, 8).await;
    let old = Record {
        data: "{}".into(),
        expires_at: OffsetDateTime::now_utc() - Duration::from_secs(60),
    };
    store
        .create("expiredexpiredexpiredexpired0001", &old)
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store.count(now).await.unwrap(),
        Counts {
            live: 8,
            expired: 1
        }
    );
    let all = store.scan(None, 100, now).await.unwrap();
    assert_eq!(all.sessions.len(), 8, "the expired one is not listed");
    assert!(all.next.is_none());
}

#[tokio::test]
async fn postgres_scans_and_counts() {
    let url = std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let store = cloakroom::engines::postgres::PostgresStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is not reachable: {e}"))
        .with_table(&support::unique("scan").replace('-', "_"))
        .unwrap();
    store.migrate().await.unwrap();
    walk(&store, 7).await;
    let old = Record {
        data: "{}".into(),
        expires_at: OffsetDateTime::now_utc() - Duration::from_secs(60),
    };
    store
        .create("expiredexpiredexpiredexpired0001", &old)
        .await
        .unwrap();
    assert_eq!(
        store.count(OffsetDateTime::now_utc()).await.unwrap(),
        Counts {
            live: 7,
            expired: 1
        }
    );
}

#[tokio::test]
async fn mysql_scans_and_counts() {
    let url = std::env::var("CLOAKROOM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let store = cloakroom::engines::mysql::MySqlStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("MariaDB at {url} is not reachable: {e}"))
        .with_table(&support::unique("scan").replace('-', "_"))
        .unwrap();
    store.migrate().await.unwrap();
    walk(&store, 7).await;
    let old = Record {
        data: "{}".into(),
        expires_at: OffsetDateTime::now_utc() - Duration::from_secs(60),
    };
    store
        .create("expiredexpiredexpiredexpired0001", &old)
        .await
        .unwrap();
    assert_eq!(
        store.count(OffsetDateTime::now_utc()).await.unwrap(),
        Counts {
            live: 7,
            expired: 1
        }
    );
}

#[tokio::test]
async fn file_scans_and_counts() {
    let dir = std::env::temp_dir().join(support::unique("cloakroom-scan"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = cloakroom::engines::file::FileStore::new(&dir, "sessionid", 1_209_600).unwrap();
    walk(&store, 7).await;
    let old = Record {
        data: "{}".into(),
        expires_at: OffsetDateTime::now_utc() - Duration::from_secs(60),
    };
    store
        .create("expiredexpiredexpiredexpired0001", &old)
        .await
        .unwrap();
    assert_eq!(
        store.count(OffsetDateTime::now_utc()).await.unwrap(),
        Counts {
            live: 7,
            expired: 1
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn memory_scans_and_counts() {
    let store = cloakroom::engines::memory::MemoryStore::new(1_000);
    walk(&store, 7).await;
    assert_eq!(
        store.count(OffsetDateTime::now_utc()).await.unwrap().live,
        7
    );
}

#[tokio::test]
async fn redis_scans_only_its_prefix() {
    let prefix = support::unique("scan");
    let store = support::redis::connect()
        .await
        .with_key_prefix(prefix.clone());
    walk(&store, 7).await;
    // The prefix is this test's own: exactly its sessions.
    assert_eq!(
        store.count(OffsetDateTime::now_utc()).await.unwrap(),
        Counts {
            live: 7,
            expired: 0
        }
    );
    let other = support::redis::connect()
        .await
        .with_key_prefix(support::unique("scan-other"));
    assert_eq!(
        other.count(OffsetDateTime::now_utc()).await.unwrap().live,
        0
    );
    support::redis::delete_prefixed(&support::redis::url(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_scans_every_master() {
    let cluster = tokio::task::spawn_blocking(support::redis_cluster::shared)
        .await
        .unwrap();
    let store = cloakroom::engines::redis::RedisStore::connect(&cluster.url())
        .await
        .unwrap()
        .with_key_prefix(support::unique("scan"));
    // Enough keys that every master holds some.
    walk(&store, 30).await;
    assert_eq!(
        store.count(OffsetDateTime::now_utc()).await.unwrap().live,
        30
    );
}
