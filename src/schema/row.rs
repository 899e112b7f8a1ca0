//! Writing parsed records of a declarative layout as Avro, checked against the schema.
//!
//! Layouts are data, so their records have no Rust type to derive serde for. A [`RowPlan`]
//! is built once per (layout, schema) pair: it matches every schema field to a layout field,
//! checks their types agree, and fixes each field's encoding. Writing a record is then a
//! walk over the plan straight into the output buffer, with each value checked against its
//! schema type (range, precision) as it is written. A layout and a schema that disagree are
//! refused at start-up, not record by record.

use apache_avro::Schema;
use apache_avro::schema::{RecordSchema, UnionSchema};

use super::SchemaError;
use crate::formats::{Category, FieldType, FieldValue, Position};

/// Name of the provenance field every output schema carries.
const PROVENANCE: &str = "provenance";

/// How one schema field is written.
#[derive(Clone, Debug)]
struct Slot {
    name: String,
    source: Source,
    /// Union branch indices `(null, value)` when the schema field is nullable.
    nullable: Option<(u32, u32)>,
}

#[derive(Clone, Debug)]
enum Source {
    /// A layout field, by index, and how its value is written.
    Field(usize, Kind),
    /// A nullable schema field the layout does not fill.
    AlwaysNull,
    /// The provenance record, field by field.
    Provenance(Vec<ProvenanceField>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    String,
    Int,
    /// An `int` layout field written to a `long` schema field.
    IntAsLong,
    Long,
    /// Written in `width` bytes, the fewest that hold any value of the precision.
    Decimal {
        precision: usize,
        width: usize,
    },
    Date,
    /// A card number's token (`<name>_token`): 64 hex characters.
    PanToken,
    /// A card number's display form (`<name>_display`): first six, last four.
    PanDisplay,
}

/// Suffixes of the two schema fields a `pan` layout field is written as.
const PAN_TOKEN: &str = "_token";
const PAN_DISPLAY: &str = "_display";

#[derive(Clone, Copy, Debug)]
enum ProvenanceField {
    FileSha256,
    RawKey,
    RecordIndex,
    Line,
    ByteOffset,
    Layout,
}

/// The per-file part of provenance; the per-record part is the [`Position`].
#[derive(Clone, Copy, Debug)]
pub struct FileProvenance<'a> {
    pub file_sha256: &'a str,
    pub raw_key: &'a str,
    pub layout: &'a str,
}

/// A checked mapping from a layout's records to a schema's binary encoding.
#[derive(Clone, Debug)]
pub struct RowPlan {
    schema_name: String,
    slots: Vec<Slot>,
}

/// One record to write: the plan, its values and where it came from.
pub struct RowRef<'a, 'v> {
    pub values: &'a [FieldValue<'v>],
    pub position: Position,
    pub file: FileProvenance<'a>,
}

impl RowPlan {
    /// Checks `category`'s layout against `schema` and plans the encoding.
    pub fn new(category: &Category, schema: &Schema) -> Result<RowPlan, SchemaError> {
        let Schema::Record(record) = schema else {
            return Err(mismatch(category, "?", "the schema is not a record".into()));
        };
        let schema_name = record.name.fullname(None);
        let fail = |m: String| mismatch(category, &schema_name, m);
        let mut slots = Vec::with_capacity(record.fields.len());
        let mut used = vec![false; category.fields.len()];
        for field in &record.fields {
            let (inner, nullable) = strip_null(&field.schema).map_err(&fail)?;
            let source = if field.name == PROVENANCE {
                if nullable.is_some() {
                    return Err(fail("provenance must not be nullable".into()));
                }
                Source::Provenance(plan_provenance(inner).map_err(&fail)?)
            } else if let Some((index, kind)) = pan_part(category, &field.name) {
                used[index] = true;
                if inner != &Schema::String {
                    return Err(fail(format!(
                        "field {} of card number {} must be a string",
                        field.name, category.fields[index].name
                    )));
                }
                Source::Field(index, kind)
            } else if let Some(index) = category.fields.iter().position(|f| f.name == field.name) {
                used[index] = true;
                let spec = &category.fields[index];
                if !spec.required && nullable.is_none() {
                    return Err(fail(format!(
                        "field {} is optional in the layout but not nullable in the schema",
                        spec.name
                    )));
                }
                Source::Field(
                    index,
                    kind_for(&spec.ty, inner)
                        .map_err(|m| fail(format!("field {}: {m}", spec.name)))?,
                )
            } else if nullable.is_some() {
                Source::AlwaysNull
            } else {
                return Err(fail(format!(
                    "schema field {} is required but the layout has no such field",
                    field.name
                )));
            };
            slots.push(Slot {
                name: field.name.clone(),
                source,
                nullable,
            });
        }
        if !slots
            .iter()
            .any(|s| matches!(s.source, Source::Provenance(_)))
        {
            return Err(fail("the schema has no provenance field".into()));
        }
        if let Some(i) = used.iter().position(|u| !u) {
            let f = &category.fields[i];
            return Err(fail(if f.ty.is_tokenised() {
                format!(
                    "card number {} is not in the schema (as {}{PAN_TOKEN} and {}{PAN_DISPLAY})",
                    f.name, f.name, f.name
                )
            } else {
                format!("layout field {} is not in the schema", f.name)
            }));
        }
        for (i, f) in category.fields.iter().enumerate() {
            let has = |suffix: &str| {
                slots.iter().any(|s| {
                    s.name == format!("{}{suffix}", f.name)
                        && matches!(s.source, Source::Field(j, _) if j == i)
                })
            };
            if f.ty.is_tokenised() && !(has(PAN_TOKEN) && has(PAN_DISPLAY)) {
                return Err(fail(format!(
                    "card number {} needs both {}{PAN_TOKEN} and {}{PAN_DISPLAY} in the schema",
                    f.name, f.name, f.name
                )));
            }
        }
        Ok(RowPlan { schema_name, slots })
    }

    /// Appends the Avro body of `row` to `buf`. On error `buf` may hold a partial body;
    /// the caller truncates it.
    pub fn write(&self, row: &RowRef<'_, '_>, buf: &mut Vec<u8>) -> Result<(), SchemaError> {
        for slot in &self.slots {
            match &slot.source {
                Source::Field(index, kind) => {
                    let value = row.values[*index];
                    match (value, slot.nullable) {
                        (FieldValue::Null, Some((null, _))) => write_long(buf, i64::from(null)),
                        (FieldValue::Null, None) => {
                            return Err(self.encode_err(&slot.name, "null for a non-null field"));
                        }
                        (value, nullable) => {
                            if let Some((_, branch)) = nullable {
                                write_long(buf, i64::from(branch));
                            }
                            self.write_value(&slot.name, *kind, value, buf)?;
                        }
                    }
                }
                Source::AlwaysNull => {
                    let (null, _) = slot.nullable.expect("planned only for nullable fields");
                    write_long(buf, i64::from(null));
                }
                Source::Provenance(fields) => {
                    for f in fields {
                        match f {
                            ProvenanceField::FileSha256 => write_str(buf, row.file.file_sha256),
                            ProvenanceField::RawKey => write_str(buf, row.file.raw_key),
                            ProvenanceField::Layout => write_str(buf, row.file.layout),
                            ProvenanceField::RecordIndex => {
                                write_long(buf, row.position.record_index as i64)
                            }
                            ProvenanceField::Line => write_long(buf, row.position.line as i64),
                            ProvenanceField::ByteOffset => {
                                write_long(buf, row.position.byte_offset as i64)
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn write_value(
        &self,
        field: &str,
        kind: Kind,
        value: FieldValue<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<(), SchemaError> {
        match (kind, value) {
            (Kind::String, FieldValue::Str(s)) => write_str(buf, s),
            (Kind::Int, FieldValue::Int(i)) | (Kind::Date, FieldValue::Date(i)) => {
                write_long(buf, i64::from(i))
            }
            (Kind::IntAsLong, FieldValue::Int(i)) => write_long(buf, i64::from(i)),
            (Kind::Long, FieldValue::Long(l)) => write_long(buf, l),
            (Kind::PanToken, FieldValue::Pan(token)) => {
                let mut hex = [0u8; 64];
                token.write_token(&mut hex);
                write_long(buf, hex.len() as i64);
                buf.extend_from_slice(&hex);
            }
            (Kind::PanDisplay, FieldValue::Pan(token)) => write_str(buf, token.display()),
            (Kind::Decimal { precision, width }, FieldValue::Decimal(unscaled)) => {
                if unscaled.unsigned_abs() >= 10u128.pow(precision as u32) {
                    return Err(self.encode_err(
                        field,
                        &format!("{unscaled} (unscaled) has more than {precision} digits"),
                    ));
                }
                write_decimal(buf, unscaled, width);
            }
            (kind, value) => {
                return Err(self.encode_err(
                    field,
                    &format!("a {value:?} value cannot be written as {kind:?}"),
                ));
            }
        }
        Ok(())
    }

    fn encode_err(&self, field: &str, message: &str) -> SchemaError {
        SchemaError::Encode {
            schema: self.schema_name.clone(),
            message: format!("field {field}: {message}"),
        }
    }
}

/// The pan layout field a schema field `<name>_token` or `<name>_display` writes.
fn pan_part(category: &Category, schema_field: &str) -> Option<(usize, Kind)> {
    category.fields.iter().enumerate().find_map(|(i, f)| {
        if !f.ty.is_tokenised() {
            return None;
        }
        let rest = schema_field.strip_prefix(f.name.as_str())?;
        match rest {
            PAN_TOKEN => Some((i, Kind::PanToken)),
            PAN_DISPLAY => Some((i, Kind::PanDisplay)),
            _ => None,
        }
    })
}

fn mismatch(category: &Category, schema: &str, message: String) -> SchemaError {
    SchemaError::LayoutMismatch {
        layout: category.layout_id(),
        schema: schema.to_string(),
        message,
    }
}

/// Union indices `(null, value)` of a nullable field.
type NullBranches = Option<(u32, u32)>;

/// `["null", T]` or `[T, "null"]` → `(T, Some((null index, T index)))`; other types as is.
fn strip_null(schema: &Schema) -> Result<(&Schema, NullBranches), String> {
    let Schema::Union(union) = schema else {
        return Ok((schema, None));
    };
    let variants = UnionSchema::variants(union);
    match variants {
        [Schema::Null, t] => Ok((t, Some((0, 1)))),
        [t, Schema::Null] => Ok((t, Some((1, 0)))),
        _ => Err("only unions of null and one type are supported".into()),
    }
}

fn kind_for(ty: &FieldType, schema: &Schema) -> Result<Kind, String> {
    use apache_avro::schema::{DecimalSchema, InnerDecimalSchema};
    match (ty, schema) {
        (FieldType::String, Schema::String) => Ok(Kind::String),
        (FieldType::Int, Schema::Int) => Ok(Kind::Int),
        (FieldType::Int, Schema::Long) => Ok(Kind::IntAsLong),
        (FieldType::Long, Schema::Long) => Ok(Kind::Long),
        (FieldType::Date { .. }, Schema::Date) => Ok(Kind::Date),
        (
            FieldType::Decimal { scale },
            Schema::Decimal(DecimalSchema {
                precision,
                scale: schema_scale,
                inner: InnerDecimalSchema::Bytes,
            }),
        ) => {
            if *scale as usize != *schema_scale {
                Err(format!(
                    "the layout's scale is {scale}, the schema's {schema_scale}"
                ))
            } else if *precision > 38 {
                Err(format!("precision {precision} is above 38"))
            } else {
                Ok(Kind::Decimal {
                    precision: *precision,
                    width: decimal_width(*precision),
                })
            }
        }
        (FieldType::Pan | FieldType::AccountNumber, _) => Err(format!(
            "a card number is written as two string fields, <name>{PAN_TOKEN} and \
             <name>{PAN_DISPLAY}, never as itself"
        )),
        (ty, schema) => Err(format!(
            "layout type {} cannot be written as Avro {:?}",
            ty.describe(),
            apache_avro::schema::SchemaKind::from(schema)
        )),
    }
}

fn plan_provenance(schema: &Schema) -> Result<Vec<ProvenanceField>, String> {
    let Schema::Record(RecordSchema { fields, .. }) = schema else {
        return Err("provenance must be a record".into());
    };
    fields
        .iter()
        .map(|f| {
            let (field, expected) = match f.name.as_str() {
                "file_sha256" => (ProvenanceField::FileSha256, Schema::String),
                "raw_key" => (ProvenanceField::RawKey, Schema::String),
                "layout" => (ProvenanceField::Layout, Schema::String),
                "record_index" => (ProvenanceField::RecordIndex, Schema::Long),
                "line" => (ProvenanceField::Line, Schema::Long),
                "byte_offset" => (ProvenanceField::ByteOffset, Schema::Long),
                other => return Err(format!("unknown provenance field {other}")),
            };
            if f.schema != expected {
                return Err(format!("provenance field {} must be {expected:?}", f.name));
            }
            Ok(field)
        })
        .collect()
}

/// Avro `int`/`long`: zig-zag, then base-128 varint.
fn write_long(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// Avro `string`: length, then UTF-8 bytes.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    write_long(buf, s.len() as i64);
    buf.extend_from_slice(s.as_bytes());
}

/// Bytes needed for any unscaled value of `precision` digits in two's complement: the
/// smallest `n` with `2^(8n-1) - 1 >= 10^precision - 1`.
fn decimal_width(precision: usize) -> usize {
    (1..=16)
        .find(|n| (8 * n - 1) as f64 * std::f64::consts::LOG10_2 >= precision as f64)
        .unwrap_or(16)
}

/// Avro `decimal` on `bytes`: the unscaled value as big-endian two's complement, sign-
/// extended to `width` bytes. The Avro specification allows any length; a fixed width per
/// precision is what apache-avro's schema resolution accepts (it refuses shorter values
/// than the precision needs), and Java, Python and Go readers decode it the same.
fn write_decimal(buf: &mut Vec<u8>, unscaled: i128, width: usize) {
    let bytes = unscaled.to_be_bytes();
    write_long(buf, width as i64);
    buf.extend_from_slice(&bytes[16 - width..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Catalog;
    use crate::schema::contracts::Contracts;
    use apache_avro::types::Value;

    fn accounts() -> (Category, Schema) {
        let category = Catalog::builtin().unwrap().categories()[0].clone();
        let schema =
            Schema::parse_str(Contracts::builtin().get(&category.schema).unwrap()).unwrap();
        (category, schema)
    }

    fn decode(schema: &Schema, body: &[u8]) -> Vec<(String, Value)> {
        let mut reader = body;
        match crate::schema::decode_datum(schema, schema, &mut reader).unwrap() {
            Value::Record(fields) => {
                assert!(reader.is_empty(), "trailing bytes after the record");
                fields
            }
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn a_row_round_trips_through_an_independent_decoder() {
        let (category, schema) = accounts();
        let plan = RowPlan::new(&category, &schema).unwrap();
        let mut values = vec![FieldValue::Null; category.fields.len()];
        values[0] = FieldValue::Str("ACC-1");
        values[1] = FieldValue::Str("CUST-ü");
        let tokeniser = crate::tokenise::Tokeniser::for_tests();
        let pan = tokeniser.tokenise("4111111111111111").unwrap();
        values[2] = FieldValue::Pan(pan);
        values[3] = FieldValue::Int(1);
        values[8] = FieldValue::Date(20_757);
        values[10] = FieldValue::Decimal(500_000);
        values[12] = FieldValue::Decimal(-310);
        values[16] = FieldValue::Int(30);
        let row = RowRef {
            values: &values,
            position: Position {
                record_index: 4,
                line: 6,
                byte_offset: 1234,
            },
            file: FileProvenance {
                file_sha256: "ab",
                raw_key: "sha256/ab",
                layout: "card.accounts@1",
            },
        };
        let mut buf = Vec::new();
        plan.write(&row, &mut buf).unwrap();
        let fields = decode(&schema, &buf);
        let get = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("ReferenceNumber"), Value::String("ACC-1".into()));
        assert_eq!(get("CustomerId"), Value::String("CUST-ü".into()));
        assert_eq!(
            get("CardNumber_token"),
            Value::Union(1, Box::new(Value::String(pan.token())))
        );
        assert_eq!(
            get("CardNumber_display"),
            Value::Union(1, Box::new(Value::String("411111******1111".into())))
        );
        assert_eq!(
            get("CreditCardType"),
            Value::Union(1, Box::new(Value::Int(1)))
        );
        assert_eq!(get("ProductType"), Value::Union(0, Box::new(Value::Null)));
        assert_eq!(get("AccountCycleDate"), Value::Date(20_757));
        assert_eq!(get("DaysPastDue"), Value::Int(30));
        let Value::Decimal(d) = get("CurrentCreditLimit") else {
            panic!()
        };
        assert_eq!(
            Vec::<u8>::try_from(d).unwrap(),
            500_000i64.to_be_bytes().to_vec()
        );
        let Value::Decimal(d) = get("CycleEndingBalance") else {
            panic!()
        };
        assert_eq!(
            Vec::<u8>::try_from(d).unwrap(),
            (-310i64).to_be_bytes().to_vec()
        );
        let Value::Record(p) = get("provenance") else {
            panic!()
        };
        assert_eq!(p[2], ("record_index".into(), Value::Long(4)));
        assert_eq!(p[4], ("byte_offset".into(), Value::Long(1234)));
    }

    #[test]
    fn values_outside_the_schema_are_refused() {
        let (category, schema) = accounts();
        let plan = RowPlan::new(&category, &schema).unwrap();
        let mut values = vec![FieldValue::Null; category.fields.len()];
        values[0] = FieldValue::Str("A");
        values[1] = FieldValue::Str("C");
        values[8] = FieldValue::Date(1);
        values[10] = FieldValue::Decimal(10i128.pow(18));
        values[12] = FieldValue::Decimal(0);
        values[16] = FieldValue::Int(0);
        let row = RowRef {
            values: &values,
            position: Position::default(),
            file: FileProvenance {
                file_sha256: "",
                raw_key: "",
                layout: "",
            },
        };
        let err = plan.write(&row, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains("CurrentCreditLimit") && err.contains("18 digits"),
            "{err}"
        );
    }

    #[test]
    fn a_layout_that_disagrees_with_its_schema_is_refused() {
        let (mut category, schema) = accounts();
        category.fields[10].ty = FieldType::Decimal { scale: 3 };
        let err = RowPlan::new(&category, &schema).unwrap_err().to_string();
        assert!(
            err.contains("CurrentCreditLimit") && err.contains("scale"),
            "{err}"
        );

        let (mut category, schema) = accounts();
        category.fields[0].required = false;
        let err = RowPlan::new(&category, &schema).unwrap_err().to_string();
        assert!(err.contains("not nullable"), "{err}");

        // A card number must be written as its token and display form, never as itself.
        let (category, _) = accounts();
        let text = Contracts::builtin()
            .get(&category.schema)
            .unwrap()
            .replace("CardNumber_display", "CardNumber");
        let err = RowPlan::new(&category, &Schema::parse_str(&text).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CardNumber") && err.contains("never as itself"),
            "{err}"
        );
    }

    #[test]
    fn zigzag_and_decimal_encodings_match_the_spec() {
        let enc = |v: i64| {
            let mut b = Vec::new();
            write_long(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(-1), [0x01]);
        assert_eq!(enc(1), [0x02]);
        assert_eq!(enc(-64), [0x7F]);
        assert_eq!(enc(64), [0x80, 0x01]);
        let dec = |v: i128, width: usize| {
            let mut b = Vec::new();
            write_decimal(&mut b, v, width);
            b
        };
        assert_eq!(dec(0, 1), [0x02, 0x00]);
        assert_eq!(dec(128, 2), [0x04, 0x00, 0x80]);
        assert_eq!(dec(-129, 2), [0x04, 0xFF, 0x7F]);
        assert_eq!(dec(-1, 3), [0x06, 0xFF, 0xFF, 0xFF]);
        // The widths apache-avro's resolution expects: 18 digits need 8 bytes, 38 need 16.
        assert_eq!(decimal_width(2), 1);
        assert_eq!(decimal_width(18), 8);
        assert_eq!(decimal_width(19), 9);
        assert_eq!(decimal_width(38), 16);
    }
}
