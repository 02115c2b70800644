//! Decimal digits written straight into a `String`. On the per-request paths (the `Set-Cookie`
//! header, SQLite's datetime text) `core::fmt` cost more than everything around it: SQLite's
//! three datetimes per counter request took 12k instructions through `format!` (callgrind).

/// Appends `n` in decimal, as `n.to_string()` writes it.
pub fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_padded(out, n.unsigned_abs(), 1);
}

/// Appends `n` in decimal with at least `width` digits, zeros in front, as
/// `format!("{n:0width$}")` writes it.
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut rest = n;
    while rest > 0 {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let start = at.min(digits.len().saturating_sub(width.max(1)));
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// Appends the last two digits of `n` (a day, an hour, a minute …), zero-padded: the most
/// common case, without the loop.
pub fn push_two(out: &mut String, n: u8) {
    out.push(char::from(b'0' + n / 10 % 10));
    out.push(char::from(b'0' + n % 10));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_format_writes_them() {
        for n in [0, 7, -7, 10, 1_209_600, -1_000_000, i64::MAX, i64::MIN] {
            let mut out = String::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        for (n, width) in [
            (0, 2),
            (5, 2),
            (42, 2),
            (2025, 4),
            (7, 4),
            (250_000, 6),
            (25, 6),
            (123, 1),
        ] {
            let mut out = String::new();
            push_padded(&mut out, n, width);
            assert_eq!(out, format!("{n:0width$}"));
        }
        for n in [0u8, 9, 10, 59, 99] {
            let mut out = String::new();
            push_two(&mut out, n);
            assert_eq!(out, format!("{n:02}"));
        }
    }
}
