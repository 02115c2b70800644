//! The clauses of the session life cycle that apply when the data travels in the cookie, run
//! on `private_cookies` (the same suite as `signed_cookies`; `engines::open` on both is in
//! conformance_cookie.rs).

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
