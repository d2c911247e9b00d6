//! One-click unsubscribe (RFC 8058): every campaign message carries
//! `List-Unsubscribe: <…/api/v1/unsubscribe/{token}>` and `List-Unsubscribe-Post`; a POST to
//! that URL opts the contact out (LGPD). GET shows a page whose button POSTs, so link
//! scanners that follow URLs do not unsubscribe anyone. The token is 128 random bits, one per
//! recipient.

use axum::extract::{Path, State};
use axum::response::Html;

use crate::api::{ApiError, ApiResult, ErrorBody};
use crate::audit::{self, Actor};
use crate::crm::timeline::{self, NewItem, Origin};
use crate::db::now_ms;
use crate::state::AppState;

/// The confirmation page.
#[utoipa::path(get, path = "/unsubscribe/{token}", tag = "campaigns", params(("token" = String, Path)),
    responses((status = 200, description = "a page with an unsubscribe button", content_type = "text/html", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Html<String>> {
    let found: Option<i64> =
        sqlx::query_scalar("select id from campaign_recipients where unsubscribe_token = $1")
            .bind(token.clone())
            .fetch_optional(state.db.pool())
            .await?;
    found.ok_or(ApiError::NotFound("unsubscribe link"))?;
    Ok(Html(format!(
        "<!doctype html><meta charset=utf-8><title>Descadastrar</title>\
         <form method=post action=\"{token}\"><p>Não quer mais receber estas mensagens?</p>\
         <button type=submit>Descadastrar</button></form>"
    )))
}

/// Opts the recipient's contact out of the channel (one-click; idempotent).
#[utoipa::path(post, path = "/unsubscribe/{token}", tag = "campaigns", params(("token" = String, Path)),
    responses((status = 200, description = "unsubscribed", content_type = "text/html", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Html<&'static str>> {
    let mut tx = state.db.begin().await?;
    let row: Option<(i64, i64, i64, String, Option<String>)> = sqlx::query_as(
        "select account_id, campaign_id, client_id, channel, address from campaign_recipients where unsubscribe_token = $1",
    )
    .bind(token)
    .fetch_optional(&mut *tx)
    .await?;
    let (account_id, campaign_id, client_id, channel, address) =
        row.ok_or(ApiError::NotFound("unsubscribe link"))?;
    let kind = if channel == "email" { "email" } else { "phone" };
    let changed = sqlx::query(
        "update contacts set opted_out = 1, updated_at = $1 where client_id = $2 and kind = $3 and value = $4 and opted_out = 0",
    )
    .bind(now_ms())
    .bind(client_id)
    .bind(kind)
    .bind(address.clone())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed > 0 {
        let metadata = serde_json::json!({
            "campaign_id": campaign_id, "channel": channel, "address": address,
        });
        timeline::add(
            &mut tx,
            NewItem {
                account_id,
                client_id,
                kind: "opted_out",
                origin: Origin::System,
                text: "Unsubscribed through a campaign message's link",
                metadata: metadata.clone(),
                author_id: None,
            },
        )
        .await?;
        audit::record(
            &mut tx,
            &Actor::system(account_id, "unsubscribe"),
            "contact.opt_out",
            "client",
            client_id,
            audit::NONE,
            Some(&metadata),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Html(
        "<!doctype html><meta charset=utf-8><title>Descadastrado</title><p>Pronto: você não receberá mais estas mensagens.</p>",
    ))
}
