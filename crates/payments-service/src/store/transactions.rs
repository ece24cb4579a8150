//! `payment_transactions` (the seed's table): a payment's history, one row per status it entered.

use chrono::NaiveDateTime;
use sqlx::PgConnection;

use crate::status::Status;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransactionRow {
    pub id: String,
    pub payment_id: String,
    pub status: String,
    pub status_message: Option<String>,
    pub psp_transaction_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: NaiveDateTime,
}

pub struct NewTransaction<'a> {
    pub payment_id: &'a str,
    pub status: Status,
    pub status_message: Option<&'a str>,
    pub psp_transaction_id: Option<&'a str>,
    pub metadata: Option<&'a serde_json::Value>,
}

pub async fn insert(conn: &mut PgConnection, new: &NewTransaction<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO payment_transactions \
           (id, payment_id, status, status_message, psp_transaction_id, metadata, created_at) \
         VALUES ($1, $2, $3::text::\"PaymentStatus\", $4, $5, $6, clock_timestamp() AT TIME ZONE 'UTC')",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(new.payment_id)
    .bind(new.status.as_str())
    .bind(new.status_message)
    .bind(new.psp_transaction_id)
    .bind(new.metadata)
    .execute(conn)
    .await?;
    Ok(())
}

/// A payment's history, oldest first. A payment has a handful of rows, so no pages.
pub async fn of_payment(
    conn: &mut PgConnection,
    payment_id: &str,
) -> sqlx::Result<Vec<TransactionRow>> {
    sqlx::query_as(
        "SELECT id, payment_id, status::text AS status, status_message, psp_transaction_id, \
                metadata, created_at \
         FROM payment_transactions WHERE payment_id = $1 ORDER BY created_at, id",
    )
    .bind(payment_id)
    .fetch_all(conn)
    .await
}
