//! Arbitrary bytes through the XLSX reader (calamine on its worker thread).
//!
//! The reader turns a panic on the worker thread into an error, but
//! libfuzzer-sys's panic hook aborts first, so such panics are still found.
#![no_main]

use farol_import::XlsxReader;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = XlsxReader::from_reader(Cursor::new(data.to_vec()), None, None) {
        let _ = reader.headers().len();
        for record in reader {
            let _ = record.map(|r| r.fields.len());
        }
    }
});
