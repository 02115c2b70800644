//! Session keys: 32 characters of `[a-z0-9]` drawn from the operating system's CSPRNG.
//!
//! The alphabet and length are Django's (lowercase only, so keys survive case-insensitive
//! file systems and collations), which lets a Django app and cloakroom share one store.

/// The characters a session key is made of, as Django draws them.
pub const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// The length of a key that cloakroom issues.
pub const KEY_LEN: usize = 32;
/// Anything shorter than this is "no key" (Django's `_validate_session_key`).
pub const MIN_KEY_LEN: usize = 8;
/// Longer values are not keys either: Django's column is `varchar(40)`.
pub const MAX_KEY_LEN: usize = 40;

/// Draws a fresh key from the OS CSPRNG.
///
/// Each character is picked uniformly by rejection sampling (a byte is used only when it is
/// below 252 = 7 × 36, so `byte % 36` has no bias).
///
/// # Errors
/// Fails only when the operating system cannot supply randomness.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut key = String::with_capacity(KEY_LEN);
    let mut buf = [0u8; 48];
    while key.len() < KEY_LEN {
        getrandom::fill(&mut buf)?;
        for &b in &buf {
            if b < 252 && key.len() < KEY_LEN {
                key.push(ALPHABET[usize::from(b % 36)] as char);
            }
        }
    }
    Ok(key)
}

/// Whether a cookie value can name a server-side session at all.
///
/// Django accepts any value of 8 characters or more; cloakroom is stricter and also refuses
/// characters outside the key alphabet and values longer than the column, so that a cookie can
/// never carry path separators, quotes or SQL into a store.
pub fn is_well_formed(candidate: &str) -> bool {
    // Every byte is tested (no early exit) with range checks, which the compiler turns into a
    // few vector instructions for a 32-byte key, where a per-byte table walk with an early exit
    // cost about 200 instructions on every request's cookie.
    (MIN_KEY_LEN..=MAX_KEY_LEN).contains(&candidate.len())
        && candidate.bytes().fold(true, |ok, b| {
            ok & (b.is_ascii_lowercase() | b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_32_lowercase_alphanumerics() {
        for _ in 0..200 {
            let key = generate().unwrap();
            assert_eq!(key.len(), KEY_LEN);
            assert!(is_well_formed(&key), "{key}");
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn short_long_and_foreign_values_are_not_keys() {
        assert!(!is_well_formed(""));
        assert!(!is_well_formed("abc1234"));
        assert!(is_well_formed("abcd1234"));
        assert!(!is_well_formed(&"a".repeat(41)));
        assert!(!is_well_formed("../../etc/passwd"));
        assert!(!is_well_formed("ABCDEFGHIJ"));
        assert!(!is_well_formed("abcd1234'; DROP TABLE x;--"));
    }

    /// Exactly the alphabet's bytes are accepted, at every position of a key.
    #[test]
    fn only_the_alphabet_is_well_formed() {
        for byte in 0..=255u8 {
            let allowed = ALPHABET.contains(&byte);
            for at in [0, 17, 31] {
                let mut key = *b"abcdefghijklmnopqrstuvwxyz012345";
                key[at] = byte;
                let accepted = std::str::from_utf8(&key).is_ok_and(is_well_formed);
                assert_eq!(accepted, allowed, "byte {byte} at {at}");
            }
        }
    }
}
