//! Demo data: a telecom reseller's portfolio in Brazilian Portuguese — clients with valid
//! CPFs/CNPJs, mobile phones and e-mails, portfolios, tags, custom fields, timeline notes, and
//! one user per role. Deterministic for a given seed; generated once per database.

use std::collections::HashSet;

use farol_normalize::{Cnpj, Cpf, Phone, TaxId};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::audit::Actor;
use crate::auth::Role;
use crate::auth::users::{self, NewUser};
use crate::crm::clients::{ClientRowInput, ClientStatus, build_search_text};
use crate::crm::contacts::{ContactKind, ValidContact};
use crate::crm::portfolios;
use crate::db::{Backend, SqlBuilder, flag, now_ms};
use crate::state::AppState;

/// Password of the demo users (printed by `farol demo`).
pub const DEMO_PASSWORD: &str = "farol-demo-2026";

/// First names (pt-BR), shared with the benchmark generators.
pub(crate) const FIRST: &[&str] = &[
    "Ana",
    "Maria",
    "João",
    "José",
    "Francisco",
    "Antônio",
    "Carlos",
    "Paulo",
    "Pedro",
    "Lucas",
    "Luiz",
    "Marcos",
    "Gabriel",
    "Rafael",
    "Daniel",
    "Marcelo",
    "Bruno",
    "Eduardo",
    "Felipe",
    "Raimundo",
    "Rodrigo",
    "Juliana",
    "Mariana",
    "Fernanda",
    "Patrícia",
    "Aline",
    "Camila",
    "Bruna",
    "Letícia",
    "Beatriz",
    "Larissa",
    "Vitória",
    "Sebastião",
    "Conceição",
    "Luíza",
    "Thiago",
    "Gustavo",
    "Matheus",
    "Renata",
    "Débora",
    "Cláudia",
    "Márcia",
];
/// Family names (pt-BR), shared with the benchmark generators.
pub(crate) const LAST: &[&str] = &[
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Marques",
    "Machado",
    "Mendes",
    "Freitas",
    "Araújo",
    "Conceição",
    "Gonçalves",
    "Brandão",
    "Magalhães",
];
const COMPANY_WORDS: &[&str] = &[
    "Padaria",
    "Mercadinho",
    "Auto Peças",
    "Farmácia",
    "Construtora",
    "Transportes",
    "Clínica",
    "Distribuidora",
    "Comércio de Roupas",
    "Restaurante",
    "Oficina",
    "Papelaria",
    "Ótica",
    "Academia",
    "Pet Shop",
    "Imobiliária",
];
/// (city, state, DDD)
const CITIES: &[(&str, &str, &str)] = &[
    ("São Paulo", "SP", "11"),
    ("Campinas", "SP", "19"),
    ("Santos", "SP", "13"),
    ("Ribeirão Preto", "SP", "16"),
    ("Rio de Janeiro", "RJ", "21"),
    ("Niterói", "RJ", "21"),
    ("Belo Horizonte", "MG", "31"),
    ("Uberlândia", "MG", "34"),
    ("Curitiba", "PR", "41"),
    ("Londrina", "PR", "43"),
    ("Porto Alegre", "RS", "51"),
    ("Florianópolis", "SC", "48"),
    ("Joinville", "SC", "47"),
    ("Brasília", "DF", "61"),
    ("Goiânia", "GO", "62"),
    ("Salvador", "BA", "71"),
    ("Recife", "PE", "81"),
    ("Fortaleza", "CE", "85"),
    ("Belém", "PA", "91"),
    ("Manaus", "AM", "92"),
    ("Vitória", "ES", "27"),
    ("Natal", "RN", "84"),
    ("João Pessoa", "PB", "83"),
    ("São Luís", "MA", "98"),
];
const PRODUCTS: &[&str] = &[
    "Vivo Controle 25GB",
    "Vivo Pós 50GB",
    "Vivo Fibra 500 Mega",
    "Claro Controle 20GB",
    "Claro Pós 60GB",
    "Claro Net Virtua 400 Mega",
    "TIM Controle Smart",
    "TIM Black 50GB",
    "TIM Live 1 Giga",
    "Vivo Empresas 10 linhas",
];
const PORTFOLIOS: &[&str] = &[
    "Vivo Empresas SP",
    "Vivo Varejo RJ",
    "Claro PME Sul",
    "Claro Residencial MG",
    "TIM Corporativo Nordeste",
    "TIM Varejo Centro-Oeste",
];
const TAGS: &[&str] = &[
    "vip",
    "inadimplente",
    "portabilidade",
    "renovação",
    "upsell",
    "fibra",
    "reclamação",
    "indicação",
    "5g",
];
const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "hotmail.com",
    "outlook.com",
    "yahoo.com.br",
    "uol.com.br",
    "bol.com.br",
    "terra.com.br",
];
const NOTES: &[&str] = &[
    "Cliente pediu proposta de portabilidade para 3 linhas.",
    "Ligação sem sucesso, retornar amanhã à tarde.",
    "Interessado em upgrade para fibra 500 Mega.",
    "Reclamou da cobrança do último mês; encaminhado ao financeiro.",
    "Contrato vence no próximo trimestre; oferecer renovação com desconto.",
    "Prefere contato por WhatsApp depois das 18h.",
];

fn ascii_slug(s: &str) -> String {
    farol_normalize::search_tokens(s).join(".")
}

/// A valid CPF or CNPJ with random base digits.
fn document(rng: &mut StdRng, company: bool) -> String {
    loop {
        let doc = if company {
            let base: [u8; 12] = std::array::from_fn(|_| b'0' + rng.random_range(0..10u8));
            let [a, b] = Cnpj::check_digits(&base).expect("digits are valid CNPJ characters");
            format!("{}{a}{b}", String::from_utf8_lossy(&base))
        } else {
            let base: [u8; 9] = std::array::from_fn(|_| rng.random_range(0..10u8));
            let [a, b] = Cpf::check_digits(&base);
            base.iter()
                .chain([&a, &b])
                .map(|d| char::from(b'0' + d))
                .collect()
        };
        // Repeated-digit sequences have valid check digits but are not real documents.
        if TaxId::parse(&doc).is_ok() {
            return doc;
        }
    }
}

fn mobile(rng: &mut StdRng, ddd: &str) -> String {
    loop {
        let number = format!(
            "({ddd}) 9{}{:03}-{:04}",
            rng.random_range(6..10),
            rng.random_range(0..1000),
            rng.random_range(0..10000)
        );
        if let Ok(o) = Phone::parse(&number) {
            return o.phone.as_str().to_string();
        }
    }
}

/// Generates the demo data unless the default account already has clients. Returns a
/// human-readable summary with the demo logins.
pub async fn populate(state: &AppState, count: usize, seed: u64) -> anyhow::Result<String> {
    let db = &state.db;
    let account_id = crate::accounts::ensure(db, crate::accounts::DEFAULT_ACCOUNT).await?;
    let existing: i64 = sqlx::query_scalar("select count(*) from clients where account_id = $1")
        .bind(account_id)
        .fetch_one(db.pool())
        .await?;
    let logins = format!(
        "Demo logins (password `{DEMO_PASSWORD}`): admin@farol.demo, manager@farol.demo, agent@farol.demo, viewer@farol.demo"
    );
    if existing > 0 {
        return Ok(format!(
            "Demo data already present ({existing} clients). {logins}"
        ));
    }
    let actor = Actor::system(account_id, "demo");
    for role in Role::ALL {
        let email = format!("{}@farol.demo", role.as_str());
        if users::find_by_email(db, &email).await?.is_none() {
            users::create(
                db,
                state.hash_cost,
                &actor,
                NewUser {
                    email,
                    name: format!("Demo {}", role.as_str()),
                    password: DEMO_PASSWORD.into(),
                    role,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating demo user: {e}"))?;
        }
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = db.pool().acquire().await?;
    let mut portfolio_ids = Vec::new();
    for name in PORTFOLIOS {
        portfolio_ids.push(portfolios::ensure(&mut conn, account_id, name).await?);
    }
    drop(conn);
    let fields = ensure_custom_fields(state, account_id).await?;

    let tag_ids = {
        let mut conn = db.pool().acquire().await?;
        let names: Vec<String> = TAGS.iter().map(|t| t.to_string()).collect();
        crate::crm::tags::ensure_tags(&mut conn, account_id, &names).await?
    };
    let mut used = HashSet::new();
    let started = std::time::Instant::now();
    for chunk_start in (0..count).step_by(BATCH) {
        let batch: Vec<DemoClient> = (chunk_start..(chunk_start + BATCH).min(count))
            .map(|_| generate(&mut rng, &mut used, &portfolio_ids))
            .collect();
        let mut tx = db.begin().await?;
        write_batch(&mut tx, db.backend(), account_id, &batch, &tag_ids, &fields).await?;
        tx.commit().await?;
    }
    let mut tx = db.begin().await?;
    crate::audit::record(
        &mut tx,
        &actor,
        "demo.populate",
        "account",
        account_id,
        crate::audit::NONE,
        Some(&serde_json::json!({"clients": count, "seed": seed, "at": now_ms()})),
    )
    .await?;
    tx.commit().await?;
    Ok(format!(
        "Generated {count} demo clients in {:.1} s. {logins}",
        started.elapsed().as_secs_f64()
    ))
}

/// Clients written per transaction (and per multi-row statement).
const BATCH: usize = 500;

/// One generated client, before it is stored.
struct DemoClient {
    row: ClientRowInput,
    contacts: Vec<ValidContact>,
    tags: Vec<usize>,
    segment: &'static str,
    lines: f64,
    due: String,
    note: Option<&'static str>,
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    *items.choose(rng).expect("non-empty list")
}

fn generate(rng: &mut StdRng, used: &mut HashSet<String>, portfolio_ids: &[i64]) -> DemoClient {
    let company = rng.random_bool(0.3);
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    let person = format!("{first} {last} {}", pick(rng, LAST));
    let (city, uf, ddd) = pick(rng, CITIES);
    let (name, legal_name) = if company {
        let trade = format!("{} {last}", pick(rng, COMPANY_WORDS));
        let legal = format!(
            "{trade} {} LTDA",
            pick(rng, &["Comércio", "Serviços", "e Cia", "ME"])
        );
        (trade, Some(legal))
    } else {
        (person, None)
    };
    // Documents, phones and e-mails are unique per account: draw again on a collision.
    let doc = loop {
        let d = document(rng, company);
        if used.insert(d.clone()) {
            break d;
        }
    };
    let phone = loop {
        let p = mobile(rng, ddd);
        if used.insert(p.clone()) {
            break p;
        }
    };
    let mut contacts = vec![ValidContact {
        kind: ContactKind::Phone,
        value: phone,
        preferred: true,
        verified: rng.random_bool(0.6),
        opted_out: rng.random_bool(0.03),
    }];
    if rng.random_bool(0.8) {
        let base = format!("{}.{}", ascii_slug(first), ascii_slug(last));
        let mut email = format!("{base}@{}", pick(rng, EMAIL_DOMAINS));
        let mut n = 2;
        while !used.insert(email.clone()) {
            email = format!("{base}{n}@{}", pick(rng, EMAIL_DOMAINS));
            n += 1;
        }
        contacts.push(ValidContact {
            kind: ContactKind::Email,
            value: email,
            preferred: true,
            verified: rng.random_bool(0.5),
            opted_out: rng.random_bool(0.02),
        });
    }
    let status = pick(
        rng,
        &[
            ClientStatus::Active,
            ClientStatus::Active,
            ClientStatus::Active,
            ClientStatus::Lead,
            ClientStatus::Prospect,
            ClientStatus::Inactive,
            ClientStatus::Churned,
        ],
    );
    let search_text = build_search_text(
        &name,
        legal_name.as_deref(),
        Some(&doc),
        contacts.iter().map(|c| (c.kind.as_str(), c.value.as_str())),
    );
    let n_tags = rng.random_range(0..=3);
    let tags = (0..TAGS.len())
        .collect::<Vec<_>>()
        .choose_multiple(rng, n_tags)
        .copied()
        .collect();
    let due = jiff::civil::date(2026, 1, 1)
        .checked_add(jiff::Span::new().days(rng.random_range(0..730)))
        .unwrap_or(jiff::civil::date(2027, 1, 1));
    DemoClient {
        row: ClientRowInput {
            account_id: 0,
            name,
            legal_name,
            cpf_cnpj: Some(doc),
            status,
            portfolio_id: Some(pick(rng, portfolio_ids)),
            category: Some(if company { "Empresa" } else { "Pessoa física" }.to_string()),
            score: rng.random_range(0..=100),
            city: Some(format!("{city}/{uf}")),
            current_product: Some(pick(rng, PRODUCTS).to_string()),
            search_text,
            created_by: None,
        },
        contacts,
        tags,
        segment: if company {
            pick(rng, &["PME", "Corporativo", "Governo"])
        } else {
            "Varejo"
        },
        lines: if company {
            rng.random_range(2..60)
        } else {
            rng.random_range(1..5)
        } as f64,
        due: due.to_string(),
        note: rng.random_bool(0.3).then(|| pick(rng, NOTES)),
    }
}

/// Writes a batch with one multi-row statement per table (a few round trips per 500 clients
/// instead of a dozen per client).
async fn write_batch(
    tx: &mut crate::db::Tx,
    backend: Backend,
    account_id: i64,
    batch: &[DemoClient],
    tag_ids: &[i64],
    fields: &[i64; 3],
) -> anyhow::Result<()> {
    let now = now_ms();
    let mut q = SqlBuilder::bulk(
        backend,
        "insert into clients (account_id, name, legal_name, cpf_cnpj, status, portfolio_id, category, score, city, \
         current_product, search_text, created_at, updated_at) values ",
    );
    for c in batch {
        let r = &c.row;
        q.row((
            account_id,
            r.name.clone(),
            r.legal_name.clone(),
            r.cpf_cnpj.clone(),
            r.status.as_str().to_string(),
            r.portfolio_id,
            r.category.clone(),
            r.score,
            r.city.clone(),
            r.current_product.clone(),
            r.search_text.clone(),
            now,
            now,
        ));
    }
    // Map documents (unique per account) to ids rather than trusting RETURNING's row order.
    q.push(" returning cpf_cnpj, id");
    let ids: std::collections::HashMap<String, i64> = q
        .query_as::<(String, i64)>()
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    let id_of = |c: &DemoClient| ids[c.row.cpf_cnpj.as_deref().unwrap_or_default()];

    let mut q = SqlBuilder::bulk(
        backend,
        "insert into contacts (account_id, client_id, kind, value, preferred, verified, opted_out, created_at, updated_at) values ",
    );
    for c in batch {
        for k in &c.contacts {
            q.row((
                account_id,
                id_of(c),
                k.kind.as_str().to_string(),
                k.value.clone(),
                flag(k.preferred),
                flag(k.verified),
                flag(k.opted_out),
                now,
                now,
            ));
        }
    }
    q.query().execute(&mut **tx).await?;

    let mut q = SqlBuilder::bulk(
        backend,
        "insert into client_tags (client_id, tag_id) values ",
    );
    for c in batch {
        for t in &c.tags {
            q.row((id_of(c), tag_ids[*t]));
        }
    }
    if q.row_count() > 0 {
        q.query().execute(&mut **tx).await?;
    }

    let mut q = SqlBuilder::bulk(
        backend,
        "insert into client_field_values (client_id, field_id, value_text, value_number) values ",
    );
    for c in batch {
        let id = id_of(c);
        q.row((id, fields[0], Some(c.segment.to_string()), None::<f64>));
        q.row((id, fields[1], None::<String>, Some(c.lines)));
        q.row((id, fields[2], Some(c.due.clone()), None::<f64>));
    }
    q.query().execute(&mut **tx).await?;

    let mut q = SqlBuilder::bulk(
        backend,
        "insert into timeline_items (account_id, client_id, kind, origin, text, metadata, author_id, created_at) values ",
    );
    for c in batch {
        let created = (
            "client_created",
            "system",
            "Importado da planilha de demonstração",
            r#"{"source":"demo"}"#,
        );
        let note = c.note.map(|n| ("note", "user", n, "{}"));
        for (kind, origin, text, meta) in std::iter::once(created).chain(note) {
            q.row((
                account_id,
                id_of(c),
                kind.to_string(),
                origin.to_string(),
                text.to_string(),
                meta.to_string(),
                None::<i64>,
                now,
            ));
        }
    }
    q.query().execute(&mut **tx).await?;
    Ok(())
}

async fn ensure_custom_fields(state: &AppState, account_id: i64) -> anyhow::Result<[i64; 3]> {
    let defs = [
        (
            "segmento",
            "Segmento",
            "select",
            Some(r#"["PME","Varejo","Corporativo","Governo"]"#),
        ),
        ("linhas", "Número de linhas", "number", None),
        (
            "vencimento_contrato",
            "Vencimento do contrato",
            "date",
            None,
        ),
    ];
    let mut ids = [0i64; 3];
    for (i, (key, label, kind, options)) in defs.into_iter().enumerate() {
        let now = now_ms();
        sqlx::query(
            "insert into custom_fields (account_id, key, label, field_type, options, required, visible, position, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, 0, 1, $6, $7, $7) on conflict (account_id, key) do nothing",
        )
        .bind(account_id)
        .bind(key.to_string())
        .bind(label.to_string())
        .bind(kind.to_string())
        .bind(options.map(str::to_string))
        .bind(i as i64)
        .bind(now)
        .execute(state.db.pool())
        .await?;
        ids[i] =
            sqlx::query_scalar("select id from custom_fields where account_id = $1 and key = $2")
                .bind(account_id)
                .bind(key.to_string())
                .fetch_one(state.db.pool())
                .await?;
    }
    Ok(ids)
}
