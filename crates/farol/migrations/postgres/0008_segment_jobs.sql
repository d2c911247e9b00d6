-- Segmentation runs become durable jobs: a run is queued (status running, no lease owner),
-- claimed by a worker under a lease it renews while it works, and taken over by another
-- worker when the lease expires (the process running it died). See docs/segmentation.md.
alter table segment_runs add column lease_owner text;
alter table segment_runs add column lease_until bigint;
alter table segment_runs add column attempts bigint not null default 0;
create index segment_runs_runnable on segment_runs(status, lease_until);
