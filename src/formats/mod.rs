//! File layouts and the parsers that read them.
//!
//! A [`Category`] is declared in `topologies/*.toml`: how to recognise its files, their
//! format, and the layout of their records. Parsers turn bytes into typed field values
//! without allocating per field, and report what they could not read as [`RecordIssue`]s
//! (one record) or a [`FileDrift`] (the whole file), each with a drift class and where.
//!
//! Architecture Invariant: formats knows nothing of Kafka, Avro or the registry; it turns
//! bytes into values and says what is wrong with them. It never drops a record silently:
//! every data record is either handed on or reported.

mod csv;
mod layout;
mod mask;
mod value;

pub use self::csv::parse_csv;
pub use layout::{Catalog, Category, FieldSpec, FieldType, FormatSpec, LayoutError};
pub use mask::mask_card_numbers;
pub use value::{FieldValue, ParsedRecord, Position};

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
    /// A value does not parse as its declared type.
    BadValue,
    /// A required value is empty.
    MissingValue,
    /// The bytes are not valid in the file's encoding.
    Encoding,
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
            DriftClass::BadValue => "BAD_VALUE",
            DriftClass::MissingValue => "MISSING_VALUE",
            DriftClass::Encoding => "ENCODING",
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
    /// Data records the file holds (all of which are held with it).
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Data records seen (header excluded).
    pub records: u64,
    /// Records handed on as parsed.
    pub parsed: u64,
    /// Records reported as issues.
    pub issues: u64,
}
