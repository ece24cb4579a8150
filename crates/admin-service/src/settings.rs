//! The admin service's own settings, beyond the platform's [`ServiceConfig`]: how it reaches auth
//! (and with which credential), and how much an audited event may wait for a user's name.

use std::time::Duration;

use auth_client::{AuthLink, ServiceCredentials};
use platform::{ConfigError, Env, FromEnv, ServiceConfig};

/// The client id auth knows admin by (`AUTH_SERVICE_CLIENTS`).
pub const DEFAULT_AUTH_CLIENT_ID: &str = "admin-service";
const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where auth is, and which of its tokens to accept.
    pub auth: AuthLink,
    /// `ADMIN_AUTH_CLIENT_ID` (default `admin-service`) and `ADMIN_AUTH_CLIENT_SECRET`.
    pub credentials: ServiceCredentials,
    /// How long the audit of one event waits for the acting user's name before writing it null
    /// (`ADMIN_NAME_LOOKUP_TIMEOUT_MS`, 300). Auth being slow or down must not hold the log back.
    pub name_lookup_timeout: Duration,
    /// After a failed name lookup, how long names are not asked for at all
    /// (`ADMIN_NAME_LOOKUP_PAUSE_SECS`, 5): with auth down every event is written at once.
    pub name_lookup_pause: Duration,
    /// Whether the client IP of a refused request is `X-Forwarded-For`'s first hop
    /// (`ADMIN_TRUST_FORWARDED_FOR`, false: only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// How many refused requests per client address a minute are written to the audit log one by
    /// one (`ADMIN_DENIED_AUDIT_PER_MINUTE`, 30); the rest are counted into the next one written,
    /// so a flood of bad requests cannot flood the log.
    pub denied_audit_per_minute: u32,
    /// Exports running at once (`ADMIN_EXPORTS_AT_ONCE`, 2): each holds a database connection
    /// for its whole transfer; one more is answered 503 with `Retry-After`.
    pub exports_at_once: usize,
}

impl FromEnv for AdminSettings {
    fn from_env(config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError> {
        let credentials = ServiceCredentials {
            client_id: env.string_or("ADMIN_AUTH_CLIENT_ID", DEFAULT_AUTH_CLIENT_ID),
            client_secret: env.required_secret("ADMIN_AUTH_CLIENT_SECRET", MIN_SECRET_LEN)?,
        };
        Ok(Self {
            auth: AuthLink::from_env(config, env)?,
            credentials,
            name_lookup_timeout: env.millis_or("ADMIN_NAME_LOOKUP_TIMEOUT_MS", 300)?,
            name_lookup_pause: env
                .seconds_or("ADMIN_NAME_LOOKUP_PAUSE_SECS", Duration::from_secs(5))?,
            trust_forwarded_for: env.parse_or("ADMIN_TRUST_FORWARDED_FOR", false)?,
            denied_audit_per_minute: env.parse_or("ADMIN_DENIED_AUDIT_PER_MINUTE", 30u32)?,
            exports_at_once: env.parse_or("ADMIN_EXPORTS_AT_ONCE", 2usize)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServiceConfig {
        ServiceConfig::from_env(platform::Service::Admin, &Env::default()).unwrap()
    }

    #[test]
    fn the_client_secret_is_required_and_named() {
        let err = AdminSettings::from_env(&config(), &Env::default()).unwrap_err();
        assert!(
            err.to_string().contains("ADMIN_AUTH_CLIENT_SECRET"),
            "{err}"
        );
        let env = Env::from_pairs([("ADMIN_AUTH_CLIENT_SECRET", "short")]);
        let err = AdminSettings::from_env(&config(), &env).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
    }

    #[test]
    fn defaults_follow_the_documented_names() {
        let env = Env::from_pairs([("ADMIN_AUTH_CLIENT_SECRET", "0123456789abcdef")]);
        let settings = AdminSettings::from_env(&config(), &env).unwrap();
        assert_eq!(settings.credentials.client_id, "admin-service");
        assert_eq!(settings.auth.url, "http://localhost:3001");
        assert_eq!(settings.name_lookup_timeout, Duration::from_millis(300));
        assert!(!settings.trust_forwarded_for);
        assert!(!format!("{settings:?}").contains("0123456789abcdef"));
    }
}
