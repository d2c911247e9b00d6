//! Column mapping: which source column holds which field.
//!
//! Operators name their columns differently (`valor`, `vl_aposta`, `amount`).
//! [`resolve`] matches each field against pt-BR/English synonyms (compared
//! with `farol_import::mapping::header_key`: accents folded, lower case,
//! punctuation as spaces), then applies overrides written as
//! `"uid=user_id,valor=amount"` (source column = field), which win.

use farol_import::mapping::header_key;

/// Fields of a transaction file, in the order of [`TX_FIELDS`].
pub const TX_FIELDS: [&str; 7] = [
    "transaction_id",
    "user_id",
    "created_at",
    "type",
    "game_type",
    "game_name",
    "amount",
];

/// Fields of a users file, in the order of [`USER_FIELDS`].
pub const USER_FIELDS: [&str; 7] = [
    "user_id",
    "name",
    "email",
    "phone",
    "preferred_channel",
    "signup_date",
    "state",
];

fn synonyms(field: &str) -> &'static [&'static str] {
    match field {
        "transaction_id" => &[
            "transaction id",
            "tx id",
            "id transacao",
            "transacao id",
            "id",
        ],
        "user_id" => &[
            "user id",
            "userid",
            "uid",
            "id usuario",
            "usuario id",
            "player id",
            "id jogador",
            "customer id",
            "id cliente",
            "cliente id",
        ],
        "created_at" => &[
            "created at",
            "timestamp",
            "ts",
            "data hora",
            "datahora",
            "data",
            "date",
            "datetime",
            "criado em",
            "dt transacao",
            "event time",
        ],
        "type" => &[
            "type",
            "tipo",
            "kind",
            "transaction type",
            "tipo transacao",
            "operacao",
        ],
        "game_type" => &[
            "game type",
            "tipo jogo",
            "categoria",
            "category",
            "vertical",
            "produto",
        ],
        "game_name" => &["game name", "game", "jogo", "nome jogo"],
        "amount" => &[
            "amount", "valor", "value", "vl", "montante", "quantia", "stake",
        ],
        "name" => &["name", "nome", "nome completo", "full name"],
        "email" => &["email", "e mail", "mail"],
        "phone" => &[
            "phone",
            "telefone",
            "celular",
            "mobile",
            "fone",
            "whatsapp number",
        ],
        "preferred_channel" => &[
            "preferred channel",
            "canal",
            "canal preferido",
            "channel",
            "opt in channel",
        ],
        "signup_date" => &[
            "signup date",
            "sign up date",
            "data cadastro",
            "cadastro",
            "registration date",
            "created",
        ],
        "state" => &["state", "uf", "estado"],
        _ => &[],
    }
}

/// A mapping problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// An override names a column that is not in the header.
    #[error("override names column {0:?}, which is not in the file")]
    UnknownColumn(String),
    /// An override names a field that does not exist.
    #[error("override names field {0:?}; fields are {1}")]
    UnknownField(String, String),
    /// An override entry is not `column=field`.
    #[error("invalid override {0:?}: expected column=field")]
    Syntax(String),
    /// A required field has no column.
    #[error(
        "no column for required field {0:?} (columns: {1}); add an override like \"column={0}\""
    )]
    Missing(String, String),
}

/// For each field of `fields`, the index of its column in `headers`.
///
/// `overrides` is a `column=field` list separated by commas (empty: none).
/// Fields in `required` must be found.
pub fn resolve(
    headers: &[String],
    fields: &[&str],
    overrides: &str,
    required: &[&str],
) -> Result<Vec<Option<usize>>, MappingError> {
    let keys: Vec<String> = headers.iter().map(|h| header_key(h)).collect();
    let mut out: Vec<Option<usize>> = vec![None; fields.len()];
    let mut taken = vec![false; headers.len()];
    for entry in overrides
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (col, field) = entry
            .split_once('=')
            .ok_or_else(|| MappingError::Syntax(entry.to_owned()))?;
        let field = field.trim();
        let f = fields
            .iter()
            .position(|f| *f == field)
            .ok_or_else(|| MappingError::UnknownField(field.to_owned(), fields.join(", ")))?;
        let ck = header_key(col);
        let c = keys
            .iter()
            .position(|k| *k == ck)
            .ok_or_else(|| MappingError::UnknownColumn(col.trim().to_owned()))?;
        out[f] = Some(c);
        taken[c] = true;
    }
    // Exact field name first, then synonyms in their order of preference.
    for (f, field) in fields.iter().enumerate() {
        if out[f].is_some() {
            continue;
        }
        let own = header_key(field);
        let candidates = std::iter::once(own.as_str()).chain(synonyms(field).iter().copied());
        for syn in candidates {
            if let Some(c) = keys
                .iter()
                .enumerate()
                .position(|(i, k)| !taken[i] && k == syn)
            {
                out[f] = Some(c);
                taken[c] = true;
                break;
            }
        }
    }
    for r in required {
        let f = fields
            .iter()
            .position(|f| f == r)
            .expect("required field is a field");
        if out[f].is_none() {
            return Err(MappingError::Missing((*r).to_owned(), headers.join(", ")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn synonyms_and_overrides() {
        let headers = h(&[
            "ID",
            "Usuário ID",
            "Data/Hora",
            "Tipo",
            "Categoria",
            "Jogo",
            "Valor",
        ]);
        let m = resolve(&headers, &TX_FIELDS, "", &TX_FIELDS).unwrap();
        assert_eq!(
            m,
            vec![
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6)
            ]
        );

        let headers = h(&["tid", "uid", "quando", "op", "vertical", "valor"]);
        let m = resolve(
            &headers,
            &TX_FIELDS,
            "tid=transaction_id, quando=created_at,op=type",
            &[],
        )
        .unwrap();
        assert_eq!(
            m,
            vec![Some(0), Some(1), Some(2), Some(3), Some(4), None, Some(5)]
        );
    }

    #[test]
    fn mapping_errors_name_the_problem() {
        let headers = h(&["a", "b"]);
        assert_eq!(
            resolve(&headers, &TX_FIELDS, "zz=amount", &[]),
            Err(MappingError::UnknownColumn("zz".into()))
        );
        assert!(matches!(
            resolve(&headers, &TX_FIELDS, "a=valor", &[]),
            Err(MappingError::UnknownField(..))
        ));
        assert!(matches!(
            resolve(&headers, &TX_FIELDS, "a", &[]),
            Err(MappingError::Syntax(..))
        ));
        assert!(matches!(
            resolve(&headers, &TX_FIELDS, "", &["amount"]),
            Err(MappingError::Missing(f, _)) if f == "amount"
        ));
    }
}
