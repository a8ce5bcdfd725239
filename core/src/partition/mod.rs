//! Partitioning: which range (or shard) a key belongs to, which nodes hold
//! its replicas, and how ranges split, merge and move — as pure functions
//! and sans-IO state machines, like [`crate::raft`] and [`crate::swim`].
//!
//! - `keyspace.rs`: the three [`KeyMode`]s (ordered ranges, hashed ranges,
//!   jump shards), [`key_hash`] and [`jump_consistent_hash`].
//! - `descriptor.rs`: [`RangeDescriptor`] (span, replicas, generation) and
//!   the only ways it changes.
//! - `nodes.rs`: what the planner knows of each node ([`NodeInfo`]: failure
//!   domains, capacity, liveness).
//! - `allocator.rs`: the balanced allocator's rules (diversity first, then
//!   balance within a threshold, power of two choices, no move undone).
//! - `split.rs`: when ranges split and merge (size, sustained load,
//!   hysteresis, hot keys).
//! - `planner.rs`: the rebalancer, a sans-IO state machine ([`Planner`]).
//! - `bug.rs`: deliberate planner bugs for the simulator ([`Bug`]).
//! - `table.rs`: [`RangeTable`], the routing table of a ranged keyspace
//!   (a routing key's range with [`RangeTable::lookup`], or its id and
//!   voters with [`RangeTable::route`]; generation-checked inserts, splits,
//!   merges, [`RangeTable::check_cover`]).
//! - `shards.rs`: [`ShardMap`], shard → replicas for jump shards.
//! - `ring.rs`: [`HashRing`], consistent hashing with virtual nodes.
//! - `ring_placement.rs`: [`RingPlacement`], the ring as the planner's
//!   strategy ([`Placement::Ring`]): zone-aware targets, rebuilt in id order.
//! - `stats.rs`: [`Distribution`], how evenly counts spread over nodes,
//!   whatever placed them.

mod allocator;
mod bug;
mod descriptor;
mod keyspace;
mod nodes;
mod planner;
mod ring;
mod ring_placement;
mod shards;
mod split;
mod stats;
mod table;

pub use allocator::{Allocator, Counts, Totals, MIN_BALANCE_SLACK};
pub use bug::Bug;
pub use descriptor::{DescriptorError, RangeDescriptor, RangeId, Replica, ReplicaKind, Span};
pub use keyspace::{hashed_routing_key, jump_consistent_hash, key_hash, KeyMode};
pub use nodes::{Liveness, Locality, NodeInfo, MAX_LOCALITY_TIERS};
pub use planner::{
    OpFailure, OpId, OpKind, OpOutcome, Operation, Placement, Planner, PlannerAction, PlannerConfig,
    PlannerConfigError, PlannerEvent, Reason, MAX_QUEUED_ACTIONS, MAX_RECENT_MOVES, MAX_REPLICATION_FACTOR,
};
pub use ring::{
    HashRing, RingError, TokenPlacement, DEFAULT_CANDIDATES, MAX_BALANCED_REPLICATION, MAX_CANDIDATES, MAX_RING_NODES,
    MAX_RING_TOKENS, MAX_VNODES,
};
pub use ring_placement::RingPlacement;
pub use shards::{ShardMap, ShardMapError, MAX_SHARDS, MAX_SHARD_REPLICAS};
pub use split::{LoadHistory, RangeLoad, SplitDecision, SplitPolicy, SplitPolicyError};
pub use stats::{Distribution, DistributionError, MAX_DISTRIBUTION_NODES};
pub use table::{check_cover, CoverError, Inserted, RangeTable, Route, TableError, MAX_TABLE_RANGES};
