//! The caller of a protected route, from a bearer token verified with auth's keys.
//!
//! Each service's router state only has to provide an `Arc<Verifier>` (`FromRef`); the rejection
//! speaks the platform's error shape so that a client cannot tell which service refused it.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contracts::auth::AccessClaims;
use contracts::users::Role;
use platform::ApiError;
use platform::config::{ExposeSecret, SecretString};

use crate::verify::{Verifier, VerifyError};

/// Seconds a client is told to wait when auth's keys are unavailable.
const RETRY_AFTER_SECS: u64 = 5;

/// Who is calling: the verified claims, and the bearer token itself for calls made on the
/// caller's behalf (e.g. auth's `/auth/me`).
#[derive(Debug, Clone)]
pub struct Caller {
    claims: AccessClaims,
    bearer: SecretString,
}

impl Caller {
    /// A caller with already verified claims, e.g. for tests of handlers.
    pub fn new(claims: AccessClaims, bearer: impl Into<String>) -> Self {
        Self {
            claims,
            bearer: bearer.into().into(),
        }
    }

    pub fn claims(&self) -> &AccessClaims {
        &self.claims
    }

    /// The raw access token, to forward to auth on the caller's behalf. Never log it.
    pub fn bearer(&self) -> &str {
        self.bearer.expose_secret()
    }

    /// The token's subject: a user id, or `service:<client id>` for a service credential.
    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// The end user's id; `None` for a service credential, whose subject is no user.
    pub fn user_id(&self) -> Option<&str> {
        self.claims.user_id()
    }

    /// The service client's id for a service credential (`service:<id>`).
    pub fn service_id(&self) -> Option<&str> {
        self.claims.service_id()
    }

    /// The end user's role; `None` for a service credential.
    pub fn role(&self) -> Option<Role> {
        self.claims.user_role()
    }

    pub fn is_admin(&self) -> bool {
        self.claims.is_admin()
    }

    /// A service credential (client credentials), not an end user.
    pub fn is_service(&self) -> bool {
        self.claims.is_service()
    }
}

/// Why a request has no [`Caller`]: 401 with `WWW-Authenticate: Bearer` (RFC 6750), or 503 with
/// `Retry-After` when auth's keys cannot be fetched.
#[derive(Debug, Clone)]
pub struct CallerRejection(pub ApiError);

impl CallerRejection {
    fn unauthorized(message: &str) -> Self {
        Self(ApiError::unauthorized(message))
    }
}

impl From<VerifyError> for CallerRejection {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Invalid(reason) => {
                tracing::debug!(%reason, "access token refused");
                Self::unauthorized("missing or invalid access token")
            }
            VerifyError::KeysUnavailable(cause) => {
                tracing::warn!(%cause, "cannot verify an access token");
                Self(ApiError {
                    retry_after: Some(RETRY_AFTER_SECS),
                    ..ApiError::unavailable("cannot verify the access token now, retry later")
                })
            }
        }
    }
}

impl From<CallerRejection> for ApiError {
    fn from(rejection: CallerRejection) -> Self {
        rejection.0
    }
}

impl IntoResponse for CallerRejection {
    fn into_response(self) -> Response {
        let unauthorized = self.0.status == StatusCode::UNAUTHORIZED;
        let mut response = self.0.into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The token of an `Authorization: Bearer <token>` header; `Ok(None)` without the header.
fn bearer_token(parts: &Parts) -> Result<Option<&str>, CallerRejection> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(contracts::auth::bearer_token)
        .map(Some)
        .ok_or_else(|| {
            CallerRejection::unauthorized("the Authorization header is not a bearer token")
        })
}

async fn verified<S>(state: &S, token: &str) -> Result<Caller, CallerRejection>
where
    Arc<Verifier>: FromRef<S>,
{
    let verifier = Arc::<Verifier>::from_ref(state);
    let claims = verifier.verify(token).await?;
    Ok(Caller::new(claims, token))
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = CallerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?
            .ok_or_else(|| CallerRejection::unauthorized("missing access token"))?;
        verified(state, token).await
    }
}

/// `Option<Caller>`: `None` without an `Authorization` header; a header that is present must
/// still hold a valid token.
impl<S> OptionalFromRequestParts<S> for Caller
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = CallerRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match bearer_token(parts)? {
            Some(token) => verified(state, token).await.map(Some),
            None => Ok(None),
        }
    }
}
