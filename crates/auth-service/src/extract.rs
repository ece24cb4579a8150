//! Who is calling: the verified bearer token, and the client's address and user agent.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use contracts::auth::{AccessClaims, SERVICE_ROLE};
use contracts::users::Role;

use crate::AppState;
use crate::error::AuthError;

/// The caller of a protected route, from a valid access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: AccessClaims,
}

impl Caller {
    /// The end user's role; `None` for a service credential.
    pub fn user_role(&self) -> Option<Role> {
        if self.claims.role == SERVICE_ROLE {
            None
        } else {
            self.claims.role.parse().ok()
        }
    }

    pub fn is_service(&self) -> bool {
        self.claims.role == SERVICE_ROLE && self.claims.sub.starts_with("service:")
    }

    pub fn is_admin(&self) -> bool {
        self.user_role() == Some(Role::Admin)
    }

    /// ADMIN users and service credentials may look users up.
    pub fn require_admin_or_service(&self) -> Result<(), AuthError> {
        if self.is_admin() || self.is_service() {
            Ok(())
        } else {
            Err(AuthError::Forbidden(
                "this route needs an ADMIN or a service credential",
            ))
        }
    }

    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AuthError::Forbidden("this route needs an ADMIN"))
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
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(AuthError::Unauthenticated)?;
        let claims = state
            .keys
            .verify(token)
            .map_err(|_| AuthError::Unauthenticated)?;
        Ok(Caller { claims })
    }
}

/// The client's IP (the peer, or `X-Forwarded-For`'s first hop when configured) and user agent.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let forwarded = state
            .settings
            .trust_forwarded_for
            .then(|| {
                parts
                    .headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
            })
            .flatten()
            .and_then(|v| v.split(',').next())
            .map(|ip| ip.trim().to_string())
            .filter(|ip| !ip.is_empty());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
        Ok(ClientInfo {
            ip: forwarded.or(peer),
            user_agent,
        })
    }
}
