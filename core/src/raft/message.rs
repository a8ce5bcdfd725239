//! What Raft nodes say to each other, and what the log holds.

use super::membership::{DiskId, Membership};
use crate::types::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: LogIndex,
    pub term: Term,
    pub payload: Payload,
}

/// What an entry asks the replicated state machine to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader so that it can commit entries of earlier
    /// terms (the current-term commit rule).
    Noop,
    /// A state-machine command, opaque to Raft.
    Command(Vec<u8>),
    /// A read-only query ordered through the log: applying it changes nothing
    /// and answers the query against the state at that index. Nodes no longer
    /// append these (reads use ReadIndex, see `RaftNode::read`), but still
    /// apply any a log holds.
    Read(Vec<u8>),
    /// A new cluster configuration. It takes effect on each node as soon as
    /// the node appends it (see [`super::membership`]).
    Config(Membership),
}

impl Payload {
    /// Bytes carried by the payload (for size accounting).
    pub fn len_bytes(&self) -> usize {
        match self {
            Payload::Noop => 0,
            Payload::Command(bytes) | Payload::Read(bytes) => bytes.len(),
            Payload::Config(membership) => 16 * membership.members().len(),
        }
    }
}

/// A message between two Raft nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term, except for pre-votes: a pre-vote request carries the
    /// term the candidate *would* campaign in, and a granted pre-vote response
    /// echoes it.
    pub term: Term,
    /// The sender's disk: acknowledgements count toward a quorum only from the
    /// disk the configuration records for the sender.
    pub disk: DiskId,
    /// Which life of that disk speaks ([`HardState::incarnation`](super::HardState::incarnation)).
    /// A leader uses it to tell an answer from a follower that restarted
    /// from the stale answers of its earlier life.
    pub incarnation: u64,
    pub body: MessageBody,
}

/// Names one request a follower sends the leader (a forwarded proposal or a
/// read-index request), unique over every life of every disk of the node:
/// the leader echoes it, and an answer whose tag is not of this node's
/// current life (say, one sent to the node before it restarted and reused
/// its numbers) is ignored instead of answering another client's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestTag {
    pub disk: DiskId,
    pub incarnation: u64,
    /// Numbers this life's requests, from 1.
    pub seq: u64,
}

impl std::fmt::Display for RequestTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}#{}", self.disk, self.incarnation, self.seq)
    }
}

/// The kinds of Raft messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Ask for a vote (or, with `pre_vote`, ask whether a vote would be granted
    /// without disturbing anyone's term). `transfer` is set when the candidate
    /// campaigns because the leader told it to ([`MessageBody::TimeoutNow`]):
    /// voters then ignore their check-quorum lease, since the leader itself
    /// asked for the election. Never set together with `pre_vote`.
    RequestVote { pre_vote: bool, last_log_index: LogIndex, last_log_term: Term, transfer: bool },
    /// The answer to a [`MessageBody::RequestVote`].
    RequestVoteResponse { pre_vote: bool, granted: bool },
    /// Replicate `entries`, which follow the entry at `prev_log_index`.
    AppendEntries { prev_log_index: LogIndex, prev_log_term: Term, entries: Vec<Entry>, leader_commit: LogIndex },
    /// The answer to an [`MessageBody::AppendEntries`].
    AppendEntriesResponse(AppendResponse),
    /// Leader liveness and commit propagation. `commit` is already capped at
    /// what the leader knows the follower holds. `read_context` numbers the
    /// leader's heartbeat round; a quorum echoing it proves the leader was
    /// still the leader after the round was sent (ReadIndex reads).
    Heartbeat { commit: LogIndex, read_context: u64 },
    /// The answer to a [`MessageBody::Heartbeat`], echoing its `read_context`
    /// (0 when answering a heartbeat of a stale term).
    HeartbeatResponse { read_context: u64 },
    /// Leadership transfer: the leader has brought the recipient's log up to
    /// date and asks it to campaign at once, skipping pre-vote.
    TimeoutNow,
    /// One chunk of the leader's snapshot, for a follower whose next entry
    /// was compacted. Chunks are accepted in order; `offset` is where `chunk`
    /// starts in the snapshot's `total_bytes`.
    InstallSnapshot { meta: Box<SnapshotMeta>, offset: u64, total_bytes: u64, chunk: Vec<u8> },
    /// How many bytes of the snapshot ending at `index` the follower holds
    /// (it expects the chunk at `received` next). Installation itself is
    /// answered with an [`AppendResponse::Accepted`].
    SnapshotChunkResponse { index: LogIndex, received: u64 },
    /// A follower forwards a client's proposal to the leader; `id` is the
    /// follower's own name for it.
    Forward { id: RequestTag, command: Vec<u8> },
    /// The leader's answer to a [`MessageBody::Forward`], echoing its `id`.
    ForwardResponse { id: RequestTag, outcome: ForwardOutcome },
    /// A follower asks the leader for a read index (follower reads);
    /// `allow_lease` lets a lease confirm it.
    ReadIndex { id: RequestTag, allow_lease: bool },
    /// The read index once the leader confirmed its leadership; `None` if it
    /// could not (not the leader, overloaded, or stepped down).
    ReadIndexResponse { id: RequestTag, index: Option<LogIndex> },
}

/// What the leader did with a forwarded proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardOutcome {
    /// Appended at `index` in `term`; it takes effect if that entry commits.
    Placed { index: LogIndex, term: Term },
    /// Not appended: the recipient is not the leader (or is handing over).
    NotLeader,
    /// Not appended: the leader's queue is full.
    Overloaded,
    /// Not appended: larger than the leader's `max_command_bytes`.
    TooLarge,
}

/// What a snapshot covers: the state after applying every entry up to
/// `index` (whose term is `term`), and the configuration in force there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    pub membership: Membership,
}

/// A state-machine snapshot and what it covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
}

/// The answer to an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResponse {
    /// The follower's log matches the leader's up to `match_index` (and that
    /// prefix is durable on the follower).
    Accepted { match_index: LogIndex },
    /// The follower has no entry matching `rejected_prev_index`. The hint lets
    /// the leader skip a whole conflicting term at once.
    Rejected { rejected_prev_index: LogIndex, hint: ConflictHint },
}

/// Where the leader should probe next after a rejection (fast backtracking).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// The term of the follower's entry at the rejected index, or `None` if the
    /// follower's log is shorter than that.
    pub conflict_term: Option<Term>,
    /// The first index of `conflict_term` in the follower's log, or its last
    /// index plus one when `conflict_term` is `None`.
    pub first_index: LogIndex,
}

impl MessageBody {
    /// A short name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { pre_vote: false, .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::RequestVoteResponse { pre_vote: false, .. } => "RequestVoteResp",
            MessageBody::AppendEntries { .. } => "Append",
            MessageBody::AppendEntriesResponse(_) => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::InstallSnapshot { .. } => "Snapshot",
            MessageBody::SnapshotChunkResponse { .. } => "SnapshotResp",
            MessageBody::Forward { .. } => "Forward",
            MessageBody::ForwardResponse { .. } => "ForwardResp",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
        }
    }
}
