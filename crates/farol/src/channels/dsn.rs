//! Delivery statuses for SMTP accounts, which have no provider webhooks: bounces (RFC 3464
//! delivery status notifications) come back by e-mail to each message's VERP envelope sender
//! (`bounce_address` + `+<id>-<tag>`, signed with the account's `dsn_secret`), and the MTA
//! receiving them pipes each one to `POST /api/v1/webhooks/smtp/{id}/dsn` with
//! `Authorization: Bearer <dsn_secret>` (docs/channels.md has a Postfix example).
//!
//! A hard bounce (`Action: failed`, `Status: 5.x.x`) marks the recipient bounced, the contact
//! invalid and the address suppressed; a failure with a 4.x.x status is a soft bounce (the
//! recipient bounced, the contact untouched); `delayed` only adds a timeline item; each once,
//! whatever the MTA retries (`channels::events`).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use farol_channels::email::dsn::{self, Dsn};
use farol_channels::email::verp::ReturnPath;
use farol_channels::{DeliveryEvent, Secret};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::accounts::Provider;
use super::registry::Built;
use crate::api::{ApiError, ApiResult, ErrorBody, Problems};
use crate::state::AppState;

/// The VERP return path of an SMTP account with `bounce_address` set.
pub fn return_path(
    settings: &Map<String, Value>,
    secrets: &BTreeMap<String, Secret>,
) -> Result<Option<ReturnPath>, String> {
    let Some(address) = settings.get("bounce_address").and_then(Value::as_str) else {
        return Ok(None);
    };
    let key = secrets
        .get("dsn_secret")
        .ok_or("bounce_address needs the secret `dsn_secret`")?;
    ReturnPath::new(address, key.clone())
        .map(Some)
        .map_err(|e| format!("bounce_address: {e}"))
}

/// Checks `bounce_address` and `dsn_secret` of an SMTP account, naming the field.
pub fn validate(
    settings: &Map<String, Value>,
    secrets: &BTreeMap<String, Secret>,
    problems: &mut Problems,
) {
    let address = settings.get("bounce_address").and_then(Value::as_str);
    let key = secrets.get("dsn_secret");
    match (address, key) {
        (None, _) => {}
        (Some(_), None) => problems.add(
            "secrets.dsn_secret",
            "required",
            "bounce_address needs a dsn_secret (at least 16 characters): it signs the bounce addresses and authenticates the MTA posting bounces",
        ),
        (Some(address), Some(key)) => {
            if let Err(e) = ReturnPath::new(address, key.clone()) {
                let field = if key.expose().len() < 16 {
                    "secrets.dsn_secret"
                } else {
                    "settings.bounce_address"
                };
                problems.add(field, "invalid", e);
            }
        }
    }
}

/// What happened to one recipient of the bounce.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DsnRecipientOut {
    /// `Final-Recipient`.
    pub final_recipient: Option<String>,
    /// `Action` (failed, delayed, delivered, relayed, expanded).
    pub action: String,
    /// `Status` (e.g. 5.1.1).
    pub status: Option<String>,
    /// `hard_bounce`, `soft_bounce`, `delayed`, `delivered`, or `none` (relayed/expanded).
    pub outcome: String,
    /// Changed something (false: already applied, or no message of this account matched).
    pub applied: bool,
}

/// The result of posting a bounce.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DsnOut {
    /// The message was a delivery status notification.
    pub dsn: bool,
    /// The message it reports on (Message-ID), when its VERP token verified.
    pub message_id: Option<String>,
    /// Why nothing was applied, when nothing was.
    pub ignored: Option<String>,
    /// Per recipient.
    pub recipients: Vec<DsnRecipientOut>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
        .map(str::trim)
}

fn same(a: &str, b: &str) -> bool {
    use sha2::Digest;
    // Compare digests: timing reveals nothing usable about the secret.
    !b.is_empty() && sha2::Sha256::digest(a.as_bytes()) == sha2::Sha256::digest(b.as_bytes())
}

/// The Message-ID (`hex@domain`) of the account's message the bounce names through its VERP
/// token: the returned headers' Message-ID when it carries the same id, else the id on the
/// account's `from` domain (how the adapter makes them).
fn message_id(built: &Built, rp: &ReturnPath, report: &Dsn) -> Option<String> {
    let id = report
        .delivered_to
        .iter()
        .find_map(|a| rp.message_id_of(a))?;
    if let Some(original) = &report.original_message_id
        && original
            .split('@')
            .next()
            .is_some_and(|local| local.eq_ignore_ascii_case(&id))
    {
        return Some(original.clone());
    }
    let from = built.setting("from").unwrap_or_default();
    Some(format!("{id}@{}", farol_channels::email::domain_of(from)))
}

/// Takes one bounce message for SMTP account `id`, as an MTA pipe delivers it (the raw RFC 5322
/// message as the body, any content type), authenticated by `Authorization: Bearer
/// <dsn_secret>`. Answers 200 whenever the message was read — also when it was no bounce or
/// its VERP token did not verify (`ignored` says why) — so the MTA does not bounce the bounce.
#[utoipa::path(post, path = "/webhooks/smtp/{id}/dsn", tag = "webhooks", params(("id" = i64, Path)),
    request_body(content = String, description = "the raw bounce message (message/rfc822)", content_type = "message/rfc822"),
    responses((status = 200, body = DsnOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn smtp_dsn(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<DsnOut>> {
    let registry = state
        .channels
        .registry()
        .ok_or_else(|| ApiError::Unavailable("channel accounts are not available".into()))?;
    let built = match registry
        .for_webhooks(id)
        .await
        .map_err(ApiError::Internal)?
    {
        Some(b) if b.provider == Provider::Smtp => b,
        _ => return Err(ApiError::NotFound("channel account")),
    };
    let secret = built.secret("dsn_secret").ok_or(ApiError::Unauthorized(
        "set the account's bounce_address and dsn_secret to receive bounces",
    ))?;
    if !bearer(&headers).is_some_and(|token| same(token, secret)) {
        return Err(ApiError::Unauthorized(
            "Authorization: Bearer <dsn_secret> is missing or wrong",
        ));
    }
    let rp = return_path(&built.settings, &built.secrets)
        .map_err(|e| ApiError::field("settings.bounce_address", "invalid", e))?
        .ok_or_else(|| {
            ApiError::field(
                "settings.bounce_address",
                "required",
                "set the account's bounce_address: sends carry no VERP token without it",
            )
        })?;
    let report = match dsn::parse(&body) {
        Err(e) => return Err(ApiError::BadRequest(format!("unreadable message: {e}"))),
        Ok(None) => {
            tracing::info!(
                channel_account = id,
                "a message to the bounce address that is no delivery status notification"
            );
            return Ok(Json(DsnOut {
                dsn: false,
                message_id: None,
                ignored: Some("not a delivery status notification (RFC 3464)".into()),
                recipients: Vec::new(),
            }));
        }
        Ok(Some(report)) => report,
    };
    let Some(message_id) = message_id(&built, &rp, &report) else {
        tracing::warn!(
            channel_account = id,
            to = ?report.delivered_to,
            "a bounce without a valid VERP token (forged, or not for one of our messages)"
        );
        return Ok(Json(DsnOut {
            dsn: true,
            message_id: None,
            ignored: Some(
                "no recipient address carries a valid VERP token of this account (Delivered-To, X-Original-To, To)"
                    .into(),
            ),
            recipients: Vec::new(),
        }));
    };
    let mut recipients = Vec::new();
    for r in &report.recipients {
        let status = r.delivery_status();
        let outcome = match &status {
            Some(farol_channels::DeliveryStatus::Bounced { permanent: true }) => "hard_bounce",
            Some(farol_channels::DeliveryStatus::Bounced { permanent: false }) => "soft_bounce",
            Some(farol_channels::DeliveryStatus::Deferred) => "delayed",
            Some(farol_channels::DeliveryStatus::Delivered) => "delivered",
            _ => "none",
        };
        let applied = match status {
            Some(status) => {
                let ev = DeliveryEvent {
                    provider: "smtp".into(),
                    provider_message_id: message_id.clone(),
                    recipient: r.final_recipient.clone(),
                    status,
                    occurred_at: None,
                    code: r.status.clone(),
                    reason: r.diagnostic.clone(),
                    event_id: None,
                };
                super::events::apply_status(&state.db, &built, &ev).await?
            }
            None => false,
        };
        recipients.push(DsnRecipientOut {
            final_recipient: r.final_recipient.clone(),
            action: r.action.as_str().into(),
            status: r.status.clone(),
            outcome: outcome.into(),
            applied,
        });
    }
    Ok(Json(DsnOut {
        dsn: true,
        ignored: None,
        message_id: Some(message_id),
        recipients,
    }))
}
