//! XLSX reading, on a workbook generated with rust_xlsxwriter.

mod common;
use common::temp_file;

use farol_import::{ErrorKind, Format, OpenOptions, ProgressUnit, Record, XlsxReader, open};
use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook};
use std::io::Cursor;

fn workbook() -> Vec<u8> {
    let mut wb = Workbook::new();
    let date = XFormat::new().set_num_format("yyyy-mm-dd");
    let datetime = XFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss");

    let ws = wb.add_worksheet();
    ws.set_name("Clientes").unwrap();
    for (c, h) in ["Nome", "Telefone", "CPF", "Data", "Ativo", "Score", "Obs"]
        .iter()
        .enumerate()
    {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "Ana").unwrap();
    ws.write_number(1, 1, 11987654321.0).unwrap();
    ws.write_number(1, 2, 12345678909.0).unwrap();
    ws.write_datetime_with_format(1, 3, ExcelDateTime::from_ymd(2026, 11, 1).unwrap(), &date)
        .unwrap();
    ws.write_boolean(1, 4, true).unwrap();
    ws.write_number(1, 5, 7.5).unwrap();
    ws.write_string(1, 6, "linha 1\nlinha 2").unwrap();

    ws.write_string(2, 0, "Bia").unwrap();
    ws.write_number(2, 1, 1.1987654321E10).unwrap();
    // (2, 2): no CPF — a gap.
    let dt = ExcelDateTime::from_ymd(2026, 11, 1)
        .unwrap()
        .and_hms(13, 45, 0)
        .unwrap();
    ws.write_datetime_with_format(2, 3, dt, &datetime).unwrap();
    ws.write_boolean(2, 4, false).unwrap();
    ws.write_number(2, 5, 0.1 + 0.2).unwrap();
    // Row 4 (index 3) is empty; row 5 has a cell beyond the header.
    ws.write_string(4, 0, "Cid").unwrap();
    ws.write_string(4, 8, "extra").unwrap();

    let ws = wb.add_worksheet();
    ws.set_name("Notas Fiscais").unwrap();
    ws.write_string(2, 1, "Nota").unwrap();
    ws.write_number(3, 1, 42.0).unwrap();

    wb.save_to_buffer().unwrap()
}

fn rec(row: u64, fields: &[&str]) -> Record {
    Record {
        row,
        fields: fields.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn first_sheet_cells_as_text() {
    let reader = XlsxReader::from_reader(Cursor::new(workbook()), None, Some("c.xlsx")).unwrap();
    assert_eq!(reader.sheet(), "Clientes");
    assert_eq!(reader.sheets(), ["Clientes", "Notas Fiscais"]);
    assert_eq!(
        reader.headers(),
        ["Nome", "Telefone", "CPF", "Data", "Ativo", "Score", "Obs"]
    );
    assert_eq!(reader.last_row(), Some(5));
    let records: Vec<Record> = reader.map(Result::unwrap).collect();
    assert_eq!(
        records,
        [
            rec(
                2,
                &[
                    "Ana",
                    "11987654321",
                    "12345678909",
                    "2026-11-01",
                    "true",
                    "7.5",
                    "linha 1\nlinha 2"
                ]
            ),
            rec(
                3,
                &[
                    "Bia",
                    "11987654321",
                    "",
                    "2026-11-01T13:45:00",
                    "false",
                    "0.3"
                ]
            ),
            rec(5, &["Cid", "", "", "", "", "", "", "", "extra"]),
        ]
    );
}

#[test]
fn named_sheet_ignoring_case_and_accents() {
    for name in ["Notas Fiscais", "  notas fiscais "] {
        let mut r = XlsxReader::from_reader(Cursor::new(workbook()), Some(name), None).unwrap();
        assert_eq!(r.sheet(), "Notas Fiscais");
        // The header is the first non-blank row, with the sheet's row numbers.
        assert_eq!(r.headers(), ["", "Nota"]);
        assert_eq!(r.row(), 3);
        assert_eq!(r.next().unwrap().unwrap(), rec(4, &["", "42"]));
        assert!(r.next().is_none());
    }
}

#[test]
fn wrong_sheet_name_lists_the_sheets() {
    let path = temp_file("sheets.xlsx", &workbook());
    let options = OpenOptions {
        sheet: Some("Vendas".into()),
        ..OpenOptions::default()
    };
    let e = open(&path, &options).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(e.kind, ErrorKind::SheetNotFound { .. }));
    let msg = e.to_string();
    assert!(
        msg.ends_with(r#"sheet "Vendas" not found; available sheets: "Clientes", "Notas Fiscais""#),
        "{msg}"
    );
    assert!(msg.contains("sheets.xlsx: "), "{msg}");
}

#[test]
fn open_sniffs_xlsx() {
    let path = temp_file("open.xlsx", &workbook());
    let mut source = open(&path, &OpenOptions::default()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(source.headers()[1], "Telefone");
    let Format::Xlsx(format) = source.format() else {
        panic!("not xlsx")
    };
    assert_eq!(format.sheet, "Clientes");
    let json = serde_json::to_value(source.format()).unwrap();
    assert_eq!(json["format"], "xlsx");
    assert_eq!(source.by_ref().count(), 3);
    let progress = source.progress();
    assert_eq!(progress.unit, ProgressUnit::Rows);
    assert_eq!((progress.done, progress.total), (5, Some(5)));
    assert_eq!(progress.fraction(), Some(1.0));
}

#[test]
fn damaged_workbooks_are_errors() {
    let good = workbook();
    for cut in [4, 30, good.len() / 3, good.len() / 2, good.len() - 30] {
        let truncated = good[..cut].to_vec();
        let result = XlsxReader::from_reader(Cursor::new(truncated), None, None)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>());
        let e = result.expect_err("truncated workbook must fail");
        assert!(e.to_string().contains("invalid XLSX"), "{e}");
    }
    let path = temp_file("garbage.xlsx", b"PK\x03\x04 definitely not a zip");
    let e = open(&path, &OpenOptions::default()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(e.to_string().contains("garbage.xlsx: invalid XLSX"), "{e}");
}

#[test]
fn empty_sheet_has_no_header() {
    let mut wb = Workbook::new();
    wb.add_worksheet();
    let bytes = wb.save_to_buffer().unwrap();
    let e = XlsxReader::from_reader(Cursor::new(bytes), None, None).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Empty));
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Corrupted bytes inside a real workbook: an error or rows, never a panic.
        #[test]
        fn mutated_workbook_never_panics(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = workbook();
            for (index, byte) in edits {
                let i = index.index(bytes.len());
                bytes[i] = byte;
            }
            if let Ok(reader) = XlsxReader::from_reader(Cursor::new(bytes), None, None) {
                let mut errors = 0;
                for record in reader {
                    if record.is_err() {
                        errors += 1;
                    }
                }
                prop_assert!(errors <= 1);
            }
        }
    }
}
