//! The auth service's HTTP API.

pub mod auth;
pub mod jwks;
pub mod users;
