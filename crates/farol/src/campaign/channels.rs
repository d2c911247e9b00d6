//! The channel adapters this process sends through: the default e-mail account from
//! configuration (`[smtp]`, `FAROL_SMTP_URL`/`FAROL_SMTP_FROM`), the default Smartico label
//! (`[smartico]` `base_url` + `label_token`), and the channel accounts stored per tenant
//! (`crate::channels`), built on demand by the registry.

use std::sync::Arc;
use std::time::Duration;

use farol_channels::Secret;
use farol_channels::email::smtp::{SmtpChannel, SmtpConfig, SmtpSecurity};
use secrecy::ExposeSecret;

use super::templates::Channel as ChannelName;
use crate::config::Config;

/// Adapters by channel. Cheap to clone.
#[derive(Clone, Default)]
pub struct Channels {
    email: Option<Arc<dyn farol_channels::Channel>>,
    smartico: Option<Arc<dyn farol_channels::Channel>>,
    registry: Option<Arc<crate::channels::registry::Registry>>,
    auto_order: Vec<ChannelName>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("email", &self.email.is_some())
            .field("smartico", &self.smartico.is_some())
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

impl Channels {
    /// Builds the configured adapters; a malformed setting is an error naming its key. Call it
    /// inside a Tokio runtime (the Smartico adapter spawns its sending task).
    pub fn from_config(config: &Config) -> anyhow::Result<Channels> {
        let url = config.smtp.url.expose_secret();
        let email: Option<Arc<dyn farol_channels::Channel>> = if url.is_empty() {
            None
        } else {
            if config.smtp.from.trim().is_empty() {
                anyhow::bail!(
                    "configuration error: key `smtp.from`: required when smtp.url is set (e.g. \"Farol <noreply@example.com>\")"
                );
            }
            let smtp = parse_smtp_url(url, &config.smtp.from)
                .map_err(|e| anyhow::anyhow!("configuration error: key `smtp.url`: {e}"))?;
            let channel = SmtpChannel::new(&smtp)
                .map_err(|e| anyhow::anyhow!("configuration error: key `smtp`: {e}"))?;
            Some(Arc::new(channel))
        };
        Ok(Channels {
            email,
            smartico: smartico_from_config(&config.smartico),
            registry: None,
            auto_order: crate::channels::routing::parse_order(&config.campaign.auto_order)
                .map_err(|e| {
                    anyhow::anyhow!("configuration error: key `campaign.auto_order`: {e}")
                })?,
        })
    }

    /// Channels with the given e-mail adapter (tests, embedding).
    pub fn with_email(email: Arc<dyn farol_channels::Channel>) -> Channels {
        Channels {
            email: Some(email),
            smartico: None,
            registry: None,
            auto_order: vec![ChannelName::Whatsapp, ChannelName::Sms, ChannelName::Email],
        }
    }

    /// These channels plus the stored channel accounts of `registry`.
    pub fn with_registry(mut self, registry: Arc<crate::channels::registry::Registry>) -> Channels {
        self.registry = Some(registry);
        self
    }

    /// The stored channel accounts' adapters.
    pub fn registry(&self) -> Option<&Arc<crate::channels::registry::Registry>> {
        self.registry.as_ref()
    }

    /// `campaign.auto_order`.
    pub fn auto_order(&self) -> &[ChannelName] {
        &self.auto_order
    }

    /// The adapter of a channel, when configured.
    pub fn get(&self, channel: ChannelName) -> Option<Arc<dyn farol_channels::Channel>> {
        match channel {
            ChannelName::Email => self.email.clone(),
            ChannelName::Smartico => self.smartico.clone(),
            _ => None,
        }
    }
}

/// The `[smartico]` label as a campaign channel, when its `base_url` and `label_token` are
/// set (`enabled` is about the segmentation sync; campaigns do not need it).
fn smartico_from_config(
    s: &crate::config::SmarticoSettings,
) -> Option<Arc<dyn farol_channels::Channel>> {
    let token = s.label_token.expose_secret();
    if s.base_url.trim().is_empty() || token.trim().is_empty() {
        return None;
    }
    let mut config = farol_channels::smartico::SmarticoConfig::new(s.base_url.trim(), token);
    config.ext_brand_id = Some(s.brand.clone()).filter(|b| !b.is_empty());
    config.timeout = Duration::from_secs(s.timeout_secs.max(1));
    config.max_events_per_request = s.batch_size;
    Some(Arc::new(farol_channels::smartico::SmarticoChannel::new(
        config,
    )))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad percent-encoding".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8".to_string())
}

/// Parses `smtp[s]://[user[:password]@]host[:port][?tls=required|none|opportunistic][&pool=N]`
/// (`pool`: connections per process, 1–256, default 8).
pub fn parse_smtp_url(url: &str, from: &str) -> Result<SmtpConfig, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "expected smtp://… or smtps://…".to_string())?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            Some(p.parse::<u16>().map_err(|_| format!("bad port `{p}`"))?),
        ),
        _ => (hostport, None),
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let mut security = match scheme {
        "smtps" => SmtpSecurity::Tls,
        "smtp" => SmtpSecurity::Opportunistic,
        other => return Err(format!("unknown scheme `{other}`; use smtp or smtps")),
    };
    let mut pool_max_size = 8;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("tls", "required")) if scheme == "smtp" => security = SmtpSecurity::StartTls,
            Some(("tls", "none")) if scheme == "smtp" => security = SmtpSecurity::Plain,
            Some(("tls", "opportunistic")) if scheme == "smtp" => {
                security = SmtpSecurity::Opportunistic
            }
            Some(("pool", n)) => {
                pool_max_size = n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| format!("`pool` takes 1 to 256 connections, not `{n}`"))?
            }
            _ => return Err(format!("unknown option `{pair}`")),
        }
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (
                Some(percent_decode(user)?),
                Some(Secret::new(percent_decode(pass)?)),
            ),
            None => (Some(percent_decode(u)?), None),
        },
    };
    Ok(SmtpConfig {
        host: host.to_owned(),
        port,
        security,
        username,
        password,
        from: from.to_owned(),
        pool_max_size,
        timeout: Duration::from_secs(30),
        root_certificates_pem: None,
        dangerous_accept_invalid_certs: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_with_credentials_ports_and_tls_modes() {
        let c = parse_smtp_url("smtp://ana%40x.com:p%3Ass@mail.test:587", "F <f@x.test>").unwrap();
        assert_eq!(c.host, "mail.test");
        assert_eq!(c.port, Some(587));
        assert_eq!(c.username.as_deref(), Some("ana@x.com"));
        assert_eq!(c.password.unwrap().expose(), "p:ss");
        assert_eq!(c.security, SmtpSecurity::Opportunistic);
        let c = parse_smtp_url("smtp://127.0.0.1:2525?tls=none", "f@x.test").unwrap();
        assert_eq!(c.security, SmtpSecurity::Plain);
        assert!(c.username.is_none());
        let c = parse_smtp_url("smtp://h?tls=required", "f@x.test").unwrap();
        assert_eq!((c.security, c.port), (SmtpSecurity::StartTls, None));
        let c = parse_smtp_url("smtps://u:p@h:465", "f@x.test").unwrap();
        assert_eq!(c.security, SmtpSecurity::Tls);
        assert!(parse_smtp_url("http://h", "f@x.test").is_err());
        assert!(parse_smtp_url("smtp://h:x", "f@x.test").is_err());
        assert!(parse_smtp_url("smtp://h?tls=maybe", "f@x.test").is_err());
        let c = parse_smtp_url("smtp://h:25?tls=none&pool=32", "f@x.test").unwrap();
        assert_eq!((c.security, c.pool_max_size), (SmtpSecurity::Plain, 32));
        assert_eq!(
            parse_smtp_url("smtp://h", "f@x.test")
                .unwrap()
                .pool_max_size,
            8
        );
        assert!(parse_smtp_url("smtp://h?pool=0", "f@x.test").is_err());
        assert!(parse_smtp_url("smtps://h?pool=many", "f@x.test").is_err());
    }
}
