//! The migration engine behind `mfe migrate`: from the legacy shared database (`mfe_poc2`) to one
//! database per service, in the seed's phases. A library so that tests and benchmarks drive the
//! same code the CLI runs.

pub mod abort;
pub mod archive;
pub mod carry;
pub mod cdc;
pub mod check;
pub mod connect;
pub mod copy;
pub mod cutover;
pub mod ddl;
pub mod endpoints;
pub mod error;
pub mod freeze;
pub mod journal;
pub mod lease;
pub mod load;
pub mod plan;
pub mod preflight;
pub mod prepare;
pub mod progress;
pub mod resync;
pub mod rollback;
pub mod sql;
pub mod state;
pub mod status;
pub mod throttle;
pub mod verify;
pub mod way_back;

pub use endpoints::Endpoints;
pub use error::{MigrateError, Result};
pub use progress::{Progress, Silent};
