//! Per-session expiry, kept in the session data under `_session_expiry` exactly as Django keeps it.
//!
//! | `_session_expiry` | meaning |
//! |---|---|
//! | missing | the settings: `cookie_age`, `expire_at_browser_close` |
//! | integer N > 0 | N seconds after each save ([`Expiry::AfterEachSave`]; a read does not extend it) |
//! | 0 | at browser close (the store still keeps it `cookie_age` seconds) |
//! | ISO 8601 string | at that instant |

use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::config::SessionSettings;
use crate::data::{lookup, Data};
use crate::keys::{DEADLINE_KEY, EXPIRY_KEY, IDLE_KEY, MAX_COOKIE_AGE};

/// When a session should expire: the argument of [`Session::set_expiry`](crate::Session::set_expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Back to the settings (`cookie_age`, `expire_at_browser_close`).
    Default,
    /// When the browser closes (Django's `set_expiry(0)`).
    BrowserClose,
    /// This long after each save of the session (Django's `set_expiry(N)`); 0 means browser
    /// close. The clock restarts only when the session is saved (a change, or
    /// `save_every_request`): a request that only reads it does not push the expiry, unlike
    /// the `idle_timeout` setting (see [`Session::set_idle_timeout`](crate::Session::set_idle_timeout)),
    /// which counts from the last request.
    AfterEachSave(Duration),
    /// The old name of [`AfterEachSave`](Self::AfterEachSave), which it means: the session ends
    /// this long after each *save*, not after the last request, so it was no idle timeout.
    #[deprecated(
        since = "0.2.0",
        note = "renamed `Expiry::AfterEachSave` (the same meaning); for an idle timeout that \
                reads also extend, use `Session::set_idle_timeout` or the `idle_timeout` setting"
    )]
    Idle(Duration),
    /// At this instant (Django's `set_expiry(datetime)`).
    At(OffsetDateTime),
    /// This long from now, fixed (Django's `set_expiry(timedelta)`).
    In(Duration),
}

impl Expiry {
    /// Django's integer form: 0 is browser close, N > 0 is N seconds after each save.
    pub fn seconds(n: u64) -> Self {
        if n == 0 {
            Self::BrowserClose
        } else {
            Self::AfterEachSave(Duration::from_secs(n))
        }
    }

    /// The value stored under `_session_expiry`, or `None` to remove the key.
    pub(crate) fn to_value(self, now: OffsetDateTime) -> Option<Value> {
        #[allow(deprecated)] // `Idle` is `AfterEachSave` under its old name
        match self {
            Self::Default => None,
            Self::BrowserClose => Some(Value::from(0)),
            Self::AfterEachSave(d) | Self::Idle(d) if d.as_secs() == 0 => Some(Value::from(0)),
            Self::AfterEachSave(d) | Self::Idle(d) => Some(Value::from(d.as_secs())),
            Self::At(at) => Some(Value::from(format_iso(at))),
            Self::In(d) => Some(Value::from(format_iso(after(now, d.as_secs())))),
        }
    }
}

/// `secs` seconds after `now`, at most [`MAX_COOKIE_AGE`] seconds after it: every lifetime is
/// clamped there, so the sum stays a representable date (and never panics).
pub(crate) fn after(now: OffsetDateTime, secs: u64) -> OffsetDateTime {
    let secs = i64::try_from(secs.min(MAX_COOKIE_AGE)).unwrap_or(0);
    now.checked_add(time::Duration::seconds(secs))
        .unwrap_or(now)
}

/// Formats an instant as Python's `datetime.isoformat()` does for an aware UTC datetime:
/// `2030-01-01T12:00:00+00:00`, with `.ffffff` only when microseconds are not zero.
pub fn format_iso(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    let micros = at.microsecond();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

/// Parses what Python's `datetime.isoformat()` writes (with or without an offset; a naive value
/// is taken as UTC, as a `USE_TZ` Django app would mean it).
pub fn parse_iso(text: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    let naive = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(text, naive)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
        .or_else(|| {
            // Python also writes offsets without seconds but with fractions, e.g. "+05:30".
            let with_offset = time::macros::format_description!(
                version = 2,
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory]:[offset_minute]"
            );
            OffsetDateTime::parse(text, with_offset).ok()
        })
}

/// When a session holding `data` and saved at `now` expires under `settings`: Django's rules,
/// the idle timeout and the absolute deadline, as the core applies them on save. For tools that
/// list stored sessions; never panics, whatever the data holds.
pub fn expires_at(data: &Data, settings: &SessionSettings, now: OffsetDateTime) -> OffsetDateTime {
    Lifetime::of(data, settings, now).expires_at
}

/// The expiry rules of one session, derived from its data and the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetime {
    /// Whole seconds the cookie should live (Django's `get_expiry_age`).
    pub age: i64,
    /// When the stored record expires.
    pub expires_at: OffsetDateTime,
    /// The cookie has no Max-Age/Expires.
    pub browser_close: bool,
    /// The idle timeout in force, in seconds, when the session rolls.
    pub idle: Option<i64>,
}

impl Lifetime {
    /// Django's rules, then an idle timeout (when no `_session_expiry` overrides it), then
    /// the absolute deadline: the effective expiry is the earliest.
    pub(crate) fn of(data: &Data, settings: &SessionSettings, now: OffsetDateTime) -> Self {
        let mut lifetime = Self::django(data, settings, now);
        if let Some(idle) = Self::idle(data, settings) {
            lifetime.age = idle;
            lifetime.expires_at = after(now, idle.unsigned_abs());
            lifetime.idle = Some(idle);
        }
        if let Some(deadline) = lookup(data, DEADLINE_KEY)
            .and_then(Value::as_str)
            .and_then(parse_iso)
        {
            if deadline < lifetime.expires_at {
                lifetime.expires_at = deadline;
                lifetime.age = (deadline - now).whole_seconds();
            }
        }
        lifetime
    }

    /// The idle timeout in seconds that rolls this session's expiry forward, if any: the
    /// session's own (`_session_idle`) or the `idle_timeout` setting, unless an explicit
    /// `_session_expiry` overrides both. `None`: the session does not roll, which a read-only
    /// request checks before it computes a whole [`Lifetime`].
    pub(crate) fn idle(data: &Data, settings: &SessionSettings) -> Option<i64> {
        if !matches!(lookup(data, EXPIRY_KEY), None | Some(Value::Null)) {
            return None;
        }
        // Clamped like `_session_expiry`: the codec refuses stored values out of range, this
        // keeps a value a handler just set (or any other) from overflowing the date.
        lookup(data, IDLE_KEY)
            .and_then(Value::as_u64)
            .or(settings.idle_timeout)
            .map(|s| s.min(MAX_COOKIE_AGE))
            .and_then(|s| i64::try_from(s).ok())
            .filter(|s| *s > 0)
    }

    fn django(data: &Data, settings: &SessionSettings, now: OffsetDateTime) -> Self {
        let cookie_age = i64::try_from(settings.cookie_age.min(MAX_COOKIE_AGE)).unwrap_or(0);
        let default = |browser_close| Self {
            age: cookie_age,
            expires_at: after(now, cookie_age.unsigned_abs()),
            browser_close,
            idle: None,
        };
        match lookup(data, EXPIRY_KEY) {
            None | Some(Value::Null) => default(settings.expire_at_browser_close),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(secs) if secs > 0 => {
                    // The value may come from a form or from other code: clamp it so that the
                    // expiry instant cannot overflow (which would panic).
                    let secs = i64::try_from(secs.min(MAX_COOKIE_AGE)).unwrap_or(cookie_age);
                    Self {
                        age: secs,
                        expires_at: after(now, secs.unsigned_abs()),
                        browser_close: false,
                        idle: None,
                    }
                }
                // 0 (and anything Django would read as false) is browser close.
                _ => default(true),
            },
            Some(Value::String(s)) => match parse_iso(s) {
                Some(at) => Self {
                    age: (at - now).whole_seconds(),
                    expires_at: at,
                    browser_close: false,
                    idle: None,
                },
                None => {
                    tracing::warn!(
                        "ignoring unreadable `_session_expiry`; using the default lifetime"
                    );
                    default(settings.expire_at_browser_close)
                }
            },
            Some(_) => default(settings.expire_at_browser_close),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn iso_matches_pythons_isoformat() {
        assert_eq!(
            format_iso(datetime!(2030-01-01 12:00:00 UTC)),
            "2030-01-01T12:00:00+00:00"
        );
        assert_eq!(
            format_iso(datetime!(2025-01-02 00:00:00.25 UTC)),
            "2025-01-02T00:00:00.250000+00:00"
        );
        assert_eq!(
            parse_iso("2025-01-02T00:00:00.250000+00:00"),
            Some(datetime!(2025-01-02 00:00:00.25 UTC))
        );
        assert_eq!(
            parse_iso("2025-01-02T00:00:00"),
            Some(datetime!(2025-01-02 00:00:00 UTC))
        );
        assert_eq!(
            parse_iso("2025-01-02T05:30:00+05:30"),
            Some(datetime!(2025-01-02 00:00:00 UTC))
        );
        assert_eq!(parse_iso("tomorrow"), None);
    }

    /// `Idle` was renamed `AfterEachSave`; code that still says `Idle` keeps its meaning.
    #[test]
    #[allow(deprecated)]
    fn after_each_save_is_djangos_integer_and_idle_still_means_it() {
        let now = datetime!(2025-01-01 00:00:00 UTC);
        let five_minutes = Duration::from_secs(300);
        assert_eq!(Expiry::seconds(300), Expiry::AfterEachSave(five_minutes));
        for expiry in [
            Expiry::AfterEachSave(five_minutes),
            Expiry::Idle(five_minutes),
        ] {
            assert_eq!(expiry.to_value(now), Some(Value::from(300)));
        }
        assert_eq!(
            Expiry::Idle(Duration::ZERO).to_value(now),
            Expiry::BrowserClose.to_value(now)
        );
    }

    #[test]
    fn lifetime_follows_djangos_rules() {
        let now = datetime!(2025-01-01 00:00:00 UTC);
        let s = crate::Settings::default().session;
        let mut data = Data::new();
        let l = Lifetime::of(&data, &s, now);
        assert_eq!(l.age, 1_209_600);
        assert!(!l.browser_close);

        data.insert(EXPIRY_KEY.into(), Value::from(300));
        let l = Lifetime::of(&data, &s, now);
        assert_eq!((l.age, l.browser_close), (300, false));
        assert_eq!(l.expires_at, now + time::Duration::seconds(300));

        data.insert(EXPIRY_KEY.into(), Value::from(0));
        let l = Lifetime::of(&data, &s, now);
        assert!(l.browser_close);
        assert_eq!(l.age, 1_209_600, "the store keeps it for cookie_age");

        data.insert(
            EXPIRY_KEY.into(),
            Value::from("2025-01-01T01:00:00.500000+00:00"),
        );
        let l = Lifetime::of(&data, &s, now);
        assert_eq!(l.age, 3600, "fractions are truncated");

        for huge in [Value::from(i64::MAX), Value::from(u64::MAX)] {
            data.insert(EXPIRY_KEY.into(), huge);
            let l = Lifetime::of(&data, &s, now);
            assert_eq!((l.age, l.browser_close), (MAX_COOKIE_AGE as i64, false));
        }

        let global_close = crate::Settings::default()
            .with_expire_at_browser_close(true)
            .session;
        data.insert(EXPIRY_KEY.into(), Value::from(300));
        assert!(!Lifetime::of(&data, &global_close, now).browser_close);
        data.remove(EXPIRY_KEY);
        assert!(Lifetime::of(&data, &global_close, now).browser_close);
    }
}
