//! Applying decoded legacy transactions to one service database: the worker each target runs
//! while [`crate::sync`] streams.
//!
//! - **Many legacy transactions per target transaction**, in commit order. A target transaction
//!   ends only between legacy transactions, and records in `mfe_migration.sync_position` the
//!   commit position of the last one it holds: after a crash a target has every legacy
//!   transaction up to its position and none after. A target skips every transaction whose commit
//!   position is at or before the one it recorded: progress is filtered by commit LSN, never by
//!   the position of a statement. The sync confirms a position to the slot only once every
//!   target committed up to it, so nothing is skipped that was not applied.
//! - **Set-based**: the changes of a run (up to [`RUN_ROWS`]) are folded into their net effect
//!   per key ([`crate::sync::net`]) and applied as one statement per table and kind: upserts and
//!   updates parents first, deletes children first. A run whose net effect a constraint refuses
//!   in that order (an email that changed hands, a key deleted and inserted again) is applied
//!   again change by change, in the legacy order, from a savepoint: the order legacy itself
//!   accepted.
//! - **Idempotent by primary key**: an insert is an upsert, an update sets the columns it carries
//!   (a TOASTed column no change touched arrives as "unchanged" and is left alone, never nulled),
//!   a delete deletes by key. Changes committed between the slot's creation and the copy's
//!   snapshot are in both; applying them again converges to the same rows. Up to the snapshot's
//!   position (the horizon), an update or delete whose row is absent is such a change (the row was
//!   deleted before the snapshot, and its delete follows in the stream); after it, an absent row
//!   means the target diverged, and the sync stops naming it.
//! - **An update of a primary key** finds the row by its old key, alone and in order.
//! - **Bounded memory**: a run holds at most [`RUN_ROWS`] changes or [`RUN_BYTES`] of values,
//!   whatever the size of the legacy transaction.

use std::collections::{HashMap, HashSet};

use platform::Service;
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use crate::cdc::pgoutput::{Lsn, Value};
use crate::engine::journal::position::position;
use crate::engine::sql::ident;
use crate::error::{MigrateError, Result};
use crate::sync::net::{self, Fold, Pending, RowChange};
use schema::contract::{TABLES, Table};

/// Changes per run (one set of statements).
pub const RUN_ROWS: usize = 10_000;
/// Bytes of values per run (a run of big TOASTed texts is cut sooner).
pub const RUN_BYTES: usize = 8 << 20;
/// A target transaction commits at the next legacy commit once it holds this many changes, even
/// before the sync asks (a backlog of huge transactions).
const TRANSACTION_ROWS: u64 = 200_000;
/// Rows per statement on the change-by-change path.
const EXACT_ROWS: usize = 500;

/// What the sync tells a target, in the legacy commit order.
#[derive(Debug)]
pub enum Op {
    /// A legacy transaction that touches this target, committing at `commit`.
    Begin {
        commit: Lsn,
        tolerant: bool,
    },
    Change(Pending),
    Truncate(Vec<&'static Table>),
    /// The end of the legacy transaction begun last.
    Commit {
        commit: Lsn,
        time: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Between legacy transactions: commit what is applied, then acknowledge `upto`.
    Checkpoint(Lsn),
}

/// An operation in a target's queue, with the share of the queue's byte budget it holds.
pub type Queued = (Op, Option<tokio::sync::OwnedSemaphorePermit>);

/// A target's answer to a checkpoint: everything before the position is committed there.
#[derive(Debug)]
pub enum Ack {
    Committed { target: usize, upto: Lsn },
    Failed { target: usize, error: MigrateError },
}

/// One target: its connection and where it stands.
pub struct Target {
    pub service: Service,
    slot: String,
    conn: PgConnection,
    /// The last legacy commit this database holds (committed).
    applied: Lsn,
    open: bool,
    /// The legacy transaction being received, and whether it is skipped (applied before).
    current: Option<Lsn>,
    skip: bool,
    run: Vec<Pending>,
    run_bytes: usize,
    /// The changes of the run are up to the horizon (a run never mixes both).
    tolerant: bool,
    /// The last legacy commit in the open transaction, and how many it holds.
    last_commit: Option<(Lsn, Option<chrono::DateTime<chrono::Utc>>)>,
    transactions: i64,
    rows: u64,
}

impl Target {
    /// `conn` has [`POSITION_SQL`] applied.
    pub async fn new(service: Service, mut conn: PgConnection, slot: &str) -> Result<Self> {
        let applied = position(&mut conn, slot).await?.unwrap_or_default();
        Ok(Self {
            service,
            slot: slot.to_string(),
            conn,
            applied,
            open: false,
            current: None,
            skip: false,
            run: Vec::new(),
            run_bytes: 0,
            tolerant: false,
            last_commit: None,
            transactions: 0,
            rows: 0,
        })
    }

    /// Applies what arrives until the sender goes; a failure is reported and ends the worker.
    pub async fn run(
        mut self,
        index: usize,
        mut ops: mpsc::Receiver<Queued>,
        acks: mpsc::UnboundedSender<Ack>,
    ) {
        // The budget a queued change holds is given back once the change is in the run (which
        // has its own bound).
        while let Some((op, _budget)) = ops.recv().await {
            let step = match op {
                Op::Checkpoint(upto) => self.checkpoint().await.map(|()| Some(upto)),
                op => self.handle(op).await.map(|()| None),
            };
            match step {
                Ok(Some(upto)) => {
                    let _ = acks.send(Ack::Committed {
                        target: index,
                        upto,
                    });
                }
                Ok(None) => {}
                Err(error) => {
                    let _ = acks.send(Ack::Failed {
                        target: index,
                        error,
                    });
                    break;
                }
            }
        }
        // Whatever is open and not checkpointed is not confirmed anywhere: the stream brings it
        // again next time.
        if self.open {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
        }
        let _ = self.conn.close().await;
    }

    async fn handle(&mut self, op: Op) -> Result<()> {
        match op {
            Op::Begin { commit, tolerant } => {
                self.current = Some(commit);
                self.skip = commit <= self.applied;
                if !self.skip {
                    self.open_transaction().await?;
                    self.skip = commit <= self.applied;
                }
                if tolerant != self.tolerant {
                    self.flush().await?;
                }
                self.tolerant = tolerant;
            }
            Op::Change(pending) => {
                if self.skip {
                    return Ok(());
                }
                self.rows += 1;
                if pending.change.rekeys(pending.table.key_index()) {
                    // Alone and in order: a key update cannot be joined to other rows.
                    self.flush().await?;
                    let one = [pending];
                    record_touched(&mut self.conn, &one).await?;
                    apply_exact(&mut self.conn, &one, self.tolerant).await?;
                    return Ok(());
                }
                self.run_bytes += pending.change.bytes();
                self.run.push(pending);
                if self.run.len() >= RUN_ROWS || self.run_bytes >= RUN_BYTES {
                    self.flush().await?;
                }
            }
            Op::Truncate(tables) => {
                if self.skip {
                    return Ok(());
                }
                self.flush().await?;
                let names: Vec<String> = tables
                    .iter()
                    .map(|t| format!("public.{}", ident(t.name)))
                    .collect();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "TRUNCATE {}",
                    names.join(", ")
                )))
                .execute(&mut self.conn)
                .await?;
                let commit = self.current.unwrap_or_default();
                for table in tables {
                    insert_touched(&mut self.conn, table.name, &["*"], &[commit]).await?;
                }
            }
            Op::Commit { commit, time } => {
                self.current = None;
                if std::mem::take(&mut self.skip) {
                    return Ok(());
                }
                self.last_commit = Some((commit, time));
                self.transactions += 1;
                if self.rows >= TRANSACTION_ROWS {
                    self.checkpoint().await?;
                }
            }
            Op::Checkpoint(_) => unreachable!("handled by run"),
        }
        Ok(())
    }

    /// Opens the target transaction if none is open. Another applier (a sync whose session a
    /// cutover ended, still applying what it had read) may have moved this database on: the
    /// position row, locked, is the truth.
    async fn open_transaction(&mut self) -> Result<()> {
        if self.open {
            return Ok(());
        }
        sqlx::raw_sql("BEGIN").execute(&mut self.conn).await?;
        self.open = true;
        let now: Option<String> = sqlx::query_scalar(
            "SELECT commit_lsn::text FROM mfe_migration.sync_position WHERE slot = $1 FOR UPDATE",
        )
        .bind(&self.slot)
        .fetch_optional(&mut self.conn)
        .await?;
        if let Some(now) = now.and_then(|l| l.parse::<Lsn>().ok()) {
            self.applied = self.applied.max(now);
        }
        Ok(())
    }

    /// Commits the open transaction with its position (between legacy transactions only).
    async fn checkpoint(&mut self) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        self.flush().await?;
        if let Some((commit, time)) = self.last_commit {
            sqlx::query(
                "INSERT INTO mfe_migration.sync_position (slot, commit_lsn, commit_time, transactions, updated_at) \
                 VALUES ($1, $2::text::pg_lsn, $3, $4, now()) \
                 ON CONFLICT (slot) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, \
                     commit_time = EXCLUDED.commit_time, \
                     transactions = mfe_migration.sync_position.transactions + EXCLUDED.transactions, \
                     updated_at = now() \
                 WHERE mfe_migration.sync_position.commit_lsn < EXCLUDED.commit_lsn",
            )
            .bind(&self.slot)
            .bind(commit.to_string())
            .bind(time)
            .bind(self.transactions)
            .execute(&mut self.conn)
            .await?;
        }
        sqlx::raw_sql("COMMIT").execute(&mut self.conn).await?;
        self.open = false;
        if let Some((commit, _)) = self.last_commit.take() {
            self.applied = self.applied.max(commit);
        }
        self.transactions = 0;
        self.rows = 0;
        Ok(())
    }

    /// Applies the run: folded, or change by change when folding is refused.
    async fn flush(&mut self) -> Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        let run = std::mem::take(&mut self.run);
        self.run_bytes = 0;
        let tolerant = self.tolerant;
        let conn = &mut self.conn;
        record_touched(conn, &run).await?;
        match net::fold(&run) {
            Err(why) => {
                tracing::debug!(
                    service = self.service.name(),
                    why = why.0,
                    "applied in order"
                );
                apply_exact(conn, &run, tolerant).await?;
            }
            Ok(nets) => {
                sqlx::raw_sql("SAVEPOINT mfe_run")
                    .execute(&mut *conn)
                    .await?;
                match apply_net(conn, self.service, &run, &nets, tolerant).await {
                    Ok(()) => {
                        sqlx::raw_sql("RELEASE SAVEPOINT mfe_run")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Err(NetError::Refused(e)) => {
                        tracing::debug!(service = self.service.name(), error = %e, "net effect refused; applied in order");
                        sqlx::raw_sql("ROLLBACK TO SAVEPOINT mfe_run; RELEASE SAVEPOINT mfe_run")
                            .execute(&mut *conn)
                            .await?;
                        apply_exact(conn, &run, tolerant).await?;
                    }
                    Err(NetError::Other(e)) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

enum NetError {
    /// A constraint refused the net effect in the order the statements ran.
    Refused(sqlx::Error),
    Other(MigrateError),
}

impl From<sqlx::Error> for NetError {
    fn from(e: sqlx::Error) -> Self {
        if superseded(&e) {
            NetError::Refused(e)
        } else {
            NetError::Other(e.into())
        }
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(s) => Some(s),
        Value::Null | Value::Unchanged => None,
    }
}

/// The net effect of `run` on the service's tables: upserts and updates parents first, deletes
/// children first (contract order lists parents first).
async fn apply_net(
    conn: &mut PgConnection,
    service: Service,
    run: &[Pending],
    nets: &HashMap<&'static str, net::TableNet<'_>>,
    tolerant: bool,
) -> Result<(), NetError> {
    let tables: Vec<&Table> = TABLES.iter().filter(|t| t.service == service).collect();
    let of = |table: &Table| nets.get(table.name);
    for table in &tables {
        if let Some(net) = of(table) {
            upsert_net(conn, table, run, net, tolerant).await?;
        }
    }
    for table in &tables {
        if let Some(net) = of(table) {
            update_net(conn, table, run, net, tolerant).await?;
        }
    }
    for table in tables.iter().rev() {
        if let Some(net) = of(table) {
            delete_net(conn, table, net).await?;
        }
    }
    Ok(())
}

/// The values of `columns` (contract positions) of each of `keys`' last state in the run: one
/// array per column, the shape the statements bind.
fn columns_of<'r>(
    run: &'r [Pending],
    net: &net::TableNet<'_>,
    keys: &[&str],
    columns: impl Iterator<Item = usize>,
) -> Vec<Vec<Option<&'r str>>> {
    columns
        .map(|c| {
            keys.iter()
                .map(|k| text(net::value(run, &net.rows[k].since, c)))
                .collect()
        })
        .collect()
}

/// The rows whose last state is whole. A row first seen as an insert was absent before the
/// run: a plain insert (cheaper than an upsert's speculative insertion). Should it be there
/// after all (a replay up to the horizon, a diverged database), the unique key refuses it and
/// the run goes in order, by upserts. Up to the horizon every row is upserted.
async fn upsert_net(
    conn: &mut PgConnection,
    table: &Table,
    run: &[Pending],
    net: &net::TableNet<'_>,
    tolerant: bool,
) -> Result<(), NetError> {
    for plain in [true, false] {
        let keys: Vec<&str> = net
            .keys
            .iter()
            .copied()
            .filter(|k| {
                let row = &net.rows[k];
                row.fold == Fold::Upsert && (row.fresh && !tolerant) == plain
            })
            .collect();
        if keys.is_empty() {
            continue;
        }
        let columns = columns_of(run, net, &keys, 0..table.columns.len());
        let sql = if plain {
            insert_sql(table)
        } else {
            upsert_sql(table)
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&keys);
        for column in &columns {
            query = query.bind(column);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The rows updated in the run, grouped by the columns they set (most set every column). Past
/// the horizon a row to update must be there: one absent means the target diverged.
async fn update_net(
    conn: &mut PgConnection,
    table: &Table,
    run: &[Pending],
    net: &net::TableNet<'_>,
    tolerant: bool,
) -> Result<(), NetError> {
    let mut by_mask: Vec<(u64, Vec<&str>)> = Vec::new();
    for k in net.keys.iter().copied() {
        let row = &net.rows[k];
        if row.fold != Fold::Update {
            continue;
        }
        let mask = net::set_mask(run, &row.since, table.columns.len());
        match by_mask.iter_mut().find(|(m, _)| *m == mask) {
            Some((_, keys)) => keys.push(k),
            None => by_mask.push((mask, vec![k])),
        }
    }
    for (mask, keys) in by_mask {
        let set: Vec<usize> = (0..table.columns.len())
            .filter(|c| mask & (1 << c) != 0)
            .collect();
        let columns = columns_of(run, net, &keys, set.iter().copied());
        let mut query =
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(update_sql(table, &set)))
                .bind(&keys);
        for column in &columns {
            query = query.bind(column);
        }
        let found = query.fetch_all(&mut *conn).await?;
        if found.len() < keys.len() && !tolerant {
            let found: HashSet<&str> = found.iter().map(String::as_str).collect();
            let absent: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| !found.contains(k))
                .collect();
            return Err(NetError::Other(diverged(table, "update", &absent)));
        }
    }
    Ok(())
}

/// The rows deleted in the run. A delete whose row is gone is done (a cascade in the service
/// database may have got there first).
async fn delete_net(
    conn: &mut PgConnection,
    table: &Table,
    net: &net::TableNet<'_>,
) -> Result<(), NetError> {
    let deletes: Vec<&str> = net
        .keys
        .iter()
        .copied()
        .filter(|k| net.rows[k].fold == Fold::Delete)
        .collect();
    if !deletes.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(delete_sql(table)))
            .bind(&deletes)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn diverged(table: &Table, what: &str, absent: &[&str]) -> MigrateError {
    MigrateError::Diverged(format!(
        "{} rows of {} to {what} are not in the {} database (first: {}): it diverged from the \
         legacy database; the sync stopped without applying that transaction",
        absent.len(),
        table.name,
        table.service.name(),
        absent
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The kind of statement a batch of the change-by-change path is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Upsert,
    /// An update setting these columns (by contract index), found by the key in the batch.
    Update(Vec<usize>),
    Delete,
}

struct Batch<'a> {
    table: &'static Table,
    kind: Kind,
    /// The key each row is found by (for an update, the old key when it changed).
    keys: Vec<&'a str>,
    /// Per column of the statement, the values (None = NULL).
    columns: Vec<Vec<Option<&'a str>>>,
    bytes: usize,
    seen: HashSet<&'a str>,
}

/// `run` change by change in its order, consecutive changes of one kind to one table joined into
/// one statement while no key repeats.
async fn apply_exact(conn: &mut PgConnection, run: &[Pending], tolerant: bool) -> Result<()> {
    let mut batch: Option<Batch<'_>> = None;
    for p in run {
        let table = p.table;
        let key_index = table.key_index();
        let rekey = p.change.rekeys(key_index);
        let (kind, key, values): (Kind, &str, Vec<Option<&str>>) = match &p.change {
            RowChange::Insert { values } => (
                Kind::Upsert,
                key_text(values, key_index, table)?,
                values.iter().map(text).collect(),
            ),
            RowChange::Update { old_key, values } => {
                let new_key = key_text(values, key_index, table)?;
                let set: Vec<usize> = values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v != Value::Unchanged)
                    .map(|(i, _)| i)
                    .collect();
                let row = set.iter().map(|&i| text(&values[i])).collect();
                let key = old_key.as_deref().unwrap_or(new_key);
                (Kind::Update(set), key, row)
            }
            RowChange::Delete { key } => (Kind::Delete, key.as_str(), Vec::new()),
        };
        let size: usize = key.len() + values.iter().flatten().map(|v| v.len()).sum::<usize>();
        let new_key = p.key().unwrap_or(key);
        let fits = !rekey
            && batch.as_ref().is_some_and(|b| {
                b.table.name == table.name
                    && b.kind == kind
                    && !b.seen.contains(key)
                    && !b.seen.contains(new_key)
                    && b.keys.len() < EXACT_ROWS
                    && b.bytes + size <= RUN_BYTES
            });
        if !fits {
            if let Some(b) = batch.take() {
                run_batch(conn, b, tolerant).await?;
            }
            batch = Some(Batch {
                table,
                kind,
                keys: Vec::new(),
                columns: vec![Vec::new(); values.len()],
                bytes: 0,
                seen: HashSet::new(),
            });
        }
        let b = batch.as_mut().expect("a batch");
        b.seen.insert(key);
        b.seen.insert(new_key);
        b.keys.push(key);
        for (column, value) in b.columns.iter_mut().zip(values) {
            column.push(value);
        }
        b.bytes += size;
        if rekey && let Some(b) = batch.take() {
            run_batch(conn, b, tolerant).await?;
        }
    }
    if let Some(b) = batch {
        run_batch(conn, b, tolerant).await?;
    }
    Ok(())
}

async fn run_batch(conn: &mut PgConnection, batch: Batch<'_>, tolerant: bool) -> Result<()> {
    let table = batch.table;
    let n = batch.keys.len();
    let sql = match &batch.kind {
        // Up to the horizon an insert may replay a row whose unique values (an email) or parent
        // have changed hands since: skipped, a later change in the stream supersedes it.
        Kind::Upsert if tolerant => {
            sqlx::raw_sql("SAVEPOINT mfe_batch")
                .execute(&mut *conn)
                .await?;
            match upsert_rows(&mut *conn, table, &batch.keys, &batch.columns).await {
                Ok(()) => {
                    sqlx::raw_sql("RELEASE SAVEPOINT mfe_batch")
                        .execute(&mut *conn)
                        .await?;
                }
                Err(e) if superseded(&e) => {
                    sqlx::raw_sql("ROLLBACK TO SAVEPOINT mfe_batch; RELEASE SAVEPOINT mfe_batch")
                        .execute(&mut *conn)
                        .await?;
                    for r in 0..n {
                        let one: Vec<Vec<Option<&str>>> =
                            batch.columns.iter().map(|c| vec![c[r]]).collect();
                        sqlx::raw_sql("SAVEPOINT mfe_row")
                            .execute(&mut *conn)
                            .await?;
                        match upsert_rows(&mut *conn, table, &batch.keys[r..=r], &one).await {
                            Ok(()) => {
                                sqlx::raw_sql("RELEASE SAVEPOINT mfe_row")
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            Err(e) if superseded(&e) => {
                                tracing::debug!(table = table.name, key = %batch.keys[r], "a replayed row was superseded");
                                sqlx::raw_sql(
                                    "ROLLBACK TO SAVEPOINT mfe_row; RELEASE SAVEPOINT mfe_row",
                                )
                                .execute(&mut *conn)
                                .await?;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        Kind::Upsert => {
            upsert_rows(&mut *conn, table, &batch.keys, &batch.columns).await?;
            return Ok(());
        }
        Kind::Update(set) => update_sql(table, set),
        Kind::Delete => {
            sqlx::query(sqlx::AssertSqlSafe(delete_sql(table)))
                .bind(&batch.keys)
                .execute(&mut *conn)
                .await?;
            return Ok(());
        }
    };
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(&batch.keys);
    for column in &batch.columns {
        query = query.bind(column);
    }
    let found = query.fetch_all(&mut *conn).await?;
    // Only an update that finds no row means the databases diverged.
    if found.len() < n && !tolerant {
        let found: HashSet<&str> = found.iter().map(String::as_str).collect();
        let absent: Vec<&str> = batch
            .keys
            .iter()
            .copied()
            .filter(|k| !found.contains(k))
            .collect();
        return Err(diverged(table, "update", &absent));
    }
    Ok(())
}

fn key_text<'a>(values: &'a [Value], index: usize, table: &Table) -> Result<&'a str> {
    match values.get(index) {
        Some(Value::Text(s)) => Ok(s),
        _ => Err(MigrateError::Stream(format!(
            "a change of {} carries no key",
            table.name
        ))),
    }
}

/// The key of an old row (`K` or `O`).
pub fn old_key(old: &crate::cdc::pgoutput::OldRow, table_key_index: usize) -> Option<String> {
    match old.values().get(table_key_index) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Records every key `run` changes, with the commit that last changed it.
async fn record_touched(conn: &mut PgConnection, run: &[Pending]) -> Result<()> {
    for (table, keys) in net::touched(run) {
        let (keys, lsns): (Vec<&str>, Vec<Lsn>) = keys.into_iter().unzip();
        insert_touched(conn, table, &keys, &lsns).await?;
    }
    Ok(())
}

async fn insert_touched(
    conn: &mut PgConnection,
    table: &str,
    keys: &[&str],
    lsns: &[Lsn],
) -> Result<()> {
    let last = lsns.iter().max().copied().unwrap_or_default();
    sqlx::query(
        "INSERT INTO mfe_migration.sync_changes (table_name, commit_lsn, keys, lsns) \
         VALUES ($1, $2::text::pg_lsn, $3, $4::text[]::pg_lsn[])",
    )
    .bind(table)
    .bind(last.to_string())
    .bind(keys)
    .bind(lsns.iter().map(|l| l.to_string()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// `INSERT ... SELECT CAST(u.c2 AS type), ... FROM unnest(keys, col1, ...) ON CONFLICT (key) DO
/// UPDATE` of whole rows given as text: $1 the keys, $2.. each column in contract order.
pub fn upsert_sql(table: &Table) -> String {
    let t = format!("public.{}", ident(table.name));
    let all: Vec<usize> = (0..table.columns.len()).collect();
    let updates: Vec<String> = table
        .columns
        .iter()
        .filter(|c| c.name != table.key)
        .map(|c| format!("{0} = EXCLUDED.{0}", ident(c.name)))
        .collect();
    format!(
        "INSERT INTO {t} ({names}) SELECT {casts} FROM {from} \
         ON CONFLICT ({key}) DO UPDATE SET {updates}",
        names = table.column_list(),
        casts = casts(table, &all, 2),
        from = unnest(all.len() + 1),
        key = ident(table.key),
        updates = updates.join(", ")
    )
}

/// [`upsert_sql`] without its `ON CONFLICT`: rows known to be new.
pub fn insert_sql(table: &Table) -> String {
    let all: Vec<usize> = (0..table.columns.len()).collect();
    format!(
        "INSERT INTO public.{t} ({names}) SELECT {casts} FROM {from}",
        t = ident(table.name),
        names = table.column_list(),
        casts = casts(table, &all, 2),
        from = unnest(all.len() + 1),
    )
}

/// `UPDATE ... FROM unnest(keys, col...)` setting the contract columns `set`; returns the keys
/// it found.
fn update_sql(table: &Table, set: &[usize]) -> String {
    let t = format!("public.{}", ident(table.name));
    let sets: Vec<String> = set
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let c = &table.columns[*i];
            format!("{} = CAST(u.c{} AS {})", ident(c.name), k + 2, c.data_type)
        })
        .collect();
    format!(
        "UPDATE {t} SET {} FROM {} WHERE {t}.{key} = u.c1 RETURNING u.c1",
        sets.join(", "),
        unnest(set.len() + 1),
        key = ident(table.key),
    )
}

fn delete_sql(table: &Table) -> String {
    let t = format!("public.{}", ident(table.name));
    format!(
        "DELETE FROM {t} USING {} WHERE {t}.{key} = u.c1",
        unnest(1),
        key = ident(table.key)
    )
}

async fn upsert_rows(
    conn: &mut PgConnection,
    table: &Table,
    keys: &[&str],
    columns: &[Vec<Option<&str>>],
) -> sqlx::Result<()> {
    let sql = upsert_sql(table);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(keys);
    for column in columns {
        query = query.bind(column);
    }
    query.execute(conn).await?;
    Ok(())
}

/// A unique or foreign key violation: the row conflicts with a state the stream moves past.
fn superseded(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("23505" | "23503")))
}

/// `unnest($1::text[], ..., $n::text[]) AS u(c1, ..., cn)`.
fn unnest(n: usize) -> String {
    let args: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
    format!("unnest({}) AS u({})", args.join(", "), names.join(", "))
}

/// `CAST(u.c2 AS type), ...` for the contract columns `columns`, numbered from `first`.
fn casts(table: &Table, columns: &[usize], first: usize) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(k, i)| format!("CAST(u.c{} AS {})", k + first, table.columns[*i].data_type))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnest_names_its_columns() {
        assert_eq!(unnest(2), "unnest($1::text[], $2::text[]) AS u(c1, c2)");
    }
}
