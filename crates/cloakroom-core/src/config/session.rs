//! The session's own settings: Django's cookie and expiry settings with their names and
//! defaults, the secret keys and data format Django shares, and cloakroom's additions to the
//! same concern (idle timeout, absolute lifetime, rotation grace, size and per-user bounds).

use std::fmt;

use serde::Deserialize;

use crate::codec::DataFormat;
use crate::error::ConfigError;
use crate::keys::MAX_COOKIE_AGE;
use crate::signing::Secret;

/// Django's `SESSION_COOKIE_AGE`: two weeks, in seconds.
pub const DEFAULT_COOKIE_AGE: u64 = 1_209_600;

/// The default `max_session_bytes`: 64 KiB, far above what a session of ids and flags needs
/// (a few hundred bytes) and far below what lets a few visitors fill a store (issue 14: 30
/// posts of 1.9 MB made one 57 MB session).
pub const DEFAULT_MAX_SESSION_BYTES: usize = 64 * 1024;

/// The default name of the key header.
pub const DEFAULT_HEADER_NAME: &str = "X-Session-Token";

/// Where the session key travels (the `transport` setting, or a route's `TransportLayer` in
/// the `cloakroom` crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The session cookie only (Django's way).
    #[default]
    Cookie,
    /// The key header only (`header_name`); no cookie is read or set.
    Header,
    /// Either: the header's key when the request carries one, else the cookie's.
    Both,
}

impl std::str::FromStr for Transport {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cookie" => Ok(Self::Cookie),
            "header" => Ok(Self::Header),
            "both" => Ok(Self::Both),
            _ => Err(ConfigError::Invalid {
                setting: "transport",
                reason: format!("`{s}` is not a transport; use cookie, header or both"),
            }),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cookie => "cookie",
            Self::Header => "header",
            Self::Both => "both",
        })
    }
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    // The aliases accept Django's spelling (`SESSION_COOKIE_SAMESITE = "Strict"`) in a TOML
    // file, as the flag and the environment variable do.
    /// Sent on same-site requests only.
    #[serde(alias = "Strict")]
    Strict,
    /// Sent on same-site requests and top-level navigations (Django's default).
    #[default]
    #[serde(alias = "Lax")]
    Lax,
    /// Sent on every request; browsers require `Secure` with it.
    #[serde(alias = "None")]
    None,
}

impl std::str::FromStr for SameSite {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "lax" => Ok(Self::Lax),
            "none" => Ok(Self::None),
            _ => Err(ConfigError::Invalid {
                setting: "cookie_samesite",
                reason: format!("`{s}` is not one of Strict, Lax, None"),
            }),
        }
    }
}

/// The cookie and Django settings, and everything else about one session's life: how its
/// cookie looks, how long it lives, how its data is signed and bounded. Field names are
/// Django's without the `SESSION_` prefix.
///
/// `Debug` prints every [`Secret`] redacted.
#[derive(Clone, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SessionSettings {
    /// `SESSION_COOKIE_NAME`: the cookie that carries the session key.
    pub cookie_name: String,
    /// `SESSION_COOKIE_AGE`: session lifetime in seconds, counted from the last save.
    pub cookie_age: u64,
    /// `SESSION_COOKIE_DOMAIN`: `None` for a host-only cookie.
    pub cookie_domain: Option<String>,
    /// `SESSION_COOKIE_PATH`.
    pub cookie_path: String,
    /// `SESSION_COOKIE_SECURE`: send the cookie over HTTPS only.
    pub cookie_secure: bool,
    /// `SESSION_COOKIE_HTTPONLY`: hide the cookie from JavaScript.
    pub cookie_httponly: bool,
    /// `SESSION_COOKIE_SAMESITE`.
    pub cookie_samesite: SameSite,
    /// The CHIPS `Partitioned` attribute (Django lacks it).
    pub cookie_partitioned: bool,
    /// `SESSION_EXPIRE_AT_BROWSER_CLOSE`: a cookie without Max-Age/Expires.
    pub expire_at_browser_close: bool,
    /// `SESSION_SAVE_EVERY_REQUEST`: save (and so extend) non-empty sessions on every request.
    pub save_every_request: bool,
    /// `SECRET_KEY`: signs cookies (and data in Django's format).
    pub secret_key: Option<Secret>,
    /// `SECRET_KEY_FALLBACKS`: older keys still accepted when reading.
    pub secret_key_fallbacks: Vec<Secret>,
    /// How server-side stores keep the data: `json` (the default) or `django` (Django's
    /// signed `session_data`, to share a store with a Django app; needs `secret_key`).
    pub data_format: DataFormat,
    /// An idle timeout in seconds: the session ends after this long without a request, and a
    /// request that only reads extends it (see `refresh_threshold`). `None`: Django's model,
    /// where the lifetime counts from the last save.
    pub idle_timeout: Option<u64>,
    /// An absolute lifetime in seconds: the session ends this long after it was created or
    /// its key was cycled (login), however active it is.
    pub absolute_lifetime: Option<u64>,
    /// With an idle timeout, a read-only request writes the new expiry to the store only once
    /// this fraction of the idle timeout has passed since the last write (0.2: after 20%).
    pub refresh_threshold: f64,
    /// A save that changes the data keeps the stored expiry while less than
    /// `refresh_threshold` of the session's age has passed since it was set, instead of
    /// moving it to now + age on every save as Django does (off by default). The expiry then
    /// lags Django's by at most that fraction (20% of two weeks: under three days), and the
    /// cookie's `Max-Age` says the same instant. What it buys: on PostgreSQL the row's indexed
    /// `expire_date` stays as it was, so most saves are HOT updates (no index write); every
    /// engine writes the same expiry it read. See the expiry guide.
    pub save_keeps_expiry: bool,
    /// After `cycle_key()`, the old key keeps working this many seconds, read-only: it is
    /// served the session as it was before the rotation (logged out), gets no cookie, and a
    /// change under it fails as [`Error::Rotated`](crate::Error::Rotated) (0: off, the
    /// default; at most 60). `flush()` has no grace.
    pub rotation_grace: u64,
    /// The lifetime `remember_me(true)` gives a session, in seconds (30 days).
    pub remember_me_age: u64,
    /// Store only a hash of each session key (the first 40 hex characters of its SHA-256), so
    /// a dump of the store yields no cookie that works (see [`crate::hashed`]). Off by default:
    /// a Django app sharing the store looks sessions up by the raw key and would find none.
    /// Cannot be combined with `rotation_grace` (whose pointer to the new session would put a
    /// live key in the store) nor with the `signed_cookies` engine (no key to hash).
    pub hash_keys: bool,
    /// The largest session, in bytes of its encoded record (the JSON, or Django's signed or
    /// pickled text): a save over it fails as [`Error::TooLarge`](crate::Error::TooLarge)
    /// (413 from the layer) and writes nothing. Default 64 KiB. Checked in the core, so every
    /// engine and cookie format is bounded.
    pub max_session_bytes: usize,
    /// The most live sessions one user may have (`None`, the default: no limit). A login that
    /// goes over it revokes the user's oldest sessions (see [`crate::Sessions::sessions_of`]).
    pub max_sessions_per_user: Option<u32>,
    /// Where the session key travels: `cookie` (the default, Django's way), `header` (the
    /// `header_name` request and response header, for API clients) or `both` (the header's
    /// key when a request carries one, else the cookie's). A route can choose its own with the
    /// `cloakroom` crate's `TransportLayer`. The rules: [`crate::transport`]. Server-side
    /// engines only (signed and private cookies are the cookie).
    pub transport: Transport,
    /// The request and response header that carries the key under `transport = "header"` or
    /// `"both"` (`X-Session-Token` by default).
    pub header_name: String,
    /// Encrypt the session data the store keeps (XChaCha20-Poly1305, a key derived from
    /// `secret_key`; `secret_key_fallbacks` still decrypt): a dump of the table, the Redis
    /// keys or the session folder shows no session data, and with `hash_keys` no working key
    /// either. Off by default. Needs `secret_key`; server-side engines only; cannot be combined
    /// with `data_format = "django"` (Django could not read the data). See
    /// [`Codec::Encrypted`](crate::codec::Codec::Encrypted).
    pub encrypt_data: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            cookie_name: "sessionid".into(),
            cookie_age: DEFAULT_COOKIE_AGE,
            cookie_domain: None,
            cookie_path: "/".into(),
            cookie_secure: false,
            cookie_httponly: true,
            cookie_samesite: SameSite::Lax,
            cookie_partitioned: false,
            expire_at_browser_close: false,
            save_every_request: false,
            secret_key: None,
            secret_key_fallbacks: Vec::new(),
            data_format: DataFormat::Json,
            idle_timeout: None,
            absolute_lifetime: None,
            refresh_threshold: 0.2,
            save_keeps_expiry: false,
            rotation_grace: 0,
            remember_me_age: 30 * 86_400,
            hash_keys: false,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            max_sessions_per_user: None,
            transport: Transport::Cookie,
            header_name: DEFAULT_HEADER_NAME.to_owned(),
            encrypt_data: false,
        }
    }
}

// By hand, as the other groups: the destructuring makes a new field a compile error here, so
// whoever adds one decides how it prints (a [`Secret`] prints itself redacted).
impl fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            cookie_name,
            cookie_age,
            cookie_domain,
            cookie_path,
            cookie_secure,
            cookie_httponly,
            cookie_samesite,
            cookie_partitioned,
            expire_at_browser_close,
            save_every_request,
            secret_key,
            secret_key_fallbacks,
            data_format,
            idle_timeout,
            absolute_lifetime,
            refresh_threshold,
            save_keeps_expiry,
            rotation_grace,
            remember_me_age,
            hash_keys,
            max_session_bytes,
            max_sessions_per_user,
            transport,
            header_name,
            encrypt_data,
        } = self;
        f.debug_struct("SessionSettings")
            .field("cookie_name", cookie_name)
            .field("cookie_age", cookie_age)
            .field("cookie_domain", cookie_domain)
            .field("cookie_path", cookie_path)
            .field("cookie_secure", cookie_secure)
            .field("cookie_httponly", cookie_httponly)
            .field("cookie_samesite", cookie_samesite)
            .field("cookie_partitioned", cookie_partitioned)
            .field("expire_at_browser_close", expire_at_browser_close)
            .field("save_every_request", save_every_request)
            .field("secret_key", secret_key)
            .field("secret_key_fallbacks", secret_key_fallbacks)
            .field("data_format", data_format)
            .field("idle_timeout", idle_timeout)
            .field("absolute_lifetime", absolute_lifetime)
            .field("refresh_threshold", refresh_threshold)
            .field("save_keeps_expiry", save_keeps_expiry)
            .field("rotation_grace", rotation_grace)
            .field("remember_me_age", remember_me_age)
            .field("hash_keys", hash_keys)
            .field("max_session_bytes", max_session_bytes)
            .field("max_sessions_per_user", max_sessions_per_user)
            .field("transport", transport)
            .field("header_name", header_name)
            .field("encrypt_data", encrypt_data)
            .finish()
    }
}

impl SessionSettings {
    /// Checks the session settings on their own, naming the setting to change.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first setting found wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        let name = &self.cookie_name;
        // RFC 6265 cookie-name is an RFC 7230 token.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return invalid(
                "cookie_name",
                "must be a non-empty token (letters, digits and !#$%&'*+-.^_`|~)",
            );
        }
        if name.starts_with("__Secure-") && !self.cookie_secure {
            return invalid(
                "cookie_secure",
                "a `__Secure-` cookie name needs cookie_secure = true",
            );
        }
        if name.starts_with("__Host-")
            && (!self.cookie_secure || self.cookie_path != "/" || self.cookie_domain.is_some())
        {
            return invalid(
                "cookie_name",
                "a `__Host-` cookie needs cookie_secure = true, cookie_path = \"/\" and no cookie_domain",
            );
        }
        if self.cookie_samesite == SameSite::None && !self.cookie_secure {
            return invalid(
                "cookie_samesite",
                "browsers reject SameSite=None without Secure; set cookie_secure = true",
            );
        }
        if self.cookie_partitioned && !self.cookie_secure {
            return invalid(
                "cookie_partitioned",
                "browsers reject Partitioned cookies without Secure; set cookie_secure = true",
            );
        }
        if !self.cookie_path.starts_with('/') {
            return invalid("cookie_path", "must start with `/`");
        }
        if self.cookie_age > MAX_COOKIE_AGE {
            return Err(ConfigError::Invalid {
                setting: "cookie_age",
                reason: format!("must be at most {MAX_COOKIE_AGE} seconds (about 110 years)"),
            });
        }
        if !(0.0..=1.0).contains(&self.refresh_threshold) {
            return invalid("refresh_threshold", "must be a fraction between 0 and 1");
        }
        if self.rotation_grace > 60 {
            return invalid(
                "rotation_grace",
                "is bounded to 60 seconds: the old key stays usable for that long",
            );
        }
        if self.max_sessions_per_user == Some(0) {
            return invalid(
                "max_sessions_per_user",
                "must be at least 1 (leave it unset for no limit)",
            );
        }
        // Each of these is added to "now"; past MAX_COOKIE_AGE the sum leaves the calendar.
        for (setting, value) in [
            ("idle_timeout", self.idle_timeout),
            ("absolute_lifetime", self.absolute_lifetime),
            ("remember_me_age", Some(self.remember_me_age)),
        ] {
            if value.is_some_and(|v| v == 0 || v > MAX_COOKIE_AGE) {
                return Err(ConfigError::Invalid {
                    setting,
                    reason: format!(
                        "must be between 1 and {MAX_COOKIE_AGE} seconds (about 110 years); \
                         leave it unset for none"
                    ),
                });
            }
        }
        if self.max_session_bytes == 0 {
            return invalid(
                "max_session_bytes",
                "must be above 0 (the default is 65536, 64 KiB)",
            );
        }
        if self.hash_keys && self.rotation_grace > 0 {
            return invalid(
                "hash_keys",
                "cannot be combined with rotation_grace: the old record would point to the new \
                 session by its raw key, a live key in the store",
            );
        }
        check_header_name(&self.header_name)?;
        if self.encrypt_data && self.data_format == DataFormat::Django {
            return invalid(
                "encrypt_data",
                "cannot be combined with data_format = \"django\": Django could not read \
                 encrypted data (turn one of them off)",
            );
        }
        if self.encrypt_data && self.secret_key.is_none() {
            return invalid(
                "secret_key",
                "encrypt_data derives its encryption key from secret_key; set `secret_key` \
                 (`--secret-key`) to a long random value",
            );
        }
        Ok(())
    }
}

/// Checks a `header_name` setting: an HTTP field name (RFC 9110 token) that is not one the
/// session or the browser already owns.
fn check_header_name(name: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| {
        Err(ConfigError::Invalid {
            setting: "header_name",
            reason,
        })
    };
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return invalid(format!(
            "`{name}` is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~); \
             the default is {DEFAULT_HEADER_NAME}"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["cookie", "set-cookie", "vary", "authorization", "host"].contains(&lower.as_str()) {
        return invalid(format!(
            "`{name}` is a header HTTP already gives a meaning; use a name of its own such as \
             {DEFAULT_HEADER_NAME}"
        ));
    }
    Ok(())
}
