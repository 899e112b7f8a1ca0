//! `credstream gen`: checks the arguments (a bad one is a configuration error, exit code
//! 2) and streams the file to its output, with a progress bar on standard error when it is
//! a terminal and a summary line there at the end in any case.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use indicatif::ProgressBar;

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
use crate::progress;

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

/// The output: standard output for `-`, else the file, created; the bytes written through
/// it are counted for the summary.
fn sink(out: &Path) -> Result<std::io::BufWriter<Counting<Box<dyn Write>>>, Error> {
    let sink: Box<dyn Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(out)
                .map_err(|e| Error::io(format!("creating {}", out.display()), e))?,
        )
    };
    Ok(std::io::BufWriter::with_capacity(
        1 << 16,
        Counting {
            inner: sink,
            bytes: 0,
        },
    ))
}

/// A writer that counts the bytes it passes on.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_error(e: std::io::Error) -> Error {
    Error::io("writing the generated file", e)
}

/// The progress of one generated file: a bar over its records (moved every 100 000, as
/// the generators report), and the summary line once it is written.
struct Progress {
    kind: &'static str,
    bar: ProgressBar,
    began: Instant,
}

impl Progress {
    fn new(kind: &'static str, records: usize) -> Progress {
        Progress {
            kind,
            bar: progress::counter("gen", records as u64, "records"),
            began: Instant::now(),
        }
    }

    /// The generators' progress callback.
    fn report(&self) -> impl FnMut(usize) + use<> {
        let bar = self.bar.clone();
        move |n| bar.set_position(n as u64)
    }

    /// Clears the bar and prints `gen <kind>: <records> records, <bytes> bytes to <out> in
    /// <seconds> s (<rate> records/s)` on standard error: what scripts read.
    fn finish(self, records: usize, out: &std::io::BufWriter<Counting<Box<dyn Write>>>, to: &Path) {
        self.bar.finish_and_clear();
        let seconds = self.began.elapsed().as_secs_f64();
        let to = if to.as_os_str() == "-" {
            "standard output".to_string()
        } else {
            to.display().to_string()
        };
        eprintln!(
            "gen {}: {records} records, {} bytes to {to} in {seconds:.2} s ({:.0} records/s)",
            self.kind,
            out.get_ref().bytes,
            records as f64 / seconds.max(1e-9)
        );
    }
}

fn accounts(args: GenAccounts) -> Result<(), Error> {
    date("--cycle-end", &args.cycle_end)?;
    let mut out = sink(&args.out)?;
    let extra: Vec<&str> = args.extra_columns.iter().map(String::as_str).collect();
    let records = args.records;
    let progress = Progress::new("accounts", records);
    let balances = write_accounts(
        &mut out,
        records,
        args.seed,
        &args.cycle_end,
        &extra,
        progress.report(),
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
    out.flush().map_err(write_error)?;
    progress.finish(records, &out, &args.out);
    Ok(())
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
    let progress = Progress::new("transactions", spec.records);
    write_transactions(&mut out, &spec, progress.report()).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    progress.finish(spec.records, &out, &args.out);
    Ok(())
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
    let progress = Progress::new("metro2", spec.accounts);
    write_metro2(&mut out, &spec, progress.report()).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    progress.finish(spec.accounts, &out, &args.out);
    Ok(())
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
    // The month's total is not known ahead (corrections and resends vary): a spinner
    // counts the records of the files written so far and of the one being written.
    let spinner = progress::spinner("gen month", "records");
    let began = Instant::now();
    let mut written = 0u64;
    let mut files = 0u64;
    let result = write_month_with_progress(&args.out, &spec, |p| match p {
        MonthProgress::Records { file, records } => {
            spinner.set_message(file.display().to_string());
            spinner.set_position(written + records as u64);
        }
        MonthProgress::Written { records, .. } => {
            written += records as u64;
            files += 1;
            spinner.set_position(written);
        }
    });
    spinner.finish_and_clear();
    let manifest = result
        .map_err(|e| Error::io(format!("writing the month in {}", client_dir.display()), e))?;
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    for file in &manifest.files {
        writeln!(stdout, "{}", file.display()).map_err(write_error)?;
    }
    let expected = &manifest.expected;
    eprintln!(
        "gen month: {written} records in {files} files written in {:.2} s",
        began.elapsed().as_secs_f64()
    );
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
