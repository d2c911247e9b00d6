//! E-mail adapters (SMTP, SendGrid, Amazon SES) and their bounce/complaint webhooks.

pub mod dsn;
pub mod sendgrid;
pub mod ses;
pub mod sigv4;
pub mod smtp;
pub mod sns;
pub mod verp;

use sha2::{Digest, Sha256};

/// The `Message-ID` derived from an idempotency key: the same key always yields the same id, so
/// a retried send is recognizable downstream (`<hex@domain>`).
pub fn message_id_for(idempotency_key: &str, domain: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("<{}@{domain}>", hex::encode(&digest[..16]))
}

/// The domain part of an address (`Farol <noreply@farol.test>` → `farol.test`).
pub fn domain_of(address: &str) -> &str {
    let address = address.trim().trim_end_matches('>');
    address.rsplit_once('@').map_or("localhost", |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_stable_per_key() {
        let a = message_id_for("campaign:1:client:2", "farol.test");
        assert_eq!(a, message_id_for("campaign:1:client:2", "farol.test"));
        assert_ne!(a, message_id_for("campaign:1:client:3", "farol.test"));
        assert!(a.starts_with('<') && a.ends_with("@farol.test>") && a.len() == 32 + 13);
        assert_eq!(domain_of("Farol <noreply@farol.test>"), "farol.test");
    }
}
