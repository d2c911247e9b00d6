//! `open` on CSV files, and garbage input.

mod common;
use common::temp_file;

use farol_import::{
    CsvReader, Encoding, ErrorKind, Format, OpenOptions, ProgressUnit, Source, XlsxReader, open,
};
use proptest::prelude::*;
use std::io::Cursor;

#[test]
fn open_sniffs_csv() {
    let path = temp_file(
        "a.csv",
        b"Raz\xe3o Social;Cidade\nPadaria P\xe3o;S\xe3o Paulo\n",
    );
    let mut source = open(&path, &OpenOptions::default()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(source.headers(), ["Razão Social", "Cidade"]);
    let Format::Csv(format) = source.format() else {
        panic!("not csv")
    };
    assert_eq!(
        (format.encoding, format.delimiter, format.bom),
        (Encoding::Windows1252, b';', false)
    );
    assert_eq!(
        serde_json::to_value(source.format()).unwrap(),
        serde_json::json!({"format": "csv", "encoding": "windows-1252", "delimiter": ";", "bom": false})
    );
    let record = source.next().unwrap().unwrap();
    assert_eq!((record.row, record.get(1)), (2, "São Paulo"));
    assert!(source.next().is_none());
    let progress = source.progress();
    assert_eq!(progress.unit, ProgressUnit::Bytes);
    assert_eq!(progress.total, Some(42));
    assert_eq!(progress.done, 42);
    assert_eq!(progress.fraction(), Some(1.0));
}

#[test]
fn open_errors_name_the_file() {
    let e = open("/nonexistent/clientes.csv", &OpenOptions::default()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/clientes.csv: I/O error"),
        "{e}"
    );

    let path = temp_file(
        "old.xls",
        &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0],
    );
    let e = open(&path, &OpenOptions::default()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(e.kind, ErrorKind::Unsupported(_)), "{e}");

    let path = temp_file("empty.csv", b"");
    let e = open(&path, &OpenOptions::default()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(e.kind, ErrorKind::Empty), "{e}");
}

#[test]
fn source_over_uploaded_chunks() {
    // A reader over chunks, as an upload handler would give.
    let chunks: Vec<&[u8]> = vec![b"Nome,Tel", b"efone\n\"Ana", b" \"\"A\"\"\",1\n"];
    let reader = CsvReader::from_reader(Cursor::new(chunks.concat()), None, None, None).unwrap();
    let source = Source::from_csv(reader, Some(30));
    assert_eq!(source.headers(), ["Nome", "Telefone"]);
    let records: Vec<_> = source.map(Result::unwrap).collect();
    assert_eq!(records[0].fields, ["Ana \"A\"", "1"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn csv_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(reader) = CsvReader::from_reader(Cursor::new(bytes), None, None, None) {
            let (mut last, mut errors) = (1, 0);
            for record in reader {
                match record {
                    Ok(r) => {
                        prop_assert!(r.row > last);
                        last = r.row;
                    }
                    Err(e) => {
                        prop_assert!(e.row.is_some());
                        errors += 1;
                    }
                }
            }
            // The iterator ends after an error.
            prop_assert!(errors <= 1);
        }
    }

    #[test]
    fn csv_structured_garbage_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![Just(&b";"[..]), Just(&b","[..]), Just(&b"\""[..]), Just(&b"\n"[..]),
                        Just(&b"\r\n"[..]), Just(&b"\t"[..]), Just(&b"\xe3"[..]), Just(&b"\xc3\xa3"[..]),
                        Just(&b"abc"[..]), Just(&b"\xef\xbb\xbf"[..])],
            0..200),
        delimiter in proptest::option::of(prop_oneof![Just(b';'), Just(b',')]),
    ) {
        let bytes = parts.concat();
        if let Ok(reader) = CsvReader::from_reader(Cursor::new(bytes), delimiter, None, None) {
            for record in reader {
                let _ = record;
            }
        }
    }

    #[test]
    fn xlsx_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut bytes = b"PK\x03\x04".to_vec();
        bytes.extend(tail);
        if let Ok(reader) = XlsxReader::from_reader(Cursor::new(bytes), None, None) {
            for record in reader {
                let _ = record;
            }
        }
    }
}
