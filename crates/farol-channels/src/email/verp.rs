//! VERP return paths for SMTP (variable envelope return path): each message goes out with its
//! own envelope sender, `<local>+<id>-<tag>@<domain>`, so the bounce an MTA sends back days
//! later says by its address alone which message bounced. `<id>` is the message's Message-ID
//! local part (32 hex digits derived from the idempotency key, see
//! [`message_id_for`](crate::email::message_id_for)); `<tag>` is the first 16 hex digits of
//! HMAC-SHA256 under the account's secret, so nobody can forge a bounce for a message by
//! guessing its address (the ids derive from guessable keys).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// Hex digits of the tag (64 bits: guessing is hopeless, and it keeps the local part short).
const TAG_HEX: usize = 16;
/// Hex digits of a Message-ID local part made by [`crate::email::message_id_for`].
const ID_HEX: usize = 32;
/// Longest local part of the configured bounce address: `+<id>-<tag>` takes 50 of the 64
/// characters RFC 5321 allows.
pub const MAX_LOCAL_PART: usize = 64 - (1 + ID_HEX + 1 + TAG_HEX);

/// A per-account VERP return path.
#[derive(Clone)]
pub struct ReturnPath {
    local: String,
    domain: String,
    key: Secret,
}

impl std::fmt::Debug for ReturnPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReturnPath")
            .field("local", &self.local)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ReturnPath {
    /// A return path built on `bounce_address` (`bounces@mail.example.com`), tagged with `key`.
    pub fn new(bounce_address: &str, key: Secret) -> Result<ReturnPath, String> {
        let address = bounce_address.trim();
        let (local, domain) = address
            .rsplit_once('@')
            .ok_or_else(|| format!("{address:?} is not an e-mail address"))?;
        if local.is_empty()
            || local.len() > MAX_LOCAL_PART
            || !local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
            || local.starts_with('.')
            || local.ends_with('.')
        {
            return Err(format!(
                "the part before @ of {address:?} must be 1 to {MAX_LOCAL_PART} letters, digits, '.', '-' or '_' (no '+': Farol appends +<token>)"
            ));
        }
        let domain_ok = domain.len() <= 253
            && domain.split('.').count() >= 2
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(format!("{domain:?} is not a domain name"));
        }
        if key.expose().len() < 16 {
            return Err("the signing secret must have at least 16 characters".into());
        }
        Ok(ReturnPath {
            local: local.to_ascii_lowercase(),
            domain: domain.to_ascii_lowercase(),
            key,
        })
    }

    fn tag(&self, id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(b"farol-verp:");
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())[..TAG_HEX].to_owned()
    }

    /// The envelope sender for the message with this Message-ID (`<hex@domain>` or
    /// `hex@domain`); `None` when the id is not one Farol made.
    pub fn address_for(&self, message_id: &str) -> Option<String> {
        let id = message_id
            .trim()
            .trim_matches(['<', '>'])
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if id.len() != ID_HEX || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(format!(
            "{}+{id}-{}@{}",
            self.local,
            self.tag(&id),
            self.domain
        ))
    }

    /// The Message-ID local part a bounce address carries, when its tag is right. Accepts the
    /// address as MTAs write it (`<…>`, any case, a display name around it).
    pub fn message_id_of(&self, address: &str) -> Option<String> {
        let address = address.trim();
        let address = match (address.rfind('<'), address.rfind('>')) {
            (Some(start), Some(end)) if start < end => &address[start + 1..end],
            _ => address,
        };
        let (local, domain) = address.trim().rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let local = local.to_ascii_lowercase();
        let token = local.strip_prefix(&self.local)?.strip_prefix('+')?;
        let (id, tag) = token.split_once('-')?;
        if id.len() != ID_HEX || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        // Constant-time comparison of the tags.
        let expected = self.tag(id);
        let same = tag.len() == expected.len()
            && tag
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then(|| id.to_owned())
    }

    /// The bounce domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::message_id_for;

    fn rp() -> ReturnPath {
        ReturnPath::new(
            "Bounces@Mail.Farol.test",
            Secret::new("a-long-enough-dsn-secret"),
        )
        .unwrap()
    }

    #[test]
    fn an_address_carries_the_message_id_and_a_tag_only_the_key_makes() {
        let mid = message_id_for("campaign:1:client:2", "farol.test");
        let address = rp().address_for(&mid).unwrap();
        let id = mid.trim_matches(['<', '>']).split('@').next().unwrap();
        assert!(address.starts_with(&format!("bounces+{id}-")), "{address}");
        assert!(address.ends_with("@mail.farol.test"));
        assert!(address.split('@').next().unwrap().len() <= 64);
        assert_eq!(rp().message_id_of(&address).as_deref(), Some(id));
        assert_eq!(
            rp().message_id_of(&format!("<{}>", address.to_uppercase()))
                .as_deref(),
            Some(id)
        );
        assert_eq!(
            rp().message_id_of(&format!("Bounce handler <{address}>"))
                .as_deref(),
            Some(id)
        );

        let other_key = ReturnPath::new(
            "bounces@mail.farol.test",
            Secret::new("another-secret-entirely"),
        )
        .unwrap();
        assert_eq!(other_key.message_id_of(&address), None);
        let other_id = message_id_for("campaign:1:client:3", "farol.test");
        let other_id = other_id.trim_matches(['<', '>']).split('@').next().unwrap();
        let tag = address.split('-').nth(1).unwrap();
        let forged = format!("bounces+{other_id}-{tag}");
        assert_eq!(rp().message_id_of(&forged), None, "a tag is per message");
        assert_eq!(
            rp().message_id_of(&address.replace("mail.farol.test", "evil.test")),
            None
        );
        assert_eq!(rp().message_id_of("bounces@mail.farol.test"), None);
        assert_eq!(rp().address_for("<not-ours@x.test>"), None);
    }

    #[test]
    fn the_bounce_address_is_checked() {
        let key = || Secret::new("a-long-enough-dsn-secret");
        assert!(ReturnPath::new("bounces+x@mail.test", key()).is_err());
        assert!(ReturnPath::new("bounces", key()).is_err());
        assert!(ReturnPath::new("bounces@localhost", key()).is_err());
        assert!(ReturnPath::new(&format!("{}@mail.test", "b".repeat(15)), key()).is_err());
        assert!(ReturnPath::new(&format!("{}@mail.test", "b".repeat(14)), key()).is_ok());
        assert!(ReturnPath::new("bounces@mail.test", Secret::new("short")).is_err());
    }
}
