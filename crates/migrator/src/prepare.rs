//! `prepare`: the four service databases, created if missing, with each service's own migrations
//! (the very `MIGRATOR`s the services run at start: one source of truth for the schema).

use platform::Service;
use serde::Serialize;

use crate::endpoints::Endpoints;
use crate::engine::check;
use crate::engine::connect;
use crate::engine::journal;
use crate::error::{MigrateError, Result};

use schema::migrator;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prepared {
    pub service: &'static str,
    pub database: String,
    pub migrations: usize,
}

pub async fn prepare(endpoints: &Endpoints) -> Result<Vec<Prepared>> {
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let differences = check::legacy_differences(&mut legacy).await?;
    if !differences.is_empty() {
        return Err(MigrateError::ContractMismatch(differences));
    }
    let mut out = Vec::new();
    for service in Service::ALL {
        let url = endpoints.target(service);
        platform::db::ensure_database(url)
            .await
            .map_err(|e| MigrateError::CreateDatabase(e.to_string()))?;
        let mut conn = connect::connection(service.name(), url).await?;
        let migrator = migrator(service);
        migrator
            .run(&mut conn)
            .await
            .map_err(|source| MigrateError::Migrations {
                target: service.name().into(),
                source,
            })?;
        journal::ensure(&mut conn).await?;
        journal::record_run(&mut conn, "prepare", "ok", &serde_json::json!({})).await?;
        out.push(Prepared {
            service: service.name(),
            database: platform::config::mask_url(url),
            migrations: migrator.iter().count(),
        });
    }
    crate::engine::journal::state::advance(
        endpoints,
        crate::engine::journal::state::State::Prepared,
        "prepare",
    )
    .await?;
    Ok(out)
}
