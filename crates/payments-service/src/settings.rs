//! The payments service's own settings, beyond the platform's [`ServiceConfig`]: how it reaches
//! auth (and with which credential), the payment provider, and the pace of its background work.

use std::time::Duration;

use auth_client::{AuthLink, ServiceCredentials};
use platform::config::SecretString;
use platform::{ConfigError, Env, FromEnv, ServiceConfig};

/// The client id auth knows payments by (`AUTH_SERVICE_CLIENTS`).
pub const DEFAULT_AUTH_CLIENT_ID: &str = "payments-service";
pub const DEFAULT_PSP_URL: &str = "http://localhost:3010";
/// The shortest webhook secret accepted: HMAC keys shorter than this are guessable.
const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone)]
pub struct PaymentsSettings {
    /// Where auth is, and which of its tokens to accept.
    pub auth: AuthLink,
    /// `PAYMENTS_AUTH_CLIENT_ID` (default `payments-service`) and `PAYMENTS_AUTH_CLIENT_SECRET`.
    pub credentials: ServiceCredentials,
    pub psp: PspSettings,
    pub worker: WorkerSettings,
    /// How long a request holds an Idempotency-Key before a retry may take it over
    /// (`PAYMENTS_IDEMPOTENCY_LEASE_SECS`, default 30).
    pub idempotency_lease: Duration,
}

#[derive(Debug, Clone)]
pub struct PspSettings {
    /// `PSP_URL`.
    pub url: String,
    /// `PSP_WEBHOOK_SECRET`, shared with the provider: webhooks are signed with it.
    pub webhook_secret: SecretString,
    /// A webhook signed longer ago than this is refused (`PSP_WEBHOOK_TOLERANCE_SECS`, 300).
    pub webhook_tolerance: Duration,
    /// The time limit of one call to the provider (`PSP_TIMEOUT_MS`, 5000). Past it the outcome
    /// is unknown and left to the reconciler.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How often the worker looks for due jobs when nothing wakes it (`PAYMENTS_WORKER_POLL_MS`).
    pub poll: Duration,
    /// How many jobs one replica works on at once (`PAYMENTS_WORKER_CONCURRENCY`, default 4).
    pub concurrency: usize,
    /// How long an instant payment's own request has to charge it before the worker does
    /// (`PAYMENTS_CHARGE_GRACE_MS`): the worker is the safety net of a request that died.
    pub charge_grace: Duration,
    /// The first wait before asking the provider about an unknown outcome
    /// (`PAYMENTS_RECONCILE_AFTER_MS`); doubled on each attempt up to `reconcile_max`.
    pub reconcile_after: Duration,
    /// `PAYMENTS_RECONCILE_MAX_MS`.
    pub reconcile_max: Duration,
}

impl FromEnv for PaymentsSettings {
    fn from_env(config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError> {
        let secret = env.required_secret("PAYMENTS_AUTH_CLIENT_SECRET", MIN_SECRET_LEN)?;
        let credentials = ServiceCredentials {
            client_id: env.string_or("PAYMENTS_AUTH_CLIENT_ID", DEFAULT_AUTH_CLIENT_ID),
            client_secret: secret,
        };
        Ok(Self {
            auth: AuthLink::from_env(config, env)?,
            credentials,
            psp: PspSettings {
                url: env.http_url_or("PSP_URL", DEFAULT_PSP_URL)?,
                webhook_secret: env.required_secret("PSP_WEBHOOK_SECRET", MIN_SECRET_LEN)?,
                webhook_tolerance: env
                    .seconds_or("PSP_WEBHOOK_TOLERANCE_SECS", Duration::from_secs(300))?,
                timeout: env.millis_or("PSP_TIMEOUT_MS", 5000)?,
            },
            worker: WorkerSettings {
                poll: env.millis_or("PAYMENTS_WORKER_POLL_MS", 500)?,
                concurrency: env
                    .parse_or("PAYMENTS_WORKER_CONCURRENCY", 4usize)?
                    .clamp(1, 64),
                charge_grace: env.millis_or("PAYMENTS_CHARGE_GRACE_MS", 10_000)?,
                reconcile_after: env.millis_or("PAYMENTS_RECONCILE_AFTER_MS", 5000)?,
                reconcile_max: env.millis_or("PAYMENTS_RECONCILE_MAX_MS", 300_000)?,
            },
            idempotency_lease: env
                .seconds_or("PAYMENTS_IDEMPOTENCY_LEASE_SECS", Duration::from_secs(30))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServiceConfig {
        ServiceConfig::from_env(platform::Service::Payments, &Env::default()).unwrap()
    }

    #[test]
    fn secrets_are_required_and_named() {
        let err = PaymentsSettings::from_env(&config(), &Env::default()).unwrap_err();
        assert!(
            err.to_string().contains("PAYMENTS_AUTH_CLIENT_SECRET"),
            "{err}"
        );
        let env = Env::from_pairs([("PAYMENTS_AUTH_CLIENT_SECRET", "0123456789abcdef")]);
        let err = PaymentsSettings::from_env(&config(), &env).unwrap_err();
        assert!(err.to_string().contains("PSP_WEBHOOK_SECRET"), "{err}");
        let env = Env::from_pairs([
            ("PAYMENTS_AUTH_CLIENT_SECRET", "0123456789abcdef"),
            ("PSP_WEBHOOK_SECRET", "short"),
        ]);
        let err = PaymentsSettings::from_env(&config(), &env).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
    }

    #[test]
    fn defaults_follow_the_documented_names() {
        let env = Env::from_pairs([
            ("PAYMENTS_AUTH_CLIENT_SECRET", "0123456789abcdef"),
            ("PSP_WEBHOOK_SECRET", "fedcba9876543210"),
        ]);
        let settings = PaymentsSettings::from_env(&config(), &env).unwrap();
        assert_eq!(settings.credentials.client_id, "payments-service");
        assert_eq!(settings.psp.url, "http://localhost:3010");
        assert_eq!(settings.psp.timeout, Duration::from_secs(5));
        assert!(!format!("{settings:?}").contains("fedcba9876543210"));
    }
}
