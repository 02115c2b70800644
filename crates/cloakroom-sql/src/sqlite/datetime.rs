//! Instants as Django keeps `expire_date` in SQLite: UTC wall-clock text.

use time::OffsetDateTime;

use crate::digits::{push_padded, push_two};

/// Formats an instant as Django stores `expire_date` in SQLite: the UTC wall clock as text,
/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, fraction omitted when zero. Expiry filters compare this text.
pub fn django_datetime(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = String::with_capacity(26);
    // Written by hand: three of these per counter request cost 12k instructions via format!.
    let year = at.year();
    if year < 0 {
        out.push('-');
        push_padded(&mut out, u64::from(year.unsigned_abs()), 3);
    } else {
        push_padded(&mut out, u64::from(year.unsigned_abs()), 4);
    }
    for (sep, n) in [
        ('-', u8::from(at.month())),
        ('-', at.day()),
        (' ', at.hour()),
        (':', at.minute()),
        (':', at.second()),
    ] {
        out.push(sep);
        push_two(&mut out, n);
    }
    if let us @ 1.. = at.microsecond() {
        out.push('.');
        push_padded(&mut out, u64::from(us), 6);
    }
    out
}

/// Reads `expire_date` as Django writes it in SQLite. The shape Django and [`django_datetime`]
/// write (a four-digit year, optionally six fraction digits) is read by position: one load per
/// request made the general parser below about a thousand instructions of every request. Any
/// other shape (fewer fraction digits, another tool's rows) goes to that parser.
pub(super) fn parse_django_datetime(text: &str) -> Option<OffsetDateTime> {
    canonical(text.as_bytes()).or_else(|| parse_any(text))
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD HH:MM:SS.ffffff`, digits and separators at fixed places.
fn canonical(b: &[u8]) -> Option<OffsetDateTime> {
    if !(b.len() == 19 || (b.len() == 26 && b[19] == b'.')) {
        return None;
    }
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, sep)| b[at] != sep) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let two = |at: usize| number(at..at + 2).and_then(|n| u8::try_from(n).ok());
    let year = i32::try_from(number(0..4)?).ok()?;
    let month = time::Month::try_from(two(5)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, two(8)?).ok()?;
    let micro = if b.len() == 26 { number(20..26)? } else { 0 };
    let clock = time::Time::from_hms_micro(two(11)?, two(14)?, two(17)?, micro).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

fn parse_any(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn datetimes_are_djangos_sqlite_text() {
        assert_eq!(
            django_datetime(datetime!(2025-01-15 00:00:00.25 UTC)),
            "2025-01-15 00:00:00.250000"
        );
        assert_eq!(
            django_datetime(datetime!(2099-01-01 00:00:00 UTC)),
            "2099-01-01 00:00:00"
        );
        assert_eq!(
            django_datetime(datetime!(0987-12-31 23:59:09.000001 +01:00)),
            "0987-12-31 22:59:09.000001"
        );
        assert_eq!(
            parse_django_datetime("2025-01-15 00:00:00.250000"),
            Some(datetime!(2025-01-15 00:00:00.25 UTC))
        );
    }

    /// The positional reader agrees with the general parser on every shape Django writes, and
    /// leaves the rest (short fractions, bad digits, impossible dates) to it.
    #[test]
    fn canonical_shape_reads_as_the_general_parser() {
        let mut at = datetime!(1999-12-31 23:59:59 UTC);
        for step in 0..2_000i64 {
            at += time::Duration::microseconds(step * 7_777_777_123 + 1);
            let text = django_datetime(at);
            assert_eq!(canonical(text.as_bytes()), Some(at), "{text}");
            assert_eq!(canonical(text.as_bytes()), parse_any(&text), "{text}");
        }
        for other in [
            "2025-01-15 00:00:00.25",
            "2025-02-30 00:00:00",
            "2025-13-01 00:00:00",
            "2025-01-15 24:00:00",
            "2025-01-15T00:00:00",
            "2025-01-15 00:00:0x",
            "2025-01-15 00:00:00.12345x",
            "",
        ] {
            assert_eq!(canonical(other.as_bytes()), None, "{other}");
            assert_eq!(parse_django_datetime(other), parse_any(other), "{other}");
        }
        assert_eq!(
            parse_django_datetime("2025-01-15 00:00:00.25"),
            Some(datetime!(2025-01-15 00:00:00.25 UTC))
        );
    }
}
