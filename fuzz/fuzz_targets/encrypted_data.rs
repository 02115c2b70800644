//! Any bytes as a record `encrypt_data` reads back: decrypting never panics and accepts
//! nothing this key did not encrypt (as stored text, and as raw bytes behind the version
//! byte); session data the input spells round-trips through the codec, and a record with any
//! one character changed no longer decodes.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cloakroom::codec::{Codec, Data};
use cloakroom::Secret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::encrypted(&Secret::new("fuzz-secret"), &[Secret::new("fuzz-old")]);
    assert!(codec.decode(data).is_err(), "made-up bytes decrypted");
    let mut shaped = vec![1u8];
    shaped.extend_from_slice(data);
    assert!(
        codec.decode(URL_SAFE_NO_PAD.encode(&shaped)).is_err(),
        "made-up ciphertext decrypted"
    );

    let Ok(session) = serde_json::from_slice::<Data>(data) else {
        return;
    };
    let stored = codec.encode(&session).expect("the OS gives randomness");
    assert_eq!(codec.decode(&stored).expect("our own record decodes"), session);
    let mut changed = stored.to_vec();
    let at = data.first().map_or(0, |b| usize::from(*b)) % changed.len();
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    assert!(codec.decode(&changed).is_err(), "a changed character {at} decoded");
});
