//! Partitioning: which range (or shard) a key belongs to, which nodes hold
//! its replicas, and how ranges split, merge and move — as pure functions
//! and sans-IO state machines, like [`crate::raft`] and [`crate::swim`].
//!
//! - `keyspace.rs`: the three [`KeyMode`]s (ordered ranges, hashed ranges,
//!   jump shards), [`key_hash`] and [`jump_consistent_hash`].
//! - `descriptor.rs`: [`RangeDescriptor`] (span, replicas, generation) and
//!   the only ways it changes.
//! - `table.rs`: [`RangeTable`], the routing table of a ranged keyspace
//!   (a routing key's range with [`RangeTable::lookup`], or its id and
//!   voters with [`RangeTable::route`]; generation-checked inserts, splits,
//!   merges, [`RangeTable::check_cover`]).
//! - `shards.rs`: [`ShardMap`], shard → replicas for jump shards.
//! - `ring.rs`: [`HashRing`], consistent hashing with virtual nodes.
//! - `stats.rs`: [`Distribution`], how evenly counts spread over nodes,
//!   whatever placed them.

mod descriptor;
mod keyspace;
mod ring;
mod shards;
mod stats;
mod table;

pub use descriptor::{DescriptorError, RangeDescriptor, RangeId, Replica, ReplicaKind, Span};
pub use keyspace::{hashed_routing_key, jump_consistent_hash, key_hash, KeyMode};
pub use ring::{
    HashRing, RingError, TokenPlacement, DEFAULT_CANDIDATES, MAX_BALANCED_REPLICATION, MAX_CANDIDATES, MAX_RING_NODES,
    MAX_RING_TOKENS, MAX_VNODES,
};
pub use shards::{ShardMap, ShardMapError, MAX_SHARDS, MAX_SHARD_REPLICAS};
pub use stats::{Distribution, DistributionError, MAX_DISTRIBUTION_NODES};
pub use table::{check_cover, CoverError, Inserted, RangeTable, Route, TableError, MAX_TABLE_RANGES};
