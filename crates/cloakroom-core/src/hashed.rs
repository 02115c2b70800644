//! The `hash_keys` setting: the store holds a SHA-256 of each session key, never the key.
//!
//! The cookie still carries the key itself; every key the core hands the store (`load`,
//! `create`, `update`, `touch`, `delete`) goes through [`stored_key`] first. A dump of
//! the session table, a listing of Redis keys or of the session folder then yields nothing a
//! browser could present as a cookie: finding a key from its hash means inverting SHA-256 over
//! 32 characters drawn from the OS CSPRNG (about 165 bits).
//!
//! A Django app looks sessions up by the raw key, so it cannot share a store written this way.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::decorate::{Decorated, Decorator};

/// How many hex characters of the digest are kept: Django's `session_key` is a
/// `varchar(40)`, and 160 bits is far beyond any guessing.
pub const STORED_KEY_LEN: usize = 40;

/// The name a store used with `settings` knows session `key` by: the key itself, or under
/// `hash_keys` its [`stored_key`]. It is the [`UserSession::id`](crate::UserSession::id) that
/// [`Sessions::sessions_of`](crate::Sessions::sessions_of) lists, so an app can mark the
/// current session in that list.
pub fn stored_id(settings: &Settings, key: &str) -> String {
    if settings.session.hash_keys {
        stored_key(key)
    } else {
        key.to_owned()
    }
}

/// The name under which the store keeps the session `key`: the first 40 hex characters
/// (lowercase) of SHA-256 of the key. It is still a well-formed key (`[a-z0-9]`, 40 long), so
/// every engine accepts it.
pub fn stored_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(STORED_KEY_LEN);
    for byte in digest.iter() {
        if hex.len() >= STORED_KEY_LEN {
            break;
        }
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The decorator of `hash_keys`: the inner store sees [`stored_key`] of every key, and of
/// every id the core links or unlinks in its user index. The ids the index lists are already
/// hashes (what the store holds), and [`UserIndex::revoke`](crate::UserIndex::revoke) takes
/// them as listed, so a listing never shows a key that works as a cookie. The cookie still
/// carries the key itself.
///
/// Use it only on a store that keeps its data on the server (a signed-cookie store has no key
/// to hash; [`crate::Sessions`] refuses that pairing).
#[derive(Debug, Clone, Copy, Default)]
pub struct HashKeys;

impl Decorator for HashKeys {
    fn key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        Cow::Owned(stored_key(key))
    }
}

/// A server-side store seen through [`HashKeys`]: `HashKeys.around(store)`, or
/// `Decorated::new(HashKeys, store)` for a shared one.
pub type HashedKeys = Decorated<HashKeys>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_are_40_hex_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(
            stored_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a3"
        );
        let k = stored_key("abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(k.len(), STORED_KEY_LEN);
        assert!(crate::key::is_well_formed(&k));
    }
}
