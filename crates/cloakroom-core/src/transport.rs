//! How the session key travels between client and server: in the session cookie (Django's
//! way, the default), in a request header such as `X-Session-Token` (API clients, mobile
//! apps), or either. The rules live here, framework-free, so that every adapter is a few lines:
//! it hands [`Sessions::start_request`] the request's `Cookie` values and its key header's
//! values, and writes what [`Outcome::response_headers`] lists.
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
//! key in a header is not `HttpOnly`: the client's code holds it, so a script injected into a
//! page that holds it can read it. Keep browsers on the cookie; under `Both`, a browser's first
//! response carries the key in the header too (nothing says which kind of client it is).
//!
//! [`Outcome::response_headers`]: crate::Outcome::response_headers
//! [`Sessions::start_request`]: crate::Sessions::start_request

pub use crate::config::{Transport, DEFAULT_HEADER_NAME};

/// The longest key header value looked at: far above any session key (40 characters at
/// most), so a longer value is no key and is not copied.
pub const MAX_HEADER_VALUE: usize = 256;

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
}
