//! The auth service's SQL, one module per table. Everything else speaks in these functions.

pub mod refresh_tokens;
pub mod users;
