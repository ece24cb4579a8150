//! The platform's schemas as data, owned in one low crate so that every crate that needs them
//! (the services, the migrator, the legacy seeder, the live view) links none of the others:
//! - [`contract`]: the legacy database's contract (`legacy-schema.sql`) as tables, columns,
//!   keys and the service each goes to;
//! - [`migrations`]: each service's migrations (`migrations/<service>/`), followed by the event
//!   hub's tables it uses ([`hub`]); a service applies them at start, `mfe migrate prepare`
//!   applies the same ones.
//!
//! Released migrations never change: `migrations.lock` holds their checksums and
//! `tests/migrations_lock.rs` fails on a change.

pub mod contract;
pub mod hub;
pub mod migrations;

pub use hub::{HubTable, with_hub_tables};
pub use migrations::migrator;

/// The legacy database's DDL, foreign keys included: the contract every phase and every service's
/// `0001` migration is held to.
pub const LEGACY_SCHEMA_SQL: &str = include_str!("../legacy-schema.sql");
