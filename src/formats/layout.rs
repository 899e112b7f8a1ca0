//! Declarative file categories, read from `topologies/*.toml`.
//!
//! Adding a category or changing a layout is a data change: a new or edited TOML file.
//! A mistake in one is reported with the file and, where the TOML parser knows it, the line.
//!
//! Architecture Invariant: a layout only describes; it decides nothing at run time. Domains,
//! the trailer and the quarantine policy are checked here for consistency, and applied by the
//! parsers (domains, trailer) and the processor (policy).

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use toml::Spanned;

use super::value::FieldValue;

/// The categories built into the binary: the repository's `topologies/`.
const BUILTIN: &[(&str, &str)] = &[
    (
        "card_accounts.toml",
        include_str!("../../topologies/card_accounts.toml"),
    ),
    (
        "card_transactions.toml",
        include_str!("../../topologies/card_transactions.toml"),
    ),
    (
        "metro2_base.toml",
        include_str!("../../topologies/metro2_base.toml"),
    ),
];

/// A mistake in a category file.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read topology directory {dir}: {source}")]
    Read {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// All known categories.
#[derive(Clone, Debug)]
pub struct Catalog {
    categories: Vec<Category>,
}

/// One file category: how to recognise its files and read their records.
#[derive(Clone, Debug)]
pub struct Category {
    /// Category name, e.g. `card.accounts`.
    pub name: String,
    pub description: String,
    /// Output topic name, without the configured prefix.
    pub output_topic: String,
    /// File name of the output Avro contract in `avro/`.
    pub schema: String,
    /// Recorded in every record's provenance; bump on any layout change.
    pub layout_version: u32,
    pub format: FormatSpec,
    /// Fields in the order records are emitted.
    pub fields: Vec<FieldSpec>,
    /// The trailer row and its control totals, if the files have one.
    pub trailer: Option<TrailerSpec>,
    /// What one bad record holds: itself, or the whole file.
    pub bad_records: BadRecordPolicy,
    /// How a file's logical identity (period, sequence) is read from its name, if the
    /// category's files can be corrected by a later file.
    pub identity: Option<IdentitySpec>,
    /// The records are account states: the account-state view and the month-end balances.
    pub account: Option<AccountRole>,
    /// The records are postings to accounts: the roll-forward's movements.
    pub postings: Option<PostingRole>,
    matcher: GlobMatcher,
    pattern: String,
}

/// How a category's files are encoded.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FormatSpec {
    /// Delimited text with a header row naming the columns.
    Csv {
        /// Field delimiter, one ASCII character.
        #[serde(default = "default_delimiter")]
        delimiter: char,
    },
    /// Fixed-width lines, each starting with a record type: an optional header, detail
    /// records and (with `[trailer]`) a trailer whose type is the trailer's `marker`.
    FixedWidth {
        /// Where the record type sits.
        record_type: Span,
        /// Type of the header record, if files have one (it must then be the first line).
        #[serde(default)]
        header: Option<String>,
        /// Type of the data records.
        detail: String,
        /// Length of every detail line in bytes, line break excluded; a line of another
        /// length is `WRONG_RECORD_LENGTH`.
        #[serde(default)]
        record_length: Option<usize>,
    },
    /// Metro 2 character format: framing, segments and trailer counts are the format's;
    /// the layout picks base-segment fields by name (`column`).
    Metro2,
}

/// Bytes `start..start + length` of a fixed-width record, 1-based as record layouts
/// print them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub start: usize,
    pub length: usize,
}

impl Span {
    /// The span's bytes of `line`, or `None` if the line is too short.
    pub fn slice<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        line.get(self.start - 1..self.end())
    }

    /// One past the last byte, 1-based: the line length the span needs.
    pub fn end(&self) -> usize {
        self.start - 1 + self.length
    }
}

/// How a file's logical identity is read from its name: the regular expression's named
/// groups `period` (required) and `sequence` (optional).
#[derive(Clone, Debug)]
pub struct IdentitySpec {
    pattern: regex::Regex,
}

/// A file's logical identity within its client and category: files with the same one are
/// versions of each other.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// The reporting period as the file name writes it, e.g. `2026-10` or `2026-10-15`.
    pub period: String,
    /// Cycle or sequence within the period; empty when the name has none.
    pub sequence: String,
}

impl IdentitySpec {
    /// The identity a file name states, or `None` if the name does not match.
    pub fn identity(&self, file_name: &str) -> Option<Identity> {
        let caps = self.pattern.captures(file_name)?;
        Some(Identity {
            period: caps.name("period")?.as_str().to_string(),
            sequence: caps
                .name("sequence")
                .map_or(String::new(), |m| m.as_str().to_string()),
        })
    }

    /// The pattern as declared.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }
}

/// `[account]`: which fields name the account and its balance at the period's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRole {
    /// Index of the account key field (string).
    pub key: usize,
    /// Index of the closing balance field (decimal).
    pub balance: usize,
}

/// `[postings]`: which fields make a posting to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingRole {
    /// Index of the account key field (string), matching an `[account]` key.
    pub account: usize,
    /// Index of the unsigned amount (decimal).
    pub amount: usize,
    /// Index of the date that places the posting in a month.
    pub date: usize,
    /// Index of the debit/credit flag (string).
    pub sign: usize,
    /// Flag of a debit, which raises the balance owed.
    pub debit: String,
    /// Flag of a credit, which lowers it.
    pub credit: String,
}

fn default_delimiter() -> char {
    ','
}

/// What a bad record holds back (`[quarantine] bad_records`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// The bad record is quarantined alone; the others flow.
    #[default]
    Record,
    /// One bad record holds the whole file: all or nothing.
    File,
}

/// The trailer row of a delimited file and the control totals it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailerSpec {
    /// First cell of the trailer row.
    pub marker: String,
    /// 0-based cell holding the count of data records.
    pub count_column: usize,
    /// A file without a trailer is a `TRAILER_MISMATCH`, not a file without totals.
    pub required: bool,
    /// Control totals, each the sum of one numeric field over the data records.
    pub sums: Vec<TrailerSum>,
    /// Fixed-width trailers: the values the trailer record states, by position.
    pub checks: Vec<ControlCheck>,
}

/// One value a fixed-width trailer states and the records must reproduce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlCheck {
    /// Name in reports and mismatch reasons, e.g. `debit_amount`.
    pub name: String,
    /// Where the trailer states it: zero-filled digits, with the field's scale implied
    /// for sums and a leading sign allowed for nets.
    pub span: Span,
    pub measure: Measure,
    /// Only records whose field equals this text count.
    pub filter: Option<Filter>,
}

/// What a control check computes over the data records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Measure {
    /// The number of records.
    Count,
    /// The sum of a numeric field (by index), at its scale.
    Sum { field: usize, scale: u32 },
    /// The sum of a numeric field, added where `sign` is `plus` and subtracted where it is
    /// `minus`.
    Net {
        field: usize,
        scale: u32,
        sign: usize,
        plus: String,
        minus: String,
    },
}

/// Records whose field (by index) equals `equals`, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub field: usize,
    pub equals: String,
}

/// One control total of a trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailerSum {
    /// 0-based cell of the trailer row holding the total.
    pub column: usize,
    /// The field summed; an int, long or decimal field of the layout.
    pub field: String,
}

/// One field of a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// Name of the output (Avro) field.
    pub name: String,
    /// Name of the input column; defaults to `name`.
    pub column: String,
    pub ty: FieldType,
    /// An empty value is a record error rather than a null.
    pub required: bool,
    /// Values the field accepts beyond its type; unconstrained by default.
    pub domain: Domain,
    /// Fixed width: where the field sits in a detail record.
    pub span: Option<Span>,
    /// Fixed width: a decimal written as digits only, its last `scale` digits the
    /// fraction (`000012345` at scale 2 is 123.45); a leading sign is allowed.
    pub implied: bool,
}

/// The values a field accepts beyond its type: `allowed` and `min` / `max`. A value that
/// parses but falls outside is `OUT_OF_DOMAIN`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Domain {
    /// `allowed` of a string field, compared with the trimmed text.
    allowed_text: Vec<String>,
    /// `allowed` of an int or long field, compared as numbers: `01` is `1`.
    allowed_numbers: Vec<i128>,
    /// Bounds as unscaled integers at the field's scale (0 for int and long), so decimals
    /// compare exactly.
    min: Option<i128>,
    max: Option<i128>,
    /// The domain as messages state it: "one of 1, 2" and "between 0 and 999".
    allowed_text_form: String,
    range_text_form: String,
}

impl Domain {
    /// Whether any value of the type is accepted.
    pub fn is_unconstrained(&self) -> bool {
        self.allowed_text.is_empty()
            && self.allowed_numbers.is_empty()
            && self.min.is_none()
            && self.max.is_none()
    }

    /// Checks a parsed value. The error says what was expected.
    pub fn check(&self, value: &FieldValue<'_>) -> Result<(), &str> {
        if let FieldValue::Str(s) = *value {
            return if self.allowed_text.is_empty()
                || self.allowed_text.iter().any(|a| a == super::value::trim(s))
            {
                Ok(())
            } else {
                Err(&self.allowed_text_form)
            };
        }
        let Some(number) = value.as_unscaled() else {
            return Ok(());
        };
        if !self.allowed_numbers.is_empty() && !self.allowed_numbers.contains(&number) {
            return Err(&self.allowed_text_form);
        }
        if self.min.is_some_and(|m| number < m) || self.max.is_some_and(|m| number > m) {
            return Err(&self.range_text_form);
        }
        Ok(())
    }
}

/// Declared field types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Int,
    Long,
    /// Exact decimal with a fixed number of fraction digits.
    Decimal {
        scale: u32,
    },
    /// Calendar date in a strftime `format`, e.g. `%Y-%m-%d`.
    Date {
        format: String,
    },
    /// A card number: 12 to 19 digits. Tokenised by the parser before the record leaves
    /// it; written as `<name>_token` and `<name>_display` fields.
    Pan,
    /// An account number that may be a card number (Metro 2's consumer account number):
    /// tokenised like `pan` whatever its form; a card number gets the same token as under
    /// `pan`, so files join on it.
    AccountNumber,
}

impl FieldType {
    /// Whether values of the type are tokenised in the parser.
    pub fn is_tokenised(&self) -> bool {
        matches!(self, FieldType::Pan | FieldType::AccountNumber)
    }
}

impl FieldType {
    /// The type as a layout file writes it, for messages.
    pub fn describe(&self) -> String {
        match self {
            FieldType::String => "string".into(),
            FieldType::Int => "int".into(),
            FieldType::Long => "long".into(),
            FieldType::Decimal { scale } => format!("decimal(scale {scale})"),
            FieldType::Date { format } => format!("date({format})"),
            FieldType::Pan => "pan".into(),
            FieldType::AccountNumber => "account_number".into(),
        }
    }

    /// The scale of a numeric type's values as unscaled integers; `None` for others.
    pub fn numeric_scale(&self) -> Option<u32> {
        match self {
            FieldType::Int | FieldType::Long => Some(0),
            FieldType::Decimal { scale } => Some(*scale),
            FieldType::String
            | FieldType::Date { .. }
            | FieldType::Pan
            | FieldType::AccountNumber => None,
        }
    }

    /// Parses a non-empty raw value. The error says what was expected.
    pub fn parse<'a>(&self, raw: &'a str) -> Result<FieldValue<'a>, String> {
        self.parse_trimmed(raw, super::value::trim(raw))
    }

    /// [`Self::parse`] of `raw`, whose `trim()` the caller has already taken as `text`:
    /// a string keeps its spaces, every other type reads `text`.
    pub(super) fn parse_trimmed<'a>(
        &self,
        raw: &'a str,
        text: &'a str,
    ) -> Result<FieldValue<'a>, String> {
        match self {
            FieldType::String => Ok(FieldValue::Str(raw)),
            FieldType::Int => text
                .parse::<i32>()
                .map(FieldValue::Int)
                .map_err(|_| "an integer (32-bit)".to_string()),
            FieldType::Long => text
                .parse::<i64>()
                .map(FieldValue::Long)
                .map_err(|_| "an integer (64-bit)".to_string()),
            FieldType::Decimal { scale } => parse_decimal(text, *scale)
                .map(FieldValue::Decimal)
                .ok_or_else(|| format!("a decimal with at most {scale} fraction digits")),
            FieldType::Date { format } => parse_date(text, format)
                .map(FieldValue::Date)
                .ok_or_else(|| format!("a date formatted {format}")),
            FieldType::Pan => {
                let digits = text
                    .bytes()
                    .filter(|b| *b != b' ' && *b != b'-')
                    .try_fold(0usize, |n, b| b.is_ascii_digit().then_some(n + 1));
                match digits {
                    Some(12..=19) => Ok(FieldValue::Str(text)),
                    _ => Err("a card number (12 to 19 digits)".to_string()),
                }
            }
            FieldType::AccountNumber => {
                if text.len() <= crate::tokenise::MAX_ACCOUNT_LEN
                    && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                {
                    Ok(FieldValue::Str(text))
                } else {
                    Err(format!(
                        "an account number (up to {} printable characters)",
                        crate::tokenise::MAX_ACCOUNT_LEN
                    ))
                }
            }
        }
    }

    /// Parses a non-empty raw value of a field whose decimal point is implied: digits
    /// only, with an optional leading sign, the last `scale` of them the fraction.
    pub fn parse_implied<'a>(&self, raw: &'a str) -> Result<FieldValue<'a>, String> {
        let FieldType::Decimal { scale } = self else {
            return self.parse(raw);
        };
        parse_implied(raw.trim(), *scale)
            .map(FieldValue::Decimal)
            .ok_or_else(|| format!("digits with {scale} implied decimals"))
    }
}

/// Parses `[-+]digits` with `scale` implied fraction digits into an unscaled integer.
pub(super) fn parse_implied(s: &str, _scale: u32) -> Option<i128> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i128 = digits.parse().ok()?;
    Some(if negative { -n } else { n })
}

/// Parses `[-+]digits[.digits]` into an unscaled integer with exactly `scale` fraction
/// digits. More fraction digits than `scale` is an error: rounding money silently is not
/// this parser's call.
pub(super) fn parse_decimal(s: &str, scale: u32) -> Option<i128> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if frac_part.len() > scale as usize
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || int_part.len() > 30
    {
        return None;
    }
    // Up to 18 digits fit a u64 without overflow checks, which is every amount a file
    // states in practice; longer ones take the checked i128 path.
    if int_part.len() + scale as usize <= 18 {
        let mut unscaled: u64 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            unscaled = unscaled * 10 + u64::from(b - b'0');
        }
        unscaled *= 10u64.pow(scale - frac_part.len() as u32);
        let unscaled = i128::from(unscaled);
        return Some(if negative { -unscaled } else { unscaled });
    }
    let mut unscaled: i128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        unscaled = unscaled
            .checked_mul(10)?
            .checked_add(i128::from(b - b'0'))?;
    }
    for _ in frac_part.len()..scale as usize {
        unscaled = unscaled.checked_mul(10)?;
    }
    Some(if negative { -unscaled } else { unscaled })
}

/// Days since 1970-01-01 of `text` in the strftime `format`, or `None`. The layouts'
/// formats are read by hand when `text` has exactly their shape ([`hand_read_date`]),
/// which is every value a well-formed file holds; anything else goes to chrono. Both
/// accept the same values: chrono reads such a text field by field too, and the date must
/// exist either way.
pub(super) fn parse_date(text: &str, format: &str) -> Option<i32> {
    let date = hand_read_date(text.as_bytes(), format)
        .or_else(|| chrono::NaiveDate::parse_from_str(text, format).ok())?;
    Some(super::value::epoch_days(date))
}

/// The date in `b` when it has exactly the shape of one of the layouts' formats
/// (`%Y-%m-%d`, `%Y%m%d`, `%m%d%Y`: four-digit year, two-digit month and day) and exists;
/// `None` otherwise. Without chrono's format machinery, a cost per date field of every
/// record.
pub(super) fn hand_read_date(b: &[u8], format: &str) -> Option<chrono::NaiveDate> {
    let digits = |range: std::ops::Range<usize>| super::value::ascii_number(&b[range]);
    let at = |y, m, d| Some((digits(y)?, digits(m)?, digits(d)?));
    let (y, m, d) = match (format, b.len()) {
        ("%Y-%m-%d", 10) if b[4] == b'-' && b[7] == b'-' => at(0..4, 5..7, 8..10),
        ("%Y%m%d", 8) => at(0..4, 4..6, 6..8),
        ("%m%d%Y", 8) => at(4..8, 0..2, 2..4),
        _ => None,
    }?;
    chrono::NaiveDate::from_ymd_opt(y as i32, m, d)
}

/// Appends [`format_decimal`]'s text to `out` without allocating.
pub(super) fn write_decimal(unscaled: i128, scale: u32, out: &mut Vec<u8>) {
    let mut digits = [0u8; 40];
    if scale as usize >= digits.len() - 1 {
        // More fraction digits than any i128 has: the general path.
        out.extend_from_slice(format_decimal(unscaled, scale).as_bytes());
        return;
    }
    let mut n = unscaled.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let scale = scale as usize;
    // At least one integer digit: zeros before short fractions.
    while digits.len() - at <= scale {
        at -= 1;
        digits[at] = b'0';
    }
    if unscaled < 0 {
        out.push(b'-');
    }
    let point = digits.len() - scale;
    out.extend_from_slice(&digits[at..point]);
    if scale > 0 {
        out.push(b'.');
        out.extend_from_slice(&digits[point..]);
    }
}

/// Writes an unscaled integer as a decimal with `scale` fraction digits: the inverse of
/// [`parse_decimal`].
pub fn format_decimal(unscaled: i128, scale: u32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let digits = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int_part, frac_part) = digits.split_at(digits.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    if frac_part.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac_part}")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryFile {
    category: CategoryHeader,
    #[serde(rename = "match")]
    matching: MatchSpec,
    format: FormatSpec,
    #[serde(rename = "field")]
    fields: Vec<Spanned<FieldFile>>,
    trailer: Option<Spanned<TrailerFile>>,
    quarantine: Option<QuarantineFile>,
    identity: Option<Spanned<IdentityFile>>,
    account: Option<Spanned<AccountFile>>,
    postings: Option<Spanned<PostingsFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    key: String,
    balance: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostingsFile {
    account: String,
    amount: String,
    date: String,
    sign: String,
    debit: String,
    credit: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerFile {
    marker: String,
    /// CSV only.
    count_column: Option<Spanned<usize>>,
    #[serde(default)]
    required: bool,
    /// CSV only.
    #[serde(default)]
    sum: Vec<Spanned<TrailerSumFile>>,
    /// Fixed width only.
    #[serde(default)]
    check: Vec<Spanned<CheckFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    name: String,
    start: usize,
    length: usize,
    #[serde(default)]
    count: bool,
    sum: Option<String>,
    net: Option<String>,
    /// With `net`: the flag field and its values that add and subtract.
    sign: Option<String>,
    plus: Option<String>,
    minus: Option<String>,
    #[serde(rename = "where")]
    filter: Option<FilterFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterFile {
    field: String,
    equals: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerSumFile {
    column: usize,
    field: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineFile {
    #[serde(default)]
    bad_records: BadRecordPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryHeader {
    name: String,
    #[serde(default)]
    description: String,
    output_topic: String,
    schema: String,
    layout_version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    name: String,
    column: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    scale: Option<u32>,
    format: Option<String>,
    #[serde(default)]
    required: bool,
    /// Fixed width: 1-based first byte and length.
    start: Option<usize>,
    length: Option<usize>,
    /// Fixed width: the decimal point is implied.
    #[serde(default)]
    implied: bool,
    /// Values the field accepts, as strings: `allowed = ["1", "2"]`.
    allowed: Option<Spanned<Vec<String>>>,
    /// Bounds: TOML integers or floats, or strings for decimals beyond 15 significant
    /// digits (a TOML float is an f64).
    min: Option<Spanned<toml::Value>>,
    max: Option<Spanned<toml::Value>>,
}

impl Category {
    /// Parses one category file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Category, LayoutError> {
        let invalid = |message: String| LayoutError::Invalid {
            file: file.to_string(),
            message,
        };
        let raw: CategoryFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let matcher = GlobBuilder::new(&raw.matching.name)
            .case_insensitive(true)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| invalid(format!("match.name {:?}: {e}", raw.matching.name)))?;
        if let FormatSpec::Csv { delimiter } = &raw.format
            && !delimiter.is_ascii()
        {
            return Err(invalid(format!(
                "format.delimiter must be one ASCII character, got {delimiter:?}"
            )));
        }
        if raw.fields.is_empty() {
            return Err(invalid("a category needs at least one [[field]]".into()));
        }
        // 1-based line of a byte offset, for messages about one key or table.
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut fields = Vec::with_capacity(raw.fields.len());
        for spanned in raw.fields {
            let line = line_of(spanned.span().start);
            let f = spanned.into_inner();
            let at = |line: usize, m: &str| invalid(format!("line {line}: field {}: {m}", f.name));
            let ty = match (f.ty.as_str(), f.scale, f.format) {
                ("string", None, None) => FieldType::String,
                ("int", None, None) => FieldType::Int,
                ("long", None, None) => FieldType::Long,
                ("decimal", Some(scale), None) if scale <= 18 => FieldType::Decimal { scale },
                ("decimal", _, None) => {
                    return Err(at(line, "a decimal needs `scale` between 0 and 18"));
                }
                ("date", None, Some(format)) => {
                    check_date_format(&format).map_err(|m| at(line, &m))?;
                    FieldType::Date { format }
                }
                ("date", _, None) => {
                    return Err(at(line, "a date needs `format`, e.g. \"%Y-%m-%d\""));
                }
                ("pan", None, None) => FieldType::Pan,
                ("account_number", None, None) => FieldType::AccountNumber,
                (
                    ty
                    @ ("string" | "int" | "long" | "decimal" | "date" | "pan" | "account_number"),
                    _,
                    _,
                ) => {
                    return Err(at(
                        line,
                        &format!(
                            "`scale` is only for decimals and `format` only for dates, not {ty}"
                        ),
                    ));
                }
                (other, _, _) => {
                    return Err(at(
                        line,
                        &format!(
                            "unknown type {other:?} (string, int, long, decimal, date, pan, account_number)"
                        ),
                    ));
                }
            };
            if fields.iter().any(|x: &FieldSpec| x.name == f.name) {
                return Err(at(line, "declared twice"));
            }
            let domain = parse_domain(&ty, f.allowed, f.min, f.max, &line_of)
                .map_err(|(line, m)| at(line, &m))?;
            if f.implied && !matches!(ty, FieldType::Decimal { .. }) {
                return Err(at(line, "`implied` is only for decimals"));
            }
            let span = match (&raw.format, f.start, f.length) {
                (FormatSpec::FixedWidth { record_length, .. }, Some(start), Some(length)) => {
                    if start == 0 || length == 0 {
                        return Err(at(line, "`start` is 1-based and `length` at least 1"));
                    }
                    let span = Span { start, length };
                    if record_length.is_some_and(|l| span.end() > l) {
                        return Err(at(
                            line,
                            &format!("ends at byte {}, past `record_length`", span.end()),
                        ));
                    }
                    Some(span)
                }
                (FormatSpec::FixedWidth { .. }, _, _) => {
                    return Err(at(line, "a fixed-width field needs `start` and `length`"));
                }
                (_, None, None) => None,
                _ => return Err(at(line, "`start` and `length` are for fixed-width fields")),
            };
            if f.implied && span.is_none() {
                return Err(at(line, "`implied` is for fixed-width fields"));
            }
            if raw.format == FormatSpec::Metro2 {
                let source = f.column.as_deref().unwrap_or(&f.name);
                super::metro2::check_field(source, &ty).map_err(|m| at(line, &m))?;
            }
            fields.push(FieldSpec {
                column: f.column.unwrap_or_else(|| f.name.clone()),
                name: f.name,
                ty,
                required: f.required,
                domain,
                span,
                implied: f.implied,
            });
        }
        if let FormatSpec::FixedWidth {
            record_type,
            record_length,
            detail,
            header,
        } = &raw.format
        {
            if record_type.start == 0 || record_type.length == 0 {
                return Err(invalid(
                    "format.record_type: `start` is 1-based and `length` at least 1".into(),
                ));
            }
            for code in std::iter::once(detail).chain(header) {
                if code.len() != record_type.length {
                    return Err(invalid(format!(
                        "format: record type {code:?} is not {} bytes long",
                        record_type.length
                    )));
                }
            }
            if record_length.is_some_and(|l| record_type.end() > l) {
                return Err(invalid(
                    "format.record_type ends past `record_length`".into(),
                ));
            }
        }
        let field_index = |name: &str, what: &str| -> Result<usize, String> {
            fields
                .iter()
                .position(|f| f.name == name)
                .ok_or_else(|| format!("{what} names unknown field {name}"))
        };
        let trailer = match raw.trailer {
            Some(t) => Some(
                parse_trailer(t, &raw.format, &fields, &line_of)
                    .map_err(|(line, m)| invalid(format!("line {line}: trailer: {m}")))?,
            ),
            None => None,
        };
        let identity = match raw.identity {
            Some(spanned) => {
                let line = line_of(spanned.span().start);
                let pattern = regex::Regex::new(&spanned.into_inner().name)
                    .map_err(|e| invalid(format!("line {line}: identity.name: {e}")))?;
                if !pattern.capture_names().any(|n| n == Some("period")) {
                    return Err(invalid(format!(
                        "line {line}: identity.name needs a named group `period`, e.g. (?P<period>\\d{{4}}-\\d{{2}})"
                    )));
                }
                Some(IdentitySpec { pattern })
            }
            None => None,
        };
        let typed = |index: usize, ok: bool, want: &str| -> Result<usize, String> {
            if ok {
                Ok(index)
            } else {
                Err(format!(
                    "field {} is a {}, not {want}",
                    fields[index].name,
                    fields[index].ty.describe()
                ))
            }
        };
        let is_text = |i: usize| fields[i].ty == FieldType::String || fields[i].ty.is_tokenised();
        let is_decimal = |i: usize| matches!(fields[i].ty, FieldType::Decimal { .. });
        let account = match raw.account {
            Some(spanned) => {
                let line = line_of(spanned.span().start);
                let a = spanned.into_inner();
                let role = (|| {
                    let key = field_index(&a.key, "account.key")?;
                    let balance = field_index(&a.balance, "account.balance")?;
                    Ok::<_, String>(AccountRole {
                        key: typed(key, is_text(key), "text")?,
                        balance: typed(balance, is_decimal(balance), "a decimal")?,
                    })
                })()
                .map_err(|m| invalid(format!("line {line}: {m}")))?;
                Some(role)
            }
            None => None,
        };
        let postings = match raw.postings {
            Some(spanned) => {
                let line = line_of(spanned.span().start);
                let p = spanned.into_inner();
                let role = (|| {
                    let account = field_index(&p.account, "postings.account")?;
                    let amount = field_index(&p.amount, "postings.amount")?;
                    let date = field_index(&p.date, "postings.date")?;
                    let sign = field_index(&p.sign, "postings.sign")?;
                    Ok::<_, String>(PostingRole {
                        account: typed(account, is_text(account), "text")?,
                        amount: typed(amount, is_decimal(amount), "a decimal")?,
                        date: typed(
                            date,
                            matches!(fields[date].ty, FieldType::Date { .. }),
                            "a date",
                        )?,
                        sign: typed(sign, fields[sign].ty == FieldType::String, "a string")?,
                        debit: p.debit,
                        credit: p.credit,
                    })
                })()
                .map_err(|m| invalid(format!("line {line}: {m}")))?;
                Some(role)
            }
            None => None,
        };
        Ok(Category {
            name: raw.category.name,
            description: raw.category.description,
            output_topic: raw.category.output_topic,
            schema: raw.category.schema,
            layout_version: raw.category.layout_version,
            format: raw.format,
            fields,
            trailer,
            bad_records: raw.quarantine.map(|q| q.bad_records).unwrap_or_default(),
            identity,
            account,
            postings,
            matcher,
            pattern: raw.matching.name,
        })
    }

    /// Whether a caller wanting all or nothing must read `bytes` once before handing any
    /// record on: a trailer is only reconciled at the end of the file, and with the `file`
    /// policy a bad record anywhere holds the records before it. An optional trailer
    /// needs the pass only if the file can hold one: a trailer row's first cell is the
    /// marker, so a file without the marker's bytes has none and cannot mismatch.
    pub fn validates_first(&self, bytes: &[u8]) -> bool {
        if self.bad_records == BadRecordPolicy::File || self.format == FormatSpec::Metro2 {
            return true;
        }
        match &self.trailer {
            None => false,
            // A marker with a quote could be written escaped; do not guess.
            Some(t) if t.required || t.marker.contains('"') => true,
            Some(t) => memchr::memmem::find(bytes, t.marker.as_bytes()).is_some(),
        }
    }

    /// Whether a file of this name belongs to the category.
    pub fn matches(&self, file_name: &str) -> bool {
        self.matcher.is_match(file_name)
    }

    /// `<name>@<layout_version>`, as written in provenance.
    pub fn layout_id(&self) -> String {
        format!("{}@{}", self.name, self.layout_version)
    }
}

/// A layout mistake: the line it is on and what is wrong.
type LineError = (usize, String);

/// Reads a field's `allowed`, `min` and `max` against its type.
fn parse_domain(
    ty: &FieldType,
    allowed: Option<Spanned<Vec<String>>>,
    min: Option<Spanned<toml::Value>>,
    max: Option<Spanned<toml::Value>>,
    line_of: &impl Fn(usize) -> usize,
) -> Result<Domain, LineError> {
    let mut domain = Domain::default();
    let mut allowed_line = 0;
    if let Some(allowed) = allowed {
        let line = line_of(allowed.span().start);
        allowed_line = line;
        let values = allowed.into_inner();
        if values.is_empty() {
            return Err((line, "`allowed` is empty, so no value could pass".into()));
        }
        for v in &values {
            if v.is_empty() || v.trim() != v {
                return Err((
                    line,
                    format!("allowed value {v:?} is empty or padded; values are compared trimmed"),
                ));
            }
            match ty {
                FieldType::String => domain.allowed_text.push(v.clone()),
                FieldType::Int | FieldType::Long => {
                    let n = ty
                        .parse(v)
                        .ok()
                        .and_then(|n| n.as_unscaled())
                        .ok_or_else(|| {
                            (
                                line,
                                format!("allowed value {v:?} is not {}", ty.describe()),
                            )
                        })?;
                    domain.allowed_numbers.push(n);
                }
                FieldType::Decimal { .. }
                | FieldType::Date { .. }
                | FieldType::Pan
                | FieldType::AccountNumber => {
                    return Err((
                        line,
                        format!(
                            "`allowed` is for string, int and long fields, not {}",
                            ty.describe()
                        ),
                    ));
                }
            }
        }
        domain.allowed_text_form = format!("one of {}", values.join(", "));
    }

    let min = parse_bound(ty, "min", min, line_of)?;
    let max = parse_bound(ty, "max", max, line_of)?;
    domain.range_text_form = match (&min, &max) {
        (Some(lo), Some(hi)) => {
            if lo.unscaled > hi.unscaled {
                return Err((
                    hi.line,
                    format!("`min` {} is above `max` {}", lo.text, hi.text),
                ));
            }
            format!("between {} and {}", lo.text, hi.text)
        }
        (Some(lo), None) => format!("at least {}", lo.text),
        (None, Some(hi)) => format!("at most {}", hi.text),
        (None, None) => String::new(),
    };
    domain.min = min.map(|b| b.unscaled);
    domain.max = max.map(|b| b.unscaled);
    if let Some(n) = domain
        .allowed_numbers
        .iter()
        .find(|&&n| domain.min.is_some_and(|m| n < m) || domain.max.is_some_and(|m| n > m))
    {
        return Err((
            allowed_line,
            format!("allowed value {n} is not {}", domain.range_text_form),
        ));
    }
    Ok(domain)
}

/// A `min` or `max`: as an unscaled integer at the field's scale, as written, and where.
struct Bound {
    unscaled: i128,
    text: String,
    line: usize,
}

fn parse_bound(
    ty: &FieldType,
    key: &str,
    value: Option<Spanned<toml::Value>>,
    line_of: &impl Fn(usize) -> usize,
) -> Result<Option<Bound>, LineError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let line = line_of(value.span().start);
    if ty.numeric_scale().is_none() {
        return Err((
            line,
            format!(
                "`{key}` is for int, long and decimal fields, not {}",
                ty.describe()
            ),
        ));
    }
    // A float's shortest round-trip form is the literal as written, up to 15 significant
    // digits; the decimal parse below is then exact.
    let text = match value.into_inner() {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) if f.is_finite() => f.to_string(),
        toml::Value::String(s) => s.trim().to_string(),
        other => {
            return Err((
                line,
                format!("`{key}` must be a number, not {}", other.type_str()),
            ));
        }
    };
    match ty.parse(&text).map(|v| v.as_unscaled()) {
        Ok(Some(unscaled)) => Ok(Some(Bound {
            unscaled,
            text,
            line,
        })),
        Ok(None) | Err(_) => Err((line, format!("`{key}` {text} is not {}", ty.describe()))),
    }
}

/// Reads `[trailer]` against the layout's fields.
fn parse_trailer(
    t: Spanned<TrailerFile>,
    format: &FormatSpec,
    fields: &[FieldSpec],
    line_of: &impl Fn(usize) -> usize,
) -> Result<TrailerSpec, LineError> {
    let line = line_of(t.span().start);
    let t = t.into_inner();
    if t.marker.is_empty() || t.marker.trim() != t.marker {
        return Err((
            line,
            format!(
                "`marker` {:?} must be text without surrounding spaces",
                t.marker
            ),
        ));
    }
    match format {
        FormatSpec::Csv { .. } => {}
        FormatSpec::Metro2 => {
            return Err((
                line,
                "Metro 2 files carry their own trailer; declare none".into(),
            ));
        }
        FormatSpec::FixedWidth {
            record_type,
            detail,
            header,
            ..
        } => {
            if t.count_column.is_some() || !t.sum.is_empty() {
                return Err((
                    line,
                    "a fixed-width trailer states its values with [[trailer.check]], not \
                     `count_column` or [[trailer.sum]]"
                        .into(),
                ));
            }
            if t.marker.len() != record_type.length
                || Some(&t.marker) == header.as_ref()
                || &t.marker == detail
            {
                return Err((
                    line,
                    format!(
                        "`marker` {:?} must be a record type of {} bytes, not the header's or the detail's",
                        t.marker, record_type.length
                    ),
                ));
            }
            let mut checks: Vec<ControlCheck> = Vec::with_capacity(t.check.len());
            for c in t.check {
                let line = line_of(c.span().start);
                checks.push(parse_check(c.into_inner(), fields).map_err(|m| (line, m))?);
                if checks[..checks.len() - 1]
                    .iter()
                    .any(|x| x.name == checks[checks.len() - 1].name)
                {
                    return Err((line, "check name used twice".into()));
                }
            }
            return Ok(TrailerSpec {
                marker: t.marker,
                count_column: 0,
                required: t.required,
                sums: Vec::new(),
                checks,
            });
        }
    }
    if !t.check.is_empty() {
        return Err((line, "[[trailer.check]] is for fixed-width trailers".into()));
    }
    let Some(count_column) = t.count_column else {
        return Err((line, "a CSV trailer needs `count_column`".into()));
    };
    let count_line = line_of(count_column.span().start);
    let count_column = count_column.into_inner();
    if count_column == 0 {
        return Err((count_line, "`count_column` 0 is the marker's cell".into()));
    }
    // Cells already taken: the marker's and the count's.
    let mut used = vec![0, count_column];
    let mut sums: Vec<TrailerSum> = Vec::with_capacity(t.sum.len());
    for s in t.sum {
        let line = line_of(s.span().start);
        let s = s.into_inner();
        if used.contains(&s.column) {
            return Err((
                line,
                format!(
                    "sum column {} is already the marker's, the count's or another sum's",
                    s.column
                ),
            ));
        }
        used.push(s.column);
        let Some(field) = fields.iter().find(|f| f.name == s.field) else {
            return Err((line, format!("sum of unknown field {}", s.field)));
        };
        if field.ty.numeric_scale().is_none() {
            return Err((
                line,
                format!(
                    "sum of field {}, a {}; only int, long and decimal fields add up",
                    s.field,
                    field.ty.describe()
                ),
            ));
        }
        if sums.iter().any(|x| x.field == s.field) {
            return Err((line, format!("field {} is summed twice", s.field)));
        }
        sums.push(TrailerSum {
            column: s.column,
            field: s.field,
        });
    }
    Ok(TrailerSpec {
        marker: t.marker,
        count_column,
        required: t.required,
        sums,
        checks: Vec::new(),
    })
}

/// Reads one `[[trailer.check]]` against the layout's fields.
fn parse_check(c: CheckFile, fields: &[FieldSpec]) -> Result<ControlCheck, String> {
    let index = |name: &str| {
        fields
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| format!("check {}: unknown field {name}", c.name))
    };
    let numeric = |i: usize| {
        fields[i].ty.numeric_scale().ok_or_else(|| {
            format!(
                "check {}: field {} is a {}; only int, long and decimal fields add up",
                c.name,
                fields[i].name,
                fields[i].ty.describe()
            )
        })
    };
    if c.start == 0 || c.length == 0 {
        return Err(format!(
            "check {}: `start` is 1-based and `length` at least 1",
            c.name
        ));
    }
    let measure = match (c.count, &c.sum, &c.net) {
        (true, None, None) => Measure::Count,
        (false, Some(f), None) => {
            let field = index(f)?;
            Measure::Sum {
                field,
                scale: numeric(field)?,
            }
        }
        (false, None, Some(f)) => {
            let field = index(f)?;
            let (Some(sign), Some(plus), Some(minus)) = (&c.sign, &c.plus, &c.minus) else {
                return Err(format!(
                    "check {}: a net needs `sign` (the flag field), `plus` and `minus`",
                    c.name
                ));
            };
            Measure::Net {
                field,
                scale: numeric(field)?,
                sign: index(sign)?,
                plus: plus.clone(),
                minus: minus.clone(),
            }
        }
        _ => {
            return Err(format!(
                "check {}: say exactly one of `count = true`, `sum = \"Field\"` or `net = \"Field\"`",
                c.name
            ));
        }
    };
    if !matches!(measure, Measure::Net { .. }) && (c.sign.is_some() || c.plus.is_some()) {
        return Err(format!(
            "check {}: `sign`, `plus` and `minus` are for nets",
            c.name
        ));
    }
    let filter = match c.filter {
        Some(f) => Some(Filter {
            field: index(&f.field)?,
            equals: f.equals,
        }),
        None => None,
    };
    Ok(ControlCheck {
        name: c.name,
        span: Span {
            start: c.start,
            length: c.length,
        },
        measure,
        filter,
    })
}

/// Rejects a date format chrono cannot use, by formatting and re-parsing a known date.
fn check_date_format(format: &str) -> Result<(), String> {
    use std::fmt::Write;
    let date = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).expect("valid date");
    let mut text = String::new();
    write!(text, "{}", date.format(format))
        .map_err(|_| format!("date format {format:?} is not valid"))?;
    match chrono::NaiveDate::parse_from_str(&text, format) {
        Ok(back) if back == date => Ok(()),
        _ => Err(format!(
            "date format {format:?} does not identify a day (it needs year, month and day)"
        )),
    }
}

impl Catalog {
    /// The categories built into the binary.
    pub fn builtin() -> Result<Catalog, LayoutError> {
        let categories = BUILTIN
            .iter()
            .map(|(file, text)| Category::parse(&format!("topologies/{file}"), text))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(categories)
    }

    /// Every `*.toml` in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Catalog, LayoutError> {
        let read_err = |source| LayoutError::Read {
            dir: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut categories = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(read_err)?;
            categories.push(Category::parse(&path.display().to_string(), &text)?);
        }
        Self::new(categories)
    }

    fn new(categories: Vec<Category>) -> Result<Catalog, LayoutError> {
        for (i, c) in categories.iter().enumerate() {
            if categories[..i].iter().any(|d| d.name == c.name) {
                return Err(LayoutError::Invalid {
                    file: c.name.clone(),
                    message: format!("category {} is declared twice", c.name),
                });
            }
        }
        Ok(Catalog { categories })
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The categories' names, comma-separated, for messages.
    pub fn names(&self) -> String {
        self.categories
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The one category a file name belongs to. `Err` names the candidates when the
    /// answer is none or more than one; neither may be guessed.
    pub fn categorize(&self, file_name: &str) -> Result<&Category, String> {
        let mut found = self.categories.iter().filter(|c| c.matches(file_name));
        match (found.next(), found.next()) {
            (Some(c), None) => Ok(c),
            (None, _) => Err(format!(
                "no category matches {file_name:?}; patterns: {}",
                self.categories
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.pattern))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (Some(a), Some(b)) => Err(format!(
                "{file_name:?} matches more than one category: {} and {}",
                a.name, b.name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads_and_matches_account_files() {
        let catalog = Catalog::builtin().unwrap();
        let c = catalog.categorize("ACME_Accounts_2026-10.CSV").unwrap();
        assert_eq!(c.name, "card.accounts");
        assert_eq!(c.fields[0].name, "ReferenceNumber");
        assert!(catalog.categorize("readme.txt").is_err());
        let c = catalog
            .categorize("ACME_postings_2026-10-15_01.dat")
            .unwrap();
        assert_eq!(c.name, "card.transactions");
        let identity = c
            .identity
            .as_ref()
            .unwrap()
            .identity("ACME_postings_2026-10-15_01.dat");
        assert_eq!(
            identity,
            Some(Identity {
                period: "2026-10-15".into(),
                sequence: "01".into()
            })
        );
        let c = catalog.categorize("acme_metro2_2026-10.dat").unwrap();
        assert_eq!(c.name, "metro2.base");
        let accounts = catalog.categorize("accounts_2026-10.csv").unwrap();
        let identity = accounts.identity.as_ref().unwrap();
        assert_eq!(
            identity.identity("accounts_2026-10.csv").unwrap().period,
            "2026-10"
        );
        assert_eq!(identity.identity("accounts_good.csv"), None);
        // Names match case-insensitively, as the glob does.
        assert_eq!(
            identity
                .identity("ACME_ACCOUNTS_2026-10.CSV")
                .unwrap()
                .period,
            "2026-10"
        );
    }

    #[test]
    fn decimals_are_exact_and_never_rounded() {
        assert_eq!(parse_decimal("1234.5", 2), Some(123_450));
        assert_eq!(parse_decimal("-0.07", 2), Some(-7));
        assert_eq!(parse_decimal("12", 2), Some(1200));
        assert_eq!(parse_decimal(".5", 2), Some(50));
        assert_eq!(parse_decimal("1.234", 2), None);
        assert_eq!(parse_decimal("1,234.00", 2), None);
        assert_eq!(parse_decimal("-", 2), None);
        assert_eq!(parse_decimal("", 2), None);
    }

    #[test]
    fn dates_become_days_since_epoch() {
        let ty = FieldType::Date {
            format: "%Y-%m-%d".into(),
        };
        assert_eq!(ty.parse("1970-01-02"), Ok(FieldValue::Date(1)));
        assert_eq!(ty.parse("2026-10-31"), Ok(FieldValue::Date(20_757)));
        assert!(ty.parse("2026-02-30").is_err());
        let mmddyyyy = FieldType::Date {
            format: "%m%d%Y".into(),
        };
        assert_eq!(mmddyyyy.parse("01021970"), Ok(FieldValue::Date(1)));
    }

    /// The hand-read date shapes accept exactly what chrono accepts, with the same day:
    /// every month/day pair (valid or not) of a spread of years, and odd shapes that go
    /// to chrono.
    #[test]
    fn hand_read_dates_agree_with_chrono() {
        let chrono_days = |text: &str, format: &str| {
            chrono::NaiveDate::parse_from_str(text, format)
                .ok()
                .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32)
        };
        let mut texts = Vec::new();
        for y in [0, 1, 999, 1900, 1970, 2000, 2024, 2026, 2100, 9999] {
            for m in 0..=13 {
                for d in 0..=32 {
                    texts.push((format!("{y:04}-{m:02}-{d:02}"), "%Y-%m-%d"));
                    texts.push((format!("{y:04}{m:02}{d:02}"), "%Y%m%d"));
                    texts.push((format!("{m:02}{d:02}{y:04}"), "%m%d%Y"));
                }
            }
        }
        for odd in [
            "2026-1-05",
            "2026-01-5",
            "+2026-01-05",
            "2026/01/05",
            "20260105 ",
        ] {
            texts.push((odd.to_string(), "%Y-%m-%d"));
        }
        for odd in ["2026015", "2026 105", "-0260105", "１２３４５６７８"] {
            texts.push((odd.to_string(), "%Y%m%d"));
            texts.push((odd.to_string(), "%m%d%Y"));
        }
        let mut accepted = 0;
        for (text, format) in &texts {
            let ours = parse_date(text, format);
            assert_eq!(ours, chrono_days(text, format), "{text:?} as {format}");
            accepted += usize::from(ours.is_some());
        }
        assert!(accepted > 10_000, "only {accepted} accepted");
    }

    /// The u64 fast path of `parse_decimal` and the checked i128 path agree at the edge
    /// between them (18 digits) and beyond it.
    #[test]
    fn long_decimals_stay_exact() {
        assert_eq!(
            parse_decimal("9999999999999999.99", 2),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(
            parse_decimal("-99999999999999999.99", 2),
            Some(-9_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal("1", 18), Some(10i128.pow(18)));
        assert_eq!(parse_decimal("12", 18), Some(12 * 10i128.pow(18)));
        assert_eq!(
            parse_decimal("123456789012345678901234567890", 0),
            Some(123_456_789_012_345_678_901_234_567_890)
        );
        assert_eq!(parse_decimal("1234567890123456789012345678901", 0), None);
    }

    #[test]
    fn layout_mistakes_name_the_file_and_line() {
        let text = "[category]\nname = \"x\"\noutput_topic = \"x\"\nschema = \"x.avsc\"\nlayout_version = 1\n[match]\nname = \"*.csv\"\n[format]\nkind = \"csv\"\n[[field]]\nname = \"a\"\ntype = \"decimal\"\n";
        let err = Category::parse("topologies/x.toml", text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("topologies/x.toml: line 10: field a: a decimal needs `scale`"),
            "{err}"
        );

        let err = Category::parse("topologies/y.toml", "[category]\nname = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("topologies/y.toml") && err.contains("line 2"),
            "{err}"
        );

        let bad_date = text.replace("\"decimal\"", "\"date\"\nformat = \"%Y\"");
        let err = Category::parse("z.toml", &bad_date)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not identify a day"), "{err}");
    }

    /// A category file with fields `a` (string), `n` (int) and `m` (decimal, scale 2), each
    /// followed by its entry of `extra`, and then `tail`.
    fn category(extra: [&str; 3], tail: &str) -> String {
        format!(
            "[category]\nname = \"x\"\noutput_topic = \"x\"\nschema = \"x.avsc\"\nlayout_version = 1\n[match]\nname = \"*.csv\"\n[format]\nkind = \"csv\"\n[[field]]\nname = \"a\"\ntype = \"string\"\n{}\n[[field]]\nname = \"n\"\ntype = \"int\"\n{}\n[[field]]\nname = \"m\"\ntype = \"decimal\"\nscale = 2\n{}\n{tail}",
            extra[0], extra[1], extra[2]
        )
    }

    fn error(text: &str) -> String {
        Category::parse("x.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn decimal_bounds_compare_exactly_at_the_edge() {
        // 0.3 is no f64 exactly; the bound is still exactly 30 cents.
        let c =
            Category::parse("x.toml", &category(["", "", "min = 0.01\nmax = 0.3"], "")).unwrap();
        let domain = &c.fields[2].domain;
        assert_eq!(domain.check(&FieldValue::Decimal(1)), Ok(()));
        assert_eq!(domain.check(&FieldValue::Decimal(30)), Ok(()));
        assert_eq!(
            domain.check(&FieldValue::Decimal(0)),
            Err("between 0.01 and 0.3")
        );
        assert_eq!(
            domain.check(&FieldValue::Decimal(31)),
            Err("between 0.01 and 0.3")
        );
        assert_eq!(domain.check(&FieldValue::Null), Ok(()));

        // Beyond what an f64 holds, a bound is written as a string.
        let c = Category::parse(
            "x.toml",
            &category(["", "", "max = \"99999999999999999.99\""], ""),
        )
        .unwrap();
        let domain = &c.fields[2].domain;
        assert_eq!(
            domain.check(&FieldValue::Decimal(9_999_999_999_999_999_999)),
            Ok(())
        );
        assert_eq!(
            domain.check(&FieldValue::Decimal(10_000_000_000_000_000_000)),
            Err("at most 99999999999999999.99")
        );
    }

    #[test]
    fn allowed_values_compare_as_text_or_numbers() {
        let c = Category::parse(
            "x.toml",
            &category(
                [
                    "allowed = [\"Y\", \"N\"]",
                    "allowed = [\"1\", \"2\"]\nmax = 2",
                    "",
                ],
                "",
            ),
        )
        .unwrap();
        let (a, n) = (&c.fields[0].domain, &c.fields[1].domain);
        assert_eq!(a.check(&FieldValue::Str(" Y ")), Ok(()));
        assert_eq!(a.check(&FieldValue::Str("y")), Err("one of Y, N"));
        assert_eq!(n.check(&FieldValue::Int(2)), Ok(()));
        assert_eq!(n.check(&FieldValue::Int(3)), Err("one of 1, 2"));
        assert!(c.fields[2].domain.is_unconstrained());
        assert!(!a.is_unconstrained());
    }

    #[test]
    fn domain_mistakes_name_the_file_and_line() {
        let cases = [
            (
                ["", "min = 5\nmax = 3", ""],
                "line 18: field n: `min` 5 is above `max` 3",
            ),
            (
                ["min = 1", "", ""],
                "line 13: field a: `min` is for int, long and decimal fields, not string",
            ),
            (
                ["", "", "allowed = [\"1.00\"]"],
                "line 22: field m: `allowed` is for string, int and long fields, not decimal(scale 2)",
            ),
            (
                ["", "allowed = [\"one\"]", ""],
                "line 17: field n: allowed value \"one\" is not int",
            ),
            (
                ["", "allowed = []", ""],
                "line 17: field n: `allowed` is empty",
            ),
            (
                ["", "allowed = [\"1\", \"7\"]\nmax = 5", ""],
                "line 17: field n: allowed value 7 is not at most 5",
            ),
            (
                ["", "", "min = 0.001"],
                "line 22: field m: `min` 0.001 is not decimal(scale 2)",
            ),
            (
                ["", "max = 3000000000", ""],
                "line 17: field n: `max` 3000000000 is not int",
            ),
            (
                ["", "min = true", ""],
                "line 17: field n: `min` must be a number, not boolean",
            ),
        ];
        for (extra, expected) in cases {
            let err = error(&category(extra, ""));
            assert!(err.starts_with(&format!("x.toml: {expected}")), "{err}");
        }
        let dated = category(
            ["", "", ""],
            "[[field]]\nname = \"d\"\ntype = \"date\"\nformat = \"%Y-%m-%d\"\nallowed = [\"2026-01-01\"]\n",
        );
        let err = error(&dated);
        assert!(
            err.starts_with("x.toml: line 27: field d: `allowed` is for string"),
            "{err}"
        );
    }

    #[test]
    fn the_quarantine_policy_defaults_to_record() {
        let c = Category::parse("x.toml", &category(["", "", ""], "")).unwrap();
        assert_eq!(c.bad_records, BadRecordPolicy::Record);
        assert!(!c.validates_first(b"a,b\n1,2\n"));

        let file = category(["", "", ""], "[quarantine]\nbad_records = \"file\"\n");
        let c = Category::parse("x.toml", &file).unwrap();
        assert_eq!(c.bad_records, BadRecordPolicy::File);
        assert!(c.validates_first(b"a,b\n1,2\n"));

        let record = category(["", "", ""], "[quarantine]\nbad_records = \"record\"\n");
        assert_eq!(
            Category::parse("x.toml", &record).unwrap().bad_records,
            BadRecordPolicy::Record
        );

        let err = error(&category(
            ["", "", ""],
            "[quarantine]\nbad_records = \"batch\"\n",
        ));
        assert!(err.contains("line 24") && err.contains("batch"), "{err}");
    }

    #[test]
    fn the_builtin_layout_declares_its_trailer_and_domains() {
        let catalog = Catalog::builtin().unwrap();
        let c = catalog.categorize("accounts.csv").unwrap();
        let trailer = c.trailer.as_ref().unwrap();
        assert_eq!(
            (trailer.marker.as_str(), trailer.count_column),
            ("TRAILER", 1)
        );
        assert!(!trailer.required);
        assert_eq!(
            trailer.sums,
            [TrailerSum {
                column: 2,
                field: "CycleEndingBalance".into()
            }]
        );
        // The trailer is optional: only a file that can hold one is read twice.
        assert!(c.validates_first(b"h\n1\nTRAILER,1,0.00\n"));
        assert!(!c.validates_first(b"h\n1\n2\n"));
        let card_type = c
            .fields
            .iter()
            .find(|f| f.name == "CreditCardType")
            .unwrap();
        assert_eq!(
            card_type.domain.check(&FieldValue::Int(3)),
            Err("one of 1, 2")
        );
    }

    #[test]
    fn trailer_mistakes_name_the_file_and_line() {
        let trailer =
            |body: &str| category(["", "", ""], &format!("[trailer]\nmarker = \"T\"\n{body}"));
        let cases = [
            (
                "count_column = 0\n",
                "line 25: trailer: `count_column` 0 is the marker's cell",
            ),
            (
                "count_column = 1\n[[trailer.sum]]\ncolumn = 1\nfield = \"m\"\n",
                "line 26: trailer: sum column 1 is already",
            ),
            (
                "count_column = 1\n[[trailer.sum]]\ncolumn = 2\nfield = \"z\"\n",
                "line 26: trailer: sum of unknown field z",
            ),
            (
                "count_column = 1\n[[trailer.sum]]\ncolumn = 2\nfield = \"a\"\n",
                "line 26: trailer: sum of field a, a string",
            ),
            (
                "count_column = 1\n[[trailer.sum]]\ncolumn = 2\nfield = \"m\"\n[[trailer.sum]]\ncolumn = 3\nfield = \"m\"\n",
                "line 29: trailer: field m is summed twice",
            ),
        ];
        for (body, expected) in cases {
            let err = error(&trailer(body));
            assert!(err.starts_with(&format!("x.toml: {expected}")), "{err}");
        }
        let err = error(&category(
            ["", "", ""],
            "[trailer]\nmarker = \" T\"\ncount_column = 1\n",
        ));
        assert!(err.contains("line 23: trailer: `marker`"), "{err}");
        let ok =
            Category::parse("x.toml", &trailer("count_column = 1\nrequired = true\n")).unwrap();
        assert!(ok.trailer.unwrap().required);
    }

    /// A fixed-width category: `head` after `[format]`'s lines, then `fields`.
    fn fixed(head: &str, fields: &str) -> String {
        format!(
            "[category]\nname = \"f\"\noutput_topic = \"f\"\nschema = \"f.avsc\"\nlayout_version = 1\n\
             [match]\nname = \"*.dat\"\n[format]\nkind = \"fixed_width\"\nrecord_type = {{ start = 1, length = 1 }}\n\
             detail = \"D\"\nrecord_length = 40\n{head}\n{fields}"
        )
    }

    #[test]
    fn fixed_width_mistakes_name_the_file_and_line() {
        let amount = "[[field]]\nname = \"amt\"\nstart = 2\nlength = 10\ntype = \"decimal\"\nscale = 2\nimplied = true\n\
                      [[field]]\nname = \"flag\"\nstart = 12\nlength = 1\ntype = \"string\"\n";
        let ok = Category::parse("f.toml", &fixed("", amount)).unwrap();
        assert_eq!(
            ok.fields[0].span,
            Some(Span {
                start: 2,
                length: 10
            })
        );
        assert!(ok.fields[0].implied);
        let cases = [
            (
                fixed("", "[[field]]\nname = \"a\"\ntype = \"string\"\n"),
                "[[field]]",
                "field a: a fixed-width field needs `start` and `length`",
            ),
            (
                fixed(
                    "",
                    "[[field]]\nname = \"a\"\nstart = 35\nlength = 10\ntype = \"string\"\n",
                ),
                "[[field]]",
                "field a: ends at byte 44, past `record_length`",
            ),
            (
                fixed(
                    "",
                    "[[field]]\nname = \"a\"\nstart = 2\nlength = 3\ntype = \"string\"\nimplied = true\n",
                ),
                "[[field]]",
                "field a: `implied` is only for decimals",
            ),
            (
                fixed("[identity]\nname = '_(?P<day>\\d+)'\n", amount),
                "[identity]",
                "identity.name needs a named group `period`",
            ),
            (
                fixed(
                    "[trailer]\nmarker = \"T\"\n[[trailer.check]]\nname = \"n\"\nstart = 2\nlength = 9\nsum = \"flag\"\n",
                    amount,
                ),
                "[[trailer.check]]",
                "trailer: check n: field flag is a string",
            ),
            (
                fixed(
                    "[trailer]\nmarker = \"T\"\n[[trailer.check]]\nname = \"n\"\nstart = 2\nlength = 9\nnet = \"amt\"\n",
                    amount,
                ),
                "[[trailer.check]]",
                "trailer: check n: a net needs `sign`",
            ),
            (
                fixed("[trailer]\nmarker = \"T\"\ncount_column = 1\n", amount),
                "[trailer]",
                "trailer: a fixed-width trailer states its values with [[trailer.check]]",
            ),
            (
                fixed("[trailer]\nmarker = \"D\"\n", amount),
                "[trailer]",
                "trailer: `marker` \"D\" must be a record type",
            ),
            (
                fixed(
                    "[postings]\naccount = \"flag\"\namount = \"amt\"\ndate = \"amt\"\nsign = \"flag\"\ndebit = \"D\"\ncredit = \"C\"\n",
                    amount,
                ),
                "[postings]",
                "field amt is a decimal(scale 2), not a date",
            ),
        ];
        for (text, table, expected) in cases {
            let line = text[..text.find(table).unwrap()].matches('\n').count() + 1;
            let err = error(&text);
            let wanted = format!("x.toml: line {line}: {expected}");
            assert!(
                err.starts_with(&wanted),
                "{err}
wanted {wanted}"
            );
        }
    }

    #[test]
    fn decimals_format_back_exactly() {
        for (unscaled, scale, text) in [
            (100_010, 2, "1000.10"),
            (-5, 2, "-0.05"),
            (0, 2, "0.00"),
            (7, 0, "7"),
            (-1_234, 3, "-1.234"),
        ] {
            assert_eq!(format_decimal(unscaled, scale), text);
            assert_eq!(parse_decimal(text, scale), Some(unscaled));
            let mut written = Vec::new();
            write_decimal(unscaled, scale, &mut written);
            assert_eq!(written, text.as_bytes());
        }
        // Beyond what a file may state (30 integer digits), written all the same.
        for (unscaled, scale) in [(i128::MIN, 0), (i128::MIN, 38), (i128::MAX, 39), (5, 45)] {
            let mut written = Vec::new();
            write_decimal(unscaled, scale, &mut written);
            assert_eq!(written, format_decimal(unscaled, scale).as_bytes());
        }
    }
}
