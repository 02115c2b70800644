//! Session data ⇄ the text a store keeps.
//!
//! Session data is a JSON object. [`Codec::Json`] stores it as plain JSON: the fastest form,
//! for stores that only cloakroom reads. [`Codec::Django`] stores it exactly as Django's
//! `SessionStore.encode` does (signed, maybe compressed; see [`crate::signing`]), so a Django
//! app and a cloakroom app can share one `db`, `cached_db` or `file` store.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::config::Secret;
use crate::signing::{Signer, SESSION_SALT};

/// The session data: a JSON object whose keys keep their insertion order (as Python dicts do).
pub type Data = Map<String, Value>;

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
        }
    }

    /// Decodes stored text back into session data.
    ///
    /// # Errors
    /// [`DecodeError`] when the text is not what this codec writes; the caller treats the
    /// session as new and logs a warning.
    pub fn decode(&self, text: &str) -> Result<Data, DecodeError> {
        match self {
            Self::Json => Ok(serde_json::from_str(text)?),
            // Django reads session_data without a max age: expiry is the store's business.
            Self::Django { secret, fallbacks } => Signer::new(secret, fallbacks, SESSION_SALT)
                .loads(text, None, OffsetDateTime::now_utc())
                .map_err(|e| DecodeError::Signature(e.reason())),
        }
    }
}

#[cfg(test)]
mod tests {
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
