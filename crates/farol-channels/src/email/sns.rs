//! Verification of Amazon SNS message signatures (how SES bounce/complaint notifications
//! arrive), following AWS's documented procedure: the signing certificate URL must be an
//! `https://sns.<region>.amazonaws.com/….pem` URL (so TLS authenticates where the certificate
//! comes from), the certificate is fetched (and cached), and the RSA signature
//! (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) is checked over the canonical string built
//! from the message fields.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm, alg_id,
};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::events::WebhookError;
use crate::http;

/// SHA1withRSA for SignatureVersion 1, which SNS still uses by default. webpki rightly leaves
/// SHA-1 out of its certificate algorithms; here it only checks SNS's message signature.
#[derive(Debug)]
struct RsaPkcs1Sha1;

impl SignatureVerificationAlgorithm for RsaPkcs1Sha1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        // Not used for message signatures; the closest registered identifier.
        alg_id::RSA_PKCS1_SHA256
    }
}

/// Whether `url` is an SNS signing-certificate URL: `https`, host `sns.<region>.amazonaws.com`
/// (or `.amazonaws.com.cn`), path ending in `.pem`.
pub fn is_amazon_cert_url(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = parsed.host_str().unwrap_or_default();
    let region = host.strip_prefix("sns.").and_then(|h| {
        h.strip_suffix(".amazonaws.com")
            .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
    });
    parsed.scheme() == "https"
        && parsed.port().is_none()
        && region.is_some_and(|r| {
            r.len() >= 3 && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && parsed.path().ends_with(".pem")
        && parsed.query().is_none()
}

/// One host SNS signing certificates may be fetched from (configuration
/// `channels.sns_cert_hosts`).
///
/// - `sns.*.amazonaws.com`: a host name pattern where `*` is exactly one DNS label (letters,
///   digits, `-`); the certificate URL must be `https` on the default port. This is how Amazon
///   SNS is trusted in every region: TLS then authenticates who serves the certificate.
/// - `http://127.0.0.1:9911` (or `localhost`, `[::1]`): a loopback server, fetched without TLS.
///   Nothing off this machine can answer there, so it is only ever a local SNS emulator or a
///   test's certificate server. `http://` is refused for any other host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertHost {
    /// An https host pattern.
    Https(Vec<String>),
    /// A loopback server over plain HTTP.
    LoopbackHttp {
        /// `127.0.0.1`, `localhost` or `[::1]`.
        host: String,
        /// The port (`None`: 80).
        port: Option<u16>,
    },
}

impl CertHost {
    /// Parses one configured entry, with an error saying what is wrong.
    pub fn parse(entry: &str) -> Result<CertHost, String> {
        let entry = entry.trim();
        if let Some(rest) = entry.strip_prefix("http://") {
            let url =
                reqwest::Url::parse(entry).map_err(|e| format!("{entry:?} is not a URL: {e}"))?;
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            if !["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str()) {
                return Err(format!(
                    "{entry:?}: http:// is only allowed for a loopback host (127.0.0.1, localhost, [::1]); give other hosts as a name such as sns.*.amazonaws.com (fetched over https)"
                ));
            }
            if !rest.trim_end_matches('/').contains(['/', '?', '#']) {
                return Ok(CertHost::LoopbackHttp {
                    host,
                    port: url.port(),
                });
            }
            return Err(format!(
                "{entry:?}: give only the scheme, host and port (http://127.0.0.1:9911)"
            ));
        }
        if entry.contains("://") || entry.contains(['/', ':', '@', '?', '#']) {
            return Err(format!(
                "{entry:?}: give a host name such as sns.*.amazonaws.com (https is implied), or http://127.0.0.1:<port> for a local emulator"
            ));
        }
        let labels: Vec<String> = entry.split('.').map(str::to_ascii_lowercase).collect();
        let label_ok = |l: &String| {
            l == "*"
                || (!l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(format!(
                "{entry:?} is not a host name pattern (labels of letters, digits and -, * for one label)"
            ));
        }
        if labels.iter().filter(|l| *l != "*").count() < 2 {
            return Err(format!(
                "{entry:?} is too broad: name at least two fixed labels (sns.*.amazonaws.com)"
            ));
        }
        Ok(CertHost::Https(labels))
    }

    /// Whether a certificate may be fetched from `url` (already parsed; `.pem` path, no query
    /// checked by the caller).
    fn allows(&self, url: &reqwest::Url) -> bool {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        match self {
            CertHost::Https(pattern) => {
                let labels: Vec<&str> = host.split('.').collect();
                url.scheme() == "https"
                    && url.port().is_none()
                    && labels.len() == pattern.len()
                    && pattern.iter().zip(&labels).all(|(p, l)| {
                        if p == "*" {
                            !l.is_empty()
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        } else {
                            p == l
                        }
                    })
            }
            CertHost::LoopbackHttp { host: h, port } => {
                url.scheme() == "http" && &host == h && url.port() == *port
            }
        }
    }
}

/// The canonical string SNS signs for a message (fields in AWS's documented order).
pub fn string_to_sign(message: &Value) -> Result<String, WebhookError> {
    let kind = message["Type"]
        .as_str()
        .ok_or_else(|| WebhookError::Malformed("no Type".into()))?;
    let fields: &[&str] = match kind {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        other => {
            return Err(WebhookError::Malformed(format!(
                "unknown SNS message type {other}"
            )));
        }
    };
    let mut out = String::new();
    for field in fields {
        match message.get(*field).and_then(Value::as_str) {
            Some(value) => {
                out.push_str(field);
                out.push('\n');
                out.push_str(value);
                out.push('\n');
            }
            // Subject is optional; every other field is required.
            None if *field == "Subject" => {}
            None => return Err(WebhookError::Malformed(format!("no {field}"))),
        }
    }
    Ok(out)
}

static AMAZON: std::sync::OnceLock<Vec<CertHost>> = std::sync::OnceLock::new();

/// Checks SNS message signatures, caching signing certificates by URL.
#[derive(Debug)]
pub struct SnsVerifier {
    client: reqwest::Client,
    certificates: RwLock<HashMap<String, Vec<u8>>>,
    extra_cert_url_prefix: Option<String>,
    cert_hosts: Option<Vec<CertHost>>,
}

impl Default for SnsVerifier {
    fn default() -> Self {
        Self::new(http::DEFAULT_TIMEOUT)
    }
}

impl SnsVerifier {
    /// A verifier that only fetches certificates from Amazon SNS URLs.
    pub fn new(timeout: Duration) -> Self {
        Self {
            client: http::client(timeout),
            certificates: RwLock::new(HashMap::new()),
            extra_cert_url_prefix: None,
            cert_hosts: None,
        }
    }

    /// Fetches certificates only from these hosts instead of Amazon SNS's (see [`CertHost`];
    /// give Amazon's patterns too to keep them).
    pub fn with_cert_hosts(mut self, hosts: Vec<CertHost>) -> Self {
        self.cert_hosts = Some(hosts);
        self
    }

    /// Also accepts certificate URLs starting with `prefix` (a local SNS emulator, tests). Never
    /// point this at anything an attacker can serve files from.
    pub fn dangerous_allow_cert_urls_starting_with(mut self, prefix: impl Into<String>) -> Self {
        self.extra_cert_url_prefix = Some(prefix.into());
        self
    }

    /// Whether `url` (any path) is on a trusted SNS host: where a subscription's `SubscribeURL`
    /// may be confirmed. The same hosts as for certificates (Amazon SNS's unless configured).
    pub fn trusts_host(&self, url: &str) -> bool {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return false;
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return false;
        }
        match &self.cert_hosts {
            Some(hosts) => hosts.iter().any(|h| h.allows(&parsed)),
            None => AMAZON
                .get_or_init(|| {
                    vec![
                        CertHost::parse("sns.*.amazonaws.com").expect("valid pattern"),
                        CertHost::parse("sns.*.amazonaws.com.cn").expect("valid pattern"),
                    ]
                })
                .iter()
                .any(|h| h.allows(&parsed)),
        }
    }

    fn url_allowed(&self, url: &str) -> bool {
        let by_host = match &self.cert_hosts {
            None => is_amazon_cert_url(url),
            Some(hosts) => reqwest::Url::parse(url).is_ok_and(|parsed| {
                parsed.path().ends_with(".pem")
                    && parsed.query().is_none()
                    && parsed.username().is_empty()
                    && hosts.iter().any(|h| h.allows(&parsed))
            }),
        };
        by_host
            || self
                .extra_cert_url_prefix
                .as_deref()
                .is_some_and(|p| url.starts_with(p))
    }

    async fn certificate(&self, url: &str) -> Result<Vec<u8>, WebhookError> {
        if let Some(der) = self.certificates.read().await.get(url) {
            return Ok(der.clone());
        }
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| WebhookError::BadKey(format!("fetching {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(WebhookError::BadKey(format!(
                "fetching {url}: HTTP {}",
                response.status()
            )));
        }
        let pem = response
            .bytes()
            .await
            .map_err(|e| WebhookError::BadKey(e.to_string()))?;
        let der = CertificateDer::from_pem_slice(&pem)
            .map_err(|e| WebhookError::BadKey(format!("certificate at {url}: {e}")))?;
        let der = der.as_ref().to_vec();
        let mut cache = self.certificates.write().await;
        // SNS rotates certificates rarely; a small cache bounded crudely is enough.
        if cache.len() >= 16 {
            cache.clear();
        }
        cache.insert(url.to_owned(), der.clone());
        Ok(der)
    }

    /// Verifies the signature of an SNS POST body. Call before [`crate::email::ses::parse_sns`].
    pub async fn verify(&self, raw_body: &[u8]) -> Result<(), WebhookError> {
        let message: Value =
            serde_json::from_slice(raw_body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let cert_url = message["SigningCertURL"]
            .as_str()
            .ok_or(WebhookError::BadSignature)?;
        if !self.url_allowed(cert_url) {
            return Err(WebhookError::BadSignature);
        }
        let signature = message["Signature"]
            .as_str()
            .ok_or(WebhookError::BadSignature)?;
        let signature = B64
            .decode(signature)
            .map_err(|_| WebhookError::BadSignature)?;
        let canonical = string_to_sign(&message)?;
        let der = self.certificate(cert_url).await?;
        let der = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| WebhookError::BadKey(format!("certificate: {e}")))?;
        let algorithm: &dyn SignatureVerificationAlgorithm =
            match message["SignatureVersion"].as_str() {
                Some("1") => &RsaPkcs1Sha1,
                Some("2") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                _ => return Err(WebhookError::BadSignature),
            };
        cert.verify_signature(algorithm, canonical.as_bytes(), &signature)
            .map_err(|_| WebhookError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_amazon_https_pem_urls_are_trusted() {
        assert!(is_amazon_cert_url(
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"
        ));
        assert!(is_amazon_cert_url(
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem"
        ));
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.test/x.pem",
            "https://evil.test/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "not a url",
        ] {
            assert!(!is_amazon_cert_url(bad), "{bad}");
        }
    }

    #[test]
    fn configured_cert_hosts_allow_only_what_they_name() {
        let verifier = SnsVerifier::default().with_cert_hosts(vec![
            CertHost::parse("sns.*.amazonaws.com").unwrap(),
            CertHost::parse("http://127.0.0.1:9911").unwrap(),
        ]);
        for ok in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://SNS.sa-east-1.amazonaws.com/x.pem",
            "http://127.0.0.1:9911/cert.pem",
        ] {
            assert!(verifier.url_allowed(ok), "{ok}");
        }
        assert!(verifier.trusts_host("http://127.0.0.1:9911/?Action=ConfirmSubscription"));
        assert!(!verifier.trusts_host("http://127.0.0.1:9912/?Action=ConfirmSubscription"));
        let amazon = SnsVerifier::default();
        assert!(amazon.trusts_host(
            "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x"
        ));
        assert!(!amazon.trusts_host("https://evil.test/?Action=ConfirmSubscription"));
        assert!(!amazon.trusts_host("https://u:p@sns.us-west-2.amazonaws.com/"));
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.test/x.pem",
            "https://sns.a.b.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem?a=1",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "http://127.0.0.1:9912/cert.pem",
            "https://127.0.0.1:9911/cert.pem",
            "http://127.0.0.2:9911/cert.pem",
        ] {
            assert!(!verifier.url_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn cert_host_entries_are_checked() {
        assert_eq!(
            CertHost::parse("http://localhost:8080").unwrap(),
            CertHost::LoopbackHttp {
                host: "localhost".into(),
                port: Some(8080)
            }
        );
        for bad in [
            "http://sns.us-east-1.amazonaws.com",
            "http://10.0.0.1:80",
            "https://sns.us-east-1.amazonaws.com",
            "*.com",
            "*",
            "sns.*.amazonaws.com/path",
            "sns.us_east.amazonaws.com",
            "http://127.0.0.1:9911/path",
        ] {
            assert!(CertHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_string_follows_the_documented_field_order() {
        let notification = json!({"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:t", "Message": "hello",
                                  "Timestamp": "2026-11-22T10:00:00.000Z", "Signature": "x"});
        assert_eq!(
            string_to_sign(&notification).unwrap(),
            "Message\nhello\nMessageId\nm1\nTimestamp\n2026-11-22T10:00:00.000Z\nTopicArn\narn:t\nType\nNotification\n"
        );
        let mut with_subject = notification.clone();
        with_subject["Subject"] = json!("s");
        assert!(
            string_to_sign(&with_subject)
                .unwrap()
                .contains("MessageId\nm1\nSubject\ns\nTimestamp")
        );
        let confirmation = json!({"Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "t", "Message": "m",
                                  "Timestamp": "ts", "Token": "tok", "SubscribeURL": "https://x"});
        assert!(
            string_to_sign(&confirmation)
                .unwrap()
                .starts_with("Message\nm\nMessageId\nm\nSubscribeURL\nhttps://x\nTimestamp")
        );
        assert!(
            string_to_sign(&json!({"Type": "SubscriptionConfirmation", "Message": "m"})).is_err()
        );
    }
}
