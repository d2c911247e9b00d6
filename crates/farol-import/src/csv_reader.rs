//! Streaming CSV reader over any [`Read`].
//!
//! The bytes are parsed as they come (the `csv` crate in flexible mode, quotes
//! and doubled quotes handled, header row first) and each field is decoded on
//! its own: UTF-8 and Windows-1252 are both ASCII-compatible, so delimiters,
//! quotes and newlines are found on the raw bytes, and only the field contents
//! need transcoding. Unless Windows-1252 is forced by the caller, each field
//! that is valid UTF-8 is read as UTF-8 and any other as Windows-1252, so
//! files concatenated from several exports, mixing both, read correctly (a
//! Windows-1252 field is practically never valid UTF-8 once it holds a
//! non-ASCII letter); the detected encoding is what the import report shows. UTF-16 input (detected from its BOM) is transcoded to
//! UTF-8 on the fly with `encoding_rs_io` before parsing.
//!
//! Memory is bounded: the parser keeps an 8 KiB read buffer and the current
//! record; a record that grows past [`MAX_RECORD_BYTES`] (normally an unclosed
//! quote swallowing the rest of the file) stops the reader with
//! [`ErrorKind::RecordTooLarge`] instead of reading gigabytes into memory.

use crate::error::{ErrorKind, ReadError};
use crate::record::Record;
use crate::sniff::{self, Encoding, SAMPLE_SIZE};
use std::io::{self, Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest accepted record, in bytes: 16 MiB.
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// Read buffer of the CSV parser.
const BUFFER_CAPACITY: usize = 8 * 1024;

/// Streaming CSV reader: an iterator of `Result<Record, ReadError>` over the
/// data rows, after the header row.
///
/// After an error the iterator ends (returns `None`).
pub struct CsvReader {
    csv: csv::Reader<Limited<Box<dyn Read + Send>>>,
    raw_bytes: Arc<AtomicU64>,
    headers: Vec<String>,
    encoding: Encoding,
    delimiter: u8,
    bom: bool,
    /// Windows-1252 was forced: no per-field UTF-8 detection.
    strict_1252: bool,
    /// Row number of the last record read (header = 1).
    row: u64,
    record: csv::ByteRecord,
    done: bool,
    file: Option<String>,
}

impl std::fmt::Debug for CsvReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvReader")
            .field("headers", &self.headers)
            .field("encoding", &self.encoding)
            .field("delimiter", &(self.delimiter as char))
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

impl CsvReader {
    /// Reads `reader` as CSV: sniffs its first 64 KiB (unless `delimiter` and
    /// `encoding` are both given), then reads the header row.
    ///
    /// `file` names the input in errors. Fails with [`ErrorKind::Empty`] when
    /// there is no header row.
    pub fn from_reader<R: Read + Send + 'static>(
        reader: R,
        delimiter: Option<u8>,
        encoding: Option<Encoding>,
        file: Option<&str>,
    ) -> Result<Self, ReadError> {
        Self::with_limit(reader, delimiter, encoding, file, MAX_RECORD_BYTES)
    }

    pub(crate) fn with_limit<R: Read + Send + 'static>(
        mut reader: R,
        delimiter: Option<u8>,
        encoding: Option<Encoding>,
        file: Option<&str>,
        limit: u64,
    ) -> Result<Self, ReadError> {
        let err = |kind: ErrorKind| ReadError::new(kind).in_file(file);
        let mut sample = Vec::with_capacity(SAMPLE_SIZE);
        (&mut reader)
            .take(SAMPLE_SIZE as u64)
            .read_to_end(&mut sample)
            .map_err(|e| err(ErrorKind::Io(e)))?;
        let sniffed = sniff::sniff(&sample);
        let (detected, bom_len) = (sniffed.encoding, sniffed.bom_len);
        let forced = encoding;
        let encoding = encoding.unwrap_or(detected);
        let delimiter = delimiter.unwrap_or(sniffed.delimiter);
        // The BOM is dropped only if it matches the encoding actually used.
        let bom_len = if encoding == detected { bom_len } else { 0 };
        let raw_bytes = Arc::new(AtomicU64::new(0));
        let rest = Counted {
            inner: Cursor::new(sample).chain(reader),
            count: Arc::clone(&raw_bytes),
        };
        let mut rest: Box<dyn Read + Send> = Box::new(rest);
        io::copy(&mut (&mut rest).take(bom_len as u64), &mut io::sink())
            .map_err(|e| err(ErrorKind::Io(e)))?;
        let input: Box<dyn Read + Send> = match encoding {
            Encoding::Utf16Le | Encoding::Utf16Be => Box::new(
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding.encoding_rs()))
                    .bom_sniffing(false)
                    .build(rest),
            ),
            Encoding::Utf8 | Encoding::Windows1252 => rest,
        };
        let csv = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(BUFFER_CAPACITY)
            .from_reader(Limited {
                inner: input,
                delivered: 0,
                record_start: 0,
                limit,
                peak: 0,
            });
        let mut this = CsvReader {
            csv,
            raw_bytes,
            headers: Vec::new(),
            encoding,
            delimiter,
            bom: bom_len > 0,
            strict_1252: forced == Some(Encoding::Windows1252),
            row: 0,
            record: csv::ByteRecord::new(),
            done: false,
            file: file.map(str::to_owned),
        };
        match this.read_record() {
            Some(Ok(header)) => this.headers = header.fields,
            Some(Err(e)) => return Err(e),
            None => return Err(err(ErrorKind::Empty)),
        }
        Ok(this)
    }

    /// The header row's fields (raw, untrimmed).
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The encoding used to decode fields.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The field delimiter.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// True if the file started with a byte-order mark (which was dropped).
    pub fn had_bom(&self) -> bool {
        self.bom
    }

    /// Bytes consumed from the underlying reader so far, for progress
    /// reporting (runs at most the read buffers ahead of the parsed records).
    pub fn position(&self) -> u64 {
        self.raw_bytes.load(Ordering::Relaxed)
    }

    /// Largest number of bytes fed to the parser past the start of the
    /// record being parsed, so far: a bound on what the reader buffers.
    pub fn peak_buffered_bytes(&self) -> u64 {
        self.csv.get_ref().peak
    }

    /// Reads the next record, blank or not.
    fn read_record(&mut self) -> Option<Result<Record, ReadError>> {
        if self.done {
            return None;
        }
        let next_row = self.row + 1;
        match self.csv.read_byte_record(&mut self.record) {
            Ok(true) => {
                self.row = next_row;
                let start = self.csv.position().byte();
                self.csv.get_mut().record_start = start;
                let fields = self
                    .record
                    .iter()
                    .map(|f| decode_field(f, self.strict_1252))
                    .collect();
                Some(Ok(Record {
                    row: self.row,
                    fields,
                }))
            }
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                let kind = match e.into_kind() {
                    csv::ErrorKind::Io(io) => {
                        match io.get_ref().and_then(|i| i.downcast_ref::<TooLarge>()) {
                            Some(TooLarge(limit)) => ErrorKind::RecordTooLarge { limit: *limit },
                            None => ErrorKind::Io(io),
                        }
                    }
                    other => ErrorKind::Csv(format!("{other:?}")),
                };
                Some(Err(ReadError::new(kind)
                    .at_row(next_row)
                    .in_file(self.file.as_deref())))
            }
        }
    }
}

impl Iterator for CsvReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.read_record()? {
                Ok(record) if record.is_blank() => continue,
                other => return Some(other),
            }
        }
    }
}

/// Decodes one field: valid UTF-8 as UTF-8 (always, for ASCII), anything
/// else as Windows-1252; `strict_1252` (a forced Windows-1252) skips the
/// UTF-8 attempt.
fn decode_field(bytes: &[u8], strict_1252: bool) -> String {
    if (!strict_1252 || bytes.is_ascii())
        && let Ok(s) = std::str::from_utf8(bytes)
    {
        return s.to_owned();
    }
    encoding_rs::WINDOWS_1252
        .decode_without_bom_handling(bytes)
        .0
        .into_owned()
}

/// Counts the bytes read through it (shared, for [`CsvReader::position`]).
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Marker inside the `io::Error` raised when a record exceeds the limit.
#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record larger than {} bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

/// Refuses to feed the parser more than `limit` bytes past the start of the
/// current record (updated by [`CsvReader`] after each record), which bounds
/// the parser's record buffer.
struct Limited<R> {
    inner: R,
    delivered: u64,
    record_start: u64,
    limit: u64,
    peak: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The parser's buffer holds at most BUFFER_CAPACITY bytes of the next
        // records beyond the current one.
        if self.delivered.saturating_sub(self.record_start) > self.limit + BUFFER_CAPACITY as u64 {
            return Err(io::Error::other(TooLarge(self.limit)));
        }
        let n = self.inner.read(buf)?;
        self.delivered += n as u64;
        self.peak = self
            .peak
            .max(self.delivered.saturating_sub(self.record_start));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &'static [u8]) -> (Vec<String>, Vec<Record>) {
        let reader = CsvReader::from_reader(bytes, None, None, Some("t.csv")).unwrap();
        let headers = reader.headers().to_vec();
        let records = reader.collect::<Result<Vec<_>, _>>().unwrap();
        (headers, records)
    }

    fn rec(row: u64, fields: &[&str]) -> Record {
        Record {
            row,
            fields: fields.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn utf8_with_bom() {
        let r = CsvReader::from_reader(
            "\u{feff}Nome;Cidade\nJoão;São Paulo\n".as_bytes(),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(r.headers(), ["Nome", "Cidade"]);
        assert!(r.had_bom());
        assert_eq!(r.encoding(), Encoding::Utf8);
        assert_eq!(r.delimiter(), b';');
        let records: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(records, [rec(2, &["João", "São Paulo"])]);
    }

    #[test]
    fn utf8_without_bom() {
        let (h, r) = read_all("Nome,Cidade\r\nJoão,São Paulo\r\n".as_bytes());
        assert_eq!(h, ["Nome", "Cidade"]);
        assert_eq!(r, [rec(2, &["João", "São Paulo"])]);
    }

    #[test]
    fn windows_1252() {
        let bytes = b"Raz\xe3o Social;Cidade\nPadaria P\xe3o;S\xe3o Paulo\n";
        let r = CsvReader::from_reader(&bytes[..], None, None, None).unwrap();
        assert_eq!(r.encoding(), Encoding::Windows1252);
        assert_eq!(r.headers(), ["Razão Social", "Cidade"]);
        let records: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(records, [rec(2, &["Padaria Pão", "São Paulo"])]);
        // Windows-1252 specifics beyond Latin-1: € and curly quotes.
        let (h, _) = read_all(b"Pre\xe7o \x80;\x93x\x94\n");
        assert_eq!(h, ["Preço €", "“x”"]);
    }

    #[test]
    fn utf8_file_with_a_latin1_row_falls_back_per_field() {
        let (_, r) = read_all(b"Nome;Cidade\nJo\xc3\xa3o;Bras\xc3\xadlia\nJo\xe3o;Bel\xe9m\n");
        assert_eq!(
            r,
            [rec(2, &["João", "Brasília"]), rec(3, &["João", "Belém"])]
        );
    }

    #[test]
    fn windows_1252_file_with_a_utf8_row() {
        let (h, r) = read_all(b"Cidade\nBel\xe9m\nBras\xc3\xadlia\n");
        assert_eq!(h, ["Cidade"]);
        assert_eq!(r, [rec(2, &["Belém"]), rec(3, &["Brasília"])]);
        // Forced Windows-1252 is taken literally.
        let r = CsvReader::from_reader(
            &b"Cidade\nBras\xc3\xadlia\n"[..],
            None,
            Some(Encoding::Windows1252),
            None,
        )
        .unwrap();
        let records: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(records, [rec(2, &["BrasÃ\u{ad}lia"])]);
    }

    #[test]
    fn forced_encoding_and_delimiter() {
        let r = CsvReader::from_reader(
            &b"a|b\nS\xe3o|x\n"[..],
            Some(b'|'),
            Some(Encoding::Windows1252),
            None,
        )
        .unwrap();
        assert_eq!(r.headers(), ["a", "b"]);
        let records: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(records, [rec(2, &["São", "x"])]);
    }

    #[test]
    fn quotes_newlines_and_row_numbers() {
        let (h, r) = read_all(
            b"Nome;Obs;Tel\n\"Ana\";\"linha 1\nlinha 2\r\nlinha 3\";1\n\"Bia \"\"B\"\"\";x;2\nCid;y;3\n",
        );
        assert_eq!(h, ["Nome", "Obs", "Tel"]);
        assert_eq!(
            r,
            [
                rec(2, &["Ana", "linha 1\nlinha 2\r\nlinha 3", "1"]),
                rec(3, &["Bia \"B\"", "x", "2"]),
                rec(4, &["Cid", "y", "3"]),
            ]
        );
    }

    #[test]
    fn ragged_rows_and_blank_rows() {
        let (h, r) = read_all(b"a;b;c\n1\n1;2;3;4;5\n;;\n\n  ; \nx;y;z\n");
        assert_eq!(h, ["a", "b", "c"]);
        // ";;" (row 4) and "  ; " (row 5) are blank: skipped but counted;
        // the empty line is not a record at all.
        assert_eq!(
            r,
            [
                rec(2, &["1"]),
                rec(3, &["1", "2", "3", "4", "5"]),
                rec(6, &["x", "y", "z"]),
            ]
        );
        assert_eq!(r[0].get(2), "");
    }

    #[test]
    fn raw_fields_are_not_trimmed() {
        let (h, r) = read_all(b" Nome ;Tel\n Ana ; 11 \n");
        assert_eq!(h, [" Nome ", "Tel"]);
        assert_eq!(r[0].fields, [" Ana ", " 11 "]);
        assert_eq!(r[0].trimmed(1), "11");
    }

    #[test]
    fn utf16le_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "Nome\tCidade\nJoão\tSão Paulo\n".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let r = CsvReader::from_reader(Cursor::new(bytes), None, None, None).unwrap();
        assert_eq!(r.encoding(), Encoding::Utf16Le);
        assert_eq!(r.headers(), ["Nome", "Cidade"]);
        let records: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(records, [rec(2, &["João", "São Paulo"])]);
    }

    #[test]
    fn empty_input_is_an_error() {
        let e = CsvReader::from_reader(&b""[..], None, None, Some("x.csv")).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Empty));
        assert_eq!(e.to_string(), "x.csv: the file is empty: no header row");
    }

    #[test]
    fn unclosed_quote_hits_the_record_limit() {
        let mut data = b"a;b\n1;2\n\"never closed;".to_vec();
        data.extend(std::iter::repeat_n(b'x', 200_000));
        let r =
            CsvReader::with_limit(Cursor::new(data), None, None, Some("q.csv"), 50_000).unwrap();
        let results: Vec<_> = r.collect();
        assert_eq!(results.len(), 2);
        let e = results[1].as_ref().unwrap_err();
        assert!(matches!(
            e.kind,
            ErrorKind::RecordTooLarge { limit: 50_000 }
        ));
        assert_eq!(e.row, Some(3));
        assert!(
            e.to_string()
                .starts_with("q.csv: row 3: record larger than")
        );
    }

    #[test]
    fn io_errors_are_reported_not_panicked() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                let line = b"a;b\n";
                buf[..line.len()].copy_from_slice(line);
                Ok(line.len())
            }
        }
        // Fails while sniffing.
        assert!(CsvReader::from_reader(Failing(3), None, None, None).is_err());
    }

    /// Generates `rows` CSV rows lazily, never holding the file in memory.
    struct Generated {
        row: u64,
        rows: u64,
        pending: Vec<u8>,
        pos: usize,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.pending.len() {
                if self.row > self.rows {
                    return Ok(0);
                }
                self.pending.clear();
                self.pos = 0;
                if self.row == 0 {
                    self.pending
                        .extend_from_slice(b"Nome;Telefone;E-mail;Obs\n");
                } else {
                    let n = self.row;
                    write_row(&mut self.pending, n);
                }
                self.row += 1;
            }
            let n = buf.len().min(self.pending.len() - self.pos);
            buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn write_row(out: &mut Vec<u8>, n: u64) {
        use std::io::Write;
        let _ = writeln!(
            out,
            "Cliente {n};(11) 9{:04}-{:04};cliente{n}@example.com;\"obs; com \"\"aspas\"\"\"",
            n % 10_000,
            (n * 7) % 10_000
        );
    }

    #[test]
    fn fifty_megabytes_stream_with_bounded_memory() {
        let mut sample = Vec::new();
        write_row(&mut sample, 123_456);
        let rows = 50 * 1024 * 1024 / sample.len() as u64;
        let mut reader = CsvReader::from_reader(
            Generated {
                row: 0,
                rows,
                pending: Vec::new(),
                pos: 0,
            },
            None,
            None,
            None,
        )
        .unwrap();
        let mut count = 0u64;
        let mut last_row = 0;
        for record in &mut reader {
            let record = record.unwrap();
            assert_eq!(record.fields.len(), 4);
            count += 1;
            last_row = record.row;
        }
        let peak = reader.peak_buffered_bytes();
        assert_eq!(count, rows);
        assert_eq!(last_row, rows + 1);
        assert!(
            reader.position() > 45 * 1024 * 1024,
            "{}",
            reader.position()
        );
        // Nothing accumulates: the parser never holds more than its buffer
        // plus one record.
        assert!(peak < 64 * 1024, "peak {peak}");
    }
}
