//! Demo data: a telecom reseller's portfolio in Brazilian Portuguese — clients with valid
//! CPFs/CNPJs, mobile phones and e-mails, portfolios, tags, custom fields, timeline notes, and
//! one user per role. Deterministic for a given seed; generated once per database.

use std::collections::HashSet;

use farol_normalize::{Phone, TaxId};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::audit::Actor;
use crate::auth::Role;
use crate::auth::users::{self, NewUser};
use crate::crm::clients::{self, ClientRowInput, ClientStatus, build_search_text};
use crate::crm::contacts::{self, ContactKind, ValidContact};
use crate::crm::custom_fields::StoredValue;
use crate::crm::portfolios;
use crate::crm::timeline::{self, NewItem, Origin};
use crate::db::now_ms;
use crate::state::AppState;

/// Password of the demo users (printed by `farol demo`).
pub const DEMO_PASSWORD: &str = "farol-demo-2026";

const FIRST: &[&str] = &[
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
const LAST: &[&str] = &[
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

/// A valid CPF or CNPJ: random base digits, check digits found by asking the normalizer.
fn document(rng: &mut StdRng, company: bool) -> String {
    let len = if company { 12 } else { 9 };
    loop {
        let base: String = (0..len)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        for check in 0..100 {
            if let Ok(doc) = TaxId::parse(&format!("{base}{check:02}")) {
                return doc.as_str().to_string();
            }
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

    let mut emails_used = HashSet::new();
    let mut phones_used = HashSet::new();
    let started = std::time::Instant::now();
    for chunk_start in (0..count).step_by(500) {
        let mut tx = db.begin().await?;
        for _ in chunk_start..(chunk_start + 500).min(count) {
            let company = rng.random_bool(0.3);
            let first = *FIRST.choose(&mut rng).expect("non-empty");
            let last = *LAST.choose(&mut rng).expect("non-empty");
            let last2 = *LAST.choose(&mut rng).expect("non-empty");
            let person = format!("{first} {last} {last2}");
            let (city, uf, ddd) = *CITIES.choose(&mut rng).expect("non-empty");
            let (name, legal_name) = if company {
                let trade = format!(
                    "{} {}",
                    COMPANY_WORDS.choose(&mut rng).expect("non-empty"),
                    last
                );
                let legal = format!(
                    "{trade} {} LTDA",
                    ["Comércio", "Serviços", "e Cia", "ME"]
                        .choose(&mut rng)
                        .expect("non-empty")
                );
                (trade, Some(legal))
            } else {
                (person.clone(), None)
            };
            let doc = document(&mut rng, company);
            let mut contact_list = Vec::new();
            let phone = mobile(&mut rng, ddd);
            if phones_used.insert(phone.clone()) {
                contact_list.push(ValidContact {
                    kind: ContactKind::Phone,
                    value: phone,
                    preferred: true,
                    verified: rng.random_bool(0.6),
                    opted_out: rng.random_bool(0.03),
                });
            }
            if rng.random_bool(0.8) {
                let mut email = format!(
                    "{}.{}@{}",
                    ascii_slug(first),
                    ascii_slug(last),
                    EMAIL_DOMAINS.choose(&mut rng).expect("non-empty")
                );
                let mut n = 2;
                while !emails_used.insert(email.clone()) {
                    email = format!(
                        "{}.{}{n}@{}",
                        ascii_slug(first),
                        ascii_slug(last),
                        EMAIL_DOMAINS.choose(&mut rng).expect("non-empty")
                    );
                    n += 1;
                }
                contact_list.push(ValidContact {
                    kind: ContactKind::Email,
                    value: email,
                    preferred: true,
                    verified: rng.random_bool(0.5),
                    opted_out: rng.random_bool(0.02),
                });
            }
            let status = *[
                ClientStatus::Active,
                ClientStatus::Active,
                ClientStatus::Active,
                ClientStatus::Lead,
                ClientStatus::Prospect,
                ClientStatus::Inactive,
                ClientStatus::Churned,
            ]
            .choose(&mut rng)
            .expect("non-empty");
            let search_text = build_search_text(
                &name,
                legal_name.as_deref(),
                Some(&doc),
                contact_list
                    .iter()
                    .map(|c| (c.kind.as_str(), c.value.as_str())),
            );
            let id = clients::insert_row(
                &mut tx,
                &ClientRowInput {
                    account_id,
                    name,
                    legal_name,
                    cpf_cnpj: Some(doc),
                    status,
                    portfolio_id: Some(*portfolio_ids.choose(&mut rng).expect("non-empty")),
                    category: Some(if company { "Empresa" } else { "Pessoa física" }.to_string()),
                    score: rng.random_range(0..=100),
                    city: Some(format!("{city}/{uf}")),
                    current_product: Some(
                        PRODUCTS.choose(&mut rng).expect("non-empty").to_string(),
                    ),
                    search_text,
                    created_by: None,
                },
            )
            .await?;
            for c in &contact_list {
                contacts::insert(&mut tx, account_id, id, c).await?;
            }
            let n_tags = rng.random_range(0..=3);
            let tag_names: Vec<String> = TAGS
                .choose_multiple(&mut rng, n_tags)
                .map(|t| t.to_string())
                .collect();
            clients::set_tags(&mut tx, account_id, id, &tag_names).await?;
            let segment = if company {
                ["PME", "Corporativo", "Governo"].choose(&mut rng)
            } else {
                Some(&"Varejo")
            }
            .expect("non-empty");
            let due = jiff::civil::date(2026, 1, 1)
                .checked_add(jiff::Span::new().days(rng.random_range(0..730)))
                .unwrap_or(jiff::civil::date(2027, 1, 1));
            clients::write_custom_values(
                &mut tx,
                id,
                &[
                    (
                        fields[0],
                        Some(StoredValue {
                            text: Some(segment.to_string()),
                            number: None,
                        }),
                    ),
                    (
                        fields[1],
                        Some(StoredValue {
                            text: None,
                            number: Some(if company {
                                rng.random_range(2..60)
                            } else {
                                rng.random_range(1..5)
                            } as f64),
                        }),
                    ),
                    (
                        fields[2],
                        Some(StoredValue {
                            text: Some(due.to_string()),
                            number: None,
                        }),
                    ),
                ],
            )
            .await?;
            timeline::add(
                &mut tx,
                NewItem {
                    account_id,
                    client_id: id,
                    kind: "client_created",
                    origin: Origin::System,
                    text: "Importado da planilha de demonstração",
                    metadata: serde_json::json!({"source": "demo"}),
                    author_id: None,
                },
            )
            .await?;
            if rng.random_bool(0.3) {
                let note = NOTES.choose(&mut rng).expect("non-empty");
                timeline::add(
                    &mut tx,
                    NewItem {
                        account_id,
                        client_id: id,
                        kind: "note",
                        origin: Origin::User,
                        text: note,
                        metadata: serde_json::json!({}),
                        author_id: None,
                    },
                )
                .await?;
            }
        }
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
