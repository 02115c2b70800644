//! How the session key travels between client and server: in the session cookie (Django's
//! way, the default), in a request header such as `X-Session-Token` (API clients, mobile
//! apps), or either. The rules live here, framework-free, so that every adapter is a few lines:
//! it hands [`find`] the request's `Cookie` values and its key header's values, starts the
//! session with the [`Presented`] keys, and writes what [`Outcome::response_headers`] lists.
//!
//! # The rules
//!
//! - **Reading.** The key header's value is the session key itself. A header sent more than
//!   once, empty, or longer than [`MAX_HEADER_VALUE`] carries no key (a fresh session, as an
//!   unknown cookie gives). Under [`Transport::Both`], a request that carries a key in the
//!   header is served by that key and its cookie is ignored: the header is what the client's
//!   own code set, the cookie what a browser sends on its own (see the CSRF note below).
//! - **Answering.** The key goes back the way the request brought it: `Set-Cookie` for the
//!   cookie, the key header for the header; under `Both`, a request that brought no key gets
//!   both. The key header is sent exactly when the cookie would be (a new session, a login's
//!   `cycle_key`, `save_every_request` …), never to the holder of a key that `cycle_key`
//!   rotated away, and on `flush` (logout) or an unknown key it is sent **empty**: "forget the
//!   key". Responses that used the session vary on the header's name.
//! - **Everything else is the same**: expiry, the compare-and-swap merge of concurrent
//!   requests, the user index and the outage policy do not know how the key travelled.
//!
//! # CSRF
//!
//! A browser attaches cookies to cross-site requests on its own; it never adds a custom header
//! to one (a cross-origin `fetch` with one needs the server's CORS approval first). So a route
//! that takes the key only from the header cannot be driven by another site's form, and needs
//! no CSRF token; a route that takes the cookie (alone, or under `Both` when the header is
//! absent) has the cookie's exposure, which `SameSite` and a CSRF token cover. In exchange, the
//! header's key is visible to the page's scripts: keep it out of `localStorage` reach of
//! untrusted script, or keep browsers on the `HttpOnly` cookie.
//!
//! [`Outcome::response_headers`]: crate::Outcome::response_headers

use serde::Deserialize;

/// The default name of the key header.
pub const DEFAULT_HEADER_NAME: &str = "X-Session-Token";

/// The longest key header value looked at: far above any session key (40 characters at
/// most), so a longer value is no key and is not copied.
pub const MAX_HEADER_VALUE: usize = 256;

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
    type Err = crate::ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cookie" => Ok(Self::Cookie),
            "header" => Ok(Self::Header),
            "both" => Ok(Self::Both),
            _ => Err(crate::ConfigError::Invalid {
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

/// Which transport carried the key a request is served by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The session cookie.
    Cookie,
    /// The key header.
    Header,
}

/// The keys a request presents, one per transport, before the route's transport picks one
/// ([`pick`](Self::pick)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The session cookie's value (see [`crate::cookies::find`]).
    pub cookie: Option<&'a str>,
    /// The key header's value (see [`header_key`]).
    pub header: Option<&'a str>,
}

impl<'a> Presented<'a> {
    /// The key `transport` serves the request by, and which transport carried it.
    pub fn pick(&self, transport: Transport) -> Option<(&'a str, Via)> {
        let cookie = self.cookie.map(|k| (k, Via::Cookie));
        let header = self.header.map(|k| (k, Via::Header));
        match transport {
            Transport::Cookie => cookie,
            Transport::Header => header,
            Transport::Both => header.or(cookie),
        }
    }
}

/// The keys a request presents: the session cookie among its `Cookie` header values
/// (`cookie_name`), and the key header's values (`header_name`, see [`header_key`]). Both are
/// read whatever the `transport` setting says, because a route layer may choose another
/// transport after the session started; the route's transport picks one at the first use.
///
/// # Examples
/// ```
/// use cloakroom_core::transport::{find, Transport, Via};
/// use cloakroom_core::Settings;
///
/// let settings = Settings::default();
/// let cookies: [&[u8]; 1] = [b"sessionid=fromcookie0123"];
/// let tokens: [&[u8]; 1] = [b"fromheader0123"];
/// let presented = find(cookies, tokens, &settings);
/// assert_eq!(presented.pick(Transport::Cookie), Some(("fromcookie0123", Via::Cookie)));
/// assert_eq!(presented.pick(Transport::Both), Some(("fromheader0123", Via::Header)));
/// ```
pub fn find<'a, C, H>(
    cookie_headers: C,
    key_headers: H,
    settings: &crate::Settings,
) -> Presented<'a>
where
    C: IntoIterator<Item = &'a [u8]>,
    H: IntoIterator<Item = &'a [u8]>,
{
    Presented {
        cookie: crate::cookies::find(cookie_headers, &settings.session.cookie_name),
        header: header_key(key_headers),
    }
}

/// The key the key header's values carry: the one value, trimmed of spaces and tabs, when it
/// is non-empty visible ASCII of at most [`MAX_HEADER_VALUE`] bytes. Anything else (no value,
/// two values, an empty one, control or non-ASCII bytes) is no key. Whether it has a key's
/// shape is the load's business, as for a cookie.
pub fn header_key<'a, H>(values: H) -> Option<&'a str>
where
    H: IntoIterator<Item = &'a [u8]>,
{
    let mut values = values.into_iter();
    let value = values.next()?;
    if values.next().is_some() {
        // Two values: a proxy or a client appending one. Guessing which is meant could serve
        // the wrong visitor's key; serving neither starts a fresh session.
        return None;
    }
    let value = value.trim_ascii();
    if value.is_empty()
        || value.len() > MAX_HEADER_VALUE
        || !value.iter().all(|b| b.is_ascii_graphic())
    {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// Checks a `header_name` setting: an HTTP field name (RFC 9110 token) that is not one the
/// session or the browser already owns.
pub(crate) fn check_header_name(name: &str) -> Result<(), crate::ConfigError> {
    let invalid = |reason: String| {
        Err(crate::ConfigError::Invalid {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[&[u8]]) -> Option<String> {
        header_key(values.iter().copied()).map(str::to_owned)
    }

    #[test]
    fn the_header_value_is_the_key_trimmed() {
        assert_eq!(key(&[b"abc123"]).as_deref(), Some("abc123"));
        assert_eq!(key(&[b"  abc123\t"]).as_deref(), Some("abc123"));
    }

    #[test]
    fn no_value_two_values_empty_or_odd_bytes_carry_no_key() {
        for values in [
            &[][..],
            &[&b"abc"[..], b"def"],
            &[b""],
            &[b"   "],
            &[b"ab c"],
            &[b"caf\xc3\xa9"],
            &[b"a\x00b"],
            &[&[b'a'; MAX_HEADER_VALUE + 1][..]],
        ] {
            assert_eq!(key(values), None, "{values:?}");
        }
        assert!(key(&[&[b'a'; MAX_HEADER_VALUE][..]]).is_some());
    }

    #[test]
    fn each_transport_picks_its_key_and_both_prefers_the_header() {
        let both = Presented {
            cookie: Some("c"),
            header: Some("h"),
        };
        assert_eq!(both.pick(Transport::Cookie), Some(("c", Via::Cookie)));
        assert_eq!(both.pick(Transport::Header), Some(("h", Via::Header)));
        assert_eq!(both.pick(Transport::Both), Some(("h", Via::Header)));
        let cookie_only = Presented {
            cookie: Some("c"),
            header: None,
        };
        assert_eq!(cookie_only.pick(Transport::Header), None);
        assert_eq!(cookie_only.pick(Transport::Both), Some(("c", Via::Cookie)));
    }

    #[test]
    fn header_names_are_tokens_of_their_own() {
        assert!(check_header_name("X-Session-Token").is_ok());
        for bad in [
            "",
            "X Session",
            "Cookie",
            "set-cookie",
            "Authorization",
            "x:y",
        ] {
            let err = check_header_name(bad).unwrap_err().to_string();
            assert!(err.contains("header_name"), "{bad:?}: {err}");
        }
    }
}
