//! `rollback`: from the service databases back to the legacy database, without losing a write the
//! services made after cutover.
//!
//! 1. **Freeze** the service databases (the same statement triggers as cutover's freeze, sessions
//!    ended). The services must be stopped first (`mfe migrate rollback` asks `mfe dev`); a service
//!    still running gets errors from its database, never a lost write.
//! 2. **Stage** which rows changed: the four service databases' way-back slots
//!    ([`crate::rollback::way_back`]), read at once to their ends, give the keys; they go to a temporary
//!    table of the write-back's transaction. The slots are not advanced: a rollback killed before
//!    the write-back commits reads them again (keys are a set: reading twice is harmless).
//! 3. **Write back**, in that legacy transaction, which also thaws the legacy database and records
//!    the outcome: a killed write-back leaves nothing half-written. Each changed row's current
//!    state in its (frozen) service database is the truth: present, it is written (a row whose
//!    first change was an insert by a plain insert, the others by an upsert); absent, it is
//!    deleted. Tables go parents first, each row read once from its service database; a table's
//!    rows nothing points to are deleted once it is through, then the rows a constraint refused
//!    as a batch (a unique value such a delete frees) are written again; parents gone from their
//!    service database are deleted last, once no row points to them.
//! 4. **The conflict policy.** The legacy database keeps the cross-service foreign keys the split
//!    dropped, and a parent's delete is written by their rules ([`rules`]: `CASCADE` and `SET
//!    NULL` act as legacy would, recorded in `mfe_rollback.cleared`). Two kinds of change cannot
//!    be written as they are, and neither is dropped silently:
//!    - a delete legacy refuses (a `RESTRICT` child still points to the row): the row is **kept**
//!      in legacy (a kept user's password is locked);
//!    - a row the legacy constraints refuse (a payment whose sender was deleted in auth and never
//!      existed in legacy; a unique value a kept row still holds): it is **not written**; its
//!      whole row is kept in `mfe_rollback.conflicts`.
//!
//!    Each is reported by table and id with the reason; `mfe_rollback.conflicts` keeps them.
//! 5. **Verify** inside the same transaction: every changed row that is not a conflict is equal on
//!    both sides (legacy's row digest against the service row's, taken when it was read), and
//!    each table's row count (legacy's before the write-back, counted while the way back is read,
//!    plus what the write-back inserted, minus what it deleted) differs from the service
//!    database's by exactly its conflicts. A difference aborts the transaction: legacy stays
//!    frozen and unchanged.
//! 6. **Carry** the services' own state (outbox, inbox, jobs: [`crate::engine::carry`]) into their
//!    schemas in legacy.
//! 7. **Switch** the topology file to `shared`, drop the legacy capture slot (it would keep WAL
//!    forever now that legacy is written again), record the run.
//!
//! The service databases stay frozen afterwards: the platform runs on legacy, and a service
//! started against them by mistake cannot write there.

pub mod way_back;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use platform::Service;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};

use crate::cdc::slot;
use crate::endpoints::Endpoints;
use crate::engine::connect;
use crate::engine::freeze;
use crate::engine::journal;
use crate::engine::journal::state::{self, State};
use crate::engine::sql::ident;
use crate::error::{MigrateError, Result};
use crate::progress::Progress;
use crate::rollback::way_back as back;
use schema::contract::{FOREIGN_KEYS, TABLES, Table};

pub mod record;
mod rules;
mod write_back;

/// Keys per statement.
const CHUNK: usize = 10_000;

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// The file the services read their topology from.
    pub topology_file: PathBuf,
    /// How long freezing a service database waits for its writers in flight.
    pub lock_timeout: Duration,
}

/// Rows written back to one legacy table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WrittenBack {
    pub table: String,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Rows legacy's `ON DELETE CASCADE` deleted with a parent the services deleted.
    #[serde(default)]
    pub cascaded: u64,
    /// References legacy's `ON DELETE SET NULL` cleared (the rows stay).
    #[serde(default)]
    pub cleared: u64,
}

/// A change the legacy database could not take as it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub table: String,
    pub key: String,
    /// `kept` (a delete not written: the row stays in legacy) or `not written` (the row is only
    /// in `mfe_rollback.conflicts`).
    pub outcome: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    /// A previous run had finished this rollback: nothing was written now.
    pub already_done: bool,
    /// From the service databases' freeze to the legacy database taking writes again.
    pub freeze_seconds: f64,
    /// Rows the services changed since cutover.
    pub changed_rows: u64,
    pub tables: Vec<WrittenBack>,
    pub conflicts: Vec<Conflict>,
    /// Rows compared on both sides after the write-back.
    pub verified_rows: u64,
    /// The services' own tables (outbox, inbox, jobs, ...) merged into their schemas in legacy.
    pub carried: Vec<crate::engine::carry::Carried>,
    pub topology_file: String,
    pub steps: Vec<(String, f64)>,
}

impl RollbackReport {
    pub fn rows_written(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.inserted + t.updated + t.deleted + t.cascaded + t.cleared)
            .sum()
    }
}

/// The marker position of the recorded cutover, if the platform was cut over.
async fn recorded_cutover(endpoints: &Endpoints) -> Result<Option<String>> {
    let mut conn =
        connect::connection(Service::Auth.name(), endpoints.target(Service::Auth)).await?;
    journal::ensure(&mut conn).await?;
    Ok(sqlx::query_scalar(
        "SELECT detail->>'markerLsn' FROM mfe_migration.runs \
         WHERE phase = 'cutover' AND outcome = 'ok' ORDER BY at DESC, id DESC LIMIT 1",
    )
    .fetch_optional(&mut conn)
    .await?
    .flatten())
}

pub async fn rollback(
    endpoints: &Endpoints,
    opts: &RollbackOptions,
    progress: &dyn Progress,
) -> Result<RollbackReport> {
    let Some(cutover) = recorded_cutover(endpoints).await? else {
        return Err(MigrateError::Usage(
            "nothing to roll back: no cutover was recorded (the platform still runs on the legacy \
             database)"
                .into(),
        ));
    };
    let mut legacy = connect::connection("legacy", endpoints.legacy()).await?;
    let step = record::begin(&mut legacy, &cutover).await?;
    // In the schema `begin` makes.
    sqlx::raw_sql(rules::CLEARED_SQL)
        .execute(&mut legacy)
        .await?;
    if step == "done" {
        return already_done(endpoints, opts, progress, &mut legacy).await;
    }
    let mut steps = Vec::new();
    if step == "staging"
        && let Err(e) =
            stage_and_write_back(endpoints, opts, progress, &mut legacy, &mut steps).await
    {
        // Nothing was written back: the platform goes on on its service databases, and the
        // way back keeps capturing for the next attempt.
        let thawed = thaw_services(endpoints).await;
        return Err(MigrateError::Undone {
            cause: Box::new(e),
            aftermath: match thawed {
                Ok(()) => "the service databases take writes again".to_string(),
                Err(t) => format!("making the service databases writable again failed too ({t})"),
            },
        });
    }

    let t = Instant::now();
    progress.table_step("rollback", "carrying the services' own state");
    let carried = carry_back(endpoints).await?;
    steps.push((
        "carry the services' state".into(),
        t.elapsed().as_secs_f64(),
    ));

    let t = Instant::now();
    progress.table_step("rollback", "switching to the shared topology");
    let mut report = switch_back(endpoints, opts, progress, &mut legacy, &cutover).await?;
    steps.push(("switch and record".into(), t.elapsed().as_secs_f64()));
    report.steps = steps;
    report.carried = carried;
    report.topology_file = opts.topology_file.display().to_string();
    Ok(report)
}

/// A rollback run again after it finished: its saved report (with nothing written this time),
/// the state and the topology file made sure of (a run killed after recording but before the
/// switch reached the file).
async fn already_done(
    endpoints: &Endpoints,
    opts: &RollbackOptions,
    progress: &dyn Progress,
    legacy: &mut PgConnection,
) -> Result<RollbackReport> {
    let mut report = record::saved_report(legacy).await?;
    report.already_done = true;
    report.tables.iter_mut().for_each(|t| {
        *t = WrittenBack {
            table: t.table.clone(),
            ..Default::default()
        }
    });
    report.steps.clear();
    state::advance(endpoints, State::RolledBack, "rollback").await?;
    ensure_shared(&opts.topology_file, progress)?;
    report.topology_file = opts.topology_file.display().to_string();
    Ok(report)
}

/// Step 6: the services' own state into their schemas in legacy, the four at once (each on
/// connections of its own).
async fn carry_back(endpoints: &Endpoints) -> Result<Vec<crate::engine::carry::Carried>> {
    Ok(
        futures::future::try_join_all(Service::ALL.into_iter().map(|service| async move {
            let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
            let mut to = connect::connection("legacy", endpoints.legacy()).await?;
            crate::engine::carry::carry(&mut conn, &mut to, service).await
        }))
        .await?
        .into_iter()
        .flatten()
        .collect(),
    )
}

/// Step 7: the topology file says `shared`, legacy's capture slot goes (legacy takes writes
/// again: it would keep their WAL forever), the run is recorded in every journal and in
/// legacy, and the way back goes (read to its end; kept, it would make the service servers keep
/// WAL forever). Returns the saved report.
async fn switch_back(
    endpoints: &Endpoints,
    opts: &RollbackOptions,
    progress: &dyn Progress,
    legacy: &mut PgConnection,
    cutover: &str,
) -> Result<RollbackReport> {
    ensure_shared(&opts.topology_file, progress)?;
    slot::drop(legacy).await?;
    let report = record::saved_report(legacy).await?;
    let detail = serde_json::json!({
        "cutover": cutover,
        "freezeSeconds": report.freeze_seconds,
        "rowsWritten": report.rows_written(),
        "conflicts": report.conflicts.len(),
    });
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        journal::ensure(&mut conn).await?;
        journal::record_run(&mut conn, "rollback", "ok", &detail).await?;
        state::advance_here(&mut conn, State::RolledBack, "rollback").await?;
    }
    record::done(legacy).await?;
    crate::cutover::drop_way_back(endpoints).await?;
    Ok(report)
}

/// Steps 1 to 5: freeze the service databases, stage the changed keys, write them back.
async fn stage_and_write_back(
    endpoints: &Endpoints,
    opts: &RollbackOptions,
    progress: &dyn Progress,
    legacy: &mut PgConnection,
    steps: &mut Vec<(String, f64)>,
) -> Result<()> {
    let t = Instant::now();
    progress.table_step("rollback", "freezing the service databases");
    // The freeze starts now, unless a killed run froze them already.
    let mut auth =
        connect::connection(Service::Auth.name(), endpoints.target(Service::Auth)).await?;
    if !freeze::is_frozen(&mut auth).await? {
        record::frozen_now(legacy).await?;
    }
    drop(auth);
    let mut services = Vec::new();
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        if back::info(&mut conn).await?.is_none() {
            return Err(MigrateError::Usage(format!(
                "the {} database has no way-back slot ({}): the cutover did not capture the \
                 changes made since, so they cannot be written back",
                service.name(),
                back::slot_name(&current_database(&mut conn).await?)
            )));
        }
        freeze::freeze_service(&mut conn, service, opts.lock_timeout)
            .await
            .map_err(|e| MigrateError::StepFailed {
                phase: "rollback",
                step: format!("freeze ({})", service.name()),
                cause: Box::new(e.into()),
                aftermath: "nothing was written back".into(),
            })?;
        services.push((service, conn));
    }
    steps.push((
        "freeze the service databases".into(),
        t.elapsed().as_secs_f64(),
    ));

    write_back::write_back(endpoints, progress, legacy, &mut services, steps).await
}

/// Makes the service databases writable again (a rollback that failed before writing back).
async fn thaw_services(endpoints: &Endpoints) -> Result<()> {
    for service in Service::ALL {
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        freeze::thaw(&mut conn).await?;
    }
    Ok(())
}

async fn current_database(conn: &mut PgConnection) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT current_database()")
        .fetch_one(conn)
        .await?)
}

/// Writes the topology file with `shared` unless it says so already.
fn ensure_shared(path: &std::path::Path, progress: &dyn Progress) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t.contains("DATABASE_TOPOLOGY=shared")) {
        return Ok(());
    }
    crate::cutover::write_topology_file(
        path,
        "# Written by `mfe migrate rollback`: the platform runs on the legacy shared database.\n\
         # The services and `mfe dev` read it.\n\
         DATABASE_TOPOLOGY=shared\n",
    )?;
    progress.note(&format!(
        "topology switched to shared in {}",
        path.display()
    ));
    Ok(())
}

type Services = Vec<(Service, PgConnection)>;

fn service_conn(services: &mut Services, service: Service) -> &mut PgConnection {
    &mut services
        .iter_mut()
        .find(|(s, _)| *s == service)
        .expect("a connection per service")
        .1
}

/// The foreign keys pointing at `table`.
fn children_of(table: &Table) -> impl Iterator<Item = &'static schema::contract::ForeignKey> + '_ {
    FOREIGN_KEYS
        .iter()
        .filter(move |fk| fk.references == table.name)
}

/// A row the legacy constraints refused, kept to try again once other rows moved.
struct Refused {
    table: &'static Table,
    row: Vec<Option<String>>,
    reason: String,
}

fn key_of(table: &Table, row: &[Option<String>]) -> String {
    let at = table.key_index();
    row[at].clone().unwrap_or_default()
}

/// Whether other contract tables point to `table`.
fn is_parent(table: &Table) -> bool {
    children_of(table).next().is_some()
}

/// Each contract table's row count (in [`TABLES`] order): in legacy, and in its service database.
async fn census(endpoints: &Endpoints) -> Result<Vec<(i64, i64)>> {
    let count = |url: String, name: &'static str, tables: Vec<&'static Table>| async move {
        let mut conn = connect::connection(name, &url).await?;
        sqlx::raw_sql("SET lock_timeout = '30s'")
            .execute(&mut conn)
            .await?;
        let mut counts = Vec::new();
        for table in tables {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM public.{}",
                ident(table.name)
            )))
            .fetch_one(&mut conn)
            .await?;
            counts.push((table.name, n));
        }
        Ok::<_, MigrateError>(counts)
    };
    let mut sides = vec![count(
        endpoints.legacy().to_string(),
        "legacy",
        TABLES.iter().collect(),
    )];
    for service in Service::ALL {
        sides.push(count(
            endpoints.target(service).to_string(),
            service.name(),
            schema::contract::tables_of(service).collect(),
        ));
    }
    let mut sides = futures::future::try_join_all(sides).await?.into_iter();
    let legacy: HashMap<&str, i64> = sides.next().into_iter().flatten().collect();
    let service: HashMap<&str, i64> = sides.flatten().collect();
    Ok(TABLES
        .iter()
        .map(|t| (legacy[t.name], service[t.name]))
        .collect())
}

/// Reads the four way-back slots at once, staging their keys in this transaction's `staged`.
async fn read_way_back(
    endpoints: &Endpoints,
    tx: &mut PgConnection,
    services: &mut Services,
) -> Result<()> {
    let (sink, mut batches) = tokio::sync::mpsc::channel::<back::Batch>(services.len());
    let readers = futures::future::try_join_all(services.iter_mut().map(|(service, conn)| {
        let sink = sink.clone();
        async move { back::drain(endpoints.target(*service), conn, *service, sink).await }
    }));
    drop(sink);
    let stager = async {
        // From 1: keys a truncate adds later come first (0), not fresh.
        let mut seq = 1;
        while let Some(batch) = batches.recv().await {
            seq = back::stage(&mut *tx, batch, seq).await?;
        }
        sqlx::raw_sql(back::STAGED_INDEX_SQL)
            .execute(&mut *tx)
            .await?;
        Ok::<_, MigrateError>(())
    };
    tokio::try_join!(readers, stager)?;
    Ok(())
}

/// How long each step of the write-back took, for `RUST_LOG=migrator=debug`.
struct Lap(Vec<String>, std::time::Instant);

impl Default for Lap {
    fn default() -> Self {
        Self(Vec::new(), std::time::Instant::now())
    }
}

impl Lap {
    fn mark(&mut self, step: &str) {
        self.0
            .push(format!("{step} {:.3}s", self.1.elapsed().as_secs_f64()));
        self.1 = std::time::Instant::now();
    }
}

/// Deletes the rows of `table` (one nothing points to: parents go by legacy's rules, see
/// [`rules::delete_parents`]) gone from its service database; returns how many.
async fn delete_absent(conn: &mut PgConnection, table: &Table) -> Result<u64> {
    debug_assert!(
        !is_parent(table),
        "parents are deleted by rules::delete_parents"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM public.{t} t USING fetched a \
         WHERE a.table_name = $1 AND a.digest IS NULL AND a.key = t.{k}",
        t = ident(table.name),
        k = ident(table.key)
    )))
    .bind(table.name)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Tries `refused` rows again, one by one, parents first, until a round writes none; returns
/// those still refused.
async fn retry(
    conn: &mut PgConnection,
    mut refused: Vec<Refused>,
    written: &mut [WrittenBack],
    at: &impl Fn(&str) -> usize,
) -> Result<Vec<Refused>> {
    refused.sort_by_key(|r| at(r.table.name));
    loop {
        let before = refused.len();
        let mut still = Vec::new();
        for r in refused {
            let (i, u, mut again) = upsert_each(conn, r.table, vec![r.row]).await?;
            written[at(r.table.name)].inserted += i;
            written[at(r.table.name)].updated += u;
            still.append(&mut again);
        }
        refused = still;
        if refused.is_empty() || refused.len() == before {
            return Ok(refused);
        }
    }
}

async fn record_conflicts(
    conn: &mut PgConnection,
    cutover: &str,
    conflicts: &[Conflict],
    refused: &[Refused],
) -> Result<()> {
    sqlx::query("DELETE FROM mfe_rollback.conflicts WHERE cutover = $1")
        .bind(cutover)
        .execute(&mut *conn)
        .await?;
    let rows: HashMap<(String, String), serde_json::Value> = refused
        .iter()
        .map(|r| {
            let whole: serde_json::Map<String, serde_json::Value> = r
                .table
                .columns
                .iter()
                .zip(&r.row)
                .map(|(c, v)| {
                    (
                        c.name.to_string(),
                        v.clone()
                            .map_or(serde_json::Value::Null, serde_json::Value::String),
                    )
                })
                .collect();
            (
                (r.table.name.to_string(), key_of(r.table, &r.row)),
                serde_json::Value::Object(whole),
            )
        })
        .collect();
    for c in conflicts {
        sqlx::query(
            "INSERT INTO mfe_rollback.conflicts (cutover, table_name, key, outcome, reason, row) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (cutover, table_name, key) DO UPDATE SET outcome = EXCLUDED.outcome, \
                 reason = EXCLUDED.reason, row = EXCLUDED.row",
        )
        .bind(cutover)
        .bind(&c.table)
        .bind(&c.key)
        .bind(&c.outcome)
        .bind(&c.reason)
        .bind(rows.get(&(c.table.clone(), c.key.clone())))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The next chunk of changed keys of `table` after `after`, in key order, each with whether its
/// first change since cutover was an insert.
async fn changed_keys(
    conn: &mut PgConnection,
    table: &Table,
    after: &str,
) -> Result<Vec<(String, bool)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT ON (key) key, fresh FROM staged WHERE table_name = $1 AND key > $2 \
         ORDER BY key, seq LIMIT $3",
    )
    .bind(table.name)
    .bind(after)
    .bind(CHUNK as i64)
    .fetch_all(conn)
    .await?)
}

/// A service row read for the write-back: its digest as verify computes it, and its columns as
/// text in contract order.
struct Fetched {
    digest: String,
    row: Vec<Option<String>>,
}

/// The rows of `keys` in `table` that its service database has.
async fn fetch_rows(
    conn: &mut PgConnection,
    table: &Table,
    keys: &[String],
) -> Result<Vec<Fetched>> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{}::text", ident(c.name)))
        .collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT md5(ROW({})::text), {} FROM public.{} WHERE {} = ANY($1)",
        table.column_list(),
        columns.join(", "),
        ident(table.name),
        ident(table.key)
    )))
    .bind(keys)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Fetched {
                digest: row.try_get(0)?,
                row: (1..=table.columns.len())
                    .map(|i| row.try_get::<Option<String>, _>(i))
                    .collect::<sqlx::Result<_>>()?,
            })
        })
        .collect()
}

/// Chunks of service rows read ahead of the write-back.
const AHEAD: usize = 2;

/// Reads a table's service rows for the chunks of keys it is sent, in order, on a task of its
/// own (another core decodes them while legacy writes the chunk before) and a connection of its
/// own to the frozen service database.
struct Fetcher {
    keys: tokio::sync::mpsc::Sender<Vec<String>>,
    rows: tokio::sync::mpsc::Receiver<Result<Vec<Fetched>>>,
}

impl Fetcher {
    async fn start(endpoints: &Endpoints, table: &'static Table) -> Result<Self> {
        let service = table.service;
        let mut conn = connect::connection(service.name(), endpoints.target(service)).await?;
        let (keys, mut asked) = tokio::sync::mpsc::channel::<Vec<String>>(AHEAD);
        let (answer, rows) = tokio::sync::mpsc::channel(AHEAD);
        // Ends when the writer drops its side, or after the first failed read.
        tokio::spawn(async move {
            while let Some(chunk) = asked.recv().await {
                let read = fetch_rows(&mut conn, table, &chunk).await;
                let failed = read.is_err();
                if answer.send(read).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Self { keys, rows })
    }

    /// Asks for the rows of `keys`, after those asked before.
    async fn ask(&self, keys: Vec<String>) -> Result<()> {
        self.keys.send(keys).await.map_err(|_| fetcher_gone())
    }

    /// The rows of the oldest chunk asked for.
    async fn next(&mut self) -> Result<Vec<Fetched>> {
        self.rows.recv().await.ok_or_else(fetcher_gone)?
    }
}

fn fetcher_gone() -> MigrateError {
    MigrateError::task("the reader of the service rows", "stopped without its rows")
}

/// What [`write_chunk`] wrote, and the rows it held back for after the table's deletes.
struct Chunk {
    inserted: u64,
    updated: u64,
    held: Vec<Vec<Option<String>>>,
}

/// Writes one chunk of changed keys of `table` with the service rows read for them: records each
/// key in `fetched` (with its digest, none when the service database no longer has the row);
/// inserts the rows legacy never had, upserts the others. Rows a constraint refuses as a batch
/// are held back.
async fn write_chunk(
    conn: &mut PgConnection,
    table: &'static Table,
    keys: &[(String, bool)],
    rows: Vec<Fetched>,
) -> Result<Chunk> {
    let key_index = table.key_index();
    let mut digests: HashMap<&str, &str> = HashMap::with_capacity(rows.len());
    for r in &rows {
        if let Some(key) = r.row[key_index].as_deref() {
            digests.insert(key, r.digest.as_str());
        }
    }
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let found: Vec<Option<&str>> = names.iter().map(|k| digests.get(k).copied()).collect();
    sqlx::query(
        "INSERT INTO fetched SELECT $1, k, d FROM unnest($2::text[], $3::text[]) AS u (k, d)",
    )
    .bind(table.name)
    .bind(&names)
    .bind(&found)
    .execute(&mut *conn)
    .await?;

    let mut fresh: std::collections::HashSet<&str> = keys
        .iter()
        .filter(|(_, f)| *f)
        .map(|(k, _)| k.as_str())
        .collect();
    // Cutover captures the way back before its last catch-up, so rows the forward sync inserted
    // after that come as inserts too, and legacy has them: one of them in a chunk would make its
    // plain insert fail as a whole (then upserted, half again as slow). Found first, by key.
    for key in held_by_legacy(&mut *conn, table, &fresh).await? {
        fresh.remove(key.as_str());
    }
    let (new, mut others): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .map(|r| r.row)
        .partition(|row| row[key_index].as_deref().is_some_and(|k| fresh.contains(k)));
    let mut chunk = Chunk {
        inserted: 0,
        updated: 0,
        held: Vec::new(),
    };
    if !new.is_empty() {
        savepoint(&mut *conn).await?;
        let result = insert_rows(&mut *conn, table, &new).await;
        match settle(&mut *conn, result).await? {
            Some(n) => chunk.inserted += n,
            // A key legacy has after all, or a value another row holds: upserted with the rest.
            None => others.extend(new),
        }
    }
    if !others.is_empty() {
        savepoint(&mut *conn).await?;
        let result = upsert_rows(&mut *conn, table, &others).await;
        match settle(&mut *conn, result).await? {
            Some((i, u)) => {
                chunk.inserted += i;
                chunk.updated += u;
            }
            None => chunk.held = others,
        }
    }
    Ok(chunk)
}

/// Which of `keys` (of `table`) legacy has.
async fn held_by_legacy(
    conn: &mut PgConnection,
    table: &Table,
    keys: &std::collections::HashSet<&str>,
) -> Result<Vec<String>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = keys.iter().copied().collect();
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {k} FROM public.{t} WHERE {k} = ANY($1)",
        k = ident(table.key),
        t = ident(table.name)
    )))
    .bind(keys)
    .fetch_all(conn)
    .await?)
}

/// Starts the savepoint a batch statement runs under ([`settle`] ends it).
async fn savepoint(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("SAVEPOINT mfe_batch").execute(conn).await?;
    Ok(())
}

/// Ends the savepoint of a batch statement that gave `result`: `None` (and nothing written) when
/// a legacy constraint refused the batch.
async fn settle<T>(conn: &mut PgConnection, result: sqlx::Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => {
            sqlx::raw_sql("RELEASE SAVEPOINT mfe_batch")
                .execute(conn)
                .await?;
            Ok(Some(value))
        }
        Err(e) if refused(&e).is_none() => Err(e.into()),
        Err(_) => {
            sqlx::raw_sql("ROLLBACK TO SAVEPOINT mfe_batch")
                .execute(conn)
                .await?;
            Ok(None)
        }
    }
}

/// One plain insert of whole rows legacy does not have.
async fn insert_rows(
    conn: &mut PgConnection,
    table: &Table,
    rows: &[Vec<Option<String>>],
) -> sqlx::Result<u64> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(crate::sync::apply::insert_sql(table)))
        .bind(column(rows, table.key_index()));
    for i in 0..table.columns.len() {
        query = query.bind(column(rows, i));
    }
    Ok(query.execute(conn).await?.rows_affected())
}

/// The `i`-th column of `rows`, borrowed: a chunk's values are bound without a copy.
fn column(rows: &[Vec<Option<String>>], i: usize) -> Vec<Option<&str>> {
    rows.iter().map(|r| r[i].as_deref()).collect()
}

/// How the rows written back compare with the service rows read for them.
struct Compared {
    rows: u64,
    differing: u64,
    /// The first keys that differ.
    first: Vec<String>,
}

/// Compares each row of `table` recorded in `fetched` (except `skip`) with legacy's, in the
/// server: its digest there, or its absence, must be the service database's.
async fn compare_fetched(
    conn: &mut PgConnection,
    table: &Table,
    skip: &[&str],
) -> Result<Compared> {
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("t.{}", ident(c.name)))
        .collect();
    let differs = format!(
        "f.digest IS DISTINCT FROM CASE WHEN t.{k} IS NULL THEN NULL ELSE md5(ROW({cols})::text) END",
        k = ident(table.key),
        cols = cols.join(", ")
    );
    // OFFSET 0 keeps the comparison in the subquery: pulled up, it would be computed twice.
    let (rows, differing, first): (i64, i64, Vec<String>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), count(*) FILTER (WHERE differs), \
                 coalesce((array_agg(key ORDER BY key) FILTER (WHERE differs))[1:10], '{{}}') \
             FROM (SELECT f.key, {differs} AS differs \
                   FROM fetched f LEFT JOIN public.{t} t ON t.{k} = f.key \
                   WHERE f.table_name = $1 AND NOT (f.key = ANY($2)) OFFSET 0) c",
            t = ident(table.name),
            k = ident(table.key)
        )))
        .bind(table.name)
        .bind(skip)
        .fetch_one(conn)
        .await?;
    Ok(Compared {
        rows: rows as u64,
        differing: differing as u64,
        first,
    })
}

/// Why each of `keys` (rows of `table` whose delete was held back) stays: the rows that point
/// to it.
async fn why_kept(
    conn: &mut PgConnection,
    table: &Table,
    keys: &[String],
    rules: &rules::Rules,
) -> Result<HashMap<String, String>> {
    let mut refs: HashMap<String, Vec<String>> = HashMap::new();
    for fk in rules.refusing(table) {
        let child = schema::contract::table(fk.table).expect("a contract table");
        let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {col}, {k} FROM public.{c} WHERE {col} = ANY($1) ORDER BY {k}",
            col = ident(fk.column),
            k = ident(child.key),
            c = ident(fk.table)
        )))
        .bind(keys)
        .fetch_all(&mut *conn)
        .await?;
        for (parent, child_key) in rows {
            let list = refs.entry(parent).or_default();
            if list.len() < 5 {
                list.push(format!("{} {child_key} ({})", fk.table, fk.name));
            }
        }
    }
    Ok(refs
        .into_iter()
        .map(|(k, list)| {
            (
                k,
                format!(
                    "deleted in the {} database after cutover, but legacy refuses the delete: \
                     still referenced by {}",
                    table.service.name(),
                    list.join(", ")
                ),
            )
        })
        .collect())
}

/// Upserts `rows` (text, contract column order); returns (inserted, updated, refused). A batch
/// the legacy constraints refuse is retried row by row.
async fn upsert(
    conn: &mut PgConnection,
    table: &'static Table,
    rows: Vec<Vec<Option<String>>>,
) -> Result<(u64, u64, Vec<Refused>)> {
    savepoint(&mut *conn).await?;
    let result = upsert_rows(&mut *conn, table, &rows).await;
    match settle(&mut *conn, result).await? {
        Some((i, u)) => Ok((i, u, Vec::new())),
        None => upsert_each(conn, table, rows).await,
    }
}

/// [`upsert`] one row at a time, each under its own savepoint.
async fn upsert_each(
    conn: &mut PgConnection,
    table: &'static Table,
    rows: Vec<Vec<Option<String>>>,
) -> Result<(u64, u64, Vec<Refused>)> {
    let mut total = (0, 0, Vec::new());
    for row in rows {
        sqlx::raw_sql("SAVEPOINT mfe_row")
            .execute(&mut *conn)
            .await?;
        match upsert_rows(conn, table, std::slice::from_ref(&row)).await {
            Ok((i, u)) => {
                total.0 += i;
                total.1 += u;
                sqlx::raw_sql("RELEASE SAVEPOINT mfe_row")
                    .execute(&mut *conn)
                    .await?;
            }
            Err(e) => {
                let Some(reason) = refused(&e) else {
                    return Err(e.into());
                };
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT mfe_row")
                    .execute(&mut *conn)
                    .await?;
                total.2.push(Refused { table, row, reason });
            }
        }
    }
    Ok(total)
}

/// Why the legacy database refused a row, when it is a constraint the policy handles.
fn refused(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    let constraint = d.constraint().unwrap_or("a constraint");
    match d.code().as_deref() {
        Some("23503") => Some(format!(
            "the legacy foreign key {constraint} refuses it: the row it points to is not in legacy \
             (deleted after cutover); the whole row is in mfe_rollback.conflicts"
        )),
        Some("23505") => Some(format!(
            "the legacy unique index {constraint} refuses it: another legacy row holds the same \
             value; the whole row is in mfe_rollback.conflicts"
        )),
        _ => None,
    }
}

/// One upsert statement of whole rows, changing only rows that differ.
async fn upsert_rows(
    conn: &mut PgConnection,
    table: &Table,
    rows: &[Vec<Option<String>>],
) -> sqlx::Result<(u64, u64)> {
    let key_index = table.key_index();
    let t = format!("public.{}", ident(table.name));
    let text_of = |side: &str| {
        table
            .columns
            .iter()
            .map(|c| format!("{side}.{}", ident(c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Compared as text, as verify compares them: jsonb's equality calls {"n": 10} and
    // {"n": 10.0} equal, yet they print (and hash) differently.
    let sql = format!(
        "{} WHERE ROW({})::text IS DISTINCT FROM ROW({})::text RETURNING (xmax = 0)",
        crate::sync::apply::upsert_sql(table),
        text_of(&t),
        text_of("EXCLUDED")
    );
    let mut query =
        sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(sql)).bind(column(rows, key_index));
    for i in 0..table.columns.len() {
        query = query.bind(column(rows, i));
    }
    let inserted: Vec<bool> = query.fetch_all(conn).await?;
    let i = inserted.iter().filter(|x| **x).count() as u64;
    Ok((i, inserted.len() as u64 - i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_foreign_key_points_to_a_table_listed_before_it() {
        // Upserts walk TABLES forwards (parents first) and deletes backwards (children first).
        let at = |name: &str| TABLES.iter().position(|t| t.name == name).unwrap();
        for fk in FOREIGN_KEYS {
            assert!(
                at(fk.references) < at(fk.table),
                "{} points to {}",
                fk.table,
                fk.references
            );
        }
    }
}
