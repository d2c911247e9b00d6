//! One spreadsheet row → one normalized candidate client, or the reasons it cannot be one.
//!
//! Pure and synchronous: the pipeline runs it on every core. Problems name the column and
//! keep the raw value, so the report can say exactly what was wrong where.

use std::collections::HashMap;

use farol_import::{Field, Record};
use farol_normalize::{Email, Phone, TaxId};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crm::clients::ClientStatus;
use crate::crm::custom_fields::{CustomField, StoredValue};
use crate::crm::tags;

/// How problems weigh: an error makes the row invalid; a warning drops one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The row is not imported.
    Error,
    /// The row is imported without the offending value.
    Warning,
}

impl Severity {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// What was wrong with one cell (or with the row as a whole, when `column` is `None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The header of the column, when the problem is in one cell.
    pub column: Option<String>,
    /// The raw cell value.
    pub value: Option<String>,
    /// Stable reason code (`invalid_phone.too_short`, `no_contact`, …).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// A row that can become (or update) a client: every value normalized and validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    /// Spreadsheet row number.
    pub row: u64,
    /// Name; never empty.
    pub name: String,
    /// Legal name.
    pub legal_name: Option<String>,
    /// Unmasked CPF/CNPJ with valid check digits.
    pub cpf_cnpj: Option<String>,
    /// E.164 phones, first one preferred, no repeats.
    pub phones: Vec<String>,
    /// Normalized e-mails, first one preferred, no repeats.
    pub emails: Vec<String>,
    /// Status, when the row gives a recognizable one.
    pub status: Option<ClientStatus>,
    /// Portfolio name.
    pub portfolio: Option<String>,
    /// Tag names.
    pub tags: Vec<String>,
    /// City.
    pub city: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Score 0–100.
    pub score: Option<i64>,
    /// Current product.
    pub current_product: Option<String>,
    /// The client's id in the source system.
    pub external_id: Option<String>,
    /// Custom values by field key.
    pub custom: Vec<(String, StoredValue)>,
    /// Stable hash of all of the above but the row number: equal hashes mean an unchanged row.
    pub hash: i64,
    /// The search text of a client made from this row alone (computed here, on all cores,
    /// rather than in the single writer).
    pub search_text: String,
}

/// The verdict on one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// Every cell empty: skipped silently, not counted as read.
    Blank,
    /// Importable, possibly with warnings.
    Valid(Box<Candidate>, Vec<Problem>),
    /// Not importable (row number, problems); at least one problem is an error.
    Invalid(u64, Vec<Problem>),
}

/// What a row is read with: the file's resolved mapping and the account's custom fields.
#[derive(Debug, Clone)]
pub struct RowContext {
    /// Header of each column (for problem reports).
    pub headers: Vec<String>,
    /// Field of each column (`None`: ignored).
    pub mapping: Vec<Option<Field>>,
    /// The account's custom fields by key.
    pub custom_fields: HashMap<String, CustomField>,
    /// Portfolio for rows without one.
    pub default_portfolio: Option<String>,
}

const MAX_TEXT: usize = 500;

/// Splits a cell that may hold several phones or e-mails (`"11 9999-0000 / 11 3333-4444"`).
fn split_many(raw: &str, email: bool) -> impl Iterator<Item = &str> {
    // Whitespace does not separate e-mails: "joao at x.com" is one bad address, not three.
    raw.split(move |c: char| matches!(c, ';' | '/' | '|' | '\n') || (email && c == ','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Reads one record with `ctx`.
pub fn normalize(record: &Record, ctx: &RowContext) -> RowOutcome {
    if record.is_blank() {
        return RowOutcome::Blank;
    }
    let mut c = Candidate {
        row: record.row,
        ..Candidate::default()
    };
    let mut problems: Vec<Problem> = Vec::new();
    // Contact problems are held back: they are errors only if no contact survives.
    let mut contact_problems: Vec<Problem> = Vec::new();
    let header = |i: usize| {
        Some(
            ctx.headers
                .get(i)
                .map_or(String::new(), |h| h.trim().to_owned()),
        )
    };
    let warn = |problems: &mut Vec<Problem>, i: usize, raw: &str, code: String, message: String| {
        problems.push(Problem {
            severity: Severity::Warning,
            column: header(i),
            value: Some(clip(raw)),
            code,
            message,
        });
    };
    let mut name: Option<String> = None;
    for (i, field) in ctx.mapping.iter().enumerate() {
        let Some(field) = field else { continue };
        let raw = record.get(i);
        let value = raw.trim();
        if value.is_empty() {
            continue;
        }
        let text = || Some(clip(&collapse_spaces(value)));
        match field {
            Field::Name => name = text(),
            Field::LegalName => c.legal_name = text(),
            Field::City => c.city = text(),
            Field::Category => c.category = text(),
            Field::CurrentProduct => c.current_product = text(),
            Field::ExternalId => c.external_id = text(),
            Field::Portfolio => c.portfolio = text(),
            Field::CpfCnpj => match TaxId::parse(value) {
                Ok(doc) => c.cpf_cnpj = Some(doc.as_str().to_owned()),
                Err(e) => warn(
                    &mut problems,
                    i,
                    raw,
                    format!("invalid_cpf_cnpj.{}", e.code()),
                    e.to_string(),
                ),
            },
            Field::Phone => {
                for part in split_many(value, false) {
                    match Phone::parse(part) {
                        Ok(p) => {
                            let p = p.phone.into_string();
                            if !c.phones.contains(&p) {
                                c.phones.push(p);
                            }
                        }
                        Err(e) => contact_problems.push(Problem {
                            severity: Severity::Warning,
                            column: header(i),
                            value: Some(clip(part)),
                            code: format!("invalid_phone.{}", e.code()),
                            message: e.to_string(),
                        }),
                    }
                }
            }
            Field::Email => {
                for part in split_many(value, true) {
                    match Email::parse(part) {
                        Ok(e) => {
                            let e = e.into_string();
                            if !c.emails.contains(&e) {
                                c.emails.push(e);
                            }
                        }
                        Err(e) => contact_problems.push(Problem {
                            severity: Severity::Warning,
                            column: header(i),
                            value: Some(clip(part)),
                            code: format!("invalid_email.{}", e.code()),
                            message: e.to_string(),
                        }),
                    }
                }
            }
            Field::Status => match ClientStatus::parse_loose(value) {
                Some(s) => c.status = Some(s),
                None => warn(
                    &mut problems,
                    i,
                    raw,
                    "invalid_status".into(),
                    format!(
                        "`{value}` is not a known status (lead, prospect, active, inactive, churned or their Portuguese names)"
                    ),
                ),
            },
            Field::Tags => {
                for part in value.split([',', ';', '|']) {
                    let part = part.trim();
                    if part.is_empty() {
                        continue;
                    }
                    match tags::clean_name(part) {
                        Ok(t) if !c.tags.contains(&t) => c.tags.push(t),
                        Ok(_) => {}
                        Err(m) => warn(&mut problems, i, part, "invalid_tag".into(), m),
                    }
                }
            }
            Field::Score => match parse_score(value) {
                Some(s) => c.score = Some(s),
                None => warn(
                    &mut problems,
                    i,
                    raw,
                    "invalid_score".into(),
                    format!("`{value}` is not a score between 0 and 100"),
                ),
            },
            Field::Custom(key) => match ctx.custom_fields.get(key) {
                Some(def) => match def.parse_str(value) {
                    Ok(v) => c.custom.push((key.clone(), v)),
                    Err((code, message)) => warn(
                        &mut problems,
                        i,
                        raw,
                        format!("invalid_custom_field.{code}"),
                        format!("cf.{key}: {message}"),
                    ),
                },
                // The pipeline checks the mapping's custom keys before reading rows.
                None => warn(
                    &mut problems,
                    i,
                    raw,
                    "unknown_custom_field".into(),
                    format!("there is no custom field `{key}`"),
                ),
            },
        }
    }
    if c.phones.is_empty() && c.emails.is_empty() {
        for p in &mut contact_problems {
            p.severity = Severity::Error;
        }
        problems.extend(contact_problems);
        problems.push(Problem {
            severity: Severity::Error,
            column: None,
            value: None,
            code: "no_contact".into(),
            message: "the row has no valid phone and no valid e-mail".into(),
        });
        return RowOutcome::Invalid(record.row, problems);
    }
    problems.extend(contact_problems);
    c.name = match name.or_else(|| c.legal_name.clone()) {
        Some(n) => n,
        None => {
            problems.push(Problem {
                severity: Severity::Warning,
                column: None,
                value: None,
                code: "missing_name".into(),
                message: "the row has no name; its first contact is used as the name".into(),
            });
            c.phones
                .first()
                .or(c.emails.first())
                .cloned()
                .unwrap_or_default()
        }
    };
    if c.portfolio.is_none() {
        c.portfolio.clone_from(&ctx.default_portfolio);
    }
    c.hash = hash(&c);
    c.search_text = crate::crm::clients::build_search_text(
        &c.name,
        c.legal_name.as_deref(),
        c.cpf_cnpj.as_deref(),
        c.phones
            .iter()
            .map(|p| ("phone", p.as_str()))
            .chain(c.emails.iter().map(|e| ("email", e.as_str()))),
    );
    RowOutcome::Valid(Box::new(c), problems)
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn parse_score(s: &str) -> Option<i64> {
    let v: f64 = s.replace(',', ".").parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v.round() as i64)
}

/// A stable 63-bit hash of every normalized value (not the row number).
pub fn hash(c: &Candidate) -> i64 {
    let mut h = Sha256::new();
    let mut put = |label: &str, v: &str| {
        h.update(label.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([1]);
    };
    put("name", &c.name);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    put("legal_name", &opt(&c.legal_name));
    put("cpf_cnpj", &opt(&c.cpf_cnpj));
    put("phones", &c.phones.join(","));
    put("emails", &c.emails.join(","));
    put("status", c.status.map_or("", |s| s.as_str()));
    put("portfolio", &opt(&c.portfolio));
    put("tags", &c.tags.join(","));
    put("city", &opt(&c.city));
    put("category", &opt(&c.category));
    put("score", &c.score.map(|s| s.to_string()).unwrap_or_default());
    put("current_product", &opt(&c.current_product));
    put("external_id", &opt(&c.external_id));
    for (k, v) in &c.custom {
        put(k, &format!("{:?}|{:?}", v.text, v.number));
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(headers: &[&str], fields: &[Option<Field>]) -> RowContext {
        RowContext {
            headers: headers.iter().map(|s| s.to_string()).collect(),
            mapping: fields.to_vec(),
            custom_fields: HashMap::new(),
            default_portfolio: None,
        }
    }

    fn record(row: u64, fields: &[&str]) -> Record {
        Record {
            row,
            fields: fields.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn valid(outcome: RowOutcome) -> (Candidate, Vec<Problem>) {
        match outcome {
            RowOutcome::Valid(c, p) => (*c, p),
            other => panic!("expected a valid row, got {other:?}"),
        }
    }

    #[test]
    fn normalizes_every_value_of_a_messy_row() {
        let ctx = ctx(
            &[
                "Nome",
                "CPF",
                "Celular",
                "E-mail",
                "Situação",
                "Tags",
                "Score",
            ],
            &[
                Some(Field::Name),
                Some(Field::CpfCnpj),
                Some(Field::Phone),
                Some(Field::Email),
                Some(Field::Status),
                Some(Field::Tags),
                Some(Field::Score),
            ],
        );
        let (c, problems) = valid(normalize(
            &record(
                2,
                &[
                    "  Maria   da Silva ",
                    "529.982.247-25",
                    "(11) 8765-4321 / 011 3333-4444",
                    " Maria@Example.COM ",
                    "Ativo",
                    "vip; pme",
                    "87,4",
                ],
            ),
            &ctx,
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.row, 2);
        assert_eq!(c.name, "Maria da Silva");
        assert_eq!(c.cpf_cnpj.as_deref(), Some("52998224725"));
        assert_eq!(c.phones, ["+5511987654321", "+551133334444"]);
        assert_eq!(c.emails, ["maria@example.com"]);
        assert_eq!(c.status, Some(ClientStatus::Active));
        assert_eq!(c.tags, ["vip", "pme"]);
        assert_eq!(c.score, Some(87));
    }

    #[test]
    fn a_row_without_any_valid_contact_is_invalid_with_every_reason() {
        let ctx = ctx(
            &["Nome", "Telefone", "Email"],
            &[Some(Field::Name), Some(Field::Phone), Some(Field::Email)],
        );
        let RowOutcome::Invalid(7, problems) =
            normalize(&record(7, &["João", "123", "joao@"]), &ctx)
        else {
            panic!("expected invalid");
        };
        let codes: Vec<&str> = problems.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(codes.len(), 3, "{codes:?}");
        assert!(codes[0].starts_with("invalid_phone."), "{codes:?}");
        assert!(codes[1].starts_with("invalid_email."), "{codes:?}");
        assert_eq!(codes[2], "no_contact");
        assert!(problems.iter().all(|p| p.severity == Severity::Error));
        assert_eq!(problems[0].column.as_deref(), Some("Telefone"));
        assert_eq!(problems[0].value.as_deref(), Some("123"));
    }

    #[test]
    fn one_bad_contact_beside_a_good_one_is_a_warning() {
        let ctx = ctx(
            &["Nome", "Telefone", "Email", "CPF"],
            &[
                Some(Field::Name),
                Some(Field::Phone),
                Some(Field::Email),
                Some(Field::CpfCnpj),
            ],
        );
        let (c, problems) = valid(normalize(
            &record(3, &["Ana", "abc", "ana@example.com", "111.111.111-12"]),
            &ctx,
        ));
        assert!(c.phones.is_empty());
        assert!(c.cpf_cnpj.is_none());
        assert_eq!(c.emails, ["ana@example.com"]);
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|p| p.severity == Severity::Warning));
        assert!(
            problems
                .iter()
                .any(|p| p.code.starts_with("invalid_cpf_cnpj."))
        );
    }

    #[test]
    fn blank_rows_are_blank_and_names_fall_back() {
        let ctx = ctx(
            &["Razão Social", "Fone"],
            &[Some(Field::LegalName), Some(Field::Phone)],
        );
        assert_eq!(normalize(&record(4, &[" ", ""]), &ctx), RowOutcome::Blank);
        let (c, problems) = valid(normalize(&record(5, &["ACME LTDA", "11987654321"]), &ctx));
        assert_eq!(c.name, "ACME LTDA");
        assert!(problems.is_empty());
        let (c, problems) = valid(normalize(&record(6, &["", "11987654321"]), &ctx));
        assert_eq!(c.name, "+5511987654321");
        assert_eq!(problems[0].code, "missing_name");
    }

    #[test]
    fn the_hash_ignores_the_row_number_and_sees_every_value() {
        let ctx = ctx(
            &["Nome", "Telefone", "Cidade"],
            &[Some(Field::Name), Some(Field::Phone), Some(Field::City)],
        );
        let (a, _) = valid(normalize(
            &record(2, &["Ana", "11987654321", "Santos"]),
            &ctx,
        ));
        let (b, _) = valid(normalize(
            &record(9, &["Ana", "(11) 98765-4321", "Santos"]),
            &ctx,
        ));
        let (d, _) = valid(normalize(
            &record(2, &["Ana", "11987654321", "Campinas"]),
            &ctx,
        ));
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, d.hash);
        assert!(a.hash >= 0);
    }
}
