//! Declarative file categories, read from `topologies/*.toml`.
//!
//! Adding a category or changing a layout is a data change: a new or edited TOML file.
//! A mistake in one is reported with the file and, where the TOML parser knows it, the line.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use super::value::FieldValue;

/// The categories built into the binary: the repository's `topologies/`.
const BUILTIN: &[(&str, &str)] = &[(
    "card_accounts.toml",
    include_str!("../../topologies/card_accounts.toml"),
)];

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
}

fn default_delimiter() -> char {
    ','
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
        }
    }

    /// Parses a non-empty raw value. The error says what was expected.
    pub fn parse<'a>(&self, raw: &'a str) -> Result<FieldValue<'a>, String> {
        match self {
            FieldType::String => Ok(FieldValue::Str(raw)),
            FieldType::Int => raw
                .trim()
                .parse::<i32>()
                .map(FieldValue::Int)
                .map_err(|_| "an integer (32-bit)".to_string()),
            FieldType::Long => raw
                .trim()
                .parse::<i64>()
                .map(FieldValue::Long)
                .map_err(|_| "an integer (64-bit)".to_string()),
            FieldType::Decimal { scale } => parse_decimal(raw.trim(), *scale)
                .map(FieldValue::Decimal)
                .ok_or_else(|| format!("a decimal with at most {scale} fraction digits")),
            FieldType::Date { format } => chrono::NaiveDate::parse_from_str(raw.trim(), format)
                .ok()
                .and_then(|d| {
                    let days = d
                        .signed_duration_since(chrono::NaiveDate::default())
                        .num_days();
                    i32::try_from(days).ok()
                })
                .map(FieldValue::Date)
                .ok_or_else(|| format!("a date formatted {format}")),
        }
    }
}

/// Parses `[-+]digits[.digits]` into an unscaled integer with exactly `scale` fraction
/// digits. More fraction digits than `scale` is an error: rounding money silently is not
/// this parser's call.
fn parse_decimal(s: &str, scale: u32) -> Option<i128> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryFile {
    category: CategoryHeader,
    #[serde(rename = "match")]
    matching: MatchSpec,
    format: FormatSpec,
    #[serde(rename = "field")]
    fields: Vec<FieldFile>,
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
        if let FormatSpec::Csv { delimiter } = raw.format
            && !delimiter.is_ascii()
        {
            return Err(invalid(format!(
                "format.delimiter must be one ASCII character, got {delimiter:?}"
            )));
        }
        if raw.fields.is_empty() {
            return Err(invalid("a category needs at least one [[field]]".into()));
        }
        let mut fields = Vec::with_capacity(raw.fields.len());
        for f in raw.fields {
            let ty = match (f.ty.as_str(), f.scale, f.format) {
                ("string", None, None) => FieldType::String,
                ("int", None, None) => FieldType::Int,
                ("long", None, None) => FieldType::Long,
                ("decimal", Some(scale), None) if scale <= 18 => FieldType::Decimal { scale },
                ("decimal", _, None) => {
                    return Err(invalid(format!(
                        "field {}: a decimal needs `scale` between 0 and 18",
                        f.name
                    )));
                }
                ("date", None, Some(format)) => {
                    check_date_format(&format)
                        .map_err(|m| invalid(format!("field {}: {m}", f.name)))?;
                    FieldType::Date { format }
                }
                ("date", _, None) => {
                    return Err(invalid(format!(
                        "field {}: a date needs `format`, e.g. \"%Y-%m-%d\"",
                        f.name
                    )));
                }
                (ty @ ("string" | "int" | "long" | "decimal" | "date"), _, _) => {
                    return Err(invalid(format!(
                        "field {}: `scale` is only for decimals and `format` only for dates, not {ty}",
                        f.name
                    )));
                }
                (other, _, _) => {
                    return Err(invalid(format!(
                        "field {}: unknown type {other:?} (string, int, long, decimal, date)",
                        f.name
                    )));
                }
            };
            if fields.iter().any(|x: &FieldSpec| x.name == f.name) {
                return Err(invalid(format!("field {} is declared twice", f.name)));
            }
            fields.push(FieldSpec {
                column: f.column.unwrap_or_else(|| f.name.clone()),
                name: f.name,
                ty,
                required: f.required,
            });
        }
        Ok(Category {
            name: raw.category.name,
            description: raw.category.description,
            output_topic: raw.category.output_topic,
            schema: raw.category.schema,
            layout_version: raw.category.layout_version,
            format: raw.format,
            fields,
            matcher,
            pattern: raw.matching.name,
        })
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
        assert!(catalog.categorize("postings.dat").is_err());
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

    #[test]
    fn layout_mistakes_name_the_file_and_line() {
        let text = "[category]\nname = \"x\"\noutput_topic = \"x\"\nschema = \"x.avsc\"\nlayout_version = 1\n[match]\nname = \"*.csv\"\n[format]\nkind = \"csv\"\n[[field]]\nname = \"a\"\ntype = \"decimal\"\n";
        let err = Category::parse("topologies/x.toml", text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("topologies/x.toml: field a: a decimal needs `scale`"),
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
}
