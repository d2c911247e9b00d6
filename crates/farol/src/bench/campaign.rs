//! `farol bench campaign`: the send throughput benchmark (scripts/bench-campaign,
//! docs/benchmarks.md). In the configured database (use a fresh one):
//!
//! 1. demo clients (`farol demo`'s generator), each given an e-mail when it has none;
//! 2. `farol bench smtp-sink` started as a child process (a minimal fast SMTP server);
//! 3. baseline: the channel's physical ceiling — the same-sized message blasted by the SMTP
//!    adapter over the same number of connections, rate measured at the sink;
//! 4. an unthrottled e-mail campaign to every client, sent by the real send workers (claim,
//!    suppression checks, render, send, record + timeline), rate measured at the sink;
//! 5. a campaign throttled at `--throttle`/s, its rate measured at the sink over
//!    `--throttle-secs` after a warm-up, then cancelled.
//!
//! Prints one JSON object.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::Args;
use farol_channels::email::smtp::{SmtpChannel, SmtpConfig, SmtpSecurity};
use farol_channels::{Channel as _, Content, EmailContent, OutboundMessage, Recipient};
use futures_util::StreamExt;

use crate::app::App;
use crate::audit::Actor;
use crate::campaign::campaigns::{self, Action, CampaignInput};
use crate::campaign::store::Status;
use crate::campaign::templates::{self, Channel, TemplateInput};
use crate::campaign::{Channels, worker};
use crate::config::Config;
use crate::db::now_ms;

/// Arguments of `farol bench campaign`.
#[derive(Debug, Args)]
pub struct CampaignBenchArgs {
    /// Clients (recipients of the unthrottled campaign).
    #[arg(long, default_value_t = 100_000)]
    pub recipients: usize,
    /// Send workers (`campaign.workers`).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Sends in flight per worker (`campaign.concurrency`); the SMTP pool (and the baseline)
    /// gets workers × concurrency connections. Defaults to the configuration's default.
    #[arg(long, default_value_t = crate::config::CampaignConfig::default().concurrency)]
    pub concurrency: usize,
    /// Recipients per claim (`campaign.batch`).
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Rate of the throttled run (messages/s; 0 skips it).
    #[arg(long, default_value_t = 200.0)]
    pub throttle: f64,
    /// Seconds the throttled run is measured (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub throttle_secs: u64,
}

/// The sink child process.
struct Sink {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

#[derive(Debug, Clone, Copy)]
struct Report {
    messages: u64,
    /// Epoch ms of the last message.
    last_ms: f64,
    connections: u64,
}

impl Sink {
    fn start() -> anyhow::Result<Sink> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["bench", "smtp-sink"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("smtp-sink did not report its port: {line:?}"))?;
        Ok(Sink {
            child,
            stdin,
            stdout,
            port,
        })
    }

    fn report(&mut self) -> anyhow::Result<Report> {
        writeln!(self.stdin, "REPORT")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        Ok(Report {
            messages: v["messages"].as_u64().unwrap_or(0),
            last_ms: v["last_ms"].as_f64().unwrap_or(0.0),
            connections: v["connections"].as_u64().unwrap_or(0),
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn epoch_ms() -> f64 {
    now_ms() as f64
}

/// Runs the benchmark.
pub async fn run(mut config: Config, args: CampaignBenchArgs) -> anyhow::Result<()> {
    let mut sink = Sink::start()?;
    let connections = (args.workers * args.concurrency).max(1);
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(sink.port),
        security: SmtpSecurity::Plain,
        username: None,
        password: None,
        from: "Farol Bench <noreply@farol.bench>".into(),
        pool_max_size: connections as u32,
        timeout: Duration::from_secs(30),
        root_certificates_pem: None,
        dangerous_accept_invalid_certs: false,
    };
    let channel = Arc::new(SmtpChannel::new(&smtp)?);
    config.campaign.workers = args.workers;
    config.campaign.concurrency = args.concurrency;
    config.campaign.batch = args.batch;
    config.campaign.business_hours = String::new();
    let app = App::build(config.clone()).await?;
    let db = app.state.db.clone();

    // 1. Clients.
    let started = Instant::now();
    let summary = crate::demo::populate(&app.state, args.recipients, 7).await?;
    let account_id = crate::accounts::ensure(&db, crate::accounts::DEFAULT_ACCOUNT).await?;
    let now = now_ms();
    let added = sqlx::query(
        "insert into contacts (account_id, client_id, kind, value, preferred, created_at, updated_at) \
         select account_id, id, 'email', 'cliente' || id || '@bench.farol.test', 1, $1, $1 from clients c \
         where account_id = $2 and not exists (select 1 from contacts k where k.client_id = c.id and k.kind = 'email')",
    )
    .bind(now)
    .bind(account_id)
    .execute(db.pool())
    .await?
    .rows_affected();
    // Demo data marks some contacts invalid or opted out; a benchmark of sends wants them all.
    sqlx::query("update contacts set opted_out = 0 where account_id = $1 and kind = 'email'")
        .bind(account_id)
        .execute(db.pool())
        .await?;
    let invalid_cols: Vec<String> = match db.backend() {
        crate::db::Backend::Sqlite => {
            sqlx::query_scalar("select name from pragma_table_info('contacts')")
                .fetch_all(db.pool())
                .await?
        }
        crate::db::Backend::Postgres => sqlx::query_scalar(
            "select column_name::text from information_schema.columns where table_name = 'contacts' and table_schema = current_schema()",
        )
        .fetch_all(db.pool())
        .await?,
    };
    if invalid_cols.iter().any(|c| c == "invalid_at") {
        sqlx::query("update contacts set invalid_at = null where account_id = $1")
            .bind(account_id)
            .execute(db.pool())
            .await?;
    }
    // PostgreSQL plans from table statistics, which autovacuum gathers about a minute after
    // a bulk load; a database in use has them. Gather them now rather than measure the first
    // minute's sequential scans. (SQLite has no such background step: left as it is.)
    if db.backend() == crate::db::Backend::Postgres {
        sqlx::query("analyze").execute(db.pool()).await?;
    }
    let generate_secs = started.elapsed().as_secs_f64();
    eprintln!("clients: {summary} (+{added} e-mails) in {generate_secs:.1} s");

    // 2–3. Baseline: the adapter's blast over the same number of connections.
    let sample = format!(
        "<p>Olá, Maria Aparecida da Silva!</p><p>Sua fatura de novembro está disponível. Plano atual: Fibra 500. Cidade: São Paulo.</p>\
         <p><a href=\"http://127.0.0.1:8080/api/v1/unsubscribe/{}\">Descadastrar</a></p>",
        "0123456789abcdef0123456789abcdef"
    );
    let before = sink.report()?;
    let t0 = epoch_ms();
    let blast = args.recipients;
    let results = futures_util::stream::iter(0..blast)
        .map(|i| {
            let channel = channel.clone();
            let html = sample.clone();
            async move {
                let msg = OutboundMessage::new(
                    Recipient::email(format!("cliente{i}@bench.farol.test")),
                    Content::Email(EmailContent {
                        subject: "Maria, sua fatura de novembro chegou".into(),
                        text: farol_channels::template::html_to_text(&html),
                        html: Some(html),
                        unsubscribe_url: Some(
                            "http://127.0.0.1:8080/api/v1/unsubscribe/0123456789abcdef".into(),
                        ),
                        ..Default::default()
                    }),
                    format!("blast:{i}"),
                );
                channel.send(&msg).await.is_ok()
            }
        })
        .buffer_unordered(connections)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let after = sink.report()?;
    let baseline_messages = after.messages - before.messages;
    let baseline_rate = baseline_messages as f64 / ((after.last_ms - t0) / 1000.0);
    eprintln!(
        "baseline: {results}/{blast} messages over {connections} connections, {baseline_rate:.0}/s"
    );

    // 4. The campaign, unthrottled.
    let actor = Actor::system(account_id, "bench");
    let template = templates::create(
        &db,
        &actor,
        TemplateInput {
            name: format!("bench {}", now_ms()),
            channel: Channel::Email,
            subject: Some("{{ nome }}, sua fatura de novembro chegou".into()),
            html: Some(
                "<p>Olá, {{ nome }}!</p><p>Sua fatura de novembro está disponível. Plano atual: {{ plano_atual }}. Cidade: {{ cidade }}.</p>\
                 <p><a href=\"{{ link_descadastro }}\">Descadastrar</a></p>"
                    .into(),
            ),
            text: None,
            body: None,
            provider_template: None,
            event: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("template: {e:?}"))?;
    let channels = Channels::with_email(channel.clone());
    let new_campaign = |name: &str, throttle: Option<f64>| CampaignInput {
        name: name.into(),
        channel: Channel::Email,
        template_id: Some(template.id),
        audience_id: None,
        throttle_per_sec: throttle,
        frequency_cap: None,
        cron: None,
        time_zone: None,
        skip_previous: None,
        channel_account_id: None,
        templates: None,
    };
    let c = campaigns::create(&db, &actor, new_campaign("bench unthrottled", None))
        .await
        .map_err(|e| anyhow::anyhow!("campaign: {e:?}"))?;
    let t = Instant::now();
    campaigns::launch(&db, &channels, &actor, c.id, None)
        .await
        .map_err(|e| anyhow::anyhow!("launch: {e:?}"))?;
    let launch_secs = t.elapsed().as_secs_f64();
    let before = sink.report()?;
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let t0 = epoch_ms();
    let throttle =
        crate::campaign::throttle::for_process(app.state.redis.clone(), &config.redis.key_prefix);
    let workers = worker::spawn(
        &db,
        &channels,
        throttle,
        &config,
        stop.clone(),
        wake.clone(),
    );
    // Poll the status only (the results' counts scan every recipient: not while measuring).
    loop {
        let status: String = sqlx::query_scalar("select status from campaigns where id = $1")
            .bind(c.id)
            .fetch_one(db.pool())
            .await?;
        if matches!(
            Status::parse(&status),
            Status::Completed | Status::Cancelled
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done_ms = epoch_ms();
    let results = campaigns::results(&db, account_id, c.id)
        .await
        .map_err(|e| anyhow::anyhow!("results: {e:?}"))?;
    let after = sink.report()?;
    let delivered = after.messages - before.messages;
    let campaign_rate = delivered as f64 / ((after.last_ms - t0) / 1000.0);
    let completed_rate = delivered as f64 / ((done_ms - t0) / 1000.0);
    eprintln!(
        "campaign: {} sent, {} failed, {} skipped; {delivered} at the sink, {campaign_rate:.0}/s (launch snapshot {launch_secs:.1} s)",
        results.counts.sent, results.counts.failed, results.counts.skipped
    );

    // 5. Throttled.
    let mut throttled = serde_json::Value::Null;
    if args.throttle > 0.0 {
        let c = campaigns::create(
            &db,
            &actor,
            new_campaign("bench throttled", Some(args.throttle)),
        )
        .await
        .map_err(|e| anyhow::anyhow!("campaign: {e:?}"))?;
        campaigns::launch(&db, &channels, &actor, c.id, None)
            .await
            .map_err(|e| anyhow::anyhow!("launch: {e:?}"))?;
        wake.notify_waiters();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let a = sink.report()?;
        tokio::time::sleep(Duration::from_secs(args.throttle_secs)).await;
        let b = sink.report()?;
        // Already completed when it had fewer recipients than the measured window.
        let _ = campaigns::change_status(&db, &actor, c.id, Action::Cancel).await;
        let rate = (b.messages - a.messages) as f64 / ((b.last_ms - a.last_ms) / 1000.0);
        eprintln!(
            "throttled at {}/s: measured {rate:.1}/s at the sink ({:+.2}%)",
            args.throttle,
            (rate / args.throttle - 1.0) * 100.0
        );
        throttled = serde_json::json!({
            "target_per_sec": args.throttle,
            "measured_per_sec": rate,
            "error_pct": (rate / args.throttle - 1.0) * 100.0,
            "messages": b.messages - a.messages,
            "seconds": (b.last_ms - a.last_ms) / 1000.0,
        });
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    wake.notify_waiters();
    for w in workers {
        let _ = w.await;
    }
    let last = sink.report()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "backend": db.backend().name(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "recipients": results.counts.total,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "batch": args.batch,
            "connections": connections,
            "sink_connections": last.connections,
            "generate_secs": generate_secs,
            "baseline": {"messages": baseline_messages, "per_sec": baseline_rate},
            "campaign": {
                "sent": results.counts.sent,
                "failed": results.counts.failed,
                "skipped": results.counts.skipped,
                "at_sink": delivered,
                "per_sec": campaign_rate,
                "per_sec_until_completed": completed_rate,
                "launch_secs": launch_secs,
            },
            "ratio_campaign_to_baseline": campaign_rate / baseline_rate,
            "throttled": throttled,
        }))?
    );
    db.close().await;
    Ok(())
}
