//! How a service reaches auth and which of auth's tokens it accepts, read once from the
//! environment: every service that calls auth takes these settings the same way.

use platform::{ConfigError, Env, FromEnv, ServiceConfig};

use crate::{AuthClient, BuildError, Verifier};

/// Auth's base URL (`AUTH_SERVICE_URL`) and the `iss` and `aud` its tokens carry
/// (`AUTH_JWT_ISSUER`, `AUTH_JWT_AUDIENCE`: the same variables auth signs with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLink {
    pub url: String,
    pub issuer: String,
    pub audience: String,
}

impl FromEnv for AuthLink {
    fn from_env(config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: config.auth_service_url.clone(),
            issuer: env.string_or("AUTH_JWT_ISSUER", contracts::auth::DEFAULT_ISSUER),
            audience: env.string_or("AUTH_JWT_AUDIENCE", contracts::auth::DEFAULT_AUDIENCE),
        })
    }
}

impl AuthLink {
    /// Verifies access tokens with auth's published keys, for this issuer and audience.
    pub fn verifier(&self) -> Result<Verifier, BuildError> {
        Ok(Verifier::new(&self.url)?
            .with_issuer(&self.issuer)
            .with_audience(&self.audience))
    }

    /// Asks auth about users.
    pub fn client(&self) -> Result<AuthClient, BuildError> {
        AuthClient::new(&self.url)
    }
}
