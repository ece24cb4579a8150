//! The sandbox over real HTTP: spawned in-process on port 0, with a webhook receiver of its own.

mod data_file;
mod helpers;
mod idempotency;
mod outcomes;
mod validation;
mod webhooks;
