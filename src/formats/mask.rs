//! Masking of card numbers in free text (excerpts, reasons).

/// Replaces every run of 12 to 19 digits with its first six and last four digits, the rest
/// as `*`: the most PCI DSS allows to be shown. Quarantine excerpts pass through this, so an
/// unexpected card number in an unexpected column never leaves in clear.
pub fn mask_card_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &text[start..i];
            if (12..=19).contains(&run.len()) {
                out.push_str(&run[..6]);
                out.extend(std::iter::repeat_n('*', run.len() - 10));
                out.push_str(&run[run.len() - 4..]);
            } else {
                out.push_str(run);
            }
        } else {
            let ch = text[i..].chars().next().expect("i is on a char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_digit_runs_keep_first_six_and_last_four() {
        assert_eq!(mask_card_numbers("4111111111111111"), "411111******1111");
        assert_eq!(
            mask_card_numbers("pan=5500 0000 0000 0004;x=5500000000000004!"),
            "pan=5500 0000 0000 0004;x=550000******0004!"
        );
    }

    #[test]
    fn short_numbers_and_text_are_kept() {
        assert_eq!(
            mask_card_numbers("balance 1234.56 on 2026-10-31"),
            "balance 1234.56 on 2026-10-31"
        );
        assert_eq!(
            mask_card_numbers("ünïcode 12345678901"),
            "ünïcode 12345678901"
        );
    }
}
