//! Partitioning: which range (or shard) a key belongs to, which nodes hold
//! its replicas, and how ranges split, merge and move — as pure functions
//! and sans-IO state machines, like [`crate::raft`] and [`crate::swim`].
//!
//! - [`keyspace`]: the three [`KeyMode`]s (ordered ranges, hashed ranges,
//!   jump shards), [`key_hash`] and [`jump_consistent_hash`].
//! - [`descriptor`]: [`RangeDescriptor`] (span, replicas, generation) and
//!   the only ways it changes.
//! - [`nodes`]: what the planner knows of each node ([`NodeInfo`]: failure
//!   domains, capacity, liveness).
//! - [`allocator`]: the balanced allocator's rules (diversity first, then
//!   balance within a threshold, power of two choices, no move undone).
//! - [`split`]: when ranges split and merge (size, sustained load,
//!   hysteresis, hot keys).
//! - [`planner`]: the rebalancer, a sans-IO state machine ([`Planner`]).
//! - `bug`: deliberate planner bugs for the simulator ([`Bug`]).

mod allocator;
mod bug;
mod descriptor;
mod keyspace;
mod nodes;
mod planner;
mod split;

pub use allocator::{Allocator, Counts, Totals, MIN_BALANCE_SLACK};
pub use bug::Bug;
pub use descriptor::{DescriptorError, RangeDescriptor, RangeId, Replica, ReplicaKind, Span};
pub use keyspace::{hashed_routing_key, jump_consistent_hash, key_hash, KeyMode};
pub use nodes::{Liveness, Locality, NodeInfo, MAX_LOCALITY_TIERS};
pub use planner::{
    OpFailure, OpId, OpKind, OpOutcome, Operation, Planner, PlannerAction, PlannerConfig, PlannerConfigError,
    PlannerEvent, Reason, MAX_QUEUED_ACTIONS, MAX_RECENT_MOVES, MAX_REPLICATION_FACTOR,
};
pub use split::{LoadHistory, RangeLoad, SplitDecision, SplitPolicy, SplitPolicyError};
