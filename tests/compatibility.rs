//! The compatibility table: for each Confluent level, schema changes and the verdict the
//! Avro 1.11 specification's "Schema Resolution" rules give. Each row cites the rule that
//! decides it. "Backward" reads old data with the new schema; "forward" reads new data
//! with the old schema.

use apache_avro::Schema;
use credstream::schema::compat::{self, CompatibilityLevel};

use CompatibilityLevel::{
    Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive, None,
};

/// A record `credit.Account` with the given fields (JSON text).
macro_rules! account {
    ($($field:expr),*) => {
        concat!(
            r#"{"type":"record","name":"Account","namespace":"credit","fields":["#,
            r#"{"name":"id","type":"string"}"#,
            $(",", $field,)*
            "]}"
        )
    };
}

/// `Account` with one more field `f` of the given type (JSON text).
macro_rules! with_f {
    ($type:literal) => {
        account!(concat!(r#"{"name":"f","type":"#, $type, "}"))
    };
}

/// (name, level, existing versions oldest first, candidate, compatible?)
type Row = (
    &'static str,
    CompatibilityLevel,
    &'static [&'static str],
    &'static str,
    bool,
);

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // ---- Adding and removing fields -------------------------------------------------
    // Records: a reader field absent from the writer takes the reader's default.
    ("add field with default, backward", Backward, &[account!()], account!(r#"{"name":"limit","type":"long","default":0}"#), true),
    // Records: a writer field absent from the reader is ignored.
    ("add field with default, forward", Forward, &[account!()], account!(r#"{"name":"limit","type":"long","default":0}"#), true),
    // Records: both of the above.
    ("add field with default, full", Full, &[account!()], account!(r#"{"name":"limit","type":"long","default":0}"#), true),
    // Records: a reader field without default, absent from the writer, is an error.
    ("add field without default, backward", Backward, &[account!()], account!(r#"{"name":"limit","type":"long"}"#), false),
    // Records: a writer field absent from the reader is ignored.
    ("add field without default, forward", Forward, &[account!()], account!(r#"{"name":"limit","type":"long"}"#), true),
    // Records: the backward half fails (reader field without default).
    ("add field without default, full", Full, &[account!()], account!(r#"{"name":"limit","type":"long"}"#), false),
    // Records: the old reader's field is absent from the new writer; its default is used.
    ("remove field with default, forward", Forward, &[account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(), true),
    // Records: the old writer's extra field is ignored by the new reader.
    ("remove field with default, backward", Backward, &[account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(), true),
    // Records: ignored one way, default the other.
    ("remove field with default, full", Full, &[account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(), true),
    // Records: the old reader's field has no default and the new writer lacks it: error.
    ("remove field without default, forward", Forward, &[account!(r#"{"name":"limit","type":"long"}"#)], account!(), false),
    // Records: the old writer's extra field is ignored by the new reader.
    ("remove field without default, backward", Backward, &[account!(r#"{"name":"limit","type":"long"}"#)], account!(), true),
    // Records: the forward half fails (reader field without default).
    ("remove field without default, full", Full, &[account!(r#"{"name":"limit","type":"long"}"#)], account!(), false),
    // Aliases: a reader field's alias names the writer's field, so they resolve.
    ("rename field with reader alias, backward", Backward, &[account!(r#"{"name":"limit","type":"long"}"#)], account!(r#"{"name":"credit_limit","type":"long","aliases":["limit"]}"#), true),
    // Aliases are the reader's only: the old reader's `limit` (no default) finds no writer field.
    ("rename field with reader alias, forward", Forward, &[account!(r#"{"name":"limit","type":"long"}"#)], account!(r#"{"name":"credit_limit","type":"long","aliases":["limit"]}"#), false),
    // Records: without an alias the renamed reader field has no writer field and no default.
    ("rename field without alias, backward", Backward, &[account!(r#"{"name":"limit","type":"long"}"#)], account!(r#"{"name":"credit_limit","type":"long"}"#), false),

    // ---- Promotions -------------------------------------------------------------------
    // Promotion: int is promotable to long.
    ("promote int to long, backward", Backward, &[with_f!(r#""int""#)], with_f!(r#""long""#), true),
    // No rule promotes long to int.
    ("promote int to long, forward", Forward, &[with_f!(r#""int""#)], with_f!(r#""long""#), false),
    // The forward half fails: no rule promotes long to int.
    ("promote int to long, full", Full, &[with_f!(r#""int""#)], with_f!(r#""long""#), false),
    // No rule promotes long to int.
    ("narrow long to int, backward", Backward, &[with_f!(r#""long""#)], with_f!(r#""int""#), false),
    // Promotion: the new writer's int is promotable to the old reader's long.
    ("narrow long to int, forward", Forward, &[with_f!(r#""long""#)], with_f!(r#""int""#), true),
    // Promotion: int is promotable to float.
    ("promote int to float, backward", Backward, &[with_f!(r#""int""#)], with_f!(r#""float""#), true),
    // Promotion: int is promotable to double.
    ("promote int to double, backward", Backward, &[with_f!(r#""int""#)], with_f!(r#""double""#), true),
    // Promotion: long is promotable to float.
    ("promote long to float, backward", Backward, &[with_f!(r#""long""#)], with_f!(r#""float""#), true),
    // Promotion: long is promotable to double.
    ("promote long to double, backward", Backward, &[with_f!(r#""long""#)], with_f!(r#""double""#), true),
    // Promotion: float is promotable to double.
    ("promote float to double, backward", Backward, &[with_f!(r#""float""#)], with_f!(r#""double""#), true),
    // No rule promotes double to float.
    ("narrow double to float, backward", Backward, &[with_f!(r#""double""#)], with_f!(r#""float""#), false),
    // No rule promotes float to long.
    ("float to long, backward", Backward, &[with_f!(r#""float""#)], with_f!(r#""long""#), false),
    // No rule promotes int to string.
    ("int to string, backward", Backward, &[with_f!(r#""int""#)], with_f!(r#""string""#), false),
    // No rule promotes boolean to int.
    ("boolean to int, backward", Backward, &[with_f!(r#""boolean""#)], with_f!(r#""int""#), false),
    // Promotion: string is promotable to bytes and bytes to string.
    ("string to bytes, full", Full, &[with_f!(r#""string""#)], with_f!(r#""bytes""#), true),
    // Promotion: bytes is promotable to string and string to bytes.
    ("bytes to string, full", Full, &[with_f!(r#""bytes""#)], with_f!(r#""string""#), true),

    // ---- Enums --------------------------------------------------------------------------
    // Enums: every old symbol is in the new reader's enum.
    ("add enum symbol, backward", Backward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"]}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"]}"#), true),
    // Enums: the new symbol C is not in the old reader's enum, which has no default: error.
    ("add enum symbol, forward", Forward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"]}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"]}"#), false),
    // Enums: the forward half fails (no reader default).
    ("add enum symbol, full", Full, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"]}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"]}"#), false),
    // Enums: an unknown symbol takes the old reader's enum default.
    ("add enum symbol, forward, reader default", Forward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"],"default":"A"}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"],"default":"A"}"#), true),
    // Enums: both ways; the old reader's default covers C.
    ("add enum symbol, full, reader default", Full, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"],"default":"A"}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"],"default":"A"}"#), true),
    // Enums: old data may hold C, which the new reader lacks and has no default for: error.
    ("remove enum symbol, backward", Backward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"]}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"]}"#), false),
    // Enums: C takes the new reader's enum default.
    ("remove enum symbol, backward, reader default", Backward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"]}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"],"default":"A"}"#), true),
    // Enums: every new symbol is in the old reader's enum.
    ("remove enum symbol, forward", Forward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B","C"]}"#)], with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"]}"#), true),
    // Matching: enums match only if their (unqualified) names match.
    ("rename enum without alias, backward", Backward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"]}"#)], with_f!(r#"{"type":"enum","name":"State","symbols":["A","B"]}"#), false),
    // Aliases: the reader's enum alias renames the writer's enum.
    ("rename enum with alias, backward", Backward, &[with_f!(r#"{"type":"enum","name":"Status","symbols":["A","B"]}"#)], with_f!(r#"{"type":"enum","name":"State","aliases":["Status"],"symbols":["A","B"]}"#), true),

    // ---- Unions -------------------------------------------------------------------------
    // Reader union, writer not: the first matching reader branch (string) resolves it.
    ("make field nullable, backward", Backward, &[with_f!(r#""string""#)], account!(r#"{"name":"f","type":["null","string"],"default":null}"#), true),
    // Writer union, reader not: the writer's null branch does not match the reader's string.
    ("make field nullable, forward", Forward, &[with_f!(r#""string""#)], account!(r#"{"name":"f","type":["null","string"],"default":null}"#), false),
    // The forward half fails (writer's null branch).
    ("make field nullable, full", Full, &[with_f!(r#""string""#)], account!(r#"{"name":"f","type":["null","string"],"default":null}"#), false),
    // Both unions: the old writer's long branch matches no branch of the new reader's union.
    ("narrow union, backward", Backward, &[with_f!(r#"["null","string","long"]"#)], with_f!(r#"["null","string"]"#), false),
    // Both unions: each new branch matches one in the old reader's union.
    ("narrow union, forward", Forward, &[with_f!(r#"["null","string","long"]"#)], with_f!(r#"["null","string"]"#), true),
    // Both unions: each old branch matches one in the new reader's union.
    ("widen union, backward", Backward, &[with_f!(r#"["null","string"]"#)], with_f!(r#"["null","string","long"]"#), true),
    // Both unions: branches match by type, not by position.
    ("reorder union, full", Full, &[with_f!(r#"["null","string"]"#)], with_f!(r#"["string","null"]"#), true),
    // Reader union, writer not: no branch of [null, long] matches string.
    ("union without the written type, backward", Backward, &[with_f!(r#""string""#)], with_f!(r#"["null","long"]"#), false),
    // Writer union [int, long] vs long: each branch promotes; long as writer matches the long branch.
    ("union of int and long to long, full", Full, &[with_f!(r#"["int","long"]"#)], with_f!(r#""long""#), true),

    // ---- Named types --------------------------------------------------------------------
    // Matching: records match only if their (unqualified) names match.
    ("rename record without alias, backward", Backward, &[r#"{"type":"record","name":"Account","fields":[{"name":"id","type":"string"}]}"#], r#"{"type":"record","name":"Facility","fields":[{"name":"id","type":"string"}]}"#, false),
    // Aliases: the reader's record alias renames the writer's record.
    ("rename record with alias, backward", Backward, &[r#"{"type":"record","name":"Account","fields":[{"name":"id","type":"string"}]}"#], r#"{"type":"record","name":"Facility","aliases":["Account"],"fields":[{"name":"id","type":"string"}]}"#, true),
    // Aliases are the reader's only: the old reader `Account` has no alias `Facility`.
    ("rename record with alias, forward", Forward, &[r#"{"type":"record","name":"Account","fields":[{"name":"id","type":"string"}]}"#], r#"{"type":"record","name":"Facility","aliases":["Account"],"fields":[{"name":"id","type":"string"}]}"#, false),
    // Matching: names compare unqualified, so a new namespace alone still matches.
    ("change record namespace, full", Full, &[r#"{"type":"record","name":"Account","namespace":"a","fields":[{"name":"id","type":"string"}]}"#], r#"{"type":"record","name":"Account","namespace":"b","fields":[{"name":"id","type":"string"}]}"#, true),
    // Matching: fixed match only if sizes and names match.
    ("change fixed size, backward", Backward, &[with_f!(r#"{"type":"fixed","name":"Hash","size":16}"#)], with_f!(r#"{"type":"fixed","name":"Hash","size":32}"#), false),
    // Matching: same name and size.
    ("same fixed, full", Full, &[with_f!(r#"{"type":"fixed","name":"Hash","size":16}"#)], with_f!(r#"{"type":"fixed","name":"Hash","size":16}"#), true),
    // Aliases: the reader's fixed alias renames the writer's fixed; sizes match.
    ("rename fixed with alias, backward", Backward, &[with_f!(r#"{"type":"fixed","name":"Hash","size":16}"#)], with_f!(r#"{"type":"fixed","name":"Digest","aliases":["Hash"],"size":16}"#), true),

    // ---- Nesting --------------------------------------------------------------------------
    // Records resolve recursively: the nested reader field `zip` has no default.
    ("nested record field without default, backward", Backward, &[with_f!(r#"{"type":"record","name":"Address","fields":[{"name":"street","type":"string"}]}"#)], with_f!(r#"{"type":"record","name":"Address","fields":[{"name":"street","type":"string"},{"name":"zip","type":"string"}]}"#), false),
    // Records resolve recursively: the nested reader field `zip` takes its default.
    ("nested record field with default, backward", Backward, &[with_f!(r#"{"type":"record","name":"Address","fields":[{"name":"street","type":"string"}]}"#)], with_f!(r#"{"type":"record","name":"Address","fields":[{"name":"street","type":"string"},{"name":"zip","type":"string","default":""}]}"#), true),
    // Records resolve recursively; no rule promotes the nested long to int.
    ("nested int to long, forward", Forward, &[with_f!(r#"{"type":"record","name":"Address","fields":[{"name":"number","type":"int"}]}"#)], with_f!(r#"{"type":"record","name":"Address","fields":[{"name":"number","type":"long"}]}"#), false),
    // Records match by name wherever the type is defined; `home` resolves against the same Address.
    ("named type used by reference, backward", Backward, &[account!(r#"{"name":"home","type":{"type":"record","name":"Address","fields":[{"name":"street","type":"string"}]}}"#)], account!(r#"{"name":"previous","type":["null",{"type":"record","name":"Address","fields":[{"name":"street","type":"string"}]}],"default":null}"#, r#"{"name":"home","type":"Address"}"#), true),
    // The same, reversed: the old reader ignores `previous` and reads `home`.
    ("named type used by reference, forward", Forward, &[account!(r#"{"name":"home","type":{"type":"record","name":"Address","fields":[{"name":"street","type":"string"}]}}"#)], account!(r#"{"name":"previous","type":["null",{"type":"record","name":"Address","fields":[{"name":"street","type":"string"}]}],"default":null}"#, r#"{"name":"home","type":"Address"}"#), true),
    // Records resolve recursively, also a recursive type; the new field has a default.
    ("recursive record field with default, backward", Backward, &[r#"{"type":"record","name":"Node","fields":[{"name":"value","type":"int"},{"name":"next","type":["null","Node"]}]}"#], r#"{"type":"record","name":"Node","fields":[{"name":"value","type":"int"},{"name":"label","type":"string","default":""},{"name":"next","type":["null","Node"]}]}"#, true),
    // Records resolve recursively, also a recursive type; the new field has no default.
    ("recursive record field without default, backward", Backward, &[r#"{"type":"record","name":"Node","fields":[{"name":"value","type":"int"},{"name":"next","type":["null","Node"]}]}"#], r#"{"type":"record","name":"Node","fields":[{"name":"value","type":"int"},{"name":"label","type":"string"},{"name":"next","type":["null","Node"]}]}"#, false),
    // Arrays: item schemas resolve recursively; int is promotable to long.
    ("array item int to long, backward", Backward, &[with_f!(r#"{"type":"array","items":"int"}"#)], with_f!(r#"{"type":"array","items":"long"}"#), true),
    // Arrays: item schemas resolve recursively; no rule promotes long to int.
    ("array item int to long, forward", Forward, &[with_f!(r#"{"type":"array","items":"int"}"#)], with_f!(r#"{"type":"array","items":"long"}"#), false),
    // Maps: value schemas resolve recursively; float is promotable to double.
    ("map value float to double, backward", Backward, &[with_f!(r#"{"type":"map","values":"float"}"#)], with_f!(r#"{"type":"map","values":"double"}"#), true),
    // Arrays, then records: the item record's new field has no default.
    ("array item record field without default, backward", Backward, &[with_f!(r#"{"type":"array","items":{"type":"record","name":"Line","fields":[{"name":"amount","type":"long"}]}}"#)], with_f!(r#"{"type":"array","items":{"type":"record","name":"Line","fields":[{"name":"amount","type":"long"},{"name":"currency","type":"string"}]}}"#), false),

    // ---- Logical types ------------------------------------------------------------------
    // Logical types: resolution uses the underlying type; date is an int.
    ("date to int, full", Full, &[with_f!(r#"{"type":"int","logicalType":"date"}"#)], with_f!(r#""int""#), true),
    // Logical types: timestamp-millis is a long.
    ("timestamp-millis to long, full", Full, &[with_f!(r#"{"type":"long","logicalType":"timestamp-millis"}"#)], with_f!(r#""long""#), true),
    // Logical types: a long (timestamp-millis) is not promotable to an int (date).
    ("timestamp-millis to date, backward", Backward, &[with_f!(r#"{"type":"long","logicalType":"timestamp-millis"}"#)], with_f!(r#"{"type":"int","logicalType":"date"}"#), false),
    // Logical types: an int (date) is promotable to a long (timestamp-millis).
    ("date to timestamp-millis, backward", Backward, &[with_f!(r#"{"type":"int","logicalType":"date"}"#)], with_f!(r#"{"type":"long","logicalType":"timestamp-millis"}"#), true),
    // Decimal: two decimals match only if their scales and precisions match.
    ("decimal precision change, backward", Backward, &[with_f!(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#)], with_f!(r#"{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}"#), false),
    // Decimal: same precision and scale on bytes.
    ("same decimal, full", Full, &[with_f!(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#)], with_f!(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#), true),
    // Logical types: a decimal and plain bytes resolve on the underlying bytes.
    ("decimal to bytes, full", Full, &[with_f!(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#)], with_f!(r#""bytes""#), true),
    // Logical types: the underlying bytes and fixed do not match, whatever the decimal says.
    ("decimal from bytes to fixed, backward", Backward, &[with_f!(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#)], with_f!(r#"{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":10,"scale":2}"#), false),
    // Logical types: the underlying fixed must match in size.
    ("decimal fixed size change, backward", Backward, &[with_f!(r#"{"type":"fixed","name":"Money","size":16,"logicalType":"decimal","precision":10,"scale":2}"#)], with_f!(r#"{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":10,"scale":2}"#), false),
    // Logical types: uuid on string vs uuid on fixed; string and fixed do not match.
    ("uuid from string to fixed, backward", Backward, &[with_f!(r#"{"type":"string","logicalType":"uuid"}"#)], with_f!(r#"{"type":"fixed","name":"Id","size":16,"logicalType":"uuid"}"#), false),
    // Logical types: a uuid on string is a string.
    ("uuid to string, full", Full, &[with_f!(r#"{"type":"string","logicalType":"uuid"}"#)], with_f!(r#""string""#), true),

    // ---- Transitive levels --------------------------------------------------------------
    // Records: reads v2 (has `limit`), but v1 lacks `limit` and the new field has no default.
    ("history: new field loses its default, backward transitive", BackwardTransitive, &[account!(), account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(r#"{"name":"limit","type":"long"}"#), false),
    // Records: only v2 is checked, which has `limit`.
    ("history: new field loses its default, backward", Backward, &[account!(), account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(r#"{"name":"limit","type":"long"}"#), true),
    // Records: v2 has a default for the dropped `limit`, v1 (as reader) has none.
    ("history: field dropped, forward transitive", ForwardTransitive, &[account!(r#"{"name":"limit","type":"long"}"#), account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(), false),
    // Records: only v2 is checked; its default covers the dropped `limit`.
    ("history: field dropped, forward", Forward, &[account!(r#"{"name":"limit","type":"long"}"#), account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(), true),
    // Promotion: v1's `f` was an int; a string `f` reads neither way, though v2 has no `f`.
    ("history: field comes back as string, full transitive", FullTransitive, &[with_f!(r#""int""#), account!()], account!(r#"{"name":"f","type":"string","default":""}"#), false),
    // Records: against v2 alone, `f` is new with a default one way and ignored the other.
    ("history: field comes back as string, full", Full, &[with_f!(r#""int""#), account!()], account!(r#"{"name":"f","type":"string","default":""}"#), true),
    // Records and promotion: `f` reads v1's int as long and takes its default for v2.
    ("history: field comes back as long, backward transitive", BackwardTransitive, &[with_f!(r#""int""#), account!()], account!(r#"{"name":"f","type":"long","default":0}"#), true),
    // Records: every version has defaults for what the new writer drops.
    ("history: defaults throughout, forward transitive", ForwardTransitive, &[account!(r#"{"name":"limit","type":"long","default":0}"#), account!(r#"{"name":"limit","type":"long","default":0}"#, r#"{"name":"note","type":"string","default":""}"#)], account!(), true),
    // Records: fields added with defaults, read both ways against every version.
    ("history: fields added with defaults, full transitive", FullTransitive, &[account!(), account!(r#"{"name":"limit","type":"long","default":0}"#)], account!(r#"{"name":"limit","type":"long","default":0}"#, r#"{"name":"note","type":"string","default":""}"#), true),

    // ---- NONE and first versions ----------------------------------------------------------
    // NONE checks nothing.
    ("record to string, none", None, &[account!()], r#""string""#, true),
    // NONE checks nothing, against no version.
    ("incompatible history, none", None, &[with_f!(r#""long""#), with_f!(r#""string""#)], with_f!(r#""int""#), true),
    // No version yet: nothing to read or be read by.
    ("first version, backward", Backward, &[], account!(), true),
    // No version yet: nothing to read or be read by.
    ("first version, full transitive", FullTransitive, &[], account!(), true),
    // Same schema: every rule matches itself.
    ("same schema, full transitive", FullTransitive, &[account!(), account!()], account!(), true),
];

fn parse(name: &str, text: &str) -> Schema {
    Schema::parse_str(text).unwrap_or_else(|e| panic!("row `{name}`: bad schema {text}: {e}"))
}

#[test]
fn the_compatibility_table_holds() {
    assert!(TABLE.len() >= 93, "the table lost rows: {}", TABLE.len());
    let mut mismatches = Vec::new();
    for &(name, level, existing, candidate, compatible) in TABLE {
        let existing: Vec<Schema> = existing.iter().map(|s| parse(name, s)).collect();
        let candidate = parse(name, candidate);
        let problems = compat::check(level, &candidate, &existing);
        if problems.is_empty() != compatible {
            mismatches.push(format!(
                "`{name}` ({level}): expected {}, got {}",
                if compatible {
                    "compatible"
                } else {
                    "incompatible"
                },
                if problems.is_empty() {
                    "compatible".to_string()
                } else {
                    format!("incompatible: {}", problems.join("; "))
                }
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} rows disagree:\n{}",
        mismatches.len(),
        TABLE.len(),
        mismatches.join("\n")
    );
}

#[test]
fn messages_name_the_version_and_the_direction() {
    let existing = [
        parse("v1", account!()),
        parse(
            "v2",
            account!(r#"{"name":"limit","type":"long","default":0}"#),
        ),
    ];
    let candidate = parse("new", account!(r#"{"name":"limit","type":"long"}"#));
    let problems = compat::check(BackwardTransitive, &candidate, &existing);
    assert_eq!(
        problems,
        [
            "the new schema (reader) cannot read data written with version 1: field `limit` is missing from the writer's schema and has no default in the reader's"
        ]
    );

    let old = [parse("v1", with_f!(r#"["null","string","long"]"#))];
    let new = parse("new", with_f!(r#"["null","string"]"#));
    assert_eq!(
        compat::check(Full, &new, &old),
        [
            "the new schema (reader) cannot read data written with the existing version: at `f`, the reader's union [null, string] has no branch for the writer's long"
        ]
    );
}
