//! Change data capture: what the legacy database commits after the copy's snapshot, decoded from
//! a logical replication slot ([`slot`]) streamed ([`stream`]) in `pgoutput`'s format
//! ([`pgoutput`]), with the relations it names ([`relations`]). Folding and applying the changes
//! is the sync's ([`crate::sync`]).

pub mod pgoutput;
pub mod relations;
pub mod slot;
pub mod stream;
