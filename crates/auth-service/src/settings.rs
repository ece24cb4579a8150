//! The auth service's own settings, beyond the platform's [`ServiceConfig`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use platform::config::{SecretString, Topology};
use platform::{ConfigError, Env, FromEnv, ServiceConfig};

/// A service client allowed to obtain service credentials (`POST /auth/service-token`).
#[derive(Debug, Clone)]
pub struct ServiceClient {
    pub id: String,
    pub secret: SecretString,
}

#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub email: String,
    pub password: SecretString,
}

/// Where the signing key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A PKCS#8 PEM Ed25519 private key given in the environment.
    Pem(SecretString),
    /// Generated once and kept in `dir/jwt-ed25519.pem`.
    DataDir(PathBuf),
}

/// Limits on failed logins, per email and per client IP, within a sliding window.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    pub max_failures_per_email: u32,
    pub max_failures_per_ip: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub key_source: KeySource,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub service_clients: HashMap<String, ServiceClient>,
    pub bootstrap_admin: Option<BootstrapAdmin>,
    pub throttle: ThrottleSettings,
    /// Passwords hashed or checked at once (`AUTH_HASH_WORKERS`, default: the cores), each
    /// taking about 19 MiB; and requests waiting for one (`AUTH_HASH_QUEUE`, default 32) before
    /// the next is answered 503.
    pub hash_workers: usize,
    pub hash_queue: usize,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// `AUTH_PURGE_EXPIRED_TOKENS` (`on`/`off`): whether expired rows of `refresh_tokens` are
    /// deleted at start and every hour. Unset, the topology decides
    /// ([`AuthSettings::purges_expired_tokens`]).
    pub purge_expired_tokens: Option<bool>,
}

/// What auth does with expired rows of `refresh_tokens`, and why; logged at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPurge {
    /// Delete them at start and every hour.
    pub enabled: bool,
    /// Set by `AUTH_PURGE_EXPIRED_TOKENS` rather than by the topology's default.
    pub explicit: bool,
}

impl FromEnv for AuthSettings {
    fn from_env(_config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError> {
        let key_source = match (
            env.get("AUTH_JWT_PRIVATE_KEY"),
            env.get("AUTH_JWT_PRIVATE_KEY_FILE"),
        ) {
            (Some(pem), _) => KeySource::Pem(pem.replace("\\n", "\n").into()),
            (None, Some(path)) => KeySource::Pem(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        ConfigError::new(
                            "AUTH_JWT_PRIVATE_KEY_FILE",
                            format!("cannot read {path}: {e}"),
                        )
                    })?
                    .into(),
            ),
            (None, None) => {
                KeySource::DataDir(PathBuf::from(env.string_or("AUTH_DATA_DIR", "data/auth")))
            }
        };
        let bootstrap_admin = match (
            env.get("AUTH_BOOTSTRAP_ADMIN_EMAIL"),
            env.get("AUTH_BOOTSTRAP_ADMIN_PASSWORD"),
        ) {
            (Some(email), Some(password)) => Some(BootstrapAdmin {
                email: email.trim().to_string(),
                password: password.to_string().into(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "AUTH_BOOTSTRAP_ADMIN_PASSWORD",
                    "required with AUTH_BOOTSTRAP_ADMIN_EMAIL",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "AUTH_BOOTSTRAP_ADMIN_EMAIL",
                    "required with AUTH_BOOTSTRAP_ADMIN_PASSWORD",
                ));
            }
        };
        Ok(Self {
            key_source,
            issuer: env.string_or("AUTH_JWT_ISSUER", contracts::auth::DEFAULT_ISSUER),
            audience: env.string_or("AUTH_JWT_AUDIENCE", contracts::auth::DEFAULT_AUDIENCE),
            access_ttl: env
                .seconds_or("AUTH_ACCESS_TOKEN_TTL_SECS", Duration::from_secs(15 * 60))?,
            refresh_ttl: env.seconds_or(
                "AUTH_REFRESH_TOKEN_TTL_SECS",
                Duration::from_secs(30 * 24 * 3600),
            )?,
            service_clients: parse_service_clients(env.get("AUTH_SERVICE_CLIENTS"))?,
            bootstrap_admin,
            throttle: ThrottleSettings {
                max_failures_per_email: env.parse_or("AUTH_LOGIN_MAX_FAILURES_PER_EMAIL", 5)?,
                max_failures_per_ip: env.parse_or("AUTH_LOGIN_MAX_FAILURES_PER_IP", 20)?,
                window: env.seconds_or("AUTH_LOGIN_WINDOW_SECS", Duration::from_secs(15 * 60))?,
            },
            hash_workers: match env.parse_or("AUTH_HASH_WORKERS", 0usize)? {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            },
            hash_queue: env.parse_or("AUTH_HASH_QUEUE", 32usize)?,
            trust_forwarded_for: env.parse_or("AUTH_TRUST_FORWARDED_FOR", false)?,
            purge_expired_tokens: switch(env, "AUTH_PURGE_EXPIRED_TOKENS")?,
        })
    }
}

impl AuthSettings {
    /// Whether expired refresh tokens are purged under `topology`. The default is on in the
    /// split topology, where `refresh_tokens` is auth's own table, and off in the shared one,
    /// where it is the legacy platform's data: a service running there (before cutover, after a
    /// rollback) does not rewrite legacy rows unasked. An expired token is refused either way.
    /// The hashes of rotated tokens (`auth.rotated_refresh_tokens`, auth's own schema) are
    /// purged in both.
    pub fn purges_expired_tokens(&self, topology: Topology) -> TokenPurge {
        TokenPurge {
            enabled: self
                .purge_expired_tokens
                .unwrap_or(topology == Topology::Split),
            explicit: self.purge_expired_tokens.is_some(),
        }
    }
}

/// An `on`/`off` variable (`true`/`false` too); `None` when unset.
fn switch(env: &Env, var: &str) -> Result<Option<bool>, ConfigError> {
    let Some(raw) = env.get(var) else {
        return Ok(None);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(Some(true)),
        "off" | "false" => Ok(Some(false)),
        _ => Err(ConfigError::new(var, "expected `on` or `off`")),
    }
}

/// `AUTH_SERVICE_CLIENTS`: `id=secret` pairs separated by commas.
fn parse_service_clients(raw: Option<&str>) -> Result<HashMap<String, ServiceClient>, ConfigError> {
    let mut clients = HashMap::new();
    for pair in raw
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (id, secret) = pair.split_once('=').ok_or_else(|| {
            ConfigError::new(
                "AUTH_SERVICE_CLIENTS",
                "expected id=secret pairs separated by commas",
            )
        })?;
        let (id, secret) = (id.trim(), secret.trim());
        if id.is_empty() {
            return Err(ConfigError::new(
                "AUTH_SERVICE_CLIENTS",
                "a client id is empty",
            ));
        }
        if secret.len() < 16 {
            return Err(ConfigError::new(
                "AUTH_SERVICE_CLIENTS",
                format!("the secret of client {id} is shorter than 16 characters"),
            ));
        }
        clients.insert(
            id.to_string(),
            ServiceClient {
                id: id.to_string(),
                secret: secret.to_string().into(),
            },
        );
    }
    Ok(clients)
}

#[cfg(test)]
mod tests {
    use platform::config::ExposeSecret;

    use super::*;

    /// Auth's settings read only their own variables: any platform config will do.
    fn config() -> ServiceConfig {
        ServiceConfig::from_env(platform::Service::Auth, &Env::default()).unwrap()
    }

    #[test]
    fn service_clients_are_parsed_and_short_secrets_refused() {
        let env = Env::from_pairs([(
            "AUTH_SERVICE_CLIENTS",
            "payments-service=0123456789abcdef, admin-service=fedcba9876543210",
        )]);
        let s = AuthSettings::from_env(&config(), &env).unwrap();
        assert_eq!(s.service_clients.len(), 2);
        assert_eq!(
            s.service_clients["admin-service"].secret.expose_secret(),
            "fedcba9876543210"
        );
        let env = Env::from_pairs([("AUTH_SERVICE_CLIENTS", "payments-service=s3cr3t")]);
        let err = AuthSettings::from_env(&config(), &env).unwrap_err();
        assert_eq!(err.var, "AUTH_SERVICE_CLIENTS");
        assert!(
            !err.to_string().contains("s3cr3t"),
            "the secret is not echoed"
        );
    }

    #[test]
    fn bootstrap_admin_needs_both_variables() {
        let err = AuthSettings::from_env(
            &config(),
            &Env::from_pairs([("AUTH_BOOTSTRAP_ADMIN_EMAIL", "a@b.co")]),
        )
        .unwrap_err();
        assert_eq!(err.var, "AUTH_BOOTSTRAP_ADMIN_PASSWORD");
    }

    #[test]
    fn expired_tokens_are_purged_by_default_only_in_the_split_topology() {
        let unset = AuthSettings::from_env(&config(), &Env::default()).unwrap();
        assert_eq!(unset.purge_expired_tokens, None);
        let purge = |s: &AuthSettings, t| s.purges_expired_tokens(t).enabled;
        assert!(purge(&unset, Topology::Split));
        assert!(!purge(&unset, Topology::Shared));
        assert!(!unset.purges_expired_tokens(Topology::Split).explicit);

        for (raw, enabled) in [
            ("on", true),
            ("OFF", false),
            (" true ", true),
            ("false", false),
        ] {
            let set = AuthSettings::from_env(
                &config(),
                &Env::from_pairs([("AUTH_PURGE_EXPIRED_TOKENS", raw)]),
            )
            .unwrap();
            for topology in [Topology::Split, Topology::Shared] {
                assert_eq!(
                    set.purges_expired_tokens(topology),
                    TokenPurge {
                        enabled,
                        explicit: true
                    },
                    "{raw} in {topology:?}"
                );
            }
        }
    }

    #[test]
    fn a_purge_setting_that_is_not_on_or_off_is_refused() {
        let err = AuthSettings::from_env(
            &config(),
            &Env::from_pairs([("AUTH_PURGE_EXPIRED_TOKENS", "yes")]),
        )
        .unwrap_err();
        assert_eq!(err.var, "AUTH_PURGE_EXPIRED_TOKENS");
        assert!(err.to_string().contains("`on` or `off`"), "{err}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let env = Env::from_pairs([
            ("AUTH_SERVICE_CLIENTS", "payments-service=0123456789abcdef"),
            ("AUTH_BOOTSTRAP_ADMIN_EMAIL", "root@example.com"),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "correct horse battery"),
            ("AUTH_JWT_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----secret"),
        ]);
        let shown = format!("{:?}", AuthSettings::from_env(&config(), &env).unwrap());
        for secret in [
            "0123456789abcdef",
            "correct horse battery",
            "BEGIN PRIVATE KEY",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
    }
}
