//! Any bytes as `Cookie` header values: finding the session cookie never panics, and what it
//! finds is a piece of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if let Some(value) = cloakroom::cookies::find(headers.iter().copied(), "sessionid") {
        assert!(value.len() <= data.len());
        let _ = cloakroom::key::is_well_formed(value);
    }
});
