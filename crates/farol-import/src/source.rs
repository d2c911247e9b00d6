//! The single entry point: [`open`] → [`Source`].

use crate::csv_reader::CsvReader;
use crate::error::{ErrorKind, ReadError};
use crate::record::Record;
use crate::sniff::{self, Encoding, FileKind, SAMPLE_SIZE};
use crate::xlsx::XlsxReader;
use serde::Serialize;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Options for [`open`]; the default detects everything and reads the first sheet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// XLSX: the sheet to read (first sheet when `None`). Ignored for CSV.
    pub sheet: Option<String>,
    /// CSV: the field delimiter (sniffed when `None`). Ignored for XLSX.
    pub delimiter: Option<u8>,
    /// CSV: the text encoding (sniffed when `None`). Ignored for XLSX.
    pub encoding: Option<Encoding>,
}

/// How a CSV file was read, for the import report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsvFormat {
    /// Encoding used to decode the fields.
    pub encoding: Encoding,
    /// Field delimiter.
    #[serde(serialize_with = "serialize_delimiter")]
    pub delimiter: u8,
    /// Whether the file started with a byte-order mark.
    pub bom: bool,
}

fn serialize_delimiter<S: serde::Serializer>(d: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_char(char::from(*d))
}

/// How an XLSX file was read, for the import report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XlsxFormat {
    /// The sheet read.
    pub sheet: String,
    /// All the workbook's sheets, in order.
    pub sheets: Vec<String>,
}

/// The detected format of a [`Source`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Format {
    /// Delimited text.
    Csv(CsvFormat),
    /// Office Open XML workbook.
    Xlsx(XlsxFormat),
}

/// What [`Progress::done`] and [`Progress::total`] count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressUnit {
    /// Bytes of the file (CSV).
    Bytes,
    /// Sheet rows (XLSX, whose compressed bytes are not read in order).
    Rows,
}

/// How far reading has got, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Bytes or rows read so far.
    pub done: u64,
    /// Total bytes or rows, when known.
    pub total: Option<u64>,
    /// What is counted.
    pub unit: ProgressUnit,
}

impl Progress {
    /// `done / total` clamped to `0.0..=1.0`, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        match self.total {
            Some(0) => Some(1.0),
            Some(total) => Some((self.done as f64 / total as f64).min(1.0)),
            None => None,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Csv(CsvReader),
    Xlsx(XlsxReader),
}

/// An opened spreadsheet: header row, format, progress, and an iterator of
/// `Result<Record, ReadError>` over the data rows. After an error the
/// iterator ends.
#[derive(Debug)]
pub struct Source {
    inner: Inner,
    format: Format,
    total_bytes: Option<u64>,
}

/// Opens a CSV or XLSX file, sniffing its format (and, for CSV, encoding and
/// delimiter unless given in `options`), and reads its header row.
///
/// Fails on I/O errors, an empty file, a legacy XLS workbook, a damaged
/// XLSX, or a sheet name that does not exist ([`ErrorKind::SheetNotFound`]).
pub fn open(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Source, ReadError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_err = |e| ReadError::new(ErrorKind::Io(e)).in_file(Some(&name));
    let mut file = File::open(path).map_err(io_err)?;
    let total_bytes = file.metadata().ok().map(|m| m.len());
    let mut head = [0u8; 8];
    let mut len = 0;
    {
        let mut limited = (&mut file).take(head.len() as u64);
        while len < head.len() {
            match limited.read(&mut head[len..]).map_err(io_err)? {
                0 => break,
                n => len += n,
            }
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let (inner, format) = match sniff::detect_kind(&head[..len]) {
        FileKind::Xls => {
            return Err(ReadError::new(ErrorKind::Unsupported(
                "Excel 97-2003 workbook (.xls); save it as .xlsx or .csv".into(),
            ))
            .in_file(Some(&name)));
        }
        FileKind::Xlsx => {
            let reader = XlsxReader::from_reader(
                BufReader::new(file),
                options.sheet.as_deref(),
                Some(&name),
            )?;
            let format = Format::Xlsx(XlsxFormat {
                sheet: reader.sheet().to_owned(),
                sheets: reader.sheets().to_vec(),
            });
            (Inner::Xlsx(reader), format)
        }
        FileKind::Csv => {
            let reader = CsvReader::from_reader(
                BufReader::with_capacity(SAMPLE_SIZE, file),
                options.delimiter,
                options.encoding,
                Some(&name),
            )?;
            let format = Format::Csv(CsvFormat {
                encoding: reader.encoding(),
                delimiter: reader.delimiter(),
                bom: reader.had_bom(),
            });
            (Inner::Csv(reader), format)
        }
    };
    Ok(Source {
        inner,
        format,
        total_bytes,
    })
}

impl Source {
    /// Wraps a [`CsvReader`] built over any reader (e.g. uploaded chunks);
    /// `total_bytes` is the upload's size, if known, for [`Source::progress`].
    pub fn from_csv(reader: CsvReader, total_bytes: Option<u64>) -> Self {
        let format = Format::Csv(CsvFormat {
            encoding: reader.encoding(),
            delimiter: reader.delimiter(),
            bom: reader.had_bom(),
        });
        Source {
            inner: Inner::Csv(reader),
            format,
            total_bytes,
        }
    }

    /// Wraps an [`XlsxReader`].
    pub fn from_xlsx(reader: XlsxReader) -> Self {
        let format = Format::Xlsx(XlsxFormat {
            sheet: reader.sheet().to_owned(),
            sheets: reader.sheets().to_vec(),
        });
        Source {
            inner: Inner::Xlsx(reader),
            format,
            total_bytes: None,
        }
    }

    /// The header row's fields (raw, untrimmed).
    pub fn headers(&self) -> &[String] {
        match &self.inner {
            Inner::Csv(r) => r.headers(),
            Inner::Xlsx(r) => r.headers(),
        }
    }

    /// The detected format (CSV with encoding and delimiter, or XLSX with sheet).
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Progress: bytes for CSV, sheet rows for XLSX.
    pub fn progress(&self) -> Progress {
        match &self.inner {
            Inner::Csv(r) => Progress {
                done: r.position(),
                total: self.total_bytes,
                unit: ProgressUnit::Bytes,
            },
            Inner::Xlsx(r) => Progress {
                done: r.row(),
                total: r.last_row(),
                unit: ProgressUnit::Rows,
            },
        }
    }
}

impl Iterator for Source {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Csv(r) => r.next(),
            Inner::Xlsx(r) => r.next(),
        }
    }
}
