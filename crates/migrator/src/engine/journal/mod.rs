//! The tool's journal, kept in each service database (schema `mfe_migration`), never in the
//! legacy database (which the tool only reads, possibly with a read-only role).
//!
//! Living beside the data is what makes `copy` exactly-once: a chunk's rows and the journal row
//! that says the chunk is done commit in one transaction, so after a crash at any moment a chunk
//! is either wholly there and marked, or wholly absent and copied again.

pub mod position;
pub mod state;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS mfe_migration;
CREATE TABLE IF NOT EXISTS mfe_migration.tables (
    table_name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    saved_ddl JSONB NOT NULL DEFAULT '[]',
    estimated_rows BIGINT NOT NULL DEFAULT 0,
    -- The first copy's snapshot xmax (low 32 bits): rows written after it mean the legacy table
    -- changed, and chunks planned by block range may no longer partition it.
    snapshot_xmax BIGINT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
ALTER TABLE mfe_migration.tables ADD COLUMN IF NOT EXISTS snapshot_xmax BIGINT;
CREATE TABLE IF NOT EXISTS mfe_migration.chunks (
    table_name TEXT NOT NULL,
    chunk INT NOT NULL,
    lower_bound TEXT,
    upper_bound TEXT,
    rows BIGINT,
    done_at TIMESTAMPTZ,
    PRIMARY KEY (table_name, chunk)
);
CREATE TABLE IF NOT EXISTS mfe_migration.runs (
    id BIGSERIAL PRIMARY KEY,
    phase TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail JSONB NOT NULL DEFAULT '{}',
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// Where a table's copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableState {
    /// Chunks are being copied; the table's indexes and constraints are set aside.
    Loading,
    /// Every chunk is in; indexes and constraints are being rebuilt.
    Indexing,
    Done,
}

impl TableState {
    pub fn as_str(self) -> &'static str {
        match self {
            TableState::Loading => "loading",
            TableState::Indexing => "indexing",
            TableState::Done => "done",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "done" => TableState::Done,
            "indexing" => TableState::Indexing,
            _ => TableState::Loading,
        }
    }
}

/// An index or constraint set aside during the load, with the SQL that puts it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDdl {
    pub kind: DdlKind,
    pub name: String,
    /// The table it belongs to (a foreign key may sit on another table than the one loaded).
    pub on_table: String,
    pub create: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DdlKind {
    /// Primary key or unique constraint.
    KeyConstraint,
    Index,
    ForeignKey,
}

#[derive(Debug, Clone)]
pub struct TableEntry {
    pub table: String,
    pub state: TableState,
    pub saved_ddl: Vec<SavedDdl>,
    pub estimated_rows: i64,
    pub snapshot_xmax: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Chunk {
    pub table: String,
    pub chunk: i32,
    pub lower: Option<String>,
    pub upper: Option<String>,
    pub rows: Option<i64>,
}

impl Chunk {
    pub fn is_done(&self) -> bool {
        self.rows.is_some()
    }
}

pub async fn ensure(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::raw_sql(SCHEMA_SQL).execute(conn).await?;
    Ok(())
}

/// Whether the journal exists here (status must not create it).
pub async fn exists(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT to_regclass('mfe_migration.tables') IS NOT NULL")
        .fetch_one(conn)
        .await
}

pub async fn table(conn: &mut PgConnection, table: &str) -> sqlx::Result<Option<TableEntry>> {
    let row: Option<(String, String, serde_json::Value, i64, Option<i64>)> = sqlx::query_as(
        "SELECT table_name, state, saved_ddl, estimated_rows, snapshot_xmax
         FROM mfe_migration.tables WHERE table_name = $1",
    )
    .bind(table)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(
        |(table, state, ddl, estimated_rows, snapshot_xmax)| TableEntry {
            table,
            state: TableState::parse(&state),
            saved_ddl: serde_json::from_value(ddl).unwrap_or_default(),
            estimated_rows,
            snapshot_xmax,
        },
    ))
}

pub async fn start_table(
    conn: &mut PgConnection,
    table: &str,
    saved: &[SavedDdl],
    estimated_rows: i64,
    snapshot_xmax: Option<i64>,
    bounds: &[(Option<String>, Option<String>)],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO mfe_migration.tables (table_name, state, saved_ddl, estimated_rows, snapshot_xmax)
         VALUES ($1, 'loading', $2, $3, $4)",
    )
    .bind(table)
    .bind(serde_json::to_value(saved).expect("DDL list serialises"))
    .bind(estimated_rows)
    .bind(snapshot_xmax)
    .execute(&mut *conn)
    .await?;
    insert_chunks(conn, table, bounds).await
}

/// Starts a loading table over: its rows are gone (the caller truncated them) and its chunks are
/// planned anew from a new snapshot. Its set-aside indexes stay recorded.
pub async fn replan_table(
    conn: &mut PgConnection,
    table: &str,
    estimated_rows: i64,
    snapshot_xmax: Option<i64>,
    bounds: &[(Option<String>, Option<String>)],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM mfe_migration.chunks WHERE table_name = $1")
        .bind(table)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE mfe_migration.tables SET state = 'loading', estimated_rows = $2, snapshot_xmax = $3 WHERE table_name = $1",
    )
    .bind(table)
    .bind(estimated_rows)
    .bind(snapshot_xmax)
    .execute(&mut *conn)
    .await?;
    insert_chunks(conn, table, bounds).await
}

async fn insert_chunks(
    conn: &mut PgConnection,
    table: &str,
    bounds: &[(Option<String>, Option<String>)],
) -> sqlx::Result<()> {
    for (i, (lower, upper)) in bounds.iter().enumerate() {
        sqlx::query(
            "INSERT INTO mfe_migration.chunks (table_name, chunk, lower_bound, upper_bound) VALUES ($1, $2, $3, $4)",
        )
        .bind(table)
        .bind(i as i32)
        .bind(lower)
        .bind(upper)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn chunks(conn: &mut PgConnection, table: &str) -> sqlx::Result<Vec<Chunk>> {
    sqlx::query_as(
        "SELECT table_name AS \"table\", chunk, lower_bound AS lower, upper_bound AS upper, rows
         FROM mfe_migration.chunks WHERE table_name = $1 ORDER BY chunk",
    )
    .bind(table)
    .fetch_all(conn)
    .await
}

/// Marks a chunk done; call inside the transaction that copied its rows.
pub async fn finish_chunk(
    conn: &mut PgConnection,
    table: &str,
    chunk: i32,
    rows: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE mfe_migration.chunks SET rows = $3, done_at = now() WHERE table_name = $1 AND chunk = $2")
        .bind(table)
        .bind(chunk)
        .bind(rows)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_state(
    conn: &mut PgConnection,
    table: &str,
    state: TableState,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE mfe_migration.tables SET state = $2,
             finished_at = CASE WHEN $2 = 'done' THEN now() ELSE NULL END
         WHERE table_name = $1",
    )
    .bind(table)
    .bind(state.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the outcome of a phase run, for `status`.
pub async fn record_run(
    conn: &mut PgConnection,
    phase: &str,
    outcome: &str,
    detail: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO mfe_migration.runs (phase, outcome, detail) VALUES ($1, $2, $3)")
        .bind(phase)
        .bind(outcome)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}
