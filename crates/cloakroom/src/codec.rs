//! Session data ⇄ the text a store keeps.
//!
//! Session data is a JSON object. [`Codec::Json`] stores it as plain JSON: the fastest form,
//! for stores that only cloakroom reads.

use serde_json::{Map, Value};

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
}

impl Codec {
    /// Encodes session data for storage.
    pub fn encode(&self, data: &Data) -> String {
        match self {
            // Serializing a map of `Value`s cannot fail: its keys are strings already.
            Self::Json => serde_json::to_string(data).unwrap_or_else(|_| String::from("{}")),
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
    fn non_objects_and_garbage_are_rejected() {
        assert!(Codec::Json.decode("[1,2]").is_err());
        assert!(Codec::Json.decode("{\"a\":").is_err());
        assert!(Codec::Json.decode("").is_err());
    }
}
