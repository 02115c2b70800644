//! Django's signed data format: `django.core.signing.dumps`/`loads` as sessions use them.
//!
//! Django writes session data in this form into the `db`, `cached_db` and `file` stores (salt
//! [`SESSION_SALT`]) and into the cookie of the `signed_cookies` engine (salt [`COOKIE_SALT`]).
//! Reading and writing it byte for byte is what lets a Django app and a cloakroom app share
//! sessions in both directions.
//!
//! ```text
//! [.]<base64url-no-pad(payload)>:<timestamp base62>:<base64url-no-pad(HMAC-SHA256)>
//! ```
//!
//! - The payload is JSON written as Python's `json.dumps(obj, separators=(",", ":"))` writes it
//!   ([`to_python_json`]): ASCII only, because Django decodes the bytes as latin-1.
//! - It is zlib-compressed (and the base64 text prefixed with `.`) only when that makes it
//!   shorter by at least 2 bytes.
//! - The HMAC key is `SHA256(salt + "signer" + secret)`; the signed message is everything
//!   before the last `:`, so the timestamp and the `.` are covered too.
//!
//! Reading follows Django's order: the signature is checked first (in constant time, against the
//! current secret and then each fallback), then the age, then base64, zlib and JSON. Unlike
//! Django, decompression stops at a size cap, so even a value signed with a leaked key cannot
//! exhaust memory.
//!
//! # Examples
//! ```
//! use cloakroom_core::signing::{Signer, COOKIE_SALT};
//! use cloakroom_core::Secret;
//! use time::OffsetDateTime;
//!
//! let signer = Signer::new(&Secret::new("not-a-real-secret"), &[], COOKIE_SALT);
//! let mut data = cloakroom_core::codec::Data::new();
//! data.insert("visits".into(), 1.into());
//! let now = OffsetDateTime::now_utc();
//! let value = signer.dumps(&data, true, now);
//! let max_age = std::time::Duration::from_secs(1_209_600);
//! assert_eq!(signer.loads(&value, Some(max_age), now).unwrap(), data);
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{Read, Write};
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Number, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::data::Data;

/// A secret (Django's `SECRET_KEY` or one of its fallbacks) that `Debug` never prints. It lives
/// with the signer that uses it, so the settings and the codec both take it from here.
#[derive(Clone, serde::Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The salt of session data in the `db`, `cached_db` and `file` stores: Django's
/// `"django.contrib.sessions." + SessionStore.__qualname__`, the same for every built-in backend.
pub const SESSION_SALT: &str = "django.contrib.sessions.SessionStore";

/// The salt of the `signed_cookies` engine's cookie (a fixed string in Django).
pub const COOKIE_SALT: &str = "django.contrib.sessions.backends.signed_cookies";

/// How large a compressed payload may grow when inflated, unless [`Signer::with_max_decompressed`]
/// says otherwise. Far above any real session, far below what would hurt a server.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 16 * 1024 * 1024;

/// Django's base62 alphabet for timestamps: digits, then upper case, then lower case.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Decoding is as lenient as Python's `urlsafe_b64decode` after Django re-pads: padding is
/// optional and unused trailing bits are ignored.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// zlib's default level, which Python's `zlib.compress` uses.
const ZLIB_LEVEL: u32 = 6;

/// Why a signed value was refused. Django turns every one of these into an empty session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The value has no `:` at all, so it is not a signed value.
    #[error("the value has no `:` separator, so it is not a signed value")]
    NoSeparator,
    /// No key (the secret, then each fallback) gives this signature: the value was changed, or
    /// signed with another secret or salt.
    #[error("the signature does not match (the value was changed, or signed with another secret or salt)")]
    BadSignature,
    /// The signature is valid but older than the allowed age.
    #[error("the signature is {age_secs} s old, over the {max_age_secs} s limit")]
    Expired {
        /// Whole seconds since the value was signed.
        age_secs: i64,
        /// The allowed age.
        max_age_secs: u64,
    },
    /// The signed timestamp is not base62.
    #[error("the signed timestamp is not base62")]
    BadTimestamp,
    /// The payload is not URL-safe base64.
    #[error("the payload is not URL-safe base64")]
    BadBase64,
    /// The payload is flagged as compressed but is not a zlib stream.
    #[error("the payload is not a valid zlib stream")]
    BadZlib,
    /// The payload inflates past the size cap.
    #[error("the payload inflates to more than {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The payload holds an integer outside the 64-bit range, which Python allows but
    /// `serde_json` values cannot hold without changing it into a float.
    #[error("the payload holds an integer outside the 64-bit range")]
    IntegerOutOfRange,
    /// The payload is not a JSON object (or uses `NaN`/`Infinity`, which JSON values here cannot
    /// hold).
    #[error("the payload is not a JSON object")]
    NotJsonObject,
}

impl SignatureError {
    /// A fixed description, for errors that carry only a `&'static str`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoSeparator => "no `:` separator",
            Self::BadSignature => "the signature does not match",
            Self::Expired { .. } => "the signature has expired",
            Self::BadTimestamp => "the timestamp is not base62",
            Self::BadBase64 => "the payload is not URL-safe base64",
            Self::BadZlib => "the payload is not a valid zlib stream",
            Self::TooLarge { .. } => "the payload inflates past the size cap",
            Self::IntegerOutOfRange => "the payload holds an integer outside the 64-bit range",
            Self::NotJsonObject => "the payload is not a JSON object",
        }
    }
}

/// A signed value whose signature (and age, when asked) checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The payload: base64 text, with a leading `.` when compressed.
    pub payload: &'a str,
    /// When it was signed, in Unix seconds.
    pub timestamp: i64,
}

type HmacSha256 = Hmac<Sha256>;

/// Django's `TimestampSigner` with SHA-256 for one salt: signs with the current secret,
/// verifies with it and then with each fallback.
///
/// The keys are derived once, at construction; `Debug` never prints them.
#[derive(Clone)]
pub struct Signer {
    current: [u8; 32],
    fallbacks: Vec<[u8; 32]>,
    max_decompressed: usize,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field(
                "keys",
                &format_args!("<{} redacted>", 1 + self.fallbacks.len()),
            )
            .field("max_decompressed", &self.max_decompressed)
            .finish()
    }
}

/// Django's `salted_hmac` key: a plain SHA-256 of `salt + "signer" + secret` (UTF-8), not an HMAC.
fn derive_key(salt: &str, secret: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(b"signer")
        .chain_update(secret.as_bytes())
        .finalize()
        .into()
}

/// Django's session auth hash (`AbstractBaseUser.get_session_auth_hash`): 64 lowercase hex
/// digits of HMAC-SHA256 keyed with SHA-256 of its salt and `secret`, over the user's
/// `password` column text. `login()` stores it as `_auth_user_hash`; Django logs a session out
/// when it no longer matches (the password changed).
pub fn session_auth_hash(secret: &Secret, password: &str) -> String {
    let key: [u8; 32] = Sha256::new()
        .chain_update(b"django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash")
        .chain_update(secret.expose().as_bytes())
        .finalize()
        .into();
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&key);
    let mut mac = HmacSha256::new(&block.into());
    mac.update(password.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Signer {
    /// A signer for `salt` that signs with `secret` and also accepts `fallbacks` (Django's
    /// `SECRET_KEY_FALLBACKS`, tried in order) when verifying.
    pub fn new(secret: &Secret, fallbacks: &[Secret], salt: &str) -> Self {
        Self {
            current: derive_key(salt, secret.expose()),
            fallbacks: fallbacks
                .iter()
                .map(|old| derive_key(salt, old.expose()))
                .collect(),
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }

    /// Caps how large a compressed payload may inflate; a larger one is refused with
    /// [`SignatureError::TooLarge`].
    #[must_use]
    pub fn with_max_decompressed(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }

    /// The base64 signature of `message` under one derived key (Django's `base64_hmac`).
    fn signature(key: &[u8; 32], message: &str) -> String {
        // HMAC pads a key shorter than the hash block with zeros; doing it here makes the
        // constructor the infallible fixed-size one.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(key);
        let mut mac = HmacSha256::new(&block.into());
        mac.update(message.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Appends `:<timestamp>:<signature>` to `value` (Django's `TimestampSigner.sign`), signing
    /// with the current secret at `now`.
    pub fn sign(&self, value: &str, now: OffsetDateTime) -> String {
        let message = format!("{value}:{}", b62_encode(now.unix_timestamp()));
        let signature = Self::signature(&self.current, &message);
        format!("{message}:{signature}")
    }

    /// Checks a signed value and returns its payload and timestamp (Django's
    /// `TimestampSigner.unsign`).
    ///
    /// With `max_age`, a value is refused when `now - timestamp > max_age`, counting the
    /// fraction of `now` as Django does (`time.time() - int(ts)`): exactly `max_age` old still
    /// passes.
    ///
    /// # Errors
    /// [`SignatureError::NoSeparator`], [`SignatureError::BadSignature`] (no key matches),
    /// [`SignatureError::BadTimestamp`], [`SignatureError::Expired`].
    pub fn unsign<'a>(
        &self,
        signed: &'a str,
        max_age: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<Verified<'a>, SignatureError> {
        let (message, signature) = signed.rsplit_once(':').ok_or(SignatureError::NoSeparator)?;
        // Django compares the base64 text, so a non-canonical encoding of the right bytes fails
        // there too. Which key matched is not secret; the comparison itself is constant time.
        let matches = std::iter::once(&self.current)
            .chain(&self.fallbacks)
            .any(|key| {
                bool::from(
                    Self::signature(key, message)
                        .as_bytes()
                        .ct_eq(signature.as_bytes()),
                )
            });
        if !matches {
            return Err(SignatureError::BadSignature);
        }
        let (payload, timestamp) = message
            .rsplit_once(':')
            .ok_or(SignatureError::BadTimestamp)?;
        let timestamp = b62_decode(timestamp).ok_or(SignatureError::BadTimestamp)?;
        if let Some(max_age) = max_age {
            let age_nanos = now.unix_timestamp_nanos() - i128::from(timestamp) * 1_000_000_000;
            let max_nanos = i128::try_from(max_age.as_nanos()).unwrap_or(i128::MAX);
            if age_nanos > max_nanos {
                return Err(SignatureError::Expired {
                    age_secs: i64::try_from(age_nanos / 1_000_000_000).unwrap_or(i64::MAX),
                    max_age_secs: max_age.as_secs(),
                });
            }
        }
        Ok(Verified { payload, timestamp })
    }

    /// Serializes, optionally compresses, and signs session data at `now` (Django's
    /// `signing.dumps(data, salt=…, compress=…)`).
    pub fn dumps(&self, data: &Data, compress: bool, now: OffsetDateTime) -> String {
        let json = to_python_json(data);
        let mut bytes = Cow::Borrowed(json.as_bytes());
        let mut payload = String::with_capacity(json.len() * 4 / 3 + 2);
        if compress {
            // Kept only when shorter by 2 bytes or more: `len(compressed) < len(json) - 1`.
            if let Some(packed) = zlib(json.as_bytes()) {
                if packed.len() + 1 < json.len() {
                    payload.push('.');
                    bytes = Cow::Owned(packed);
                }
            }
        }
        URL_SAFE_NO_PAD.encode_string(&bytes, &mut payload);
        self.sign(&payload, now)
    }

    /// Verifies a signed value and decodes its session data (Django's `signing.loads`).
    ///
    /// # Errors
    /// Any [`SignatureError`]: the value is not signed by a known key, too old, or its payload
    /// is not session data.
    pub fn loads(
        &self,
        signed: &str,
        max_age: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<Data, SignatureError> {
        let verified = self.unsign(signed, max_age, now)?;
        self.decode_payload(verified.payload)
    }

    /// Decodes the payload of a [`Verified`] value: base64, zlib when it starts with `.`
    /// (capped), then the bytes as latin-1 and the text as JSON, as Django does.
    ///
    /// # Errors
    /// [`SignatureError::BadBase64`], [`SignatureError::BadZlib`], [`SignatureError::TooLarge`],
    /// [`SignatureError::IntegerOutOfRange`], [`SignatureError::NotJsonObject`].
    pub fn decode_payload(&self, payload: &str) -> Result<Data, SignatureError> {
        let (text, compressed) = match payload.strip_prefix('.') {
            Some(rest) => (rest, true),
            None => (payload, false),
        };
        let bytes = BASE64_LENIENT
            .decode(text)
            .map_err(|_| SignatureError::BadBase64)?;
        let bytes = if compressed {
            inflate(&bytes, self.max_decompressed)?
        } else {
            bytes
        };
        from_python_json(&bytes)
    }
}

/// `zlib.compress(data)`: the zlib format (2-byte header, Adler-32 trailer), level 6.
fn zlib(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder =
        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(ZLIB_LEVEL));
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

/// Inflates a zlib stream, refusing to produce more than `limit` bytes.
fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>, SignatureError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::ZlibDecoder::new(data)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|_| SignatureError::BadZlib)?;
    if out.len() > limit {
        return Err(SignatureError::TooLarge { limit });
    }
    Ok(out)
}

/// Django's `b62_encode`.
pub fn b62_encode(n: i64) -> String {
    if n == 0 {
        return "0".to_owned();
    }
    let mut rest = n.unsigned_abs();
    let mut digits = Vec::with_capacity(12);
    while rest > 0 {
        // `rest % 62` is below 62, so the index is in range and the cast is lossless.
        digits.push(BASE62[(rest % 62) as usize]);
        rest /= 62;
    }
    if n < 0 {
        digits.push(b'-');
    }
    digits.iter().rev().map(|&b| char::from(b)).collect()
}

/// Django's `b62_decode`; `None` for a character outside the alphabet, an empty string, or a
/// number outside `i64`.
pub fn b62_decode(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None if text.is_empty() => return None,
        None => (false, text),
    };
    let mut value: i64 = 0;
    for c in digits.bytes() {
        let digit = BASE62.iter().position(|&d| d == c)?;
        value = value
            .checked_mul(62)?
            .checked_add(i64::try_from(digit).ok()?)?;
    }
    Some(if negative { -value } else { value })
}

/// Writes session data as Python's `json.dumps(data, separators=(",", ":"))` does with its
/// defaults (`ensure_ascii=True`): keys in insertion order, no spaces, every character outside
/// printable ASCII as a lowercase `\uXXXX` escape (surrogate pairs beyond the BMP, and DEL too),
/// and floats as Python's `repr`.
pub fn to_python_json(data: &Data) -> String {
    let mut out = String::with_capacity(64);
    write_object(&mut out, data);
    out
}

fn write_object(out: &mut String, map: &serde_json::Map<String, Value>) {
    out.push('{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_number(out: &mut String, n: &Number) {
    // Writing into a String cannot fail.
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    }
}

/// Python's `json.dumps` string escaping with `ensure_ascii=True` (`py_encode_basestring_ascii`):
/// only `' '..='~'` pass through, except `"` and `\`.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `float.__repr__`: the shortest digits that round-trip, in positional notation when
/// the decimal exponent is in `-4..16` (with `.0` for whole numbers), otherwise as `d.ddde±XX`.
fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Python's repr, as
    // `d[.ddd]e<exp>`; only the layout differs.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    // The position of the decimal point relative to the digits (Python's `decpt`).
    let point = exp + 1;
    let body = if -4 < point && point <= 16 {
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point >= n {
            format!("{digits}{}.0", "0".repeat((point - n) as usize))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs())
    };
    format!("{sign}{body}")
}

/// Django's `JSONSerializer.loads`: the bytes as latin-1, then JSON that must be an object.
///
/// Python's parser also takes integers of any size, `NaN` and `Infinity`; a JSON value here
/// cannot hold those without changing them, so they are refused rather than altered. Duplicate
/// keys keep the last value in the first key's place, as in a Python dict.
pub fn from_python_json(bytes: &[u8]) -> Result<Data, SignatureError> {
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    check_integers(text.as_bytes())?;
    serde_json::from_str(&text).map_err(|_| SignatureError::NotJsonObject)
}

/// Refuses integer literals outside `i64`/`u64`, which `serde_json` would turn into floats.
fn check_integers(text: &[u8]) -> Result<(), SignatureError> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() {
                    match text[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = token.iter().any(u8::is_ascii_digit)
                    && !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                if integer {
                    let token = std::str::from_utf8(token).unwrap_or_default();
                    if token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                        return Err(SignatureError::IntegerOutOfRange);
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap()
    }

    const SECRET: &str = "test-vector-secret-key-0123456789";

    #[test]
    fn session_auth_hash_matches_django() {
        // vectors.json `auth_hash`.
        let password = "pbkdf2_sha256$1000000$vectorsalt0123456789$q3rPzJ0+Xw1oN6k9dJmW3b2yQkGvFh8sT4uLcA5eR7I=";
        assert_eq!(
            session_auth_hash(&Secret::new("test-vector-secret-key-0123456789"), password),
            "c6aeee1fbff984d3e3b47b6d233458c7c9a45c2a704b748c3dfdc5da25db6c7a"
        );
    }

    #[test]
    fn derived_keys_match_djangos_salted_hmac() {
        // From vectors.json `derived_hmac_keys_hex` and `fallback_key_vectors`.
        assert_eq!(
            hex(&derive_key(SESSION_SALT, SECRET)),
            "49201f8ee612280d16a81b2b322054c039106b2816c6f44efd0dc02f55d27c3f"
        );
        assert_eq!(
            hex(&derive_key(COOKIE_SALT, SECRET)),
            "8139d887513997f1b1fa5335ab6d5d46251b86c8ac91b472634e3aae8911d230"
        );
        assert_eq!(
            hex(&derive_key(
                SESSION_SALT,
                "test-vector-OLD-secret-key-9876543210"
            )),
            "f884ee04ade066ffe545973e8d5a461c96b0bcb64240ba16fa8532083bed7c4d"
        );
    }

    #[test]
    fn base62_matches_django() {
        assert_eq!(b62_encode(1_735_689_600), "1tSm9Y");
        assert_eq!(b62_encode(0), "0");
        assert_eq!(b62_encode(-61), "-z");
        assert_eq!(b62_encode(62), "10");
        assert_eq!(b62_decode("1tSm9Y"), Some(1_735_689_600));
        assert_eq!(b62_decode("-z"), Some(-61));
        assert_eq!(b62_decode("0"), Some(0));
        // Django: `b62_decode("-")` is 0; `b62_decode("")` raises.
        assert_eq!(b62_decode("-"), Some(0));
        assert_eq!(b62_decode(""), None);
        assert_eq!(b62_decode("1t:m"), None);
        assert_eq!(b62_decode(&"z".repeat(20)), None, "overflow is refused");
        for n in [1, 61, 1_000_000, i64::MAX, -i64::MAX] {
            assert_eq!(b62_decode(&b62_encode(n)), Some(n));
        }
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        // Generated by CPython 3: `repr(v)` for each bit pattern.
        let cases = [
            (0x400921f9f01b866e_u64, "3.14159"),
            (0xbfe0000000000000, "-0.5"),
            (0x54b249ad2594c37d, "1e+100"),
            (0x3ee4f8b588e368f1, "1e-05"),
            (0x3ff0000000000000, "1.0"),
            (0x3fb999999999999a, "0.1"),
            (0x3f1a36e2eb1c432d, "0.0001"),
            (0x4341c37937e08000, "1e+16"),
            (0x430c6bf526340000, "1000000000000000.0"),
            (0x437b69b4ba630f35, "1.2345678901234568e+17"),
            (0x7e41eb2d66005835, "1.5e+300"),
            (0x0000000000000001, "5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0x4059000000000000, "100.0"),
            (0x4480f0cf064dd592, "1e+22"),
            (0x3e808ffde1023e12, "1.234e-07"),
            (0x8000000000000000, "-0.0"),
            (0x0000000000000000, "0.0"),
            (0x4340000000000000, "9007199254740992.0"),
            (0x3fd3333333333334, "0.30000000000000004"),
            (0x40c81cd6c8b43958, "12345.678"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x419d6f3454000000, "123456789.0"),
            (0x3f50624dd2f1a9fc, "0.001"),
            (0x4011666666666666, "4.35"),
            (0x3fd5555555555555, "0.3333333333333333"),
            (0xf2a74de452e6b438, "-1.989032661366619e+244"),
            (0x0c5c7fd0a6a3a450, "3.980498358697587e-249"),
            (0x36f675cc81e74ef5, "6.294675241195386e-44"),
            (0x3d9c172411e20b8f, "6.387016158513563e-12"),
            (0x95e60af593bd04cf, "-3.51527970626667e-203"),
        ];
        for (bits, want) in cases {
            assert_eq!(python_float_repr(f64::from_bits(bits)), want, "{bits:#x}");
        }
        assert_eq!(python_float_repr(f64::NAN), "NaN");
        assert_eq!(python_float_repr(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn strings_are_escaped_as_python_ensure_ascii() {
        let mut d = Data::new();
        d.insert(
            "k\u{e9}".into(),
            Value::from("\"\\/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}\u{80}<>&😀"),
        );
        assert_eq!(
            to_python_json(&d),
            r#"{"k\u00e9":"\"\\/\n\r\t\b\f\u0001\u001f\u007f\u0080<>&\ud83d\ude00"}"#
        );
    }

    #[test]
    fn integers_keep_their_type_and_size() {
        let d = data(r#"{"a":-7,"b":18446744073709551615,"c":1.0,"d":[true,null,{}]}"#);
        assert_eq!(
            to_python_json(&d),
            r#"{"a":-7,"b":18446744073709551615,"c":1.0,"d":[true,null,{}]}"#
        );
    }

    #[test]
    fn reading_follows_pythons_json() {
        // Latin-1: each byte is one character.
        let d = from_python_json(b"{\"a\":\"\xe9\"}").unwrap();
        assert_eq!(d["a"], "\u{e9}");
        // Duplicate keys: the last value wins, in the first key's place.
        let d = from_python_json(br#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(to_python_json(&d), r#"{"a":3,"b":2}"#);
        assert_eq!(
            from_python_json(br#"{"big":18446744073709551617}"#),
            Err(SignatureError::IntegerOutOfRange)
        );
        assert_eq!(
            from_python_json(br#"{"neg":-9223372036854775809}"#),
            Err(SignatureError::IntegerOutOfRange)
        );
        // Digits inside strings are not numbers.
        assert!(from_python_json(br#"{"s":"18446744073709551617\"1e999"}"#).is_ok());
        assert!(from_python_json(br#"{"x":NaN}"#).is_err());
        assert!(from_python_json(b"[1]").is_err());
        assert!(from_python_json(b"").is_err());
    }

    #[test]
    fn compression_is_used_only_when_it_saves_two_bytes() {
        let signer = Signer::new(&Secret::new(SECRET), &[], SESSION_SALT);
        let now = OffsetDateTime::from_unix_timestamp(1_735_689_600).unwrap();
        let small = signer.dumps(&data(r#"{"a":1}"#), true, now);
        assert!(!small.starts_with('.'));
        let big = signer.dumps(
            &data(&format!(r#"{{"a":"{}"}}"#, "x".repeat(500))),
            true,
            now,
        );
        assert!(big.starts_with(".eJ"), "{big}");
        let plain = signer.dumps(
            &data(&format!(r#"{{"a":"{}"}}"#, "x".repeat(500))),
            false,
            now,
        );
        assert!(!plain.starts_with('.'));
        assert_eq!(
            signer.loads(&big, None, now),
            signer.loads(&plain, None, now)
        );
    }

    #[test]
    fn a_zip_bomb_stops_at_the_cap() {
        let signer =
            Signer::new(&Secret::new(SECRET), &[], COOKIE_SALT).with_max_decompressed(1 << 20);
        let now = OffsetDateTime::from_unix_timestamp(1_735_689_600).unwrap();
        // 8 MiB of `{"a":"000…"}` compresses to ~8 KiB (ratios of 1000:1 fit in a cookie);
        // even correctly signed, it is refused after inflating a little over the cap.
        let mut json = b"{\"a\":\"".to_vec();
        json.resize(8 << 20, b'0');
        json.extend_from_slice(b"\"}");
        let bomb = zlib(&json).unwrap();
        assert!(bomb.len() < 16 << 10, "{}", bomb.len());
        let value = signer.sign(&format!(".{}", URL_SAFE_NO_PAD.encode(&bomb)), now);
        assert_eq!(
            signer.loads(&value, None, now),
            Err(SignatureError::TooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn broken_payloads_are_refused_after_the_signature() {
        let signer = Signer::new(&Secret::new(SECRET), &[], SESSION_SALT);
        let now = OffsetDateTime::from_unix_timestamp(1_735_689_600).unwrap();
        let truncated = zlib(br#"{"a":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#).unwrap();
        let truncated = &truncated[..truncated.len() - 6];
        for (payload, want) in [
            ("e30*", SignatureError::BadBase64),
            (".e30", SignatureError::BadZlib),
            (
                &format!(".{}", URL_SAFE_NO_PAD.encode(truncated)),
                SignatureError::BadZlib,
            ),
            ("WzFd", SignatureError::NotJsonObject),
        ] {
            let value = signer.sign(payload, now);
            assert_eq!(signer.loads(&value, None, now), Err(want), "{payload}");
        }
        // A value signed with a timestamp that is not base62.
        let message = "e30:1t!m";
        let forged = format!("{message}:{}", Signer::signature(&signer.current, message));
        assert_eq!(
            signer.loads(&forged, None, now),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            signer.loads("", None, now),
            Err(SignatureError::NoSeparator)
        );
        assert_eq!(
            signer.loads(":", None, now),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn debug_hides_keys() {
        let signer = Signer::new(&Secret::new("hunter2"), &[Secret::new("old")], COOKIE_SALT);
        let shown = format!("{signer:?}");
        assert!(shown.contains("<2 redacted>"), "{shown}");
        assert!(!shown.contains(&hex(&signer.current)[..8]));
    }
}
