-- Smartico as a campaign channel (an event per client, by its external id), and per channel
-- account pacing: the sends of each account per day (its `rate.per_day`). See
-- docs/campaigns.md.

alter table templates drop constraint templates_channel_check;
alter table templates add constraint templates_channel_check check (channel in ('email', 'whatsapp', 'sms', 'webhook', 'smartico'));
-- Smartico: JSON {type: client_action | update_profile, action?}; the payload template is
-- `body`.
alter table templates add column smartico_event text;

alter table campaigns drop constraint campaigns_channel_check;
alter table campaigns add constraint campaigns_channel_check check (channel in ('email', 'whatsapp', 'sms', 'webhook', 'smartico', 'auto'));

alter table channel_accounts drop constraint channel_accounts_channel_check;
alter table channel_accounts add constraint channel_accounts_channel_check check (channel in ('email', 'whatsapp', 'sms', 'webhook', 'smartico'));
alter table channel_accounts drop constraint channel_accounts_provider_check;
alter table channel_accounts add constraint channel_accounts_provider_check check (provider in ('smtp', 'sendgrid', 'ses', 'meta', 'wppconnect', 'twilio', 'webhook', 'smartico'));

-- Sends handed to each channel account's provider per day (`day`: YYYY-MM-DD in the
-- tenant's time zone), for the account's `rate.per_day`. Counted before each send, so the
-- cap holds across restarts and across workers.
create table channel_account_day_sends (
    channel_account_id bigint not null,
    day text not null,
    sends bigint not null,
    primary key (channel_account_id, day)
);
