//! Progress on standard error for the commands that take a while: `gen`, `backfill`,
//! `replay` and `query --all`.
//!
//! Bars are drawn only when standard error is a terminal: indicatif hides them when it is
//! not (and when `TERM` is unset or `dumb`), so redirected output never holds escape codes.
//! Each of those commands also prints a plain summary line at the end, which is what
//! scripts read. Log lines go through [`LogWriter`], which lifts the bars while a line is
//! written, so the two do not tangle on a terminal.

use std::io::Write;
use std::sync::LazyLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Every bar of the process, drawn together on standard error.
static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// How often a spinner turns while nothing else moves it.
const TICK: Duration = Duration::from_millis(120);

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the progress templates are valid")
        // Whole units per second: indicatif's own `per_sec` shows four decimals.
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}/s", s.per_sec());
        })
        .progress_chars("=> ")
}

/// A bar over `total` `unit`s (records, files), with the rate and the time left.
pub fn counter(prefix: &'static str, total: u64, unit: &str) -> ProgressBar {
    let bar = BARS.add(ProgressBar::new(total));
    bar.set_style(style(&format!(
        "{{prefix}} [{{bar:20}}] {{human_pos}}/{{human_len}} {unit} ({{rate}}, {{eta}} left) {{wide_msg}}"
    )));
    bar.set_prefix(prefix);
    bar
}

/// A bar over `total` bytes, with the throughput and the time left.
pub fn bytes(prefix: &'static str, total: u64) -> ProgressBar {
    let bar = BARS.add(ProgressBar::new(total));
    bar.set_style(style(
        "{prefix} [{bar:20}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {wide_msg}",
    ));
    bar.set_prefix(prefix);
    bar
}

/// A spinner with a count of `unit`s, for work whose total is not known.
pub fn spinner(prefix: &'static str, unit: &str) -> ProgressBar {
    let bar = BARS.add(ProgressBar::no_length());
    bar.set_style(style(&format!(
        "{{spinner}} {{prefix}} {{human_pos}} {unit} ({{rate}}) {{wide_msg}}"
    )));
    bar.set_prefix(prefix);
    bar.enable_steady_tick(TICK);
    bar
}

/// Runs `f` with the bars lifted: for lines written to standard output while bars are
/// drawn (on a terminal both streams share the screen).
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    BARS.suspend(f)
}

/// Makes the writers of log lines for `tracing-subscriber`: each line goes to standard
/// error whole, with the bars lifted while it is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log line, collected and written out when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.0);
        // A log line that cannot be written has nowhere else to go.
        suspend(|| {
            let _ = std::io::stderr().lock().write_all(&line);
        });
    }
}

/// `n` as a count with its unit, singular for one: `1 file`, `3 files`.
pub fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("{n} {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_their_unit_in_the_singular_for_one_only() {
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "file"), "0 files");
        assert_eq!(plural(12, "record"), "12 records");
    }
}
