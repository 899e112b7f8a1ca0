//! Delimited text with a header row, read by the `csv` crate.
//!
//! Columns are found by header name, checked against the layout before any record is read:
//! a header that drifted holds the whole file. Records are then read one at a time into a
//! reused buffer; values borrow from the record, so no field is copied into a `String`.
//! A trailer row, if the layout declares one, is set aside and reconciled at the end.
//!
//! Architecture Invariant: every row after the header is a data record (handed on or
//! reported), a trailer row (reconciled, or reported in the file's drift), or blank; none is
//! skipped unaccounted for.

use std::collections::HashSet;

use super::layout::{Category, FieldSpec, FormatSpec, TrailerSpec, format_decimal, parse_decimal};
use super::mask::mask_card_numbers;
use super::value::{FieldValue, ParsedRecord, Position, read_field, recycle};
use super::{ControlTotal, DriftClass, FileDrift, ParseSummary, Pass, RecordIssue, TrailerCheck};

/// Parses a CSV file per `category`, calling `on_record` with each record or its issue, in
/// file order. The outer `Result` is the callback's own error, which stops the parse; the
/// inner one is a drift that holds the whole file.
///
/// A header drift is found before any record is handed on. A trailer mismatch is found only
/// at the end, after the records have been handed on: a caller that wants all or nothing
/// ([`Category::validates_first`]) parses once with a callback that only looks for issues,
/// and hands records on in a second parse only if the first found nothing to hold.
///
/// Trailer rules, for a layout with `[trailer]`:
/// - The trailer is the row whose first cell is the marker. It is never a data record, it
///   must be the last row that is not blank, and there must be exactly one (or none, unless
///   `required`). Anything else is `TRAILER_MISMATCH`.
/// - The count covers every data record, parsed or reported as an issue
///   ([`ParseSummary::records`]): the sender counts the rows it sent, and a bad row is still
///   a row that arrived. Counting only good rows would turn every bad record into a second,
///   file-wide finding.
/// - A sum covers every data record whose value of that field parses as its type, even if
///   another field of the record is bad or the value is out of its domain. A value that does
///   not parse, or sits in a record with the wrong field count, is not in the sum. It was
///   reported as an issue, and if the sender's total includes it the totals differ, so the
///   file does not reconcile: money that could not be read is not accounted for. The reason
///   then says how many values were left out.
pub fn parse_csv<E>(
    bytes: &[u8],
    category: &Category,
    on_record: impl FnMut(Result<ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<ParseSummary, FileDrift>, E> {
    parse_csv_pass(bytes, category, Pass::Typed, on_record)
}

/// [`parse_csv`], or with [`Pass::Reconcile`] its structure and trailer only.
pub(super) fn parse_csv_pass<E>(
    bytes: &[u8],
    category: &Category,
    mut pass: Pass<'_>,
    mut on_record: impl FnMut(Result<ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<ParseSummary, FileDrift>, E> {
    let FormatSpec::Csv { delimiter } = category.format else {
        unreachable!("parse_csv is called for CSV categories only");
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter as u8)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();

    let header = match reader.read_byte_record(&mut record) {
        Ok(true) => record.clone(),
        Ok(false) => {
            return Ok(Err(malformed(
                "the file is empty; a header row was expected",
                0,
            )));
        }
        Err(e) => return Ok(Err(malformed(&format!("unreadable header: {e}"), 0))),
    };
    let columns = match header_columns(&header) {
        Ok(c) => c,
        Err(drift) => return Ok(Err(drift)),
    };
    let indices = match map_columns(&category.fields, &columns) {
        Ok(i) => i,
        Err(mut drift) => {
            let marker = category.trailer.as_ref().map(|t| t.marker.as_str());
            drift.records = count_records(&mut reader, &mut record, marker);
            return Ok(Err(drift));
        }
    };
    let mut trailer = category
        .trailer
        .as_ref()
        .map(|spec| TrailerState::new(spec, &category.fields, &indices));

    let mut summary = ParseSummary::default();
    // Reused across records; see `recycle`.
    let mut spare: Vec<FieldValue<'static>> = Vec::with_capacity(indices.len());
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // A broken quote or similar: the csv crate cannot resynchronise reliably, so
                // what remains of the file is one issue rather than guessed records.
                let position = Position {
                    record_index: summary.records,
                    line: e.position().map_or(0, |p| p.line()),
                    byte_offset: e.position().map_or(0, |p| p.byte()),
                };
                summary.records += 1;
                summary.issues += 1;
                on_record(Err(RecordIssue {
                    class: DriftClass::Malformed,
                    reason: format!("unreadable record: {e}"),
                    field: None,
                    expected: None,
                    actual: None,
                    position,
                }))?;
                break;
            }
        }
        let pos = record.position().expect("the csv reader sets positions");
        if let Some(t) = trailer.as_mut() {
            if t.is_marker(&record) {
                t.set_aside(&record, pos.line());
                continue;
            }
            if t.found.is_some() {
                if record.iter().all(|cell| cell.trim_ascii().is_empty()) {
                    continue;
                }
                // Still a data record: handed on below, and the file held at the end.
                t.rows_after += 1;
            }
        }
        let position = Position {
            record_index: summary.records,
            line: pos.line(),
            byte_offset: pos.byte(),
        };
        summary.records += 1;
        if !pass.types_record_at(position.byte_offset) {
            if let Some(t) = trailer.as_mut() {
                t.add(&record, None, record.len() == columns.len());
            }
            continue;
        }
        let mut values = recycle(std::mem::take(&mut spare));
        let outcome = if record.len() != columns.len() {
            Err(RecordIssue {
                class: DriftClass::WrongFieldCount,
                reason: format!(
                    "record has {} fields, the header has {}",
                    record.len(),
                    columns.len()
                ),
                field: None,
                expected: Some(columns.len().to_string()),
                actual: Some(record.len().to_string()),
                position,
            })
        } else {
            read_values(&record, &category.fields, &indices, position, &mut values)
                .map_err(|issue| *issue)
        };
        if let Some(t) = trailer.as_mut() {
            let parsed = outcome.is_ok().then_some(values.as_slice());
            t.add(&record, parsed, record.len() == columns.len());
        }
        super::hand_on(&mut summary, outcome, position, &values, &mut on_record)?;
        spare = recycle(values);
    }
    if let Some(t) = trailer {
        match t.reconcile(summary.records) {
            Ok(check) => summary.trailer = check,
            Err(drift) => return Ok(Err(drift)),
        }
    }
    Ok(Ok(summary))
}

/// The trailer while the file is read: where it is, and the running sums.
struct TrailerState<'c> {
    spec: &'c TrailerSpec,
    sums: Vec<RunningSum<'c>>,
    /// The trailer row and its line.
    found: Option<(csv::ByteRecord, u64)>,
    /// Line of a second marker row.
    duplicate: Option<u64>,
    /// Data records after the trailer.
    rows_after: u64,
}

struct RunningSum<'c> {
    field: &'c FieldSpec,
    /// The field's index among the layout's fields, and its column in a record.
    index: usize,
    column: usize,
    scale: u32,
    /// `None` once the sum overflowed.
    total: Option<i128>,
    /// Values that did not parse, left out of the total.
    left_out: u64,
}

impl<'c> TrailerState<'c> {
    fn new(spec: &'c TrailerSpec, fields: &'c [FieldSpec], indices: &[usize]) -> Self {
        let sums = spec
            .sums
            .iter()
            .map(|sum| {
                let index = fields
                    .iter()
                    .position(|f| f.name == sum.field)
                    .expect("the layout checks that a summed field exists");
                let field = &fields[index];
                RunningSum {
                    field,
                    index,
                    column: indices[index],
                    scale: field
                        .ty
                        .numeric_scale()
                        .expect("the layout checks that a summed field is numeric"),
                    total: Some(0),
                    left_out: 0,
                }
            })
            .collect();
        TrailerState {
            spec,
            sums,
            found: None,
            duplicate: None,
            rows_after: 0,
        }
    }

    fn is_marker(&self, record: &csv::ByteRecord) -> bool {
        record
            .get(0)
            .is_some_and(|cell| cell.trim_ascii() == self.spec.marker.as_bytes())
    }

    fn set_aside(&mut self, record: &csv::ByteRecord, line: u64) {
        if self.found.is_none() {
            self.found = Some((record.clone(), line));
        } else {
            self.duplicate.get_or_insert(line);
        }
    }

    /// Adds one data record to the sums: from its values if it parsed, otherwise by parsing
    /// just the summed cells, which only a record with the header's field count has.
    fn add(&mut self, record: &csv::ByteRecord, parsed: Option<&[FieldValue<'_>]>, aligned: bool) {
        for sum in &mut self.sums {
            let value = match parsed {
                Some(values) => Some(values[sum.index].as_unscaled()),
                None if aligned => std::str::from_utf8(&record[sum.column])
                    .ok()
                    .map(str::trim)
                    .and_then(|text| {
                        if text.is_empty() {
                            Some(None)
                        } else {
                            sum.field.ty.parse(text).ok().map(|v| v.as_unscaled())
                        }
                    }),
                None => None,
            };
            match value {
                // An empty value adds nothing and is not missing from the total.
                Some(None) => {}
                Some(Some(n)) => sum.total = sum.total.and_then(|t| t.checked_add(n)),
                None => sum.left_out += 1,
            }
        }
    }

    /// Compares the trailer with what was read. `Ok(None)`: no trailer, and none required.
    fn reconcile(self, records: u64) -> Result<Option<TrailerCheck>, FileDrift> {
        let marker = &self.spec.marker;
        let drift = |field: Option<&str>, expected, actual, reason| FileDrift {
            class: DriftClass::TrailerMismatch,
            reason,
            field: field.map(str::to_string),
            expected,
            actual,
            records,
        };
        let Some((row, line)) = self.found else {
            if !self.spec.required {
                return Ok(None);
            }
            return Err(drift(
                None,
                Some(format!("a last row starting {marker}")),
                None,
                format!(
                    "the file has no trailer row (first cell {marker}) and the layout requires one"
                ),
            ));
        };
        if let Some(second) = self.duplicate {
            return Err(drift(
                None,
                Some("one trailer row".into()),
                Some(format!("trailer rows at lines {line} and {second}")),
                format!("the file has more than one trailer row, at lines {line} and {second}"),
            ));
        }
        if self.rows_after > 0 {
            return Err(drift(
                None,
                Some("the trailer as the last row".into()),
                Some(format!("{} data rows after it", self.rows_after)),
                format!(
                    "{} data rows follow the trailer at line {line}; the trailer must be last",
                    self.rows_after
                ),
            ));
        }

        // Each stated value as text, or why it cannot be read.
        let cell = |column: usize| -> Result<&str, String> {
            let raw = row.get(column).ok_or_else(|| format!("no cell {column}"))?;
            std::str::from_utf8(raw)
                .map(str::trim)
                .map_err(|_| mask_card_numbers(&String::from_utf8_lossy(raw)))
        };
        let count_text = cell(self.spec.count_column);
        let Some(stated_count) = count_text
            .as_ref()
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
        else {
            let actual = count_text.map_or_else(|e| e, mask_card_numbers);
            return Err(drift(
                None,
                Some("a count of data records".into()),
                Some(actual.clone()),
                format!(
                    "the trailer at line {line} has no readable count in cell {}: {actual:?}",
                    self.spec.count_column
                ),
            ));
        };
        let mut stated_sums = Vec::with_capacity(self.sums.len());
        for (sum, spec) in self.sums.iter().zip(&self.spec.sums) {
            let text = cell(spec.column);
            match text.as_ref().ok().and_then(|t| parse_decimal(t, sum.scale)) {
                Some(n) => stated_sums.push((n, mask_card_numbers(text.as_ref().expect("parsed")))),
                None => {
                    let actual = text.map_or_else(|e| e, mask_card_numbers);
                    return Err(drift(
                        Some(&sum.field.name),
                        Some(format!(
                            "a total with at most {} fraction digits",
                            sum.scale
                        )),
                        Some(actual.clone()),
                        format!(
                            "the trailer at line {line} has no readable total of {} in cell {}: {actual:?}",
                            sum.field.name, spec.column
                        ),
                    ));
                }
            }
        }

        if stated_count != records {
            return Err(drift(
                None,
                Some(stated_count.to_string()),
                Some(records.to_string()),
                format!(
                    "the trailer at line {line} counts {stated_count} data records, the file has {records}"
                ),
            ));
        }
        let mut totals = Vec::with_capacity(self.sums.len());
        for (sum, (stated, stated_text)) in self.sums.iter().zip(stated_sums) {
            let left_out = match sum.left_out {
                0 => String::new(),
                n => format!(
                    "; {n} values of {} did not parse and are not in the sum",
                    sum.field.name
                ),
            };
            let Some(total) = sum.total else {
                return Err(drift(
                    Some(&sum.field.name),
                    Some(stated_text),
                    Some("overflow".into()),
                    format!("the sum of {} overflows{left_out}", sum.field.name),
                ));
            };
            if total != stated {
                let computed = format_decimal(total, sum.scale);
                return Err(drift(
                    Some(&sum.field.name),
                    Some(stated_text.clone()),
                    Some(computed.clone()),
                    format!(
                        "the trailer at line {line} totals {} as {stated_text}, the records sum to {computed}{left_out}",
                        sum.field.name
                    ),
                ));
            }
            totals.push(ControlTotal {
                field: sum.field.name.clone(),
                unscaled: total,
                scale: sum.scale,
            });
        }
        Ok(Some(TrailerCheck {
            line,
            records,
            sums: totals,
        }))
    }
}

fn read_values<'r>(
    record: &'r csv::ByteRecord,
    fields: &[FieldSpec],
    indices: &[usize],
    position: Position,
    values: &mut Vec<FieldValue<'r>>,
) -> Result<(), Box<RecordIssue>> {
    for (field, &index) in fields.iter().zip(indices) {
        values.push(read_field(field, &record[index], position, || {
            format!("column {}", field.column)
        })?);
    }
    Ok(())
}

fn header_columns(header: &csv::ByteRecord) -> Result<Vec<String>, FileDrift> {
    header
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let raw = if i == 0 {
                raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
            } else {
                raw
            };
            std::str::from_utf8(raw)
                .map(|s| s.trim().to_string())
                .map_err(|_| FileDrift {
                    class: DriftClass::Encoding,
                    reason: format!("header column {} is not valid UTF-8", i + 1),
                    field: None,
                    expected: Some("UTF-8 text".into()),
                    actual: Some(mask_card_numbers(&String::from_utf8_lossy(raw))),
                    records: 0,
                })
        })
        .collect()
}

/// Finds each layout field's column, or classifies how the header drifted.
fn map_columns(fields: &[FieldSpec], columns: &[String]) -> Result<Vec<usize>, FileDrift> {
    let expected: Vec<&str> = fields.iter().map(|f| f.column.as_str()).collect();
    let actual: Vec<&str> = columns.iter().map(String::as_str).collect();
    if expected == actual {
        return Ok((0..expected.len()).collect());
    }
    let expected_set: HashSet<&str> = expected.iter().copied().collect();
    let actual_set: HashSet<&str> = actual.iter().copied().collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|c| !actual_set.contains(c))
        .collect();
    let extra: Vec<&str> = actual
        .iter()
        .copied()
        .filter(|c| !expected_set.contains(c))
        .collect();
    let duplicated = actual.len() != actual_set.len();
    let (class, field, reason) = match (missing.as_slice(), extra.as_slice()) {
        _ if duplicated => (
            DriftClass::Malformed,
            None,
            "the header names a column more than once".to_string(),
        ),
        ([], []) => (
            DriftClass::ReorderedColumns,
            None,
            "the expected columns are present in another order".to_string(),
        ),
        ([], extra) => (
            DriftClass::ExtraColumn,
            Some(extra[0]),
            format!(
                "the header has columns the layout does not know: {}",
                extra.join(", ")
            ),
        ),
        (missing, []) => (
            DriftClass::MissingColumn,
            Some(missing[0]),
            format!("the header lacks columns: {}", missing.join(", ")),
        ),
        (missing, extra) if missing.len() == extra.len() => (
            DriftClass::RenamedColumn,
            Some(missing[0]),
            format!(
                "columns renamed: {} expected, {} found",
                missing.join(", "),
                extra.join(", ")
            ),
        ),
        (missing, extra) => (
            DriftClass::MissingColumn,
            Some(missing[0]),
            format!(
                "the header lacks columns {} and has unknown columns {}",
                missing.join(", "),
                extra.join(", ")
            ),
        ),
    };
    Err(FileDrift {
        class,
        reason,
        field: field.map(str::to_string),
        expected: Some(expected.join(",")),
        actual: Some(mask_card_numbers(&actual.join(","))),
        records: 0,
    })
}

/// Counts the data records left to read: every row but the trailer's.
fn count_records(
    reader: &mut csv::Reader<&[u8]>,
    record: &mut csv::ByteRecord,
    marker: Option<&str>,
) -> u64 {
    let mut n = 0;
    while let Ok(true) = reader.read_byte_record(record) {
        let is_trailer = marker.is_some_and(|m| {
            record
                .get(0)
                .is_some_and(|cell| cell.trim_ascii() == m.as_bytes())
        });
        if !is_trailer {
            n += 1;
        }
    }
    n
}

fn malformed(reason: &str, records: u64) -> FileDrift {
    FileDrift {
        class: DriftClass::Malformed,
        reason: reason.to_string(),
        field: None,
        expected: None,
        actual: None,
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Catalog;

    const HEADER: &str = "ReferenceNumber,CustomerId,CreditCardType,ProductType,StateCode,ZipCode,AccountOriginationDate,AccountCycleDate,OriginalCreditLimit,CurrentCreditLimit,CycleBeginningBalance,CycleEndingBalance,MinimumPaymentDue,ActualPaymentAmount,TotalPastDue,DaysPastDue";

    /// The account layout without its card-number column: these tests are about CSV, and
    /// card numbers are tokenised by `formats::parse`, tested there.
    fn accounts_text() -> String {
        let text = include_str!("../../topologies/card_accounts.toml");
        let at = text
            .find("name = \"CardNumber\"")
            .expect("the layout has CardNumber");
        let start = text[..at].rfind("[[field]]").unwrap();
        let end = start + 9 + text[start + 9..].find("[[field]]").unwrap();
        format!("{}{}", &text[..start], &text[end..])
    }

    fn accounts() -> Category {
        let category = Category::parse("card_accounts.toml", &accounts_text()).unwrap();
        assert!(
            Catalog::builtin().unwrap().categories()[0].fields.len() == category.fields.len() + 1
        );
        category
    }

    /// The account layout with its trailer required.
    fn accounts_trailer_required() -> Category {
        let text = accounts_text();
        assert!(text.contains("required = false"));
        Category::parse(
            "card_accounts.toml",
            &text.replace("required = false", "required = true"),
        )
        .unwrap()
    }

    type Collected = (Vec<(Position, Vec<String>)>, Vec<RecordIssue>);

    fn parse(text: &str) -> (Result<ParseSummary, FileDrift>, Collected) {
        parse_with(text, &accounts())
    }

    fn parse_with(text: &str, category: &Category) -> (Result<ParseSummary, FileDrift>, Collected) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let result = parse_csv(text.as_bytes(), category, |r| {
            match r {
                Ok(rec) => ok.push((
                    rec.position,
                    rec.values.iter().map(|v| format!("{v:?}")).collect(),
                )),
                Err(issue) => bad.push(issue),
            }
            Ok::<(), ()>(())
        })
        .unwrap();
        crate::formats::assert_reconcile_agrees(text.as_bytes(), category, &result);
        (result, (ok, bad))
    }

    #[test]
    fn clean_rows_parse_with_positions() {
        let text = format!(
            "{HEADER}\nA1,C1,1,2,NY,10001,2020-01-15,2026-10-31,5000,5000.00,10.5,20.25,25,10.5,0,0\nA2,C2,,,,,,2026-10-31,,1000,,-3.10,,,,30\n"
        );
        let (result, (ok, bad)) = parse(&text);
        let summary = result.unwrap();
        assert_eq!((summary.records, summary.parsed, summary.issues), (2, 2, 0));
        assert!(bad.is_empty());
        assert_eq!(
            ok[0].0,
            Position {
                record_index: 0,
                line: 2,
                byte_offset: HEADER.len() as u64 + 1
            }
        );
        assert_eq!(ok[0].1[0], "Str(\"A1\")");
        assert_eq!(ok[0].1[7], "Date(20757)");
        assert_eq!(ok[0].1[9], "Decimal(500000)");
        assert_eq!(ok[1].1[2], "Null");
        assert_eq!(ok[1].1[11], "Decimal(-310)");
        assert_eq!(ok[1].0.line, 3);
    }

    #[test]
    fn an_added_column_holds_the_file_as_extra_column() {
        let text = format!(
            "{HEADER},PromotionalApr\nA1,C1,1,2,NY,10001,2020-01-15,2026-10-31,5000,5000.00,10.5,20.25,25,10.5,0,0,1.9\nA2,C2,1,2,NY,10001,2020-01-15,2026-10-31,5000,5000.00,10.5,20.25,25,10.5,0,0,1.9\n"
        );
        let (result, (ok, bad)) = parse(&text);
        let drift = result.unwrap_err();
        assert_eq!(drift.class, DriftClass::ExtraColumn);
        assert_eq!(drift.field.as_deref(), Some("PromotionalApr"));
        assert_eq!(drift.records, 2);
        assert!(ok.is_empty() && bad.is_empty());
    }

    #[test]
    fn header_drift_is_classified() {
        let missing = HEADER.replace(",TotalPastDue", "");
        assert_eq!(
            parse(&missing).0.unwrap_err().class,
            DriftClass::MissingColumn
        );
        let renamed = HEADER.replace("TotalPastDue", "PastDueTotal");
        let drift = parse(&renamed).0.unwrap_err();
        assert_eq!(drift.class, DriftClass::RenamedColumn);
        assert_eq!(drift.field.as_deref(), Some("TotalPastDue"));
        let reordered = HEADER.replacen(
            "ReferenceNumber,CustomerId",
            "CustomerId,ReferenceNumber",
            1,
        );
        assert_eq!(
            parse(&reordered).0.unwrap_err().class,
            DriftClass::ReorderedColumns
        );
        assert_eq!(parse("").0.unwrap_err().class, DriftClass::Malformed);
    }

    #[test]
    fn bad_records_are_reported_not_dropped() {
        let text = format!(
            "{HEADER}\nA1,C1,x,2,NY,10001,2020-01-15,2026-10-31,5000,5000.00,10.5,20.25,25,10.5,0,0\nA2,C2\n,C3,1,2,NY,10001,2020-01-15,2026-10-31,5000,5000.00,10.5,20.25,25,10.5,0,0\nA4,C4,1,2,NY,10001,2020-01-15,4111111111111111,5000,5000.00,10.5,20.25,25,10.5,0,0\n"
        );
        let (result, (ok, bad)) = parse(&text);
        let summary = result.unwrap();
        assert_eq!((summary.records, summary.parsed, summary.issues), (4, 0, 4));
        assert!(ok.is_empty());
        assert_eq!(bad[0].class, DriftClass::TypeMismatch);
        assert_eq!(bad[0].field.as_deref(), Some("CreditCardType"));
        assert_eq!(bad[0].position.line, 2);
        assert_eq!(bad[1].class, DriftClass::WrongFieldCount);
        assert_eq!(bad[2].class, DriftClass::MissingValue);
        // A card number in a wrong place is masked in the excerpt.
        assert_eq!(bad[3].class, DriftClass::TypeMismatch);
        assert_eq!(bad[3].actual.as_deref(), Some("411111******1111"));
    }

    /// A clean account row with the given reference and cycle ending balance.
    fn row(reference: &str, balance: &str) -> String {
        format!(
            "{reference},C1,1,2,NY,10001,2020-01-15,2026-10-31,5000,5000.00,10.5,{balance},25,10.5,0,0\n"
        )
    }

    /// A file of three rows whose balances sum to 1000.10, and then `tail`.
    fn file_with(tail: &str) -> String {
        format!(
            "{HEADER}\n{}{}{}{tail}",
            row("A1", "1234.56"),
            row("A2", "-300.00"),
            row("A3", "65.54")
        )
    }

    #[test]
    fn values_outside_their_domain_are_out_of_domain() {
        let text = format!(
            "{HEADER}\nA1,C1,3,2,NY,10001,2020-01-15,2026-10-31,5000,5000.00,10.5,20.25,25,10.5,0,0\nA2,C2,01,+4,NY,10001,2020-01-15,2026-10-31,5000,0.00,10.5,20.25,25,10.5,0,0\nA3,C3,1,2,NY,10001,2020-01-15,2026-10-31,5000,-0.01,10.5,20.25,25,10.5,0,0\nA4,C4,1,2,NY,10001,2020-01-15,2026-10-31,5000,1.00,10.5,20.25,25,10.5,0,-1\n"
        );
        let (result, (ok, bad)) = parse(&text);
        assert_eq!(result.unwrap().issues, 3);
        // Allowed codes compare as numbers; a limit of exactly 0.00 is at the bound.
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].1[2], "Int(1)");
        assert_eq!(ok[0].1[9], "Decimal(0)");

        assert_eq!(bad[0].class, DriftClass::OutOfDomain);
        assert_eq!(bad[0].field.as_deref(), Some("CreditCardType"));
        assert_eq!(bad[0].expected.as_deref(), Some("one of 1, 2"));
        assert_eq!(bad[0].actual.as_deref(), Some("3"));
        assert_eq!(bad[0].position.line, 2);
        assert_eq!(bad[0].reason, "column CreditCardType is not one of 1, 2");

        // One cent below the bound.
        assert_eq!(bad[1].class, DriftClass::OutOfDomain);
        assert_eq!(bad[1].field.as_deref(), Some("CurrentCreditLimit"));
        assert_eq!(bad[1].expected.as_deref(), Some("at least 0"));
        assert_eq!(bad[1].actual.as_deref(), Some("-0.01"));

        assert_eq!(bad[2].class, DriftClass::OutOfDomain);
        assert_eq!(bad[2].field.as_deref(), Some("DaysPastDue"));
        assert_eq!(bad[2].position.record_index, 3);
    }

    #[test]
    fn an_out_of_domain_excerpt_is_masked() {
        let category = Category::parse(
            "t.toml",
            "[category]\nname = \"t\"\noutput_topic = \"t\"\nschema = \"t.avsc\"\nlayout_version = 1\n[match]\nname = \"*.csv\"\n[format]\nkind = \"csv\"\n[[field]]\nname = \"Note\"\ntype = \"string\"\nallowed = [\"OPEN\", \"CLOSED\"]\n",
        )
        .unwrap();
        let (result, (ok, bad)) = parse_with("Note\n OPEN \n4111111111111111\n", &category);
        assert_eq!(result.unwrap().parsed, 1);
        assert_eq!(ok[0].1[0], "Str(\" OPEN \")");
        assert_eq!(bad[0].class, DriftClass::OutOfDomain);
        assert_eq!(bad[0].expected.as_deref(), Some("one of OPEN, CLOSED"));
        assert_eq!(bad[0].actual.as_deref(), Some("411111******1111"));
    }

    #[test]
    fn a_matching_trailer_is_set_aside_and_reported() {
        let (result, (ok, bad)) = parse(&file_with("TRAILER,3,1000.10\n\n"));
        let summary = result.unwrap();
        assert!(bad.is_empty());
        assert_eq!(ok.len(), 3);
        assert_eq!((summary.records, summary.parsed, summary.issues), (3, 3, 0));
        let check = summary.trailer.unwrap();
        assert_eq!((check.line, check.records), (5, 3));
        assert_eq!(check.sums[0].field, "CycleEndingBalance");
        assert_eq!((check.sums[0].unscaled, check.sums[0].scale), (100_010, 2));
        assert_eq!(check.sums[0].to_string(), "1000.10");
    }

    #[test]
    fn a_wrong_count_is_a_trailer_mismatch() {
        let (result, (ok, _)) = parse(&file_with("TRAILER,4,1000.10\n"));
        let drift = result.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.field, None);
        assert_eq!(drift.expected.as_deref(), Some("4"));
        assert_eq!(drift.actual.as_deref(), Some("3"));
        assert_eq!(drift.records, 3);
        assert!(drift.reason.contains("line 5"), "{}", drift.reason);
        // Found at the end: the records were already handed on.
        assert_eq!(ok.len(), 3);
    }

    #[test]
    fn a_wrong_sum_is_a_trailer_mismatch() {
        let drift = parse(&file_with("TRAILER,3,1000.11\n")).0.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.field.as_deref(), Some("CycleEndingBalance"));
        assert_eq!(drift.expected.as_deref(), Some("1000.11"));
        assert_eq!(drift.actual.as_deref(), Some("1000.10"));

        // The same total written differently is the same total.
        let summary = parse(&file_with("TRAILER,3,1000.1\n")).0.unwrap();
        assert_eq!(summary.trailer.unwrap().sums[0].unscaled, 100_010);
    }

    #[test]
    fn bad_rows_count_and_unreadable_balances_leave_the_sum() {
        // A3's card type is bad but its balance parsed: it is in the count and the sum. A4's
        // balance does not parse: in the count, not in the sum, so the totals differ.
        let base = file_with("");
        let bad_type = base.replace("A3,C1,1,", "A3,C1,x,");
        let summary = parse(&format!("{bad_type}TRAILER,3,1000.10\n")).0.unwrap();
        assert_eq!((summary.parsed, summary.issues), (2, 1));
        assert_eq!(summary.trailer.unwrap().records, 3);

        // The sender's total includes 12.00 that could not be read, whether the record is
        // misaligned (a decimal comma) or the value is not a decimal.
        for (balance, class) in [
            ("12,00", DriftClass::WrongFieldCount),
            ("12.00x", DriftClass::TypeMismatch),
        ] {
            let text = format!("{base}{}TRAILER,4,1012.10\n", row("A4", balance));
            let (result, (ok, bad)) = parse(&text);
            assert_eq!((ok.len(), bad[0].class), (3, class));
            let drift = result.unwrap_err();
            assert_eq!(drift.class, DriftClass::TrailerMismatch);
            assert_eq!(drift.field.as_deref(), Some("CycleEndingBalance"));
            assert_eq!(drift.expected.as_deref(), Some("1012.10"));
            assert_eq!(drift.actual.as_deref(), Some("1000.10"));
            assert!(
                drift
                    .reason
                    .contains("1 values of CycleEndingBalance did not parse"),
                "{}",
                drift.reason
            );
        }
    }

    #[test]
    fn a_missing_trailer_is_a_mismatch_only_when_required() {
        let text = file_with("");
        let summary = parse(&text).0.unwrap();
        assert_eq!((summary.records, summary.trailer), (3, None));

        let (result, (ok, _)) = parse_with(&text, &accounts_trailer_required());
        let drift = result.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.records, 3);
        assert!(drift.reason.contains("no trailer row"), "{}", drift.reason);
        assert_eq!(ok.len(), 3);

        let with = file_with("TRAILER,3,1000.10\n");
        let summary = parse_with(&with, &accounts_trailer_required()).0.unwrap();
        assert!(summary.trailer.is_some());
    }

    #[test]
    fn rows_after_the_trailer_are_handed_on_and_hold_the_file() {
        let text = file_with(&format!("TRAILER,3,1000.10\n{}", row("A4", "1.00")));
        let (result, (ok, _)) = parse(&text);
        assert_eq!(ok.len(), 4);
        let drift = result.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.records, 4);
        assert!(
            drift.reason.contains("1 data rows follow"),
            "{}",
            drift.reason
        );

        let twice = file_with("TRAILER,3,1000.10\nTRAILER,3,1000.10\n");
        let (result, (ok, bad)) = parse(&twice);
        assert_eq!((ok.len(), bad.len()), (3, 0));
        let drift = result.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert!(
            drift.reason.contains("more than one trailer"),
            "{}",
            drift.reason
        );
    }

    #[test]
    fn an_unreadable_trailer_is_a_mismatch() {
        let drift = parse(&file_with("TRAILER,three,1000.10\n")).0.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.actual.as_deref(), Some("three"));

        let drift = parse(&file_with("TRAILER,3\n")).0.unwrap_err();
        assert_eq!(drift.field.as_deref(), Some("CycleEndingBalance"));
        assert_eq!(drift.actual.as_deref(), Some("no cell 2"));

        let drift = parse(&file_with("TRAILER,3,4111111111111111\n"))
            .0
            .unwrap_err();
        assert_eq!(drift.expected.as_deref(), Some("411111******1111"));
    }

    #[test]
    fn a_header_drift_counts_records_without_the_trailer() {
        let text = file_with("TRAILER,3,1000.10\n").replace(",TotalPastDue", ",PastDueTotal");
        let drift = parse(&text).0.unwrap_err();
        assert_eq!(drift.class, DriftClass::RenamedColumn);
        assert_eq!(drift.records, 3);
    }
}
