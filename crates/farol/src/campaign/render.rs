//! From stored clients to template variables, and from a stored template to rendered content.

use std::collections::HashMap;

use farol_channels::template::{
    ClientVars, EmailTemplate, JsonTemplate, KnownVariables, RenderContext, SmsTemplate,
    TemplateEngine, TemplateError, WhatsAppTemplate,
};
use farol_channels::{Content, EmailContent, WhatsAppBody, WhatsAppContent};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::templates::{Channel, TemplateRow};
use crate::crm::clients::{self, ClientOut};
use crate::crm::contacts::ContactKind;
use crate::db::DbResult;

/// The variables a template of `account_id` may use: the standard ones and its custom fields.
pub async fn known_variables(
    conn: &mut AnyConnection,
    account_id: i64,
) -> DbResult<KnownVariables> {
    let defs = crate::crm::custom_fields::definitions(conn, account_id).await?;
    Ok(KnownVariables::standard(defs.into_keys()))
}

/// Clients with their portfolio names, keyed by id (missing ids are absent).
pub async fn load_clients(
    conn: &mut AnyConnection,
    account_id: i64,
    ids: &[i64],
) -> DbResult<HashMap<i64, (ClientOut, Option<String>)>> {
    let loaded = clients::load(conn, account_id, ids).await?;
    let portfolios: Vec<(i64, String)> =
        sqlx::query_as("select id, name from portfolios where account_id = $1")
            .bind(account_id)
            .fetch_all(&mut *conn)
            .await?;
    let names: HashMap<i64, String> = portfolios.into_iter().collect();
    Ok(loaded
        .into_iter()
        .map(|c| {
            let p = c.portfolio_id.and_then(|p| names.get(&p).cloned());
            (c.id, (c, p))
        })
        .collect())
}

/// The variables of one client. `email` is the recipient address when sending by e-mail,
/// else the client's preferred e-mail.
pub fn client_vars(
    client: &ClientOut,
    portfolio: Option<String>,
    email: Option<&str>,
) -> ClientVars {
    let first = |kind: ContactKind| {
        client
            .contacts
            .iter()
            .filter(|c| c.kind == kind && !c.opted_out)
            .max_by_key(|c| c.preferred)
            .map(|c| c.value.clone())
    };
    ClientVars {
        nome: Some(client.name.clone()),
        razao_social: client.legal_name.clone(),
        email: email
            .map(str::to_owned)
            .or_else(|| first(ContactKind::Email)),
        telefone: first(ContactKind::Phone),
        plano_atual: client.current_product.clone(),
        carteira: portfolio,
        cidade: client.city.clone(),
        cluster: None,
        cf: client
            .custom_fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A rendered template, as the preview shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rendered {
    /// E-mail subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// E-mail HTML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// E-mail text part (derived from the HTML when the template has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// WhatsApp or SMS body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Smartico: the event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub event_type: Option<farol_channels::smartico::EventType>,
    /// Smartico: the event payload (with `action` for a client action).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The e-mail template of a stored template.
pub fn email_template(t: &TemplateRow) -> EmailTemplate {
    EmailTemplate {
        subject: t.subject.clone().unwrap_or_default(),
        html: t.html.clone(),
        text: t.text.clone(),
    }
}

/// Renders a stored template into the content its channel sends.
pub fn render(
    engine: &TemplateEngine,
    t: &TemplateRow,
    ctx: &RenderContext,
) -> Result<Content, TemplateError> {
    match t.channel() {
        Channel::Email => Ok(Content::Email(
            engine.render_email(&email_template(t), ctx)?,
        )),
        Channel::Whatsapp => {
            let provider = t
                .provider_template()
                .map(|p| {
                    engine.render_whatsapp(
                        &WhatsAppTemplate::Provider {
                            name: p.name,
                            language: p.language,
                            body_parameters: p.body_parameters,
                            header_parameters: p.header_parameters,
                        },
                        ctx,
                    )
                })
                .transpose()?;
            let fallback_template = match &provider {
                Some(WhatsAppBody::Template(t)) => Some(t.clone()),
                _ => None,
            };
            let body = match (&t.body, provider) {
                (Some(body), _) => {
                    engine.render_whatsapp(&WhatsAppTemplate::Text { body: body.clone() }, ctx)?
                }
                (None, Some(p)) => p,
                (None, None) => engine.render_whatsapp(
                    &WhatsAppTemplate::Text {
                        body: String::new(),
                    },
                    ctx,
                )?,
            };
            Ok(Content::WhatsApp(WhatsAppContent {
                body,
                // The worker sets the contact's last inbound message (the 24-hour window).
                last_inbound_at: None,
                fallback_template,
            }))
        }
        Channel::Webhook | Channel::Auto => Ok(Content::Json {
            event: "campaign.message".into(),
            data: serde_json::json!({
                "body": engine.render_sms(
                    &SmsTemplate {
                        body: t.body.clone().unwrap_or_default(),
                    },
                    ctx,
                )?,
                "client": ctx.client,
            }),
        }),
        Channel::Smartico => {
            let spec = t.smartico_event().ok_or_else(|| {
                TemplateError::Invalid("this Smartico template has no event".into())
            })?;
            let mut payload = engine.render_json(
                &JsonTemplate {
                    source: t.body.clone().unwrap_or_default(),
                },
                ctx,
            )?;
            if let Some(action) = spec.action {
                payload.insert("action".into(), serde_json::Value::String(action));
            }
            Ok(Content::SmarticoEvent {
                event_type: spec.event_type,
                payload,
            })
        }
        Channel::Sms => Ok(Content::Sms {
            body: engine.render_sms(
                &SmsTemplate {
                    body: t.body.clone().unwrap_or_default(),
                },
                ctx,
            )?,
        }),
    }
}

impl From<&Content> for Rendered {
    fn from(c: &Content) -> Self {
        match c {
            Content::Email(EmailContent {
                subject,
                text,
                html,
                ..
            }) => Rendered {
                subject: Some(subject.clone()),
                html: html.clone(),
                text: Some(text.clone()),
                body: None,
                event_type: None,
                payload: None,
            },
            Content::WhatsApp(w) => Rendered {
                subject: None,
                html: None,
                text: None,
                body: Some(match &w.body {
                    WhatsAppBody::Text { body } => body.clone(),
                    other => format!("{other:?}"),
                }),
                event_type: None,
                payload: None,
            },
            Content::Sms { body } => Rendered {
                subject: None,
                html: None,
                text: None,
                body: Some(body.clone()),
                event_type: None,
                payload: None,
            },
            Content::Json { data, .. } => Rendered {
                subject: None,
                html: None,
                text: None,
                body: Some(data["body"].as_str().unwrap_or_default().to_owned()),
                event_type: None,
                payload: None,
            },
            Content::SmarticoEvent {
                event_type,
                payload,
            } => Rendered {
                subject: None,
                html: None,
                text: None,
                body: None,
                event_type: Some(*event_type),
                payload: Some(payload.clone()),
            },
        }
    }
}
