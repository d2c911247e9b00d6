-- Foundation schema: tenants, users and sessions, the CRM core, timeline and audit log.
-- Conventions shared with the PostgreSQL schema (one set of queries serves both):
-- ids are 64-bit integers, times are Unix epoch milliseconds, flags are 0/1 integers,
-- JSON documents are text. Every row carries account_id; every query filters on it.

create table accounts (
    id integer primary key,
    slug text not null unique,
    name text not null,
    created_at integer not null
);

create table server_secrets (
    name text primary key,
    value text not null,
    created_at integer not null
);

create table users (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    email text not null,
    name text not null,
    password_hash text not null,
    role text not null check (role in ('admin', 'manager', 'agent', 'viewer')),
    active integer not null default 1,
    last_login_at integer,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_users__email on users(email);
create index users_account on users(account_id, id);

create table auth_sessions (
    id text primary key,
    user_id integer not null references users(id) on delete cascade,
    account_id integer not null,
    created_at integer not null,
    expires_at integer not null,
    revoked_at integer
);
create index auth_sessions_user on auth_sessions(user_id);

create table refresh_tokens (
    token_hash text primary key,
    session_id text not null references auth_sessions(id) on delete cascade,
    expires_at integer not null,
    used_at integer,
    created_at integer not null
);
create index refresh_tokens_session on refresh_tokens(session_id);

create table portfolios (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    description text,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_portfolios__name on portfolios(account_id, name);

create table clients (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    legal_name text,
    cpf_cnpj text,
    status text not null,
    portfolio_id integer references portfolios(id) on delete set null,
    category text,
    score integer not null default 0,
    city text,
    current_product text,
    search_text text not null default '',
    created_by integer,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_clients__cpf_cnpj on clients(account_id, cpf_cnpj) where cpf_cnpj is not null;
create index clients_account_id on clients(account_id, id);
create index clients_status on clients(account_id, status, id);
create index clients_portfolio on clients(account_id, portfolio_id, id);
create index clients_created on clients(account_id, created_at, id);
create index clients_updated on clients(account_id, updated_at, id);
create index clients_name on clients(account_id, name, id);
create index clients_score on clients(account_id, score, id);

-- Full-text search over names, legal names, e-mails, phones and documents. The text is
-- tokenized by Farol (farol_normalize::search_tokens) so SQLite and PostgreSQL see the same
-- tokens; FTS5 keeps an index over it ("external content": no second copy of the text).
create virtual table clients_fts using fts5(
    search_text,
    content = 'clients',
    content_rowid = 'id',
    tokenize = 'unicode61'
);
create trigger clients_fts_insert after insert on clients begin
    insert into clients_fts(rowid, search_text) values (new.id, new.search_text);
end;
create trigger clients_fts_delete after delete on clients begin
    insert into clients_fts(clients_fts, rowid, search_text) values ('delete', old.id, old.search_text);
end;
create trigger clients_fts_update after update of search_text on clients begin
    insert into clients_fts(clients_fts, rowid, search_text) values ('delete', old.id, old.search_text);
    insert into clients_fts(rowid, search_text) values (new.id, new.search_text);
end;

create table contacts (
    id integer primary key,
    account_id integer not null,
    client_id integer not null references clients(id) on delete cascade,
    kind text not null check (kind in ('phone', 'email')),
    value text not null,
    preferred integer not null default 0,
    verified integer not null default 0,
    opted_out integer not null default 0,
    last_contacted_at integer,
    created_at integer not null,
    updated_at integer not null
);
-- A phone or an e-mail identifies one client within an account: this index is both the
-- lookup by phone/e-mail and the guard that makes concurrent imports race-free.
create unique index uq_contacts__value on contacts(account_id, kind, value);
create index contacts_client on contacts(client_id, id);

create table tags (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    name text not null,
    color text,
    created_at integer not null
);
create unique index uq_tags__name on tags(account_id, name);

create table client_tags (
    client_id integer not null references clients(id) on delete cascade,
    tag_id integer not null references tags(id) on delete cascade,
    primary key (client_id, tag_id)
);
create index client_tags_tag on client_tags(tag_id, client_id);

create table custom_fields (
    id integer primary key,
    account_id integer not null references accounts(id) on delete cascade,
    key text not null,
    label text not null,
    field_type text not null check (field_type in ('text', 'number', 'select', 'date', 'boolean')),
    options text,
    required integer not null default 0,
    visible integer not null default 1,
    position integer not null default 0,
    created_at integer not null,
    updated_at integer not null
);
create unique index uq_custom_fields__key on custom_fields(account_id, key);

-- Typed values: exactly one of the value columns is set, the one of the field's type
-- (dates as YYYY-MM-DD text, booleans as 0/1).
create table client_field_values (
    client_id integer not null references clients(id) on delete cascade,
    field_id integer not null references custom_fields(id) on delete cascade,
    value_text text,
    value_number real,
    primary key (client_id, field_id)
);
create index client_field_values_text on client_field_values(field_id, value_text);
create index client_field_values_number on client_field_values(field_id, value_number);

create table timeline_items (
    id integer primary key,
    account_id integer not null,
    client_id integer not null references clients(id) on delete cascade,
    kind text not null,
    origin text not null check (origin in ('user', 'system')),
    text text not null default '',
    metadata text not null default '{}',
    author_id integer,
    created_at integer not null
);
create index timeline_client on timeline_items(client_id, id);

create table audit_log (
    id integer primary key,
    account_id integer not null,
    actor_user_id integer,
    actor text not null,
    action text not null,
    entity_type text not null,
    entity_id text,
    before text,
    after text,
    created_at integer not null
);
create index audit_account on audit_log(account_id, id);
create index audit_entity on audit_log(account_id, entity_type, entity_id, id);
create trigger audit_log_no_update before update on audit_log begin
    select raise(abort, 'audit_log is append-only');
end;
create trigger audit_log_no_delete before delete on audit_log begin
    select raise(abort, 'audit_log is append-only');
end;

-- A fresh installation has one account; CLI commands act on it unless told otherwise.
insert into accounts (slug, name, created_at)
values ('default', 'Default', cast(strftime('%s', 'now') as integer) * 1000);
