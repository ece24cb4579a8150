//! Change data capture: what the legacy database commits after the copy's snapshot, decoded from
//! a logical replication slot ([`slot`]) streamed ([`stream`]) in `pgoutput`'s format
//! ([`pgoutput`]), folded into set-based runs ([`net`]) and applied to the four service databases
//! at once ([`apply`]), by `mfe migrate sync` ([`sync`]). Cutover's freeze and rollback's way
//! back live beside it ([`crate::freeze`], [`crate::way_back`]): they are the switch's, not capture.

pub mod apply;
pub mod net;
pub mod pgoutput;
pub mod relations;
pub mod slot;
pub mod stream;
pub mod sync;
