//! The profile service's HTTP API, one module per resource.

pub mod profile;
