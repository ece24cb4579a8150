//! A typed client for auth's user API, with the TTL cache of the seed's section 4.3.
//!
//! Users live in auth's database only; other services ask auth about them over HTTP. Lookups by
//! id are cached (5 minutes by default) because the same few users come back on every page of
//! payments, and concurrent lookups of one id share one request. A user auth does not know is
//! remembered only briefly, so a user who registers right after a miss is seen soon.
//!
//! Lookups by id need a service credential: it is obtained from auth with the client's
//! credentials, reused until shortly before it expires, and renewed once when auth refuses it
//! (auth may have rotated its key). `me` instead forwards the caller's own token and is not
//! cached: it answers "who is this token", which can change with every request.

use std::time::{Duration, Instant};

use contracts::users::User;
use moka::Expiry;
use moka::future::Cache;
use platform::config::{ExposeSecret, SecretString};
use platform::{ApiError, ErrorBody};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{BuildError, DEFAULT_TIMEOUT, base_url, endpoint, error_chain, http_client};

const DEFAULT_USER_TTL: Duration = Duration::from_secs(5 * 60);
const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
const USER_CACHE_CAPACITY: u64 = 10_000;
/// A service token is renewed this long before it expires (at most a fifth of its lifetime),
/// so that it does not expire between being picked and being checked.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(60);

const ME: &str = "GET /auth/me";
const USER: &str = "GET /users/{id}";
const USER_BY_EMAIL: &str = "GET /users?email=";
const SERVICE_TOKEN: &str = "POST /auth/service-token";
const HEALTH: &str = "GET /health";

/// A service client's credentials for `POST /auth/service-token` (auth's `AUTH_SERVICE_CLIENTS`).
#[derive(Debug, Clone)]
pub struct ServiceCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl ServiceCredentials {
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into().into(),
        }
    }
}

/// What went wrong talking to auth. Names the call that failed; never holds a token or secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("auth is unreachable ({call}): {cause}")]
    Unreachable { call: &'static str, cause: String },
    #[error("auth answered {call} with {status}: {message}")]
    Status {
        call: &'static str,
        status: u16,
        /// Auth's error code (`{"error": {"code": ...}}`), when it sent one.
        code: Option<String>,
        message: String,
    },
    #[error("auth's answer to {call} is not what was expected: {cause}")]
    InvalidResponse { call: &'static str, cause: String },
    #[error("auth refused the credentials of service client {client_id:?}")]
    CredentialsRejected { client_id: String },
    #[error("no service credentials are configured, so users cannot be looked up by id")]
    NoCredentials,
}

impl ClientError {
    /// Auth is down or overloaded, as opposed to this service being misconfigured.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The error code of a 503 caused by auth being unavailable.
pub const AUTH_UNAVAILABLE: &str = "auth_unavailable";

/// 503 `auth_unavailable` when auth is unavailable, 500 otherwise; the cause is logged, never sent.
impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "auth is unavailable");
            let mut error = ApiError::unavailable("the auth service is unavailable, retry later");
            error.code = AUTH_UNAVAILABLE;
            error
        } else {
            ApiError::internal(e)
        }
    }
}

/// Auth's user API. Build one per service and share it (`Arc<AuthClient>` in the router state).
pub struct AuthClient {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
    credentials: Option<ServiceCredentials>,
    users: Cache<String, Option<User>>,
    /// Lookups by email as written, with the same lifetimes as `users`.
    emails: Cache<String, Option<User>>,
    /// Also serialises renewals, so that concurrent lookups obtain one token, not one each.
    token: tokio::sync::Mutex<Option<ServiceToken>>,
}

#[derive(Clone)]
struct ServiceToken {
    access_token: String,
    renew_at: Instant,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceTokenRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceTokenResponse {
    access_token: String,
    expires_in: u64,
}

/// Found users are kept for the user TTL, misses for the (short) negative TTL.
struct UserExpiry {
    found: Duration,
    missing: Duration,
}

impl Expiry<String, Option<User>> for UserExpiry {
    fn expire_after_create(
        &self,
        _id: &String,
        user: &Option<User>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(if user.is_some() {
            self.found
        } else {
            self.missing
        })
    }
}

fn user_cache(found: Duration, missing: Duration) -> Cache<String, Option<User>> {
    Cache::builder()
        .max_capacity(USER_CACHE_CAPACITY)
        .expire_after(UserExpiry { found, missing })
        // A user is dropped from the email cache by id (`invalidate_user`).
        .support_invalidation_closures()
        .build()
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl AuthClient {
    /// A client of the auth service at `auth_url` (e.g. `AUTH_SERVICE_URL`), without service
    /// credentials (enough for [`AuthClient::me`]). Makes no request yet.
    pub fn new(auth_url: &str) -> Result<Self, BuildError> {
        Ok(Self {
            base: base_url(auth_url)?,
            http: http_client()?,
            timeout: DEFAULT_TIMEOUT,
            credentials: None,
            users: user_cache(DEFAULT_USER_TTL, DEFAULT_NEGATIVE_TTL),
            emails: user_cache(DEFAULT_USER_TTL, DEFAULT_NEGATIVE_TTL),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The credentials [`AuthClient::user`] obtains its service token with.
    pub fn with_credentials(mut self, credentials: ServiceCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// How long a found user is cached (default 5 minutes) and how long a user auth does not know
    /// is remembered as missing (default 10 s; zero to ask auth every time).
    pub fn with_user_ttl(mut self, found: Duration, missing: Duration) -> Self {
        self.users = user_cache(found, missing);
        self.emails = user_cache(found, missing);
        self
    }

    /// The time limit of one request to auth (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The user a bearer token belongs to (`GET /auth/me` with that token); `None` when auth
    /// refuses the token (401) or the user no longer exists (404).
    pub async fn me(&self, bearer: &str) -> Result<Option<User>, ClientError> {
        let url = endpoint(&self.base, ["auth", "me"]);
        let request = self.http.get(url).bearer_auth(bearer);
        let response = self.send(ME, request).await?;
        match response.status() {
            StatusCode::OK => read(ME, response).await.map(Some),
            StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(ME, response).await),
        }
    }

    /// The user with this id (`GET /users/{id}` with a service credential), from the cache when
    /// it was looked up recently; `None` when auth has no such user.
    pub async fn user(&self, id: &str) -> Result<Option<User>, ClientError> {
        if matches!(id, "" | "." | "..") {
            return Ok(None);
        }
        let entry = self
            .users
            .entry(id.to_string())
            .or_try_insert_with(self.fetch_user(id))
            .await
            .map_err(|e| (*e).clone())?;
        count_lookup("id", entry.is_fresh());
        Ok(entry.into_value())
    }

    /// The user with this email (`GET /users?email=` with a service credential; auth prefers an
    /// exact match, then one regardless of case), cached like [`AuthClient::user`]; `None` when
    /// auth has no such user.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, ClientError> {
        // Keyed as written, not lower-cased: auth prefers an exact match, and legacy emails may
        // differ only by case (`Case@x` and `case@x` are two users).
        let key = email.trim().to_string();
        if key.is_empty() {
            return Ok(None);
        }
        let entry = self
            .emails
            .entry(key)
            .or_try_insert_with(self.fetch_user_by_email(email.trim()))
            .await
            .map_err(|e| (*e).clone())?;
        count_lookup("email", entry.is_fresh());
        let user = entry.into_value();
        if let Some(user) = &user {
            self.users.insert(user.id.clone(), Some(user.clone())).await;
        }
        Ok(user)
    }

    /// Forgets a cached user (by id and by email), e.g. on a `user.updated` or `user.deleted`
    /// event.
    pub async fn invalidate_user(&self, id: &str) {
        self.users.invalidate(id).await;
        let id = id.to_string();
        // Only fails when closures are not supported, which `user_cache` enables.
        let _ = self
            .emails
            .invalidate_entries_if(move |_, user| user.as_ref().is_some_and(|u| u.id == id));
        self.emails.run_pending_tasks().await;
    }

    /// Whether auth answers at all (`GET /health`), for a service's `/ready`.
    pub async fn health(&self) -> Result<(), ClientError> {
        let url = endpoint(&self.base, ["health"]);
        let request = self.http.get(url).timeout(Duration::from_secs(1));
        let response = self.send(HEALTH, request).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(HEALTH, response).await)
        }
    }

    /// How many users (found or missing) are cached, by id and by email; for metrics.
    pub fn cached_users(&self) -> u64 {
        self.users.entry_count() + self.emails.entry_count()
    }

    async fn fetch_user(&self, id: &str) -> Result<Option<User>, ClientError> {
        let url = endpoint(&self.base, ["users", id]);
        let token = self.service_token(None).await?;
        let mut response = self.get_user(USER, &url, &token).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let renewed = self.service_token(Some(&token)).await?;
            response = self.get_user(USER, &url, &renewed).await?;
        }
        match response.status() {
            StatusCode::OK => read(USER, response).await.map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(USER, response).await),
        }
    }

    async fn fetch_user_by_email(&self, email: &str) -> Result<Option<User>, ClientError> {
        let mut url = endpoint(&self.base, ["users"]);
        url.query_pairs_mut().append_pair("email", email);
        let token = self.service_token(None).await?;
        let mut response = self.get_user(USER_BY_EMAIL, &url, &token).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let renewed = self.service_token(Some(&token)).await?;
            response = self.get_user(USER_BY_EMAIL, &url, &renewed).await?;
        }
        match response.status() {
            StatusCode::OK => read(USER_BY_EMAIL, response).await.map(Some),
            // 422: auth does not take it for an email at all, so no user has it.
            StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY => Ok(None),
            _ => Err(status_error(USER_BY_EMAIL, response).await),
        }
    }

    async fn get_user(
        &self,
        call: &'static str,
        url: &Url,
        token: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let request = self.http.get(url.clone()).bearer_auth(token);
        self.send(call, request).await
    }

    /// A service token that is not `refused`: the cached one, or a new one from auth.
    async fn service_token(&self, refused: Option<&str>) -> Result<String, ClientError> {
        let credentials = self
            .credentials
            .as_ref()
            .ok_or(ClientError::NoCredentials)?;
        let mut slot = self.token.lock().await;
        if let Some(cached) = slot.as_ref()
            && Some(cached.access_token.as_str()) != refused
            && Instant::now() < cached.renew_at
        {
            return Ok(cached.access_token.clone());
        }
        *slot = None;
        let url = endpoint(&self.base, ["auth", "service-token"]);
        let request = self.http.post(url).json(&ServiceTokenRequest {
            client_id: &credentials.client_id,
            client_secret: credentials.client_secret.expose_secret(),
        });
        let response = self.send(SERVICE_TOKEN, request).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => {
                return Err(ClientError::CredentialsRejected {
                    client_id: credentials.client_id.clone(),
                });
            }
            _ => return Err(status_error(SERVICE_TOKEN, response).await),
        }
        let issued: ServiceTokenResponse = read(SERVICE_TOKEN, response).await?;
        let lifetime = Duration::from_secs(issued.expires_in);
        let renew_at = Instant::now() + lifetime - TOKEN_RENEW_MARGIN.min(lifetime / 5);
        tracing::debug!(
            expires_in = issued.expires_in,
            "obtained a service token from auth"
        );
        *slot = Some(ServiceToken {
            access_token: issued.access_token.clone(),
            renew_at,
        });
        Ok(issued.access_token)
    }

    async fn send(
        &self,
        call: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        platform::otel::send(call, request.timeout(self.timeout))
            .await
            .map_err(|e| ClientError::Unreachable {
                call,
                cause: error_chain(&e),
            })
    }
}

/// `auth_client_user_lookups_total{by, result}`: the cache's hit ratio is `hit / (hit + miss)`.
fn count_lookup(by: &'static str, fetched: bool) {
    let result = if fetched { "miss" } else { "hit" };
    metrics::counter!("auth_client_user_lookups_total", "by" => by, "result" => result)
        .increment(1);
}

async fn read<T: DeserializeOwned>(
    call: &'static str,
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let invalid = |e: reqwest::Error| ClientError::InvalidResponse {
        call,
        cause: error_chain(&e),
    };
    let body = response.bytes().await.map_err(invalid)?;
    serde_json::from_slice(&body).map_err(|e| ClientError::InvalidResponse {
        call,
        cause: e.to_string(),
    })
}

/// The error for an unexpected status, with auth's own message when the body has the
/// platform's error shape.
async fn status_error(call: &'static str, response: reqwest::Response) -> ClientError {
    let status = response.status();
    let body: Option<ErrorBody> = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).ok(),
        Err(_) => None,
    };
    let (code, message) = match body {
        Some(body) => (Some(body.error.code), body.error.message),
        None => (
            None,
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string(),
        ),
    };
    ClientError::Status {
        call,
        status: status.as_u16(),
        code,
        message,
    }
}
