//! One row of a spreadsheet.

/// One data (or header) row, as read from the file.
///
/// `fields` are kept raw (not trimmed). Rows may be ragged: a row shorter than
/// the header has fewer fields ([`Record::get`] returns `""` past the end), a
/// longer one keeps its extra fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// Row number as a spreadsheet user sees it (the header row is row 1 for CSV).
    pub row: u64,
    /// The row's fields, decoded to UTF-8, untrimmed.
    pub fields: Vec<String>,
}

impl Record {
    /// The field at `index`, or `""` when the row is shorter than that.
    pub fn get(&self, index: usize) -> &str {
        self.fields.get(index).map_or("", String::as_str)
    }

    /// The field at `index` with surrounding whitespace removed (`""` past the end).
    pub fn trimmed(&self, index: usize) -> &str {
        self.get(index).trim()
    }

    /// True when every field is empty or whitespace.
    pub fn is_blank(&self) -> bool {
        self.fields.iter().all(|f| f.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_pads_short_rows_and_trims() {
        let r = Record {
            row: 2,
            fields: vec![" Ana ".into(), String::new()],
        };
        assert_eq!(r.get(0), " Ana ");
        assert_eq!(r.trimmed(0), "Ana");
        assert_eq!(r.get(5), "");
        assert!(!r.is_blank());
        assert!(
            Record {
                row: 3,
                fields: vec![" ".into(), String::new()]
            }
            .is_blank()
        );
    }
}
