//! The target side of `copy` and `import`: chunks streamed into the service databases by parallel
//! workers, each chunk committed with its journal row, indexes rebuilt when a table's last chunk is
//! in (overlapping with the loading of other tables), foreign keys restored last.
//!
//! Where the bytes come from is a [`Feed`]: the legacy database through one exported snapshot
//! (`copy`), or the files of an archive (`import`). Both deliver PostgreSQL's binary COPY format.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use platform::Service;
use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};

use crate::engine::connect;
use crate::engine::ddl;
use crate::engine::journal::{self, Chunk, DdlKind, TableState};
use crate::engine::lease::{self, Lease};
use crate::engine::sql::{ident, literal};
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use schema::contract::{TABLES, Table};

/// Bytes gathered from the feed before one write to the target.
const SEND_BUFFER: usize = 1 << 20;
/// Rows between two progress reports of a chunk.
const REPORT_EVERY: u64 = 10_000;

/// Where chunk data comes from.
#[derive(Clone)]
pub enum Feed {
    /// The legacy database, read through an exported snapshot, no faster than `throttle`.
    Legacy {
        url: String,
        snapshot: String,
        throttle: Option<Arc<crate::engine::throttle::Throttle>>,
    },
    /// An export's directory: one `<table>.copy.zst` per table, whose row counts are known.
    Archive {
        dir: PathBuf,
        rows: BTreeMap<&'static str, i64>,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableLoad {
    pub table: &'static str,
    pub service: &'static str,
    pub rows: i64,
    pub chunks: usize,
    /// Chunks found already done from an earlier run.
    pub chunks_resumed: usize,
    pub state: &'static str,
}

struct Work {
    table: &'static Table,
    chunk: Chunk,
}

struct Run {
    pools: BTreeMap<&'static str, PgPool>,
    feed: Feed,
    queue: Mutex<VecDeque<Work>>,
    pending: BTreeMap<&'static str, AtomicUsize>,
    index_builds: Mutex<Vec<tokio::task::JoinHandle<Result<()>>>>,
    /// Tables whose rebuild has been started. A guard: the queue already reaches a table's last
    /// chunk once, but two rebuilds of one table would race in the catalog.
    rebuilding: Mutex<BTreeSet<&'static str>>,
    progress: Arc<dyn Progress>,
}

impl Run {
    fn pool(&self, table: &Table) -> &PgPool {
        &self.pools[table.service.name()]
    }
}

/// The four service databases a load writes to, leased for the run (see [`crate::engine::lease`]).
pub struct Targets {
    /// `size` loader connections on each, by service name.
    pub pools: BTreeMap<&'static str, PgPool>,
    _leases: Vec<Lease>,
}

/// Leases the four service databases (ending what a killed run left running there), then opens
/// pools of `size` loader connections on them.
pub async fn open_targets(endpoints: &crate::Endpoints, size: u32) -> Result<Targets> {
    let mut leases = Vec::new();
    for service in Service::ALL {
        leases.push(lease::acquire(service, service.name(), endpoints.target(service)).await?);
    }
    let mut pools = BTreeMap::new();
    for service in Service::ALL {
        pools.insert(
            service.name(),
            connect::loader_pool(service.name(), endpoints.target(service), size).await?,
        );
    }
    Ok(Targets {
        pools,
        _leases: leases,
    })
}

/// Before writing anything: every target table exists, and a table the journal does not know is
/// empty. Returns each table's journal entry, if any; creates the journal.
pub async fn preflight(
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
            // Brings a journal of an older version of the tool up to date first.
            journal::ensure(&mut conn).await?;
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

/// Journals a table's chunks and sets its indexes and constraints aside, in one transaction.
pub async fn start_table(
    target: &mut PgConnection,
    table: &Table,
    estimated_rows: i64,
    snapshot_xmax: Option<i64>,
    bounds: &[(Option<String>, Option<String>)],
) -> Result<()> {
    let mut tx = target.begin().await?;
    let saved = ddl::capture(&mut tx, table.name).await?;
    ddl::drop_all(&mut tx, &saved).await?;
    journal::start_table(
        &mut tx,
        table.name,
        &saved,
        estimated_rows,
        snapshot_xmax,
        bounds,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Loads every journaled chunk not done yet, then indexes and constraints; returns per-table
/// results read back from the journal.
pub async fn run(
    pools: BTreeMap<&'static str, PgPool>,
    feed: Feed,
    jobs: usize,
    progress: Arc<dyn Progress>,
) -> Result<Vec<TableLoad>> {
    let planned = plan(&pools, progress.as_ref()).await?;
    let run = Arc::new(Run {
        pools,
        feed,
        queue: Mutex::new(planned.queue),
        pending: planned.pending,
        index_builds: Mutex::new(Vec::new()),
        rebuilding: Mutex::new(BTreeSet::new()),
        progress,
    });
    // Every source connection first: failing to open one must not leave tasks writing behind.
    let mut sources = Vec::new();
    for _ in 0..jobs.max(1) {
        sources.push(match &run.feed {
            Feed::Legacy { url, snapshot, .. } => Some(snapshot_connection(url, snapshot).await?),
            Feed::Archive { .. } => None,
        });
    }
    for table in planned.finished_before {
        spawn_index_build(&run, table);
    }
    let mut workers = Vec::new();
    for source in sources {
        let run = run.clone();
        workers.push(tokio::spawn(async move { worker(run, source).await }));
    }
    wait_for_all(&run, workers).await?;
    for service in Service::ALL {
        finish_service(&run, service).await?;
    }
    let mut out = Vec::new();
    for table in TABLES {
        let mut conn = run.pool(table).acquire().await?;
        let chunks = journal::chunks(&mut conn, table.name).await?;
        let state = journal::table(&mut conn, table.name)
            .await?
            .map(|e| e.state.as_str())
            .unwrap_or("missing");
        out.push(TableLoad {
            table: table.name,
            service: table.service.name(),
            rows: chunks.iter().filter_map(|c| c.rows).sum(),
            chunks: chunks.len(),
            chunks_resumed: planned.resumed[table.name],
            state,
        });
    }
    Ok(out)
}

/// What is left to load, from the journal.
struct Planned {
    /// The chunks not done, largest tables first (their index builds then overlap with loading
    /// the small ones).
    queue: VecDeque<Work>,
    /// Chunks left per table.
    pending: BTreeMap<&'static str, AtomicUsize>,
    /// Chunks done before this run, per table.
    resumed: BTreeMap<&'static str, usize>,
    /// Tables whose rows are all loaded but whose indexes are not built yet.
    finished_before: Vec<&'static Table>,
}

async fn plan(pools: &BTreeMap<&'static str, PgPool>, progress: &dyn Progress) -> Result<Planned> {
    let mut work = Vec::new();
    let mut pending = BTreeMap::new();
    let mut resumed = BTreeMap::new();
    let mut finished_before = Vec::new();
    for table in TABLES {
        let mut conn = pools[table.service.name()].acquire().await?;
        let entry = journal::table(&mut conn, table.name)
            .await?
            .expect("journaled by the caller");
        let chunks = journal::chunks(&mut conn, table.name).await?;
        let done_rows: i64 = chunks.iter().filter_map(|c| c.rows).sum();
        resumed.insert(table.name, chunks.iter().filter(|c| c.is_done()).count());
        progress.table_started(
            table.name,
            entry.estimated_rows.max(done_rows) as u64,
            done_rows as u64,
        );
        let todo: Vec<Chunk> = if entry.state == TableState::Loading {
            chunks.into_iter().filter(|c| !c.is_done()).collect()
        } else {
            Vec::new()
        };
        if todo.is_empty() && entry.state != TableState::Done {
            finished_before.push(table);
        }
        pending.insert(table.name, AtomicUsize::new(todo.len()));
        work.push((entry.estimated_rows, table, todo));
    }
    work.sort_by_key(|(estimate, _, _)| std::cmp::Reverse(*estimate));
    let queue = work
        .into_iter()
        .flat_map(|(_, table, chunks)| chunks.into_iter().map(move |chunk| Work { table, chunk }))
        .collect();
    Ok(Planned {
        queue,
        pending,
        resumed,
        finished_before,
    })
}

/// Every worker, then every index build, to its end; the first error of any of them.
async fn wait_for_all(run: &Run, workers: Vec<tokio::task::JoinHandle<Result<()>>>) -> Result<()> {
    let mut first_error = None;
    for w in workers {
        if let Err(e) = w
            .await
            .map_err(|e| MigrateError::task("load worker", e))
            .and_then(|r| r)
        {
            first_error.get_or_insert(e);
        }
    }
    let builds: Vec<_> = std::mem::take(&mut *run.index_builds.lock().expect("index builds lock"));
    for build in builds {
        if let Err(e) = build
            .await
            .map_err(|e| MigrateError::task("index build", e))
            .and_then(|r| r)
        {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A legacy connection inside the coordinator's exported snapshot.
pub async fn snapshot_connection(url: &str, snapshot: &str) -> Result<PgConnection> {
    let mut source = connect::connection("legacy", url).await?;
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut source)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET TRANSACTION SNAPSHOT {}",
        literal(snapshot)
    )))
    .execute(&mut source)
    .await?;
    Ok(source)
}

async fn worker(run: Arc<Run>, mut source: Option<PgConnection>) -> Result<()> {
    loop {
        let next = run.queue.lock().expect("queue lock").pop_front();
        let Some(work) = next else { break };
        if let Err(e) = load_chunk(&run, source.as_mut(), &work).await {
            // Stop the other workers at their next chunk; what is committed stays committed.
            run.queue.lock().expect("queue lock").clear();
            return Err(e);
        }
        let left = run.pending[work.table.name].fetch_sub(1, Ordering::AcqRel) - 1;
        if left == 0 {
            spawn_index_build(&run, work.table);
        }
    }
    if let Some(source) = source {
        let _ = source.close().await;
    }
    Ok(())
}

/// The `SELECT` of one chunk of the legacy table, as binary COPY. A chunk is a range of heap
/// blocks `[lower, upper)`: a TID range scan reads just those blocks, where a key range over
/// random UUIDs would touch every block of the table for every chunk.
pub fn copy_out_sql(table: &Table, lower: Option<&str>, upper: Option<&str>) -> String {
    let block = |b: &str| literal(&format!("({},0)", b.parse::<u64>().unwrap_or(0)));
    let range = match (lower, upper) {
        (None, None) => String::new(),
        (Some(lo), None) => format!("WHERE ctid >= {}::tid", block(lo)),
        (None, Some(hi)) => format!("WHERE ctid < {}::tid", block(hi)),
        (Some(lo), Some(hi)) => {
            format!(
                "WHERE ctid >= {}::tid AND ctid < {}::tid",
                block(lo),
                block(hi)
            )
        }
    };
    format!(
        "COPY (SELECT {} FROM public.{} {range}) TO STDOUT (FORMAT binary)",
        table.column_list(),
        ident(table.name)
    )
}

async fn load_chunk(run: &Run, source: Option<&mut PgConnection>, work: &Work) -> Result<()> {
    let table = work.table;
    let in_sql = format!(
        "COPY public.{} ({}) FROM STDIN (FORMAT binary)",
        ident(table.name),
        table.column_list()
    );
    let stream: BoxStream<'_, Result<Bytes>> = match (&run.feed, source) {
        (Feed::Legacy { .. }, Some(source)) => {
            let sql = copy_out_sql(
                table,
                work.chunk.lower.as_deref(),
                work.chunk.upper.as_deref(),
            );
            source
                .copy_out_raw(&sql)
                .await?
                .map_err(MigrateError::from)
                .boxed()
        }
        (Feed::Archive { dir, .. }, _) => crate::archive::read_table(dir, table)?,
        (Feed::Legacy { .. }, None) => unreachable!("legacy workers own a source connection"),
    };
    let mut tx = run.pool(table).begin().await?;
    let target: &mut PgConnection = &mut tx;
    let mut sink = target.copy_in_raw(&in_sql).await?;
    let streamed = async {
        let mut stream = stream;
        let mut buffer = BytesMut::with_capacity(SEND_BUFFER + 64 * 1024);
        let (mut messages, mut reported) = (0u64, 0u64);
        let throttle = match &run.feed {
            Feed::Legacy { throttle, .. } => throttle.as_deref(),
            Feed::Archive { .. } => None,
        };
        let report_every = throttle.map_or(REPORT_EVERY, |t| t.batch().min(REPORT_EVERY));
        while let Some(bytes) = stream.try_next().await? {
            buffer.extend_from_slice(&bytes);
            messages += 1;
            if buffer.len() >= SEND_BUFFER {
                sink.send(buffer.split().freeze()).await?;
            }
            if messages - reported >= report_every {
                run.progress.rows(table.name, messages - reported);
                if let Some(throttle) = throttle {
                    throttle.take(messages - reported).await;
                }
                reported = messages;
            }
        }
        if !buffer.is_empty() {
            sink.send(buffer.freeze()).await?;
        }
        Ok::<u64, MigrateError>(reported)
    }
    .await;
    let reported = match streamed {
        Ok(reported) => reported,
        Err(e) => {
            let _ = sink.abort("reading the source failed").await;
            return Err(e);
        }
    };
    let rows = sink.finish().await? as i64;
    if let Feed::Archive { rows: expected, .. } = &run.feed
        && expected[table.name] != rows
    {
        // Dropping the transaction rolls the rows back.
        return Err(MigrateError::Archive(format!(
            "archive file of {} holds {rows} rows, its manifest says {}",
            table.name, expected[table.name]
        )));
    }
    journal::finish_chunk(&mut tx, table.name, work.chunk.chunk, rows).await?;
    tx.commit().await?;
    run.progress
        .rows(table.name, (rows as u64).saturating_sub(reported));
    Ok(())
}

/// Rebuilds a loaded table's keys and indexes, then freezes it, in a task of its own (other tables
/// go on loading meanwhile). Each item is checked in the catalog first, so a rebuild cut short
/// by a crash is finished by the next run.
fn spawn_index_build(run: &Arc<Run>, table: &'static Table) {
    if !run
        .rebuilding
        .lock()
        .expect("rebuilding lock")
        .insert(table.name)
    {
        return;
    }
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
        // Freezing now, while other tables are still loading, spares the services a burst of
        // autovacuum (hint bits, then an anti-wraparound pass over every loaded page) right
        // after cutover; and the planner gets statistics before the first query.
        task_run.progress.table_step(table.name, "freezing");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "VACUUM (FREEZE, ANALYZE) public.{}",
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
    let mut conn = run.pools[service.name()].acquire().await?;
    let mut entries = Vec::new();
    for table in schema::contract::tables_of(service) {
        let entry = journal::table(&mut conn, table.name)
            .await?
            .expect("journaled table");
        if entry.state == TableState::Loading {
            return Ok(());
        }
        entries.push(entry);
    }
    let all: Vec<_> = entries
        .iter()
        .flat_map(|e| e.saved_ddl.iter().cloned())
        .collect();
    for entry in entries.iter().filter(|e| e.state != TableState::Done) {
        run.progress.table_step(&entry.table, "foreign keys");
    }
    // Every table's keys were rebuilt by its index build, which the caller awaited.
    ddl::restore(&mut conn, &all, &[DdlKind::ForeignKey]).await?;
    for entry in &entries {
        journal::set_state(&mut conn, &entry.table, TableState::Done).await?;
        run.progress.table_step(&entry.table, "done");
    }
    Ok(())
}
