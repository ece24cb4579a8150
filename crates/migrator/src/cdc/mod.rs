//! Change data capture: what the legacy database commits after the copy's snapshot, decoded from
//! a logical replication slot ([`slot`]) in `pgoutput`'s format ([`pgoutput`]) and applied to the
//! service databases one legacy transaction at a time ([`apply`]), by `mfe migrate sync`
//! ([`sync`]).

pub mod apply;
pub mod back;
pub mod freeze;
pub mod pgoutput;
pub mod slot;
pub mod sync;
