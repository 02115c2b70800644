//! Any text as a private cookie value, and any bytes behind the format's version byte:
//! decoding never panics and accepts nothing this key did not encrypt; what JSON the input
//! holds round-trips through `encode`; and a value with any one byte changed no longer
//! decodes.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cloakroom::engines::private_cookie::PrivateCookies;
use cloakroom::Secret;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let cookies = PrivateCookies::new(Secret::new("fuzz-secret"), vec![], 3600, "sessionid")
        .expect("a non-empty secret");
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    // Arbitrary text, and arbitrary bytes shaped like a value: refused, without a panic.
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(cookies.decode(text, now).is_none(), "made-up text decoded");
    }
    let mut shaped = vec![1u8];
    shaped.extend_from_slice(data);
    assert!(
        cookies.decode(&URL_SAFE_NO_PAD.encode(&shaped), now).is_none(),
        "made-up bytes decoded"
    );
    // Session data the input spells: its own value loads back the same, and any one byte
    // changed breaks it.
    let Ok(session) = serde_json::from_slice(data) else {
        return;
    };
    let Ok(value) = cookies.encode(&session, now) else {
        return; // over the 4 KB a browser keeps
    };
    let (back, _) = cookies.decode(&value, now).expect("our own value decodes");
    assert_eq!(back, session);
    let mut raw = URL_SAFE_NO_PAD.decode(&value).expect("our own value is base64url");
    let at = data.first().map_or(0, |b| usize::from(*b)) % raw.len();
    raw[at] ^= data.last().map_or(1, |b| b | 1);
    assert!(
        cookies.decode(&URL_SAFE_NO_PAD.encode(raw), now).is_none(),
        "a changed byte {at} decoded"
    );
});
