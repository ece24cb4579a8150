//! Change data capture: what the legacy database commits after the copy's snapshot, decoded from
//! a logical replication slot ([`slot`]) streamed ([`stream`]) in `pgoutput`'s format
//! ([`pgoutput`]), folded into set-based runs ([`net`]) and applied to the four service databases
//! at once ([`apply`]), by `mfe migrate sync` ([`sync`]).

pub mod apply;
pub mod back;
pub mod freeze;
pub mod net;
pub mod pgoutput;
pub mod relations;
pub mod slot;
pub mod stream;
pub mod sync;
