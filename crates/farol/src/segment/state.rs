//! Where a run keeps its aggregation state (`farol_segment::incremental`), so the next run of
//! the same account over the same sources reads only new files.
//!
//! `<data_dir>/segment-state/account-<id>/<key>.state`, where `<key>` is a hash of the run's
//! transaction sources as configured (`s3://…` URLs, or local folders by absolute path). A run writes its new state
//! next to it (`<key>.run-<run id>-<random>.tmp`: unique per attempt, so a stalled worker and
//! the one that took its run over never write the same file) and moves it into place only
//! after its result is stored, so a failed or taken-over run never replaces a good state; two
//! runs at once each write a complete state and the last stored wins. Temporary files left by
//! crashed processes are removed by later runs once they are two days old.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The state files of one run.
#[derive(Debug, Clone)]
pub struct RunState {
    /// The state the run starts from (may not exist yet).
    pub current: PathBuf,
    /// Where the run writes its new state.
    pub pending: PathBuf,
}

impl RunState {
    /// The files for run `run_id` of `account_id` over `transactions` (as configured,
    /// before `s3://` sources are mirrored).
    pub fn new(data_dir: &Path, account_id: i64, run_id: i64, transactions: &[PathBuf]) -> Self {
        let mut h = Sha256::new();
        for t in transactions {
            // Local folders by their absolute path (the same lake from another working
            // directory is the same source); s3:// URLs as written.
            let t = if t.to_string_lossy().starts_with("s3://") {
                t.clone()
            } else {
                std::fs::canonicalize(t).unwrap_or_else(|_| t.clone())
            };
            h.update(t.to_string_lossy().as_bytes());
            h.update([0]);
        }
        let key = &hex::encode(h.finalize())[..16];
        let dir = data_dir
            .join("segment-state")
            .join(format!("account-{account_id}"));
        RunState {
            current: dir.join(format!("{key}.state")),
            pending: dir.join(format!(
                "{key}.run-{run_id}-{}.tmp",
                uuid::Uuid::new_v4().simple()
            )),
        }
    }

    /// What the ETL needs: the previous state, where to write, whether to ignore it.
    /// Creates the directory.
    pub fn files(&self, full: bool) -> std::io::Result<farol_segment::StateFiles> {
        if let Some(dir) = self.current.parent() {
            std::fs::create_dir_all(dir)?;
            remove_stale(dir, STALE_AFTER);
        }
        Ok(farol_segment::StateFiles {
            previous: Some(self.current.clone()),
            save_to: Some(self.pending.clone()),
            full,
        })
    }

    /// Makes the run's new state the current one (after its result was stored). Nothing to
    /// do when the run could not write one (the report says why).
    pub fn promote(&self) -> std::io::Result<()> {
        if !self.pending.exists() {
            return Ok(());
        }
        std::fs::rename(&self.pending, &self.current)?;
        if let Some(dir) = self.current.parent() {
            // The rename is durable once the directory is synced.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Drops the run's new state (the run failed or was taken over).
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.pending);
    }
}

/// Age past which a temporary state is a crashed process's leftover (runs write theirs after
/// reading, minutes to hours before they finish).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);

/// Removes `*.tmp` files in `dir` not modified for `age`.
fn remove_stale(dir: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e > age);
        if old && path.extension().is_some_and(|e| e == "tmp") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_per_account_and_per_source_set() {
        let d = Path::new("/data");
        let a = RunState::new(d, 1, 7, &["s3://lake/tx/".into()]);
        let b = RunState::new(d, 1, 8, &["s3://lake/tx/".into()]);
        let c = RunState::new(d, 2, 7, &["s3://lake/tx/".into()]);
        let e = RunState::new(d, 1, 7, &["s3://lake/tx2/".into()]);
        assert_eq!(a.current, b.current);
        assert_ne!(a.pending, b.pending);
        assert_ne!(a.current, c.current);
        assert_ne!(a.current, e.current);
        assert!(a.current.starts_with("/data/segment-state/account-1"));
        let again = RunState::new(d, 1, 7, &["s3://lake/tx/".into()]);
        assert_ne!(a.pending, again.pending, "one file per attempt");
    }

    #[test]
    fn a_promoted_state_replaces_the_current_one_and_stale_leftovers_go() {
        let dir = std::env::temp_dir().join(format!("farol-state-{}", uuid::Uuid::new_v4()));
        let s = RunState::new(&dir, 1, 3, &["lake".into()]);
        let files = s.files(false).unwrap();
        assert_eq!(files.previous.as_ref(), Some(&s.current));
        s.promote().unwrap();
        assert!(!s.current.exists(), "nothing written, nothing promoted");
        std::fs::write(&s.pending, b"new").unwrap();
        s.promote().unwrap();
        assert_eq!(std::fs::read(&s.current).unwrap(), b"new");
        assert!(!s.pending.exists());

        let leftover = s.current.with_file_name("x.run-1-dead.tmp");
        std::fs::write(&leftover, b"old").unwrap();
        remove_stale(
            s.current.parent().unwrap(),
            std::time::Duration::from_secs(3600),
        );
        assert!(leftover.exists(), "recent: may belong to a live run");
        std::fs::File::options()
            .write(true)
            .open(&leftover)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
            .unwrap();
        remove_stale(
            s.current.parent().unwrap(),
            std::time::Duration::from_secs(3600),
        );
        assert!(!leftover.exists());
        assert!(s.current.exists(), "only temporary files are removed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
