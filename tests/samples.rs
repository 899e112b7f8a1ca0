//! The synthetic generators, checked independently of the parsers they feed: each file is
//! re-read here by position or with the `csv` crate, and every figure a generator claims
//! (trailers, expected exceptions) is recomputed from the bytes it wrote.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use chrono::NaiveDate;
use credstream::formats::metro2::{parse_metro2, reconcile};
use credstream::samples::{
    Metro2Fault, Metro2Spec, Month, MonthSpec, TransactionsSpec, account_master_csv_with_trailer,
    card_number, write_metro2, write_month, write_transactions,
};

/// Cents from a decimal text with at most two places.
fn cents(text: &str) -> i64 {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let value = int.parse::<i64>().unwrap() * 100 + format!("{frac:0<2}").parse::<i64>().unwrap();
    if negative { -value } else { value }
}

/// Bytes `start..start+len` (1-based) of a line, trimmed.
fn at(line: &str, start: usize, len: usize) -> &str {
    line[start - 1..start - 1 + len].trim()
}

/// A postings file re-read by position: the detail lines, and the trailer's six values.
struct Postings {
    details: Vec<String>,
    trailer: [i64; 6],
}

fn read_postings(text: &str) -> Result<Postings> {
    let lines: Vec<&str> = text.lines().collect();
    ensure!(
        lines.first().is_some_and(|l| l.starts_with('H')),
        "no header"
    );
    let t = lines.last().context("empty")?;
    ensure!(t.starts_with('T'), "the last line is not the trailer");
    let net = at(t, 59, 16);
    let trailer = [
        at(t, 2, 9).parse()?,
        at(t, 11, 9).parse()?,
        at(t, 20, 15).parse()?,
        at(t, 35, 9).parse()?,
        at(t, 44, 15).parse()?,
        net.parse::<i64>()?,
    ];
    Ok(Postings {
        details: lines[1..lines.len() - 1]
            .iter()
            .map(|l| l.to_string())
            .collect(),
        trailer,
    })
}

#[test]
fn transactions_are_160_byte_lines_whose_trailer_restates_them() -> Result<()> {
    let day = NaiveDate::from_ymd_opt(2026, 10, 15).unwrap();
    let spec = TransactionsSpec::new(day, 3, 2_000, 100);
    let mut bytes = Vec::new();
    write_transactions(&mut bytes, &spec, |_| {})?;
    let mut again = Vec::new();
    write_transactions(&mut again, &spec, |_| {})?;
    ensure!(bytes == again, "the same spec gave different bytes");
    let mut other = Vec::new();
    write_transactions(
        &mut other,
        &TransactionsSpec::new(day, 4, 2_000, 100),
        |_| {},
    )?;
    ensure!(bytes != other, "another seed gave the same bytes");

    let text = String::from_utf8(bytes)?;
    ensure!(
        text.lines().all(|l| l.len() == 160),
        "a line is not 160 bytes"
    );
    let p = read_postings(&text)?;
    ensure!(p.details.len() == 2_000);
    let (mut debits, mut debit_cents, mut credits, mut credit_cents) = (0, 0, 0, 0);
    let references: BTreeSet<String> = (0..100)
        .map(|i| credstream::samples::account_reference(3, i))
        .collect();
    for d in &p.details {
        ensure!(d.starts_with('D'));
        let amount: i64 = at(d, 62, 12).parse()?;
        match at(d, 61, 1) {
            "D" => {
                debits += 1;
                debit_cents += amount;
            }
            "C" => {
                credits += 1;
                credit_cents += amount;
            }
            other => anyhow::bail!("flag {other}"),
        }
        ensure!(
            references.contains(at(d, 2, 20)),
            "unknown account {}",
            at(d, 2, 20)
        );
        ensure!(at(d, 85, 8) == "20261015", "post date {}", at(d, 85, 8));
        ensure!(at(d, 77, 8) <= at(d, 85, 8), "transaction after posting");
    }
    ensure!(debits > 0 && credits > 0);
    ensure!(
        p.trailer
            == [
                2_000,
                debits,
                debit_cents,
                credits,
                credit_cents,
                debit_cents - credit_cents
            ],
        "trailer {:?}",
        p.trailer
    );
    Ok(())
}

#[test]
fn metro2_files_reconcile_and_a_planted_fault_is_the_base_record_count() -> Result<()> {
    let month = Month::new(2026, 10).unwrap();
    let spec = Metro2Spec::new(month, 5, 1_000);
    let mut bytes = Vec::new();
    write_metro2(&mut bytes, &spec, |_| {})?;
    let file = parse_metro2(&bytes).map_err(|d| anyhow::anyhow!("{d:?}"))?;
    ensure!(
        file.issues.is_empty(),
        "{:?}",
        &file.issues[..file.issues.len().min(3)]
    );
    ensure!(file.records.len() == 1_000);
    ensure!(reconcile(&file).is_empty(), "{:?}", reconcile(&file));
    ensure!(file.records.iter().any(|r| !r.j1.is_empty()));
    ensure!(file.records.iter().any(|r| !r.j2.is_empty()));
    let statuses: BTreeSet<&str> = file
        .records
        .iter()
        .map(|r| &*r.base.account_status)
        .collect();
    ensure!(statuses.len() > 2, "{statuses:?}");
    for (i, r) in file.records.iter().enumerate() {
        ensure!(r.base.consumer_account_number == card_number(5, i));
        ensure!(r.base.date_of_account_information == Some(month.last_day()));
    }

    let mut bad = Vec::new();
    let faulty = Metro2Spec {
        fault: Some(Metro2Fault::TotalBaseRecords),
        ..spec
    };
    write_metro2(&mut bad, &faulty, |_| {})?;
    let file = parse_metro2(&bad).map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let fields: Vec<String> = reconcile(&file).into_iter().map(|d| d.field).collect();
    ensure!(fields == ["total_base_records"], "{fields:?}");
    Ok(())
}

#[test]
fn an_account_has_one_card_number_in_every_file() -> Result<()> {
    let master = account_master_csv_with_trailer(50, 9, "2026-10-31");
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(master.as_bytes());
    let header = reader.headers()?.clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let mut pans = HashMap::new();
    for row in reader.records() {
        let row = row?;
        if &row[0] == "TRAILER" {
            continue;
        }
        pans.insert(
            row[col("ReferenceNumber")].to_string(),
            row[col("CardNumber")].to_string(),
        );
    }
    ensure!(pans.len() == 50);
    let mut postings = Vec::new();
    let day = NaiveDate::from_ymd_opt(2026, 10, 3).unwrap();
    write_transactions(
        &mut postings,
        &TransactionsSpec::new(day, 9, 500, 50),
        |_| {},
    )?;
    for d in read_postings(&String::from_utf8(postings)?)?.details {
        ensure!(
            pans[at(&d, 2, 20)] == at(&d, 22, 19),
            "card of {}",
            at(&d, 2, 20)
        );
    }
    Ok(())
}

/// Everything of a month re-read from its files: balances per period and the postings of
/// the accepted files (corrections replacing their originals, held files out).
#[test]
fn a_generated_month_plants_exactly_the_exceptions_it_declares() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut spec = MonthSpec::new("acme", Month::new(2026, 10).unwrap(), 17);
    spec.accounts = 80;
    spec.postings_per_day = 60;
    spec.balance_mismatches = 4;
    spec.bad_trailer_days = vec![3, 20];
    spec.corrections = vec![7];
    spec.duplicates = 2;
    let manifest = write_month(dir.path(), &spec)?;
    let on_disk: ExpectedOnDisk = serde_json::from_slice(&std::fs::read(&manifest.expected_path)?)?;
    ensure!(on_disk.period == "2026-10");

    let balances = |name: &str| -> Result<BTreeMap<String, i64>> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(manifest.client_dir.join(name))?;
        let header = reader.headers()?.clone();
        let bal = header
            .iter()
            .position(|h| h == "CycleEndingBalance")
            .unwrap();
        let mut out = BTreeMap::new();
        for row in reader.records() {
            let row = row?;
            if &row[0] != "TRAILER" {
                out.insert(row[0].to_string(), cents(&row[bal]));
            }
        }
        Ok(out)
    };
    let opening = balances("accounts_2026-09.csv")?;
    let closing = balances("accounts_2026-10.csv")?;
    ensure!(opening.len() == 80 && closing.len() == 80);

    // Which postings files count: the latest version of each day, unless its trailer is
    // wrong (then the file is held).
    let mut by_day: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    for f in &manifest.files {
        if manifest.duplicates.contains(f) {
            continue;
        }
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("postings_") {
            by_day.insert(name, f.clone()); // corrections come later in the list
        }
    }
    ensure!(by_day.len() == 31);
    let mut held = Vec::new();
    let mut moved: BTreeMap<String, i64> = BTreeMap::new();
    for (name, path) in &by_day {
        let p = read_postings(&std::fs::read_to_string(path)?)?;
        let (mut dc, mut ds, mut cc, mut cs) = (0, 0, 0, 0);
        let mut net: BTreeMap<String, i64> = BTreeMap::new();
        for d in &p.details {
            let amount: i64 = at(d, 62, 12).parse()?;
            let signed = if at(d, 61, 1) == "D" {
                dc += 1;
                ds += amount;
                amount
            } else {
                cc += 1;
                cs += amount;
                -amount
            };
            *net.entry(at(d, 2, 20).to_string()).or_default() += signed;
        }
        if p.trailer != [p.details.len() as i64, dc, ds, cc, cs, ds - cs] {
            held.push(name.clone());
            continue;
        }
        for (account, n) in net {
            *moved.entry(account).or_default() += n;
        }
    }
    held.sort();
    let mut declared_held = on_disk.files_held.clone();
    declared_held.sort();
    ensure!(
        held == declared_held,
        "held {held:?}, declared {declared_held:?}"
    );
    ensure!(held.len() == 2);

    let mut mismatches: Vec<(String, i64)> = closing
        .iter()
        .filter_map(|(account, close)| {
            let expected = opening[account] + moved.get(account).copied().unwrap_or(0);
            (expected != *close).then(|| (account.clone(), close - expected))
        })
        .collect();
    mismatches.sort();
    let mut declared: Vec<(String, i64)> = on_disk
        .balance_mismatches
        .iter()
        .map(|b| (b.account.clone(), cents(&b.difference)))
        .collect();
    declared.sort();
    ensure!(
        mismatches == declared,
        "recomputed {mismatches:?}\ndeclared {declared:?}"
    );
    ensure!(mismatches.len() >= spec.balance_mismatches);
    for planted in &manifest.planted {
        ensure!(
            mismatches.iter().any(|(a, _)| a == planted),
            "{planted} not off"
        );
    }
    // The correction differs from its original; the resent files are byte-identical.
    ensure!(manifest.corrections.len() == 1 && manifest.duplicates.len() == 2);
    let corrected = &manifest.corrections[0];
    let original = manifest.client_dir.join(corrected.file_name().unwrap());
    ensure!(std::fs::read(corrected)? != std::fs::read(&original)?);
    for dup in &manifest.duplicates {
        let original = manifest.client_dir.join(dup.file_name().unwrap());
        ensure!(std::fs::read(dup)? == std::fs::read(&original)?);
    }
    ensure_same_files(dir.path(), &spec)?;
    Ok(())
}

/// The same spec writes the same bytes.
fn ensure_same_files(first: &Path, spec: &MonthSpec) -> Result<()> {
    let again = tempfile::tempdir()?;
    let manifest = write_month(again.path(), spec)?;
    for f in &manifest.files {
        let rel = f.strip_prefix(again.path())?;
        ensure!(
            std::fs::read(f)? == std::fs::read(first.join(rel))?,
            "{rel:?} differs"
        );
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct ExpectedOnDisk {
    period: String,
    files_held: Vec<String>,
    balance_mismatches: Vec<Mismatch>,
}

#[derive(serde::Deserialize)]
struct Mismatch {
    account: String,
    difference: String,
}
