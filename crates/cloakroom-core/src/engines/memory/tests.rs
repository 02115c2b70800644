//! The in-process cache's bounds: count, bytes, and expired sessions before live ones.

use time::OffsetDateTime;

use super::shard::cost;
use super::{lock, MemoryStore, SHARDS};
use crate::store::{Record, SessionStore as _};

fn record(data: &str, secs: i64) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(secs),
    }
}

#[tokio::test]
async fn stays_within_its_capacity_and_keeps_recent_sessions() {
    let store = MemoryStore::new(6400);
    let now = OffsetDateTime::now_utc();
    let recent = "recentkey0001";
    store.create(recent, &record("{}", 3600)).await.unwrap();
    for i in 0..20_000 {
        // Keep one session in use while many others arrive.
        if i % 100 == 0 {
            assert!(store.load(recent, now).await.unwrap().is_some(), "at {i}");
        }
        store
            .create(&format!("key{i:010}"), &record("{}", 3600))
            .await
            .unwrap();
    }
    assert!(store.len() <= 6400, "{} sessions kept", store.len());
    assert!(store.len() >= 5000, "evicted too eagerly: {}", store.len());
}

/// Issue 14: 400 anonymous 1.9 MB sessions took 790 MB under a count-only bound.
#[tokio::test]
async fn unbounded_session_size_cache_stays_under_its_byte_bound() {
    let max_bytes = 64 * 1024 * 1024;
    let store = MemoryStore::with_limits(1_000_000, max_bytes);
    let big = "x".repeat(60_000);
    let recent = "recentkey0001";
    store.create(recent, &record(&big, 3600)).await.unwrap();
    let now = OffsetDateTime::now_utc();
    for i in 0..2_000 {
        if i % 10 == 0 {
            assert!(store.load(recent, now).await.unwrap().is_some(), "at {i}");
        }
        store
            .create(&format!("key{i:010}"), &record(&big, 3600))
            .await
            .unwrap();
        // A session that grows through updates counts too.
        let key = format!("key{:010}", i / 2);
        if let Some(old) = store.load(&key, now).await.unwrap() {
            let grown = record(&format!("{big}{big}"), 3600);
            store.update(&key, &old.data, &grown, now).await.unwrap();
        }
    }
    let counted: usize = store
        .inner
        .shards
        .iter()
        .map(|s| {
            let shard = lock(s);
            shard.map.iter().map(|(k, e)| cost(k, e)).sum::<usize>()
        })
        .sum();
    assert_eq!(store.bytes(), counted as u64, "the byte count drifted");
    assert!(
        store.bytes() <= max_bytes,
        "{} bytes kept, bound {max_bytes}",
        store.bytes()
    );
    assert!(
        store.bytes() >= max_bytes / 4,
        "evicted too eagerly: {}",
        store.bytes()
    );
    for i in 0..2_000 {
        store.delete(&format!("key{i:010}")).await.unwrap();
    }
    store.delete(recent).await.unwrap();
    assert_eq!(store.bytes(), 0);
}

#[tokio::test]
async fn a_full_shard_drops_expired_sessions_before_live_ones() {
    let store = MemoryStore::new(SHARDS as u64 * 4);
    let live = "livekey000001";
    store.create(live, &record("{}", 3600)).await.unwrap();
    for i in 0..1000 {
        store
            .create(&format!("dead{i:010}"), &record("{}", -1))
            .await
            .unwrap();
    }
    assert!(store.exists(live).await.unwrap());
}
