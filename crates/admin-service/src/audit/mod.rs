//! The audit log: every event on the hub becomes one `audit_logs` row ([`writer`]), chained for
//! tamper evidence ([`chain`]), read through filters ([`query`]) and exported ([`export`]).

pub mod chain;
pub mod export;
pub mod facts;
pub mod names;
pub mod query;
pub mod writer;
