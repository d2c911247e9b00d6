//! Adapters built from stored channel accounts, cached per process and rebuilt when the
//! account's `updated_at` moves (an edit, a rotated secret, enabling or disabling it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use farol_channels::credentials::CredentialCipher;
use farol_channels::email::sendgrid::{SendGridChannel, SendGridConfig};
use farol_channels::email::ses::{SesChannel, SesConfig};
use farol_channels::email::sigv4::AwsCredentials;
use farol_channels::email::smtp::{SmtpChannel, SmtpConfig, SmtpSecurity};
use farol_channels::smartico::{SmarticoChannel, SmarticoConfig};
use farol_channels::sms::twilio::{TwilioChannel, TwilioConfig, TwilioSender};
use farol_channels::webhook::{WebhookChannel, WebhookConfig};
use farol_channels::whatsapp::meta::{MetaChannel, MetaConfig};
use farol_channels::whatsapp::wppconnect::{
    WppConnectClient, WppConnectConfig, WppSession, WppSessionPool,
};
use farol_channels::{Backoff, CircuitBreaker, Secret};
use serde_json::{Map, Value};

use super::accounts::{self, AccountRow, Provider};
use crate::api::{ApiError, ApiResult};
use crate::db::Db;

/// The adapter of one channel account and what its webhooks need.
pub struct Built {
    /// Channel account id.
    pub id: i64,
    /// Tenant.
    pub account_id: i64,
    /// Version it was built from.
    pub updated_at: i64,
    /// Sends may use it.
    pub enabled: bool,
    /// Provider.
    pub provider: Provider,
    /// The adapter.
    pub channel: Arc<dyn farol_channels::Channel>,
    /// Breaker of this account in this process.
    pub breaker: CircuitBreaker,
    /// The outbound webhook's endpoint.
    pub webhook_url: Option<String>,
    /// WPPConnect: the pool and its sessions.
    pub wpp: Option<(Arc<WppSessionPool>, Vec<WppSession>)>,
    /// Non-secret settings.
    pub settings: Map<String, Value>,
    /// Decrypted secrets (for webhook verification).
    pub secrets: BTreeMap<String, Secret>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

impl Built {
    /// A decrypted secret.
    pub fn secret(&self, field: &str) -> Option<&str> {
        self.secrets.get(field).map(Secret::expose)
    }

    /// A text setting.
    pub fn setting(&self, field: &str) -> Option<&str> {
        self.settings.get(field).and_then(Value::as_str)
    }
}

/// Adapters of stored channel accounts, per process.
pub struct Registry {
    db: Db,
    cipher: Arc<CredentialCipher>,
    cache: tokio::sync::Mutex<HashMap<i64, Arc<Built>>>,
    breaker_failures: u32,
    cool_down: Duration,
    public_url: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry decrypting with `cipher`.
    pub fn new(db: Db, cipher: Arc<CredentialCipher>, config: &crate::config::Config) -> Registry {
        Registry {
            db,
            cipher,
            cache: tokio::sync::Mutex::default(),
            breaker_failures: config.campaign.breaker_failures.max(1),
            cool_down: Duration::from_secs(config.campaign.breaker_cool_down_secs),
            public_url: crate::campaign::public_url(config),
        }
    }

    /// The credential cipher.
    pub fn cipher(&self) -> &Arc<CredentialCipher> {
        &self.cipher
    }

    /// The adapter of channel account `id` (`None`: no such account), built or rebuilt when
    /// the stored row changed since.
    pub async fn get(&self, id: i64) -> anyhow::Result<Option<Arc<Built>>> {
        let mut conn = self.db.pool().acquire().await?;
        let version: Option<i64> =
            sqlx::query_scalar("select updated_at from channel_accounts where id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(version) = version else {
            self.cache.lock().await.remove(&id);
            return Ok(None);
        };
        let mut cache = self.cache.lock().await;
        if let Some(b) = cache.get(&id)
            && b.updated_at == version
        {
            return Ok(Some(b.clone()));
        }
        let Some(row) = accounts::get_any(&mut conn, id).await? else {
            return Ok(None);
        };
        drop(conn);
        let built = Arc::new(self.build(&row).await?);
        cache.insert(id, built.clone());
        Ok(Some(built))
    }

    /// The account for webhook verification and effects: its adapter when it can be built,
    /// else (a WPPConnect server unreachable for tokens...) its settings and secrets without
    /// one, so webhooks keep working; that fallback is not cached.
    pub async fn for_webhooks(&self, id: i64) -> anyhow::Result<Option<Arc<Built>>> {
        match self.get(id).await {
            Ok(b) => Ok(b),
            Err(e) => {
                tracing::warn!(channel_account = id, error = %e, "adapter unavailable; verifying the webhook without it");
                let mut conn = self.db.pool().acquire().await?;
                let Some(row) = accounts::get_any(&mut conn, id).await? else {
                    return Ok(None);
                };
                let secrets = row.decrypt(&self.cipher).map_err(|e| {
                    anyhow::anyhow!("channel account {id}: cannot decrypt its secrets ({e})")
                })?;
                Ok(Some(Arc::new(Built {
                    id: row.id,
                    account_id: row.account_id,
                    updated_at: row.updated_at,
                    enabled: row.enabled != 0,
                    provider: row.provider(),
                    channel: Arc::new(WppSessionPool::new(Vec::new())),
                    breaker: CircuitBreaker::new(self.breaker_failures, self.cool_down),
                    webhook_url: None,
                    wpp: None,
                    settings: row.settings(),
                    secrets,
                })))
            }
        }
    }

    async fn build(&self, row: &AccountRow) -> anyhow::Result<Built> {
        let provider = row.provider();
        let secrets = row.decrypt(&self.cipher).map_err(|e| {
            anyhow::anyhow!(
                "channel account {}: cannot decrypt its secrets ({e}); is secrets.key the key they were stored with?",
                row.id
            )
        })?;
        let mut settings = row.settings();
        if provider == Provider::Twilio && !settings.contains_key("status_callback") {
            settings.insert(
                "status_callback".into(),
                Value::String(format!(
                    "{}/api/v1/webhooks/twilio/{}",
                    self.public_url, row.id
                )),
            );
        }
        let (channel, wpp) = match adapter(provider, &settings, &secrets)
            .map_err(|e| anyhow::anyhow!("channel account {}: {e}", row.id))?
        {
            Adapter::Ready(c) => (c, None),
            Adapter::Wpp(client, names) => {
                let mut sessions = Vec::new();
                for name in names {
                    let token = client.generate_token(&name).await.map_err(|e| {
                        anyhow::anyhow!(
                            "channel account {}: WPPConnect token for session {name}: {e}",
                            row.id
                        )
                    })?;
                    sessions.push(client.session(name, token));
                }
                let pool = Arc::new(WppSessionPool::new(sessions.clone()));
                (
                    pool.clone() as Arc<dyn farol_channels::Channel>,
                    Some((pool, sessions)),
                )
            }
        };
        Ok(Built {
            id: row.id,
            account_id: row.account_id,
            updated_at: row.updated_at,
            enabled: row.enabled != 0,
            provider,
            channel,
            breaker: CircuitBreaker::new(self.breaker_failures, self.cool_down),
            webhook_url: settings
                .get("url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            wpp,
            settings,
            secrets,
        })
    }
}

enum Adapter {
    Ready(Arc<dyn farol_channels::Channel>),
    Wpp(WppConnectClient, Vec<String>),
}

fn text(settings: &Map<String, Value>, k: &str) -> Option<String> {
    settings.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn timeout(settings: &Map<String, Value>) -> Duration {
    settings
        .get("timeout_secs")
        .and_then(Value::as_u64)
        .map_or(farol_channels::http::DEFAULT_TIMEOUT, Duration::from_secs)
}

fn need<'a>(secrets: &'a BTreeMap<String, Secret>, k: &str) -> Result<&'a Secret, String> {
    secrets
        .get(k)
        .ok_or_else(|| format!("missing secret `{k}`"))
}

fn need_text(settings: &Map<String, Value>, k: &str) -> Result<String, String> {
    text(settings, k).ok_or_else(|| format!("missing setting `{k}`"))
}

fn adapter(
    provider: Provider,
    settings: &Map<String, Value>,
    secrets: &BTreeMap<String, Secret>,
) -> Result<Adapter, String> {
    let timeout = timeout(settings);
    Ok(match provider {
        Provider::Smtp => {
            let security = match text(settings, "security").as_deref() {
                Some("tls") => SmtpSecurity::Tls,
                Some("starttls") => SmtpSecurity::StartTls,
                Some("none") => SmtpSecurity::Plain,
                _ => SmtpSecurity::Opportunistic,
            };
            let config = SmtpConfig {
                host: need_text(settings, "host")?,
                port: settings
                    .get("port")
                    .and_then(Value::as_u64)
                    .map(|p| u16::try_from(p).map_err(|_| "port must be at most 65535".to_string()))
                    .transpose()?,
                security,
                username: text(settings, "username"),
                password: secrets.get("password").cloned(),
                from: need_text(settings, "from")?,
                pool_max_size: 8,
                timeout,
                root_certificates_pem: None,
                dangerous_accept_invalid_certs: false,
            };
            let mut channel = SmtpChannel::new(&config).map_err(|e| e.to_string())?;
            if let Some(rp) = super::dsn::return_path(settings, secrets)? {
                channel = channel.with_return_path(rp);
            }
            Adapter::Ready(Arc::new(channel))
        }
        Provider::Sendgrid => {
            let mut config = SendGridConfig::new(
                need(secrets, "api_key")?.clone(),
                need_text(settings, "from_email")?,
            );
            config.from_name = text(settings, "from_name");
            if let Some(url) = text(settings, "base_url") {
                config.base_url = url;
            }
            config.timeout = timeout;
            Adapter::Ready(Arc::new(SendGridChannel::new(config)))
        }
        Provider::Ses => Adapter::Ready(Arc::new(SesChannel::new(SesConfig {
            region: need_text(settings, "region")?,
            endpoint: text(settings, "endpoint"),
            credentials: AwsCredentials {
                access_key_id: need_text(settings, "access_key_id")?,
                secret_access_key: need(secrets, "secret_access_key")?.clone(),
                session_token: None,
            },
            from: need_text(settings, "from")?,
            configuration_set: text(settings, "configuration_set"),
            timeout,
        }))),
        Provider::Meta => {
            let mut config = MetaConfig::new(
                need_text(settings, "phone_number_id")?,
                need(secrets, "access_token")?.clone(),
            );
            if let Some(url) = text(settings, "base_url") {
                config.base_url = url;
            }
            if let Some(v) = text(settings, "api_version") {
                config.api_version = v;
            }
            config.timeout = timeout;
            Adapter::Ready(Arc::new(MetaChannel::new(config)))
        }
        Provider::Wppconnect => {
            let client = WppConnectClient::new(WppConnectConfig {
                base_url: need_text(settings, "base_url")?,
                secret_key: need(secrets, "secret_key")?.clone(),
                timeout,
            });
            let names = settings
                .get("sessions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|a| !a.is_empty())
                .ok_or("missing setting `sessions`")?;
            Adapter::Wpp(client, names)
        }
        Provider::Twilio => {
            let sid = need_text(settings, "account_sid")?;
            let sender = match (
                text(settings, "from"),
                text(settings, "messaging_service_sid"),
            ) {
                (Some(from), None) => TwilioSender::From(from),
                (None, Some(service)) => TwilioSender::MessagingService(service),
                _ => return Err("set exactly one of `from` and `messaging_service_sid`".into()),
            };
            Adapter::Ready(Arc::new(TwilioChannel::new(TwilioConfig {
                base_url: text(settings, "base_url")
                    .unwrap_or_else(|| farol_channels::sms::twilio::DEFAULT_BASE_URL.into()),
                username: sid.clone(),
                account_sid: sid,
                password: need(secrets, "auth_token")?.clone(),
                sender,
                status_callback: text(settings, "status_callback"),
                timeout,
            })))
        }
        Provider::Smartico => {
            let mut config = SmarticoConfig::new(
                need_text(settings, "base_url")?,
                need(secrets, "label_token")?.clone(),
            );
            config.ext_brand_id = text(settings, "ext_brand_id");
            config.timeout = timeout;
            Adapter::Ready(Arc::new(SmarticoChannel::new(config)))
        }
        Provider::Webhook => Adapter::Ready(Arc::new(WebhookChannel::new(WebhookConfig {
            secret: need(secrets, "secret")?.clone(),
            timeout,
            // The campaign queue retries with its own backoff.
            backoff: Backoff {
                max_retries: 0,
                ..Backoff::default()
            },
        }))),
    })
}

/// Builds the adapter's configuration without any network call, so a setting no adapter
/// accepts is a 422 when the account is saved rather than a failure at send time.
pub fn check_buildable(
    provider: Provider,
    settings: &Map<String, Value>,
    secrets: &BTreeMap<String, Secret>,
) -> ApiResult<()> {
    adapter(provider, settings, secrets)
        .map(|_| ())
        .map_err(|e| ApiError::field("settings", "invalid", e))
}
