//! `copy`: every legacy table into its service database with binary COPY, no files in between.
//!
//! - One consistent snapshot: a coordinator exports a REPEATABLE READ snapshot of the legacy
//!   database and every worker reads through it, so a payment and its sender come from one instant.
//! - Parallel: tables, and key ranges of large tables, are copied by `jobs` workers at once.
//! - Indexes after the load: a table's indexes and key constraints are set aside while its chunks
//!   load and rebuilt once at the end, overlapping with the loading of other tables; foreign keys
//!   come back last.
//! - Exactly once across crashes: each chunk commits together with its journal row
//!   (see [`crate::journal`]), so running `copy` again copies only the chunks not yet done.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::TryStreamExt;
use platform::Service;
use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};

use crate::contract::{TABLES, Table};
use crate::endpoints::Endpoints;
use crate::error::{MigrateError, Result};
use crate::journal::{self, Chunk, DdlKind, TableState};
use crate::progress::Progress;
use crate::sql::{ident, literal};
use crate::{check, connect, ddl};

/// Bytes gathered from the source before one write to the target.
const SEND_BUFFER: usize = 1 << 20;
/// Rows between two progress reports of a chunk.
const REPORT_EVERY: u64 = 10_000;

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
pub struct TableCopy {
    pub table: &'static str,
    pub service: &'static str,
    pub rows: i64,
    pub chunks: usize,
    /// Chunks found already done from an earlier run.
    pub chunks_resumed: usize,
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    pub tables: Vec<TableCopy>,
    pub seconds: f64,
}

struct Work {
    table: &'static Table,
    chunk: Chunk,
}

/// Shared by the workers of one run.
struct Run {
    pools: BTreeMap<&'static str, PgPool>,
    queue: Mutex<VecDeque<Work>>,
    pending: BTreeMap<&'static str, AtomicUsize>,
    index_builds: Mutex<Vec<tokio::task::JoinHandle<Result<()>>>>,
    progress: Arc<dyn Progress>,
}

impl Run {
    fn pool(&self, table: &Table) -> &PgPool {
        &self.pools[table.service.name()]
    }
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
    let mut pools = BTreeMap::new();
    for service in Service::ALL {
        pools.insert(
            service.name(),
            connect::pool(service.name(), endpoints.target(service), jobs as u32 + 1).await?,
        );
    }
    let entries = preflight(&pools).await?;

    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut coordinator)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut coordinator)
        .await?;

    let mut work = Vec::new();
    let mut pending = BTreeMap::new();
    let mut reports = Vec::new();
    for table in TABLES {
        let pool = &pools[table.service.name()];
        let mut conn = pool.acquire().await?;
        if entries[table.name].is_none() {
            start_table(&mut coordinator, &mut conn, table, opts.chunk_rows).await?;
        }
        let entry = journal::table(&mut conn, table.name)
            .await?
            .expect("started above");
        let chunks = journal::chunks(&mut conn, table.name).await?;
        let done_rows: i64 = chunks.iter().filter_map(|c| c.rows).sum();
        let resumed = chunks.iter().filter(|c| c.is_done()).count();
        progress.table_started(
            table.name,
            entry.estimated_rows.max(done_rows) as u64,
            done_rows as u64,
        );
        let todo: Vec<Chunk> = if entry.state == TableState::Loading {
            chunks.iter().filter(|c| !c.is_done()).cloned().collect()
        } else {
            Vec::new()
        };
        pending.insert(table.name, AtomicUsize::new(todo.len()));
        work.push((entry.estimated_rows, table, todo));
        reports.push(TableCopy {
            table: table.name,
            service: table.service.name(),
            rows: 0,
            chunks: chunks.len(),
            chunks_resumed: resumed,
            state: entry.state.as_str(),
        });
    }
    // Largest tables first: their index builds then overlap with loading the small ones.
    work.sort_by_key(|(estimate, _, _)| std::cmp::Reverse(*estimate));
    let queue: VecDeque<Work> = work
        .iter()
        .flat_map(|(_, table, chunks)| {
            chunks.iter().map(|c| Work {
                table,
                chunk: c.clone(),
            })
        })
        .collect();
    let run = Arc::new(Run {
        pools,
        queue: Mutex::new(queue),
        pending,
        index_builds: Mutex::new(Vec::new()),
        progress: progress.clone(),
    });
    // Tables whose chunks are all in already (resumed after a crash) go straight to indexing.
    for (_, table, chunks) in &work {
        if chunks.is_empty() {
            let entry_state = reports
                .iter()
                .find(|r| r.table == table.name)
                .map(|r| r.state);
            if entry_state != Some("done") {
                spawn_index_build(&run, table);
            }
        }
    }

    let mut workers = Vec::new();
    for _ in 0..jobs {
        let mut source = connect::connection("legacy", &endpoints.legacy).await?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut source)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET TRANSACTION SNAPSHOT {}",
            literal(&snapshot)
        )))
        .execute(&mut source)
        .await?;
        let run = run.clone();
        workers.push(tokio::spawn(async move { worker(run, source).await }));
    }
    let mut first_error = None;
    for w in workers {
        let outcome = w
            .await
            .map_err(|e| MigrateError::Other(format!("copy worker: {e}")))
            .and_then(|r| r);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    // The snapshot must outlive every worker's import of it; now it can go.
    let _ = coordinator.close().await;
    let builds: Vec<_> = std::mem::take(&mut *run.index_builds.lock().expect("index builds lock"));
    for build in builds {
        let outcome = build
            .await
            .map_err(|e| MigrateError::Other(format!("index build: {e}")))
            .and_then(|r| r);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    for service in Service::ALL {
        finish_service(&run, service).await?;
    }
    for report in &mut reports {
        let mut conn = run.pools[report.service].acquire().await?;
        let chunks = journal::chunks(&mut conn, report.table).await?;
        report.rows = chunks.iter().filter_map(|c| c.rows).sum();
        report.state = journal::table(&mut conn, report.table)
            .await?
            .map(|e| e.state.as_str())
            .unwrap_or("missing");
    }
    let report = CopyReport {
        tables: reports,
        seconds: started.elapsed().as_secs_f64(),
    };
    for pool in run.pools.values() {
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

/// Before writing anything: every target table exists, and a table the journal does not know is
/// empty. Returns each table's journal entry, if any.
async fn preflight(
    pools: &BTreeMap<&'static str, PgPool>,
) -> Result<BTreeMap<&'static str, Option<journal::TableEntry>>> {
    let mut entries = BTreeMap::new();
    for table in TABLES {
        let service = table.service.name();
        let mut conn = pools[service].acquire().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('public.' || quote_ident($1)) IS NOT NULL")
                .bind(table.name)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            return Err(MigrateError::NotPrepared {
                service: service.into(),
                table: table.name.into(),
            });
        }
        let entry = if journal::exists(&mut conn).await? {
            journal::table(&mut conn, table.name).await?
        } else {
            None
        };
        if entry.is_none() {
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM public.{}",
                ident(table.name)
            )))
            .fetch_one(&mut *conn)
            .await?;
            if rows > 0 {
                return Err(MigrateError::TargetNotEmpty {
                    service: service.into(),
                    table: table.name.into(),
                    rows,
                });
            }
        }
        entries.insert(table.name, entry);
    }
    for pool in pools.values() {
        journal::ensure(&mut *pool.acquire().await?).await?;
    }
    Ok(entries)
}

/// Plans a table's chunks from the snapshot and sets its indexes aside, in one target transaction.
async fn start_table(
    source: &mut PgConnection,
    target: &mut PgConnection,
    table: &Table,
    chunk_rows: u64,
) -> Result<()> {
    let estimate = estimate_rows(source, table).await?;
    let bounds = chunk_bounds(source, table, estimate, chunk_rows).await?;
    let mut tx = target.begin().await?;
    let saved = ddl::capture(&mut tx, table.name).await?;
    ddl::drop_all(&mut tx, &saved).await?;
    journal::start_table(&mut tx, table.name, &saved, estimate, &bounds).await?;
    tx.commit().await?;
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

async fn worker(run: Arc<Run>, mut source: PgConnection) -> Result<()> {
    loop {
        let next = run.queue.lock().expect("queue lock").pop_front();
        let Some(work) = next else { break };
        if let Err(e) = copy_chunk(&run, &mut source, &work).await {
            // Stop the other workers at their next chunk; what is committed stays committed.
            run.queue.lock().expect("queue lock").clear();
            return Err(e);
        }
        let left = run.pending[work.table.name].fetch_sub(1, Ordering::AcqRel) - 1;
        if left == 0 {
            spawn_index_build(&run, work.table);
        }
    }
    let _ = source.close().await;
    Ok(())
}

async fn copy_chunk(run: &Run, source: &mut PgConnection, work: &Work) -> Result<()> {
    let table = work.table;
    let key = ident(table.key);
    let range = match (&work.chunk.lower, &work.chunk.upper) {
        (None, None) => String::new(),
        (Some(lo), None) => format!("WHERE {key} >= {}", literal(lo)),
        (None, Some(hi)) => format!("WHERE {key} < {}", literal(hi)),
        (Some(lo), Some(hi)) => {
            format!("WHERE {key} >= {} AND {key} < {}", literal(lo), literal(hi))
        }
    };
    let columns = table.column_list();
    let name = ident(table.name);
    let out_sql =
        format!("COPY (SELECT {columns} FROM public.{name} {range}) TO STDOUT (FORMAT binary)");
    let in_sql = format!("COPY public.{name} ({columns}) FROM STDIN (FORMAT binary)");

    let mut tx = run.pool(table).begin().await?;
    let target: &mut PgConnection = &mut tx;
    let mut sink = target.copy_in_raw(&in_sql).await?;
    let streamed = async {
        let mut stream = source.copy_out_raw(&out_sql).await?;
        let mut buffer = BytesMut::with_capacity(SEND_BUFFER + 64 * 1024);
        let mut messages = 0u64;
        let mut reported = 0u64;
        while let Some(bytes) = stream.try_next().await? {
            buffer.extend_from_slice(&bytes);
            messages += 1;
            if buffer.len() >= SEND_BUFFER {
                sink.send(buffer.split().freeze()).await?;
            }
            if messages - reported >= REPORT_EVERY {
                run.progress.rows(table.name, messages - reported);
                reported = messages;
            }
        }
        if !buffer.is_empty() {
            sink.send(buffer.freeze()).await?;
        }
        Ok::<u64, sqlx::Error>(reported)
    }
    .await;
    let reported = match streamed {
        Ok(reported) => reported,
        Err(e) => {
            let _ = sink.abort("source read failed").await;
            return Err(e.into());
        }
    };
    let rows = sink.finish().await?;
    journal::finish_chunk(&mut tx, table.name, work.chunk.chunk, rows as i64).await?;
    tx.commit().await?;
    run.progress.rows(table.name, rows.saturating_sub(reported));
    Ok(())
}

fn spawn_index_build(run: &Arc<Run>, table: &'static Table) {
    let task_run = run.clone();
    let handle = tokio::spawn(async move {
        task_run.progress.table_step(table.name, "indexing");
        let mut conn = task_run.pool(table).acquire().await?;
        journal::set_state(&mut conn, table.name, TableState::Indexing).await?;
        let entry = journal::table(&mut conn, table.name)
            .await?
            .expect("journaled table");
        let own: Vec<_> = entry
            .saved_ddl
            .iter()
            .filter(|d| d.on_table == table.name)
            .cloned()
            .collect();
        sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
            .execute(&mut *conn)
            .await?;
        ddl::restore(&mut conn, &own, &[DdlKind::KeyConstraint, DdlKind::Index]).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ANALYZE public.{}",
            ident(table.name)
        )))
        .execute(&mut *conn)
        .await?;
        task_run.progress.table_step(table.name, "indexed");
        Ok(())
    });
    run.index_builds
        .lock()
        .expect("index builds lock")
        .push(handle);
}

/// Once every table of a service is loaded and indexed: its foreign keys, then `done`.
async fn finish_service(run: &Run, service: Service) -> Result<()> {
    let pool = &run.pools[service.name()];
    let mut conn = pool.acquire().await?;
    let mut entries = Vec::new();
    for table in crate::contract::tables_of(service) {
        let entry = journal::table(&mut conn, table.name)
            .await?
            .expect("journaled table");
        if entry.state == TableState::Loading {
            return Ok(());
        }
        entries.push(entry);
    }
    let fks: Vec<_> = entries
        .iter()
        .flat_map(|e| e.saved_ddl.iter().cloned())
        .collect();
    let started = Instant::now();
    ddl::restore(
        &mut conn,
        &fks,
        &[DdlKind::KeyConstraint, DdlKind::Index, DdlKind::ForeignKey],
    )
    .await?;
    for entry in &entries {
        journal::set_state(&mut conn, &entry.table, TableState::Done).await?;
        run.progress.table_step(&entry.table, "done");
    }
    if started.elapsed() > Duration::from_secs(5) {
        tracing::info!(
            service = service.name(),
            secs = started.elapsed().as_secs_f64(),
            "foreign keys restored"
        );
    }
    Ok(())
}
