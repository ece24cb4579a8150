//! The service's SQL, one module per table; nothing else in the crate writes a query.

pub mod deleted_users;
pub mod profiles;
