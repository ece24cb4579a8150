//! Where the auth service writes its events: `auth.outbox`, in the same transaction as the change
//! that caused them, so an event exists if and only if its change committed. The event hub's relay
//! publishes the rows to RabbitMQ.

use serde::Serialize;
use sqlx::PgConnection;

/// Records `data` as an event of type `event_type` in the current transaction.
pub async fn record<T: Serialize>(
    conn: &mut PgConnection,
    event_type: &str,
    data: &T,
) -> sqlx::Result<()> {
    let payload = serde_json::to_value(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO auth.outbox (id, event_type, payload) VALUES ($1, $2, $3)")
        .bind(uuid::Uuid::new_v4())
        .bind(event_type)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}
