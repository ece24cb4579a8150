//! `copy`: every legacy table into its service database with binary COPY, no files in between.
//!
//! - One consistent snapshot: a coordinator exports a REPEATABLE READ snapshot of the legacy
//!   database and every worker reads through it, so a payment and its sender come from one instant.
//! - Parallel: tables, and heap block ranges of large tables, are copied by `jobs` workers at once.
//! - Indexes after the load, exactly once across crashes: see [`crate::engine::load`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};

use crate::cdc::pgoutput::Lsn;
use crate::cdc::slot::{self, Capability};
use crate::endpoints::Endpoints;
use crate::engine::check;
use crate::engine::connect;
use crate::engine::journal;
use crate::engine::journal::TableState;
use crate::engine::journal::state::{self, State};
use crate::engine::load::{self, Feed, TableLoad};
use crate::engine::sql::ident;
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use schema::contract::{TABLES, Table};

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Concurrent chunk copies (source and target connections each).
    pub jobs: usize,
    /// Tables larger than this are split into heap block ranges of about this many rows.
    pub chunk_rows: u64,
    /// Rows per second at most, over every job (0: no ceiling).
    pub max_rows_per_second: u64,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            jobs: 4,
            chunk_rows: 250_000,
            max_rows_per_second: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    pub tables: Vec<TableLoad>,
    pub seconds: f64,
}

type Pools = BTreeMap<&'static str, PgPool>;
type Entries = BTreeMap<&'static str, Option<journal::TableEntry>>;

pub async fn copy(
    endpoints: &Endpoints,
    opts: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let started = Instant::now();
    let jobs = opts.jobs.max(1);
    let mut coordinator = connect::connection("legacy", endpoints.legacy()).await?;
    let differences = check::legacy_differences(&mut coordinator).await?;
    if !differences.is_empty() {
        return Err(MigrateError::ContractMismatch(differences));
    }
    let targets = load::open_targets(endpoints, jobs as u32 + 1).await?;
    let pools = &targets.pools;
    let entries = load::preflight(pools).await?;
    state::advance(endpoints, State::Copying, "copy").await?;

    // The capture slot first, the snapshot after: see `cdc::slot`.
    let capture = capture(&mut coordinator, &entries, progress.as_ref()).await?;
    let snapshot = export_snapshot(&mut coordinator, pools, capture.as_ref()).await?;
    plan_tables(
        &mut coordinator,
        pools,
        &entries,
        opts,
        &snapshot,
        progress.as_ref(),
    )
    .await?;
    let feed = Feed::Legacy {
        url: endpoints.legacy().to_string(),
        snapshot: snapshot.id,
        throttle: crate::engine::throttle::Throttle::new(opts.max_rows_per_second).map(Arc::new),
    };
    let loaded = load::run(pools.clone(), feed, jobs, progress).await;
    // The snapshot had to outlive every worker's import of it; now it can go.
    let _ = coordinator.close().await;
    let report = CopyReport {
        tables: loaded?,
        seconds: started.elapsed().as_secs_f64(),
    };
    for pool in pools.values() {
        let mut conn = pool.acquire().await?;
        let detail = serde_json::to_value(&report).unwrap_or_default();
        journal::record_run(&mut conn, "copy", "ok", &detail).await?;
    }
    state::advance(endpoints, State::Copied, "copy").await?;
    Ok(report)
}

/// The capture slot, when the server allows it: its consistent position and name. A copy that
/// starts afresh starts a fresh stream too (a slot left by an earlier attempt would replay all
/// it kept); a resumed copy keeps its slot.
async fn capture(
    coordinator: &mut PgConnection,
    entries: &Entries,
    progress: &dyn Progress,
) -> Result<Option<(Lsn, String)>> {
    let fresh = entries.values().all(Option::is_none);
    let has_slot = slot::info(coordinator).await?.is_some();
    match slot::capability(coordinator).await? {
        // A resumed copy whose first run had no slot: a slot made now would miss what changed
        // since that run's snapshot in the chunks already copied.
        Capability::Available if !fresh && !has_slot => {
            progress.note(
                "live sync unavailable for this copy: its first run made no capture slot; \
                 copy again into empty databases to sync live, or use `sync --method diff`",
            );
            Ok(None)
        }
        Capability::Available => {
            if fresh && slot::drop(coordinator).await? {
                progress.note("dropped the capture slot of an earlier copy: starting a new one");
            }
            let consistent = slot::create(coordinator).await?;
            Ok(Some((consistent, slot::slot_of(coordinator).await?)))
        }
        Capability::Unavailable(why) => {
            progress.note(&format!(
                "live sync unavailable: {why}. Writes made during the copy are not captured; \
                 stop them, or run `mfe migrate sync --method diff` afterwards"
            ));
            Ok(None)
        }
    }
}

/// The copy's snapshot, exported for the workers.
struct Snapshot {
    id: String,
    /// Its xmax, low 32 bits: the width of `xmin`, which `changed_since` compares with it.
    xmax: i64,
}

/// Opens the copy's snapshot on `coordinator` (which holds it until the workers are done), and
/// records in every target up to where it may hold changes the capture also streams.
async fn export_snapshot(
    coordinator: &mut PgConnection,
    pools: &Pools,
    capture: Option<&(Lsn, String)>,
) -> Result<Snapshot> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *coordinator)
        .await?;
    let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *coordinator)
        .await?;
    if let Some((consistent, slot_name)) = capture {
        // Every commit the snapshot sees is at or before this position.
        // The insert position: with asynchronous commit a transaction the snapshot sees may
        // not be written yet.
        let horizon: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(&mut *coordinator)
            .await?;
        for pool in pools.values() {
            let mut conn = pool.acquire().await?;
            record_capture(&mut conn, slot_name, *consistent, &horizon).await?;
        }
    }
    let xmax: i64 = sqlx::query_scalar(
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint % 4294967296",
    )
    .fetch_one(coordinator)
    .await?;
    Ok(Snapshot { id, xmax })
}

/// Each table's chunks in the journal: planned for a table copied for the first time, planned
/// again for one an interrupted run was loading whose legacy rows moved since; the others
/// resume as the journal has them.
async fn plan_tables(
    coordinator: &mut PgConnection,
    pools: &Pools,
    entries: &Entries,
    opts: &CopyOptions,
    snapshot: &Snapshot,
    progress: &dyn Progress,
) -> Result<()> {
    let xmax = Some(snapshot.xmax);
    for table in TABLES {
        let mut target = pools[table.service.name()].acquire().await?;
        match &entries[table.name] {
            None => {
                let estimate = estimate_rows(coordinator, table).await?;
                let bounds = block_bounds(coordinator, table, estimate, opts.chunk_rows).await?;
                load::start_table(&mut target, table, estimate, xmax, &bounds).await?;
            }
            Some(entry) if entry.state == TableState::Loading => {
                if !changed_since(coordinator, table, entry.snapshot_xmax).await? {
                    continue;
                }
                // Rows moved since the interrupted run: block ranges no longer partition the
                // table as they did, so this table starts over (the others resume).
                tracing::warn!(
                    table = table.name,
                    "the legacy table changed since the interrupted copy; copying it again"
                );
                progress.table_step(
                    table.name,
                    "changed since the interrupted run: starting over",
                );
                let estimate = estimate_rows(coordinator, table).await?;
                let bounds = block_bounds(coordinator, table, estimate, opts.chunk_rows).await?;
                let mut tx = target.begin().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "TRUNCATE public.{}",
                    ident(table.name)
                )))
                .execute(&mut *tx)
                .await?;
                journal::replan_table(&mut tx, table.name, estimate, xmax, &bounds).await?;
                tx.commit().await?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Records in a target where the capture starts and up to where the copy's snapshot may already
/// hold its changes (the latest snapshot's, when a copy is resumed).
async fn record_capture(
    conn: &mut PgConnection,
    slot_name: &str,
    consistent: Lsn,
    horizon: &str,
) -> Result<()> {
    sqlx::raw_sql(crate::engine::journal::position::POSITION_SQL)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO mfe_migration.capture (slot, consistent_lsn, horizon_lsn) \
         VALUES ($1, $2::text::pg_lsn, $3::text::pg_lsn) \
         ON CONFLICT (slot) DO UPDATE SET consistent_lsn = EXCLUDED.consistent_lsn, \
             horizon_lsn = GREATEST(mfe_migration.capture.horizon_lsn, EXCLUDED.horizon_lsn)",
    )
    .bind(slot_name)
    .bind(consistent.to_string())
    .bind(horizon)
    .execute(conn)
    .await?;
    Ok(())
}

async fn estimate_rows(source: &mut PgConnection, table: &Table) -> Result<i64> {
    let estimate: f32 = sqlx::query_scalar(
        "SELECT reltuples FROM pg_class WHERE oid = ('public.' || quote_ident($1))::regclass",
    )
    .bind(table.name)
    .fetch_one(&mut *source)
    .await?;
    if estimate >= 0.0 {
        return Ok(estimate as i64);
    }
    // Never analysed: count, inside the snapshot.
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM public.{}",
        ident(table.name)
    )))
    .fetch_one(&mut *source)
    .await?;
    Ok(count)
}

/// Whether any row of the legacy table was written (inserted or updated) after the snapshot
/// whose xmax is `xmax` (modulo 2^32, within the 2^31 window xid comparison allows).
async fn changed_since(
    source: &mut PgConnection,
    table: &Table,
    xmax: Option<i64>,
) -> Result<bool> {
    let Some(xmax) = xmax else { return Ok(true) };
    let changed: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM public.{} WHERE (xmin::text::bigint - $1 + 4294967296) % 4294967296 < 2147483648)",
        ident(table.name)
    )))
    .bind(xmax)
    .fetch_one(&mut *source)
    .await?;
    Ok(changed)
}

/// Ranges of heap blocks `[lower, upper)` holding about `chunk_rows` rows each. The first range
/// has no lower bound and the last no upper bound, so every row of the snapshot, wherever it
/// sits, lands in exactly one range.
async fn block_bounds(
    source: &mut PgConnection,
    table: &Table,
    estimate: i64,
    chunk_rows: u64,
) -> Result<Vec<(Option<String>, Option<String>)>> {
    if estimate <= chunk_rows as i64 {
        return Ok(vec![(None, None)]);
    }
    let blocks: i64 = sqlx::query_scalar(
        "SELECT pg_relation_size(('public.' || quote_ident($1))::regclass) / current_setting('block_size')::bigint",
    )
    .bind(table.name)
    .fetch_one(&mut *source)
    .await?;
    let chunks = (estimate as u64).div_ceil(chunk_rows.max(1)).max(1) as i64;
    let step = (blocks.max(1) + chunks - 1) / chunks;
    let mut bounds = Vec::new();
    let mut lower = None;
    let mut next = step;
    while next < blocks {
        bounds.push((lower.take(), Some(next.to_string())));
        lower = Some(next.to_string());
        next += step;
    }
    bounds.push((lower, None));
    Ok(bounds)
}
