//! Session data ⇄ the bytes a store keeps.
//!
//! Session data is a JSON object. [`Codec::Json`] stores it as plain JSON: the fastest form,
//! for stores that only cloakroom reads. [`Codec::Django`] stores it exactly as Django's
//! `SessionStore.encode` does (signed, maybe compressed; see [`crate::signing`]), so a Django
//! app and a cloakroom app can share one `db`, `cached_db` or `file` store.
//! [`Codec::Encrypted`] (the `encrypt_data` setting) stores the JSON encrypted, so the store
//! holds ciphertext only.
//!
//! The codec is where encryption at rest belongs: the bytes it writes are the record's bytes,
//! which the core keeps as the compare-and-swap token of the next save. A decorator around the
//! store would hand the core plaintext while the store compares ciphertext, and every save
//! would look like a conflict (each encryption draws a new nonce).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use time::OffsetDateTime;

pub use crate::data::Data;
pub(crate) use crate::data::{lookup, lookup_mut};
pub use crate::seal::SealError;
use crate::seal::{Purpose, Sealer};
use crate::signing::{Secret, Signer, SESSION_SALT};

/// The HKDF salt of `encrypt_data`'s key (fixed: the secret key is the only secret).
pub const ENCRYPT_KDF_SALT: &[u8] = b"cloakroom.encrypt-data.v1";

/// The HKDF info of `encrypt_data`'s key: a key of its own, never the private cookies' key, so
/// a stored record cannot be presented as a cookie.
pub const ENCRYPT_KDF_INFO: &[u8] = b"cloakroom.encrypt-data.v1 xchacha20poly1305 key";

/// The cipher's use for records at rest (see [`crate::seal`]).
const AT_REST: Purpose = Purpose {
    salt: ENCRYPT_KDF_SALT,
    info: ENCRYPT_KDF_INFO,
    version: 1,
};

/// How server-side stores keep the session data (the `data_format` setting). It lives with the
/// codec, which it chooses (see [`Settings::codec`](crate::Settings::codec)), so the codec
/// needs nothing from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// Plain JSON: the fastest form, for stores only cloakroom reads.
    #[default]
    Json,
    /// Django's own `session_data` format (signed with `secret_key`, see
    /// [`Codec::Django`]) in the `db`, `cached_db` and `file` engines, so a Django app with the
    /// same `SECRET_KEY` shares the store. The `signed_cookies` engine always writes Django's
    /// cookie format, whatever this says.
    Django,
}

impl std::str::FromStr for DataFormat {
    type Err = crate::ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "django" => Ok(Self::Django),
            _ => Err(crate::ConfigError::Invalid {
                setting: "data_format",
                reason: format!("`{s}` is not a data format; use json or django"),
            }),
        }
    }
}

/// Why stored text could not be turned back into session data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The text is not a JSON object.
    #[error("stored session data is not a JSON object: {0}")]
    Json(#[from] serde_json::Error),
    /// A signed value failed verification or is malformed.
    #[error("stored session data failed signature checks: {0}")]
    Signature(&'static str),
    /// A cached value is not a safe pickle of a session dict.
    #[error("cached session data is not a session pickle: {0}")]
    Pickle(#[from] crate::pickle::PickleError),
    /// Signed data (Django's format) is not UTF-8 text, so it cannot be what Django wrote.
    #[error("stored session data is not UTF-8 text")]
    NotText,
    /// A reserved key holds a value out of its range (see [`crate::keys::check_reserved`]).
    #[error("stored session data has an out-of-range value: {0}")]
    Reserved(#[from] crate::keys::ReservedError),
    /// Encrypted data (`encrypt_data`) did not decrypt: changed in the store, or written under
    /// a secret key that is neither `secret_key` nor one of `secret_key_fallbacks`.
    #[error(
        "stored session data does not decrypt with secret_key or any of secret_key_fallbacks \
         (changed in the store, or written under another key)"
    )]
    Decrypt,
}

/// Why session data could not be encoded for the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// `encrypt_data` could not encrypt it.
    #[error(transparent)]
    Encrypt(#[from] SealError),
}

/// The cipher of `encrypt_data`: keys derived from `secret_key` and each of
/// `secret_key_fallbacks` (see [`Codec::Encrypted`]). `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct Encryption {
    sealer: Sealer,
}

impl Encryption {
    /// Keys derived from `secret` (HKDF-SHA256, salt [`ENCRYPT_KDF_SALT`], info
    /// [`ENCRYPT_KDF_INFO`]) to encrypt with and decrypt first, and from each of `fallbacks`
    /// to decrypt older records.
    pub fn new(secret: &Secret, fallbacks: &[Secret]) -> Self {
        Self {
            sealer: Sealer::new(secret, fallbacks, AT_REST),
        }
    }

    fn seal(&self, json: &[u8]) -> Result<Bytes, SealError> {
        let raw = self.sealer.seal(json)?;
        Ok(Bytes::from(URL_SAFE_NO_PAD.encode(raw)))
    }

    fn open(&self, stored: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let raw = URL_SAFE_NO_PAD
            .decode(stored)
            .map_err(|_| DecodeError::Decrypt)?;
        self.sealer.open(&raw, 0).ok_or(DecodeError::Decrypt)
    }
}

/// How session data is written into a store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Codec {
    /// Plain JSON.
    #[default]
    Json,
    /// Django's `session_data` format: `signing.dumps` with the salt
    /// `django.contrib.sessions.SessionStore`, compressed when that is shorter. Encodes with
    /// `secret` (Django's `SECRET_KEY`); decodes with it or any of `fallbacks`
    /// (`SECRET_KEY_FALLBACKS`).
    ///
    /// As in Django, the timestamp inside is not an expiry: the store's expiry is.
    Django {
        /// The key new data is signed with.
        secret: Secret,
        /// Older keys still accepted when reading.
        fallbacks: Vec<Secret>,
    },
    /// Django's cache value: the session dict pickled (what Django's `RedisCache` stores under
    /// the `cache` and `cached_db` session keys; not signed, as in Django). The record holds
    /// the pickle bytes themselves, which a Redis store keeps as its value, byte for byte what
    /// Django's `RedisCache` reads and writes. Reads pickles of protocols 0 to 5, writes protocol 2; never
    /// reads an opcode that builds a Python object (see [`crate::pickle`]).
    DjangoCache,
    /// Plain JSON, encrypted and authenticated (the `encrypt_data` setting): the store holds
    /// base64url (no padding) of `version (1) ‖ nonce (24 random bytes) ‖ XChaCha20-Poly1305
    /// ciphertext and tag`, ASCII text that fits a SQL text column. Written with the key of
    /// `secret_key`, read with it or any of `secret_key_fallbacks`; a record written under a
    /// fallback is written back under `secret_key` at its next save. A record that does not
    /// decrypt is corrupt ([`DecodeError::Decrypt`]): the visitor gets a fresh session.
    ///
    /// cloakroom's own format: Django cannot read it, so it cannot be combined with
    /// `data_format = "django"`.
    Encrypted(Encryption),
}

impl Codec {
    /// Django's format with this secret and these fallbacks.
    pub fn django(secret: Secret, fallbacks: Vec<Secret>) -> Self {
        Self::Django { secret, fallbacks }
    }

    /// Encrypts with the key of `secret` and decrypts with it or any of `fallbacks` (the
    /// `encrypt_data` setting; see [`Encrypted`](Self::Encrypted)).
    pub fn encrypted(secret: &Secret, fallbacks: &[Secret]) -> Self {
        Self::Encrypted(Encryption::new(secret, fallbacks))
    }

    /// Encodes session data for storage: UTF-8 text for [`Json`](Self::Json),
    /// [`Django`](Self::Django) and [`Encrypted`](Self::Encrypted) (what SQL engines keep in
    /// a text column), a pickle for [`DjangoCache`](Self::DjangoCache).
    ///
    /// # Errors
    /// [`EncodeError::Encrypt`] when [`Encrypted`](Self::Encrypted) gets no randomness for its
    /// nonce from the operating system; the other codecs never fail.
    pub fn encode(&self, data: &Data) -> Result<Bytes, EncodeError> {
        Ok(match self {
            Self::Json => json(data),
            Self::Django { secret, fallbacks } => {
                Bytes::from(Signer::new(secret, fallbacks, SESSION_SALT).dumps(
                    data,
                    true,
                    OffsetDateTime::now_utc(),
                ))
            }
            Self::DjangoCache => Bytes::from(crate::pickle::dumps(data)),
            Self::Encrypted(cipher) => cipher.seal(&json(data))?,
        })
    }

    /// Decodes stored text back into session data.
    ///
    /// # Errors
    /// [`DecodeError`] when the text is not what this codec writes, or holds a reserved key
    /// out of range; the caller treats the session as new and logs a warning.
    pub fn decode(&self, stored: impl AsRef<[u8]>) -> Result<Data, DecodeError> {
        let data = self.decode_unchecked(stored.as_ref())?;
        crate::keys::check_reserved(&data)?;
        Ok(data)
    }

    fn decode_unchecked(&self, stored: &[u8]) -> Result<Data, DecodeError> {
        match self {
            Self::Json => Ok(serde_json::from_slice(stored)?),
            // Django reads session_data without a max age: expiry is the store's business.
            Self::Django { secret, fallbacks } => {
                let text = std::str::from_utf8(stored).map_err(|_| DecodeError::NotText)?;
                Signer::new(secret, fallbacks, SESSION_SALT)
                    .loads(text, None, OffsetDateTime::now_utc())
                    .map_err(|e| DecodeError::Signature(e.reason()))
            }
            Self::DjangoCache => Ok(crate::pickle::loads(stored)?),
            Self::Encrypted(cipher) => Ok(serde_json::from_slice(&cipher.open(stored)?)?),
        }
    }
}

/// `data` as JSON. Serializing a map of `Value`s cannot fail: its keys are strings already.
///
/// Written into a buffer this thread keeps and copied once, so the bytes are one allocation
/// of exactly their length: `Bytes` from a vector whose capacity is not its length (as
/// `serde_json::to_vec` leaves it) allocates a second time, for a header of its own.
fn json(data: &Data) -> Bytes {
    /// A buffer grown past this (a large session) is not kept.
    const KEEP: usize = 64 * 1024;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        let bytes = match serde_json::to_writer(&mut *buf, data) {
            Ok(()) => Bytes::copy_from_slice(buf),
            Err(_) => Bytes::from_static(b"{}"),
        };
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn json_round_trips_and_keeps_order() {
        let mut data = Data::new();
        data.insert("z".into(), Value::from(1));
        data.insert("a".into(), Value::from("é😀"));
        let text = Codec::Json.encode(&data).unwrap();
        assert_eq!(text, r#"{"z":1,"a":"é😀"}"#);
        assert_eq!(Codec::Json.decode(&text).unwrap(), data);
    }

    /// The per-thread buffer behind JSON encoding holds nothing over from a large session
    /// (which it does not keep) to a small one.
    #[test]
    fn json_encodings_do_not_carry_over() {
        for text in ["x".repeat(100_000), "y".into(), String::new()] {
            let mut data = Data::new();
            data.insert("k".into(), Value::from(text));
            let stored = Codec::Json.encode(&data).unwrap();
            assert_eq!(stored, serde_json::to_vec(&data).unwrap());
            assert_eq!(Codec::Json.decode(&stored).unwrap(), data);
        }
    }

    #[test]
    fn django_round_trips_and_rejects_other_keys_and_salts() {
        let codec = Codec::django(Secret::new("new"), vec![Secret::new("old")]);
        let mut data = Data::new();
        data.insert("z".into(), Value::from(1));
        data.insert("a".into(), Value::from("é😀"));
        let text = codec.encode(&data).unwrap();
        assert!(text.is_ascii());
        assert_eq!(codec.decode(&text).unwrap(), data);

        let old = Codec::django(Secret::new("old"), vec![]);
        assert_eq!(
            codec.decode(old.encode(&data).unwrap()).unwrap(),
            data,
            "fallback key"
        );
        assert!(matches!(old.decode(&text), Err(DecodeError::Signature(_))));
        let cookie =
            crate::signing::Signer::new(&Secret::new("new"), &[], crate::signing::COOKIE_SALT)
                .dumps(&data, true, OffsetDateTime::now_utc());
        assert!(matches!(
            codec.decode(&cookie),
            Err(DecodeError::Signature(_))
        ));
        assert!(matches!(codec.decode("{}"), Err(DecodeError::Signature(_))));
    }

    #[test]
    fn non_objects_and_garbage_are_rejected() {
        assert!(Codec::Json.decode("[1,2]").is_err());
        assert!(Codec::Json.decode("{\"a\":").is_err());
        assert!(Codec::Json.decode("").is_err());
    }

    fn cart() -> Data {
        let mut data = Data::new();
        data.insert("cart".into(), Value::from("secret-marker-é"));
        data
    }

    #[test]
    fn encrypted_round_trips_without_plaintext_and_with_a_fresh_nonce_each_time() {
        let codec = Codec::encrypted(&Secret::new("k1"), &[]);
        let one = codec.encode(&cart()).unwrap();
        let two = codec.encode(&cart()).unwrap();
        assert_ne!(one, two, "a fresh nonce per write");
        for stored in [&one, &two] {
            assert!(stored.is_ascii(), "fits a text column");
            let text = std::str::from_utf8(stored).unwrap();
            assert!(!text.contains("secret") && !text.contains("cart"), "{text}");
            assert_eq!(codec.decode(stored).unwrap(), cart());
        }
    }

    #[test]
    fn encrypted_reads_fallback_keys_and_writes_the_current_one() {
        let old = Codec::encrypted(&Secret::new("old"), &[]);
        let rotated = Codec::encrypted(&Secret::new("new"), &[Secret::new("old")]);
        let new_only = Codec::encrypted(&Secret::new("new"), &[]);
        let written_before = old.encode(&cart()).unwrap();
        assert_eq!(rotated.decode(&written_before).unwrap(), cart());
        assert!(matches!(
            new_only.decode(&written_before),
            Err(DecodeError::Decrypt)
        ));
        let written_now = rotated.encode(&cart()).unwrap();
        assert_eq!(new_only.decode(&written_now).unwrap(), cart());
        assert!(matches!(
            old.decode(&written_now),
            Err(DecodeError::Decrypt)
        ));
    }

    #[test]
    fn encrypted_refuses_tampering_and_plain_json() {
        let codec = Codec::encrypted(&Secret::new("k1"), &[]);
        let stored = codec.encode(&cart()).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&stored).unwrap();
        for at in [0, 1, 30, raw.len() - 1] {
            raw[at] ^= 1;
            let changed = URL_SAFE_NO_PAD.encode(&raw);
            assert!(codec.decode(&changed).is_err(), "byte {at} changed");
            raw[at] ^= 1;
        }
        for garbage in ["", "{}", "AQ", "not base64!", r#"{"cart":1}"#] {
            assert!(codec.decode(garbage).is_err(), "{garbage:?}");
        }
    }
}
