//! Clients: the center of the CRM. Storage, search, and the `/clients` routes.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use farol_normalize::{Email, Phone, TaxId, search_tokens};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::contacts::{self, ContactInput, ContactOut, ValidContact};
use super::custom_fields::{self, CustomField, StoredValue};
use super::portfolios;
use super::tags;
use super::timeline::{self, NewItem, Origin};
use crate::api::pagination::{Cursor, CursorValue, parse_limit};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody, Page, Problems, QueryPairs};
use crate::audit;
use crate::auth::{AuthUser, Permission};
use crate::db::{Backend, DbResult, SqlBuilder, format_ms, now_ms};
use crate::state::AppState;

/// Where a client stands with the business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    /// Not yet contacted / qualified.
    Lead,
    /// In negotiation.
    Prospect,
    /// A current customer.
    Active,
    /// A customer with no current product or activity.
    Inactive,
    /// Left.
    Churned,
}

impl ClientStatus {
    /// Every status.
    pub const ALL: [ClientStatus; 5] = [
        ClientStatus::Lead,
        ClientStatus::Prospect,
        ClientStatus::Active,
        ClientStatus::Inactive,
        ClientStatus::Churned,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Lead => "lead",
            ClientStatus::Prospect => "prospect",
            ClientStatus::Active => "active",
            ClientStatus::Inactive => "inactive",
            ClientStatus::Churned => "churned",
        }
    }

    /// Parses a stored name or a pt-BR word as spreadsheets write it ("Ativo", "Cancelado").
    pub fn parse_loose(raw: &str) -> Option<ClientStatus> {
        let folded = farol_normalize::fold(raw.trim());
        Some(match folded.as_str() {
            "lead" | "novo" | "nova" => ClientStatus::Lead,
            "prospect" | "prospeccao" | "prospecto" | "negociacao" | "em negociacao" => {
                ClientStatus::Prospect
            }
            "active" | "ativo" | "ativa" | "cliente" => ClientStatus::Active,
            "inactive" | "inativo" | "inativa" | "suspenso" | "suspensa" => ClientStatus::Inactive,
            "churned" | "cancelado" | "cancelada" | "perdido" | "perdida" | "churn" => {
                ClientStatus::Churned
            }
            _ => return None,
        })
    }

    fn allowed() -> String {
        Self::ALL.map(|s| s.as_str()).join(", ")
    }
}

/// A client with its contacts, tags and custom fields.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientOut {
    /// Id.
    pub id: i64,
    /// Name (person or trade name).
    pub name: String,
    /// Legal name (razão social).
    pub legal_name: Option<String>,
    /// CPF or CNPJ, unmasked.
    pub cpf_cnpj: Option<String>,
    /// `cpf` or `cnpj`, when a document is set.
    pub document_type: Option<String>,
    /// Status.
    pub status: ClientStatus,
    /// Portfolio (carteira).
    pub portfolio_id: Option<i64>,
    /// Category, free text (e.g. "PME", "Varejo").
    pub category: Option<String>,
    /// Lead score, 0–100.
    pub score: i64,
    /// City.
    pub city: Option<String>,
    /// Current product or plan (produto atual).
    pub current_product: Option<String>,
    /// Tag names, sorted.
    pub tags: Vec<String>,
    /// Custom field values by key.
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, Value>,
    /// Phones and e-mails.
    pub contacts: Vec<ContactOut>,
    /// The client's id in the system it came from (an import's `external_id` column, the
    /// data lake's user id), unique within the account.
    pub external_id: Option<String>,
    /// Where the client was last imported from (file and import), when it came from an import.
    pub source: Option<ClientSource>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// The import a client last came from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientSource {
    /// File name as uploaded (`data-lake:users` for players a segmentation brought in).
    pub file: String,
    /// The import job (`GET /api/v1/imports/{id}`).
    pub import_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: i64,
    name: String,
    legal_name: Option<String>,
    cpf_cnpj: Option<String>,
    status: String,
    portfolio_id: Option<i64>,
    category: Option<String>,
    score: i64,
    city: Option<String>,
    current_product: Option<String>,
    external_id: Option<String>,
    source_file: Option<String>,
    source_import_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const CLIENT_COLUMNS: &str = "c.id, c.name, c.legal_name, c.cpf_cnpj, c.status, c.portfolio_id, c.category, \
     c.score, c.city, c.current_product, c.external_id, c.source_file, c.source_import_id, c.created_at, c.updated_at";

fn document_type(doc: &str) -> &'static str {
    if doc.len() == 11 { "cpf" } else { "cnpj" }
}

/// Fails with 404 unless `id` is a client of `account_id`.
pub async fn ensure_client(conn: &mut AnyConnection, account_id: i64, id: i64) -> ApiResult<()> {
    let found: Option<i64> =
        sqlx::query_scalar("select id from clients where account_id = $1 and id = $2")
            .bind(account_id)
            .bind(id)
            .fetch_optional(conn)
            .await?;
    found.map(|_| ()).ok_or(ApiError::NotFound("client"))
}

/// The text indexed for search: tokens of the name, legal name, document, e-mails and phones
/// (national and subscriber digits, so `11 98765` and `98765-4321` find the client, and
/// `55 11 98765` through [`token_forms`]; a foreign number as its digits with the country
/// code). E-mail domains leave out their generic labels (`com`, `br`, …): every client would
/// share them, and they are most of the index's entries that no search needs.
///
/// Every token costs index maintenance on each write (PostgreSQL's GIN index is most of a
/// bulk import's database work), so only forms someone searches by are indexed.
pub fn build_search_text<'a>(
    name: &str,
    legal_name: Option<&str>,
    cpf_cnpj: Option<&str>,
    contacts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut tokens: Vec<String> = search_tokens(name);
    if let Some(l) = legal_name {
        tokens.extend(search_tokens(l));
    }
    if let Some(d) = cpf_cnpj {
        tokens.extend(search_tokens(d));
    }
    for (kind, value) in contacts {
        if kind == "email" {
            tokens.push(
                value
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_ascii_lowercase(),
            );
            let (local, domain) = value.rsplit_once('@').unwrap_or((value, ""));
            tokens.extend(search_tokens(local));
            tokens.extend(
                search_tokens(domain)
                    .into_iter()
                    .filter(|label| !GENERIC_DOMAIN_LABELS.contains(&label.as_str())),
            );
        } else {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            match digits.strip_prefix("55") {
                Some(national) if value.starts_with("+55") => {
                    if national.len() > 2 {
                        tokens.push(national[2..].to_string());
                    }
                    tokens.push(national.to_string());
                }
                _ => tokens.push(digits),
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    tokens.retain(|t| !t.is_empty() && seen.insert(t.clone()));
    tokens.join(" ")
}

/// E-mail domain labels not indexed (see [`build_search_text`]).
const GENERIC_DOMAIN_LABELS: [&str; 10] = [
    "com", "br", "net", "org", "gov", "edu", "co", "io", "info", "biz",
];

/// Recomputes a client's search text after its name, document or contacts changed.
pub async fn refresh_search_text(conn: &mut AnyConnection, client_id: i64) -> DbResult<()> {
    let (name, legal_name, cpf_cnpj): (String, Option<String>, Option<String>) =
        sqlx::query_as("select name, legal_name, cpf_cnpj from clients where id = $1")
            .bind(client_id)
            .fetch_one(&mut *conn)
            .await?;
    let contacts: Vec<(String, String)> =
        sqlx::query_as("select kind, value from contacts where client_id = $1")
            .bind(client_id)
            .fetch_all(&mut *conn)
            .await?;
    let text = build_search_text(
        &name,
        legal_name.as_deref(),
        cpf_cnpj.as_deref(),
        contacts.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    sqlx::query("update clients set search_text = $1 where id = $2")
        .bind(text)
        .bind(client_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Loads full clients (with contacts, tags and custom fields), in the order of `ids`.
pub async fn load(
    conn: &mut AnyConnection,
    account_id: i64,
    ids: &[i64],
) -> DbResult<Vec<ClientOut>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = SqlBuilder::new(&format!(
        "select {CLIENT_COLUMNS} from clients c where c.account_id = "
    ));
    q.bind(account_id)
        .push(" and c.id in ")
        .bind_list(ids.iter().copied());
    let rows: Vec<ClientRow> = q.query_as().fetch_all(&mut *conn).await?;
    assemble(conn, account_id, rows, ids).await
}

async fn assemble(
    conn: &mut AnyConnection,
    account_id: i64,
    rows: Vec<ClientRow>,
    order: &[i64],
) -> DbResult<Vec<ClientOut>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut contacts_by: HashMap<i64, Vec<ContactOut>> = HashMap::new();
    for c in contacts::for_clients(conn, &ids).await? {
        contacts_by.entry(c.client_id).or_default().push(c);
    }
    let mut tags_by: HashMap<i64, Vec<String>> = HashMap::new();
    let mut fields_by: HashMap<i64, BTreeMap<String, Value>> = HashMap::new();
    if !ids.is_empty() {
        let mut q = SqlBuilder::new(
            "select ct.client_id, t.name from client_tags ct join tags t on t.id = ct.tag_id where ct.client_id in ",
        );
        q.bind_list(ids.iter().copied()).push(" order by t.name");
        let tag_rows: Vec<(i64, String)> = q.query_as().fetch_all(&mut *conn).await?;
        for (cid, name) in tag_rows {
            tags_by.entry(cid).or_default().push(name);
        }
        let mut q = SqlBuilder::new(
            "select v.client_id, v.field_id, v.value_text, v.value_number from client_field_values v where v.client_id in ",
        );
        q.bind_list(ids.iter().copied());
        let value_rows: Vec<(i64, i64, Option<String>, Option<f64>)> =
            q.query_as().fetch_all(&mut *conn).await?;
        if !value_rows.is_empty() {
            let defs = custom_fields::definitions(conn, account_id).await?;
            let by_id: HashMap<i64, &CustomField> = defs.values().map(|d| (d.id, d)).collect();
            for (cid, fid, text, number) in value_rows {
                if let Some(def) = by_id.get(&fid) {
                    fields_by
                        .entry(cid)
                        .or_default()
                        .insert(def.key.clone(), def.to_json(text, number));
                }
            }
        }
    }
    let mut by_id: HashMap<i64, ClientOut> = rows
        .into_iter()
        .map(|r| {
            let out = ClientOut {
                id: r.id,
                document_type: r.cpf_cnpj.as_deref().map(|d| document_type(d).to_string()),
                name: r.name,
                legal_name: r.legal_name,
                cpf_cnpj: r.cpf_cnpj,
                status: ClientStatus::parse_loose(&r.status).unwrap_or(ClientStatus::Active),
                portfolio_id: r.portfolio_id,
                category: r.category,
                score: r.score,
                city: r.city,
                current_product: r.current_product,
                tags: tags_by.remove(&r.id).unwrap_or_default(),
                custom_fields: fields_by.remove(&r.id).unwrap_or_default(),
                contacts: contacts_by.remove(&r.id).unwrap_or_default(),
                external_id: r.external_id,
                source: r.source_file.map(|file| ClientSource {
                    file,
                    import_id: r.source_import_id,
                }),
                created_at: format_ms(r.created_at),
                updated_at: format_ms(r.updated_at),
            };
            (out.id, out)
        })
        .collect();
    Ok(order.iter().filter_map(|id| by_id.remove(id)).collect())
}

async fn get_one(conn: &mut AnyConnection, account_id: i64, id: i64) -> ApiResult<ClientOut> {
    load(conn, account_id, &[id])
        .await?
        .pop()
        .ok_or(ApiError::NotFound("client"))
}

/// The columns of a new client row, already validated and normalized.
#[derive(Debug, Clone)]
pub struct ClientRowInput {
    /// Account.
    pub account_id: i64,
    /// Name.
    pub name: String,
    /// Legal name.
    pub legal_name: Option<String>,
    /// Unmasked CPF/CNPJ with valid check digits.
    pub cpf_cnpj: Option<String>,
    /// Status.
    pub status: ClientStatus,
    /// Portfolio of the same account.
    pub portfolio_id: Option<i64>,
    /// Category.
    pub category: Option<String>,
    /// Score 0–100.
    pub score: i64,
    /// City.
    pub city: Option<String>,
    /// Current product.
    pub current_product: Option<String>,
    /// From [`build_search_text`].
    pub search_text: String,
    /// User who created it.
    pub created_by: Option<i64>,
}

/// Inserts a client row and returns its id (contacts, tags and custom values are separate).
pub async fn insert_row(conn: &mut AnyConnection, c: &ClientRowInput) -> DbResult<i64> {
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "insert into clients (account_id, name, legal_name, cpf_cnpj, status, portfolio_id, category, score, city, \
         current_product, search_text, created_by, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) returning id",
    )
    .bind(c.account_id)
    .bind(c.name.clone())
    .bind(c.legal_name.clone())
    .bind(c.cpf_cnpj.clone())
    .bind(c.status.as_str().to_string())
    .bind(c.portfolio_id)
    .bind(c.category.clone())
    .bind(c.score)
    .bind(c.city.clone())
    .bind(c.current_product.clone())
    .bind(c.search_text.clone())
    .bind(c.created_by)
    .bind(now)
    .fetch_one(conn)
    .await?)
}

/// Deserializes a field that may be absent (leave unchanged), `null` (clear) or a value.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `POST /clients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Name (1–200 characters).
    pub name: String,
    /// Legal name (razão social).
    pub legal_name: Option<String>,
    /// CPF or CNPJ, masked or not; check digits are verified.
    pub cpf_cnpj: Option<String>,
    /// Status (default `active`).
    pub status: Option<ClientStatus>,
    /// Portfolio id.
    pub portfolio_id: Option<i64>,
    /// Category.
    pub category: Option<String>,
    /// Score 0–100 (default 0).
    pub score: Option<i64>,
    /// City.
    pub city: Option<String>,
    /// Current product / plan.
    pub current_product: Option<String>,
    /// Tag names (unknown names are created).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Custom field values by key.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, Value>,
    /// Phones and e-mails.
    #[serde(default)]
    pub contacts: Vec<ContactInput>,
}

/// Body of `PATCH /clients/{id}`: absent fields stay, `null` clears. Contacts change through
/// `/clients/{id}/contacts` and `/contacts/{id}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    /// Name.
    pub name: Option<String>,
    /// Legal name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub legal_name: Option<Option<String>>,
    /// CPF or CNPJ.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub cpf_cnpj: Option<Option<String>>,
    /// Status (a change is recorded on the timeline).
    pub status: Option<ClientStatus>,
    /// Portfolio id.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub portfolio_id: Option<Option<i64>>,
    /// Category.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub category: Option<Option<String>>,
    /// Score 0–100.
    pub score: Option<i64>,
    /// City.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
    /// Current product.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub current_product: Option<Option<String>>,
    /// Replaces the tag set.
    pub tags: Option<Vec<String>>,
    /// Merged into the custom fields; `null` removes a value.
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<BTreeMap<String, Value>>,
}

fn check_text(problems: &mut Problems, field: &str, value: Option<&str>, max: usize) {
    if let Some(v) = value
        && v.chars().count() > max
    {
        problems.add(
            field,
            "too_long",
            format!("{field} has at most {max} characters"),
        );
    }
}

fn check_name(problems: &mut Problems, name: &str) {
    if name.trim().is_empty() || name.chars().count() > 200 {
        problems.add(
            "name",
            "invalid_length",
            "name must have 1 to 200 characters",
        );
    }
}

fn parse_document(problems: &mut Problems, raw: Option<&str>) -> Option<String> {
    let raw = raw.filter(|r| !r.trim().is_empty())?;
    match TaxId::parse(raw) {
        Ok(doc) => Some(doc.as_str().to_string()),
        Err(e) => {
            problems.add("cpf_cnpj", e.code(), e.to_string());
            None
        }
    }
}

fn check_score(problems: &mut Problems, score: Option<i64>) {
    if let Some(s) = score
        && !(0..=100).contains(&s)
    {
        problems.add("score", "out_of_range", "score must be from 0 to 100");
    }
}

fn clean_tags(problems: &mut Problems, raw: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        match tags::clean_name(t) {
            Ok(n) if !out.contains(&n) => out.push(n),
            Ok(_) => {}
            Err(m) => problems.add(format!("tags[{i}]"), "invalid_length", m),
        }
    }
    out
}

/// Checks custom field values; `None` in the result means "remove the value".
fn check_custom_fields(
    problems: &mut Problems,
    defs: &BTreeMap<String, CustomField>,
    values: &BTreeMap<String, Value>,
    creating: bool,
) -> Vec<(i64, Option<StoredValue>)> {
    let mut out = Vec::new();
    for (key, value) in values {
        let field = format!("custom_fields.{key}");
        let Some(def) = defs.get(key) else {
            problems.add(
                field,
                "unknown_field",
                format!("no custom field `{key}` is defined"),
            );
            continue;
        };
        if value.is_null() {
            if def.required {
                problems.add(field, "required", format!("`{key}` is required"));
            } else {
                out.push((def.id, None));
            }
            continue;
        }
        match def.parse_json(value) {
            Ok(v) => out.push((def.id, Some(v))),
            Err((code, message)) => problems.add(field, code, message),
        }
    }
    if creating {
        for def in defs.values().filter(|d| d.required) {
            if !values.contains_key(&def.key) {
                problems.add(
                    format!("custom_fields.{}", def.key),
                    "required",
                    format!("`{}` is required", def.key),
                );
            }
        }
    }
    out
}

async fn check_portfolio(
    conn: &mut AnyConnection,
    problems: &mut Problems,
    account_id: i64,
    id: Option<i64>,
) -> DbResult<()> {
    if let Some(id) = id
        && !portfolios::exists(conn, account_id, id).await?
    {
        problems.add(
            "portfolio_id",
            "not_found",
            format!("portfolio {id} does not exist"),
        );
    }
    Ok(())
}

/// Replaces the tags of a client (creating unknown tag names).
pub async fn set_tags(
    conn: &mut AnyConnection,
    account_id: i64,
    client_id: i64,
    names: &[String],
) -> DbResult<()> {
    sqlx::query("delete from client_tags where client_id = $1")
        .bind(client_id)
        .execute(&mut *conn)
        .await?;
    for tag_id in tags::ensure_tags(conn, account_id, names).await? {
        sqlx::query("insert into client_tags (client_id, tag_id) values ($1, $2)")
            .bind(client_id)
            .bind(tag_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Writes custom values (`None` removes one).
pub async fn write_custom_values(
    conn: &mut AnyConnection,
    client_id: i64,
    values: &[(i64, Option<StoredValue>)],
) -> DbResult<()> {
    for (field_id, value) in values {
        sqlx::query("delete from client_field_values where client_id = $1 and field_id = $2")
            .bind(client_id)
            .bind(*field_id)
            .execute(&mut *conn)
            .await?;
        if let Some(v) = value {
            sqlx::query("insert into client_field_values (client_id, field_id, value_text, value_number) values ($1, $2, $3, $4)")
                .bind(client_id)
                .bind(*field_id)
                .bind(v.text.clone())
                .bind(v.number)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

fn trimmed(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Creates a client with its contacts, tags and custom fields.
#[utoipa::path(post, path = "/clients", tag = "clients", request_body = NewClient,
    responses((status = 201, body = ClientOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_client(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewClient>,
) -> ApiResult<(StatusCode, Json<ClientOut>)> {
    user.require(Permission::CrmWrite)?;
    let mut problems = Problems::default();
    check_name(&mut problems, &body.name);
    check_text(&mut problems, "legal_name", body.legal_name.as_deref(), 200);
    check_text(&mut problems, "category", body.category.as_deref(), 100);
    check_text(&mut problems, "city", body.city.as_deref(), 100);
    check_text(
        &mut problems,
        "current_product",
        body.current_product.as_deref(),
        200,
    );
    check_score(&mut problems, body.score);
    let document = parse_document(&mut problems, body.cpf_cnpj.as_deref());
    let tag_names = clean_tags(&mut problems, &body.tags);
    let valid_contacts: Vec<ValidContact> =
        contacts::validate_all(&body.contacts, "contacts", &mut problems);

    let mut tx = state.db.begin().await?;
    check_portfolio(&mut tx, &mut problems, user.account_id, body.portfolio_id).await?;
    let defs = custom_fields::definitions(&mut tx, user.account_id).await?;
    let values = check_custom_fields(&mut problems, &defs, &body.custom_fields, true);
    problems.into_result()?;

    let name = body.name.trim().to_string();
    let legal_name = trimmed(&body.legal_name);
    let status = body.status.unwrap_or(ClientStatus::Active);
    let search_text = build_search_text(
        &name,
        legal_name.as_deref(),
        document.as_deref(),
        valid_contacts
            .iter()
            .map(|c| (c.kind.as_str(), c.value.as_str())),
    );
    let id = insert_row(
        &mut tx,
        &ClientRowInput {
            account_id: user.account_id,
            name,
            legal_name,
            cpf_cnpj: document,
            status,
            portfolio_id: body.portfolio_id,
            category: trimmed(&body.category),
            score: body.score.unwrap_or(0),
            city: trimmed(&body.city),
            current_product: trimmed(&body.current_product),
            search_text,
            created_by: Some(user.id),
        },
    )
    .await?;
    for (i, c) in valid_contacts.iter().enumerate() {
        contacts::insert(&mut tx, user.account_id, id, c)
            .await
            .map_err(contacts::conflict(
                &format!("contacts[{i}].value"),
                &c.value,
            ))?;
    }
    set_tags(&mut tx, user.account_id, id, &tag_names).await?;
    write_custom_values(&mut tx, id, &values).await?;
    timeline::add(
        &mut tx,
        NewItem {
            account_id: user.account_id,
            client_id: id,
            kind: "client_created",
            origin: Origin::User,
            text: "",
            metadata: serde_json::json!({}),
            author_id: Some(user.id),
        },
    )
    .await?;
    let out = get_one(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "client.create",
        "client",
        id,
        audit::NONE,
        Some(&out),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// One client with contacts, tags and custom fields.
#[utoipa::path(get, path = "/clients/{id}", tag = "clients", params(("id" = i64, Path)),
    responses((status = 200, body = ClientOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_client(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ClientOut>> {
    user.require(Permission::CrmRead)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(get_one(&mut conn, user.account_id, id).await?))
}

/// Changes a client.
#[utoipa::path(patch, path = "/clients/{id}", tag = "clients", params(("id" = i64, Path)), request_body = ClientPatch,
    responses((status = 200, body = ClientOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_client(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<ClientPatch>,
) -> ApiResult<Json<ClientOut>> {
    user.require(Permission::CrmWrite)?;
    let mut problems = Problems::default();
    if let Some(n) = &patch.name {
        check_name(&mut problems, n);
    }
    check_text(
        &mut problems,
        "legal_name",
        patch.legal_name.clone().flatten().as_deref(),
        200,
    );
    check_text(
        &mut problems,
        "category",
        patch.category.clone().flatten().as_deref(),
        100,
    );
    check_text(
        &mut problems,
        "city",
        patch.city.clone().flatten().as_deref(),
        100,
    );
    check_text(
        &mut problems,
        "current_product",
        patch.current_product.clone().flatten().as_deref(),
        200,
    );
    check_score(&mut problems, patch.score);
    let document = patch
        .cpf_cnpj
        .as_ref()
        .map(|d| parse_document(&mut problems, d.as_deref()));
    let tag_names = patch.tags.as_ref().map(|t| clean_tags(&mut problems, t));

    let mut tx = state.db.begin().await?;
    let before = get_one(&mut tx, user.account_id, id).await?;
    if let Some(p) = patch.portfolio_id {
        check_portfolio(&mut tx, &mut problems, user.account_id, p).await?;
    }
    let values = match &patch.custom_fields {
        Some(map) => {
            let defs = custom_fields::definitions(&mut tx, user.account_id).await?;
            check_custom_fields(&mut problems, &defs, map, false)
        }
        None => Vec::new(),
    };
    problems.into_result()?;

    let mut q = SqlBuilder::new("update clients set updated_at = ");
    q.bind(now_ms());
    if let Some(n) = &patch.name {
        q.push(", name = ").bind(n.trim().to_string());
    }
    for (column, value) in [
        ("legal_name", &patch.legal_name),
        ("category", &patch.category),
        ("city", &patch.city),
        ("current_product", &patch.current_product),
    ] {
        if let Some(v) = value {
            q.push(&format!(", {column} = ")).bind(trimmed(v));
        }
    }
    let search_changed = patch.name.is_some() || patch.legal_name.is_some() || document.is_some();
    if let Some(doc) = document {
        q.push(", cpf_cnpj = ").bind(doc);
    }
    if let Some(s) = patch.status {
        q.push(", status = ").bind(s.as_str().to_string());
    }
    if let Some(p) = patch.portfolio_id {
        q.push(", portfolio_id = ").bind(p);
    }
    if let Some(s) = patch.score {
        q.push(", score = ").bind(s);
    }
    q.push(" where account_id = ")
        .bind(user.account_id)
        .push(" and id = ")
        .bind(id);
    q.query().execute(&mut *tx).await?;
    if let Some(names) = &tag_names {
        set_tags(&mut tx, user.account_id, id, names).await?;
    }
    write_custom_values(&mut tx, id, &values).await?;
    if search_changed {
        refresh_search_text(&mut tx, id).await?;
    }
    if let Some(s) = patch.status
        && s != before.status
    {
        timeline::add(
            &mut tx,
            NewItem {
                account_id: user.account_id,
                client_id: id,
                kind: "status_changed",
                origin: Origin::User,
                text: "",
                metadata: serde_json::json!({"from": before.status, "to": s}),
                author_id: Some(user.id),
            },
        )
        .await?;
    }
    let after = get_one(&mut tx, user.account_id, id).await?;
    audit::record(
        &mut tx,
        &user.actor(),
        "client.update",
        "client",
        id,
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Deletes a client with its contacts, tags, custom values and timeline (LGPD erasure). The
/// audit log keeps the snapshot of the deletion.
#[utoipa::path(delete, path = "/clients/{id}", tag = "clients", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_client(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::CrmDelete)?;
    let mut tx = state.db.begin().await?;
    let before = get_one(&mut tx, user.account_id, id).await?;
    crate::audit::delete_audited(&mut tx, &user.actor(), "clients", "client", id, &before).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A sortable column of the client list.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SortKey {
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
    Score,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Id => "c.id",
            SortKey::Name => "c.name",
            SortKey::CreatedAt => "c.created_at",
            SortKey::UpdatedAt => "c.updated_at",
            SortKey::Score => "c.score",
        }
    }

    fn cursor_value(self, c: &ClientRow) -> CursorValue {
        match self {
            SortKey::Id => CursorValue::Int(c.id),
            SortKey::Name => CursorValue::Text(c.name.clone()),
            SortKey::CreatedAt => CursorValue::Int(c.created_at),
            SortKey::UpdatedAt => CursorValue::Int(c.updated_at),
            SortKey::Score => CursorValue::Int(c.score),
        }
    }
}

fn parse_sort(raw: Option<&str>) -> ApiResult<(SortKey, bool)> {
    let raw = raw.unwrap_or("-created_at");
    let (desc, name) = match raw.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, raw),
    };
    let key = match name {
        "id" => SortKey::Id,
        "name" => SortKey::Name,
        "created_at" => SortKey::CreatedAt,
        "updated_at" => SortKey::UpdatedAt,
        "score" => SortKey::Score,
        _ => {
            return Err(ApiError::field(
                "sort",
                "invalid_sort",
                "sort by id, name, created_at, updated_at or score; prefix with - for descending",
            ));
        }
    };
    Ok((key, desc))
}

fn parse_time(problems: &mut Problems, field: &str, raw: &str) -> Option<i64> {
    if let Ok(ts) = raw.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    if let Ok(date) = raw.parse::<jiff::civil::Date>()
        && let Ok(zoned) = date.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Some(zoned.timestamp().as_millisecond());
    }
    problems.add(
        field,
        "invalid_time",
        "use an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01, UTC)",
    );
    None
}

/// How a search string is matched.
#[derive(Debug, PartialEq)]
enum Search {
    /// Exact contact or document matches (phone, e-mail, CPF/CNPJ typed in full).
    Exact {
        phone: Option<String>,
        email: Option<String>,
        document: Option<String>,
        fallback: Vec<String>,
    },
    /// Prefix match on every token.
    Tokens(Vec<String>),
}

fn plan_search(q: &str) -> Option<Search> {
    let q = q.trim();
    let numeric = !q.is_empty()
        && q.chars()
            .all(|c| c.is_ascii_digit() || " ()+-./".contains(c));
    let tokens = if numeric {
        vec![q.chars().filter(char::is_ascii_digit).collect::<String>()]
    } else {
        search_tokens(q)
    };
    let tokens: Vec<String> = tokens
        .into_iter()
        .filter(|t| !t.is_empty())
        .take(8)
        .collect();
    if tokens.is_empty() {
        return None;
    }
    if q.contains('@') {
        if let Ok(e) = Email::parse(q) {
            return Some(Search::Exact {
                phone: None,
                email: Some(e.as_str().to_string()),
                document: None,
                fallback: tokens,
            });
        }
    } else if numeric && tokens[0].len() >= 8 {
        let phone = Phone::parse(q).ok().map(|o| o.phone.as_str().to_string());
        let document = TaxId::parse(q).ok().map(|d| d.as_str().to_string());
        if phone.is_some() || document.is_some() {
            return Some(Search::Exact {
                phone,
                email: None,
                document,
                fallback: tokens,
            });
        }
    }
    Some(Search::Tokens(tokens))
}

async fn exact_matches(
    conn: &mut AnyConnection,
    account_id: i64,
    phone: Option<&str>,
    email: Option<&str>,
    document: Option<&str>,
) -> DbResult<Vec<i64>> {
    let mut ids = Vec::new();
    for (kind, value) in [("phone", phone), ("email", email)] {
        if let Some(v) = value {
            let found: Vec<i64> = sqlx::query_scalar(
                "select client_id from contacts where account_id = $1 and kind = $2 and value = $3",
            )
            .bind(account_id)
            .bind(kind.to_string())
            .bind(v.to_string())
            .fetch_all(&mut *conn)
            .await?;
            ids.extend(found);
        }
    }
    if let Some(d) = document {
        let found: Vec<i64> =
            sqlx::query_scalar("select id from clients where account_id = $1 and cpf_cnpj = $2")
                .bind(account_id)
                .bind(d.to_string())
                .fetch_all(&mut *conn)
                .await?;
        ids.extend(found);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The indexed forms a query token may take. Brazilian phones are indexed in their national
/// form (DDD + number) and without the DDD, not with the country code (see
/// [`build_search_text`]); a number typed with its country code (`55 11 98765…`) is looked up
/// both as typed (a DDD 55 number) and without the `55`.
fn token_forms(t: &str) -> Vec<&str> {
    if t.len() >= 4 && t.starts_with("55") && t.bytes().all(|b| b.is_ascii_digit()) {
        vec![t, &t[2..]]
    } else {
        vec![t]
    }
}

/// Up to this many matches, a PostgreSQL search reads the matching ids first and sorts only
/// them (see [`push_token_match`]).
const SPARSE_MATCHES: i64 = 5_000;

/// Restricts `q` to clients matching every token (as a prefix).
///
/// On PostgreSQL the planner cannot estimate how many clients a prefix matches and assumes
/// thousands, so for a page sorted by date it walks the date index and tests each client
/// against the search, which for a rare prefix means the whole account (measured on 483k
/// clients: 0.7–1.6 s for `98765`). So the matching ids are read first, at most
/// [`SPARSE_MATCHES`] + 1 of them: when there are no more, the page is picked among those
/// ids alone (milliseconds); when there are more, matches are dense and the walk finds a
/// page quickly.
async fn push_token_match(
    q: &mut SqlBuilder,
    conn: &mut AnyConnection,
    backend: Backend,
    account_id: i64,
    tokens: &[String],
) -> DbResult<()> {
    match backend {
        Backend::Sqlite => {
            let expr = tokens
                .iter()
                .map(|t| {
                    let forms: Vec<String> =
                        token_forms(t).iter().map(|f| format!("\"{f}\"*")).collect();
                    format!("({})", forms.join(" OR "))
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            q.push(" and c.id in (select rowid from clients_fts where clients_fts match ")
                .bind(expr)
                .push(")");
        }
        Backend::Postgres => {
            let expr = tokens
                .iter()
                .map(|t| {
                    let forms: Vec<String> =
                        token_forms(t).iter().map(|f| format!("{f}:*")).collect();
                    format!("({})", forms.join(" | "))
                })
                .collect::<Vec<_>>()
                .join(" & ");
            // The GIN index lives on client_search (migration 0011, crm::search_index).
            let ids: Vec<i64> = sqlx::query_scalar(
                "select s.client_id from client_search s where s.account_id = $1 \
                 and to_tsvector('simple', s.search_text) @@ to_tsquery('simple', $2) limit $3",
            )
            .bind(account_id)
            .bind(expr.clone())
            .bind(SPARSE_MATCHES + 1)
            .fetch_all(&mut *conn)
            .await?;
            if ids.len() as i64 <= SPARSE_MATCHES {
                q.push(" and c.id in (select e::bigint from json_array_elements_text(")
                    .bind(serde_json::to_string(&ids).expect("ints serialize"))
                    .push("::json) e)");
            } else {
                q.push(
                    " and c.id in (select s.client_id from client_search s \
                     where to_tsvector('simple', s.search_text) @@ to_tsquery('simple', ",
                )
                .bind(expr)
                .push("))");
            }
        }
    }
    Ok(())
}

const LIST_PARAMS: [&str; 10] = [
    "q",
    "status",
    "portfolio_id",
    "tag",
    "created_from",
    "created_to",
    "sort",
    "limit",
    "cursor",
    "has_portfolio",
];

/// Lists clients with filters, search and sorting.
///
/// `q` searches names, legal names, e-mails, phones and CPF/CNPJ: a phone, e-mail or document
/// typed in full is matched exactly (through its normalized form); anything else matches every
/// word as a prefix. Custom fields filter as `cf.<key>=<value>`.
#[utoipa::path(get, path = "/clients", tag = "clients",
    params(
        ("q" = Option<String>, Query, description = "Search text"),
        ("status" = Option<ClientStatus>, Query),
        ("portfolio_id" = Option<i64>, Query),
        ("has_portfolio" = Option<bool>, Query, description = "Only clients with (true) or without (false) a portfolio"),
        ("tag" = Option<Vec<String>>, Query, description = "Tag name; repeat for clients with all of them"),
        ("created_from" = Option<String>, Query, description = "RFC 3339 time or date, inclusive"),
        ("created_to" = Option<String>, Query, description = "RFC 3339 time or date, exclusive"),
        ("sort" = Option<String>, Query, description = "id, name, created_at, updated_at, score; prefix - for descending (default -created_at)"),
        ("limit" = Option<i64>, Query, description = "1–500, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = Page<ClientOut>), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_clients(
    State(state): State<AppState>,
    user: AuthUser,
    query: QueryPairs,
) -> ApiResult<Json<Page<ClientOut>>> {
    user.require(Permission::CrmRead)?;
    query.reject_unknown(&LIST_PARAMS, &["cf."])?;
    let limit = parse_limit(query.get("limit"))?;
    let (sort, desc) = parse_sort(query.get("sort"))?;
    let mut problems = Problems::default();
    let mut conn = state.db.pool().acquire().await?;

    let mut q = SqlBuilder::new(&format!(
        "select {CLIENT_COLUMNS} from clients c where c.account_id = "
    ));
    q.bind(user.account_id);
    if let Some(raw) = query.get("status") {
        match ClientStatus::ALL.iter().find(|s| s.as_str() == raw) {
            Some(s) => {
                q.push(" and c.status = ").bind(s.as_str().to_string());
            }
            None => problems.add(
                "status",
                "invalid",
                format!(
                    "unknown status `{raw}`; expected one of {}",
                    ClientStatus::allowed()
                ),
            ),
        }
    }
    if let Some(raw) = query.get("portfolio_id") {
        match raw.parse::<i64>() {
            Ok(p) => {
                q.push(" and c.portfolio_id = ").bind(p);
            }
            Err(_) => problems.add("portfolio_id", "invalid", "portfolio_id must be an integer"),
        }
    }
    match query.get("has_portfolio") {
        Some("true") => {
            q.push(" and c.portfolio_id is not null");
        }
        Some("false") => {
            q.push(" and c.portfolio_id is null");
        }
        Some(_) => problems.add(
            "has_portfolio",
            "invalid",
            "has_portfolio must be true or false",
        ),
        None => {}
    }
    for tag in query.all("tag") {
        q.push(" and exists (select 1 from client_tags ct join tags t on t.id = ct.tag_id where ct.client_id = c.id and t.account_id = ")
            .bind(user.account_id)
            .push(" and t.name = ")
            .bind(tag.trim().to_string())
            .push(")");
    }
    let cf_filters: Vec<(&str, &str)> = query
        .0
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("cf.").map(|key| (key, v.as_str())))
        .collect();
    if !cf_filters.is_empty() {
        let defs = custom_fields::definitions(&mut conn, user.account_id).await?;
        for (key, raw) in cf_filters {
            let field = format!("cf.{key}");
            let Some(def) = defs.get(key) else {
                problems.add(
                    field,
                    "unknown_field",
                    format!("no custom field `{key}` is defined"),
                );
                continue;
            };
            match def.parse_str(raw) {
                Ok(v) => {
                    q.push(" and exists (select 1 from client_field_values v where v.client_id = c.id and v.field_id = ").bind(def.id);
                    match (v.text, v.number) {
                        (Some(t), _) => q.push(" and v.value_text = ").bind(t),
                        (None, Some(n)) => q.push(" and v.value_number = ").bind(n),
                        (None, None) => q.push(" and 1 = 0"),
                    };
                    q.push(")");
                }
                Err((code, message)) => problems.add(field, code, message),
            }
        }
    }
    for (param, op) in [
        ("created_from", " and c.created_at >= "),
        ("created_to", " and c.created_at < "),
    ] {
        if let Some(raw) = query.get(param)
            && let Some(ms) = parse_time(&mut problems, param, raw)
        {
            q.push(op).bind(ms);
        }
    }
    if let Some(text) = query.get("q").filter(|t| !t.trim().is_empty()) {
        match plan_search(text) {
            None => problems.add("q", "invalid_search", "search text needs letters or digits"),
            Some(Search::Tokens(tokens)) => {
                push_token_match(
                    &mut q,
                    &mut conn,
                    state.db.backend(),
                    user.account_id,
                    &tokens,
                )
                .await?;
            }
            Some(Search::Exact {
                phone,
                email,
                document,
                fallback,
            }) => {
                let ids = exact_matches(
                    &mut conn,
                    user.account_id,
                    phone.as_deref(),
                    email.as_deref(),
                    document.as_deref(),
                )
                .await?;
                if ids.is_empty() {
                    push_token_match(
                        &mut q,
                        &mut conn,
                        state.db.backend(),
                        user.account_id,
                        &fallback,
                    )
                    .await?;
                } else {
                    q.push(" and c.id in ").bind_list(ids);
                }
            }
        }
    }
    problems.into_result()?;

    let column = sort.column();
    if let Some(raw) = query.get("cursor") {
        let cursor = Cursor::decode(raw)?;
        let op = if desc { "<" } else { ">" };
        q.push(&format!(" and ({column}, c.id) {op} ("));
        match cursor.v {
            CursorValue::Int(v) if sort != SortKey::Name => q.bind(v),
            CursorValue::Text(v) if sort == SortKey::Name => q.bind(v),
            _ => {
                return Err(ApiError::field(
                    "cursor",
                    "invalid_cursor",
                    "the cursor belongs to a list with another sort",
                ));
            }
        };
        q.push(", ").bind(cursor.id).push(")");
    }
    let dir = if desc { "desc" } else { "asc" };
    q.push(&format!(" order by {column} {dir}, c.id {dir} limit "))
        .bind(limit + 1);
    let rows: Vec<ClientRow> = q.query_as().fetch_all(&mut *conn).await?;

    let has_more = rows.len() as i64 > limit;
    let mut rows = rows;
    rows.truncate(limit as usize);
    let next_cursor = if has_more {
        rows.last().map(|r| {
            Cursor {
                v: sort.cursor_value(r),
                id: r.id,
            }
            .encode()
        })
    } else {
        None
    };
    let order: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let items = assemble(&mut conn, user.account_id, rows, &order).await?;
    Ok(Json(Page { items, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_covers_every_way_people_type_a_client() {
        let text = build_search_text(
            "João da Silva",
            Some("Padaria Pão Quente LTDA"),
            Some("12345678909"),
            [
                ("phone", "+5511987654321"),
                ("phone", "+14155552671"),
                ("email", "joao.silva@example.com.br"),
            ],
        );
        for token in [
            "joao",
            "silva",
            "padaria",
            "pao",
            "12345678909",
            "11987654321",
            "987654321",
            "14155552671",
            "joaosilvaexamplecombr",
            "example",
        ] {
            assert!(
                text.split(' ').any(|t| t == token),
                "{token} missing from {text}"
            );
        }
        // Forms no search needs: the country code (token_forms strips it from queries) and
        // the generic labels of e-mail domains.
        for token in ["5511987654321", "com", "br"] {
            assert!(
                !text.split(' ').any(|t| t == token),
                "{token} indexed in {text}"
            );
        }
    }

    #[test]
    fn a_number_typed_with_the_country_code_is_also_looked_up_without_it() {
        assert_eq!(token_forms("5511987"), ["5511987", "11987"]);
        assert_eq!(token_forms("11987"), ["11987"]);
        assert_eq!(token_forms("55"), ["55"]);
        assert_eq!(token_forms("55silva"), ["55silva"]);
    }

    #[test]
    fn search_plans() {
        assert_eq!(plan_search("  "), None);
        assert_eq!(
            plan_search("Ana Souza"),
            Some(Search::Tokens(vec!["ana".into(), "souza".into()]))
        );
        assert_eq!(
            plan_search("98765-4321"),
            Some(Search::Tokens(vec!["987654321".into()]))
        );
        match plan_search("(11) 98765-4321") {
            Some(Search::Exact { phone, .. }) => {
                assert_eq!(phone.as_deref(), Some("+5511987654321"))
            }
            other => panic!("{other:?}"),
        }
        match plan_search("Ana@Example.com") {
            Some(Search::Exact { email, .. }) => {
                assert_eq!(email.as_deref(), Some("ana@example.com"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_parse_from_spreadsheet_words() {
        assert_eq!(
            ClientStatus::parse_loose("Ativo"),
            Some(ClientStatus::Active)
        );
        assert_eq!(
            ClientStatus::parse_loose("CANCELADO"),
            Some(ClientStatus::Churned)
        );
        assert_eq!(
            ClientStatus::parse_loose("Em negociação"),
            Some(ClientStatus::Prospect)
        );
        assert_eq!(ClientStatus::parse_loose("???"), None);
    }
}
