//! `farol bench …`: generators of realistic test data and the baselines benchmarks compare
//! against (see scripts/bench-import and docs/benchmarks.md).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use farol_normalize::{Cpf, Phone, TaxId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::crm::clients::{ClientStatus, build_search_text};
use crate::db::{Backend, Db};
use crate::demo::{FIRST, LAST};

pub mod campaign;
pub mod sink;

/// `farol bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write a messy client spreadsheet like the ones exported by other systems.
    GenClients(GenClientsArgs),
    /// Load the clean rows written by `gen-clients --clean-output` with the database's
    /// fastest raw path (COPY on PostgreSQL, prepared multi-row inserts on SQLite): the
    /// baseline the import pipeline is compared with.
    RawLoad(RawLoadArgs),
    /// Write synthetic players with planted segments: users.csv, transactions (Parquet or
    /// CSV, optionally partitioned by day) and planted.csv (the truth, for ARI).
    GenTransactions(GenTransactionsArgs),
    /// The send throughput benchmark: demo clients with e-mails, a plain SMTP blast (the
    /// ceiling), an unthrottled campaign and a throttled one, all to `smtp-sink`.
    Campaign(campaign::CampaignBenchArgs),
    /// A minimal fast SMTP server that counts messages (`REPORT` on stdin prints the counts).
    SmtpSink {
        /// Port on 127.0.0.1 (0: any free one, printed as `PORT n`).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

/// Arguments of `farol bench gen-transactions`.
#[derive(Debug, Args)]
pub struct GenTransactionsArgs {
    /// Players.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Mean transactions per player.
    #[arg(long, default_value_t = 50.0)]
    pub tx_per_user: f64,
    /// Output directory.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Transactions format.
    #[arg(long, default_value = "parquet", value_parser = ["parquet", "csv"])]
    pub format: String,
    /// Parquet partitioned by day (`transactions/dt=YYYY-MM-DD/part-0.parquet`).
    #[arg(long)]
    pub partitioned: bool,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Arguments of `farol bench gen-clients`.
#[derive(Debug, Args)]
pub struct GenClientsArgs {
    /// Number of rows.
    pub rows: u64,
    /// Output file (CSV).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Also write the distinct clients the file holds, clean (for `raw-load`).
    #[arg(long)]
    pub clean_output: Option<PathBuf>,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Encoding: windows-1252 (what Excel in Brazil writes) or utf-8.
    #[arg(long, default_value = "windows-1252", value_parser = ["windows-1252", "utf-8"])]
    pub encoding: String,
    /// Field delimiter.
    #[arg(long, default_value = ";")]
    pub delimiter: char,
}

/// Arguments of `farol bench raw-load`.
#[derive(Debug, Args)]
pub struct RawLoadArgs {
    /// The clean CSV from `gen-clients --clean-output`.
    pub file: PathBuf,
}

/// Runs a bench subcommand.
pub async fn run(config: Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::GenClients(args) => {
            let summary = tokio::task::spawn_blocking(move || gen_clients(&args)).await??;
            eprintln!("{summary}");
            Ok(())
        }
        BenchCommand::RawLoad(args) => raw_load(config, args).await,
        BenchCommand::Campaign(args) => campaign::run(config, args).await,
        BenchCommand::SmtpSink { port } => sink::run(port).await,
        BenchCommand::GenTransactions(args) => {
            let summary = tokio::task::spawn_blocking(move || gen_transactions(&args)).await??;
            eprintln!("{summary}");
            Ok(())
        }
    }
}

const CITIES: &[(&str, &str)] = &[
    ("São Paulo", "11"),
    ("Campinas", "19"),
    ("Santos", "13"),
    ("Rio de Janeiro", "21"),
    ("Niterói", "21"),
    ("Belo Horizonte", "31"),
    ("Curitiba", "41"),
    ("Porto Alegre", "51"),
    ("Salvador", "71"),
    ("Recife", "81"),
    ("Fortaleza", "85"),
    ("Belém", "91"),
    ("Manaus", "92"),
    ("Goiânia", "62"),
    ("Brasília", "61"),
    ("Florianópolis", "48"),
];
const PORTFOLIOS: &[&str] = &[
    "Varejo SP",
    "Varejo RJ",
    "PME Sul",
    "Corporativo",
    "Recuperação",
];
const STATUSES: &[&str] = &[
    "Ativo",
    "ativo",
    "ATIVO",
    "Inativo",
    "Cancelado",
    "Prospect",
    "lead",
    "Em negociação",
    "",
];
const PRODUCTS: &[&str] = &[
    "Controle 20GB",
    "Pós 50GB",
    "Fibra 500 Mega",
    "Empresa 100GB",
    "Pré Turbo",
];
const TAGS: &[&str] = &[
    "vip",
    "inadimplente",
    "portabilidade",
    "fidelizado",
    "upsell",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "hotmail.com",
    "yahoo.com.br",
    "uol.com.br",
    "outlook.com",
    "empresa.com.br",
];

/// One client as the generator knows it (the truth behind the messy row).
struct Truth {
    name: String,
    cpf: Option<String>,
    mobile: String,
    landline: Option<String>,
    email: Option<String>,
    city: &'static str,
    portfolio: &'static str,
    product: &'static str,
}

fn truth(i: u64, rng: &mut StdRng) -> Truth {
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let (city, ddd) = CITIES[rng.random_range(0..CITIES.len())];
    // Unique by construction: the index decides the digits (a bijection mod 10^n).
    let sub = (i.wrapping_mul(7_919) + 1_234_567) % 10_000_000;
    let mobile = format!("+55{ddd}9{}{sub:07}", 6 + (i % 4));
    let fixed = (i.wrapping_mul(104_729) + 7_654_321) % 10_000_000;
    let landline = rng
        .random_bool(0.15)
        .then(|| format!("+55{ddd}3{fixed:07}"));
    let cpf = {
        let n = (i.wrapping_mul(7_919_993) + 100_000_007) % 1_000_000_000;
        let base: [u8; 9] = std::array::from_fn(|k| ((n / 10u64.pow(8 - k as u32)) % 10) as u8);
        let [a, b] = Cpf::check_digits(&base);
        let doc: String = base
            .iter()
            .chain([&a, &b])
            .map(|d| char::from(b'0' + d))
            .collect();
        TaxId::parse(&doc).is_ok().then_some(doc)
    };
    let email = rng.random_bool(0.85).then(|| {
        format!(
            "{}.{}{i}@{}",
            farol_normalize::search_tokens(first).join(""),
            farol_normalize::search_tokens(last).join(""),
            DOMAINS[rng.random_range(0..DOMAINS.len())]
        )
    });
    Truth {
        name: format!("{first} {last}"),
        cpf,
        mobile,
        landline,
        email,
        city,
        portfolio: PORTFOLIOS[rng.random_range(0..PORTFOLIOS.len())],
        product: PRODUCTS[rng.random_range(0..PRODUCTS.len())],
    }
}

/// Writes an E.164 Brazilian number the way people type it.
fn messy_phone(e164: &str, rng: &mut StdRng) -> String {
    let national = &e164[3..];
    let (ddd, number) = national.split_at(2);
    let (a, b) = number.split_at(number.len() - 4);
    match rng.random_range(0..8) {
        0 => format!("({ddd}) {a}-{b}"),
        1 => format!("0{ddd} {a} {b}"),
        2 => format!("55{ddd}{number}"),
        3 => format!("+55({ddd}){a}.{b}"),
        4 => format!("{ddd}{number}"),
        5 => format!(" {ddd}-{a}-{b} "),
        // A legacy 8-digit mobile: the 9 was added in 2012–2016; old exports lack it.
        6 if number.len() == 9 && number.starts_with('9') => {
            format!("({ddd}) {}-{b}", &a[1..])
        }
        _ => format!("+55 {ddd} {a}-{b}"),
    }
}

fn messy_cpf(cpf: &str, rng: &mut StdRng) -> String {
    match rng.random_range(0..3) {
        0 => cpf.to_owned(),
        1 => format!("{}.{}.{}-{}", &cpf[..3], &cpf[3..6], &cpf[6..9], &cpf[9..]),
        _ => format!(" {} ", cpf),
    }
}

fn messy_name(name: &str, rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => name.to_uppercase(),
        1 => format!("  {}  ", name.replace(' ', "  ")),
        _ => name.to_owned(),
    }
}

/// Writes the messy file (and the clean one); returns a summary.
pub fn gen_clients(args: &GenClientsArgs) -> anyhow::Result<String> {
    farol_normalize::phone::warm_up();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let file = std::fs::File::create(&args.output)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.output.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut clean = match &args.clean_output {
        Some(p) => Some(csv::Writer::from_writer(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
        ))),
        None => None,
    };
    if let Some(c) = &mut clean {
        c.write_record([
            "name",
            "cpf_cnpj",
            "phone",
            "phone2",
            "email",
            "city",
            "portfolio",
            "product",
            "status",
            "search_text",
        ])?;
    }
    let latin1 = args.encoding == "windows-1252";
    let mut builder = csv::WriterBuilder::new();
    builder.delimiter(args.delimiter as u8);
    let mut w = builder.from_writer(Vec::with_capacity(1 << 17));
    w.write_record([
        "Nome",
        "CPF/CNPJ",
        "Celular",
        "Telefone Fixo",
        "E-mail",
        "Cidade",
        "Carteira",
        "Situação",
        "Produto Atual",
        "Tags",
        "Observações",
    ])?;
    let mut written_clients: Vec<u64> = Vec::new();
    let (mut invalid, mut duplicates, mut blanks) = (0u64, 0u64, 0u64);
    let mut next_client = 0u64;
    for _ in 0..args.rows {
        let roll: f64 = rng.random();
        if roll < 0.004 {
            blanks += 1;
            w.write_record(["", "", "", "", "", "", "", "", "", "", ""])?;
        } else if roll < 0.014 {
            // No way to contact: garbage phone, broken e-mail.
            invalid += 1;
            w.write_record([
                "Cliente Sem Contato",
                "",
                "123",
                "",
                "fulano@",
                "",
                "",
                "",
                "",
                "",
                "",
            ])?;
        } else if roll < 0.034 && !written_clients.is_empty() {
            // The same client again, typed differently (another branch's export).
            duplicates += 1;
            let i = written_clients[rng.random_range(0..written_clients.len())];
            let mut r2 = StdRng::seed_from_u64(args.seed ^ i);
            let t = truth(i, &mut r2);
            let phone = messy_phone(&t.mobile, &mut rng);
            let email = t
                .email
                .clone()
                .map(|e| e.to_uppercase())
                .unwrap_or_default();
            w.write_record([
                &messy_name(&t.name, &mut rng),
                "",
                &phone,
                "",
                &email,
                t.city,
                "",
                "",
                "",
                "",
                "",
            ])?;
        } else {
            let i = next_client;
            next_client += 1;
            let mut r2 = StdRng::seed_from_u64(args.seed ^ i);
            let t = truth(i, &mut r2);
            // Does libphonenumber accept the number? (a few generated ranges do not exist)
            if Phone::parse(&t.mobile).is_err() {
                invalid += 1;
            } else {
                written_clients.push(i);
            }
            let bad_cpf = rng.random_bool(0.01);
            let cpf = match &t.cpf {
                Some(c) if bad_cpf => {
                    let mut b = c.clone().into_bytes();
                    b[10] = if b[10] == b'9' { b'0' } else { b[10] + 1 };
                    String::from_utf8(b).expect("digits")
                }
                Some(c) => messy_cpf(c, &mut rng),
                None => String::new(),
            };
            let bad_email = rng.random_bool(0.02);
            let email = match &t.email {
                Some(e) if bad_email => e.replace('@', " at "),
                Some(e) if rng.random_bool(0.2) => format!(" {} ", e.to_uppercase()),
                Some(e) => e.clone(),
                None => String::new(),
            };
            let phone = messy_phone(&t.mobile, &mut rng);
            let landline = t
                .landline
                .as_deref()
                .map(|l| messy_phone(l, &mut rng))
                .unwrap_or_default();
            let status = STATUSES[rng.random_range(0..STATUSES.len())];
            let tags = if rng.random_bool(0.3) {
                TAGS[rng.random_range(0..TAGS.len())].to_owned()
            } else {
                String::new()
            };
            let note = if rng.random_bool(0.01) {
                "Ligar depois das 18h;\nprefere \"WhatsApp\""
            } else {
                ""
            };
            w.write_record([
                &messy_name(&t.name, &mut rng),
                &cpf,
                &phone,
                &landline,
                &email,
                t.city,
                t.portfolio,
                status,
                t.product,
                &tags,
                note,
            ])?;
            if let Some(c) = &mut clean
                && Phone::parse(&t.mobile).is_ok()
            {
                // The values as Farol stores them, search text included, so the raw load
                // writes the same bytes into the same indexes.
                let cpf = if bad_cpf { None } else { t.cpf.as_deref() };
                let email = if bad_email { None } else { t.email.as_deref() };
                let mut contacts = vec![("phone", t.mobile.as_str())];
                contacts.extend(t.landline.as_deref().map(|l| ("phone", l)));
                contacts.extend(email.map(|e| ("email", e)));
                let search = build_search_text(&t.name, None, cpf, contacts);
                let status = ClientStatus::parse_loose(status).unwrap_or(ClientStatus::Active);
                c.write_record([
                    t.name.as_str(),
                    cpf.unwrap_or(""),
                    &t.mobile,
                    t.landline.as_deref().unwrap_or(""),
                    email.unwrap_or(""),
                    t.city,
                    t.portfolio,
                    t.product,
                    status.as_str(),
                    &search,
                ])?;
            }
        }
        if w.get_ref().len() > 1 << 16 {
            flush(&builder, &mut w, &mut out, latin1)?;
        }
    }
    flush(&builder, &mut w, &mut out, latin1)?;
    out.flush()?;
    if let Some(c) = &mut clean {
        c.flush()?;
    }
    Ok(format!(
        "wrote {} rows to {}: {} clients, {duplicates} repeated clients, {invalid} invalid rows, {blanks} blank rows",
        args.rows,
        args.output.display(),
        written_clients.len()
    ))
}

/// Moves the buffered rows to `out`, transcoded (csv's writer only writes UTF-8).
fn flush(
    builder: &csv::WriterBuilder,
    w: &mut csv::Writer<Vec<u8>>,
    out: &mut impl Write,
    latin1: bool,
) -> anyhow::Result<()> {
    let fresh = builder.from_writer(Vec::with_capacity(1 << 17));
    let buf = std::mem::replace(w, fresh)
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
    if latin1 {
        let text = String::from_utf8(buf).expect("csv writes UTF-8");
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
        out.write_all(&bytes)?;
    } else {
        out.write_all(&buf)?;
    }
    Ok(())
}

/// The raw baseline: clean rows straight into `clients` and `contacts`.
async fn raw_load(config: Config, args: RawLoadArgs) -> anyhow::Result<()> {
    let url = config.database_url();
    let db = Db::connect(&url, 2).await?;
    db.migrate().await?;
    let start = std::time::Instant::now();
    let mut reader = csv::Reader::from_path(&args.file)?;
    let mut rows: Vec<csv::StringRecord> = Vec::new();
    for r in reader.records() {
        rows.push(r?);
    }
    let account_id = 1_i64;
    let now = crate::db::now_ms();
    let n = rows.len();
    match db.backend() {
        Backend::Postgres => {
            use sqlx::postgres::PgPoolOptions;
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await?;
            let mut conn = pool.acquire().await?;
            let base: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from clients")
                .fetch_one(&mut *conn)
                .await?;
            let mut clients = Vec::with_capacity(n * 80);
            let mut contacts = Vec::with_capacity(n * 80);
            {
                let mut cw = csv::Writer::from_writer(&mut clients);
                let mut kw = csv::Writer::from_writer(&mut contacts);
                for (k, r) in rows.iter().enumerate() {
                    let id = (base + 1 + k as i64).to_string();
                    cw.write_record([
                        &id,
                        "1",
                        &r[0],
                        &r[1],
                        &r[8],
                        &r[5],
                        &r[7],
                        &r[9],
                        &now.to_string(),
                        &now.to_string(),
                    ])?;
                    for (kind, v) in [("phone", &r[2]), ("phone", &r[3]), ("email", &r[4])] {
                        if !v.is_empty() {
                            kw.write_record([
                                &id,
                                "1",
                                kind,
                                v,
                                &now.to_string(),
                                &now.to_string(),
                            ])?;
                        }
                    }
                }
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            // The same search-index setting the importer uses: the baseline gets every
            // advantage the pipeline has.
            sqlx::query("set local gin_pending_list_limit = '64MB'")
                .execute(&mut *tx)
                .await?;
            let mut copy = tx
                .copy_in_raw("copy clients (id, account_id, name, cpf_cnpj, status, city, current_product, search_text, created_at, updated_at) from stdin (format csv, null '')")
                .await?;
            copy.send(clients).await?;
            copy.finish().await?;
            let mut copy = tx
                .copy_in_raw("copy contacts (client_id, account_id, kind, value, created_at, updated_at) from stdin (format csv)")
                .await?;
            copy.send(contacts).await?;
            copy.finish().await?;
            tx.commit().await?;
            sqlx::query("select gin_clean_pending_list('client_search_text'::regclass)")
                .execute(&mut *conn)
                .await?;
        }
        Backend::Sqlite => {
            let mut tx = db.begin().await?;
            let base: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from clients")
                .fetch_one(&mut *tx)
                .await?;
            for (chunk_no, chunk) in rows.chunks(5000).enumerate() {
                let mut client_rows = Vec::with_capacity(chunk.len());
                let mut contact_rows = Vec::new();
                for (k, r) in chunk.iter().enumerate() {
                    let id = base + 1 + (chunk_no * 5000 + k) as i64;
                    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
                    client_rows.push(vec![
                        id.into(),
                        account_id.into(),
                        r[0].to_owned().into(),
                        opt(&r[1]).into(),
                        r[8].to_owned().into(),
                        r[5].to_owned().into(),
                        r[7].to_owned().into(),
                        r[9].to_owned().into(),
                        now.into(),
                        now.into(),
                    ]);
                    for (kind, v) in [("phone", &r[2]), ("phone", &r[3]), ("email", &r[4])] {
                        if !v.is_empty() {
                            contact_rows.push(vec![
                                id.into(),
                                account_id.into(),
                                kind.into(),
                                v.to_owned().into(),
                                now.into(),
                                now.into(),
                            ]);
                        }
                    }
                }
                crate::db::bulk::insert_rows(&mut tx, Backend::Sqlite, "insert into clients (id, account_id, name, cpf_cnpj, status, city, current_product, search_text, created_at, updated_at) values ", "", client_rows).await?;
                crate::db::bulk::insert_rows(&mut tx, Backend::Sqlite, "insert into contacts (client_id, account_id, kind, value, created_at, updated_at) values ", "", contact_rows).await?;
            }
            tx.commit().await?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"rows\": {n}, \"seconds\": {secs:.3}, \"rows_per_sec\": {:.0}, \"backend\": \"{}\"}}",
        n as f64 / secs,
        db.backend().name()
    );
    Ok(())
}

/// Writes a synthetic data lake; returns a summary.
pub fn gen_transactions(args: &GenTransactionsArgs) -> anyhow::Result<String> {
    use farol_segment::synth;
    std::fs::create_dir_all(&args.output)?;
    let mut users = Vec::with_capacity(args.users);
    let mut planted = Vec::with_capacity(args.users);
    let mut count = 0u64;
    let tx_path = args
        .output
        .join(match (args.format.as_str(), args.partitioned) {
            ("csv", _) => "transactions.csv",
            (_, true) => "transactions",
            _ => "transactions.parquet",
        });
    let mut error: Option<anyhow::Error> = None;
    if args.format == "csv" {
        let mut w = synth::TxCsvWriter::create(&tx_path)?;
        synth::generate_with(
            args.users,
            args.tx_per_user,
            args.seed,
            |u, s| {
                planted.push((u.user_id.clone(), s));
                users.push(u);
            },
            |t| {
                count += 1;
                if error.is_none()
                    && let Err(e) = w.write(&t)
                {
                    error = Some(e.into());
                }
            },
        );
        w.finish()?;
    } else {
        let mut w = synth::TxParquetWriter::create(&tx_path, args.partitioned)?;
        synth::generate_with(
            args.users,
            args.tx_per_user,
            args.seed,
            |u, s| {
                planted.push((u.user_id.clone(), s));
                users.push(u);
            },
            |t| {
                count += 1;
                if error.is_none()
                    && let Err(e) = w.write(t)
                {
                    error = Some(e.into());
                }
            },
        );
        w.finish()?;
    }
    if let Some(e) = error {
        return Err(e);
    }
    synth::write_users_csv(&args.output.join("users.csv"), &users)?;
    let names = synth::segment_names();
    let mut p = csv::Writer::from_path(args.output.join("planted.csv"))?;
    p.write_record(["user_id", "segment", "segment_name"])?;
    for (id, s) in &planted {
        p.write_record([
            id.as_str(),
            &s.to_string(),
            names.get(*s).copied().unwrap_or(""),
        ])?;
    }
    p.flush()?;
    Ok(format!(
        "wrote {} players and {count} transactions to {}",
        users.len(),
        args.output.display()
    ))
}
