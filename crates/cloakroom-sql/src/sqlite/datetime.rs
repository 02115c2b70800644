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

pub(super) fn parse_django_datetime(text: &str) -> Option<OffsetDateTime> {
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
}
