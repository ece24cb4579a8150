//! `copy`: every legacy table into its service database with binary COPY, no files in between.
//!
//! - One consistent snapshot: a coordinator exports a REPEATABLE READ snapshot of the legacy
//!   database and every worker reads through it, so a payment and its sender come from one instant.
//! - Parallel: tables, and key ranges of large tables, are copied by `jobs` workers at once.
//! - Indexes after the load, exactly once across crashes: see [`crate::load`].

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::contract::{TABLES, Table};
use crate::endpoints::Endpoints;
use crate::error::{MigrateError, Result};
use crate::load::{self, Feed, TableLoad};
use crate::progress::Progress;
use crate::sql::ident;
use crate::{check, connect, journal};

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Concurrent chunk copies (source and target connections each).
    pub jobs: usize,
    /// Tables larger than this are split into key ranges of about this many rows.
    pub chunk_rows: u64,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            jobs: 4,
            chunk_rows: 250_000,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    pub tables: Vec<TableLoad>,
    pub seconds: f64,
}

pub async fn copy(
    endpoints: &Endpoints,
    opts: &CopyOptions,
    progress: Arc<dyn Progress>,
) -> Result<CopyReport> {
    let started = Instant::now();
    let jobs = opts.jobs.max(1);
    let mut coordinator = connect::connection("legacy", &endpoints.legacy).await?;
    let differences = check::legacy_differences(&mut coordinator).await?;
    if !differences.is_empty() {
        return Err(MigrateError::ContractMismatch(differences));
    }
    let pools = load::target_pools(endpoints, jobs as u32 + 1).await?;
    let entries = load::preflight(&pools).await?;

    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut coordinator)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut coordinator)
        .await?;
    for table in TABLES.iter().filter(|t| entries[t.name].is_none()) {
        let estimate = estimate_rows(&mut coordinator, table).await?;
        let bounds = chunk_bounds(&mut coordinator, table, estimate, opts.chunk_rows).await?;
        let mut target = pools[table.service.name()].acquire().await?;
        load::start_table(&mut target, table, estimate, &bounds).await?;
    }
    let feed = Feed::Legacy {
        url: endpoints.legacy.clone(),
        snapshot,
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
        journal::record_run(
            &mut conn,
            "copy",
            "ok",
            &serde_json::to_value(&report).unwrap_or_default(),
        )
        .await?;
    }
    Ok(report)
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

/// Key ranges `[lower, upper)` of about `chunk_rows` rows each, in the source's own key order (so
/// each range is an index range scan there). The first range has no lower bound and the last no
/// upper bound, so every key lands in exactly one range whatever its value.
async fn chunk_bounds(
    source: &mut PgConnection,
    table: &Table,
    estimate: i64,
    chunk_rows: u64,
) -> Result<Vec<(Option<String>, Option<String>)>> {
    if estimate <= chunk_rows as i64 {
        return Ok(vec![(None, None)]);
    }
    let key = ident(table.key);
    let cuts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT k FROM (SELECT {key} AS k, row_number() OVER (ORDER BY {key}) AS n FROM public.{t}) s
         WHERE n % {step} = 0 ORDER BY k",
        t = ident(table.name),
        step = chunk_rows.max(1)
    )))
    .fetch_all(&mut *source)
    .await?;
    let mut bounds = Vec::with_capacity(cuts.len() + 1);
    let mut lower = None;
    for cut in cuts {
        bounds.push((lower.take(), Some(cut.clone())));
        lower = Some(cut);
    }
    bounds.push((lower, None));
    Ok(bounds)
}
