//! Password hashing: argon2id at the OWASP minimum (m=19 MiB, t=2, p=1) for everything new;
//! the legacy bcrypt hashes of POC-2 (`$2a$`/`$2b$`) are still accepted, and replaced by argon2id
//! on the first successful login. Every function here is CPU-heavy: call it off the async runtime.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match { needs_rehash: bool },
    Mismatch,
}

#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    /// A real hash of a random password, checked when no user matches so that an unknown email
    /// costs the same time as a wrong password.
    dummy: String,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    pub fn new() -> Self {
        let params =
            Params::new(M_COST_KIB, T_COST, P_COST, None).expect("OWASP parameters are valid");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = argon
            .hash_password(uuid::Uuid::new_v4().as_bytes())
            .expect("hashing a fixed-size input succeeds")
            .to_string();
        Self { argon, dummy }
    }

    pub fn hash(&self, password: &str) -> String {
        self.argon
            .hash_password(password.as_bytes())
            .expect("argon2 hashing with valid params succeeds")
            .to_string()
    }

    pub fn verify(&self, password: &str, stored: &str) -> Verdict {
        if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
            return match bcrypt::verify(password, stored) {
                Ok(true) => Verdict::Match { needs_rehash: true },
                _ => Verdict::Mismatch,
            };
        }
        let Ok(parsed) = PasswordHash::new(stored) else {
            tracing::warn!("a stored password hash has an unknown format");
            return Verdict::Mismatch;
        };
        if self
            .argon
            .verify_password(password.as_bytes(), &parsed)
            .is_err()
        {
            return Verdict::Mismatch;
        }
        Verdict::Match {
            needs_rehash: below_policy(&parsed),
        }
    }

    /// Spends the time of one verification without a user, to hide whether an email exists.
    pub fn verify_nobody(&self, password: &str) {
        let _ = self.verify(password, &self.dummy);
    }
}

fn below_policy(hash: &PasswordHash) -> bool {
    if hash.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(hash) {
        Ok(p) => p.m_cost() < M_COST_KIB || p.t_cost() < T_COST,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_are_argon2id_at_the_owasp_minimum() {
        let p = Passwords::new();
        let h = p.hash("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(
            p.verify("correct horse", &h),
            Verdict::Match {
                needs_rehash: false
            }
        );
        assert_eq!(p.verify("wrong horse", &h), Verdict::Mismatch);
    }

    /// `mfe migrate rollback` locks a user the services deleted but legacy keeps by prefixing
    /// its hash with `!`: no password opens it, whatever the hash behind.
    #[test]
    fn a_locked_hash_matches_no_password() {
        let p = Passwords::new();
        let argon = p.hash("right");
        let bcrypt = bcrypt::hash("right", 4).unwrap();
        for locked in [format!("!{argon}"), format!("!{bcrypt}")] {
            assert_eq!(p.verify("right", &locked), Verdict::Mismatch, "{locked}");
        }
    }

    #[test]
    fn legacy_bcrypt_hashes_verify_and_ask_for_a_rehash() {
        let p = Passwords::new();
        let legacy = bcrypt::hash("legacy-pass", 10).unwrap();
        assert!(legacy.starts_with("$2b$10$"));
        assert_eq!(
            p.verify("legacy-pass", &legacy),
            Verdict::Match { needs_rehash: true }
        );
        assert_eq!(p.verify("nope", &legacy), Verdict::Mismatch);
        let a_variant = legacy.replacen("$2b$", "$2a$", 1);
        assert_eq!(
            p.verify("legacy-pass", &a_variant),
            Verdict::Match { needs_rehash: true }
        );
    }

    #[test]
    fn weaker_argon2_parameters_ask_for_a_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-123456")
        .unwrap()
        .to_string();
        assert_eq!(
            Passwords::new().verify("pw-123456", &weak),
            Verdict::Match { needs_rehash: true }
        );
    }

    #[test]
    fn an_unknown_user_costs_one_verification_at_the_same_parameters() {
        // The timing of "no such email" equals that of "wrong password" because the dummy hash
        // that is checked instead is made with the very parameters real hashes use.
        let p = Passwords::new();
        let real = p.hash("x");
        let params = |h: &str| h.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(&p.dummy), params(&real));
    }

    #[test]
    fn garbage_never_matches() {
        assert_eq!(
            Passwords::new().verify("x", "not a hash"),
            Verdict::Mismatch
        );
    }
}
