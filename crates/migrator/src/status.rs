//! `status`: where each phase and table stands, read from the journals in the service databases.

use platform::Service;
use serde::Serialize;

use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::journal;
use crate::error::Result;
use schema::contract::tables_of;

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
    /// Where the migration stands (`None`: not started, or no service database reachable).
    pub state: Option<crate::engine::journal::state::State>,
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
    pub slot: crate::rollback::way_back::WayBack,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
        if let Some(slot) = crate::rollback::way_back::info(&mut conn).await? {
            way_back.push(WayBackState {
                service: service.name(),
                slot,
            });
        }
        if journal::exists(&mut conn).await? {
            // Brings a journal written by an older version of the tool up to date (adds columns).
            journal::ensure(&mut conn).await?;
        }
        let read = read_service(&mut conn, service).await?;
        tables.extend(read.tables.into_iter().map(|t| TableStatus {
            table: t.table,
            service: t.service,
            state: t.state,
            chunks_done: t.chunks_done as usize,
            chunks: t.chunks as usize,
            rows_copied: t.rows as i64,
        }));
        phases.extend(read.runs.into_iter().map(|r| PhaseRun {
            service: r.service,
            phase: r.phase,
            outcome: r.outcome,
            at: r.at,
        }));
        sync.extend(read.positions);
    }
    Ok(Status {
        state: crate::engine::journal::state::current(endpoints)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("the migration's state: {e}");
                None
            }),
        tables,
        phases,
        capture,
        sync,
        way_back,
    })
}

/// What one service database's journal says, read without writing (`mfe migrate status` and the
/// live view both read it so).
#[derive(Debug, Clone, Default)]
pub struct ServiceJournal {
    /// The migration's state as this database records it.
    pub state: Option<crate::engine::journal::state::State>,
    /// The way back's slot here, after a cutover.
    pub way_back: Option<crate::rollback::way_back::WayBack>,
    pub tables: Vec<TableJournal>,
    /// The latest run of each phase.
    pub runs: Vec<Run>,
    pub positions: Vec<SyncPosition>,
}

#[derive(Debug, Clone)]
pub struct TableJournal {
    pub table: &'static str,
    pub service: &'static str,
    /// `not started`, `loading`, `indexing` or `done`.
    pub state: String,
    pub estimated_rows: u64,
    /// Rows of the chunks done.
    pub rows: u64,
    pub chunks_done: u64,
    pub chunks: u64,
    /// The table's size in the service database.
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Run {
    pub service: &'static str,
    pub phase: String,
    pub outcome: String,
    /// UTC, to the millisecond.
    pub at: String,
    pub detail: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct TableRow {
    name: String,
    state: Option<String>,
    estimated_rows: i64,
    chunks: i64,
    chunks_done: i64,
    rows: i64,
    bytes: Option<i64>,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a `timestamptz` (in UTC whatever the session's time zone).
pub const ISO_UTC: &str = "YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"";

/// The journal of `service`'s database `conn` is connected to: every table of the service (with its
/// size, and its chunks in one statement), the latest run of each phase, the sync positions. A
/// database without a journal reports its tables not started.
pub async fn read_service(
    conn: &mut sqlx::PgConnection,
    service: Service,
) -> sqlx::Result<ServiceJournal> {
    let has_journal: bool =
        sqlx::query_scalar("SELECT to_regclass('mfe_migration.chunks') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    let rows = table_rows(conn, service, has_journal).await?;
    let mut read = ServiceJournal {
        way_back: crate::rollback::way_back::info(&mut *conn).await?,
        ..ServiceJournal::default()
    };
    if has_journal {
        read.state = crate::engine::journal::state::recorded(&mut *conn)
            .await
            .map_err(|e| match e {
                crate::MigrateError::Database(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
    }
    for table in tables_of(service) {
        let Some(row) = rows.iter().find(|r| r.name == table.name) else {
            continue;
        };
        read.tables.push(TableJournal {
            table: table.name,
            service: service.name(),
            state: row.state.clone().unwrap_or_else(|| "not started".into()),
            estimated_rows: row.estimated_rows.max(0) as u64,
            rows: row.rows.max(0) as u64,
            chunks_done: row.chunks_done.max(0) as u64,
            chunks: row.chunks.max(0) as u64,
            bytes: row.bytes.map(|b| b.max(0) as u64),
        });
    }
    if !has_journal {
        return Ok(read);
    }
    read.runs = latest_runs(conn, service).await?;
    read.positions = sync_positions(conn, service).await?;
    Ok(read)
}

/// Each of `service`'s tables with its journal (none yet: not started) and its size.
async fn table_rows(
    conn: &mut sqlx::PgConnection,
    service: Service,
    has_journal: bool,
) -> sqlx::Result<Vec<TableRow>> {
    let names: Vec<String> = tables_of(service).map(|t| t.name.to_string()).collect();
    let sql = if has_journal {
        "SELECT n AS name, t.state, coalesce(t.estimated_rows, 0) AS estimated_rows,
                count(c.chunk) AS chunks, count(c.done_at) AS chunks_done,
                coalesce(sum(c.rows) FILTER (WHERE c.done_at IS NOT NULL), 0)::bigint AS rows,
                pg_table_size(to_regclass(format('public.%I', n))) AS bytes
         FROM unnest($1::text[]) n
         LEFT JOIN mfe_migration.tables t ON t.table_name = n
         LEFT JOIN mfe_migration.chunks c ON c.table_name = n
         GROUP BY n, t.state, t.estimated_rows"
    } else {
        "SELECT n AS name, NULL::text AS state, 0::bigint AS estimated_rows,
                0::bigint AS chunks, 0::bigint AS chunks_done, 0::bigint AS rows,
                pg_table_size(to_regclass(format('public.%I', n))) AS bytes
         FROM unnest($1::text[]) n"
    };
    sqlx::query_as(sql).bind(&names).fetch_all(conn).await
}

/// The latest run of each phase.
async fn latest_runs(conn: &mut sqlx::PgConnection, service: Service) -> sqlx::Result<Vec<Run>> {
    let runs: Vec<(String, String, String, serde_json::Value)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT ON (phase) phase, outcome, to_char(at AT TIME ZONE 'UTC', '{ISO_UTC}'), \
                    detail
             FROM mfe_migration.runs ORDER BY phase, at DESC, id DESC"
        )))
        .fetch_all(conn)
        .await?;
    Ok(runs
        .into_iter()
        .map(|(phase, outcome, at, detail)| Run {
            service: service.name(),
            phase,
            outcome,
            at,
            detail,
        })
        .collect())
}

/// Where the sync stands here, if it ever ran.
async fn sync_positions(
    conn: &mut sqlx::PgConnection,
    service: Service,
) -> sqlx::Result<Vec<SyncPosition>> {
    let has_sync: bool =
        sqlx::query_scalar("SELECT to_regclass('mfe_migration.sync_position') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !has_sync {
        return Ok(Vec::new());
    }
    let positions: Vec<(String, i64, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT commit_lsn::text, transactions, \
                    to_char(commit_time AT TIME ZONE 'UTC', '{ISO_UTC}') \
             FROM mfe_migration.sync_position"
        )))
        .fetch_all(conn)
        .await?;
    Ok(positions
        .into_iter()
        .map(|(position, transactions, commit_time)| SyncPosition {
            service: service.name(),
            position,
            transactions,
            commit_time,
        })
        .collect())
}
