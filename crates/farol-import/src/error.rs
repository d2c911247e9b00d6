//! Reading errors.

use std::fmt;

/// What went wrong while reading a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be opened or read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV could not be parsed.
    #[error("invalid CSV: {0}")]
    Csv(String),
    /// The XLSX workbook or sheet is damaged or not an XLSX file.
    #[error("invalid XLSX: {0}")]
    Xlsx(String),
    /// The requested sheet does not exist.
    #[error("sheet {name:?} not found; available sheets: {}", quoted_list(.available))]
    SheetNotFound {
        /// The sheet name asked for.
        name: String,
        /// The workbook's sheets, in order.
        available: Vec<String>,
    },
    /// A single record exceeds the size limit (usually an unclosed quote).
    #[error("record larger than {limit} bytes (an unclosed quote?)")]
    RecordTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The file (or sheet) has no header row.
    #[error("the file is empty: no header row")]
    Empty,
    /// A format this crate does not read (e.g. legacy XLS).
    #[error("unsupported format: {0}")]
    Unsupported(String),
}

fn quoted_list(items: &[String]) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An error while reading a spreadsheet: which file, which row, what.
///
/// Displays as `clientes.csv: row 1,234: invalid CSV: …`.
#[derive(Debug)]
pub struct ReadError {
    /// The file's name (or the name given for a reader), if known.
    pub file: Option<String>,
    /// The row number (as in [`crate::Record::row`]) where it happened, if known.
    pub row: Option<u64>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl ReadError {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        ReadError {
            file: None,
            row: None,
            kind,
        }
    }

    pub(crate) fn at_row(mut self, row: u64) -> Self {
        self.row = Some(row);
        self
    }

    pub(crate) fn in_file(mut self, file: Option<&str>) -> Self {
        if self.file.is_none() {
            self.file = file.map(str::to_owned);
        }
        self
    }
}

impl From<ErrorKind> for ReadError {
    fn from(kind: ErrorKind) -> Self {
        ReadError::new(kind)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(row) = self.row {
            write!(f, "row {}: ", thousands(row))?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// `1234567` → `"1,234,567"`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_row_and_cause() {
        let e = ReadError::new(ErrorKind::Csv("bad".into()))
            .at_row(1234)
            .in_file(Some("a.csv"));
        assert_eq!(e.to_string(), "a.csv: row 1,234: invalid CSV: bad");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let e = ReadError::new(ErrorKind::SheetNotFound {
            name: "X".into(),
            available: vec!["A".into(), "B".into()],
        });
        assert_eq!(
            e.to_string(),
            r#"sheet "X" not found; available sheets: "A", "B""#
        );
    }
}
