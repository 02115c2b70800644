//! When an empty session keeps its key, and when its record and cookie go: Django's rules, as
//! real Django 5.2 (`django.contrib.sessions.backends.db` behind `SessionMiddleware`) answered
//! each case. Django's `is_empty()` is "no key and no data": a session that has a key and holds
//! `{}` is saved as `{}` under that key; only `flush()` drops the key, and the middleware then
//! deletes the cookie of a request that came with one.
//!
//! Two cases differ on purpose, both from our rule that a key the store does not know is never
//! adopted (session fixation): `clear()` on a request carrying an unknown key answers 400 in
//! Django (`SessionInterrupted`: its `clear()` keeps the client's key and the forced update
//! finds no row); here the session is empty and keyless, so the cookie is deleted. And
//! `save()` there fails with `UpdateError` in Django; here it creates a fresh key.

use cloakroom::engines::memory::MemoryStore;
use std::time::Duration;

use cloakroom::{CookieAction, Record, Sessions, Settings};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
enum Cookie {
    /// The request carries the stored session's key.
    Existing,
    /// The request carries a well-formed key the store does not know.
    Unknown,
    /// No cookie.
    None,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    /// The handler never touches the session.
    Untouched,
    Read,
    /// `remove("a")`, the last key (Django's `pop` / `del`).
    PopLast,
    Clear,
    Flush,
    CycleKey,
    /// `session.save()` (Django's `save()` / `create()`).
    Save,
}

/// What the cookie does: kept, set to the same key, set to a new key, or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Keep,
    SameKey,
    NewKey,
    Delete,
}

struct Case {
    name: &'static str,
    stored: Option<Value>,
    cookie: Cookie,
    action: Action,
    status: u16,
    every_request: bool,
    cookie_after: Seen,
    /// What the store holds under the old key afterwards (`None`: nothing).
    old_record: Option<Value>,
    /// What the store holds under the new key, when the cookie carries one.
    new_record: Option<Value>,
}

#[allow(clippy::too_many_arguments)]
const fn case(
    name: &'static str,
    stored: Option<Value>,
    cookie: Cookie,
    action: Action,
    status: u16,
    cookie_after: Seen,
    old_record: Option<Value>,
    new_record: Option<Value>,
) -> Case {
    Case {
        name,
        stored,
        cookie,
        action,
        status,
        every_request: false,
        cookie_after,
        old_record,
        new_record,
    }
}

fn cases() -> Vec<Case> {
    use Action::*;
    let empty = || Some(json!({}));
    let a = || Some(json!({ "a": 1 }));
    let mut cases = vec![
        case(
            "read of a stored {}",
            empty(),
            Cookie::Existing,
            Read,
            200,
            Seen::Keep,
            empty(),
            None,
        ),
        case(
            "untouched stored {}",
            empty(),
            Cookie::Existing,
            Untouched,
            200,
            Seen::Keep,
            empty(),
            None,
        ),
        case(
            "pop of the last key",
            a(),
            Cookie::Existing,
            PopLast,
            200,
            Seen::SameKey,
            empty(),
            None,
        ),
        case(
            "clear",
            a(),
            Cookie::Existing,
            Clear,
            200,
            Seen::SameKey,
            empty(),
            None,
        ),
        case(
            "clear of a stored {}",
            empty(),
            Cookie::Existing,
            Clear,
            200,
            Seen::SameKey,
            empty(),
            None,
        ),
        case(
            "flush",
            a(),
            Cookie::Existing,
            Flush,
            200,
            Seen::Delete,
            None,
            None,
        ),
        case(
            "flush of a stored {}",
            empty(),
            Cookie::Existing,
            Flush,
            200,
            Seen::Delete,
            None,
            None,
        ),
        case(
            "pop of the last key, 5xx",
            a(),
            Cookie::Existing,
            PopLast,
            500,
            Seen::Keep,
            a(),
            None,
        ),
        case(
            "flush, 5xx",
            a(),
            Cookie::Existing,
            Flush,
            500,
            Seen::Delete,
            None,
            None,
        ),
        case(
            "cycle_key of a stored {}",
            empty(),
            Cookie::Existing,
            CycleKey,
            200,
            Seen::NewKey,
            None,
            empty(),
        ),
        case(
            "no cookie: read",
            None,
            Cookie::None,
            Read,
            200,
            Seen::Keep,
            None,
            None,
        ),
        case(
            "no cookie: clear",
            None,
            Cookie::None,
            Clear,
            200,
            Seen::Keep,
            None,
            None,
        ),
        case(
            "no cookie: flush",
            None,
            Cookie::None,
            Flush,
            200,
            Seen::Keep,
            None,
            None,
        ),
        case(
            "no cookie: save()",
            None,
            Cookie::None,
            Save,
            200,
            Seen::NewKey,
            None,
            empty(),
        ),
        case(
            "unknown key: read",
            None,
            Cookie::Unknown,
            Read,
            200,
            Seen::Delete,
            None,
            None,
        ),
        case(
            "unknown key: untouched",
            None,
            Cookie::Unknown,
            Untouched,
            200,
            Seen::Keep,
            None,
            None,
        ),
        // Ours (see the module docs): Django answers 400 here.
        case(
            "unknown key: clear",
            None,
            Cookie::Unknown,
            Clear,
            200,
            Seen::Delete,
            None,
            None,
        ),
        // Ours: Django raises UpdateError here.
        case(
            "unknown key: save()",
            None,
            Cookie::Unknown,
            Save,
            200,
            Seen::NewKey,
            None,
            empty(),
        ),
        case(
            "save() of a stored session",
            a(),
            Cookie::Existing,
            Save,
            200,
            Seen::SameKey,
            a(),
            None,
        ),
    ];
    let mut every = case(
        "save_every_request: read of a stored {}",
        empty(),
        Cookie::Existing,
        Read,
        200,
        Seen::SameKey,
        empty(),
        None,
    );
    every.every_request = true;
    cases.push(every);
    cases
}

async fn stored(sessions: &Sessions, key: &str) -> Option<Value> {
    let now = sessions.clock().now();
    let record = sessions
        .store()
        .expect("a store on the server")
        .load(key, now)
        .await
        .expect("the memory store answers")?;
    let data = sessions
        .settings()
        .codec()
        .decode(&record.data)
        .expect("the stored data decodes");
    Some(Value::Object(data.into_iter().collect()))
}

#[tokio::test]
async fn empty_sessions_keep_their_key_until_flushed_as_in_django() {
    let mut failures = Vec::new();
    for case in cases() {
        let settings = Settings::default().with_save_every_request(case.every_request);
        let sessions = Sessions::new(MemoryStore::default(), settings).unwrap();
        // The stored session, written straight into the store as Django writes it (`{}` too).
        let old = match &case.stored {
            Some(Value::Object(data)) => {
                let key = cloakroom::key::generate().unwrap();
                let record = Record {
                    data: sessions
                        .settings()
                        .codec()
                        .encode(&data.clone().into_iter().collect())
                        .unwrap(),
                    expires_at: sessions.clock().now() + Duration::from_secs(3600),
                };
                let store = sessions.store().expect("a store on the server");
                store.create(&key, &record).await.unwrap();
                Some(key)
            }
            _ => None,
        };
        let unknown = "0123456789abcdefghijklmnopqrstuv".to_owned();
        let cookie = match case.cookie {
            Cookie::Existing => old.clone(),
            Cookie::Unknown => Some(unknown.clone()),
            Cookie::None => None,
        };
        let lazy = sessions.start(cookie.as_deref());
        if !matches!(case.action, Action::Untouched) {
            let s = lazy.load().await.unwrap();
            match case.action {
                Action::Untouched => {}
                Action::Read => {
                    let _ = s.get_value("a");
                }
                Action::PopLast => {
                    s.remove_value("a").unwrap();
                }
                Action::Clear => s.clear().unwrap(),
                Action::Flush => s.flush().unwrap(),
                Action::CycleKey => s.cycle_key().unwrap(),
                Action::Save => {
                    s.save().await.unwrap();
                }
            }
        }
        let outcome = lazy.commit(case.status).await.unwrap();
        let (seen, new_key) = match &outcome.cookie {
            CookieAction::Keep => (Seen::Keep, None),
            CookieAction::Delete => (Seen::Delete, None),
            CookieAction::Set { value, .. } if Some(value) == old.as_ref() => (Seen::SameKey, None),
            CookieAction::Set { value, .. } => (Seen::NewKey, Some(value.clone())),
            other => panic!("{}: unexpected {other:?}", case.name),
        };
        let old_record = match old.as_deref().or(cookie.as_deref()) {
            Some(key) => stored(&sessions, key).await,
            None => None,
        };
        let new_record = match &new_key {
            Some(key) => stored(&sessions, key).await,
            None => None,
        };
        let got = (seen, old_record, new_record);
        let want = (
            case.cookie_after,
            case.old_record.clone(),
            case.new_record.clone(),
        );
        if got != want {
            failures.push(format!("{}: got {got:?}, Django: {want:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
