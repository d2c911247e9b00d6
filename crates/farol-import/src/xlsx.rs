//! Streaming XLSX reader.
//!
//! Uses calamine's streaming `worksheet_cells_reader` (not `worksheet_range`,
//! which loads the whole sheet: 487 MB for 500k rows against about 3 MB).
//! That cells reader borrows the workbook, so the workbook lives on a worker
//! thread which assembles rows and sends them through a bounded channel of
//! [`CHANNEL_ROWS`] rows; dropping the [`XlsxReader`] stops the worker at its
//! next row. All of calamine's parsing runs on that thread, so even a panic
//! inside it on a damaged file surfaces as an [`ErrorKind::Xlsx`] error.
//!
//! Cells become text:
//! - numbers: at most 15 significant digits (what Excel shows), without a
//!   trailing `.0` and never in exponent notation — phones and CPFs stored as
//!   numbers keep their digits (`1.1987654321E10` → `"11987654321"`);
//! - booleans: `"true"` / `"false"`;
//! - dates: `2026-11-01`, date-times: `2026-11-01T13:45:00`, times of day:
//!   `13:45:00`, durations: `H:MM:SS` (hours may exceed 24);
//! - error cells (`#N/A`, `#DIV/0!`, …) and empty cells: `""`.
//!
//! A row's fields run up to its last non-empty cell; gaps are `""`. Row
//! numbers are the sheet's own (the header is the first non-blank row).

use crate::error::{ErrorKind, ReadError};
use crate::record::Record;
use calamine::{DataRef, Reader, Xlsx};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Rows buffered between the worker thread and the consumer.
pub const CHANNEL_ROWS: usize = 256;

/// Columns in an XLSX sheet (A..XFD); cells beyond are a damaged file.
const MAX_COLUMNS: u32 = 16_384;

enum Msg {
    Start {
        sheet: String,
        sheets: Vec<String>,
        last_row: u32,
    },
    Row(Record),
    Err(ReadError),
    End,
}

/// Streaming reader of one XLSX sheet: an iterator of
/// `Result<Record, ReadError>` over the data rows, after the header row.
///
/// After an error the iterator ends (returns `None`).
#[derive(Debug)]
pub struct XlsxReader {
    rx: Receiver<Msg>,
    worker: Option<JoinHandle<()>>,
    headers: Vec<String>,
    sheet: String,
    sheets: Vec<String>,
    last_row: Option<u64>,
    row: u64,
    done: bool,
    file: Option<String>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl XlsxReader {
    /// Opens the workbook at `path` and its sheet `sheet` (the first sheet
    /// when `None`), and reads the header row.
    pub fn open(path: impl AsRef<Path>, sheet: Option<&str>) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file =
            File::open(path).map_err(|e| ReadError::new(ErrorKind::Io(e)).in_file(Some(&name)))?;
        Self::from_reader(BufReader::new(file), sheet, Some(&name))
    }

    /// Reads a workbook from any seekable reader (e.g. an in-memory
    /// `Cursor<Vec<u8>>`); `file` names it in errors.
    ///
    /// Sheet names match exactly, or else ignoring case, accents and
    /// surrounding spaces; a wrong name gives [`ErrorKind::SheetNotFound`]
    /// listing the available sheets.
    pub fn from_reader<R: Read + Seek + Send + 'static>(
        reader: R,
        sheet: Option<&str>,
        file: Option<&str>,
    ) -> Result<Self, ReadError> {
        let (tx, rx) = sync_channel(CHANNEL_ROWS);
        let wanted = sheet.map(str::to_owned);
        let worker = std::thread::Builder::new()
            .name("farol-import-xlsx".into())
            .spawn(move || work(reader, wanted, &tx))
            .map_err(|e| ReadError::new(ErrorKind::Io(e)).in_file(file))?;
        let mut this = XlsxReader {
            rx,
            worker: Some(worker),
            headers: Vec::new(),
            sheet: String::new(),
            sheets: Vec::new(),
            last_row: None,
            row: 0,
            done: false,
            file: file.map(str::to_owned),
        };
        match this.recv() {
            Msg::Start {
                sheet,
                sheets,
                last_row,
            } => {
                this.sheet = sheet;
                this.sheets = sheets;
                this.last_row = (last_row > 0).then_some(u64::from(last_row) + 1);
            }
            Msg::Err(e) => return Err(e.in_file(file)),
            Msg::Row(_) | Msg::End => {
                return Err(ReadError::new(ErrorKind::Xlsx("reader protocol".into())));
            }
        }
        match this.recv() {
            Msg::Row(header) => {
                this.row = header.row;
                this.headers = header.fields;
            }
            Msg::Err(e) => return Err(e.in_file(file)),
            Msg::End => return Err(ReadError::new(ErrorKind::Empty).in_file(file)),
            Msg::Start { .. } => {
                return Err(ReadError::new(ErrorKind::Xlsx("reader protocol".into())));
            }
        }
        Ok(this)
    }

    /// The header row's cells as text.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The sheet being read.
    pub fn sheet(&self) -> &str {
        &self.sheet
    }

    /// All the workbook's sheets, in order.
    pub fn sheets(&self) -> &[String] {
        &self.sheets
    }

    /// The sheet row number of the last row read.
    pub fn row(&self) -> u64 {
        self.row
    }

    /// The sheet's last row number as declared by its `<dimension>`, if any
    /// (a progress total; writers may omit it).
    pub fn last_row(&self) -> Option<u64> {
        self.last_row
    }

    /// Next message; a vanished worker (a panic in calamine) becomes an error.
    fn recv(&mut self) -> Msg {
        match self.rx.recv() {
            Ok(msg) => msg,
            Err(_) => {
                let why = match self.worker.take().map(JoinHandle::join) {
                    Some(Err(payload)) => payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown error".into()),
                    _ => "reader stopped".into(),
                };
                Msg::Err(
                    ReadError::new(ErrorKind::Xlsx(format!("internal error: {why}")))
                        .in_file(self.file.as_deref()),
                )
            }
        }
    }
}

impl Iterator for XlsxReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.recv() {
            Msg::Row(record) => {
                self.row = record.row;
                Some(Ok(record))
            }
            Msg::Err(e) => {
                self.done = true;
                Some(Err(e.in_file(self.file.as_deref())))
            }
            Msg::End | Msg::Start { .. } => {
                self.done = true;
                None
            }
        }
    }
}

fn xlsx_error(e: impl std::fmt::Display) -> ReadError {
    ReadError::new(ErrorKind::Xlsx(e.to_string()))
}

/// The worker thread: opens the workbook, streams the sheet's cells, sends rows.
fn work<R: Read + Seek>(reader: R, wanted: Option<String>, tx: &SyncSender<Msg>) {
    let fail = |e: ReadError| {
        let _ = tx.send(Msg::Err(e));
    };
    let mut workbook: Xlsx<R> = match Xlsx::new(reader) {
        Ok(w) => w,
        Err(e) => return fail(xlsx_error(e)),
    };
    let sheets = workbook.sheet_names();
    let sheet = match resolve_sheet(&sheets, wanted.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut cells = match workbook.worksheet_cells_reader(&sheet) {
        Ok(c) => c,
        Err(e) => return fail(xlsx_error(format!("sheet {sheet:?}: {e}"))),
    };
    let last_row = cells.dimensions().end.0;
    if tx
        .send(Msg::Start {
            sheet,
            sheets,
            last_row,
        })
        .is_err()
    {
        return;
    }
    let mut row: Option<u32> = None;
    let mut fields: Vec<String> = Vec::new();
    let flush = |row: Option<u32>, fields: &mut Vec<String>| -> bool {
        let Some(r) = row else { return true };
        let fields = std::mem::take(fields);
        let record = Record {
            row: u64::from(r) + 1,
            fields,
        };
        record.is_blank() || tx.send(Msg::Row(record)).is_ok()
    };
    loop {
        match cells.next_cell() {
            Ok(Some(cell)) => {
                let (r, c) = cell.get_position();
                if c >= MAX_COLUMNS {
                    return fail(
                        xlsx_error(format!("cell in column {} beyond XFD", u64::from(c) + 1))
                            .at_row(u64::from(r) + 1),
                    );
                }
                if row != Some(r) {
                    if !flush(row, &mut fields) {
                        return;
                    }
                    row = Some(r);
                }
                let text = cell_text(cell.get_value());
                if text.is_empty() {
                    continue;
                }
                let c = c as usize;
                if fields.len() <= c {
                    fields.resize(c + 1, String::new());
                }
                fields[c] = text;
            }
            Ok(None) => {
                if flush(row, &mut fields) {
                    let _ = tx.send(Msg::End);
                }
                return;
            }
            Err(e) => {
                let at = row.map_or(1, |r| u64::from(r) + 1);
                return fail(xlsx_error(e).at_row(at));
            }
        }
    }
}

fn resolve_sheet(sheets: &[String], wanted: Option<&str>) -> Result<String, ReadError> {
    let Some(wanted) = wanted else {
        return sheets
            .first()
            .cloned()
            .ok_or_else(|| xlsx_error("the workbook has no sheets"));
    };
    if let Some(s) = sheets.iter().find(|s| *s == wanted) {
        return Ok(s.clone());
    }
    let key = farol_normalize::fold(wanted.trim());
    sheets
        .iter()
        .find(|s| farol_normalize::fold(s.trim()) == key)
        .cloned()
        .ok_or_else(|| {
            ReadError::new(ErrorKind::SheetNotFound {
                name: wanted.to_owned(),
                available: sheets.to_vec(),
            })
        })
}

/// A cell's value as text (see the module docs).
pub(crate) fn cell_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => float_text(*f),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(dt) => {
            let serial = dt.as_f64();
            if !serial.is_finite() {
                return String::new();
            }
            if dt.is_duration() {
                duration_text(serial)
            } else {
                let (y, mo, d, h, mi, s, ms) = dt.to_ymd_hms_milli();
                let time = if ms > 0 {
                    format!("{h:02}:{mi:02}:{s:02}.{ms:03}")
                } else {
                    format!("{h:02}:{mi:02}:{s:02}")
                };
                if (0.0..1.0).contains(&serial) {
                    time
                } else if (h, mi, s, ms) == (0, 0, 0, 0) {
                    format!("{y:04}-{mo:02}-{d:02}")
                } else {
                    format!("{y:04}-{mo:02}-{d:02}T{time}")
                }
            }
        }
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(_) | DataRef::Empty => String::new(),
    }
}

/// Shortest text of `f` once rounded to 15 significant digits, as Excel
/// shows it: `11987654321.0` → `"11987654321"`, `0.1 + 0.2` → `"0.3"`.
pub fn float_text(f: f64) -> String {
    if !f.is_finite() {
        return String::new();
    }
    if f == 0.0 {
        return "0".to_owned();
    }
    let rounded: f64 = format!("{f:.14e}").parse().unwrap_or(f);
    // f64's Display is the shortest round-trip form, never in exponent
    // notation, and without ".0" for integral values.
    format!("{rounded}")
}

fn duration_text(days: f64) -> String {
    let total = (days.abs() * 86_400.0).round() as u64;
    let sign = if days < 0.0 { "-" } else { "" };
    format!(
        "{sign}{}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{ExcelDateTime, ExcelDateTimeType};

    #[test]
    fn floats() {
        assert_eq!(float_text(11987654321.0), "11987654321");
        assert_eq!(float_text(1.1987654321E10), "11987654321");
        assert_eq!(float_text(12345678909.0), "12345678909");
        assert_eq!(float_text(12345678000195.0), "12345678000195");
        assert_eq!(float_text(0.1 + 0.2), "0.3");
        assert_eq!(float_text(1.5), "1.5");
        assert_eq!(float_text(-42.0), "-42");
        assert_eq!(float_text(-0.0), "0");
        assert_eq!(float_text(1e20), "100000000000000000000");
        assert_eq!(float_text(f64::NAN), "");
        assert_eq!(float_text(1e-7), "0.0000001");
    }

    #[test]
    fn dates() {
        let dt = |v| {
            cell_text(&DataRef::DateTime(ExcelDateTime::new(
                v,
                ExcelDateTimeType::DateTime,
                false,
            )))
        };
        // 2026-11-01 is serial 46327.
        assert_eq!(dt(46327.0), "2026-11-01");
        assert_eq!(
            dt(46327.0 + (13.0 * 60.0 + 45.0) / 1440.0),
            "2026-11-01T13:45:00"
        );
        assert_eq!(dt(0.5), "12:00:00");
        let dur = cell_text(&DataRef::DateTime(ExcelDateTime::new(
            1.5,
            ExcelDateTimeType::TimeDelta,
            false,
        )));
        assert_eq!(dur, "36:00:00");
    }

    #[test]
    fn other_cells() {
        assert_eq!(cell_text(&DataRef::Int(7)), "7");
        assert_eq!(cell_text(&DataRef::Bool(true)), "true");
        assert_eq!(cell_text(&DataRef::SharedString("Ana")), "Ana");
        assert_eq!(cell_text(&DataRef::Empty), "");
        assert_eq!(cell_text(&DataRef::Error(calamine::CellErrorType::NA)), "");
    }
}
