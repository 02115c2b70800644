//! What the SQL engines share: the table's name rules and the statements' shape.
//!
//! Every SQL engine keeps Django's `django_session` layout, `session_key varchar(40)` primary
//! key, `session_data text` and `expire_date`, with an index on `expire_date`, so a table made
//! by Django works and the other way round.

use crate::error::ConfigError;

/// A checked table name: letters, digits and `_`, not starting with a digit, so it can be
/// quoted into statements safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table(String);

impl Table {
    /// Checks a table name.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the `table` setting.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(ConfigError::Invalid {
                setting: "table",
                reason: format!("`{name}` is not a plain table name (letters, digits, `_`)"),
            })
        }
    }

    /// The bare name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The name of the index on `expire_date`: Django's own for `django_session`, so that a
    /// table made by `cloakroom migrate` matches one made by Django's `migrate`.
    pub fn expiry_index(&self) -> String {
        if self.0 == "django_session" {
            "django_session_expire_date_a5c62663".to_owned()
        } else {
            format!("{}_expire_date_idx", self.0)
        }
    }
}

/// How many rows `clearsessions` deletes per statement, so a large purge never holds a long lock.
pub const CLEAR_BATCH: i64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(Table::new("django_session").is_ok());
        assert!(Table::new("x1").is_ok());
        for bad in ["", "1x", "a-b", "a;drop", "a\"b", "sessions.x"] {
            assert!(Table::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Table::new("django_session").unwrap().expiry_index(),
            "django_session_expire_date_a5c62663"
        );
    }
}
