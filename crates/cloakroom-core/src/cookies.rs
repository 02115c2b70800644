//! The session cookie on the wire: finding it in `Cookie` headers and writing `Set-Cookie`.
//!
//! Parsing follows Django's reading of the header (split on `;`, split each pair at its first
//! `=`, trim, drop surrounding quotes, the last duplicate wins) and never fails. It works on
//! bytes, one cookie at a time: a pair that is not UTF-8 or has no `=` is skipped and the rest
//! of the header still counts. Django does the same in effect (WSGI hands it the header as
//! Latin-1, so a tracker cookie `caf\xe9` is just another cookie and the session cookie is kept;
//! checked with Django 5.2.19's `WSGIRequest.COOKIES`).

use time::{Duration, OffsetDateTime};

use crate::digits::{push_int, push_two};

use crate::config::{SameSite, Settings};
use crate::plan::CookieAction;

/// Finds the value of cookie `name` in the `Cookie` header values of a request.
///
/// The last occurrence wins, across headers too, as in Django. A value that is not UTF-8 is
/// no session key: when it is the last occurrence, the result is `None`.
pub fn find<'a, I>(headers: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut found = None;
    for header in headers {
        // The usual header is UTF-8: there `str` splitting (memchr) does the walk, about
        // 200 instructions a request less than the byte-at-a-time path kept for the rest.
        if let Ok(text) = std::str::from_utf8(header) {
            if let Some(v) = last_in(text, name) {
                found = Some(v);
            }
            continue;
        }
        for pair in header.split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (k, v) = (&pair[..eq], &pair[eq + 1..]);
            if k.trim_ascii() != name.as_bytes() {
                continue;
            }
            let v = v.trim_ascii();
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            // Still the last one: Django would read it (as Latin-1) and find no such session.
            found = std::str::from_utf8(v).ok();
        }
    }
    found
}

/// The last value of cookie `name` in one UTF-8 `Cookie` header, as [`find`] reads it.
fn last_in<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let mut found = None;
    for pair in header.split(';') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        if k.trim_ascii() != name {
            continue;
        }
        let v = v.trim_ascii();
        found = Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v),
        );
    }
    found
}

/// The `Set-Cookie` header value for a cookie action, or `None` to leave the cookie alone.
///
/// Attributes come in the `cookie` crate's order and spelling (`HttpOnly`, `SameSite`,
/// `Partitioned`, `Secure`, `Path`, `Domain`, `Max-Age`, `Expires`), written straight into one
/// buffer: this runs on every response that saves a session, and going through a `Cookie` and
/// its `Display` cost more than the rest of the layer.
pub fn set_cookie_header(
    action: &CookieAction,
    settings: &Settings,
    now: OffsetDateTime,
) -> Option<String> {
    let (value, _) = parts(action)?;
    let session = &settings.session;
    let mut out = String::with_capacity(
        session.cookie_name.len()
            + value.len()
            + session.cookie_path.len()
            + session.cookie_domain.as_ref().map_or(0, String::len)
            + 112,
    );
    write_set_cookie(&mut out, action, settings, now);
    Some(out)
}

/// [`set_cookie_header`] as the header value an adapter sends: written into a buffer this
/// thread keeps and copied once, so the value holds exactly its bytes. From a `String` with
/// room to spare, `HeaderValue` would allocate a second time (`Bytes` shares a vector whose
/// capacity is not its length through a header of its own).
pub(crate) fn set_cookie_value(
    action: &CookieAction,
    settings: &Settings,
    now: OffsetDateTime,
) -> Option<http::HeaderValue> {
    /// A buffer grown past this (a long signed cookie) is not kept.
    const KEEP: usize = 8 * 1024;
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    parts(action)?;
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        write_set_cookie(out, action, settings, now);
        let value = http::HeaderValue::from_str(out).ok();
        if out.capacity() > KEEP {
            *out = String::new();
        }
        value
    })
}

/// The cookie value and `Max-Age` of `action`; `None` when no cookie goes out.
fn parts(action: &CookieAction) -> Option<(&str, Option<i64>)> {
    match action {
        CookieAction::Keep => None,
        CookieAction::Set { value, max_age } => Some((value.as_str(), *max_age)),
        CookieAction::Delete => Some(("", Some(0))),
    }
}

/// Writes the `Set-Cookie` value of `action` at the end of `out` (nothing for
/// [`CookieAction::Keep`]).
fn write_set_cookie(
    out: &mut String,
    action: &CookieAction,
    settings: &Settings,
    now: OffsetDateTime,
) {
    let Some((value, max_age)) = parts(action) else {
        return;
    };
    out.push_str(&settings.session.cookie_name);
    out.push('=');
    out.push_str(value);
    if settings.session.cookie_httponly {
        out.push_str("; HttpOnly");
    }
    out.push_str(match settings.session.cookie_samesite {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    if settings.session.cookie_partitioned {
        out.push_str("; Partitioned");
    }
    // A partitioned cookie must be secure (CHIPS), as the `cookie` crate writes it.
    if settings.session.cookie_secure || settings.session.cookie_partitioned {
        out.push_str("; Secure");
    }
    out.push_str("; Path=");
    out.push_str(&settings.session.cookie_path);
    if let Some(domain) = &settings.session.cookie_domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    if let Some(age) = max_age {
        let expires = if matches!(action, CookieAction::Delete) {
            OffsetDateTime::UNIX_EPOCH
        } else {
            now.checked_add(Duration::seconds(age))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        };
        out.push_str("; Max-Age=");
        push_int(out, age);
        out.push_str("; Expires=");
        push_http_date(out, expires);
    }
}

/// Appends an instant as an HTTP date (`Thu, 01 Jan 1970 00:01:00 GMT`, RFC 9110's IMF-fixdate).
/// Every cookie a server sets within one second carries the same date (the expiry is now plus
/// a fixed age), so each thread keeps the last one it wrote, as hyper does for `Date`.
fn push_http_date(out: &mut String, at: OffsetDateTime) {
    const LEN: usize = "Thu, 01 Jan 1970 00:01:00 GMT".len();
    thread_local! {
        static LAST: std::cell::Cell<Option<(i64, [u8; LEN])>> = const { std::cell::Cell::new(None) };
    }
    let second = at.unix_timestamp();
    let cached = LAST.with(std::cell::Cell::get);
    if let Some((_, text)) = cached.filter(|(cached_second, _)| *cached_second == second) {
        if let Ok(text) = std::str::from_utf8(&text) {
            out.push_str(text);
            return;
        }
    }
    let start = out.len();
    format_http_date(out, at);
    if let Ok(text) = <[u8; LEN]>::try_from(&out.as_bytes()[start..]) {
        LAST.with(|last| last.set(Some((second, text))));
    }
}

fn format_http_date(out: &mut String, at: OffsetDateTime) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let at = at.to_offset(time::UtcOffset::UTC);
    let (year, month, day) = at.to_calendar_date();
    let (hour, minute, second) = at.to_hms();
    out.push_str(DAYS[usize::from(at.weekday().number_days_from_monday())]);
    out.push_str(", ");
    push_two(out, day);
    out.push(' ');
    out.push_str(MONTHS[usize::from(u8::from(month)) - 1]);
    out.push(' ');
    push_int(out, i64::from(year));
    out.push(' ');
    push_two(out, hour);
    out.push(':');
    push_two(out, minute);
    out.push(':');
    push_two(out, second);
    out.push_str(" GMT");
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
    fn a_non_utf8_byte_in_another_cookie_keeps_the_session_cookie() {
        for header in [
            &b"track=caf\xe9; sessionid=abc"[..],
            b"sessionid=abc; track=caf\xe9",
            b"caf\xe9; sessionid=abc; \xff\xfe=\x80",
        ] {
            assert_eq!(find_in(&[header], "sessionid").as_deref(), Some("abc"));
        }
        // The session cookie itself not UTF-8: it still wins, and is no key.
        assert_eq!(
            find_in(&[b"sessionid=abc", b"sessionid=caf\xe9"], "sessionid"),
            None
        );
        assert_eq!(
            find_in(&[b"sessionid=caf\xe9; sessionid=abc"], "sessionid").as_deref(),
            Some("abc")
        );
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

    /// What the `cookie` crate writes for the same settings: the hand-written header must match
    /// it byte for byte.
    fn via_cookie_crate(action: &CookieAction, settings: &Settings, now: OffsetDateTime) -> String {
        use cookie::{Cookie, SameSite as S};
        let (value, max_age) = match action {
            CookieAction::Set { value, max_age } => (value.as_str(), *max_age),
            _ => ("", Some(0)),
        };
        let mut c = Cookie::build((settings.session.cookie_name.as_str(), value))
            .path(settings.session.cookie_path.as_str())
            .http_only(settings.session.cookie_httponly)
            .secure(settings.session.cookie_secure)
            .same_site(match settings.session.cookie_samesite {
                SameSite::Strict => S::Strict,
                SameSite::Lax => S::Lax,
                SameSite::None => S::None,
            })
            .partitioned(settings.session.cookie_partitioned);
        if let Some(domain) = &settings.session.cookie_domain {
            c = c.domain(domain.as_str());
        }
        if let Some(age) = max_age {
            let expires = if matches!(action, CookieAction::Delete) {
                OffsetDateTime::UNIX_EPOCH
            } else {
                now + Duration::seconds(age)
            };
            c = c.max_age(Duration::seconds(age)).expires(expires);
        }
        c.build().to_string()
    }

    #[test]
    fn the_header_matches_the_cookie_crate_for_every_attribute_mix() {
        let now = time::macros::datetime!(2031-02-28 23:59:58.75 UTC);
        let actions = [
            CookieAction::Set {
                value: "k".repeat(32),
                max_age: Some(1_209_600),
            },
            CookieAction::Set {
                value: "abc".into(),
                max_age: Some(2),
            },
            CookieAction::Set {
                value: "abc".into(),
                max_age: None,
            },
            CookieAction::Delete,
        ];
        for same_site in [SameSite::Strict, SameSite::Lax, SameSite::None] {
            for flags in 0..8u8 {
                let mut s = Settings::default()
                    .with_cookie_samesite(same_site)
                    .with_cookie_httponly(flags & 1 != 0)
                    .with_cookie_secure(flags & 2 != 0)
                    .with_cookie_partitioned(flags & 4 != 0);
                if flags == 3 {
                    s = s
                        .with_cookie_domain(Some("example.com".to_owned()))
                        .with_cookie_path("/app");
                }
                for action in &actions {
                    let header = set_cookie_header(action, &s, now).unwrap();
                    assert_eq!(header, via_cookie_crate(action, &s, now));
                    let value = set_cookie_value(action, &s, now).unwrap();
                    assert_eq!(value.as_bytes(), header.as_bytes(), "the value sent");
                }
            }
        }
    }

    /// The per-thread buffer behind [`set_cookie_value`] holds nothing over from a long cookie
    /// (which it does not keep) to a short one, and `Keep` sends nothing.
    #[test]
    fn header_values_do_not_carry_over_between_cookies() {
        let (s, now) = (Settings::default(), OffsetDateTime::UNIX_EPOCH);
        for value in ["a".repeat(10_000), "b".repeat(32), "c".into()] {
            let action = CookieAction::Set {
                value,
                max_age: None,
            };
            let sent = set_cookie_value(&action, &s, now).unwrap();
            assert_eq!(
                sent.as_bytes(),
                set_cookie_header(&action, &s, now).unwrap().as_bytes()
            );
        }
        assert_eq!(set_cookie_value(&CookieAction::Keep, &s, now), None);
    }

    /// The per-second cache writes what formatting writes, for repeated, alternating and
    /// far-apart instants (and a year written with fewer digits, which is not cached).
    #[test]
    fn cached_http_dates_are_the_formatted_ones() {
        use time::macros::datetime;
        let instants = [
            datetime!(2030-01-01 12:00:00.1 UTC),
            datetime!(2030-01-01 12:00:00.9 UTC),
            datetime!(2030-01-01 12:00:01 UTC),
            datetime!(2030-01-01 12:00:00.5 UTC),
            datetime!(1970-01-01 00:01:00 UTC),
            datetime!(2024-02-29 23:59:59 +02:00),
            datetime!(0999-12-31 23:59:59 UTC),
            datetime!(2030-01-01 12:00:01 UTC),
        ];
        for at in instants.iter().chain(instants.iter().rev()) {
            let (mut cached, mut formatted) = (String::from("x"), String::from("x"));
            push_http_date(&mut cached, *at);
            format_http_date(&mut formatted, *at);
            assert_eq!(cached, formatted, "{at}");
        }
    }
}
