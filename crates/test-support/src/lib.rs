//! Helpers for tests only: a fresh PostgreSQL database per test, catalog snapshots to hold schemas
//! to the legacy contract, serving an app on a free port, the real auth service for other
//! services' tests, one-line requests, and one way to wait for something.

pub mod auth;
pub mod broker;
pub mod catalog;
pub mod db;
pub mod http;
pub mod openapi;
pub mod otlp;
pub mod probe;
pub mod schema;
pub mod spawn;
pub mod wait;

pub use broker::TestBroker;
pub use catalog::Catalog;
pub use db::TestDb;
pub use http::{Api, Reply};
pub use wait::{eventually, eventually_every};

/// The legacy database's DDL (`crates/schema/legacy-schema.sql`), the contract every schema is
/// held to.
pub use ::schema::LEGACY_SCHEMA_SQL;
