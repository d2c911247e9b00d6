-- Segmentation runs: versioned (parameters, report, data window), one active per account;
-- their clusters (profile, names, signature for cross-run matching) and members — the
-- "final union table": one row per player with cluster, features and CRM client.

create table segment_runs (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    status text not null check (status in ('running', 'completed', 'failed')),
    -- JSON: farol_segment::RunParams plus the sources read.
    params text not null,
    -- JSON: farol_segment::RunReport (quality, cleaning counts, timings, window).
    report text,
    error text,
    active integer not null default 0,
    users integer not null default 0,
    clusters integer not null default 0,
    import_id integer,
    window_start integer,
    window_end integer,
    created_by integer,
    created_at integer not null,
    finished_at integer
);
create index segment_runs_account on segment_runs(account_id, id);

create table segment_clusters (
    id integer primary key,
    run_id integer not null references segment_runs(id) on delete cascade,
    account_id integer not null,
    label integer not null,
    name_pt text not null,
    name_en text not null,
    user_named integer not null default 0,
    size integer not null,
    share real not null,
    -- JSON: farol_segment::ClusterProfile.
    profile text not null
);
create unique index uq_segment_clusters__label on segment_clusters(run_id, label);

create table segment_members (
    run_id integer not null references segment_runs(id) on delete cascade,
    account_id integer not null,
    user_ext_id text not null,
    client_id integer,
    label integer not null,
    -- JSON: farol_segment::UserFeatures.
    features text not null,
    primary key (run_id, user_ext_id)
);
create index segment_members_label on segment_members(run_id, label, user_ext_id);
create index segment_members_client on segment_members(client_id, run_id);
