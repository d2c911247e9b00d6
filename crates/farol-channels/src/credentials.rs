//! Encryption of provider credentials at rest (API keys, tokens, SMTP passwords) with
//! XChaCha20-Poly1305 under a 32-byte key from configuration.
//!
//! Format: `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, where the key id is the first 8
//! hex digits of SHA-256(key), so several keys can coexist during a rotation. The 24-byte nonce
//! is random (safe at this size). A caller-chosen `context` (e.g. `channel:7:sendgrid.api_key`) is
//! bound as associated data: a ciphertext copied into another field or row does not decrypt.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

/// Credential encryption errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The configured key is not base64 of 32 bytes.
    #[error("the credential key must be base64 of exactly 32 bytes")]
    BadKey,
    /// The ciphertext is not in a known format.
    #[error("malformed encrypted credential")]
    Malformed,
    /// No configured key has this key id.
    #[error("encrypted with unknown key {0}")]
    UnknownKey(String),
    /// Authentication failed: wrong key, wrong context, or tampered data.
    #[error("encrypted credential failed authentication")]
    Decrypt,
}

struct KeyEntry {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// Encrypts with the primary key; decrypts with any configured key.
pub struct CredentialCipher {
    primary: KeyEntry,
    previous: Vec<KeyEntry>,
}

impl std::fmt::Debug for CredentialCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCipher")
            .field("primary_key_id", &self.primary.id)
            .field(
                "previous_key_ids",
                &self
                    .previous
                    .iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn entry(key_b64: &str) -> Result<KeyEntry, CryptoError> {
    let bytes = STANDARD
        .decode(key_b64.trim())
        .map_err(|_| CryptoError::BadKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
    let id = hex::encode(&Sha256::digest(bytes)[..4]);
    Ok(KeyEntry {
        id,
        cipher: XChaCha20Poly1305::new(&Key::from(bytes)),
    })
}

impl CredentialCipher {
    /// A cipher from a base64 key (standard alphabet, 32 bytes).
    pub fn new(key_b64: &Secret) -> Result<Self, CryptoError> {
        Ok(Self {
            primary: entry(key_b64.expose())?,
            previous: Vec::new(),
        })
    }

    /// Adds retired keys that can still decrypt (during a rotation).
    pub fn with_previous_keys<'a>(
        mut self,
        keys: impl IntoIterator<Item = &'a Secret>,
    ) -> Result<Self, CryptoError> {
        for key in keys {
            self.previous.push(entry(key.expose())?);
        }
        Ok(self)
    }

    /// A fresh random key, base64, for `farol` setup.
    pub fn generate_key() -> Secret {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Secret::new(STANDARD.encode(key))
    }

    /// The primary key's id (what new ciphertexts carry).
    pub fn key_id(&self) -> &str {
        &self.primary.id
    }

    /// Encrypts `plaintext` bound to `context`.
    pub fn encrypt(&self, plaintext: &Secret, context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = aad(&self.primary.id, context);
        let sealed = self
            .primary
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any credential-sized input");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!(
            "{VERSION}:{}:{}",
            self.primary.id,
            URL_SAFE_NO_PAD.encode(blob)
        )
    }

    /// Decrypts a value produced by [`CredentialCipher::encrypt`] with the same `context`.
    pub fn decrypt(&self, encrypted: &str, context: &str) -> Result<Secret, CryptoError> {
        let mut parts = encrypted.splitn(3, ':');
        let (Some(VERSION), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let key = std::iter::once(&self.primary)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        let aad = aad(key_id, context);
        let plain = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// Whether `encrypted` uses a retired key and should be re-encrypted.
    pub fn needs_rotation(&self, encrypted: &str) -> bool {
        encrypted
            .split(':')
            .nth(1)
            .is_some_and(|id| id != self.primary.id)
    }
}

fn aad(key_id: &str, context: &str) -> Vec<u8> {
    format!("farol-credential:{VERSION}:{key_id}:{context}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(STANDARD.encode([byte; 32]))
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let cipher = CredentialCipher::new(&key(1)).unwrap();
        let secret = Secret::new("SG.very-secret-key");
        let a = cipher.encrypt(&secret, "channel:7:sendgrid");
        let b = cipher.encrypt(&secret, "channel:7:sendgrid");
        assert_ne!(a, b, "random nonces");
        assert!(a.starts_with(&format!("v1:{}:", cipher.key_id())));
        assert!(!a.contains("very-secret"));
        assert_eq!(cipher.decrypt(&a, "channel:7:sendgrid").unwrap(), secret);
    }

    #[test]
    fn wrong_context_key_or_tampering_fail() {
        let cipher = CredentialCipher::new(&key(1)).unwrap();
        let token = cipher.encrypt(&Secret::new("tok"), "channel:7:meta");
        assert_eq!(
            cipher.decrypt(&token, "channel:8:meta"),
            Err(CryptoError::Decrypt)
        );
        let other = CredentialCipher::new(&key(2)).unwrap();
        assert!(matches!(
            other.decrypt(&token, "channel:7:meta"),
            Err(CryptoError::UnknownKey(_))
        ));
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(cipher.decrypt(&tampered, "channel:7:meta").is_err());
        assert_eq!(cipher.decrypt("v2:x:y", "c"), Err(CryptoError::Malformed));
        assert_eq!(cipher.decrypt("plain", "c"), Err(CryptoError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable() {
        let old = CredentialCipher::new(&key(1)).unwrap();
        let token = old.encrypt(&Secret::new("pw"), "smtp");
        let new = CredentialCipher::new(&key(2))
            .unwrap()
            .with_previous_keys([&key(1)])
            .unwrap();
        assert!(new.needs_rotation(&token));
        assert_eq!(new.decrypt(&token, "smtp").unwrap().expose(), "pw");
        let rotated = new.encrypt(&Secret::new("pw"), "smtp");
        assert!(!new.needs_rotation(&rotated));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(CredentialCipher::new(&Secret::new(STANDARD.encode([0u8; 16]))).is_err());
        assert!(CredentialCipher::new(&Secret::new("not base64!")).is_err());
        let generated = CredentialCipher::generate_key();
        assert!(CredentialCipher::new(&generated).is_ok());
        assert!(
            !format!("{:?}", CredentialCipher::new(&generated).unwrap())
                .contains(generated.expose())
        );
    }
}
