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

/// A tokenised card number: its token and display form, with no trace of the digits in
/// between. `Copy` and allocation-free, so a parser can tokenise every record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PanToken {
    mac: [u8; 32],
    display: [u8; MAX_ACCOUNT_LEN],
    len: u8,
}

/// The longest account number [`Tokeniser::tokenise_account`] takes (Metro 2's is 30).
pub const MAX_ACCOUNT_LEN: usize = 30;

impl std::fmt::Debug for PanToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PanToken({})", self.display())
    }
}

impl PanToken {
    /// The token: HMAC-SHA-256 of the digits, 64 lower-case hex characters.
    pub fn token(&self) -> String {
        hex::encode(self.mac)
    }

    /// Writes the token's 64 hex characters into `out`.
    pub fn write_token(&self, out: &mut [u8; 64]) {
        hex::encode_to_slice(self.mac, out).expect("64 bytes hold 32 in hex");
    }

    /// First six and last four digits, the rest `*`.
    pub fn display(&self) -> &str {
        std::str::from_utf8(&self.display[..self.len as usize]).expect("ASCII")
    }
}

impl Tokeniser {
    /// Tokenises a card number (12 to 19 digits, spaces or dashes between) without
    /// allocating: the form records carry.
    pub fn tokenise(&self, pan: &str) -> Result<PanToken, TokenError> {
        let mut digits = [0u8; 19];
        let mut n = 0;
        for b in pan.trim().bytes().filter(|b| *b != b' ' && *b != b'-') {
            if !b.is_ascii_digit() || n == digits.len() {
                return Err(TokenError::NotAPan(crate::formats::mask_card_numbers(pan)));
            }
            digits[n] = b;
            n += 1;
        }
        if n < 12 {
            return Err(TokenError::NotAPan(crate::formats::mask_card_numbers(pan)));
        }
        let mut mac = self.mac.clone();
        mac.update(&digits[..n]);
        let mut display = [b'*'; MAX_ACCOUNT_LEN];
        display[..6].copy_from_slice(&digits[..6]);
        display[n - 4..n].copy_from_slice(&digits[n - 4..n]);
        digits.fill(0);
        Ok(PanToken {
            mac: mac.finalize().into_bytes().into(),
            display,
            len: n as u8,
        })
    }

    /// Tokenises an account number that may or may not be a card number: a card number
    /// (as [`Self::tokenise`] reads one) gets exactly its token and display, so accounts
    /// join with card-keyed files; any other text of up to [`MAX_ACCOUNT_LEN`] printable
    /// ASCII characters is keyed as written (trimmed) and shown by its last four only.
    pub fn tokenise_account(&self, text: &str) -> Result<PanToken, TokenError> {
        if let Ok(token) = self.tokenise(text) {
            return Ok(token);
        }
        let text = text.trim();
        let n = text.len();
        if n == 0 || n > MAX_ACCOUNT_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotAPan(crate::formats::mask_card_numbers(text)));
        }
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        let mut display = [b'*'; MAX_ACCOUNT_LEN];
        if n > 4 {
            display[n - 4..n].copy_from_slice(&text.as_bytes()[n - 4..]);
        }
        Ok(PanToken {
            mac: mac.finalize().into_bytes().into(),
            display,
            len: n as u8,
        })
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
    let (payload, check) = digits.as_bytes().split_at(digits.len() - 1);
    luhn_check_digit(payload) == check[0] - b'0'
}

/// The Luhn check digit that completes `payload` (ASCII digits) into a valid number.
pub fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            // The check digit will sit at position 0 from the right, so the payload's
            // rightmost digit is doubled.
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
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

/// The key unit tests tokenise with.
#[cfg(test)]
pub(crate) const TEST_KEY: &str = "0123456789abcdef0123456789abcdef";

#[cfg(test)]
impl Tokeniser {
    /// A tokeniser with [`TEST_KEY`], for unit tests.
    pub(crate) fn for_tests() -> Tokeniser {
        Tokeniser::new(&crate::config::Secret::new(TEST_KEY)).expect("a long enough key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = TEST_KEY;

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
    fn pan_tokens_agree_with_the_string_forms() {
        let t = Tokeniser::new(&Secret::new(KEY)).unwrap();
        for pan in ["4111111111111111", "378282246310005", "4111-1111-1111-1111"] {
            let tok = t.tokenise(pan).unwrap();
            assert_eq!(tok.token(), t.token(pan).unwrap());
            assert_eq!(tok.display(), truncate(pan).unwrap());
            let mut hex = [0u8; 64];
            tok.write_token(&mut hex);
            assert_eq!(std::str::from_utf8(&hex).unwrap(), tok.token());
            assert!(!format!("{tok:?}").contains("4111111111111111"));
        }
        assert!(t.tokenise("12345678901").is_err());
        // An account number that is a card number tokenises as the card number does.
        let card = t.tokenise_account("4111111111111111").unwrap();
        assert_eq!(card, t.tokenise("4111111111111111").unwrap());
        let other = t.tokenise_account(" 553723456 ").unwrap();
        assert_eq!(other.display(), "*****3456");
        assert_ne!(
            other.token(),
            t.tokenise_account("553723457").unwrap().token()
        );
        assert!(t.tokenise_account("").is_err());
        assert!(t.tokenise_account(&"9".repeat(31)).is_err());
        assert!(t.tokenise("12345678901234567890").is_err());
        assert!(t.tokenise("4111x11111111111").is_err());
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
