//! The `signed_cookies` engine: the session data itself, signed, in the cookie; nothing on the
//! server. It is not a store: the core sends the data to the client instead of to a store
//! ([`Backing::Cookie`](crate::Backing::Cookie)), and [`SignedCookies`] only turns a
//! cookie value into data and an expiry and back.
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
//!   [`encode`](SignedCookies::encode) refuses such a session with
//!   [`StoreError::TooLarge`] instead of letting it vanish.
//!
//! One thing it does beyond Django: a per-session expiry (`set_expiry`) is enforced when the
//! cookie is read, not only through the cookie's `Max-Age` (Django checks only `cookie_age`,
//! ticket #19201), so a replayed short-lived cookie does not outlive its expiry.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::codec::Data;
use crate::config::Secret;
use crate::error::{ConfigError, OpenError, StoreError};
use crate::expiry::parse_iso;
use crate::keys::EXPIRY_KEY;
use crate::signing::{Signer, COOKIE_SALT};

/// The engine's name in logs, metrics and errors (Django's module name).
pub const ENGINE: &str = "signed_cookies";

/// The largest cookie browsers are required to keep (RFC 6265 §6.1), counting its name, value
/// and attributes.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// The attributes a session cookie usually carries, counted against [`MAX_COOKIE_BYTES`]
/// (the exact ones are the layer's; a domain adds its length on top).
const TYPICAL_ATTRIBUTES: &str =
    "; expires=Wed, 15 Jan 2025 00:00:00 GMT; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax; Secure";

/// How far a cookie's compressed payload may inflate. A cookie holds at most ~3 KB of
/// compressed data, which real session data never inflates a thousandfold.
const MAX_DECOMPRESSED: usize = 1024 * 1024;

/// Cookie values longer than this cannot have been issued here; they are refused before any
/// hashing.
const MAX_ACCEPTED_VALUE: usize = 2 * MAX_COOKIE_BYTES;

/// Sessions kept in the cookie, signed with Django's format: what the core needs to send the
/// data to the client ([`Backing::Cookie`](crate::Backing::Cookie)). See the
/// [module docs](self) for what this engine cannot do.
#[derive(Clone, Debug)]
pub struct SignedCookies {
    signer: Signer,
    limits: Limits,
}

impl SignedCookies {
    /// Cookies signed with `secret` (Django's `SECRET_KEY`), also accepted when signed with
    /// any of `fallbacks` (`SECRET_KEY_FALLBACKS`), refused once older than `cookie_age`
    /// seconds, and sized as cookies named `cookie_name`.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `secret_key` when the secret is empty (anyone could sign
    /// sessions), as Django refuses an empty `SECRET_KEY`.
    ///
    /// # Examples
    /// ```
    /// use cloakroom_core::engines::cookie::SignedCookies;
    /// use cloakroom_core::{Secret, Sessions, Settings};
    ///
    /// let cookies = SignedCookies::new(Secret::new("a long random secret"), vec![], 1_209_600, "sessionid")?;
    /// let sessions = Sessions::from_backing(cookies, Settings::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        secret: Secret,
        fallbacks: Vec<Secret>,
        cookie_age: u64,
        cookie_name: impl Into<String>,
    ) -> Result<Self, OpenError> {
        require_secret(&secret, "it signs the session cookies")?;
        Ok(Self {
            signer: Signer::new(&secret, &fallbacks, COOKIE_SALT)
                .with_max_decompressed(MAX_DECOMPRESSED),
            limits: Limits::new(cookie_age, cookie_name.into()),
        })
    }

    /// The engine's name, [`ENGINE`].
    pub fn engine(&self) -> &'static str {
        ENGINE
    }

    /// The data a cookie value carries and the instant it stops being accepted, if it verifies
    /// at `now`. Anything that does not (tampered, signed with an unknown key, older than
    /// `cookie_age`, past its own expiry, or garbage) is `None`: every client can send
    /// anything here, so the visitor just gets a fresh session.
    pub fn decode(&self, value: &str, now: OffsetDateTime) -> Option<(Data, OffsetDateTime)> {
        if too_long(value) {
            return None;
        }
        let verified = self
            .signer
            .unsign(value, Some(self.limits.cookie_age), now)
            .and_then(|verified| {
                let data = self.signer.decode_payload(verified.payload)?;
                Ok((data, verified.timestamp))
            });
        let (data, timestamp) = match verified {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(reason = e.reason(), "session cookie refused");
                return None;
            }
        };
        let issued = OffsetDateTime::from_unix_timestamp(timestamp).ok()?;
        let expires_at = self.limits.live_until(&data, issued, now)?;
        Some((data, expires_at))
    }

    /// The cookie value that carries `data`: written as Python's JSON, compressed when
    /// shorter, signed at `now`.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] when the cookie (name, value and the usual attributes) would
    /// be over the [`MAX_COOKIE_BYTES`] browsers keep: a browser would drop it, and the
    /// session with it, without a word.
    pub fn encode(&self, data: &Data, now: OffsetDateTime) -> Result<String, StoreError> {
        let value = self.signer.dumps(data, true, now);
        self.limits.fits(ENGINE, value)
    }
}

/// Whether a cookie value is longer than any issued here ([`MAX_ACCEPTED_VALUE`]): refused
/// before any hashing or decryption.
pub(crate) fn too_long(value: &str) -> bool {
    let long = value.len() > MAX_ACCEPTED_VALUE;
    if long {
        tracing::debug!(len = value.len(), "session cookie too long; ignored");
    }
    long
}

/// Refuses an empty `secret_key` for a client-side engine: anyone could derive its key and
/// read or forge sessions. `why` says what the key does for that engine.
pub(crate) fn require_secret(secret: &Secret, why: &str) -> Result<(), OpenError> {
    if secret.expose().is_empty() {
        return Err(ConfigError::Invalid {
            setting: "secret_key",
            reason: format!("must not be empty: {why}"),
        }
        .into());
    }
    Ok(())
}

/// What every client-side engine checks the same way: how old a cookie may be, and the name
/// its size is counted with.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Cookies older than this are refused (`cookie_age`).
    pub cookie_age: Duration,
    /// The cookie's name, counted against [`MAX_COOKIE_BYTES`].
    pub cookie_name: String,
}

impl Limits {
    pub(crate) fn new(cookie_age: u64, cookie_name: String) -> Self {
        Self {
            cookie_age: Duration::from_secs(cookie_age),
            cookie_name,
        }
    }

    /// `value` back when a cookie carrying it (with its name and the usual attributes) is
    /// within the [`MAX_COOKIE_BYTES`] browsers keep; [`StoreError::TooLarge`] naming `engine`
    /// otherwise, so every client-side engine refuses alike.
    pub(crate) fn fits(&self, engine: &'static str, value: String) -> Result<String, StoreError> {
        let size = self.cookie_name.len() + 1 + value.len() + TYPICAL_ATTRIBUTES.len();
        if size > MAX_COOKIE_BYTES {
            return Err(StoreError::TooLarge {
                engine,
                detail: format!(
                    "the {engine} cookie would be {size} bytes (name, value and typical \
                     attributes), over the {MAX_COOKIE_BYTES}-byte limit browsers keep; store \
                     less in the session, or use a server-side engine (db, cache, cached_db or \
                     file)"
                ),
            });
        }
        Ok(value)
    }

    /// The instant a cookie issued at `issued` carrying `data` stops being accepted:
    /// `cookie_age` after its issue or the session's own expiry, whichever is first; `None`
    /// when that is already past at `now`. A cookie exactly `cookie_age` old still passes, as
    /// in Django; the session's own expiry is a plain instant.
    pub(crate) fn live_until(
        &self,
        data: &Data,
        issued: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        let age = i64::try_from(self.cookie_age.as_secs()).unwrap_or(i64::MAX);
        let by_age = issued
            .checked_add(time::Duration::seconds(age))
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
        if by_age < now {
            return None;
        }
        match own_expiry(data, issued) {
            Some(own) if own <= now => None,
            Some(own) => Some(own.min(by_age)),
            None => Some(by_age),
        }
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

/// The engines' tests; `data` and `at` serve the private engine's too.
#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn cookies() -> SignedCookies {
        SignedCookies::new(Secret::new("s3cret"), vec![], 1_209_600, "sessionid").unwrap()
    }

    pub(crate) fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap()
    }

    pub(crate) fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_735_689_600).unwrap()
    }

    fn live(c: &SignedCookies, value: &str, after: u64) -> bool {
        c.decode(value, at() + Duration::from_secs(after)).is_some()
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let err = SignedCookies::new(Secret::new(""), vec![], 60, "sessionid").unwrap_err();
        assert!(err.to_string().contains("secret_key"), "{err}");
    }

    #[test]
    fn values_round_trip_with_the_cookie_timestamp() {
        let c = cookies();
        let sent = data(r#"{"a":"é","b":[1,2.5]}"#);
        let value = c.encode(&sent, at()).unwrap();
        assert!(value.is_ascii() && value.contains(":1tSm9Y:"), "{value}");
        let (back, expires_at) = c.decode(&value, at()).unwrap();
        assert_eq!(back, sent);
        assert_eq!(expires_at, at() + Duration::from_secs(1_209_600));
    }

    #[test]
    fn a_per_session_expiry_is_enforced_on_read() {
        let c = cookies();
        let value = c.encode(&data(r#"{"_session_expiry":60}"#), at()).unwrap();
        assert!(live(&c, &value, 59));
        assert!(!live(&c, &value, 60));
        let instant = data(r#"{"_session_expiry":"2025-01-01T00:00:30+00:00"}"#);
        let value = c.encode(&instant, at()).unwrap();
        assert!(live(&c, &value, 29));
        assert!(!live(&c, &value, 30));
        // 0 is "until the browser closes": only cookie_age applies on the server.
        let value = c.encode(&data(r#"{"_session_expiry":0}"#), at()).unwrap();
        assert!(live(&c, &value, 86_400));
    }

    #[test]
    fn the_size_limit_counts_name_value_and_attributes() {
        let c = cookies();
        // base36 text compresses to about 5.2 bits a character, then base64 adds a third.
        let noise: String = (0..200).map(|_| crate::key::generate().unwrap()).collect();
        let fits = data(&format!(r#"{{"n":"{}"}}"#, &noise[..3000]));
        assert!(c.encode(&fits, at()).is_ok());
        let over = data(&format!(r#"{{"n":"{}"}}"#, &noise[..6200]));
        assert_too_large(&c.encode(&over, at()).unwrap_err(), ENGINE);
    }

    /// `err` is the size error of `engine`, naming the limit and the way out.
    pub(crate) fn assert_too_large(err: &StoreError, engine: &str) {
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::TooLarge { engine: e, .. } if *e == engine),
            "{msg}"
        );
        assert!(
            msg.contains("4096") && msg.contains("server-side engine"),
            "{msg}"
        );
    }
}
