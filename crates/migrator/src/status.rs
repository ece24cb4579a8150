//! `status`: where each phase and table stands, read from the journals in the service databases.

use platform::Service;
use serde::Serialize;

use crate::contract::tables_of;
use crate::endpoints::Endpoints;
use crate::error::Result;
use crate::{connect, journal};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    pub table: &'static str,
    pub service: &'static str,
    /// `not started`, `loading`, `indexing`, `done`, or `unreachable`.
    pub state: String,
    pub chunks_done: usize,
    pub chunks: usize,
    pub rows_copied: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRun {
    pub service: &'static str,
    pub phase: String,
    pub outcome: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub tables: Vec<TableStatus>,
    /// The latest run of each phase in each service database.
    pub phases: Vec<PhaseRun>,
    /// The capture slot on the legacy database (`None` when the legacy database is unreachable).
    pub capture: Option<crate::cdc::slot::CaptureState>,
    /// Where each service database's sync stands.
    pub sync: Vec<SyncPosition>,
    /// After cutover: how far behind the way back is, per service database.
    pub way_back: Vec<WayBackState>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WayBackState {
    pub service: &'static str,
    #[serde(flatten)]
    pub slot: crate::cdc::back::WayBack,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPosition {
    pub service: &'static str,
    /// The commit position of the last legacy transaction applied there.
    pub position: String,
    pub transactions: i64,
    /// When that transaction committed in the legacy database.
    pub commit_time: Option<String>,
}

/// Writes nothing but a journal upgrade: a service database without a journal is reported as not
/// started.
pub async fn status(endpoints: &Endpoints) -> Result<Status> {
    let mut tables = Vec::new();
    let mut phases = Vec::new();
    let mut sync = Vec::new();
    let mut way_back = Vec::new();
    let capture = match connect::connection("legacy", endpoints.legacy()).await {
        Ok(mut legacy) => Some(crate::cdc::slot::state(&mut legacy).await?),
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    };
    for service in Service::ALL {
        let conn = connect::connection(service.name(), endpoints.target(service)).await;
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("{e}");
                for table in tables_of(service) {
                    tables.push(TableStatus {
                        table: table.name,
                        service: service.name(),
                        state: "unreachable".into(),
                        chunks_done: 0,
                        chunks: 0,
                        rows_copied: 0,
                    });
                }
                continue;
            }
        };
        if let Some(slot) = crate::cdc::back::info(&mut conn).await? {
            way_back.push(WayBackState {
                service: service.name(),
                slot,
            });
        }
        let has_journal = journal::exists(&mut conn).await?;
        if has_journal {
            // Brings a journal written by an older version of the tool up to date (adds columns).
            journal::ensure(&mut conn).await?;
        }
        for table in tables_of(service) {
            let (state, chunks) = if has_journal {
                let entry = journal::table(&mut conn, table.name).await?;
                let chunks = journal::chunks(&mut conn, table.name).await?;
                (
                    entry
                        .map(|e| e.state.as_str().to_string())
                        .unwrap_or_else(|| "not started".into()),
                    chunks,
                )
            } else {
                ("not started".into(), Vec::new())
            };
            tables.push(TableStatus {
                table: table.name,
                service: service.name(),
                state,
                chunks_done: chunks.iter().filter(|c| c.is_done()).count(),
                chunks: chunks.len(),
                rows_copied: chunks.iter().filter_map(|c| c.rows).sum(),
            });
        }
        if has_journal {
            let runs: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT DISTINCT ON (phase) phase, outcome, to_char(at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                 FROM mfe_migration.runs ORDER BY phase, at DESC",
            )
            .fetch_all(&mut conn)
            .await?;
            phases.extend(runs.into_iter().map(|(phase, outcome, at)| PhaseRun {
                service: service.name(),
                phase,
                outcome,
                at,
            }));
            let positions: Vec<(String, i64, Option<String>)> = sqlx::query_as(
                "SELECT commit_lsn::text, transactions, \
                        to_char(commit_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                 FROM mfe_migration.sync_position \
                 WHERE to_regclass('mfe_migration.sync_position') IS NOT NULL",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
            sync.extend(
                positions
                    .into_iter()
                    .map(|(position, transactions, commit_time)| SyncPosition {
                        service: service.name(),
                        position,
                        transactions,
                        commit_time,
                    }),
            );
        }
    }
    Ok(Status {
        tables,
        phases,
        capture,
        sync,
        way_back,
    })
}
