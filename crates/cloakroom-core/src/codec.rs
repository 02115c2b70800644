//! Session data ⇄ the bytes a store keeps.
//!
//! Session data is a JSON object. [`Codec::Json`] stores it as plain JSON: the fastest form,
//! for stores that only cloakroom reads. [`Codec::Django`] stores it exactly as Django's
//! `SessionStore.encode` does (signed, maybe compressed; see [`crate::signing`]), so a Django
//! app and a cloakroom app can share one `db`, `cached_db` or `file` store.

use bytes::Bytes;
use serde::Deserialize;
use time::OffsetDateTime;

pub use crate::data::Data;
pub(crate) use crate::data::{lookup, lookup_mut};
use crate::signing::{Secret, Signer, SESSION_SALT};

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
}

impl Codec {
    /// Django's format with this secret and these fallbacks.
    pub fn django(secret: Secret, fallbacks: Vec<Secret>) -> Self {
        Self::Django { secret, fallbacks }
    }

    /// Encodes session data for storage: UTF-8 text for [`Json`](Self::Json) and
    /// [`Django`](Self::Django) (what SQL engines keep in a text column), a pickle for
    /// [`DjangoCache`](Self::DjangoCache).
    pub fn encode(&self, data: &Data) -> Bytes {
        match self {
            // Serializing a map of `Value`s cannot fail: its keys are strings already.
            Self::Json => serde_json::to_vec(data)
                .map(Bytes::from)
                .unwrap_or_else(|_| Bytes::from_static(b"{}")),
            Self::Django { secret, fallbacks } => {
                Bytes::from(Signer::new(secret, fallbacks, SESSION_SALT).dumps(
                    data,
                    true,
                    OffsetDateTime::now_utc(),
                ))
            }
            Self::DjangoCache => Bytes::from(crate::pickle::dumps(data)),
        }
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
        }
    }
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
            codec.decode(old.encode(&data)).unwrap(),
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
