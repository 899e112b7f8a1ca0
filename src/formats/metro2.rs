//! Metro 2® character format (CDIA, 426-byte base segment): the header, data records with
//! their optional J1, J2, K1-K4, L1 and N1 segments, and the trailer's counts.
//!
//! Framing. Every record starts with a 4-digit record descriptor word (RDW), its length in
//! bytes including the RDW. A blocked file puts a 4-digit block descriptor word (BDW) before
//! it; the header says which of the two a file uses. Line breaks (`\n`, `\r\n`) may separate
//! records or wrap one record over several lines; they are never part of a record. Blank
//! bytes after the segments of a record (inside its RDW or at the end of its line) are
//! padding. A file whose header RDW cannot be a length (under 426) is read one record per
//! line, and its RDWs are kept but not used ([`Framing::Lines`]).
//!
//! Numbers are zero-filled (all blank reads as 0), dates are MMDDYYYY (all zeros or blank is
//! no date), money is whole dollars. Text is kept trimmed, except byte 20 of the base segment
//! (correction indicator for some, reserved for others), which is kept as it is.
//!
//! Architecture Invariant: every framed data record is in [`Metro2File::records`], and
//! whatever is wrong with it is in [`Metro2File::issues`] under its position. A value that
//! could not be read is never guessed: it is `0` or `None`, with an issue saying so.

use std::borrow::Cow;
use std::cell::OnceCell;

use chrono::{NaiveDate, NaiveDateTime};

use super::mask::mask_card_numbers;
use super::value::Position;
use super::{DriftClass, FileDrift, RecordIssue};

/// Length of the header, the base segment and the trailer, RDW included.
const RECORD_LEN: usize = 426;

/// The per-status counts a trailer carries, in the order of [`Trailer::status_counts`].
pub const STATUS_CODES: [&str; 23] = [
    "05", "11", "13", "61", "62", "63", "64", "65", "71", "78", "80", "82", "83", "84", "88", "89",
    "93", "94", "95", "96", "97", "DA", "DF",
];

/// How a file's records are delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Each record is as long as its RDW says.
    Rdw { blocked: bool },
    /// Each line is one record; the RDWs are not lengths (the header's is under 426).
    Lines { blocked: bool },
}

/// A parsed file. Records with issues are here too; see the module invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Metro2File {
    pub framing: Framing,
    pub header: Header,
    pub records: Vec<BaseRecord<'static>>,
    pub trailer: Option<Trailer>,
    /// Problems of single records (and of the header or trailer, named in the reason).
    pub issues: Vec<RecordIssue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub block_descriptor_word: Option<u32>,
    pub record_descriptor_word: u32,
    pub cycle_identifier: String,
    pub innovis_program_identifier: String,
    pub equifax_program_identifier: String,
    pub experian_program_identifier: String,
    pub transunion_program_identifier: String,
    pub activity_date: Option<NaiveDate>,
    pub date_created: Option<NaiveDate>,
    pub program_date: Option<NaiveDate>,
    pub program_revision_date: Option<NaiveDate>,
    pub reporter_name: String,
    pub reporter_address: String,
    pub reporter_telephone_number: String,
    pub software_vendor_name: String,
    pub software_version_number: String,
    pub prbc_program_identifier: String,
}

/// A parsed value made to own what it borrows of a record's bytes.
trait IntoStatic {
    type Static;
    fn into_static(self) -> Self::Static;
}

impl IntoStatic for Cow<'_, str> {
    type Static = Cow<'static, str>;
    fn into_static(self) -> Self::Static {
        Cow::Owned(self.into_owned())
    }
}

/// [`IntoStatic`] for types that borrow nothing.
macro_rules! borrows_nothing {
    ($($ty:ty),*) => {
        $(impl IntoStatic for $ty {
            type Static = Self;
            fn into_static(self) -> Self {
                self
            }
        })*
    };
}

borrows_nothing!(u32, u64, NaiveDate, NaiveDateTime, Position);

impl<T: IntoStatic> IntoStatic for Option<T> {
    type Static = Option<T::Static>;
    fn into_static(self) -> Self::Static {
        self.map(T::into_static)
    }
}

impl<T: IntoStatic> IntoStatic for Vec<T> {
    type Static = Vec<T::Static>;
    fn into_static(self) -> Self::Static {
        self.into_iter().map(T::into_static).collect()
    }
}

/// Defines record and segment types whose text may borrow the record's bytes, each with
/// its `into_owned`.
macro_rules! borrowing {
    ($(
        $(#[$meta:meta])*
        pub struct $ty:ident<$b:lifetime> {
            $($(#[$field_meta:meta])* pub $field:ident: $field_ty:ty,)*
        }
    )*) => {$(
        $(#[$meta])*
        pub struct $ty<$b> {
            $($(#[$field_meta])* pub $field: $field_ty,)*
        }

        impl IntoStatic for $ty<'_> {
            type Static = $ty<'static>;
            fn into_static(self) -> Self::Static {
                $ty {
                    $($field: self.$field.into_static(),)*
                }
            }
        }

        impl $ty<'_> {
            /// The same, owning its text: it no longer borrows the record's bytes.
            pub fn into_owned(self) -> $ty<'static> {
                self.into_static()
            }
        }
    )*};
}

borrowing! {
    /// One data record: the base segment and the segments that follow it. Its text borrows
    /// the record's bytes (`'b`) where they are UTF-8 (a lossy copy where not), so reading
    /// a record copies no text; [`BaseRecord::into_owned`] makes one that outlives them.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct BaseRecord<'b> {
        pub position: Position,
        pub block_descriptor_word: Option<u32>,
        pub base: BaseSegment<'b>,
        pub j1: Vec<J1<'b>>,
        pub j2: Vec<J2<'b>>,
        pub k1: Option<K1<'b>>,
        pub k2: Option<K2<'b>>,
        pub k3: Option<K3<'b>>,
        pub k4: Option<K4<'b>>,
        pub l1: Option<L1<'b>>,
        pub n1: Option<N1<'b>>,
    }

    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct BaseSegment<'b> {
        pub record_descriptor_word: u32,
        pub processing_indicator: Cow<'b, str>,
        pub time_stamp: Option<NaiveDateTime>,
        /// Byte 20, untrimmed: moov reads a correction indicator, CFPB a reserved byte.
        pub correction_indicator: Cow<'b, str>,
        pub identification_number: Cow<'b, str>,
        pub cycle_identifier: Cow<'b, str>,
        pub consumer_account_number: Cow<'b, str>,
        pub portfolio_type: Cow<'b, str>,
        pub account_type: Cow<'b, str>,
        pub date_opened: Option<NaiveDate>,
        pub credit_limit: u64,
        pub highest_credit: u64,
        pub terms_duration: Cow<'b, str>,
        pub terms_frequency: Cow<'b, str>,
        pub scheduled_monthly_payment: u64,
        pub actual_payment_amount: u64,
        pub account_status: Cow<'b, str>,
        pub payment_rating: Cow<'b, str>,
        pub payment_history_profile: Cow<'b, str>,
        pub special_comment: Cow<'b, str>,
        pub compliance_condition_code: Cow<'b, str>,
        pub current_balance: u64,
        pub amount_past_due: u64,
        pub original_charge_off_amount: u64,
        pub date_of_account_information: Option<NaiveDate>,
        pub date_of_first_delinquency: Option<NaiveDate>,
        pub date_closed: Option<NaiveDate>,
        pub date_of_last_payment: Option<NaiveDate>,
        pub interest_type_indicator: Cow<'b, str>,
        pub consumer_transaction_type: Cow<'b, str>,
        pub surname: Cow<'b, str>,
        pub first_name: Cow<'b, str>,
        pub middle_name: Cow<'b, str>,
        pub generation_code: Cow<'b, str>,
        pub social_security_number: Cow<'b, str>,
        pub date_of_birth: Option<NaiveDate>,
        pub telephone_number: Cow<'b, str>,
        pub ecoa_code: Cow<'b, str>,
        pub consumer_information_indicator: Cow<'b, str>,
        pub country_code: Cow<'b, str>,
        pub first_line_of_address: Cow<'b, str>,
        pub second_line_of_address: Cow<'b, str>,
        pub city: Cow<'b, str>,
        pub state: Cow<'b, str>,
        pub postal_code: Cow<'b, str>,
        pub address_indicator: Cow<'b, str>,
        pub residence_code: Cow<'b, str>,
    }

    /// Associated consumer (100 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct J1<'b> {
        pub surname: Cow<'b, str>,
        pub first_name: Cow<'b, str>,
        pub middle_name: Cow<'b, str>,
        pub generation_code: Cow<'b, str>,
        pub social_security_number: Cow<'b, str>,
        pub date_of_birth: Option<NaiveDate>,
        pub telephone_number: Cow<'b, str>,
        pub ecoa_code: Cow<'b, str>,
        pub consumer_information_indicator: Cow<'b, str>,
    }

    /// Associated consumer with a different address (200 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct J2<'b> {
        /// The fields J2 shares with J1, at the same positions.
        pub consumer: J1<'b>,
        pub country_code: Cow<'b, str>,
        pub first_line_of_address: Cow<'b, str>,
        pub second_line_of_address: Cow<'b, str>,
        pub city: Cow<'b, str>,
        pub state: Cow<'b, str>,
        pub postal_code: Cow<'b, str>,
        pub address_indicator: Cow<'b, str>,
        pub residence_code: Cow<'b, str>,
    }

    /// Original creditor name (34 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct K1<'b> {
        pub original_creditor_name: Cow<'b, str>,
        pub creditor_classification: Cow<'b, str>,
    }

    /// Purchased from / sold to (34 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct K2<'b> {
        pub purchased_sold_indicator: Cow<'b, str>,
        pub purchased_sold_name: Cow<'b, str>,
    }

    /// Mortgage information (40 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct K3<'b> {
        pub agency_identifier: Cow<'b, str>,
        pub agency_account_number: Cow<'b, str>,
        pub mortgage_identification_number: Cow<'b, str>,
    }

    /// Specialized payment information (30 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct K4<'b> {
        pub specialized_payment_indicator: Cow<'b, str>,
        pub deferred_payment_start_date: Option<NaiveDate>,
        pub balloon_payment_due_date: Option<NaiveDate>,
        pub balloon_payment_amount: u64,
    }

    /// Account number or identification number change (54 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct L1<'b> {
        pub change_indicator: Cow<'b, str>,
        pub new_consumer_account_number: Cow<'b, str>,
        pub new_identification_number: Cow<'b, str>,
    }

    /// Employment (146 bytes).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct N1<'b> {
        pub employer_name: Cow<'b, str>,
        pub first_line_of_employer_address: Cow<'b, str>,
        pub second_line_of_employer_address: Cow<'b, str>,
        pub employer_city: Cow<'b, str>,
        pub employer_state: Cow<'b, str>,
        pub employer_postal_code: Cow<'b, str>,
        pub occupation: Cow<'b, str>,
    }
}

/// The trailer: counts only, never money.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    /// 1-based line the trailer starts on.
    pub line: u64,
    pub block_descriptor_word: Option<u32>,
    pub record_descriptor_word: u32,
    pub total_base_records: u64,
    pub block_count: u64,
    /// Per-status counts, in the order of [`STATUS_CODES`].
    pub status_counts: [u64; 23],
    pub total_ecoa_code_z: u64,
    pub total_j1_segments: u64,
    pub total_j2_segments: u64,
    pub total_employment_segments: u64,
    pub total_original_creditor_segments: u64,
    pub total_purchased_sold_segments: u64,
    pub total_mortgage_segments: u64,
    pub total_specialized_payment_segments: u64,
    pub total_change_segments: u64,
    pub total_ssn_all_segments: u64,
    pub total_ssn_base_segments: u64,
    pub total_ssn_j1_segments: u64,
    pub total_ssn_j2_segments: u64,
    pub total_dob_all_segments: u64,
    pub total_dob_base_segments: u64,
    pub total_dob_j1_segments: u64,
    pub total_dob_j2_segments: u64,
    pub total_telephone_all_segments: u64,
}

impl Trailer {
    /// The trailer's count of records with account status `code`, if it carries one.
    pub fn status_count(&self, code: &str) -> Option<u64> {
        let i = STATUS_CODES.iter().position(|c| *c == code)?;
        Some(self.status_counts[i])
    }
}

/// A trailer count that differs from what was parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailerDifference {
    /// `total_base_records`, `status_XX`, `total_j1_segments`, `total_j2_segments`, or
    /// `trailer` when the file has none.
    pub field: String,
    /// The trailer's value; `None` when there is no trailer.
    pub trailer: Option<u64>,
    pub parsed: u64,
}

/// Parses a whole file. A file without a header, or whose records cannot be framed, is a
/// [`FileDrift`]; everything else is in the result, problems of single records included.
/// Holds every record, each owning its text: for large files use [`scan_metro2`], which
/// holds one at a time and copies no text.
pub fn parse_metro2(bytes: &[u8]) -> Result<Metro2File, FileDrift> {
    let mut records = Vec::new();
    let mut issues = Vec::new();
    let scan = scan_metro2(bytes, |event| {
        match event {
            Event::Record(record, mut own) => {
                issues.append(&mut own);
                records.push(record.into_owned());
            }
            Event::FileIssue(issue) => issues.push(issue),
        }
        Ok::<(), std::convert::Infallible>(())
    });
    let scan = match scan {
        Ok(scan) => scan?,
        Err(never) => match never {},
    };
    Ok(Metro2File {
        framing: scan.framing,
        header: scan.header,
        records,
        trailer: scan.trailer,
        issues,
    })
}

/// What [`scan_metro2`] hands on, in file order.
#[derive(Debug)]
// A record is handed on by value, not boxed: a box would be an allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum Event<'r> {
    /// A data record and the problems found in it (empty when it is clean). Its text
    /// borrows the record's bytes ([`BaseRecord::into_owned`] to keep it).
    Record(BaseRecord<'r>, Vec<RecordIssue>),
    /// A problem of the header or trailer (named in the reason), or of the file's
    /// structure: a second header or trailer.
    FileIssue(RecordIssue),
}

/// What a scan found besides the records.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    pub framing: Framing,
    pub header: Header,
    pub trailer: Option<Trailer>,
    /// What the trailer is reconciled against.
    pub counts: Counts,
}

/// The counts a trailer states, as computed from the data records (every one, issues
/// or not: the sender counted what it sent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub base_records: u64,
    /// Records per account status, in the order of [`STATUS_CODES`].
    pub status: [u64; 23],
    pub j1_segments: u64,
    pub j2_segments: u64,
}

impl Counts {
    fn add(&mut self, record: &BaseRecord) {
        self.count(
            &record.base.account_status,
            record.j1.len(),
            record.j2.len(),
        );
    }

    /// [`Counts::add`] of the record `f` frames, reading only what is counted: the
    /// account status as [`parse_base`] reads it and the segments as [`parse_frame`]
    /// finds them.
    fn add_frame(&mut self, f: &Frame, position: Position) {
        // Problems are the full read's to report; this read only counts.
        let mut ignored = Vec::new();
        let status = fields(&f.bytes, RECORD_LEN, "base", position, &mut ignored).text(124, 2);
        let (mut j1, mut j2) = (0, 0);
        walk_segments(f, position, &mut ignored, |id, _, _| match id {
            b"J1" => j1 += 1,
            b"J2" => j2 += 1,
            _ => {}
        });
        self.count(&status, j1, j2);
    }

    fn count(&mut self, account_status: &str, j1_segments: usize, j2_segments: usize) {
        self.base_records += 1;
        if let Some(i) = STATUS_CODES.iter().position(|c| *c == account_status) {
            self.status[i] += 1;
        }
        self.j1_segments += j1_segments as u64;
        self.j2_segments += j2_segments as u64;
    }
}

/// Reads a file record by record, handing each to `on_event` as soon as it is parsed, so
/// a file of millions of records is never held. The outer `Result` is the callback's own
/// error, which stops the scan; the inner one is a file that cannot be framed or has no
/// header.
pub fn scan_metro2<E>(
    bytes: &[u8],
    mut on_event: impl FnMut(Event<'_>) -> Result<(), E>,
) -> Result<Result<Scan, FileDrift>, E> {
    scan_to(bytes, Depth::Whole, |found| match found {
        Found::Event(event) => on_event(event),
        Found::Counted(_) => unreachable!("a whole scan reads every record"),
    })
}

/// How much of each data record a scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Depth {
    /// Every field: each record is an [`Event::Record`].
    Whole,
    /// What [`Counts`] counts only; each record is a [`Found::Counted`], its problems
    /// unread.
    Counts,
}

/// What [`scan_to`] hands on.
// Not boxed, as [`Event`].
#[allow(clippy::large_enum_variant)]
enum Found<'r> {
    Event(Event<'r>),
    /// Where a data record read at [`Depth::Counts`] starts.
    Counted(Position),
}

/// [`scan_metro2`], reading each data record to `depth`. File issues and the [`Scan`] are
/// the same at every depth.
fn scan_to<E>(
    bytes: &[u8],
    depth: Depth,
    mut on_found: impl FnMut(Found<'_>) -> Result<(), E>,
) -> Result<Result<Scan, FileDrift>, E> {
    let framing = match detect_framing(bytes) {
        Ok(f) => f,
        Err(drift) => return Ok(Err(drift)),
    };
    let mut header: Option<Header> = None;
    let mut trailer: Option<Trailer> = None;
    let mut counts = Counts::default();
    let mut failure: Option<E> = None;
    // Hands on what was found; the callback's error stops the framing and is kept.
    let mut hand_on = |found: Found<'_>| {
        on_found(found).map_err(|e| {
            failure = Some(e);
            malformed("stopped", 0)
        })
    };
    let file_issue = |issue| Found::Event(Event::FileIssue(issue));
    let framed = frame(bytes, framing, &mut |f: Frame| -> Result<(), FileDrift> {
        let mut file_issues = Vec::new();
        let Some(_) = &header else {
            if !f.is(b"HEADER") {
                return Err(malformed("the first record is not a HEADER", 0));
            }
            header = Some(parse_header(&f, &mut file_issues));
            return file_issues
                .into_iter()
                .map(file_issue)
                .try_for_each(&mut hand_on);
        };
        let position = Position {
            record_index: counts.base_records,
            line: f.line,
            byte_offset: f.start as u64,
        };
        if f.is(b"TRAILER") {
            if trailer.is_some() {
                hand_on(file_issue(issue_at(position, "a second TRAILER record")))
            } else {
                trailer = Some(parse_trailer(&f, &mut file_issues));
                file_issues
                    .into_iter()
                    .map(file_issue)
                    .try_for_each(&mut hand_on)
            }
        } else if f.is(b"HEADER") {
            hand_on(file_issue(issue_at(position, "a second HEADER record")))
        } else if depth == Depth::Counts {
            counts.add_frame(&f, position);
            hand_on(Found::Counted(position))
        } else {
            let mut own = Vec::new();
            if trailer.is_some() {
                own.push(issue_at(position, "a data record after the TRAILER"));
            }
            let record = parse_frame(&f, position, &mut own);
            counts.add(&record);
            hand_on(Found::Event(Event::Record(record, own)))
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if let Err(drift) = framed {
        return Ok(Err(drift));
    }
    let Some(header) = header else {
        return Ok(Err(malformed("the file is empty", 0)));
    };
    Ok(Ok(Scan {
        framing,
        header,
        trailer,
        counts,
    }))
}

/// Parses one data record (optionally after its BDW), e.g. a single record cut from a file.
/// The record owns its text.
pub fn parse_data_record(
    bytes: &[u8],
) -> Result<(BaseRecord<'static>, Vec<RecordIssue>), FileDrift> {
    let blocked = word(bytes, 0)
        .and_then(|(_, q)| word(bytes, q))
        .is_some_and(|(rdw, q)| rdw as usize >= RECORD_LEN && bytes.get(q) == Some(&b'1'));
    let mut frames = Vec::new();
    frame(bytes, Framing::Rdw { blocked }, &mut |f| {
        frames.push(f);
        Ok(())
    })?;
    let mut frames = frames.into_iter();
    let f = frames
        .next()
        .ok_or_else(|| malformed("no record in the bytes", 0))?;
    if frames.next().is_some() {
        return Err(malformed("more than one record in the bytes", 0));
    }
    let mut issues = Vec::new();
    let position = Position {
        record_index: 0,
        line: f.line,
        byte_offset: f.start as u64,
    };
    let record = parse_frame(&f, position, &mut issues).into_owned();
    Ok((record, issues))
}

/// Compares the trailer's total base records, per-status counts and J1/J2 counts with the
/// records parsed (all of them, issues or not: the sender counted what it sent).
pub fn reconcile(file: &Metro2File) -> Vec<TrailerDifference> {
    let mut counts = Counts::default();
    for r in &file.records {
        counts.add(r);
    }
    reconcile_counts(file.trailer.as_ref(), &counts)
}

/// [`reconcile`] from a scan's counts.
pub fn reconcile_counts(trailer: Option<&Trailer>, counts: &Counts) -> Vec<TrailerDifference> {
    let Some(t) = trailer else {
        return vec![TrailerDifference {
            field: "trailer".to_owned(),
            trailer: None,
            parsed: counts.base_records,
        }];
    };
    let mut checks = vec![(
        "total_base_records".to_owned(),
        t.total_base_records,
        counts.base_records,
    )];
    for (i, code) in STATUS_CODES.iter().enumerate() {
        checks.push((
            format!("status_{code}"),
            t.status_counts[i],
            counts.status[i],
        ));
    }
    checks.push((
        "total_j1_segments".to_owned(),
        t.total_j1_segments,
        counts.j1_segments,
    ));
    checks.push((
        "total_j2_segments".to_owned(),
        t.total_j2_segments,
        counts.j2_segments,
    ));
    checks
        .into_iter()
        .filter(|(_, stated, parsed)| stated != parsed)
        .map(|(field, stated, parsed)| TrailerDifference {
            field,
            trailer: Some(stated),
            parsed,
        })
        .collect()
}

/// One framed record: its bytes from the RDW on, line breaks removed (borrowed from the
/// file unless a break had to be removed).
struct Frame<'b> {
    start: usize,
    line: u64,
    bdw: Option<u32>,
    rdw: u32,
    bytes: Cow<'b, [u8]>,
    /// Why the RDW or BDW disagrees with the bytes.
    problem: Option<String>,
    lines_mode: bool,
}

impl Frame<'_> {
    fn is(&self, ident: &[u8]) -> bool {
        self.bytes.get(4..4 + ident.len()) == Some(ident)
    }
}

fn is_break(b: &u8) -> bool {
    *b == b'\n' || *b == b'\r'
}

fn skip_breaks(bytes: &[u8], mut p: usize) -> usize {
    while bytes.get(p).is_some_and(is_break) {
        p += 1;
    }
    p
}

/// A 4-digit word at `p`, and where the bytes after it start (line breaks skipped).
fn word(bytes: &[u8], p: usize) -> Option<(u32, usize)> {
    let w = bytes.get(p..p + 4)?;
    if !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = w.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    Some((n, skip_breaks(bytes, p + 4)))
}

fn ident_at(bytes: &[u8], p: usize) -> bool {
    let rest = bytes.get(p..).unwrap_or_default();
    rest.starts_with(b"HEADER") || rest.starts_with(b"TRAILER")
}

/// Whether a record starts at `p`: a header or trailer, or a base segment (an RDW of at
/// least 426, processing indicator `1`, a time stamp whose month is 01-12).
fn record_starts_at(bytes: &[u8], p: usize, blocked: bool) -> bool {
    let Some((w, q)) = word(bytes, p) else {
        return false;
    };
    if ident_at(bytes, q) {
        return true;
    }
    let (rdw, q) = if blocked {
        match word(bytes, q) {
            Some((_, q2)) if ident_at(bytes, q2) => return true,
            Some(next) => next,
            None => return false,
        }
    } else {
        (w, q)
    };
    let month = bytes
        .get(q + 1..q + 3)
        .filter(|m| m.iter().all(u8::is_ascii_digit))
        .map(|m| (m[0] - b'0') * 10 + (m[1] - b'0'));
    rdw as usize >= RECORD_LEN
        && bytes.get(q) == Some(&b'1')
        && month.is_some_and(|m| (1..=12).contains(&m))
}

fn detect_framing(bytes: &[u8]) -> Result<Framing, FileDrift> {
    let p = skip_breaks(bytes, 0);
    let no_header = || malformed("no HEADER record at the start of the file", 0);
    let (w, q) = word(bytes, p).ok_or_else(no_header)?;
    let (blocked, rdw) = if ident_at(bytes, q) {
        (false, w)
    } else {
        match word(bytes, q) {
            Some((rdw, q2)) if ident_at(bytes, q2) => (true, rdw),
            _ => return Err(no_header()),
        }
    };
    if (rdw as usize) < RECORD_LEN {
        if bytes.iter().any(is_break) {
            return Ok(Framing::Lines { blocked });
        }
        return Err(malformed(
            &format!(
                "the header's record descriptor word {rdw} is not a record length and the file has no lines"
            ),
            0,
        ));
    }
    Ok(Framing::Rdw { blocked })
}

/// Hands each framed record to `on_frame` in file order; stops at the first error.
fn frame<'b>(
    bytes: &'b [u8],
    framing: Framing,
    on_frame: &mut dyn FnMut(Frame<'b>) -> Result<(), FileDrift>,
) -> Result<(), FileDrift> {
    match framing {
        Framing::Rdw { blocked } => frame_rdw(bytes, blocked, on_frame),
        Framing::Lines { blocked } => frame_lines(bytes, blocked, on_frame),
    }
}

fn frame_rdw<'b>(
    bytes: &'b [u8],
    blocked: bool,
    on_frame: &mut dyn FnMut(Frame<'b>) -> Result<(), FileDrift>,
) -> Result<(), FileDrift> {
    let mut framed = 0u64;
    let (mut p, mut line, mut counted_to) = (0, 1u64, 0);
    loop {
        p = skip_breaks(bytes, p);
        if p >= bytes.len() {
            break;
        }
        line += bytes[counted_to..p].iter().filter(|b| **b == b'\n').count() as u64;
        counted_to = p;
        let start = p;
        let (bdw, q) = match word(bytes, p) {
            Some((w, q)) if blocked && word(bytes, q).is_some() => (Some(w), q),
            _ => (None, p),
        };
        let Some((rdw, _)) = word(bytes, q) else {
            let msg = format!("no record descriptor word at byte {q}");
            return Err(malformed(&msg, framed));
        };
        let want = rdw as usize;
        let (mut rec, mut i) = match bytes.get(q..q + want) {
            // The usual record: no line break inside, so it is the file's own bytes.
            Some(whole) if !whole.iter().any(is_break) => (Cow::Borrowed(whole), q + want),
            _ => {
                let mut rec = Vec::with_capacity(want);
                let mut i = q;
                while rec.len() < want && i < bytes.len() {
                    if is_break(&bytes[i]) {
                        // A break inside a record wraps it, unless a new record follows.
                        let next = skip_breaks(bytes, i);
                        if next >= bytes.len() || record_starts_at(bytes, next, blocked) {
                            break;
                        }
                        i = next;
                        continue;
                    }
                    rec.push(bytes[i]);
                    i += 1;
                }
                (Cow::Owned(rec), i)
            }
        };
        let mut problem = None;
        if rec.len() < want {
            problem = Some(format!(
                "record descriptor word says {rdw} bytes, the record has {}",
                rec.len()
            ));
        } else {
            let eol = bytes[i..]
                .iter()
                .position(is_break)
                .map_or(bytes.len(), |k| i + k);
            if bytes[i..eol].iter().all(|b| *b == b' ') {
                i = eol;
            } else if !record_starts_at(bytes, i, blocked) {
                rec.to_mut().extend_from_slice(&bytes[i..eol]);
                problem = Some(format!(
                    "record descriptor word says {rdw} bytes, the record has {}",
                    rec.len()
                ));
                i = eol;
            }
        }
        if let Some(b) = bdw {
            let block = bytes[start..i].iter().filter(|b| !is_break(b)).count();
            if problem.is_none() && b as usize != block {
                problem = Some(format!(
                    "block descriptor word says {b} bytes, the block has {block}"
                ));
            }
        }
        on_frame(Frame {
            start,
            line,
            bdw,
            rdw,
            bytes: rec,
            problem,
            lines_mode: false,
        })?;
        framed += 1;
        p = i;
    }
    Ok(())
}

fn frame_lines<'b>(
    bytes: &'b [u8],
    blocked: bool,
    on_frame: &mut dyn FnMut(Frame<'b>) -> Result<(), FileDrift>,
) -> Result<(), FileDrift> {
    let mut start = 0;
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let text = raw.strip_suffix(b"\r").unwrap_or(raw);
        let offset = start;
        start += raw.len() + 1;
        if text.iter().all(|b| *b == b' ') {
            continue;
        }
        let (bdw, rec) = match word(text, 0) {
            Some((w, _)) if blocked && word(text, 4).is_some() => (Some(w), &text[4..]),
            _ => (None, text),
        };
        on_frame(Frame {
            start: offset,
            line: n as u64 + 1,
            bdw,
            rdw: word(rec, 0).map_or(0, |(w, _)| w),
            bytes: Cow::Borrowed(rec),
            problem: None,
            lines_mode: true,
        })?;
    }
    Ok(())
}

/// Reads fields by their 1-based positions in the Metro 2 layout, reporting what it cannot.
struct Fields<'a, 'i> {
    bytes: Cow<'a, [u8]>,
    /// The segment as text if it is UTF-8 (the usual case), checked once, at the first
    /// text field read; only for borrowed bytes.
    utf8: OnceCell<Option<&'a str>>,
    /// Named in reasons: `base`, `J1`, ..., `header`, `trailer`.
    segment: &'static str,
    position: Position,
    issues: &'i mut Vec<RecordIssue>,
}

impl<'a> Fields<'a, '_> {
    fn raw(&self, pos: usize, len: usize) -> &[u8] {
        &self.bytes[pos - 1..pos - 1 + len]
    }

    /// The bytes at `pos` as text, untrimmed, invalid UTF-8 replaced: borrowed from the
    /// record when they are UTF-8 and the segment is whole (not padded out to its length).
    fn lossy(&self, pos: usize, len: usize) -> Cow<'a, str> {
        let Cow::Borrowed(bytes) = self.bytes else {
            return Cow::Owned(String::from_utf8_lossy(self.raw(pos, len)).into_owned());
        };
        let range = pos - 1..pos - 1 + len;
        let segment = *self.utf8.get_or_init(|| std::str::from_utf8(bytes).ok());
        // A field of a UTF-8 segment is UTF-8 unless it cuts a character.
        match segment.and_then(|text| text.get(range.clone())) {
            Some(text) => Cow::Borrowed(text),
            None => String::from_utf8_lossy(&bytes[range]),
        }
    }

    /// [`Fields::lossy`], trimmed.
    fn text(&self, pos: usize, len: usize) -> Cow<'a, str> {
        match self.lossy(pos, len) {
            Cow::Borrowed(text) => Cow::Borrowed(trim_padded(text)),
            Cow::Owned(text) => Cow::Owned(text.trim().to_owned()),
        }
    }

    fn mismatch(&mut self, field: &str, expected: &str, pos: usize, len: usize) {
        let actual = String::from_utf8_lossy(self.raw(pos, len)).into_owned();
        self.issues.push(RecordIssue {
            class: DriftClass::TypeMismatch,
            reason: format!(
                "{} field {field} at position {pos} is not {expected}",
                self.segment
            ),
            field: Some(field.to_owned()),
            expected: Some(expected.to_owned()),
            actual: Some(mask_card_numbers(&actual)),
            position: self.position,
        });
    }

    /// A zero-filled number; all blank is 0.
    fn num(&mut self, field: &str, pos: usize, len: usize) -> u64 {
        let raw = self.raw(pos, len);
        if raw.iter().all(|b| *b == b' ') {
            return 0;
        }
        if raw.iter().all(u8::is_ascii_digit) {
            return raw.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'));
        }
        self.mismatch(field, &format!("{len} digits"), pos, len);
        0
    }

    /// MMDDYYYY; all zeros or blank is no date.
    fn date(&mut self, field: &str, pos: usize) -> Option<NaiveDate> {
        let raw = self.raw(pos, 8);
        if raw.iter().all(|b| *b == b'0' || *b == b' ') {
            return None;
        }
        let parsed = mmddyyyy(raw);
        if parsed.is_none() {
            self.mismatch(field, "a date MMDDYYYY", pos, 8);
        }
        parsed
    }

    /// MMDDYYYYHHMMSS; all zeros or blank is no time.
    fn timestamp(&mut self, field: &str, pos: usize) -> Option<NaiveDateTime> {
        let raw = self.raw(pos, 14);
        if raw.iter().all(|b| *b == b'0' || *b == b' ') {
            return None;
        }
        let parsed = mmddyyyyhhmmss(raw);
        if parsed.is_none() {
            self.mismatch(field, "a time stamp MMDDYYYYHHMMSS", pos, 14);
        }
        parsed
    }
}

/// `text.trim()`, sooner for a blank-padded field: its trailing blanks are cut byte by byte
/// first (a blank is a whole character, so the cut is at a character boundary).
fn trim_padded(text: &str) -> &str {
    let end = text.bytes().rposition(|b| b != b' ').map_or(0, |i| i + 1);
    super::value::trim(&text[..end])
}

/// Eight ASCII digits MMDDYYYY as a date: what chrono's `%m%d%Y` reads from them.
fn mmddyyyy(raw: &[u8]) -> Option<NaiveDate> {
    super::layout::hand_read_date(raw, "%m%d%Y")
}

/// Fourteen ASCII digits MMDDYYYYHHMMSS as a time: what chrono's `%m%d%Y%H%M%S` reads
/// from them. A 60th second (a leap second, which chrono accepts) goes to chrono.
fn mmddyyyyhhmmss(raw: &[u8]) -> Option<NaiveDateTime> {
    if raw.len() != 14 {
        return None;
    }
    let date = mmddyyyy(&raw[..8])?;
    let number = super::value::ascii_number;
    let (h, m, sec) = (
        number(&raw[8..10])?,
        number(&raw[10..12])?,
        number(&raw[12..14])?,
    );
    if sec >= 60 {
        let text = std::str::from_utf8(raw).ok()?;
        return NaiveDateTime::parse_from_str(text, "%m%d%Y%H%M%S").ok();
    }
    date.and_hms_opt(h, m, sec)
}

fn fields<'a, 'i>(
    bytes: &'a [u8],
    len: usize,
    segment: &'static str,
    position: Position,
    issues: &'i mut Vec<RecordIssue>,
) -> Fields<'a, 'i> {
    let bytes = if bytes.len() >= len {
        Cow::Borrowed(&bytes[..len])
    } else {
        let mut padded = bytes.to_vec();
        padded.resize(len, b' ');
        Cow::Owned(padded)
    };
    Fields {
        bytes,
        utf8: OnceCell::new(),
        segment,
        position,
        issues,
    }
}

fn malformed(reason: &str, records: u64) -> FileDrift {
    FileDrift {
        class: DriftClass::Malformed,
        reason: reason.to_owned(),
        field: None,
        expected: None,
        actual: None,
        records,
    }
}

fn issue_at(position: Position, reason: &str) -> RecordIssue {
    RecordIssue {
        class: DriftClass::Malformed,
        reason: reason.to_owned(),
        field: None,
        expected: None,
        actual: None,
        position,
    }
}

fn report_framing(f: &Frame, what: &str, position: Position, issues: &mut Vec<RecordIssue>) {
    if let Some(problem) = &f.problem {
        let mut issue = issue_at(position, &format!("{what}: {problem}"));
        issue.field = Some("record_descriptor_word".to_owned());
        issues.push(issue);
    }
}

fn parse_header(f: &Frame, issues: &mut Vec<RecordIssue>) -> Header {
    let position = Position {
        record_index: 0,
        line: f.line,
        byte_offset: f.start as u64,
    };
    report_framing(f, "header", position, issues);
    let mut r = fields(&f.bytes, RECORD_LEN, "header", position, issues);
    Header {
        block_descriptor_word: f.bdw,
        record_descriptor_word: f.rdw,
        cycle_identifier: r.text(11, 2).into_owned(),
        innovis_program_identifier: r.text(13, 10).into_owned(),
        equifax_program_identifier: r.text(23, 10).into_owned(),
        experian_program_identifier: r.text(33, 5).into_owned(),
        transunion_program_identifier: r.text(38, 10).into_owned(),
        activity_date: r.date("activity_date", 48),
        date_created: r.date("date_created", 56),
        program_date: r.date("program_date", 64),
        program_revision_date: r.date("program_revision_date", 72),
        reporter_name: r.text(80, 40).into_owned(),
        reporter_address: r.text(120, 96).into_owned(),
        reporter_telephone_number: r.text(216, 10).into_owned(),
        software_vendor_name: r.text(226, 40).into_owned(),
        software_version_number: r.text(266, 5).into_owned(),
        prbc_program_identifier: r.text(271, 20).into_owned(),
    }
}

fn parse_trailer(f: &Frame, issues: &mut Vec<RecordIssue>) -> Trailer {
    let position = Position {
        record_index: 0,
        line: f.line,
        byte_offset: f.start as u64,
    };
    report_framing(f, "trailer", position, issues);
    let mut r = fields(&f.bytes, RECORD_LEN, "trailer", position, issues);
    // Positions of the per-status counts, in the order of STATUS_CODES: DA and DF sit
    // apart from the others.
    let mut status_counts = [0; 23];
    for (i, code) in STATUS_CODES.iter().enumerate() {
        let pos = match *code {
            "DF" => 30,
            "DA" => 66,
            _ => 75 + 9 * i,
        };
        status_counts[i] = r.num(&format!("total_status_{code}"), pos, 9);
    }
    Trailer {
        line: f.line,
        block_descriptor_word: f.bdw,
        record_descriptor_word: f.rdw,
        total_base_records: r.num("total_base_records", 12, 9),
        total_j1_segments: r.num("total_j1_segments", 39, 9),
        total_j2_segments: r.num("total_j2_segments", 48, 9),
        block_count: r.num("block_count", 57, 9),
        status_counts,
        total_ecoa_code_z: r.num("total_ecoa_code_z", 264, 9),
        total_employment_segments: r.num("total_employment_segments", 273, 9),
        total_original_creditor_segments: r.num("total_original_creditor_segments", 282, 9),
        total_purchased_sold_segments: r.num("total_purchased_sold_segments", 291, 9),
        total_mortgage_segments: r.num("total_mortgage_segments", 300, 9),
        total_specialized_payment_segments: r.num("total_specialized_payment_segments", 309, 9),
        total_change_segments: r.num("total_change_segments", 318, 9),
        total_ssn_all_segments: r.num("total_ssn_all_segments", 327, 9),
        total_ssn_base_segments: r.num("total_ssn_base_segments", 336, 9),
        total_ssn_j1_segments: r.num("total_ssn_j1_segments", 345, 9),
        total_ssn_j2_segments: r.num("total_ssn_j2_segments", 354, 9),
        total_dob_all_segments: r.num("total_dob_all_segments", 363, 9),
        total_dob_base_segments: r.num("total_dob_base_segments", 372, 9),
        total_dob_j1_segments: r.num("total_dob_j1_segments", 381, 9),
        total_dob_j2_segments: r.num("total_dob_j2_segments", 390, 9),
        total_telephone_all_segments: r.num("total_telephone_all_segments", 399, 9),
    }
}

fn parse_frame<'f>(
    f: &'f Frame,
    position: Position,
    issues: &mut Vec<RecordIssue>,
) -> BaseRecord<'f> {
    report_framing(f, "data record", position, issues);
    let mut record = BaseRecord {
        position,
        block_descriptor_word: f.bdw,
        base: parse_base(&f.bytes, f.rdw, position, issues),
        ..BaseRecord::default()
    };
    walk_segments(f, position, issues, |id, seg, issues| {
        if !add_segment(&mut record, id, seg, position, issues) {
            let reason = format!("a second {} segment", String::from_utf8_lossy(id));
            issues.push(issue_at(position, &reason));
        }
    });
    record
}

/// Hands each segment after the base segment to `on_segment` with its identifier, in
/// order, up to blank bytes, the end of the record or an unknown identifier (reported);
/// a segment cut short is handed on as it is (and reported, unless its framing already
/// was).
fn walk_segments<'f>(
    f: &'f Frame,
    position: Position,
    issues: &mut Vec<RecordIssue>,
    mut on_segment: impl FnMut(&'f [u8], &'f [u8], &mut Vec<RecordIssue>),
) {
    let mut off = RECORD_LEN;
    while off < f.bytes.len() {
        let rest = &f.bytes[off..];
        if rest.iter().all(|b| *b == b' ') {
            break;
        }
        let id = &rest[..rest.len().min(2)];
        let Some(len) = segment_len(id) else {
            let reason = format!(
                "unknown segment identifier {:?} at byte {} of the record",
                String::from_utf8_lossy(id),
                off + 1
            );
            issues.push(issue_at(position, &reason));
            break;
        };
        if rest.len() < len && !f.lines_mode && f.problem.is_none() {
            let reason = format!(
                "segment {} at byte {} runs past the end of the record",
                String::from_utf8_lossy(id),
                off + 1
            );
            issues.push(issue_at(position, &reason));
        }
        on_segment(id, &rest[..rest.len().min(len)], issues);
        off += len;
    }
}

fn segment_len(id: &[u8]) -> Option<usize> {
    Some(match id {
        b"J1" => 100,
        b"J2" => 200,
        b"K1" | b"K2" => 34,
        b"K3" => 40,
        b"K4" => 30,
        b"L1" => 54,
        b"N1" => 146,
        _ => return None,
    })
}

/// Parses one segment into `record`; false if it is a second one of a kind allowed once.
fn add_segment<'b>(
    record: &mut BaseRecord<'b>,
    id: &[u8],
    seg: &'b [u8],
    position: Position,
    issues: &mut Vec<RecordIssue>,
) -> bool {
    fn once<T>(slot: &mut Option<T>, value: T) -> bool {
        let fresh = slot.is_none();
        if fresh {
            *slot = Some(value);
        }
        fresh
    }
    match id {
        b"J1" => record.j1.push(parse_j1(seg, position, issues)),
        b"J2" => record.j2.push(parse_j2(seg, position, issues)),
        b"K1" => return once(&mut record.k1, parse_k1(seg, position, issues)),
        b"K2" => return once(&mut record.k2, parse_k2(seg, position, issues)),
        b"K3" => return once(&mut record.k3, parse_k3(seg, position, issues)),
        b"K4" => return once(&mut record.k4, parse_k4(seg, position, issues)),
        b"L1" => return once(&mut record.l1, parse_l1(seg, position, issues)),
        b"N1" => return once(&mut record.n1, parse_n1(seg, position, issues)),
        _ => unreachable!("segment_len knows only these identifiers"),
    }
    true
}

fn parse_base<'b>(
    bytes: &'b [u8],
    rdw: u32,
    position: Position,
    issues: &mut Vec<RecordIssue>,
) -> BaseSegment<'b> {
    let mut r = fields(bytes, RECORD_LEN, "base", position, issues);
    BaseSegment {
        record_descriptor_word: rdw,
        processing_indicator: r.text(5, 1),
        time_stamp: r.timestamp("time_stamp", 6),
        correction_indicator: r.lossy(20, 1),
        identification_number: r.text(21, 20),
        cycle_identifier: r.text(41, 2),
        consumer_account_number: r.text(43, 30),
        portfolio_type: r.text(73, 1),
        account_type: r.text(74, 2),
        date_opened: r.date("date_opened", 76),
        credit_limit: r.num("credit_limit", 84, 9),
        highest_credit: r.num("highest_credit", 93, 9),
        terms_duration: r.text(102, 3),
        terms_frequency: r.text(105, 1),
        scheduled_monthly_payment: r.num("scheduled_monthly_payment", 106, 9),
        actual_payment_amount: r.num("actual_payment_amount", 115, 9),
        account_status: r.text(124, 2),
        payment_rating: r.text(126, 1),
        payment_history_profile: r.text(127, 24),
        special_comment: r.text(151, 2),
        compliance_condition_code: r.text(153, 2),
        current_balance: r.num("current_balance", 155, 9),
        amount_past_due: r.num("amount_past_due", 164, 9),
        original_charge_off_amount: r.num("original_charge_off_amount", 173, 9),
        date_of_account_information: r.date("date_of_account_information", 182),
        date_of_first_delinquency: r.date("date_of_first_delinquency", 190),
        date_closed: r.date("date_closed", 198),
        date_of_last_payment: r.date("date_of_last_payment", 206),
        interest_type_indicator: r.text(214, 1),
        // 215-230 are reserved.
        consumer_transaction_type: r.text(231, 1),
        surname: r.text(232, 25),
        first_name: r.text(257, 20),
        middle_name: r.text(277, 20),
        generation_code: r.text(297, 1),
        social_security_number: r.text(298, 9),
        date_of_birth: r.date("date_of_birth", 307),
        telephone_number: r.text(315, 10),
        ecoa_code: r.text(325, 1),
        consumer_information_indicator: r.text(326, 2),
        country_code: r.text(328, 2),
        first_line_of_address: r.text(330, 32),
        second_line_of_address: r.text(362, 32),
        city: r.text(394, 20),
        state: r.text(414, 2),
        postal_code: r.text(416, 9),
        address_indicator: r.text(425, 1),
        residence_code: r.text(426, 1),
    }
}

/// The consumer fields J1 and J2 share (positions 4-99).
fn parse_consumer<'b>(r: &mut Fields<'b, '_>) -> J1<'b> {
    J1 {
        surname: r.text(4, 25),
        first_name: r.text(29, 20),
        middle_name: r.text(49, 20),
        generation_code: r.text(69, 1),
        social_security_number: r.text(70, 9),
        date_of_birth: r.date("date_of_birth", 79),
        telephone_number: r.text(87, 10),
        ecoa_code: r.text(97, 1),
        consumer_information_indicator: r.text(98, 2),
    }
}

fn parse_j1<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> J1<'b> {
    parse_consumer(&mut fields(seg, 100, "J1", position, issues))
}

fn parse_j2<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> J2<'b> {
    let mut r = fields(seg, 200, "J2", position, issues);
    J2 {
        consumer: parse_consumer(&mut r),
        country_code: r.text(100, 2),
        first_line_of_address: r.text(102, 32),
        second_line_of_address: r.text(134, 32),
        city: r.text(166, 20),
        state: r.text(186, 2),
        postal_code: r.text(188, 9),
        address_indicator: r.text(197, 1),
        residence_code: r.text(198, 1),
    }
}

fn parse_k1<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> K1<'b> {
    let r = fields(seg, 34, "K1", position, issues);
    K1 {
        original_creditor_name: r.text(3, 30),
        creditor_classification: r.text(33, 2),
    }
}

fn parse_k2<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> K2<'b> {
    let r = fields(seg, 34, "K2", position, issues);
    K2 {
        purchased_sold_indicator: r.text(3, 1),
        purchased_sold_name: r.text(4, 30),
    }
}

fn parse_k3<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> K3<'b> {
    let r = fields(seg, 40, "K3", position, issues);
    K3 {
        agency_identifier: r.text(3, 2),
        agency_account_number: r.text(5, 18),
        mortgage_identification_number: r.text(23, 18),
    }
}

fn parse_k4<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> K4<'b> {
    let mut r = fields(seg, 30, "K4", position, issues);
    K4 {
        specialized_payment_indicator: r.text(3, 2),
        deferred_payment_start_date: r.date("deferred_payment_start_date", 5),
        balloon_payment_due_date: r.date("balloon_payment_due_date", 13),
        balloon_payment_amount: r.num("balloon_payment_amount", 21, 9),
    }
}

fn parse_l1<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> L1<'b> {
    let r = fields(seg, 54, "L1", position, issues);
    L1 {
        change_indicator: r.text(3, 1),
        new_consumer_account_number: r.text(4, 30),
        new_identification_number: r.text(34, 20),
    }
}

fn parse_n1<'b>(seg: &'b [u8], position: Position, issues: &mut Vec<RecordIssue>) -> N1<'b> {
    let r = fields(seg, 146, "N1", position, issues);
    N1 {
        employer_name: r.text(3, 30),
        first_line_of_employer_address: r.text(33, 32),
        second_line_of_employer_address: r.text(65, 32),
        employer_city: r.text(97, 20),
        employer_state: r.text(117, 2),
        employer_postal_code: r.text(119, 9),
        occupation: r.text(128, 18),
    }
}

/// What a base-segment field a layout may pick holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Money,
    Date,
    Count,
}

/// The base-segment fields a layout may pick (`column` in `topologies/*.toml`), with what
/// they hold. Segment counts (`j1_segments`, `j2_segments`) are per record.
const FIELDS: &[(&str, Kind)] = &[
    ("processing_indicator", Kind::Text),
    ("correction_indicator", Kind::Text),
    ("identification_number", Kind::Text),
    ("cycle_identifier", Kind::Text),
    ("consumer_account_number", Kind::Text),
    ("portfolio_type", Kind::Text),
    ("account_type", Kind::Text),
    ("date_opened", Kind::Date),
    ("credit_limit", Kind::Money),
    ("highest_credit", Kind::Money),
    ("terms_duration", Kind::Text),
    ("terms_frequency", Kind::Text),
    ("scheduled_monthly_payment", Kind::Money),
    ("actual_payment_amount", Kind::Money),
    ("account_status", Kind::Text),
    ("payment_rating", Kind::Text),
    ("payment_history_profile", Kind::Text),
    ("special_comment", Kind::Text),
    ("compliance_condition_code", Kind::Text),
    ("current_balance", Kind::Money),
    ("amount_past_due", Kind::Money),
    ("original_charge_off_amount", Kind::Money),
    ("date_of_account_information", Kind::Date),
    ("date_of_first_delinquency", Kind::Date),
    ("date_closed", Kind::Date),
    ("date_of_last_payment", Kind::Date),
    ("interest_type_indicator", Kind::Text),
    ("consumer_transaction_type", Kind::Text),
    ("surname", Kind::Text),
    ("first_name", Kind::Text),
    ("middle_name", Kind::Text),
    ("generation_code", Kind::Text),
    ("social_security_number", Kind::Text),
    ("date_of_birth", Kind::Date),
    ("telephone_number", Kind::Text),
    ("ecoa_code", Kind::Text),
    ("consumer_information_indicator", Kind::Text),
    ("country_code", Kind::Text),
    ("first_line_of_address", Kind::Text),
    ("second_line_of_address", Kind::Text),
    ("city", Kind::Text),
    ("state", Kind::Text),
    ("postal_code", Kind::Text),
    ("address_indicator", Kind::Text),
    ("residence_code", Kind::Text),
    ("j1_segments", Kind::Count),
    ("j2_segments", Kind::Count),
];

/// Checks that a layout field can take base-segment field `source` as type `ty`: text as
/// string (or pan), money as long, dates as date, counts as int or long.
pub(super) fn check_field(source: &str, ty: &super::FieldType) -> Result<(), String> {
    use super::FieldType;
    let Some((_, kind)) = FIELDS.iter().find(|(name, _)| *name == source) else {
        return Err(format!(
            "{source} is not a Metro 2 base-segment field; known: {}",
            FIELDS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let ok = match kind {
        Kind::Text => *ty == FieldType::String || ty.is_tokenised(),
        Kind::Money => matches!(ty, FieldType::Long),
        Kind::Date => matches!(ty, FieldType::Date { .. }),
        Kind::Count => matches!(ty, FieldType::Int | FieldType::Long),
    };
    if ok {
        Ok(())
    } else {
        let want = match kind {
            Kind::Text => "string, pan or account_number",
            Kind::Money => "long (whole dollars)",
            Kind::Date => "date",
            Kind::Count => "int or long",
        };
        Err(format!(
            "Metro 2 field {source} is read as {want}, not {}",
            ty.describe()
        ))
    }
}

/// A base-segment field's value, before the layout's type and domain.
enum Raw<'a> {
    Text(&'a str),
    Number(u64),
    Date(Option<NaiveDate>),
}

/// Reads one layout field's raw value from a base record.
type Picker = for<'a, 'b> fn(&'a BaseRecord<'b>) -> Raw<'a>;

/// The reader of base-segment field `source`, found once per file rather than by name per
/// record.
fn picker(source: &str) -> Picker {
    match source {
        "processing_indicator" => |r| Raw::Text(&r.base.processing_indicator),
        "correction_indicator" => |r| Raw::Text(&r.base.correction_indicator),
        "identification_number" => |r| Raw::Text(&r.base.identification_number),
        "cycle_identifier" => |r| Raw::Text(&r.base.cycle_identifier),
        "consumer_account_number" => |r| Raw::Text(&r.base.consumer_account_number),
        "portfolio_type" => |r| Raw::Text(&r.base.portfolio_type),
        "account_type" => |r| Raw::Text(&r.base.account_type),
        "date_opened" => |r| Raw::Date(r.base.date_opened),
        "credit_limit" => |r| Raw::Number(r.base.credit_limit),
        "highest_credit" => |r| Raw::Number(r.base.highest_credit),
        "terms_duration" => |r| Raw::Text(&r.base.terms_duration),
        "terms_frequency" => |r| Raw::Text(&r.base.terms_frequency),
        "scheduled_monthly_payment" => |r| Raw::Number(r.base.scheduled_monthly_payment),
        "actual_payment_amount" => |r| Raw::Number(r.base.actual_payment_amount),
        "account_status" => |r| Raw::Text(&r.base.account_status),
        "payment_rating" => |r| Raw::Text(&r.base.payment_rating),
        "payment_history_profile" => |r| Raw::Text(&r.base.payment_history_profile),
        "special_comment" => |r| Raw::Text(&r.base.special_comment),
        "compliance_condition_code" => |r| Raw::Text(&r.base.compliance_condition_code),
        "current_balance" => |r| Raw::Number(r.base.current_balance),
        "amount_past_due" => |r| Raw::Number(r.base.amount_past_due),
        "original_charge_off_amount" => |r| Raw::Number(r.base.original_charge_off_amount),
        "date_of_account_information" => |r| Raw::Date(r.base.date_of_account_information),
        "date_of_first_delinquency" => |r| Raw::Date(r.base.date_of_first_delinquency),
        "date_closed" => |r| Raw::Date(r.base.date_closed),
        "date_of_last_payment" => |r| Raw::Date(r.base.date_of_last_payment),
        "interest_type_indicator" => |r| Raw::Text(&r.base.interest_type_indicator),
        "consumer_transaction_type" => |r| Raw::Text(&r.base.consumer_transaction_type),
        "surname" => |r| Raw::Text(&r.base.surname),
        "first_name" => |r| Raw::Text(&r.base.first_name),
        "middle_name" => |r| Raw::Text(&r.base.middle_name),
        "generation_code" => |r| Raw::Text(&r.base.generation_code),
        "social_security_number" => |r| Raw::Text(&r.base.social_security_number),
        "date_of_birth" => |r| Raw::Date(r.base.date_of_birth),
        "telephone_number" => |r| Raw::Text(&r.base.telephone_number),
        "ecoa_code" => |r| Raw::Text(&r.base.ecoa_code),
        "consumer_information_indicator" => |r| Raw::Text(&r.base.consumer_information_indicator),
        "country_code" => |r| Raw::Text(&r.base.country_code),
        "first_line_of_address" => |r| Raw::Text(&r.base.first_line_of_address),
        "second_line_of_address" => |r| Raw::Text(&r.base.second_line_of_address),
        "city" => |r| Raw::Text(&r.base.city),
        "state" => |r| Raw::Text(&r.base.state),
        "postal_code" => |r| Raw::Text(&r.base.postal_code),
        "address_indicator" => |r| Raw::Text(&r.base.address_indicator),
        "residence_code" => |r| Raw::Text(&r.base.residence_code),
        "j1_segments" => |r| Raw::Number(r.j1.len() as u64),
        "j2_segments" => |r| Raw::Number(r.j2.len() as u64),
        other => unreachable!("the layout checks Metro 2 field names ({other})"),
    }
}

/// Parses a Metro 2 file per `category`, calling `on_record` with each data record (its
/// base-segment fields picked by the layout) or its issue, in file order, holding one
/// record at a time; the contract is [`super::parse_csv`]'s. The trailer is reconciled at
/// the end, so a caller wanting all or nothing validates first
/// ([`super::Category::validates_first`] says so for every Metro 2 category).
pub fn parse_metro2_records<E>(
    bytes: &[u8],
    category: &super::Category,
    on_record: impl FnMut(Result<super::ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<super::ParseSummary, FileDrift>, E> {
    parse_metro2_pass(bytes, category, super::Pass::Typed, on_record)
}

/// [`parse_metro2_records`], or with [`super::Pass::Reconcile`] its structure and trailer
/// only (the counts come from the scan, which reads of a record only what is counted; no
/// record is typed).
pub(super) fn parse_metro2_pass<E>(
    bytes: &[u8],
    category: &super::Category,
    mut pass: super::Pass<'_>,
    mut on_record: impl FnMut(Result<super::ParsedRecord<'_, '_>, RecordIssue>) -> Result<(), E>,
) -> Result<Result<super::ParseSummary, FileDrift>, E> {
    let mut summary = super::ParseSummary::default();
    // The first problem of the header, the trailer or the file's structure: it holds the
    // file, reported once the records are read.
    let mut file_problem: Option<RecordIssue> = None;
    let pickers: Vec<Picker> = category.fields.iter().map(|f| picker(&f.column)).collect();
    // Reused across records; see `recycle`.
    let mut spare: Vec<super::FieldValue<'static>> = Vec::with_capacity(pickers.len());
    // A reconciling pass types no record: its scan only counts them.
    let depth = match pass {
        super::Pass::Typed => Depth::Whole,
        super::Pass::Reconcile(_) => Depth::Counts,
    };
    let scan = scan_to(bytes, depth, |found| match found {
        Found::Event(Event::FileIssue(issue)) => {
            file_problem.get_or_insert(issue);
            Ok(())
        }
        Found::Counted(position) => {
            summary.records += 1;
            // Tells a reconciling pass's `on_offset`; a counted record is never typed.
            pass.types_record_at(position.byte_offset);
            Ok(())
        }
        Found::Event(Event::Record(record, issues)) => {
            summary.records += 1;
            if !pass.types_record_at(record.position.byte_offset) {
                return Ok(());
            }
            let first = issues.into_iter().reduce(|mut first, _| {
                first.reason.push_str(" (and more)");
                first
            });
            let mut values = super::value::recycle(std::mem::take(&mut spare));
            let outcome = match first {
                Some(issue) => Err(issue),
                None => {
                    record_values(&record, category, &pickers, &mut values).map_err(|issue| *issue)
                }
            };
            let handed = super::hand_on(
                &mut summary,
                outcome,
                record.position,
                &values,
                &mut on_record,
            );
            spare = super::value::recycle(values);
            handed
        }
    })?;
    let scan = match scan {
        Ok(scan) => scan,
        Err(mut drift) => {
            drift.records = summary.records;
            return Ok(Err(drift));
        }
    };
    let records = scan.counts.base_records;
    if let Some(issue) = file_problem {
        let class = if issue.reason.starts_with("trailer") {
            DriftClass::TrailerMismatch
        } else {
            DriftClass::Malformed
        };
        return Ok(Err(FileDrift {
            class,
            reason: format!("line {}: {}", issue.position.line, issue.reason),
            field: issue.field,
            expected: issue.expected,
            actual: issue.actual,
            records,
        }));
    }
    let differences = reconcile_counts(scan.trailer.as_ref(), &scan.counts);
    if let Some(first) = differences.first() {
        let listed: Vec<String> = differences
            .iter()
            .map(|d| match d.trailer {
                Some(t) => format!("{} {t} stated, {} parsed", d.field, d.parsed),
                None => format!("no trailer, {} records", d.parsed),
            })
            .collect();
        return Ok(Err(FileDrift {
            class: DriftClass::TrailerMismatch,
            reason: format!("the trailer does not reconcile: {}", listed.join("; ")),
            field: Some(first.field.clone()),
            expected: first.trailer.map(|t| t.to_string()),
            actual: Some(first.parsed.to_string()),
            records,
        }));
    }
    let trailer = scan.trailer.as_ref().expect("reconciled, so present");
    let mut totals = vec![
        count_total("total_base_records", trailer.total_base_records),
        count_total("total_j1_segments", trailer.total_j1_segments),
        count_total("total_j2_segments", trailer.total_j2_segments),
    ];
    for (code, n) in STATUS_CODES.iter().zip(trailer.status_counts) {
        if n > 0 {
            totals.push(count_total(&format!("status_{code}"), n));
        }
    }
    summary.trailer = Some(super::TrailerCheck {
        line: trailer.line,
        records,
        sums: totals,
    });
    Ok(Ok(summary))
}

/// A clean record's values in layout order (into `values`, emptied first), or the first
/// reason one cannot be read. `pickers` read the layout's fields, in its order.
fn record_values<'r>(
    record: &'r BaseRecord<'_>,
    category: &super::Category,
    pickers: &[Picker],
    values: &mut Vec<super::FieldValue<'r>>,
) -> Result<(), Box<RecordIssue>> {
    use super::value::FieldValue;
    let position = record.position;
    values.clear();
    for (field, pick) in category.fields.iter().zip(pickers) {
        let value = match pick(record) {
            Raw::Text(t) => super::value::read_field(field, t.as_bytes(), position, || {
                format!("Metro 2 field {}", field.column)
            })?,
            Raw::Number(n) => match field.ty {
                super::FieldType::Int => FieldValue::Int(i32::try_from(n).map_err(|_| {
                    Box::new(RecordIssue {
                        class: DriftClass::TypeMismatch,
                        reason: format!("Metro 2 field {} is {n}, too large", field.column),
                        field: Some(field.name.clone()),
                        expected: Some("an integer (32-bit)".into()),
                        actual: Some(n.to_string()),
                        position,
                    })
                })?),
                // Nine or fewer digits in every money field: always fits.
                _ => FieldValue::Long(n as i64),
            },
            Raw::Date(Some(d)) => FieldValue::Date(super::value::epoch_days(d)),
            Raw::Date(None) if field.required => {
                return Err(Box::new(RecordIssue {
                    class: DriftClass::MissingValue,
                    reason: format!("required Metro 2 field {} has no date", field.column),
                    field: Some(field.name.clone()),
                    expected: Some(field.ty.describe()),
                    actual: Some(String::new()),
                    position,
                }));
            }
            Raw::Date(None) => FieldValue::Null,
        };
        if let Err(expected) = field.domain.check(&value) {
            return Err(Box::new(RecordIssue {
                class: DriftClass::OutOfDomain,
                reason: format!("Metro 2 field {} is not {expected}", field.column),
                field: Some(field.name.clone()),
                expected: Some(expected.to_string()),
                actual: None,
                position,
            }));
        }
        values.push(value);
    }
    Ok(())
}

fn count_total(field: &str, n: u64) -> super::ControlTotal {
    super::ControlTotal {
        field: field.to_owned(),
        unscaled: i128::from(n),
        scale: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-read dates and times accept exactly what chrono's formats accept, with
    /// the same value.
    #[test]
    fn hand_read_dates_and_times_agree_with_chrono() {
        let mut accepted = 0;
        for y in [0, 1, 1900, 1999, 2000, 2024, 2026, 2100, 9999] {
            for m in 0..=13 {
                for d in 0..=32 {
                    let text = format!("{m:02}{d:02}{y:04}");
                    let theirs = NaiveDate::parse_from_str(&text, "%m%d%Y").ok();
                    assert_eq!(mmddyyyy(text.as_bytes()), theirs, "{text}");
                    accepted += usize::from(theirs.is_some());
                }
            }
        }
        assert!(accepted > 3000, "{accepted}");
        for h in 0..=25 {
            for m in [0, 1, 30, 59, 60, 61] {
                for sec in [0, 1, 30, 59, 60, 61, 99] {
                    let text = format!("02292024{h:02}{m:02}{sec:02}");
                    let theirs = NaiveDateTime::parse_from_str(&text, "%m%d%Y%H%M%S").ok();
                    assert_eq!(mmddyyyyhhmmss(text.as_bytes()), theirs, "{text}");
                }
            }
        }
        for odd in ["12312026x", "1x312026", "        ", "-1012026", "+1012026"] {
            assert_eq!(
                mmddyyyy(odd.as_bytes()),
                NaiveDate::parse_from_str(odd, "%m%d%Y").ok(),
                "{odd:?}"
            );
        }
    }

    /// A field's text is what `String::from_utf8_lossy(..).trim()` makes of its bytes (and
    /// `lossy` the same untrimmed), whether the segment is borrowed or padded, UTF-8 or not,
    /// and where a field cuts a character.
    #[test]
    fn text_is_the_lossy_trimmed_bytes() {
        let samples: [&[u8]; 14] = [
            b"",
            b"   ",
            b"AB   ",
            b"  AB",
            b" A B ",
            b"\tA\n",
            "\u{e9}  ".as_bytes(),
            "\u{a0}x\u{a0}".as_bytes(),
            "x\u{3000}".as_bytes(),
            "\u{20ac} ".as_bytes(),
            b"\xff  ",
            b"A\xc3",
            b"\xa9B ",
            b"\xe2\x82",
        ];
        for a in samples {
            for b in samples {
                let bytes = [a, b].concat();
                let n = bytes.len();
                // Each of the two, both, and the middle (cutting a character at either end).
                let mut spans = vec![(1, a.len()), (a.len() + 1, b.len()), (1, n)];
                if n >= 2 {
                    spans.push((2, n - 2));
                }
                for padded in [0, 3] {
                    let mut issues = Vec::new();
                    let r = fields(&bytes, n + padded, "test", Position::default(), &mut issues);
                    for &(pos, len) in &spans {
                        let raw = &bytes[pos - 1..pos - 1 + len];
                        let what = format!("{raw:?} at {pos} of {bytes:?} (+{padded})");
                        assert_eq!(r.lossy(pos, len), String::from_utf8_lossy(raw), "{what}");
                        let trimmed = String::from_utf8_lossy(raw).trim().to_owned();
                        assert_eq!(r.text(pos, len), trimmed, "{what}");
                    }
                }
            }
        }
    }

    /// A scan that only counts finds what a whole scan finds: the same file issues, records
    /// at the same positions, the same counts and trailer; also in damaged files.
    #[test]
    fn a_counting_scan_finds_what_a_whole_scan_finds() {
        let mut files = vec![
            reference("moov_unpacked_fixed_file.dat"),
            reference("moov_unpacked_variable_file.dat"),
            reference("cfpb_m2_file_small.txt"),
        ];
        // Each damaged in one byte (a blank, a segment identifier, a line break, invalid
        // UTF-8, a digit), at positions spread over the file.
        for base in files.clone() {
            for (k, i) in (0..base.len()).step_by(23).enumerate() {
                let mut damaged = base.clone();
                damaged[i] = b" J2\n\xff9"[k % 6];
                files.push(damaged);
            }
        }
        for bytes in &files {
            let scan = |depth| {
                let mut found = Vec::new();
                let scan = scan_to(bytes, depth, |f| {
                    found.push(match f {
                        Found::Event(Event::Record(record, _)) => Ok(record.position),
                        Found::Counted(position) => Ok(position),
                        Found::Event(Event::FileIssue(issue)) => Err(issue),
                    });
                    Ok::<(), std::convert::Infallible>(())
                });
                (scan, found)
            };
            assert_eq!(scan(Depth::Whole), scan(Depth::Counts));
        }
    }

    /// Every frame of `bytes`, collected.
    fn collect_frames(bytes: &[u8], framing: Framing) -> Result<Vec<Frame<'_>>, FileDrift> {
        let mut frames = Vec::new();
        frame(bytes, framing, &mut |f| {
            frames.push(f);
            Ok(())
        })?;
        Ok(frames)
    }

    /// Reads a reference file; a missing one fails the test, it never skips it.
    fn reference(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/metro2/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reference file {path} is required and unreadable: {e}"))
    }

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    /// A single segment file, parsed with its own parser; no issues allowed.
    fn segment(name: &str, id: &[u8]) -> BaseRecord<'static> {
        let bytes = reference(name);
        let bytes: Vec<u8> = bytes.into_iter().filter(|b| !is_break(b)).collect();
        assert_eq!(&bytes[..2], id);
        assert_eq!(Some(bytes.len()), segment_len(id), "{name}");
        let mut record = BaseRecord::default();
        let mut issues = Vec::new();
        assert!(add_segment(
            &mut record,
            id,
            &bytes,
            Position::default(),
            &mut issues
        ));
        assert_eq!(issues, []);
        record.into_owned()
    }

    #[test]
    fn header_fields_sit_at_their_positions() {
        let file = parse_metro2(&reference("moov_header_record.dat")).unwrap();
        assert_eq!(file.framing, Framing::Rdw { blocked: true });
        assert_eq!(file.issues, []);
        assert!(file.records.is_empty() && file.trailer.is_none());
        let h = &file.header;
        assert_eq!(
            (h.block_descriptor_word, h.record_descriptor_word),
            (Some(430), 426)
        );
        assert_eq!(h.cycle_identifier, "");
        assert_eq!(h.transunion_program_identifier, "5555555555");
        assert_eq!(h.activity_date, date(2002, 8, 20));
        assert_eq!(h.date_created, date(1999, 5, 10));
        assert_eq!(h.program_date, date(1999, 5, 10));
        assert_eq!(h.program_revision_date, date(1999, 5, 10));
        assert_eq!(h.reporter_name, "YOUR BUSINESS NAME HERE");
        assert_eq!(
            h.reporter_address,
            "LINE ONE OF YOUR ADDRESS LINE TWO OF YOUR ADDRESS LINE THERE OF YOUR ADDRESS"
        );
        assert_eq!(h.reporter_telephone_number, "1234567890");
        assert_eq!(h.software_vendor_name, "");
    }

    #[test]
    fn base_segment_fields_sit_at_their_positions() {
        let (r, issues) = parse_data_record(&reference("moov_base_segment.dat")).unwrap();
        assert_eq!(issues, []);
        assert_eq!(r.block_descriptor_word, Some(1268));
        let b = &r.base;
        assert_eq!(b.record_descriptor_word, 1264);
        assert_eq!(b.processing_indicator, "1");
        assert_eq!(
            b.time_stamp,
            date(2020, 1, 1).and_then(|d| d.and_hms_opt(1, 11, 22))
        );
        assert_eq!(b.correction_indicator, "0");
        assert_eq!(b.identification_number, "6666666");
        assert_eq!(b.consumer_account_number, "553723456");
        assert_eq!((&*b.portfolio_type, &*b.account_type), ("M", "48"));
        assert_eq!(b.date_opened, date(2019, 11, 22));
        assert_eq!((b.credit_limit, b.highest_credit), (0, 2438));
        assert_eq!(b.terms_duration, "LOC");
        assert_eq!(
            (b.scheduled_monthly_payment, b.actual_payment_amount),
            (0, 100)
        );
        assert_eq!(b.account_status, "62");
        assert_eq!(b.payment_history_profile, "BBBBBBBBBBBBBBBBBBBBBBBB");
        assert_eq!(b.special_comment, "AS");
        assert_eq!(b.compliance_condition_code, "XA");
        assert_eq!(b.current_balance, 2233);
        assert_eq!(b.date_of_account_information, date(2002, 9, 20));
        assert_eq!(b.date_of_first_delinquency, date(2001, 7, 19));
        assert_eq!(b.date_closed, date(2002, 8, 2));
        assert_eq!(b.date_of_last_payment, date(2002, 8, 2));
        assert_eq!(b.surname, "SMITH-JONES");
        assert_eq!(b.first_name, "JUNIOR");
        assert_eq!(b.generation_code, "S");
        assert_eq!(b.social_security_number, "159328759");
        assert_eq!(b.date_of_birth, date(1972, 3, 18));
        assert_eq!(b.telephone_number, "5175555555");
        assert_eq!(b.ecoa_code, "1");
        assert_eq!(b.country_code, "US");
        assert_eq!(b.first_line_of_address, "RMXH+6W Casper, Wyoming,");
        assert_eq!(b.second_line_of_address, "United States");
        assert_eq!(b.city, "U.S. Postal");
        assert_eq!((&*b.state, &*b.postal_code), ("MI", "72654"));
        assert_eq!((&*b.address_indicator, &*b.residence_code), ("Y", "O"));
        // The record's segments, each once but J2 twice.
        assert_eq!((r.j1.len(), r.j2.len()), (1, 2));
        assert!(r.k1.is_some() && r.k2.is_some() && r.k3.is_some() && r.k4.is_some());
        assert!(r.l1.is_some() && r.n1.is_some());
    }

    #[test]
    fn j1_and_j2_fields_sit_at_their_positions() {
        let j1 = &segment("moov_j1_segment.dat", b"J1").j1[0];
        let expected = J1 {
            surname: "BEAUCHAMP".into(),
            first_name: "KEVIN".into(),
            middle_name: "".into(),
            generation_code: "S".into(),
            social_security_number: "445112877".into(),
            date_of_birth: date(2020, 1, 2),
            telephone_number: "4335552333".into(),
            ecoa_code: "2".into(),
            consumer_information_indicator: "R".into(),
        };
        assert_eq!(j1, &expected);
        let j2 = &segment("moov_j2_segment.dat", b"J2").j2[0];
        assert_eq!(j2.consumer, expected);
        assert_eq!(j2.country_code, "US");
        assert_eq!(j2.first_line_of_address, "234 HARRISON PLACE");
        assert_eq!(j2.second_line_of_address, "SUITE #305");
        assert_eq!(j2.city, "LANSING");
        assert_eq!((&*j2.state, &*j2.postal_code), ("MI", "72654"));
        assert_eq!((&*j2.address_indicator, &*j2.residence_code), ("Y", "O"));
    }

    #[test]
    fn k_l_and_n_fields_sit_at_their_positions() {
        let k1 = segment("moov_k1_segment.dat", b"K1").k1.unwrap();
        assert_eq!(k1.original_creditor_name, "WETCOSAT INDUSTRIES LTD.");
        assert_eq!(k1.creditor_classification, "04");
        let k2 = segment("moov_k2_segment.dat", b"K2").k2.unwrap();
        assert_eq!(k2.purchased_sold_indicator, "1");
        assert_eq!(k2.purchased_sold_name, "Purchased From Name");
        let k3 = segment("moov_k3_segment.dat", b"K3").k3.unwrap();
        assert_eq!(k3.agency_identifier, "00");
        assert_eq!(k3.agency_account_number, "");
        assert_eq!(k3.mortgage_identification_number, "Mortgage Number");
        let k4 = segment("moov_k4_segment.dat", b"K4").k4.unwrap();
        assert_eq!(k4.specialized_payment_indicator, "01");
        assert_eq!(k4.deferred_payment_start_date, date(2020, 1, 20));
        assert_eq!(k4.balloon_payment_due_date, date(2020, 1, 20));
        assert_eq!(k4.balloon_payment_amount, 1234);
        let l1 = segment("moov_l1_segment.dat", b"L1").l1.unwrap();
        assert_eq!(l1.change_indicator, "1");
        assert_eq!(
            l1.new_consumer_account_number,
            "New Consumer Account Number"
        );
        assert_eq!(l1.new_identification_number, "");
        let n1 = segment("moov_n1_segment.dat", b"N1").n1.unwrap();
        assert_eq!(n1.employer_name, "Employer Name");
        assert_eq!(
            n1.first_line_of_employer_address,
            "First Line of Employer Address"
        );
        assert_eq!(
            n1.second_line_of_employer_address,
            "Second Line of Employer Address"
        );
        assert_eq!(n1.employer_city, "Employer City");
        assert_eq!(n1.employer_state, "MI");
        assert_eq!(n1.employer_postal_code, "23456");
        assert_eq!(n1.occupation, "Occupation");
    }

    #[test]
    fn trailer_fields_sit_at_their_positions() {
        let bytes = reference("moov_trailer_record.dat");
        let frames = collect_frames(&bytes, Framing::Rdw { blocked: false }).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].is(b"TRAILER") && frames[0].problem.is_none());
        let mut issues = Vec::new();
        let t = parse_trailer(&frames[0], &mut issues);
        assert_eq!(issues, []);
        assert_eq!(t.record_descriptor_word, 426);
        assert_eq!(t.total_base_records, 1);
        assert_eq!(t.status_count("DF"), Some(0));
        assert_eq!(t.block_count, 1);
        let counts: Vec<_> = ["13", "88", "89", "93", "94", "95", "96", "97"]
            .iter()
            .map(|c| t.status_count(c).unwrap())
            .collect();
        assert_eq!(counts, [0, 1, 1, 1, 0, 1, 0, 1]);
        assert_eq!(
            (t.total_ecoa_code_z, t.total_specialized_payment_segments),
            (1, 0)
        );
        assert_eq!((t.total_change_segments, t.total_dob_j2_segments), (1, 1));
        assert_eq!(t.status_count("XX"), None);
        assert_eq!(t.total_telephone_all_segments, 1);
    }

    #[test]
    fn a_non_numeric_amount_and_a_wrong_rdw_are_reported() {
        let mut bytes = reference("moov_unpacked_fixed_file.dat");
        // Current balance of the data record (header is 470 bytes, balance at 155).
        bytes[470 + 154] = b'X';
        // The trailer's RDW now claims more bytes than the file has left.
        let trailer = bytes.len() - 426;
        bytes[trailer..trailer + 4].copy_from_slice(b"0430");
        let file = parse_metro2(&bytes).unwrap();
        let classes: Vec<_> = file
            .issues
            .iter()
            .map(|i| (i.class, i.field.as_deref()))
            .collect();
        assert_eq!(
            classes,
            [
                (DriftClass::TypeMismatch, Some("current_balance")),
                (DriftClass::Malformed, Some("record_descriptor_word")),
            ]
        );
        assert_eq!(file.records[0].base.current_balance, 0);
        assert_eq!(file.issues[0].position.byte_offset, 470);
    }

    #[test]
    fn a_file_without_a_header_is_a_file_drift() {
        let drift = parse_metro2(&reference("moov_trailer_record.dat")).unwrap_err();
        assert_eq!(drift.class, DriftClass::Malformed);
        assert!(parse_metro2(b"").is_err());
    }

    #[test]
    fn reconcile_reports_each_count_that_differs() {
        let mut file = parse_metro2(&reference("moov_unpacked_fixed_file.dat")).unwrap();
        assert_eq!(reconcile(&file), []);
        file.records[0].base.account_status = "11".into();
        let fields: Vec<_> = reconcile(&file).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, ["status_11", "status_62"]);
        file.trailer = None;
        assert_eq!(reconcile(&file)[0].trailer, None);
    }
}
