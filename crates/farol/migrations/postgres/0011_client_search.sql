-- Full-text search moves from an index on `clients` to its own table, `client_search`, kept in
-- step with `clients.search_text` by triggers. Why (docs/benchmarks.md, "Where PostgreSQL's time
-- goes"): GIN maintenance is two thirds of the database's work in a bulk import and runs in the
-- inserting backend. With the index on its own table, a bulk import can defer it for its batches
-- (transaction setting `farol.search_deferred = on`) and feed the search table from a second
-- connection, so both cores work; every other write keeps the index current in the same
-- transaction, through these triggers.

create table client_search (
    client_id bigint primary key,
    account_id bigint not null,
    search_text text not null
);
-- The text is tokenized by Farol (farol_normalize::search_tokens) so both databases see the
-- same tokens; the 'simple' configuration keeps them as they are.
create index client_search_text on client_search using gin (to_tsvector('simple', search_text));

insert into client_search (client_id, account_id, search_text)
select id, account_id, search_text from clients;
drop index clients_search;

-- New rows: one set-based insert per statement (a multi-row insert or COPY of 20,000 clients
-- feeds the search table in one statement).
create function farol_client_search_insert() returns trigger language plpgsql as $$
begin
    if current_setting('farol.search_deferred', true) = 'on' then
        return null;
    end if;
    insert into client_search (client_id, account_id, search_text)
    select id, account_id, search_text from farol_new_clients
    on conflict (client_id) do update set search_text = excluded.search_text;
    return null;
end
$$;
create trigger clients_search_insert after insert on clients
    referencing new table as farol_new_clients
    for each statement execute function farol_client_search_insert();

-- Changed search text: per row, and only when the text changed.
create function farol_client_search_update() returns trigger language plpgsql as $$
begin
    if current_setting('farol.search_deferred', true) = 'on' then
        return null;
    end if;
    insert into client_search (client_id, account_id, search_text)
    values (new.id, new.account_id, new.search_text)
    on conflict (client_id) do update set search_text = excluded.search_text;
    return null;
end
$$;
create trigger clients_search_update after update of search_text on clients
    for each row when (old.search_text is distinct from new.search_text)
    execute function farol_client_search_update();

-- Deleted clients leave the search table (deletes are never deferred).
create function farol_client_search_delete() returns trigger language plpgsql as $$
begin
    delete from client_search s using farol_old_clients o where s.client_id = o.id;
    return null;
end
$$;
create trigger clients_search_delete after delete on clients
    referencing old table as farol_old_clients
    for each statement execute function farol_client_search_delete();
