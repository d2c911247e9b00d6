//! Mapping spreadsheet columns to Farol's client fields.
//!
//! [`propose`] guesses a [`Field`] for each header from pt-BR and English
//! synonyms; [`parse_overrides`] reads a user's corrections
//! (`"Telefone=phone,Obs=ignore,Plano=cf.plano_atual"`) and
//! [`apply_overrides`] applies them to a proposal.
//!
//! Headers and synonyms are compared by their *key*: folded (lower-case, no
//! accents, via [`farol_normalize::fold`]), every run of non-alphanumeric
//! characters turned into one space, trimmed. So `"  TELEFONE "`,
//! `"telefone"` and `"Telefone:"` match, as do `"E-mail"` and `"e mail"`,
//! `"CPF/CNPJ"` and `"cpf_cnpj"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A client field a column can feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// Name (or trade name).
    Name,
    /// Legal name (razão social).
    LegalName,
    /// CPF or CNPJ.
    CpfCnpj,
    /// Phone; several columns may map to it.
    Phone,
    /// E-mail; several columns may map to it.
    Email,
    /// Current product or plan.
    CurrentProduct,
    /// Status.
    Status,
    /// Portfolio (carteira).
    Portfolio,
    /// Tags.
    Tags,
    /// City.
    City,
    /// Category or segment.
    Category,
    /// Score.
    Score,
    /// The client's id in the system the file came from.
    ExternalId,
    /// A team-defined custom field, by key.
    Custom(String),
}

/// The standard fields, in display order (everything but [`Field::Custom`]).
pub const STANDARD_FIELDS: [Field; 13] = [
    Field::Name,
    Field::LegalName,
    Field::CpfCnpj,
    Field::Phone,
    Field::Email,
    Field::CurrentProduct,
    Field::Status,
    Field::Portfolio,
    Field::Tags,
    Field::City,
    Field::Category,
    Field::Score,
    Field::ExternalId,
];

impl Field {
    /// The stable snake_case name (`"cpf_cnpj"`, …; custom fields: `"cf.<key>"`).
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        let s = match self {
            Field::Name => "name",
            Field::LegalName => "legal_name",
            Field::CpfCnpj => "cpf_cnpj",
            Field::Phone => "phone",
            Field::Email => "email",
            Field::CurrentProduct => "current_product",
            Field::Status => "status",
            Field::Portfolio => "portfolio",
            Field::Tags => "tags",
            Field::City => "city",
            Field::Category => "category",
            Field::Score => "score",
            Field::ExternalId => "external_id",
            Field::Custom(key) => return format!("cf.{key}").into(),
        };
        s.into()
    }

    /// Whether several columns may map to this field (phone and e-mail).
    pub fn allows_many(&self) -> bool {
        matches!(self, Field::Phone | Field::Email)
    }

    /// The synonyms [`propose`] recognizes for this field (empty for custom fields).
    pub fn synonyms(&self) -> &'static [&'static str] {
        match self {
            Field::Name => &[
                "nome",
                "nome completo",
                "cliente",
                "nome do cliente",
                "nome cliente",
                "name",
                "full name",
                "customer",
                "customer name",
                "client name",
                "nome fantasia",
            ],
            Field::LegalName => &[
                "razão social",
                "razao social",
                "legal name",
                "company name",
                "empresa",
            ],
            Field::CpfCnpj => &[
                "cpf",
                "cnpj",
                "cpf/cnpj",
                "cnpj/cpf",
                "cpf_cnpj",
                "documento",
                "doc",
                "tax id",
            ],
            Field::Phone => &[
                "telefone",
                "celular",
                "fone",
                "tel",
                "whatsapp",
                "phone",
                "mobile",
                "cel",
                "phone number",
                "telefone celular",
            ],
            Field::Email => &["e-mail", "email", "mail", "correio eletrônico"],
            Field::CurrentProduct => &[
                "produto",
                "produto atual",
                "plano",
                "plano atual",
                "product",
                "plan",
                "current product",
            ],
            Field::Status => &["status", "situação", "situacao"],
            Field::Portfolio => &["carteira", "portfolio", "portfólio"],
            Field::Tags => &["tags", "etiquetas", "marcadores"],
            Field::City => &["cidade", "município", "city"],
            Field::Category => &["categoria", "segmento", "category", "segment"],
            Field::Score => &["score", "pontuação"],
            Field::ExternalId => &[
                "id",
                "código",
                "codigo",
                "cod",
                "id cliente",
                "codigo cliente",
                "código do cliente",
                "user_id",
                "external id",
                "customer id",
                "client id",
            ],
            Field::Custom(_) => &[],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Field {
    type Err = MappingError;

    /// Parses a field name (case-insensitive, trimmed); custom fields are
    /// `cf.<key>` or `custom:<key>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        for prefix in ["cf.", "custom:"] {
            if lower.starts_with(prefix) {
                let key = t[prefix.len()..].trim();
                if key.is_empty() {
                    break;
                }
                return Ok(Field::Custom(key.to_owned()));
            }
        }
        STANDARD_FIELDS
            .iter()
            .find(|f| f.name() == lower)
            .cloned()
            .ok_or_else(|| MappingError::UnknownField {
                field: t.to_owned(),
                valid: valid_fields(),
            })
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn valid_fields() -> String {
    let mut names: Vec<String> = STANDARD_FIELDS
        .iter()
        .map(|f| f.name().into_owned())
        .collect();
    names.push("cf.<key>".into());
    names.push("ignore".into());
    names.join(", ")
}

/// An error in a mapping override.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The field name is not a known field.
    #[error("unknown field {field:?}; valid fields: {valid}")]
    UnknownField {
        /// The name given.
        field: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// No header has that name.
    #[error("unknown column {column:?}; columns: {}", .available.join(", "))]
    UnknownColumn {
        /// The column name given.
        column: String,
        /// The file's headers.
        available: Vec<String>,
    },
    /// Several headers have that name.
    #[error("column {column:?} is ambiguous: several headers have that name")]
    AmbiguousColumn {
        /// The column name given.
        column: String,
    },
    /// A single-valued field was given to two columns.
    #[error("field {field} is assigned to both {first:?} and {second:?}")]
    DuplicateField {
        /// The field.
        field: String,
        /// The first column.
        first: String,
        /// The second column.
        second: String,
    },
    /// An entry is not `Column=field`.
    #[error("invalid override {entry:?}: expected Column=field")]
    Syntax {
        /// The entry.
        entry: String,
    },
}

/// The comparison key of a header or synonym (see the module docs).
pub fn header_key(s: &str) -> String {
    let folded = farol_normalize::fold(s);
    let mut key = String::with_capacity(folded.len());
    for c in folded.chars() {
        if c.is_alphanumeric() {
            key.push(c);
        } else if !key.is_empty() && !key.ends_with(' ') {
            key.push(' ');
        }
    }
    if key.ends_with(' ') {
        key.pop();
    }
    key
}

/// Proposes a field for each header (`None`: not recognized, or a second
/// column for a single-valued field).
///
/// Custom fields come first: a header whose key equals a custom key's
/// (`"Plano Atual"` ↔ `plano_atual`) maps to [`Field::Custom`], since the
/// team defined that field on purpose. Then the synonyms of
/// [`Field::synonyms`]; phone and e-mail also match with a trailing number
/// (`"Telefone 2"`, `"celular3"`, `"E-mail 2"`). Phone and e-mail may take
/// several columns; any other field goes to its first column only.
pub fn propose(headers: &[String], custom_keys: &[String]) -> Vec<Option<Field>> {
    let custom: Vec<(String, &String)> = custom_keys.iter().map(|k| (header_key(k), k)).collect();
    let synonyms: Vec<(String, &Field)> = STANDARD_FIELDS
        .iter()
        .flat_map(|f| f.synonyms().iter().map(move |s| (header_key(s), f)))
        .collect();
    let lookup = |key: &str| -> Option<Field> {
        if key.is_empty() {
            return None;
        }
        if let Some((_, k)) = custom.iter().find(|(ck, _)| ck == key) {
            return Some(Field::Custom((*k).clone()));
        }
        if let Some((_, f)) = synonyms.iter().find(|(sk, _)| sk == key) {
            return Some((*f).clone());
        }
        // "telefone 2", "celular3", "email 2".
        let base = key
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end();
        if base.len() < key.len() && !base.is_empty() {
            return synonyms
                .iter()
                .find(|(sk, f)| sk == base && f.allows_many())
                .map(|(_, f)| (*f).clone());
        }
        None
    };
    let mut taken: Vec<Field> = Vec::new();
    headers
        .iter()
        .map(|h| {
            let field = lookup(&header_key(h))?;
            if !field.allows_many() {
                if taken.contains(&field) {
                    return None;
                }
                taken.push(field.clone());
            }
            Some(field)
        })
        .collect()
}

/// One user correction: column `column` (an index into the headers) maps to
/// `field` (`None`: ignore the column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Index of the column in the headers.
    pub column: usize,
    /// The field, or `None` to ignore the column.
    pub field: Option<Field>,
}

/// Parses `"Column=field,Column=field"`. Columns match the headers folded
/// and trimmed (`"telefone"` finds `"  TELEFONE "`); fields are the names
/// of [`Field`] (`cf.<key>` / `custom:<key>` for custom fields) or
/// `ignore` (also `none`, `skip`, `-`). Empty entries are skipped.
pub fn parse_overrides(spec: &str, headers: &[String]) -> Result<Vec<Override>, MappingError> {
    let mut pairs = Vec::new();
    for entry in spec.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((column, field)) = entry.rsplit_once('=') else {
            return Err(MappingError::Syntax {
                entry: entry.trim().to_owned(),
            });
        };
        pairs.push((column, field));
    }
    resolve_overrides(pairs, headers)
}

/// Resolves `(column, field)` pairs (from an API body or a saved preset) against the headers,
/// with the rules of [`parse_overrides`].
pub fn resolve_overrides<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    headers: &[String],
) -> Result<Vec<Override>, MappingError> {
    let folded: Vec<String> = headers
        .iter()
        .map(|h| farol_normalize::fold(h.trim()))
        .collect();
    let mut out: Vec<Override> = Vec::new();
    for (column, field) in pairs {
        let column = column.trim();
        let key = farol_normalize::fold(column);
        let mut matches = folded.iter().enumerate().filter(|(_, h)| **h == key);
        let index = match (matches.next(), matches.next()) {
            (Some((i, _)), None) => i,
            (Some(_), Some(_)) => {
                return Err(MappingError::AmbiguousColumn {
                    column: column.to_owned(),
                });
            }
            (None, _) => {
                return Err(MappingError::UnknownColumn {
                    column: column.to_owned(),
                    available: headers.iter().map(|h| h.trim().to_owned()).collect(),
                });
            }
        };
        let field = match field.trim().to_ascii_lowercase().as_str() {
            "ignore" | "none" | "skip" | "-" => None,
            _ => Some(field.parse::<Field>()?),
        };
        if let Some(f) = field.as_ref().filter(|f| !f.allows_many())
            && let Some(prev) = out
                .iter()
                .find(|o| o.column != index && o.field.as_ref() == Some(f))
        {
            return Err(MappingError::DuplicateField {
                field: f.to_string(),
                first: headers[prev.column].trim().to_owned(),
                second: column.to_owned(),
            });
        }
        out.retain(|o| o.column != index);
        out.push(Override {
            column: index,
            field,
        });
    }
    Ok(out)
}

/// Applies overrides to a proposal (from [`propose`]): each overridden
/// column takes its field, and a single-valued field given to a column by
/// an override is removed from the other columns the proposal had given it.
pub fn apply_overrides(proposal: &mut [Option<Field>], overrides: &[Override]) {
    for o in overrides {
        if let Some(field) = o.field.as_ref().filter(|f| !f.allows_many()) {
            for (i, slot) in proposal.iter_mut().enumerate() {
                if i != o.column && slot.as_ref() == Some(field) {
                    *slot = None;
                }
            }
        }
        if let Some(slot) = proposal.get_mut(o.column) {
            slot.clone_from(&o.field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hs: &[&str]) -> Vec<String> {
        hs.iter().map(|s| s.to_string()).collect()
    }

    fn one(h: &str) -> Option<Field> {
        propose(&headers(&[h]), &[]).pop().unwrap()
    }

    #[test]
    fn names_round_trip() {
        for f in STANDARD_FIELDS {
            assert_eq!(f.to_string().parse::<Field>().unwrap(), f);
        }
        assert_eq!(
            "cf.plano_atual".parse::<Field>().unwrap(),
            Field::Custom("plano_atual".into())
        );
        assert_eq!(
            "custom:origem".parse::<Field>().unwrap(),
            Field::Custom("origem".into())
        );
        assert_eq!(Field::Custom("origem".into()).to_string(), "cf.origem");
        assert_eq!(" Phone ".parse::<Field>().unwrap(), Field::Phone);
        let e = "telefone".parse::<Field>().unwrap_err();
        assert!(
            e.to_string()
                .contains("valid fields: name, legal_name, cpf_cnpj"),
            "{e}"
        );
        assert!("cf.".parse::<Field>().is_err());
        let json = serde_json::to_string(&[Field::CpfCnpj, Field::Custom("x".into())]).unwrap();
        assert_eq!(json, r#"["cpf_cnpj","cf.x"]"#);
        let back: Vec<Field> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, [Field::CpfCnpj, Field::Custom("x".into())]);
        assert!(serde_json::from_str::<Field>(r#""nope""#).is_err());
    }

    #[test]
    fn every_synonym_is_recognized() {
        for f in STANDARD_FIELDS {
            for s in f.synonyms() {
                assert_eq!(one(s), Some(f.clone()), "{s}");
                assert_eq!(
                    one(&format!("  {}  ", s.to_uppercase())),
                    Some(f.clone()),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn brief_synonyms() {
        let cases: &[(&str, Field)] = &[
            ("Nome", Field::Name),
            ("Nome Completo", Field::Name),
            ("Cliente", Field::Name),
            ("Full Name", Field::Name),
            ("Nome Fantasia", Field::Name),
            ("Razão Social", Field::LegalName),
            ("RAZAO SOCIAL", Field::LegalName),
            ("Empresa", Field::LegalName),
            ("CPF/CNPJ", Field::CpfCnpj),
            ("cpf_cnpj", Field::CpfCnpj),
            ("Documento", Field::CpfCnpj),
            ("Tax ID", Field::CpfCnpj),
            ("Telefone", Field::Phone),
            ("Celular", Field::Phone),
            ("WhatsApp", Field::Phone),
            ("Telefone 1", Field::Phone),
            ("telefone2", Field::Phone),
            ("Cel", Field::Phone),
            ("E-mail", Field::Email),
            ("EMAIL", Field::Email),
            ("Correio Eletrônico", Field::Email),
            ("E-mail 2", Field::Email),
            ("Plano Atual", Field::CurrentProduct),
            ("Produto", Field::CurrentProduct),
            ("Situação", Field::Status),
            ("situacao", Field::Status),
            ("Portfólio", Field::Portfolio),
            ("Carteira", Field::Portfolio),
            ("Etiquetas", Field::Tags),
            ("Município", Field::City),
            ("Segmento", Field::Category),
            ("Pontuação", Field::Score),
            ("Código", Field::ExternalId),
            ("ID Cliente", Field::ExternalId),
            ("user_id", Field::ExternalId),
            ("External ID", Field::ExternalId),
        ];
        for (h, f) in cases {
            assert_eq!(one(h), Some(f.clone()), "{h}");
        }
        assert_eq!(one("Observações"), None);
        assert_eq!(one(""), None);
        // The trailing-number rule is for phone and e-mail only.
        assert_eq!(one("Cidade 2"), None);
    }

    #[test]
    fn multi_and_single_valued_fields() {
        let h = headers(&[
            "Nome",
            "Telefone",
            "Celular",
            "E-mail",
            "Email 2",
            "Nome Fantasia",
            "Cidade",
            "Obs",
        ]);
        assert_eq!(
            propose(&h, &[]),
            [
                Some(Field::Name),
                Some(Field::Phone),
                Some(Field::Phone),
                Some(Field::Email),
                Some(Field::Email),
                None,
                Some(Field::City),
                None,
            ]
        );
    }

    #[test]
    fn custom_fields_match_by_key_and_win() {
        let h = headers(&["Nome", "Plano Atual", "Origem do Lead", "ORIGEM"]);
        let custom = headers(&["plano_atual", "origem"]);
        assert_eq!(
            propose(&h, &custom),
            [
                Some(Field::Name),
                Some(Field::Custom("plano_atual".into())),
                None,
                Some(Field::Custom("origem".into())),
            ]
        );
    }

    #[test]
    fn overrides_apply() {
        let h = headers(&["Nome", "  TELEFONE ", "Carteira", "Obs", "Plano", "Cliente"]);
        let mut p = propose(&h, &[]);
        assert_eq!(p[5], None); // second "name" column
        let o = parse_overrides(
            "Telefone=phone, carteira=portfolio,Obs=ignore,Plano=cf.plano_atual,Cliente=name",
            &h,
        )
        .unwrap();
        assert_eq!(o.len(), 5);
        apply_overrides(&mut p, &o);
        assert_eq!(
            p,
            [
                None, // "Cliente=name" took the name from "Nome"
                Some(Field::Phone),
                Some(Field::Portfolio),
                None,
                Some(Field::Custom("plano_atual".into())),
                Some(Field::Name),
            ]
        );
        // Later entries for the same column replace earlier ones.
        let o = parse_overrides("Obs=status,Obs=ignore,", &h).unwrap();
        assert_eq!(
            o,
            [Override {
                column: 3,
                field: None
            }]
        );
    }

    #[test]
    fn override_errors() {
        let h = headers(&["Nome", "Telefone", "Telefone"]);
        let e = parse_overrides("Fone=phone", &h).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown column "Fone"; columns: Nome, Telefone, Telefone"#
        );
        let e = parse_overrides("Nome=nome", &h).unwrap_err();
        assert!(matches!(&e, MappingError::UnknownField { field, .. } if field == "nome"));
        assert!(e.to_string().contains("phone"), "{e}");
        assert!(e.to_string().contains("cf.<key>"), "{e}");
        assert!(matches!(
            parse_overrides("Telefone=phone", &h),
            Err(MappingError::AmbiguousColumn { .. })
        ));
        assert!(matches!(
            parse_overrides("Nome", &h),
            Err(MappingError::Syntax { .. })
        ));
        let h = headers(&["A", "B"]);
        let e = parse_overrides("A=name,B=name", &h).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"field name is assigned to both "A" and "B""#
        );
        assert!(parse_overrides("A=phone,B=phone", &h).is_ok());
    }

    #[test]
    fn keys() {
        assert_eq!(header_key("  E-MAIL: "), "e mail");
        assert_eq!(header_key("CPF / CNPJ"), "cpf cnpj");
        assert_eq!(header_key("Razão_Social"), "razao social");
    }
}
