//! The first send-time check of a claimed batch: the recipients' contacts (opt-out, invalid)
//! read in one query, so a contact that may not be written to is skipped before it waits for
//! a throttle slot. The last check, right before each send (contact, suppression lists, the
//! WhatsApp window), is the worker's own.

use std::collections::HashMap;

use crate::db::SqlBuilder;

/// A contact's `opted_out` and `invalid_at`.
pub type ContactState = (i64, Option<i64>);

/// (client, kind, value) → (account, state).
pub type Contacts = HashMap<(i64, String, String), (i64, ContactState)>;

/// The contacts of `client_ids` (every kind), for suppression checks.
pub async fn contacts_of(
    conn: &mut sqlx::AnyConnection,
    client_ids: &[i64],
) -> anyhow::Result<Contacts> {
    if client_ids.is_empty() {
        return Ok(HashMap::new());
    }
    // By client only: the (account, kind, value) index would make SQLite scan every e-mail
    // contact of the account.
    let mut q = SqlBuilder::new(
        "select client_id, kind, value, account_id, opted_out, invalid_at from contacts where client_id in ",
    );
    q.bind_list(client_ids.iter().copied());
    let rows: Vec<(i64, String, String, i64, i64, Option<i64>)> =
        q.query_as().fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(client, kind, value, account, opted_out, invalid_at)| {
            ((client, kind, value), (account, (opted_out, invalid_at)))
        })
        .collect())
}
