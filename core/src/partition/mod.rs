//! Partitioning: which range (or shard) a key belongs to, which nodes hold
//! its replicas, and how ranges split, merge and move — as pure functions
//! and sans-IO state machines, like [`crate::raft`] and [`crate::swim`].
//!
//! - [`keyspace`]: the three [`KeyMode`]s (ordered ranges, hashed ranges,
//!   jump shards), [`key_hash`] and [`jump_consistent_hash`].
//! - [`descriptor`]: [`RangeDescriptor`] (span, replicas, generation) and
//!   the only ways it changes.

mod descriptor;
mod keyspace;

pub use descriptor::{DescriptorError, RangeDescriptor, RangeId, Replica, ReplicaKind, Span};
pub use keyspace::{hashed_routing_key, jump_consistent_hash, key_hash, KeyMode};
