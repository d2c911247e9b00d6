//! E-mail adapters: SMTP against aiosmtpd, SendGrid and SES against local fakes of their APIs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use farol_channels::email::message_id_for;
use farol_channels::email::sendgrid::{SendGridChannel, SendGridConfig};
use farol_channels::email::ses::{SesChannel, SesConfig};
use farol_channels::email::sigv4::{self, AwsCredentials, SigningRequest};
use farol_channels::email::smtp::{SmtpChannel, SmtpConfig, SmtpSecurity};
use farol_channels::{
    Channel, Content, EmailContent, OutboundMessage, Recipient, Secret, SendError,
};
use serde_json::{Value, json};

use crate::common::{Log, email, record, serve};

// ---------------------------------------------------------------------------------------------
// SMTP against a real SMTP server (aiosmtpd).

struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("FAROL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/farol/venv")
        });
    let python = venv.join("bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the SMTP tests need aiosmtpd in {}: run scripts/install-test-deps (or set FAROL_VENV)",
        venv.display()
    );
    python
}

/// A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI),
/// so the STARTTLS test verifies the chain and host name for real.
fn make_test_pki(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "the STARTTLS test needs the openssl CLI (openssl {args:?} failed)"
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=Farol Test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

impl SmtpSink {
    fn start(auth: Option<&str>) -> Self {
        Self::start_with(auth, false)
    }

    /// With `starttls`, a throwaway self-signed certificate (made with the `openssl` CLI) is
    /// offered and STARTTLS is required before AUTH and MAIL.
    fn start_with(auth: Option<&str>, starttls: bool) -> Self {
        Self::start_tls(auth, starttls, false)
    }

    /// With `implicit_tls` (and `tls`), the connection is TLS from the first byte (port 465).
    fn start_tls(auth: Option<&str>, starttls: bool, implicit_tls: bool) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp_sink.py");
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(venv_python());
        cmd.arg(&script).arg("--dir").arg(dir.path());
        if let Some(auth) = auth {
            cmd.args(["--auth", auth]);
        }
        if starttls {
            make_test_pki(dir.path());
            cmd.arg("--tls-cert")
                .arg(dir.path().join("server.pem"))
                .arg("--tls-key")
                .arg(dir.path().join("server.key"));
            if implicit_tls {
                cmd.arg("--implicit-tls");
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start smtp_sink.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py did not report its port: {line:?}"));
        Self { child, port, dir }
    }

    fn messages(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    fn config(&self, credentials: Option<(&str, &str)>) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            security: SmtpSecurity::Plain,
            username: credentials.map(|c| c.0.to_owned()),
            password: credentials.map(|c| Secret::new(c.1)),
            from: "Farol <noreply@farol.test>".into(),
            pool_max_size: 2,
            timeout: Duration::from_secs(10),
            root_certificates_pem: None,
            dangerous_accept_invalid_certs: false,
        }
    }
}

fn header<'a>(msg: &'a Value, name: &str) -> Vec<&'a str> {
    msg["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn smtp_delivers_multipart_with_unsubscribe_headers_and_stable_message_id() {
    let sink = SmtpSink::start(Some("farol:s3cret"));
    let channel = SmtpChannel::new(&sink.config(Some(("farol", "s3cret")))).unwrap();
    let receipt = channel
        .send(&email("maria@cliente.test", "campaign:1:client:7"))
        .await
        .unwrap();
    // The pool reuses the connection for a second message.
    channel
        .send(&email("joao@cliente.test", "campaign:1:client:8"))
        .await
        .unwrap();

    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    let m = &messages[0];
    assert_eq!(m["mail_from"], "noreply@farol.test");
    assert_eq!(m["rcpt_tos"], json!(["maria@cliente.test"]));
    assert_eq!(m["login"], "farol");
    assert_eq!(m["subject"], "Oferta para Padaria Pão & Cia");
    assert_eq!(
        header(m, "List-Unsubscribe"),
        vec!["<https://farol.test/u/tok123>"]
    );
    assert_eq!(
        header(m, "List-Unsubscribe-Post"),
        vec!["List-Unsubscribe=One-Click"]
    );
    let expected_id = message_id_for("campaign:1:client:7", "farol.test");
    assert_eq!(header(m, "Message-ID"), vec![expected_id.as_str()]);
    assert_eq!(
        receipt.provider_message_id,
        expected_id.trim_matches(['<', '>'])
    );
    assert!(header(m, "Content-Type")[0].starts_with("multipart/alternative"));
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(
        parts[0]["body"].as_str().unwrap().trim_end(),
        "Olá Maria, seu plano Ouro."
    );
    assert_eq!(parts[1]["content_type"], "text/html");
    assert!(parts[1]["body"].as_str().unwrap().contains("<b>Maria</b>"));
    assert_eq!(messages[1]["rcpt_tos"], json!(["joao@cliente.test"]));
}

#[tokio::test]
async fn smtp_upgrades_with_starttls_over_rustls_before_authenticating() {
    let sink = SmtpSink::start_with(Some("farol:s3cret"), true);
    let mut config = sink.config(Some(("farol", "s3cret")));
    config.security = SmtpSecurity::StartTls;
    // A certificate from an unknown CA is refused before anything is sent.
    let untrusted = SmtpChannel::new(&config).unwrap();
    let err = untrusted
        .send(&email("maria@cliente.test", "k-untrusted"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err:?}");
    assert!(sink.messages().is_empty());

    config.root_certificates_pem =
        Some(std::fs::read_to_string(sink.dir.path().join("ca.pem")).unwrap());
    let channel = SmtpChannel::new(&config).unwrap();
    channel
        .send(&email("maria@cliente.test", "k-tls"))
        .await
        .unwrap();
    let messages = sink.messages();
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["login"], "farol");

    // Without TLS the server refuses to go on: a configuration error, not a retry.
    let plain = SmtpChannel::new(&sink.config(Some(("farol", "s3cret")))).unwrap();
    let err = plain
        .send(&email("maria@cliente.test", "k-plain"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn smtp_speaks_implicit_tls_and_reuses_the_connection() {
    let sink = SmtpSink::start_tls(Some("farol:s3cret"), true, true);
    let mut config = sink.config(Some(("farol", "s3cret")));
    config.security = SmtpSecurity::Tls;
    // Unknown CA: refused before anything is sent.
    let untrusted = SmtpChannel::new(&config).unwrap();
    let err = untrusted
        .send(&email("maria@cliente.test", "k-untrusted"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err:?}");
    assert!(sink.messages().is_empty());

    config.root_certificates_pem =
        Some(std::fs::read_to_string(sink.dir.path().join("ca.pem")).unwrap());
    let channel = SmtpChannel::new(&config).unwrap();
    for key in ["k-465-a", "k-465-b"] {
        channel
            .send(&email("maria@cliente.test", key))
            .await
            .unwrap();
    }
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    for m in &messages {
        assert_eq!(m["tls"], true);
        assert_eq!(m["login"], "farol");
    }
    assert!(channel.test_connection().await.unwrap());
}

#[tokio::test]
async fn smtp_sends_text_only_mail_without_auth() {
    let sink = SmtpSink::start(None);
    let channel = SmtpChannel::new(&sink.config(None)).unwrap();
    let mut msg = email("ana@cliente.test", "k-text");
    if let Content::Email(c) = &mut msg.content {
        c.html = None;
        c.unsubscribe_url = None;
    }
    channel.send(&msg).await.unwrap();
    let messages = sink.messages();
    let m = &messages[0];
    assert!(m["login"].is_null());
    assert!(header(m, "List-Unsubscribe").is_empty());
    assert_eq!(m["parts"].as_array().unwrap().len(), 1);
    assert_eq!(m["parts"][0]["content_type"], "text/plain");
}

#[tokio::test]
async fn smtp_wrong_password_is_a_permanent_error() {
    let sink = SmtpSink::start(Some("farol:s3cret"));
    let channel = SmtpChannel::new(&sink.config(Some(("farol", "wrong")))).unwrap();
    let err = channel
        .send(&email("maria@cliente.test", "k1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { code, contact_invalid: false, .. } if code == "smtp_535"),
        "{err:?}"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn smtp_unreachable_server_is_transient_and_bad_address_is_invalid_contact() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        security: SmtpSecurity::Plain,
        username: None,
        password: None,
        from: "noreply@farol.test".into(),
        pool_max_size: 1,
        timeout: Duration::from_secs(5),
        root_certificates_pem: None,
        dangerous_accept_invalid_certs: false,
    };
    let channel = SmtpChannel::new(&config).unwrap();
    assert!(
        channel
            .send(&email("maria@cliente.test", "k1"))
            .await
            .unwrap_err()
            .is_transient()
    );
    let err = channel
        .send(&email("not an address", "k2"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SendError::Permanent {
                contact_invalid: true,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// SendGrid v3 Mail Send.

fn sendgrid_error(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    (
        status,
        Json(json!({ "errors": [{ "message": message, "field": field, "help": null }] })),
    )
        .into_response()
}

async fn fake_sendgrid(
    log: Log,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&log, method, uri, headers.clone(), &body);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer SG.test-key") {
        return sendgrid_error(
            StatusCode::UNAUTHORIZED,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return sendgrid_error(StatusCode::BAD_REQUEST, None, "Bad Request");
    };
    let to = body
        .pointer("/personalizations/0/to/0/email")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let content_ok = body.pointer("/content/0/type") == Some(&json!("text/plain"))
        && body["content"]
            .as_array()
            .is_some_and(|c| c.iter().all(|p| p["value"].is_string()));
    if body.pointer("/from/email").is_none()
        || body["subject"].as_str().is_none_or(str::is_empty)
        || !content_ok
    {
        return sendgrid_error(StatusCode::BAD_REQUEST, Some("content"), "invalid message");
    }
    match to.split('@').next().unwrap_or_default() {
        "invalid" => sendgrid_error(
            StatusCode::BAD_REQUEST,
            Some("personalizations.0.to.0.email"),
            "Does not contain a valid address.",
        ),
        "ratelimit" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "").into_response(),
        "down" => sendgrid_error(StatusCode::SERVICE_UNAVAILABLE, None, "service unavailable"),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::ACCEPTED.into_response()
        }
        _ => (StatusCode::ACCEPTED, [("x-message-id", "SGID123")]).into_response(),
    }
}

async fn sendgrid(key: &str) -> (SendGridChannel, Log) {
    let log: Log = Arc::default();
    let router = Router::new().route(
        "/v3/mail/send",
        post({
            let log = log.clone();
            move |m: Method, u: Uri, h: HeaderMap, b: Bytes| fake_sendgrid(log.clone(), m, u, h, b)
        }),
    );
    let base = serve(router).await;
    let mut config = SendGridConfig::new(key, "noreply@farol.test");
    config.base_url = base;
    config.from_name = Some("Farol".into());
    config.timeout = Duration::from_millis(500);
    (SendGridChannel::new(config), log)
}

#[tokio::test]
async fn sendgrid_posts_the_documented_body_and_returns_the_message_id() {
    let (channel, log) = sendgrid("SG.test-key").await;
    let receipt = channel
        .send(&email("maria@cliente.test", "campaign:1:client:7"))
        .await
        .unwrap();
    assert_eq!(receipt.provider_message_id, "SGID123");
    let req = log.lock().unwrap()[0].clone();
    assert_eq!(req.method, Method::POST);
    let body = req.json();
    assert_eq!(
        body.pointer("/personalizations/0/to/0"),
        Some(&json!({"email": "maria@cliente.test", "name": "Maria Silva"}))
    );
    assert_eq!(
        body["from"],
        json!({"email": "noreply@farol.test", "name": "Farol"})
    );
    assert_eq!(body["content"][1]["type"], "text/html");
    assert_eq!(
        body["headers"]["List-Unsubscribe"],
        "<https://farol.test/u/tok123>"
    );
    assert_eq!(
        body["headers"]["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(body["custom_args"]["campaign_id"], "42");
    assert_eq!(body["custom_args"]["farol_key"], "campaign:1:client:7");
}

#[tokio::test]
async fn sendgrid_maps_errors_to_transient_or_permanent() {
    let (channel, _) = sendgrid("SG.test-key").await;
    let err = channel
        .send(&email("ratelimit@x.test", "k"))
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        channel
            .send(&email("down@x.test", "k"))
            .await
            .unwrap_err()
            .is_transient()
    );
    let slow = channel.send(&email("slow@x.test", "k")).await.unwrap_err();
    assert!(
        matches!(&slow, SendError::Transient { reason, .. } if reason.contains("timeout")),
        "{slow:?}"
    );
    let invalid = channel
        .send(&email("invalid@x.test", "k"))
        .await
        .unwrap_err();
    assert!(
        matches!(&invalid, SendError::Permanent { code, contact_invalid: true, reason } if code == "http_400" && reason.contains("valid address")),
        "{invalid:?}"
    );

    let (bad_key, _) = sendgrid("SG.revoked").await;
    let err = bad_key.send(&email("maria@x.test", "k")).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { code, contact_invalid: false, reason } if code == "http_401" && reason.contains("revoked")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Amazon SES v2 SendEmail.

fn ses_credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: Secret::new("test-secret-key"),
        session_token: None,
    }
}

fn ses_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [("x-amzn-errortype", kind.to_owned())],
        Json(json!({ "message": message })),
    )
        .into_response()
}

async fn fake_ses(log: Log, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    record(&log, method.clone(), uri.clone(), headers.clone(), &body);
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // Recompute the signature over what actually arrived, with the server's own view of the
    // secret: a signature over a different host, path or body would not match.
    let amz_date = h("x-amz-date");
    let Ok(now) = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &amz_date)
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
    else {
        return ses_error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "no date",
        );
    };
    let host = h("host");
    let content_type = h("content-type");
    let expected = sigv4::sign(
        &SigningRequest {
            method: method.as_str(),
            host: &host,
            path: uri.path(),
            query: &[],
            headers: &[("content-type", &content_type)],
            payload: &body,
        },
        &ses_credentials(),
        "sa-east-1",
        "ses",
        now.timestamp(),
    );
    if h("authorization") != expected.authorization {
        return ses_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return ses_error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "invalid JSON",
        );
    };
    let to = body
        .pointer("/Destination/ToAddresses/0")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if body["FromEmailAddress"].as_str().is_none()
        || body.pointer("/Content/Simple/Subject/Data").is_none()
    {
        return ses_error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "missing fields",
        );
    }
    let local = to
        .rsplit('<')
        .next()
        .unwrap_or_default()
        .split('@')
        .next()
        .unwrap_or_default();
    match local {
        t if t.starts_with("throttle") => ses_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            "Maximum sending rate exceeded.",
        ),
        t if t.starts_with("rejected") => ses_error(
            StatusCode::BAD_REQUEST,
            "MessageRejected",
            "Email address is not verified.",
        ),
        t if t.starts_with("down") => ses_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "internal",
        ),
        t if t.starts_with("slow") => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(json!({ "MessageId": "late" })).into_response()
        }
        _ => Json(json!({ "MessageId": "0100018c-ses-id" })).into_response(),
    }
}

async fn ses(secret: &str) -> (SesChannel, Log) {
    let log: Log = Arc::default();
    let router = Router::new().route(
        "/v2/email/outbound-emails",
        post({
            let log = log.clone();
            move |m: Method, u: Uri, h: HeaderMap, b: Bytes| fake_ses(log.clone(), m, u, h, b)
        }),
    );
    let base = serve(router).await;
    let mut credentials = ses_credentials();
    credentials.secret_access_key = Secret::new(secret);
    let channel = SesChannel::new(SesConfig {
        region: "sa-east-1".into(),
        endpoint: Some(base),
        credentials,
        from: "Farol <noreply@farol.test>".into(),
        configuration_set: Some("farol-events".into()),
        timeout: Duration::from_millis(500),
    });
    (channel, log)
}

#[tokio::test]
async fn ses_signs_and_sends_the_v2_body() {
    let (channel, log) = ses("test-secret-key").await;
    let receipt = channel
        .send(&email("maria@cliente.test", "k1"))
        .await
        .unwrap();
    assert_eq!(receipt.provider_message_id, "0100018c-ses-id");
    let req = log.lock().unwrap()[0].clone();
    assert!(
        req.header("authorization")
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    );
    assert!(
        req.header("authorization")
            .contains("/sa-east-1/ses/aws4_request, SignedHeaders=content-type;host;x-amz-date,")
    );
    let body = req.json();
    assert_eq!(
        body["Destination"]["ToAddresses"],
        json!(["\"Maria Silva\" <maria@cliente.test>"])
    );
    assert_eq!(body["ConfigurationSetName"], "farol-events");
    assert_eq!(
        body.pointer("/Content/Simple/Body/Html/Data"),
        Some(&json!("<p>Olá <b>Maria</b>, seu plano Ouro.</p>"))
    );
    let headers = body
        .pointer("/Content/Simple/Headers")
        .unwrap()
        .as_array()
        .unwrap();
    assert!(headers.contains(
        &json!({"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"})
    ));
    assert_eq!(
        body["EmailTags"],
        json!([{"Name": "campaign_id", "Value": "42"}])
    );
}

#[tokio::test]
async fn ses_maps_throttling_rejection_and_signature_errors() {
    let (channel, _) = ses("test-secret-key").await;
    let throttled = channel
        .send(&email("throttle@x.test", "k"))
        .await
        .unwrap_err();
    assert!(throttled.is_transient(), "{throttled:?}");
    assert!(
        channel
            .send(&email("down@x.test", "k"))
            .await
            .unwrap_err()
            .is_transient()
    );
    let slow = channel.send(&email("slow@x.test", "k")).await.unwrap_err();
    assert!(
        matches!(&slow, SendError::Transient { reason, .. } if reason.contains("timeout")),
        "{slow:?}"
    );
    let rejected = channel
        .send(&email("rejected@x.test", "k"))
        .await
        .unwrap_err();
    assert!(
        matches!(&rejected, SendError::Permanent { code, .. } if code == "MessageRejected"),
        "{rejected:?}"
    );

    let (wrong, _) = ses("another-secret").await;
    let err = wrong.send(&email("maria@x.test", "k")).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { code, .. } if code == "SignatureDoesNotMatch"),
        "{err:?}"
    );
}

#[tokio::test]
async fn email_adapters_refuse_other_content() {
    let (channel, log) = sendgrid("SG.test-key").await;
    let sms = OutboundMessage::new(
        Recipient::phone("+5511987654321"),
        Content::Sms { body: "oi".into() },
        "k",
    );
    let err = channel.send(&sms).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { ref code, .. } if code == "unsupported_content"));
    let wrong_recipient = OutboundMessage::new(
        Recipient::phone("+55"),
        Content::Email(EmailContent::default()),
        "k",
    );
    assert!(channel.send(&wrong_recipient).await.is_err());
    assert!(log.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// SES notifications through SNS, with real RSA signatures made by the openssl CLI.

fn openssl_sign(dir: &Path, digest: &str, data: &str) -> String {
    let input = dir.join("to-sign.txt");
    std::fs::write(&input, data).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", digest, "-sign"])
        .arg(dir.join("sns.key"))
        .arg(&input)
        .output()
        .expect("the SNS test needs the openssl CLI");
    assert!(out.status.success(), "openssl dgst failed");
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, out.stdout)
}

#[tokio::test]
async fn sns_signatures_are_verified_against_the_fetched_certificate() {
    use farol_channels::WebhookError;
    use farol_channels::email::ses::{SnsMessage, parse_sns};
    use farol_channels::email::sns::SnsVerifier;

    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sns.amazonaws.com",
        ])
        .arg("-keyout")
        .arg(dir.path().join("sns.key"))
        .arg("-out")
        .arg(dir.path().join("sns.pem"))
        .stderr(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "the SNS test needs the openssl CLI"
    );
    let pem = std::fs::read(dir.path().join("sns.pem")).unwrap();
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let router = Router::new().route(
        "/SimpleNotificationService-test.pem",
        axum::routing::get({
            let fetches = fetches.clone();
            move || async move {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                pem.clone()
            }
        }),
    );
    let base = serve(router).await;
    let cert_url = format!("{base}/SimpleNotificationService-test.pem");

    let ses_event = json!({"notificationType": "Bounce", "mail": {"messageId": "0100-abc"},
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "gone@cliente.test", "status": "5.1.1"}]}});
    let mut envelope = json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:sa-east-1:123456789012:ses-bounces",
        "Message": ses_event.to_string(),
        "Timestamp": "2026-11-22T10:00:00.000Z",
        "SignatureVersion": "1",
        "SigningCertURL": cert_url,
    });
    // AWS's canonical form, written out here independently of the library.
    let canonical = format!(
        "Message\n{}\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nTimestamp\n2026-11-22T10:00:00.000Z\nTopicArn\narn:aws:sns:sa-east-1:123456789012:ses-bounces\nType\nNotification\n",
        ses_event
    );
    envelope["Signature"] = json!(openssl_sign(dir.path(), "-sha1", &canonical));
    let body = envelope.to_string();

    let verifier = SnsVerifier::new(Duration::from_secs(5))
        .dangerous_allow_cert_urls_starting_with(base.clone());
    verifier.verify(body.as_bytes()).await.unwrap();
    let SnsMessage::Notification { events, .. } = parse_sns(
        body.as_bytes(),
        &["arn:aws:sns:sa-east-1:123456789012:ses-bounces".into()],
    )
    .unwrap() else {
        panic!("expected a notification")
    };
    assert!(events[0].contact_invalid());

    // SignatureVersion 2 (SHA256withRSA).
    let mut v2 = envelope.clone();
    v2["SignatureVersion"] = json!("2");
    v2["Signature"] = json!(openssl_sign(dir.path(), "-sha256", &canonical));
    verifier.verify(v2.to_string().as_bytes()).await.unwrap();
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the certificate is cached"
    );

    // A forged bounce (changed message) or a signature of the wrong version is refused.
    let mut forged = envelope.clone();
    forged["Message"] = json!(ses_event.to_string().replace("gone@", "victim@"));
    assert_eq!(
        verifier.verify(forged.to_string().as_bytes()).await,
        Err(WebhookError::BadSignature)
    );
    let mut wrong_version = envelope.clone();
    wrong_version["SignatureVersion"] = json!("2");
    assert_eq!(
        verifier.verify(wrong_version.to_string().as_bytes()).await,
        Err(WebhookError::BadSignature)
    );

    // Without the test prefix, a certificate URL outside Amazon SNS is never fetched.
    let strict = SnsVerifier::new(Duration::from_secs(5));
    assert_eq!(
        strict.verify(body.as_bytes()).await,
        Err(WebhookError::BadSignature)
    );
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
}
