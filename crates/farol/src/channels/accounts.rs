//! Channel accounts: one provider account (SMTP, SendGrid, SES, Meta WhatsApp Cloud API,
//! WPPConnect, Twilio, outbound webhook, Smartico label) per row, with its non-secret settings in clear and its
//! secrets encrypted field by field (farol-channels' `CredentialCipher`, context
//! `channel_account:<id>:<field>`). Secrets are write-only: the API says which are set, never
//! their values, and neither logs nor audit entries carry them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use farol_channels::Secret;
use farol_channels::credentials::CredentialCipher;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Problems};
use crate::audit::{self, Actor};
use crate::auth::{AuthUser, Permission};
use crate::campaign::templates::Channel;
use crate::db::{DbError, DbResult, Tx, format_ms, now_ms};
use crate::state::AppState;

/// A provider behind a channel account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// E-mail over SMTP.
    Smtp,
    /// E-mail through SendGrid's v3 API.
    Sendgrid,
    /// E-mail through Amazon SES v2.
    Ses,
    /// WhatsApp through Meta's Cloud API.
    Meta,
    /// WhatsApp through a WPPConnect server (sessions of WhatsApp Web).
    Wppconnect,
    /// SMS through Twilio's Messages API.
    Twilio,
    /// A signed JSON POST to your endpoint.
    Webhook,
    /// Events to a Smartico label (external events API).
    Smartico,
}

/// What kind of value a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A non-empty string.
    Text,
    /// An `http(s)://` URL.
    Url,
    /// A positive integer.
    Int,
    /// A non-empty list of non-empty strings.
    List,
}

/// One field of a provider's settings or secrets.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Name.
    pub name: &'static str,
    /// Stored encrypted, never shown.
    pub secret: bool,
    /// Must be set.
    pub required: bool,
    /// Value kind.
    pub kind: Kind,
}

const fn setting(name: &'static str, required: bool, kind: Kind) -> Field {
    Field {
        name,
        secret: false,
        required,
        kind,
    }
}

const fn secret(name: &'static str, required: bool) -> Field {
    Field {
        name,
        secret: true,
        required,
        kind: Kind::Text,
    }
}

const TIMEOUT: Field = setting("timeout_secs", false, Kind::Int);

use Kind::{Int, List, Text, Url};

const SMTP_FIELDS: &[Field] = &[
    setting("host", true, Text),
    setting("port", false, Int),
    setting("security", false, Text),
    setting("username", false, Text),
    setting("from", true, Text),
    setting("bounce_address", false, Text),
    TIMEOUT,
    secret("password", false),
    secret("dsn_secret", false),
];

const SENDGRID_FIELDS: &[Field] = &[
    setting("from_email", true, Text),
    setting("from_name", false, Text),
    setting("base_url", false, Url),
    setting("webhook_public_key", false, Text),
    TIMEOUT,
    secret("api_key", true),
];

const SES_FIELDS: &[Field] = &[
    setting("region", true, Text),
    setting("from", true, Text),
    setting("access_key_id", true, Text),
    setting("configuration_set", false, Text),
    setting("endpoint", false, Url),
    setting("sns_topic_arns", false, List),
    TIMEOUT,
    secret("secret_access_key", true),
];

const META_FIELDS: &[Field] = &[
    setting("phone_number_id", true, Text),
    setting("api_version", false, Text),
    setting("base_url", false, Url),
    TIMEOUT,
    secret("access_token", true),
    secret("app_secret", true),
    secret("verify_token", false),
];

const WPPCONNECT_FIELDS: &[Field] = &[
    setting("base_url", true, Url),
    setting("sessions", true, List),
    TIMEOUT,
    secret("secret_key", true),
    secret("webhook_token", true),
];

const TWILIO_FIELDS: &[Field] = &[
    setting("account_sid", true, Text),
    setting("from", false, Text),
    setting("messaging_service_sid", false, Text),
    setting("base_url", false, Url),
    setting("status_callback", false, Url),
    TIMEOUT,
    secret("auth_token", true),
];

const WEBHOOK_FIELDS: &[Field] = &[setting("url", true, Url), TIMEOUT, secret("secret", true)];

const SMARTICO_FIELDS: &[Field] = &[
    setting("base_url", true, Url),
    setting("ext_brand_id", false, Text),
    TIMEOUT,
    secret("label_token", true),
];

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 8] = [
        Provider::Smtp,
        Provider::Sendgrid,
        Provider::Ses,
        Provider::Meta,
        Provider::Wppconnect,
        Provider::Twilio,
        Provider::Webhook,
        Provider::Smartico,
    ];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Smtp => "smtp",
            Provider::Sendgrid => "sendgrid",
            Provider::Ses => "ses",
            Provider::Meta => "meta",
            Provider::Wppconnect => "wppconnect",
            Provider::Twilio => "twilio",
            Provider::Webhook => "webhook",
            Provider::Smartico => "smartico",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The channel this provider sends through.
    pub fn channel(self) -> Channel {
        match self {
            Provider::Smtp | Provider::Sendgrid | Provider::Ses => Channel::Email,
            Provider::Meta | Provider::Wppconnect => Channel::Whatsapp,
            Provider::Twilio => Channel::Sms,
            Provider::Webhook => Channel::Webhook,
            Provider::Smartico => Channel::Smartico,
        }
    }

    /// The provider's settings and secrets (docs/channels.md lists them).
    pub fn fields(self) -> &'static [Field] {
        match self {
            Provider::Smtp => SMTP_FIELDS,
            Provider::Sendgrid => SENDGRID_FIELDS,
            Provider::Ses => SES_FIELDS,
            Provider::Meta => META_FIELDS,
            Provider::Wppconnect => WPPCONNECT_FIELDS,
            Provider::Twilio => TWILIO_FIELDS,
            Provider::Webhook => WEBHOOK_FIELDS,
            Provider::Smartico => SMARTICO_FIELDS,
        }
    }
}

/// A channel account as stored (secrets still encrypted).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    /// Id.
    pub id: i64,
    /// Tenant.
    pub account_id: i64,
    /// Name, unique in the tenant.
    pub name: String,
    /// Channel name.
    pub channel: String,
    /// Provider name.
    pub provider: String,
    /// JSON settings.
    pub settings: String,
    /// JSON {field: ciphertext}.
    pub secrets: String,
    /// The tenant's default account for its channel.
    pub is_default: i64,
    /// Sends may use it.
    pub enabled: i64,
    /// Creation (epoch ms).
    pub created_at: i64,
    /// Last change (epoch ms): adapters built from the row are rebuilt when it moves.
    pub updated_at: i64,
}

impl AccountRow {
    /// The provider.
    pub fn provider(&self) -> Provider {
        Provider::parse(&self.provider).unwrap_or(Provider::Webhook)
    }

    /// The settings object.
    pub fn settings(&self) -> Map<String, Value> {
        serde_json::from_str(&self.settings).unwrap_or_default()
    }

    /// The encrypted secrets by field.
    pub fn encrypted(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.secrets).unwrap_or_default()
    }

    /// Decrypts every secret.
    pub fn decrypt(
        &self,
        cipher: &CredentialCipher,
    ) -> Result<BTreeMap<String, Secret>, farol_channels::credentials::CryptoError> {
        self.encrypted()
            .into_iter()
            .map(|(field, enc)| {
                let plain = cipher.decrypt(&enc, &context(self.id, &field))?;
                Ok((field, plain))
            })
            .collect()
    }
}

/// The associated data binding a secret to its row and field.
pub fn context(id: i64, field: &str) -> String {
    format!("channel_account:{id}:{field}")
}

const COLUMNS: &str = "id, account_id, name, channel, provider, settings, secrets, is_default, enabled, created_at, updated_at";

/// One channel account of a tenant.
pub async fn get(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<AccountRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from channel_accounts where account_id = $1 and id = $2"
    )))
    .bind(account_id)
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// One channel account, whatever its tenant (workers, webhooks).
pub async fn get_any(conn: &mut AnyConnection, id: i64) -> DbResult<Option<AccountRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from channel_accounts where id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// The tenant's enabled default account of a channel.
pub async fn default_for(
    conn: &mut AnyConnection,
    account_id: i64,
    channel: Channel,
) -> DbResult<Option<AccountRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from channel_accounts where account_id = $1 and channel = $2 and is_default = 1 and enabled = 1"
    )))
    .bind(account_id)
    .bind(channel.as_str())
    .fetch_optional(conn)
    .await?)
}

/// A channel account, as the API shows it. Secrets are never shown: `secrets_set` names the
/// secret fields that have a value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountOut {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Channel.
    pub channel: Channel,
    /// Provider.
    pub provider: Provider,
    /// Non-secret settings.
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Secret fields that are set (their values are never returned).
    pub secrets_set: Vec<String>,
    /// The default account for its channel (campaigns without a `channel_account_id`).
    pub is_default: bool,
    /// Sends may use it.
    pub enabled: bool,
    /// Where to point the provider's webhooks (relative to `campaign.public_url`); `null`
    /// for providers that send none (Smartico).
    pub webhook_path: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// The webhook path of an account (docs/channels.md), if its provider sends webhooks.
pub fn webhook_path(provider: Provider, id: i64) -> Option<String> {
    match provider {
        Provider::Wppconnect => Some(format!("/api/v1/webhooks/wppconnect/{id}/<webhook_token>")),
        Provider::Smtp => Some(format!("/api/v1/webhooks/smtp/{id}/dsn")),
        Provider::Smartico => None,
        p => Some(format!("/api/v1/webhooks/{}/{id}", p.as_str())),
    }
}

impl From<AccountRow> for AccountOut {
    fn from(r: AccountRow) -> Self {
        let provider = r.provider();
        AccountOut {
            id: r.id,
            channel: provider.channel(),
            provider,
            settings: r.settings(),
            secrets_set: r.encrypted().into_keys().collect(),
            is_default: r.is_default != 0,
            enabled: r.enabled != 0,
            webhook_path: webhook_path(provider, r.id),
            name: r.name,
            created_at: format_ms(r.created_at),
            updated_at: format_ms(r.updated_at),
        }
    }
}

/// Body of `POST /channel-accounts`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    /// Name (1–200 characters), unique in the account.
    pub name: String,
    /// Provider; decides the channel.
    pub provider: Provider,
    /// Channel; optional, must match the provider's.
    pub channel: Option<Channel>,
    /// Non-secret settings (per provider).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Secrets (per provider), stored encrypted.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub secrets: Map<String, Value>,
    /// Make it the default account of its channel.
    #[serde(default)]
    pub is_default: bool,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Body of `PATCH /channel-accounts/{id}`. `settings` and `secrets` are merged into the
/// stored ones; a `null` value removes a field.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    /// New name.
    pub name: Option<String>,
    /// Settings to change (`null` removes one).
    #[schema(value_type = Object)]
    pub settings: Option<Map<String, Value>>,
    /// Secrets to change (`null` removes one).
    #[schema(value_type = Object)]
    pub secrets: Option<Map<String, Value>>,
    /// Make it (or stop it being) the default of its channel.
    pub is_default: Option<bool>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Checks settings and secrets against the provider's fields, naming each bad one
/// (`settings.phone_number_id`, `secrets.access_token`). Every provider also takes `rate`
/// (`{per_second, per_minute, per_day}`, see [`crate::campaign::pacing`]).
pub fn validate(
    provider: Provider,
    settings: &Map<String, Value>,
    secrets: &BTreeMap<String, Secret>,
    problems: &mut Problems,
) {
    let fields = provider.fields();
    for (k, v) in settings {
        // Every provider's sends can be paced (docs/campaigns.md, "Pacing per sender account").
        if k == "rate" {
            crate::campaign::pacing::check(v, problems);
            continue;
        }
        match fields.iter().find(|f| f.name == k) {
            None => problems.add(
                format!("settings.{k}"),
                "unknown_field",
                format!(
                    "{} accounts have no setting `{k}`; settings: {}",
                    provider.as_str(),
                    names(fields, false)
                ),
            ),
            Some(f) if f.secret => problems.add(
                format!("settings.{k}"),
                "secret_in_settings",
                format!("`{k}` is a secret: send it in `secrets`, where it is stored encrypted"),
            ),
            Some(f) => {
                if let Err(msg) = check_kind(f.kind, v) {
                    problems.add(format!("settings.{k}"), "invalid", msg);
                }
            }
        }
    }
    for k in secrets.keys() {
        match fields.iter().find(|f| f.name == k) {
            Some(f) if f.secret => {}
            _ => problems.add(
                format!("secrets.{k}"),
                "unknown_field",
                format!(
                    "{} accounts have no secret `{k}`; secrets: {}",
                    provider.as_str(),
                    names(fields, true)
                ),
            ),
        }
    }
    for f in fields.iter().filter(|f| f.required) {
        let present = if f.secret {
            secrets.contains_key(f.name)
        } else {
            settings.get(f.name).is_some_and(|v| !v.is_null())
        };
        if !present {
            let place = if f.secret { "secrets" } else { "settings" };
            problems.add(
                format!("{place}.{}", f.name),
                "required",
                format!("{} accounts need `{}`", provider.as_str(), f.name),
            );
        }
    }
    match provider {
        Provider::Smtp => {
            if let Some(s) = settings.get("security").and_then(Value::as_str)
                && !["tls", "starttls", "opportunistic", "none"].contains(&s)
            {
                problems.add(
                    "settings.security",
                    "invalid",
                    "security must be tls, starttls, opportunistic or none",
                );
            }
            super::dsn::validate(settings, secrets, problems);
        }
        Provider::Twilio => {
            let from = settings.get("from").is_some_and(|v| !v.is_null());
            let service = settings
                .get("messaging_service_sid")
                .is_some_and(|v| !v.is_null());
            if from == service {
                problems.add(
                    "settings.from",
                    "required",
                    "set exactly one of `from` (a number or sender id) and `messaging_service_sid`",
                );
            }
        }
        Provider::Wppconnect => {
            if let Some(list) = settings.get("sessions").and_then(Value::as_array) {
                for (i, s) in list.iter().enumerate() {
                    let ok = s.as_str().is_some_and(|s| {
                        !s.is_empty()
                            && s.len() <= 100
                            && s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                    if !ok {
                        problems.add(
                            format!("settings.sessions[{i}]"),
                            "invalid",
                            "session names use letters, digits, - and _ (at most 100)",
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

fn names(fields: &[Field], secret: bool) -> String {
    fields
        .iter()
        .filter(|f| f.secret == secret)
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_kind(kind: Kind, v: &Value) -> Result<(), String> {
    match kind {
        Kind::Text => match v.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(()),
            _ => Err("must be a non-empty string".into()),
        },
        Kind::Url => match v.as_str() {
            Some(s) if s.starts_with("https://") || s.starts_with("http://") => Ok(()),
            _ => Err("must be an http:// or https:// URL".into()),
        },
        Kind::Int => match v.as_u64() {
            Some(n) if n > 0 => Ok(()),
            _ => Err("must be a positive integer".into()),
        },
        Kind::List => match v.as_array() {
            Some(a)
                if !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Ok(())
            }
            _ => Err("must be a non-empty list of strings".into()),
        },
    }
}

fn secret_values(
    raw: &Map<String, Value>,
    problems: &mut Problems,
) -> BTreeMap<String, Option<Secret>> {
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        match v {
            Value::Null => {
                out.insert(k.clone(), None);
            }
            Value::String(s) if !s.is_empty() => {
                out.insert(k.clone(), Some(Secret::new(s.clone())));
            }
            _ => problems.add(
                format!("secrets.{k}"),
                "invalid",
                "a secret is a non-empty string (null removes it)",
            ),
        }
    }
    out
}

fn check_name(name: &str, problems: &mut Problems) {
    if name.is_empty() || name.chars().count() > 200 {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 200 characters",
        );
    }
}

/// Writes settings and encrypted secrets of account `id`.
async fn store_secrets(
    tx: &mut Tx,
    cipher: &CredentialCipher,
    id: i64,
    secrets: &BTreeMap<String, Secret>,
) -> DbResult<()> {
    let enc: BTreeMap<&str, String> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), cipher.encrypt(v, &context(id, k))))
        .collect();
    sqlx::query("update channel_accounts set secrets = $1 where id = $2")
        .bind(serde_json::to_string(&enc).expect("map serializes"))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn clear_other_defaults(
    tx: &mut Tx,
    account_id: i64,
    channel: Channel,
    id: i64,
) -> DbResult<()> {
    sqlx::query(
        "update channel_accounts set is_default = 0, updated_at = $1 where account_id = $2 and channel = $3 and id <> $4 and is_default = 1",
    )
    .bind(now_ms())
    .bind(account_id)
    .bind(channel.as_str())
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What the audit log keeps of an account: never secret values.
fn audit_view(r: &AccountRow) -> Value {
    serde_json::json!({
        "name": r.name,
        "provider": r.provider,
        "settings": r.settings(),
        "secrets_set": r.encrypted().into_keys().collect::<Vec<_>>(),
        "is_default": r.is_default != 0,
        "enabled": r.enabled != 0,
    })
}

fn not_found(e: DbError) -> ApiError {
    match e {
        DbError::NotFound => ApiError::NotFound("channel account"),
        other => other.into(),
    }
}

/// Creates a channel account (API).
pub async fn create(state: &AppState, actor: &Actor, input: AccountInput) -> ApiResult<AccountOut> {
    let mut problems = Problems::default();
    let name = input.name.trim().to_owned();
    check_name(&name, &mut problems);
    if let Some(c) = input.channel
        && c != input.provider.channel()
    {
        problems.add(
            "channel",
            "wrong_channel",
            format!(
                "{} accounts send by {}",
                input.provider.as_str(),
                input.provider.channel().as_str()
            ),
        );
    }
    let secrets: BTreeMap<String, Secret> = secret_values(&input.secrets, &mut problems)
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    validate(input.provider, &input.settings, &secrets, &mut problems);
    problems.into_result()?;
    super::registry::check_buildable(input.provider, &input.settings, &secrets)?;
    let channel = input.provider.channel();
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "insert into channel_accounts (account_id, name, channel, provider, settings, secrets, is_default, enabled, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, '{}', $6, $7, $8, $8) returning id",
    )
    .bind(actor.account_id)
    .bind(name)
    .bind(channel.as_str())
    .bind(input.provider.as_str())
    .bind(Value::Object(input.settings).to_string())
    .bind(i64::from(input.is_default))
    .bind(i64::from(input.enabled.unwrap_or(true)))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(DbError::from)?;
    store_secrets(&mut tx, &state.secrets, id, &secrets).await?;
    if input.is_default {
        clear_other_defaults(&mut tx, actor.account_id, channel, id).await?;
    }
    let row = get(&mut tx, actor.account_id, id).await?;
    audit::record(
        &mut tx,
        actor,
        "channel_account.create",
        "channel_account",
        id,
        audit::NONE,
        Some(&audit_view(&row)),
    )
    .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// Lists the channel accounts of the caller's account.
#[utoipa::path(get, path = "/channel-accounts", tag = "channels",
    responses((status = 200, body = Vec<AccountOut>)), security(("bearer" = [])))]
pub async fn list_accounts(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<AccountOut>>> {
    user.require(Permission::ChannelsManage)?;
    let rows: Vec<AccountRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from channel_accounts where account_id = $1 order by id"
    )))
    .bind(user.account_id)
    .fetch_all(state.db.pool())
    .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Creates a channel account. Settings and secrets are checked per provider (422 naming the
/// field); secrets are stored encrypted and never returned.
#[utoipa::path(post, path = "/channel-accounts", tag = "channels", request_body = AccountInput,
    responses((status = 201, body = AccountOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_account(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<AccountInput>,
) -> ApiResult<(StatusCode, Json<AccountOut>)> {
    user.require(Permission::ChannelsManage)?;
    let out = create(&state, &user.actor(), body).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// One channel account.
#[utoipa::path(get, path = "/channel-accounts/{id}", tag = "channels", params(("id" = i64, Path)),
    responses((status = 200, body = AccountOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_account(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<AccountOut>> {
    user.require(Permission::ChannelsManage)?;
    let mut conn = state.db.pool().acquire().await?;
    let row = get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    Ok(Json(row.into()))
}

/// Changes a channel account; settings and secrets are merged (`null` removes a field) and
/// the result is checked as a whole.
#[utoipa::path(patch, path = "/channel-accounts/{id}", tag = "channels", params(("id" = i64, Path)), request_body = AccountPatch,
    responses((status = 200, body = AccountOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_account(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<AccountPatch>,
) -> ApiResult<Json<AccountOut>> {
    user.require(Permission::ChannelsManage)?;
    let mut tx = state.db.begin().await?;
    let before = get(&mut tx, user.account_id, id).await.map_err(not_found)?;
    let provider = before.provider();
    let mut problems = Problems::default();
    let name = patch
        .name
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|| before.name.clone());
    check_name(&name, &mut problems);
    let mut settings = before.settings();
    for (k, v) in patch.settings.unwrap_or_default() {
        if v.is_null() {
            settings.remove(&k);
        } else {
            settings.insert(k, v);
        }
    }
    let mut secrets = before
        .decrypt(&state.secrets)
        .map_err(|e| anyhow::anyhow!("channel account {id}: cannot decrypt its secrets: {e}"))?;
    for (k, v) in secret_values(&patch.secrets.unwrap_or_default(), &mut problems) {
        match v {
            Some(v) => {
                secrets.insert(k, v);
            }
            None => {
                secrets.remove(&k);
            }
        }
    }
    validate(provider, &settings, &secrets, &mut problems);
    problems.into_result()?;
    super::registry::check_buildable(provider, &settings, &secrets)?;
    let is_default = patch.is_default.unwrap_or(before.is_default != 0);
    let enabled = patch.enabled.unwrap_or(before.enabled != 0);
    sqlx::query(
        "update channel_accounts set name = $1, settings = $2, is_default = $3, enabled = $4, updated_at = $5 where id = $6",
    )
    .bind(name)
    .bind(Value::Object(settings).to_string())
    .bind(i64::from(is_default))
    .bind(i64::from(enabled))
    // Strictly later than before, so every process's cache sees the change.
    .bind(now_ms().max(before.updated_at + 1))
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    store_secrets(&mut tx, &state.secrets, id, &secrets).await?;
    if is_default {
        clear_other_defaults(&mut tx, user.account_id, provider.channel(), id).await?;
    }
    let after = get(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "channel_account.update",
        "channel_account",
        id,
        Some(&audit_view(&before)),
        Some(&audit_view(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

/// Deletes a channel account no unfinished campaign uses.
#[utoipa::path(delete, path = "/channel-accounts/{id}", tag = "channels", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_account(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::ChannelsManage)?;
    let mut tx = state.db.begin().await?;
    let before = get(&mut tx, user.account_id, id).await.map_err(not_found)?;
    let busy: Option<i64> = sqlx::query_scalar(
        "select distinct c.id from campaigns c where c.status in ('draft', 'scheduled', 'running', 'paused') and \
         (c.channel_account_id = $1 or exists (select 1 from campaign_recipients r where r.campaign_id = c.id \
          and r.channel_account_id = $1 and r.status in ('queued', 'sending'))) limit 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(c) = busy {
        return Err(ApiError::Conflict {
            field: "id".into(),
            message: format!(
                "campaign {c} sends through this account; disable it instead, or wait until the campaign ends"
            ),
        });
    }
    audit::delete_audited(
        &mut tx,
        &user.actor(),
        "channel_accounts",
        "channel_account",
        id,
        &audit_view(&before),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
