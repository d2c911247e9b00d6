-- Operator alerts: a channel's circuit breaker opened (sends through it wait) or closed again
-- (docs/channels.md). One unresolved `breaker_open` row per channel is the outage in progress.
create table alerts (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    -- null: the configuration's SMTP ([smtp]).
    channel_account_id integer,
    provider text not null,
    kind text not null check (kind in ('breaker_open', 'breaker_closed')),
    -- The last error before it opened, or what closed it.
    reason text not null,
    created_at integer not null,
    -- breaker_open: when the outage ended; breaker_closed: created_at.
    resolved_at integer,
    -- When [alerts] webhook_url accepted it.
    notified_at integer
);
create index alerts_account on alerts(account_id, id);
create index alerts_unresolved on alerts(account_id, channel_account_id) where resolved_at is null;
