//! The admin service's tables: the seed's `audit_logs` and `system_config` (the chain beside the
//! log lives in [`crate::audit::chain`]).

pub mod audit_logs;
pub mod system_config;
