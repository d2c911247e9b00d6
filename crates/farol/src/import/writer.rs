//! Writes one batch of candidate rows in one transaction: dedupe against the batch and the
//! account's stored clients, then set-oriented inserts and per-client updates.
//!
//! Identity: a row is the same client as a stored one when its external id, CPF/CNPJ, any
//! phone or any e-mail matches (in that order of precedence). Unique indexes on all four
//! make a second client with the same key impossible; the per-account write lock taken at
//! the start of the batch (SQLite's single writer, a PostgreSQL advisory lock) makes two
//! concurrent imports see each other's committed batches instead of failing on those indexes.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::rows::{Candidate, Problem, Severity};
use crate::crm::clients::{ClientStatus, build_search_text, refresh_search_text};
use crate::crm::search_index;
use crate::crm::{portfolios, tags};
use crate::db::bulk::{SqlValue, insert_rows, json_ints, json_texts};
use crate::db::{Backend, DbError, DbResult, now_ms};

/// What to do with a row that matches a client already known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub enum Dedupe {
    /// Keep the client as it is; count the row as a duplicate.
    #[default]
    #[serde(rename = "keep-first")]
    KeepFirst,
    /// The row's non-empty values replace the client's; its contacts and tags are added.
    #[serde(rename = "keep-last")]
    KeepLast,
    /// The row fills the client's empty fields; contacts and tags are added (union).
    #[serde(rename = "merge")]
    Merge,
}

impl Dedupe {
    /// Stored and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dedupe::KeepFirst => "keep-first",
            Dedupe::KeepLast => "keep-last",
            Dedupe::Merge => "merge",
        }
    }

    /// Parses the stored and CLI name.
    pub fn parse(s: &str) -> Option<Dedupe> {
        match s {
            "keep-first" => Some(Dedupe::KeepFirst),
            "keep-last" => Some(Dedupe::KeepLast),
            "merge" => Some(Dedupe::Merge),
            _ => None,
        }
    }
}

/// Per-import state that outlives a batch: ids of names already resolved, and the keys the
/// account may already hold.
#[derive(Debug, Default)]
pub struct Caches {
    portfolios: HashMap<String, i64>,
    tags: HashMap<String, i64>,
    /// Custom field ids by key.
    pub field_ids: HashMap<String, i64>,
    /// Keys stored in the account when the import started or written by it since; `None`
    /// looks every key up.
    known: Option<KnownKeys>,
    /// Set after a conflict: the next attempt looks every key up (a concurrent writer stored
    /// a key that `known` cannot have).
    verify_all: bool,
}

impl Caches {
    /// Forgets ids that a rolled-back transaction may have created.
    pub fn forget_uncommitted(&mut self) {
        self.portfolios.clear();
        self.tags.clear();
    }

    /// Loads every dedupe key (phone, e-mail, CPF/CNPJ, external id) the account holds, so
    /// batches look up only the keys that may exist instead of every key of every row.
    /// `expected_keys` sizes the filter for the keys the import will add.
    pub async fn load_known_keys(
        &mut self,
        conn: &mut AnyConnection,
        account_id: i64,
        expected_keys: u64,
    ) -> DbResult<()> {
        let stored: i64 = sqlx::query_scalar(
            "select (select count(*) from contacts where account_id = $1) \
             + (select count(*) from clients where account_id = $1) * 2",
        )
        .bind(account_id)
        .fetch_one(&mut *conn)
        .await?;
        let mut known = KnownKeys::with_capacity(stored as u64 + expected_keys);
        {
            let mut rows = sqlx::query_as::<_, (String, String)>(
                "select kind, value from contacts where account_id = $1",
            )
            .bind(account_id)
            .fetch(&mut *conn);
            while let Some((kind, value)) = rows.try_next().await? {
                let kind = if kind == "phone" {
                    KeyKind::Phone
                } else {
                    KeyKind::Email
                };
                known.insert(kind, &value);
            }
        }
        let mut rows = sqlx::query_as::<_, (Option<String>, Option<String>)>(
            "select cpf_cnpj, external_id from clients where account_id = $1 \
             and (cpf_cnpj is not null or external_id is not null)",
        )
        .bind(account_id)
        .fetch(&mut *conn);
        while let Some((doc, ext)) = rows.try_next().await? {
            if let Some(d) = doc {
                known.insert(KeyKind::Document, &d);
            }
            if let Some(e) = ext {
                known.insert(KeyKind::External, &e);
            }
        }
        self.known = Some(known);
        Ok(())
    }
}

/// A Bloom filter over dedupe keys: "no" is certain, "maybe" is checked in the database.
///
/// Correctness never depends on it: a key stored by a concurrent writer after the filter was
/// loaded makes the batch's insert fail on a unique index, and the retry looks every key up
/// ([`should_retry`]). Memory is fixed when it is made (16 bits per expected key, ~0.02% false
/// "maybe"s at that load, at most 32 MB), so a file of any size keeps the import's memory bounded; beyond the expected keys
/// it only answers "maybe" more often.
#[derive(Debug)]
struct KnownKeys {
    bits: Vec<u64>,
    mask: u64,
}

impl KnownKeys {
    const HASHES: u64 = 7;

    fn with_capacity(keys: u64) -> KnownKeys {
        let bits = keys
            .clamp(1 << 16, 1 << 24)
            .saturating_mul(16)
            .next_power_of_two();
        KnownKeys {
            bits: vec![0; (bits / 64) as usize],
            mask: bits - 1,
        }
    }

    fn probes(&self, kind: KeyKind, value: &str) -> impl Iterator<Item = u64> + use<> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (kind as u8, value).hash(&mut h);
        let h = h.finish();
        let (h1, h2) = (h, h.rotate_left(32) | 1);
        let mask = self.mask;
        (0..Self::HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
    }

    fn insert(&mut self, kind: KeyKind, value: &str) {
        for bit in self.probes(kind, value) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, kind: KeyKind, value: &str) -> bool {
        self.probes(kind, value)
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// Who and what a batch belongs to.
#[derive(Debug, Clone)]
pub struct BatchMeta<'a> {
    /// Account written to.
    pub account_id: i64,
    /// The import.
    pub import_id: i64,
    /// User who started the import.
    pub created_by: Option<i64>,
    /// Policy for rows that match an existing client.
    pub dedupe: Dedupe,
    /// Source file name (identifies the lineage for re-imports).
    pub file: &'a str,
}

/// Counts of one batch (valid rows only; invalid rows are counted by the pipeline).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BatchCounts {
    /// New clients.
    pub imported: u64,
    /// Rows that changed a client stored before this import.
    pub updated: u64,
    /// Rows that matched a client stored before this import and changed nothing.
    pub unchanged: u64,
    /// Rows that matched a client created by an earlier row of this import, or (keep-first)
    /// a stored client from another source.
    pub duplicate: u64,
}

/// The outcome of a batch: counts and the warnings found while deduplicating.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Counts.
    pub counts: BatchCounts,
    /// `(row, problem)` for each warning (contacts owned by another client, duplicates).
    pub problems: Vec<(u64, Problem)>,
    /// Clients inserted or changed: what the batch's [`Indexer`] must index once the batch
    /// commits (the batch defers search indexing, see [`begin_batch`]).
    ///
    /// [`Indexer`]: crate::crm::search_index::Indexer
    pub written: Vec<i64>,
}

/// A client as the batch sees it: loaded from the database or about to be inserted.
#[derive(Debug, Clone, Default)]
struct State {
    name: String,
    legal_name: Option<String>,
    cpf_cnpj: Option<String>,
    status: Option<ClientStatus>,
    portfolio: Option<PortfolioRef>,
    category: Option<String>,
    score: Option<i64>,
    city: Option<String>,
    current_product: Option<String>,
    external_id: Option<String>,
    phones: Vec<String>,
    emails: Vec<String>,
    tags: Vec<String>,
    custom: Vec<(String, crate::crm::custom_fields::StoredValue)>,
    source_file: Option<String>,
    source_import_id: Option<i64>,
    source_row_hash: Option<i64>,
    /// Row number that created it (pending clients), for duplicate messages.
    first_row: u64,
    /// Search text computed with the row, while no later row changed the client.
    search_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum PortfolioRef {
    Id(i64),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Stored(i64),
    Pending(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyKind {
    External,
    Document,
    Phone,
    Email,
}

impl KeyKind {
    fn label(self) -> &'static str {
        match self {
            KeyKind::External => "external id",
            KeyKind::Document => "CPF/CNPJ",
            KeyKind::Phone => "phone",
            KeyKind::Email => "e-mail",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Apply {
    /// Non-empty row values replace the client's.
    Replace,
    /// Row values fill empty fields only.
    Fill,
}

fn put<T: Clone>(mode: Apply, current: &mut Option<T>, new: &Option<T>) -> bool {
    let Some(v) = new else { return false };
    if mode == Apply::Fill && current.is_some() {
        return false;
    }
    *current = Some(v.clone());
    true
}

/// Begins a batch's write transaction, holding the account's import lock until it ends.
///
/// Search indexing is deferred in it (PostgreSQL): after the commit, hand
/// [`BatchOutcome::written`] to a [`crate::crm::search_index::Indexer`].
pub async fn begin_batch(db: &crate::db::Db, account_id: i64) -> DbResult<crate::db::Tx> {
    let mut tx = db.begin().await?;
    lock_account(&mut tx, db.backend(), account_id).await?;
    Ok(tx)
}

/// Whether a batch that failed with `err` on try number `attempt` should be tried again: a
/// writer outside the import lock (an API call) took one of its keys first, and a new
/// transaction will see it. Forgets the ids resolved inside the rolled-back transaction.
pub fn should_retry(err: &DbError, attempt: u32, caches: &mut Caches) -> bool {
    let retry = matches!(err, DbError::Conflict { .. }) && attempt < 4;
    if retry {
        caches.forget_uncommitted();
        caches.verify_all = true;
    }
    retry
}

/// Takes the per-account import lock for the rest of the transaction (PostgreSQL; SQLite's
/// `begin immediate` already serializes writers).
async fn lock_account(conn: &mut AnyConnection, backend: Backend, account_id: i64) -> DbResult<()> {
    if backend == Backend::Sqlite {
        // Checkpoint the WAL every ~40 MB instead of every 4 MB: each checkpoint copies pages
        // back into the database file inside a commit, and bulk batches write many pages.
        sqlx::query("pragma wal_autocheckpoint = 10000")
            .execute(&mut *conn)
            .await?;
    }
    if backend == Backend::Postgres {
        // Two-key form: (namespace "farol import", account).
        sqlx::query("select pg_advisory_xact_lock(1179796044, $1::int)")
            .bind(account_id)
            .execute(&mut *conn)
            .await?;
    }
    search_index::defer(conn, backend).await
}

/// Writes `rows` (valid candidates of one file, in row order). The caller owns the
/// transaction and the account lock.
pub async fn write_batch(
    conn: &mut AnyConnection,
    backend: Backend,
    meta: &BatchMeta<'_>,
    caches: &mut Caches,
    rows: &[Candidate],
) -> DbResult<BatchOutcome> {
    let mut out = BatchOutcome::default();
    if rows.is_empty() {
        return Ok(out);
    }
    let verify_all = std::mem::take(&mut caches.verify_all);
    let known = caches.known.as_ref().filter(|_| !verify_all);
    let owners = lookup_owners(conn, backend, meta.account_id, known, rows).await?;
    if let Some(known) = &mut caches.known {
        for row in rows {
            for (kind, value) in row_keys(row) {
                known.insert(kind, &value);
            }
        }
    }
    let stored_ids: Vec<i64> = {
        let mut ids: Vec<i64> = owners.values().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut stored = load_states(conn, backend, meta.account_id, &stored_ids).await?;
    let mut keys: HashMap<(KeyKind, String), Target> = owners
        .into_iter()
        .map(|(k, id)| (k, Target::Stored(id)))
        .collect();
    let mut pending: Vec<State> = Vec::new();
    // Row that created each pending client (for messages while `pending` is borrowed).
    let mut pending_rows: Vec<u64> = Vec::new();
    let mut touched: HashSet<i64> = HashSet::new();
    let mut confirmed: Vec<i64> = Vec::new();
    let mut new_contacts: Vec<(Target, KeyKind, String)> = Vec::new();
    let mut new_tags: Vec<(Target, String)> = Vec::new();
    let mut new_custom: Vec<(
        Target,
        Apply,
        String,
        crate::crm::custom_fields::StoredValue,
    )> = Vec::new();

    for row in rows {
        let row_keys = row_keys(row);
        let target = row_keys.iter().find_map(|k| keys.get(k).copied());
        let Some(target) = target else {
            let idx = pending.len();
            let state = State {
                name: row.name.clone(),
                legal_name: row.legal_name.clone(),
                cpf_cnpj: row.cpf_cnpj.clone(),
                status: row.status,
                portfolio: row.portfolio.clone().map(PortfolioRef::Name),
                category: row.category.clone(),
                score: row.score,
                city: row.city.clone(),
                current_product: row.current_product.clone(),
                external_id: row.external_id.clone(),
                phones: row.phones.clone(),
                emails: row.emails.clone(),
                tags: row.tags.clone(),
                custom: row.custom.clone(),
                source_file: Some(meta.file.to_owned()),
                source_import_id: Some(meta.import_id),
                source_row_hash: Some(row.hash),
                first_row: row.row,
                search_text: (!row.search_text.is_empty()).then(|| row.search_text.clone()),
            };
            for k in row_keys {
                keys.insert(k, Target::Pending(idx));
            }
            pending.push(state);
            pending_rows.push(row.row);
            out.counts.imported += 1;
            continue;
        };

        let (state, same_import) = match target {
            Target::Pending(i) => (&mut pending[i], true),
            Target::Stored(id) => {
                let s = stored.get_mut(&id).expect("every owner id was loaded");
                let same = s.source_import_id == Some(meta.import_id);
                (s, same)
            }
        };
        let reimport = !same_import
            && state.source_file.as_deref() == Some(meta.file)
            && state.source_import_id.is_some();
        let mode = if reimport {
            if state.source_row_hash == Some(row.hash) {
                // Claimed by this import, so a later duplicate row in the file is treated
                // as it was the first time (keep-first: skipped) instead of as a change.
                state.source_import_id = Some(meta.import_id);
                if let Target::Stored(id) = target {
                    confirmed.push(id);
                }
                out.counts.unchanged += 1;
                continue;
            }
            Apply::Replace
        } else {
            match meta.dedupe {
                Dedupe::KeepFirst => {
                    out.counts.duplicate += 1;
                    out.problems
                        .push((row.row, duplicate_problem(target, state)));
                    continue;
                }
                Dedupe::KeepLast => Apply::Replace,
                Dedupe::Merge => Apply::Fill,
            }
        };

        // Apply the row's values.
        let mut changed = false;
        if mode == Apply::Replace {
            if state.name != row.name {
                state.name.clone_from(&row.name);
                changed = true;
            }
        } else if state.name.is_empty() {
            state.name.clone_from(&row.name);
            changed = true;
        }
        for (cur, new) in [
            (&mut state.legal_name, &row.legal_name),
            (&mut state.category, &row.category),
            (&mut state.city, &row.city),
            (&mut state.current_product, &row.current_product),
        ] {
            if new.is_some() && *cur != *new {
                changed |= put(mode, cur, new);
            }
        }
        if state.status != row.status {
            changed |= put(mode, &mut state.status, &row.status);
        }
        if state.score != row.score {
            changed |= put(mode, &mut state.score, &row.score);
        }
        let row_portfolio = row.portfolio.clone().map(PortfolioRef::Name);
        if row_portfolio.is_some() && !same_portfolio(&state.portfolio, &row_portfolio, caches) {
            changed |= put(mode, &mut state.portfolio, &row_portfolio);
        }
        // Unique keys move only when no other client holds them.
        for (kind, cur, new) in [
            (KeyKind::Document, &mut state.cpf_cnpj, &row.cpf_cnpj),
            (KeyKind::External, &mut state.external_id, &row.external_id),
        ] {
            let Some(v) = new else { continue };
            if cur.as_deref() == Some(v.as_str()) {
                continue;
            }
            if mode == Apply::Fill && cur.is_some() {
                continue;
            }
            match keys.get(&(kind, v.clone())) {
                Some(owner) if *owner != target => {
                    out.problems
                        .push((row.row, owned_problem(kind, v, *owner, &pending_rows)));
                }
                _ => {
                    *cur = Some(v.clone());
                    keys.insert((kind, v.clone()), target);
                    changed = true;
                }
            }
        }
        for (kind, values) in [(KeyKind::Phone, &row.phones), (KeyKind::Email, &row.emails)] {
            for v in values {
                match keys.get(&(kind, v.clone())) {
                    Some(owner) if *owner == target => {}
                    Some(owner) => {
                        out.problems
                            .push((row.row, owned_problem(kind, v, *owner, &pending_rows)));
                    }
                    None => {
                        keys.insert((kind, v.clone()), target);
                        match target {
                            Target::Pending(_) => match kind {
                                KeyKind::Phone => state.phones.push(v.clone()),
                                _ => state.emails.push(v.clone()),
                            },
                            Target::Stored(_) => new_contacts.push((target, kind, v.clone())),
                        }
                        changed = true;
                    }
                }
            }
        }
        for t in &row.tags {
            if !state.tags.contains(t) {
                state.tags.push(t.clone());
                if matches!(target, Target::Stored(_)) {
                    new_tags.push((target, t.clone()));
                }
                changed = true;
            }
        }
        for (key, value) in &row.custom {
            match state.custom.iter_mut().find(|(k, _)| k == key) {
                Some((_, cur)) if mode == Apply::Fill || cur == value => {}
                Some((_, cur)) => {
                    *cur = value.clone();
                    changed = true;
                    if matches!(target, Target::Stored(_)) {
                        new_custom.push((target, Apply::Replace, key.clone(), value.clone()));
                    }
                }
                None => {
                    state.custom.push((key.clone(), value.clone()));
                    changed = true;
                    if matches!(target, Target::Stored(_)) {
                        new_custom.push((target, mode, key.clone(), value.clone()));
                    }
                }
            }
        }
        if reimport {
            state.source_import_id = Some(meta.import_id);
            state.source_row_hash = Some(row.hash);
            changed = true;
        }
        if changed {
            state.search_text = None;
        }
        if same_import {
            out.counts.duplicate += 1;
            out.problems
                .push((row.row, duplicate_problem(target, state)));
        } else if changed {
            out.counts.updated += 1;
        } else {
            out.counts.unchanged += 1;
        }
        if let Target::Stored(id) = target
            && changed
        {
            touched.insert(id);
        }
    }

    if !confirmed.is_empty() {
        let sql = format!(
            "update clients set source_import_id = $1 from {} where clients.account_id = $2 and clients.id = j.value",
            json_ints(backend, 3)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(meta.import_id)
            .bind(meta.account_id)
            .bind(serde_json::to_string(&confirmed).expect("ints serialize"))
            .execute(&mut *conn)
            .await?;
    }
    out.written = insert_pending(conn, backend, meta, caches, &pending).await?;
    out.written.extend(touched.iter().copied());
    update_stored(
        conn,
        backend,
        meta,
        caches,
        &stored,
        &touched,
        new_contacts,
        new_tags,
        new_custom,
    )
    .await?;
    Ok(out)
}

fn row_keys(row: &Candidate) -> Vec<(KeyKind, String)> {
    let mut k = Vec::with_capacity(2 + row.phones.len() + row.emails.len());
    if let Some(e) = &row.external_id {
        k.push((KeyKind::External, e.clone()));
    }
    if let Some(d) = &row.cpf_cnpj {
        k.push((KeyKind::Document, d.clone()));
    }
    k.extend(row.phones.iter().map(|p| (KeyKind::Phone, p.clone())));
    k.extend(row.emails.iter().map(|e| (KeyKind::Email, e.clone())));
    k
}

fn same_portfolio(a: &Option<PortfolioRef>, b: &Option<PortfolioRef>, caches: &Caches) -> bool {
    let id = |p: &Option<PortfolioRef>| match p {
        Some(PortfolioRef::Id(id)) => Some(*id),
        Some(PortfolioRef::Name(n)) => caches.portfolios.get(n).copied(),
        None => None,
    };
    a == b || (id(a).is_some() && id(a) == id(b))
}

fn duplicate_problem(target: Target, state: &State) -> Problem {
    let of = match target {
        Target::Pending(_) => format!("row {}", state.first_row),
        Target::Stored(id) if state.first_row > 0 => {
            format!("client #{id} (row {})", state.first_row)
        }
        Target::Stored(id) => format!("client #{id}"),
    };
    Problem {
        severity: Severity::Warning,
        column: None,
        value: None,
        code: "duplicate".into(),
        message: format!("same client as {of}"),
    }
}

fn owned_problem(kind: KeyKind, value: &str, owner: Target, pending_rows: &[u64]) -> Problem {
    let who = match owner {
        Target::Stored(id) => format!("client #{id}"),
        Target::Pending(i) => format!("the client of row {}", pending_rows[i]),
    };
    Problem {
        severity: Severity::Warning,
        column: None,
        value: Some(value.to_owned()),
        code: "key_owned_by_other_client".into(),
        message: format!(
            "{} {value} belongs to {who}; not added to this one",
            kind.label()
        ),
    }
}

/// Which stored client owns each key of the batch.
async fn lookup_owners(
    conn: &mut AnyConnection,
    backend: Backend,
    account_id: i64,
    known: Option<&KnownKeys>,
    rows: &[Candidate],
) -> DbResult<HashMap<(KeyKind, String), i64>> {
    let mut phones: Vec<&str> = Vec::new();
    let mut emails: Vec<&str> = Vec::new();
    let mut docs: Vec<&str> = Vec::new();
    let mut exts: Vec<&str> = Vec::new();
    let maybe = |kind: KeyKind, v: &&str| known.is_none_or(|k| k.may_contain(kind, v));
    for r in rows {
        phones.extend(
            r.phones
                .iter()
                .map(String::as_str)
                .filter(|v| maybe(KeyKind::Phone, v)),
        );
        emails.extend(
            r.emails
                .iter()
                .map(String::as_str)
                .filter(|v| maybe(KeyKind::Email, v)),
        );
        docs.extend(
            r.cpf_cnpj
                .as_deref()
                .filter(|v| maybe(KeyKind::Document, v)),
        );
        exts.extend(
            r.external_id
                .as_deref()
                .filter(|v| maybe(KeyKind::External, v)),
        );
    }
    tracing::debug!(
        queried = phones.len() + emails.len() + docs.len() + exts.len(),
        keys = rows.iter().map(|r| row_keys(r).len()).sum::<usize>(),
        "dedupe lookup"
    );
    let mut owners = HashMap::new();
    for (kind, label, values) in [
        (KeyKind::Phone, "phone", &phones),
        (KeyKind::Email, "email", &emails),
    ] {
        if values.is_empty() {
            continue;
        }
        let sql = format!(
            "select c.value, c.client_id from {} cross join contacts c where c.account_id = $1 and c.kind = $2 and c.value = j.value",
            json_texts(backend, 3)
        );
        let found: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(label)
            .bind(serde_json::to_string(values).expect("strings serialize"))
            .fetch_all(&mut *conn)
            .await?;
        owners.extend(found.into_iter().map(|(v, id)| ((kind, v), id)));
    }
    for (kind, column, values) in [
        (KeyKind::Document, "cpf_cnpj", &docs),
        (KeyKind::External, "external_id", &exts),
    ] {
        if values.is_empty() {
            continue;
        }
        let sql = format!(
            "select c.{column}, c.id from {} cross join clients c where c.account_id = $1 and c.{column} = j.value",
            json_texts(backend, 2)
        );
        let found: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(serde_json::to_string(values).expect("strings serialize"))
            .fetch_all(&mut *conn)
            .await?;
        owners.extend(found.into_iter().map(|(v, id)| ((kind, v), id)));
    }
    Ok(owners)
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    id: i64,
    name: String,
    legal_name: Option<String>,
    cpf_cnpj: Option<String>,
    status: String,
    portfolio_id: Option<i64>,
    category: Option<String>,
    score: i64,
    city: Option<String>,
    current_product: Option<String>,
    external_id: Option<String>,
    source_file: Option<String>,
    source_import_id: Option<i64>,
    source_row_hash: Option<i64>,
}

/// Loads the stored clients the batch matched (their row, tags and custom values; contacts
/// are known from the key lookup, and new ones are checked against it).
async fn load_states(
    conn: &mut AnyConnection,
    backend: Backend,
    account_id: i64,
    ids: &[i64],
) -> DbResult<HashMap<i64, State>> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let ids_json = serde_json::to_string(ids).expect("ints serialize");
    let sql = format!(
        "select c.id, c.name, c.legal_name, c.cpf_cnpj, c.status, c.portfolio_id, c.category, c.score, c.city, \
         c.current_product, c.external_id, c.source_file, c.source_import_id, c.source_row_hash \
         from {} cross join clients c where c.id = j.value and c.account_id = $1",
        json_ints(backend, 2)
    );
    let rows: Vec<StoredRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account_id)
        .bind(ids_json.clone())
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        out.insert(
            r.id,
            State {
                name: r.name,
                legal_name: r.legal_name,
                cpf_cnpj: r.cpf_cnpj,
                status: ClientStatus::parse_loose(&r.status),
                portfolio: r.portfolio_id.map(PortfolioRef::Id),
                category: r.category,
                score: Some(r.score),
                city: r.city,
                current_product: r.current_product,
                external_id: r.external_id,
                source_file: r.source_file,
                source_import_id: r.source_import_id,
                source_row_hash: r.source_row_hash,
                ..State::default()
            },
        );
    }
    let sql = format!(
        "select ct.client_id, t.name from {} cross join client_tags ct join tags t on t.id = ct.tag_id where ct.client_id = j.value",
        json_ints(backend, 1)
    );
    let tag_rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(ids_json.clone())
        .fetch_all(&mut *conn)
        .await?;
    for (id, name) in tag_rows {
        if let Some(s) = out.get_mut(&id) {
            s.tags.push(name);
        }
    }
    let sql = format!(
        "select v.client_id, f.key, v.value_text, v.value_number from {} \
         cross join client_field_values v join custom_fields f on f.id = v.field_id where v.client_id = j.value",
        json_ints(backend, 1)
    );
    let value_rows: Vec<(i64, String, Option<String>, Option<f64>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(ids_json)
            .fetch_all(&mut *conn)
            .await?;
    for (id, key, text, number) in value_rows {
        if let Some(s) = out.get_mut(&id) {
            s.custom
                .push((key, crate::crm::custom_fields::StoredValue { text, number }));
        }
    }
    Ok(out)
}

async fn portfolio_id(
    conn: &mut AnyConnection,
    account_id: i64,
    caches: &mut Caches,
    p: &Option<PortfolioRef>,
) -> DbResult<Option<i64>> {
    Ok(match p {
        None => None,
        Some(PortfolioRef::Id(id)) => Some(*id),
        Some(PortfolioRef::Name(name)) => match caches.portfolios.get(name) {
            Some(id) => Some(*id),
            None => {
                let id = portfolios::ensure(conn, account_id, name).await?;
                caches.portfolios.insert(name.clone(), id);
                Some(id)
            }
        },
    })
}

async fn tag_id(
    conn: &mut AnyConnection,
    account_id: i64,
    caches: &mut Caches,
    name: &str,
) -> DbResult<i64> {
    if let Some(id) = caches.tags.get(name) {
        return Ok(*id);
    }
    let id = tags::ensure_tags(conn, account_id, &[name.to_owned()]).await?[0];
    caches.tags.insert(name.to_owned(), id);
    Ok(id)
}

/// Reserves `n` consecutive-or-not client ids.
async fn reserve_ids(conn: &mut AnyConnection, backend: Backend, n: usize) -> DbResult<Vec<i64>> {
    match backend {
        // The transaction holds SQLite's only write lock: nobody else can take these ids.
        Backend::Sqlite => {
            let max: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from clients")
                .fetch_one(conn)
                .await?;
            Ok((1..=n as i64).map(|i| max + i).collect())
        }
        Backend::Postgres => Ok(sqlx::query_scalar(
            "select nextval(pg_get_serial_sequence('clients', 'id')) from generate_series(1, $1::int)",
        )
        .bind(n as i64)
        .fetch_all(conn)
        .await?),
    }
}

const CLIENT_INSERT: &str = "insert into clients (id, account_id, name, legal_name, cpf_cnpj, status, \
     portfolio_id, category, score, city, current_product, search_text, external_id, source_file, \
     source_import_id, source_row_hash, created_by, created_at, updated_at) values ";

async fn insert_pending(
    conn: &mut AnyConnection,
    backend: Backend,
    meta: &BatchMeta<'_>,
    caches: &mut Caches,
    pending: &[State],
) -> DbResult<Vec<i64>> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let ids = reserve_ids(conn, backend, pending.len()).await?;
    let now = now_ms();
    let mut client_rows = Vec::with_capacity(pending.len());
    let mut contact_rows = Vec::new();
    let mut tag_rows = Vec::new();
    let mut value_rows = Vec::new();
    for (s, &id) in pending.iter().zip(&ids) {
        let portfolio = portfolio_id(conn, meta.account_id, caches, &s.portfolio).await?;
        let search = s.search_text.clone().unwrap_or_else(|| {
            build_search_text(
                &s.name,
                s.legal_name.as_deref(),
                s.cpf_cnpj.as_deref(),
                s.phones
                    .iter()
                    .map(|p| ("phone", p.as_str()))
                    .chain(s.emails.iter().map(|e| ("email", e.as_str()))),
            )
        });
        client_rows.push(vec![
            id.into(),
            meta.account_id.into(),
            s.name.clone().into(),
            s.legal_name.clone().into(),
            s.cpf_cnpj.clone().into(),
            s.status.unwrap_or(ClientStatus::Active).as_str().into(),
            portfolio.into(),
            s.category.clone().into(),
            s.score.unwrap_or(0).into(),
            s.city.clone().into(),
            s.current_product.clone().into(),
            search.into(),
            s.external_id.clone().into(),
            s.source_file.clone().into(),
            s.source_import_id.into(),
            s.source_row_hash.into(),
            meta.created_by.into(),
            now.into(),
            now.into(),
        ]);
        for (kind, values) in [("phone", &s.phones), ("email", &s.emails)] {
            for (i, v) in values.iter().enumerate() {
                contact_rows.push(contact_row(meta.account_id, id, kind, v, i == 0, now));
            }
        }
        for t in &s.tags {
            let tid = tag_id(conn, meta.account_id, caches, t).await?;
            tag_rows.push(vec![id.into(), tid.into()]);
        }
        for (key, v) in &s.custom {
            if let Some(fid) = caches.field_ids.get(key) {
                value_rows.push(vec![
                    id.into(),
                    (*fid).into(),
                    v.text.clone().into(),
                    v.number.into(),
                ]);
            }
        }
    }
    insert_rows(conn, backend, CLIENT_INSERT, "", client_rows).await?;
    insert_contacts(conn, backend, contact_rows).await?;
    insert_rows(
        conn,
        backend,
        "insert into client_tags (client_id, tag_id) values ",
        " on conflict do nothing",
        tag_rows,
    )
    .await?;
    insert_rows(
        conn,
        backend,
        "insert into client_field_values (client_id, field_id, value_text, value_number) values ",
        "",
        value_rows,
    )
    .await?;
    Ok(ids)
}

fn contact_row(
    account_id: i64,
    client_id: i64,
    kind: &str,
    value: &str,
    preferred: bool,
    now: i64,
) -> Vec<SqlValue> {
    vec![
        account_id.into(),
        client_id.into(),
        kind.into(),
        value.into(),
        i64::from(preferred).into(),
        now.into(),
        now.into(),
    ]
}

async fn insert_contacts(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: Vec<Vec<SqlValue>>,
) -> DbResult<()> {
    insert_rows(
        conn,
        backend,
        "insert into contacts (account_id, client_id, kind, value, preferred, created_at, updated_at) values ",
        "",
        rows,
    )
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn update_stored(
    conn: &mut AnyConnection,
    backend: Backend,
    meta: &BatchMeta<'_>,
    caches: &mut Caches,
    stored: &HashMap<i64, State>,
    touched: &HashSet<i64>,
    new_contacts: Vec<(Target, KeyKind, String)>,
    new_tags: Vec<(Target, String)>,
    new_custom: Vec<(
        Target,
        Apply,
        String,
        crate::crm::custom_fields::StoredValue,
    )>,
) -> DbResult<()> {
    if touched.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    // Clients that get a contact of a kind they have none of get it as preferred.
    let mut has_preferred: HashSet<(i64, String)> = HashSet::new();
    if !new_contacts.is_empty() {
        let ids: Vec<i64> = touched.iter().copied().collect();
        let sql = format!(
            "select c.client_id, c.kind from {} cross join contacts c where c.client_id = j.value and c.preferred = 1",
            json_ints(backend, 1)
        );
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(&ids).expect("ints serialize"))
            .fetch_all(&mut *conn)
            .await?;
        has_preferred.extend(rows);
    }
    let mut contact_rows = Vec::new();
    for (target, kind, value) in new_contacts {
        let Target::Stored(id) = target else { continue };
        let kind = if kind == KeyKind::Phone {
            "phone"
        } else {
            "email"
        };
        let preferred = has_preferred.insert((id, kind.to_owned()));
        contact_rows.push(contact_row(
            meta.account_id,
            id,
            kind,
            &value,
            preferred,
            now,
        ));
    }
    insert_contacts(conn, backend, contact_rows).await?;
    let mut tag_rows = Vec::new();
    for (target, name) in new_tags {
        let Target::Stored(id) = target else { continue };
        let tid = tag_id(conn, meta.account_id, caches, &name).await?;
        tag_rows.push(vec![id.into(), tid.into()]);
    }
    insert_rows(
        conn,
        backend,
        "insert into client_tags (client_id, tag_id) values ",
        " on conflict do nothing",
        tag_rows,
    )
    .await?;
    for (target, mode, key, v) in new_custom {
        let (Target::Stored(id), Some(fid)) = (target, caches.field_ids.get(&key)) else {
            continue;
        };
        let conflict = if mode == Apply::Fill {
            "do nothing"
        } else {
            "do update set value_text = excluded.value_text, value_number = excluded.value_number"
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "insert into client_field_values (client_id, field_id, value_text, value_number) values ($1, $2, $3, $4) \
             on conflict (client_id, field_id) {conflict}"
        )))
        .bind(id)
        .bind(*fid)
        .bind(v.text.clone())
        .bind(v.number)
        .execute(&mut *conn)
        .await?;
    }
    let mut ids: Vec<i64> = touched.iter().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let s = &stored[&id];
        let portfolio = portfolio_id(conn, meta.account_id, caches, &s.portfolio).await?;
        sqlx::query(
            "update clients set name = $1, legal_name = $2, cpf_cnpj = $3, status = $4, portfolio_id = $5, \
             category = $6, score = $7, city = $8, current_product = $9, external_id = $10, \
             source_file = $11, source_import_id = $12, source_row_hash = $13, updated_at = $14 \
             where id = $15 and account_id = $16",
        )
        .bind(s.name.clone())
        .bind(s.legal_name.clone())
        .bind(s.cpf_cnpj.clone())
        .bind(s.status.unwrap_or(ClientStatus::Active).as_str())
        .bind(portfolio)
        .bind(s.category.clone())
        .bind(s.score.unwrap_or(0))
        .bind(s.city.clone())
        .bind(s.current_product.clone())
        .bind(s.external_id.clone())
        .bind(s.source_file.clone())
        .bind(s.source_import_id)
        .bind(s.source_row_hash)
        .bind(now)
        .bind(id)
        .bind(meta.account_id)
        .execute(&mut *conn)
        .await?;
        refresh_search_text(conn, id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_never_forget_a_key_and_rarely_claim_an_unknown_one() {
        let mut known = KnownKeys::with_capacity(100_000);
        for i in 0..100_000 {
            known.insert(KeyKind::Phone, &format!("+55119{i:08}"));
        }
        for i in 0..100_000 {
            assert!(known.may_contain(KeyKind::Phone, &format!("+55119{i:08}")));
        }
        // The same value under another kind is another key.
        let false_positives = (0..100_000)
            .filter(|i| known.may_contain(KeyKind::Email, &format!("+55119{i:08}")))
            .count()
            + (100_000..200_000)
                .filter(|i| known.may_contain(KeyKind::Phone, &format!("+55119{i:08}")))
                .count();
        assert!(
            false_positives < 200,
            "{false_positives} false positives in 200,000 (expected ~0.015%)"
        );
    }

    #[test]
    fn known_keys_memory_is_capped() {
        let known = KnownKeys::with_capacity(u64::MAX / 16);
        assert_eq!(known.bits.len() * 8, 32 << 20);
    }
}
