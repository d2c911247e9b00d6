-- no-transaction
-- Smartico as a campaign channel (an event per client, by its external id), and per channel
-- account pacing: the sends of each account per day (its `rate.per_day`). See
-- docs/campaigns.md.
--
-- SQLite cannot change a CHECK constraint in place: `templates`, `campaigns` and
-- `channel_accounts` are rebuilt (the documented 12-step procedure, as in 0005), with foreign
-- keys off so that dropping the old tables does not cascade to campaign_recipients.
pragma foreign_keys = off;
begin immediate;

create table templates_new (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms', 'webhook', 'smartico')),
    subject text,
    html text,
    text text,
    body text,
    -- WhatsApp: JSON {name, language, body_parameters[], header_parameters[]} of a template
    -- approved at Meta (parameters are Farol templates), sent outside the 24-hour window.
    provider_template text,
    created_at integer not null,
    updated_at integer not null,
    -- Smartico: JSON {type: client_action | update_profile, action?}; the payload template
    -- is `body`.
    smartico_event text
);
insert into templates_new (id, account_id, name, channel, subject, html, text, body, provider_template, created_at, updated_at)
    select id, account_id, name, channel, subject, html, text, body, provider_template, created_at, updated_at from templates;
drop table templates;
alter table templates_new rename to templates;
create unique index uq_templates__name on templates(account_id, name);

create table campaigns_new (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms', 'webhook', 'smartico', 'auto')),
    template_id integer not null references templates(id),
    audience_id integer references audiences(id),
    status text not null check (status in ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
    throttle_per_sec real,
    scheduled_at integer,
    launched_at integer,
    completed_at integer,
    created_by integer,
    created_at integer not null,
    updated_at integer not null,
    -- The channel account to send through (null: the account's default for the channel, else
    -- the configuration's SMTP account for e-mail, or its Smartico label).
    channel_account_id integer,
    -- auto: JSON {channel: template id} (template_id is the first channel's).
    channel_templates text,
    -- Per-campaign frequency cap (null: the account's or the configuration's; 0: off).
    frequency_cap integer,
    -- Recurring campaigns: the parent keeps the cron; each occurrence is a child campaign.
    cron text,
    cron_time_zone text,
    next_run_at integer,
    skip_previous integer not null default 0,
    parent_id integer
);
insert into campaigns_new (id, account_id, name, channel, template_id, audience_id, status, throttle_per_sec,
        scheduled_at, launched_at, completed_at, created_by, created_at, updated_at, channel_account_id,
        channel_templates, frequency_cap, cron, cron_time_zone, next_run_at, skip_previous, parent_id)
    select id, account_id, name, channel, template_id, audience_id, status, throttle_per_sec,
        scheduled_at, launched_at, completed_at, created_by, created_at, updated_at, channel_account_id,
        channel_templates, frequency_cap, cron, cron_time_zone, next_run_at, skip_previous, parent_id from campaigns;
drop table campaigns;
alter table campaigns_new rename to campaigns;
create index campaigns_account on campaigns(account_id, id);
create index campaigns_status on campaigns(status, id);
create index campaigns_next_run on campaigns(next_run_at);
create index campaigns_parent on campaigns(parent_id, id);

create table channel_accounts_new (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms', 'webhook', 'smartico')),
    provider text not null check (provider in ('smtp', 'sendgrid', 'ses', 'meta', 'wppconnect', 'twilio', 'webhook', 'smartico')),
    -- JSON: non-secret settings (per provider, see docs/channels.md).
    settings text not null default '{}',
    -- JSON: {field: "v1:<key id>:<ciphertext>"}, each bound to channel_account:<id>:<field>.
    secrets text not null default '{}',
    is_default integer not null default 0,
    enabled integer not null default 1,
    created_at integer not null,
    updated_at integer not null
);
insert into channel_accounts_new (id, account_id, name, channel, provider, settings, secrets, is_default, enabled, created_at, updated_at)
    select id, account_id, name, channel, provider, settings, secrets, is_default, enabled, created_at, updated_at from channel_accounts;
drop table channel_accounts;
alter table channel_accounts_new rename to channel_accounts;
create unique index uq_channel_accounts__name on channel_accounts(account_id, name);
create index channel_accounts_account on channel_accounts(account_id, channel, id);

-- Sends handed to each channel account's provider per day (`day`: YYYY-MM-DD in the
-- tenant's time zone), for the account's `rate.per_day`. Counted before each send, so the
-- cap holds across restarts and across workers.
create table channel_account_day_sends (
    channel_account_id integer not null,
    day text not null,
    sends integer not null,
    primary key (channel_account_id, day)
);

pragma foreign_key_check;
commit;
pragma foreign_keys = on;
