//! The `farol` command line.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::{App, shutdown_signal};
use crate::audit::Actor;
use crate::auth::Role;
use crate::auth::users::{self, NewUser};
use crate::config::{CliOverrides, Config, LogFormat};

/// Farol: open-source CRM and campaign engine.
///
/// Runs on an embedded SQLite database under ./data by default; set DATABASE_URL=postgres://…
/// for PostgreSQL. Configuration: farol.toml (see the reference copy in the repository), then
/// FAROL_* environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(name = "farol", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Configuration file (default: ./farol.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the embedded database and local state [env: FAROL_DATA_DIR] [default: ./data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format [env: FAROL_LOG__FORMAT] [default: text].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (API, docs, metrics). Applies pending migrations first.
    Serve(ServeArgs),
    /// Fill the database with generated pt-BR demo data (once), then serve.
    Demo(DemoArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Work with clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Import clients from CSV/XLSX files (mapping, normalization, dedupe, report).
    Import(crate::import::cli::ImportArgs),
    /// Behavioral segmentation of players from the data lake.
    #[command(subcommand)]
    Segment(crate::segment::cli::SegmentCommand),
    /// Benchmark helpers: data generators and raw-load baselines.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Campaigns: create from a template file, launch, results.
    #[command(subcommand)]
    Campaign(crate::campaign::cli::CampaignCommand),
    /// Run the import and campaign send workers without the HTTP server (until SIGTERM).
    Worker,
    /// Suppression lists (self-exclusion, bounces, complaints, do-not-contact).
    #[command(subcommand)]
    Suppressions(crate::campaign::suppressions::SuppressionsCommand),
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Write every client of an account, with its normalized phones and e-mails, tags and
    /// custom fields, as CSV (to standard output, or to --output).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Output format (only csv for now).
    #[arg(long, default_value = "csv", value_parser = ["csv"])]
    format: String,
    /// Account (tenant) slug.
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    account: String,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [env: FAROL_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Address to listen on [env: FAROL_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// How many demo clients to generate.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=2_000_000))]
    clients: u32,
    /// Seed of the generator (same seed, same data).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Generate the data and exit without serving.
    #[arg(long)]
    no_serve: bool,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user. The password is read from standard input (never from the command line,
    /// where other users of the machine could see it):
    /// `printf '%s' "$PASSWORD" | farol user add --email ana@example.com --password-stdin --role admin`
    Add(UserAddArgs),
}

#[derive(Debug, Args)]
struct UserAddArgs {
    /// Login e-mail.
    #[arg(long)]
    email: String,
    /// Read the password (first line) from standard input. Required.
    #[arg(long)]
    password_stdin: bool,
    /// Role: admin, manager, agent or viewer.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Account (tenant) slug; created when it does not exist.
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    account: String,
    /// Display name (default: the part of the e-mail before @).
    #[arg(long)]
    name: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // One rustls crypto provider (ring) for every TLS client: database, broker, providers, S3.
    farol_channels::http::install_default_crypto_provider();
    let cli = Cli::parse();
    let listen = match &cli.command {
        Command::Serve(a) => a.listen,
        Command::Demo(a) => a.listen,
        _ => None,
    };
    let overrides = CliOverrides {
        data_dir: cli.common.data_dir.clone(),
        listen,
        log_format: cli.common.log_format,
    };
    let (config, warnings) = match Config::load(cli.common.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("farol: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&config.log);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("farol: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("farol: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            let db = crate::db::Db::connect(&config.database_url(), 1).await?;
            db.migrate().await?;
            println!("migrations applied ({})", db.backend().name());
            Ok(())
        }
        Command::Serve(_) => serve(config).await,
        Command::Demo(args) => {
            let app = App::build(config.clone()).await?;
            let summary =
                crate::demo::populate(&app.state, args.clients as usize, args.seed).await?;
            println!("{summary}");
            if args.no_serve {
                return Ok(());
            }
            serve_app(app, config.server.listen).await
        }
        Command::User(UserCommand::Add(args)) => user_add(config, args).await,
        Command::Clients(ClientsCommand::Export(args)) => export(config, args).await,
        Command::Import(args) => crate::import::cli::run(config, args).await,
        Command::Bench(command) => crate::bench::run(config, command).await,
        Command::Segment(command) => crate::segment::cli::run(config, command).await,
        Command::Campaign(command) => crate::campaign::cli::run(config, command).await,
        Command::Worker => crate::campaign::cli::worker(config).await,
        Command::Suppressions(command) => crate::campaign::suppressions::run(config, command).await,
    }
}

async fn export(config: Config, args: ExportArgs) -> anyhow::Result<()> {
    let db = crate::db::Db::connect(&config.database_url(), 2).await?;
    db.migrate().await?;
    let account_id = crate::accounts::find(&db, &args.account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{}` does not exist", args.account))?;
    let written = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            crate::crm::export::write_csv(&db, account_id, std::io::BufWriter::new(file)).await?
        }
        None => crate::crm::export::write_csv(&db, account_id, std::io::stdout().lock()).await?,
    };
    eprintln!("exported {written} clients");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let app = App::build(config).await?;
    serve_app(app, listen).await
}

async fn serve_app(app: App, listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    println!("Farol is listening on http://{listen} (API docs: http://{listen}/api/v1/docs)");
    app.serve(listener, shutdown_signal()).await
}

async fn user_add(config: Config, args: UserAddArgs) -> anyhow::Result<()> {
    if !args.password_stdin {
        anyhow::bail!("pass the password on standard input with --password-stdin");
    }
    crate::accounts::validate_slug(&args.account).map_err(anyhow::Error::msg)?;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    let app = App::build(config).await?;
    let account_id = crate::accounts::ensure(&app.state.db, &args.account).await?;
    let name = args
        .name
        .unwrap_or_else(|| args.email.split('@').next().unwrap_or_default().to_string());
    let actor = Actor::system(account_id, "cli");
    let user = users::create(
        &app.state.db,
        app.state.hash_cost,
        &actor,
        NewUser {
            email: args.email,
            name,
            password,
            role: args.role,
        },
    )
    .await
    .map_err(describe_api_error)?;
    println!(
        "created user {} ({}) with role {} in account {}",
        user.id, user.email, user.role, args.account
    );
    Ok(())
}

/// Turns an API error into a CLI message naming the bad fields.
fn describe_api_error(e: crate::api::ApiError) -> anyhow::Error {
    match e {
        crate::api::ApiError::Validation(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        crate::api::ApiError::Conflict { field, message } => anyhow::anyhow!("{field}: {message}"),
        other => anyhow::anyhow!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed_and_every_command_is_documented() {
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        for sub in cmd.get_subcommands_mut() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            for nested in sub.get_subcommands() {
                assert!(
                    nested.get_about().is_some(),
                    "{} has no help",
                    nested.get_name()
                );
            }
        }
    }
}
