//! The session cookie on the wire: finding it in `Cookie` headers and writing `Set-Cookie`.
//!
//! Parsing follows Django's reading of the header (split on `;`, split each pair at its first
//! `=`, trim, drop surrounding quotes, the last duplicate wins) and never fails: a header that is
//! not UTF-8 or a pair without `=` is skipped.

use cookie::{Cookie, SameSite as CookieSameSite};
use time::{Duration, OffsetDateTime};

use crate::config::{SameSite, Settings};
use crate::manager::CookieAction;

/// Finds the value of cookie `name` in the `Cookie` header values of a request.
///
/// The last occurrence wins, across headers too, as in Django.
pub fn find<'a, I>(headers: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut found = None;
    for header in headers {
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        for pair in text.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim() == name {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                found = Some(v);
            }
        }
    }
    found
}

/// The `Set-Cookie` header value for a cookie action, or `None` to leave the cookie alone.
pub fn set_cookie_header(
    action: &CookieAction,
    settings: &Settings,
    now: OffsetDateTime,
) -> Option<String> {
    let (value, max_age) = match action {
        CookieAction::Keep => return None,
        CookieAction::Set { value, max_age } => (value.as_str(), *max_age),
        CookieAction::Delete => ("", Some(0)),
    };
    let mut cookie = Cookie::build((settings.cookie_name.as_str(), value))
        .path(settings.cookie_path.as_str())
        .http_only(settings.cookie_httponly)
        .secure(settings.cookie_secure)
        .same_site(match settings.cookie_samesite {
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::None => CookieSameSite::None,
        })
        .partitioned(settings.cookie_partitioned);
    if let Some(domain) = &settings.cookie_domain {
        cookie = cookie.domain(domain.as_str());
    }
    if let Some(age) = max_age {
        let expires = if matches!(action, CookieAction::Delete) {
            OffsetDateTime::UNIX_EPOCH
        } else {
            now.checked_add(Duration::seconds(age))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        };
        cookie = cookie.max_age(Duration::seconds(age)).expires(expires);
    }
    Some(cookie.build().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_in(headers: &[&[u8]], name: &str) -> Option<String> {
        find(headers.iter().copied(), name).map(str::to_owned)
    }

    #[test]
    fn finds_the_cookie_among_others_and_last_wins() {
        assert_eq!(
            find_in(&[b"a=1; sessionid=abc; b=2"], "sessionid").as_deref(),
            Some("abc")
        );
        assert_eq!(
            find_in(&[b"sessionid=one", b"x=y; sessionid=two"], "sessionid").as_deref(),
            Some("two")
        );
        assert_eq!(
            find_in(&[b"sessionid=\"quoted\""], "sessionid").as_deref(),
            Some("quoted")
        );
        assert_eq!(find_in(&[b"nosessionid=abc"], "sessionid"), None);
    }

    #[test]
    fn garbage_never_panics() {
        assert_eq!(find_in(&[b"\xff\xfe;;==;sessionid"], "sessionid"), None);
        assert_eq!(find_in(&[b";;;===;"], "sessionid"), None);
        assert_eq!(find_in(&[b"sessionid="], "sessionid").as_deref(), Some(""));
    }

    #[test]
    fn set_cookie_carries_djangos_attributes() {
        let s = Settings::default();
        let now = OffsetDateTime::UNIX_EPOCH;
        let h = set_cookie_header(
            &CookieAction::Set {
                value: "k".repeat(32),
                max_age: Some(60),
            },
            &s,
            now,
        )
        .unwrap();
        assert!(
            h.starts_with(&format!("sessionid={}", "k".repeat(32))),
            "{h}"
        );
        for part in [
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=60",
            "Expires=Thu, 01 Jan 1970 00:01:00 GMT",
        ] {
            assert!(h.contains(part), "{part} missing in {h}");
        }
        assert!(!h.contains("Secure"));
        let browser = set_cookie_header(
            &CookieAction::Set {
                value: "k".into(),
                max_age: None,
            },
            &s,
            now,
        )
        .unwrap();
        assert!(!browser.contains("Max-Age") && !browser.contains("Expires"));
        let delete = set_cookie_header(&CookieAction::Delete, &s, now).unwrap();
        assert!(delete.contains("Max-Age=0"), "{delete}");
    }
}
