//! What a Redis value holds: the one place that knows the value encoding.
//!
//! - **Django's layout** (a store with binary values, that is `data_format = "django"`): the
//!   record's bytes as they are, a pickle exactly as Django's `RedisCache` reads and writes it;
//!   the expiry is the key's TTL alone (`PTTL`).
//! - **Ours** (every other store): a 15-byte header, then the record's bytes (UTF-8 text: JSON,
//!   or the sealed text of `encrypt_data`). The header is `0xFF`, the expiry in ms since the
//!   Unix epoch (6 bytes, big-endian), and the first 8 bytes of the data's SHA-1. A load is one
//!   `GET` (the expiry travels with the data), and the compare-and-swap compares the 8-byte
//!   digest (`GETRANGE` of the header) rather than the whole value sent back to Redis. The key
//!   still carries its TTL, so Redis drops it when it ends.
//! - **Ours before the header** (written by cloakroom before 0.2, still read): the bare UTF-8
//!   text; its expiry is the key's TTL, read with a second command. `0xFF` never starts UTF-8
//!   text, so the two shapes cannot be mistaken for each other; the next save or touch writes
//!   the header.
//!
//! 15 bytes keep a `{"visits":1}` session at 152 bytes of `MEMORY USAGE` (against 136 bare; a
//! header of 17–29 bytes costs 168, a hash with data and expiry fields 168, and a hash's
//! `HGETALL` 0.41 µs of Redis time against 0.24 µs for `GET`: docs/performance.md, "Redis,
//! second round").

use bytes::{BufMut as _, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;

/// The first byte of a value with our header (never the first byte of UTF-8 text).
pub(super) const MAGIC: u8 = 0xFF;
/// How many bytes of the value are the header.
pub(super) const HEADER_LEN: usize = 1 + EXPIRY_LEN + DIGEST_LEN;
const EXPIRY_LEN: usize = 6;
/// The compare-and-swap token's length: 64 bits of SHA-1. Finding other data with the
/// digest of a given record (a second preimage: what a lost update would take) costs about
/// 2^64 SHA-1 computations; an accidental match about one conflict in 2^64.
pub(super) const DIGEST_LEN: usize = 8;
/// The latest expiry 6 bytes of ms hold (year 10889); later ones (`NO_EXPIRY`, 9999, fits)
/// are kept as this.
const MAX_EXPIRY_MS: i64 = (1 << (8 * EXPIRY_LEN)) - 1;

/// The compare-and-swap token of `data`: the first [`DIGEST_LEN`] bytes of its SHA-1.
pub(super) fn digest(data: &[u8]) -> [u8; DIGEST_LEN] {
    let full = Sha1::digest(data);
    let mut out = [0; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

/// The header of a value holding data of digest `digest` that expires at `expires_at`.
pub(super) fn header(digest: &[u8; DIGEST_LEN], expires_at: OffsetDateTime) -> [u8; HEADER_LEN] {
    let ms = i64::try_from(expires_at.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(MAX_EXPIRY_MS)
        .clamp(0, MAX_EXPIRY_MS);
    let mut out = [0; HEADER_LEN];
    out[0] = MAGIC;
    out[1..=EXPIRY_LEN].copy_from_slice(&ms.to_be_bytes()[8 - EXPIRY_LEN..]);
    out[1 + EXPIRY_LEN..].copy_from_slice(digest);
    out
}

/// Our value for `data` expiring at `expires_at`: the header, then the data.
pub(super) fn frame(data: &[u8], expires_at: OffsetDateTime) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + data.len());
    out.put_slice(&header(&digest(data), expires_at));
    out.put_slice(data);
    out.freeze()
}

/// What a value read from Redis holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stored {
    /// Our header and data: everything a load needs.
    Framed {
        data: Bytes,
        expires_at: OffsetDateTime,
    },
    /// Django's layout, or ours before the header: the data; its expiry is the key's TTL.
    Bare(Bytes),
}

/// What the value `raw` holds, or `None` when it is not one we could have written: a header
/// cut short, or (without `binary`: a text codec) data that is not UTF-8.
///
/// A store with `binary` values keeps Django's layout, where a value is only the data: no
/// header is looked for.
pub(super) fn read(binary: bool, raw: Bytes) -> Option<Stored> {
    if binary {
        return Some(Stored::Bare(raw));
    }
    if raw.first() != Some(&MAGIC) {
        return std::str::from_utf8(&raw)
            .is_ok()
            .then_some(Stored::Bare(raw));
    }
    let head = raw.get(..HEADER_LEN)?;
    let mut ms = [0; 8];
    ms[8 - EXPIRY_LEN..].copy_from_slice(&head[1..=EXPIRY_LEN]);
    let ms = i64::from_be_bytes(ms);
    let expires_at = OffsetDateTime::UNIX_EPOCH
        .checked_add(time::Duration::milliseconds(ms))
        .unwrap_or(super::store::NO_EXPIRY);
    let data = raw.slice(HEADER_LEN..);
    std::str::from_utf8(&data)
        .is_ok()
        .then_some(Stored::Framed { data, expires_at })
}

/// The bytes of a reply that holds a value (a bulk string: fred answers text for UTF-8 and
/// bytes otherwise), without copying them.
pub(super) fn bytes_of(value: fred::types::Value) -> Option<Bytes> {
    match value {
        fred::types::Value::Bytes(bytes) => Some(bytes),
        fred::types::Value::String(text) => Some(text.into_inner()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_framed_value_gives_back_its_data_and_expiry() {
        let at = datetime!(2026-12-04 15:39:14.123 UTC);
        let value = frame(b"{\"visits\":1}", at);
        assert_eq!(value.len(), HEADER_LEN + 12);
        assert_eq!(value[0], 0xFF);
        assert_eq!(
            &value[1 + EXPIRY_LEN..HEADER_LEN],
            &digest(b"{\"visits\":1}")
        );
        assert_eq!(
            read(false, value),
            Some(Stored::Framed {
                data: Bytes::from_static(b"{\"visits\":1}"),
                expires_at: at,
            })
        );
    }

    #[test]
    fn expiries_are_kept_to_the_millisecond_within_six_bytes() {
        let never = super::super::store::NO_EXPIRY;
        let Some(Stored::Framed { expires_at, .. }) = read(false, frame(b"{}", never)) else {
            panic!("not framed");
        };
        assert_eq!(expires_at, never);
        let before = datetime!(1960-01-01 0:00 UTC);
        let Some(Stored::Framed { expires_at, .. }) = read(false, frame(b"{}", before)) else {
            panic!("not framed");
        };
        assert_eq!(
            expires_at,
            OffsetDateTime::UNIX_EPOCH,
            "long expired, and still read"
        );
    }

    #[test]
    fn values_without_the_header_are_read_as_they_are() {
        // Written before the header: UTF-8 text, never starting with 0xFF.
        assert_eq!(
            read(false, Bytes::from_static(b"{\"a\":1}")),
            Some(Stored::Bare(Bytes::from_static(b"{\"a\":1}")))
        );
        // Django's pickles are never looked into, whatever their first byte.
        let pickle = Bytes::from_static(&[0xFF, 0x80, 0x05, 0x95]);
        assert_eq!(read(true, pickle.clone()), Some(Stored::Bare(pickle)));
    }

    #[test]
    fn what_a_text_store_never_wrote_is_no_value() {
        assert_eq!(read(false, Bytes::from_static(&[0x80, 0x05])), None);
        assert_eq!(
            read(false, Bytes::from_static(&[0xFF, 0, 0])),
            None,
            "short header"
        );
        let mut bad = frame(b"{}", OffsetDateTime::UNIX_EPOCH).to_vec();
        bad.push(0xC3);
        assert_eq!(
            read(false, Bytes::from(bad)),
            None,
            "data that is not UTF-8"
        );
    }
}
