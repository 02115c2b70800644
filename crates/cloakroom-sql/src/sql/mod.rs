//! What the SQL engines share: the table's name rules, the statements (written once, in each
//! dialect's quoting and placeholders) and, for the server engines, one store generic over its
//! dialect ([`SqlStore`]) and its pool policy ([`ServerOptions`]).
//!
//! Every SQL engine keeps Django's `django_session` layout, `session_key varchar(40)` primary
//! key, `session_data text` and `expire_date`, with an index on `expire_date`, so a table made
//! by Django works and the other way round.

use std::future::Future;

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod breakage;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod driver;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod pool;
mod queries;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod store;

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use driver::{Dialect, Failure, SqlQuery};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use pool::ServerOptions;
pub(crate) use queries::{Flavor, Queries};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use store::{CreateMany, PoolStatus, SqlStore};

use crate::error::{ConfigError, StoreError};
use crate::store::{Batch, Record, Updated};

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

    /// The name of lock `name` on this table across the database (`cloakroom:<table>:<name>`),
    /// so that two apps on two tables never meet at it. Within MySQL's 64-character limit on
    /// lock names: a longer one is shortened to a hash of itself.
    pub fn lock_name(&self, name: &str) -> String {
        const MAX: usize = 64;
        let full = format!("cloakroom:{}:{name}", self.0);
        if full.len() <= MAX {
            return full;
        }
        let hex: String = data_digest(full.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("cloakroom:{}", &hex[..MAX - "cloakroom:".len()])
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

/// The SHA-256 of session data (its UTF-8 bytes), which a server engine's `touch` sends instead of the
/// data: the server hashes what it holds and compares (32 bytes on the wire, not the session).
pub(crate) fn data_digest(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

impl Table {
    /// The user index beside the session table (`<table>_user`): one row per session linked
    /// to a user, `session_key` its primary key and a foreign key to the session table with
    /// `ON DELETE CASCADE`, so any delete of a session (ours, `clearsessions`, Django's own)
    /// takes its entry along.
    pub fn user_table(&self) -> String {
        format!("{}_user", self.0)
    }

    /// The name of the user index table's index on `user_id`.
    pub fn user_id_index(&self) -> String {
        format!("{}_user_user_id_idx", self.0)
    }
}

/// How many rows `clearsessions` deletes per statement, so a large purge never holds a long lock.
pub const CLEAR_BATCH: i64 = 5_000;

/// The answer of a guarded write (`update`, `touch`: `... WHERE session_key = ? AND <the data
/// is as the caller saw it> AND expire_date > now`) that matched `rows` rows.
///
/// One row: it is written. None: the compare-and-swap lost, and `reload` (the engine's `load`)
/// tells the core what is there now, the current record or nothing; one more round trip, paid
/// only under contention.
pub(crate) async fn guarded_write(
    rows: u64,
    reload: impl Future<Output = Result<Option<Record>, StoreError>>,
) -> Result<Updated, StoreError> {
    if rows == 1 {
        return Ok(Updated::Stored);
    }
    Ok(match reload.await? {
        Some(current) => Updated::Conflict(current),
        None => Updated::Missing,
    })
}

/// Runs `batch` (one short `DELETE ... LIMIT` [`CLEAR_BATCH`], its own transaction) until a
/// batch deletes fewer than that, so a large purge never holds many row locks or a long
/// transaction; returns how many went.
pub(crate) async fn clear_in_batches<F: Future<Output = Result<u64, StoreError>>>(
    mut batch: impl FnMut() -> F,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let deleted = batch().await?;
        total += deleted;
        if deleted < CLEAR_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// The `LIMIT` of a scan query for a requested batch size (at least 1).
pub(crate) fn scan_limit(limit: usize) -> i64 {
    i64::try_from(limit.max(1)).unwrap_or(i64::MAX)
}

/// The batch of a scan query (`... WHERE session_key > cursor AND expire_date > now ORDER BY
/// session_key LIMIT limit`): its rows decoded, and the last key as the next cursor when the
/// query filled its limit (so more rows may follow).
pub(crate) fn scan_batch<R>(
    rows: &[R],
    limit: i64,
    decode: impl Fn(&R) -> Result<(String, Record), StoreError>,
) -> Result<Batch, StoreError> {
    let sessions = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let full = i64::try_from(sessions.len()).unwrap_or(i64::MAX) >= limit;
    let next = if full {
        sessions.last().map(|(key, _)| key.clone())
    } else {
        None
    };
    Ok(Batch { sessions, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_derived_name_is_longer_than_the_suffix_config_checks() {
        let table = Table::new("t").unwrap();
        let longest = crate::config::LONGEST_DERIVED_SUFFIX.len() + 1;
        let mut names = vec![
            table.expiry_index(),
            table.user_table(),
            table.user_id_index(),
            format!("{}_session_fk", table.user_table()),
        ];
        #[cfg(feature = "postgres")]
        names.push(crate::postgres::like_index(&table));
        for name in names {
            assert!(name.len() <= longest, "{name}");
        }
    }

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
