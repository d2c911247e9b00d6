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

/// Checks SNS message signatures, caching signing certificates by URL.
#[derive(Debug)]
pub struct SnsVerifier {
    client: reqwest::Client,
    certificates: RwLock<HashMap<String, Vec<u8>>>,
    extra_cert_url_prefix: Option<String>,
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
        }
    }

    /// Also accepts certificate URLs starting with `prefix` (a local SNS emulator, tests). Never
    /// point this at anything an attacker can serve files from.
    pub fn dangerous_allow_cert_urls_starting_with(mut self, prefix: impl Into<String>) -> Self {
        self.extra_cert_url_prefix = Some(prefix.into());
        self
    }

    fn url_allowed(&self, url: &str) -> bool {
        is_amazon_cert_url(url)
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
