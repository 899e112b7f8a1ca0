//! Fixed-width text: one record per line, its type in a fixed span (header, detail,
//! trailer), its fields at fixed positions.
//!
//! A detail line of the wrong length is `WRONG_RECORD_LENGTH`; a line of an unknown type is
//! a data record that cannot be read (`MALFORMED`). The trailer states counts, sums and a
//! net of the detail records, each at its own position; every one must match.
//!
//! Architecture Invariant: every line after the header is a data record (handed on or
//! reported), the trailer (reconciled, or reported in the file's drift), or blank; none is
//! skipped unaccounted for.

use super::layout::{
    Category, ControlCheck, FormatSpec, Measure, Span, format_decimal, parse_implied,
};
use super::mask::mask_card_numbers;
use super::value::{FieldValue, ParsedRecord, Position, read_field};
use super::{ControlTotal, DriftClass, FileDrift, ParseSummary, Pass, RecordIssue, TrailerCheck};

/// Parses a fixed-width file per `category`, calling `on_record` with each data record or
/// its issue, in file order; the contract is [`super::parse_csv`]'s. A trailer mismatch is
/// found at the end, after the records were handed on.
pub fn parse_fixed<E>(
    bytes: &[u8],
    category: &Category,
    on_record: impl FnMut(Result<ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<ParseSummary, FileDrift>, E> {
    parse_fixed_pass(bytes, category, Pass::Typed, on_record)
}

/// [`parse_fixed`], or with [`Pass::Reconcile`] its structure and trailer only.
pub(super) fn parse_fixed_pass<E>(
    bytes: &[u8],
    category: &Category,
    mut pass: Pass<'_>,
    mut on_record: impl FnMut(Result<ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<ParseSummary, FileDrift>, E> {
    let FormatSpec::FixedWidth {
        record_type,
        header,
        detail,
        record_length,
    } = &category.format
    else {
        unreachable!("parse_fixed is called for fixed-width categories only");
    };
    let marker = category.trailer.as_ref().map(|t| t.marker.as_bytes());
    let mut summary = ParseSummary::default();
    let mut checks: Vec<Running<'_>> = category
        .trailer
        .iter()
        .flat_map(|t| &t.checks)
        .map(|check| Running {
            check,
            total: Some(0),
            left_out: 0,
        })
        .collect();
    let mut trailer: Option<(&[u8], u64)> = None;
    let mut duplicate_trailer: Option<u64> = None;
    let mut rows_after = 0u64;
    let mut seen_header = header.is_none();
    let mut values: Vec<FieldValue<'_>> = Vec::with_capacity(category.fields.len());

    for (number, offset, line) in lines(bytes) {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let kind = record_type.slice(line);
        if !seen_header {
            if kind == header.as_deref().map(str::as_bytes) {
                seen_header = true;
                continue;
            }
            return Ok(Err(FileDrift {
                class: DriftClass::Malformed,
                reason: format!(
                    "line {number} is not a header record (type {:?} at bytes {}-{})",
                    header.as_deref().unwrap_or_default(),
                    record_type.start,
                    record_type.end()
                ),
                field: None,
                expected: header.clone(),
                actual: kind.map(|k| mask_card_numbers(&String::from_utf8_lossy(k))),
                records: 0,
            }));
        }
        if kind.is_some() && kind == marker {
            if trailer.is_none() {
                trailer = Some((line, number));
            } else {
                duplicate_trailer.get_or_insert(number);
            }
            continue;
        }
        if trailer.is_some() {
            rows_after += 1;
        }
        let position = Position {
            record_index: summary.records,
            line: number,
            byte_offset: offset as u64,
        };
        summary.records += 1;
        if !pass.types_record_at(position.byte_offset) {
            for running in &mut checks {
                running.add(category, line, None);
            }
            continue;
        }
        values.clear();
        let outcome = if kind != Some(detail.as_bytes()) {
            Err(RecordIssue {
                class: DriftClass::Malformed,
                reason: format!(
                    "line {number} has record type {:?}, not the detail type {detail:?}",
                    kind.map(String::from_utf8_lossy).unwrap_or_default()
                ),
                field: None,
                expected: Some(detail.clone()),
                actual: kind.map(|k| mask_card_numbers(&String::from_utf8_lossy(k))),
                position,
            })
        } else if let Some(len) = record_length.filter(|l| *l != line.len()) {
            Err(RecordIssue {
                class: DriftClass::WrongRecordLength,
                reason: format!(
                    "line {number} is {} bytes long, the layout {len}",
                    line.len()
                ),
                field: None,
                expected: Some(len.to_string()),
                actual: Some(line.len().to_string()),
                position,
            })
        } else {
            read_values(line, category, position, &mut values).map_err(|issue| *issue)
        };
        let parsed = outcome.is_ok().then_some(values.as_slice());
        for running in &mut checks {
            running.add(category, line, parsed);
        }
        super::hand_on(&mut summary, outcome, position, &values, &mut on_record)?;
    }
    if !seen_header {
        return Ok(Err(FileDrift {
            class: DriftClass::Malformed,
            reason: "the file is empty; a header record was expected".into(),
            field: None,
            expected: header.clone(),
            actual: None,
            records: 0,
        }));
    }
    if let Some(spec) = &category.trailer {
        let drift = |reason: String, field: Option<&str>, expected, actual| FileDrift {
            class: DriftClass::TrailerMismatch,
            reason,
            field: field.map(str::to_string),
            expected,
            actual,
            records: summary.records,
        };
        let Some((line, number)) = trailer else {
            if spec.required {
                return Ok(Err(drift(
                    format!(
                        "the file has no trailer record (type {}) and the layout requires one",
                        spec.marker
                    ),
                    None,
                    Some(format!("a last record of type {}", spec.marker)),
                    None,
                )));
            }
            return Ok(Ok(summary));
        };
        if let Some(second) = duplicate_trailer {
            return Ok(Err(drift(
                format!(
                    "the file has more than one trailer record, at lines {number} and {second}"
                ),
                None,
                Some("one trailer record".into()),
                Some(format!("trailer records at lines {number} and {second}")),
            )));
        }
        if rows_after > 0 {
            return Ok(Err(drift(
                format!(
                    "{rows_after} data records follow the trailer at line {number}; the trailer must be last"
                ),
                None,
                Some("the trailer as the last record".into()),
                Some(format!("{rows_after} data records after it")),
            )));
        }
        let mut totals = Vec::with_capacity(checks.len());
        for running in checks {
            let check = running.check;
            let scale = check.measure.scale();
            let stated_text = check
                .span
                .slice(line)
                .and_then(|raw| std::str::from_utf8(raw).ok())
                .map(str::trim);
            let stated = stated_text.and_then(|t| match check.measure {
                Measure::Count => t.parse::<u64>().ok().map(i128::from),
                _ => parse_implied(t, scale),
            });
            let Some(stated) = stated else {
                let actual = stated_text.map(mask_card_numbers).unwrap_or_default();
                return Ok(Err(drift(
                    format!(
                        "the trailer at line {number} has no readable {} at bytes {}-{}: {actual:?}",
                        check.name,
                        check.span.start,
                        check.span.end()
                    ),
                    Some(&check.name),
                    Some(format!("digits ({} implied decimals)", scale)),
                    Some(actual),
                )));
            };
            let left_out = match running.left_out {
                0 => String::new(),
                n => format!("; {n} records could not be read for it"),
            };
            let Some(total) = running.total else {
                return Ok(Err(drift(
                    format!("{} overflows{left_out}", check.name),
                    Some(&check.name),
                    Some(format_decimal(stated, scale)),
                    Some("overflow".into()),
                )));
            };
            if total != stated {
                let (stated, computed) =
                    (format_decimal(stated, scale), format_decimal(total, scale));
                return Ok(Err(drift(
                    format!(
                        "the trailer at line {number} states {} {stated}, the records give {computed}{left_out}",
                        check.name
                    ),
                    Some(&check.name),
                    Some(stated),
                    Some(computed),
                )));
            }
            totals.push(ControlTotal {
                field: check.name.clone(),
                unscaled: total,
                scale,
            });
        }
        summary.trailer = Some(TrailerCheck {
            line: number,
            records: summary.records,
            sums: totals,
        });
    }
    Ok(Ok(summary))
}

impl Measure {
    /// The scale the measure's values are at: 0 for counts.
    pub fn scale(&self) -> u32 {
        match self {
            Measure::Count => 0,
            Measure::Sum { scale, .. } | Measure::Net { scale, .. } => *scale,
        }
    }
}

/// Lines of `bytes`: 1-based number, offset of the first byte, and the bytes without the
/// line break (`\n` or `\r\n`).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, usize, &[u8])> {
    let mut offset = 0;
    let mut number = 0u64;
    std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let start = offset;
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        offset = end + 1;
        number += 1;
        let line = &bytes[start..end];
        Some((number, start, line.strip_suffix(b"\r").unwrap_or(line)))
    })
}

fn read_values<'r>(
    line: &'r [u8],
    category: &Category,
    position: Position,
    values: &mut Vec<FieldValue<'r>>,
) -> Result<(), Box<RecordIssue>> {
    for field in &category.fields {
        let span = field
            .span
            .expect("the layout gives every fixed-width field a span");
        let label = || format!("field {} (bytes {}-{})", field.name, span.start, span.end());
        let Some(raw) = span.slice(line) else {
            return Err(Box::new(RecordIssue {
                class: DriftClass::WrongRecordLength,
                reason: format!("the line ends before {}", label()),
                field: Some(field.name.clone()),
                expected: Some(format!("at least {} bytes", span.end())),
                actual: Some(line.len().to_string()),
                position,
            }));
        };
        // Fixed-width text is padded with spaces; the padding is not the value.
        values.push(read_field(field, raw.trim_ascii(), position, label)?);
    }
    Ok(())
}

/// One trailer check while the file is read.
struct Running<'c> {
    check: &'c ControlCheck,
    /// `None` once the total overflowed.
    total: Option<i128>,
    /// Records whose value (or filter field) could not be read.
    left_out: u64,
}

impl Running<'_> {
    /// Adds one data record: from its values if it parsed, else from its raw bytes.
    fn add(&mut self, category: &Category, line: &[u8], parsed: Option<&[FieldValue<'_>]>) {
        let text = |index: usize| -> Option<&str> {
            match parsed {
                Some(values) => match values[index] {
                    FieldValue::Str(s) => Some(s.trim()),
                    FieldValue::Null => Some(""),
                    _ => None,
                },
                None => raw_text(line, category.fields[index].span),
            }
        };
        let number = |index: usize| -> Option<i128> {
            match parsed {
                Some(values) => Some(values[index].as_unscaled().unwrap_or(0)),
                None => {
                    let t = raw_text(line, category.fields[index].span)?;
                    if t.is_empty() {
                        return Some(0);
                    }
                    let field = &category.fields[index];
                    let value = if field.implied {
                        field.ty.parse_implied(t)
                    } else {
                        field.ty.parse(t)
                    };
                    value.ok()?.as_unscaled()
                }
            }
        };
        if let Some(filter) = &self.check.filter {
            match text(filter.field) {
                Some(t) if t == filter.equals => {}
                Some(_) => return,
                None => {
                    self.left_out += 1;
                    return;
                }
            }
        }
        let delta = match &self.check.measure {
            Measure::Count => Some(1),
            Measure::Sum { field, .. } => number(*field),
            Measure::Net {
                field,
                sign,
                plus,
                minus,
                ..
            } => match text(*sign) {
                Some(s) if s == plus => number(*field),
                Some(s) if s == minus => number(*field).map(|n| -n),
                Some(_) => Some(0),
                None => None,
            },
        };
        match delta {
            Some(d) => self.total = self.total.and_then(|t| t.checked_add(d)),
            None => self.left_out += 1,
        }
    }
}

/// A span's text, trimmed, if the line holds it as UTF-8.
fn raw_text(line: &[u8], span: Option<Span>) -> Option<&str> {
    std::str::from_utf8(span?.slice(line)?).ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Catalog;

    fn transactions() -> Category {
        Catalog::builtin()
            .unwrap()
            .categories()
            .iter()
            .find(|c| c.name == "card.transactions")
            .unwrap()
            .clone()
    }

    /// A 160-byte line: `parts` are (1-based start, text).
    fn line(parts: &[(usize, &str)]) -> String {
        let mut bytes = vec![b' '; 160];
        for (start, text) in parts {
            bytes[start - 1..start - 1 + text.len()].copy_from_slice(text.as_bytes());
        }
        String::from_utf8(bytes).unwrap()
    }

    fn detail(account: &str, flag: &str, cents: u64) -> String {
        line(&[
            (1, "D"),
            (2, account),
            (22, "4111111111111111"),
            (41, &format!("T{account}{cents}")),
            (57, "0101"),
            (61, flag),
            (62, &format!("{cents:012}")),
            (74, "USD"),
            (77, "20261014"),
            (85, "20261015"),
            (93, "5411"),
            (97, "GROCER"),
            (122, "A1B2C3"),
            (128, "VISA"),
        ])
    }

    fn trailer(count: u64, debits: (u64, u64), credits: (u64, u64), net: i64) -> String {
        let sign = if net < 0 { "-" } else { "+" };
        line(&[
            (1, "T"),
            (2, &format!("{count:09}")),
            (11, &format!("{:09}", debits.0)),
            (20, &format!("{:015}", debits.1)),
            (35, &format!("{:09}", credits.0)),
            (44, &format!("{:015}", credits.1)),
            (59, &format!("{sign}{:015}", net.unsigned_abs())),
        ])
    }

    type Collected = (Vec<(Position, Vec<String>)>, Vec<RecordIssue>);

    fn parse(text: &str) -> (Result<ParseSummary, FileDrift>, Collected) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let result = parse_fixed(text.as_bytes(), &transactions(), |r| {
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
        crate::formats::assert_reconcile_agrees(text.as_bytes(), &transactions(), &result);
        (result, (ok, bad))
    }

    fn header() -> String {
        line(&[(1, "H"), (2, "20261015"), (10, "01"), (12, "ACME BANK")])
    }

    #[test]
    fn detail_records_parse_and_the_trailer_reconciles() {
        let text = [
            header(),
            detail("ACC1", "D", 12_345),
            detail("ACC2", "C", 5_000),
            detail("ACC1", "D", 1),
            trailer(3, (2, 12_346), (1, 5_000), 7_346),
        ]
        .join("\n")
            + "\n";
        let (result, (ok, bad)) = parse(&text);
        let summary = result.unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!((summary.records, summary.parsed), (3, 3));
        assert_eq!(ok[0].0.line, 2);
        assert_eq!(ok[0].0.byte_offset, 161);
        assert_eq!(ok[0].1[0], "Str(\"ACC1\")");
        // Implied decimals: 000000012345 is 123.45.
        assert_eq!(ok[0].1[5], "Decimal(12345)");
        assert_eq!(ok[0].1[8], "Date(20741)");
        let trailer = summary.trailer.unwrap();
        assert_eq!(trailer.line, 5);
        let totals: Vec<String> = trailer
            .sums
            .iter()
            .map(|t| format!("{}={t}", t.field))
            .collect();
        assert_eq!(
            totals,
            [
                "detail_count=3",
                "debit_count=2",
                "debit_amount=123.46",
                "credit_count=1",
                "credit_amount=50.00",
                "net_amount=73.46"
            ]
        );
    }

    #[test]
    fn a_wrong_net_or_count_is_a_trailer_mismatch_naming_the_check() {
        let body = [header(), detail("ACC1", "D", 100), detail("ACC2", "C", 300)];
        let with = |t: String| {
            let mut lines = body.to_vec();
            lines.push(t);
            lines.join("\n")
        };
        let drift = parse(&with(trailer(2, (1, 100), (1, 300), 200)))
            .0
            .unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.field.as_deref(), Some("net_amount"));
        assert_eq!(drift.expected.as_deref(), Some("2.00"));
        assert_eq!(drift.actual.as_deref(), Some("-2.00"));
        let drift = parse(&with(trailer(3, (1, 100), (1, 300), -200)))
            .0
            .unwrap_err();
        assert_eq!(drift.field.as_deref(), Some("detail_count"));
        assert_eq!(drift.records, 2);
        // The trailer is required.
        let drift = parse(&body.join("\n")).0.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        // A data record after it.
        let mut lines = body.to_vec();
        lines.insert(1, trailer(2, (1, 100), (1, 300), -200));
        assert!(
            parse(&lines.join("\n"))
                .0
                .unwrap_err()
                .reason
                .contains("follow the trailer")
        );
    }

    #[test]
    fn a_short_line_is_wrong_record_length_and_still_counted() {
        let short = detail("ACC3", "D", 700)[..150].to_string();
        let text = [
            header(),
            detail("ACC1", "D", 100),
            short,
            detail("ACC2", "X", 5),
            trailer(3, (2, 800), (0, 0), 800),
        ]
        .join("\r\n");
        let (result, (ok, bad)) = parse(&text);
        // The short line's amount is still readable by position, so the sender's totals
        // (which include it) reconcile; the bad flag's record is in no debit or credit.
        let summary = result.unwrap();
        assert_eq!((summary.records, summary.parsed, summary.issues), (3, 1, 2));
        assert_eq!(ok.len(), 1);
        assert_eq!(bad[0].class, DriftClass::WrongRecordLength);
        assert_eq!(bad[0].position.line, 3);
        assert_eq!(bad[1].class, DriftClass::OutOfDomain);
        assert_eq!(bad[1].field.as_deref(), Some("DebitCredit"));
    }

    #[test]
    fn a_file_must_start_with_its_header_and_unknown_types_are_reported() {
        let drift = parse(&detail("ACC1", "D", 1)).0.unwrap_err();
        assert_eq!(drift.class, DriftClass::Malformed);
        let odd = line(&[(1, "X"), (2, "ACC9")]);
        let text = [header(), odd, trailer(1, (0, 0), (0, 0), 0)].join("\n");
        let (result, (_, bad)) = parse(&text);
        assert_eq!(result.unwrap().issues, 1);
        assert_eq!(bad[0].class, DriftClass::Malformed);
        assert!(
            bad[0].reason.contains("record type \"X\""),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn card_numbers_leave_the_parser_tokenised() {
        let text = [
            header(),
            detail("ACC1", "D", 100),
            trailer(1, (1, 100), (0, 0), 100),
        ]
        .join("\n");
        let tokeniser = crate::tokenise::Tokeniser::for_tests();
        let mut seen = Vec::new();
        crate::formats::parse(text.as_bytes(), &transactions(), &tokeniser, |r| {
            let rec = r.unwrap();
            seen.push(format!("{:?}", rec.values));
            assert!(matches!(rec.values[1], FieldValue::Pan(_)));
            Ok::<(), ()>(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].contains("4111111111111111"), "{}", seen[0]);
        assert!(seen[0].contains("411111******1111"));
    }
}
