//! Who is calling: the verified bearer token, and the client's address and user agent.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use contracts::auth::AccessClaims;

use crate::AppState;
use crate::error::AuthError;

/// The caller of a protected route, from a valid access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessClaims,
}

impl Caller {
    /// ADMIN users and service credentials may look users up.
    pub fn require_admin_or_service(&self) -> Result<(), AuthError> {
        if self.claims.is_admin() || self.claims.is_service() {
            Ok(())
        } else {
            Err(AuthError::forbidden(
                "this route needs an ADMIN or a service credential",
            ))
        }
    }

    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.claims.is_admin() {
            Ok(())
        } else {
            Err(AuthError::forbidden("this route needs an ADMIN"))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(contracts::auth::bearer_token)
            .ok_or(AuthError::Unauthenticated)?;
        let claims = state
            .keys
            .verify(token)
            .map_err(|_| AuthError::Unauthenticated)?;
        Ok(Caller { claims })
    }
}

/// The client's IP and user agent (`platform`'s, with auth's `AUTH_TRUST_FORWARDED_FOR`).
pub use platform::extract::ClientInfo;

/// Newtype-free extraction: auth's routes take [`ClientInfo`] directly.
impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientInfo::of(parts, state.settings.trust_forwarded_for))
    }
}
