//! Typed values of one parsed record, borrowed from the file's bytes.

/// One field's value. Text borrows from the input; numbers are parsed in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// An empty optional field.
    Null,
    Str(&'a str),
    Int(i32),
    Long(i64),
    /// An exact decimal: the unscaled integer; the scale is the field's.
    Decimal(i128),
    /// Days since 1970-01-01 (Avro `date`).
    Date(i32),
    /// A card number, tokenised: the clear digits never leave the parser.
    Pan(crate::tokenise::PanToken),
}

impl FieldValue<'_> {
    /// The value as JSON, for a field of type `ty`: decimals and dates as text (exact),
    /// a card number as its token and display form.
    pub fn to_json(&self, ty: &super::FieldType) -> serde_json::Value {
        use serde_json::{Value, json};
        match *self {
            FieldValue::Null => Value::Null,
            FieldValue::Str(s) => Value::String(s.to_string()),
            FieldValue::Int(i) => json!(i),
            FieldValue::Long(l) => json!(l),
            FieldValue::Decimal(unscaled) => {
                let scale = ty.numeric_scale().unwrap_or(0);
                Value::String(super::layout::format_decimal(unscaled, scale))
            }
            FieldValue::Pan(token) => json!({"token": token.token(), "display": token.display()}),
            FieldValue::Date(days) => epoch_date(days).map_or(Value::Null, |d| {
                Value::String(d.format("%Y-%m-%d").to_string())
            }),
        }
    }

    /// Appends the JSON text of [`Self::to_json`]'s value to `out`, byte for byte what
    /// serde_json writes for it, without building the value: the views keep every field
    /// of every account record, so this runs per field of every record.
    pub fn write_json(&self, ty: &super::FieldType, out: &mut Vec<u8>) {
        use std::io::Write as _;
        match *self {
            FieldValue::Null => out.extend_from_slice(b"null"),
            FieldValue::Str(s) => {
                serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
            }
            FieldValue::Int(i) => write!(out, "{i}").expect("writing to a Vec"),
            FieldValue::Long(l) => write!(out, "{l}").expect("writing to a Vec"),
            FieldValue::Decimal(unscaled) => {
                let scale = ty.numeric_scale().unwrap_or(0);
                out.push(b'"');
                super::layout::write_decimal(unscaled, scale, out);
                out.push(b'"');
            }
            FieldValue::Pan(token) => {
                // serde_json orders an object's keys: display before token.
                let mut hex = [0u8; 64];
                token.write_token(&mut hex);
                out.extend_from_slice(b"{\"display\":");
                serde_json::to_writer(&mut *out, token.display()).expect("writing to a Vec");
                out.extend_from_slice(b",\"token\":\"");
                out.extend_from_slice(&hex);
                out.extend_from_slice(b"\"}");
            }
            FieldValue::Date(days) => match epoch_date(days) {
                None => out.extend_from_slice(b"null"),
                Some(d) => {
                    use chrono::Datelike as _;
                    if (0..=9999).contains(&d.year()) {
                        write!(out, "\"{:04}-{:02}-{:02}\"", d.year(), d.month(), d.day())
                    } else {
                        write!(out, "\"{}\"", d.format("%Y-%m-%d"))
                    }
                    .expect("writing to a Vec");
                }
            },
        }
    }

    /// An int, long or decimal as an unscaled integer (at the field's scale); `None` for
    /// other values. Sums and bounds compare on this, so decimals stay exact.
    pub fn as_unscaled(&self) -> Option<i128> {
        match *self {
            FieldValue::Int(i) => Some(i128::from(i)),
            FieldValue::Long(l) => Some(i128::from(l)),
            FieldValue::Decimal(d) => Some(d),
            FieldValue::Null | FieldValue::Str(_) | FieldValue::Date(_) | FieldValue::Pan(_) => {
                None
            }
        }
    }
}

/// The number written in `raw`'s ASCII digits (short runs: no overflow check), or `None`
/// if any byte is not a digit.
pub(super) fn ascii_number(raw: &[u8]) -> Option<u32> {
    raw.iter().try_fold(0u32, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// Days since 1970-01-01 of `date`: a [`FieldValue::Date`].
pub(super) fn epoch_days(date: chrono::NaiveDate) -> i32 {
    use chrono::Datelike as _;
    // 719 163: days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
    date.num_days_from_ce() - 719_163
}

/// The date `days` after 1970-01-01, if the calendar has it: the inverse of [`epoch_days`].
pub(crate) fn epoch_date(days: i32) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::default().checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
}

/// Where a record sits in its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 0-based index among the file's data records.
    pub record_index: u64,
    /// 1-based line number.
    pub line: u64,
    /// Offset of the record's first byte.
    pub byte_offset: u64,
}

/// A record whose every field parsed, in layout order.
#[derive(Debug)]
pub struct ParsedRecord<'r, 'a> {
    pub position: Position,
    pub values: &'r [FieldValue<'a>],
}

/// Reads one field's raw bytes as its declared type: UTF-8, empty → null (or
/// `MISSING_VALUE` when required), the type's parse (implied decimals where declared),
/// then its domain. `label` names the field's place in messages ("column X", "field X at
/// bytes 2-21") and is only called for an issue. A card number stays text here; the
/// format's caller tokenises it before the record leaves the parser.
pub(super) fn read_field<'r>(
    field: &super::FieldSpec,
    raw: &'r [u8],
    position: Position,
    label: impl Fn() -> String,
) -> Result<FieldValue<'r>, Box<super::RecordIssue>> {
    use super::{DriftClass, RecordIssue, mask_card_numbers};
    let issue = |class, reason: String, expected: Option<String>, actual: Option<String>| {
        Box::new(RecordIssue {
            class,
            reason,
            field: Some(field.name.clone()),
            expected,
            actual,
            position,
        })
    };
    let text = std::str::from_utf8(raw).map_err(|e| {
        issue(
            DriftClass::Encoding,
            format!("{} is not valid UTF-8: {e}", label()),
            Some("UTF-8 text".into()),
            Some(mask_card_numbers(&String::from_utf8_lossy(raw))),
        )
    })?;
    let trimmed = trim(text);
    if trimmed.is_empty() {
        if field.required {
            return Err(issue(
                DriftClass::MissingValue,
                format!("required {} is empty", label()),
                Some(field.ty.describe()),
                Some(String::new()),
            ));
        }
        return Ok(FieldValue::Null);
    }
    let parsed = if field.implied {
        field.ty.parse_implied(text)
    } else {
        field.ty.parse_trimmed(text, trimmed)
    };
    let value = parsed.map_err(|expected| {
        issue(
            DriftClass::TypeMismatch,
            format!("{} is not {expected}", label()),
            Some(expected),
            Some(mask_card_numbers(text)),
        )
    })?;
    if let Err(expected) = field.domain.check(&value) {
        return Err(issue(
            DriftClass::OutOfDomain,
            format!("{} is not {expected}", label()),
            Some(expected.to_string()),
            Some(mask_card_numbers(text)),
        ));
    }
    Ok(value)
}

/// `text.trim()`, answered at once for the usual value that starts and ends with a
/// printable ASCII character (nothing to trim); `str::trim` decodes characters at both
/// ends, a cost per field of every record.
pub(super) fn trim(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// Reuses a vector's allocation for values of another lifetime. The vector is emptied
/// first, so no value outlives its borrow; `collect` on an empty `into_iter` of the same
/// element size keeps the allocation.
pub(super) fn recycle<'a>(mut v: Vec<FieldValue<'_>>) -> Vec<FieldValue<'a>> {
    v.clear();
    v.into_iter().map(|_| FieldValue::Null).collect()
}

#[cfg(test)]
mod tests {
    use super::super::FieldType;
    use super::{FieldValue, trim};

    /// `write_json` writes exactly serde_json's text of `to_json`, for every kind of value.
    #[test]
    fn json_text_is_serde_jsons() {
        let tokeniser = crate::tokenise::Tokeniser::for_tests();
        let date = FieldType::Date {
            format: "%Y-%m-%d".into(),
        };
        let cases = [
            (FieldValue::Null, FieldType::String),
            (FieldValue::Str("plain"), FieldType::String),
            (FieldValue::Str(" padded "), FieldType::String),
            (
                FieldValue::Str("q\"uo\\te\n\u{1}é\u{2028}"),
                FieldType::String,
            ),
            (FieldValue::Int(-42), FieldType::Int),
            (FieldValue::Long(i64::MIN), FieldType::Long),
            (
                FieldValue::Decimal(-123_456),
                FieldType::Decimal { scale: 2 },
            ),
            (FieldValue::Decimal(7), FieldType::Decimal { scale: 3 }),
            (FieldValue::Decimal(0), FieldType::Decimal { scale: 0 }),
            (
                FieldValue::Decimal(i128::MAX),
                FieldType::Decimal { scale: 18 },
            ),
            (FieldValue::Date(0), date.clone()),
            (FieldValue::Date(20_757), date.clone()),
            (FieldValue::Date(-719_528), date.clone()),
            (FieldValue::Date(3_000_000), date.clone()),
            (FieldValue::Date(i32::MAX), date.clone()),
            (
                FieldValue::Pan(tokeniser.tokenise("4111 1111 1111 1111").unwrap()),
                FieldType::Pan,
            ),
        ];
        for (value, ty) in cases {
            let mut ours = Vec::new();
            value.write_json(&ty, &mut ours);
            let theirs = serde_json::to_vec(&value.to_json(&ty)).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn trim_is_str_trim() {
        for text in [
            "",
            " ",
            "a",
            " a",
            "a ",
            " a ",
            "\ta\n",
            "ab c",
            "\u{a0}x\u{a0}",
            "x\u{3000}",
            "é",
            " é ",
            "1234.50",
            "\u{85}7",
        ] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }
}
