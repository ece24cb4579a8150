//! `plan`: what goes where, and whether the servers allow a live migration
//! ([`crate::plan::preflight`]). Reads catalogs and settings only; changes nothing anywhere.

pub mod preflight;

use platform::Service;
use serde::Serialize;

use crate::endpoints::Endpoints;
use crate::engine::check;
use crate::engine::connect;
use crate::error::{MigrateError, Result};
use schema::contract::{FOREIGN_KEYS, TABLES};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TablePlan {
    pub table: &'static str,
    pub service: &'static str,
    pub target: String,
    /// PostgreSQL's estimate (`pg_class.reltuples`); -1 when the table was never analysed.
    pub estimated_rows: i64,
    pub columns: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForeignKeyPlan {
    pub name: &'static str,
    pub reference: String,
    /// `kept` inside one service database, or `dropped` (checked by `verify` instead).
    pub fate: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub legacy: String,
    pub tables: Vec<TablePlan>,
    pub foreign_keys: Vec<ForeignKeyPlan>,
    /// Whether `copy` can capture changes for live sync, and any slot already there.
    pub capture: crate::cdc::slot::CaptureState,
    /// The preflight of a live migration: each check ok, warn or fail, with what to change.
    pub preflight: Vec<crate::plan::preflight::Check>,
}

impl Plan {
    /// Whether a preflight check failed.
    pub fn failed(&self) -> bool {
        self.preflight
            .iter()
            .any(|c| c.level == crate::plan::preflight::Level::Fail)
    }
}

/// Checks the legacy database against the contract and describes the migration.
pub async fn plan(endpoints: &Endpoints, opts: &crate::plan::preflight::Options) -> Result<Plan> {
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let differences = check::legacy_differences(&mut legacy).await?;
    if !differences.is_empty() {
        return Err(MigrateError::ContractMismatch(differences));
    }
    let mut tables = Vec::new();
    for table in TABLES {
        let estimated_rows: f32 = sqlx::query_scalar(
            "SELECT reltuples FROM pg_class WHERE oid = ('public.' || quote_ident($1))::regclass",
        )
        .bind(table.name)
        .fetch_one(&mut legacy)
        .await?;
        tables.push(TablePlan {
            table: table.name,
            service: table.service.name(),
            target: target_name(endpoints, table.service),
            estimated_rows: estimated_rows as i64,
            columns: table.columns.len(),
        });
    }
    let foreign_keys = FOREIGN_KEYS
        .iter()
        .map(|fk| ForeignKeyPlan {
            name: fk.name,
            reference: format!(
                "{}.{} -> {}.{}",
                fk.table, fk.column, fk.references, fk.referenced_column
            ),
            fate: if fk.kept { "kept" } else { "dropped" },
        })
        .collect();
    let capture = crate::cdc::slot::state(&mut legacy).await?;
    let (servers, facts) = crate::plan::preflight::gather(endpoints, opts).await?;
    Ok(Plan {
        legacy: platform::config::mask_url(endpoints.legacy()),
        tables,
        foreign_keys,
        capture,
        preflight: crate::plan::preflight::assess(&servers, &facts, opts),
    })
}

fn target_name(endpoints: &Endpoints, service: Service) -> String {
    platform::config::mask_url(endpoints.target(service))
}
