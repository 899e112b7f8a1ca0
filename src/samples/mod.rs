//! Synthetic issuer files for the demo, the tests and benchmarks: one generator per file
//! category, and a whole month of them with planted exceptions for reconciliation.
//!
//! - `accounts`: account master snapshots, CSV (`topologies/card_accounts.toml`):
//!   [`write_accounts`].
//! - `transactions`: a day's posted transactions, fixed width
//!   (`topologies/card_transactions.toml`): [`write_transactions`].
//! - `metro2`: a month's Metro 2 base segments (`topologies/metro2_base.toml`):
//!   [`write_metro2`].
//! - `month`: a client's month, the snapshots either side of it and every day's postings,
//!   with the exceptions a reconciliation must find written next to them: [`write_month`].
//! - `command`: `credstream gen` ([`run_gen`]).
//!
//! Every file speaks of the same accounts: account `i` of seed `s` has the reference
//! [`account_reference`]`(s, i)` and the card [`card_number`]`(s, i)` in every file and
//! every month, so files of different kinds and months join.
//!
//! Architecture Invariant: generation is a pure function of its arguments (no clock, no
//! global random state), so the same arguments always give the same bytes. A generator
//! writes one record at a time and never holds a file; what it keeps is per account (the
//! account set is far smaller than the records).

mod accounts;
mod command;
mod fixed;
mod metro2;
mod month;
mod profile;
mod transactions;

pub use accounts::{
    ACCOUNT_COLUMNS, TRAILER_MARKER, TrailerFault, account_master_csv,
    account_master_csv_with_trailer, accounts_trailer, plant, with_bad_trailer, write_accounts,
};
pub use command::run_gen;
pub use metro2::{Metro2Fault, Metro2Spec, Metro2Totals, write_metro2};
pub use month::{
    BalanceMismatch, ExpectedExceptions, Month, MonthManifest, MonthProgress, MonthSpec,
    write_month, write_month_with_progress,
};
pub use transactions::{
    AccountMovement, Correction, POSTING_RECORD_LEN, TransactionTotals, TransactionsFault,
    TransactionsSpec, write_transactions,
};

/// Progress is reported every this many records.
pub const PROGRESS_EVERY: usize = 100_000;

/// The accounts of one account master: accounts `0..count` of `seed`. Postings and
/// Metro 2 records name accounts of such a set, so they match the master's references
/// and card numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountSet {
    /// The seed the account master was generated with.
    pub seed: u64,
    /// How many accounts it has (its data rows).
    pub count: usize,
}

impl AccountSet {
    /// The account's `ReferenceNumber`.
    pub fn reference(&self, index: usize) -> String {
        account_reference(self.seed, index)
    }

    /// The account's card number.
    pub fn card_number(&self, index: usize) -> String {
        card_number(self.seed, index)
    }
}

/// The `ReferenceNumber` of account `index` of seed `seed`: `ACC<seed, 4 digits or
/// more><index, 8 digits or more>`, the same in every file and month.
pub fn account_reference(seed: u64, index: usize) -> String {
    format!("ACC{seed:04}{index:08}")
}

/// The card number of account `index` of seed `seed`: 16 digits, Luhn-valid, the same in
/// every file and month. A Visa (`400000`), Mastercard (`510510`) or Discover (`601100`)
/// BIN, nine digits that differ for every index below 10⁹ of one seed, and the check
/// digit.
pub fn card_number(seed: u64, index: usize) -> String {
    String::from_utf8(Card::of(seed, index).digits.to_vec()).expect("digits are ASCII")
}

/// Card networks the generated cards belong to; the postings' `Network` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Network {
    Visa,
    Mastercard,
    Discover,
}

impl Network {
    /// As the postings layout spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Network::Visa => "VISA",
            Network::Mastercard => "MASTERCARD",
            Network::Discover => "DISCOVER",
        }
    }
}

/// An account's card, without allocating: generators make one per record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Card {
    pub(crate) digits: [u8; 16],
    pub(crate) network: Network,
}

impl Card {
    pub(crate) fn of(seed: u64, index: usize) -> Card {
        // Multiplying by a number prime to 10⁹ and adding an offset permutes 0..10⁹: no two
        // accounts of one seed share a card body, and consecutive ones look unrelated.
        const BODY: u64 = 1_000_000_000;
        let offset = mix(seed, 0, Salt::CardOffset) % BODY;
        let body = ((index as u64 % BODY) * 738_219_611 + offset) % BODY;
        let (bin, network) = match mix(seed, index as u64, Salt::CardNetwork) % 100 {
            0..=54 => (b"400000", Network::Visa),
            55..=89 => (b"510510", Network::Mastercard),
            _ => (b"601100", Network::Discover),
        };
        let mut digits = [b'0'; 16];
        digits[..6].copy_from_slice(bin);
        put_digits(&mut digits[6..15], body);
        digits[15] = b'0' + crate::tokenise::luhn_check_digit(&digits[..15]);
        Card { digits, network }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits).expect("digits are ASCII")
    }
}

/// Writes `n` zero-filled into `out`, all of it. Panics if `n` has more digits: a
/// generator bug, as every width is checked against the inputs up front.
pub(crate) fn put_digits(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    assert_eq!(n, 0, "a number wider than its {} digits", out.len());
}

/// What a derived seed is for, so that no two uses of one seed draw the same numbers.
#[derive(Clone, Copy)]
pub(crate) enum Salt {
    CardOffset = 1,
    CardNetwork,
    Profile,
    Cycle,
    ExtraColumns,
    Postings,
    Metro2,
    Month,
}

/// A seed derived from `seed`, `index` and what it is for (SplitMix64's finaliser over
/// their combination): nearby inputs give unrelated outputs.
pub(crate) fn mix(seed: u64, index: u64, salt: Salt) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add((salt as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream of its own for one account and purpose.
pub(crate) fn account_rng(seed: u64, index: usize, salt: Salt, extra: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(mix(seed ^ extra.rotate_left(17), index as u64, salt))
}

/// A stable number for a text (FNV-1a), to derive seeds from dates as written.
pub(crate) fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Cents as a decimal with two places: `1234.50`, `-0.05`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// What the tests of the generators share: reading fields by position, and parsing a
/// generated file through the built-in layouts as the pipeline does.
#[cfg(test)]
pub(crate) mod testing {
    use crate::formats::{Catalog, DriftClass, FileDrift, ParseSummary, parse};

    /// The text at 1-based `start`, `len` bytes, of a record.
    pub(crate) fn at(line: &[u8], start: usize, len: usize) -> &str {
        std::str::from_utf8(&line[start - 1..start - 1 + len]).expect("ASCII")
    }

    /// Zero-filled digits at a position.
    pub(crate) fn num(line: &[u8], start: usize, len: usize) -> i64 {
        let text = at(line, start, len);
        text.parse()
            .unwrap_or_else(|_| panic!("{text:?} at {start} is not a number"))
    }

    /// Every record's issue class and field, in file order.
    pub(crate) type Issues = Vec<(DriftClass, Option<String>)>;

    /// Parses `bytes` as the file `name` through the built-in catalog, tokenising card
    /// numbers under a test key.
    pub(crate) fn parse_as(name: &str, bytes: &[u8]) -> (Result<ParseSummary, FileDrift>, Issues) {
        let catalog = Catalog::builtin().expect("the built-in layouts load");
        let category = catalog
            .categorize(name)
            .unwrap_or_else(|e| panic!("no category for {name}: {e}"));
        let tokeniser = crate::tokenise::Tokeniser::for_tests();
        let mut issues = Vec::new();
        let result = parse(bytes, category, &tokeniser, |r| {
            if let Err(issue) = r {
                issues.push((issue.class, issue.field));
            }
            Ok::<(), ()>(())
        })
        .expect("the callback never fails");
        (result, issues)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_luhn_valid_distinct_and_stable() {
        let mut seen = std::collections::HashSet::new();
        for seed in [0, 1, 42] {
            for i in 0..20_000 {
                let pan = card_number(seed, i);
                assert_eq!(pan.len(), 16);
                assert!(crate::tokenise::looks_like_pan(&pan), "{pan}");
                assert!(["400000", "510510", "601100"].contains(&&pan[..6]));
                assert_eq!(pan, card_number(seed, i));
                assert!(seen.insert((seed, pan)));
            }
        }
        assert_ne!(card_number(1, 5), card_number(2, 5));
    }

    #[test]
    fn money_keeps_the_sign_of_small_amounts() {
        assert_eq!(money(123_450), "1234.50");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(-150), "-1.50");
        assert_eq!(money(0), "0.00");
    }

    #[test]
    fn references_are_stable_per_seed_and_index() {
        assert_eq!(account_reference(7, 12), "ACC000700000012");
        let set = AccountSet { seed: 7, count: 20 };
        assert_eq!(set.reference(12), account_reference(7, 12));
        assert_eq!(set.card_number(12), card_number(7, 12));
    }

    /// Rows of an account master by column name, trailer excluded.
    fn rows(text: &str) -> Vec<std::collections::HashMap<String, String>> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(Result::unwrap)
            .filter(|r| &r[0] != TRAILER_MARKER)
            .map(|r| {
                headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn an_account_is_the_same_account_in_every_month() {
        let september = rows(&account_master_csv(500, 13, "2026-09-30", &[]));
        let october = rows(&account_master_csv(500, 13, "2026-10-31", &[]));
        let stable = [
            "ReferenceNumber",
            "CustomerId",
            "CardNumber",
            "CreditCardType",
            "ProductType",
            "StateCode",
            "ZipCode",
            "AccountOriginationDate",
            "OriginalCreditLimit",
            "CurrentCreditLimit",
        ];
        for (a, b) in september.iter().zip(&october) {
            for column in stable {
                assert_eq!(a[column], b[column], "{column}");
            }
        }
        let balances = |rows: &[std::collections::HashMap<String, String>]| {
            rows.iter()
                .map(|r| r["CycleEndingBalance"].clone())
                .collect::<Vec<_>>()
        };
        assert_ne!(balances(&september), balances(&october));
    }

    #[test]
    fn an_account_has_one_card_number_in_every_file() {
        let (seed, n) = (31, 400);
        let master = rows(&account_master_csv(n, seed, "2026-10-31", &[]));
        let pans: std::collections::HashMap<&str, &str> = master
            .iter()
            .map(|r| (r["ReferenceNumber"].as_str(), r["CardNumber"].as_str()))
            .collect();
        assert_eq!(pans.len(), n);

        let day = chrono::NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();
        let mut postings = Vec::new();
        write_transactions(
            &mut postings,
            &TransactionsSpec::new(day, seed, 5_000, n),
            |_| {},
        )
        .unwrap();
        let lines: Vec<&[u8]> = postings.split(|b| *b == b'\n').collect();
        let mut posted = std::collections::HashSet::new();
        for line in lines.iter().filter(|l| l.first() == Some(&b'D')) {
            let reference = testing::at(line, 2, 20).trim_end();
            assert_eq!(testing::at(line, 22, 19).trim_end(), pans[reference]);
            posted.insert(reference);
        }
        assert!(posted.len() > n / 2);

        let mut metro2 = Vec::new();
        let month = "2026-10".parse().unwrap();
        write_metro2(&mut metro2, &Metro2Spec::new(month, seed, n), |_| {}).unwrap();
        let file = crate::formats::metro2::parse_metro2(&metro2).unwrap();
        assert_eq!(file.records.len(), n);
        for (record, row) in file.records.iter().zip(&master) {
            assert_eq!(record.base.consumer_account_number, row["CardNumber"]);
            // The balance reported is the master's, in whole dollars.
            let end = accounts::parse_money(&row["CycleEndingBalance"]).unwrap();
            assert_eq!(record.base.current_balance as i64, end.max(0) / 100);
            assert_eq!(record.base.state, row["StateCode"]);
            assert_eq!(record.base.postal_code, row["ZipCode"]);
        }
    }
}
