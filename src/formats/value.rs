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
}

impl FieldValue<'_> {
    /// An int, long or decimal as an unscaled integer (at the field's scale); `None` for
    /// other values. Sums and bounds compare on this, so decimals stay exact.
    pub fn as_unscaled(&self) -> Option<i128> {
        match *self {
            FieldValue::Int(i) => Some(i128::from(i)),
            FieldValue::Long(l) => Some(i128::from(l)),
            FieldValue::Decimal(d) => Some(d),
            FieldValue::Null | FieldValue::Str(_) | FieldValue::Date(_) => None,
        }
    }
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
