//! Provider webhook receivers, `/api/v1/webhooks/<provider>/<channel account id>`: no access
//! token, each request verified by the provider's own signature with the account's secret
//! (WPPConnect signs nothing: its URL carries the account's `webhook_token`). A bad signature
//! answers 401 and stores nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use farol_channels::WebhookError;
use farol_channels::email::{sendgrid, ses, sns::SnsVerifier};
use farol_channels::sms::twilio;
use farol_channels::whatsapp::{meta, wppconnect};
use serde::Deserialize;

use super::accounts::Provider;
use super::events;
use super::registry::Built;
use crate::api::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// The stored account `id` if it is a `provider` account.
async fn account(state: &AppState, id: i64, provider: Provider) -> ApiResult<Arc<Built>> {
    let registry = state
        .channels
        .registry()
        .ok_or_else(|| ApiError::Unavailable("channel accounts are not available".into()))?;
    match registry
        .for_webhooks(id)
        .await
        .map_err(ApiError::Internal)?
    {
        Some(b) if b.provider == provider => Ok(b),
        _ => Err(ApiError::NotFound("channel account")),
    }
}

fn rejected(e: WebhookError) -> ApiError {
    match e {
        WebhookError::Malformed(m) => ApiError::BadRequest(format!("malformed webhook: {m}")),
        _ => ApiError::Unauthorized("webhook signature verification failed"),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Query of Meta's subscription handshake.
#[derive(Debug, Deserialize)]
pub struct HubQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription handshake: echoes `hub.challenge` when `hub.verify_token` is the
/// account's `verify_token`.
#[utoipa::path(get, path = "/webhooks/meta/{id}", tag = "webhooks", params(("id" = i64, Path)),
    responses((status = 200, body = String), (status = 403, body = ErrorBody)))]
pub async fn meta_verify(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<HubQuery>,
) -> ApiResult<String> {
    let built = account(&state, id, Provider::Meta).await?;
    let expected = built.secret("verify_token").unwrap_or_default();
    meta::verify_subscription(
        q.mode.as_deref(),
        q.verify_token.as_deref(),
        q.challenge.as_deref(),
        expected,
    )
    .map(str::to_owned)
    .ok_or(ApiError::Forbidden)
}

/// Meta WhatsApp webhook: statuses (sent, delivered, read, failed) and inbound messages,
/// verified by `X-Hub-Signature-256` under the account's `app_secret`.
#[utoipa::path(post, path = "/webhooks/meta/{id}", tag = "webhooks", params(("id" = i64, Path)), request_body(content = String, description = "the provider's raw payload"),
    responses((status = 200), (status = 401, body = ErrorBody)))]
pub async fn meta_events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let built = account(&state, id, Provider::Meta).await?;
    meta::verify_signature(
        built.secret("app_secret").unwrap_or_default(),
        header_str(&headers, "x-hub-signature-256"),
        &body,
    )
    .map_err(rejected)?;
    let parsed = meta::parse_webhook(&body).map_err(rejected)?;
    for ev in &parsed.statuses {
        events::apply_status(&state.db, &built, ev).await?;
    }
    for msg in &parsed.messages {
        events::apply_inbound(&state.db, &built, msg).await?;
    }
    Ok(StatusCode::OK)
}

/// Twilio status callbacks and inbound SMS, verified by `X-Twilio-Signature` (HMAC-SHA1 of
/// `campaign.public_url` + this path and the form parameters, under the `auth_token`).
#[utoipa::path(post, path = "/webhooks/twilio/{id}", tag = "webhooks", params(("id" = i64, Path)), request_body(content = String, description = "the provider's raw payload"),
    responses((status = 200), (status = 401, body = ErrorBody)))]
pub async fn twilio_events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let built = account(&state, id, Provider::Twilio).await?;
    let url = format!(
        "{}{}",
        crate::campaign::public_url(&state.config),
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(uri.path())
    );
    twilio::verify_signature(
        built.secret("auth_token").unwrap_or_default(),
        &url,
        &body,
        header_str(&headers, "x-twilio-signature"),
    )
    .map_err(rejected)?;
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed form: {e}")))?;
    let has = |k: &str| params.iter().any(|(n, _)| n == k);
    if has("MessageStatus") || has("SmsStatus") && !has("Body") {
        if let Some(ev) = twilio::parse_status_callback(&body).map_err(rejected)? {
            events::apply_status(&state.db, &built, &ev).await?;
        }
    } else {
        let msg = twilio::parse_inbound(&body).map_err(rejected)?;
        events::apply_inbound(&state.db, &built, &msg).await?;
    }
    Ok((
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response())
}

fn same(a: &str, b: &str) -> bool {
    use sha2::Digest;
    // Compare digests, not the tokens: timing reveals nothing usable about the token.
    sha2::Sha256::digest(a.as_bytes()) == sha2::Sha256::digest(b.as_bytes()) && !b.is_empty()
}

/// WPPConnect events (messages, acks, session status). WPPConnect does not sign: the path
/// carries the account's `webhook_token`.
#[utoipa::path(post, path = "/webhooks/wppconnect/{id}/{token}", tag = "webhooks",
    params(("id" = i64, Path), ("token" = String, Path)), request_body(content = String, description = "the provider's raw payload"),
    responses((status = 200), (status = 401, body = ErrorBody)))]
pub async fn wppconnect_events(
    State(state): State<AppState>,
    Path((id, token)): Path<(i64, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let built = account(&state, id, Provider::Wppconnect).await?;
    if !same(&token, built.secret("webhook_token").unwrap_or_default()) {
        return Err(ApiError::Unauthorized("webhook token mismatch"));
    }
    match wppconnect::parse_webhook(&body).map_err(rejected)? {
        wppconnect::WppEvent::Message { message, .. } => {
            events::apply_inbound(&state.db, &built, &message).await?;
        }
        wppconnect::WppEvent::Ack { event, .. } => {
            events::apply_status(&state.db, &built, &event).await?;
        }
        wppconnect::WppEvent::SessionStatus { session, status } => {
            if let Some((pool, _)) = &built.wpp {
                let s = status.to_ascii_lowercase();
                let connected = [
                    "islogged",
                    "qrreadsuccess",
                    "inchat",
                    "connected",
                    "chatsavailable",
                ]
                .iter()
                .any(|k| s == *k);
                let down = s.contains("desconnected")
                    || s.contains("disconnected")
                    || s.contains("browserclose")
                    || s.contains("notlogged")
                    || s.contains("autoclose");
                if connected || down {
                    pool.set_connected(&session, connected);
                }
            }
        }
        wppconnect::WppEvent::Other(_) => {}
    }
    Ok(StatusCode::OK)
}

/// SendGrid Event Webhook, verified by its signed-webhook ECDSA signature with the account's
/// `webhook_public_key` (unsigned requests are refused: enable signing in SendGrid).
#[utoipa::path(post, path = "/webhooks/sendgrid/{id}", tag = "webhooks", params(("id" = i64, Path)), request_body(content = String, description = "the provider's raw payload"),
    responses((status = 200), (status = 401, body = ErrorBody)))]
pub async fn sendgrid_events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let built = account(&state, id, Provider::Sendgrid).await?;
    let key = built.setting("webhook_public_key").ok_or(ApiError::Unauthorized(
        "set the account's webhook_public_key (SendGrid's signed event webhook) to receive events",
    ))?;
    sendgrid::verify_event_webhook(
        key,
        header_str(&headers, sendgrid::SIGNATURE_HEADER).unwrap_or_default(),
        header_str(&headers, sendgrid::TIMESTAMP_HEADER).unwrap_or_default(),
        &body,
    )
    .map_err(rejected)?;
    for ev in sendgrid::parse_event_webhook(&body).map_err(rejected)? {
        events::apply_status(&state.db, &built, &ev).await?;
    }
    Ok(StatusCode::OK)
}

/// SNS verifiers (each caches the certificates it fetched) by `channels.sns_cert_hosts`: one per
/// process in practice; several only when in-process tests run apps configured differently.
static SNS: std::sync::Mutex<Vec<(Vec<String>, Arc<SnsVerifier>)>> =
    std::sync::Mutex::new(Vec::new());

fn sns_verifier(state: &AppState) -> Arc<SnsVerifier> {
    let hosts = &state.config.channels.sns_cert_hosts;
    let mut cache = SNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, v)) = cache.iter().find(|(h, _)| h == hosts) {
        return v.clone();
    }
    // Validated when the configuration was loaded; an entry that no longer parses trusts nothing.
    let parsed = hosts
        .iter()
        .filter_map(|h| farol_channels::email::sns::CertHost::parse(h).ok())
        .collect();
    let verifier = Arc::new(SnsVerifier::default().with_cert_hosts(parsed));
    cache.push((hosts.clone(), verifier.clone()));
    verifier
}

/// Amazon SES events through SNS (bounces, complaints, deliveries), verified by the SNS
/// signature (Amazon-hosted certificate) and the account's `sns_topic_arns`. Subscription
/// confirmations are confirmed.
#[utoipa::path(post, path = "/webhooks/ses/{id}", tag = "webhooks", params(("id" = i64, Path)), request_body(content = String, description = "the provider's raw payload"),
    responses((status = 200), (status = 401, body = ErrorBody)))]
pub async fn ses_events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let built = account(&state, id, Provider::Ses).await?;
    let verifier = sns_verifier(&state);
    verifier.verify(&body).await.map_err(rejected)?;
    let topics: Vec<String> = built
        .settings
        .get("sns_topic_arns")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match ses::parse_sns(&body, &topics).map_err(rejected)? {
        ses::SnsMessage::SubscriptionConfirmation { subscribe_url, .. } => {
            if !verifier.trusts_host(&subscribe_url) {
                return Err(ApiError::BadRequest(
                    "the SubscribeURL is not on a trusted SNS host (channels.sns_cert_hosts)"
                        .into(),
                ));
            }
            // Visiting the URL confirms the subscription. A failure answers 503 so that SNS
            // sends the confirmation again.
            let confirmed = farol_channels::http::client(farol_channels::http::DEFAULT_TIMEOUT)
                .get(&subscribe_url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            match confirmed {
                Ok(_) => {
                    tracing::info!(channel_account = id, "confirmed the SNS subscription")
                }
                Err(e) => {
                    tracing::warn!(channel_account = id, error = %e, "cannot confirm the SNS subscription");
                    return Err(ApiError::Unavailable(
                        "cannot confirm the SNS subscription now; SNS will retry".into(),
                    ));
                }
            }
        }
        ses::SnsMessage::Notification { events: list, .. } => {
            for ev in &list {
                events::apply_status(&state.db, &built, ev).await?;
            }
        }
        _ => {}
    }
    Ok(StatusCode::OK)
}
