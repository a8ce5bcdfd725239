//! What a node tells its driver: actions to perform, answers to clients,
//! events for traces and checkers, and a status snapshot.

use super::membership::{DiskId, Membership};
use super::message::Message;
use super::node::Role;
use super::persist::PersistRequest;
use crate::types::{LogIndex, NodeId, RequestId, Term};

/// What a client is told about its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResult {
    /// Committed and applied; the state machine's answer.
    Ok(Vec<u8>),
    /// This node is not the leader; `leader_hint` is the leader it knows of.
    /// The request was not appended anywhere. A leader that is transferring
    /// leadership also refuses proposals this way, with the transfer target
    /// (the expected next leader) as the hint.
    NotLeader {
        /// Where to send the request instead.
        leader_hint: NodeId,
    },
    /// This node knows of no leader (an election is under way). The request
    /// was not appended anywhere.
    NoLeader,
    /// The node gave up on the request. See [`DropReason`] for whether it may
    /// still take effect.
    Dropped(DropReason),
}

/// Why a request was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Too many requests awaiting commit (`max_pending_requests`), or too many
    /// reads held (`max_pending_reads`); not appended.
    Overloaded,
    /// Larger than `max_command_bytes`; not appended.
    TooLarge,
    /// The node stopped being leader after appending the request. It may still
    /// commit under the next leader: retry in the same client session to learn
    /// the outcome. For a read (which is never appended) it only means "ask
    /// again".
    LeadershipLost,
}

impl DropReason {
    /// Could the request still take effect?
    pub fn outcome_unknown(self) -> bool {
        matches!(self, DropReason::LeadershipLost)
    }
}

/// Something the node tells its driver, for traces and checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node's role or term changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The term it holds it in.
        term: Term,
    },
    /// A peer broke the protocol (or the cluster's safety is already broken).
    /// The offending part of the input was ignored (a term it carried, or
    /// accepting its sender as leader, may already have taken effect).
    Violation {
        /// What was wrong, naming the peer, for a human reading a log.
        description: String,
    },
    /// This leader started handing leadership to `target`; it refuses
    /// proposals until the transfer ends.
    TransferStarted {
        /// The voter that should take over.
        target: NodeId,
        /// This leader's term.
        term: Term,
    },
    /// The target did not take over within an election timeout; this leader
    /// takes proposals again.
    TransferAbandoned {
        /// The voter that did not take over.
        target: NodeId,
        /// This leader's term.
        term: Term,
    },
    /// The configuration in force on this node changed: an entry at `index`
    /// was appended (or a truncation or snapshot brought back an older one).
    MembershipChanged {
        /// The index of the configuration entry now in force (the log's
        /// offset for a configuration from a snapshot or the bootstrap).
        index: LogIndex,
        /// The configuration now in force.
        membership: Membership,
    },
    /// This node installed a snapshot received from the leader.
    SnapshotInstalled {
        /// The last index the snapshot covers.
        index: LogIndex,
        /// The term of that entry.
        term: Term,
    },
    /// This leader learned that `follower`, after restarting on the same disk,
    /// no longer holds entries it had acknowledged (up to `acknowledged`; its
    /// log now ends at or diverges before `holds`): its disk lost writes it
    /// had reported durable, or was restored from an older copy. The leader
    /// stops counting the lost acknowledgements and repairs the follower
    /// from where its log really ends. An entry committed with that
    /// acknowledgement may already be unsafe (see the crate docs on lost
    /// disks): investigate the follower's storage.
    FollowerLostEntries {
        /// The follower whose disk lost acknowledged entries.
        follower: NodeId,
        /// The highest index it had acknowledged.
        acknowledged: LogIndex,
        /// Where its log now ends or diverges, at the latest.
        holds: LogIndex,
    },
}

/// One thing the driver must do. See [`RaftNode`](super::RaftNode) for the drain order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer. Loss, duplication and reordering are fine.
    Send(Message),
    /// Make a write durable, then call [`RaftNode::handle_persisted`](super::RaftNode::handle_persisted).
    Persist(PersistRequest),
    /// Answer a client request.
    Respond {
        /// The request being answered, as the client's input named it.
        request: RequestId,
        /// The answer.
        result: ClientResult,
    },
    /// Informational.
    Event(Event),
}

/// What [`RaftNode::status`](super::RaftNode::status) reports: the node's state at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role in its current term.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Whom it voted for in its current term.
    pub voted_for: Option<NodeId>,
    /// The leader it follows (itself when leader).
    pub leader: Option<NodeId>,
    /// Its disk.
    pub disk: DiskId,
    /// This life of its disk (see [`HardState::incarnation`](super::HardState::incarnation)).
    pub incarnation: u64,
    /// Is it a voter, on this disk, in the configuration in force?
    pub is_voter: bool,
    /// May it start an election (see [`RaftNode::may_campaign`](super::RaftNode::may_campaign))?
    pub may_campaign: bool,
    /// The first log index still held (earlier entries were compacted).
    pub first_index: LogIndex,
    /// The last log index.
    pub last_index: LogIndex,
    /// The term of the last log entry (or of the snapshot's end).
    pub last_term: Term,
    /// The highest log index acknowledged as durable by the driver.
    pub persisted_index: LogIndex,
    /// The highest index known committed.
    pub commit_index: LogIndex,
    /// The highest index applied to the state machine.
    pub applied_index: LogIndex,
    /// Messages held back until a write is acknowledged.
    pub held_message_count: usize,
    /// Reads this leader holds (waiting for confirmation or apply).
    pub pending_read_count: usize,
    /// Reads this node holds to answer itself (follower and session reads
    /// waiting for a read index or for their index to apply); each gives up
    /// at its deadline.
    pub local_read_count: usize,
    /// The target of the leadership transfer in progress, if any.
    pub transfer_target: Option<NodeId>,
}
