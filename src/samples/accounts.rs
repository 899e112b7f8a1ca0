//! Account master snapshots (CSV, FR Y-14M D.1 names): `topologies/card_accounts.toml`.
//! Also the helpers tests use to spoil one: a wrong trailer, a planted value.

use std::fmt::Write;

use super::profile::{Cycle, Profile};
use super::{Card, PROGRESS_EVERY, Salt, account_reference, account_rng, money};

/// The account master header (FR Y-14M Schedule D.1 names), in layout order.
pub const ACCOUNT_COLUMNS: &[&str] = &[
    "ReferenceNumber",
    "CustomerId",
    "CardNumber",
    "CreditCardType",
    "ProductType",
    "StateCode",
    "ZipCode",
    "AccountOriginationDate",
    "AccountCycleDate",
    "OriginalCreditLimit",
    "CurrentCreditLimit",
    "CycleBeginningBalance",
    "CycleEndingBalance",
    "MinimumPaymentDue",
    "ActualPaymentAmount",
    "TotalPastDue",
    "DaysPastDue",
];

/// First cell of the account master's trailer row, as `topologies/card_accounts.toml` says.
pub const TRAILER_MARKER: &str = "TRAILER";

/// An account master snapshot of `rows` accounts for the cycle ending `cycle_end`
/// (`YYYY-MM-DD`). `extra_columns` are appended to the header and every row, with values:
/// how a client's unannounced new column looks.
pub fn account_master_csv(
    rows: usize,
    seed: u64,
    cycle_end: &str,
    extra_columns: &[&str],
) -> String {
    generate_accounts(rows, seed, cycle_end, extra_columns).0
}

/// [`account_master_csv`] with a trailer row that reconciles it:
/// `TRAILER,<rows>,<sum of CycleEndingBalance>`.
pub fn account_master_csv_with_trailer(rows: usize, seed: u64, cycle_end: &str) -> String {
    let (mut out, balances) = generate_accounts(rows, seed, cycle_end, &[]);
    out.push_str(&accounts_trailer(rows, balances));
    out
}

/// What [`with_bad_trailer`] gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailerFault {
    /// One record more than the file has.
    Count,
    /// One cent more than the balances add up to.
    Sum,
}

/// The file with its trailer's count or total off by one. Panics if `text` has no
/// trailer row from [`account_master_csv_with_trailer`].
pub fn with_bad_trailer(text: &str, fault: TrailerFault) -> String {
    let prefix = format!("{TRAILER_MARKER},");
    let start = text
        .rfind(&format!("\n{prefix}"))
        .map(|i| i + 1)
        .expect("a file with a trailer row");
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let cells: Vec<&str> = text[start..end].split(',').collect();
    let [marker, count, total] = cells[..] else {
        panic!("a trailer row has three cells: {}", &text[start..end]);
    };
    let row = match fault {
        TrailerFault::Count => {
            let count: u64 = count.parse().expect("a trailer count");
            format!("{marker},{},{total}", count + 1)
        }
        TrailerFault::Sum => {
            let cents = parse_money(total).expect("a total with cents");
            format!("{marker},{count},{}", money(cents + 1))
        }
    };
    format!("{}{row}{}", &text[..start], &text[end..])
}

/// Cents of a decimal with two places as [`money`] writes it, e.g. `-1234.50`.
pub(crate) fn parse_money(text: &str) -> Option<i64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (units, cents) = body.split_once('.')?;
    if cents.len() != 2 || !cents.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = units.parse::<u64>().ok()? * 100 + cents.parse::<u64>().ok()?;
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

/// The file with the cell of data row `row` (0-based, the header not counted) in column
/// `column` (a header name) replaced by `value`: for planting one bad value. Meant for
/// generated files, which quote nothing. Panics if the row or column does not exist.
pub fn plant(text: &str, row: usize, column: &str, value: &str) -> String {
    let mut lines = text.split_inclusive('\n');
    let header = lines.next().expect("a header row");
    let index = header
        .trim_end()
        .split(',')
        .position(|c| c == column)
        .unwrap_or_else(|| panic!("no column {column} in the header"));
    let mut out = String::with_capacity(text.len() + value.len());
    out.push_str(header);
    let mut found = false;
    for (i, line) in lines.enumerate() {
        if i != row {
            out.push_str(line);
            continue;
        }
        let body = line.trim_end_matches(['\r', '\n']);
        let mut cells: Vec<&str> = body.split(',').collect();
        let cell = cells
            .get_mut(index)
            .unwrap_or_else(|| panic!("data row {row} has no cell {index}"));
        *cell = value;
        out.push_str(&cells.join(","));
        out.push_str(&line[body.len()..]);
        found = true;
    }
    assert!(found, "the file has no data row {row}");
    out
}

/// The generator behind the account master files: the text, and the sum of the cycle
/// ending balances in cents.
fn generate_accounts(
    rows: usize,
    seed: u64,
    cycle_end: &str,
    extra_columns: &[&str],
) -> (String, i64) {
    let mut out = Vec::with_capacity(rows * 200);
    let balances = write_accounts(&mut out, rows, seed, cycle_end, extra_columns, |_| {})
        .expect("writing to memory does not fail");
    (
        String::from_utf8(out).expect("the generator writes UTF-8"),
        balances,
    )
}

/// Writes an account master snapshot of `rows` accounts (accounts `0..rows` of `seed`) to
/// `out` one row at a time (a file of millions of rows never sits in memory), calling
/// `progress` with the rows written every 100 000 rows. Returns the sum of the cycle
/// ending balances in cents, for a trailer. The same arguments always write the same
/// bytes; an account's identity (reference, customer, card number, address, opening date,
/// limit) is the same for every `cycle_end`, its balances are drawn per cycle.
pub fn write_accounts(
    out: &mut impl std::io::Write,
    rows: usize,
    seed: u64,
    cycle_end: &str,
    extra_columns: &[&str],
    progress: impl FnMut(usize),
) -> std::io::Result<i64> {
    write_snapshot(
        out,
        rows,
        seed,
        cycle_end,
        extra_columns,
        |i, profile| Cycle::drawn(seed, i, cycle_end, profile.limit),
        progress,
    )
}

/// [`write_accounts`] with each account's balances from `cycle_of(index, profile)`: how
/// the month scenario rolls balances forward.
pub(crate) fn write_snapshot(
    out: &mut impl std::io::Write,
    rows: usize,
    seed: u64,
    cycle_end: &str,
    extra_columns: &[&str],
    mut cycle_of: impl FnMut(usize, &Profile) -> Cycle,
    mut progress: impl FnMut(usize),
) -> std::io::Result<i64> {
    let mut balances = 0i64;
    let mut line = String::with_capacity(256);
    line.push_str(&ACCOUNT_COLUMNS.join(","));
    for c in extra_columns {
        line.push(',');
        line.push_str(c);
    }
    line.push('\n');
    out.write_all(line.as_bytes())?;
    for i in 0..rows {
        line.clear();
        let profile = Profile::of(seed, i);
        let cycle = cycle_of(i, &profile);
        balances += cycle.end;
        let optional = |v: Option<String>| v.unwrap_or_default();
        let _ = write!(
            line,
            "{},CUS{:08},{},{},{},{},{:05},{},{cycle_end},{},{},{},{},{},{},{},{}",
            account_reference(seed, i),
            profile.customer,
            Card::of(seed, i).as_str(),
            optional(profile.card_type.map(|t| t.to_string())),
            optional(profile.product.map(|p| p.to_string())),
            profile.address.state.code,
            profile.address.zip,
            profile.opened.format("%Y-%m-%d"),
            optional(profile.original_limit.map(money)),
            money(profile.limit),
            money(cycle.begin),
            money(cycle.end),
            money(cycle.minimum_due),
            money(cycle.payment),
            money(cycle.past_due),
            cycle.days_past_due,
        );
        if !extra_columns.is_empty() {
            let mut rng = account_rng(seed, i, Salt::ExtraColumns, 0);
            for _ in extra_columns {
                let _ = write!(line, ",{}.{:02}", rng.u8(0..30), rng.u8(0..100));
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        if (i + 1) % PROGRESS_EVERY == 0 {
            progress(i + 1);
        }
    }
    Ok(balances)
}

/// The trailer row of an account master whose balances sum to `balances` cents.
pub fn accounts_trailer(rows: usize, balances: i64) -> String {
    format!("{TRAILER_MARKER},{rows},{}\n", money(balances))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{Catalog, DriftClass, FileDrift, ParseSummary, parse_csv};

    #[test]
    fn generated_files_are_deterministic_and_parse_cleanly() {
        let a = account_master_csv(500, 7, "2026-10-31", &[]);
        assert_eq!(a, account_master_csv(500, 7, "2026-10-31", &[]));
        assert_ne!(a, account_master_csv(500, 8, "2026-10-31", &[]));
        let catalog = Catalog::builtin().unwrap();
        let category = catalog.categorize("accounts_2026-10.csv").unwrap();
        let summary = parse_csv(a.as_bytes(), category, |r| {
            r.map(|_| ()).map_err(|issue| format!("{issue:?}"))
        })
        .unwrap()
        .unwrap();
        assert_eq!((summary.records, summary.parsed), (500, 500));
    }

    fn accounts() -> crate::formats::Category {
        Catalog::builtin()
            .unwrap()
            .categorize("accounts_2026-10.csv")
            .unwrap()
            .clone()
    }

    /// Every issue's class and field, in file order.
    type Issues = Vec<(DriftClass, Option<String>)>;

    /// Parses `text`, returning the outcome and its issues.
    fn parse(text: &str) -> (Result<ParseSummary, FileDrift>, Issues) {
        let mut issues = Vec::new();
        let result = parse_csv(text.as_bytes(), &accounts(), |r| {
            if let Err(issue) = r {
                issues.push((issue.class, issue.field));
            }
            Ok::<(), ()>(())
        })
        .unwrap();
        (result, issues)
    }

    #[test]
    fn every_generated_value_is_inside_the_declared_domains() {
        // Enough rows and seeds to draw every branch of the generator many times.
        for seed in 0..6 {
            let text = account_master_csv(3_000, seed, "2026-10-31", &[]);
            let (result, issues) = parse(&text);
            assert_eq!(issues, [], "seed {seed}");
            let summary = result.unwrap();
            assert_eq!((summary.records, summary.parsed), (3_000, 3_000));
            assert_eq!(summary.trailer, None);
        }
    }

    #[test]
    fn a_trailer_reconciles_the_generated_file() {
        let plain = account_master_csv(400, 3, "2026-10-31", &[]);
        let text = account_master_csv_with_trailer(400, 3, "2026-10-31");
        assert!(text.starts_with(&plain));
        assert!(text[plain.len()..].starts_with("TRAILER,400,"));

        let (result, issues) = parse(&text);
        assert_eq!(issues, []);
        let summary = result.unwrap();
        assert_eq!((summary.records, summary.parsed), (400, 400));
        let check = summary.trailer.expect("a reconciled trailer");
        assert_eq!((check.records, check.line), (400, 402));
        assert_eq!(check.sums.len(), 1);
        assert_eq!(check.sums[0].field, "CycleEndingBalance");
        assert_eq!(
            format!("TRAILER,400,{}\n", check.sums[0]),
            &text[plain.len()..]
        );
    }

    #[test]
    fn a_bad_trailer_is_a_trailer_mismatch() {
        let text = account_master_csv_with_trailer(50, 9, "2026-10-31");

        let drift = parse(&with_bad_trailer(&text, TrailerFault::Count))
            .0
            .unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.field, None);
        assert_eq!(
            (drift.expected.as_deref(), drift.actual.as_deref()),
            (Some("51"), Some("50"))
        );

        let drift = parse(&with_bad_trailer(&text, TrailerFault::Sum))
            .0
            .unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.field.as_deref(), Some("CycleEndingBalance"));
        assert_eq!(drift.records, 50);
    }

    #[test]
    fn planted_values_are_reported_with_their_class() {
        let text = account_master_csv(20, 4, "2026-10-31", &[]);
        let text = plant(&text, 3, "CreditCardType", "7");
        let text = plant(&text, 11, "DaysPastDue", "thirty");
        assert_eq!(text.lines().count(), 21);
        assert_eq!(text.lines().nth(4).unwrap().split(',').nth(3), Some("7"));

        let (result, issues) = parse(&text);
        assert_eq!(
            issues,
            [
                (DriftClass::OutOfDomain, Some("CreditCardType".into())),
                (DriftClass::TypeMismatch, Some("DaysPastDue".into())),
            ]
        );
        let summary = result.unwrap();
        assert_eq!(
            (summary.records, summary.parsed, summary.issues),
            (20, 18, 2)
        );
    }
}
