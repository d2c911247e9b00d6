-- RabbitMQ send queue (campaign.queue = "rabbitmq"): when a due recipient was last published
-- to the broker (epoch ms). Null: not published since it became due (launch, retry, release).
-- The database row stays the source of truth; this only keeps publishers from publishing the
-- same due row over and over (see docs/campaigns.md, "RabbitMQ queue").
alter table campaign_recipients add column dispatched_at integer;
