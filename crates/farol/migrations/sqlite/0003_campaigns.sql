-- Campaigns: message templates, audiences (saved filters or static lists), campaigns and their
-- recipients. Each recipient row is the durable job of one send (see docs/campaigns.md).

-- A hard bounce or an invalid number marks the contact; sends skip it from then on.
alter table contacts add column invalid_at integer;
alter table contacts add column invalid_reason text;

create table templates (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms')),
    -- E-mail: subject + html and/or text. WhatsApp/SMS: body.
    subject text,
    html text,
    text text,
    body text,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_templates__name on templates(account_id, name);

create table audiences (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    kind text not null check (kind in ('filter', 'static')),
    -- JSON: the filter (kind = filter) or {"client_ids": [...]} (kind = static).
    definition text not null default '{}',
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_audiences__name on audiences(account_id, name);

create table campaigns (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    channel text not null check (channel in ('email', 'whatsapp', 'sms')),
    template_id integer not null references templates(id),
    -- null: every client of the account.
    audience_id integer references audiences(id),
    -- draft → scheduled | running → paused → running → completed | cancelled
    status text not null check (status in ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
    -- Messages per second; null: unthrottled.
    throttle_per_sec real,
    scheduled_at integer,
    launched_at integer,
    completed_at integer,
    created_by integer,
    created_at integer not null,
    updated_at integer not null
);
create index campaigns_account on campaigns(account_id, id);
create index campaigns_status on campaigns(status, id);

create table campaign_recipients (
    id integer primary key,
    campaign_id integer not null references campaigns(id) on delete cascade,
    account_id integer not null,
    client_id integer not null,
    channel text not null,
    -- The address resolved at launch (e-mail or E.164 phone); null when the client had none.
    address text,
    status text not null check (status in ('queued', 'sending', 'sent', 'failed', 'skipped')),
    attempts integer not null default 0,
    next_attempt_at integer not null,
    lease_owner text,
    lease_until integer,
    provider_message_id text,
    error text,
    -- campaign:<id>:client:<id>, given to the provider (SMTP Message-ID, SendGrid custom args).
    idempotency_key text not null,
    unsubscribe_token text not null,
    sent_at integer,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_campaign_recipients__client_id on campaign_recipients(campaign_id, client_id);
create unique index uq_campaign_recipients__unsubscribe_token on campaign_recipients(unsubscribe_token);
-- The claim reads queued rows in (next_attempt_at, id) order: id is in the index so the first
-- rows come straight from it (every row of a launch has the same next_attempt_at).
create index campaign_recipients_due on campaign_recipients(campaign_id, status, next_attempt_at, id);
create index campaign_recipients_client on campaign_recipients(client_id);
