//! The migration engine behind `mfe migrate`: from the legacy shared database (`mfe_poc2`) to one
//! database per service, in the seed's phases. A library so that tests and benchmarks drive the
//! same code the CLI runs.

//! A module per phase: `plan` (with its preflight), `prepare`, `copy`, `archive` (export and
//! import), `verify`, `sync` (by slot, or by diff), `cutover`, `rollback` (with its way back),
//! `abort`, `status`. Beneath them `cdc` captures and decodes the legacy changes, and `engine`
//! holds what every phase runs on: connections, the journal (with the sync positions and the
//! migration's state), the contract check, leases, loading, throttling, digests, the freeze.

// The phases.
pub mod abort;
pub mod archive;
pub mod copy;
pub mod cutover;
pub mod plan;
pub mod prepare;
pub mod rollback;
pub mod status;
pub mod sync;
pub mod verify;

// Beneath them: capture and decoding, and the engine every phase runs on.
pub mod cdc;
pub mod engine;

pub mod endpoints;
pub mod error;
pub mod progress;

pub use endpoints::Endpoints;
pub use error::{MigrateError, Result};
pub use progress::{Progress, Silent};
