//! Opaque refresh tokens: 256 random bits, handed to the client once and stored only as a hash.
//!
//! Stored hashes carry a `sha256:` prefix. Legacy rows (POC-2) hold raw tokens, which never start
//! with it; the prefix keeps a leaked hash from being presented as if it were a raw legacy token.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub const HASH_PREFIX: &str = "sha256:";

/// A new refresh token (43 URL-safe characters).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system RNG is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored in `refresh_tokens.token` for `token`.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
    out.push_str(HASH_PREFIX);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed_with_a_prefix() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(hash(&a).starts_with(HASH_PREFIX));
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a));
    }
}
