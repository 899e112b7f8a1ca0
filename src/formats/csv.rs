//! Delimited text with a header row, read by the `csv` crate.
//!
//! Columns are found by header name, checked against the layout before any record is read:
//! a header that drifted holds the whole file. Records are then read one at a time into a
//! reused buffer; values borrow from the record, so no field is copied into a `String`.

use std::collections::HashSet;

use super::layout::{Category, FieldSpec, FormatSpec};
use super::mask::mask_card_numbers;
use super::value::{FieldValue, ParsedRecord, Position};
use super::{DriftClass, FileDrift, ParseSummary, RecordIssue};

/// Parses a CSV file per `category`, calling `on_record` with each record or its issue, in
/// file order. The outer `Result` is the callback's own error, which stops the parse; the
/// inner one is a drift that holds the whole file (no record is handed on then).
pub fn parse_csv<E>(
    bytes: &[u8],
    category: &Category,
    mut on_record: impl FnMut(Result<ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<ParseSummary, FileDrift>, E> {
    let FormatSpec::Csv { delimiter } = category.format;
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
            drift.records = count_records(&mut reader, &mut record);
            return Ok(Err(drift));
        }
    };

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
        let position = Position {
            record_index: summary.records,
            line: pos.line(),
            byte_offset: pos.byte(),
        };
        summary.records += 1;
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
        match outcome {
            Ok(()) => {
                summary.parsed += 1;
                on_record(Ok(ParsedRecord {
                    position,
                    values: &values,
                }))?;
            }
            Err(issue) => {
                summary.issues += 1;
                on_record(Err(issue))?;
            }
        }
        spare = recycle(values);
    }
    Ok(Ok(summary))
}

/// Reuses a vector's allocation for values of another lifetime. The vector is emptied
/// first, so no value outlives its borrow; `collect` on an empty `into_iter` of the same
/// element size keeps the allocation.
fn recycle<'a>(mut v: Vec<FieldValue<'_>>) -> Vec<FieldValue<'a>> {
    v.clear();
    v.into_iter().map(|_| FieldValue::Null).collect()
}

fn read_values<'r>(
    record: &'r csv::ByteRecord,
    fields: &[FieldSpec],
    indices: &[usize],
    position: Position,
    values: &mut Vec<FieldValue<'r>>,
) -> Result<(), Box<RecordIssue>> {
    for (field, &index) in fields.iter().zip(indices) {
        let raw = &record[index];
        let text = std::str::from_utf8(raw).map_err(|e| {
            Box::new(RecordIssue {
                class: DriftClass::Encoding,
                reason: format!("column {} is not valid UTF-8: {e}", field.column),
                field: Some(field.name.clone()),
                expected: Some("UTF-8 text".into()),
                actual: Some(mask_card_numbers(&String::from_utf8_lossy(raw))),
                position,
            })
        })?;
        if text.trim().is_empty() {
            if field.required {
                return Err(Box::new(RecordIssue {
                    class: DriftClass::MissingValue,
                    reason: format!("required column {} is empty", field.column),
                    field: Some(field.name.clone()),
                    expected: Some(field.ty.describe()),
                    actual: Some(String::new()),
                    position,
                }));
            }
            values.push(FieldValue::Null);
            continue;
        }
        let value = field.ty.parse(text).map_err(|expected| {
            Box::new(RecordIssue {
                class: DriftClass::BadValue,
                reason: format!("column {} is not {expected}", field.column),
                field: Some(field.name.clone()),
                expected: Some(expected),
                actual: Some(mask_card_numbers(text)),
                position,
            })
        })?;
        values.push(value);
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

fn count_records(reader: &mut csv::Reader<&[u8]>, record: &mut csv::ByteRecord) -> u64 {
    let mut n = 0;
    while let Ok(true) = reader.read_byte_record(record) {
        n += 1;
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

    fn accounts() -> Category {
        Catalog::builtin().unwrap().categories()[0].clone()
    }

    type Collected = (Vec<(Position, Vec<String>)>, Vec<RecordIssue>);

    fn parse(text: &str) -> (Result<ParseSummary, FileDrift>, Collected) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let result = parse_csv(text.as_bytes(), &accounts(), |r| {
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
        assert_eq!(bad[0].class, DriftClass::BadValue);
        assert_eq!(bad[0].field.as_deref(), Some("CreditCardType"));
        assert_eq!(bad[0].position.line, 2);
        assert_eq!(bad[1].class, DriftClass::WrongFieldCount);
        assert_eq!(bad[2].class, DriftClass::MissingValue);
        // A card number in a wrong place is masked in the excerpt.
        assert_eq!(bad[3].class, DriftClass::BadValue);
        assert_eq!(bad[3].actual.as_deref(), Some("411111******1111"));
    }
}
