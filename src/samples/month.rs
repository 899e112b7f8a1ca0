//! A client's month for the month-end reconciliation: the account master snapshots either
//! side of it, every day's postings, and the exceptions a reconciliation must report,
//! written to `expected_exceptions.json` next to them.
//!
//! The roll-forward: an account's closing balance (`CycleEndingBalance` of the month's
//! snapshot) should be its opening balance (`CycleEndingBalance` of the previous month's)
//! plus the month's postings (debits less credits, by `PostDate`). The issuer's own books
//! always roll forward; the files delivered to the reconciliation may not:
//!
//! - a planted balance mismatch: a month-end balance written 1.00 to 50.00 too high (the
//!   snapshot's own trailer agrees with it, so the file itself is accepted);
//! - a postings file with a wrong trailer is held whole, so its postings are missing from
//!   the roll-forward of every account it touches;
//! - a correction (same name under `corrections/`, other bytes) supersedes the day's
//!   first file; the issuer's books follow the corrected version, so only a consumer
//!   that ignores corrections finds differences there;
//! - a resent file (same name and bytes under `resent/`) is a duplicate; counting it
//!   twice would make differences.
//!
//! `expected_exceptions.json` lists the held files and exactly the accounts whose opening
//! plus accepted postings differs from the closing balance: planted mismatches and
//! accounts short of a held file's postings alike (unless the two cancel out).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};

use super::accounts::{accounts_trailer, write_snapshot};
use super::profile::{Cycle, minimum_due};
use super::{
    AccountMovement, AccountSet, Correction, Salt, TransactionsFault, TransactionsSpec,
    account_reference, mix, money, text_hash, write_transactions,
};

/// A calendar month, written `YYYY-MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month, if `month` is 1 to 12 and the year has four digits.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1000..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The month a date is in.
    pub fn of(date: NaiveDate) -> Month {
        Month {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn first_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("a valid month")
    }

    pub fn last_day(&self) -> NaiveDate {
        self.next().first_day().pred_opt().expect("a day before")
    }

    /// Days in the month.
    pub fn days(&self) -> u32 {
        self.last_day().day()
    }

    /// Day `day` (1-based) of the month, if it has one.
    pub fn day(&self, day: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year, self.month, day)
    }

    pub fn previous(&self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(&self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = String;

    fn from_str(text: &str) -> Result<Month, String> {
        let bad = || format!("{text:?} is not a month YYYY-MM");
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year = year.parse().map_err(|_| bad())?;
        let month = month.parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

/// What to write: one client's month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthSpec {
    /// The client: the directory the files go to, as a landing area names clients.
    pub client: String,
    /// The month reconciled.
    pub month: Month,
    /// Seed of the accounts and of everything else.
    pub seed: u64,
    /// Accounts in both snapshots.
    pub accounts: usize,
    /// Postings in each day's file (before a correction).
    pub postings_per_day: usize,
    /// Accounts whose month-end balance is planted off by 1.00 to 50.00.
    pub balance_mismatches: usize,
    /// Days (1-based) whose postings file has a wrong trailer (odd days the count, even
    /// days the debit total), so it is held.
    pub bad_trailer_days: Vec<u32>,
    /// Days whose postings file is sent again corrected, under `corrections/`.
    pub corrections: Vec<u32>,
    /// Files sent a second time, byte for byte, under `resent/`.
    pub duplicates: usize,
}

impl MonthSpec {
    /// 1 000 accounts and 1 000 postings a day, nothing planted.
    pub fn new(client: impl Into<String>, month: Month, seed: u64) -> MonthSpec {
        MonthSpec {
            client: client.into(),
            month,
            seed,
            accounts: 1_000,
            postings_per_day: 1_000,
            balance_mismatches: 0,
            bad_trailer_days: Vec::new(),
            corrections: Vec::new(),
            duplicates: 0,
        }
    }

    /// Why the spec cannot be written, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let client_ok = !self.client.is_empty()
            && !self.client.starts_with('.')
            && self
                .client
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !client_ok {
            return Err(format!(
                "client {:?} is not a directory name (letters, digits, '-', '_', '.'; not starting with '.')",
                self.client
            ));
        }
        if self.accounts == 0 {
            return Err("a month needs at least one account".into());
        }
        self.postings(1, None, None).check()?;
        let days = self.month.days();
        for (what, list) in [
            ("bad trailer day", &self.bad_trailer_days),
            ("correction day", &self.corrections),
        ] {
            if let Some(d) = list.iter().find(|d| !(1..=days).contains(*d)) {
                return Err(format!("{what} {d} is not a day of {}", self.month));
            }
        }
        if !self.corrections.is_empty() && self.postings_per_day < 2 {
            return Err(
                "a correction amends one posting and removes another: it needs at least 2 postings a day"
                    .into(),
            );
        }
        if self.balance_mismatches > self.accounts {
            return Err(format!(
                "{} balance mismatches among {} accounts",
                self.balance_mismatches, self.accounts
            ));
        }
        let files = days as usize + 2;
        if self.duplicates > files {
            return Err(format!(
                "{} duplicates of the {files} files of the month",
                self.duplicates
            ));
        }
        Ok(())
    }

    fn postings(
        &self,
        day: u32,
        fault: Option<TransactionsFault>,
        correction: Option<Correction>,
    ) -> TransactionsSpec {
        TransactionsSpec {
            fault,
            correction,
            per_account: true,
            ..TransactionsSpec::new(
                self.month.day(day).expect("a day of the month"),
                self.seed,
                self.postings_per_day,
                self.accounts,
            )
        }
    }
}

/// What a reconciliation of the month must report, as `expected_exceptions.json` holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpectedExceptions {
    pub client: String,
    /// The month, `YYYY-MM`.
    pub period: String,
    /// Files held whole (their trailer does not reconcile), relative to the client's
    /// directory.
    pub files_held: Vec<String>,
    /// Every account whose opening balance plus the accepted postings is not its closing
    /// balance, by reference.
    pub balance_mismatches: Vec<BalanceMismatch>,
}

/// One account that does not roll forward. Money as decimals with two places.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BalanceMismatch {
    /// The account's `ReferenceNumber`.
    pub account: String,
    /// Last month's `CycleEndingBalance`.
    pub opening: String,
    /// The month's accepted postings, debits less credits.
    pub postings: String,
    /// This month's `CycleEndingBalance`.
    pub closing: String,
    /// Closing less (opening plus postings).
    pub difference: String,
}

/// What [`write_month`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthManifest {
    /// `<dir>/<client>`.
    pub client_dir: PathBuf,
    /// Every file to deliver, in order: the previous month's snapshot, the days' postings,
    /// the month's snapshot, then the corrections, then the resent duplicates.
    pub files: Vec<PathBuf>,
    /// The corrections among `files`.
    pub corrections: Vec<PathBuf>,
    /// The resent duplicates among `files`.
    pub duplicates: Vec<PathBuf>,
    /// Accounts whose month-end balance was planted off, by reference.
    pub planted: Vec<String>,
    /// `<client_dir>/expected_exceptions.json`.
    pub expected_path: PathBuf,
    /// What it holds.
    pub expected: ExpectedExceptions,
}

/// Where [`write_month_with_progress`] is.
#[derive(Clone, Copy, Debug)]
pub enum MonthProgress<'a> {
    /// `records` of `file` written so far, every 100 000.
    Records { file: &'a Path, records: usize },
    /// `file` is complete with `records` data records.
    Written { file: &'a Path, records: usize },
}

/// [`write_month_with_progress`] without progress.
pub fn write_month(dir: &Path, spec: &MonthSpec) -> std::io::Result<MonthManifest> {
    write_month_with_progress(dir, spec, |_| {})
}

fn buffered(path: &Path) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    Ok(std::io::BufWriter::with_capacity(
        1 << 16,
        std::fs::File::create(path)?,
    ))
}

/// Writes the month `spec` describes under `<dir>/<client>/`, which must not exist or be
/// empty (files of another run would mix in), and returns what it wrote. Every file is
/// streamed; what is kept is per account. The same spec always writes the same bytes.
pub fn write_month_with_progress(
    dir: &Path,
    spec: &MonthSpec,
    mut progress: impl FnMut(MonthProgress<'_>),
) -> std::io::Result<MonthManifest> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    spec.check().map_err(invalid)?;
    let client_dir = dir.join(&spec.client);
    if client_dir.exists() && std::fs::read_dir(&client_dir)?.next().is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} is not empty; files of another run would mix in",
                client_dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(&client_dir)?;
    let n = spec.accounts;
    let seed = spec.seed;
    let mut rng =
        fastrand::Rng::with_seed(mix(seed, text_hash(&spec.month.to_string()), Salt::Month));

    // Last month's snapshot: balances drawn, as any month's.
    let previous_end = spec
        .month
        .previous()
        .last_day()
        .format("%Y-%m-%d")
        .to_string();
    let previous_name = format!("accounts_{}.csv", spec.month.previous());
    let previous_path = client_dir.join(&previous_name);
    let mut opening = vec![0i64; n];
    {
        let mut out = buffered(&previous_path)?;
        let total = write_snapshot(
            &mut out,
            n,
            seed,
            &previous_end,
            &[],
            |i, profile| {
                let cycle = Cycle::drawn(seed, i, &previous_end, profile.limit);
                opening[i] = cycle.end;
                cycle
            },
            |records| {
                progress(MonthProgress::Records {
                    file: &previous_path,
                    records,
                })
            },
        )?;
        out.write_all(accounts_trailer(n, total).as_bytes())?;
        out.flush()?;
    }
    progress(MonthProgress::Written {
        file: &previous_path,
        records: n,
    });

    // The days. `books` is the issuer's: every posting, corrected where corrected.
    // `accepted` is what a reconciliation counts: not the held files, the corrections
    // instead of the files they correct.
    let bad: BTreeSet<u32> = spec.bad_trailer_days.iter().copied().collect();
    let corrected: BTreeSet<u32> = spec.corrections.iter().copied().collect();
    let mut books = vec![AccountMovement::default(); n];
    let mut accepted = vec![AccountMovement::default(); n];
    let mut day_paths = Vec::new();
    let mut correction_paths = Vec::new();
    let mut held = Vec::new();
    for day in 1..=spec.month.days() {
        let fault = bad.contains(&day).then_some(if day % 2 == 1 {
            TransactionsFault::TrailerCount
        } else {
            TransactionsFault::TrailerDebitSum
        });
        let original = spec.postings(day, fault, None);
        let name = original.file_name();
        let path = client_dir.join(&name);
        let totals = write_postings(&path, &original, &mut progress)?;
        let moves = totals.per_account.expect("asked for");
        if fault.is_some() {
            held.push(name.clone());
        }
        if corrected.contains(&day) {
            let records = spec.postings_per_day;
            let amend = rng.usize(..records);
            let remove = (amend + 1 + rng.usize(..records - 1)) % records;
            let fixed = spec.postings(day, None, Some(Correction { amend, remove }));
            std::fs::create_dir_all(client_dir.join("corrections"))?;
            let path = client_dir.join("corrections").join(&name);
            let totals = write_postings(&path, &fixed, &mut progress)?;
            for (i, m) in totals.per_account.expect("asked for").iter().enumerate() {
                books[i].add(m);
                accepted[i].add(m);
            }
            correction_paths.push(path);
        } else {
            for (i, m) in moves.iter().enumerate() {
                books[i].add(m);
                if fault.is_none() {
                    accepted[i].add(m);
                }
            }
        }
        day_paths.push(path);
    }

    // Planted mismatches: the closing balance written differs from the books.
    let mut planted = vec![0i64; n];
    let mut chosen = BTreeSet::new();
    while chosen.len() < spec.balance_mismatches {
        chosen.insert(rng.usize(..n));
    }
    for &i in &chosen {
        planted[i] = rng.i64(1_00..=50_00);
    }
    let closing: Vec<i64> = (0..n)
        .map(|i| opening[i] + books[i].net() + planted[i])
        .collect();

    let month_end = spec.month.last_day().format("%Y-%m-%d").to_string();
    let month_name = format!("accounts_{}.csv", spec.month);
    let month_path = client_dir.join(&month_name);
    {
        let mut out = buffered(&month_path)?;
        let total = write_snapshot(
            &mut out,
            n,
            seed,
            &month_end,
            &[],
            |i, profile| {
                let drawn = Cycle::drawn(seed, i, &month_end, profile.limit);
                let end = closing[i];
                let behind = end > 0 && drawn.days_past_due > 0;
                Cycle {
                    begin: opening[i],
                    end,
                    minimum_due: minimum_due(end),
                    payment: books[i].payments,
                    past_due: if behind { drawn.past_due.min(end) } else { 0 },
                    days_past_due: if behind { drawn.days_past_due } else { 0 },
                }
            },
            |records| {
                progress(MonthProgress::Records {
                    file: &month_path,
                    records,
                })
            },
        )?;
        out.write_all(accounts_trailer(n, total).as_bytes())?;
        out.flush()?;
    }
    progress(MonthProgress::Written {
        file: &month_path,
        records: n,
    });

    // Resent duplicates, chosen among the first deliveries.
    let mut originals = vec![previous_path];
    originals.extend(day_paths);
    originals.push(month_path);
    let mut resend = BTreeSet::new();
    while resend.len() < spec.duplicates {
        resend.insert(rng.usize(..originals.len()));
    }
    let mut duplicate_paths = Vec::new();
    if !resend.is_empty() {
        std::fs::create_dir_all(client_dir.join("resent"))?;
    }
    for &k in &resend {
        let from = &originals[k];
        let to = client_dir
            .join("resent")
            .join(from.file_name().expect("a file name"));
        std::fs::copy(from, &to)?;
        duplicate_paths.push(to);
    }

    let balance_mismatches = (0..n)
        .filter_map(|i| {
            let postings = accepted[i].net();
            let difference = closing[i] - opening[i] - postings;
            (difference != 0).then(|| BalanceMismatch {
                account: account_reference(seed, i),
                opening: money(opening[i]),
                postings: money(postings),
                closing: money(closing[i]),
                difference: money(difference),
            })
        })
        .collect();
    let expected = ExpectedExceptions {
        client: spec.client.clone(),
        period: spec.month.to_string(),
        files_held: held,
        balance_mismatches,
    };
    let expected_path = client_dir.join("expected_exceptions.json");
    let mut json = serde_json::to_vec_pretty(&expected).map_err(std::io::Error::other)?;
    json.push(b'\n');
    std::fs::write(&expected_path, json)?;

    let mut files = originals;
    files.extend(correction_paths.iter().cloned());
    files.extend(duplicate_paths.iter().cloned());
    let accounts = AccountSet { seed, count: n };
    Ok(MonthManifest {
        client_dir,
        files,
        corrections: correction_paths,
        duplicates: duplicate_paths,
        planted: chosen.iter().map(|&i| accounts.reference(i)).collect(),
        expected_path,
        expected,
    })
}

fn write_postings(
    path: &Path,
    spec: &TransactionsSpec,
    progress: &mut impl FnMut(MonthProgress<'_>),
) -> std::io::Result<super::TransactionTotals> {
    let mut out = buffered(path)?;
    let totals = write_transactions(&mut out, spec, |records| {
        progress(MonthProgress::Records {
            file: path,
            records,
        })
    })?;
    out.flush()?;
    progress(MonthProgress::Written {
        file: path,
        records: totals.records as usize,
    });
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::formats::DriftClass;
    use crate::samples::testing::{at, num, parse_as};

    #[test]
    fn months_count_their_days_and_neighbours() {
        let m: Month = "2028-02".parse().unwrap();
        assert_eq!((m.days(), m.to_string()), (29, "2028-02".to_owned()));
        assert_eq!(m.previous().to_string(), "2028-01");
        assert_eq!(
            "2026-01".parse::<Month>().unwrap().previous().to_string(),
            "2025-12"
        );
        assert_eq!(
            "2026-12".parse::<Month>().unwrap().next().to_string(),
            "2027-01"
        );
        assert_eq!(m.last_day(), NaiveDate::from_ymd_opt(2028, 2, 29).unwrap());
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    /// Cents of a decimal with two places, read without the generator's helpers.
    fn cents(text: &str) -> i64 {
        let (units, fraction) = text.split_once('.').expect("two places");
        assert_eq!(fraction.len(), 2, "{text}");
        let magnitude = units.trim_start_matches('-').parse::<i64>().unwrap() * 100
            + fraction.parse::<i64>().unwrap();
        if text.starts_with('-') {
            -magnitude
        } else {
            magnitude
        }
    }

    fn decimal(cents: i64) -> String {
        let sign = if cents < 0 { "-" } else { "" };
        format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
    }

    /// A snapshot by account: (CycleBeginningBalance, CycleEndingBalance), after checking
    /// its trailer row against its rows.
    fn snapshot(path: &Path) -> BTreeMap<String, (i64, i64)> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .unwrap();
        let headers = reader.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let (reference, begin, end) = (
            col("ReferenceNumber"),
            col("CycleBeginningBalance"),
            col("CycleEndingBalance"),
        );
        let mut rows = BTreeMap::new();
        let mut trailer = None;
        for record in reader.records() {
            let record = record.unwrap();
            if &record[0] == "TRAILER" {
                trailer = Some((record[1].parse::<usize>().unwrap(), cents(&record[2])));
                continue;
            }
            assert!(trailer.is_none(), "a row after the trailer");
            rows.insert(
                record[reference].to_owned(),
                (cents(&record[begin]), cents(&record[end])),
            );
        }
        let total: i64 = rows.values().map(|(_, end)| end).sum();
        assert_eq!(trailer, Some((rows.len(), total)), "{}", path.display());
        rows
    }

    /// A postings file's lines, and whether its trailer restates its details.
    fn postings(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
        let lines: Vec<&[u8]> = bytes
            .strip_suffix(b"\n")
            .unwrap()
            .split(|b| *b == b'\n')
            .collect();
        let (trailer, details) = lines[1..].split_last().unwrap();
        let (mut count, mut debits, mut credits) = (0, 0, 0);
        for line in details {
            count += 1;
            match at(line, 61, 1) {
                "D" => debits += num(line, 62, 12),
                _ => credits += num(line, 62, 12),
            }
        }
        let net = if at(trailer, 59, 1) == "-" { -1 } else { 1 } * num(trailer, 60, 15);
        let reconciles = num(trailer, 2, 9) == count
            && num(trailer, 20, 15) == debits
            && num(trailer, 44, 15) == credits
            && net == debits - credits;
        (details.to_vec(), reconciles)
    }

    fn spec() -> MonthSpec {
        MonthSpec {
            accounts: 300,
            postings_per_day: 400,
            balance_mismatches: 6,
            bad_trailer_days: vec![3, 10],
            corrections: vec![10, 17],
            duplicates: 4,
            ..MonthSpec::new("ACME", "2026-10".parse().unwrap(), 21)
        }
    }

    #[test]
    fn the_expected_exceptions_are_exactly_the_accounts_that_do_not_roll_forward() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec();
        let manifest = write_month(dir.path(), &spec).unwrap();
        let client = dir.path().join("ACME");

        let opening = snapshot(&client.join("accounts_2026-09.csv"));
        let closing = snapshot(&client.join("accounts_2026-10.csv"));
        assert_eq!(opening.len(), 300);
        assert_eq!(
            opening.keys().collect::<Vec<_>>(),
            closing.keys().collect::<Vec<_>>()
        );
        for (account, (begin, _)) in &closing {
            assert_eq!(
                *begin, opening[account].1,
                "{account} does not begin where it ended"
            );
        }

        // The roll-forward as a reconciliation sees it: a correction supersedes the day's
        // file, a file whose trailer does not reconcile is held.
        let mut moved: BTreeMap<String, i64> = BTreeMap::new();
        let mut held = Vec::new();
        for day in 1..=31 {
            let name = format!("postings_2026-10-{day:02}_01.dat");
            let first = std::fs::read(client.join(&name)).unwrap();
            if !postings(&first).1 {
                held.push(name.clone());
            }
            let correction = client.join("corrections").join(&name);
            let accepted = match std::fs::read(&correction) {
                Ok(bytes) => {
                    assert_ne!(bytes, first, "a correction has other bytes");
                    bytes
                }
                Err(_) => first,
            };
            let (details, reconciles) = postings(&accepted);
            if !reconciles {
                continue;
            }
            for line in details {
                assert_eq!(at(line, 85, 6), "202610", "PostDate outside the month");
                let amount = num(line, 62, 12);
                let signed = if at(line, 61, 1) == "D" {
                    amount
                } else {
                    -amount
                };
                *moved
                    .entry(at(line, 2, 20).trim_end().to_owned())
                    .or_default() += signed;
            }
        }
        let mut differing = BTreeMap::new();
        for (account, (_, open)) in &opening {
            let posted = moved.get(account).copied().unwrap_or(0);
            let close = closing[account].1;
            if open + posted != close {
                differing.insert(
                    account.clone(),
                    [open, &posted, &close, &(close - open - posted)].map(|c| decimal(*c)),
                );
            }
        }

        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(client.join("expected_exceptions.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["client"], "ACME");
        assert_eq!(json["period"], "2026-10");
        assert_eq!(json["files_held"], serde_json::json!(held));
        assert_eq!(held.len(), 2);
        let listed: BTreeMap<String, [String; 4]> = json["balance_mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let s = |k: &str| m[k].as_str().unwrap().to_owned();
                (
                    s("account"),
                    [s("opening"), s("postings"), s("closing"), s("difference")],
                )
            })
            .collect();
        assert_eq!(listed, differing);
        // Both causes are there: the planted accounts and those short of a held file.
        assert!(manifest.planted.iter().all(|a| differing.contains_key(a)));
        assert_eq!(manifest.planted.len(), 6);
        assert!(differing.len() > manifest.planted.len());
        assert_eq!(manifest.expected.balance_mismatches.len(), differing.len());
    }

    #[test]
    fn files_are_listed_in_delivery_order_and_duplicates_are_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = write_month(dir.path(), &spec()).unwrap();
        let client = dir.path().join("ACME");
        let names: Vec<String> = manifest
            .files
            .iter()
            .map(|p| p.strip_prefix(&client).unwrap().display().to_string())
            .collect();
        assert_eq!(names.len(), 1 + 31 + 1 + 2 + 4);
        assert_eq!(names[0], "accounts_2026-09.csv");
        assert_eq!(names[1], "postings_2026-10-01_01.dat");
        assert_eq!(names[31], "postings_2026-10-31_01.dat");
        assert_eq!(names[32], "accounts_2026-10.csv");
        assert_eq!(
            names[33..35],
            [
                "corrections/postings_2026-10-10_01.dat",
                "corrections/postings_2026-10-17_01.dat"
            ]
        );
        for resent in &names[35..] {
            let name = resent.strip_prefix("resent/").expect("under resent/");
            assert_eq!(
                std::fs::read(client.join(resent)).unwrap(),
                std::fs::read(client.join(name)).unwrap()
            );
        }
        // Every file parses with its layout; only the held ones are held.
        let held = &manifest.expected.files_held;
        for (path, name) in manifest.files.iter().zip(&names) {
            let file_name = path.file_name().unwrap().to_str().unwrap();
            let (result, issues) = parse_as(file_name, &std::fs::read(path).unwrap());
            assert_eq!(issues, [], "{name}");
            match result {
                Ok(summary) => {
                    assert!(!held.contains(name), "{name}");
                    assert!(summary.trailer.is_some(), "{name}");
                }
                Err(drift) => {
                    assert!(held.iter().any(|h| name.ends_with(h.as_str())), "{name}");
                    assert_eq!(drift.class, DriftClass::TrailerMismatch);
                }
            }
        }
        // A second run into a non-empty directory is refused.
        let again = write_month(dir.path(), &spec()).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn the_same_spec_writes_the_same_month() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let spec = MonthSpec {
            accounts: 50,
            postings_per_day: 60,
            ..spec()
        };
        let first = write_month(a.path(), &spec).unwrap();
        let second = write_month(b.path(), &spec).unwrap();
        assert_eq!(first.expected, second.expected);
        for (x, y) in first.files.iter().zip(&second.files) {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        }
        let c = tempfile::tempdir().unwrap();
        let other = write_month(c.path(), &MonthSpec { seed: 22, ..spec }).unwrap();
        assert_ne!(
            std::fs::read(&first.files[1]).unwrap(),
            std::fs::read(&other.files[1]).unwrap()
        );
    }

    #[test]
    fn specs_that_cannot_be_written_are_refused() {
        let ok = spec();
        assert!(ok.check().is_ok());
        for bad in [
            MonthSpec {
                client: "../x".into(),
                ..ok.clone()
            },
            MonthSpec {
                client: String::new(),
                ..ok.clone()
            },
            MonthSpec {
                accounts: 0,
                ..ok.clone()
            },
            MonthSpec {
                bad_trailer_days: vec![32],
                ..ok.clone()
            },
            MonthSpec {
                corrections: vec![0],
                ..ok.clone()
            },
            MonthSpec {
                postings_per_day: 1,
                ..ok.clone()
            },
            MonthSpec {
                balance_mismatches: 301,
                ..ok.clone()
            },
            MonthSpec {
                duplicates: 34,
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
