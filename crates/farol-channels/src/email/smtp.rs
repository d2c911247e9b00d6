//! SMTP through lettre's pooled async transport (rustls with ring; implicit TLS, STARTTLS or
//! plain), multipart text + HTML, `List-Unsubscribe` headers and a Message-ID derived from the
//! idempotency key.

use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, Recipient, SendError, SendReceipt,
};
use crate::email::{domain_of, message_id_for};
use crate::secret::Secret;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Implicit TLS (port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, required (port 587).
    StartTls,
    /// STARTTLS when offered, plain otherwise. Only for trusted networks.
    Opportunistic,
    /// No TLS at all. Only for local relays and tests.
    Plain,
}

/// SMTP settings.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpConfig {
    /// Server host name.
    pub host: String,
    /// Port; defaults to 465 (TLS), 587 (STARTTLS) or 25.
    pub port: Option<u16>,
    /// Connection security.
    pub security: SmtpSecurity,
    /// Login, if the server requires authentication.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<Secret>,
    /// The `From` mailbox, `Farol <noreply@example.com>`.
    pub from: String,
    /// Largest number of pooled connections.
    #[serde(default = "default_pool_size")]
    pub pool_max_size: u32,
    /// Per-command timeout, seconds in JSON (`timeout_secs`).
    #[serde(
        rename = "timeout_secs",
        default = "default_timeout",
        with = "crate::serde_util::secs"
    )]
    pub timeout: Duration,
    /// Extra trusted root certificates (PEM), for relays with a private CA.
    #[serde(default)]
    pub root_certificates_pem: Option<String>,
    /// Accept any certificate and host name. Never in production.
    #[serde(default)]
    pub dangerous_accept_invalid_certs: bool,
}

fn default_pool_size() -> u32 {
    4
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Errors building the transport from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    /// The `from` mailbox does not parse.
    #[error("invalid from address {0:?}")]
    From(String),
    /// lettre refused the settings (TLS parameters, host).
    #[error("invalid SMTP settings: {0}")]
    Transport(#[from] SmtpError),
}

/// The SMTP channel. Clone-free and cheap to share: the pool lives inside.
pub struct SmtpChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl std::fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpChannel")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpChannel {
    /// Builds the pooled transport. No connection is opened until the first send.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpConfigError> {
        crate::http::install_default_crypto_provider();
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| SmtpConfigError::From(config.from.clone()))?;
        let tls_params = || {
            let mut builder = TlsParameters::builder(config.host.clone())
                .dangerous_accept_invalid_certs(config.dangerous_accept_invalid_certs)
                .dangerous_accept_invalid_hostnames(config.dangerous_accept_invalid_certs);
            if let Some(pem) = &config.root_certificates_pem {
                builder = builder.add_root_certificate(Certificate::from_pem(pem.as_bytes())?);
            }
            builder.build_rustls()
        };
        let (tls, default_port) = match config.security {
            SmtpSecurity::Tls => (Tls::Wrapper(tls_params()?), 465),
            SmtpSecurity::StartTls => (Tls::Required(tls_params()?), 587),
            SmtpSecurity::Opportunistic => (Tls::Opportunistic(tls_params()?), 587),
            SmtpSecurity::Plain => (Tls::None, 25),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
                .port(config.port.unwrap_or(default_port))
                .tls(tls)
                .timeout(Some(config.timeout))
                .pool_config(PoolConfig::new().max_size(config.pool_max_size.max(1)));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let domain = domain_of(from.email.as_ref()).to_owned();
        Ok(Self {
            transport: builder.build(),
            from,
            domain,
        })
    }

    /// Opens a connection and says EHLO/NOOP: a health check for the settings page.
    pub async fn test_connection(&self) -> Result<bool, SendError> {
        self.transport
            .test_connection()
            .await
            .map_err(|e| classify(&e))
    }

    /// Builds the RFC 5322 message for `msg` (exposed for tests and previews).
    pub fn build_message(&self, msg: &OutboundMessage) -> Result<Message, SendError> {
        let Content::Email(content) = &msg.content else {
            return Err(SendError::unsupported_content(ChannelKind::Email));
        };
        let Recipient::Email { address, name } = &msg.to else {
            return Err(SendError::permanent(
                "unsupported_recipient",
                "SMTP needs an e-mail recipient",
            ));
        };
        let to = Mailbox::new(
            name.clone(),
            address.parse().map_err(|_| {
                SendError::invalid_contact("invalid_address", format!("invalid e-mail {address:?}"))
            })?,
        );
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject.clone())
            .message_id(Some(message_id_for(&msg.idempotency_key, &self.domain)));
        if let Some(reply_to) = &content.reply_to {
            let mailbox: Mailbox = reply_to.parse().map_err(|_| {
                SendError::permanent("invalid_reply_to", format!("invalid Reply-To {reply_to:?}"))
            })?;
            builder = builder.reply_to(mailbox);
        }
        for (name, value) in content.wire_headers() {
            let name = HeaderName::new_from_ascii(name.clone()).map_err(|_| {
                SendError::permanent("invalid_header", format!("invalid header name {name:?}"))
            })?;
            builder = builder.raw_header(HeaderValue::new(name, value));
        }
        let built = match &content.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                content.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(content.text.clone()),
            ),
        };
        built.map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }
}

impl Channel for SmtpChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn provider(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<SendReceipt, SendError>> {
        Box::pin(async move {
            let message = self.build_message(msg)?;
            let message_id = message
                .headers()
                .get_raw("Message-ID")
                .map(|id| id.trim().trim_matches(['<', '>']).to_owned())
                .unwrap_or_default();
            let response = self
                .transport
                .send(message)
                .await
                .map_err(|e| classify(&e))?;
            Ok(SendReceipt {
                provider_message_id: message_id,
                provider: "smtp".into(),
                status: Some(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                )),
            })
        })
    }
}

/// Maps lettre's errors: 4xx replies, timeouts and connection failures are transient; 5xx replies
/// permanent, with 550/551/553 (mailbox unknown or refused) marking the contact invalid.
fn classify(err: &SmtpError) -> SendError {
    let reason = err.to_string();
    if err.is_permanent() {
        let code = err
            .status()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "5xx".into());
        let contact_invalid = matches!(code.as_str(), "550" | "551" | "553");
        return SendError::Permanent {
            code: format!("smtp_{code}"),
            reason,
            contact_invalid,
        };
    }
    if err.is_tls() {
        return SendError::permanent("smtp_tls", reason);
    }
    if err.is_client() {
        return SendError::permanent("smtp_client", reason);
    }
    SendError::transient(reason)
}
