//! The live-migration store: the whole contract holds, sessions of the old store move over on
//! first use, and nothing is written to the old store again.
#![cfg(all(feature = "memory", feature = "sqlite"))]

use std::sync::Arc;
use std::time::Duration;

use cloakroom::engines::memory::MemoryStore;
use cloakroom::engines::migrating::MigratingStore;
use cloakroom::engines::sqlite::SqliteStore;
use cloakroom::{Backend, Created, Record, SessionStore, Sessions, Settings, Updated};
use time::OffsetDateTime;

mod conformance {
    use super::*;

    async fn store() -> Arc<MigratingStore> {
        let old = SqliteStore::connect("sqlite::memory:").await.unwrap();
        old.migrate().await.unwrap();
        let new = Arc::new(MemoryStore::new(10_000));
        Arc::new(MigratingStore::new(new.clone(), Arc::new(old)).with_user_index(new))
    }

    cloakroom::conformance_tests!(store());
}

/// A live migration as the core is built from it, the user index included.
fn moving(migrating: MigratingStore) -> Backend {
    let migrating = Arc::new(migrating);
    Backend::moving(migrating.clone()).with_users(Some(migrating))
}

const KEY: &str = "oldsessionoldsessionoldsession01";

fn record(data: &str) -> Record {
    Record {
        data: data.to_owned().into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(600),
    }
}

/// (migrating, new, old) with `KEY` stored in the old store only.
async fn stores() -> (MigratingStore, Arc<MemoryStore>, Arc<SqliteStore>) {
    let old = SqliteStore::connect("sqlite::memory:").await.unwrap();
    old.migrate().await.unwrap();
    let old = Arc::new(old);
    assert_eq!(
        old.create(KEY, &record(r#"{"cart":["socks"]}"#))
            .await
            .unwrap(),
        Created::Stored
    );
    let new = Arc::new(MemoryStore::new(1_000));
    let migrating = MigratingStore::new(new.clone(), old.clone()).with_user_index(new.clone());
    (migrating, new, old)
}

#[tokio::test]
async fn an_old_session_moves_over_on_first_load() {
    let (migrating, new, old) = stores().await;
    let now = OffsetDateTime::now_utc();
    let loaded = migrating.load(KEY, now).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"cart":["socks"]}"#);
    assert_eq!(new.load(KEY, now).await.unwrap(), Some(loaded.clone()));
    assert!(!old.exists(KEY).await.unwrap(), "gone from the old store");
    assert_eq!(migrating.load(KEY, now).await.unwrap(), Some(loaded));
}

#[tokio::test]
async fn an_update_of_an_old_session_lands_in_the_new_store() {
    let (migrating, new, old) = stores().await;
    let now = OffsetDateTime::now_utc();
    let changed = record(r#"{"cart":["socks","hat"]}"#);
    assert_eq!(
        migrating
            .update(KEY, br#"{"cart":["socks"]}"#, &changed, now)
            .await
            .unwrap(),
        Updated::Stored
    );
    assert_eq!(
        new.load(KEY, now).await.unwrap().unwrap().data,
        changed.data
    );
    assert!(!old.exists(KEY).await.unwrap());
}

#[tokio::test]
async fn a_logout_of_an_old_session_removes_it_everywhere() {
    let (migrating, new, old) = stores().await;
    migrating.delete(KEY).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(migrating.load(KEY, now).await.unwrap(), None);
    assert!(!old.exists(KEY).await.unwrap() && !new.exists(KEY).await.unwrap());
}

#[tokio::test]
async fn new_sessions_never_take_an_old_key_nor_go_to_the_old_store() {
    let (migrating, _new, old) = stores().await;
    assert_eq!(
        migrating.create(KEY, &record("{}")).await.unwrap(),
        Created::Taken
    );
    let fresh = "freshsessionfreshsessionfresh001";
    assert_eq!(
        migrating.create(fresh, &record("{}")).await.unwrap(),
        Created::Stored
    );
    assert!(
        !old.exists(fresh).await.unwrap(),
        "writes go to the new store only"
    );
}

#[tokio::test]
async fn a_request_on_the_session_layer_keeps_the_visitor() {
    let (migrating, new, old) = stores().await;
    let sessions = Sessions::from_backend(moving(migrating), Settings::default()).unwrap();
    let lazy = sessions.start(Some(KEY));
    let session = lazy.load().await.unwrap();
    let cart: Vec<String> = session.get("cart").unwrap().unwrap();
    assert_eq!(cart, ["socks"]);
    session
        .update("cart", |c: &mut Vec<String>| c.push("hat".into()))
        .unwrap();
    lazy.commit(200).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        new.load(KEY, now).await.unwrap().unwrap().data,
        r#"{"cart":["socks","hat"]}"#
    );
    assert!(!old.exists(KEY).await.unwrap());
}

/// (sessions over a migrating store, new, old) with `KEY` logged in as user 7 in the old
/// store only.
async fn logged_in_in_old_store() -> (Sessions, Arc<MemoryStore>, Arc<SqliteStore>) {
    let (migrating, new, old) = stores().await;
    old.delete(KEY).await.unwrap();
    let data = r#"{"_auth_user_id":"7","_cloakroom_client":{"user_agent":"Lynx","ip":null}}"#;
    assert_eq!(
        old.create(KEY, &record(data)).await.unwrap(),
        Created::Stored
    );
    let sessions = Sessions::from_backend(moving(migrating), Settings::default()).unwrap();
    (sessions, new, old)
}

/// Runs one request on `KEY` that reads the session and, with `write`, changes it.
async fn first_request(sessions: &Sessions, write: bool) {
    let lazy = sessions.start(Some(KEY));
    let session = lazy.load().await.unwrap();
    assert_eq!(session.user_id().as_deref(), Some("7"));
    if write {
        session.insert("cart", vec!["hat"]).unwrap();
    }
    lazy.commit(200).await.unwrap();
}

async fn a_moved_session_is_listed_and_revocable(write: bool) {
    let (sessions, new, old) = logged_in_in_old_store().await;
    assert!(sessions.sessions_of("7").await.unwrap().is_empty());
    first_request(&sessions, write).await;
    let listed = sessions.sessions_of("7").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, KEY);
    assert_eq!(listed[0].user_agent.as_deref(), Some("Lynx"));
    let now = OffsetDateTime::now_utc();
    let stored = new.load(KEY, now).await.unwrap().unwrap();
    assert!((listed[0].expires_at - stored.expires_at).abs() < time::Duration::SECOND);

    sessions.revoke("7", KEY).await.unwrap();
    assert!(sessions.sessions_of("7").await.unwrap().is_empty());
    assert!(!new.exists(KEY).await.unwrap() && !old.exists(KEY).await.unwrap());
    let session = sessions.start(Some(KEY)).load().await.unwrap();
    assert_eq!(session.user_id(), None, "the revoked session is over");
}

#[tokio::test]
async fn a_session_moved_by_a_read_only_request_is_listed_and_revocable() {
    a_moved_session_is_listed_and_revocable(false).await;
}

#[tokio::test]
async fn a_session_moved_by_a_writing_request_is_listed_and_revocable() {
    a_moved_session_is_listed_and_revocable(true).await;
}
