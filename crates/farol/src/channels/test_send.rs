//! `POST /channel-accounts/{id}/test`: one real message through the account's adapter, so an
//! operator learns whether the credentials, the sender and the provider work before a campaign
//! depends on them. The answer is the provider's (its message id, or its error classified as
//! an authentication failure, an invalid recipient, an unreachable or slow provider...), with
//! every secret of the account blanked out of the provider's text.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use farol_channels::{
    Content, EmailContent, OutboundMessage, Recipient, Secret, SendError, WhatsAppBody,
    WhatsAppContent, WhatsAppTemplateMessage,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::accounts::{self, Provider};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Problems};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::campaign::templates::Channel;
use crate::state::AppState;

/// The default text of a test message (shown to the person who receives it).
const DEFAULT_MESSAGE: &str = "Mensagem de teste do Farol: este canal está configurado.";
/// The subject of a test e-mail.
const EMAIL_SUBJECT: &str = "Teste do Farol";
/// Longest accepted `message`, in characters.
const MAX_MESSAGE_CHARS: usize = 1000;

/// A WhatsApp template approved at Meta, for testing outside the 24-hour window.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestTemplate {
    /// Template name as approved at Meta.
    pub name: String,
    /// Language code, e.g. `pt_BR`.
    pub language: String,
    /// Body parameters (`{{1}}`, `{{2}}`...), in order.
    #[serde(default)]
    pub body_parameters: Vec<String>,
}

/// Body of `POST /channel-accounts/{id}/test`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendInput {
    /// Where to send: an e-mail address (e-mail accounts), an E.164 phone number such as
    /// `+5511987654321` (WhatsApp and SMS accounts) or a player's `user_ext_id` (Smartico
    /// accounts: a `client_action` event `farol_channel_test`). Webhook accounts post to their
    /// configured `url`: leave it out.
    pub to: Option<String>,
    /// The text to send (default: a short Portuguese test message), at most 1,000 characters.
    pub message: Option<String>,
    /// WhatsApp only: send this approved template instead of free text (Meta accepts free text
    /// only within 24 hours of the number's last message to you).
    pub template: Option<TestTemplate>,
}

/// Why a test send failed, for the operator to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestFailure {
    /// The provider refused the credentials (wrong token, key, password or account id).
    AuthFailure,
    /// The provider says the recipient does not exist or cannot receive (invalid number,
    /// unknown mailbox, not on WhatsApp).
    InvalidRecipient,
    /// No connection could be made (DNS, refused connection, TLS handshake).
    Unreachable,
    /// The provider did not answer within the account's `timeout_secs`.
    Timeout,
    /// The provider asked to slow down (429 or its own rate-limit code).
    RateLimited,
    /// The provider failed on its side (5xx): retry later.
    ProviderError,
    /// WhatsApp: free text outside the 24-hour window; test with a `template`.
    OutsideWindow,
    /// The adapter could not be built from the stored settings (a WPPConnect server that
    /// refuses the secret key, a secret that no longer decrypts).
    Configuration,
    /// Anything else the provider refused (content, sender, permissions).
    Rejected,
}

/// The classified error of a failed test send.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestError {
    /// What went wrong, for the operator.
    pub kind: TestFailure,
    /// The provider's (or local) error code, e.g. `http_401`, `20003`, `smtp_535`.
    pub code: String,
    /// The provider's message, with the account's secrets blanked out.
    pub message: String,
}

/// The result of a test send.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestSendOut {
    /// The provider accepted the message.
    pub ok: bool,
    /// Provider of the account.
    pub provider: Provider,
    /// Where it went (the webhook's URL for webhook accounts).
    pub to: String,
    /// The provider's id for the message, when accepted.
    pub provider_message_id: Option<String>,
    /// What the provider said when it accepted it (`queued`, the SMTP reply...).
    pub provider_status: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<TestError>,
    /// Time the provider took to answer, milliseconds.
    pub duration_ms: u64,
}

/// Checks `to` for the account's channel: `Ok(None)` for webhook accounts, which post to
/// their configured URL.
fn recipient(channel: Channel, to: Option<&str>, problems: &mut Problems) -> Option<Recipient> {
    let to = to.map(str::trim);
    match channel {
        Channel::Email => match to {
            None | Some("") => {
                problems.add(
                    "to",
                    "required",
                    "give the e-mail address to send the test to",
                );
                None
            }
            Some(raw) => match farol_normalize::email::Email::parse(raw) {
                Ok(email) => Some(Recipient::email(email.into_string())),
                Err(e) => {
                    problems.add(
                        "to",
                        e.code(),
                        format!("e-mail accounts send to an e-mail address: {e}"),
                    );
                    None
                }
            },
        },
        Channel::Whatsapp | Channel::Sms => match to {
            None | Some("") => {
                problems.add(
                    "to",
                    "required",
                    "give the phone number to send the test to, in E.164 (e.g. +5511987654321)",
                );
                None
            }
            Some(raw) => {
                let digits = raw.strip_prefix('+').unwrap_or_default();
                if digits.len() >= 8
                    && digits.len() <= 15
                    && !digits.starts_with('0')
                    && digits.bytes().all(|b| b.is_ascii_digit())
                {
                    Some(Recipient::phone(raw))
                } else {
                    problems.add(
                        "to",
                        "invalid_e164",
                        format!(
                            "{} accounts send to a phone number in E.164: a + and 8 to 15 digits with the country code, e.g. +5511987654321 (got {raw:?})",
                            channel.as_str()
                        ),
                    );
                    None
                }
            }
        },
        Channel::Smartico => match to {
            Some(id) if !id.is_empty() && id.chars().count() <= 200 => Some(Recipient::External {
                user_ext_id: id.to_owned(),
            }),
            _ => {
                problems.add(
                    "to",
                    "required",
                    "give the user_ext_id of a player Smartico knows (at most 200 characters)",
                );
                None
            }
        },
        Channel::Webhook | Channel::Auto => {
            if to.is_some_and(|t| !t.is_empty()) {
                problems.add(
                    "to",
                    "not_allowed",
                    "webhook accounts post to their configured `url`; leave `to` out",
                );
            }
            None
        }
    }
}

/// The message a test sends through `provider`.
fn content(
    provider: Provider,
    text: &str,
    template: Option<&TestTemplate>,
    account_id: i64,
) -> Content {
    match provider.channel() {
        Channel::Email => Content::Email(EmailContent {
            subject: EMAIL_SUBJECT.into(),
            text: text.into(),
            ..Default::default()
        }),
        Channel::Whatsapp => Content::WhatsApp(WhatsAppContent {
            body: match template {
                Some(t) => WhatsAppBody::Template(WhatsAppTemplateMessage {
                    name: t.name.clone(),
                    language: t.language.clone(),
                    body_parameters: t.body_parameters.clone(),
                    header_parameters: Vec::new(),
                }),
                None => WhatsAppBody::Text { body: text.into() },
            },
            // Free text is attempted as if the window were open: the provider knows whether
            // it is, and says so (Meta 131047), which is what the operator wants to learn.
            last_inbound_at: Some(jiff::Timestamp::now()),
            fallback_template: None,
        }),
        Channel::Sms => Content::Sms { body: text.into() },
        // A client action no journey listens to unless one is built for it.
        Channel::Smartico => Content::SmarticoEvent {
            event_type: farol_channels::smartico::EventType::ClientAction,
            payload: serde_json::Map::from_iter([
                ("action".to_owned(), json!("farol_channel_test")),
                ("message".to_owned(), json!(text)),
            ]),
        },
        Channel::Webhook | Channel::Auto => Content::Json {
            event: "channel_account.test".into(),
            data: json!({"channel_account_id": account_id, "message": text}),
        },
    }
}

/// Replaces every secret value in `text` (providers and transport errors may echo URLs or
/// headers that carry them).
fn redact(text: &str, secrets: &BTreeMap<String, Secret>) -> String {
    let mut out = text.to_owned();
    for secret in secrets.values() {
        let value = secret.expose();
        // Very short values would blank out ordinary words; no provider secret is that short.
        if value.len() >= 6 {
            out = out.replace(value, "[redacted]");
        }
    }
    out
}

/// Auth error codes by provider: HTTP 401/403, SMTP 530/534/535, Twilio 20003, Meta 190
/// (expired or invalid token), Smartico 10000 (label token), WPPConnect token refusals, SES
/// signature/credential errors.
fn is_auth_code(code: &str) -> bool {
    matches!(
        code,
        "http_401"
            | "http_403"
            | "smtp_530"
            | "smtp_534"
            | "smtp_535"
            | "20003"
            | "190"
            | "10000"
            | "wpp_token"
            | "wpp_unauthorized"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "AccessDeniedException"
            | "IncompleteSignatureException"
            | "MissingAuthenticationTokenException"
    )
}

/// Classifies a send error for the operator.
pub fn classify(err: &SendError, secrets: &BTreeMap<String, Secret>) -> TestError {
    let (kind, code, message) = match err {
        SendError::Permanent {
            code,
            reason,
            contact_invalid,
        } => {
            let kind = if is_auth_code(code) {
                TestFailure::AuthFailure
            } else if *contact_invalid || code == "10001" {
                TestFailure::InvalidRecipient
            } else {
                TestFailure::Rejected
            };
            (kind, code.clone(), reason.clone())
        }
        SendError::Transient {
            retry_after,
            reason,
        } => {
            let lower = reason.to_ascii_lowercase();
            let kind = if lower.contains("timed out") || lower.starts_with("timeout") {
                TestFailure::Timeout
            } else if lower.contains("connection failed")
                || lower.contains("cannot connect")
                || lower.contains("connection refused")
                || lower.contains("dns error")
            {
                TestFailure::Unreachable
            } else if retry_after.is_some()
                || lower.contains("429")
                || lower.contains("rate limit")
                || lower.contains("throttl")
            {
                TestFailure::RateLimited
            } else {
                TestFailure::ProviderError
            };
            (kind, "transient".to_owned(), reason.clone())
        }
        SendError::OutsideWindow => (
            TestFailure::OutsideWindow,
            "outside_window".to_owned(),
            "WhatsApp accepts free text only within 24 hours of the number's last message; test with a `template`".to_owned(),
        ),
    };
    TestError {
        kind,
        code,
        message: redact(&message, secrets),
    }
}

/// Sends one test message through a channel account and returns what the provider answered.
/// A provider failure is a 200 with `ok: false` and the classified error: the test itself
/// worked. Audited as `channel_account.test`.
#[utoipa::path(post, path = "/channel-accounts/{id}/test", tag = "channels", params(("id" = i64, Path)),
    request_body = TestSendInput,
    responses((status = 200, body = TestSendOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn test_account(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(input): ApiJson<TestSendInput>,
) -> ApiResult<Json<TestSendOut>> {
    user.require(Permission::ChannelsManage)?;
    let row = {
        let mut conn = state.db.pool().acquire().await?;
        accounts::get(&mut conn, user.account_id, id)
            .await
            .map_err(|e| match e {
                crate::db::DbError::NotFound => ApiError::NotFound("channel account"),
                other => other.into(),
            })?
    };
    let provider = row.provider();
    let channel = provider.channel();
    let mut problems = Problems::default();
    let to = recipient(channel, input.to.as_deref(), &mut problems);
    let text = input
        .message
        .as_deref()
        .map(str::trim)
        .unwrap_or(DEFAULT_MESSAGE);
    if text.is_empty() || text.chars().count() > MAX_MESSAGE_CHARS {
        problems.add(
            "message",
            "invalid_length",
            format!("message must have 1 to {MAX_MESSAGE_CHARS} characters"),
        );
    }
    if let Some(t) = &input.template {
        if channel != Channel::Whatsapp {
            problems.add(
                "template",
                "not_allowed",
                format!(
                    "templates are for WhatsApp accounts; this is a {} account",
                    channel.as_str()
                ),
            );
        }
        if t.name.trim().is_empty() {
            problems.add("template.name", "required", "give the template's name");
        }
        if t.language.trim().is_empty() {
            problems.add(
                "template.language",
                "required",
                "give the template's language code, e.g. pt_BR",
            );
        }
    }
    problems.into_result()?;

    let registry = state
        .channels
        .registry()
        .ok_or_else(|| ApiError::Unavailable("channel accounts are not available".into()))?;
    let secrets = row.decrypt(&state.secrets).unwrap_or_default();
    let started = Instant::now();
    let (to_text, result) = match registry.get(id).await {
        Err(e) => (
            match &to {
                Some(Recipient::Email { address, .. }) => address.clone(),
                Some(Recipient::Phone { e164 }) => e164.clone(),
                Some(Recipient::External { user_ext_id }) => user_ext_id.clone(),
                _ => row
                    .settings()
                    .get("url")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            Err(TestError {
                kind: TestFailure::Configuration,
                code: "adapter".into(),
                message: redact(&format!("{e:#}"), &secrets),
            }),
        ),
        Ok(None) => return Err(ApiError::NotFound("channel account")),
        Ok(Some(built)) => {
            let to = match to {
                Some(to) => to,
                None => Recipient::Url {
                    url: built.webhook_url.clone().unwrap_or_default(),
                },
            };
            let to_text = match &to {
                Recipient::Email { address, .. } => address.clone(),
                Recipient::Phone { e164 } => e164.clone(),
                Recipient::Url { url } => url.clone(),
                Recipient::External { user_ext_id } => user_ext_id.clone(),
            };
            let mut msg = OutboundMessage::new(
                to,
                content(provider, text, input.template.as_ref(), id),
                format!("test:{id}:{}", uuid::Uuid::new_v4().simple()),
            );
            msg.metadata.insert("test".into(), "true".into());
            // Straight to the adapter: a test is not a campaign send, so the account's circuit
            // breaker neither holds it nor counts it.
            let result = built
                .channel
                .send(&msg)
                .await
                .map_err(|e| classify(&e, &secrets));
            (to_text, result)
        }
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let out = match result {
        Ok(receipt) => TestSendOut {
            ok: true,
            provider,
            to: to_text,
            provider_message_id: Some(receipt.provider_message_id),
            provider_status: receipt.status.map(|s| redact(&s, &secrets)),
            error: None,
            duration_ms,
        },
        Err(error) => TestSendOut {
            ok: false,
            provider,
            to: to_text,
            provider_message_id: None,
            provider_status: None,
            error: Some(error),
            duration_ms,
        },
    };
    match &out.error {
        None => tracing::info!(
            channel_account = id,
            provider = provider.as_str(),
            "test send accepted"
        ),
        Some(e) => {
            tracing::warn!(channel_account = id, provider = provider.as_str(), kind = ?e.kind, code = %e.code, "test send failed")
        }
    }
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "channel_account.test",
        "channel_account",
        id,
        audit::NONE,
        Some(&json!({
            "to": out.to,
            "ok": out.ok,
            "provider_message_id": out.provider_message_id,
            "error": out.error,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, Secret> {
        BTreeMap::from([("api_key".to_owned(), Secret::new("SG.super-secret-key"))])
    }

    #[test]
    fn errors_are_classified_for_the_operator() {
        let s = secrets();
        let kind = |e: SendError| classify(&e, &s).kind;
        assert_eq!(
            kind(SendError::permanent("http_401", "HTTP 401: bad key")),
            TestFailure::AuthFailure
        );
        assert_eq!(
            kind(SendError::permanent("smtp_535", "535 5.7.8 auth failed")),
            TestFailure::AuthFailure
        );
        assert_eq!(
            kind(SendError::invalid_contact("21211", "not a valid number")),
            TestFailure::InvalidRecipient
        );
        assert_eq!(
            kind(SendError::transient(
                "connection failed: error sending request"
            )),
            TestFailure::Unreachable
        );
        assert_eq!(
            kind(SendError::transient(
                "cannot connect to 127.0.0.1:1: refused"
            )),
            TestFailure::Unreachable
        );
        assert_eq!(
            kind(SendError::transient("timeout: operation timed out")),
            TestFailure::Timeout
        );
        assert_eq!(
            kind(SendError::transient(
                "SMTP transaction with h:25 timed out after 5s"
            )),
            TestFailure::Timeout
        );
        assert_eq!(
            kind(SendError::transient("HTTP 429 Too Many Requests: slow")),
            TestFailure::RateLimited
        );
        assert_eq!(
            kind(SendError::transient("HTTP 503 Service Unavailable: down")),
            TestFailure::ProviderError
        );
        assert_eq!(kind(SendError::OutsideWindow), TestFailure::OutsideWindow);
        assert_eq!(
            kind(SendError::permanent("131009", "parameter invalid")),
            TestFailure::Rejected
        );
    }

    #[test]
    fn secrets_never_reach_the_message() {
        let e = classify(
            &SendError::transient(
                "connection failed: http://wpp.test/api/s1/SG.super-secret-key/generate-token",
            ),
            &secrets(),
        );
        assert!(!e.message.contains("super-secret"), "{}", e.message);
        assert!(e.message.contains("[redacted]"));
    }

    #[test]
    fn recipients_are_checked_per_channel() {
        let mut p = Problems::default();
        assert_eq!(
            recipient(Channel::Email, Some(" Ana@Example.com "), &mut p),
            Some(Recipient::email("ana@example.com"))
        );
        assert_eq!(
            recipient(Channel::Sms, Some("+5511987654321"), &mut p),
            Some(Recipient::phone("+5511987654321"))
        );
        assert!(p.is_empty());
        for (channel, to) in [
            (Channel::Email, Some("not-an-email")),
            (Channel::Email, None),
            (Channel::Whatsapp, Some("11987654321")),
            (Channel::Sms, Some("+55 11 98765-4321")),
            (Channel::Sms, Some("+0123456789")),
            (Channel::Sms, Some("+1234567")),
            (Channel::Webhook, Some("https://x.test")),
        ] {
            let mut p = Problems::default();
            assert_eq!(recipient(channel, to, &mut p), None);
            assert!(!p.is_empty(), "{channel:?} {to:?} accepted");
        }
        let mut p = Problems::default();
        assert_eq!(recipient(Channel::Webhook, None, &mut p), None);
        assert!(p.is_empty());
    }
}
