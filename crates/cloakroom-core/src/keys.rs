//! The session data keys that are not the application's: Django's own (its auth framework's,
//! its per-session expiry, its CSRF token) and cloakroom's (`_cloakroom_*`), each defined here
//! once, with the ranges the core accepts for the values it writes itself.
//!
//! A Django app sharing the store reads and writes Django's keys exactly as cloakroom does, and
//! sees cloakroom's as a few more keys it ignores. An application should not write any of them
//! directly: [`Session`](crate::Session)'s methods do.

use serde_json::Value;

use crate::data::{lookup, Data};

/// Django's `SESSION_KEY`: where `login()` keeps the logged-in user's primary key.
pub const AUTH_USER_ID: &str = "_auth_user_id";
/// Django's `BACKEND_SESSION_KEY`: the dotted path of the backend that authenticated the user.
pub const AUTH_USER_BACKEND: &str = "_auth_user_backend";
/// Django's `HASH_SESSION_KEY`: the session auth hash derived from the user's password.
pub const AUTH_USER_HASH: &str = "_auth_user_hash";
/// Django's `django.contrib.auth` keys, which a key rotated away (`cycle_key`) never keeps: an
/// old key is never logged in.
pub const AUTH_KEYS: [&str; 3] = [AUTH_USER_ID, AUTH_USER_BACKEND, AUTH_USER_HASH];
/// Django's per-session expiry (`set_expiry`): seconds after each save, 0 for browser close,
/// or an ISO 8601 instant (see [`crate::expiry`]).
pub const EXPIRY_KEY: &str = "_session_expiry";
/// Django's `CSRF_SESSION_KEY` (with `CSRF_USE_SESSIONS = True`): the CSRF secret, kept in the
/// session (see `cloakroom::csrf`).
pub const CSRF_SESSION_KEY: &str = "_csrftoken";

/// cloakroom's per-session idle timeout in seconds (overrides the `idle_timeout` setting).
pub const IDLE_KEY: &str = "_cloakroom_idle";
/// cloakroom's absolute deadline: the instant (ISO 8601) at which the session ends however
/// active it is (the `absolute_lifetime` setting).
pub const DEADLINE_KEY: &str = "_cloakroom_deadline";
/// In a record left behind by `cycle_key()` under a rotation grace window: the new key.
pub const MOVED_KEY: &str = "_cloakroom_moved_to";
/// In the record `cycle_key` leaves under the old key for the grace window: when the key was
/// rotated. The rest of the record is the session as it was then, read-only.
pub const ROTATED_KEY: &str = "_cloakroom_rotated";
/// Where [`Session::record_client`](crate::Session::record_client) keeps the client's
/// `User-Agent` and address, so that every write of the session (on any app server) carries
/// them to the user index.
pub const CLIENT_KEY: &str = "_cloakroom_client";

/// The longest session lifetime cloakroom accepts, in seconds (about 110 years): far beyond any
/// real use, and small enough that "now + lifetime" is always a representable date. It bounds
/// the lifetime settings and the lifetimes kept under the keys above alike.
pub const MAX_COOKIE_AGE: u64 = 400 * 86_400 * 100;

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

/// Why stored session data cannot be used as it is: a reserved key out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReservedError {
    /// `_cloakroom_idle` is not a whole number of seconds between 1 and [`MAX_COOKIE_AGE`].
    #[error(
        "`{IDLE_KEY}` is {value}, not a whole number of seconds between 1 and {MAX_COOKIE_AGE}"
    )]
    Idle {
        /// The stored value, as JSON text (at most 40 characters).
        value: String,
    },
}

/// Checks the reserved keys that cloakroom itself writes (`_cloakroom_idle`): a stored value
/// out of range came from elsewhere (a row an app wrote, a crafted value) and makes the whole
/// session corrupt data, as Django treats data it cannot decode. `_session_expiry` is Django's
/// and keeps Django's reading (see [`crate::expiry`]): out-of-range numbers are clamped.
///
/// # Errors
/// [`ReservedError`] naming the key and the value.
pub fn check_reserved(data: &Data) -> Result<(), ReservedError> {
    match lookup(data, IDLE_KEY) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n))
            if n.as_u64()
                .is_some_and(|s| (1..=MAX_COOKIE_AGE).contains(&s)) =>
        {
            Ok(())
        }
        Some(other) => {
            let value = other.to_string().chars().take(40).collect();
            Err(ReservedError::Idle { value })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_djangos_auth_user_id_as_text() {
        let data: Data = serde_json::from_str(r#"{"_auth_user_id": 42}"#).unwrap();
        assert_eq!(user_id(&data).as_deref(), Some("42"));
        let data: Data = serde_json::from_str(r#"{"_auth_user_id": "ana"}"#).unwrap();
        assert_eq!(user_id(&data).as_deref(), Some("ana"));
        let data: Data = serde_json::from_str(r#"{"username": "ana"}"#).unwrap();
        assert_eq!(user_id(&data), None);
    }

    #[test]
    fn cloakrooms_own_keys_share_one_prefix() {
        for key in [IDLE_KEY, DEADLINE_KEY, MOVED_KEY, ROTATED_KEY, CLIENT_KEY] {
            assert!(key.starts_with("_cloakroom_"), "{key}");
        }
    }
}
