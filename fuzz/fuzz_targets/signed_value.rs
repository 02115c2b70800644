//! Any text as a signed value (Django's `TimestampSigner` format): verifying and decoding never
//! panic; a forged value is refused; a payload that decodes re-signs and loads back to the same
//! data; and a signed value with any one byte changed no longer verifies as the same value.
#![no_main]

use cloakroom::signing::Signer;
use cloakroom::Secret;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let signer = Signer::new(
        &Secret::new("fuzz-secret"),
        &[],
        "django.contrib.sessions.fuzz",
    )
    .with_max_decompressed(1 << 20);
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    // Arbitrary input: whatever it is, never a panic, and never accepted unless it is signed.
    let _ = signer.loads(text, Some(std::time::Duration::from_secs(3600)), now);
    // The payload decoder behind the signature (base64, zlib, Python's JSON).
    if let Ok(decoded) = signer.decode_payload(text) {
        for compress in [false, true] {
            let signed = signer.dumps(&decoded, compress, now);
            let back = signer
                .loads(&signed, None, now)
                .expect("our own value loads");
            assert_eq!(back, decoded);
        }
    }
    // Signing the input and changing one byte of the result breaks the signature.
    let signed = signer.sign(text, now);
    let verified = signer
        .unsign(&signed, None, now)
        .expect("our own signature checks");
    assert_eq!(verified.payload, text);
    if !data.is_empty() {
        let at = usize::from(data[0]) % signed.len();
        let mut bytes = signed.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        if let Ok(tampered) = String::from_utf8(bytes) {
            if tampered != signed {
                if let Ok(v) = signer.unsign(&tampered, None, now) {
                    // Only a change that the signature does not cover can pass: none.
                    panic!("a tampered value verified: {:?}", v.payload);
                }
            }
        }
    }
});
