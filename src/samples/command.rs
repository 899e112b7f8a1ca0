//! `credstream gen`: checks the arguments (a bad one is a configuration error, exit code
//! 2) and streams the file to its output, with progress on standard error.

use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;

use super::month::MonthProgress;
use super::{
    AccountSet, Metro2Fault, Metro2Spec, Month, MonthSpec, TransactionsFault, TransactionsSpec,
    accounts_trailer, write_accounts, write_metro2, write_month_with_progress, write_transactions,
};
use crate::Error;
use crate::cli::{
    BadRecordArg, GenAccounts, GenKind, GenMetro2, GenMonth, GenTransactions,
    Metro2TrailerFaultArg, TrailerFaultArg,
};
use crate::config::ConfigError;

/// Runs `credstream gen <kind>`.
pub fn run_gen(kind: GenKind) -> Result<(), Error> {
    match kind {
        GenKind::Accounts(args) => accounts(args),
        GenKind::Transactions(args) => transactions(args),
        GenKind::Metro2(args) => metro2(args),
        GenKind::Month(args) => month(args),
    }
}

fn invalid(message: String) -> Error {
    ConfigError::Invalid(message).into()
}

fn date(flag: &str, text: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| invalid(format!("{flag} {text:?} is not a YYYY-MM-DD date: {e}")))
}

fn month_arg(text: &str) -> Result<Month, Error> {
    text.parse().map_err(|e| invalid(format!("--month: {e}")))
}

/// The output: standard output for `-`, else the file, created.
fn sink(out: &Path) -> Result<std::io::BufWriter<Box<dyn Write>>, Error> {
    let sink: Box<dyn Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(out)
                .map_err(|e| Error::io(format!("creating {}", out.display()), e))?,
        )
    };
    Ok(std::io::BufWriter::with_capacity(1 << 16, sink))
}

fn write_error(e: std::io::Error) -> Error {
    Error::io("writing the generated file", e)
}

/// Progress every 100 000 records, on standard error.
fn report(records: usize) -> impl FnMut(usize) {
    move |n| {
        eprintln!(
            "gen: {n} of {records} records ({}%)",
            n * 100 / records.max(1)
        )
    }
}

fn accounts(args: GenAccounts) -> Result<(), Error> {
    date("--cycle-end", &args.cycle_end)?;
    let mut out = sink(&args.out)?;
    let extra: Vec<&str> = args.extra_columns.iter().map(String::as_str).collect();
    let records = args.records;
    let balances = write_accounts(
        &mut out,
        records,
        args.seed,
        &args.cycle_end,
        &extra,
        report(records),
    )
    .map_err(write_error)?;
    if args.trailer || args.bad_trailer.is_some() {
        let (rows, total) = match args.bad_trailer {
            Some(TrailerFaultArg::Count) => (records + 1, balances),
            Some(TrailerFaultArg::Sum) => (records, balances + 1),
            None => (records, balances),
        };
        out.write_all(accounts_trailer(rows, total).as_bytes())
            .map_err(write_error)?;
    }
    out.flush().map_err(write_error)
}

fn transactions(args: GenTransactions) -> Result<(), Error> {
    let fault = match (args.bad_trailer, args.bad_record) {
        (Some(TrailerFaultArg::Count), _) => Some(TransactionsFault::TrailerCount),
        (Some(TrailerFaultArg::Sum), _) => Some(TransactionsFault::TrailerDebitSum),
        (None, Some(BadRecordArg::WrongLength)) => Some(TransactionsFault::WrongLength),
        (None, Some(BadRecordArg::BadAmount)) => Some(TransactionsFault::BadAmount),
        (None, None) => None,
    };
    let spec = TransactionsSpec {
        day: date("--day", &args.day)?,
        sequence: args.sequence,
        seed: args.seed,
        records: args.records,
        accounts: AccountSet {
            seed: args.seed,
            count: args.accounts,
        },
        issuer: args.issuer,
        fault,
        correction: None,
        per_account: false,
    };
    spec.check().map_err(invalid)?;
    let mut out = sink(&args.out)?;
    write_transactions(&mut out, &spec, report(spec.records)).map_err(write_error)?;
    out.flush().map_err(write_error)
}

fn metro2(args: GenMetro2) -> Result<(), Error> {
    let spec = Metro2Spec {
        fault: args.bad_trailer.map(|f| match f {
            Metro2TrailerFaultArg::Count => Metro2Fault::TotalBaseRecords,
        }),
        ..Metro2Spec::new(month_arg(&args.month)?, args.seed, args.records)
    };
    spec.check().map_err(invalid)?;
    let mut out = sink(&args.out)?;
    write_metro2(&mut out, &spec, report(spec.accounts)).map_err(write_error)?;
    out.flush().map_err(write_error)
}

fn month(args: GenMonth) -> Result<(), Error> {
    if args.out.as_os_str() == "-" {
        return Err(invalid(
            "--out of gen month is a directory, not standard output".into(),
        ));
    }
    let spec = MonthSpec {
        client: args.client,
        month: month_arg(&args.month)?,
        seed: args.seed,
        accounts: args.accounts,
        postings_per_day: args.postings_per_day,
        balance_mismatches: args.balance_mismatches,
        bad_trailer_days: args.bad_trailer_days,
        corrections: args.correction_days,
        duplicates: args.duplicates,
    };
    spec.check().map_err(invalid)?;
    let client_dir = args.out.join(&spec.client);
    if std::fs::read_dir(&client_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(invalid(format!(
            "{} is not empty; remove it or choose another --out or --client",
            client_dir.display()
        )));
    }
    let manifest = write_month_with_progress(&args.out, &spec, |p| match p {
        MonthProgress::Records { file, records } => {
            eprintln!("gen: {}: {records} records", file.display())
        }
        MonthProgress::Written { file, records } => {
            eprintln!("gen: wrote {} ({records} records)", file.display())
        }
    })
    .map_err(|e| Error::io(format!("writing the month in {}", client_dir.display()), e))?;
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    for file in &manifest.files {
        writeln!(stdout, "{}", file.display()).map_err(write_error)?;
    }
    let expected = &manifest.expected;
    eprintln!(
        "gen: {} files to deliver in the order printed; {} held, {} balance mismatches expected \
         ({} planted): {}",
        manifest.files.len(),
        expected.files_held.len(),
        expected.balance_mismatches.len(),
        manifest.planted.len(),
        manifest.expected_path.display()
    );
    Ok(())
}
