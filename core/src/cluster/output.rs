//! What a cluster node tells its driver.

use super::message::ClusterMessage;
use crate::partition::{PlannerEvent, RangeId};
use crate::raft::{DropReason, PersistId, PersistRequest};
use crate::swim::Address;
use crate::types::{NodeId, RequestId, Term};

/// One write covering every range that changed during one input (group
/// commit). Make it durable as a whole, in order after every earlier one,
/// then call [`ClusterNode::handle_persisted`](super::ClusterNode::handle_persisted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterWrite {
    /// Echo it to `handle_persisted`.
    pub id: u64,
    /// Per range, the write its Raft group asked for, in the order asked.
    pub writes: Vec<(RangeId, PersistRequest)>,
    /// Ranges whose replica this node destroyed: delete their storage
    /// (after applying `writes`).
    pub destroyed: Vec<RangeId>,
}

/// A client's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterResult {
    /// Committed and applied (or read); the state machine's answer.
    Ok(Vec<u8>),
    /// This node does not serve the key: ask `leader` (when known) for
    /// `range`.
    Redirect {
        /// The range the key belongs to, as this node knows the descriptors.
        range: RangeId,
        /// The node believed to lead it.
        leader: Option<NodeId>,
    },
    /// This node does not know the descriptors yet: refresh and retry.
    RangeUnknown,
    /// The request was given up; see [`DropReason`] for whether it may
    /// still take effect.
    Dropped(DropReason),
}

/// Something a cluster node reports, for operators, traces and checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// SWIM learned of a live node.
    NodeJoined(NodeId),
    /// SWIM declared a node failed.
    NodeFailed(NodeId),
    /// A node left gracefully.
    NodeLeft(NodeId),
    /// This node became the leader of a range (or of the meta range).
    LeaderElected {
        /// The range.
        range: RangeId,
        /// The term.
        term: Term,
    },
    /// This node now hosts a replica of the range.
    ReplicaCreated(RangeId),
    /// This node destroyed its replica of the range.
    ReplicaDestroyed(RangeId),
    /// The descriptors this node knows changed (meta version).
    DescriptorsUpdated(u64),
    /// This node became the active node (the meta range's leader, running
    /// the planner), or stopped being it.
    Active(bool),
    /// The meta leader started an operation on a range.
    OperationStarted {
        /// The planner's operation id.
        op: u64,
        /// The range.
        range: RangeId,
        /// What, in words.
        what: String,
    },
    /// An operation ended (as the active node saw it).
    OperationFinished {
        /// The planner's operation id.
        op: u64,
        /// The range.
        range: RangeId,
        /// How, in words.
        outcome: String,
    },
    /// The planner noticed something.
    Planner(PlannerEvent),
    /// A Raft group reported an event (role changes, membership, violations).
    Raft {
        /// The range.
        range: RangeId,
        /// The event.
        event: crate::raft::Event,
    },
    /// A peer sent something malformed; it was dropped.
    BadMessage(String),
}

/// One thing the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterAction {
    /// Send a message. Loss, duplication and reordering are fine.
    Send {
        /// The recipient's address.
        to: Address,
        /// The message.
        message: ClusterMessage,
    },
    /// Make a write durable.
    Persist(ClusterWrite),
    /// Answer a client request.
    Respond {
        /// The request, as the client's input named it.
        request: RequestId,
        /// The answer.
        result: ClusterResult,
        /// The range whose replica on this node handled the request, and
        /// that replica's applied index when it answered (the state a stale
        /// read reflects); `None` when the request was redirected before
        /// reaching one. For checkers and traces.
        served_by: Option<(RangeId, crate::types::LogIndex)>,
    },
    /// Informational.
    Event(ClusterEvent),
}

/// A part of a [`ClusterWrite`]: which Raft write it acknowledges.
pub(super) type WritePart = (RangeId, PersistId);
