//! What every service of the platform shares, so that the four of them behave alike: configuration
//! from the environment, logs, the JSON error contract, health/readiness/metrics endpoints, the
//! standard HTTP middleware and graceful serving.
//!
//! It holds mechanisms only. Nothing here knows a service's tables or models: a shared model layer
//! would rebuild the coupling that splitting the database removes.

pub mod app;
pub mod coalesce;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod otel;
pub mod pagination;
pub mod readers;
pub mod server;
pub mod telemetry;
pub mod verified;

pub use config::{ConfigError, Env, FromEnv, LogFormat, Service, ServiceConfig, Topology};
pub use error::{ApiError, ErrorBody, ErrorDetail, FieldError, Validator};
pub use extract::{Json, Query};
