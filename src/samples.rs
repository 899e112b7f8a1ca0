//! Synthetic issuer files for the demo and the tests: deterministic for a seed, realistic
//! enough to exercise every field type and optional value.

use std::fmt::Write;

/// The account master header (FR Y-14M Schedule D.1 names), in layout order.
pub const ACCOUNT_COLUMNS: &[&str] = &[
    "ReferenceNumber",
    "CustomerId",
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

const STATES: &[&str] = &["NY", "CA", "TX", "FL", "IL", "PA", "OH", "GA", "NC", "MI"];

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// An account master snapshot of `rows` accounts for the cycle ending `cycle_end`
/// (`YYYY-MM-DD`). `extra_columns` are appended to the header and every row, with values:
/// how a client's unannounced new column looks.
pub fn account_master_csv(
    rows: usize,
    seed: u64,
    cycle_end: &str,
    extra_columns: &[&str],
) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::with_capacity(rows * 160);
    out.push_str(&ACCOUNT_COLUMNS.join(","));
    for c in extra_columns {
        out.push(',');
        out.push_str(c);
    }
    out.push('\n');
    for i in 0..rows {
        let limit = rng.i64(5..=250) * 10_000;
        let begin = rng.i64(0..=limit);
        let payment = rng.i64(0..=begin.max(1));
        let purchases = rng.i64(0..=limit / 4);
        let end = (begin - payment + purchases).max(0);
        let days_past_due = match rng.u8(0..100) {
            0..=89 => 0,
            90..=95 => 30,
            96..=98 => 60,
            _ => 90,
        };
        let past_due = if days_past_due > 0 {
            rng.i64(2_500..=50_000)
        } else {
            0
        };
        // About one optional value in twenty is left empty.
        let optional = |rng: &mut fastrand::Rng, v: String| {
            if rng.u8(0..20) == 0 { String::new() } else { v }
        };
        let card_type = rng.u8(1..=2).to_string();
        let card_type = optional(&mut rng, card_type);
        let product = rng.u8(1..=4).to_string();
        let product = optional(&mut rng, product);
        let state = STATES[rng.usize(..STATES.len())];
        let zip = format!("{:05}", rng.u32(501..99_950));
        let opened = format!(
            "{}-{:02}-{:02}",
            rng.u16(2005..=2025),
            rng.u8(1..=12),
            rng.u8(1..=28)
        );
        let original_limit = money(limit - rng.i64(0..=limit / 2));
        let original_limit = optional(&mut rng, original_limit);
        let _ = write!(
            out,
            "ACC{seed:04}{i:08},CUS{:08},{card_type},{product},{state},{zip},{opened},{cycle_end},{original_limit},{},{},{},{},{},{},{days_past_due}",
            rng.u32(..100_000_000),
            money(limit),
            money(begin),
            money(end),
            money((end / 50).max(2_500.min(end))),
            money(payment),
            money(past_due),
        );
        for _ in extra_columns {
            let _ = write!(out, ",{}.{:02}", rng.u8(0..30), rng.u8(0..100));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{Catalog, parse_csv};

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
}
