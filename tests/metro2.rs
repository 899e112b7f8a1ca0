//! Parity of the Metro 2 parser with outside references: moov-io/metro2's JSON for the same
//! files, and a CFPB sample file.
//!
//! Values are compared, not names: each table maps a moov JSON name to our field. moov leaves
//! out zero and empty values, so a name the JSON lacks must be zero or empty here, and a name
//! the JSON has that no table knows is itself a mismatch. Every mismatch is reported at once.

use chrono::{NaiveDate, NaiveDateTime};
use credstream::formats::DriftClass;
use credstream::formats::metro2::{
    BaseRecord, BaseSegment, Framing, Header, J1, J2, K1, K2, K3, K4, L1, Metro2File, N1, Trailer,
    TrailerDifference, parse_data_record, parse_metro2, reconcile,
};
use serde_json::Value;

/// Reads a reference file; a missing one fails the test, it never skips it.
fn reference(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/metro2/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("reference file {path} is required and unreadable: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&reference(name)).expect("the reference JSON parses")
}

/// One of our values, in a form a JSON value compares with.
#[derive(Debug, PartialEq)]
enum Val {
    Text(String),
    Int(u64),
    Date(Option<NaiveDate>),
    Time(Option<NaiveDateTime>),
}

fn t(s: &str) -> Val {
    Val::Text(s.to_owned())
}

fn n(i: u64) -> Val {
    Val::Int(i)
}

/// A code or identifier we keep as text but moov reads as a number.
fn code(s: &str) -> Val {
    Val::Int(if s.is_empty() {
        0
    } else {
        s.parse().unwrap_or(u64::MAX)
    })
}

type Table<T> = Vec<(&'static str, fn(&T) -> Val)>;

/// Our value as moov would write it, from the JSON value (absent: zero or empty).
fn expected(ours: &Val, theirs: Option<&Value>) -> Option<Val> {
    Some(match (ours, theirs) {
        (Val::Text(_), None) => Val::Text(String::new()),
        (Val::Int(_), None) => Val::Int(0),
        (Val::Date(_), None) => Val::Date(None),
        (Val::Time(_), None) => Val::Time(None),
        (Val::Text(_), Some(Value::String(s))) => Val::Text(s.clone()),
        (Val::Int(_), Some(v)) => Val::Int(v.as_u64()?),
        (Val::Date(_), Some(Value::String(s))) => {
            let time = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").ok()?;
            Val::Date(Some(time.date()))
        }
        (Val::Time(_), Some(Value::String(s))) => Val::Time(Some(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").ok()?,
        )),
        _ => return None,
    })
}

/// Compares `ours` with the JSON object `theirs` through `table`; returns fields compared.
fn compare<T>(
    what: &str,
    ours: &T,
    theirs: &Value,
    table: &Table<T>,
    mismatches: &mut Vec<String>,
) -> usize {
    let object = theirs.as_object().expect("a JSON object");
    for key in object.keys() {
        if !table.iter().any(|(name, _)| name == key) {
            mismatches.push(format!("{what}.{key}: no field of ours is mapped to it"));
        }
    }
    for (name, get) in table {
        let mine = get(ours);
        let want = expected(&mine, object.get(*name));
        if want.as_ref() != Some(&mine) {
            mismatches.push(format!(
                "{what}.{name}: moov {:?}, ours {mine:?}",
                object.get(*name)
            ));
        }
    }
    table.len()
}

fn header_table() -> Table<Header> {
    vec![
        ("blockDescriptorWord", |h| {
            n(h.block_descriptor_word.unwrap_or(0).into())
        }),
        ("recordDescriptorWord", |h| {
            n(h.record_descriptor_word.into())
        }),
        // The parser finds the header by this identifier.
        ("recordIdentifier", |_| t("HEADER")),
        ("cycleIdentifier", |h| t(&h.cycle_identifier)),
        ("innovisProgramIdentifier", |h| {
            t(&h.innovis_program_identifier)
        }),
        ("equifaxProgramIdentifier", |h| {
            t(&h.equifax_program_identifier)
        }),
        ("experianProgramIdentifier", |h| {
            t(&h.experian_program_identifier)
        }),
        ("transUnionProgramIdentifier", |h| {
            t(&h.transunion_program_identifier)
        }),
        ("activityDate", |h| Val::Date(h.activity_date)),
        ("dateCreated", |h| Val::Date(h.date_created)),
        ("programDate", |h| Val::Date(h.program_date)),
        ("programRevisionDate", |h| {
            Val::Date(h.program_revision_date)
        }),
        ("reporterName", |h| t(&h.reporter_name)),
        ("reporterAddress", |h| t(&h.reporter_address)),
        ("reporterTelephoneNumber", |h| {
            code(&h.reporter_telephone_number)
        }),
        ("softwareVendorName", |h| t(&h.software_vendor_name)),
        ("softwareVersionNumber", |h| t(&h.software_version_number)),
        ("prbcProgramIdentifier", |h| t(&h.prbc_program_identifier)),
    ]
}

fn base_table() -> Table<BaseRecord<'static>> {
    fn b<'r>(r: &'r BaseRecord<'static>) -> &'r BaseSegment<'static> {
        &r.base
    }
    vec![
        ("blockDescriptorWord", |r| {
            n(r.block_descriptor_word.unwrap_or(0).into())
        }),
        ("recordDescriptorWord", |r| {
            n(b(r).record_descriptor_word.into())
        }),
        ("processingIndicator", |r| code(&b(r).processing_indicator)),
        ("timeStamp", |r| Val::Time(b(r).time_stamp)),
        ("correctionIndicator", |r| code(&b(r).correction_indicator)),
        ("identificationNumber", |r| t(&b(r).identification_number)),
        ("cycleIdentifier", |r| t(&b(r).cycle_identifier)),
        (
            "consumerAccountNumber",
            |r| t(&b(r).consumer_account_number),
        ),
        ("portfolioType", |r| t(&b(r).portfolio_type)),
        ("accountType", |r| t(&b(r).account_type)),
        ("dateOpened", |r| Val::Date(b(r).date_opened)),
        ("creditLimit", |r| n(b(r).credit_limit)),
        ("highestCredit", |r| n(b(r).highest_credit)),
        ("termsDuration", |r| t(&b(r).terms_duration)),
        ("termsFrequency", |r| t(&b(r).terms_frequency)),
        ("scheduledMonthlyPaymentAmount", |r| {
            n(b(r).scheduled_monthly_payment)
        }),
        ("actualPaymentAmount", |r| n(b(r).actual_payment_amount)),
        ("accountStatus", |r| t(&b(r).account_status)),
        ("paymentRating", |r| t(&b(r).payment_rating)),
        (
            "paymentHistoryProfile",
            |r| t(&b(r).payment_history_profile),
        ),
        ("specialComment", |r| t(&b(r).special_comment)),
        ("complianceConditionCode", |r| {
            t(&b(r).compliance_condition_code)
        }),
        ("currentBalance", |r| n(b(r).current_balance)),
        ("amountPastDue", |r| n(b(r).amount_past_due)),
        ("originalChargeOffAmount", |r| {
            n(b(r).original_charge_off_amount)
        }),
        ("dateAccountInformation", |r| {
            Val::Date(b(r).date_of_account_information)
        }),
        ("dateFirstDelinquency", |r| {
            Val::Date(b(r).date_of_first_delinquency)
        }),
        ("dateClosed", |r| Val::Date(b(r).date_closed)),
        ("dateLastPayment", |r| Val::Date(b(r).date_of_last_payment)),
        (
            "interestTypeIndicator",
            |r| t(&b(r).interest_type_indicator),
        ),
        ("consumerTransactionType", |r| {
            t(&b(r).consumer_transaction_type)
        }),
        ("surname", |r| t(&b(r).surname)),
        ("firstName", |r| t(&b(r).first_name)),
        ("middleName", |r| t(&b(r).middle_name)),
        ("generationCode", |r| t(&b(r).generation_code)),
        ("socialSecurityNumber", |r| {
            code(&b(r).social_security_number)
        }),
        ("dateBirth", |r| Val::Date(b(r).date_of_birth)),
        ("telephoneNumber", |r| code(&b(r).telephone_number)),
        ("ecoaCode", |r| t(&b(r).ecoa_code)),
        ("consumerInformationIndicator", |r| {
            t(&b(r).consumer_information_indicator)
        }),
        ("countryCode", |r| t(&b(r).country_code)),
        ("firstLineAddress", |r| t(&b(r).first_line_of_address)),
        ("secondLineAddress", |r| t(&b(r).second_line_of_address)),
        ("city", |r| t(&b(r).city)),
        ("state", |r| t(&b(r).state)),
        ("zipCode", |r| t(&b(r).postal_code)),
        ("addressIndicator", |r| t(&b(r).address_indicator)),
        ("residenceCode", |r| t(&b(r).residence_code)),
    ]
}

fn j1_table() -> Table<J1<'static>> {
    vec![
        // The parser finds each segment by its identifier.
        ("segmentIdentifier", |_| t("J1")),
        ("surname", |j| t(&j.surname)),
        ("firstName", |j| t(&j.first_name)),
        ("middleName", |j| t(&j.middle_name)),
        ("generationCode", |j| t(&j.generation_code)),
        ("socialSecurityNumber", |j| code(&j.social_security_number)),
        ("dateBirth", |j| Val::Date(j.date_of_birth)),
        ("telephoneNumber", |j| code(&j.telephone_number)),
        ("ecoaCode", |j| t(&j.ecoa_code)),
        ("consumerInformationIndicator", |j| {
            t(&j.consumer_information_indicator)
        }),
    ]
}

fn j2_table() -> Table<J2<'static>> {
    let mut table: Table<J2<'static>> = vec![
        ("segmentIdentifier", |_| t("J2")),
        ("surname", |j| t(&j.consumer.surname)),
        ("firstName", |j| t(&j.consumer.first_name)),
        ("middleName", |j| t(&j.consumer.middle_name)),
        ("generationCode", |j| t(&j.consumer.generation_code)),
        ("socialSecurityNumber", |j| {
            code(&j.consumer.social_security_number)
        }),
        ("dateBirth", |j| Val::Date(j.consumer.date_of_birth)),
        ("telephoneNumber", |j| code(&j.consumer.telephone_number)),
        ("ecoaCode", |j| t(&j.consumer.ecoa_code)),
        ("consumerInformationIndicator", |j| {
            t(&j.consumer.consumer_information_indicator)
        }),
    ];
    table.extend::<Table<J2<'static>>>(vec![
        ("countryCode", |j| t(&j.country_code)),
        ("firstLineAddress", |j| t(&j.first_line_of_address)),
        ("secondLineAddress", |j| t(&j.second_line_of_address)),
        ("city", |j| t(&j.city)),
        ("state", |j| t(&j.state)),
        ("zipCode", |j| t(&j.postal_code)),
        ("addressIndicator", |j| t(&j.address_indicator)),
        ("residenceCode", |j| t(&j.residence_code)),
    ]);
    table
}

fn k1_table() -> Table<K1<'static>> {
    vec![
        ("segmentIdentifier", |_| t("K1")),
        ("originalCreditorName", |k| t(&k.original_creditor_name)),
        ("creditorClassification", |k| {
            code(&k.creditor_classification)
        }),
    ]
}

fn k2_table() -> Table<K2<'static>> {
    vec![
        ("segmentIdentifier", |_| t("K2")),
        ("purchasedIndicator", |k| code(&k.purchased_sold_indicator)),
        ("purchasedName", |k| t(&k.purchased_sold_name)),
    ]
}

fn k3_table() -> Table<K3<'static>> {
    vec![
        ("segmentIdentifier", |_| t("K3")),
        ("agencyIdentifier", |k| code(&k.agency_identifier)),
        ("accountNumber", |k| t(&k.agency_account_number)),
        ("mortgageIdentificationNumber", |k| {
            t(&k.mortgage_identification_number)
        }),
    ]
}

fn k4_table() -> Table<K4<'static>> {
    vec![
        ("segmentIdentifier", |_| t("K4")),
        ("specializedPaymentIndicator", |k| {
            code(&k.specialized_payment_indicator)
        }),
        ("deferredPaymentStartDate", |k| {
            Val::Date(k.deferred_payment_start_date)
        }),
        ("balloonPaymentDueDate", |k| {
            Val::Date(k.balloon_payment_due_date)
        }),
        ("balloonPaymentAmount", |k| n(k.balloon_payment_amount)),
    ]
}

fn l1_table() -> Table<L1<'static>> {
    vec![
        ("segmentIdentifier", |_| t("L1")),
        ("changeIndicator", |l| code(&l.change_indicator)),
        ("newConsumerAccountNumber", |l| {
            t(&l.new_consumer_account_number)
        }),
        ("newIdentificationNumber", |l| {
            t(&l.new_identification_number)
        }),
    ]
}

fn n1_table() -> Table<N1<'static>> {
    vec![
        ("segmentIdentifier", |_| t("N1")),
        ("employerName", |e| t(&e.employer_name)),
        ("firstLineEmployerAddress", |e| {
            t(&e.first_line_of_employer_address)
        }),
        ("secondLineEmployerAddress", |e| {
            t(&e.second_line_of_employer_address)
        }),
        ("employerCity", |e| t(&e.employer_city)),
        ("employerState", |e| t(&e.employer_state)),
        ("zipCode", |e| t(&e.employer_postal_code)),
        ("occupation", |e| t(&e.occupation)),
    ]
}

fn trailer_table() -> Table<Trailer> {
    let mut table: Table<Trailer> = vec![
        ("blockDescriptorWord", |x| {
            n(x.block_descriptor_word.unwrap_or(0).into())
        }),
        ("recordDescriptorWord", |x| {
            n(x.record_descriptor_word.into())
        }),
        ("recordIdentifier", |_| t("TRAILER")),
        ("totalBaseRecords", |x| n(x.total_base_records)),
        ("blockCount", |x| n(x.block_count)),
        ("totalConsumerSegmentsJ1", |x| n(x.total_j1_segments)),
        ("totalConsumerSegmentsJ2", |x| n(x.total_j2_segments)),
        ("totalECOACodeZ", |x| n(x.total_ecoa_code_z)),
        (
            "totalEmploymentSegments",
            |x| n(x.total_employment_segments),
        ),
        ("totalOriginalCreditorSegments", |x| {
            n(x.total_original_creditor_segments)
        }),
        ("totalPurchasedToSegments", |x| {
            n(x.total_purchased_sold_segments)
        }),
        ("totalMortgageInformationSegments", |x| {
            n(x.total_mortgage_segments)
        }),
        ("totalPaymentInformationSegments", |x| {
            n(x.total_specialized_payment_segments)
        }),
        ("totalChangeSegments", |x| n(x.total_change_segments)),
        ("totalSocialNumbersAllSegments", |x| {
            n(x.total_ssn_all_segments)
        }),
        ("totalSocialNumbersBaseSegments", |x| {
            n(x.total_ssn_base_segments)
        }),
        ("totalSocialNumbersJ1Segments", |x| {
            n(x.total_ssn_j1_segments)
        }),
        ("totalSocialNumbersJ2Segments", |x| {
            n(x.total_ssn_j2_segments)
        }),
        (
            "totalDatesBirthAllSegments",
            |x| n(x.total_dob_all_segments),
        ),
        ("totalDatesBirthBaseSegments", |x| {
            n(x.total_dob_base_segments)
        }),
        ("totalDatesBirthJ1Segments", |x| n(x.total_dob_j1_segments)),
        ("totalDatesBirthJ2Segments", |x| n(x.total_dob_j2_segments)),
        ("totalTelephoneNumbersAllSegments", |x| {
            n(x.total_telephone_all_segments)
        }),
    ];
    // One row per status code, named as moov names them.
    macro_rules! status {
        ($($code:literal),*) => {
            $(table.push((
                concat!("totalStatusCode", $code),
                |x| n(x.status_count($code).expect("a trailer status code")),
            ));)*
        };
    }
    status!(
        "05", "11", "13", "61", "62", "63", "64", "65", "71", "78", "80", "82", "83", "84", "88",
        "89", "93", "94", "95", "96", "97", "DA", "DF"
    );
    table
}

/// Compares one data record and its segments with moov's JSON for it.
fn compare_record(
    what: &str,
    r: &BaseRecord<'static>,
    theirs: &Value,
    out: &mut Vec<String>,
) -> usize {
    let mut compared = compare(
        &format!("{what}.base"),
        r,
        &theirs["base"],
        &base_table(),
        out,
    );
    let list = |key: &str| theirs.get(key).and_then(Value::as_array).cloned();
    let (j1, j2) = (
        list("j1").unwrap_or_default(),
        list("j2").unwrap_or_default(),
    );
    if (j1.len(), j2.len()) != (r.j1.len(), r.j2.len()) {
        out.push(format!(
            "{what}: moov has {} J1 and {} J2, ours {} and {}",
            j1.len(),
            j2.len(),
            r.j1.len(),
            r.j2.len()
        ));
    }
    for (i, (ours, theirs)) in r.j1.iter().zip(&j1).enumerate() {
        compared += compare(&format!("{what}.j1[{i}]"), ours, theirs, &j1_table(), out);
    }
    for (i, (ours, theirs)) in r.j2.iter().zip(&j2).enumerate() {
        compared += compare(&format!("{what}.j2[{i}]"), ours, theirs, &j2_table(), out);
    }
    fn one<T>(
        what: String,
        ours: Option<&T>,
        theirs: Option<&Value>,
        table: &Table<T>,
        out: &mut Vec<String>,
    ) -> usize {
        match (ours, theirs) {
            (Some(o), Some(t)) => compare(&what, o, t, table, out),
            (None, None) => 0,
            (o, t) => {
                out.push(format!(
                    "{what}: moov has it {}, ours {}",
                    t.is_some(),
                    o.is_some()
                ));
                0
            }
        }
    }
    let seg = |key: &str| theirs.get(key).filter(|v| !v.is_null());
    compared += one(
        format!("{what}.k1"),
        r.k1.as_ref(),
        seg("k1"),
        &k1_table(),
        out,
    );
    compared += one(
        format!("{what}.k2"),
        r.k2.as_ref(),
        seg("k2"),
        &k2_table(),
        out,
    );
    compared += one(
        format!("{what}.k3"),
        r.k3.as_ref(),
        seg("k3"),
        &k3_table(),
        out,
    );
    compared += one(
        format!("{what}.k4"),
        r.k4.as_ref(),
        seg("k4"),
        &k4_table(),
        out,
    );
    compared += one(
        format!("{what}.l1"),
        r.l1.as_ref(),
        seg("l1"),
        &l1_table(),
        out,
    );
    compared += one(
        format!("{what}.n1"),
        r.n1.as_ref(),
        seg("n1"),
        &n1_table(),
        out,
    );
    compared
}

/// Compares a whole file with moov's JSON for it; returns the fields compared.
fn compare_file(file: &Metro2File, theirs: &Value, out: &mut Vec<String>) -> usize {
    let mut compared = compare(
        "header",
        &file.header,
        &theirs["header"],
        &header_table(),
        out,
    );
    let data = theirs["data"].as_array().expect("moov's data records");
    if data.len() != file.records.len() {
        out.push(format!(
            "moov has {} records, ours {}",
            data.len(),
            file.records.len()
        ));
    }
    for (i, (ours, theirs)) in file.records.iter().zip(data).enumerate() {
        compared += compare_record(&format!("data[{i}]"), ours, theirs, out);
    }
    match &file.trailer {
        Some(t) => compared += compare("trailer", t, &theirs["trailer"], &trailer_table(), out),
        None => out.push("trailer: ours is missing".to_owned()),
    }
    compared
}

#[test]
fn base_segment_matches_moov() {
    let (record, issues) = parse_data_record(&reference("moov_base_segment.dat")).unwrap();
    assert_eq!(issues, []);
    let mut mismatches = Vec::new();
    let compared = compare_record(
        "record",
        &record,
        &json("moov_base_segment.json"),
        &mut mismatches,
    );
    assert_eq!(
        mismatches,
        Vec::<String>::new(),
        "{compared} fields compared"
    );
    // Base 48, J1 10, J2 2 x 18, K1 3, K2 3, K3 4, K4 5, L1 4, N1 8.
    assert_eq!(compared, 48 + 10 + 36 + 3 + 3 + 4 + 5 + 4 + 8);
}

#[test]
fn unpacked_fixed_file_matches_moov() {
    let file = parse_metro2(&reference("moov_unpacked_fixed_file.dat")).unwrap();
    assert_eq!(file.framing, Framing::Rdw { blocked: false });
    assert_eq!(file.issues, []);
    let mut mismatches = Vec::new();
    let compared = compare_file(
        &file,
        &json("moov_unpacked_fixed_file.json"),
        &mut mismatches,
    );
    // The header's RDW in the file is 0470 (426 bytes and 44 blanks of padding); moov's
    // JSON writes 426, while for the data record it writes the file's 1000. We keep what
    // the file says.
    assert_eq!(
        mismatches,
        ["header.recordDescriptorWord: moov Some(Number(426)), ours Int(470)"],
        "{compared} fields compared"
    );
    assert_eq!(compared, 18 + 48 + 10 + 18 + 4 + 4 + 8 + 46);
    assert_eq!(reconcile(&file), []);
}

#[test]
fn unpacked_variable_file_matches_moov() {
    let file = parse_metro2(&reference("moov_unpacked_variable_file.dat")).unwrap();
    assert_eq!(file.framing, Framing::Rdw { blocked: true });
    // moov's data record has BDW 426 and RDW 1000 but only 996 bytes on its line (the fixed
    // file's record without its last 4 blanks): its framing disagrees with its bytes.
    let issues: Vec<_> = file
        .issues
        .iter()
        .map(|i| (i.class, i.reason.as_str()))
        .collect();
    assert_eq!(
        issues,
        [(
            DriftClass::Malformed,
            "data record: record descriptor word says 1000 bytes, the record has 996"
        )]
    );
    assert_eq!(file.issues[0].position.line, 2);
    let mut mismatches = Vec::new();
    let compared = compare_file(
        &file,
        &json("moov_unpacked_variable_file.json"),
        &mut mismatches,
    );
    assert_eq!(
        mismatches,
        Vec::<String>::new(),
        "{compared} fields compared"
    );
    assert_eq!(reconcile(&file), []);
}

#[test]
fn cfpb_small_file_parses() {
    let file = parse_metro2(&reference("cfpb_m2_file_small.txt")).unwrap();
    // Its RDWs are all 0006 but the header's and the trailer's: one record per line.
    assert_eq!(file.framing, Framing::Lines { blocked: false });
    assert_eq!(file.issues, []);
    assert_eq!(file.header.cycle_identifier, "3C");
    assert_eq!(file.header.reporter_name, "12REPORTERNAME");
    assert_eq!(file.records.len(), 3);
    let accounts: Vec<_> = file
        .records
        .iter()
        .map(|r| &*r.base.consumer_account_number)
        .collect();
    assert_eq!(accounts, ["ACCTNUMBER1", "ACCTNUMBER2", "ACCTNUMBER3"]);
    let segments: Vec<_> = file
        .records
        .iter()
        .map(|r| {
            (
                r.j1.len(),
                r.j2.len(),
                r.k1.is_some(),
                r.k2.is_some(),
                r.l1.is_some(),
            )
        })
        .collect();
    assert_eq!(
        segments,
        [
            (2, 0, false, false, false),
            (0, 0, true, true, false),
            (0, 1, false, false, true)
        ]
    );
    // The sample's trailer was not written for these three records: it states the counts of
    // a large production file (564,618 base records), so every count it states that is not zero differs.
    let differences: Vec<_> = reconcile(&file)
        .into_iter()
        .map(
            |TrailerDifference {
                 field,
                 trailer,
                 parsed,
             }| (field, trailer.unwrap(), parsed),
        )
        .collect();
    let expected = [
        ("total_base_records", 564618, 3),
        ("status_11", 468937, 1),
        ("status_13", 24733, 0),
        ("status_64", 1307, 0),
        ("status_71", 12365, 1),
        ("status_78", 3990, 1),
        ("status_80", 833, 0),
        ("status_82", 32, 0),
        ("status_84", 2, 0),
        ("status_95", 242, 0),
        ("status_96", 796, 0),
        ("status_97", 51357, 0),
        ("status_DA", 23, 0),
        ("total_j1_segments", 156945, 2),
        ("total_j2_segments", 53206, 1),
    ]
    .map(|(f, t, p)| (f.to_owned(), t, p));
    assert_eq!(differences, expected);
    // The trailer line is 407 bytes: its 19 reserved blanks at the end were cut off.
    assert_eq!(
        file.trailer.as_ref().unwrap().total_telephone_all_segments,
        696616
    );
}
