//! Applying decoded legacy transactions to the four service databases.
//!
//! - **One legacy transaction at a time**, in commit order. Its changes go into one transaction
//!   per service database it touches; each of those also records, in
//!   `mfe_migration.sync_position`, the commit position it applied, so after a crash a target has
//!   either the whole legacy transaction and its position, or neither. A target skips every
//!   transaction whose commit position is at or before the one it recorded: progress is filtered
//!   by commit LSN, never by the position of a statement.
//! - **Idempotent by primary key**: an insert is an upsert, an update sets the columns it carries
//!   (a TOASTed column the change did not touch arrives as "unchanged" and is left alone, never
//!   nulled), a delete deletes by key. Changes committed between the slot's creation and the copy's
//!   snapshot are in both; applying them again converges to the same rows. Up to the snapshot's
//!   position (the horizon), an update or delete whose row is absent is such a change (the row was
//!   deleted before the snapshot, and its delete follows in the stream); after it, an absent row
//!   means the target diverged, and the sync stops naming it.
//! - **An update of a primary key** finds the row by its old key.
//! - **Bounded memory**: rows are applied in batches (one statement per batch, `unnest` of text
//!   arrays cast to the columns' types), whatever the size of the legacy transaction.

use std::collections::{BTreeMap, HashMap, HashSet};

use platform::Service;
use sqlx::{Connection, PgConnection};

use crate::cdc::pgoutput::{Lsn, OldRow, Relation, Value};
use crate::contract::{TABLES, Table};
use crate::error::{MigrateError, Result};
use crate::sql::ident;

/// Rows per statement.
const BATCH_ROWS: usize = 500;
/// Bytes of values per statement (a batch of big TOASTed texts is cut sooner).
const BATCH_BYTES: usize = 4 << 20;

pub const POSITION_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS mfe_migration;
CREATE TABLE IF NOT EXISTS mfe_migration.sync_position (
    slot TEXT PRIMARY KEY,
    -- The commit position of the last legacy transaction applied here.
    commit_lsn PG_LSN NOT NULL,
    commit_time TIMESTAMPTZ,
    transactions BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Rows the sync changed since the last clean full verify ('*': the whole table, truncated),
-- with the commit that changed them: cutover verifies exactly these inside its freeze.
CREATE TABLE IF NOT EXISTS mfe_migration.sync_touched (
    table_name TEXT NOT NULL,
    key TEXT NOT NULL,
    commit_lsn PG_LSN NOT NULL,
    PRIMARY KEY (table_name, key)
);
CREATE TABLE IF NOT EXISTS mfe_migration.capture (
    slot TEXT PRIMARY KEY,
    -- Every change committed after this is in the slot's stream.
    consistent_lsn PG_LSN NOT NULL,
    -- The copy's snapshot was taken at (or before) this position.
    horizon_lsn PG_LSN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// What the targets record of the capture, and where each target stands.
pub async fn position(conn: &mut PgConnection, slot: &str) -> Result<Option<Lsn>> {
    let lsn: Option<String> = sqlx::query_scalar(
        "SELECT commit_lsn::text FROM mfe_migration.sync_position WHERE slot = $1",
    )
    .bind(slot)
    .fetch_optional(conn)
    .await?;
    Ok(lsn.and_then(|l| l.parse().ok()))
}

/// The position the sync applied in this target, if it ever synced (any slot).
pub async fn synced_position(conn: &mut PgConnection) -> Result<Option<Lsn>> {
    let lsn: Option<String> = sqlx::query_scalar(
        "SELECT max(commit_lsn)::text FROM mfe_migration.sync_position \
         WHERE to_regclass('mfe_migration.sync_position') IS NOT NULL",
    )
    .fetch_optional(&mut *conn)
    .await
    .or_else(|e| match &e {
        // No journal of the sync here: never synced.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(None),
        _ => Err(e),
    })?
    .flatten();
    Ok(lsn.and_then(|l| l.parse().ok()))
}

/// A clean verify covered every row changed up to `lsn`.
pub async fn forget_touched(conn: &mut PgConnection, lsn: Lsn) -> Result<()> {
    sqlx::query("DELETE FROM mfe_migration.sync_touched WHERE commit_lsn <= $1::text::pg_lsn")
        .bind(lsn.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The kind of change a batch holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Upsert,
    /// An update setting these columns (by contract index), found by the key in the batch.
    Update(Vec<usize>),
    Delete,
}

struct Batch {
    table: &'static Table,
    kind: Kind,
    /// The key each row is found by (for an update, the old key when it changed).
    keys: Vec<String>,
    /// Per column of `columns`, the values (None = NULL).
    columns: Vec<Vec<Option<String>>>,
    bytes: usize,
    seen: HashSet<String>,
    /// Every key the batch changes (an update of a key changes the old and the new one).
    touched: Vec<String>,
}

/// A change of one row, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowChange {
    Insert {
        values: Vec<Value>,
    },
    Update {
        old_key: Option<String>,
        values: Vec<Value>,
    },
    Delete {
        key: String,
    },
}

/// The state of one target during a legacy transaction.
struct Target {
    service: Service,
    conn: PgConnection,
    applied: Lsn,
    in_transaction: bool,
    batch: Option<Batch>,
    rows: u64,
}

/// What applying a legacy transaction did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub rows: u64,
}

/// The four targets, their positions, and the legacy relations seen in the stream.
pub struct Applier {
    slot: String,
    targets: Vec<Target>,
    horizon: Lsn,
    /// pgoutput relation id -> contract table (checked against the contract and the legacy
    /// catalog at start), and for each contract column its position in the stream's tuples.
    relations: HashMap<u32, (&'static Table, Vec<usize>)>,
    /// The legacy columns at start: (table, [(column, type oid, typmod)]).
    catalog: HashMap<String, Vec<(String, u32, i32)>>,
    current: Option<Lsn>,
    /// Changes of the current transaction up to the horizon may find their row absent.
    tolerant: bool,
}

impl Applier {
    /// `targets`: one connection per service database (with [`POSITION_SQL`] applied).
    pub async fn new(
        slot: &str,
        mut targets: Vec<(Service, PgConnection)>,
        catalog: HashMap<String, Vec<(String, u32, i32)>>,
    ) -> Result<Self> {
        let mut horizon = Lsn(0);
        let mut out = Vec::new();
        for (service, mut conn) in targets.drain(..) {
            let applied = position(&mut conn, slot).await?.unwrap_or_default();
            let h: Option<String> = sqlx::query_scalar(
                "SELECT horizon_lsn::text FROM mfe_migration.capture WHERE slot = $1",
            )
            .bind(slot)
            .fetch_optional(&mut conn)
            .await?;
            if let Some(h) = h.and_then(|h| h.parse::<Lsn>().ok()) {
                horizon = horizon.max(h);
            }
            out.push(Target {
                service,
                conn,
                applied,
                in_transaction: false,
                batch: None,
                rows: 0,
            });
        }
        Ok(Self {
            slot: slot.to_string(),
            targets: out,
            horizon,
            relations: HashMap::new(),
            catalog,
            current: None,
            tolerant: false,
        })
    }

    /// A relation message: which contract table it is, and whether the legacy table still has
    /// the columns it had when the sync started.
    pub fn relation(&mut self, rel: &Relation) -> Result<()> {
        let table = TABLES
            .iter()
            .find(|t| t.name == rel.name && rel.namespace == "public")
            .ok_or_else(|| {
                MigrateError::Other(format!(
                    "the stream carries table {}.{}, which is not in the contract",
                    rel.namespace, rel.name
                ))
            })?;
        let seen: Vec<(String, u32, i32)> = rel
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
            .collect();
        let expected = self.catalog.get(table.name);
        let mut names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
        let mut contract: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        names.sort_unstable();
        contract.sort_unstable();
        if expected != Some(&seen) || names != contract {
            return Err(MigrateError::Other(format!(
                "the legacy table {} changed while syncing (its columns are now {}); the sync \
                 stopped before applying anything of that transaction. Bring the service \
                 databases' schema in line (and the contract), then copy again",
                table.name,
                seen.iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let order = table
            .columns
            .iter()
            .map(|c| {
                rel.columns
                    .iter()
                    .position(|r| r.name == c.name)
                    .ok_or_else(|| {
                        MigrateError::Other(format!(
                            "the legacy table {} has no column {}",
                            table.name, c.name
                        ))
                    })
            })
            .collect::<Result<Vec<usize>>>()?;
        self.relations.insert(rel.oid, (table, order));
        Ok(())
    }

    fn table_of(&self, relation: u32) -> Result<&'static Table> {
        self.relations
            .get(&relation)
            .map(|(t, _)| *t)
            .ok_or_else(|| {
                MigrateError::Other(format!(
                    "a change names relation {relation}, which the stream did not describe"
                ))
            })
    }

    /// Where the key sits in the stream's tuples of `relation`.
    pub fn key_index(&self, relation: u32) -> Result<usize> {
        let (table, order) = self.relations.get(&relation).ok_or_else(|| {
            MigrateError::Other(format!(
                "a change names relation {relation}, which the stream did not describe"
            ))
        })?;
        let key = table.key_index();
        Ok(order[key])
    }

    /// A tuple of the stream in contract column order.
    fn in_contract_order(&self, relation: u32, values: Vec<Value>) -> Result<Vec<Value>> {
        let (table, order) = self.relations.get(&relation).ok_or_else(|| {
            MigrateError::Other(format!(
                "a change names relation {relation}, which the stream did not describe"
            ))
        })?;
        if values.len() != order.len() {
            return Err(MigrateError::Other(format!(
                "a change of {} has {} columns, the table {}",
                table.name,
                values.len(),
                order.len()
            )));
        }
        let mut values: Vec<Option<Value>> = values.into_iter().map(Some).collect();
        Ok(order
            .iter()
            .map(|&p| values[p].take().unwrap_or(Value::Null))
            .collect())
    }

    /// A new legacy transaction, committing at `commit_lsn`.
    pub fn begin(&mut self, commit_lsn: Lsn) {
        self.current = Some(commit_lsn);
        self.tolerant = commit_lsn <= self.horizon;
    }

    fn target_index(&self, service: Service) -> usize {
        self.targets
            .iter()
            .position(|t| t.service == service)
            .expect("a connection per service")
    }

    /// The target of `table` for the current transaction, opened if needed; `None` when it
    /// applied this transaction already.
    async fn open(&mut self, table: &Table) -> Result<Option<usize>> {
        let commit = self.current.ok_or_else(|| {
            MigrateError::Other("a change outside a transaction in the stream".into())
        })?;
        let i = self.target_index(table.service);
        let target = &mut self.targets[i];
        if commit <= target.applied {
            return Ok(None);
        }
        if !target.in_transaction {
            sqlx::raw_sql("BEGIN").execute(&mut target.conn).await?;
            // Another applier (a sync whose session a cutover ended, still applying what it had
            // read) may have moved this database on: the position row, locked, is the truth.
            let now: Option<String> = sqlx::query_scalar(
                "SELECT commit_lsn::text FROM mfe_migration.sync_position WHERE slot = $1 FOR UPDATE",
            )
            .bind(&self.slot)
            .fetch_optional(&mut target.conn)
            .await?;
            if let Some(now) = now.and_then(|l| l.parse::<Lsn>().ok())
                && commit <= now
            {
                sqlx::raw_sql("ROLLBACK").execute(&mut target.conn).await?;
                target.applied = now;
                return Ok(None);
            }
            target.in_transaction = true;
        }
        Ok(Some(i))
    }

    /// One row change of relation `relation`.
    pub async fn change(&mut self, relation: u32, change: RowChange) -> Result<()> {
        let table = self.table_of(relation)?;
        let change = match change {
            RowChange::Insert { values } => RowChange::Insert {
                values: self.in_contract_order(relation, values)?,
            },
            RowChange::Update { old_key, values } => RowChange::Update {
                old_key,
                values: self.in_contract_order(relation, values)?,
            },
            delete => delete,
        };
        let Some(i) = self.open(table).await? else {
            return Ok(());
        };
        let key_index = table.key_index();
        let mut touched = Vec::with_capacity(2);
        let (kind, key, values): (Kind, String, Vec<Option<String>>) = match change {
            RowChange::Insert { values } => {
                let key = text_of(&values, key_index, table)?;
                touched.push(key.clone());
                (Kind::Upsert, key, values.into_iter().map(plain).collect())
            }
            RowChange::Update { old_key, values } => {
                let new_key = text_of(&values, key_index, table)?;
                touched.push(new_key.clone());
                if let Some(old) = &old_key
                    && *old != new_key
                {
                    touched.push(old.clone());
                }
                let set: Vec<usize> = values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v != Value::Unchanged)
                    .map(|(i, _)| i)
                    .collect();
                let row: Vec<Option<String>> = values
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| set.contains(i))
                    .map(|(_, v)| plain(v))
                    .collect();
                (Kind::Update(set), old_key.unwrap_or(new_key), row)
            }
            RowChange::Delete { key } => {
                touched.push(key.clone());
                (Kind::Delete, key, Vec::new())
            }
        };
        let width = values.len();
        let size: usize = key.len() + values.iter().flatten().map(String::len).sum::<usize>();
        let target = &mut self.targets[i];
        // An update that changes a key goes alone: within a batch rows are joined in no order.
        let rekey = touched.len() > 1;
        let fits = !rekey
            && target.batch.as_ref().is_some_and(|b| {
                b.table.name == table.name
                    && b.kind == kind
                    && !touched.iter().any(|k| b.seen.contains(k))
                    && b.keys.len() < BATCH_ROWS
                    && b.bytes + size <= BATCH_BYTES
            });
        if !fits {
            flush(target, self.tolerant, self.current.unwrap_or_default()).await?;
            target.batch = Some(Batch {
                table,
                kind,
                keys: Vec::new(),
                columns: vec![Vec::new(); width],
                bytes: 0,
                seen: HashSet::new(),
                touched: Vec::new(),
            });
        }
        let batch = target.batch.as_mut().expect("a batch");
        batch.seen.extend(touched.iter().cloned());
        batch.seen.insert(key.clone());
        batch.keys.push(key);
        for (column, value) in batch.columns.iter_mut().zip(values) {
            column.push(value);
        }
        batch.bytes += size;
        batch.touched.extend(touched);
        if rekey {
            flush(target, self.tolerant, self.current.unwrap_or_default()).await?;
        }
        Ok(())
    }

    /// `TRUNCATE` of some legacy tables.
    pub async fn truncate(&mut self, relations: &[u32]) -> Result<()> {
        let mut by_target: BTreeMap<usize, Vec<&'static Table>> = BTreeMap::new();
        for relation in relations {
            let table = self.table_of(*relation)?;
            if let Some(i) = self.open(table).await? {
                by_target.entry(i).or_default().push(table);
            }
        }
        for (i, tables) in by_target {
            let target = &mut self.targets[i];
            flush(target, self.tolerant, self.current.unwrap_or_default()).await?;
            let names: Vec<String> = tables
                .iter()
                .map(|t| format!("public.{}", ident(t.name)))
                .collect();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "TRUNCATE {}",
                names.join(", ")
            )))
            .execute(&mut target.conn)
            .await?;
            let commit = self.current.unwrap_or_default();
            for table in tables {
                record_touched(&mut target.conn, table.name, &["*".to_string()], commit).await?;
            }
        }
        Ok(())
    }

    /// The end of the current legacy transaction: every target it touched commits its changes
    /// with the new position.
    pub async fn commit(
        &mut self,
        commit_time: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Applied> {
        let commit = self.current.take().ok_or_else(|| {
            MigrateError::Other("a commit outside a transaction in the stream".into())
        })?;
        let mut applied = Applied::default();
        for target in &mut self.targets {
            if !target.in_transaction {
                continue;
            }
            flush(target, self.tolerant, commit).await?;
            sqlx::query(
                "INSERT INTO mfe_migration.sync_position (slot, commit_lsn, commit_time, transactions, updated_at) \
                 VALUES ($1, $2::text::pg_lsn, $3, 1, now()) \
                 ON CONFLICT (slot) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, \
                     commit_time = EXCLUDED.commit_time, \
                     transactions = mfe_migration.sync_position.transactions + 1, updated_at = now() \
                 WHERE mfe_migration.sync_position.commit_lsn < EXCLUDED.commit_lsn",
            )
            .bind(&self.slot)
            .bind(commit.to_string())
            .bind(commit_time)
            .execute(&mut target.conn)
            .await?;
            sqlx::raw_sql("COMMIT").execute(&mut target.conn).await?;
            target.in_transaction = false;
            target.applied = commit;
            applied.rows += std::mem::take(&mut target.rows);
        }
        Ok(applied)
    }

    /// Gives the connections back (e.g. to close them).
    pub async fn close(self) {
        for target in self.targets {
            let _ = target.conn.close().await;
        }
    }
}

fn plain(v: Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s),
        Value::Null | Value::Unchanged => None,
    }
}

fn text_of(values: &[Value], index: usize, table: &Table) -> Result<String> {
    match values.get(index) {
        Some(Value::Text(s)) => Ok(s.clone()),
        _ => Err(MigrateError::Other(format!(
            "a change of {} carries no key",
            table.name
        ))),
    }
}

/// The key of an old row (`K` or `O`).
pub fn old_key(old: &OldRow, table_key_index: usize) -> Option<String> {
    match old.values().get(table_key_index) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Runs the target's pending batch.
async fn flush(target: &mut Target, tolerant: bool, commit: Lsn) -> Result<()> {
    let Some(batch) = target.batch.take() else {
        return Ok(());
    };
    let table = batch.table;
    record_touched(&mut target.conn, table.name, &batch.touched, commit).await?;
    let t = format!("public.{}", ident(table.name));
    let key = ident(table.key);
    let n = batch.keys.len();
    let (sql, set_columns): (String, Vec<usize>) = match &batch.kind {
        Kind::Upsert => (upsert_sql(table), (0..table.columns.len()).collect()),
        Kind::Update(set) => {
            let sets: Vec<String> = set
                .iter()
                .enumerate()
                .map(|(k, i)| {
                    let c = &table.columns[*i];
                    format!("{} = CAST(u.c{} AS {})", ident(c.name), k + 2, c.data_type)
                })
                .collect();
            (
                format!(
                    "UPDATE {t} SET {} FROM {} WHERE {t}.{key} = u.c1 RETURNING u.c1",
                    sets.join(", "),
                    unnest(set.len() + 1)
                ),
                set.clone(),
            )
        }
        Kind::Delete => (
            format!(
                "DELETE FROM {t} USING {} WHERE {t}.{key} = u.c1 RETURNING u.c1",
                unnest(1)
            ),
            Vec::new(),
        ),
    };
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(&batch.keys);
    for column in &batch.columns {
        query = query.bind(column);
    }
    debug_assert_eq!(batch.columns.len(), set_columns.len());
    let touched: Vec<String> = match batch.kind {
        // An upsert touches every row; it returns nothing.
        // Up to the horizon an insert may replay a row whose unique values (an email) or parent
        // have changed hands since: skipped, a later change in the stream supersedes it.
        Kind::Upsert if tolerant => {
            drop(query);
            let conn = &mut target.conn;
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
                    sqlx::raw_sql("ROLLBACK TO SAVEPOINT mfe_batch")
                        .execute(&mut *conn)
                        .await?;
                    for r in 0..n {
                        let one: Vec<Vec<Option<String>>> =
                            batch.columns.iter().map(|c| vec![c[r].clone()]).collect();
                        sqlx::raw_sql("SAVEPOINT mfe_row")
                            .execute(&mut *conn)
                            .await?;
                        match upsert_rows(&mut *conn, table, &batch.keys[r..=r], &one).await {
                            Ok(()) => {}
                            Err(e) if superseded(&e) => {
                                tracing::debug!(table = table.name, key = %batch.keys[r], "a replayed row was superseded");
                                sqlx::raw_sql("ROLLBACK TO SAVEPOINT mfe_row")
                                    .execute(&mut *conn)
                                    .await?;
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        }
                        sqlx::raw_sql("RELEASE SAVEPOINT mfe_row")
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            target.rows += n as u64;
            return Ok(());
        }
        Kind::Upsert => {
            query.fetch_all(&mut target.conn).await?;
            target.rows += n as u64;
            return Ok(());
        }
        _ => query.fetch_all(&mut target.conn).await?,
    };
    target.rows += touched.len() as u64;
    // A delete whose row is gone is done (a cascade in the service database may have got there
    // first); only an update that finds no row means the databases diverged.
    if touched.len() < n && !tolerant && !matches!(batch.kind, Kind::Delete) {
        let found: HashSet<&String> = touched.iter().collect();
        let absent: Vec<&String> = batch
            .keys
            .iter()
            .filter(|k| !found.contains(k))
            .take(5)
            .collect();
        return Err(MigrateError::Other(format!(
            "{} rows of {} to {} are not in the {} database (first: {}): it diverged from the \
             legacy database; the sync stopped without applying that transaction",
            n - touched.len(),
            table.name,
            match batch.kind {
                Kind::Delete => "delete",
                _ => "update",
            },
            table.service.name(),
            absent
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
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

async fn upsert_rows(
    conn: &mut PgConnection,
    table: &Table,
    keys: &[String],
    columns: &[Vec<Option<String>>],
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

async fn record_touched(
    conn: &mut PgConnection,
    table: &str,
    keys: &[String],
    commit: Lsn,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO mfe_migration.sync_touched (table_name, key, commit_lsn) \
         SELECT $1, k, $3::text::pg_lsn FROM unnest($2::text[]) AS k \
         ON CONFLICT (table_name, key) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn",
    )
    .bind(table)
    .bind({
        let mut unique = keys.to_vec();
        unique.sort_unstable();
        unique.dedup();
        unique
    })
    .bind(commit.to_string())
    .execute(conn)
    .await?;
    Ok(())
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
