//! Any text as stored session data: decoding never panics, what decodes re-encodes to
//! something that decodes to the same data, and its expiry (`_session_expiry`,
//! `_cloakroom_idle`, `_cloakroom_deadline` against the longest valid settings) is computed
//! without a panic or an overflow.
#![no_main]

use cloakroom::codec::Codec;
use cloakroom::config::MAX_COOKIE_AGE;
use cloakroom::expiry::expires_at;
use cloakroom::Settings;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let codec = Codec::Json;
    if let Ok(decoded) = codec.decode(text) {
        let again = codec
            .decode(codec.encode(&decoded).expect("JSON encoding never fails"))
            .expect("re-encoded data decodes");
        assert_eq!(again, decoded);
        let longest = Settings::default()
            .with_cookie_age(MAX_COOKIE_AGE)
            .with_idle_timeout(Some(MAX_COOKIE_AGE))
            .with_absolute_lifetime(Some(MAX_COOKIE_AGE));
        longest.validate().expect("the longest lifetimes are valid");
        for now in [
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::now_utc(),
            // Near the end of the calendar `time` knows: the sums must still not overflow.
            time::macros::datetime!(9999-12-31 23:59:59 UTC),
        ] {
            let _ = expires_at(&decoded, &longest.session, now);
            let _ = expires_at(&decoded, &Settings::default().session, now);
        }
    }
});
