//! A small columnar table writer for exports (the final union table as Parquet): typed,
//! nullable columns, written in row groups so memory stays bounded.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
}

/// Writes rows of nullable typed columns to a Parquet file.
pub struct ParquetTable {
    writer: SerializedFileWriter<File>,
    types: Vec<ColumnType>,
    rows: Vec<Vec<Cell>>,
    rows_per_group: usize,
}

fn clean_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl ParquetTable {
    /// Creates `path` with the given columns (names are made Parquet-safe: `[A-Za-z0-9_]`).
    pub fn create(path: &Path, columns: &[(String, ColumnType)]) -> Result<ParquetTable> {
        let mut schema = String::from("message export {\n");
        for (name, ty) in columns {
            let physical = match ty {
                ColumnType::Text => "binary",
                ColumnType::Int => "int64",
                ColumnType::Float => "double",
            };
            let logical = if *ty == ColumnType::Text {
                " (STRING)"
            } else {
                ""
            };
            schema.push_str(&format!(
                "  optional {physical} {}{logical};\n",
                clean_name(name)
            ));
        }
        schema.push('}');
        let schema = Arc::new(parse_message_type(&schema)?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let file = File::create(path).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(ParquetTable {
            writer: SerializedFileWriter::new(file, schema, props)?,
            types: columns.iter().map(|(_, t)| *t).collect(),
            rows: Vec::new(),
            rows_per_group: 100_000,
        })
    }

    /// Appends a row (as many cells as columns; a cell of the wrong type is written as null).
    pub fn push(&mut self, row: Vec<Cell>) -> Result<()> {
        if row.len() != self.types.len() {
            return Err(ParquetError::General(format!(
                "row has {} cells, the table {} columns",
                row.len(),
                self.types.len()
            )));
        }
        self.rows.push(row);
        if self.rows.len() >= self.rows_per_group {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            let cells = self.rows.iter().map(|r| &r[index]);
            match self.types[index] {
                ColumnType::Text => {
                    let values: Vec<ByteArray> = cells
                        .filter_map(|c| match c {
                            Cell::Text(s) => Some(ByteArray::from(s.as_str())),
                            _ => None,
                        })
                        .collect();
                    let defs = text_defs(&self.rows, index);
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defs), None)?;
                }
                ColumnType::Int => {
                    let values: Vec<i64> = cells
                        .filter_map(|c| match c {
                            Cell::Int(v) => Some(*v),
                            _ => None,
                        })
                        .collect();
                    let defs = typed_defs(&self.rows, index, |c| matches!(c, Cell::Int(_)));
                    column
                        .typed::<Int64Type>()
                        .write_batch(&values, Some(&defs), None)?;
                }
                ColumnType::Float => {
                    let values: Vec<f64> = cells
                        .filter_map(|c| match c {
                            Cell::Float(v) => Some(*v),
                            Cell::Int(v) => Some(*v as f64),
                            _ => None,
                        })
                        .collect();
                    let defs = typed_defs(&self.rows, index, |c| {
                        matches!(c, Cell::Float(_) | Cell::Int(_))
                    });
                    column
                        .typed::<DoubleType>()
                        .write_batch(&values, Some(&defs), None)?;
                }
            }
            column.close()?;
            index += 1;
        }
        group.close()?;
        self.rows.clear();
        Ok(())
    }

    /// Writes the last row group and the footer.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}

fn text_defs(rows: &[Vec<Cell>], index: usize) -> Vec<i16> {
    typed_defs(rows, index, |c| matches!(c, Cell::Text(_)))
}

fn typed_defs(rows: &[Vec<Cell>], index: usize, present: impl Fn(&Cell) -> bool) -> Vec<i16> {
    rows.iter().map(|r| i16::from(present(&r[index]))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn typed_nullable_columns_round_trip() {
        let dir = std::env::temp_dir().join(format!("farol-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.parquet");
        let mut t = ParquetTable::create(
            &path,
            &[
                ("user_id".into(), ColumnType::Text),
                ("cluster-id".into(), ColumnType::Int),
                ("avg_ticket".into(), ColumnType::Float),
            ],
        )
        .unwrap();
        t.push(vec![
            Cell::Text("u1".into()),
            Cell::Int(2),
            Cell::Float(12.5),
        ])
        .unwrap();
        t.push(vec![Cell::Text("u2".into()), Cell::Null, Cell::Null])
            .unwrap();
        assert!(t.push(vec![Cell::Null]).is_err());
        t.finish().unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        assert_eq!(schema.column(1).name(), "cluster_id");
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(
            rows,
            [
                "{user_id: \"u1\", cluster_id: 2, avg_ticket: 12.5}",
                "{user_id: \"u2\", cluster_id: null, avg_ticket: null}"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
