use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::engines::cookie::tests::{assert_too_large, at, data};
use crate::seal::{NONCE_LEN, TAG_LEN};

const AGE: u64 = 1_209_600;

fn with(secret: &str, fallbacks: &[&str]) -> PrivateCookies {
    let fallbacks = fallbacks.iter().map(|s| Secret::new(*s)).collect();
    PrivateCookies::new(Secret::new(secret), fallbacks, AGE, "sessionid").unwrap()
}

fn cookies() -> PrivateCookies {
    with("s3cret", &[])
}

fn live(c: &PrivateCookies, value: &str, after: u64) -> bool {
    c.decode(value, at() + Duration::from_secs(after)).is_some()
}

fn raw(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).unwrap()
}

#[test]
fn values_round_trip_with_the_cookie_age() {
    let c = cookies();
    let sent = data(r#"{"a":"é","b":[1,2.5],"c":null}"#);
    let value = c.encode(&sent, at()).unwrap();
    let (back, expires_at) = c.decode(&value, at()).unwrap();
    assert_eq!(back, sent);
    assert_eq!(expires_at, at() + Duration::from_secs(AGE));
}

#[test]
fn the_value_is_base64url_of_version_nonce_and_ciphertext_and_hides_the_data() {
    let c = cookies();
    let sent = data(r#"{"favourite":"plain-text-marker"}"#);
    let value = c.encode(&sent, at()).unwrap();
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{value}"
    );
    let bytes = raw(&value);
    let json = serde_json::to_vec(&sent).unwrap();
    assert_eq!(bytes[0], VERSION);
    assert_eq!(
        bytes.len(),
        1 + NONCE_LEN + ISSUED_LEN + json.len() + TAG_LEN
    );
    assert!(!bytes.windows(10).any(|w| w == b"plain-text"));
    // A fresh nonce each time: the same session never gives the same cookie twice.
    assert_ne!(c.encode(&sent, at()).unwrap(), value);
}

#[test]
fn a_change_to_any_byte_is_refused() {
    let c = cookies();
    let value = c.encode(&data(r#"{"user":"7"}"#), at()).unwrap();
    let bytes = raw(&value);
    // Every byte: the version, the nonce, the ciphertext (issue time and data) and the tag.
    for i in 0..bytes.len() {
        for flip in [0x01, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            let bad = URL_SAFE_NO_PAD.encode(bad);
            assert!(
                c.decode(&bad, at()).is_none(),
                "byte {i} ^ {flip:#x} accepted"
            );
        }
    }
}

#[test]
fn a_truncated_or_extended_value_is_refused() {
    let c = cookies();
    let value = c.encode(&data(r#"{"user":"7"}"#), at()).unwrap();
    for len in 0..value.len() {
        assert!(c.decode(&value[..len], at()).is_none(), "prefix {len}");
    }
    let bytes = raw(&value);
    for len in 0..bytes.len() {
        let short = URL_SAFE_NO_PAD.encode(&bytes[..len]);
        assert!(c.decode(&short, at()).is_none(), "{len} bytes");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(c.decode(&URL_SAFE_NO_PAD.encode(long), at()).is_none());
    assert!(c.decode(&format!("{value}="), at()).is_none());
}

#[test]
fn another_key_is_refused_and_a_fallback_key_accepted() {
    let old = with("old secret", &[]);
    let value = old.encode(&data(r#"{"user":"7"}"#), at()).unwrap();
    assert!(with("new secret", &[]).decode(&value, at()).is_none());
    let rotated = with("new secret", &["other", "old secret"]);
    let (back, _) = rotated.decode(&value, at()).unwrap();
    assert_eq!(back, data(r#"{"user":"7"}"#));
    // Rewritten with the current key only: the old key alone no longer reads it.
    let rewritten = rotated.encode(&back, at()).unwrap();
    assert!(old.decode(&rewritten, at()).is_none());
    assert!(with("new secret", &[]).decode(&rewritten, at()).is_some());
}

#[test]
fn a_signed_cookie_of_the_same_secret_is_refused() {
    let signed =
        super::super::cookie::SignedCookies::new(Secret::new("s3cret"), vec![], AGE, "sessionid")
            .unwrap();
    let value = signed.encode(&data(r#"{"user":"7"}"#), at()).unwrap();
    assert!(cookies().decode(&value, at()).is_none());
}

#[test]
fn the_cookie_age_and_the_sessions_own_expiry_are_enforced_on_read() {
    let c = cookies();
    let value = c.encode(&data(r#"{"user":"7"}"#), at()).unwrap();
    assert!(live(&c, &value, AGE));
    assert!(!live(&c, &value, AGE + 1));
    let value = c.encode(&data(r#"{"_session_expiry":60}"#), at()).unwrap();
    assert!(live(&c, &value, 59));
    assert!(!live(&c, &value, 60));
    let instant = data(r#"{"_session_expiry":"2025-01-01T00:00:30+00:00"}"#);
    let value = c.encode(&instant, at()).unwrap();
    assert!(live(&c, &value, 29));
    assert!(!live(&c, &value, 30));
}

#[test]
fn the_issue_time_inside_the_ciphertext_cannot_be_moved() {
    // The only way to move it is to change the ciphertext, which then fails to authenticate;
    // the value written later is a different cookie with its own, later, issue time.
    let c = cookies();
    let early = c.encode(&data(r#"{"user":"7"}"#), at()).unwrap();
    let later = c
        .encode(
            &data(r#"{"user":"7"}"#),
            at() + Duration::from_secs(AGE - 10),
        )
        .unwrap();
    let (mut spliced, later) = (raw(&early), raw(&later));
    let issued = 1 + NONCE_LEN..1 + NONCE_LEN + ISSUED_LEN;
    spliced[issued.clone()].copy_from_slice(&later[issued]);
    let spliced = URL_SAFE_NO_PAD.encode(spliced);
    assert!(c
        .decode(&spliced, at() + Duration::from_secs(AGE + 5))
        .is_none());
    assert!(!live(&c, &early, AGE + 5));
}

#[test]
fn the_size_limit_is_the_signed_cookies_one() {
    let c = cookies();
    let noise: String = (0..200).map(|_| crate::key::generate().unwrap()).collect();
    // Not compressed: base64 of the JSON plus 49 bytes of version, nonce, time and tag.
    let fits = data(&format!(r#"{{"n":"{}"}}"#, &noise[..2800]));
    assert!(c.encode(&fits, at()).is_ok());
    let over = data(&format!(r#"{{"n":"{}"}}"#, &noise[..3000]));
    assert_too_large(&c.encode(&over, at()).unwrap_err(), ENGINE);
}

#[test]
fn debug_shows_no_key() {
    let shown = format!("{:?}", with("s3cret", &["old"]));
    assert!(
        shown.contains("keys: 2") && !shown.contains("s3cret"),
        "{shown}"
    );
}

proptest! {
    #[test]
    fn any_text_decodes_to_nothing_without_panicking(value in ".{0,300}") {
        prop_assert!(cookies().decode(&value, at()).is_none());
    }

    #[test]
    fn any_bytes_behind_the_version_decode_to_nothing(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut raw = vec![VERSION];
        raw.extend(bytes);
        prop_assert!(cookies().decode(&URL_SAFE_NO_PAD.encode(raw), at()).is_none());
    }
}

/// Same secret, two purposes, two keys: a record `encrypt_data` wrote is no cookie, and a
/// cookie is no record.
#[test]
fn the_cookie_key_and_the_at_rest_key_differ() {
    let secret = Secret::new("k1");
    let cookies = PrivateCookies::new(secret.clone(), vec![], AGE, "sessionid").unwrap();
    let records = crate::codec::Codec::encrypted(&secret, &[]);
    let sent = data(r#"{"user":"7"}"#);
    let cookie = cookies.encode(&sent, at()).unwrap();
    assert!(
        records.decode(&cookie).is_err(),
        "a cookie opened as a record"
    );
    let record = records.encode(&sent).unwrap();
    let record = std::str::from_utf8(&record).unwrap();
    assert!(
        cookies.decode(record, at()).is_none(),
        "a record opened as a cookie"
    );
}
