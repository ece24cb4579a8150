//! Every variable the sandbox reads, typed. A bad value stops the start with a message naming
//! the variable; the webhook secret never appears in one, nor in `Debug` output.

use std::path::PathBuf;
use std::time::Duration;

use platform::config::SecretString;
use platform::{ConfigError, Env, LogFormat};

pub const DEFAULT_PORT: u16 = 3010;
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_WEBHOOK_URL: &str = "http://localhost:3002/psp/webhooks";
/// The shortest webhook secret accepted: a short one is guessable, and then so are signatures.
pub const MIN_SECRET_CHARS: usize = 16;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `PSP_SANDBOX_HOST`, default 127.0.0.1.
    pub host: String,
    /// `PSP_SANDBOX_PORT`, default 3010; 0 picks a free port (tests).
    pub port: u16,
    /// `PSP_WEBHOOK_SECRET`, required, at least 16 characters: the HMAC key of `PSP-Signature`.
    pub webhook_secret: SecretString,
    /// `PSP_WEBHOOK_URL`, default `http://localhost:3002/psp/webhooks`.
    pub webhook_url: String,
    /// `PSP_SANDBOX_LATENCY_MS`, default 80: the base latency of each `/charges` call; each call
    /// waits a uniformly random 0.5x to 1.5x of it.
    pub latency: Duration,
    /// `PSP_SANDBOX_SETTLE_DELAY_MS`, default 2000: how long a delayed-settlement charge stays
    /// pending.
    pub settle_delay: Duration,
    /// `PSP_SANDBOX_HANG_MS`, default 30000: how long a timeout charge holds its response.
    pub hang: Duration,
    /// `PSP_SANDBOX_DATA_FILE`: where every change is appended and replayed from at start;
    /// without it the charges live in memory only.
    pub data_file: Option<PathBuf>,
    /// `LOG_FORMAT`, `text` or `json`.
    pub log_format: LogFormat,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let webhook_secret = env
            .get("PSP_WEBHOOK_SECRET")
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .ok_or_else(|| {
                ConfigError::new(
                    "PSP_WEBHOOK_SECRET",
                    "is required and must be at least 16 characters",
                )
            })?;
        let webhook_url = env.http_url_or("PSP_WEBHOOK_URL", DEFAULT_WEBHOOK_URL)?;
        if !webhook_url.starts_with("http://") {
            return Err(ConfigError::new(
                "PSP_WEBHOOK_URL",
                "must be an http:// URL (the sandbox has no TLS client)",
            ));
        }
        let millis = |var: &str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(env.parse_or(var, default)?))
        };
        Ok(Self {
            host: env.string_or("PSP_SANDBOX_HOST", DEFAULT_HOST),
            port: env.parse_or("PSP_SANDBOX_PORT", DEFAULT_PORT)?,
            webhook_secret: SecretString::from(webhook_secret.to_string()),
            webhook_url,
            latency: millis("PSP_SANDBOX_LATENCY_MS", 80)?,
            settle_delay: millis("PSP_SANDBOX_SETTLE_DELAY_MS", 2000)?,
            hang: millis("PSP_SANDBOX_HANG_MS", 30_000)?,
            data_file: env.get("PSP_SANDBOX_DATA_FILE").map(PathBuf::from),
            log_format: env.parse_or("LOG_FORMAT", LogFormat::Text)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use platform::config::ExposeSecret;

    use super::*;

    const SECRET: &str = "whsec_0123456789abcdef";

    #[test]
    fn defaults_need_only_the_secret() {
        let settings = Settings::from_env(&Env::from_pairs([("PSP_WEBHOOK_SECRET", SECRET)]))
            .expect("valid settings");
        assert_eq!(settings.host, "127.0.0.1");
        assert_eq!(settings.port, 3010);
        assert_eq!(settings.webhook_url, DEFAULT_WEBHOOK_URL);
        assert_eq!(settings.latency, Duration::from_millis(80));
        assert_eq!(settings.settle_delay, Duration::from_millis(2000));
        assert_eq!(settings.hang, Duration::from_millis(30_000));
        assert_eq!(settings.data_file, None);
        assert_eq!(settings.webhook_secret.expose_secret(), SECRET);
    }

    #[test]
    fn a_missing_or_short_secret_is_refused_without_echoing_it() {
        for env in [
            Env::default(),
            Env::from_pairs([("PSP_WEBHOOK_SECRET", "short-s3cret")]),
        ] {
            let err = Settings::from_env(&env).unwrap_err();
            assert_eq!(err.var, "PSP_WEBHOOK_SECRET");
            assert!(!err.to_string().contains("short-s3cret"));
        }
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let settings =
            Settings::from_env(&Env::from_pairs([("PSP_WEBHOOK_SECRET", SECRET)])).unwrap();
        assert!(!format!("{settings:?}").contains(SECRET));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("PSP_SANDBOX_PORT", "http"),
            ("PSP_SANDBOX_LATENCY_MS", "-1"),
            ("PSP_WEBHOOK_URL", "https://payments/psp/webhooks"),
            ("PSP_WEBHOOK_URL", "payments:3002"),
            ("LOG_FORMAT", "xml"),
        ] {
            let env = Env::from_pairs([("PSP_WEBHOOK_SECRET", SECRET), (var, value)]);
            assert_eq!(
                Settings::from_env(&env).unwrap_err().var,
                var,
                "{var}={value}"
            );
        }
    }
}
