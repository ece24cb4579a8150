//! `sync --method diff`: the fallback when the legacy server cannot capture changes (no
//! `wal_level=logical`, or a role without `REPLICATION`, e.g. a read-only one).
//!
//! Each pass compares both sides as `verify` does (per bucket of keys, checksums computed inside
//! PostgreSQL), then compares only the differing buckets row by row, and rewrites just the rows
//! that differ: changed and missing rows are read from the legacy database and upserted, extra
//! rows are deleted. It needs only read access to the legacy database. It is slower than the
//! slot (every pass reads every table's checksums) and sees no order between changes, so it
//! converges by repeating: while writes go on, each pass catches up with what the previous one
//! saw; once they stop, a pass finds nothing and the databases are equal.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgConnection;

use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::digest::{bucket_sums, choose_hashing, diff_rows};
use crate::engine::sql::ident;
use crate::error::Result;
use crate::progress::Progress;
use crate::sync::apply::upsert_sql;
use schema::contract::{FOREIGN_KEYS, TABLES, Table};

/// Rows read and written per statement.
const CHUNK: usize = 1000;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffSyncReport {
    pub passes: u64,
    /// Rows read from the legacy database and written (changed or missing ones).
    pub rows_written: u64,
    /// Rows the legacy database no longer has, deleted.
    pub rows_deleted: u64,
    /// Whether the last pass found both sides equal.
    pub converged: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct DiffSyncOptions {
    /// Passes at most before giving up (while writes go on, a pass may always find something).
    pub max_passes: u64,
    /// With `follow`, the pause between passes.
    pub follow: Option<Duration>,
}

pub async fn diff_sync(
    endpoints: &Endpoints,
    opts: &DiffSyncOptions,
    progress: &dyn Progress,
    stop: impl std::future::Future<Output = ()>,
) -> Result<DiffSyncReport> {
    let started = Instant::now();
    crate::engine::journal::state::advance(
        endpoints,
        crate::engine::journal::state::State::Syncing,
        "sync --method diff",
    )
    .await?;
    let mut report = DiffSyncReport::default();
    tokio::pin!(stop);
    loop {
        report.passes += 1;
        let mut found = 0u64;
        for table in TABLES {
            let (differing, written, deleted) = pass(endpoints, table).await?;
            report.rows_written += written;
            report.rows_deleted += deleted;
            found += differing;
            if written + deleted > 0 {
                progress.table_step(table.name, &format!("rewrote {written}, deleted {deleted}"));
            }
        }
        report.converged = found == 0;
        match opts.follow {
            None if report.converged || report.passes >= opts.max_passes => break,
            None => {}
            Some(pause) => {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One table: (rows found differing, rows written, rows deleted).
async fn pass(endpoints: &Endpoints, table: &'static Table) -> Result<(u64, u64, u64)> {
    let (mut legacy, mut target) = tokio::try_join!(
        connect::connection("legacy", endpoints.legacy()),
        connect::connection(table.service.name(), endpoints.target(table.service))
    )?;
    let hashing = choose_hashing(&mut legacy, &mut target).await?;
    let (source, dest) = tokio::try_join!(
        bucket_sums(&mut legacy, table, hashing),
        bucket_sums(&mut target, table, hashing)
    )?;
    let mut differing: Vec<i32> = source
        .iter()
        .filter(|(b, v)| dest.get(b) != Some(v))
        .map(|(b, _)| *b)
        .collect();
    differing.extend(dest.keys().filter(|b| !source.contains_key(b)));
    differing.sort_unstable();
    differing.dedup();
    if differing.is_empty() {
        return Ok((0, 0, 0));
    }
    let d = diff_rows(
        &mut legacy,
        &mut target,
        table,
        hashing,
        &differing,
        usize::MAX,
    )
    .await?;
    let found = d.changed_count + d.missing_count + d.extra_count;
    // Deletes first: a key or unique value freed by a deleted row may be taken by a new one.
    let mut deleted = 0;
    for keys in d.extra.chunks(CHUNK) {
        deleted += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM public.{} WHERE {} = ANY($1)",
            ident(table.name),
            ident(table.key)
        )))
        .bind(keys)
        .execute(&mut target)
        .await?
        .rows_affected();
    }
    let mut rewrite: Vec<String> = d.changed;
    rewrite.extend(d.missing);
    let mut written = 0;
    for keys in rewrite.chunks(CHUNK) {
        written += copy_rows(&mut legacy, &mut target, table, keys).await?;
    }
    Ok((found, written, deleted))
}

/// Reads the rows `keys` from the legacy database as text and upserts them into the target (a
/// key the legacy database lost meanwhile is simply not written: the next pass deletes it).
async fn copy_rows(
    legacy: &mut PgConnection,
    target: &mut PgConnection,
    table: &Table,
    keys: &[String],
) -> Result<u64> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{}::text", ident(c.name)))
        .collect();
    let rows: Vec<sqlx::postgres::PgRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM public.{} WHERE {} = ANY($1)",
        columns.join(", "),
        ident(table.name),
        ident(table.key)
    )))
    .bind(keys)
    .fetch_all(&mut *legacy)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    use sqlx::Row;
    let key_index = table.key_index();
    let mut by_column: Vec<Vec<Option<String>>> =
        vec![Vec::with_capacity(rows.len()); table.columns.len()];
    let mut row_keys = Vec::with_capacity(rows.len());
    for row in &rows {
        for (i, column) in by_column.iter_mut().enumerate() {
            column.push(row.try_get::<Option<String>, _>(i)?);
        }
        row_keys.push(row.try_get::<String, _>(key_index)?);
    }
    // A row whose parent (a foreign key kept inside this database) is not there yet waits for the
    // next pass: the diff sees rows, not the order they were written in.
    let mut sql = upsert_sql(table);
    let parents: Vec<String> = FOREIGN_KEYS
        .iter()
        .filter(|fk| fk.kept && fk.table == table.name)
        .map(|fk| {
            let n = table
                .columns
                .iter()
                .position(|c| c.name == fk.column)
                .expect("a contract column")
                + 2;
            format!(
                "(u.c{n} IS NULL OR EXISTS (SELECT 1 FROM public.{} p WHERE p.{} = u.c{n}))",
                ident(fk.references),
                ident(fk.referenced_column)
            )
        })
        .collect();
    if !parents.is_empty() {
        let at = sql.find(" ON CONFLICT").expect("an upsert");
        sql.insert_str(at, &format!(" WHERE {}", parents.join(" AND ")));
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(row_keys);
    for column in &by_column {
        query = query.bind(column);
    }
    Ok(query.execute(target).await?.rows_affected())
}
