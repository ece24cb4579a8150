//! Every SQL statement of the payments service, one module per table.

pub mod idempotency_keys;
pub mod jobs;
pub mod payments;
pub mod schedules;
pub mod transactions;
