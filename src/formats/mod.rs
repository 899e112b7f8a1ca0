//! File layouts and the parsers that read them.
//!
//! A [`Category`] is declared in `topologies/*.toml`: how to recognise its files, their
//! format, and the layout of their records. Parsers turn bytes into typed field values
//! without allocating per field, and report what they could not read as [`RecordIssue`]s
//! (one record) or a [`FileDrift`] (the whole file), each with a drift class and where.
//! A layout may also declare value domains, a trailer with control totals and how much one
//! bad record holds back ([`BadRecordPolicy`]).
//!
//! Architecture Invariant: formats knows nothing of Kafka, Avro or the registry; it turns
//! bytes into values and says what is wrong with them. It never drops a record silently:
//! every data record is either handed on or reported.

mod csv;
mod fixed;
mod layout;
mod mask;
pub mod metro2;
mod value;

pub use self::csv::parse_csv;
pub use layout::format_decimal;
pub use layout::{
    AccountRole, BadRecordPolicy, Catalog, Category, ControlCheck, Domain, FieldSpec, FieldType,
    Filter, FormatSpec, Identity, IdentitySpec, LayoutError, Measure, PostingRole, Span,
    TrailerSpec, TrailerSum,
};
pub use mask::mask_card_numbers;
pub(crate) use value::epoch_date;
pub use value::{FieldValue, ParsedRecord, Position};

use crate::tokenise::Tokeniser;

/// Parses a file per `category`, in its format, calling `on_record` with each data record
/// or its issue, in file order. Card-number (`pan`) fields are tokenised here, before the
/// record is handed on: callers never see the clear digits. The outer `Result` is the
/// callback's own error, which stops the parse; the inner one is a drift that holds the
/// whole file. See [`parse_csv`] for when a drift is found (header first, trailer last).
pub fn parse<E>(
    bytes: &[u8],
    category: &Category,
    tokeniser: &Tokeniser,
    mut on_record: impl FnMut(Result<ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<ParseSummary, FileDrift>, E> {
    let pans: Vec<usize> = category
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.ty.is_tokenised())
        .map(|(i, _)| i)
        .collect();
    // Records whose card number the tokeniser refused after the parser accepted it.
    let mut refused = 0u64;
    let mut spare: Vec<FieldValue<'static>> = Vec::with_capacity(category.fields.len());
    let mut handle = |outcome: Result<ParsedRecord<'_, '_>, RecordIssue>| -> Result<(), E> {
        let rec = match outcome {
            Ok(rec) if !pans.is_empty() => rec,
            other => return on_record(other),
        };
        let mut values = value::recycle(std::mem::take(&mut spare));
        values.extend_from_slice(rec.values);
        for &i in &pans {
            if let FieldValue::Str(text) = values[i] {
                let field = &category.fields[i];
                let token = match field.ty {
                    FieldType::Pan => tokeniser.tokenise(text),
                    _ => tokeniser.tokenise_account(text),
                };
                match token {
                    Ok(token) => values[i] = FieldValue::Pan(token),
                    Err(e) => {
                        refused += 1;
                        return on_record(Err(RecordIssue {
                            class: DriftClass::TypeMismatch,
                            reason: format!("{} cannot be tokenised: {e}", field.name),
                            field: Some(field.name.clone()),
                            expected: Some(field.ty.describe()),
                            actual: Some(mask_card_numbers(text)),
                            position: rec.position,
                        }));
                    }
                }
            }
        }
        let result = on_record(Ok(ParsedRecord {
            position: rec.position,
            values: &values,
        }));
        spare = value::recycle(values);
        result
    };
    let parsed = match &category.format {
        FormatSpec::Csv { .. } => parse_csv(bytes, category, &mut handle)?,
        FormatSpec::FixedWidth { .. } => fixed::parse_fixed(bytes, category, &mut handle)?,
        FormatSpec::Metro2 => metro2::parse_metro2_records(bytes, category, &mut handle)?,
    };
    Ok(parsed.map(|mut summary| {
        summary.parsed -= refused;
        summary.issues += refused;
        summary
    }))
}

/// How a format parser reads a file.
pub(crate) enum Pass<'p> {
    /// Every record typed and handed on.
    Typed,
    /// The file's structure and its trailer only; `on_offset` hears where each data
    /// record starts. See [`reconcile`].
    Reconcile(&'p mut dyn FnMut(u64)),
}

impl Pass<'_> {
    /// `false` (after telling `on_offset`) when records are not to be typed.
    fn types_record_at(&mut self, byte_offset: u64) -> bool {
        match self {
            Pass::Typed => true,
            Pass::Reconcile(on_offset) => {
                on_offset(byte_offset);
                false
            }
        }
    }
}

/// Reads a file for what can hold it whole: its structure (header, framing, record types)
/// and its trailer's reconciliation. A record's fields are read only where a trailer sums
/// or filters them; nothing is tokenised or handed on. This is the validation pass of a
/// layout whose bad records are quarantined one by one (`bad_records = "record"`): no
/// single record can hold such a file, so typing every field twice would be waste.
///
/// It finds exactly the drift [`parse`] finds. `on_offset` hears where each data record
/// starts (to release the bytes behind). In the summary, `records` counts data records;
/// `parsed` and `issues` stay 0.
pub fn reconcile(
    bytes: &[u8],
    category: &Category,
    mut on_offset: impl FnMut(u64),
) -> Result<ParseSummary, FileDrift> {
    let pass = Pass::Reconcile(&mut on_offset);
    let never =
        |_: Result<ParsedRecord<'_, '_>, RecordIssue>| -> Result<(), std::convert::Infallible> {
            unreachable!("a reconciling pass hands no record on")
        };
    let parsed = match &category.format {
        FormatSpec::Csv { .. } => csv::parse_csv_pass(bytes, category, pass, never),
        FormatSpec::FixedWidth { .. } => fixed::parse_fixed_pass(bytes, category, pass, never),
        FormatSpec::Metro2 => metro2::parse_metro2_pass(bytes, category, pass, never),
    };
    match parsed {
        Ok(result) => result,
        Err(never) => match never {},
    }
}

/// Test support: [`reconcile`] must find what a full parse found, the same drift or the
/// same records and trailer, and hear every data record's offset once, in order.
#[cfg(test)]
pub(crate) fn assert_reconcile_agrees(
    bytes: &[u8],
    category: &Category,
    parsed: &Result<ParseSummary, FileDrift>,
) {
    let mut offsets: Vec<u64> = Vec::new();
    let reconciled = reconcile(bytes, category, |o| offsets.push(o));
    assert!(offsets.is_sorted(), "offsets out of order: {offsets:?}");
    match (parsed, &reconciled) {
        (Err(full), Err(quick)) => assert_eq!(full, quick),
        (Ok(full), Ok(quick)) => {
            assert_eq!(full.records, quick.records);
            assert_eq!(full.trailer, quick.trailer);
            assert_eq!(offsets.len() as u64, full.records);
        }
        (full, quick) => panic!("a full parse found {full:?}, reconcile {quick:?}"),
    }
}

/// Hands one data record on: its values if it parsed, else its issue, counting either in
/// `summary`. Every parser ends a record here.
fn hand_on<E>(
    summary: &mut ParseSummary,
    outcome: Result<(), RecordIssue>,
    position: Position,
    values: &[FieldValue<'_>],
    on_record: &mut impl FnMut(Result<ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<(), E> {
    match outcome {
        Ok(()) => {
            summary.parsed += 1;
            on_record(Ok(ParsedRecord { position, values }))
        }
        Err(issue) => {
            summary.issues += 1;
            on_record(Err(issue))
        }
    }
}

/// Drift classes: the machine-readable reason something was quarantined.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriftClass {
    /// The header lacks a column the layout requires.
    MissingColumn,
    /// The header has a column the layout does not know.
    ExtraColumn,
    /// Columns were renamed: as many unknown as missing.
    RenamedColumn,
    /// The expected columns are all there, in another order.
    ReorderedColumns,
    /// A record has more or fewer fields than its header.
    WrongFieldCount,
    /// A fixed-width record is longer or shorter than its layout.
    WrongRecordLength,
    /// A value does not parse as its declared type.
    TypeMismatch,
    /// A value parses but lies outside the field's declared domain.
    OutOfDomain,
    /// A required value is empty.
    MissingValue,
    /// The bytes are not valid in the file's encoding.
    Encoding,
    /// The trailer's control totals do not match the records, or the trailer is missing,
    /// unreadable or not last.
    TrailerMismatch,
    /// The file has no header or no structure at all.
    Malformed,
    /// No category matches the file.
    UnknownCategory,
    /// A value the parser accepted is rejected by the Avro schema.
    SchemaViolation,
}

impl DriftClass {
    /// The class as written in quarantine records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::MissingColumn => "MISSING_COLUMN",
            DriftClass::ExtraColumn => "EXTRA_COLUMN",
            DriftClass::RenamedColumn => "RENAMED_COLUMN",
            DriftClass::ReorderedColumns => "REORDERED_COLUMNS",
            DriftClass::WrongFieldCount => "WRONG_FIELD_COUNT",
            DriftClass::WrongRecordLength => "WRONG_RECORD_LENGTH",
            DriftClass::TypeMismatch => "TYPE_MISMATCH",
            DriftClass::OutOfDomain => "OUT_OF_DOMAIN",
            DriftClass::MissingValue => "MISSING_VALUE",
            DriftClass::Encoding => "ENCODING",
            DriftClass::TrailerMismatch => "TRAILER_MISMATCH",
            DriftClass::Malformed => "MALFORMED",
            DriftClass::UnknownCategory => "UNKNOWN_CATEGORY",
            DriftClass::SchemaViolation => "SCHEMA_VIOLATION",
        }
    }
}

impl std::fmt::Display for DriftClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a whole file cannot be parsed with its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDrift {
    pub class: DriftClass,
    pub reason: String,
    pub field: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// Data records the file holds (all of which are held with it). A `TRAILER_MISMATCH`
    /// is found at the end, after they were handed on: see [`parse_csv`].
    pub records: u64,
}

/// Why one record cannot be handed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordIssue {
    pub class: DriftClass,
    pub reason: String,
    pub field: Option<String>,
    pub expected: Option<String>,
    /// The offending value, masked.
    pub actual: Option<String>,
    pub position: Position,
}

/// Counts of one parse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Data records seen (header and trailer excluded).
    pub records: u64,
    /// Records handed on as parsed.
    pub parsed: u64,
    /// Records reported as issues.
    pub issues: u64,
    /// The trailer's reconciliation, when the file had a trailer and it matched. A trailer
    /// that does not match is a [`FileDrift`] instead.
    pub trailer: Option<TrailerCheck>,
}

/// A trailer that reconciled: every value it states equals what was computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailerCheck {
    /// 1-based line of the trailer row.
    pub line: u64,
    /// Data records, as stated and counted.
    pub records: u64,
    /// Control totals, as stated and summed, in layout order of `[[trailer.sum]]`.
    pub sums: Vec<ControlTotal>,
}

/// One control total: the exact sum of a numeric field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlTotal {
    pub field: String,
    /// The sum as an unscaled integer at `scale`.
    pub unscaled: i128,
    pub scale: u32,
}

impl std::fmt::Display for ControlTotal {
    /// The total as a decimal, e.g. `1234.50`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&layout::format_decimal(self.unscaled, self.scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{Metro2Fault, Metro2Spec, Month, write_metro2};

    /// Metro 2 files, clean and with a trailer that does not count right: the quick pass
    /// agrees with the full parse on both (the CSV and fixed-width tests check every file
    /// they parse the same way).
    #[test]
    fn reconcile_finds_what_a_full_parse_of_metro2_finds() {
        let catalog = Catalog::builtin().unwrap();
        let category = catalog
            .categories()
            .iter()
            .find(|c| c.format == FormatSpec::Metro2)
            .unwrap();
        let tokeniser = Tokeniser::for_tests();
        for fault in [None, Some(Metro2Fault::TotalBaseRecords)] {
            let mut spec = Metro2Spec::new(Month::new(2026, 10).unwrap(), 3, 200);
            spec.fault = fault;
            let mut bytes = Vec::new();
            write_metro2(&mut bytes, &spec, |_| {}).unwrap();
            let parsed = parse(&bytes, category, &tokeniser, |_| Ok::<(), ()>(())).unwrap();
            assert_eq!(parsed.is_err(), fault.is_some(), "{parsed:?}");
            assert_reconcile_agrees(&bytes, category, &parsed);
        }
    }

    #[test]
    fn drift_classes_are_written_as_their_labels() {
        for (class, label) in [
            (DriftClass::TypeMismatch, "TYPE_MISMATCH"),
            (DriftClass::OutOfDomain, "OUT_OF_DOMAIN"),
            (DriftClass::TrailerMismatch, "TRAILER_MISMATCH"),
            (DriftClass::WrongFieldCount, "WRONG_FIELD_COUNT"),
        ] {
            assert_eq!(class.as_str(), label);
            assert_eq!(class.to_string(), label);
            // Serde writes the same label, and reads it back.
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{label}\""));
            assert_eq!(serde_json::from_str::<DriftClass>(&json).unwrap(), class);
        }
        assert!(serde_json::from_str::<DriftClass>("\"BAD_VALUE\"").is_err());
    }
}
