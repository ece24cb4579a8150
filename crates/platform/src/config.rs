//! Typed configuration from environment variables, with the seed's defaults.
//!
//! Values are read from an [`Env`] snapshot rather than straight from the process so that tests can
//! build configurations side by side without touching global state. A bad value is a
//! [`ConfigError`] naming the variable: the binaries print it and exit, never a panic trace.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use secrecy::{ExposeSecret, SecretString};

/// The four services of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Auth,
    Payments,
    Admin,
    Profile,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Auth,
        Service::Payments,
        Service::Admin,
        Service::Profile,
    ];

    /// The binary and log name, e.g. `auth-service`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth-service",
            Service::Payments => "payments-service",
            Service::Admin => "admin-service",
            Service::Profile => "profile-service",
        }
    }

    /// The prefix of the service's variables, e.g. `AUTH` in `AUTH_DATABASE_URL`.
    pub fn env_prefix(self) -> &'static str {
        match self {
            Service::Auth => "AUTH",
            Service::Payments => "PAYMENTS",
            Service::Admin => "ADMIN",
            Service::Profile => "PROFILE",
        }
    }

    /// The PostgreSQL schema that holds the service's own infrastructure tables and migration
    /// history, so that four services can share the legacy database without colliding.
    pub fn schema(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Payments => "payments",
            Service::Admin => "admin",
            Service::Profile => "profile",
        }
    }

    pub fn default_database_url(self) -> &'static str {
        match self {
            Service::Auth => "postgresql://postgres:postgres@localhost:5432/auth_db",
            Service::Payments => "postgresql://postgres:postgres@localhost:5433/payments_db",
            Service::Admin => "postgresql://postgres:postgres@localhost:5434/admin_db",
            Service::Profile => "postgresql://postgres:postgres@localhost:5435/profile_db",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Service::Auth => 3001,
            Service::Payments => 3002,
            Service::Admin => 3003,
            Service::Profile => 3004,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub const DEFAULT_SHARED_DATABASE_URL: &str =
    "postgresql://postgres:postgres@localhost:5432/mfe_poc2";
pub const DEFAULT_AUTH_SERVICE_URL: &str = "http://localhost:3001";
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@localhost:5672/%2f";

/// Which databases the services use: their own (`split`, the target) or the legacy shared one
/// (`shared`, before cutover and after a rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Split,
    Shared,
}

impl FromStr for Topology {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "split" => Ok(Topology::Split),
            "shared" => Ok(Topology::Shared),
            _ => Err("expected `split` or `shared`".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "pretty" | "" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

/// A configuration value that could not be used; names the variable, never echoes a secret.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            reason: reason.into(),
        }
    }
}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    /// The topology file that gave `DATABASE_TOPOLOGY`, when it was that file.
    topology_file: Option<std::path::PathBuf>,
}

impl Env {
    /// The process environment, as it is now, with the topology file's `DATABASE_TOPOLOGY` where
    /// the environment does not set it (see [`Env::with_topology_file`]).
    pub fn from_process() -> Self {
        let env = Self {
            vars: std::env::vars().collect(),
            topology_file: None,
        };
        let file = env.string_or("MFE_TOPOLOGY_FILE", DEFAULT_TOPOLOGY_FILE);
        env.with_topology_file(std::path::Path::new(&file))
    }

    /// `mfe migrate cutover` and `rollback` switch the platform's topology by writing a file of
    /// `KEY=VALUE` lines (`MFE_TOPOLOGY_FILE`, default `data/topology.env`); every service and
    /// `mfe dev` read its `DATABASE_TOPOLOGY` at start. A variable set in the environment wins.
    pub fn with_topology_file(mut self, path: &std::path::Path) -> Self {
        if self.get("DATABASE_TOPOLOGY").is_some() {
            return self;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            return self;
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(value) = line.strip_prefix("DATABASE_TOPOLOGY=") {
                self.vars
                    .insert("DATABASE_TOPOLOGY".into(), value.trim().to_string());
                self.topology_file = Some(path.to_path_buf());
            }
        }
        self
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            topology_file: None,
        }
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// The value of `var`, treating an empty value as unset (as shells and compose files often do).
    pub fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn string_or(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_string()
    }

    pub fn parse_or<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::new(var, e.to_string())),
        }
    }

    /// A secret that must be set and at least `min_len` characters long (shorter ones are
    /// guessable); the error names the variable, never the value.
    pub fn required_secret(&self, var: &str, min_len: usize) -> Result<SecretString, ConfigError> {
        match self.get(var) {
            None => Err(ConfigError::new(var, "is required")),
            Some(value) if value.len() < min_len => Err(ConfigError::new(
                var,
                format!("must be at least {min_len} characters"),
            )),
            Some(value) => Ok(value.to_string().into()),
        }
    }

    /// A duration written in milliseconds, at least 1.
    pub fn millis_or(&self, var: &str, default: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse_or(var, default)?;
        if ms == 0 {
            return Err(ConfigError::new(var, "must be at least 1 ms"));
        }
        Ok(Duration::from_millis(ms))
    }

    /// A duration written in whole seconds.
    pub fn seconds_or(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse_or(var, default.as_secs())?;
        if secs == 0 {
            return Err(ConfigError::new(var, "must be at least 1 second"));
        }
        Ok(Duration::from_secs(secs))
    }

    /// A PostgreSQL URL (one server or a libpq list of them), checked for shape so that a typo
    /// fails at start, naming the variable.
    pub fn postgres_url_or(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let url = self.string_or(var, default);
        crate::db::servers::parse(&url).map_err(|reason| ConfigError::new(var, reason))?;
        Ok(url)
    }

    /// An http(s) base URL, without its trailing slash.
    pub fn http_url_or(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let url = self.string_or(var, default);
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| ConfigError::new(var, "expected an http:// or https:// URL"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(ConfigError::new(var, "the URL has no host"));
        }
        Ok(url.trim_end_matches('/').to_string())
    }
}

/// Where `mfe migrate cutover` writes the platform's topology (`MFE_TOPOLOGY_FILE`).
pub const DEFAULT_TOPOLOGY_FILE: &str = "data/topology.env";

/// Settings a part of a service reads from the environment beside the platform's own
/// [`ServiceConfig`]: one shape for every service's settings, the hub's and auth's link, so that
/// a service's start is written once ([`crate::app`]) and a bad value is always a
/// [`ConfigError`] naming its variable.
pub trait FromEnv: Sized {
    fn from_env(config: &ServiceConfig, env: &Env) -> Result<Self, ConfigError>;
}

/// What every service needs to start, resolved from the environment.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub service: Service,
    /// Address to bind; `0` picks a free port (tests).
    pub host: String,
    pub port: u16,
    pub topology: Topology,
    /// Where the topology came from, for the start-up log: the environment, the topology file
    /// (with its path), or the default.
    pub topology_source: String,
    /// A database URL the service was given that its topology leaves unused (the variable's
    /// name): `{PREFIX}_DATABASE_URL` under `shared`.
    pub unused_database_url: Option<String>,
    /// The database the service uses under the configured topology.
    pub database_url: SecretString,
    pub db_max_connections: u32,
    pub auth_service_url: String,
    pub rabbitmq_url: SecretString,
    pub request_timeout: Duration,
    pub log_format: LogFormat,
}

impl ServiceConfig {
    pub fn from_env(service: Service, env: &Env) -> Result<Self, ConfigError> {
        let prefix = service.env_prefix();
        let topology = env.parse_or("DATABASE_TOPOLOGY", Topology::Split)?;
        let database_url = match topology {
            Topology::Split => env.postgres_url_or(
                &format!("{prefix}_DATABASE_URL"),
                service.default_database_url(),
            )?,
            Topology::Shared => {
                env.postgres_url_or("SHARED_DATABASE_URL", DEFAULT_SHARED_DATABASE_URL)?
            }
        };
        let topology_source = match (&env.topology_file, env.get("DATABASE_TOPOLOGY")) {
            (Some(file), _) => format!("the topology file {}", file.display()),
            (None, Some(_)) => "the environment (DATABASE_TOPOLOGY)".to_string(),
            (None, None) => "the default".to_string(),
        };
        let own_url = format!("{prefix}_DATABASE_URL");
        let unused_database_url =
            (topology == Topology::Shared && env.get(&own_url).is_some()).then_some(own_url);
        let db_max_connections: u32 = env.parse_or(&format!("{prefix}_DB_MAX_CONNECTIONS"), 10)?;
        if db_max_connections == 0 {
            return Err(ConfigError::new(
                format!("{prefix}_DB_MAX_CONNECTIONS"),
                "must be at least 1",
            ));
        }
        Ok(Self {
            service,
            host: env.string_or(&format!("{prefix}_SERVICE_HOST"), "0.0.0.0"),
            port: env.parse_or(&format!("{prefix}_SERVICE_PORT"), service.default_port())?,
            topology,
            topology_source,
            unused_database_url,
            database_url: database_url.into(),
            db_max_connections,
            auth_service_url: env.http_url_or("AUTH_SERVICE_URL", DEFAULT_AUTH_SERVICE_URL)?,
            rabbitmq_url: env.string_or("RABBITMQ_URL", DEFAULT_RABBITMQ_URL).into(),
            request_timeout: env.seconds_or("REQUEST_TIMEOUT_SECS", Duration::from_secs(30))?,
            log_format: env.parse_or("LOG_FORMAT", LogFormat::Text)?,
        })
    }
}

/// `url` with its password replaced by `***`, for logs and messages.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let masked = match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &authority[..colon],
                &url[scheme_end + 3 + at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    mask_query_passwords(&masked)
}

/// `?password=...` (and `sslpassword`) in a URL's query string: libpq and sqlx take a password
/// there too.
fn mask_query_passwords(url: &str) -> String {
    let Some(query_at) = url.find('?') else {
        return url.to_string();
    };
    let (head, query) = url.split_at(query_at + 1);
    let (query, fragment) = match query.find('#') {
        Some(hash) => query.split_at(hash),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("password")
                    || name.eq_ignore_ascii_case("sslpassword") =>
            {
                format!("{name}=***")
            }
            _ => param.to_string(),
        })
        .collect();
    format!("{head}{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_file_applies_unless_the_environment_says_otherwise() {
        let path = std::env::temp_dir().join(format!("topology-{}.env", std::process::id()));
        std::fs::write(&path, "# written by cutover\nDATABASE_TOPOLOGY=shared\n").unwrap();
        let env = Env::default().with_topology_file(&path);
        let config = ServiceConfig::from_env(Service::Auth, &env).unwrap();
        assert_eq!(config.topology, Topology::Shared);
        let env = Env::from_pairs([("DATABASE_TOPOLOGY", "split")]).with_topology_file(&path);
        assert_eq!(
            ServiceConfig::from_env(Service::Auth, &env)
                .unwrap()
                .topology,
            Topology::Split
        );
        let missing = Env::default().with_topology_file(std::path::Path::new("/nonexistent/t.env"));
        assert_eq!(
            ServiceConfig::from_env(Service::Auth, &missing)
                .unwrap()
                .topology,
            Topology::Split
        );
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn defaults_follow_the_seed() {
        let cfg = ServiceConfig::from_env(Service::Payments, &Env::default()).unwrap();
        assert_eq!(
            cfg.database_url.expose_secret(),
            "postgresql://postgres:postgres@localhost:5433/payments_db"
        );
        assert_eq!(cfg.port, 3002);
        assert_eq!(cfg.topology, Topology::Split);
        assert_eq!(cfg.auth_service_url, "http://localhost:3001");
    }

    #[test]
    fn shared_topology_uses_the_legacy_database() {
        let env = Env::from_pairs([
            ("DATABASE_TOPOLOGY", "shared"),
            ("SHARED_DATABASE_URL", "postgresql://u:p@db:5432/legacy"),
        ]);
        let cfg = ServiceConfig::from_env(Service::Profile, &env).unwrap();
        assert_eq!(
            cfg.database_url.expose_secret(),
            "postgresql://u:p@db:5432/legacy"
        );
    }

    #[test]
    fn urls_holding_passwords_stay_out_of_debug_output() {
        let env = Env::from_pairs([
            ("AUTH_DATABASE_URL", "postgresql://u:db-s3cret@db/auth"),
            ("RABBITMQ_URL", "amqp://u:mq-s3cret@mq:5672/%2f"),
        ]);
        let shown = format!(
            "{:?}",
            ServiceConfig::from_env(Service::Auth, &env).unwrap()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = ServiceConfig::from_env(
            Service::Auth,
            &Env::from_pairs([("AUTH_SERVICE_PORT", "http")]),
        )
        .unwrap_err();
        assert_eq!(err.var, "AUTH_SERVICE_PORT");
        let err = ServiceConfig::from_env(
            Service::Auth,
            &Env::from_pairs([("DATABASE_TOPOLOGY", "both")]),
        )
        .unwrap_err();
        assert_eq!(err.var, "DATABASE_TOPOLOGY");
        let err = ServiceConfig::from_env(
            Service::Auth,
            &Env::from_pairs([("AUTH_DATABASE_URL", "mysql://x/y")]),
        )
        .unwrap_err();
        assert_eq!(err.var, "AUTH_DATABASE_URL");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("postgresql://postgres:s3cr@t@localhost:5432/auth_db"),
            "postgresql://postgres:***@localhost:5432/auth_db"
        );
        assert_eq!(
            mask_url("postgresql://localhost/auth_db"),
            "postgresql://localhost/auth_db"
        );
        assert_eq!(
            mask_url("amqp://guest:guest@localhost:5672/%2f"),
            "amqp://guest:***@localhost:5672/%2f"
        );
    }

    #[test]
    fn a_service_knows_where_its_topology_came_from_and_which_url_it_leaves_unused() {
        let path = std::env::temp_dir().join(format!("topology-src-{}.env", std::process::id()));
        std::fs::write(&path, "DATABASE_TOPOLOGY=shared\n").unwrap();
        let env = Env::from_pairs([("AUTH_DATABASE_URL", "postgresql://localhost/auth_db")])
            .with_topology_file(&path);
        let cfg = ServiceConfig::from_env(Service::Auth, &env).unwrap();
        assert_eq!(cfg.topology, Topology::Shared);
        assert_eq!(
            cfg.topology_source,
            format!("the topology file {}", path.display())
        );
        assert_eq!(
            cfg.unused_database_url.as_deref(),
            Some("AUTH_DATABASE_URL")
        );

        let env = Env::from_pairs([("DATABASE_TOPOLOGY", "split")]).with_topology_file(&path);
        let cfg = ServiceConfig::from_env(Service::Auth, &env).unwrap();
        assert_eq!(cfg.topology_source, "the environment (DATABASE_TOPOLOGY)");
        assert_eq!(cfg.unused_database_url, None);

        let cfg = ServiceConfig::from_env(Service::Auth, &Env::default()).unwrap();
        assert_eq!(cfg.topology_source, "the default");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_password_in_the_query_string_is_masked() {
        assert_eq!(
            mask_url("postgresql://postgres@localhost/db?sslmode=disable&password=q-s3cret"),
            "postgresql://postgres@localhost/db?sslmode=disable&password=***"
        );
        assert_eq!(
            mask_url("postgresql://u:p@localhost/db?PASSWORD=x&sslpassword=y&application_name=a"),
            "postgresql://u:***@localhost/db?PASSWORD=***&sslpassword=***&application_name=a"
        );
        assert_eq!(
            mask_url("postgresql://localhost/db?application_name=a"),
            "postgresql://localhost/db?application_name=a"
        );
    }
}
