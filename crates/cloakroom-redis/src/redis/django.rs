//! Django's cache format: how session data is kept in a Redis value.
//!
//! The one place that knows the value encoding: a value is the record's bytes, as they are.
//! Under Django's format those are a pickle
//! ([`Codec::DjangoCache`](crate::codec::Codec::DjangoCache)), so Redis holds exactly
//! the bytes Django's `RedisCache` reads and writes; otherwise they are the UTF-8 text Django's
//! `cache` engine stores with a JSON serializer. The compare-and-swap compares the bytes as
//! stored.

use bytes::Bytes;

/// The part of the key Django's `cache` session engine puts before the session key.
pub const CACHE_SESSION_PREFIX: &str = "django.contrib.sessions.cache";
/// The part of the key Django's `cached_db` session engine puts before the session key.
pub const CACHED_DB_SESSION_PREFIX: &str = "django.contrib.sessions.cached_db";

/// The record data of a Redis value, or `None` when the value is not one we could have
/// written: without `binary` (a text codec), a value that is not UTF-8.
pub(super) fn decode_value(binary: bool, raw: &[u8]) -> Option<Bytes> {
    (binary || std::str::from_utf8(raw).is_ok()).then(|| Bytes::copy_from_slice(raw))
}

/// Django's cache key for a session: `<prefix>:<version>:<session prefix>`, the head every key
/// of a store starts with (`docs/format.md` §5).
pub(super) fn key_head(key_prefix: &str, version: i64, session_prefix: &str) -> String {
    format!("{key_prefix}:{version}:{session_prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_are_kept_as_they_are() {
        let pickle = [0x80u8, 0x05, 0x95, 0xff];
        assert_eq!(decode_value(true, &pickle).as_deref(), Some(&pickle[..]));
        // A text store never wrote bytes that are not UTF-8.
        assert_eq!(decode_value(false, &pickle), None);
        assert_eq!(decode_value(false, b"{}").as_deref(), Some(&b"{}"[..]));
    }
}
