//! Django's cache format: how session data is kept in a Redis value.
//!
//! The one place that knows the value encoding. By default the record's text is the value, as
//! is: what Django's `cache` engine stores with a JSON serializer. With
//! [`RedisStore::with_binary_values`](super::RedisStore::with_binary_values) the record's text
//! is the standard base64 of the value's bytes (what
//! [`Codec::DjangoCache`](crate::codec::Codec::DjangoCache) writes: a pickle), so Redis holds
//! exactly the bytes Django's `RedisCache` reads and writes. The compare-and-swap compares
//! encoded values, which are then the bytes as stored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;

/// The part of the key Django's `cache` session engine puts before the session key.
pub const CACHE_SESSION_PREFIX: &str = "django.contrib.sessions.cache";
/// The part of the key Django's `cached_db` session engine puts before the session key.
pub const CACHED_DB_SESSION_PREFIX: &str = "django.contrib.sessions.cached_db";

/// The Redis value for a record's text.
pub(super) fn encode_value(binary: bool, data: &str) -> Bytes {
    if binary {
        // Text that is not base64 cannot come from the binary codec; storing it as is keeps it
        // visible to a reader instead of losing the write.
        if let Ok(bytes) = STANDARD.decode(data) {
            return Bytes::from(bytes);
        }
    }
    Bytes::copy_from_slice(data.as_bytes())
}

/// The record text of a Redis value, or `None` when the value is not one we could have written.
pub(super) fn decode_value(binary: bool, raw: &[u8]) -> Option<String> {
    if binary {
        return Some(STANDARD.encode(raw));
    }
    std::str::from_utf8(raw).ok().map(str::to_owned)
}

/// Django's cache key for a session: `<prefix>:<version>:<session prefix>`, the head every key
/// of a store starts with (`FORMAT.md` §5).
pub(super) fn key_head(key_prefix: &str, version: i64, session_prefix: &str) -> String {
    format!("{key_prefix}:{version}:{session_prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_are_the_bytes_base64_carries() {
        let pickle = [0x80u8, 0x05, 0x95, 0xff];
        let text = STANDARD.encode(pickle);
        assert_eq!(&encode_value(true, &text)[..], &pickle[..]);
        assert_eq!(decode_value(true, &pickle).as_deref(), Some(text.as_str()));
        // Text values stay text; bytes that are not UTF-8 are not session data.
        assert_eq!(&encode_value(false, "{}")[..], b"{}");
        assert_eq!(decode_value(false, &pickle), None);
        // Not base64 under the binary codec: kept as is rather than lost.
        assert_eq!(&encode_value(true, "{not base64}")[..], b"{not base64}");
    }

    #[test]
    fn heads_are_djangos() {
        assert_eq!(
            key_head("", 1, CACHE_SESSION_PREFIX),
            ":1:django.contrib.sessions.cache"
        );
    }
}
