//! Test keys and tokens signed the way auth signs them, and a fake auth serving them.

use std::time::Duration;

use auth_client::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::auth::AccessClaims;
use contracts::users::{Role, User};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// An Ed25519 signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    x: String,
    encoding: EncodingKey,
}

impl TestKey {
    pub fn new(kid: &str) -> Self {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
        Self {
            kid: kid.to_string(),
            x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            encoding: EncodingKey::from_ed_der(der.as_ref()),
        }
    }

    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA", "use": "sig"})
    }

    pub fn sign(&self, claims: &AccessClaims) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signed with this key but naming `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a user token as auth issues them, valid for 15 minutes.
pub fn user_claims(sub: &str, role: &str) -> AccessClaims {
    AccessClaims {
        sub: sub.to_string(),
        email: Some(format!("{sub}@example.com")),
        role: role.to_string(),
        iss: DEFAULT_ISSUER.to_string(),
        aud: DEFAULT_AUDIENCE.to_string(),
        exp: now() + 900,
        iat: now(),
        jti: format!("jti-{sub}"),
    }
}

/// Serves `keys` as auth's JWKS; the server checks on drop that it was fetched `times` times.
pub async fn serve_jwks(server: &MockServer, keys: &[&TestKey], times: u64) {
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(keys)))
        .expect(times)
        .mount(server)
        .await;
}

/// Serves `keys` once, then lets later mocks answer.
pub async fn serve_jwks_once(server: &MockServer, keys: &[&TestKey]) {
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks(keys)))
        .up_to_n_times(1)
        .expect(1)
        .mount(server)
        .await;
}

pub async fn jwks_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == JWKS_PATH)
        .count()
}

/// A base URL nothing listens on.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

pub fn user(id: &str) -> User {
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap();
    User {
        id: id.to_string(),
        email: format!("{id}@example.com"),
        name: format!("User {id}"),
        role: Role::Customer,
        email_verified: true,
        created_at: at,
        updated_at: at,
    }
}

pub fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

pub const SHORT: Duration = Duration::from_millis(200);
