-- Imports: jobs that bring spreadsheets in, their files, their problems, saved mappings,
-- and where every client came from (for incremental re-imports).

alter table clients add column external_id text;
alter table clients add column source_file text;
alter table clients add column source_import_id integer;
-- Hash of the normalized row a client was last imported from: a re-import of an unchanged row
-- is recognized without comparing every column.
alter table clients add column source_row_hash integer;
create unique index uq_clients__external_id on clients(account_id, external_id) where external_id is not null;

create table imports (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    created_by integer,
    -- uploading → queued → running → completed | failed | cancelled
    status text not null check (status in ('uploading', 'queued', 'running', 'completed', 'failed', 'cancelled')),
    dedupe text not null check (dedupe in ('keep-first', 'keep-last', 'merge')),
    -- JSON: mapping overrides, default portfolio, sheet, delimiter, encoding.
    options text not null default '{}',
    rows_read integer not null default 0,
    rows_imported integer not null default 0,
    rows_updated integer not null default 0,
    rows_unchanged integer not null default 0,
    rows_invalid integer not null default 0,
    rows_duplicate integer not null default 0,
    warnings integer not null default 0,
    -- JSON object: reason code → count.
    reasons text not null default '{}',
    -- Resume point: file position and records of that file consumed by committed batches.
    checkpoint_file integer not null default 0,
    checkpoint_rows integer not null default 0,
    progress_done integer not null default 0,
    progress_total integer,
    cancel_requested integer not null default 0,
    error text,
    lease_owner text,
    lease_until integer,
    attempts integer not null default 0,
    started_at integer,
    finished_at integer,
    created_at integer not null,
    updated_at integer not null
);
create index imports_account on imports(account_id, id);
create index imports_runnable on imports(status, lease_until);

create table import_files (
    import_id integer not null references imports(id) on delete cascade,
    position integer not null,
    name text not null,
    -- Where the bytes are: an upload under the data directory, or a local path (CLI).
    path text not null,
    -- Expected size for uploads (null: a local file), bytes received so far.
    size integer,
    received integer not null default 0,
    sha256 text,
    format text,
    primary key (import_id, position)
);

create table import_issues (
    id integer primary key,
    import_id integer not null references imports(id) on delete cascade,
    severity text not null check (severity in ('error', 'warning')),
    file text not null,
    row_number integer not null,
    column_name text,
    value text,
    code text not null,
    message text not null
);
create index import_issues_import on import_issues(import_id, id);

create table import_presets (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    mapping text not null,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_import_presets__name on import_presets(account_id, name);
