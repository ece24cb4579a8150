//! Which databases a migration reads and writes: the legacy database and the four service
//! databases (the CLI resolves them from the services' variables and defaults).

use std::collections::BTreeMap;

use platform::Service;

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub legacy: String,
    targets: BTreeMap<&'static str, String>,
}

impl Endpoints {
    pub fn new(legacy: String, targets: impl IntoIterator<Item = (Service, String)>) -> Self {
        Self {
            legacy,
            targets: targets.into_iter().map(|(s, u)| (s.name(), u)).collect(),
        }
    }

    pub fn target(&self, service: Service) -> &str {
        &self.targets[service.name()]
    }
}
