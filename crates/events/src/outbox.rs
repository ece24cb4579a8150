//! The transactional outbox: a service writes its events into its own `<schema>.outbox` table in
//! the same transaction as the change that caused them, so an event exists if and only if its
//! change committed. The [`relay`](crate::relay) publishes the rows afterwards.
//!
//! Table shape (each service's migrations create it in its own schema):
//! `id UUID PRIMARY KEY, seq BIGINT GENERATED ALWAYS AS IDENTITY, event_type TEXT, payload JSONB,
//! occurred_at TIMESTAMPTZ, published_at TIMESTAMPTZ, trace_context JSONB` with a partial index
//! on unpublished `seq`. `trace_context` keeps the recording span's W3C context (traces on).

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// A service's outbox table and the notification channel its relay listens on.
#[derive(Debug, Clone)]
pub struct Outbox {
    schema: String,
    table: String,
    channel: String,
}

impl Outbox {
    /// The outbox of the service whose schema is `schema` (e.g. `auth`).
    pub fn new(schema: &str) -> Self {
        Self {
            schema: schema.to_string(),
            table: format!("{}.outbox", platform::db::quote_ident(schema)),
            channel: format!("{schema}_outbox"),
        }
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The qualified, quoted table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The `LISTEN` channel notified when rows are added.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Records `data` as an event of type `event_type` in the caller's transaction. The relay is
    /// notified when (and only if) that transaction commits.
    pub async fn record<T: Serialize>(
        &self,
        conn: &mut PgConnection,
        event_type: &str,
        data: &T,
    ) -> sqlx::Result<Uuid> {
        let payload = serde_json::to_value(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        // Time-ordered, and in creation order within the process: events of one service that
        // happen in the same millisecond still sort in the order they happened (the audit log
        // orders by time, then id).
        let id = Uuid::now_v7();
        let context = platform::otel::current_carrier();
        let sql = format!(
            "INSERT INTO {} (id, event_type, payload, trace_context) VALUES ($1, $2, $3, $4)",
            self.table
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(event_type)
            .bind(payload)
            .bind((!context.is_empty()).then_some(sqlx::types::Json(context)))
            .execute(&mut *conn)
            .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(&self.channel)
            .execute(&mut *conn)
            .await?;
        Ok(id)
    }

    /// Rows not yet confirmed by the broker.
    pub async fn backlog(&self, pool: &PgPool) -> sqlx::Result<i64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE published_at IS NULL",
            self.table
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
    }

    /// Deletes rows published more than `older_than` ago; returns how many.
    pub async fn purge_published(
        &self,
        pool: &PgPool,
        older_than: std::time::Duration,
    ) -> sqlx::Result<u64> {
        let sql = format!(
            "DELETE FROM {} WHERE published_at < now() - make_interval(secs => $1)",
            self.table
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(older_than.as_secs_f64())
            .execute(pool)
            .await?;
        Ok(done.rows_affected())
    }
}
