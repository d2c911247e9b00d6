//! Operator alerts when a channel's circuit breaker opens (the provider keeps failing and sends
//! wait) and when it closes again (a probe went through). Each transition is logged (WARN when
//! it opens, INFO when it closes, with the channel account, provider and last error as fields),
//! stored in `alerts` (`GET /api/v1/alerts`), audited, and, when `[alerts] webhook_url` is set,
//! POSTed there signed like the outbound webhook channel (`X-Farol-Signature`), with retries.
//!
//! Breakers live per process: with several workers each may open its own. An outage is one
//! unresolved `breaker_open` alert per channel account (a second process opening its breaker
//! finds it and adds nothing); the first process whose breaker closes resolves it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use farol_channels::webhook::{WebhookChannel, WebhookConfig};
use farol_channels::{
    Backoff, Channel as _, CircuitBreaker, Content, OutboundMessage, Recipient, Secret, SendError,
    SendReceipt,
};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::api::pagination::{Cursor, CursorValue, page_from, parse_limit};
use crate::api::{ApiError, ApiResult, ErrorBody, Page, QueryPairs};
use crate::audit::{self, Actor};
use crate::auth::{AuthUser, Permission};
use crate::config::Config;
use crate::db::{Db, DbResult, SqlBuilder, format_ms, now_ms};
use crate::state::AppState;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The breaker opened: sends through the channel wait.
    BreakerOpen,
    /// The breaker closed: sends flow again.
    BreakerClosed,
}

impl AlertKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BreakerOpen => "breaker_open",
            AlertKind::BreakerClosed => "breaker_closed",
        }
    }
}

/// The channel a breaker guards.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Tenant of the campaign whose send tripped it.
    pub account_id: i64,
    /// The channel account; `None` for the configuration's SMTP (`[smtp]`) or Smartico label
    /// (`[smartico]`).
    pub channel_account_id: Option<i64>,
    /// Provider name (`smtp`, `sendgrid`...).
    pub provider: String,
}

/// Raises alerts on breaker transitions. Cheap to share.
pub struct Alerter {
    db: Db,
    webhook: Option<Arc<(WebhookChannel, String)>>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter")
            .field("webhook", &self.webhook.as_ref().map(|w| &w.1))
            .finish()
    }
}

impl Alerter {
    /// An alerter writing to `db` and, when `[alerts] webhook_url` is set, posting there.
    pub fn new(db: Db, config: &Config) -> Alerter {
        let a = &config.alerts;
        let webhook = (!a.webhook_url.trim().is_empty()).then(|| {
            Arc::new((
                WebhookChannel::new(WebhookConfig {
                    secret: Secret::new(a.webhook_secret.expose_secret()),
                    timeout: Duration::from_secs(a.webhook_timeout_secs.max(1)),
                    backoff: Backoff {
                        base: Duration::from_millis(a.webhook_retry_base_ms.max(1)),
                        max_retries: a.webhook_max_retries,
                        ..Backoff::default()
                    },
                }),
                a.webhook_url.trim().to_owned(),
            ))
        });
        Alerter { db, webhook }
    }

    /// Reports a send's result to `breaker` (transient failures count against the provider;
    /// anything else proves it answered) and raises an alert when that opened or closed it.
    /// The alert is written off the send path.
    pub fn observe(
        &self,
        breaker: &CircuitBreaker,
        subject: impl FnOnce() -> Subject,
        result: &Result<SendReceipt, SendError>,
    ) {
        let transition = match result {
            Err(SendError::Transient { .. }) => {
                breaker.record_failure().then_some(AlertKind::BreakerOpen)
            }
            _ => breaker.record_success().then_some(AlertKind::BreakerClosed),
        };
        let Some(kind) = transition else { return };
        let reason = match result {
            Err(e) => e.to_string(),
            Ok(_) => "a probe send went through".to_owned(),
        };
        let subject = subject();
        let db = self.db.clone();
        let webhook = self.webhook.clone();
        tokio::spawn(async move {
            if let Err(e) = raise(&db, webhook.as_deref(), &subject, kind, &reason).await {
                tracing::error!(error = %e, kind = kind.as_str(), "cannot record the breaker alert");
            }
        });
    }
}

/// Logs, stores, audits and posts one transition.
pub async fn raise(
    db: &Db,
    webhook: Option<&(WebhookChannel, String)>,
    subject: &Subject,
    kind: AlertKind,
    reason: &str,
) -> anyhow::Result<()> {
    let account = subject.channel_account_id.unwrap_or(0);
    match kind {
        AlertKind::BreakerOpen => tracing::warn!(
            channel_account = subject.channel_account_id,
            provider = %subject.provider,
            reason,
            "circuit breaker opened: sends through this channel wait until a probe succeeds"
        ),
        AlertKind::BreakerClosed => tracing::info!(
            channel_account = subject.channel_account_id,
            provider = %subject.provider,
            "circuit breaker closed: sends through this channel flow again"
        ),
    }
    let now = now_ms();
    let mut tx = db.begin().await?;
    // One unresolved `breaker_open` per channel: another process's breaker opening during the
    // same outage adds nothing.
    let open: Option<i64> = sqlx::query_scalar(
        "select id from alerts where account_id = $1 and coalesce(channel_account_id, 0) = $2 \
         and kind = 'breaker_open' and resolved_at is null order by id limit 1",
    )
    .bind(subject.account_id)
    .bind(account)
    .fetch_optional(&mut *tx)
    .await?;
    let id = match (kind, open) {
        (AlertKind::BreakerOpen, Some(_)) => {
            tx.commit().await?;
            return Ok(());
        }
        (AlertKind::BreakerClosed, None) => {
            // Nothing open to resolve (another process resolved it already).
            tx.commit().await?;
            return Ok(());
        }
        (AlertKind::BreakerClosed, Some(_)) => {
            sqlx::query(
                "update alerts set resolved_at = $1 where account_id = $2 and coalesce(channel_account_id, 0) = $3 \
                 and kind = 'breaker_open' and resolved_at is null",
            )
            .bind(now)
            .bind(subject.account_id)
            .bind(account)
            .execute(&mut *tx)
            .await?;
            insert(&mut tx, subject, kind, reason, now, Some(now)).await?
        }
        (AlertKind::BreakerOpen, None) => insert(&mut tx, subject, kind, reason, now, None).await?,
    };
    let doc = json!({
        "id": id,
        "kind": kind.as_str(),
        "channel_account_id": subject.channel_account_id,
        "provider": subject.provider,
        "reason": reason,
        "created_at": format_ms(now),
    });
    audit::record(
        &mut tx,
        &Actor::system(subject.account_id, "breaker"),
        &format!("alert.{}", kind.as_str()),
        "alert",
        id,
        audit::NONE,
        Some(&doc),
    )
    .await?;
    tx.commit().await?;
    if let Some((channel, url)) = webhook {
        let msg = OutboundMessage::new(
            Recipient::Url { url: url.clone() },
            Content::Json {
                event: format!("alert.{}", kind.as_str()),
                data: doc,
            },
            format!("alert:{id}"),
        );
        match channel.send(&msg).await {
            Ok(_) => {
                sqlx::query("update alerts set notified_at = $1 where id = $2")
                    .bind(now_ms())
                    .bind(id)
                    .execute(db.pool())
                    .await?;
            }
            Err(e) => {
                tracing::warn!(alert = id, error = %e, "cannot post the alert to alerts.webhook_url")
            }
        }
    }
    Ok(())
}

async fn insert(
    tx: &mut crate::db::Tx,
    subject: &Subject,
    kind: AlertKind,
    reason: &str,
    now: i64,
    resolved_at: Option<i64>,
) -> DbResult<i64> {
    Ok(sqlx::query_scalar(
        "insert into alerts (account_id, channel_account_id, provider, kind, reason, created_at, resolved_at) \
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(subject.account_id)
    .bind(subject.channel_account_id)
    .bind(subject.provider.clone())
    .bind(kind.as_str())
    .bind(reason.to_owned())
    .bind(now)
    .bind(resolved_at)
    .fetch_one(&mut **tx)
    .await?)
}

/// An operator alert.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertOut {
    /// Id (increasing).
    pub id: i64,
    /// `breaker_open` (sends through the channel wait) or `breaker_closed` (they flow again).
    pub kind: String,
    /// The channel account; null for the configuration's SMTP.
    pub channel_account_id: Option<i64>,
    /// Provider of the channel.
    pub provider: String,
    /// The last error before it opened, or what closed it.
    pub reason: String,
    /// When it happened.
    pub created_at: String,
    /// When the outage ended (`breaker_open`), or `created_at` for `breaker_closed`.
    pub resolved_at: Option<String>,
    /// When `[alerts] webhook_url` accepted it.
    pub notified_at: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    kind: String,
    channel_account_id: Option<i64>,
    provider: String,
    reason: String,
    created_at: i64,
    resolved_at: Option<i64>,
    notified_at: Option<i64>,
}

/// Operator alerts of the caller's account, newest first.
#[utoipa::path(get, path = "/alerts", tag = "channels",
    params(
        ("unresolved" = Option<bool>, Query, description = "true: only outages still going on (open breakers)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1–500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = Page<AlertOut>), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_alerts(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<Json<Page<AlertOut>>> {
    user.require(Permission::ChannelsManage)?;
    query.reject_unknown(&["unresolved", "limit", "cursor"], &[])?;
    let limit = parse_limit(query.get("limit"))?;
    let unresolved = match query.get("unresolved") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::field(
                "unresolved",
                "invalid",
                format!("unresolved is true or false, not {other:?}"),
            ));
        }
    };
    let mut q = SqlBuilder::new(
        "select id, kind, channel_account_id, provider, reason, created_at, resolved_at, notified_at \
         from alerts where account_id = ",
    );
    q.bind(user.account_id);
    if unresolved {
        q.push(" and resolved_at is null");
    }
    if let Some(c) = query.get("cursor") {
        q.push(" and id < ").bind(Cursor::decode(c)?.id);
    }
    q.push(" order by id desc limit ").bind(limit + 1);
    let rows: Vec<AlertRow> = q.query_as().fetch_all(state.db.pool()).await?;
    let items = rows
        .into_iter()
        .map(|r| AlertOut {
            id: r.id,
            kind: r.kind,
            channel_account_id: r.channel_account_id,
            provider: r.provider,
            reason: r.reason,
            created_at: format_ms(r.created_at),
            resolved_at: r.resolved_at.map(format_ms),
            notified_at: r.notified_at.map(format_ms),
        })
        .collect();
    Ok(Json(page_from(items, limit, |a: &AlertOut| Cursor {
        v: CursorValue::Int(a.id),
        id: a.id,
    })))
}
