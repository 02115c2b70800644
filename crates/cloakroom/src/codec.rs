//! Session data ⇄ the text a store keeps.
//!
//! Session data is a JSON object. [`Codec::Json`] stores it as plain JSON: the fastest form,
//! for stores that only cloakroom reads. [`Codec::Django`] stores it exactly as Django's
//! `SessionStore.encode` does (signed, maybe compressed; see [`crate::signing`]), so a Django
//! app and a cloakroom app can share one `db`, `cached_db` or `file` store.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::config::Secret;
use crate::signing::{Signer, SESSION_SALT};

/// The session data: a JSON object whose keys keep their insertion order (as Python dicts do).
pub type Data = Map<String, Value>;

/// The value under `key`. A session holds a handful of keys, and comparing that many short
/// strings is several times cheaper than hashing `key` with the map's SipHash, which the core
/// would otherwise pay for each of the special keys it checks on every request.
pub(crate) fn lookup<'a>(data: &'a Data, key: &str) -> Option<&'a Value> {
    if data.len() <= 8 {
        data.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        data.get(key)
    }
}

/// The value under `key`, to change in place (see [`lookup`]).
pub(crate) fn lookup_mut<'a>(data: &'a mut Data, key: &str) -> Option<&'a mut Value> {
    if data.len() <= 8 {
        data.iter_mut().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        data.get_mut(key)
    }
}

/// Django's `SESSION_KEY`: where `login()` keeps the logged-in user's primary key.
pub const AUTH_USER_ID: &str = "_auth_user_id";

/// The user a session's data belongs to (`_auth_user_id`, text or a number as Django reads
/// it), as [`Session::user_id`](crate::Session::user_id) reads it: for tools that decode
/// stored sessions themselves (an admin listing, a migration script).
pub fn user_id(data: &Data) -> Option<String> {
    match lookup(data, AUTH_USER_ID)? {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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
    /// A cached value's record text is not base64.
    #[error("cached session record is not base64")]
    Base64,
    /// A reserved key holds a value out of its range (see [`crate::expiry::check_reserved`]).
    #[error("stored session data has an out-of-range value: {0}")]
    Reserved(#[from] crate::expiry::ReservedError),
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
    /// the `cache` and `cached_db` session keys; not signed, as in Django). The record text is
    /// the standard base64 of the pickle, and a Redis store
    /// [`with_binary_values`](crate::engines::redis::RedisStore::with_binary_values) stores the
    /// pickle bytes themselves. Reads pickles of protocols 0 to 5, writes protocol 2; never
    /// reads an opcode that builds a Python object (see [`crate::pickle`]).
    DjangoCache,
}

impl Codec {
    /// Django's format with this secret and these fallbacks.
    pub fn django(secret: Secret, fallbacks: Vec<Secret>) -> Self {
        Self::Django { secret, fallbacks }
    }

    /// Encodes session data for storage.
    pub fn encode(&self, data: &Data) -> String {
        match self {
            // Serializing a map of `Value`s cannot fail: its keys are strings already.
            Self::Json => serde_json::to_string(data).unwrap_or_else(|_| String::from("{}")),
            Self::Django { secret, fallbacks } => Signer::new(secret, fallbacks, SESSION_SALT)
                .dumps(data, true, OffsetDateTime::now_utc()),
            Self::DjangoCache => STANDARD.encode(crate::pickle::dumps(data)),
        }
    }

    /// Decodes stored text back into session data.
    ///
    /// # Errors
    /// [`DecodeError`] when the text is not what this codec writes, or holds a reserved key
    /// out of range; the caller treats the session as new and logs a warning.
    pub fn decode(&self, text: &str) -> Result<Data, DecodeError> {
        let data = self.decode_unchecked(text)?;
        crate::expiry::check_reserved(&data)?;
        Ok(data)
    }

    fn decode_unchecked(&self, text: &str) -> Result<Data, DecodeError> {
        match self {
            Self::Json => Ok(serde_json::from_str(text)?),
            // Django reads session_data without a max age: expiry is the store's business.
            Self::Django { secret, fallbacks } => Signer::new(secret, fallbacks, SESSION_SALT)
                .loads(text, None, OffsetDateTime::now_utc())
                .map_err(|e| DecodeError::Signature(e.reason())),
            Self::DjangoCache => {
                let bytes = STANDARD.decode(text).map_err(|_| DecodeError::Base64)?;
                Ok(crate::pickle::loads(&bytes)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_user_is_djangos_auth_user_id_as_text() {
        let data: Data = serde_json::from_str(r#"{"_auth_user_id": 42}"#).unwrap();
        assert_eq!(super::user_id(&data).as_deref(), Some("42"));
        let data: Data = serde_json::from_str(r#"{"_auth_user_id": "ana"}"#).unwrap();
        assert_eq!(super::user_id(&data).as_deref(), Some("ana"));
        let data: Data = serde_json::from_str(r#"{"username": "ana"}"#).unwrap();
        assert_eq!(super::user_id(&data), None);
    }

    use super::*;

    #[test]
    fn json_round_trips_and_keeps_order() {
        let mut data = Data::new();
        data.insert("z".into(), Value::from(1));
        data.insert("a".into(), Value::from("é😀"));
        let text = Codec::Json.encode(&data);
        assert_eq!(text, r#"{"z":1,"a":"é😀"}"#);
        assert_eq!(Codec::Json.decode(&text).unwrap(), data);
    }

    #[test]
    fn django_round_trips_and_rejects_other_keys_and_salts() {
        let codec = Codec::django(Secret::new("new"), vec![Secret::new("old")]);
        let mut data = Data::new();
        data.insert("z".into(), Value::from(1));
        data.insert("a".into(), Value::from("é😀"));
        let text = codec.encode(&data);
        assert!(text.is_ascii());
        assert_eq!(codec.decode(&text).unwrap(), data);

        let old = Codec::django(Secret::new("old"), vec![]);
        assert_eq!(
            codec.decode(&old.encode(&data)).unwrap(),
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
}
