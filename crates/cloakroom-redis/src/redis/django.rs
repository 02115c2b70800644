//! Django's cache layout: the keys Django's `cache` and `cached_db` session engines use (the
//! values are in `value.rs`: under Django's format a value is the record's bytes as they are,
//! a pickle ([`Codec::DjangoCache`](crate::codec::Codec::DjangoCache)), exactly the bytes
//! Django's `RedisCache` reads and writes).

/// The part of the key Django's `cache` session engine puts before the session key.
pub const CACHE_SESSION_PREFIX: &str = "django.contrib.sessions.cache";
/// The part of the key Django's `cached_db` session engine puts before the session key.
pub const CACHED_DB_SESSION_PREFIX: &str = "django.contrib.sessions.cached_db";

/// Django's cache key for a session: `<prefix>:<version>:<session prefix>`, the head every key
/// of a store starts with (`docs/format.md` §5).
pub(super) fn key_head(key_prefix: &str, version: i64, session_prefix: &str) -> String {
    format!("{key_prefix}:{version}:{session_prefix}")
}
