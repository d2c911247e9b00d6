//! `farol campaign create|launch|results` and `farol worker`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::campaigns::{self, CampaignInput, Results};
use super::store::Status;
use super::templates::{self, Channel, TemplateInput};
use crate::app::App;
use crate::audit::Actor;
use crate::config::Config;

/// `farol campaign …`.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a draft campaign (and its template) from a template file; prints the campaign id.
    Create(Box<CreateArgs>),
    /// Launch a draft campaign: fix its recipients now and queue them for the send workers.
    Launch(LaunchArgs),
    /// Print a campaign's results (recipients by status).
    Results(ResultsArgs),
}

/// Arguments of `farol campaign create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Campaign name.
    #[arg(long)]
    pub name: String,
    /// Channel: email, whatsapp, sms, webhook, smartico (an event per client, by its external
    /// id; give `--event`), or auto (each client on its preferred channel, with fallback; give
    /// `--template CHANNEL=ID` per channel).
    #[arg(long, value_parser = ["email", "whatsapp", "sms", "webhook", "smartico", "auto"])]
    pub channel: String,
    /// Smartico: the event, `client_action:ACTION` or `update_profile`; the template file is
    /// then its payload (a JSON object template, `{"bonus": {{ cf.bonus }}}`).
    #[arg(long, value_name = "TYPE[:ACTION]")]
    pub event: Option<String>,
    /// Template file (minijinja, `{{ nome }}`): HTML when it ends in .html/.htm, else text.
    /// Not for `auto`.
    #[arg(long, value_name = "FILE", required_unless_present = "template")]
    pub template_file: Option<PathBuf>,
    /// `auto`: an existing template per channel, e.g. `--template whatsapp=3 --template email=5`.
    #[arg(long, value_name = "CHANNEL=ID")]
    pub template: Vec<String>,
    /// Channel account to send through (default: the account's default for the channel).
    #[arg(long, value_name = "ID")]
    pub channel_account: Option<i64>,
    /// E-mail subject (a template too); required for e-mail.
    #[arg(long)]
    pub subject: Option<String>,
    /// Audience id, or `all` for every client of the account.
    #[arg(long, default_value = "all", value_name = "ID|all")]
    pub audience: String,
    /// Pace: `200/s`, `600/m`, `10000/h` (default: unthrottled).
    #[arg(long, value_name = "N/s")]
    pub throttle: Option<String>,
    /// Campaign messages per client per window (0: no cap; default: the account's).
    #[arg(long, value_name = "N")]
    pub frequency_cap: Option<i64>,
    /// Recurring: a cron expression, e.g. "0 9 * * 1-5" (an occurrence at each time).
    #[arg(long, value_name = "CRON")]
    pub cron: Option<String>,
    /// Time zone of --cron (default America/Sao_Paulo).
    #[arg(long, value_name = "TZ")]
    pub time_zone: Option<String>,
    /// Recurring: skip clients the previous occurrence sent to.
    #[arg(long)]
    pub skip_previous: bool,
    /// Account (slug).
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
    /// Print `{"id": …, "template_id": …}` instead of the bare id.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `farol campaign launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Campaign id.
    pub id: i64,
    /// Send in this process (with a progress bar) until the campaign completes; Ctrl-C stops
    /// cleanly (sends in flight finish, the rest stays queued for `farol worker`/`serve`).
    #[arg(long)]
    pub wait: bool,
    /// Account (slug).
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
    /// Print the final results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `farol campaign results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Campaign id.
    pub id: i64,
    /// Account (slug).
    #[arg(long, default_value = crate::accounts::DEFAULT_ACCOUNT)]
    pub account: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `200/s`, `600/m`, `10000/h` or a bare number (per second) into messages per second.
pub fn parse_throttle(raw: &str) -> Result<f64, String> {
    let raw = raw.trim();
    let (n, unit) = raw.split_once('/').unwrap_or((raw, "s"));
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("bad throttle `{raw}`; use 200/s, 600/m or 10000/h"))?;
    let per = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown throttle unit `{other}`; use s, m or h")),
    };
    if !n.is_finite() || n <= 0.0 {
        return Err("the throttle must be greater than 0".into());
    }
    Ok(n / per)
}

fn describe(e: crate::api::ApiError) -> anyhow::Error {
    match e {
        crate::api::ApiError::Validation(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn account(app: &App, slug: &str) -> anyhow::Result<Actor> {
    let id = crate::accounts::find(&app.state.db, slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("account `{slug}` does not exist"))?;
    Ok(Actor::system(id, "cli"))
}

/// Runs `farol campaign …`.
pub async fn run(config: Config, command: CampaignCommand) -> anyhow::Result<()> {
    match command {
        CampaignCommand::Create(args) => create(config, *args).await,
        CampaignCommand::Launch(args) => launch(config, args).await,
        CampaignCommand::Results(args) => {
            let app = App::build(config).await?;
            let actor = account(&app, &args.account).await?;
            let r = campaigns::results(&app.state.db, actor.account_id, args.id)
                .await
                .map_err(describe)?;
            print_results(&r, args.json);
            Ok(())
        }
    }
}

async fn create(config: Config, args: CreateArgs) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let actor = account(&app, &args.account).await?;
    let channel = Channel::parse(&args.channel).expect("clap checked it");
    let mut templates = std::collections::BTreeMap::new();
    for t in &args.template {
        let parsed = t.split_once('=').and_then(|(c, id)| {
            Some((
                Channel::parse(c).filter(|c| *c != Channel::Auto)?,
                id.parse::<i64>().ok()?,
            ))
        });
        let (c, id) = parsed.ok_or_else(|| {
            anyhow::anyhow!("--template takes CHANNEL=ID (e.g. whatsapp=3), not `{t}`")
        })?;
        templates.insert(c, id);
    }
    let template_file = match (&args.template_file, channel) {
        (Some(_), Channel::Auto) => {
            anyhow::bail!(
                "an auto campaign takes --template CHANNEL=ID per channel, not --template-file"
            )
        }
        (Some(f), _) => f.clone(),
        (None, Channel::Auto) => PathBuf::new(),
        (None, _) => anyhow::bail!("--template-file is required (except for --channel auto)"),
    };
    let source = if channel == Channel::Auto {
        String::new()
    } else {
        std::fs::read_to_string(&template_file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", template_file.display()))?
    };
    let html = template_file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let throttle = args
        .throttle
        .as_deref()
        .map(parse_throttle)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let audience_id = match args.audience.as_str() {
        "all" => None,
        raw => Some(
            raw.parse::<i64>()
                .map_err(|_| anyhow::anyhow!("--audience takes an id or `all`"))?,
        ),
    };
    if channel == Channel::Email && args.subject.is_none() {
        anyhow::bail!("an e-mail campaign needs --subject");
    }
    let event = match (&args.event, channel) {
        (None, Channel::Smartico) => anyhow::bail!(
            "a smartico campaign needs --event client_action:ACTION or --event update_profile"
        ),
        (None, _) => None,
        (Some(_), c) if c != Channel::Smartico => {
            anyhow::bail!("--event is for --channel smartico")
        }
        (Some(raw), _) => Some(parse_event(raw).map_err(anyhow::Error::msg)?),
    };
    let input = match channel {
        Channel::Auto => None,
        Channel::Email => Some(TemplateInput {
            name: format!("{} ({})", args.name, jiff::Timestamp::now()),
            channel,
            subject: args.subject.clone(),
            html: html.then(|| source.clone()),
            text: (!html).then(|| source.clone()),
            body: None,
            provider_template: None,
            event: None,
        }),
        Channel::Whatsapp | Channel::Sms | Channel::Webhook | Channel::Smartico => {
            Some(TemplateInput {
                name: format!("{} ({})", args.name, jiff::Timestamp::now()),
                channel,
                subject: None,
                html: None,
                text: None,
                body: Some(source),
                provider_template: None,
                event,
            })
        }
    };
    let template_id = match input {
        Some(input) => Some(
            templates::create(&app.state.db, &actor, input)
                .await
                .map_err(describe)?
                .id,
        ),
        None => None,
    };
    let campaign = campaigns::create(
        &app.state.db,
        &actor,
        CampaignInput {
            name: args.name,
            channel,
            template_id,
            templates: (channel == Channel::Auto).then_some(templates),
            channel_account_id: args.channel_account,
            audience_id,
            throttle_per_sec: throttle,
            frequency_cap: args.frequency_cap,
            cron: args.cron,
            time_zone: args.time_zone,
            skip_previous: Some(args.skip_previous),
        },
    )
    .await
    .map_err(describe)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "id": campaign.id, "template_id": template_id })
        );
    } else {
        println!("{}", campaign.id);
    }
    Ok(())
}

async fn launch(config: Config, args: LaunchArgs) -> anyhow::Result<()> {
    let app = App::build(config.clone()).await?;
    let actor = account(&app, &args.account).await?;
    let db = app.state.db.clone();
    let out = campaigns::launch(&db, &app.state.channels, &actor, args.id, None)
        .await
        .map_err(describe)?;
    if !args.wait {
        if !args.json {
            eprintln!(
                "campaign {} is {}; `farol serve` or `farol worker` sends it",
                out.id,
                out.status.as_str()
            );
        }
        let r = campaigns::results(&db, actor.account_id, args.id)
            .await
            .map_err(describe)?;
        print_results(&r, args.json);
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut config = config;
    config.campaign.workers = config.campaign.workers.max(1);
    let workers = super::worker::spawn(
        &db,
        &app.state.channels,
        super::throttle::for_process(app.state.redis.clone(), &config.redis.key_prefix),
        &config,
        stop.clone(),
        wake.clone(),
    );
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {msg} (ETA {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let interrupted = {
        let stop = stop.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping: sends in flight finish, the rest stays queued…");
                stop.store(true, Ordering::Relaxed);
                wake.notify_waiters();
            }
        })
    };
    let results = loop {
        let r = campaigns::results(&db, actor.account_id, args.id)
            .await
            .map_err(describe)?;
        if let Some(bar) = &bar {
            bar.set_length(r.counts.total as u64);
            bar.set_position((r.counts.total - r.counts.queued - r.counts.sending) as u64);
            bar.set_message(format!(
                "sent {} failed {} skipped {}",
                r.counts.sent, r.counts.failed, r.counts.skipped
            ));
        }
        if matches!(r.status, Status::Completed | Status::Cancelled) || stop.load(Ordering::Relaxed)
        {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Relaxed);
    wake.notify_waiters();
    for w in workers {
        let _ = w.await;
    }
    interrupted.abort();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let results = campaigns::results(&db, actor.account_id, args.id)
        .await
        .unwrap_or(results);
    print_results(&results, args.json);
    db.close().await;
    Ok(())
}

fn print_results(r: &Results, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(r).expect("results serialize")
        );
        return;
    }
    let c = &r.counts;
    println!(
        "campaign {} {}: {} recipients, {} sent, {} failed, {} skipped ({} opted out), {} queued, {} sending",
        r.campaign_id,
        r.status.as_str(),
        c.total,
        c.sent,
        c.failed,
        c.skipped,
        c.opted_out,
        c.queued,
        c.sending
    );
    for (reason, n) in &r.held {
        println!("  held ({reason}): {n}");
    }
    let e = &c.engagement;
    if e != &Default::default() {
        println!(
            "  after sending: {} delivered, {} read, {} bounced, {} replied, {} opted out",
            e.delivered, e.read, e.bounced, e.replied, e.opted_out
        );
    }
}

/// `farol worker`: import and send workers without the HTTP server, until SIGTERM/Ctrl-C;
/// then sends in flight finish and claimed work goes back to the queue.
pub async fn worker(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let state = &app.state;
    let stop = Arc::new(AtomicBool::new(false));
    let import_workers = crate::import::worker::spawn(
        &state.db,
        &state.config.import,
        stop.clone(),
        state.import_wake.clone(),
    );
    let send_workers = super::worker::spawn(
        &state.db,
        &state.channels,
        super::throttle::for_process(state.redis.clone(), &state.config.redis.key_prefix),
        &state.config,
        stop.clone(),
        state.campaign_wake.clone(),
    );
    let segment_workers = crate::segment::worker::spawn(
        &state.db,
        &state.config,
        stop.clone(),
        state.segment_wake.clone(),
    );
    tracing::info!(
        imports = state.config.import.workers,
        segmentations = state.config.segment.workers,
        sends = state.config.campaign.workers,
        backend = state.db.backend().name(),
        "workers running"
    );
    crate::app::shutdown_signal().await;
    stop.store(true, Ordering::Relaxed);
    state.import_wake.notify_waiters();
    state.campaign_wake.notify_waiters();
    state.segment_wake.notify_waiters();
    for w in import_workers
        .into_iter()
        .chain(send_workers)
        .chain(segment_workers)
    {
        let _ = w.await;
    }
    state.db.close().await;
    tracing::info!("workers stopped");
    Ok(())
}

/// Parses `--event`: `client_action:ACTION` or `update_profile`.
fn parse_event(raw: &str) -> Result<super::templates::SmarticoEventSpec, String> {
    use farol_channels::smartico::EventType;
    let (kind, action) = match raw.split_once(':') {
        Some((k, a)) => (k, Some(a.to_owned())),
        None => (raw, None),
    };
    let event_type = match kind {
        "client_action" => EventType::ClientAction,
        "update_profile" => EventType::UpdateProfile,
        other => {
            return Err(format!(
                "--event takes client_action:ACTION or update_profile, not `{other}`"
            ));
        }
    };
    Ok(super::templates::SmarticoEventSpec { event_type, action })
}

#[cfg(test)]
mod tests {
    use super::parse_throttle;

    #[test]
    fn throttles_parse_per_second_minute_and_hour() {
        assert_eq!(parse_throttle("200/s"), Ok(200.0));
        assert_eq!(parse_throttle("600/m"), Ok(10.0));
        assert_eq!(parse_throttle("7200/h"), Ok(2.0));
        assert_eq!(parse_throttle("5"), Ok(5.0));
        assert!(parse_throttle("0/s").is_err());
        assert!(parse_throttle("fast").is_err());
        assert!(parse_throttle("5/d").is_err());
    }
}
