//! A month's Metro 2® file, character format: `topologies/metro2_base.toml`. One record per
//! line, each starting with its record descriptor word (its length): a 426-byte header,
//! per account a 426-byte base segment with at most one J1 (100 bytes) or J2 (200 bytes)
//! segment, and a 426-byte trailer whose counts match the records.
//!
//! Account `i`'s base segment reports the account of the same seed and index in the
//! account master: its card number as the consumer account number, its limit, and the
//! balances of `gen accounts` for the month's last day in whole dollars.

use chrono::{Datelike, NaiveDate};

use super::fixed::Line;
use super::month::Month;
use super::profile::{Address, Associate, Cycle, Person, Profile};
use super::{Card, PROGRESS_EVERY, Salt, account_rng, text_hash};
use crate::formats::metro2::STATUS_CODES;

/// Header, base segment and trailer length.
const RECORD_LEN: usize = 426;
const J1_LEN: usize = 100;
const J2_LEN: usize = 200;

/// What to write: one month's file for one furnisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metro2Spec {
    /// The month reported: every record's date of account information is its last day.
    pub month: Month,
    /// Seed of the account master whose accounts are reported.
    pub seed: u64,
    /// Base records: accounts `0..accounts` of the account master.
    pub accounts: usize,
    /// The header's reporter name, at most 40 ASCII characters.
    pub reporter: String,
    /// The identification number the bureaus gave the furnisher, at most 20 ASCII
    /// characters.
    pub identification_number: String,
    pub fault: Option<Metro2Fault>,
}

/// What [`Metro2Spec::fault`] gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metro2Fault {
    /// The trailer's total base records is one more than the file has.
    TotalBaseRecords,
}

/// What the records hold, as a correct trailer counts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metro2Totals {
    pub base_records: u64,
    /// Per account status, in the order of [`STATUS_CODES`].
    pub status_counts: [u64; 23],
    pub j1_segments: u64,
    pub j2_segments: u64,
    pub ssn_base: u64,
    pub ssn_j1: u64,
    pub ssn_j2: u64,
    pub dob_base: u64,
    pub dob_j1: u64,
    pub dob_j2: u64,
    /// Telephone numbers in base, J1 and J2 segments.
    pub telephones: u64,
}

impl Metro2Spec {
    /// A file for `month` reporting accounts `0..accounts` of `seed`, no fault.
    pub fn new(month: Month, seed: u64, accounts: usize) -> Metro2Spec {
        Metro2Spec {
            month,
            seed,
            accounts,
            reporter: "CREDSTREAM SAMPLE BANK".into(),
            identification_number: "CSB0000001".into(),
            fault: None,
        }
    }

    /// The file's name: `metro2_<YYYY-MM>.dat`, as the layout's identity pattern reads it.
    pub fn file_name(&self) -> String {
        format!("metro2_{}.dat", self.month)
    }

    /// Why the spec cannot be written, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !self.reporter.is_ascii() || self.reporter.len() > 40 {
            return Err(format!(
                "reporter name {:?} is not at most 40 ASCII characters",
                self.reporter
            ));
        }
        if !self.identification_number.is_ascii() || self.identification_number.len() > 20 {
            return Err(format!(
                "identification number {:?} is not at most 20 ASCII characters",
                self.identification_number
            ));
        }
        if self.accounts as u64 >= 1_000_000_000 {
            return Err("the trailer counts at most 999999999 base records".into());
        }
        Ok(())
    }
}

/// Whole dollars of cents, rounded down; nothing owed is 0.
fn dollars(cents: i64) -> u64 {
    u64::try_from(cents.max(0) / 100).expect("not negative")
}

/// The account status reported for an account at `cycle`: mostly current (`11`), behind
/// as its days past due say (`71`, `78`, `80`), some charged off (`97`), closed with
/// nothing owed (`13`), and a few deleted (`DA`) or transferred (`05`).
fn status_of(cycle: &Cycle, rng: &mut fastrand::Rng) -> &'static str {
    let roll = rng.u16(0..1_000);
    match roll {
        // Deleted (reported in error) and transferred accounts are rare.
        0..=1 => "DA",
        2..=3 => "05",
        _ if cycle.end == 0 && cycle.begin == 0 => {
            if roll < 300 {
                "13"
            } else {
                "11"
            }
        }
        _ => match cycle.days_past_due {
            0 => "11",
            30 => "71",
            60 => "78",
            _ if roll < 250 => "97",
            _ => "80",
        },
    }
}

/// The 24 months before the one reported, newest first: `0` current, `1`-`3` 30 to 90
/// days behind, `B` before the account was opened, `D` no history.
fn payment_history(
    status: &str,
    cycle: &Cycle,
    months_open: i64,
    rng: &mut fastrand::Rng,
) -> [u8; 24] {
    let mut profile = [b'B'; 24];
    if status == "DA" {
        return [b'D'; 24];
    }
    // The months before this one led up to its days past due.
    let behind = (cycle.days_past_due / 30) as usize;
    for (k, slot) in profile.iter_mut().enumerate() {
        if (k as i64) >= months_open {
            break;
        }
        *slot = if k + 1 < behind {
            b'0' + (behind - 1 - k) as u8
        } else if rng.u8(0..100) < 2 {
            b'1'
        } else {
            b'0'
        };
    }
    profile
}

/// The consumer fields J1 and J2 share, at their positions from `at` (the segment's
/// first byte).
fn write_consumer(line: &mut Line, at: usize, person: &Person, ecoa: &str) {
    line.text(at + 3, 25, person.surname);
    line.text(at + 28, 20, person.first_name);
    if let Some(m) = person.middle_initial {
        line.text(at + 48, 20, m.encode_utf8(&mut [0; 4]));
    }
    line.text(at + 69, 9, &person.ssn());
    line.date_mdy(at + 78, Some(person.birth));
    line.text(at + 86, 10, &person.telephone());
    line.text(at + 96, 1, ecoa);
}

fn write_address(line: &mut Line, country: usize, address: &Address) {
    line.text(country, 2, "US");
    line.text(country + 2, 32, &address.first_line());
    line.text(country + 34, 32, &address.second_line());
    line.text(country + 66, 20, address.city);
    line.text(country + 86, 2, address.state.code);
    line.text(country + 88, 9, &format!("{:05}", address.zip));
}

/// Writes the file `spec` describes to `out` one record at a time, calling `progress`
/// with the base records written every 100 000. Returns what the records hold; the
/// trailer states it unless [`Metro2Spec::fault`] says otherwise. The same spec always
/// writes the same bytes.
pub fn write_metro2(
    out: &mut impl std::io::Write,
    spec: &Metro2Spec,
    mut progress: impl FnMut(usize),
) -> std::io::Result<Metro2Totals> {
    spec.check()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let activity = spec.month.last_day();
    let cycle_end = activity.format("%Y-%m-%d").to_string();
    let month_key = text_hash(&cycle_end);
    let mut line = Line::new();

    line.blank(RECORD_LEN);
    line.number(1, 4, RECORD_LEN as u64);
    line.text(5, 6, "HEADER");
    line.text(13, 10, "CSB0000001");
    line.text(23, 10, "CSB0000001");
    line.text(33, 5, "CSB01");
    line.text(38, 10, "CSB0000001");
    line.date_mdy(48, Some(activity));
    line.date_mdy(56, Some(activity));
    line.date_mdy(64, NaiveDate::from_ymd_opt(2024, 1, 1));
    line.date_mdy(72, NaiveDate::from_ymd_opt(2024, 1, 1));
    line.text(80, 40, &spec.reporter);
    line.text(120, 96, "100 SAMPLE PLAZA NEW YORK NY 10001");
    line.text(216, 10, "2125550100");
    line.text(226, 40, "CREDSTREAM");
    line.text(266, 5, "0.1");
    line.write_to(out)?;

    let mut totals = Metro2Totals::default();
    for i in 0..spec.accounts {
        let profile = Profile::of(spec.seed, i);
        let cycle = Cycle::drawn(spec.seed, i, &cycle_end, profile.limit);
        let mut rng = account_rng(spec.seed, i, Salt::Metro2, month_key);
        let status = status_of(&cycle, &mut rng);
        let segments = match &profile.associate {
            Some(Associate::SameAddress(_)) => J1_LEN,
            Some(Associate::OtherAddress(..)) => J2_LEN,
            None => 0,
        };
        let months_open = i64::from(activity.year() - profile.opened.year()) * 12
            + i64::from(activity.month())
            - i64::from(profile.opened.month());

        line.blank(RECORD_LEN);
        line.number(1, 4, (RECORD_LEN + segments) as u64);
        line.text(5, 1, "1");
        line.date_mdy(6, Some(activity));
        line.number(14, 2, u64::from(rng.u8(0..24)));
        line.number(16, 2, u64::from(rng.u8(0..60)));
        line.number(18, 2, u64::from(rng.u8(0..60)));
        line.text(21, 20, &spec.identification_number);
        line.text(43, 30, Card::of(spec.seed, i).as_str());
        line.text(73, 1, "R");
        line.text(74, 2, "18");
        line.date_mdy(76, Some(profile.opened));
        line.number(84, 9, dollars(profile.limit));
        let owed = cycle.begin.max(cycle.end);
        let highest = rng.i64(owed..=profile.limit.max(owed));
        line.number(93, 9, dollars(highest));
        line.text(102, 3, "REV");
        line.text(105, 1, "M");
        line.number(106, 9, dollars(cycle.minimum_due + 99));
        line.number(115, 9, dollars(cycle.payment));
        line.text(124, 2, status);
        if matches!(status, "13" | "05") {
            line.text(126, 1, "0");
        }
        line.bytes(127, &payment_history(status, &cycle, months_open, &mut rng));
        if rng.u16(0..200) == 0 {
            // Account information disputed by the consumer.
            line.text(153, 2, "XB");
        }
        let charged_off = status == "97";
        line.number(155, 9, dollars(cycle.end));
        let past_due = if charged_off {
            cycle.end
        } else {
            cycle.past_due
        };
        line.number(164, 9, dollars(past_due));
        line.number(173, 9, if charged_off { dollars(cycle.end) } else { 0 });
        line.date_mdy(182, Some(activity));
        let delinquent = matches!(status, "71" | "78" | "80" | "97");
        let first_delinquency = delinquent.then(|| {
            let back = u64::from(cycle.days_past_due) + if charged_off { 90 } else { 0 };
            activity - chrono::Days::new(back)
        });
        line.date_mdy(190, first_delinquency);
        let closed = matches!(status, "13" | "97")
            .then(|| spec.month.day(rng.u32(1..=spec.month.days())))
            .flatten();
        line.date_mdy(198, closed);
        let last_payment = (cycle.payment > 0)
            .then(|| spec.month.day(rng.u32(1..=spec.month.days())))
            .flatten();
        line.date_mdy(206, last_payment);
        line.text(214, 1, if rng.u8(0..100) < 85 { "V" } else { "F" });
        let holder = &profile.holder;
        line.text(232, 25, holder.surname);
        line.text(257, 20, holder.first_name);
        if let Some(m) = holder.middle_initial {
            line.text(277, 20, m.encode_utf8(&mut [0; 4]));
        }
        line.text(298, 9, &holder.ssn());
        line.date_mdy(307, Some(holder.birth));
        line.text(315, 10, &holder.telephone());
        let joint = matches!(profile.associate, Some(Associate::SameAddress(_)));
        line.text(325, 1, if joint { "2" } else { "1" });
        write_address(&mut line, 328, &profile.address);
        line.text(
            426,
            1,
            if holder.ssn_serial.is_multiple_of(3) {
                "R"
            } else {
                "O"
            },
        );
        totals.ssn_base += 1;
        totals.dob_base += 1;
        totals.telephones += 1;

        match &profile.associate {
            Some(Associate::SameAddress(person)) => {
                line.extend(J1_LEN);
                line.text(RECORD_LEN + 1, 2, "J1");
                write_consumer(&mut line, RECORD_LEN + 1, person, "2");
                totals.j1_segments += 1;
                totals.ssn_j1 += 1;
                totals.dob_j1 += 1;
                totals.telephones += 1;
            }
            Some(Associate::OtherAddress(person, address)) => {
                line.extend(J2_LEN);
                line.text(RECORD_LEN + 1, 2, "J2");
                // An authorised user.
                write_consumer(&mut line, RECORD_LEN + 1, person, "3");
                write_address(&mut line, RECORD_LEN + 100, address);
                totals.j2_segments += 1;
                totals.ssn_j2 += 1;
                totals.dob_j2 += 1;
                totals.telephones += 1;
            }
            None => {}
        }
        debug_assert_eq!(line.len(), RECORD_LEN + segments);
        line.write_to(out)?;
        totals.base_records += 1;
        let s = STATUS_CODES
            .iter()
            .position(|c| *c == status)
            .expect("every status written is a trailer status");
        totals.status_counts[s] += 1;
        if (i + 1) % PROGRESS_EVERY == 0 {
            progress(i + 1);
        }
    }

    let stated_records = match spec.fault {
        Some(Metro2Fault::TotalBaseRecords) => totals.base_records + 1,
        None => totals.base_records,
    };
    line.blank(RECORD_LEN);
    line.number(1, 4, RECORD_LEN as u64);
    line.text(5, 7, "TRAILER");
    line.number(12, 9, stated_records);
    for (i, code) in STATUS_CODES.iter().enumerate() {
        let at = match *code {
            "DF" => 30,
            "DA" => 66,
            _ => 75 + 9 * i,
        };
        line.number(at, 9, totals.status_counts[i]);
    }
    line.number(39, 9, totals.j1_segments);
    line.number(48, 9, totals.j2_segments);
    // Block count: the file is not blocked.
    line.number(57, 9, 0);
    // ECOA code Z, N1, K1, K2, K3, K4 and L1 segments: none are written.
    for at in [264, 273, 282, 291, 300, 309, 318] {
        line.number(at, 9, 0);
    }
    let ssn_all = totals.ssn_base + totals.ssn_j1 + totals.ssn_j2;
    let dob_all = totals.dob_base + totals.dob_j1 + totals.dob_j2;
    for (at, n) in [
        (327, ssn_all),
        (336, totals.ssn_base),
        (345, totals.ssn_j1),
        (354, totals.ssn_j2),
        (363, dob_all),
        (372, totals.dob_base),
        (381, totals.dob_j1),
        (390, totals.dob_j2),
        (399, totals.telephones),
    ] {
        line.number(at, 9, n);
    }
    line.write_to(out)?;
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::formats::DriftClass;
    use crate::formats::metro2::{parse_metro2, reconcile};
    use crate::samples::card_number;
    use crate::samples::testing::{num, parse_as};

    fn october() -> Month {
        "2026-10".parse().unwrap()
    }

    fn write(spec: &Metro2Spec) -> Vec<u8> {
        let mut out = Vec::new();
        write_metro2(&mut out, spec, |_| {}).unwrap();
        out
    }

    #[test]
    fn the_same_spec_writes_the_same_bytes() {
        let spec = Metro2Spec::new(october(), 3, 300);
        let a = write(&spec);
        assert_eq!(a, write(&spec));
        assert_ne!(a, write(&Metro2Spec::new(october(), 4, 300)));
        assert_ne!(a, write(&Metro2Spec::new(october().next(), 3, 300)));
    }

    #[test]
    fn a_generated_file_parses_without_issues_and_reconciles() {
        let spec = Metro2Spec::new(october(), 7, 1_000);
        let bytes = write(&spec);
        // One record per line, each as long as its record descriptor word says.
        for line in bytes.strip_suffix(b"\n").unwrap().split(|b| *b == b'\n') {
            assert_eq!(num(line, 1, 4) as usize, line.len());
        }
        let file = parse_metro2(&bytes).unwrap();
        assert_eq!(file.issues, []);
        assert_eq!(reconcile(&file), []);
        assert_eq!(file.records.len(), 1_000);
        let last_day = NaiveDate::from_ymd_opt(2026, 10, 31);
        assert_eq!(file.header.activity_date, last_day);
        let mut statuses = HashSet::new();
        for (i, r) in file.records.iter().enumerate() {
            let b = &r.base;
            assert_eq!(b.consumer_account_number, card_number(7, i));
            assert_eq!((&*b.portfolio_type, &*b.account_type), ("R", "18"));
            assert_eq!(b.date_of_account_information, last_day);
            assert!(b.date_opened.is_some_and(|d| d < last_day.unwrap()));
            assert!(!b.surname.is_empty() && !b.first_name.is_empty());
            assert_eq!(b.social_security_number.len(), 9);
            assert_eq!(b.postal_code.len(), 5);
            assert!(r.j1.len() + r.j2.len() <= 1);
            statuses.insert(b.account_status.clone());
        }
        assert!(
            statuses.contains("11") && statuses.len() >= 4,
            "{statuses:?}"
        );
        let j1 = file.records.iter().filter(|r| !r.j1.is_empty()).count();
        let j2 = file.records.iter().filter(|r| !r.j2.is_empty()).count();
        assert!(j1 > 0 && j2 > 0);

        // The counts reconcile() does not check match the segments too.
        let t = file.trailer.as_ref().unwrap();
        let with = |f: &dyn Fn(&crate::formats::metro2::BaseRecord) -> usize| {
            file.records.iter().map(f).sum::<usize>() as u64
        };
        let ssn_j = with(&|r| {
            r.j1.iter()
                .filter(|j| !j.social_security_number.is_empty())
                .count()
                + r.j2
                    .iter()
                    .filter(|j| !j.consumer.social_security_number.is_empty())
                    .count()
        });
        let ssn_base = with(&|r| usize::from(!r.base.social_security_number.is_empty()));
        assert_eq!(t.total_ssn_base_segments, ssn_base);
        assert_eq!(t.total_ssn_all_segments, ssn_base + ssn_j);
        let dob_base = with(&|r| usize::from(r.base.date_of_birth.is_some()));
        assert_eq!(t.total_dob_base_segments, dob_base);
        let phones = with(&|r| {
            usize::from(!r.base.telephone_number.is_empty())
                + r.j1
                    .iter()
                    .filter(|j| !j.telephone_number.is_empty())
                    .count()
                + r.j2
                    .iter()
                    .filter(|j| !j.consumer.telephone_number.is_empty())
                    .count()
        });
        assert_eq!(t.total_telephone_all_segments, phones);
    }

    #[test]
    fn a_generated_file_parses_cleanly_with_the_layout() {
        let spec = Metro2Spec::new(october(), 12, 1_000);
        let (result, issues) = parse_as(&spec.file_name(), &write(&spec));
        assert_eq!(issues, []);
        let summary = result.unwrap();
        assert_eq!((summary.records, summary.parsed), (1_000, 1_000));
    }

    #[test]
    fn a_bad_trailer_is_one_base_record_off() {
        let spec = Metro2Spec {
            fault: Some(Metro2Fault::TotalBaseRecords),
            ..Metro2Spec::new(october(), 7, 1_000)
        };
        let bytes = write(&spec);
        let file = parse_metro2(&bytes).unwrap();
        assert_eq!(file.issues, []);
        let differences = reconcile(&file);
        assert_eq!(differences.len(), 1);
        assert_eq!(differences[0].field, "total_base_records");
        assert_eq!(
            (differences[0].trailer, differences[0].parsed),
            (Some(1_001), 1_000)
        );
        let drift = parse_as(&spec.file_name(), &bytes).0.unwrap_err();
        assert_eq!(drift.class, DriftClass::TrailerMismatch);
        assert_eq!(drift.field.as_deref(), Some("total_base_records"));
    }
}
