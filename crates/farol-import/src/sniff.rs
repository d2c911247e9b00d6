//! Format, encoding and delimiter detection from a file's first bytes.
//!
//! Rules:
//! - ZIP magic `PK\x03\x04` (or an empty ZIP) → [`FileKind::Xlsx`]; the OLE2
//!   magic of Excel 97-2003 → [`FileKind::Xls`]; anything else is CSV.
//! - Encoding: a BOM decides (UTF-8, UTF-16LE, UTF-16BE); otherwise valid
//!   UTF-8 (pure ASCII included) → UTF-8, else Windows-1252 (what Excel in
//!   Brazil writes; ISO-8859-1 is a subset of it for printable text). An
//!   incomplete multi-byte sequence at the very end of the sample does not
//!   count as invalid: the sample may have been cut in the middle of it.
//! - Delimiter among `;` `,` tab `|`: the one giving the most records with the
//!   same field count (at least 2) over the first [`SNIFF_RECORDS`] records,
//!   parsed with quotes respected; ties go to the larger field count, then to
//!   the order `;` `,` tab `|`.

use serde::Serialize;
use std::fmt;

/// How many bytes of a file [`sniff`] is meant to see.
pub const SAMPLE_SIZE: usize = 64 * 1024;

/// How many records of the sample the delimiter detection looks at.
pub const SNIFF_RECORDS: usize = 50;

/// Delimiter candidates, in tie-break order.
pub const DELIMITERS: [u8; 4] = [b';', b',', b'\t', b'|'];

/// A text encoding the CSV reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Encoding {
    /// UTF-8 (with or without BOM). Fields that are not valid UTF-8 fall back
    /// to Windows-1252, so a file mixing both still reads correctly.
    #[serde(rename = "UTF-8")]
    Utf8,
    /// Windows-1252 (also read for ISO-8859-1 / Latin-1).
    #[serde(rename = "windows-1252")]
    Windows1252,
    /// UTF-16 little-endian (Excel's "Unicode text"); detected from its BOM only.
    #[serde(rename = "UTF-16LE")]
    Utf16Le,
    /// UTF-16 big-endian; detected from its BOM only.
    #[serde(rename = "UTF-16BE")]
    Utf16Be,
}

impl Encoding {
    /// The WHATWG name of the encoding (`"UTF-8"`, `"windows-1252"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
        }
    }

    pub(crate) fn encoding_rs(self) -> &'static encoding_rs::Encoding {
        match self {
            Encoding::Utf8 => encoding_rs::UTF_8,
            Encoding::Windows1252 => encoding_rs::WINDOWS_1252,
            Encoding::Utf16Le => encoding_rs::UTF_16LE,
            Encoding::Utf16Be => encoding_rs::UTF_16BE,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    /// Accepts the usual labels: `utf-8`, `utf8`, `windows-1252`, `cp1252`,
    /// `latin1`, `iso-8859-1`, `utf-16le`, `utf-16be` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "windows-1252" | "cp1252" | "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => {
                Ok(Encoding::Windows1252)
            }
            "utf-16le" | "utf-16" => Ok(Encoding::Utf16Le),
            "utf-16be" => Ok(Encoding::Utf16Be),
            _ => Err(format!(
                "unknown encoding {s:?}; expected UTF-8, windows-1252, UTF-16LE or UTF-16BE"
            )),
        }
    }
}

/// What kind of file the first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Delimited text.
    Csv,
    /// A ZIP container, read as an Office Open XML workbook.
    Xlsx,
    /// Excel 97-2003 binary workbook (OLE2), not supported.
    Xls,
}

/// The result of [`sniff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sniff {
    /// CSV, XLSX or XLS.
    pub kind: FileKind,
    /// Text encoding (meaningful for CSV).
    pub encoding: Encoding,
    /// Length of the byte-order mark at the start of the file (0 if none).
    pub bom_len: usize,
    /// Field delimiter (meaningful for CSV).
    pub delimiter: u8,
}

/// Detects format, encoding and delimiter from a file's first bytes
/// (ideally [`SAMPLE_SIZE`] of them, or the whole file if shorter).
pub fn sniff(sample: &[u8]) -> Sniff {
    let kind = detect_kind(sample);
    let (encoding, bom_len) = detect_encoding(sample);
    let delimiter = if kind == FileKind::Csv {
        match encoding {
            Encoding::Utf16Le | Encoding::Utf16Be => {
                let (text, _) = encoding
                    .encoding_rs()
                    .decode_without_bom_handling(&sample[bom_len..]);
                detect_delimiter(text.as_bytes())
            }
            _ => detect_delimiter(&sample[bom_len..]),
        }
    } else {
        DELIMITERS[0]
    };
    Sniff {
        kind,
        encoding,
        bom_len,
        delimiter,
    }
}

/// ZIP → XLSX, OLE2 → XLS, otherwise CSV.
pub fn detect_kind(sample: &[u8]) -> FileKind {
    if sample.starts_with(b"PK\x03\x04") || sample.starts_with(b"PK\x05\x06") {
        FileKind::Xlsx
    } else if sample.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        FileKind::Xls
    } else {
        FileKind::Csv
    }
}

/// Detects the encoding; returns it with the BOM length (0 if none).
pub fn detect_encoding(sample: &[u8]) -> (Encoding, usize) {
    if sample.starts_with(b"\xEF\xBB\xBF") {
        return (Encoding::Utf8, 3);
    }
    if sample.starts_with(b"\xFF\xFE") {
        return (Encoding::Utf16Le, 2);
    }
    if sample.starts_with(b"\xFE\xFF") {
        return (Encoding::Utf16Be, 2);
    }
    let encoding = match std::str::from_utf8(sample) {
        Ok(_) => Encoding::Utf8,
        // `error_len() == None`: an incomplete sequence at the end of the
        // sample, which may just have been cut there.
        Err(e) if e.error_len().is_none() => Encoding::Utf8,
        Err(_) => Encoding::Windows1252,
    };
    (encoding, 0)
}

/// Picks the delimiter giving the most consistent field count (see the module docs).
///
/// `text` must be in an ASCII-compatible encoding (UTF-8, Windows-1252). Its
/// last line is ignored when the sample holds more than one line and does not
/// end with a newline, since it may be cut.
pub fn detect_delimiter(text: &[u8]) -> u8 {
    let text = match text.iter().rposition(|&b| b == b'\n') {
        Some(last_nl) if last_nl + 1 < text.len() => &text[..=last_nl],
        _ => text,
    };
    let mut best = (DELIMITERS[0], 0usize, 0usize); // (delimiter, consistent, fields)
    for &delimiter in &DELIMITERS {
        let (consistent, fields) = consistency(text, delimiter);
        if fields >= 2 && (consistent, fields) > (best.1, best.2) {
            best = (delimiter, consistent, fields);
        }
    }
    best.0
}

/// (number of records having the modal field count, that modal count).
fn consistency(text: &[u8], delimiter: u8) -> (usize, usize) {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut counts: Vec<usize> = Vec::with_capacity(SNIFF_RECORDS);
    let mut record = csv::ByteRecord::new();
    while counts.len() < SNIFF_RECORDS {
        match reader.read_byte_record(&mut record) {
            Ok(true) => counts.push(record.len()),
            Ok(false) | Err(_) => break,
        }
    }
    // Mode of the counts, preferring the larger count on ties.
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    let mut best = (0usize, 0usize);
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].iter().take_while(|&&c| c == sorted[i]).count();
        if (j, sorted[i]) > best {
            best = (j, sorted[i]);
        }
        i += j;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(detect_encoding(b"\xEF\xBB\xBFNome"), (Encoding::Utf8, 3));
        assert_eq!(detect_encoding("Razão".as_bytes()), (Encoding::Utf8, 0));
        assert_eq!(detect_encoding(b"plain ascii"), (Encoding::Utf8, 0));
        assert_eq!(detect_encoding(b"Raz\xe3o"), (Encoding::Windows1252, 0));
        assert_eq!(detect_encoding(b"\xFF\xFEN\0"), (Encoding::Utf16Le, 2));
        assert_eq!(detect_encoding(b""), (Encoding::Utf8, 0));
    }

    #[test]
    fn utf8_cut_mid_character_is_still_utf8() {
        let text = "Nome;Cidade\nJoão;São Paulo".as_bytes();
        // "ã" is 2 bytes; cut after its first byte.
        let cut = text.len() - "o Paulo".len() - 1;
        assert_eq!(detect_encoding(&text[..cut]).0, Encoding::Utf8);
        // 3- and 4-byte characters cut after 1 and 2 bytes.
        for s in ["a€", "a😀"] {
            let b = s.as_bytes();
            for end in 2..b.len() {
                assert_eq!(detect_encoding(&b[..end]).0, Encoding::Utf8, "{s} {end}");
            }
        }
        // An invalid byte in the middle still means Windows-1252.
        assert_eq!(detect_encoding(b"S\xe3o Paulo\n").0, Encoding::Windows1252);
    }

    #[test]
    fn each_delimiter_is_detected() {
        for d in DELIMITERS {
            let d_str = (d as char).to_string();
            let text = ["Nome", "Telefone", "Cidade"].join(&d_str)
                + "\n"
                + &["Ana", "11 98765-4321", "São Paulo, SP"].join(&d_str)
                + "\n"
                + &["Bia", "21 3333-4444", "Rio"].join(&d_str)
                + "\n";
            // Commas inside fields must not fool the semicolon/tab/pipe cases.
            assert_eq!(detect_delimiter(text.as_bytes()), d, "{d_str:?}");
        }
    }

    #[test]
    fn delimiter_respects_quotes_and_decimal_commas() {
        let text = b"Nome;Valor;Obs\n\"Silva, Ana\";1,50;\"a;b\"\nBia;2,00;x\n";
        assert_eq!(detect_delimiter(text), b';');
        let text = b"name,notes\n\"Ana\",\"line1\nline2; with; semicolons\"\n\"Bia\",ok\n";
        assert_eq!(detect_delimiter(text), b',');
    }

    #[test]
    fn single_column_defaults_to_semicolon() {
        assert_eq!(detect_delimiter(b"Nome\nAna\nBia\n"), b';');
        assert_eq!(detect_delimiter(b""), b';');
    }

    #[test]
    fn kinds() {
        assert_eq!(sniff(b"PK\x03\x04rest").kind, FileKind::Xlsx);
        assert_eq!(
            sniff(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0]).kind,
            FileKind::Xls
        );
        let s = sniff(b"\xEF\xBB\xBFa\tb\n1\t2\n");
        assert_eq!(
            (s.kind, s.encoding, s.bom_len, s.delimiter),
            (FileKind::Csv, Encoding::Utf8, 3, b'\t')
        );
    }

    #[test]
    fn utf16_delimiter() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "Nome\tCidade\nAna\tSão Paulo\n".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let s = sniff(&bytes);
        assert_eq!((s.encoding, s.delimiter), (Encoding::Utf16Le, b'\t'));
    }

    #[test]
    fn encoding_labels() {
        assert_eq!("latin1".parse::<Encoding>(), Ok(Encoding::Windows1252));
        assert_eq!("UTF8".parse::<Encoding>(), Ok(Encoding::Utf8));
        assert!("ebcdic".parse::<Encoding>().is_err());
    }
}
