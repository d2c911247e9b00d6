//! Message templates per channel (e-mail subject + HTML/text, WhatsApp or SMS body), validated
//! against the account's variables when saved, previewed for a chosen client.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use farol_channels::template::{
    EmailTemplate, JsonTemplate, KnownVariables, RenderContext, SmsTemplate, TemplateEngine,
    TemplateError,
};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::render::{self, Rendered};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Problems};
use crate::audit::{self, Actor};
use crate::auth::{AuthUser, Permission};
use crate::db::{Db, DbError, DbResult, format_ms, now_ms};
use crate::state::AppState;

/// The channel a template (and a campaign) sends through.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// E-mail.
    #[default]
    Email,
    /// WhatsApp (free text, or a provider template outside the 24-hour window).
    Whatsapp,
    /// SMS.
    Sms,
    /// A signed JSON POST to a channel account's endpoint.
    Webhook,
    /// An event pushed to Smartico (its journeys act on it), addressed by the client's
    /// external id.
    Smartico,
    /// Campaigns only: each client on its preferred channel, with fallback.
    Auto,
}

impl Channel {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Whatsapp => "whatsapp",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
            Channel::Smartico => "smartico",
            Channel::Auto => "auto",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "whatsapp" => Some(Channel::Whatsapp),
            "sms" => Some(Channel::Sms),
            "webhook" => Some(Channel::Webhook),
            "smartico" => Some(Channel::Smartico),
            "auto" => Some(Channel::Auto),
            _ => None,
        }
    }
}

/// A template as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    /// Id.
    pub id: i64,
    /// Account.
    pub account_id: i64,
    /// Name.
    pub name: String,
    /// Channel name.
    pub channel: String,
    /// E-mail subject.
    pub subject: Option<String>,
    /// E-mail HTML.
    pub html: Option<String>,
    /// E-mail text.
    pub text: Option<String>,
    /// WhatsApp/SMS body.
    pub body: Option<String>,
    /// WhatsApp: JSON of the [`ProviderTemplate`].
    pub provider_template: Option<String>,
    /// Smartico: JSON of the [`SmarticoEventSpec`] (the payload template is `body`).
    pub smartico_event: Option<String>,
    /// Creation (epoch ms).
    pub created_at: i64,
    /// Last change (epoch ms).
    pub updated_at: i64,
}

impl TemplateRow {
    /// The channel.
    pub fn channel(&self) -> Channel {
        Channel::parse(&self.channel).unwrap_or(Channel::Email)
    }

    /// The WhatsApp provider template, when declared.
    pub fn provider_template(&self) -> Option<ProviderTemplate> {
        self.provider_template
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    }

    /// The Smartico event, for a Smartico template.
    pub fn smartico_event(&self) -> Option<SmarticoEventSpec> {
        self.smartico_event
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    }
}

/// What a Smartico template sends: the event type and, for a `client_action`, the action's
/// name (put in the payload as `action`). The payload itself is the template's `body`, a JSON
/// object template whose printed values are JSON-escaped (`{"bonus": {{ cf.bonus }}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmarticoEventSpec {
    /// `client_action` or `update_profile`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "client_action")]
    pub event_type: farol_channels::smartico::EventType,
    /// `client_action`: the action name Smartico journeys trigger on (`farol_oferta_bonus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A WhatsApp message template approved at Meta, sent instead of free text outside the
/// 24-hour customer-service window. Parameters are Farol templates (`{{ nome }}`), rendered
/// per client and validated like every other part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderTemplate {
    /// Template name as approved at Meta (`boas_vindas`).
    pub name: String,
    /// Language code (`pt_BR`).
    pub language: String,
    /// Body parameters in order (`{{1}}`, `{{2}}`...).
    #[serde(default)]
    pub body_parameters: Vec<String>,
    /// Header text parameters in order.
    #[serde(default)]
    pub header_parameters: Vec<String>,
}

/// A template, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateOut {
    /// Id.
    pub id: i64,
    /// Name, unique in the account.
    pub name: String,
    /// Channel.
    pub channel: Channel,
    /// E-mail subject template.
    pub subject: Option<String>,
    /// E-mail HTML template.
    pub html: Option<String>,
    /// E-mail text template (derived from the HTML when absent).
    pub text: Option<String>,
    /// WhatsApp or SMS body template.
    pub body: Option<String>,
    /// WhatsApp: the provider template sent outside the 24-hour window.
    pub provider_template: Option<ProviderTemplate>,
    /// Smartico: the event type and action (the payload template is `body`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<SmarticoEventSpec>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl From<TemplateRow> for TemplateOut {
    fn from(r: TemplateRow) -> Self {
        TemplateOut {
            provider_template: r.provider_template(),
            event: r.smartico_event(),
            id: r.id,
            channel: r.channel(),
            name: r.name,
            subject: r.subject,
            html: r.html,
            text: r.text,
            body: r.body,
            created_at: format_ms(r.created_at),
            updated_at: format_ms(r.updated_at),
        }
    }
}

/// Body of `POST /templates`; also the full state a `PATCH` produces.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// Name (1–200 characters), unique in the account.
    pub name: String,
    /// Channel.
    pub channel: Channel,
    /// E-mail: subject template (required).
    pub subject: Option<String>,
    /// E-mail: HTML template (HTML or text required).
    pub html: Option<String>,
    /// E-mail: text template.
    pub text: Option<String>,
    /// WhatsApp/SMS/webhook: body template (required, except for WhatsApp with a provider
    /// template).
    pub body: Option<String>,
    /// WhatsApp: a template approved at Meta, sent outside the 24-hour window.
    pub provider_template: Option<ProviderTemplate>,
    /// Smartico: the event type and action; `body` is then the payload, a JSON object
    /// template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<SmarticoEventSpec>,
}

/// Body of `PATCH /templates/{id}`: fields to change (the channel cannot change).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatePatch {
    /// New name.
    pub name: Option<String>,
    /// New subject.
    pub subject: Option<String>,
    /// New HTML (empty string: remove).
    pub html: Option<String>,
    /// New text (empty string: remove).
    pub text: Option<String>,
    /// New body.
    pub body: Option<String>,
    /// New provider template (WhatsApp).
    pub provider_template: Option<ProviderTemplate>,
    /// New event type and action (Smartico).
    pub event: Option<SmarticoEventSpec>,
}

fn blank_to_none(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Checks a template's shape and variables, naming each bad field (`html`: unknown variables
/// `apelido, cf.desconto`).
pub fn validate(input: &mut TemplateInput, known: &KnownVariables) -> ApiResult<()> {
    let mut problems = Problems::default();
    input.name = input.name.trim().to_owned();
    if input.name.is_empty() || input.name.chars().count() > 200 {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 200 characters",
        );
    }
    input.subject = blank_to_none(input.subject.take());
    input.html = blank_to_none(input.html.take());
    input.text = blank_to_none(input.text.take());
    input.body = blank_to_none(input.body.take());
    let engine = TemplateEngine::default();
    fn check(problems: &mut Problems, field: &str, result: Result<(), TemplateError>) {
        match result {
            Ok(()) => {}
            Err(TemplateError::UnknownVariables(vars)) => problems.add(
                field,
                "unknown_variables",
                format!("unknown variables: {}", vars.join(", ")),
            ),
            Err(TemplateError::Syntax { message, .. }) => {
                problems.add(field, "syntax_error", format!("syntax error: {message}"))
            }
            Err(other) => problems.add(field, "invalid", other.to_string()),
        }
    }
    let email_part = |subject: &str, html: Option<&String>, text: Option<&String>| EmailTemplate {
        subject: subject.to_owned(),
        html: html.cloned(),
        text: text.cloned(),
    };
    match input.channel {
        Channel::Email => {
            match &input.subject {
                Some(s) => check(
                    &mut problems,
                    "subject",
                    engine.validate(&email_part(s, None, None), known),
                ),
                None => problems.add("subject", "required", "an e-mail template needs a subject"),
            }
            if input.html.is_none() && input.text.is_none() {
                problems.add("html", "required", "an e-mail template needs html or text");
            }
            if let Some(h) = &input.html {
                check(
                    &mut problems,
                    "html",
                    engine.validate(&email_part("", Some(h), None), known),
                );
            }
            if let Some(t) = &input.text {
                check(
                    &mut problems,
                    "text",
                    engine.validate(&email_part("", None, Some(t)), known),
                );
            }
            if input.body.is_some() {
                problems.add(
                    "body",
                    "not_allowed",
                    "e-mail templates use subject, html and text",
                );
            }
            if input.provider_template.is_some() {
                problems.add(
                    "provider_template",
                    "not_allowed",
                    "only WhatsApp templates have a provider template",
                );
            }
            not_smartico(input, &mut problems);
        }
        Channel::Auto => problems.add(
            "channel",
            "invalid",
            "auto is for campaigns; make one template per channel",
        ),
        Channel::Smartico => validate_smartico(input, known, &engine, &mut problems),
        Channel::Whatsapp | Channel::Sms | Channel::Webhook => {
            match &input.body {
                Some(b) => check(
                    &mut problems,
                    "body",
                    engine.validate(&SmsTemplate { body: b.clone() }, known),
                ),
                None if input.channel == Channel::Whatsapp && input.provider_template.is_some() => {
                }
                None => problems.add("body", "required", "this channel needs a body"),
            }
            if let Some(p) = &mut input.provider_template {
                if input.channel != Channel::Whatsapp {
                    problems.add(
                        "provider_template",
                        "not_allowed",
                        "only WhatsApp templates have a provider template",
                    );
                }
                p.name = p.name.trim().to_owned();
                p.language = p.language.trim().to_owned();
                if p.name.is_empty()
                    || !p
                        .name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    problems.add(
                        "provider_template.name",
                        "invalid",
                        "the name approved at Meta: lowercase letters, digits and _",
                    );
                }
                if p.language.is_empty() {
                    problems.add(
                        "provider_template.language",
                        "required",
                        "a language code such as pt_BR",
                    );
                }
                for (part, list) in [
                    ("body_parameters", &p.body_parameters),
                    ("header_parameters", &p.header_parameters),
                ] {
                    for (i, v) in list.iter().enumerate() {
                        check(
                            &mut problems,
                            &format!("provider_template.{part}[{i}]"),
                            engine.validate(&SmsTemplate { body: v.clone() }, known),
                        );
                    }
                }
            }
            for (field, v) in [
                ("subject", &input.subject),
                ("html", &input.html),
                ("text", &input.text),
            ] {
                if v.is_some() {
                    problems.add(
                        field,
                        "not_allowed",
                        "only e-mail templates have this field",
                    );
                }
            }
            not_smartico(input, &mut problems);
        }
    }
    problems.into_result()
}

fn not_smartico(input: &TemplateInput, problems: &mut Problems) {
    if input.event.is_some() {
        problems.add(
            "event",
            "not_allowed",
            "only Smartico templates have an event",
        );
    }
}

/// A Smartico template: `event` (type, and the action of a `client_action`) and `body`, the
/// payload — a JSON object after rendering, checked by rendering it with a sample value for
/// every known variable.
fn validate_smartico(
    input: &mut TemplateInput,
    known: &KnownVariables,
    engine: &TemplateEngine,
    problems: &mut Problems,
) {
    use farol_channels::smartico::EventType;
    match &mut input.event {
        None => problems.add(
            "event",
            "required",
            "a Smartico template needs an event: {\"type\": \"client_action\", \"action\": \"farol_oferta\"} or {\"type\": \"update_profile\"}",
        ),
        Some(event) => {
            event.action = blank_to_none(event.action.take()).map(|a| a.trim().to_owned());
            match (event.event_type, &event.action) {
                (EventType::ClientAction, None) => problems.add(
                    "event.action",
                    "required",
                    "a client_action needs the action name Smartico journeys trigger on",
                ),
                (EventType::ClientAction, Some(a))
                    if a.len() > 100
                        || !a
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') =>
                {
                    problems.add(
                        "event.action",
                        "invalid",
                        "an action name has at most 100 letters, digits, _, - and .",
                    )
                }
                (EventType::UpdateProfile, Some(_)) => problems.add(
                    "event.action",
                    "not_allowed",
                    "update_profile events have no action; put the properties in the payload",
                ),
                _ => {}
            }
        }
    }
    match &input.body {
        None => problems.add(
            "body",
            "required",
            "a Smartico template needs a body: the event payload, a JSON object such as {\"bonus\": {{ cf.bonus }}}",
        ),
        Some(b) => match engine.validate_json(&JsonTemplate { source: b.clone() }, known) {
            Ok(sample) => {
                if sample.contains_key("action")
                    && input
                        .event
                        .as_ref()
                        .is_some_and(|e| e.event_type == EventType::ClientAction)
                {
                    problems.add(
                        "body",
                        "not_allowed",
                        "the payload's `action` is the template's event.action; remove it from the body",
                    );
                }
            }
            Err(TemplateError::UnknownVariables(vars)) => problems.add(
                "body",
                "unknown_variables",
                format!("unknown variables: {}", vars.join(", ")),
            ),
            Err(TemplateError::Syntax { message, .. }) => {
                problems.add("body", "syntax_error", format!("syntax error: {message}"))
            }
            Err(TemplateError::Invalid(message)) => problems.add("body", "invalid_json", message),
            Err(other) => problems.add("body", "invalid", other.to_string()),
        },
    }
    for (field, set) in [
        ("subject", input.subject.is_some()),
        ("html", input.html.is_some()),
        ("text", input.text.is_some()),
        ("provider_template", input.provider_template.is_some()),
    ] {
        if set {
            problems.add(
                field,
                "not_allowed",
                "Smartico templates have an event and a body (the payload)",
            );
        }
    }
}

const COLUMNS: &str = "id, account_id, name, channel, subject, html, text, body, provider_template, smartico_event, created_at, updated_at";

fn provider_json(t: &TemplateInput) -> Option<String> {
    t.provider_template
        .as_ref()
        .map(|p| serde_json::to_string(p).expect("template serializes"))
}

fn event_json(t: &TemplateInput) -> Option<String> {
    t.event
        .as_ref()
        .map(|e| serde_json::to_string(e).expect("event serializes"))
}

/// One template of an account.
pub async fn get(conn: &mut AnyConnection, account_id: i64, id: i64) -> DbResult<TemplateRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from templates where account_id = $1 and id = $2"
    )))
    .bind(account_id)
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Templates of an account, by id.
pub async fn list(conn: &mut AnyConnection, account_id: i64) -> DbResult<Vec<TemplateRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from templates where account_id = $1 order by id limit 1000"
    )))
    .bind(account_id)
    .fetch_all(conn)
    .await?)
}

async fn insert(conn: &mut AnyConnection, account_id: i64, t: &TemplateInput) -> DbResult<i64> {
    Ok(sqlx::query_scalar(
        "insert into templates (account_id, name, channel, subject, html, text, body, provider_template, created_at, updated_at, smartico_event) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) returning id",
    )
    .bind(account_id)
    .bind(t.name.clone())
    .bind(t.channel.as_str())
    .bind(t.subject.clone())
    .bind(t.html.clone())
    .bind(t.text.clone())
    .bind(t.body.clone())
    .bind(provider_json(t))
    .bind(now_ms())
    .bind(event_json(t))
    .fetch_one(conn)
    .await?)
}

async fn update(conn: &mut AnyConnection, id: i64, t: &TemplateInput) -> DbResult<()> {
    sqlx::query(
        "update templates set name = $1, subject = $2, html = $3, text = $4, body = $5, provider_template = $8, updated_at = $6, smartico_event = $9 where id = $7",
    )
    .bind(t.name.clone())
    .bind(t.subject.clone())
    .bind(t.html.clone())
    .bind(t.text.clone())
    .bind(t.body.clone())
    .bind(now_ms())
    .bind(id)
    .bind(provider_json(t))
    .bind(event_json(t))
    .execute(conn)
    .await?;
    Ok(())
}

fn not_found(e: DbError) -> ApiError {
    match e {
        DbError::NotFound => ApiError::NotFound("template"),
        other => other.into(),
    }
}

/// Validates and stores a new template (API and CLI).
pub async fn create(db: &Db, actor: &Actor, mut input: TemplateInput) -> ApiResult<TemplateOut> {
    let mut conn = db.pool().acquire().await?;
    let known = render::known_variables(&mut conn, actor.account_id).await?;
    drop(conn);
    validate(&mut input, &known)?;
    let mut tx = db.begin().await?;
    let id = insert(&mut tx, actor.account_id, &input).await?;
    audit::record(
        &mut tx,
        actor,
        "template.create",
        "template",
        id,
        audit::NONE,
        Some(&input),
    )
    .await?;
    let row = get(&mut tx, actor.account_id, id).await?;
    tx.commit().await?;
    Ok(row.into())
}

/// Lists templates.
#[utoipa::path(get, path = "/templates", tag = "campaigns",
    responses((status = 200, body = Vec<TemplateOut>)), security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<TemplateOut>>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let rows = list(&mut conn, user.account_id).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Creates a template. Every variable must be known (client fields, `cf.<key>` of a defined
/// custom field, `link_descadastro`); unknown ones are named in a 422 on their field.
#[utoipa::path(post, path = "/templates", tag = "campaigns", request_body = TemplateInput,
    responses((status = 201, body = TemplateOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_template(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<TemplateInput>,
) -> ApiResult<(StatusCode, Json<TemplateOut>)> {
    user.require(Permission::CampaignsRun)?;
    let out = create(&state.db, &user.actor(), body).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// One template.
#[utoipa::path(get, path = "/templates/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = TemplateOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_template(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<TemplateOut>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let row = get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    Ok(Json(row.into()))
}

/// Changes a template (validated again as a whole). Refused (409) while a launched campaign
/// that uses it has not ended.
#[utoipa::path(patch, path = "/templates/{id}", tag = "campaigns", params(("id" = i64, Path)), request_body = TemplatePatch,
    responses((status = 200, body = TemplateOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_template(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<TemplatePatch>,
) -> ApiResult<Json<TemplateOut>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let before = get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    // Recipients of a launched campaign are rendered when sent: its template stays as it was
    // at launch until the campaign ends.
    let busy: Option<i64> = sqlx::query_scalar(
        "select id from campaigns where template_id = $1 and status in ('scheduled', 'running', 'paused') limit 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(c) = busy {
        return Err(ApiError::Conflict {
            field: "id".into(),
            message: format!(
                "campaign {c} is sending with this template; create a new template or wait until it ends"
            ),
        });
    }
    let known = render::known_variables(&mut conn, user.account_id).await?;
    drop(conn);
    let mut input = TemplateInput {
        name: patch.name.unwrap_or_else(|| before.name.clone()),
        channel: before.channel(),
        subject: patch.subject.or_else(|| before.subject.clone()),
        html: patch.html.or_else(|| before.html.clone()),
        text: patch.text.or_else(|| before.text.clone()),
        body: patch.body.or_else(|| before.body.clone()),
        provider_template: patch
            .provider_template
            .or_else(|| before.provider_template()),
        event: patch.event.or_else(|| before.smartico_event()),
    };
    validate(&mut input, &known)?;
    let mut tx = state.db.begin().await?;
    update(&mut tx, id, &input).await?;
    let after = get(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "template.update",
        "template",
        id,
        Some(&TemplateOut::from(before)),
        Some(&input),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

/// Deletes a template no campaign uses.
#[utoipa::path(delete, path = "/templates/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_template(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CampaignsRun)?;
    let mut tx = state.db.begin().await?;
    let before = get(&mut tx, user.account_id, id).await.map_err(not_found)?;
    let used: Option<i64> =
        sqlx::query_scalar("select id from campaigns where template_id = $1 limit 1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(c) = used {
        return Err(ApiError::Conflict {
            field: "id".into(),
            message: format!("campaign {c} uses this template"),
        });
    }
    audit::delete_audited(
        &mut tx,
        &user.actor(),
        "templates",
        "template",
        id,
        &TemplateOut::from(before),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /templates/{id}/preview`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewInput {
    /// The client whose fields fill the variables.
    pub client_id: i64,
}

/// Renders a template for one client (its fields and custom fields as variables).
#[utoipa::path(post, path = "/templates/{id}/preview", tag = "campaigns", params(("id" = i64, Path)), request_body = PreviewInput,
    responses((status = 200, body = Rendered), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn preview_template(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PreviewInput>,
) -> ApiResult<Json<Rendered>> {
    user.require(Permission::CampaignsRun)?;
    let mut conn = state.db.pool().acquire().await?;
    let t = get(&mut conn, user.account_id, id)
        .await
        .map_err(not_found)?;
    let mut clients = render::load_clients(&mut conn, user.account_id, &[body.client_id]).await?;
    let (client, portfolio) = clients
        .remove(&body.client_id)
        .ok_or(ApiError::NotFound("client"))?;
    let ctx = RenderContext {
        client: render::client_vars(&client, portfolio, None),
        unsubscribe_url: Some(format!(
            "{}/api/v1/unsubscribe/preview",
            super::public_url(&state.config)
        )),
        ..Default::default()
    };
    let content = render::render(&TemplateEngine::default(), &t, &ctx)
        .map_err(|e| ApiError::field("client_id", "render_failed", e.to_string()))?;
    Ok(Json(Rendered::from(&content)))
}
