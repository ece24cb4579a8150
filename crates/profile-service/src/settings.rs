//! The profile service's own settings, beyond the platform's [`ServiceConfig`].

use auth_client::AuthLink;
use platform::{ConfigError, Env, FromEnv, ServiceConfig};

#[derive(Debug, Clone)]
pub struct ProfileSettings {
    /// Where auth is, and which of its tokens to accept.
    pub auth: AuthLink,
}

impl FromEnv for ProfileSettings {
    fn from_env(config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: AuthLink::from_env(config, env)?,
        })
    }
}
