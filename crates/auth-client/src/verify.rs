//! Local verification of the platform's access tokens with the public keys auth publishes.
//!
//! Auth signs access tokens with Ed25519 and names the key in the header's `kid`; its public keys
//! are at `GET {auth}/.well-known/jwks.json`. The keys are cached here by `kid`:
//!
//! - fetched lazily, on the first token to verify, so that a service starts (and reports itself
//!   alive) while auth is down;
//! - refreshed after a TTL, so that a key auth has retired stops being trusted;
//! - refetched when a token names a `kid` the cache does not hold, which is how a key rotation
//!   reaches a running service, but at most once per interval, so that tokens with made-up kids
//!   cannot turn every request into a request to auth.
//!
//! When a refresh fails the keys already held stay in use: an auth outage must not sign everybody
//! out. Without any key, verification fails with [`VerifyError::KeysUnavailable`] (a 503), never as
//! an invalid token (a 401 would make clients throw their valid tokens away).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use contracts::auth::AccessClaims;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use platform::verified::VerifiedTokens;
use reqwest::Url;
use serde::Deserialize;

use crate::{BuildError, base_url, endpoint, error_chain, http_client};

pub use contracts::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};

const DEFAULT_KEY_TTL: Duration = Duration::from_secs(5 * 60);
const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `exp`, as auth itself does.
const LEEWAY_SECS: u64 = 30;

/// The key set's download, as its client span is named.
const JWKS: &str = "GET /.well-known/jwks.json";
/// Access tokens whose verification is remembered (a few hundred bytes each).
const VERIFIED_TOKENS: usize = 10_000;

/// Why a token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    #[error("not a JWT")]
    Malformed,
    #[error("not signed with EdDSA")]
    Algorithm,
    #[error("signed with a key auth does not publish")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("missing or malformed claims")]
    Claims,
}

/// Why [`Verifier::verify`] refused a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The token is not a valid access token of this platform (401).
    #[error("invalid access token: {0}")]
    Invalid(InvalidToken),
    /// Auth's keys could not be fetched, so the token can be neither accepted nor refused (503).
    #[error("cannot get the token signing keys from auth: {0}")]
    KeysUnavailable(String),
}

/// Verifies access tokens with auth's published keys. Build one per service and share it
/// (`Arc<Verifier>` in the router state).
pub struct Verifier {
    jwks_url: Url,
    http: reqwest::Client,
    validation: Validation,
    key_ttl: Duration,
    refetch_interval: Duration,
    retry_interval: Duration,
    keys: RwLock<KeyCache>,
    /// Tokens verified already, with the key that verified each: a token answers from here only
    /// while that very key is the one trusted for its `kid` (a refresh makes new keys, so tokens
    /// are verified again after one, and never on a key auth no longer publishes).
    verified: VerifiedTokens<(AccessClaims, Arc<DecodingKey>)>,
    /// Held while fetching, so that concurrent misses make one request to auth, not one each.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    attempts: u64,
    last_error: Option<String>,
}

enum Lookup {
    Found(Arc<DecodingKey>),
    /// A refresh is due; the stale key, if any, serves when the refresh cannot.
    Fetch {
        seen_attempts: u64,
        stale: Option<Arc<DecodingKey>>,
    },
    Missing,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("jwks_url", &self.jwks_url.as_str())
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .field("key_ttl", &self.key_ttl)
            .field("refetch_interval", &self.refetch_interval)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier of tokens issued by the auth service at `auth_url` (e.g. `AUTH_SERVICE_URL`),
    /// expecting the default issuer and audience. Makes no request yet.
    pub fn new(auth_url: &str) -> Result<Self, BuildError> {
        let base = base_url(auth_url)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[DEFAULT_ISSUER]);
        validation.set_audience(&[DEFAULT_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            jwks_url: endpoint(&base, [".well-known", "jwks.json"]),
            http: http_client()?,
            validation,
            key_ttl: DEFAULT_KEY_TTL,
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            keys: RwLock::default(),
            verified: VerifiedTokens::new(VERIFIED_TOKENS),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The `iss` tokens must carry (auth's `AUTH_JWT_ISSUER`).
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// The `aud` tokens must carry (auth's `AUTH_JWT_AUDIENCE`).
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self
    }

    /// How long fetched keys are trusted before they are fetched again (default 5 minutes).
    pub fn with_key_ttl(mut self, ttl: Duration) -> Self {
        self.key_ttl = ttl;
        self
    }

    /// The least time between two fetches caused by tokens with an unknown `kid` (default 30 s).
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The least time between two fetches after one failed (default 5 s); meanwhile verification
    /// answers at once from what is cached, or with [`VerifyError::KeysUnavailable`].
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// The claims of `token` if it is an access token signed by one of auth's keys with EdDSA,
    /// not expired (30 s of leeway), for this issuer and audience.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| VerifyError::Invalid(InvalidToken::Malformed))?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Invalid(InvalidToken::Algorithm));
        }
        let kid = header
            .kid
            .ok_or(VerifyError::Invalid(InvalidToken::UnknownKey))?;
        let key = self.key(&kid).await?;
        if let Some((claims, verified_by)) = self.verified.get(token)
            && Arc::ptr_eq(&verified_by, &key)
        {
            return Ok(claims);
        }
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map_err(|e| VerifyError::Invalid(reason(e.kind())))?
            .claims;
        let valid_until = claims.exp.saturating_add(self.validation.leeway as i64);
        self.verified
            .insert(token, (claims.clone(), key), valid_until);
        Ok(claims)
    }

    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, VerifyError> {
        let (seen_attempts, stale) = match self.lookup(kid) {
            Lookup::Found(key) => return Ok(key),
            Lookup::Missing => return Err(missing(&self.cache())),
            Lookup::Fetch {
                seen_attempts,
                stale,
            } => (seen_attempts, stale),
        };
        let _guard = match stale {
            // A request holding a usable key does not queue behind a refresh that may time out.
            Some(stale) => match self.fetching.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(stale),
            },
            None => self.fetching.lock().await,
        };
        // Whoever held the lock before us may have fetched already; their answer is as fresh.
        let attempts = self.cache().attempts;
        if attempts == seen_attempts {
            self.fetch().await;
        }
        let cache = self.cache();
        cache.keys.get(kid).cloned().ok_or_else(|| missing(&cache))
    }

    fn lookup(&self, kid: &str) -> Lookup {
        let now = Instant::now();
        let cache = self.cache();
        let fresh = cache
            .fetched_at
            .is_some_and(|at| now.duration_since(at) < self.key_ttl);
        let since_attempt = |interval: Duration| {
            cache
                .attempted_at
                .is_none_or(|at| now.duration_since(at) >= interval)
        };
        let key = cache.keys.get(kid).cloned();
        let due = match (&key, fresh) {
            (Some(_), true) => false,
            (None, true) => since_attempt(self.refetch_interval),
            (_, false) => cache.last_error.is_none() || since_attempt(self.retry_interval),
        };
        match (key, due) {
            (Some(key), false) => Lookup::Found(key),
            (None, false) => Lookup::Missing,
            (stale, true) => Lookup::Fetch {
                seen_attempts: cache.attempts,
                stale,
            },
        }
    }

    async fn fetch(&self) {
        let result = self.download().await;
        let now = Instant::now();
        let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
        cache.attempts += 1;
        cache.attempted_at = Some(now);
        match result {
            Ok(keys) => {
                tracing::debug!(count = keys.len(), "fetched auth's token signing keys");
                cache.keys = keys;
                cache.fetched_at = Some(now);
                cache.last_error = None;
            }
            Err(error) => {
                tracing::warn!(%error, held = cache.keys.len(), "cannot fetch auth's token signing keys");
                cache.last_error = Some(error);
            }
        }
    }

    async fn download(&self) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let url = &self.jwks_url;
        let response = platform::otel::send(JWKS, self.http.get(url.clone()))
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered {status}"));
        }
        let set: RawJwkSet = response
            .json()
            .await
            .map_err(|e| format!("GET {url} is not a JWK set: {}", error_chain(&e)))?;
        Ok(set.keys.into_iter().filter_map(usable_key).collect())
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, KeyCache> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The error for a kid the cache does not hold: unavailable if the latest fetch failed (the token
/// may be signed with a key we could not fetch), invalid otherwise.
fn missing(cache: &KeyCache) -> VerifyError {
    match &cache.last_error {
        Some(error) => VerifyError::KeysUnavailable(error.clone()),
        None => VerifyError::Invalid(InvalidToken::UnknownKey),
    }
}

/// Keys are read one by one so that a key of a kind this crate does not know (a future
/// algorithm, another use) is skipped instead of failing the whole set.
#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

fn usable_key(raw: serde_json::Value) -> Option<(String, Arc<DecodingKey>)> {
    let jwk: Jwk = serde_json::from_value(raw).ok()?;
    let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
        return None;
    };
    let signs = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
    let eddsa = matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::EdDSA));
    if params.curve != EllipticCurve::Ed25519 || !signs || !eddsa {
        return None;
    }
    let kid = jwk.common.key_id.clone()?;
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((kid, Arc::new(key)))
}

fn reason(kind: &ErrorKind) -> InvalidToken {
    match kind {
        ErrorKind::InvalidSignature => InvalidToken::Signature,
        ErrorKind::ExpiredSignature => InvalidToken::Expired,
        ErrorKind::InvalidIssuer => InvalidToken::Issuer,
        ErrorKind::InvalidAudience => InvalidToken::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => InvalidToken::Algorithm,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::ImmatureSignature
        | ErrorKind::Json(_) => InvalidToken::Claims,
        _ => InvalidToken::Malformed,
    }
}
