//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// Writes `bytes` to a file in the temporary directory, named per process so parallel test
/// binaries do not collide.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("farol-import-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}
