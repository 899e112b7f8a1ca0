//! Building fixed-position records: blank-filled, fields placed by their 1-based positions
//! as record layouts print them.

use chrono::{Datelike, NaiveDate};

use super::put_digits;

/// One record being built; reused from record to record so nothing is allocated per
/// record.
pub(crate) struct Line {
    buf: Vec<u8>,
}

impl Line {
    pub(crate) fn new() -> Line {
        Line {
            buf: Vec::with_capacity(1_024),
        }
    }

    /// Starts a record of `len` blanks.
    pub(crate) fn blank(&mut self, len: usize) {
        self.buf.clear();
        self.buf.resize(len, b' ');
    }

    /// Adds `len` more blanks at the end (a segment after the base).
    pub(crate) fn extend(&mut self, len: usize) {
        self.buf.resize(self.buf.len() + len, b' ');
    }

    fn span(&mut self, start: usize, len: usize) -> &mut [u8] {
        &mut self.buf[start - 1..start - 1 + len]
    }

    /// Text, left-justified and blank-filled. Panics if it does not fit: every value is
    /// either the generator's own or checked up front, so that is a bug.
    pub(crate) fn text(&mut self, start: usize, len: usize, text: &str) {
        assert!(
            text.len() <= len,
            "{text:?} does not fit in {len} bytes at {start}"
        );
        self.span(start, len)[..text.len()].copy_from_slice(text.as_bytes());
    }

    /// A number, zero-filled to `len` digits.
    pub(crate) fn number(&mut self, start: usize, len: usize, n: u64) {
        put_digits(self.span(start, len), n);
    }

    /// A date as `YYYYMMDD`.
    pub(crate) fn date_ymd(&mut self, start: usize, date: NaiveDate) {
        let span = self.span(start, 8);
        put_digits(&mut span[..4], date.year() as u64);
        put_digits(&mut span[4..6], u64::from(date.month()));
        put_digits(&mut span[6..], u64::from(date.day()));
    }

    /// A date as `MMDDYYYY`; no date is all zeros, as Metro 2 writes it.
    pub(crate) fn date_mdy(&mut self, start: usize, date: Option<NaiveDate>) {
        let span = self.span(start, 8);
        match date {
            Some(date) => {
                put_digits(&mut span[..2], u64::from(date.month()));
                put_digits(&mut span[2..4], u64::from(date.day()));
                put_digits(&mut span[4..], date.year() as u64);
            }
            None => span.fill(b'0'),
        }
    }

    /// Raw bytes at a position.
    pub(crate) fn bytes(&mut self, start: usize, bytes: &[u8]) {
        self.span(start, bytes.len()).copy_from_slice(bytes);
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Removes the last byte (to plant a record of the wrong length).
    pub(crate) fn truncate_last(&mut self) {
        self.buf.pop();
    }

    /// Writes the record and a line break.
    pub(crate) fn write_to(&mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.buf.push(b'\n');
        let result = out.write_all(&self.buf);
        self.buf.pop();
        result
    }
}
