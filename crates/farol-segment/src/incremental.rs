//! Incremental aggregation: a later run reads only the files it has not read yet.
//!
//! A run can save its aggregation as an [`AggState`] file: the per-user accumulators, the
//! cleaning report, the hashes the duplicate detector stored, and the manifest of the files it
//! covers (path relative to its source root, size, modification time) with the ETL parameters
//! that shape the accumulators. The next run lists the sources again; when every file of the
//! manifest is still there unchanged and the parameters are the same, it loads the state and
//! reads only the files that are not in the manifest. Anything else — a file changed or
//! removed, another time zone or column mapping, other sources, a state written by other
//! aggregation rules, an unreadable state, or a full pass asked for — falls back to reading
//! everything, and [`IncrementalReport::full_reason`] says why.
//!
//! Accumulators merge exactly (counts and sums add, first/last take min/max, histograms add,
//! active days are a sorted union), so "A, save, load, then B" gives the same accumulators as
//! "A and B at once", up to the floating-point order of additions.
//!
//! The file is a length-prefixed little-endian binary format (JSON would be ~3× bigger and
//! much slower at millions of users): magic `FAROLAGG`, format version (u32), header length
//! (u64) and JSON header ([`StateHeader`]: small), user count (u64), then per user the id
//! (u32 length + UTF-8), the fixed fields of [`UserAgg`] and its active days (u32 count +
//! u16 each), then the duplicate detector's hashes (u64 count + u64 each), then a 64-bit
//! checksum of everything before it.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::aggregate::{DedupSet, UserAgg, UserShards};
use crate::clean::CleanReport;
use crate::etl::{self, Aggregation, EtlError, EtlParams, EtlProgress};

/// Version of the binary layout.
const FORMAT_VERSION: u32 = 1;
/// Bumped whenever cleaning or accumulation rules change, so a state written by older code
/// is not merged with rows read by newer code.
pub const AGGREGATION_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"FAROLAGG";

/// One file a state covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Index of the source root (in [`StateKey::roots`]) the file was found under.
    pub root: u32,
    /// Path relative to that root (`/`-separated; empty when the root is the file itself).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when the filesystem has none).
    pub modified_ns: i64,
}

/// What must be equal for a state to be reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateKey {
    /// [`AGGREGATION_VERSION`] of the code that wrote it.
    pub aggregation_version: u32,
    /// The source roots (canonical paths when they exist).
    pub roots: Vec<String>,
    /// [`EtlParams::time_zone`] (local hours, weekdays and days).
    pub time_zone: String,
    /// [`EtlParams::tx_mapping`] (which column is which field).
    pub tx_mapping: String,
    /// [`EtlParams::max_samples`] (reject samples in the report).
    pub max_samples: usize,
    /// [`EtlParams::dedup_max_ids`] (which ids the duplicate detector stores).
    pub dedup_max_ids: u64,
}

impl StateKey {
    /// The key of a run over `inputs` with `params`.
    pub fn new(inputs: &[PathBuf], params: &EtlParams) -> StateKey {
        StateKey {
            aggregation_version: AGGREGATION_VERSION,
            // Absolute, so the same folder reached from another working directory matches.
            roots: inputs
                .iter()
                .map(|p| {
                    std::fs::canonicalize(p)
                        .unwrap_or_else(|_| p.clone())
                        .display()
                        .to_string()
                })
                .collect(),
            time_zone: params.time_zone.clone(),
            tx_mapping: params.tx_mapping.clone(),
            max_samples: params.max_samples,
            dedup_max_ids: params.dedup_max_ids,
        }
    }

    /// Why `self` (the previous state's key) cannot be reused for `current`, if it cannot.
    fn mismatch(&self, current: &StateKey) -> Option<String> {
        if self.aggregation_version != current.aggregation_version {
            return Some(format!(
                "aggregation rules changed (state version {}, this Farol {})",
                self.aggregation_version, current.aggregation_version
            ));
        }
        if self.roots != current.roots {
            return Some(format!(
                "sources changed ({:?} → {:?})",
                self.roots, current.roots
            ));
        }
        let mut changed = Vec::new();
        if self.time_zone != current.time_zone {
            changed.push(format!(
                "time_zone {:?} → {:?}",
                self.time_zone, current.time_zone
            ));
        }
        if self.tx_mapping != current.tx_mapping {
            changed.push(format!(
                "tx_mapping {:?} → {:?}",
                self.tx_mapping, current.tx_mapping
            ));
        }
        if self.max_samples != current.max_samples {
            changed.push(format!(
                "max_samples {} → {}",
                self.max_samples, current.max_samples
            ));
        }
        if self.dedup_max_ids != current.dedup_max_ids {
            changed.push(format!(
                "dedup_max_ids {} → {}",
                self.dedup_max_ids, current.dedup_max_ids
            ));
        }
        (!changed.is_empty()).then(|| format!("ETL parameters changed: {}", changed.join(", ")))
    }
}

/// The small part of a state, read before deciding whether to load the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateHeader {
    /// Sources and parameters.
    pub key: StateKey,
    /// Files covered, sorted by (root, path).
    pub files: Vec<FileStamp>,
    /// Cleaning counts of all those files together.
    pub report: CleanReport,
    /// Users in the body.
    pub users: u64,
    /// Duplicate-detector hashes in the body.
    pub dedup_ids: u64,
}

/// A whole state in memory (tests, tools; runs stream it instead).
#[derive(Debug, Clone, PartialEq)]
pub struct AggState {
    /// Key, manifest and report.
    pub header: StateHeader,
    /// Accumulators, sorted by user id.
    pub users: Vec<(String, UserAgg)>,
    /// Hashes of the transaction ids the duplicate detector stored, sorted.
    pub dedup: Vec<u64>,
}

/// How a run used a saved state (stored in the run report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalReport {
    /// Files whose accumulators came from the saved state (not read again).
    pub reused_files: u64,
    /// Files read by this run.
    pub new_files: u64,
    /// Why every file was read, when they were (`None`: the state was reused).
    pub full_reason: Option<String>,
    /// Milliseconds spent loading the saved state.
    pub load_ms: u64,
    /// Milliseconds spent writing the new state.
    pub save_ms: u64,
    /// Why the new state could not be written, if it could not (the run itself is fine;
    /// the next run then reads everything).
    pub save_error: Option<String>,
}

/// Where an incremental run finds the previous state and writes the new one.
#[derive(Debug, Clone, Default)]
pub struct StateFiles {
    /// The previous state (absent file: first run).
    pub previous: Option<PathBuf>,
    /// Where to write the new state (not written when nothing was new: `previous` is still
    /// exact). The caller moves it over `previous` once the run's result is safely stored, so
    /// a failed run never replaces a good state.
    pub save_to: Option<PathBuf>,
    /// Ignore the previous state and read every file.
    pub full: bool,
}

/// Lists the files of `inputs` with their stamps, sorted by (root, path) — the order
/// [`etl::list_files`] reads them in within each root.
pub fn manifest(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, FileStamp)>, EtlError> {
    let mut out = Vec::new();
    for (i, root) in inputs.iter().enumerate() {
        for file in etl::list_files(std::slice::from_ref(root))? {
            let meta = std::fs::metadata(&file).map_err(|e| EtlError::Read {
                file: file.display().to_string(),
                message: e.to_string(),
            })?;
            let modified_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i64);
            let rel = file.strip_prefix(root).unwrap_or(&file);
            let path = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((
                file.clone(),
                FileStamp {
                    root: i as u32,
                    path,
                    size: meta.len(),
                    modified_ns,
                },
            ));
        }
    }
    out.sort_by(|a, b| (a.1.root, &a.1.path).cmp(&(b.1.root, &b.1.path)));
    Ok(out)
}

/// Compares the previous manifest with the current one: the files to read, or why every
/// file must be read.
fn plan<'a>(
    previous: &[FileStamp],
    current: &'a [(PathBuf, FileStamp)],
) -> Result<Vec<&'a (PathBuf, FileStamp)>, String> {
    let by_path: std::collections::HashMap<(u32, &str), &FileStamp> = current
        .iter()
        .map(|(_, s)| ((s.root, s.path.as_str()), s))
        .collect();
    for old in previous {
        match by_path.get(&(old.root, old.path.as_str())) {
            None => return Err(format!("file removed since the last run: {}", old.path)),
            Some(now) if now.size != old.size || now.modified_ns != old.modified_ns => {
                return Err(format!(
                    "file changed since the last run: {} (size {} → {}, modified {} → {})",
                    old.path, old.size, now.size, old.modified_ns, now.modified_ns
                ));
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<(u32, &str)> =
        previous.iter().map(|s| (s.root, s.path.as_str())).collect();
    Ok(current
        .iter()
        .filter(|(_, s)| !known.contains(&(s.root, s.path.as_str())))
        .collect())
}

/// Aggregates `inputs` reusing the state in `files.previous` when it still describes them
/// (reading only the files not in its manifest), or reading everything otherwise; then writes
/// the new state to `files.save_to` (if set) — unless nothing was read because nothing is new:
/// the previous state is then still exact and nothing is written. The result is the same as
/// [`etl::aggregate_files`] over all of `inputs`.
pub fn aggregate_incremental(
    inputs: &[PathBuf],
    params: &EtlParams,
    files: &StateFiles,
    progress: &(dyn Fn(EtlProgress) + Sync),
) -> Result<(Aggregation, IncrementalReport), EtlError> {
    etl::time_zone(&params.time_zone)?;
    let key = StateKey::new(inputs, params);
    let current = manifest(inputs)?;
    let mut inc = IncrementalReport::default();
    let t = Instant::now();
    let mut users = UserShards::new();
    let mut dedup = DedupSet::new(params.dedup_max_ids);
    let loaded = match (&files.previous, files.full) {
        (_, true) => Err("full pass requested".to_owned()),
        (None, false) => Err("no saved state".to_owned()),
        (Some(path), false) => reuse(path, &key, &current, &users, &dedup),
    };
    let (to_read, previous_report) = match loaded {
        Ok((to_read, report)) => (to_read, Some(report)),
        Err(reason) => {
            // Whatever a partial load put in, start clean.
            users = UserShards::new();
            dedup = DedupSet::new(params.dedup_max_ids);
            inc.full_reason = Some(reason);
            (current.iter().collect(), None)
        }
    };
    inc.load_ms = t.elapsed().as_millis() as u64;
    inc.new_files = to_read.len() as u64;
    inc.reused_files = (current.len() - to_read.len()) as u64;
    let paths: Vec<PathBuf> = to_read.iter().map(|(p, _)| p.clone()).collect();
    let (
        Aggregation {
            users: all_users,
            report: new_report,
        },
        dedup,
    ) = etl::aggregate_into(&paths, params, users, dedup, progress)?;
    let report = match previous_report {
        Some(mut r) => {
            r.merge(new_report, params.max_samples);
            r.users = all_users.len() as u64;
            r
        }
        None => new_report,
    };
    let unchanged = inc.full_reason.is_none() && inc.new_files == 0;
    if let Some(path) = files.save_to.as_ref().filter(|_| !unchanged) {
        let t = Instant::now();
        let header = StateHeader {
            key,
            files: current.into_iter().map(|(_, s)| s).collect(),
            report: report.clone(),
            users: all_users.len() as u64,
            dedup_ids: dedup.len(),
        };
        if let Err(e) = write_file(path, &header, &all_users, &dedup) {
            inc.save_error = Some(format!("{}: {e}", path.display()));
            let _ = std::fs::remove_file(path);
        }
        inc.save_ms = t.elapsed().as_millis() as u64;
    }
    Ok((
        Aggregation {
            users: all_users,
            report,
        },
        inc,
    ))
}

/// The files still to read and the saved report, or why the state cannot be reused.
type Reuse<'a> = Result<(Vec<&'a (PathBuf, FileStamp)>, CleanReport), String>;

/// Loads the state at `path` into `users`/`dedup` if it can be reused.
fn reuse<'a>(
    path: &Path,
    key: &StateKey,
    current: &'a [(PathBuf, FileStamp)],
    users: &UserShards,
    dedup: &DedupSet,
) -> Reuse<'a> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("no saved state".into()),
        Err(e) => return Err(format!("saved state unreadable: {}: {e}", path.display())),
    };
    let unreadable = |e: io::Error| format!("saved state unreadable: {}: {e}", path.display());
    let mut r = SumReader::new(BufReader::with_capacity(1 << 20, file));
    let header = read_header(&mut r).map_err(unreadable)?;
    if let Some(reason) = header.key.mismatch(key) {
        return Err(reason);
    }
    let to_read = plan(&header.files, current)?;
    read_body(
        &mut r,
        &header,
        |id, agg| users.insert(id, agg),
        |h| dedup.preload(h),
    )
    .map_err(unreadable)?;
    Ok((to_read, header.report))
}

// ---------------------------------------------------------------------------------------------
// The binary format.

const K: u64 = 0x517c_c1b7_2722_0a95;

/// A streaming 64-bit checksum over bytes (rotate-xor-multiply over 8-byte words), independent
/// of how the stream is split into writes or reads.
struct Checksum {
    h: u64,
    pending: [u8; 8],
    n: usize,
}

impl Checksum {
    fn new() -> Self {
        Checksum {
            h: 0,
            pending: [0; 8],
            n: 0,
        }
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h.rotate_left(5) ^ w).wrapping_mul(K);
    }

    fn update(&mut self, mut data: &[u8]) {
        if self.n > 0 {
            let take = (8 - self.n).min(data.len());
            self.pending[self.n..self.n + take].copy_from_slice(&data[..take]);
            self.n += take;
            data = &data[take..];
            if self.n < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.n = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }

    fn finish(&self) -> u64 {
        let mut h = self.h;
        for &b in &self.pending[..self.n] {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        h ^= self.n as u64;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

struct SumWriter<W: Write> {
    inner: W,
    sum: Checksum,
}

impl<W: Write> Write for SumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct SumReader<R: Read> {
    inner: R,
    sum: Checksum,
}

impl<R: Read> SumReader<R> {
    fn new(inner: R) -> Self {
        SumReader {
            inner,
            sum: Checksum::new(),
        }
    }
}

impl<R: Read> Read for SumReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
}

/// Bytes of a [`UserAgg`]'s fixed fields plus the active-day count.
const FIXED: usize = 4 + 8 + 6 * 8 + 6 * 4 + 5 * (4 + 8) + 24 * 4 + 7 * 4 + 8 + 8 + 4;

fn encode_agg(a: &UserAgg, out: &mut Vec<u8>) {
    let u32s = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    let f64s = |out: &mut Vec<u8>, v: f64| out.extend_from_slice(&v.to_le_bytes());
    u32s(out, a.bets);
    f64s(out, a.stake);
    for &v in &a.stake_by_game {
        f64s(out, v);
    }
    for &v in &a.bets_by_game {
        u32s(out, v);
    }
    for (n, amount) in [
        (a.wins, a.win_amount),
        (a.deposits, a.deposit_amount),
        (a.withdrawals, a.withdrawal_amount),
        (a.cashbacks, a.cashback_amount),
        (a.bonuses, a.bonus_amount),
    ] {
        u32s(out, n);
        f64s(out, amount);
    }
    for &v in &a.bets_by_hour {
        u32s(out, v);
    }
    for &v in &a.bets_by_weekday {
        u32s(out, v);
    }
    out.extend_from_slice(&a.first_at.to_le_bytes());
    out.extend_from_slice(&a.last_at.to_le_bytes());
    u32s(out, a.bet_days.len() as u32);
    for &d in &a.bet_days {
        out.extend_from_slice(&d.to_le_bytes());
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let out: [u8; N] = self.b[self.at..self.at + N].try_into().expect("N bytes");
        self.at += N;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.bytes())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.bytes())
    }
}

/// Decodes the fixed part; returns the accumulator and its active-day count.
fn decode_fixed(b: &[u8; FIXED]) -> (UserAgg, usize) {
    let mut c = Cursor { b, at: 0 };
    let mut a = UserAgg {
        bets: c.u32(),
        stake: c.f64(),
        ..UserAgg::default()
    };
    for v in &mut a.stake_by_game {
        *v = c.f64();
    }
    for v in &mut a.bets_by_game {
        *v = c.u32();
    }
    for (n, amount) in [
        (&mut a.wins, &mut a.win_amount),
        (&mut a.deposits, &mut a.deposit_amount),
        (&mut a.withdrawals, &mut a.withdrawal_amount),
        (&mut a.cashbacks, &mut a.cashback_amount),
        (&mut a.bonuses, &mut a.bonus_amount),
    ] {
        *n = c.u32();
        *amount = c.f64();
    }
    for v in &mut a.bets_by_hour {
        *v = c.u32();
    }
    for v in &mut a.bets_by_weekday {
        *v = c.u32();
    }
    a.first_at = c.i64();
    a.last_at = c.i64();
    let days = c.u32() as usize;
    debug_assert_eq!(c.at, FIXED);
    (a, days)
}

/// Calls its argument with every duplicate-detector hash to write.
type HashSource<'a> = dyn FnMut(&mut dyn FnMut(u64) -> io::Result<()>) -> io::Result<()> + 'a;

fn write_state(
    w: impl Write,
    header: &StateHeader,
    users: &[(String, UserAgg)],
    dedup: &mut HashSource<'_>,
) -> io::Result<()> {
    let mut w = SumWriter {
        inner: w,
        sum: Checksum::new(),
    };
    w.write_all(MAGIC)?;
    w.write_all(&FORMAT_VERSION.to_le_bytes())?;
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    w.write_all(&(users.len() as u64).to_le_bytes())?;
    let mut buf = Vec::with_capacity(64 * 1024);
    for (id, agg) in users {
        buf.extend_from_slice(&(id.len() as u32).to_le_bytes());
        buf.extend_from_slice(id.as_bytes());
        encode_agg(agg, &mut buf);
        if buf.len() >= 60 * 1024 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    buf.clear();
    w.write_all(&header.dedup_ids.to_le_bytes())?;
    let mut written = 0u64;
    dedup(&mut |h| {
        written += 1;
        buf.extend_from_slice(&h.to_le_bytes());
        if buf.len() >= 64 * 1024 {
            w.write_all(&buf)?;
            buf.clear();
        }
        Ok(())
    })?;
    w.write_all(&buf)?;
    if written != header.dedup_ids {
        return Err(io::Error::other(format!(
            "{written} duplicate-detector hashes written, {} announced",
            header.dedup_ids
        )));
    }
    let sum = w.sum.finish();
    w.inner.write_all(&sum.to_le_bytes())?;
    w.inner.flush()
}

fn write_file(
    path: &Path,
    header: &StateHeader,
    users: &[(String, UserAgg)],
    dedup: &DedupSet,
) -> io::Result<()> {
    let file = File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write_state(&mut w, header, users, &mut |f| dedup.try_for_each(f))?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_header<R: Read>(r: &mut SumReader<R>) -> io::Result<StateHeader> {
    let mut magic = [0; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(io::Error::other("not a Farol aggregation state"));
    }
    let mut v = [0; 4];
    r.read_exact(&mut v)?;
    let version = u32::from_le_bytes(v);
    if version != FORMAT_VERSION {
        return Err(io::Error::other(format!(
            "format version {version}, this Farol reads {FORMAT_VERSION}"
        )));
    }
    let len = read_u64(r)?;
    if len > 1 << 30 {
        return Err(io::Error::other(format!("header of {len} bytes")));
    }
    let mut json = vec![0; len as usize];
    r.read_exact(&mut json)?;
    serde_json::from_slice(&json).map_err(io::Error::other)
}

fn read_body<R: Read>(
    r: &mut SumReader<R>,
    header: &StateHeader,
    mut on_user: impl FnMut(&str, UserAgg),
    mut on_hash: impl FnMut(u64),
) -> io::Result<()> {
    let users = read_u64(r)?;
    if users != header.users {
        return Err(io::Error::other(format!(
            "{users} users in the body, {} in the header",
            header.users
        )));
    }
    let mut id = Vec::new();
    let mut fixed = [0u8; FIXED];
    let mut days = Vec::new();
    for _ in 0..users {
        let mut l = [0; 4];
        r.read_exact(&mut l)?;
        let len = u32::from_le_bytes(l) as usize;
        if len > 1 << 20 {
            return Err(io::Error::other(format!("user id of {len} bytes")));
        }
        id.resize(len, 0);
        r.read_exact(&mut id)?;
        r.read_exact(&mut fixed)?;
        let (mut agg, n) = decode_fixed(&fixed);
        if n > 65_536 {
            return Err(io::Error::other(format!("{n} active days")));
        }
        days.resize(n * 2, 0);
        r.read_exact(&mut days)?;
        agg.bet_days = days
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let id = std::str::from_utf8(&id).map_err(io::Error::other)?;
        on_user(id, agg);
    }
    let hashes = read_u64(r)?;
    if hashes != header.dedup_ids {
        return Err(io::Error::other(format!(
            "{hashes} hashes in the body, {} in the header",
            header.dedup_ids
        )));
    }
    let mut buf = vec![0u8; 8 * 8192];
    let mut left = hashes;
    while left > 0 {
        let n = left.min(8192) as usize;
        r.read_exact(&mut buf[..n * 8])?;
        for c in buf[..n * 8].chunks_exact(8) {
            on_hash(u64::from_le_bytes(c.try_into().expect("8")));
        }
        left -= n as u64;
    }
    let expected = r.sum.finish();
    let stored = read_u64(&mut r.inner)?;
    if stored != expected {
        return Err(io::Error::other("checksum mismatch (file corrupted)"));
    }
    let mut extra = [0u8; 1];
    if r.inner.read(&mut extra)? != 0 {
        return Err(io::Error::other("trailing bytes after the checksum"));
    }
    Ok(())
}

impl AggState {
    /// Writes the state to `path` (created or truncated, synced to disk).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let file = File::create(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let hashes = &self.dedup;
        write_state(&mut w, &self.header, &self.users, &mut |f| {
            hashes.iter().try_for_each(|&h| f(h))
        })?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }

    /// Reads a whole state, checking its checksum.
    pub fn load(path: &Path) -> io::Result<AggState> {
        let mut r = SumReader::new(BufReader::with_capacity(1 << 20, File::open(path)?));
        let header = read_header(&mut r)?;
        let mut users = Vec::with_capacity(header.users as usize);
        let mut dedup = Vec::with_capacity(header.dedup_ids as usize);
        read_body(
            &mut r,
            &header,
            |id, agg| users.push((id.to_owned(), agg)),
            |h| dedup.push(h),
        )?;
        dedup.sort_unstable();
        Ok(AggState {
            header,
            users,
            dedup,
        })
    }

    /// Reads only the header (key, manifest, report).
    pub fn load_header(path: &Path) -> io::Result<StateHeader> {
        let mut r = SumReader::new(BufReader::new(File::open(path)?));
        read_header(&mut r)
    }
}
