//! The engine beneath the phases: connections, the journal (with the sync positions and the
//! migration's state), the contract check, leases on chunks, loading, throttling, row digests,
//! the freeze and the carry of the services' own state that cutover and rollback share.

pub mod carry;
pub mod check;
pub mod connect;
pub mod ddl;
pub mod digest;
pub mod freeze;
pub mod journal;
pub mod lease;
pub mod load;
pub mod sql;
pub mod switch;
pub mod throttle;
