//! Card-number (PAN) tokenisation: the parser replaces a card number with a keyed token
//! before anything leaves it, and keeps only the first six and last four digits for
//! display, the most PCI DSS allows to be shown.
//!
//! A token is `HMAC-SHA-256(key, digits)` in lower-case hex: the same card gives the same
//! token under one key (so accounts can be joined across files and days), and nobody
//! without the key can test a guess. The key comes from a file or the environment
//! (`tokenisation.key_file`, `CREDSTREAM_TOKENISATION__KEY`) and is never logged.
//!
//! Architecture Invariant: a clear card number exists only in the raw store and inside
//! the parser; everything downstream sees a token and the truncated display form.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// The shortest key accepted: as long as the hash's output, as RFC 2104 recommends.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a tokeniser could not be made. Never carries the key.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the tokenisation key has {0} bytes; at least {MIN_KEY_BYTES} are required")]
    KeyTooShort(usize),
    #[error("{0:?} is not a card number (12 to 19 digits, spaces or dashes between)")]
    NotAPan(String),
}

/// Makes tokens with one secret key.
#[derive(Clone)]
pub struct Tokeniser {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Tokeniser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokeniser(key: ***)")
    }
}

impl Tokeniser {
    /// A tokeniser with `key` (at least [`MIN_KEY_BYTES`] bytes).
    pub fn new(key: &Secret) -> Result<Tokeniser, TokenError> {
        let bytes = key.expose().as_bytes();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(TokenError::KeyTooShort(bytes.len()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(bytes).expect("HMAC takes keys of any length");
        Ok(Tokeniser { mac })
    }

    /// The token of a card number: its digits (spaces and dashes dropped) under the key.
    pub fn token(&self, pan: &str) -> Result<String, TokenError> {
        let digits = digits(pan)?;
        let mut mac = self.mac.clone();
        mac.update(digits.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }
}

/// The display form: first six and last four digits, the rest `*`.
pub fn truncate(pan: &str) -> Result<String, TokenError> {
    let digits = digits(pan)?;
    let n = digits.len();
    Ok(format!(
        "{}{}{}",
        &digits[..6],
        "*".repeat(n - 10),
        &digits[n - 4..]
    ))
}

/// Whether `text` is a card number by length and the Luhn check digit (for spotting card
/// numbers in columns that should not hold them).
pub fn looks_like_pan(text: &str) -> bool {
    let Ok(digits) = digits(text) else {
        return false;
    };
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The digits of a card number written with optional spaces or dashes.
fn digits(pan: &str) -> Result<String, TokenError> {
    let trimmed = pan.trim();
    let digits: String = trimmed.chars().filter(|c| *c != ' ' && *c != '-').collect();
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        // The message must not echo a card number in clear: show its masked form.
        return Err(TokenError::NotAPan(crate::formats::mask_card_numbers(
            trimmed,
        )));
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2 checks the crate is used as HMAC-SHA-256.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_are_keyed_stable_and_ignore_separators() {
        let t = Tokeniser::new(&Secret::new(KEY)).unwrap();
        let a = t.token("4111111111111111").unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(a, t.token("4111 1111 1111 1111").unwrap());
        assert_eq!(a, t.token("4111-1111-1111-1111").unwrap());
        assert_ne!(a, t.token("4111111111111112").unwrap());
        let other = Tokeniser::new(&Secret::new(KEY.replace('0', "1"))).unwrap();
        assert_ne!(a, other.token("4111111111111111").unwrap());
        assert!(!a.contains("4111111111111111"));
    }

    #[test]
    fn short_keys_and_non_pans_are_refused_without_echoing_them() {
        assert!(matches!(
            Tokeniser::new(&Secret::new("short")),
            Err(TokenError::KeyTooShort(5))
        ));
        let t = Tokeniser::new(&Secret::new(KEY)).unwrap();
        assert!(t.token("12345").is_err());
        let err = t.token("4111111111111111x").unwrap_err().to_string();
        assert!(!err.contains("4111111111111111"), "{err}");
        assert!(!format!("{t:?}").contains(KEY));
    }

    #[test]
    fn display_keeps_first_six_and_last_four() {
        assert_eq!(truncate("4111111111111111").unwrap(), "411111******1111");
        assert_eq!(truncate("378282246310005").unwrap(), "378282*****0005");
    }

    #[test]
    fn luhn_spots_card_numbers() {
        assert!(looks_like_pan("4111 1111 1111 1111"));
        assert!(looks_like_pan("378282246310005"));
        assert!(!looks_like_pan("4111111111111112"));
        assert!(!looks_like_pan("1234"));
    }
}
