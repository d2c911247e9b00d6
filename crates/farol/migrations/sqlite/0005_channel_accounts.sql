-- no-transaction
-- Channel accounts (provider credentials, encrypted), campaigns over every channel and `auto`,
-- WhatsApp provider templates, delivery statuses from provider webhooks (docs/channels.md).
--
-- SQLite cannot change a CHECK constraint in place: `templates` and `campaigns` are rebuilt
-- (the documented 12-step procedure), with foreign keys off so that dropping the old tables
-- does not cascade to campaign_recipients. Hence no-transaction, with our own transaction.
pragma foreign_keys = off;
begin immediate;

create table channel_accounts (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms', 'webhook')),
    provider text not null check (provider in ('smtp', 'sendgrid', 'ses', 'meta', 'wppconnect', 'twilio', 'webhook')),
    -- JSON: non-secret settings (per provider, see docs/channels.md).
    settings text not null default '{}',
    -- JSON: {field: "v1:<key id>:<ciphertext>"}, each bound to channel_account:<id>:<field>.
    secrets text not null default '{}',
    is_default integer not null default 0,
    enabled integer not null default 1,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_channel_accounts__name on channel_accounts(account_id, name);
create index channel_accounts_account on channel_accounts(account_id, channel, id);

create table templates_new (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms', 'webhook')),
    subject text,
    html text,
    text text,
    body text,
    -- WhatsApp: JSON {name, language, body_parameters[], header_parameters[]} of a template
    -- approved at Meta (parameters are Farol templates), sent outside the 24-hour window.
    provider_template text,
    created_at integer not null,
    updated_at integer not null
);
insert into templates_new (id, account_id, name, channel, subject, html, text, body, created_at, updated_at)
    select id, account_id, name, channel, subject, html, text, body, created_at, updated_at from templates;
drop table templates;
alter table templates_new rename to templates;
create unique index uq_templates__name on templates(account_id, name);

create table campaigns_new (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms', 'webhook', 'auto')),
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
    -- the configuration's SMTP account for e-mail).
    channel_account_id integer,
    -- auto: JSON {channel: template id} (template_id is the first channel's).
    channel_templates text
);
insert into campaigns_new (id, account_id, name, channel, template_id, audience_id, status, throttle_per_sec,
        scheduled_at, launched_at, completed_at, created_by, created_at, updated_at)
    select id, account_id, name, channel, template_id, audience_id, status, throttle_per_sec,
        scheduled_at, launched_at, completed_at, created_by, created_at, updated_at from campaigns;
drop table campaigns;
alter table campaigns_new rename to campaigns;
create index campaigns_account on campaigns(account_id, id);
create index campaigns_status on campaigns(status, id);

-- The contact's last message to us: the WhatsApp 24-hour window.
alter table contacts add column last_inbound_at integer;

alter table campaign_recipients add column channel_account_id integer;
-- delivered | read | failed | bounced (latest provider status), and when each happened.
alter table campaign_recipients add column delivery_status text;
alter table campaign_recipients add column delivered_at integer;
alter table campaign_recipients add column read_at integer;
alter table campaign_recipients add column bounced_at integer;
alter table campaign_recipients add column replied_at integer;
alter table campaign_recipients add column opted_out_at integer;
create index campaign_recipients_provider_message on campaign_recipients(provider_message_id);

-- Provider webhook events already applied (retries of the same event change nothing).
create table webhook_events (
    channel_account_id integer not null,
    event_key text not null,
    created_at integer not null,
    primary key (channel_account_id, event_key)
);

pragma foreign_key_check;
commit;
pragma foreign_keys = on;
