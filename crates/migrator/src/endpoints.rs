//! Which databases a migration reads and writes: the legacy database and the four service
//! databases, from the same variables (and defaults) the services use.

use std::collections::BTreeMap;

use platform::config::{DEFAULT_SHARED_DATABASE_URL, mask_url};
use platform::{ConfigError, Env, Service};

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub legacy: String,
    targets: BTreeMap<&'static str, String>,
}

impl Endpoints {
    /// `SHARED_DATABASE_URL` and the four `<SERVICE>_DATABASE_URL`s (never the topology: the
    /// migration always goes from the shared database to the split ones).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let legacy = env.postgres_url_or("SHARED_DATABASE_URL", DEFAULT_SHARED_DATABASE_URL)?;
        let mut targets = BTreeMap::new();
        for service in Service::ALL {
            let var = format!("{}_DATABASE_URL", service.env_prefix());
            targets.insert(
                service.name(),
                env.postgres_url_or(&var, service.default_database_url())?,
            );
        }
        Ok(Self { legacy, targets })
    }

    pub fn new(legacy: String, targets: impl IntoIterator<Item = (Service, String)>) -> Self {
        Self {
            legacy,
            targets: targets.into_iter().map(|(s, u)| (s.name(), u)).collect(),
        }
    }

    pub fn target(&self, service: Service) -> &str {
        &self.targets[service.name()]
    }

    /// Each URL with its password masked, for messages.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![("legacy".to_string(), mask_url(&self.legacy))];
        out.extend(
            self.targets
                .iter()
                .map(|(name, url)| (name.to_string(), mask_url(url))),
        );
        out
    }
}
