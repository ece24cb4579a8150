//! `payments.schedules`: when a scheduled payment is due and how a recurring one repeats.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

pub async fn insert(
    conn: &mut PgConnection,
    payment_id: &str,
    scheduled_at: DateTime<Utc>,
    interval: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO payments.schedules (payment_id, scheduled_at, \"interval\") VALUES ($1, $2, $3)",
    )
    .bind(payment_id)
    .bind(scheduled_at)
    .bind(interval)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one more occurrence of a recurring payment; returns its number (1 for the first).
pub async fn next_occurrence(conn: &mut PgConnection, payment_id: &str) -> sqlx::Result<i32> {
    sqlx::query_scalar(
        "UPDATE payments.schedules SET occurrences = occurrences + 1 WHERE payment_id = $1 \
         RETURNING occurrences",
    )
    .bind(payment_id)
    .fetch_one(conn)
    .await
}
