//! Which databases a migration reads and writes: the legacy database and the four service
//! databases (the CLI resolves them from the services' variables and defaults).

use std::collections::BTreeMap;

use platform::Service;
use platform::config::{ExposeSecret, SecretString};

/// The URLs may hold passwords: `Debug` shows none of them.
#[derive(Debug, Clone)]
pub struct Endpoints {
    legacy: SecretString,
    targets: BTreeMap<&'static str, SecretString>,
}

impl Endpoints {
    pub fn new(legacy: String, targets: impl IntoIterator<Item = (Service, String)>) -> Self {
        Self {
            legacy: legacy.into(),
            targets: targets
                .into_iter()
                .map(|(s, u)| (s.name(), u.into()))
                .collect(),
        }
    }

    /// The legacy database's URL.
    pub fn legacy(&self) -> &str {
        self.legacy.expose_secret()
    }

    pub fn target(&self, service: Service) -> &str {
        self.targets[service.name()].expose_secret()
    }
}
