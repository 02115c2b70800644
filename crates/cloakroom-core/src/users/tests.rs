//! The index's rules over a primitive that does nothing of its own: it answers the entries a
//! test gives it, verbatim, and records what the core asked it to remove or delete.

use std::collections::BTreeSet;
use std::sync::Mutex;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::store::{Created, Record, Updated};

const NOW: OffsetDateTime = datetime!(2030-01-01 12:00 UTC);

/// Sessions by id, the entries `entries` answers, and the pairs `holds` says yes to.
#[derive(Default)]
struct Plain {
    sessions: Mutex<BTreeSet<String>>,
    entries: Mutex<Vec<IndexEntry>>,
    held: Mutex<BTreeSet<(String, String)>>,
    removed: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl SessionStore for Plain {
    fn engine(&self) -> &'static str {
        "plain"
    }
    async fn load(&self, _: &str, _: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        Ok(None)
    }
    async fn create(&self, key: &str, _: &Record) -> Result<Created, StoreError> {
        self.sessions.lock().unwrap().insert(key.to_owned());
        Ok(Created::Stored)
    }
    async fn update(
        &self,
        _: &str,
        _: &[u8],
        _: &Record,
        _: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        Ok(Updated::Missing)
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.sessions.lock().unwrap().remove(key);
        Ok(())
    }
}

#[async_trait]
impl IndexEntries for Plain {
    async fn put(&self, entry: &UserSession) -> Result<(), StoreError> {
        self.entries
            .lock()
            .unwrap()
            .push(IndexEntry::Found(entry.clone()));
        Ok(())
    }
    async fn remove(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let pair = (user_id.to_owned(), id.to_owned());
        self.removed.lock().unwrap().push(pair);
        Ok(())
    }
    async fn entries(&self, _: &str, _: OffsetDateTime) -> Result<Vec<IndexEntry>, StoreError> {
        Ok(self.entries.lock().unwrap().clone())
    }
    async fn holds(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let pair = (user_id.to_owned(), id.to_owned());
        Ok(self.held.lock().unwrap().contains(&pair))
    }
}

fn entry(id: &str, user: &str, login_minutes_ago: i64, expires_in_minutes: i64) -> UserSession {
    UserSession {
        id: id.to_owned(),
        user_id: user.to_owned(),
        created_at: NOW - Duration::minutes(login_minutes_ago),
        last_seen: NOW,
        expires_at: NOW + Duration::minutes(expires_in_minutes),
        user_agent: None,
        ip: None,
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(u, id)| ((*u).to_owned(), (*id).to_owned()))
        .collect()
}

#[tokio::test]
async fn listing_answers_live_entries_newest_login_first() {
    let store = Plain::default();
    for (id, ago) in [("old", 30), ("new", 1), ("mid", 10)] {
        store.link(&entry(id, "ana", ago, 60)).await.unwrap();
    }
    let listed = store.sessions_of("ana", NOW).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["new", "mid", "old"]);
    assert!(
        store.removed.lock().unwrap().is_empty(),
        "a live entry was forgotten"
    );
}

#[tokio::test]
async fn listing_forgets_entries_gone_expired_or_another_users() {
    let store = Plain::default();
    *store.entries.lock().unwrap() = vec![
        IndexEntry::Found(entry("live", "ana", 5, 60)),
        IndexEntry::Found(entry("expired", "ana", 5, 0)),
        IndexEntry::Found(entry("bobs", "bob", 5, 60)),
        IndexEntry::Stale("gone".to_owned()),
    ];
    let listed = store.sessions_of("ana", NOW).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["live"]);
    assert_eq!(
        *store.removed.lock().unwrap(),
        pairs(&[("ana", "expired"), ("ana", "bobs"), ("ana", "gone")]),
        "each dead entry leaves this user's index, and only this user's"
    );
}

#[tokio::test]
async fn revoke_deletes_only_a_session_the_users_index_holds_then_forgets_it() {
    let store = Plain::default();
    for key in ["anas", "bobs"] {
        store.sessions.lock().unwrap().insert(key.to_owned());
    }
    store
        .held
        .lock()
        .unwrap()
        .extend(pairs(&[("ana", "anas"), ("bob", "bobs")]));

    store.revoke("ana", "bobs").await.unwrap();
    assert!(
        store.sessions.lock().unwrap().contains("bobs"),
        "one user revoked another's session"
    );
    store.revoke("ana", "anas").await.unwrap();
    assert!(
        !store.sessions.lock().unwrap().contains("anas"),
        "not revoked"
    );
    assert_eq!(
        *store.removed.lock().unwrap(),
        pairs(&[("ana", "bobs"), ("ana", "anas")]),
        "revoking forgets the named entry of the user who asked"
    );
}
