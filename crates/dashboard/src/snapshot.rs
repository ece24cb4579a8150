//! The figures behind the page: `GET /api/snapshot`, each message of `GET /api/stream`, and (as
//! gauges) `GET /metrics`. Documented field by field in docs/MIGRATION.md ("Live migration");
//! `version` changes when a field changes meaning or goes away (fields may be added).

use serde::Serialize;

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub version: u32,
    pub generated_at: String,
    /// `live`: this process runs the phase; `journal`: a read-only view of the journal.
    pub mode: String,
    pub phase: Phase,
    /// For the operator, oldest first.
    pub notes: Vec<String>,
    pub totals: Totals,
    pub tables: Vec<TableView>,
    /// Rows per second over the whole migration, a point a second (the last ten minutes).
    pub throughput: Vec<Point>,
    pub verify: Option<VerifyView>,
    pub sync: SyncView,
    pub cutover: CutoverView,
    pub rollback: RollbackView,
    pub hub: HubView,
    /// Where the migration stands and the WAL each of its slots makes a server keep.
    pub migration: MigrationView,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationView {
    /// `prepared`, `copying`, `copied`, `syncing`, `cut over`, `rolled back`, `aborted`; `None`
    /// before `prepare`.
    pub state: Option<String>,
    pub slots: Vec<SlotHold>,
}

/// A replication slot of the migration and the WAL its server keeps for it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlotHold {
    pub slot: String,
    /// `legacy` (the capture) or the service database of a way back.
    pub database: String,
    pub retained_bytes: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// `copy`, `import`, `export`, `verify`, `sync`, `cutover`, `rollback`; `None` before any.
    pub name: Option<String>,
    /// `running`, `done`, `failed` or `idle`.
    pub state: String,
    pub started_at: Option<String>,
    pub elapsed_seconds: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub rows: u64,
    pub rows_total: u64,
    pub bytes: Option<u64>,
    pub rows_per_second: f64,
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TableView {
    pub table: String,
    pub service: String,
    /// `not started`, `waiting` (no row yet), `loading`, `indexing`, `done`, `verifying`,
    /// `unreachable`, or the step a running phase reports.
    pub state: String,
    pub rows: u64,
    /// The estimate the copy started from (at least `rows`).
    pub rows_total: u64,
    /// The table's size in its service database.
    pub bytes: Option<u64>,
    pub chunks_done: u64,
    pub chunks: u64,
    pub rows_per_second: f64,
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub at: String,
    pub rows_per_second: f64,
}

/// The last verify, as `mfe migrate verify --json` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifyView {
    pub at: Option<String>,
    pub ok: bool,
    pub seconds: Option<f64>,
    pub tables: Vec<VerifyTable>,
    pub orphans: Vec<Orphans>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifyTable {
    pub table: String,
    pub service: String,
    pub legacy_rows: i64,
    pub target_rows: i64,
    pub ok: bool,
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub changed: Vec<String>,
    pub missing_count: u64,
    pub extra_count: u64,
    pub changed_count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Orphans {
    pub foreign_key: String,
    pub reference: String,
    pub orphans: i64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncView {
    /// WAL the capture slot has not confirmed yet: what sync still has to apply.
    pub lag_bytes: Option<i64>,
    /// Age of the newest change sync applied (live only).
    pub lag_seconds: Option<f64>,
    pub changes_per_second: Option<f64>,
    pub slot: Option<String>,
    pub positions: Vec<migrator::status::SyncPosition>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CutoverView {
    /// `not started`, `in progress`, `frozen`, `done` or `failed`.
    pub state: String,
    /// The step a running cutover is at (live only).
    pub step: Option<String>,
    /// While the legacy database is frozen: since when.
    pub frozen_at: Option<String>,
    /// After a cutover: how long writes were refused.
    pub freeze_seconds: Option<f64>,
    /// When the cutover was recorded.
    pub at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackView {
    /// `not started`, `staging`, `applied` or `done`.
    pub state: String,
    pub step: Option<String>,
    pub frozen_at: Option<String>,
    pub applied_at: Option<String>,
    pub done_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HubView {
    pub available: bool,
    pub error: Option<String>,
    pub queues: Vec<events::dlq::QueueDepth>,
}
