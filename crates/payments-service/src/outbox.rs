//! Where the payments service writes its events: `payments.outbox`, in the same transaction as
//! the change that caused them. The event hub's relay (started in [`build_with`](crate::build_with))
//! publishes the rows to RabbitMQ.

use std::sync::LazyLock;

use events::Outbox;

/// `Outbox::record` writes an event in the caller's transaction.
pub static OUTBOX: LazyLock<Outbox> = LazyLock::new(|| Outbox::new(crate::SERVICE.schema()));
