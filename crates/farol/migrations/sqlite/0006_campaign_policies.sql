-- Send-time policies (issue 6): suppression lists, frequency caps, business hours per account,
-- recurring campaigns, Smartico sync of segmentation runs. See docs/campaigns.md and
-- docs/segmentation.md.

-- Who must never receive a message, whatever the audience says. `key_kind` names what `value`
-- is: a normalized e-mail, an E.164 phone, an unmasked CPF/CNPJ, or a client id.
create table suppressions (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    key_kind text not null check (key_kind in ('email', 'phone', 'cpf_cnpj', 'client_id')),
    value text not null,
    kind text not null check (kind in ('self_exclusion', 'hard_bounce', 'complaint', 'do_not_contact')),
    -- null: every channel.
    channel text check (channel in ('email', 'whatsapp', 'sms')),
    reason text,
    -- api, import, cli, bounce...
    source text not null,
    created_by integer,
    created_at integer not null
);
create unique index uq_suppressions__value on suppressions(account_id, key_kind, value, kind, coalesce(channel, ''));
create index suppressions_lookup on suppressions(account_id, value);

-- One row per send that counts towards the frequency cap (a reservation taken before the send;
-- removed when the send does not happen).
create table frequency_sends (
    recipient_id integer primary key,
    account_id integer not null,
    client_id integer not null,
    at integer not null
);
create index frequency_sends_client on frequency_sends(account_id, client_id, at);

-- Per-account campaign settings; null columns fall back to the configuration.
create table campaign_settings (
    account_id integer primary key references accounts(id) on delete cascade,
    business_hours text,
    time_zone text,
    frequency_cap integer,
    updated_at integer not null
);

-- Per-campaign frequency cap (null: the account's or the configuration's; 0: off).
alter table campaigns add column frequency_cap integer;
-- Recurring campaigns: the parent keeps the cron; each occurrence is a child campaign.
alter table campaigns add column cron text;
alter table campaigns add column cron_time_zone text;
alter table campaigns add column next_run_at integer;
alter table campaigns add column skip_previous integer not null default 0;
alter table campaigns add column parent_id integer;
create index campaigns_next_run on campaigns(next_run_at);
create index campaigns_parent on campaigns(parent_id, id);

-- Smartico sync of segmentation runs: one row per push (the diff against the last run pushed
-- successfully), with counts and the events Smartico rejected.
create table smartico_syncs (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    run_id integer not null references segment_runs(id) on delete cascade,
    -- The run the diff was computed against (null: first push, every member entered).
    base_run_id integer,
    status text not null check (status in ('running', 'completed', 'failed')),
    users_entered integer not null default 0,
    users_left integer not null default 0,
    events integer not null default 0,
    accepted integer not null default 0,
    duplicates integer not null default 0,
    failed integer not null default 0,
    users_not_found integer not null default 0,
    requests integer not null default 0,
    -- JSON: up to 1,000 rejected events [{eid, user_ext_id, code, message}].
    failures text,
    error text,
    created_by integer,
    started_at integer not null,
    finished_at integer
);
create index smartico_syncs_run on smartico_syncs(account_id, run_id, id);
