//! Compatibility levels of the Confluent Schema Registry, for Avro.
//!
//! A subject's level says which of its registered versions a new schema is checked
//! against, and in which direction:
//!
//! - `BACKWARD`: the new schema, as reader, reads data written with the latest version.
//! - `FORWARD`: the latest version, as reader, reads data written with the new schema.
//! - `FULL`: both.
//! - `*_TRANSITIVE`: the same, against every registered version, not just the latest.
//! - `NONE`: anything goes.
//!
//! "Reads" means the reader's schema resolves the writer's by the "Schema Resolution"
//! rules of the Avro 1.11 specification, for every datum the writer can write. A change
//! that fails only for some data (a removed enum symbol, a narrowed union) is
//! incompatible, as it is for Confluent.
//!
//! The verdict comes from `apache_avro::schema_compatibility`. Where that crate departs
//! from the specification, this module corrects it, and only there:
//!
//! - It answers `Partial` for data that resolves only sometimes; we count that as
//!   incompatible.
//! - It cannot compare a named type's definition with a reference to it by name, so a
//!   reader that defines a type in another place than the writer fails. We inline
//!   references before asking.
//! - It ignores the reader's aliases of records, enums and fixed. We rename the writer's
//!   types by them first, as the specification's "Aliases" section says.
//! - It lets logical types decide alone: a bytes decimal reads a fixed decimal, a decimal
//!   reads a fixed of another size, a string uuid reads a fixed uuid. We also ask it about
//!   the underlying types, which must resolve too. Two decimals still need the same
//!   precision and scale, as the specification says.
//!
//! Messages are ours: we walk both schemas to say where the problem is. The walk never
//! changes the verdict.
//!
//! Architecture Invariant: if `check` returns no message, every datum written with one
//! side resolves against the other, in each direction and for each version the level
//! names.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema::{
    ArraySchema, DecimalSchema, InnerDecimalSchema, MapSchema, Name, RecordSchema, ResolvedSchema,
    UnionSchema, UuidSchema,
};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Confluent compatibility level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompatibilityLevel {
    /// Confluent's default.
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl CompatibilityLevel {
    /// All seven, in Confluent's order.
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
        CompatibilityLevel::None,
    ];

    /// Confluent's name, as in `/config`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
            CompatibilityLevel::None => "NONE",
        }
    }

    /// Checked against every version, not just the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    /// The new schema must read the old data.
    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    /// The old schemas must read the new data.
    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no compatibility level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown compatibility level `{0}`; expected one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE"
)]
pub struct UnknownLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = UnknownLevel;

    /// Case-insensitive, like Confluent.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CompatibilityLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

impl Serialize for CompatibilityLevel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompatibilityLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks `candidate` against a subject's registered versions (`existing`, oldest first)
/// at `level`. Returns what is wrong, one message per problem; empty means compatible.
///
/// Versions are named by their place in `existing`, the oldest being version 1; the
/// latest is checked first.
pub fn check(level: CompatibilityLevel, candidate: &Schema, existing: &[Schema]) -> Vec<String> {
    let Some(last) = existing.len().checked_sub(1) else {
        return Vec::new();
    };
    let first = if level.is_transitive() { 0 } else { last };
    let mut messages = Vec::new();
    for i in (first..=last).rev() {
        let old = &existing[i];
        let version = if existing.len() == 1 {
            "the existing version".to_string()
        } else {
            format!("version {}", i + 1)
        };
        if level.backward() {
            for problem in reader_problems(old, candidate) {
                messages.push(format!(
                    "the new schema (reader) cannot read data written with {version}: {problem}"
                ));
            }
        }
        if level.forward() {
            for problem in reader_problems(candidate, old) {
                messages.push(format!(
                    "{version} (reader) cannot read data written with the new schema: {problem}"
                ));
            }
        }
    }
    messages
}

/// Why `reader` cannot read everything `writer` writes; empty when it can.
fn reader_problems(writer: &Schema, reader: &Schema) -> Vec<String> {
    let reader = inline(reader);
    let writer = apply_aliases(&inline(writer), &reader_aliases(&reader));
    if readable(&writer, &reader) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    explain(&writer, &reader, "", &mut problems);
    if problems.is_empty() {
        // The walk found no culprit; still say something.
        problems.push(match SchemaCompatibility::can_read(&writer, &reader) {
            Err(e) => e.to_string(),
            Ok(_) => "some data written with it cannot be resolved".to_string(),
        });
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The verdict: apache-avro, with the corrections listed in the module docs.
// ---------------------------------------------------------------------------------------

/// Can `reader` read every datum `writer` writes?
///
/// Correction: `Partial` (only some data resolves) counts as no. Correction: the
/// underlying types must resolve too; the crate lets logical types (decimal, uuid) match
/// across bytes, string and fixed of any size, which the specification does not.
fn readable(writer: &Schema, reader: &Schema) -> bool {
    let full = |w: &Schema, r: &Schema| {
        matches!(SchemaCompatibility::can_read(w, r), Ok(Compatibility::Full))
    };
    full(writer, reader)
        && match (underlying(writer), underlying(reader)) {
            (Some(w), Some(r)) => full(&w, &r),
            // Cannot happen for a parsed schema: its unions are already unique by
            // underlying type. The logical check stands alone then.
            _ => true,
        }
}

/// `schema` with every logical type replaced by its underlying Avro type. `None` if a
/// union would no longer be valid.
fn underlying(schema: &Schema) -> Option<Schema> {
    Some(match schema {
        Schema::Date | Schema::TimeMillis => Schema::Int,
        Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Schema::Long,
        Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Bytes,
            ..
        }) => Schema::Bytes,
        Schema::Uuid(UuidSchema::String) => Schema::String,
        Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Duration(f)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        }) => Schema::Fixed(f.clone()),
        other => return map_children(other, &mut underlying),
    })
}

/// The direct children of `schema`: array items, map values, union branches, fields.
fn children(schema: &Schema) -> Vec<&Schema> {
    match schema {
        Schema::Array(a) => vec![&*a.items],
        Schema::Map(m) => vec![&*m.types],
        Schema::Union(u) => u.variants().iter().collect(),
        Schema::Record(r) => r.fields.iter().map(|f| &f.schema).collect(),
        _ => Vec::new(),
    }
}

/// `schema` with `f` applied to its direct children (array items, map values, union
/// branches, record fields); other schemas are returned as they are. `None` if `f` fails
/// or a union is no longer valid.
fn map_children(schema: &Schema, f: &mut dyn FnMut(&Schema) -> Option<Schema>) -> Option<Schema> {
    Some(match schema {
        Schema::Array(a) => Schema::Array(ArraySchema {
            items: Box::new(f(&a.items)?),
            attributes: a.attributes.clone(),
        }),
        Schema::Map(m) => Schema::Map(MapSchema {
            types: Box::new(f(&m.types)?),
            attributes: m.attributes.clone(),
        }),
        Schema::Union(u) => {
            let branches = u.variants().iter().map(&mut *f).collect::<Option<_>>()?;
            Schema::Union(UnionSchema::new(branches).ok()?)
        }
        Schema::Record(r) => {
            let mut record = r.clone();
            for field in &mut record.fields {
                field.schema = f(&field.schema)?;
            }
            Schema::Record(record)
        }
        other => other.clone(),
    })
}

/// `schema` with each reference to a named type replaced by its definition, so both sides
/// spell out the same structure wherever the type is used. A reference inside its own
/// definition (a recursive type) stays.
///
/// Correction: the crate compares a definition and a reference as different types.
fn inline(schema: &Schema) -> Schema {
    let names: HashMap<Name, Schema> = match ResolvedSchema::new(schema) {
        Ok(resolved) => resolved
            .get_names()
            .iter()
            .map(|(name, s)| (name.clone(), (*s).clone()))
            .collect(),
        Err(_) => return schema.clone(),
    };
    fn go(schema: &Schema, names: &HashMap<Name, Schema>, open: &mut Vec<Name>) -> Schema {
        match schema {
            Schema::Ref { name } if !open.contains(name) => match names.get(name) {
                Some(definition) => go(definition, names, open),
                None => schema.clone(),
            },
            Schema::Record(r) => {
                open.push(r.name.clone());
                let inlined = map_children(schema, &mut |s| Some(go(s, names, open)));
                open.pop();
                inlined.unwrap_or_else(|| schema.clone())
            }
            _ => map_children(schema, &mut |s| Some(go(s, names, open)))
                .unwrap_or_else(|| schema.clone()),
        }
    }
    go(schema, &names, &mut Vec::new())
}

/// The reader's named types, by the unqualified name of each of their aliases.
fn reader_aliases(reader: &Schema) -> Vec<(String, Name)> {
    fn go(schema: &Schema, out: &mut Vec<(String, Name)>) {
        let named = match schema {
            Schema::Record(r) => Some((&r.name, &r.aliases)),
            Schema::Enum(e) => Some((&e.name, &e.aliases)),
            Schema::Fixed(f)
            | Schema::Duration(f)
            | Schema::Uuid(UuidSchema::Fixed(f))
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Fixed(f),
                ..
            }) => Some((&f.name, &f.aliases)),
            _ => None,
        };
        if let Some((name, aliases)) = named {
            for alias in aliases.iter().flatten() {
                out.push((alias.name().to_string(), name.clone()));
            }
        }
        for child in children(schema) {
            go(child, out);
        }
    }
    let mut out = Vec::new();
    go(reader, &mut out);
    out
}

/// `writer` with each named type the reader knows by an alias renamed to the reader's
/// name.
///
/// Correction: the crate compares record, enum and fixed names but not the reader's
/// aliases. Names match unqualified (Avro 1.11), so aliases do too.
fn apply_aliases(writer: &Schema, aliases: &[(String, Name)]) -> Schema {
    if aliases.is_empty() {
        return writer.clone();
    }
    let rename = |name: &Name| -> Name {
        aliases
            .iter()
            .find(|(alias, _)| alias == name.name())
            .map_or_else(|| name.clone(), |(_, to)| to.clone())
    };
    let renamed = match writer {
        Schema::Ref { name } => Schema::Ref { name: rename(name) },
        Schema::Record(r) => Schema::Record(RecordSchema {
            name: rename(&r.name),
            ..r.clone()
        }),
        Schema::Enum(e) => {
            let mut e = e.clone();
            e.name = rename(&e.name);
            Schema::Enum(e)
        }
        Schema::Fixed(f) => {
            let mut f = f.clone();
            f.name = rename(&f.name);
            Schema::Fixed(f)
        }
        Schema::Duration(f) => {
            let mut f = f.clone();
            f.name = rename(&f.name);
            Schema::Duration(f)
        }
        Schema::Uuid(UuidSchema::Fixed(f)) => {
            let mut f = f.clone();
            f.name = rename(&f.name);
            Schema::Uuid(UuidSchema::Fixed(f))
        }
        Schema::Decimal(d) => {
            let mut d = d.clone();
            if let InnerDecimalSchema::Fixed(f) = &mut d.inner {
                f.name = rename(&f.name);
            }
            Schema::Decimal(d)
        }
        other => other.clone(),
    };
    map_children(&renamed, &mut |s| Some(apply_aliases(s, aliases))).unwrap_or(renamed)
}

// ---------------------------------------------------------------------------------------
// The messages: where and why the reader fails. They never change the verdict.
// ---------------------------------------------------------------------------------------

/// Walks `writer` and `reader` together, as resolution would, and says why each part the
/// reader cannot read fails. `loc` is the dotted path of fields from the top.
fn explain(writer: &Schema, reader: &Schema, loc: &str, out: &mut Vec<String>) {
    if readable(writer, reader) {
        return;
    }
    let at = if loc.is_empty() {
        "at the top level".to_string()
    } else {
        format!("at `{loc}`")
    };
    // Unions first, as in the specification: each branch the writer may write must
    // resolve against the first matching branch of the reader.
    if let Schema::Union(w) = writer {
        for branch in w.variants() {
            if matches!(reader, Schema::Union(_)) || shallow_match(branch, reader) {
                explain(branch, reader, loc, out);
            } else if !readable(branch, reader) {
                out.push(format!(
                    "{at}, the writer's union branch {} cannot be read as {}",
                    describe(branch),
                    describe(reader)
                ));
            }
        }
        return;
    }
    if let Schema::Union(r) = reader {
        match r
            .variants()
            .iter()
            .find(|branch| shallow_match(writer, branch))
        {
            Some(branch) => explain(writer, branch, loc, out),
            None => out.push(format!(
                "{at}, the reader's {} has no branch for the writer's {}",
                describe(reader),
                describe(writer)
            )),
        }
        return;
    }
    if let (Some(w), Some(r)) = (writer.name(), reader.name())
        && kind(writer) == kind(reader)
        && w.name() != r.name()
    {
        out.push(format!(
            "{at}, the writer's {} is not the reader's {}: the names differ and the reader has no alias `{}`",
            describe(writer),
            describe(reader),
            w.name()
        ));
        return;
    }
    if let (Some(w), Some(r)) = (decimal_of(writer), decimal_of(reader))
        && w != r
    {
        out.push(format!(
            "{at}, decimal({}, {}) cannot be read as decimal({}, {}): precision and scale must match",
            w.0, w.1, r.0, r.1
        ));
        return;
    }
    if let (Some(w), Some(r)) = (fixed_size(writer), fixed_size(reader))
        && w != r
    {
        out.push(format!(
            "{at}, fixed `{}` has size {w} in the writer's schema but {r} in the reader's",
            reader.name().map_or("", |n| n.name())
        ));
        return;
    }
    match (writer, reader) {
        (Schema::Record(w), Schema::Record(r)) => {
            for field in &r.fields {
                let path = if loc.is_empty() {
                    field.name.clone()
                } else {
                    format!("{loc}.{}", field.name)
                };
                let written = std::iter::once(&field.name)
                    .chain(&field.aliases)
                    .find_map(|name| w.fields.iter().find(|f| &f.name == name));
                match written {
                    Some(written) => explain(&written.schema, &field.schema, &path, out),
                    None if field.default.is_none() => out.push(format!(
                        "field `{path}` is missing from the writer's schema and has no default in the reader's"
                    )),
                    None => {}
                }
            }
        }
        (Schema::Enum(w), Schema::Enum(r)) => {
            let missing: Vec<&str> = w
                .symbols
                .iter()
                .filter(|s| !r.symbols.contains(s))
                .map(String::as_str)
                .collect();
            out.push(format!(
                "{at}, the reader's enum `{}` lacks the writer's symbol(s) {} and has no default",
                r.name.name(),
                missing.join(", ")
            ));
        }
        (Schema::Array(w), Schema::Array(r)) => {
            explain(&w.items, &r.items, &format!("{loc}[]"), out);
        }
        (Schema::Map(w), Schema::Map(r)) => {
            explain(&w.types, &r.types, &format!("{loc}{{}}"), out);
        }
        _ => out.push(format!(
            "{at}, the writer's {} cannot be read as {}",
            describe(writer),
            describe(reader)
        )),
    }
}

/// The underlying Avro type, by name; `"ref"` for a reference to a named type.
fn kind(schema: &Schema) -> &'static str {
    match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "int",
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes
        | Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Bytes,
            ..
        }) => "bytes",
        Schema::String | Schema::Uuid(UuidSchema::String) => "string",
        Schema::Fixed(_)
        | Schema::Duration(_)
        | Schema::Uuid(UuidSchema::Fixed(_))
        | Schema::Decimal(_) => "fixed",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        Schema::Union(_) => "union",
        Schema::Record(_) => "record",
        Schema::Enum(_) => "enum",
        Schema::Ref { .. } => "ref",
    }
}

/// Does the reader's `reader` match the writer's `writer` in the specification's sense
/// (same named type, same type, or a promotion), before looking inside? Used to pick the
/// reader's union branch the specification resolves against.
fn shallow_match(writer: &Schema, reader: &Schema) -> bool {
    let (w, r) = (kind(writer), kind(reader));
    if let (Some(wn), Some(rn)) = (writer.name(), reader.name()) {
        return wn.name() == rn.name() && (w == r || w == "ref" || r == "ref");
    }
    w == r
        || matches!(
            (w, r),
            ("int", "long" | "float" | "double")
                | ("long", "float" | "double")
                | ("float", "double")
                | ("string", "bytes")
                | ("bytes", "string")
        )
}

fn decimal_of(schema: &Schema) -> Option<(usize, usize)> {
    match schema {
        Schema::Decimal(d) => Some((d.precision, d.scale)),
        _ => None,
    }
}

fn fixed_size(schema: &Schema) -> Option<usize> {
    match schema {
        Schema::Fixed(f)
        | Schema::Duration(f)
        | Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        }) => Some(f.size),
        _ => None,
    }
}

/// A short description of a schema for messages, e.g. ``fixed `Money` of size 8
/// (decimal(18, 2))``.
fn describe(schema: &Schema) -> String {
    let logical = |base: &str, logical: &str| format!("{base} ({logical})");
    match schema {
        Schema::Date => logical("int", "date"),
        Schema::TimeMillis => logical("int", "time-millis"),
        Schema::TimeMicros => logical("long", "time-micros"),
        Schema::TimestampMillis => logical("long", "timestamp-millis"),
        Schema::TimestampMicros => logical("long", "timestamp-micros"),
        Schema::TimestampNanos => logical("long", "timestamp-nanos"),
        Schema::LocalTimestampMillis => logical("long", "local-timestamp-millis"),
        Schema::LocalTimestampMicros => logical("long", "local-timestamp-micros"),
        Schema::LocalTimestampNanos => logical("long", "local-timestamp-nanos"),
        Schema::BigDecimal => logical("bytes", "big-decimal"),
        Schema::Uuid(UuidSchema::String) => logical("string", "uuid"),
        Schema::Uuid(UuidSchema::Bytes) => logical("bytes", "uuid"),
        Schema::Uuid(UuidSchema::Fixed(f)) => logical(
            &format!("fixed `{}` of size {}", f.name.name(), f.size),
            "uuid",
        ),
        Schema::Duration(f) => logical(
            &format!("fixed `{}` of size {}", f.name.name(), f.size),
            "duration",
        ),
        Schema::Decimal(d) => {
            let base = match &d.inner {
                InnerDecimalSchema::Bytes => "bytes".to_string(),
                InnerDecimalSchema::Fixed(f) => {
                    format!("fixed `{}` of size {}", f.name.name(), f.size)
                }
            };
            logical(&base, &format!("decimal({}, {})", d.precision, d.scale))
        }
        Schema::Fixed(f) => format!("fixed `{}` of size {}", f.name.name(), f.size),
        Schema::Record(r) => format!("record `{}`", r.name.name()),
        Schema::Enum(e) => format!("enum `{}`", e.name.name()),
        Schema::Ref { name } => format!("`{}`", name.name()),
        Schema::Array(a) => format!("array of {}", describe(&a.items)),
        Schema::Map(m) => format!("map of {}", describe(&m.types)),
        Schema::Union(u) => format!(
            "union [{}]",
            u.variants()
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_through_their_confluent_names() {
        for level in CompatibilityLevel::ALL {
            let text = level.to_string();
            assert_eq!(text.parse::<CompatibilityLevel>(), Ok(level));
            assert_eq!(
                text.to_ascii_lowercase().parse::<CompatibilityLevel>(),
                Ok(level)
            );
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<CompatibilityLevel>(&json).unwrap(),
                level
            );
        }
    }

    #[test]
    fn names_are_confluents() {
        let names: Vec<String> = CompatibilityLevel::ALL
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "BACKWARD",
                "BACKWARD_TRANSITIVE",
                "FORWARD",
                "FORWARD_TRANSITIVE",
                "FULL",
                "FULL_TRANSITIVE",
                "NONE"
            ]
        );
        assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
    }

    #[test]
    fn parsing_is_case_insensitive_and_rejects_unknown_names() {
        assert_eq!(
            "Full_Transitive".parse::<CompatibilityLevel>(),
            Ok(CompatibilityLevel::FullTransitive)
        );
        assert_eq!(
            "none".parse::<CompatibilityLevel>(),
            Ok(CompatibilityLevel::None)
        );
        assert_eq!(
            "BACKWARDS".parse::<CompatibilityLevel>(),
            Err(UnknownLevel("BACKWARDS".to_string()))
        );
        assert!("".parse::<CompatibilityLevel>().is_err());
        assert!(serde_json::from_str::<CompatibilityLevel>("\"SIDEWAYS\"").is_err());
    }
}
