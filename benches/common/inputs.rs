//! The generated input files the benchmarks share: one of each built-in category, written
//! with `credstream::samples` (the same generators as `credstream gen`), deterministic for
//! a seed.

#![allow(dead_code)] // each bench uses a different part of this module

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use chrono::NaiveDate;

use credstream::samples::{
    Metro2Spec, Month, TransactionsSpec, accounts_trailer, write_accounts, write_metro2,
    write_transactions,
};

/// A category a benchmark feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `card.accounts`: CSV with a trailer row.
    Accounts,
    /// `card.transactions`: one day's postings, fixed width.
    Transactions,
    /// `metro2.base`: one month's Metro 2 file.
    Metro2,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Accounts, Kind::Transactions, Kind::Metro2];

    /// The row label in BENCHMARKS.md; it starts with the category's name.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Accounts => "card.accounts (CSV, with trailer)",
            Kind::Transactions => "card.transactions (fixed width, one day)",
            Kind::Metro2 => "metro2.base (Metro 2, one month)",
        }
    }

    /// Whether `filter` (a part of a category name; empty for all) picks this kind.
    pub fn picked_by(self, filter: &str) -> bool {
        let category = self.label().split(' ').next().unwrap_or_default();
        category.contains(filter)
    }
}

/// Writes a file's bytes.
type Writer = dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>;

/// A written input file.
pub struct Written {
    /// The file's name, which its category matches.
    pub name: String,
    pub path: PathBuf,
    pub records: u64,
    pub bytes: u64,
}

/// Writes a file of `kind` with `records` data records (seed 7) into `dir`.
pub fn write(dir: &Path, kind: Kind, records: usize) -> Result<Written> {
    let began = Instant::now();
    let (name, write): (String, Box<Writer>) = match kind {
        Kind::Accounts => (
            "accounts_2026-10.csv".into(),
            Box::new(move |mut out| {
                let balances = write_accounts(&mut out, records, 7, "2026-10-31", &[], |_| {})?;
                out.write_all(accounts_trailer(records, balances).as_bytes())
            }),
        ),
        Kind::Transactions => {
            let day = NaiveDate::from_ymd_opt(2026, 10, 15).expect("a date");
            let spec = TransactionsSpec::new(day, 7, records, (records / 10).max(1));
            (
                spec.file_name(),
                Box::new(move |mut out| write_transactions(&mut out, &spec, |_| {}).map(|_| ())),
            )
        }
        Kind::Metro2 => {
            let month: Month = "2026-10".parse().map_err(anyhow::Error::msg)?;
            let spec = Metro2Spec::new(month, 7, records);
            (
                spec.file_name(),
                Box::new(move |mut out| write_metro2(&mut out, &spec, |_| {}).map(|_| ())),
            )
        }
    };
    let path = dir.join(&name);
    let mut out = BufWriter::with_capacity(1 << 16, std::fs::File::create(&path)?);
    write(&mut out)?;
    out.flush()?;
    drop(out);
    let bytes = std::fs::metadata(&path)?.len();
    eprintln!(
        "generated {name}: {records} records, {bytes} bytes in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(Written {
        name,
        path,
        records: records as u64,
        bytes,
    })
}
