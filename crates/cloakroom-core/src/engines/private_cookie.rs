//! The `private_cookies` engine: the session data in the cookie, encrypted and authenticated,
//! so the visitor can neither read nor change it; nothing on the server. Like
//! [`signed_cookies`](super::cookie) it is not a store: [`PrivateCookies`] only turns a cookie
//! value into data and an expiry and back, and the core sends the data to the client
//! ([`Backing::Cookie`](crate::Backing::Cookie)).
//!
//! # The format (cloakroom's own: Django cannot read it)
//!
//! The value is base64url without padding of
//! `version (1 byte, 1) ‖ nonce (24 random bytes) ‖ XChaCha20-Poly1305 ciphertext and tag`.
//! The plaintext is the issue time (8 bytes, big-endian Unix seconds) followed by the session
//! as JSON; the version byte is the associated data, so it is authenticated too. Because the
//! issue time and the session's own expiry (`_session_expiry`) are inside the ciphertext, a
//! visitor cannot stretch a session's life any more than read it.
//!
//! The 32-byte key is HKDF-SHA256 (RFC 5869) of `secret_key`, with salt [`KDF_SALT`] and info
//! [`KDF_INFO`]: a key of its own, so the same `secret_key` signing Django's cookies or
//! hashing keys never serves as this cipher's key directly. Each of `secret_key_fallbacks`
//! derives a key the same way; a cookie is tried against the current key, then each fallback,
//! and written with the current key only, so rotating the secret keeps visitors logged in.
//!
//! The data is not compressed: compressing what an attacker partly controls before
//! encrypting it leaks the rest through the length (the CRIME and BREACH attacks).
//!
//! A value that does not authenticate under any key (tampered, truncated, written with
//! another key, garbage, empty), or is older than `cookie_age` or past its own expiry, loads
//! as no session: the visitor starts afresh, as with a bad signature.
//!
//! # What this engine protects against, and what it cannot do
//!
//! It keeps the data from the visitor's eyes and hands (and from anyone who copies the cookie
//! without the key). It shares every other limit of a session kept in the browser: it cannot
//! **revoke** a session (a copied cookie stays valid until `cookie_age` or its own expiry;
//! only changing `secret_key` ends every session at once), cannot **merge** two overlapping
//! requests (the browser keeps the last cookie), keeps no index of a user's sessions, and
//! **holds** at most about 4 KB ([`encode`](PrivateCookies::encode) refuses more with
//! [`StoreError::TooLarge`], as the signed engine does). Encryption hides the content, not
//! its length.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use time::OffsetDateTime;

use super::cookie::{require_secret, too_long, Limits};
use crate::codec::Data;
use crate::config::Secret;
use crate::error::{OpenError, StoreError};
use crate::seal::{Purpose, Sealer};

/// The engine's name in logs, metrics, errors and settings.
pub const ENGINE: &str = "private_cookies";

/// The HKDF salt the cipher key is derived with (fixed: the secret key is the only secret).
pub const KDF_SALT: &[u8] = b"cloakroom.private-cookies.v1";

/// The HKDF info the cipher key is derived with: what the key is for.
pub const KDF_INFO: &[u8] = b"cloakroom.private-cookies.v1 xchacha20poly1305 key";

/// The first byte of every value: the format, authenticated as associated data, so a later
/// format can be told apart rather than mistaken for tampering.
const VERSION: u8 = 1;

/// The cipher's use here: its key derivation and version byte (see [`crate::seal`]).
const PURPOSE: Purpose = Purpose {
    salt: KDF_SALT,
    info: KDF_INFO,
    version: VERSION,
};

/// The issue time at the start of the plaintext.
const ISSUED_LEN: usize = 8;

/// Sessions kept in the cookie, encrypted: what the core needs to send the data to the client
/// ([`Backing::Cookie`](crate::Backing::Cookie)). See the [module docs](self) for the format
/// and for what this engine cannot do. `Debug` shows no key.
#[derive(Clone)]
pub struct PrivateCookies {
    /// The current key first, then one per fallback secret.
    sealer: Sealer,
    limits: Limits,
}

impl std::fmt::Debug for PrivateCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateCookies")
            .field("sealer", &self.sealer)
            .field("cookie_age", &self.limits.cookie_age)
            .field("cookie_name", &self.limits.cookie_name)
            .finish()
    }
}

impl PrivateCookies {
    /// Cookies encrypted with a key derived from `secret` (`secret_key`), also accepted when
    /// written with a key derived from any of `fallbacks` (`secret_key_fallbacks`), refused
    /// once older than `cookie_age` seconds, and sized as cookies named `cookie_name`.
    ///
    /// # Errors
    /// [`OpenError::Config`] naming `secret_key` when the secret is empty: anyone could
    /// derive the key and read or forge sessions.
    ///
    /// # Examples
    /// ```
    /// use cloakroom_core::engines::private_cookie::PrivateCookies;
    /// use cloakroom_core::{Secret, Sessions, Settings};
    ///
    /// let cookies = PrivateCookies::new(Secret::new("a long random secret"), vec![], 1_209_600, "sessionid")?;
    /// let sessions = Sessions::from_backing(cookies, Settings::default())?;
    /// assert_eq!(sessions.engine(), "private_cookies");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        secret: Secret,
        fallbacks: Vec<Secret>,
        cookie_age: u64,
        cookie_name: impl Into<String>,
    ) -> Result<Self, OpenError> {
        require_secret(
            &secret,
            "the private_cookies engine derives its encryption key from it",
        )?;
        let sealer = Sealer::new(&secret, &fallbacks, PURPOSE);
        let limits = Limits::new(cookie_age, cookie_name.into());
        Ok(Self { sealer, limits })
    }

    /// The engine's name, [`ENGINE`].
    pub fn engine(&self) -> &'static str {
        ENGINE
    }

    /// The data a cookie value carries and the instant it stops being accepted, if it
    /// authenticates under the current key or a fallback and is live at `now`. Anything else
    /// (tampered, truncated, another key, garbage, too old, past its own expiry) is `None`:
    /// the visitor gets a fresh session.
    pub fn decode(&self, value: &str, now: OffsetDateTime) -> Option<(Data, OffsetDateTime)> {
        if too_long(value) {
            return None;
        }
        let Some(plain) = self.open(value) else {
            tracing::debug!("private session cookie does not authenticate; ignored");
            return None;
        };
        let (issued, json) = plain.split_first_chunk::<ISSUED_LEN>()?;
        let issued = OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(*issued)).ok()?;
        let data: Data = match serde_json::from_slice(json) {
            Ok(data) => data,
            Err(e) => {
                tracing::debug!(error = %e, "private session cookie holds no session");
                return None;
            }
        };
        let expires_at = self.limits.live_until(&data, issued, now)?;
        Some((data, expires_at))
    }

    /// The cookie value that carries `data`, issued at `now`, encrypted with the current key
    /// under a fresh random nonce.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] when the cookie (name, value and the usual attributes) would
    /// be over the [`MAX_COOKIE_BYTES`](super::cookie::MAX_COOKIE_BYTES) browsers keep;
    /// [`StoreError::Backend`] when the operating system gives no randomness for the nonce.
    pub fn encode(&self, data: &Data, now: OffsetDateTime) -> Result<String, StoreError> {
        let mut plain = now.unix_timestamp().to_be_bytes().to_vec();
        // A map of JSON values always serializes; a failure would be a bug, not input.
        serde_json::to_writer(&mut plain, data).map_err(|e| StoreError::backend(ENGINE, e))?;
        let raw = self
            .sealer
            .seal(&plain)
            .map_err(|e| StoreError::backend(ENGINE, e))?;
        self.limits.fits(ENGINE, URL_SAFE_NO_PAD.encode(raw))
    }

    /// The plaintext of `value` under the first key it authenticates with.
    fn open(&self, value: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        self.sealer.open(&raw, ISSUED_LEN)
    }
}

#[cfg(test)]
mod tests;
