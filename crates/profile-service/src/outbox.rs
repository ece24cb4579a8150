//! Where the profile service writes its events: `profile.outbox`, in the same transaction as the
//! change that caused them. The event hub's relay (started in [`build_with`](crate::build_with))
//! publishes the rows to RabbitMQ.

use std::sync::LazyLock;

use events::Outbox;
use serde::Serialize;
use sqlx::PgConnection;

pub static OUTBOX: LazyLock<Outbox> = LazyLock::new(|| Outbox::new(crate::SERVICE.schema()));

/// Records `data` as an event of type `event_type` in the current transaction.
pub async fn record<T: Serialize>(
    conn: &mut PgConnection,
    event_type: &str,
    data: &T,
) -> sqlx::Result<()> {
    OUTBOX.record(conn, event_type, data).await.map(|_| ())
}
