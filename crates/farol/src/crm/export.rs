//! `farol clients export`: every client of an account as CSV, with normalized contacts, so an
//! import can be checked row by row. Streams in pages; memory does not grow with the account.

use std::io::Write;

use crate::crm::clients;
use crate::crm::custom_fields;
use crate::db::Db;

/// Rows fetched per round trip.
const PAGE: i64 = 1000;

/// Writes the clients of `account_id` to `out` as CSV (comma-separated, UTF-8, header first).
/// Returns the number of clients written.
pub async fn write_csv<W: Write>(db: &Db, account_id: i64, out: W) -> anyhow::Result<u64> {
    let mut conn = db.pool().acquire().await?;
    let defs = custom_fields::definitions(&mut conn, account_id).await?;
    let keys: Vec<String> = defs.keys().cloned().collect();
    let mut writer = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [
        "id",
        "name",
        "legal_name",
        "cpf_cnpj",
        "status",
        "portfolio_id",
        "category",
        "score",
        "city",
        "current_product",
        "phone",
        "email",
        "phones",
        "emails",
        "tags",
        "created_at",
        "updated_at",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(keys.iter().map(|k| format!("cf.{k}")));
    writer.write_record(&header)?;

    let mut after = 0_i64;
    let mut written = 0_u64;
    loop {
        let ids: Vec<i64> = sqlx::query_scalar(
            "select id from clients where account_id = $1 and id > $2 order by id limit $3",
        )
        .bind(account_id)
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(&last) = ids.last() else { break };
        after = last;
        for c in clients::load(&mut conn, account_id, &ids).await? {
            // Preferred first, then the others (the order contacts::for_clients returns).
            let values = |kind: &str| -> Vec<&str> {
                c.contacts
                    .iter()
                    .filter(|k| k.kind.as_str() == kind)
                    .map(|k| k.value.as_str())
                    .collect()
            };
            let (phones, emails) = (values("phone"), values("email"));
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            let mut row = vec![
                c.id.to_string(),
                c.name.clone(),
                opt(&c.legal_name),
                opt(&c.cpf_cnpj),
                c.status.as_str().to_string(),
                c.portfolio_id.map(|p| p.to_string()).unwrap_or_default(),
                opt(&c.category),
                c.score.to_string(),
                opt(&c.city),
                opt(&c.current_product),
                phones.first().copied().unwrap_or_default().to_string(),
                emails.first().copied().unwrap_or_default().to_string(),
                phones.join(" "),
                emails.join(" "),
                c.tags.join("|"),
                c.created_at.clone(),
                c.updated_at.clone(),
            ];
            for key in &keys {
                row.push(match c.custom_fields.get(key) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                });
            }
            writer.write_record(&row)?;
            written += 1;
        }
    }
    writer.flush()?;
    Ok(written)
}
