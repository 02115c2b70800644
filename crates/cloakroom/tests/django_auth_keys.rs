//! Django's login keys through the session API: `user_id`, `login_as`, `logout`.

use cloakroom::engines::memory::MemoryStore;
use cloakroom::signing::session_auth_hash;
use cloakroom::{CookieAction, Secret, Sessions, Settings};

const BACKEND: &str = "django.contrib.auth.backends.ModelBackend";

async fn saved_key(
    sessions: &Sessions,
    cookie: Option<&str>,
    f: impl FnOnce(&cloakroom::Session),
) -> String {
    let lazy = sessions.start(cookie);
    f(&lazy.load().await.unwrap());
    match lazy.commit(200).await.unwrap().cookie {
        CookieAction::Set { value, .. } => value,
        other => panic!("no cookie: {other:?}"),
    }
}

#[tokio::test]
async fn login_as_writes_djangos_keys_and_cycles_or_flushes_like_django() {
    let sessions = Sessions::new(MemoryStore::default(), Settings::default()).unwrap();
    let hash = session_auth_hash(&Secret::new("k"), "pbkdf2_sha256$1$salt$hash");
    let anon = saved_key(&sessions, None, |s| s.insert("cart", ["apple"]).unwrap()).await;

    // No user yet: the key changes and the data stays (Django's cycle_key).
    let ana = saved_key(&sessions, Some(&anon), |s| {
        s.login_as("42", BACKEND, &hash).unwrap()
    })
    .await;
    assert_ne!(ana, anon);
    let s = sessions.start(Some(&ana)).load().await.unwrap();
    assert_eq!(s.user_id().as_deref(), Some("42"));
    assert_eq!(s.auth_user_backend().as_deref(), Some(BACKEND));
    assert_eq!(s.auth_user_hash().as_deref(), Some(hash.as_str()));
    assert_eq!(
        s.get::<Vec<String>>("cart").unwrap(),
        Some(vec!["apple".into()])
    );
    drop(s);

    // Another user: the old data goes (Django's flush).
    let bob = saved_key(&sessions, Some(&ana), |s| {
        s.login_as("7", BACKEND, &hash).unwrap()
    })
    .await;
    let s = sessions.start(Some(&bob)).load().await.unwrap();
    assert_eq!(s.user_id().as_deref(), Some("7"));
    assert_eq!(s.get::<Vec<String>>("cart").unwrap(), None);
    drop(s);

    // Logout is flush: the session is gone.
    let lazy = sessions.start(Some(&bob));
    lazy.load().await.unwrap().logout().unwrap();
    lazy.commit(200).await.unwrap();
    let s = sessions.start(Some(&bob)).load().await.unwrap();
    assert_eq!(s.user_id(), None);
}
