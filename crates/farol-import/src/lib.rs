//! Streaming reading layer of Farol's spreadsheet importer (no database).
//!
//! Reads the messy CSV and XLSX files exported by other systems — up to
//! 10 GB / 500k+ clients — as a stream of [`Record`]s, with memory bounded
//! whatever the file size:
//!
//! | module          | what |
//! |-----------------|------|
//! | [`mod@sniff`]   | detects XLSX vs CSV, the text encoding (UTF-8 with/without BOM, Windows-1252, UTF-16 with BOM) and the CSV delimiter from the first 64 KiB. |
//! | [`csv_reader`]  | [`CsvReader`]: any [`std::io::Read`], flexible (ragged) rows, quoted fields with newlines and `""`, per-field decoding, byte progress. |
//! | [`xlsx`]        | [`XlsxReader`]: calamine's streaming cells reader on a worker thread, cells rendered as text (phones stored as numbers keep all digits, dates in ISO 8601). |
//! | [`mapping`]     | [`Field`], [`propose`] (pt-BR/English header synonyms) and [`parse_overrides`]. |
//!
//! [`open`] is the single entry point: it sniffs the file and returns a
//! [`Source`], an iterator of `Result<Record, ReadError>` that also exposes the
//! header row, the detected [`Format`] and a [`Progress`] for the UI.
//!
//! ```no_run
//! use farol_import::{OpenOptions, open, mapping::propose};
//!
//! let mut source = open("clientes.csv", &OpenOptions::default())?;
//! let mapping = propose(source.headers(), &[]);
//! for record in &mut source {
//!     let record = record?;
//!     for (i, field) in mapping.iter().enumerate() {
//!         if let Some(field) = field {
//!             println!("row {} {field}: {}", record.row, record.trimmed(i));
//!         }
//!     }
//! }
//! # Ok::<(), farol_import::ReadError>(())
//! ```
//!
//! # Row numbers
//!
//! [`Record::row`] is what a spreadsheet user sees: for CSV, the 1-based record
//! number with the header as row 1 (a record spanning several lines through a
//! quoted newline counts once); for XLSX, the sheet's own row number. Records
//! whose fields are all blank are skipped (they are not data), but still
//! counted, so later row numbers stay right.
//!
//! # Memory
//!
//! CSV: the `csv` crate keeps an 8 KiB read buffer plus the current record;
//! a record larger than [`MAX_RECORD_BYTES`] (typically an unclosed quote that
//! would swallow the rest of the file) is an error, so memory stays bounded by
//! that limit. XLSX: calamine's cells reader streams the sheet XML; the worker
//! thread sends rows through a bounded channel ([`xlsx::CHANNEL_ROWS`] rows).
//! What calamine keeps for the whole workbook is the shared-strings table,
//! which is proportional to the distinct text in the workbook.

pub mod csv_reader;
mod error;
pub mod mapping;
mod record;
pub mod sniff;
mod source;
pub mod xlsx;

pub use csv_reader::{CsvReader, MAX_RECORD_BYTES};
pub use error::{ErrorKind, ReadError};
pub use mapping::{
    Field, MappingError, Override, apply_overrides, parse_overrides, propose, resolve_overrides,
};
pub use record::Record;
pub use sniff::{Encoding, FileKind, Sniff, sniff};
pub use source::{
    CsvFormat, Format, OpenOptions, Progress, ProgressUnit, Source, XlsxFormat, open,
};
pub use xlsx::XlsxReader;
