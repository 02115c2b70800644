//! The `signed_cookies` engine: the session data itself, signed, in the cookie; nothing on the
//! server.
//!
//! The cookie value is Django's (`signing.dumps(data, salt=`[`COOKIE_SALT`]`, compress=True)`),
//! so a Django app with the same `SECRET_KEY` reads cloakroom's cookies and the other way
//! round. A cookie that is tampered with, signed with an unknown key, older than `cookie_age`,
//! or garbage loads as no session, and the visitor starts afresh, as in Django.
//!
//! # What this engine cannot do, and why
//!
//! - **Revoke a session.** The server keeps nothing, so logging out (`flush`) only asks the
//!   browser to drop its cookie. A copy of the cookie (stolen, or kept by a client that ignores
//!   the deletion) stays valid until it is `cookie_age` seconds old. The only server-side lever
//!   is to change `secret_key`, which ends every session at once.
//! - **Merge concurrent requests.** Each response carries the whole session, and the browser
//!   keeps whichever cookie arrives last: a change made by one of two overlapping requests is
//!   lost. Server-side engines compare-and-swap and re-apply changes; here there is nothing to
//!   compare against.
//! - **Hide the data.** The value is signed, not encrypted: the visitor can read it (it is
//!   base64 of JSON, maybe zlib-compressed). Never put secrets in it.
//! - **Hold much.** Browsers drop cookies over about 4 KB, and with them the session.
//!   [`cookie_value`](SessionStore::cookie_value) refuses such a session with
//!   [`StoreError::TooLarge`] instead of letting it vanish.
//!
//! One thing it does beyond Django: a per-session expiry (`set_expiry`) is enforced when the
//! cookie is read, not only through the cookie's `Max-Age` (Django checks only `cookie_age`,
//! ticket #19201), so a replayed short-lived cookie does not outlive its expiry.

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use crate::codec::Data;
use crate::config::Secret;
use crate::error::{ConfigError, OpenError, StoreError};
use crate::expiry::parse_iso;
use crate::keys::EXPIRY_KEY;
use crate::signing::{Signer, COOKIE_SALT};
use crate::store::{ClearExpired, Created, Record, SessionStore, Updated};

const ENGINE: &str = "signed_cookies";

/// The largest cookie browsers are required to keep (RFC 6265 §6.1), counting its name, value
/// and attributes.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// The attributes a session cookie usually carries, counted against [`MAX_COOKIE_BYTES`]
/// (the store does not know the exact ones; a domain adds its length on top).
const TYPICAL_ATTRIBUTES: &str =
    "; expires=Wed, 15 Jan 2025 00:00:00 GMT; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax; Secure";

/// How far a cookie's compressed payload may inflate. A cookie holds at most ~3 KB of
/// compressed data, which real session data never inflates a thousandfold.
const MAX_DECOMPRESSED: usize = 1024 * 1024;

/// Cookie values longer than this cannot have been issued here; they are refused before any
/// hashing.
const MAX_ACCEPTED_VALUE: usize = 2 * MAX_COOKIE_BYTES;

/// The record handed over by the core is not JSON, which this engine needs to re-sign it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the signed_cookies engine needs the session data as JSON (the default codec, `Codec::Json`)"
)]
struct NotJson(#[source] serde_json::Error);

/// Sessions kept in the cookie, signed with Django's format. See the [module docs](self) for
/// what this engine cannot do.
#[derive(Clone, Debug)]
pub struct SignedCookieStore {
    signer: Signer,
    cookie_age: Duration,
    cookie_name: String,
}

impl SignedCookieStore {
    /// A store that signs with `secret` (Django's `SECRET_KEY`), also accepts cookies signed
    /// with any of `fallbacks` (`SECRET_KEY_FALLBACKS`), refuses cookies older than `cookie_age`
    /// seconds, and sizes cookies named `cookie_name`.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `secret_key` when the secret is empty (anyone could sign
    /// sessions), as Django refuses an empty `SECRET_KEY`.
    ///
    /// # Examples
    /// ```
    /// use cloakroom_core::engines::cookie::SignedCookieStore;
    /// use cloakroom_core::{Secret, Sessions, Settings};
    ///
    /// let store = SignedCookieStore::new(Secret::new("a long random secret"), vec![], 1_209_600, "sessionid")?;
    /// let sessions = Sessions::new(store, Settings::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        secret: Secret,
        fallbacks: Vec<Secret>,
        cookie_age: u64,
        cookie_name: impl Into<String>,
    ) -> Result<Self, OpenError> {
        if secret.expose().is_empty() {
            return Err(ConfigError::Invalid {
                setting: "secret_key",
                reason: "must not be empty: it signs the session cookies".into(),
            }
            .into());
        }
        Ok(Self {
            signer: Signer::new(&secret, &fallbacks, COOKIE_SALT)
                .with_max_decompressed(MAX_DECOMPRESSED),
            cookie_age: Duration::from_secs(cookie_age),
            cookie_name: cookie_name.into(),
        })
    }

    /// When a cookie signed at `issued` stops being accepted by age alone.
    fn aged_out_at(&self, issued: OffsetDateTime) -> OffsetDateTime {
        let age = i64::try_from(self.cookie_age.as_secs()).unwrap_or(i64::MAX);
        issued
            .checked_add(time::Duration::seconds(age))
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
    }
}

/// The session's own expiry, if it has one: an idle timeout counted from the save (which is
/// when the cookie was signed), or an instant. `0` (browser close) and the default have none.
fn own_expiry(data: &Data, issued: OffsetDateTime) -> Option<OffsetDateTime> {
    match data.get(EXPIRY_KEY)? {
        Value::Number(n) => n
            .as_i64()
            .filter(|secs| *secs > 0)
            .and_then(|secs| issued.checked_add(time::Duration::seconds(secs))),
        Value::String(at) => parse_iso(at),
        _ => None,
    }
}

#[async_trait]
impl SessionStore for SignedCookieStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    /// Verifies the cookie and returns its data as JSON; anything that does not verify (or has
    /// expired) is `None`, so the visitor gets a fresh session.
    async fn load(&self, cookie: &str, now: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        if cookie.len() > MAX_ACCEPTED_VALUE {
            tracing::debug!(len = cookie.len(), "session cookie too long; ignored");
            return Ok(None);
        }
        let data = self
            .signer
            .unsign(cookie, Some(self.cookie_age), now)
            .and_then(|verified| {
                let data = self.signer.decode_payload(verified.payload)?;
                Ok((data, verified.timestamp))
            });
        let (data, timestamp) = match data {
            Ok(found) => found,
            Err(e) => {
                // Every client can send anything here; not worth more than a debug line.
                tracing::debug!(reason = e.reason(), "session cookie refused");
                return Ok(None);
            }
        };
        let Ok(issued) = OffsetDateTime::from_unix_timestamp(timestamp) else {
            return Ok(None);
        };
        // The age rule (checked by `unsign`) lets a cookie exactly `cookie_age` old pass, as
        // Django does; the session's own expiry is a plain instant.
        let by_age = self.aged_out_at(issued);
        let expires_at = match own_expiry(&data, issued) {
            Some(own) if own <= now => return Ok(None),
            Some(own) => own.min(by_age),
            None => by_age,
        };
        let Ok(json) = serde_json::to_string(&data) else {
            return Ok(None);
        };
        Ok(Some(Record {
            data: json.into(),
            expires_at,
        }))
    }

    async fn create(&self, _key: &str, _record: &Record) -> Result<Created, StoreError> {
        Ok(Created::Stored)
    }

    async fn update(
        &self,
        _key: &str,
        _expected: &[u8],
        _record: &Record,
        _now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        Ok(Updated::Stored)
    }

    async fn delete(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// The record's data, written as Python's JSON, compressed when shorter, signed at `now`.
    fn cookie_value<'a>(
        &self,
        _key: &'a str,
        record: &Record,
        now: OffsetDateTime,
    ) -> Result<Cow<'a, str>, StoreError> {
        let data: Data = serde_json::from_slice(&record.data)
            .map_err(|e| StoreError::backend(ENGINE, NotJson(e)))?;
        let value = self.signer.dumps(&data, true, now);
        let size = self.cookie_name.len() + 1 + value.len() + TYPICAL_ATTRIBUTES.len();
        if size > MAX_COOKIE_BYTES {
            return Err(StoreError::TooLarge {
                engine: ENGINE,
                detail: format!(
                    "the signed cookie would be {size} bytes (name, value and typical \
                     attributes), over the {MAX_COOKIE_BYTES}-byte limit browsers keep; store \
                     less in the session, or use a server-side engine (db, cache, cached_db or \
                     file)"
                ),
            });
        }
        Ok(Cow::Owned(value))
    }

    fn keeps_data_in_cookie(&self) -> bool {
        true
    }
}

/// Nothing is stored, so nothing expires on the server; answers 0 so that `clearsessions`
/// works on every engine.
#[async_trait]
impl ClearExpired for SignedCookieStore {
    async fn clear_expired(&self, _now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SignedCookieStore {
        SignedCookieStore::new(Secret::new("s3cret"), vec![], 1_209_600, "sessionid").unwrap()
    }

    fn record(json: &str) -> Record {
        Record {
            data: json.to_owned().into(),
            expires_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let err = SignedCookieStore::new(Secret::new(""), vec![], 60, "sessionid").unwrap_err();
        assert!(err.to_string().contains("secret_key"), "{err}");
    }

    #[tokio::test]
    async fn values_round_trip_with_the_cookie_timestamp() {
        let s = store();
        let now = OffsetDateTime::from_unix_timestamp(1_735_689_600).unwrap();
        let value = s
            .cookie_value("ignored", &record(r#"{"a":"é","b":[1,2.5]}"#), now)
            .unwrap();
        assert!(value.is_ascii() && value.contains(":1tSm9Y:"), "{value}");
        let back = s.load(&value, now).await.unwrap().unwrap();
        assert_eq!(back.data, r#"{"a":"é","b":[1,2.5]}"#);
        assert_eq!(back.expires_at, now + Duration::from_secs(1_209_600));
    }

    #[tokio::test]
    async fn a_per_session_expiry_is_enforced_on_read() {
        let s = store();
        let now = OffsetDateTime::from_unix_timestamp(1_735_689_600).unwrap();
        let value = s
            .cookie_value("k", &record(r#"{"_session_expiry":60}"#), now)
            .unwrap();
        assert!(s
            .load(&value, now + Duration::from_secs(59))
            .await
            .unwrap()
            .is_some());
        assert!(s
            .load(&value, now + Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        let value = s
            .cookie_value(
                "k",
                &record(r#"{"_session_expiry":"2025-01-01T00:00:30+00:00"}"#),
                now,
            )
            .unwrap();
        assert!(s
            .load(&value, now + Duration::from_secs(29))
            .await
            .unwrap()
            .is_some());
        assert!(s
            .load(&value, now + Duration::from_secs(30))
            .await
            .unwrap()
            .is_none());
        // 0 is "until the browser closes": only cookie_age applies on the server.
        let value = s
            .cookie_value("k", &record(r#"{"_session_expiry":0}"#), now)
            .unwrap();
        assert!(s
            .load(&value, now + Duration::from_secs(86_400))
            .await
            .unwrap()
            .is_some());
    }

    #[test]
    fn non_json_records_are_a_clear_error() {
        let err = store()
            .cookie_value("k", &record("e30:1tSm9Y:sig"), OffsetDateTime::UNIX_EPOCH)
            .unwrap_err();
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("Codec::Json"), "{source}");
    }

    #[test]
    fn the_size_limit_counts_name_value_and_attributes() {
        let s = store();
        let now = OffsetDateTime::UNIX_EPOCH;
        // base36 text compresses to about 5.2 bits a character, then base64 adds a third.
        let noise: String = (0..200).map(|_| crate::key::generate().unwrap()).collect();
        let fits = format!(r#"{{"n":"{}"}}"#, &noise[..3000]);
        assert!(s.cookie_value("k", &record(&fits), now).is_ok());
        let over = format!(r#"{{"n":"{}"}}"#, &noise[..6200]);
        let err = s.cookie_value("k", &record(&over), now).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{msg}");
        assert!(
            msg.contains("4096") && msg.contains("server-side engine"),
            "{msg}"
        );
    }
}
