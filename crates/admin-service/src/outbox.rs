//! Where the admin service writes its events (`config.updated`, `admin.access_denied`):
//! `admin.outbox`, in the same transaction as the change. The relay publishes them, and admin's
//! own consumer audits them like every other event.

use std::sync::LazyLock;

use events::Outbox;

/// `Outbox::record` writes an event in the caller's transaction.
pub static OUTBOX: LazyLock<Outbox> = LazyLock::new(|| Outbox::new(crate::SERVICE.schema()));
