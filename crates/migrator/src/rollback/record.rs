//! Where a rollback stands, as its own table (`mfe_rollback.state` in legacy) records it: read
//! here, so that nothing outside the migrator reads that table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

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
