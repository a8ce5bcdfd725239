//! The one message type a cluster node sends and receives: SWIM datagrams,
//! Raft messages of every range, and the control traffic between range
//! leaders and the meta range's leader.

use crate::partition::{OpKind, RangeDescriptor, RangeId};
use crate::raft;
use crate::swim;
use crate::types::{LogIndex, NodeId, Term};
use crate::wire::WireError;
use serde::{Deserialize, Serialize};

/// Largest number of range reports in one [`ClusterMessage::Reports`].
pub const MAX_REPORTS_PER_MESSAGE: usize = 4096;

/// Largest number of Raft messages in one [`ClusterMessage::RaftBatch`].
pub const MAX_BATCH_MESSAGES: usize = 4096;

/// Largest number of descriptors in one [`ClusterMessage::MetaTable`].
pub const MAX_DESCRIPTORS_PER_MESSAGE: usize = 1 << 17;

/// A message between two cluster nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClusterMessage {
    /// A SWIM datagram.
    Swim(swim::Message),
    /// A Raft message of one range (the meta range is [`META_RANGE`](super::META_RANGE)).
    Raft {
        /// The range.
        range: RangeId,
        /// The message.
        message: raft::Message,
    },
    /// Raft messages of several ranges for one node, sent together: every
    /// Raft message one input produces for a peer (heartbeats of every range
    /// whose timer fell in the same tick, their answers, appends) travels
    /// in one of these, split only at [`MAX_BATCH_MESSAGES`] or at half the
    /// message size limit.
    RaftBatch(Vec<(RangeId, raft::Message)>),
    /// A node's reports on the ranges it leads, to the meta range's leader.
    Reports {
        /// The reporting node.
        from: NodeId,
        /// One per range it leads.
        reports: Vec<RangeReport>,
    },
    /// The meta leader asks a range's leader to carry out an operation.
    Command(RangeCommand),
    /// The range leader's answer to a [`ClusterMessage::Command`].
    CommandDone {
        /// The node answering.
        from: NodeId,
        /// The operation.
        op: u64,
        /// The meta leader's term the command was sent in.
        meta_term: Term,
        /// How it went.
        result: CommandResult,
    },
    /// Asks a node for its copy of the descriptors.
    MetaFetch {
        /// Who asks.
        from: NodeId,
    },
    /// A copy of the descriptors, at a meta version.
    MetaTable {
        /// The meta range's version of this copy.
        version: LogIndex,
        /// The descriptors.
        descriptors: Vec<RangeDescriptor>,
        /// The leaders the sender knows of, by range, with the term each
        /// was seen leading in.
        leaders: Vec<(RangeId, NodeId, Term)>,
        /// Per range, the range's commit index its replicas were recorded
        /// as of (ranges not listed: zero).
        recorded: Vec<(RangeId, LogIndex)>,
    },
}

/// What a range's leader reports to the meta leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeReport {
    /// The range.
    pub range: RangeId,
    /// The leader's term.
    pub term: Term,
    /// The leader's commit index when the configuration was read.
    pub commit: LogIndex,
    /// The committed configuration's voters, or `None` while it is joint.
    pub voters: Option<Vec<NodeId>>,
    /// Its learners.
    pub learners: Vec<NodeId>,
    /// Bytes the range's state machine holds (an estimate).
    pub size_bytes: u64,
    /// Voters whose log lags the leader's by more than one append.
    pub lagging: Vec<NodeId>,
}

/// An operation the meta leader's planner asked for, sent to the range's
/// leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeCommand {
    /// The meta leader.
    pub from: NodeId,
    /// The meta leader's term: answers from an older term are ignored.
    pub meta_term: Term,
    /// The planner's operation id.
    pub op: u64,
    /// The range.
    pub range: RangeId,
    /// What to do.
    pub kind: CommandKind,
    /// The voters and learners the operation was planned against (the
    /// recorded descriptor's). The leader refuses a membership change when
    /// its committed configuration differs: a plan made from a stale
    /// descriptor could otherwise remove one voter too many.
    pub expected: (Vec<NodeId>, Vec<NodeId>),
}

/// The operations a range leader carries out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandKind {
    /// Add a learner.
    AddLearner(NodeId),
    /// Promote a learner to voter.
    Promote(NodeId),
    /// Remove a replica.
    Remove(NodeId),
    /// Hand leadership over.
    TransferLeader(NodeId),
}

impl CommandKind {
    /// The command for a planner operation, if a range leader can carry it
    /// out (splits and merges are not yet supported by the cluster).
    pub fn from_op(kind: &OpKind) -> Option<CommandKind> {
        match *kind {
            OpKind::AddLearner(node) => Some(CommandKind::AddLearner(node)),
            OpKind::Promote(node) => Some(CommandKind::Promote(node)),
            OpKind::Remove(node) => Some(CommandKind::Remove(node)),
            OpKind::TransferLeader(node) => Some(CommandKind::TransferLeader(node)),
            OpKind::Split(_) | OpKind::Merge { .. } => None,
        }
    }
}

/// How a range command ended on the range's leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The change committed; the range's report after it.
    Applied(RangeReport),
    /// Leadership transfer started toward the target.
    TransferStarted,
    /// The receiver does not lead the range (its hint, if any).
    NotLeader(Option<NodeId>),
    /// The change was refused or abandoned, in words.
    Failed(String),
}

/// Encodes a message for the wire, within `limit` bytes.
pub fn encode(message: &ClusterMessage, limit: usize) -> Result<Vec<u8>, WireError> {
    crate::wire::encode_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(message, limit)
}

/// Decodes one message of at most `limit` bytes; never panics.
pub fn decode(bytes: &[u8], limit: usize) -> Result<ClusterMessage, WireError> {
    crate::wire::decode_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(bytes, limit)
}
