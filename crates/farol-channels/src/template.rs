//! Message templates written by users (minijinja syntax, `{{ nome }}`), per channel.
//!
//! The engine is strict: an undefined variable is a render error, not an empty string, and every
//! render has a `fuel` budget so a runaway loop in a user template stops. [`validate`](crate::template::validate) checks a
//! template against the variables Farol knows before it is saved, naming each unknown one.
//!
//! Variables (pt-BR names, as users see them in the seeds): `nome`, `razao_social`, `email`,
//! `telefone`, `plano_atual`, `carteira`, `cidade`, `cluster`, custom fields as `cf.<chave>`
//! (e.g. `cf.plano`), and `link_descadastro` (the unsubscribe URL). Filters beyond minijinja's
//! built-ins (`default`, `upper`, `title`, `trim`...): `primeiro_nome` and `moeda` (BRL).

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::channel::{EmailContent, WhatsAppBody, WhatsAppTemplateMessage};

/// The client fields every template may use.
pub const CLIENT_VARIABLES: &[&str] = &[
    "nome",
    "razao_social",
    "email",
    "telefone",
    "plano_atual",
    "carteira",
    "cidade",
    "cluster",
];

/// The variable holding the one-click unsubscribe URL.
pub const UNSUBSCRIBE_VARIABLE: &str = "link_descadastro";

/// The name under which custom fields are exposed (`cf.plano`).
pub const CUSTOM_FIELDS_VARIABLE: &str = "cf";

/// Default fuel per render: enough for long e-mails with loops over a few hundred items.
pub const DEFAULT_FUEL: u64 = 50_000;

/// Names minijinja resolves itself (global functions, loop variables) and never come from us.
const BUILTIN_NAMES: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
];

/// Template errors, naming the template part (`subject`, `html`, `text`, `body`, `param1`...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("syntax error in {part}: {message}")]
    Syntax {
        /// Which part of the template.
        part: String,
        /// The parser's message.
        message: String,
    },
    /// The template uses variables Farol does not know.
    #[error("unknown variables: {}", .0.join(", "))]
    UnknownVariables(Vec<String>),
    /// Rendering failed (e.g. a variable without value and no `default`).
    #[error("render error in {part}: {message}")]
    Render {
        /// Which part of the template.
        part: String,
        /// The engine's message.
        message: String,
    },
    /// The template used up its fuel (a runaway loop).
    #[error("template {part} exceeded its execution budget")]
    FuelExhausted {
        /// Which part of the template.
        part: String,
    },
    /// The template is missing something its channel requires.
    #[error("invalid template: {0}")]
    Invalid(String),
}

/// The set of variables a template may reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownVariables {
    names: BTreeSet<String>,
    custom_fields: BTreeSet<String>,
}

impl KnownVariables {
    /// The client variables, `link_descadastro`, and the given custom-field keys (`plano` allows
    /// `cf.plano`).
    pub fn standard<I, S>(custom_field_keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: BTreeSet<String> =
            CLIENT_VARIABLES.iter().map(|s| (*s).to_owned()).collect();
        names.insert(UNSUBSCRIBE_VARIABLE.to_owned());
        Self {
            names,
            custom_fields: custom_field_keys.into_iter().map(Into::into).collect(),
        }
    }

    /// A value for every known variable (`"<nome>"`, `cf: {"plano": "<cf.plano>"}`): what
    /// validation renders a template with.
    pub fn sample(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for name in &self.names {
            out.insert(name.clone(), serde_json::Value::String(format!("<{name}>")));
        }
        out.insert(
            CUSTOM_FIELDS_VARIABLE.to_owned(),
            self.custom_fields
                .iter()
                .map(|k| (k.clone(), serde_json::Value::String(format!("<cf.{k}>"))))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        out.into()
    }

    /// Adds another top-level variable (e.g. a campaign-specific one).
    pub fn with(mut self, name: impl Into<String>) -> Self {
        self.names.insert(name.into());
        self
    }

    fn accepts(&self, path: &str) -> bool {
        let mut segments = path.split('.');
        let head = segments.next().unwrap_or_default();
        if head == CUSTOM_FIELDS_VARIABLE {
            // `cf` alone (dynamic access like `cf["x"]`) cannot be checked statically; strict
            // undefined catches it at render time.
            return segments
                .next()
                .is_none_or(|key| self.custom_fields.contains(key));
        }
        // Attribute lookups on a known scalar (`nome.upper`) are method calls, not variables.
        self.names.contains(head) || BUILTIN_NAMES.contains(&head)
    }
}

/// The values one client contributes to a render. `None` fields are left undefined, so
/// `{{ cidade | default("sua cidade") }}` works and a bare `{{ cidade }}` fails loudly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientVars {
    /// Contact or trade name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nome: Option<String>,
    /// Legal name (razão social).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub razao_social: Option<String>,
    /// Main e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Main phone, formatted for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telefone: Option<String>,
    /// Current plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plano_atual: Option<String>,
    /// Portfolio (carteira) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carteira: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidade: Option<String>,
    /// Cluster label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Custom fields by key (`cf.plano`).
    #[serde(default)]
    pub cf: BTreeMap<String, serde_json::Value>,
}

/// Everything a render sees.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RenderContext {
    /// The client's fields.
    #[serde(flatten)]
    pub client: ClientVars,
    /// The unsubscribe URL (`link_descadastro`).
    #[serde(rename = "link_descadastro", skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
    /// Extra top-level variables (must also be in [`KnownVariables`] to pass validation).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A template: a list of named parts, each a minijinja source.
pub trait ChannelTemplate {
    /// The parts, as (name, source). Parts whose name ends in `.html` are HTML-escaped.
    fn parts(&self) -> Vec<(String, &str)>;
}

/// An e-mail template: subject, HTML and/or text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailTemplate {
    /// Subject line template.
    pub subject: String,
    /// HTML body template.
    pub html: Option<String>,
    /// Plain-text body template; derived from the rendered HTML when absent.
    pub text: Option<String>,
}

impl ChannelTemplate for EmailTemplate {
    fn parts(&self) -> Vec<(String, &str)> {
        let mut parts = vec![("subject".to_owned(), self.subject.as_str())];
        if let Some(html) = &self.html {
            parts.push(("body.html".to_owned(), html.as_str()));
        }
        if let Some(text) = &self.text {
            parts.push(("body.txt".to_owned(), text.as_str()));
        }
        parts
    }
}

/// A WhatsApp template: free text, or a provider-approved template with parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WhatsAppTemplate {
    /// Free text (WPPConnect anytime; Meta only within the 24-hour window).
    Text {
        /// Body template.
        body: String,
    },
    /// A Meta-approved template; each parameter is itself a template (`{{ nome }}`).
    Provider {
        /// Approved template name.
        name: String,
        /// Language code (`pt_BR`).
        language: String,
        /// Body parameter templates, in order.
        body_parameters: Vec<String>,
        /// Header parameter templates, in order.
        #[serde(default)]
        header_parameters: Vec<String>,
    },
}

impl ChannelTemplate for WhatsAppTemplate {
    fn parts(&self) -> Vec<(String, &str)> {
        match self {
            Self::Text { body } => vec![("body".to_owned(), body.as_str())],
            Self::Provider {
                body_parameters,
                header_parameters,
                ..
            } => header_parameters
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("header_param{}", i + 1), p.as_str()))
                .chain(
                    body_parameters
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (format!("param{}", i + 1), p.as_str())),
                )
                .collect(),
        }
    }
}

/// An SMS template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsTemplate {
    /// Body template.
    pub body: String,
}

impl ChannelTemplate for SmsTemplate {
    fn parts(&self) -> Vec<(String, &str)> {
        vec![("body".to_owned(), self.body.as_str())]
    }
}

/// The configured template engine (strict undefined, fuel, Farol's filters). Cheap to share.
#[derive(Debug)]
pub struct TemplateEngine {
    env: Environment<'static>,
}

impl Default for TemplateEngine {
    fn default() -> Self {
        Self::new(DEFAULT_FUEL)
    }
}

impl TemplateEngine {
    /// An engine whose renders each get `fuel` units of execution budget.
    pub fn new(fuel: u64) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(fuel));
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else if name.ends_with(".json") {
                // Every printed value becomes a JSON literal (a quoted, escaped string, a
                // number, null...), so a value can never break the document's structure.
                AutoEscape::Json
            } else {
                AutoEscape::None
            }
        });
        env.add_filter("primeiro_nome", primeiro_nome);
        env.add_filter("moeda", moeda);
        Self { env }
    }

    /// Checks syntax and that every variable is known; unknown ones are all named, sorted.
    pub fn validate(
        &self,
        template: &impl ChannelTemplate,
        known: &KnownVariables,
    ) -> Result<(), TemplateError> {
        let mut unknown = BTreeSet::new();
        for (part, source) in template.parts() {
            let compiled = self
                .env
                .template_from_named_str(&part, source)
                .map_err(|e| TemplateError::Syntax {
                    part: part.clone(),
                    message: describe(&e),
                })?;
            for var in compiled.undeclared_variables(true) {
                if !known.accepts(&var) {
                    unknown.insert(var);
                }
            }
        }
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::UnknownVariables(
                unknown.into_iter().collect(),
            ))
        }
    }

    fn render_part(
        &self,
        part: &str,
        source: &str,
        ctx: &RenderContext,
    ) -> Result<String, TemplateError> {
        self.render_value(part, source, Value::from_serialize(ctx))
    }

    fn render_value(&self, part: &str, source: &str, ctx: Value) -> Result<String, TemplateError> {
        let compiled = self
            .env
            .template_from_named_str(part, source)
            .map_err(|e| TemplateError::Syntax {
                part: part.to_owned(),
                message: describe(&e),
            })?;
        compiled.render(ctx).map_err(|e| match e.kind() {
            ErrorKind::OutOfFuel => TemplateError::FuelExhausted {
                part: part.to_owned(),
            },
            _ => TemplateError::Render {
                part: part.to_owned(),
                message: describe(&e),
            },
        })
    }

    /// Renders an e-mail; the text part is derived from the HTML when the template has none.
    pub fn render_email(
        &self,
        template: &EmailTemplate,
        ctx: &RenderContext,
    ) -> Result<EmailContent, TemplateError> {
        if template.html.is_none() && template.text.is_none() {
            return Err(TemplateError::Invalid(
                "an e-mail needs an HTML or a text body".into(),
            ));
        }
        let subject = self.render_part("subject", &template.subject, ctx)?;
        // A subject is one header line: newlines would break it (or inject headers).
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let html = template
            .html
            .as_deref()
            .map(|src| self.render_part("body.html", src, ctx))
            .transpose()?;
        let text = match (&template.text, &html) {
            (Some(src), _) => self.render_part("body.txt", src, ctx)?,
            (None, Some(html)) => html_to_text(html),
            (None, None) => String::new(),
        };
        Ok(EmailContent {
            subject,
            text,
            html,
            unsubscribe_url: ctx.unsubscribe_url.clone(),
            ..Default::default()
        })
    }

    /// Renders a WhatsApp message body.
    pub fn render_whatsapp(
        &self,
        template: &WhatsAppTemplate,
        ctx: &RenderContext,
    ) -> Result<WhatsAppBody, TemplateError> {
        match template {
            WhatsAppTemplate::Text { body } => Ok(WhatsAppBody::Text {
                body: self.render_part("body", body, ctx)?,
            }),
            WhatsAppTemplate::Provider {
                name,
                language,
                body_parameters,
                header_parameters,
            } => {
                let render_all = |prefix: &str, params: &[String]| {
                    params
                        .iter()
                        .enumerate()
                        .map(|(i, p)| self.render_part(&format!("{prefix}{}", i + 1), p, ctx))
                        .collect::<Result<Vec<_>, _>>()
                };
                Ok(WhatsAppBody::Template(WhatsAppTemplateMessage {
                    name: name.clone(),
                    language: language.clone(),
                    body_parameters: render_all("param", body_parameters)?,
                    header_parameters: render_all("header_param", header_parameters)?,
                }))
            }
        }
    }

    /// Renders an SMS body.
    pub fn render_sms(
        &self,
        template: &SmsTemplate,
        ctx: &RenderContext,
    ) -> Result<String, TemplateError> {
        self.render_part("body", &template.body, ctx)
    }

    /// Renders a JSON template into the object it must produce.
    pub fn render_json(
        &self,
        template: &JsonTemplate,
        ctx: &RenderContext,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TemplateError> {
        let text = self.render_part(JsonTemplate::PART, &template.source, ctx)?;
        parse_object(&text)
    }

    /// [`validate`](Self::validate), then renders the template with a sample value for every
    /// known variable (`"<nome>"`, `"<cf.plano>"`) and checks that the result is a JSON
    /// object; returns that sample object (what a preview without a client would show).
    pub fn validate_json(
        &self,
        template: &JsonTemplate,
        known: &KnownVariables,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TemplateError> {
        self.validate(template, known)?;
        let text = self.render_value(
            JsonTemplate::PART,
            &template.source,
            Value::from_serialize(known.sample()),
        )?;
        parse_object(&text)
    }
}

/// A template whose output is a JSON object (a Smartico event payload). Printed values are
/// JSON-escaped: write `{"nome": {{ nome }}}`, not `{"nome": "{{ nome }}"}`; a value
/// without a default renders `null` with `{{ cidade | default(none) }}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonTemplate {
    /// The template source.
    pub source: String,
}

impl JsonTemplate {
    /// The part name (its `.json` suffix turns JSON escaping on).
    const PART: &'static str = "payload.json";
}

impl ChannelTemplate for JsonTemplate {
    fn parts(&self) -> Vec<(String, &str)> {
        vec![(Self::PART.to_owned(), self.source.as_str())]
    }
}

fn parse_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, TemplateError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(TemplateError::Invalid(
            "the rendered payload must be a JSON object ({...})".into(),
        )),
        Err(e) => Err(TemplateError::Invalid(format!(
            "the rendered payload is not valid JSON: {e} (values are inserted as JSON literals: write {{\"nome\": {{{{ nome }}}}}}, without quotes around the variable)"
        ))),
    }
}

/// [`TemplateEngine::validate`] with a default engine.
pub fn validate(
    template: &impl ChannelTemplate,
    known: &KnownVariables,
) -> Result<(), TemplateError> {
    TemplateEngine::default().validate(template, known)
}

fn describe(err: &minijinja::Error) -> String {
    match err.line() {
        Some(line) => format!(
            "{} (line {line})",
            err.detail().unwrap_or(&err.kind().to_string())
        ),
        None => err
            .detail()
            .map_or_else(|| err.kind().to_string(), str::to_owned),
    }
}

/// `{{ nome | primeiro_nome }}`: the first word, capitalized ("MARIA DA SILVA" → "Maria").
fn primeiro_nome(value: String) -> String {
    let first = value.split_whitespace().next().unwrap_or_default();
    let mut chars = first.chars();
    match chars.next() {
        Some(c) => c
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// `{{ valor | moeda }}`: Brazilian currency, `R$ 1.234,56`.
fn moeda(value: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let cents = (value * 100.0).round() as i128;
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let units = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{sign}R$ {grouped},{:02}", cents % 100)
}

/// Derives a readable plain-text part from HTML: drops `head`/`style`/`script`, turns block
/// elements into line breaks, list items into dashes, links into `text (url)`, and decodes the
/// common entities.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    let mut pending_href: Vec<Option<String>> = Vec::new();
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            push_text(&mut out, &rest[..lt]);
        }
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(end) = skip_until {
            if closing && name == end {
                skip_until = None;
            }
            continue;
        }
        match (name.as_str(), closing) {
            ("style", false) => skip_until = Some("style"),
            ("script", false) => skip_until = Some("script"),
            ("head", false) => skip_until = Some("head"),
            ("title", false) => skip_until = Some("title"),
            ("br", _) => out.push('\n'),
            (
                "p" | "div" | "tr" | "table" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "ul"
                | "ol",
                _,
            ) => {
                push_break(&mut out);
            }
            ("li", false) => {
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("- ");
            }
            ("td" | "th", true) => out.push(' '),
            ("a", false) => pending_href.push(attribute(tag, "href")),
            ("a", true) => {
                if let Some(Some(href)) = pending_href.pop()
                    && !href.starts_with('#')
                    && !out.trim_end().ends_with(&href)
                {
                    out.push_str(&format!(" ({href})"));
                }
            }
            _ => {}
        }
    }
    if skip_until.is_none() {
        push_text(&mut out, rest);
    }
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let mut text = String::new();
    let mut blank = 0;
    for line in lines {
        if line.is_empty() {
            blank += 1;
            if blank > 1 || text.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.trim_end().to_owned()
}

fn push_break(out: &mut String) {
    if !out.ends_with("\n\n") && !out.is_empty() {
        out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
    }
}

fn push_text(out: &mut String, raw: &str) {
    let collapsed = raw.replace(['\n', '\r', '\t'], " ");
    out.push_str(&decode_entities(&collapsed));
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let start = lower.find(&format!("{name}="))? + name.len() + 1;
    let value = &tag[start..];
    let (quote, value) = match value.chars().next()? {
        q @ ('"' | '\'') => (Some(q), &value[1..]),
        _ => (None, value),
    };
    let end = match quote {
        Some(q) => value.find(q)?,
        None => value.find(char::is_whitespace).unwrap_or(value.len()),
    };
    Some(decode_entities(&value[..end]))
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let decoded = after.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let entity = &after[1..semi];
            let ch = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((ch, semi + 1))
        });
        match decoded {
            Some((ch, len)) => {
                out.push(ch);
                rest = &after[len..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RenderContext {
        let mut client = ClientVars {
            nome: Some("MARIA DA SILVA".into()),
            razao_social: Some("Padaria <Pão> & Cia".into()),
            plano_atual: Some("Básico".into()),
            ..Default::default()
        };
        client.cf.insert("plano".into(), "Ouro".into());
        client.cf.insert("saldo".into(), serde_json::json!(1234.5));
        RenderContext {
            client,
            unsubscribe_url: Some("https://farol.test/u/abc".into()),
            ..Default::default()
        }
    }

    #[test]
    fn validate_names_every_unknown_variable() {
        let known = KnownVariables::standard(["plano"]);
        let template = EmailTemplate {
            subject: "Olá {{ nome }}, {{ apelido }}".into(),
            html: Some("<p>{{ cf.plano }} {{ cf.desconto }} {% for x in range(3) %}{{ loop.index }}{{ x }}{% endfor %}</p>".into()),
            text: Some("{{ cidadee | default('x') }} {{ nome.upper() }}".into()),
        };
        let err = validate(&template, &known).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownVariables(vec![
                "apelido".into(),
                "cf.desconto".into(),
                "cidadee".into()
            ])
        );
        assert!(err.to_string().contains("apelido, cf.desconto, cidadee"));
    }

    #[test]
    fn validate_accepts_known_variables_and_reports_syntax_errors() {
        let known = KnownVariables::standard(["plano"]).with("campanha");
        let ok = SmsTemplate {
            body: "{{ nome|primeiro_nome }} {{ cf.plano }} {{ campanha }} {{ link_descadastro }}"
                .into(),
        };
        assert_eq!(validate(&ok, &known), Ok(()));
        let broken = SmsTemplate {
            body: "{{ nome ".into(),
        };
        assert!(
            matches!(validate(&broken, &known), Err(TemplateError::Syntax { part, .. }) if part == "body")
        );
    }

    #[test]
    fn renders_with_filters_defaults_and_escaping() {
        let engine = TemplateEngine::default();
        let template = EmailTemplate {
            subject: "Oi {{ nome | primeiro_nome }}\r\nBcc: x@evil.test".into(),
            html: Some("<p>{{ razao_social }} — {{ cidade | default('sua cidade') }} — {{ cf.saldo | moeda }}</p>".into()),
            text: None,
        };
        let email = engine.render_email(&template, &ctx()).unwrap();
        assert_eq!(email.subject, "Oi Maria Bcc: x@evil.test");
        assert_eq!(
            email.html.as_deref(),
            Some("<p>Padaria &lt;Pão&gt; &amp; Cia — sua cidade — R$ 1.234,50</p>")
        );
        assert_eq!(email.text, "Padaria <Pão> & Cia — sua cidade — R$ 1.234,50");
        assert_eq!(
            email.unsubscribe_url.as_deref(),
            Some("https://farol.test/u/abc")
        );
    }

    #[test]
    fn missing_value_without_default_is_a_render_error() {
        let engine = TemplateEngine::default();
        let err = engine
            .render_sms(
                &SmsTemplate {
                    body: "{{ cidade }}".into(),
                },
                &ctx(),
            )
            .unwrap_err();
        assert!(
            matches!(err, TemplateError::Render { ref part, .. } if part == "body"),
            "{err:?}"
        );
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let engine = TemplateEngine::new(1_000);
        let template = SmsTemplate {
            body: "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}"
                .into(),
        };
        assert_eq!(
            engine.render_sms(&template, &ctx()),
            Err(TemplateError::FuelExhausted {
                part: "body".into()
            })
        );
        let small = SmsTemplate {
            body: "{% for a in range(3) %}x{% endfor %}".into(),
        };
        assert_eq!(engine.render_sms(&small, &ctx()).unwrap(), "xxx");
    }

    #[test]
    fn whatsapp_provider_template_renders_each_parameter() {
        let engine = TemplateEngine::default();
        let template = WhatsAppTemplate::Provider {
            name: "oferta_plano".into(),
            language: "pt_BR".into(),
            body_parameters: vec!["{{ nome | primeiro_nome }}".into(), "{{ cf.plano }}".into()],
            header_parameters: vec!["{{ plano_atual }}".into()],
        };
        let WhatsAppBody::Template(t) = engine.render_whatsapp(&template, &ctx()).unwrap() else {
            panic!()
        };
        assert_eq!(t.body_parameters, vec!["Maria", "Ouro"]);
        assert_eq!(t.header_parameters, vec!["Básico"]);
    }

    #[test]
    fn moeda_formats_brazilian_currency() {
        assert_eq!(moeda(0.0), "R$ 0,00");
        assert_eq!(moeda(1_234_567.891), "R$ 1.234.567,89");
        assert_eq!(moeda(-12.5), "-R$ 12,50");
        assert_eq!(moeda(999.999), "R$ 1.000,00");
    }

    #[test]
    fn html_to_text_keeps_structure_and_links() {
        let html = r#"<html><head><title>T</title><style>p{color:red}</style></head><body>
            <h1>Olá&nbsp;Maria</h1><p>Seu plano:<br>Ouro &amp; mais</p>
            <ul><li>Um</li><li>Dois</li></ul>
            <p><a href="https://farol.test/u/1">Descadastrar</a></p></body></html>"#;
        assert_eq!(
            html_to_text(html),
            "Olá Maria\n\nSeu plano:\nOuro & mais\n\n- Um\n- Dois\n\nDescadastrar (https://farol.test/u/1)"
        );
    }

    #[test]
    fn json_templates_insert_values_as_json_literals_and_must_render_an_object() {
        let engine = TemplateEngine::default();
        let known = KnownVariables::standard(["bonus"]);
        let ctx = RenderContext {
            client: ClientVars {
                nome: Some("Ana \"A\" \\ Silva".into()),
                cf: BTreeMap::from([("bonus".to_owned(), serde_json::json!(25.5))]),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = JsonTemplate {
            source: r#"{"nome": {{ nome }}, "bonus": {{ cf.bonus }}, "cidade": {{ cidade | default(none) }}, "x": {{ nome | primeiro_nome }}}"#.into(),
        };
        assert!(engine.validate_json(&t, &known).is_ok());
        let out = engine.render_json(&t, &ctx).unwrap();
        assert_eq!(
            serde_json::Value::Object(out),
            serde_json::json!({"nome": "Ana \"A\" \\ Silva", "bonus": 25.5, "cidade": null, "x": "Ana"})
        );
        // Quoting a variable breaks the document; a list is not an object; unknown names are named.
        let quoted = JsonTemplate {
            source: r#"{"nome": "{{ nome }}"}"#.into(),
        };
        assert!(matches!(
            engine.validate_json(&quoted, &known),
            Err(TemplateError::Invalid(m)) if m.contains("not valid JSON")
        ));
        let list = JsonTemplate {
            source: "[{{ nome }}]".into(),
        };
        assert!(matches!(
            engine.validate_json(&list, &known),
            Err(TemplateError::Invalid(m)) if m.contains("JSON object")
        ));
        let unknown = JsonTemplate {
            source: r#"{"a": {{ apelido }}}"#.into(),
        };
        assert_eq!(
            engine.validate_json(&unknown, &known),
            Err(TemplateError::UnknownVariables(vec!["apelido".into()]))
        );
        // Other parts keep their escaping: text is not quoted.
        assert_eq!(
            engine
                .render_sms(
                    &SmsTemplate {
                        body: "Oi {{ nome }}".into()
                    },
                    &ctx
                )
                .unwrap(),
            "Oi Ana \"A\" \\ Silva"
        );
    }
}
