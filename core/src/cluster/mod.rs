//! The cluster: one sans-IO node that runs SWIM membership, the meta range,
//! the partitioning planner and one Raft group per range, behind the same
//! surface as every other protocol here (`handle_message`, `handle_timeout`,
//! client requests, `poll_action`, `poll_timeout`).
//!
//! ## How the pieces fit
//! - **SWIM** ([`SwimNode`](crate::swim::SwimNode)) says which nodes are
//!   alive. Each node publishes a [`NodeMeta`] in its SWIM metadata: its
//!   locality and capacity (for the planner), the version of the
//!   descriptors it holds (so a stale routing cache learns of a change by
//!   gossip and fetches the new ones), and whether it is the active node.
//! - **The meta range** ([`META_RANGE`]) is a Raft group on a few nodes
//!   whose state machine, [`MetaStore`], holds the range descriptors. Its
//!   leader, once caught up with its term, is the *active* node: it runs
//!   the [`Planner`](crate::partition::Planner).
//! - **Ranges**: each is a Raft group with the user's state machine. A
//!   range's replica set is decided by its own joint consensus; the meta
//!   range records it afterwards, keyed by the range's commit index, so a
//!   late record never moves a descriptor backwards. Range leaders report
//!   to the active node every `report_interval_ms`; a configuration that
//!   differs from the descriptor is recorded, which is also how a new
//!   active node finishes what its predecessor started.
//! - **Replica moves**: the planner's operations go to the range's leader
//!   as [`RangeCommand`]s; the leader runs the change (a learner is created
//!   on its node when the leader first speaks to it, and catches up by
//!   snapshot), answers once the configuration has left its joint phase,
//!   and the active node records it before telling the planner.
//! - **Clients** address a key; a node serves it only from a replica of the
//!   key's range and otherwise answers a typed redirect.
//! - **Durability**: every Raft write of one input goes out as one
//!   [`ClusterWrite`] (group commit); acknowledging it acknowledges every
//!   range's part, in order, with the single-group rule.
//!
//! - **Multi-Raft efficiency**: every Raft message one input produces for a
//!   peer travels in one batch, leaders' timers are aligned to the
//!   heartbeat interval (coalesced heartbeats), and idle ranges quiesce
//!   (Raft's `quiesce_after_ms`): no timers, no heartbeats, until a request,
//!   a message, or SWIM declaring the leader failed wakes them, a few per
//!   tick (`wakes.rs`).
//!
//! Not yet here: splits and merges driven by the cluster, moving the meta
//! range's own replicas.

mod bug;
mod client;
mod config;
mod control;
mod hosting;
pub mod message;
pub mod meta;
mod node;
mod nodemeta;
mod output;
mod router;
mod status;
mod timers;
mod wakes;

pub use bug::ClusterBug;
pub use client::ClientOp;
pub use config::{Bootstrap, ClusterConfig, ClusterConfigError, MAX_BOOTSTRAP_RANGES, QUIESCE_AFTER_MS};
pub use message::{ClusterMessage, CommandKind, CommandResult, RangeCommand, RangeReport};
pub use meta::{MetaCommand, MetaOutcome, MetaStore, META_RANGE};
pub use node::{ClusterNode, ClusterRestartError, MAX_WAITING_REQUESTS};
pub use nodemeta::NodeMeta;
pub use output::{ClusterAction, ClusterEvent, ClusterResult, ClusterWrite};
pub use router::{RouteTable, CLUSTER_KEY_MODE};
pub use status::{ClusterStatus, RangeStatus};

#[cfg(test)]
mod tests;
