//! SMTP over lettre's connection (rustls with ring; implicit TLS, STARTTLS or plain) with our
//! own small pool, multipart text + HTML, `List-Unsubscribe` headers and a Message-ID derived
//! from the idempotency key.
//!
//! Why not lettre's pooled `AsyncSmtpTransport`: it opens sockets without `TCP_NODELAY` and
//! writes a message's body and its `\r\n.\r\n` terminator in two writes, so Nagle's algorithm
//! holds the terminator until the server's delayed ACK (about 40 ms per message per
//! connection; see docs/campaigns.md). Here every socket is opened by us with `TCP_NODELAY`
//! and handed to lettre's `AsyncSmtpConnection` (which speaks the protocol: EHLO, STARTTLS,
//! AUTH, MAIL/RCPT/DATA, dot-stuffing). Our pool also bounds each transaction with the
//! configured timeout, which lettre's async transport applies only to connecting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::channel::{
    BoxFuture, Channel, ChannelKind, Content, OutboundMessage, Recipient, SendError, SendReceipt,
};
use crate::email::verp::ReturnPath;
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

/// How long a pooled connection may sit idle before it is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle connection older than this is checked with NOOP before it carries a message, so a
/// connection the server closed meanwhile is replaced rather than failing a send.
const CHECK_AFTER: Duration = Duration::from_secs(5);

/// How TLS is applied to a new connection.
enum TlsMode {
    None,
    Wrapper(TlsParameters),
    StartTls(TlsParameters),
    Opportunistic(TlsParameters),
}

/// A small pool of SMTP connections, each over a socket with `TCP_NODELAY`.
struct SmtpPool {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    /// Idle connections with when they were last used (most recent last).
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// One permit per connection that may be open at once.
    permits: Semaphore,
}

/// Opens a TCP connection to `host:port` within `timeout`, with Nagle's algorithm off (SMTP is
/// request/response: a small write must go out at once, not wait for the peer's ACK).
pub async fn connect_nodelay(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, SendError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| SendError::transient(format!("connection to {host}:{port} timed out")))?
        .map_err(|e| SendError::transient(format!("cannot connect to {host}:{port}: {e}")))?;
    stream
        .set_nodelay(true)
        .map_err(|e| SendError::transient(format!("cannot set TCP_NODELAY: {e}")))?;
    Ok(stream)
}

impl SmtpPool {
    /// A new connection: TCP (no delay), TLS as configured, EHLO, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tcp = connect_nodelay(&self.host, self.port, self.timeout).await?;
        let setup = async {
            let mut conn = match &self.tls {
                TlsMode::Wrapper(params) => {
                    let stream = tls_wrapped(tcp, params.clone()).await?;
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                        .await?
                }
                _ => {
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?
                }
            };
            match &self.tls {
                TlsMode::StartTls(params) => conn.starttls(params.clone(), &self.hello).await?,
                TlsMode::Opportunistic(params) if conn.can_starttls() => {
                    conn.starttls(params.clone(), &self.hello).await?
                }
                _ => {}
            }
            if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials).await?;
            }
            Ok::<_, SmtpError>(conn)
        };
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(SendError::transient(format!(
                "SMTP handshake with {}:{} timed out",
                self.host, self.port
            ))),
        }
    }

    /// A usable connection: an idle one (checked with NOOP when it has been idle a while), or a
    /// new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().expect("smtp pool lock");
                idle.retain(|(_, at)| at.elapsed() < IDLE_TIMEOUT);
                idle.pop()
            };
            let Some((mut conn, at)) = candidate else {
                return self.connect().await;
            };
            if at.elapsed() < CHECK_AFTER {
                return Ok(conn);
            }
            let alive = tokio::time::timeout(self.timeout, conn.test_connected())
                .await
                .unwrap_or(false);
            if alive {
                return Ok(conn);
            }
        }
    }

    /// Sends one message, reusing a pooled connection when it can; a connection that saw an
    /// error or a timeout is dropped, not reused.
    async fn send(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, SendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("smtp pool never closes");
        let mut conn = self.checkout().await?;
        match tokio::time::timeout(self.timeout, conn.send(envelope, bytes)).await {
            Ok(Ok(response)) => {
                if !conn.has_broken() {
                    self.idle
                        .lock()
                        .expect("smtp pool lock")
                        .push((conn, Instant::now()));
                }
                Ok(response)
            }
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(SendError::transient(format!(
                "SMTP transaction with {}:{} timed out after {:?}",
                self.host, self.port, self.timeout
            ))),
        }
    }
}

/// A TCP stream wrapped in TLS by lettre (implicit TLS, port 465), adapted back to tokio's I/O
/// traits so lettre's connection can run SMTP over it. The TCP socket below keeps `TCP_NODELAY`.
#[allow(deprecated)]
async fn tls_wrapped(tcp: TcpStream, params: TlsParameters) -> Result<TlsStream, SmtpError> {
    use lettre::transport::smtp::client::AsyncNetworkStream;
    let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
    stream.upgrade_tls(params).await?;
    Ok(TlsStream(stream))
}

#[allow(deprecated)]
#[derive(Debug)]
struct TlsStream(lettre::transport::smtp::client::AsyncNetworkStream);

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures_util::io::AsyncRead;
        let unfilled = buf.initialize_unfilled();
        match std::pin::Pin::new(&mut self.0).poll_read(cx, unfilled) {
            std::task::Poll::Ready(Ok(n)) => {
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use futures_util::io::AsyncWrite;
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures_util::io::AsyncWrite;
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use futures_util::io::AsyncWrite;
        std::pin::Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The SMTP channel. Cheap to share: the pool lives inside.
pub struct SmtpChannel {
    pool: SmtpPool,
    from: Mailbox,
    domain: String,
    /// VERP envelope senders, so bounces name the message (see [`crate::email::verp`]).
    return_path: Option<ReturnPath>,
}

impl std::fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpChannel")
            .field("from", &self.from.to_string())
            .field("host", &self.pool.host)
            .field("port", &self.pool.port)
            .finish_non_exhaustive()
    }
}

impl SmtpChannel {
    /// Builds the channel. No connection is opened until the first send.
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
            SmtpSecurity::Tls => (TlsMode::Wrapper(tls_params()?), 465),
            SmtpSecurity::StartTls => (TlsMode::StartTls(tls_params()?), 587),
            SmtpSecurity::Opportunistic => (TlsMode::Opportunistic(tls_params()?), 587),
            SmtpSecurity::Plain => (TlsMode::None, 25),
        };
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_owned()))
            }
            _ => None,
        };
        let size = config.pool_max_size.max(1) as usize;
        let domain = domain_of(from.email.as_ref()).to_owned();
        Ok(Self {
            pool: SmtpPool {
                host: config.host.clone(),
                port: config.port.unwrap_or(default_port),
                tls,
                credentials,
                hello: ClientId::default(),
                timeout: config.timeout,
                idle: Mutex::new(Vec::with_capacity(size)),
                permits: Semaphore::new(size),
            },
            from,
            domain,
            return_path: None,
        })
    }

    /// Sends each message with its own VERP envelope sender (`bounces+<id>-<tag>@domain`)
    /// instead of the `From` address, so delivery status notifications identify the message.
    pub fn with_return_path(mut self, return_path: ReturnPath) -> Self {
        self.return_path = Some(return_path);
        self
    }

    /// The SMTP envelope of `message`: its recipients, and the VERP sender when configured.
    fn envelope(&self, message: &Message, message_id: &str) -> Result<Envelope, SendError> {
        let envelope = message.envelope();
        let Some(sender) = self
            .return_path
            .as_ref()
            .and_then(|rp| rp.address_for(message_id))
        else {
            return Ok(envelope.clone());
        };
        let sender = sender
            .parse()
            .map_err(|e| SendError::permanent("invalid_return_path", format!("{sender:?}: {e}")))?;
        Envelope::new(Some(sender), envelope.to().to_vec())
            .map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }

    /// Opens a connection (TLS and AUTH as configured) and says NOOP: a health check for the
    /// settings page.
    pub async fn test_connection(&self) -> Result<bool, SendError> {
        let mut conn = self.pool.connect().await?;
        let ok = conn.test_connected().await;
        let _ = conn.quit().await;
        Ok(ok)
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
            let envelope = self.envelope(&message, &message_id)?;
            let response = self.pool.send(&envelope, &message.formatted()).await?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;
    use crate::channel::EmailContent;

    /// A minimal SMTP server: accepts everything, counts connections and messages.
    async fn tiny_server() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let messages = Arc::new(AtomicUsize::new(0));
        let (c, m) = (connections.clone(), messages.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let m = m.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 tiny ESMTP\r\n").await.unwrap();
                    let mut in_data = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply: &[u8] = if in_data {
                            if line == "." {
                                in_data = false;
                                m.fetch_add(1, Ordering::SeqCst);
                                b"250 queued\r\n"
                            } else {
                                continue;
                            }
                        } else if line.starts_with("EHLO") {
                            b"250-tiny\r\n250 8BITMIME\r\n"
                        } else if line == "DATA" {
                            in_data = true;
                            b"354 go ahead\r\n"
                        } else if line == "QUIT" {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        write.write_all(reply).await.unwrap();
                    }
                });
            }
        });
        (port, connections, messages)
    }

    fn config(port: u16, pool: u32) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            security: SmtpSecurity::Plain,
            username: None,
            password: None,
            from: "Farol <noreply@farol.test>".into(),
            pool_max_size: pool,
            timeout: Duration::from_secs(5),
            root_certificates_pem: None,
            dangerous_accept_invalid_certs: false,
        }
    }

    fn message(key: &str) -> OutboundMessage {
        OutboundMessage::new(
            Recipient::email("ana@cliente.test"),
            Content::Email(EmailContent {
                subject: "Oi".into(),
                text: "Olá".into(),
                ..Default::default()
            }),
            key,
        )
    }

    #[test]
    fn a_return_path_gives_each_message_its_own_envelope_sender() {
        let rp = ReturnPath::new(
            "bounces@mail.farol.test",
            Secret::new("a-long-enough-dsn-secret"),
        )
        .unwrap();
        let channel = SmtpChannel::new(&config(25, 1))
            .unwrap()
            .with_return_path(rp.clone());
        let msg = message("campaign:1:client:2");
        let built = channel.build_message(&msg).unwrap();
        let mid = message_id_for("campaign:1:client:2", "farol.test");
        let envelope = channel
            .envelope(&built, mid.trim_matches(['<', '>']))
            .unwrap();
        let sender = envelope.from().unwrap().to_string();
        assert!(sender.starts_with("bounces+"), "{sender}");
        assert_eq!(
            rp.message_id_of(&sender).as_deref(),
            mid.trim_matches(['<', '>']).split('@').next()
        );
        assert_eq!(envelope.to()[0].to_string(), "ana@cliente.test");
        // Without one, the envelope sender is the From address.
        let plain = SmtpChannel::new(&config(25, 1)).unwrap();
        let envelope = plain.envelope(&built, &mid).unwrap();
        assert_eq!(envelope.from().unwrap().to_string(), "noreply@farol.test");
    }

    #[tokio::test]
    async fn sockets_are_opened_with_nagle_off() {
        // The regression this guards: with Nagle on, lettre's separate write of the
        // `\r\n.\r\n` terminator waits for the server's delayed ACK (~40 ms per message).
        let (port, _, _) = tiny_server().await;
        let stream = connect_nodelay("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn the_pool_reuses_connections_and_never_opens_more_than_its_size() {
        let (port, connections, messages) = tiny_server().await;
        let channel = SmtpChannel::new(&config(port, 1)).unwrap();
        for i in 0..5 {
            channel.send(&message(&format!("k{i}"))).await.unwrap();
        }
        assert_eq!(messages.load(Ordering::SeqCst), 5);
        assert_eq!(connections.load(Ordering::SeqCst), 1);

        let channel = Arc::new(SmtpChannel::new(&config(port, 3)).unwrap());
        let sends = (0..30).map(|i| {
            let channel = channel.clone();
            tokio::spawn(async move { channel.send(&message(&format!("p{i}"))).await })
        });
        for s in sends.collect::<Vec<_>>() {
            s.await.unwrap().unwrap();
        }
        assert_eq!(messages.load(Ordering::SeqCst), 35);
        let opened = connections.load(Ordering::SeqCst) - 1;
        assert!((1..=3).contains(&opened), "{opened} connections");
    }
}
