//! A day's posted transactions, fixed width: `topologies/card_transactions.toml`. Lines of
//! 160 bytes and a `\n`: one `H` header, the `D` details, one `T` trailer restating their
//! counts, sums and net.

// Amounts in cents are written dollars_cents (`250_00` is 250.00).
#![allow(clippy::inconsistent_digit_grouping)]

use chrono::{Datelike, NaiveDate};

use super::fixed::Line;
use super::{AccountSet, Card, PROGRESS_EVERY, Salt, mix};

/// Bytes of every record, the line break excluded.
pub const POSTING_RECORD_LEN: usize = 160;

/// Widest `records` a file can have: a `TransactionId` gives the record seven digits.
const MAX_RECORDS: usize = 9_999_999;

/// What to write: one file of one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionsSpec {
    /// The posting day: the header's file date and every record's `PostDate`.
    pub day: NaiveDate,
    /// The day's file sequence, 1 to 99 (the `_01` of `postings_2026-10-15_01.dat`).
    pub sequence: u8,
    /// Seed of the postings; with `day` and `sequence` it decides every record.
    pub seed: u64,
    /// Detail records before any correction.
    pub records: usize,
    /// The account master whose accounts are posted to.
    pub accounts: AccountSet,
    /// The header's issuer name, at most 30 ASCII characters.
    pub issuer: String,
    /// Something wrong to plant, if any.
    pub fault: Option<TransactionsFault>,
    /// Write the corrected version of the file instead: same records but one amended
    /// and one removed.
    pub correction: Option<Correction>,
    /// Also return every account's debits and credits ([`TransactionTotals::per_account`]).
    pub per_account: bool,
}

/// What [`TransactionsSpec::fault`] gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionsFault {
    /// The trailer's `detail_count` is one more than the file has: the file is held.
    TrailerCount,
    /// The trailer's `debit_amount` is one cent more than the debits: the file is held.
    TrailerDebitSum,
    /// The middle detail record is 159 bytes: that record is `WRONG_RECORD_LENGTH`. Its
    /// values are still where the layout says, and the trailer counts and sums them.
    WrongLength,
    /// The middle detail record's `Amount` is not a number: that record is
    /// `TYPE_MISMATCH`. The trailer counts it but leaves it out of the sums, as a parser
    /// must, so the rest of the file reconciles.
    BadAmount,
}

/// How a corrected file differs from the original of the same spec: record `amend`
/// (0-based, in the original) has 10.00 more, record `remove` is left out. The other
/// records, `TransactionId`s included, are the original's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Correction {
    pub amend: usize,
    pub remove: usize,
}

/// One account's postings in a file, in cents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountMovement {
    /// Purchases and fees.
    pub debits: i64,
    /// Payments and refunds.
    pub credits: i64,
    /// The payments among the credits.
    pub payments: i64,
}

impl AccountMovement {
    /// Debits less credits: what the postings add to the balance owed.
    pub fn net(&self) -> i64 {
        self.debits - self.credits
    }

    /// Adds another file's movement.
    pub fn add(&mut self, other: &AccountMovement) {
        self.debits += other.debits;
        self.credits += other.credits;
        self.payments += other.payments;
    }
}

/// What a correct trailer states for the records written (a trailer fault changes the
/// trailer, not these), in cents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionTotals {
    /// Detail records written.
    pub records: u64,
    pub debit_count: u64,
    pub debit_cents: i64,
    pub credit_count: u64,
    pub credit_cents: i64,
    /// With [`TransactionsSpec::per_account`]: each account's movement, indexed as the
    /// account set. A record planted wrong ([`TransactionsFault::WrongLength`],
    /// [`TransactionsFault::BadAmount`]) is quarantined by a parser, so it is left out.
    pub per_account: Option<Vec<AccountMovement>>,
}

impl TransactionTotals {
    /// Debits less credits.
    pub fn net_cents(&self) -> i64 {
        self.debit_cents - self.credit_cents
    }
}

impl TransactionsSpec {
    /// A file of `records` postings to accounts `0..accounts` of `seed` (seed also of the
    /// postings), sequence 1, no fault.
    pub fn new(day: NaiveDate, seed: u64, records: usize, accounts: usize) -> TransactionsSpec {
        TransactionsSpec {
            day,
            sequence: 1,
            seed,
            records,
            accounts: AccountSet {
                seed,
                count: accounts,
            },
            issuer: "CREDSTREAM SAMPLE BANK".into(),
            fault: None,
            correction: None,
            per_account: false,
        }
    }

    /// The file's name: `postings_<YYYY-MM-DD>_<sequence>.dat`, as the layout's identity
    /// pattern reads it.
    pub fn file_name(&self) -> String {
        format!(
            "postings_{}_{:02}.dat",
            self.day.format("%Y-%m-%d"),
            self.sequence
        )
    }

    /// Why the spec cannot be written, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=99).contains(&self.sequence) {
            return Err(format!("sequence {} is not 1 to 99", self.sequence));
        }
        if !(1000..=9999).contains(&self.day.year()) {
            return Err(format!("day {} has no 4-digit year", self.day));
        }
        if self.records > MAX_RECORDS {
            return Err(format!(
                "{} records do not fit the 7 digits a TransactionId gives them (at most {MAX_RECORDS})",
                self.records
            ));
        }
        if self.records > 0 && self.accounts.count == 0 {
            return Err("postings need at least one account to post to".into());
        }
        let widest = self
            .accounts
            .reference(self.accounts.count.saturating_sub(1));
        if widest.len() > 20 {
            return Err(format!(
                "account references such as {widest} do not fit AccountReference's 20 bytes: \
                 use a seed below 1000000000 and fewer than 100000000 accounts"
            ));
        }
        if !self.issuer.is_ascii() || self.issuer.len() > 30 {
            return Err(format!(
                "issuer name {:?} is not at most 30 ASCII characters",
                self.issuer
            ));
        }
        if matches!(
            self.fault,
            Some(TransactionsFault::WrongLength | TransactionsFault::BadAmount)
        ) && self.records == 0
        {
            return Err("a bad record needs at least one record to plant it in".into());
        }
        if let Some(c) = self.correction
            && (c.amend == c.remove || c.amend >= self.records || c.remove >= self.records)
        {
            return Err(format!(
                "a correction amends and removes two different records of the {}: {c:?}",
                self.records
            ));
        }
        Ok(())
    }
}

/// A merchant category: its MCC, some merchants and the range of its amounts in cents.
struct Merchants {
    mcc: &'static str,
    names: &'static [&'static str],
    cents: (i64, i64),
}

const MERCHANTS: &[Merchants] = &[
    Merchants {
        mcc: "5411",
        names: &[
            "WHOLE FOODS MARKET",
            "KROGER #0412",
            "SAFEWAY 1187",
            "PUBLIX SUPER MKT",
        ],
        cents: (5_00, 250_00),
    },
    Merchants {
        mcc: "5812",
        names: &["CHIPOTLE 1423", "OLIVE GARDEN 0211", "PANERA BREAD #6021"],
        cents: (8_00, 150_00),
    },
    Merchants {
        mcc: "5814",
        names: &["MCDONALD'S F12345", "STARBUCKS STORE 08812", "SUBWAY 33021"],
        cents: (2_00, 30_00),
    },
    Merchants {
        mcc: "5541",
        names: &["SHELL OIL 57442", "CHEVRON 0091234", "EXXONMOBIL 4471"],
        cents: (15_00, 110_00),
    },
    Merchants {
        mcc: "5311",
        names: &["TARGET T-1234", "MACY'S #112", "KOHL'S #0823"],
        cents: (10_00, 400_00),
    },
    Merchants {
        mcc: "5732",
        names: &["BEST BUY 00012345", "APPLE STORE R102"],
        cents: (20_00, 2_500_00),
    },
    Merchants {
        mcc: "5912",
        names: &["CVS/PHARMACY #08123", "WALGREENS #4410"],
        cents: (4_00, 120_00),
    },
    Merchants {
        mcc: "4111",
        names: &["MTA NYCT PAYGO", "BART CLIPPER"],
        cents: (2_75, 60_00),
    },
    Merchants {
        mcc: "4121",
        names: &["UBER TRIP", "LYFT RIDE"],
        cents: (7_00, 90_00),
    },
    Merchants {
        mcc: "4511",
        names: &["DELTA AIR 0062341", "UNITED 0162345"],
        cents: (89_00, 1_400_00),
    },
    Merchants {
        mcc: "7011",
        names: &["MARRIOTT HOTEL 221", "HILTON GARDEN INN"],
        cents: (99_00, 1_200_00),
    },
    Merchants {
        mcc: "5999",
        names: &["AMAZON MKTPLACE PMTS", "ETSY.COM"],
        cents: (3_00, 300_00),
    },
    Merchants {
        mcc: "4900",
        names: &["CON EDISON", "PG&E WEB ONLINE"],
        cents: (30_00, 400_00),
    },
];

/// Fees: the description and the amount in cents (0: a percentage of something, drawn).
const FEES: &[(&str, i64)] = &[
    ("LATE FEE", 40_00),
    ("ANNUAL MEMBERSHIP FEE", 95_00),
    ("FOREIGN TRANSACTION FEE", 0),
    ("CASH ADVANCE FEE", 10_00),
    ("RETURNED PAYMENT FEE", 29_00),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Purchase,
    Payment,
    Refund,
    Fee,
}

impl Kind {
    fn code(self) -> &'static [u8; 4] {
        match self {
            Kind::Purchase => b"0101",
            Kind::Payment => b"0201",
            Kind::Refund => b"0301",
            Kind::Fee => b"0401",
        }
    }

    fn is_debit(self) -> bool {
        matches!(self, Kind::Purchase | Kind::Fee)
    }
}

/// One detail record, before it is laid out.
struct Posting {
    kind: Kind,
    account: usize,
    amount: i64,
    /// Days between the transaction and its posting (0 to 3).
    days_before: u8,
    mcc: &'static str,
    merchant: &'static str,
    auth: Option<[u8; 6]>,
    /// The record (index in the file) a refund reverses.
    reversal_of: Option<usize>,
}

/// A recent purchase a refund may reverse.
#[derive(Clone, Copy)]
struct Recent {
    index: usize,
    account: usize,
    amount: i64,
    days_before: u8,
    merchants: usize,
    name: usize,
}

/// How many recent purchases a refund chooses from.
const RECENT: usize = 32;

/// Draws record `index`. Every record draws from `rng` whether or not it is written, so a
/// correction keeps the other records as they were.
fn draw(
    rng: &mut fastrand::Rng,
    index: usize,
    accounts: usize,
    recent: &mut [Option<Recent>; RECENT],
) -> Posting {
    let auth = |rng: &mut fastrand::Rng| {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
        let mut code = [0u8; 6];
        for b in &mut code {
            *b = ALPHABET[rng.usize(..ALPHABET.len())];
        }
        code
    };
    let account = rng.usize(..accounts);
    match rng.u8(0..100) {
        0..=79 => {
            let merchants = rng.usize(..MERCHANTS.len());
            let m = &MERCHANTS[merchants];
            let name = rng.usize(..m.names.len());
            // Most purchases are small: the lower half of the range three times in four.
            let (lo, hi) = m.cents;
            let hi = if rng.u8(0..4) > 0 {
                lo + (hi - lo) / 2
            } else {
                hi
            };
            let amount = rng.i64(lo..=hi);
            let days_before = rng.u8(0..=3);
            recent[index % RECENT] = Some(Recent {
                index,
                account,
                amount,
                days_before,
                merchants,
                name,
            });
            Posting {
                kind: Kind::Purchase,
                account,
                amount,
                days_before,
                mcc: m.mcc,
                merchant: m.names[name],
                auth: Some(auth(rng)),
                reversal_of: None,
            }
        }
        80..=89 => {
            let amount = if rng.u8(0..10) < 6 {
                rng.i64(25..=1_500) * 100
            } else {
                rng.i64(25_00..=2_500_00)
            };
            Posting {
                kind: Kind::Payment,
                account,
                amount,
                days_before: 0,
                mcc: "",
                merchant: "PAYMENT - THANK YOU",
                auth: None,
                reversal_of: None,
            }
        }
        90..=95 => {
            let pick = rng.usize(..RECENT);
            let reverses = rng.u8(0..10) < 4;
            match recent[pick].filter(|_| reverses) {
                // A refund of a recent purchase names it, on its account and card.
                Some(p) => {
                    let m = &MERCHANTS[p.merchants];
                    let full = rng.bool();
                    Posting {
                        kind: Kind::Refund,
                        account: p.account,
                        amount: if full {
                            p.amount
                        } else {
                            (p.amount / 2).max(1)
                        },
                        days_before: p.days_before.min(1),
                        mcc: m.mcc,
                        merchant: m.names[p.name],
                        auth: None,
                        reversal_of: Some(p.index),
                    }
                }
                None => {
                    let m = &MERCHANTS[rng.usize(..MERCHANTS.len())];
                    let (lo, hi) = m.cents;
                    Posting {
                        kind: Kind::Refund,
                        account,
                        amount: rng.i64(lo..=hi.min(300_00).max(lo)),
                        days_before: rng.u8(0..=3),
                        mcc: m.mcc,
                        merchant: m.names[rng.usize(..m.names.len())],
                        auth: None,
                        reversal_of: None,
                    }
                }
            }
        }
        _ => {
            let (merchant, fixed) = FEES[rng.usize(..FEES.len())];
            let amount = if fixed > 0 {
                fixed
            } else {
                rng.i64(1_00..=30_00)
            };
            Posting {
                kind: Kind::Fee,
                account,
                amount,
                days_before: 0,
                mcc: "",
                merchant,
                auth: None,
                reversal_of: None,
            }
        }
    }
}

/// Writes the `TransactionId` of record `index` of the file: `T`, the posting day as
/// YYMMDD, the sequence and the index in 7 digits; 16 bytes, unique across days and
/// sequences of a century.
fn transaction_id(line: &mut Line, start: usize, day: NaiveDate, sequence: u8, index: usize) {
    line.text(start, 1, "T");
    line.number(start + 1, 2, (day.year() % 100) as u64);
    line.number(start + 3, 2, u64::from(day.month()));
    line.number(start + 5, 2, u64::from(day.day()));
    line.number(start + 7, 2, u64::from(sequence));
    line.number(start + 9, 7, index as u64);
}

/// Writes the file `spec` describes to `out` one line at a time, calling `progress` with
/// the records drawn every 100 000. Returns what a correct trailer states (see
/// [`TransactionTotals`]). The same spec always writes the same bytes.
pub fn write_transactions(
    out: &mut impl std::io::Write,
    spec: &TransactionsSpec,
    mut progress: impl FnMut(usize),
) -> std::io::Result<TransactionTotals> {
    spec.check()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let day = spec.day;
    let day_key = u64::try_from(day.num_days_from_ce()).unwrap_or_default();
    let mut rng = fastrand::Rng::with_seed(mix(
        spec.seed,
        (day_key << 8) | u64::from(spec.sequence),
        Salt::Postings,
    ));
    let transaction_dates: Vec<NaiveDate> = (0..=3u64)
        .map(|back| day - chrono::Days::new(back))
        .collect();

    let mut line = Line::new();
    line.blank(POSTING_RECORD_LEN);
    line.text(1, 1, "H");
    line.date_ymd(2, day);
    line.number(10, 2, u64::from(spec.sequence));
    line.text(12, 30, &spec.issuer);
    line.write_to(out)?;

    let mut totals = TransactionTotals {
        per_account: spec
            .per_account
            .then(|| vec![AccountMovement::default(); spec.accounts.count]),
        ..TransactionTotals::default()
    };
    let faulty = spec.records / 2;
    let mut recent = [None; RECENT];
    for i in 0..spec.records {
        let mut p = draw(&mut rng, i, spec.accounts.count, &mut recent);
        if (i + 1) % PROGRESS_EVERY == 0 {
            progress(i + 1);
        }
        if let Some(c) = spec.correction {
            if c.remove == i {
                continue;
            }
            if c.amend == i {
                p.amount += 10_00;
            }
        }
        let card = Card::of(spec.accounts.seed, p.account);
        line.blank(POSTING_RECORD_LEN);
        line.text(1, 1, "D");
        line.text(2, 20, &spec.accounts.reference(p.account));
        line.text(22, 19, card.as_str());
        transaction_id(&mut line, 41, day, spec.sequence, i);
        line.bytes(57, p.kind.code());
        line.text(61, 1, if p.kind.is_debit() { "D" } else { "C" });
        line.number(62, 12, p.amount as u64);
        line.text(74, 3, "USD");
        line.date_ymd(77, transaction_dates[usize::from(p.days_before)]);
        line.date_ymd(85, day);
        line.text(93, 4, p.mcc);
        line.text(97, 25, p.merchant);
        if let Some(auth) = p.auth {
            line.bytes(122, &auth);
        }
        line.text(128, 10, card.network.name());
        if let Some(j) = p.reversal_of {
            transaction_id(&mut line, 138, day, spec.sequence, j);
        }
        let planted = (i == faulty).then_some(spec.fault).flatten();
        match planted {
            Some(TransactionsFault::WrongLength) => line.truncate_last(),
            // A thousands separator where a digit belongs, as a careless extract writes.
            Some(TransactionsFault::BadAmount) => line.bytes(69, b","),
            _ => {}
        }
        line.write_to(out)?;

        totals.records += 1;
        let readable = planted != Some(TransactionsFault::BadAmount);
        if p.kind.is_debit() {
            totals.debit_count += 1;
            totals.debit_cents += if readable { p.amount } else { 0 };
        } else {
            totals.credit_count += 1;
            totals.credit_cents += if readable { p.amount } else { 0 };
        }
        let handed_on = !matches!(
            planted,
            Some(TransactionsFault::WrongLength | TransactionsFault::BadAmount)
        );
        if let (Some(accounts), true) = (&mut totals.per_account, handed_on) {
            let a = &mut accounts[p.account];
            match p.kind {
                Kind::Purchase | Kind::Fee => a.debits += p.amount,
                Kind::Refund => a.credits += p.amount,
                Kind::Payment => {
                    a.credits += p.amount;
                    a.payments += p.amount;
                }
            }
        }
    }

    let (mut count, mut debits) = (totals.records, totals.debit_cents);
    match spec.fault {
        Some(TransactionsFault::TrailerCount) => count += 1,
        Some(TransactionsFault::TrailerDebitSum) => debits += 1,
        _ => {}
    }
    let net = debits - totals.credit_cents;
    line.blank(POSTING_RECORD_LEN);
    line.text(1, 1, "T");
    line.number(2, 9, count);
    line.number(11, 9, totals.debit_count);
    line.number(20, 15, debits as u64);
    line.number(35, 9, totals.credit_count);
    line.number(44, 15, totals.credit_cents as u64);
    line.text(59, 1, if net < 0 { "-" } else { "+" });
    line.number(60, 15, net.unsigned_abs());
    debug_assert_eq!(line.len(), POSTING_RECORD_LEN);
    line.write_to(out)?;
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::formats::DriftClass;
    use crate::samples::testing::{at, num, parse_as};
    use crate::samples::{account_reference, card_number};

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, 15).unwrap()
    }

    fn write(spec: &TransactionsSpec) -> (Vec<u8>, TransactionTotals) {
        let mut out = Vec::new();
        let totals = write_transactions(&mut out, spec, |_| {}).unwrap();
        (out, totals)
    }

    /// What the trailer states, read by position.
    #[derive(Debug, PartialEq, Eq)]
    struct Stated {
        count: i64,
        debit_count: i64,
        debits: i64,
        credit_count: i64,
        credits: i64,
        net: i64,
    }

    /// The detail records recounted by position, as the trailer should state them; a
    /// record whose amount is not digits is counted but not summed.
    fn recount(details: &[&[u8]]) -> Stated {
        let mut s = Stated {
            count: 0,
            debit_count: 0,
            debits: 0,
            credit_count: 0,
            credits: 0,
            net: 0,
        };
        for line in details {
            s.count += 1;
            let amount = at(line, 62, 12).parse::<i64>().unwrap_or(0);
            match at(line, 61, 1) {
                "D" => {
                    s.debit_count += 1;
                    s.debits += amount;
                    s.net += amount;
                }
                "C" => {
                    s.credit_count += 1;
                    s.credits += amount;
                    s.net -= amount;
                }
                other => panic!("DebitCredit {other:?}"),
            }
        }
        s
    }

    fn stated(trailer: &[u8]) -> Stated {
        let sign = match at(trailer, 59, 1) {
            "+" => 1,
            "-" => -1,
            other => panic!("net sign {other:?}"),
        };
        Stated {
            count: num(trailer, 2, 9),
            debit_count: num(trailer, 11, 9),
            debits: num(trailer, 20, 15),
            credit_count: num(trailer, 35, 9),
            credits: num(trailer, 44, 15),
            net: sign * num(trailer, 60, 15),
        }
    }

    /// The file's lines without their `\n`; panics unless every line ends with one.
    fn lines(bytes: &[u8]) -> Vec<&[u8]> {
        assert_eq!(bytes.last(), Some(&b'\n'));
        bytes[..bytes.len() - 1].split(|b| *b == b'\n').collect()
    }

    #[test]
    fn the_same_spec_writes_the_same_bytes() {
        let spec = TransactionsSpec::new(day(), 5, 2_000, 300);
        let (a, _) = write(&spec);
        assert_eq!(a, write(&spec).0);
        assert_ne!(
            a,
            write(&TransactionsSpec {
                seed: 6,
                ..spec.clone()
            })
            .0
        );
        let next_day = day().succ_opt().unwrap();
        assert_ne!(
            a,
            write(&TransactionsSpec {
                day: next_day,
                ..spec.clone()
            })
            .0
        );
        assert_ne!(
            a,
            write(&TransactionsSpec {
                sequence: 2,
                ..spec
            })
            .0
        );
    }

    #[test]
    fn every_line_is_160_bytes_and_the_trailer_restates_the_details() {
        for seed in 0..4 {
            let spec = TransactionsSpec::new(day(), seed, 20_000, 1_500);
            let (bytes, totals) = write(&spec);
            let lines = lines(&bytes);
            assert!(lines.iter().all(|l| l.len() == POSTING_RECORD_LEN));
            assert_eq!(lines.len(), 20_002);
            let (header, rest) = lines.split_first().unwrap();
            let (trailer, details) = rest.split_last().unwrap();
            assert_eq!(at(header, 1, 1), "H");
            assert_eq!(at(header, 2, 8), "20261015");
            assert_eq!(at(header, 10, 2), "01");
            assert_eq!(at(header, 12, 30).trim_end(), "CREDSTREAM SAMPLE BANK");
            assert_eq!(at(trailer, 1, 1), "T");
            assert!(details.iter().all(|l| at(l, 1, 1) == "D"));
            let recounted = recount(details);
            assert_eq!(stated(trailer), recounted, "seed {seed}");
            assert_eq!(
                (totals.debit_cents, totals.credit_cents, totals.records),
                (recounted.debits, recounted.credits, 20_000)
            );
            assert!(recounted.debit_count > 0 && recounted.credit_count > 0);
        }
    }

    #[test]
    fn detail_fields_are_consistent() {
        let spec = TransactionsSpec::new(day(), 3, 30_000, 800);
        let (bytes, _) = write(&spec);
        let lines = lines(&bytes);
        let details = &lines[1..lines.len() - 1];
        let pans: HashMap<String, String> = (0..800)
            .map(|i| (account_reference(3, i), card_number(3, i)))
            .collect();
        let mut ids = HashSet::new();
        let mut codes = HashSet::new();
        let mut reversals = 0;
        for line in details {
            let reference = at(line, 2, 20).trim_end();
            assert_eq!(at(line, 22, 19).trim_end(), pans[reference]);
            let id = at(line, 41, 16);
            assert!(ids.insert(id.to_owned()), "duplicate TransactionId {id}");
            let code = at(line, 57, 4);
            codes.insert(code.to_owned());
            let sign = match code {
                "0101" | "0401" => "D",
                "0201" | "0301" => "C",
                other => panic!("TransactionCode {other}"),
            };
            assert_eq!(at(line, 61, 1), sign);
            assert!(at(line, 62, 12).bytes().all(|b| b.is_ascii_digit()));
            assert!(num(line, 62, 12) > 0);
            assert_eq!(at(line, 74, 3), "USD");
            let transaction = at(line, 77, 8);
            assert_eq!(at(line, 85, 8), "20261015");
            assert!(("20261012"..="20261015").contains(&transaction));
            let mcc = at(line, 93, 4);
            assert!(mcc == "    " || mcc.bytes().all(|b| b.is_ascii_digit()));
            assert!(!at(line, 97, 25).trim().is_empty());
            let network = at(line, 128, 10).trim_end();
            let expected = match at(line, 22, 1) {
                "4" => "VISA",
                "5" => "MASTERCARD",
                _ => "DISCOVER",
            };
            assert_eq!(network, expected);
            let reversal = at(line, 138, 16).trim_end();
            if !reversal.is_empty() {
                assert_eq!(code, "0301", "only refunds reverse");
                assert!(ids.contains(reversal), "{reversal} is not an earlier id");
                reversals += 1;
            }
            assert_eq!(at(line, 154, 7), "       ");
        }
        assert_eq!(codes.len(), 4);
        assert!(reversals > 0);
    }

    #[test]
    fn trailer_faults_are_off_by_one() {
        let base = TransactionsSpec::new(day(), 8, 500, 100);
        for (fault, field) in [
            (TransactionsFault::TrailerCount, "detail_count"),
            (TransactionsFault::TrailerDebitSum, "debit_amount"),
        ] {
            let spec = TransactionsSpec {
                fault: Some(fault),
                ..base.clone()
            };
            let (bytes, _) = write(&spec);
            let lines = lines(&bytes);
            let mut expected = recount(&lines[1..lines.len() - 1]);
            match fault {
                TransactionsFault::TrailerCount => expected.count += 1,
                _ => {
                    expected.debits += 1;
                    expected.net += 1;
                }
            }
            assert_eq!(stated(lines.last().unwrap()), expected);
            let (result, issues) = parse_as(&spec.file_name(), &bytes);
            assert_eq!(issues, []);
            let drift = result.unwrap_err();
            assert_eq!(drift.class, DriftClass::TrailerMismatch);
            assert_eq!(drift.field.as_deref(), Some(field));
        }
    }

    #[test]
    fn generated_postings_parse_cleanly_with_the_layout() {
        let spec = TransactionsSpec::new(day(), 2, 5_000, 400);
        let (bytes, _) = write(&spec);
        let (result, issues) = parse_as(&spec.file_name(), &bytes);
        assert_eq!(issues, []);
        let summary = result.unwrap();
        assert_eq!(
            (summary.records, summary.parsed, summary.issues),
            (5_000, 5_000, 0)
        );
        let check = summary.trailer.expect("a reconciled trailer");
        assert_eq!(check.records, 5_000);
        assert_eq!(check.sums.len(), 6);
    }

    #[test]
    fn a_bad_record_is_quarantined_alone_and_the_trailer_still_reconciles() {
        for (fault, class, field) in [
            (
                TransactionsFault::WrongLength,
                DriftClass::WrongRecordLength,
                None,
            ),
            (
                TransactionsFault::BadAmount,
                DriftClass::TypeMismatch,
                Some("Amount".to_owned()),
            ),
        ] {
            let spec = TransactionsSpec {
                fault: Some(fault),
                per_account: true,
                ..TransactionsSpec::new(day(), 4, 1_000, 50)
            };
            let (bytes, totals) = write(&spec);
            let lines = lines(&bytes);
            let lengths: Vec<usize> = lines.iter().map(|l| l.len()).collect();
            let short = lengths.iter().filter(|&&l| l != POSTING_RECORD_LEN).count();
            assert_eq!(short, usize::from(fault == TransactionsFault::WrongLength));
            assert_eq!(
                stated(lines.last().unwrap()),
                recount(&lines[1..lines.len() - 1])
            );
            let (result, issues) = parse_as(&spec.file_name(), &bytes);
            assert_eq!(issues, [(class, field)], "{fault:?}");
            let summary = result.unwrap();
            assert_eq!((summary.records, summary.issues), (1_000, 1));
            // The quarantined record posts nothing.
            let posted: i64 = totals.per_account.unwrap().iter().map(|m| m.net()).sum();
            let bad = lines[1 + 500];
            let bad_net = match (at(bad, 61, 1), at(bad, 62, 12).parse::<i64>()) {
                ("D", Ok(a)) => a,
                ("C", Ok(a)) => -a,
                _ => 0,
            };
            assert_eq!(posted, recount(&lines[1..lines.len() - 1]).net - bad_net);
        }
    }

    #[test]
    fn per_account_movements_add_up_to_the_file() {
        let spec = TransactionsSpec {
            per_account: true,
            ..TransactionsSpec::new(day(), 9, 4_000, 120)
        };
        let (bytes, totals) = write(&spec);
        let mut nets: HashMap<&str, i64> = HashMap::new();
        let mut payments: HashMap<&str, i64> = HashMap::new();
        let lines = lines(&bytes);
        for line in &lines[1..lines.len() - 1] {
            let amount = num(line, 62, 12);
            let net = nets.entry(at(line, 2, 20).trim_end()).or_default();
            *net += if at(line, 61, 1) == "D" {
                amount
            } else {
                -amount
            };
            if at(line, 57, 4) == "0201" {
                *payments.entry(at(line, 2, 20).trim_end()).or_default() += amount;
            }
        }
        let per_account = totals.per_account.unwrap();
        assert_eq!(per_account.len(), 120);
        for (i, m) in per_account.iter().enumerate() {
            let reference = account_reference(9, i);
            assert_eq!(m.net(), nets.get(reference.as_str()).copied().unwrap_or(0));
            assert_eq!(
                m.payments,
                payments.get(reference.as_str()).copied().unwrap_or(0)
            );
        }
    }

    #[test]
    fn a_correction_amends_one_record_and_removes_another() {
        let original = TransactionsSpec::new(day(), 11, 300, 40);
        let corrected = TransactionsSpec {
            correction: Some(Correction {
                amend: 10,
                remove: 200,
            }),
            ..original.clone()
        };
        let (a, _) = write(&original);
        let (b, _) = write(&corrected);
        let (a, b) = (lines(&a), lines(&b));
        assert_eq!(b.len(), a.len() - 1);
        let kept: Vec<&[u8]> = a
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != 1 + 200)
            .map(|(_, l)| *l)
            .collect();
        let differing: Vec<usize> = (0..b.len() - 1).filter(|&k| kept[k] != b[k]).collect();
        assert_eq!(differing, [1 + 10]);
        assert_eq!(num(b[11], 62, 12), num(a[11], 62, 12) + 1_000);
        assert_eq!(at(b[11], 41, 16), at(a[11], 41, 16));
        assert_eq!(stated(b.last().unwrap()), recount(&b[1..b.len() - 1]));
    }

    #[test]
    fn specs_that_cannot_be_written_are_refused() {
        let ok = TransactionsSpec::new(day(), 1, 10, 10);
        assert!(ok.check().is_ok());
        let refused = [
            TransactionsSpec {
                sequence: 0,
                ..ok.clone()
            },
            TransactionsSpec {
                records: 10_000_000,
                ..ok.clone()
            },
            TransactionsSpec {
                issuer: "X".repeat(31),
                ..ok.clone()
            },
            TransactionsSpec::new(day(), 10_000_000_000, 10, 10),
            TransactionsSpec::new(day(), 1, 10, 0),
            TransactionsSpec {
                correction: Some(Correction {
                    amend: 3,
                    remove: 3,
                }),
                ..ok.clone()
            },
        ];
        for spec in refused {
            assert!(spec.check().is_err(), "{spec:?}");
            let err = write_transactions(&mut Vec::new(), &spec, |_| {}).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        }
    }
}
