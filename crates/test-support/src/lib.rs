//! Helpers for tests only: a fresh PostgreSQL database per test, catalog snapshots to hold schemas
//! to the legacy contract, and serving an app on a free port.

pub mod broker;
pub mod catalog;
pub mod db;
pub mod probe;
pub mod schema;
pub mod spawn;

pub use broker::TestBroker;
pub use catalog::Catalog;
pub use db::TestDb;

/// The legacy database's DDL (`schema/legacy-schema.sql`), the contract every schema is held to.
pub const LEGACY_SCHEMA_SQL: &str = include_str!("../../../schema/legacy-schema.sql");
