//! The clauses of the session life cycle that apply when the data travels in the cookie, run
//! on `private_cookies` (the same suite as `signed_cookies`), and how `engines::open` builds it.

use cloakroom::config::DEFAULT_COOKIE_AGE;
use cloakroom::engines::private_cookie::PrivateCookies;
use cloakroom::{Secret, Sessions, Settings};

fn make(secret: &str, fallbacks: &[&str]) -> PrivateCookies {
    PrivateCookies::new(
        Secret::new(secret),
        fallbacks.iter().map(|f| Secret::new(*f)).collect(),
        DEFAULT_COOKIE_AGE,
        "sessionid",
    )
    .unwrap()
}

cloakroom::cookie_conformance_tests!(make);

#[test]
fn hash_keys_with_private_cookies_is_a_config_error() {
    let settings = Settings::default().with_hash_keys(true);
    let err = Sessions::from_backing(make("k", &[]), settings).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("hash_keys") && msg.contains("private_cookies"),
        "{msg}"
    );
}

mod open {
    use cloakroom::engines::{open, OpenError};
    use cloakroom::{Backing, ClientSide, Engine, Secret, Settings};

    #[tokio::test]
    async fn private_cookies_needs_a_secret_key_and_says_so() {
        let settings = Settings::default().with_engine(Engine::PrivateCookies);
        let err = open(&settings).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, OpenError::Config(_)), "{msg}");
        assert!(
            msg.contains("secret_key") && msg.contains("private_cookies"),
            "{msg}"
        );
        let empty = settings.with_secret_key(Some(Secret::new("")));
        assert!(open(&empty)
            .await
            .unwrap_err()
            .to_string()
            .contains("secret_key"));
    }

    #[tokio::test]
    async fn private_cookies_opens_with_its_fallbacks() {
        let settings = Settings::default()
            .with_engine(Engine::PrivateCookies)
            .with_secret_key(Some(Secret::new("new")))
            .with_secret_key_fallbacks(vec![Secret::new("old")]);
        let Backing::Cookie(opened @ ClientSide::Private(_)) = open(&settings).await.unwrap()
        else {
            panic!("private_cookies did not open as private cookies");
        };
        assert_eq!(opened.engine(), "private_cookies");
        let now = time::OffsetDateTime::now_utc();
        let data = serde_json::from_str(r#"{"a":1}"#).unwrap();
        let cookie = super::make("old", &[]).encode(&data, now).unwrap();
        let (back, _) = opened.decode(&cookie, now).unwrap();
        assert_eq!(back, data, "the fallback from the settings is not used");
    }
}
