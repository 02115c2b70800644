//! Lifecycle events and live revocation in one process (the in-process cache): events arrive
//! in order with the index ids `sessions_of` lists; `Session::ended` resolves when its
//! session is revoked, logged out or expires, and never for another user's session; two
//! `Sessions` on one store (two app servers without a channel) see each other's ends by
//! polling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom_core::engines::memory::MemoryStore;
use cloakroom_core::live::{wire_id, LiveMode};
use cloakroom_core::{
    Backend, CookieAction, Ended, Event, EventKind, Expiry, Session, Sessions, Settings,
};
use tokio::sync::broadcast;

fn sessions_on(store: &Arc<MemoryStore>, hash_keys: bool) -> Sessions {
    let mut settings = Settings::default();
    settings.session.hash_keys = hash_keys;
    Sessions::from_backend(Backend::indexed(Arc::clone(store)), settings).unwrap()
}

fn app(hash_keys: bool) -> Sessions {
    sessions_on(&Arc::new(MemoryStore::new(1_000)), hash_keys)
}

/// One request carrying `cookie`: loads, runs `handler`, saves; returns the session (as a
/// handler that keeps it, a WebSocket's, would) and the cookie it leaves.
async fn request(
    sessions: &Sessions,
    cookie: Option<&str>,
    handler: impl FnOnce(&Session),
) -> (Session, Option<String>) {
    let lazy = sessions.start(cookie);
    let session = lazy.load().await.unwrap();
    handler(&session);
    let outcome = lazy.commit(200).await.unwrap();
    let cookie = match outcome.cookie {
        CookieAction::Set { value, .. } => Some(value),
        CookieAction::Delete => None,
        _ => cookie.map(str::to_owned),
    };
    (session, cookie)
}

async fn login(sessions: &Sessions, user: &str) -> (Session, String) {
    let (session, cookie) = request(sessions, None, |s| {
        s.login_as(user, "backend", "").unwrap();
    })
    .await;
    (session, cookie.unwrap())
}

fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<(EventKind, String, Option<String>)> {
    let mut seen = vec![];
    while let Ok(e) = rx.try_recv() {
        seen.push((e.kind, e.id, e.user_id));
    }
    seen
}

/// Whether `ended` is still pending after `wait`.
async fn still_pending(ended: impl std::future::Future<Output = Ended>, wait: Duration) -> bool {
    tokio::time::timeout(wait, ended).await.is_err()
}

#[tokio::test]
async fn events_arrive_in_order_named_by_the_index_id_never_the_key() {
    let sessions = app(true);
    let mut events = sessions.events();
    let (_, first) = request(&sessions, None, |s| s.insert("cart", 1).unwrap()).await;
    let first = first.unwrap();
    let (_, key) = request(&sessions, Some(&first), |s| {
        s.login_as("ana", "backend", "").unwrap();
    })
    .await;
    let key = key.unwrap();
    let listed = sessions.sessions_of("ana").await.unwrap();
    assert_eq!(listed.len(), 1);
    let id = listed[0].id.clone();
    assert_ne!(id, key, "hash_keys: the index id is not the cookie");
    let (_, gone) = request(&sessions, Some(&key), |s| s.flush().unwrap()).await;
    assert_eq!(gone, None);
    let ana = Some("ana".to_owned());
    assert_eq!(
        drain(&mut events),
        vec![
            (
                EventKind::Created,
                wire_id(&cloakroom_core::hashed::stored_key(&first)),
                None
            ),
            (EventKind::Rotated, wire_id(&id), ana.clone()),
            (EventKind::LoggedIn, wire_id(&id), ana.clone()),
            (EventKind::LoggedOut, wire_id(&id), ana.clone()),
        ]
    );
}

#[tokio::test]
async fn an_event_debug_print_shows_a_prefix_of_the_id_only() {
    let sessions = app(false);
    let mut events = sessions.events();
    let (_, key) = request(&sessions, None, |s| s.insert("a", 1).unwrap()).await;
    let event = events.try_recv().unwrap();
    let key = key.unwrap();
    assert_eq!(
        event.id,
        wire_id(&key),
        "without hash_keys the index id is the key: the event carries its digest"
    );
    assert!(!event.id.contains(&key));
    let printed = format!("{event:?}");
    assert!(!printed.contains(&key), "{printed}");
}

#[tokio::test]
async fn a_save_that_merges_with_a_concurrent_one_is_an_event() {
    let sessions = app(false);
    let (_, key) = request(&sessions, None, |s| s.insert("n", 0).unwrap()).await;
    let key = key.unwrap();
    let mut events = sessions.events();
    let (a, b) = (sessions.start(Some(&key)), sessions.start(Some(&key)));
    let (sa, sb) = (a.load().await.unwrap(), b.load().await.unwrap());
    sa.insert("a", 1).unwrap();
    sb.insert("b", 2).unwrap();
    a.commit(200).await.unwrap();
    b.commit(200).await.unwrap();
    assert_eq!(
        drain(&mut events),
        vec![(EventKind::Merged, wire_id(&key), None)]
    );
}

#[tokio::test]
async fn log_out_everywhere_ends_the_users_waits_and_no_one_elses() {
    let sessions = app(true);
    let (ana1, _) = login(&sessions, "ana").await;
    let (ana2, _) = login(&sessions, "ana").await;
    let (bob, _) = login(&sessions, "bob").await;
    let mut events = sessions.events();
    let (e1, e2, eb) = (ana1.ended(), ana2.ended(), bob.ended());
    let bob_waits = tokio::spawn(eb);
    assert_eq!(sessions.revoke_user("ana").await.unwrap(), 2);
    assert_eq!(e1.await, Ended::Revoked);
    assert_eq!(e2.await, Ended::Revoked);
    let revoked = drain(&mut events);
    assert_eq!(revoked.len(), 2);
    assert!(revoked
        .iter()
        .all(|(kind, _, user)| *kind == EventKind::Revoked && user.as_deref() == Some("ana")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!bob_waits.is_finished(), "bob's session did not end");
    bob_waits.abort();
}

#[tokio::test]
async fn revoking_another_users_session_by_its_id_ends_nothing() {
    let sessions = app(false);
    let (bob, _) = login(&sessions, "bob").await;
    let bob_id = sessions.sessions_of("bob").await.unwrap()[0].id.clone();
    login(&sessions, "ana").await;
    let mut events = sessions.events();
    sessions.revoke("ana", &bob_id).await.unwrap();
    assert!(still_pending(bob.ended(), Duration::from_millis(300)).await);
    assert_eq!(drain(&mut events), vec![]);
    assert_eq!(sessions.sessions_of("bob").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_logout_in_another_request_ends_the_wait() {
    let sessions = app(false);
    let (held, key) = login(&sessions, "ana").await;
    let ended = tokio::spawn(held.ended());
    request(&sessions, Some(&key), |s| s.flush().unwrap()).await;
    assert_eq!(ended.await.unwrap(), Ended::LoggedOut);
}

#[tokio::test]
async fn a_session_ends_when_its_expiry_passes_unless_a_request_keeps_it() {
    let sessions = app(false);
    let mut events = sessions.events();
    let (held, key) = request(&sessions, None, |s| {
        s.insert("a", 1).unwrap();
        s.set_expiry(Expiry::AfterEachSave(Duration::from_secs(1)))
            .unwrap();
    })
    .await;
    let key = key.unwrap();
    let start = Instant::now();
    let ended = tokio::spawn(held.ended());
    // A save at 0.6 s moves the expiry to 1.6 s: the wait goes on past the first expiry.
    tokio::time::sleep(Duration::from_millis(600)).await;
    request(&sessions, Some(&key), |s| s.insert("b", 2).unwrap()).await;
    assert_eq!(ended.await.unwrap(), Ended::Expired);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1_550) && took < Duration::from_millis(2_600),
        "{took:?}"
    );
    let kinds: Vec<_> = drain(&mut events).into_iter().map(|e| e.0).collect();
    assert_eq!(kinds, [EventKind::Created, EventKind::Expired]);
}

#[tokio::test]
async fn a_session_never_stored_has_nothing_to_end() {
    let sessions = app(false);
    let (held, cookie) = request(&sessions, None, |_| {}).await;
    assert_eq!(cookie, None);
    assert!(still_pending(held.ended(), Duration::from_millis(200)).await);
}

#[tokio::test]
async fn another_server_without_a_channel_sees_the_revocation_at_its_poll_interval() {
    let store = Arc::new(MemoryStore::new(1_000));
    let (one, two) = (sessions_on(&store, false), sessions_on(&store, false));
    let poll = Duration::from_millis(100);
    let live = two.start_live(poll).unwrap();
    assert_eq!(live.mode(), LiveMode::Poll { poll });
    assert!(two.start_live(poll).is_err(), "started once per app");
    let (_, key) = login(&one, "ana").await;
    // The visitor's live connection is served by server two.
    let (held, _) = request(&two, Some(&key), |s| {
        s.user_id().unwrap();
    })
    .await;
    let ended = tokio::spawn(held.ended());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let start = Instant::now();
    one.revoke_user("ana").await.unwrap();
    assert_eq!(ended.await.unwrap(), Ended::Gone);
    let delay = start.elapsed();
    println!("in-process cache, by polling every {poll:?}: closed {delay:?} after the revocation");
    assert!(delay < poll * 2 + Duration::from_millis(100), "{delay:?}");
    live.stop().await;
}

#[tokio::test]
async fn a_revocation_made_by_other_means_is_announced_to_the_waits_and_subscribers() {
    let sessions = app(false);
    let (held, key) = login(&sessions, "ana").await;
    let mut events = sessions.events();
    let ended = held.ended();
    // An operator's tool deleted the record itself, then tells the live side.
    sessions.store().unwrap().delete(&key).await.unwrap();
    sessions.announce_revoked(&key, Some("ana")).await;
    assert_eq!(ended.await, Ended::Revoked);
    assert_eq!(
        drain(&mut events),
        vec![(EventKind::Revoked, wire_id(&key), Some("ana".to_owned()))]
    );
}
