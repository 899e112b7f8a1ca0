//! `credstream parse`: one file parsed with its layout and printed as JSON lines, without
//! Kafka, a registry or a raw store — for operators inspecting a file, and for comparing
//! against other implementations.
//!
//! One line per record (`"type":"record"`, values by field name) or per record issue
//! (`"type":"issue"`), then one `"type":"verdict"` line: counts and the reconciliation
//! (`RECONCILED` against the trailer, `NO_TRAILER`, or `HELD` with the drift that holds
//! the whole file).
//!
//! Architecture Invariant: the same parser and layouts as the pipeline; nothing here
//! decides differently from what `credstream run` would.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::formats::{Catalog, Category, RecordIssue, parse};
use crate::tokenise::Tokeniser;

/// What `parse` found, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOutcome {
    pub records: u64,
    pub issues: u64,
    /// The whole file would be held (header drift, trailer mismatch, file policy).
    pub held: bool,
}

impl ParseOutcome {
    /// Clean: every record parsed and the file is not held.
    pub fn is_clean(&self) -> bool {
        self.issues == 0 && !self.held
    }
}

/// Parses the file at `path` with `category` (by name) or the category its name matches,
/// writing JSON lines to `out`.
pub fn parse_file(
    path: &Path,
    category: Option<&str>,
    catalog: &Catalog,
    tokeniser: &Tokeniser,
    out: &mut dyn Write,
) -> Result<ParseOutcome, crate::Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| crate::Error::io(format!("reading {}", path.display()), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let category = match category {
        Some(wanted) => catalog
            .categories()
            .iter()
            .find(|c| c.name == wanted)
            .ok_or_else(|| {
                usage(format!(
                    "no category named {wanted}; known: {}",
                    catalog.names()
                ))
            })?,
        None => catalog
            .categorize(&name)
            .map_err(|reason| usage(format!("{reason}; name one with --category")))?,
    };
    let write = |out: &mut dyn Write, line: Value| {
        writeln!(out, "{line}").map_err(|e| crate::Error::io("writing the output", e))
    };
    let parsed = parse(&bytes, category, tokeniser, |outcome| match outcome {
        Ok(rec) => {
            let mut values = Map::new();
            for (field, value) in category.fields.iter().zip(rec.values) {
                values.insert(field.name.clone(), value.to_json(&field.ty));
            }
            write(
                out,
                json!({"type": "record", "record_index": rec.position.record_index,
                       "line": rec.position.line, "values": values}),
            )
        }
        Err(issue) => write(out, issue_json(&issue)),
    })?;
    let sha256 = crate::rawstore::sha256_hex(&bytes);
    let (outcome, reconciliation) = match parsed {
        Ok(summary) => {
            let reconciliation = match &summary.trailer {
                Some(t) => json!({
                    "status": "RECONCILED",
                    "trailer_line": t.line,
                    "records": t.records,
                    "totals": t.sums.iter().map(|s| (s.field.clone(), Value::String(s.to_string()))).collect::<Map<_, _>>(),
                }),
                None => json!({"status": "NO_TRAILER"}),
            };
            let outcome = ParseOutcome {
                records: summary.records,
                issues: summary.issues,
                held: held_by_policy(category, summary.issues),
            };
            (outcome, reconciliation)
        }
        Err(drift) => (
            ParseOutcome {
                records: drift.records,
                issues: 0,
                held: true,
            },
            json!({"status": "HELD", "class": drift.class.as_str(), "reason": drift.reason,
                   "field": drift.field, "expected": drift.expected, "actual": drift.actual}),
        ),
    };
    write(
        out,
        json!({"type": "verdict", "file": path.display().to_string(), "sha256": sha256,
               "category": category.name, "layout": category.layout_id(),
               "records": outcome.records, "issues": outcome.issues,
               "held": outcome.held, "reconciliation": reconciliation}),
    )?;
    Ok(outcome)
}

fn usage(message: String) -> crate::Error {
    crate::config::ConfigError::Invalid(message).into()
}

/// With `bad_records = "file"`, one bad record holds the file.
fn held_by_policy(category: &Category, issues: u64) -> bool {
    issues > 0 && category.bad_records == crate::formats::BadRecordPolicy::File
}

fn issue_json(issue: &RecordIssue) -> Value {
    json!({"type": "issue", "class": issue.class.as_str(), "reason": issue.reason,
           "field": issue.field, "expected": issue.expected, "actual": issue.actual,
           "record_index": issue.position.record_index, "line": issue.position.line,
           "byte_offset": issue.position.byte_offset})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::FieldValue;
    use crate::samples::{TrailerFault, account_master_csv_with_trailer, plant, with_bad_trailer};

    fn run(text: &str, name: &str) -> (ParseOutcome, Vec<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut out = Vec::new();
        let tokeniser = crate::tokenise::Tokeniser::for_tests();
        let outcome = parse_file(
            &path,
            None,
            &Catalog::builtin().unwrap(),
            &tokeniser,
            &mut out,
        )
        .unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (outcome, lines)
    }

    #[test]
    fn records_then_a_reconciled_verdict() {
        let text = account_master_csv_with_trailer(5, 3, "2026-10-31");
        let (outcome, lines) = run(&text, "accounts.csv");
        assert!(outcome.is_clean());
        assert_eq!(lines.len(), 6);
        let first_row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(lines[0]["values"]["ReferenceNumber"], first_row[0]);
        assert_eq!(lines[0]["values"]["AccountCycleDate"], "2026-10-31");
        // Decimals print exactly as the file wrote them.
        assert_eq!(lines[0]["values"]["CycleEndingBalance"], first_row[12]);
        // The card number only as its token and display form.
        let pan = first_row[2];
        assert_eq!(
            lines[0]["values"]["CardNumber"]["display"],
            crate::tokenise::truncate(pan).unwrap()
        );
        assert_eq!(
            lines[0]["values"]["CardNumber"]["token"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        assert!(!lines.iter().any(|l| l.to_string().contains(pan)));
        let verdict = &lines[5];
        assert_eq!(verdict["type"], "verdict");
        assert_eq!(verdict["reconciliation"]["status"], "RECONCILED");
        assert_eq!(verdict["records"], 5);
    }

    #[test]
    fn issues_and_held_files_are_reported() {
        let text = plant(
            &account_master_csv_with_trailer(5, 4, "2026-10-31"),
            1,
            "DaysPastDue",
            "x",
        );
        let (outcome, lines) = run(&text, "accounts.csv");
        assert_eq!(outcome.issues, 1);
        assert!(
            lines
                .iter()
                .any(|l| l["type"] == "issue" && l["class"] == "TYPE_MISMATCH")
        );
        let bad = with_bad_trailer(
            &account_master_csv_with_trailer(5, 5, "2026-10-31"),
            TrailerFault::Count,
        );
        let (outcome, lines) = run(&bad, "accounts.csv");
        assert!(outcome.held);
        let verdict = lines.last().unwrap();
        assert_eq!(verdict["reconciliation"]["status"], "HELD");
        assert_eq!(verdict["reconciliation"]["class"], "TRAILER_MISMATCH");
    }

    #[test]
    fn decimals_keep_their_scale_and_sign() {
        let ty = crate::formats::FieldType::Decimal { scale: 2 };
        assert_eq!(FieldValue::Decimal(-5).to_json(&ty), "-0.05");
        assert_eq!(FieldValue::Decimal(123456).to_json(&ty), "1234.56");
        assert_eq!(
            FieldValue::Long(7).to_json(&crate::formats::FieldType::Long),
            7
        );
    }
}
