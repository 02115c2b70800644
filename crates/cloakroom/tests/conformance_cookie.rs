//! The clauses of the session life cycle that apply when the data travels in the cookie
//! (`signed_cookies`), plus the signed-cookie clauses, through the core; and Django's real
//! signed-cookie flows.

use cloakroom::clock::ManualClock;
use cloakroom::config::DEFAULT_COOKIE_AGE;
use cloakroom::engines::cookie::SignedCookies;
use cloakroom::{CookieAction, Secret, Sessions, Settings};

fn make(secret: &str, fallbacks: &[&str]) -> SignedCookies {
    SignedCookies::new(
        Secret::new(secret),
        fallbacks.iter().map(|f| Secret::new(*f)).collect(),
        DEFAULT_COOKIE_AGE,
        "sessionid",
    )
    .unwrap()
}

cloakroom::cookie_conformance_tests!(make);

/// Django's `signed_cookies` session key is its cookie value; so is cloakroom's, once saved
/// and once loaded (there is no other key: nothing is stored).
#[tokio::test]
async fn a_cookie_sessions_key_is_its_cookie_value() {
    let sessions = Sessions::from_backing(make("k", &[]), Settings::default()).unwrap();
    let lazy = sessions.start(None);
    let s = lazy.load().await.unwrap();
    s.insert("a", 1).unwrap();
    let saved = s.save().await.unwrap();
    assert_eq!(s.session_key().as_deref(), Some(saved.as_str()));
    let CookieAction::Set { value, .. } = lazy.commit(200).await.unwrap().cookie else {
        panic!("a saved session sent no cookie");
    };
    assert_eq!(
        value, saved,
        "the key Session::save returned is not the cookie"
    );
    let again = sessions.start(Some(&value)).load().await.unwrap();
    assert_eq!(again.session_key(), Some(value));
}

/// `hash_keys` needs a key; the settings may name another engine than the backing given.
#[test]
fn hash_keys_with_signed_cookies_is_a_config_error() {
    let settings = Settings::default().with_hash_keys(true);
    let err = Sessions::from_backing(make("k", &[]), settings).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("hash_keys") && msg.contains("no key"), "{msg}");
}

mod django_flows {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/django-vectors.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn flow<'a>(v: &'a Value, note_start: &str) -> &'a Value {
        v["middleware_flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["note"].as_str().unwrap().starts_with(note_start))
            .unwrap()
    }

    fn cookie_value(header: &str) -> &str {
        header
            .strip_prefix("sessionid=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
    }

    fn sessions(v: &Value) -> Sessions {
        let secret = v["settings"]["SECRET_KEY"].as_str().unwrap();
        let at = v["fixed_time"].as_f64().unwrap();
        let clock = ManualClock::at_unix(at.floor() as i64);
        clock.advance(std::time::Duration::from_millis(250));
        Sessions::from_backing(make(secret, &[]), Settings::default())
            .unwrap()
            .with_clock(clock)
    }

    #[tokio::test]
    async fn a_new_session_gets_djangos_exact_cookie() {
        let v = vectors();
        let f = flow(&v, "signed_cookies: data in the cookie");
        let want = cookie_value(f["set_cookie"][0].as_str().unwrap());
        let sessions = sessions(&v);
        let lazy = sessions.start(None);
        let s = lazy.load().await.unwrap();
        s.insert_value(
            "cart",
            serde_json::json!({"items": [{"sku": "A-1", "qty": 2}], "currency": "EUR"}),
        )
        .unwrap();
        s.insert("visits", 1).unwrap();
        match lazy.commit(200).await.unwrap().cookie {
            CookieAction::Set { value, max_age } => {
                assert_eq!(value, want, "the cookie Django set in this flow");
                assert_eq!(max_age, Some(1_209_600));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn djangos_cookie_loads_and_flush_deletes_it() {
        let v = vectors();
        let f = flow(&v, "signed_cookies: flush");
        let cookie = cookie_value(f["request_cookie"].as_str().unwrap());
        let sessions = sessions(&v);
        let lazy = sessions.start(Some(cookie));
        let s = lazy.load().await.unwrap();
        assert_eq!(s.get::<i64>("count").unwrap(), Some(42));
        assert_eq!(s.get::<f64>("huge_float").unwrap(), Some(1e100));
        s.flush().unwrap();
        assert_eq!(lazy.commit(200).await.unwrap().cookie, CookieAction::Delete);
    }

    #[tokio::test]
    async fn a_bad_cookie_reads_as_an_empty_session() {
        // Django re-issues a signed `{}` here; cloakroom's core deletes the cookie instead
        // (an empty session that came with a cookie), which leaves the browser in the same
        // state: no session data.
        let v = vectors();
        let f = flow(&v, "signed_cookies: bad cookie read");
        let cookie = cookie_value(f["request_cookie"].as_str().unwrap());
        let sessions = sessions(&v);
        let lazy = sessions.start(Some(cookie));
        assert!(lazy.load().await.unwrap().is_empty());
        assert_eq!(lazy.commit(200).await.unwrap().cookie, CookieAction::Delete);
    }
}

/// `engines::open` on both client-side engines (private cookies' own clauses are in
/// conformance_private_cookie.rs).
mod open {
    use cloakroom::engines::private_cookie::PrivateCookies;
    use cloakroom::engines::{open, OpenError};
    use cloakroom::{Backing, ClientSide, Engine, Secret, Settings};

    const CLIENT_SIDE: [Engine; 2] = [Engine::SignedCookies, Engine::PrivateCookies];

    #[tokio::test]
    async fn client_side_engines_need_a_secret_key_and_say_so() {
        for engine in CLIENT_SIDE {
            let settings = Settings::default().with_engine(engine);
            let err = open(&settings).await.unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, OpenError::Config(_)), "{msg}");
            assert!(
                msg.contains("secret_key")
                    && msg.contains("--secret-key")
                    && msg.contains(&engine.to_string()),
                "{msg}"
            );

            let empty = settings.clone().with_secret_key(Some(Secret::new("")));
            assert!(open(&empty)
                .await
                .unwrap_err()
                .to_string()
                .contains("secret_key"));
        }
    }

    #[tokio::test]
    async fn client_side_engines_open_with_their_fallbacks() {
        for engine in CLIENT_SIDE {
            let settings = Settings::default()
                .with_engine(engine)
                .with_secret_key(Some(Secret::new("new")))
                .with_secret_key_fallbacks(vec![Secret::new("old")]);
            let Backing::Cookie(opened) = open(&settings).await.unwrap() else {
                panic!("{engine} opened as a store on the server");
            };
            assert_eq!(opened.engine(), engine.to_string());
            let old: ClientSide = if engine == Engine::PrivateCookies {
                PrivateCookies::new(Secret::new("old"), vec![], 60, "sessionid")
                    .unwrap()
                    .into()
            } else {
                super::make("old", &[]).into()
            };
            let now = time::OffsetDateTime::now_utc();
            let data = serde_json::from_str(r#"{"a":1}"#).unwrap();
            let cookie = old.encode(&data, now).unwrap();
            let (back, _) = opened.decode(&cookie, now).unwrap();
            assert_eq!(
                back, data,
                "{engine}: the fallback from the settings is not used"
            );
        }
    }
}
