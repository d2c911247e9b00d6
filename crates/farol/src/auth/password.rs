//! Password hashing with Argon2id (PHC strings: the parameters travel with each hash, so
//! raising the cost later keeps old hashes verifiable).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Minimum accepted password length.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Argon2 cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
}

/// Hashes `password`. CPU-heavy: call from a blocking thread.
pub fn hash(password: &str, cost: HashCost) -> anyhow::Result<String> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string())
}

/// A hash of a random password with the configured cost, verified in place of a real one when
/// a login names an unknown e-mail. CPU-heavy: call from a blocking thread.
pub fn decoy(cost: HashCost) -> anyhow::Result<String> {
    hash(&uuid::Uuid::new_v4().to_string(), cost)
}

/// Checks `password` against a stored hash. CPU-heavy: call from a blocking thread.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Explains why a new password is refused, if it is.
pub fn weakness(password: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Some(format!(
            "password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > 1024 {
        return Some("password must have at most 1024 bytes".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };

    #[test]
    fn verifies_the_right_password_only() {
        let h = hash("correct horse battery", CHEAP).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert!(!verify("correct horse battery", "not a hash"));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(
            hash("same password!", CHEAP).unwrap(),
            hash("same password!", CHEAP).unwrap()
        );
    }

    #[test]
    fn the_decoy_is_a_real_hash_with_the_configured_cost() {
        let decoy = decoy(CHEAP).unwrap();
        let parsed = PasswordHash::new(&decoy).unwrap();
        assert_eq!(parsed.params.get_str("m"), Some("64"));
        assert!(!verify("anything", &decoy));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(weakness("short").is_some());
        assert!(weakness("long enough pass").is_none());
    }
}
