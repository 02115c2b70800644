//! Authenticated encryption with keys derived from `secret_key`, written once for the two
//! places that seal data: the `private_cookies` engine (the cookie value) and `encrypt_data`
//! (the record a server-side store keeps, see [`crate::codec::Codec::Encrypted`]).
//!
//! A sealed value is `version (1 byte) ‖ nonce (24 random bytes) ‖ XChaCha20-Poly1305
//! ciphertext and tag`, the version byte authenticated as associated data. Each use derives
//! its own 32-byte key with HKDF-SHA256 (RFC 5869) from `secret_key` under its own salt and
//! info, so one secret never keys two uses (a stored record cannot pass for a cookie). Every
//! `secret_key_fallbacks` entry derives a key the same way: values are opened with the current
//! key, then each fallback, and sealed with the current key only.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::signing::Secret;

/// XChaCha20's nonce: 24 bytes, long enough to be drawn at random for every value.
pub(crate) const NONCE_LEN: usize = 24;

/// Poly1305's tag, at the end of the ciphertext.
pub(crate) const TAG_LEN: usize = 16;

/// What one use of the cipher is: the HKDF salt and info its keys are derived with, and the
/// version byte its values start with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Purpose {
    pub salt: &'static [u8],
    pub info: &'static [u8],
    pub version: u8,
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The operating system gave no randomness for the nonce.
    #[error("the operating system gave no randomness for the encryption nonce: {0}")]
    Randomness(#[source] getrandom::Error),
    /// The cipher refused the plaintext (longer than XChaCha20 can encrypt).
    #[error("the session data could not be encrypted")]
    Cipher,
}

/// The ciphers of one purpose: the current key first, then one per fallback secret. `Debug`
/// shows how many keys, never a key.
#[derive(Clone)]
pub(crate) struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
    purpose: Purpose,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.len())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Keys for `purpose` derived from `secret` and each of `fallbacks`.
    pub(crate) fn new(secret: &Secret, fallbacks: &[Secret], purpose: Purpose) -> Self {
        let ciphers = std::iter::once(secret)
            .chain(fallbacks)
            .map(|s| cipher_for(s, purpose))
            .collect();
        Self { ciphers, purpose }
    }

    /// `plain` sealed with the current key under a fresh random nonce.
    pub(crate) fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SealError::Randomness)?;
        let nonce = XNonce::from(nonce);
        let version = [self.purpose.version];
        let current = self.ciphers.first().ok_or(SealError::Cipher)?;
        let sealed = current
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &version,
                },
            )
            .map_err(|_| SealError::Cipher)?;
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        raw.push(self.purpose.version);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(raw)
    }

    /// The plaintext of `raw` under the first key it authenticates with (the current key,
    /// then each fallback), if it is at least `min_plain` bytes; `None` for anything else.
    pub(crate) fn open(&self, raw: &[u8], min_plain: usize) -> Option<Vec<u8>> {
        let (&version, rest) = raw.split_first()?;
        if version != self.purpose.version || rest.len() < NONCE_LEN + TAG_LEN + min_plain {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        self.ciphers.iter().find_map(|cipher| {
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: &[version],
                    },
                )
                .ok()
        })
    }
}

/// The cipher keyed by HKDF-SHA256 of `secret` under `purpose`'s salt and info.
fn cipher_for(secret: &Secret, purpose: Purpose) -> XChaCha20Poly1305 {
    let mut key = [0u8; 32];
    // HKDF-SHA256 can expand to 255 × 32 bytes; 32 always succeeds.
    let expanded = Hkdf::<Sha256>::new(Some(purpose.salt), secret.expose().as_bytes())
        .expand(purpose.info, &mut key);
    debug_assert!(expanded.is_ok());
    XChaCha20Poly1305::new(&key.into())
}
