//! Where a rollback stands, as its own table (`mfe_rollback.state` in legacy) records it: every
//! statement on that table is here, and [`read`] is how anything outside the migrator (the live
//! view) learns it.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::RollbackReport;
use crate::error::{MigrateError, Result};

const STATE_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS mfe_rollback;
-- One row: where the rollback of the cutover `cutover` stands.
CREATE TABLE IF NOT EXISTS mfe_rollback.state (
    id INT PRIMARY KEY CHECK (id = 1),
    cutover TEXT NOT NULL,
    -- staging, applied, done
    step TEXT NOT NULL,
    frozen_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    applied_at TIMESTAMPTZ,
    done_at TIMESTAMPTZ,
    report JSONB
);
-- Where earlier versions staged the changed keys (now in the write-back's own transaction).
DROP TABLE IF EXISTS mfe_rollback.changed;
-- Changes the legacy database could not take as they are (see the module's policy).
-- Kept across rollbacks of later cutovers: a refused row's only copy is here.
CREATE TABLE IF NOT EXISTS mfe_rollback.conflicts (
    cutover TEXT NOT NULL,
    table_name TEXT NOT NULL,
    key TEXT NOT NULL,
    -- kept: a delete not written, the row stays; not written: the row is only here.
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    row JSONB,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (cutover, table_name, key)
);";

/// The step the rollback of `cutover` reached (`staging`, `applied`, `done`); a first run for
/// it (a state left by an earlier cutover's rollback is history) starts at `staging`.
pub(super) async fn begin(legacy: &mut PgConnection, cutover: &str) -> Result<String> {
    sqlx::raw_sql(STATE_SQL).execute(&mut *legacy).await?;
    let state: Option<(String, String)> =
        sqlx::query_as("SELECT cutover, step FROM mfe_rollback.state WHERE id = 1")
            .fetch_optional(&mut *legacy)
            .await?;
    if let Some((c, step)) = state
        && c == cutover
    {
        return Ok(step);
    }
    sqlx::raw_sql("DELETE FROM mfe_rollback.state")
        .execute(&mut *legacy)
        .await?;
    sqlx::query("INSERT INTO mfe_rollback.state (id, cutover, step) VALUES (1, $1, 'staging')")
        .bind(cutover)
        .execute(legacy)
        .await?;
    Ok("staging".to_string())
}

/// The service databases' freeze starts now.
pub(super) async fn frozen_now(legacy: &mut PgConnection) -> Result<()> {
    sqlx::query("UPDATE mfe_rollback.state SET frozen_at = clock_timestamp() WHERE id = 1")
        .execute(legacy)
        .await?;
    Ok(())
}

/// The cutover this rollback undoes.
pub(super) async fn cutover_of(legacy: &mut PgConnection) -> Result<String> {
    Ok(
        sqlx::query_scalar("SELECT cutover FROM mfe_rollback.state WHERE id = 1")
            .fetch_one(legacy)
            .await?,
    )
}

/// How long the service databases have been frozen.
pub(super) async fn frozen_seconds(legacy: &mut PgConnection) -> Result<f64> {
    Ok(sqlx::query_scalar(
        "SELECT extract(epoch FROM clock_timestamp() - frozen_at)::float8 FROM mfe_rollback.state WHERE id = 1",
    )
    .fetch_one(legacy)
    .await?)
}

/// The write-back committed (in its transaction): `applied`, with its report.
pub(super) async fn applied(legacy: &mut PgConnection, report: &RollbackReport) -> Result<()> {
    sqlx::query(
        "UPDATE mfe_rollback.state SET step = 'applied', applied_at = clock_timestamp(), report = $1 WHERE id = 1",
    )
    .bind(serde_json::to_value(report)?)
    .execute(legacy)
    .await?;
    Ok(())
}

/// Switched and recorded: `done`.
pub(super) async fn done(legacy: &mut PgConnection) -> Result<()> {
    sqlx::query("UPDATE mfe_rollback.state SET step = 'done', done_at = now() WHERE id = 1")
        .execute(legacy)
        .await?;
    Ok(())
}

/// The report the write-back saved (empty before it).
pub(super) async fn saved_report(legacy: &mut PgConnection) -> Result<RollbackReport> {
    let saved: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT report FROM mfe_rollback.state WHERE id = 1")
            .fetch_optional(legacy)
            .await?
            .flatten();
    saved
        .map(|v| serde_json::from_value(v).map_err(MigrateError::from))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The last rollback's record in the legacy database.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Record {
    /// `staging`, `applied` or `done`.
    pub step: String,
    pub frozen_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
}

/// The last rollback's record; `None` when legacy never saw one.
pub async fn read(legacy: &mut PgConnection) -> sqlx::Result<Option<Record>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('mfe_rollback.state') IS NOT NULL")
        .fetch_one(&mut *legacy)
        .await?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT step, frozen_at, applied_at, done_at FROM mfe_rollback.state WHERE id = 1",
    )
    .fetch_optional(legacy)
    .await
}
