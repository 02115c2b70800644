//! The client side of the HTTP suite: a visitor with a cookie jar, a client without one, and a
//! response read in one go with its `Set-Cookie` headers parsed. Public so that an adapter's
//! own HTTP tests read responses the way the suite does.

use reqwest::header::{HeaderMap, SET_COOKIE, VARY};
use serde_json::Value;
use time::OffsetDateTime;

/// The cookie name the suite expects: Django's default `SESSION_COOKIE_NAME`.
pub const COOKIE_NAME: &str = "sessionid";

/// A client with its own cookie jar: one visitor. Redirects are not followed, so every
/// `Set-Cookie` is seen.
pub fn visitor() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client without TLS builds")
}

/// A client without a cookie jar: every cookie it sends is set by hand.
pub fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client without TLS builds")
}

/// The `Cookie` header a browser would send for a session cookie holding `value`.
pub fn session(value: &str) -> String {
    format!("{COOKIE_NAME}={value}")
}

/// A finished response: status, headers and body, read in one go.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Every header, `Set-Cookie` and `Vary` included.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

/// Sends a request and reads the whole response; a transport error (the server dropped the
/// connection, as it does when a handler panics) fails the test.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the server answers (a dropped connection means it panicked)");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("the body reads");
    Reply {
        status,
        headers,
        body,
    }
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?} (status {})",
                self.body, self.status
            )
        })
    }

    /// Every `Set-Cookie` header, parsed.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| SetCookie::parse(v.to_str().expect("Set-Cookie is ASCII")))
            .collect()
    }

    /// The one `Set-Cookie` for cookie `name`, if any (two would be a bug).
    pub fn cookie(&self, name: &str) -> Option<SetCookie> {
        let mut found: Vec<SetCookie> = self
            .set_cookies()
            .into_iter()
            .filter(|c| c.name == name)
            .collect();
        assert!(found.len() <= 1, "several Set-Cookie for {name}: {found:?}");
        found.pop()
    }

    /// The session cookie ([`COOKIE_NAME`]) the response sets, which must be there.
    pub fn session_cookie(&self) -> SetCookie {
        self.cookie(COOKIE_NAME).unwrap_or_else(|| {
            panic!(
                "expected a Set-Cookie for {COOKIE_NAME}, got headers {:?}",
                self.headers
            )
        })
    }

    /// The new session key the response hands out (checked to be a well-formed key).
    pub fn new_key(&self) -> String {
        let cookie = self.session_cookie();
        assert!(is_key(&cookie.value), "not a session key: {cookie:?}");
        cookie.value
    }

    /// Whether `Vary` names `Cookie`.
    pub fn varies_on_cookie(&self) -> bool {
        self.headers.get_all(VARY).iter().any(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("cookie"))
        })
    }
}

/// Whether `value` looks like a key Django issues: 32 characters of `[a-z0-9]`.
pub fn is_key(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// One `Set-Cookie` header, split into its name, value and attributes.
#[derive(Debug, Clone)]
pub struct SetCookie {
    /// The header as sent.
    pub raw: String,
    /// The cookie's name.
    pub name: String,
    /// The cookie's value (empty when the header deletes the cookie).
    pub value: String,
    /// Attribute names in lower case, with their values (`None` for a flag such as `Secure`).
    pub attrs: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Splits a header value; panics on a header without `name=value`.
    pub fn parse(raw: &str) -> Self {
        let mut parts = raw.split(';').map(str::trim);
        let (name, value) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .unwrap_or_else(|| panic!("malformed Set-Cookie {raw:?}"));
        let attrs = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
                None => (p.to_ascii_lowercase(), None),
            })
            .collect();
        Self {
            raw: raw.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
            attrs,
        }
    }

    /// Whether the attribute is there (with or without a value).
    pub fn has(&self, attr: &str) -> bool {
        self.attrs.iter().any(|(k, _)| k.eq_ignore_ascii_case(attr))
    }

    /// The attribute's value.
    pub fn get(&self, attr: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .and_then(|(_, v)| v.as_deref())
    }

    /// The attribute names, lower case, sorted.
    pub fn attr_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.attrs.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names
    }

    /// `Max-Age` in seconds.
    pub fn max_age(&self) -> Option<i64> {
        self.get("max-age")
            .map(|v| v.parse().expect("Max-Age is a number"))
    }

    /// `Expires`, parsed from the HTTP date.
    pub fn expires(&self) -> Option<OffsetDateTime> {
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        self.get("expires").map(|v| {
            time::PrimitiveDateTime::parse(v, format)
                .unwrap_or_else(|e| panic!("Expires {v:?} is not an HTTP date: {e}"))
                .assume_utc()
        })
    }

    /// Whether this header deletes the cookie: empty value, `Max-Age=0`, `Expires` in 1970.
    pub fn is_deletion(&self) -> bool {
        self.value.is_empty()
            && self.max_age() == Some(0)
            && self.expires().is_some_and(|at| at.year() == 1970)
    }

    /// Asserts that the cookie lives `seconds` from now: `Max-Age` and `Expires` agree.
    pub fn assert_lifetime(&self, seconds: i64) {
        assert_eq!(self.max_age(), Some(seconds), "Max-Age in {}", self.raw);
        let expires = self
            .expires()
            .unwrap_or_else(|| panic!("no Expires in {}", self.raw));
        let expected = OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        let off = (expires - expected).whole_seconds().abs();
        assert!(
            off <= 5,
            "Expires {expires} is {off}s away from now+{seconds}s: {}",
            self.raw
        );
    }

    /// Asserts a browser-session cookie: neither `Max-Age` nor `Expires`.
    pub fn assert_browser_session(&self) {
        assert!(
            !self.has("max-age") && !self.has("expires"),
            "a browser-session cookie has neither Max-Age nor Expires: {}",
            self.raw
        );
    }
}
