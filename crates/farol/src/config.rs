//! Configuration: defaults → `farol.toml` → environment → command-line flags.
//!
//! Every key is documented in `farol.toml` at the repository root (the file is also the
//! reference: a test parses it and compares it with [`Config::default`]). Environment variables
//! use the `FAROL_` prefix and `__` between sections (`FAROL_AUTH__ACCESS_TOKEN_TTL_SECS=600`),
//! plus the conventional `DATABASE_URL`, `REDIS_URL` and `AMQP_URL`, and two short forms,
//! `FAROL_DATA_DIR` and `FAROL_LISTEN`. A bad value produces one error naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The whole configuration of a Farol process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded SQLite database and other local state.
    pub data_dir: PathBuf,
    /// HTTP server settings.
    pub server: ServerConfig,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Redis, for shared rate limits and caches (optional).
    pub redis: RedisConfig,
    /// RabbitMQ, as the job broker (optional).
    pub amqp: UrlConfig,
    /// Imports.
    pub import: ImportConfig,
    /// Segmentation.
    pub segment: SegmentConfig,
    /// The default e-mail channel account (SMTP).
    pub smtp: SmtpConfig,
    /// Campaign send workers.
    pub campaign: CampaignConfig,
    /// Smartico sync of segmentation runs.
    pub smartico: SmarticoSettings,
    /// Encryption of stored provider credentials.
    pub secrets: SecretsConfig,
    /// Channel accounts and provider webhooks.
    pub channels: ChannelsSettings,
    /// Operator alerts (circuit breakers opening and closing).
    pub alerts: AlertsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Requests taking longer than this are answered with 408.
    pub request_timeout_secs: u64,
    /// Largest accepted request body, in bytes (uploads use their own chunked endpoint).
    pub max_body_bytes: usize,
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://…` for PostgreSQL, `sqlite://…` for a SQLite file elsewhere; empty means
    /// the embedded default, `<data_dir>/farol.db`.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// Connection pool size.
    pub max_connections: u32,
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HMAC key for access tokens. Empty: a random key is generated once and kept in the
    /// database, so every node sharing the database shares the key.
    #[serde(serialize_with = "serialize_secret")]
    pub jwt_secret: SecretString,
    /// Lifetime of an access token.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token (each use rotates it).
    pub refresh_token_ttl_secs: u64,
    /// Login attempts allowed per client address and e-mail within the window.
    pub login_max_attempts: u32,
    /// Length of the login rate-limit window.
    pub login_window_secs: u64,
    /// Argon2id memory cost, KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    pub argon2_iterations: u32,
}

/// Redis settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Empty means not configured.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// Prefix of every key Farol writes, so several installations can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from(""),
            key_prefix: "farol".into(),
        }
    }
}

/// An optional service URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlConfig {
    /// Empty means not configured.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
}

/// Import jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// Rows written per transaction (and per resume checkpoint); 0: 10,000 on SQLite, 20,000
    /// on PostgreSQL (measured best within the 500 MB memory budget).
    pub batch_rows: usize,
    /// Import jobs a `farol serve` process runs at once (0: none, only `farol worker`/CLI).
    pub workers: usize,
    /// A running import whose worker has not reported for this long is taken over by another.
    pub lease_secs: u64,
    /// Largest upload chunk accepted by `PUT /imports/{id}/files/{n}`, in bytes.
    pub max_chunk_bytes: usize,
    /// Largest file accepted by an upload, in bytes (10 GiB).
    pub max_file_bytes: u64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            batch_rows: 0,
            workers: 1,
            lease_secs: 30,
            max_chunk_bytes: 64 * 1024 * 1024,
            max_file_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

impl ImportConfig {
    /// Rows per batch on `backend` (see `batch_rows`).
    pub fn batch_rows_for(&self, backend: crate::db::Backend) -> usize {
        match (self.batch_rows, backend) {
            (0, crate::db::Backend::Sqlite) => 10_000,
            (0, crate::db::Backend::Postgres) => 20_000,
            (n, _) => n,
        }
    }
}

/// Segmentation (the data lake and how to read it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    /// Transactions: a file or folder (CSV/Parquet, `dt=…` partitions). Empty: not configured.
    pub transactions: String,
    /// Users: a file or folder. Empty: players are clustered without CRM data.
    pub users: String,
    /// Transaction column overrides, `"column=field,…"` (operators name columns differently).
    pub transactions_mapping: String,
    /// User column overrides.
    pub users_mapping: String,
    /// IANA zone for timestamps without one and for hour/weekday features.
    pub time_zone: String,
    /// Cron expression (`min hour day month weekday`, in `time_zone`) to re-run the
    /// segmentation of the default account; empty: only on demand.
    pub schedule: String,
    /// S3-compatible endpoint for `s3://bucket/prefix` sources (empty: S3 not used).
    pub s3_endpoint: String,
    /// Region for request signing.
    pub s3_region: String,
    /// Access key id.
    pub s3_access_key_id: String,
    /// Secret access key.
    #[serde(serialize_with = "serialize_secret")]
    pub s3_secret_access_key: SecretString,
    /// Segmentation workers in `farol serve` and `farol worker` (runs started by the API or
    /// the schedule are queued for them); 0: none in this process.
    pub workers: usize,
    /// Lease of a worker on a run, renewed while it works; a run whose holder died is taken
    /// over once it expires.
    pub lease_secs: u64,
    /// Times a run may be taken (first try plus take-overs) before it is failed.
    pub max_attempts: u32,
}

impl SegmentConfig {
    /// The lease in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        (self.lease_secs.max(1) * 1000) as i64
    }
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            transactions: String::new(),
            users: String::new(),
            transactions_mapping: String::new(),
            users_mapping: String::new(),
            time_zone: "America/Sao_Paulo".into(),
            schedule: String::new(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: SecretString::from(""),
            workers: 1,
            lease_secs: 60,
            max_attempts: 3,
        }
    }
}

/// The default e-mail channel account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// `smtp://user:pass@host:port` (STARTTLS when offered), `?tls=required` (STARTTLS
    /// required), `?tls=none` (plain, local relays only), or `smtps://…` (implicit TLS).
    /// Empty: no e-mail channel.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// The `From` mailbox, e.g. `Farol <noreply@example.com>`.
    pub from: String,
}

/// Campaign send workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignConfig {
    /// Send workers a `farol serve` process runs (0: none, only `farol worker`).
    pub workers: usize,
    /// Recipients a worker claims at once.
    pub batch: usize,
    /// Sends a worker keeps in flight at once.
    pub concurrency: usize,
    /// A claimed recipient whose worker has not finished within this time is sent again by
    /// another worker (the worker is presumed dead).
    pub lease_secs: u64,
    /// How often idle workers look for due recipients, milliseconds.
    pub poll_ms: u64,
    /// Backoff of transient failures: first delay scale, milliseconds.
    pub retry_base_ms: u64,
    /// Backoff of transient failures: largest delay, milliseconds.
    pub retry_cap_ms: u64,
    /// Attempts per recipient before a transient failure becomes final.
    pub max_attempts: u32,
    /// Public base URL of this Farol, for unsubscribe links. Empty: `http://<server.listen>`.
    pub public_url: String,
    /// When campaigns may send, e.g. `mon-fri 08:00-20:00`. Empty: any time.
    pub business_hours: String,
    /// IANA time zone of `business_hours`.
    pub time_zone: String,
    /// Consecutive transient failures of a channel that open its circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker holds sends before one probe, seconds.
    pub breaker_cool_down_secs: u64,
    /// Campaign messages per client per `frequency_window_hours`, across campaigns and
    /// channels (0: no cap). Accounts and campaigns may override it.
    pub frequency_cap: u64,
    /// The rolling window of `frequency_cap`, hours.
    pub frequency_window_hours: u64,
    /// Audience score classes: `hot` is a score ≥ this.
    pub score_hot_min: i64,
    /// Audience score classes: `warm` is a score ≥ this (and below `score_hot_min`); `cold`
    /// is below.
    pub score_warm_min: i64,
    /// `auto` campaigns: channels tried in this order when the client's preferred one cannot
    /// reach them.
    pub auto_order: Vec<String>,
    /// Where sends wait: `database` (workers claim recipient rows) or `rabbitmq` (recipients
    /// are published to `queue_name` on `[amqp] url`; workers consume them).
    pub queue: String,
    /// The RabbitMQ queue of sends (`<queue_name>.dead` holds poison messages).
    pub queue_name: String,
}

/// Encryption of stored provider credentials (channel accounts).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Base64 of 32 random bytes. Empty: generated on first start and kept in
    /// `<data_dir>/secrets.key`.
    #[serde(serialize_with = "serialize_secret")]
    pub key: SecretString,
}

/// Channel accounts and provider webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsSettings {
    /// Hosts the SES receiver fetches SNS signing certificates from (`SigningCertURL`, over
    /// https). `sns.*.amazonaws.com` (and `.com.cn`) is Amazon SNS in every region; only add a
    /// host you control, such as a local SNS emulator. A loopback entry written with `http://`
    /// (`http://127.0.0.1:9911`) is also fetched without TLS: tests and emulators only.
    pub sns_cert_hosts: Vec<String>,
}

impl Default for ChannelsSettings {
    fn default() -> Self {
        Self {
            sns_cert_hosts: vec![
                "sns.*.amazonaws.com".into(),
                "sns.*.amazonaws.com.cn".into(),
            ],
        }
    }
}

/// Operator alerts: a channel's circuit breaker opening (sends wait) and closing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Also POST each alert here (JSON, signed with `webhook_secret` like the outbound webhook
    /// channel: `X-Farol-Signature`). Empty: alerts are only logged, stored and audited.
    pub webhook_url: String,
    /// HMAC key of the signature (env `FAROL_ALERTS__WEBHOOK_SECRET`). Required with a URL.
    #[serde(serialize_with = "serialize_secret")]
    pub webhook_secret: SecretString,
    /// Retries of a failed POST (408, 429, 5xx, timeouts), with exponential backoff.
    pub webhook_max_retries: u32,
    /// First retry delay scale, milliseconds.
    pub webhook_retry_base_ms: u64,
    /// Request timeout, seconds.
    pub webhook_timeout_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            webhook_secret: SecretString::from(""),
            webhook_max_retries: 5,
            webhook_retry_base_ms: 1000,
            webhook_timeout_secs: 10,
        }
    }
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch: 50,
            concurrency: 16,
            lease_secs: 60,
            poll_ms: 500,
            retry_base_ms: 1000,
            retry_cap_ms: 300_000,
            max_attempts: 6,
            public_url: String::new(),
            business_hours: String::new(),
            time_zone: "America/Sao_Paulo".into(),
            breaker_failures: 20,
            breaker_cool_down_secs: 30,
            auto_order: vec!["whatsapp".into(), "sms".into(), "email".into()],
            frequency_cap: 0,
            frequency_window_hours: 24,
            score_hot_min: 70,
            score_warm_min: 40,
            queue: "database".into(),
            queue_name: "farol.campaign.sends".into(),
        }
    }
}

/// Smartico sync: after each segmentation run, the players who entered or left a segment
/// are pushed to Smartico's external events API (docs/segmentation.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmarticoSettings {
    /// Push after every completed run (the API/CLI push works only when enabled too).
    pub enabled: bool,
    /// API base URL, e.g. `https://apis6.smartico.ai`.
    pub base_url: String,
    /// `ext_brand_id` of the events (empty: none).
    pub brand: String,
    /// The label's API token (env `FAROL_SMARTICO__LABEL_TOKEN`). Never logged.
    #[serde(serialize_with = "serialize_secret")]
    pub label_token: SecretString,
    /// Array property holding the segments.
    pub property: String,
    /// Prefix of segment values (`FAROL_` + the cluster name in capitals).
    pub segment_prefix: String,
    /// Update profiles without triggering Smartico journeys.
    pub skip_cjm: bool,
    /// Events per request (at most 4,000).
    pub batch_size: usize,
    /// Request timeout, seconds.
    pub timeout_secs: u64,
    /// Retries of a failed request (429, 5xx, timeouts), with exponential backoff.
    pub max_retries: u32,
    /// First retry delay scale, milliseconds.
    pub retry_base_ms: u64,
}

impl Default for SmarticoSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: String::new(),
            brand: String::new(),
            label_token: SecretString::from(""),
            property: "core_external_segment".into(),
            segment_prefix: "FAROL_".into(),
            skip_cjm: false,
            batch_size: 4000,
            timeout_secs: 30,
            max_retries: 5,
            retry_base_ms: 500,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `farol=debug,sqlx=warn`.
    pub level: String,
}

fn serialize_secret<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    // Defaults are serialized only to seed figment; secrets are never written anywhere.
    s.serialize_str("")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            redis: RedisConfig::default(),
            amqp: UrlConfig::default(),
            log: LogConfig::default(),
            import: ImportConfig::default(),
            segment: SegmentConfig::default(),
            smtp: SmtpConfig::default(),
            campaign: CampaignConfig::default(),
            smartico: SmarticoSettings::default(),
            secrets: SecretsConfig::default(),
            channels: ChannelsSettings::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout_secs: 30,
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from(""),
            max_connections: 10,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: SecretString::from(""),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            login_max_attempts: 10,
            login_window_secs: 300,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A configuration error, naming the key that is wrong.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

/// Overrides given on the command line; they win over file and environment.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads the configuration: defaults, then `file` (or `./farol.toml` when it exists), then
    /// the environment, then `overrides`. Unknown `FAROL_*` variables are reported in the returned
    /// warnings (logging is not set up yet when configuration is read).
    pub fn load(
        file: Option<&Path>,
        overrides: &CliOverrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        Self::load_from_env(file, overrides, std::env::vars())
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_from_env(
        file: Option<&Path>,
        overrides: &CliOverrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("farol.toml").exists() => {
                figment = figment.merge(Toml::file_exact("farol.toml"));
            }
            None => {}
        }

        let known = figment.clone();
        let mut warnings = Vec::new();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let key = match name.as_str() {
                "DATABASE_URL" => "database.url".to_string(),
                "REDIS_URL" => "redis.url".to_string(),
                "AMQP_URL" => "amqp.url".to_string(),
                "FAROL_DATA_DIR" => "data_dir".to_string(),
                "FAROL_LISTEN" => "server.listen".to_string(),
                "FAROL_SMTP_URL" => "smtp.url".to_string(),
                "FAROL_SMTP_FROM" => "smtp.from".to_string(),
                "FAROL_SECRETS_KEY" => "secrets.key".to_string(),
                other => match other.strip_prefix("FAROL_") {
                    Some(rest) => rest.to_ascii_lowercase().replace("__", "."),
                    None => continue,
                },
            };
            if known.find_value(&key).is_err() {
                // Test and tooling variables share the prefix; they are not configuration.
                if !name.starts_with("FAROL_TEST_") && !name.starts_with("FAROL_BENCH_") {
                    warnings.push(format!("ignoring unknown environment variable {name}"));
                }
                continue;
            }
            pairs.push((key, value));
        }
        for (key, value) in pairs {
            let value = parse_env_value(&key, &value, &known);
            figment = figment.merge(Serialized::default(&key, value));
        }

        let mut config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            ConfigError(format!("key `{key}`: {} (from {source})", e.kind))
        })?;

        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = overrides.listen {
            config.server.listen = listen;
        }
        if let Some(format) = overrides.log_format {
            config.log.format = format;
        }
        config.validate()?;
        Ok((config, warnings))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose_secret();
        if !url.is_empty()
            && !["sqlite:", "postgres:", "postgresql:"]
                .iter()
                .any(|p| url.starts_with(p))
        {
            return Err(ConfigError(
                "key `database.url`: must start with postgres://, postgresql:// or sqlite:".into(),
            ));
        }
        for (key, value) in [
            (
                "auth.access_token_ttl_secs",
                self.auth.access_token_ttl_secs,
            ),
            (
                "auth.refresh_token_ttl_secs",
                self.auth.refresh_token_ttl_secs,
            ),
            ("auth.login_window_secs", self.auth.login_window_secs),
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("key `{key}`: must be greater than 0")));
            }
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError(
                "key `database.max_connections`: must be greater than 0".into(),
            ));
        }
        if self.auth.login_max_attempts == 0 {
            return Err(ConfigError(
                "key `auth.login_max_attempts`: must be greater than 0".into(),
            ));
        }
        if self.auth.argon2_memory_kib < 8 || self.auth.argon2_iterations == 0 {
            return Err(ConfigError(
                "key `auth.argon2_memory_kib`/`auth.argon2_iterations`: memory must be ≥ 8 KiB and iterations ≥ 1".into(),
            ));
        }
        if !self.segment.schedule.trim().is_empty() {
            crate::segment::schedule::parse(&self.segment.schedule).map_err(ConfigError)?;
        }
        if jiff::tz::TimeZone::get(&self.segment.time_zone).is_err() {
            return Err(ConfigError(format!(
                "key `segment.time_zone`: {:?} is not an IANA time zone (e.g. America/Sao_Paulo)",
                self.segment.time_zone
            )));
        }
        if self.campaign.batch == 0
            || self.campaign.concurrency == 0
            || self.campaign.lease_secs == 0
        {
            return Err(ConfigError(
                "key `campaign.batch`/`campaign.concurrency`/`campaign.lease_secs`: must be greater than 0".into(),
            ));
        }
        if self.campaign.frequency_window_hours == 0 {
            return Err(ConfigError(
                "key `campaign.frequency_window_hours`: must be greater than 0".into(),
            ));
        }
        if !(0 < self.campaign.score_warm_min
            && self.campaign.score_warm_min < self.campaign.score_hot_min
            && self.campaign.score_hot_min <= 100)
        {
            return Err(ConfigError(
                "keys `campaign.score_warm_min`/`campaign.score_hot_min`: need 0 < warm < hot ≤ 100".into(),
            ));
        }
        if self.smartico.enabled {
            let url = self.smartico.base_url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError(
                    "key `smartico.base_url`: give the API base URL, e.g. https://apis6.smartico.ai".into(),
                ));
            }
            if self.smartico.label_token.expose_secret().trim().is_empty() {
                return Err(ConfigError(
                    "key `smartico.label_token`: required when smartico.enabled (env FAROL_SMARTICO__LABEL_TOKEN)".into(),
                ));
            }
        }
        if !(1..=4000).contains(&self.smartico.batch_size) {
            return Err(ConfigError(
                "key `smartico.batch_size`: must be from 1 to 4000".into(),
            ));
        }
        if self.smartico.property.trim().is_empty() {
            return Err(ConfigError(
                "key `smartico.property`: must not be empty".into(),
            ));
        }
        if let Err(e) = crate::campaign::hours::BusinessHours::parse(
            &self.campaign.business_hours,
            &self.campaign.time_zone,
        ) {
            return Err(ConfigError(format!(
                "key `campaign.business_hours`/`campaign.time_zone`: {e}"
            )));
        }
        crate::channels::routing::parse_order(&self.campaign.auto_order)
            .map_err(|e| ConfigError(format!("key `campaign.auto_order`: {e}")))?;
        let key = self.secrets.key.expose_secret();
        if !key.is_empty()
            && farol_channels::credentials::CredentialCipher::new(&farol_channels::Secret::new(key))
                .is_err()
        {
            return Err(ConfigError(
                "key `secrets.key`: must be base64 of exactly 32 bytes (openssl rand -base64 32)"
                    .into(),
            ));
        }
        match self.campaign.queue.as_str() {
            "database" => {}
            "rabbitmq" if self.amqp.url.expose_secret().is_empty() => {
                return Err(ConfigError(
                    "key `campaign.queue`: \"rabbitmq\" needs `amqp.url` (or AMQP_URL)".into(),
                ));
            }
            "rabbitmq" => {
                if self.campaign.queue_name.trim().is_empty()
                    || self.campaign.queue_name.len() > 200
                {
                    return Err(ConfigError(
                        "key `campaign.queue_name`: 1 to 200 characters".into(),
                    ));
                }
            }
            other => {
                return Err(ConfigError(format!(
                    "key `campaign.queue`: {other:?} is not a queue; use \"database\" or \"rabbitmq\""
                )));
            }
        }
        let hook = self.alerts.webhook_url.trim();
        if !hook.is_empty() {
            if !(hook.starts_with("https://") || hook.starts_with("http://")) {
                return Err(ConfigError(
                    "key `alerts.webhook_url`: must be an http:// or https:// URL".into(),
                ));
            }
            if self.alerts.webhook_secret.expose_secret().is_empty() {
                return Err(ConfigError(
                    "key `alerts.webhook_secret`: required when alerts.webhook_url is set (env FAROL_ALERTS__WEBHOOK_SECRET)".into(),
                ));
            }
        }
        if self.channels.sns_cert_hosts.is_empty() {
            return Err(ConfigError(
                "key `channels.sns_cert_hosts`: list at least one host (the default is [\"sns.*.amazonaws.com\", \"sns.*.amazonaws.com.cn\"]); with none, every SES notification is refused".into(),
            ));
        }
        for host in &self.channels.sns_cert_hosts {
            farol_channels::email::sns::CertHost::parse(host)
                .map_err(|e| ConfigError(format!("key `channels.sns_cert_hosts`: {e}")))?;
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError(format!("key `log.level`: {e}")));
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or the embedded SQLite file.
    pub fn database_url(&self) -> String {
        if self.database.url.expose_secret().is_empty() {
            let path = self.data_dir.join("farol.db");
            let path = std::path::absolute(&path).unwrap_or(path);
            format!("sqlite://{}?mode=rwc", path.display())
        } else {
            self.database.url.expose_secret().to_string()
        }
    }
}

/// Environment values are strings; numbers and booleans are parsed when the default at that
/// key has that type, so `FAROL_AUTH__LOGIN_MAX_ATTEMPTS=abc` fails naming the key.
fn parse_env_value(key: &str, raw: &str, known: &Figment) -> figment::value::Value {
    use figment::value::Value;
    match known.find_value(key) {
        Ok(Value::Num(..)) => match raw.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => match raw.parse::<f64>() {
                Ok(f) => Value::from(f),
                Err(_) => Value::from(raw.to_string()),
            },
        },
        Ok(Value::Bool(..)) => match raw {
            "true" | "1" => Value::from(true),
            "false" | "0" => Value::from(false),
            _ => Value::from(raw.to_string()),
        },
        _ => Value::from(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_work_without_any_file_or_environment() {
        let (config, warnings) =
            Config::load_from_env(None, &CliOverrides::default(), env(&[])).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert!(config.database_url().starts_with("sqlite://"));
        assert!(config.database_url().ends_with("data/farol.db?mode=rwc"));
    }

    #[test]
    fn environment_overrides_defaults_and_short_forms_work() {
        let (config, _) = Config::load_from_env(
            None,
            &CliOverrides::default(),
            env(&[
                ("FAROL_LISTEN", "0.0.0.0:9000"),
                ("FAROL_DATA_DIR", "/tmp/farol-x"),
                ("DATABASE_URL", "postgres://u@h/db"),
                ("REDIS_URL", "redis://127.0.0.1:6379"),
                ("FAROL_AUTH__ACCESS_TOKEN_TTL_SECS", "60"),
                ("FAROL_LOG__FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/farol-x"));
        assert_eq!(config.database_url(), "postgres://u@h/db");
        assert_eq!(config.redis.url.expose_secret(), "redis://127.0.0.1:6379");
        assert_eq!(config.auth.access_token_ttl_secs, 60);
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn smtp_short_forms_are_accepted() {
        let (config, warnings) = Config::load_from_env(
            None,
            &CliOverrides::default(),
            env(&[
                ("FAROL_SMTP_URL", "smtp://u:p@mail.test:587"),
                ("FAROL_SMTP_FROM", "Farol <x@y.test>"),
            ]),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.smtp.url.expose_secret(), "smtp://u:p@mail.test:587");
        assert_eq!(config.smtp.from, "Farol <x@y.test>");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Config::load_from_env(
            None,
            &CliOverrides::default(),
            env(&[("FAROL_AUTH__LOGIN_MAX_ATTEMPTS", "many")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("auth.login_max_attempts"), "{err}");

        let err = Config::load_from_env(
            None,
            &CliOverrides::default(),
            env(&[("FAROL_LISTEN", "not-an-address")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.listen"), "{err}");

        let err = Config::load_from_env(
            None,
            &CliOverrides::default(),
            env(&[("DATABASE_URL", "mysql://x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn the_send_queue_is_chosen_explicitly_and_rabbitmq_needs_a_broker() {
        let load = |pairs: &[(&str, &str)]| {
            Config::load_from_env(None, &CliOverrides::default(), env(pairs))
                .map(|(c, _)| c.campaign.queue)
                .map_err(|e| e.to_string())
        };
        // A broker URL alone does not move the sends.
        assert_eq!(
            load(&[("AMQP_URL", "amqp://h:5672/%2f")]).unwrap(),
            "database"
        );
        let err = load(&[("FAROL_CAMPAIGN__QUEUE", "rabbitmq")]).unwrap_err();
        assert!(
            err.contains("campaign.queue") && err.contains("amqp.url"),
            "{err}"
        );
        assert_eq!(
            load(&[
                ("FAROL_CAMPAIGN__QUEUE", "rabbitmq"),
                ("AMQP_URL", "amqp://h:5672/%2f")
            ])
            .unwrap(),
            "rabbitmq"
        );
        let err = load(&[("FAROL_CAMPAIGN__QUEUE", "kafka")]).unwrap_err();
        assert!(
            err.contains("campaign.queue") && err.contains("kafka"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("farol.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap();
        let err = Config::load_from_env(Some(&path), &CliOverrides::default(), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn unknown_farol_variables_are_warned_about_not_fatal() {
        let (_, warnings) = Config::load_from_env(
            None,
            &CliOverrides::default(),
            env(&[("FAROL_LISTN", "x"), ("FAROL_TEST_BACKEND", "postgres")]),
        )
        .unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("FAROL_LISTN"));
    }

    #[test]
    fn command_line_flags_win_over_environment() {
        let overrides = CliOverrides {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        };
        let (config, _) =
            Config::load_from_env(None, &overrides, env(&[("FAROL_LISTEN", "127.0.0.1:9000")]))
                .unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn alert_and_sns_settings_are_checked() {
        let load = |pairs: &[(&str, &str)]| {
            Config::load_from_env(None, &CliOverrides::default(), env(pairs)).map(|(c, _)| c)
        };
        let err = load(&[("FAROL_ALERTS__WEBHOOK_URL", "https://ops.test/hook")]).unwrap_err();
        assert!(err.to_string().contains("alerts.webhook_secret"), "{err}");
        let err = load(&[("FAROL_ALERTS__WEBHOOK_URL", "ops.test/hook")]).unwrap_err();
        assert!(err.to_string().contains("alerts.webhook_url"), "{err}");
        let config = load(&[
            ("FAROL_ALERTS__WEBHOOK_URL", "https://ops.test/hook"),
            ("FAROL_ALERTS__WEBHOOK_SECRET", "s3cret"),
        ])
        .unwrap();
        assert_eq!(config.alerts.webhook_url, "https://ops.test/hook");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("farol.toml");
        for (hosts, ok) in [
            ("[\"sns.*.amazonaws.com\", \"http://127.0.0.1:9911\"]", true),
            ("[\"http://sns.us-east-1.amazonaws.com\"]", false),
            ("[\"*.com\"]", false),
            ("[]", false),
        ] {
            std::fs::write(&path, format!("[channels]\nsns_cert_hosts = {hosts}\n")).unwrap();
            let result = Config::load_from_env(Some(&path), &CliOverrides::default(), env(&[]));
            assert_eq!(result.is_ok(), ok, "{hosts}: {:?}", result.err());
            if let Err(e) = result {
                assert!(e.to_string().contains("channels.sns_cert_hosts"), "{e}");
            }
        }
    }

    #[test]
    fn the_reference_farol_toml_parses_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../farol.toml");
        let (config, _) =
            Config::load_from_env(Some(&path), &CliOverrides::default(), env(&[])).unwrap();
        let defaults = Config::default();
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            serde_json::to_value(&defaults).unwrap(),
            "farol.toml documents every key with its default value"
        );
    }
}
