//! Any bytes as the request's key header values and `Cookie` values (split on newlines, the
//! first byte choosing how many are the key header's): finding the key never panics; what the
//! header yields is one trimmed, non-empty, visible-ASCII value of at most 256 bytes, and only
//! when exactly one value was sent; each transport picks what its rules say (the header's key
//! first under `both`).
#![no_main]

use cloakroom::transport::{header_key, Presented, Transport, Via, MAX_HEADER_VALUE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let values: Vec<&[u8]> = rest.split(|b| *b == b'\n').collect();
    let at = usize::from(split).min(values.len());
    let (header_values, cookie_values) = values.split_at(at);

    let key = header_key(header_values.iter().copied());
    if let Some(key) = key {
        assert_eq!(header_values.len(), 1, "a key out of {} values", header_values.len());
        assert!(!key.is_empty() && key.len() <= MAX_HEADER_VALUE, "{key:?}");
        assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
        assert_eq!(key.as_bytes(), header_values[0].trim_ascii());
        let _ = cloakroom::key::is_well_formed(key);
    }

    let presented = Presented {
        cookie: cloakroom::cookies::find(cookie_values.iter().copied(), "sessionid"),
        header: key,
    };
    let cookie = presented.cookie.map(|c| (c, Via::Cookie));
    let header = presented.header.map(|h| (h, Via::Header));
    assert_eq!(presented.pick(Transport::Cookie), cookie);
    assert_eq!(presented.pick(Transport::Header), header);
    assert_eq!(presented.pick(Transport::Both), header.or(cookie));
});
