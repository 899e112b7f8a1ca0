//! The Confluent wire format around Avro bodies.

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;

use super::SchemaError;

/// First byte of every Confluent-framed value.
pub const WIRE_MAGIC: u8 = 0;

/// Writes values of one registered schema in the Confluent wire format.
///
/// For records with a fixed Rust shape (arrivals, ledger entries, quarantine records), via
/// serde straight to bytes: no `Value` tree is built.
pub struct Codec {
    id: u32,
    name: String,
    schema: &'static Schema,
    writer: GenericDatumWriter<'static>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl Codec {
    /// A codec for `schema`, registered as `id`.
    ///
    /// The schema is leaked: codecs are made once per topic at start-up and live as long as
    /// the process, and the writer borrows its schema.
    pub fn new(id: u32, name: &str, schema: Schema) -> Result<Codec, SchemaError> {
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let writer = GenericDatumWriter::builder(schema)
            .human_readable(false)
            .build()
            .map_err(|e| SchemaError::Invalid {
                name: name.to_string(),
                message: e.to_string(),
            })?;
        Ok(Codec {
            id,
            name: name.to_string(),
            schema,
            writer,
        })
    }

    /// The registry id written in every value's header.
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// Appends the wire header to `buf`.
    pub fn write_header(&self, buf: &mut Vec<u8>) {
        buf.push(WIRE_MAGIC);
        buf.extend_from_slice(&self.id.to_be_bytes());
    }

    /// Encodes `value` into `buf` (cleared first): header, then the Avro body.
    pub fn encode<T: Serialize>(&self, value: &T, buf: &mut Vec<u8>) -> Result<(), SchemaError> {
        buf.clear();
        self.write_header(buf);
        self.writer
            .write_ser(buf, value)
            .map_err(|e| SchemaError::Encode {
                schema: self.name.clone(),
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// Encodes `value` into a new buffer.
    pub fn to_vec<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, SchemaError> {
        let mut buf = Vec::with_capacity(256);
        self.encode(value, &mut buf)?;
        Ok(buf)
    }
}

/// Decodes one Avro body written with `writer`, resolved to `reader` (schema evolution per
/// the Avro specification's resolution rules).
pub fn decode_datum(
    writer: &Schema,
    reader: &Schema,
    body: &mut &[u8],
) -> Result<apache_avro::types::Value, apache_avro::Error> {
    GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .human_readable(false)
        .build()?
        .read_value(body)
}

/// Splits a Confluent-framed value into schema id and Avro body.
pub fn split_wire(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [WIRE_MAGIC, a, b, c, d, body @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Entry {
        name: String,
        note: Option<String>,
        count: i64,
    }

    #[test]
    fn encodes_confluent_framing_and_a_readable_body() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"E","fields":[{"name":"name","type":"string"},{"name":"note","type":["null","string"],"default":null},{"name":"count","type":"long"}]}"#,
        )
        .unwrap();
        let codec = Codec::new(7, "e", schema.clone()).unwrap();
        let bytes = codec
            .to_vec(&Entry {
                name: "a".into(),
                note: Some("n".into()),
                count: -3,
            })
            .unwrap();
        let (id, mut body) = split_wire(&bytes).unwrap();
        assert_eq!(id, 7);
        let value = decode_datum(&schema, &schema, &mut body).unwrap();
        let expected = apache_avro::types::Value::Record(vec![
            ("name".into(), apache_avro::types::Value::String("a".into())),
            (
                "note".into(),
                apache_avro::types::Value::Union(
                    1,
                    Box::new(apache_avro::types::Value::String("n".into())),
                ),
            ),
            ("count".into(), apache_avro::types::Value::Long(-3)),
        ]);
        assert_eq!(value, expected);
    }
}
