//! Arbitrary bytes through the CSV reader (sniffing, decoding, parsing).
#![no_main]

use farol_import::CsvReader;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    // Sniffed, then with each delimiter/encoding forced.
    let options = [
        (None, None),
        (Some(b','), Some(farol_import::Encoding::Windows1252)),
        (Some(b'\t'), Some(farol_import::Encoding::Utf16Le)),
    ];
    for (delimiter, encoding) in options {
        if let Ok(reader) =
            CsvReader::from_reader(Cursor::new(data.to_vec()), delimiter, encoding, None)
        {
            let _ = reader.headers().len();
            for record in reader {
                let _ = record.map(|r| r.fields.len());
            }
        }
    }
});
