//! Any text as stored session data: decoding never panics, and what decodes re-encodes to
//! something that decodes to the same data.
#![no_main]

use cloakroom::codec::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let codec = Codec::Json;
    if let Ok(decoded) = codec.decode(text) {
        let again = codec.decode(&codec.encode(&decoded)).expect("re-encoded data decodes");
        assert_eq!(again, decoded);
    }
});
