//! The Ed25519 key that signs access tokens, its public JWKS, and token verification.
//!
//! The key comes from the environment (PEM) or is generated once and kept in the data directory,
//! so tokens stay valid across restarts. Verification pins EdDSA and checks `iss`, `aud`, `exp`.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use contracts::auth::AccessClaims;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use platform::config::ExposeSecret;
use platform::verified::VerifiedTokens;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::settings::KeySource;

const KEY_FILE: &str = "jwt-ed25519.pem";
/// Access tokens whose verification is remembered (a few hundred bytes each).
const VERIFIED_TOKENS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the JWT signing key is not a PKCS#8 PEM Ed25519 private key")]
    BadKey,
    #[error("cannot keep the JWT signing key in {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The signing key and what is derived from it.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: Jwks,
    validation: Validation,
    verified: VerifiedTokens<AccessClaims>,
}

/// `GET /.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// An OKP (Ed25519) public key as RFC 8037 writes it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl Keys {
    pub fn load(source: &KeySource, issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let der = match source {
            KeySource::Pem(pem) => pem_to_der(pem.expose_secret()).ok_or(KeyError::BadKey)?,
            KeySource::DataDir(dir) => load_or_generate(dir)?,
        };
        Self::from_pkcs8(&der, issuer, audience)
    }

    fn from_pkcs8(der: &[u8], issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| KeyError::BadKey)?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        // RFC 7638 thumbprint: members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        let decoding = DecodingKey::from_ed_components(&x).map_err(|_| KeyError::BadKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let jwk = Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x,
            kid: kid.clone(),
            alg: "EdDSA",
            use_: "sig",
        };
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der),
            decoding,
            kid,
            jwks: Jwks { keys: vec![jwk] },
            validation,
            verified: VerifiedTokens::new(VERIFIED_TOKENS),
        })
    }

    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// The claims of a valid token: our key, EdDSA only, our issuer and audience, not expired.
    /// A token verified before answers from memory until it expires (the key never changes while
    /// the process runs).
    pub fn verify(&self, token: &str) -> Result<AccessClaims, jsonwebtoken::errors::Error> {
        if let Some(claims) = self.verified.get(token) {
            return Ok(claims);
        }
        let claims =
            jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)?.claims;
        let valid_until = claims.exp.saturating_add(self.validation.leeway as i64);
        self.verified.insert(token, claims.clone(), valid_until);
        Ok(claims)
    }
}

/// A new PKCS#8 PEM Ed25519 private key, e.g. for `AUTH_JWT_PRIVATE_KEY`.
pub fn generate_pem() -> Result<String, KeyError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::BadKey)?;
    Ok(der_to_pem(doc.as_ref()))
}

fn load_or_generate(dir: &Path) -> Result<Vec<u8>, KeyError> {
    let path = dir.join(KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Ok(pem) = std::fs::read_to_string(&path) {
        return pem_to_der(&pem).ok_or(KeyError::BadKey);
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let pem = generate_pem()?;
    // Write aside, then link into place: two instances starting together keep one key.
    let tmp = dir.join(format!(".{KEY_FILE}.{}", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new JWT signing key");
            pem_to_der(&pem).ok_or(KeyError::BadKey)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let pem = std::fs::read_to_string(&path).map_err(io)?;
            pem_to_der(&pem).ok_or(KeyError::BadKey)
        }
        Err(e) => Err(io(e)),
    }
}

fn der_to_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PRIVATE KEY-----")
        .collect();
    STANDARD.decode(body).ok().filter(|der| !der.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            sub: "u1".into(),
            email: Some("a@b.co".into()),
            role: "CUSTOMER".into(),
            iss: "iss".into(),
            aud: "aud".into(),
            exp,
            iat: 0,
            jti: "j".into(),
        }
    }

    #[test]
    fn a_generated_key_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("mfe-keys-{}", uuid::Uuid::new_v4()));
        let first = Keys::load(&KeySource::DataDir(dir.clone()), "iss", "aud").unwrap();
        let second = Keys::load(&KeySource::DataDir(dir.clone()), "iss", "aud").unwrap();
        assert_eq!(first.kid(), second.kid());
        let token = first
            .sign(&claims(chrono::Utc::now().timestamp() + 60))
            .unwrap();
        assert_eq!(second.verify(&token).unwrap().sub, "u1");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn verification_checks_issuer_audience_expiry_and_key() {
        let pem = generate_pem().unwrap();
        let keys = Keys::load(&KeySource::Pem(pem.clone().into()), "iss", "aud").unwrap();
        let future = chrono::Utc::now().timestamp() + 60;
        assert!(keys.verify(&keys.sign(&claims(future)).unwrap()).is_ok());
        assert!(
            keys.verify(
                &keys
                    .sign(&claims(chrono::Utc::now().timestamp() - 120))
                    .unwrap()
            )
            .is_err()
        );
        let other_aud = Keys::load(&KeySource::Pem(pem.clone().into()), "iss", "other").unwrap();
        assert!(
            other_aud
                .verify(&keys.sign(&claims(future)).unwrap())
                .is_err()
        );
        let other_iss = Keys::load(&KeySource::Pem(pem.into()), "other", "aud").unwrap();
        assert!(
            other_iss
                .verify(&keys.sign(&claims(future)).unwrap())
                .is_err()
        );
        let stranger = Keys::load(
            &KeySource::Pem(generate_pem().unwrap().into()),
            "iss",
            "aud",
        )
        .unwrap();
        assert!(
            stranger
                .verify(&keys.sign(&claims(future)).unwrap())
                .is_err()
        );
    }

    #[test]
    fn an_unsigned_or_hmac_token_is_refused() {
        let keys = Keys::load(
            &KeySource::Pem(generate_pem().unwrap().into()),
            "iss",
            "aud",
        )
        .unwrap();
        let c = claims(chrono::Utc::now().timestamp() + 60);
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(keys.verify(&hs).is_err());
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert!(keys.verify(&none).is_err());
    }

    #[test]
    fn a_remembered_token_does_not_vouch_for_a_changed_one() {
        let keys = Keys::load(
            &KeySource::Pem(generate_pem().unwrap().into()),
            "iss",
            "aud",
        )
        .unwrap();
        let token = keys
            .sign(&claims(chrono::Utc::now().timestamp() + 60))
            .unwrap();
        assert!(keys.verify(&token).is_ok());
        assert_eq!(keys.verified.len(), 1);
        // Same claims, another signature byte; same signature, other claims; a truncation.
        let (head, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &signature[1..]);
        assert!(keys.verify(&tampered).is_err());
        let mut other = claims(chrono::Utc::now().timestamp() + 60);
        other.role = "ADMIN".into();
        let other_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        let (header, _) = head.split_once('.').unwrap();
        assert!(
            keys.verify(&format!("{header}.{other_body}.{signature}"))
                .is_err()
        );
        assert!(keys.verify(&token[..token.len() - 1]).is_err());
        assert_eq!(keys.verify(&token).unwrap().role, "CUSTOMER");
    }

    #[test]
    fn a_remembered_token_ends_with_its_validity() {
        let keys = Keys::load(
            &KeySource::Pem(generate_pem().unwrap().into()),
            "iss",
            "aud",
        )
        .unwrap();
        // Expired a minute ago: refused (past the 30 s leeway), and nothing is remembered.
        let expired = keys
            .sign(&claims(chrono::Utc::now().timestamp() - 60))
            .unwrap();
        assert!(keys.verify(&expired).is_err());
        assert!(keys.verify(&expired).is_err());
        assert!(keys.verified.is_empty());
        // Inside the leeway: accepted, and remembered only until exp + leeway.
        let exp = chrono::Utc::now().timestamp() - 10;
        let late = keys.sign(&claims(exp)).unwrap();
        assert!(keys.verify(&late).is_ok());
        assert_eq!(keys.verified.len(), 1);
    }

    #[test]
    fn a_bad_pem_is_a_clear_error() {
        assert!(matches!(
            Keys::load(&KeySource::Pem("nope".to_string().into()), "i", "a"),
            Err(KeyError::BadKey)
        ));
    }
}
