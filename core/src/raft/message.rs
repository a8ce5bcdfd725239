//! What Raft nodes say to each other, and what the log holds.

use super::membership::{DiskId, Membership, MembershipError};
use crate::types::{LogIndex, NodeId, Term, MAX_LOG_INDEX, MAX_PEER_TERM, MAX_TERM_JUMP};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log; the entries of a log are dense.
    pub index: LogIndex,
    /// The term of the leader that appended it. Two logs holding an entry
    /// with the same index and term agree on every entry up to it.
    pub term: Term,
    /// What applying the entry does.
    pub payload: Payload,
}

/// What an entry asks the replicated state machine to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// Appended by every new leader so that it can commit entries of earlier
    /// terms (the current-term commit rule).
    Noop,
    /// A state-machine command, opaque to Raft. Shared, not copied, by the
    /// log, the writes and the appends that carry it.
    Command(Bytes),
    /// A read-only query ordered through the log: applying it changes nothing
    /// and answers the query against the state at that index. Nodes no longer
    /// append these (reads use ReadIndex, see `RaftNode::read`), but still
    /// apply any a log holds.
    Read(Bytes),
    /// A new cluster configuration. It takes effect on each node as soon as
    /// the node appends it (see [`Membership`]).
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
    /// The sending node.
    pub from: NodeId,
    /// The addressee. A node rejects a message addressed to another
    /// ([`MessageError::Misaddressed`]).
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
    /// What the message says.
    pub body: MessageBody,
}

/// Names one request a follower sends the leader (a forwarded proposal or a
/// read-index request), unique over every life of every disk of the node:
/// the leader echoes it, and an answer whose tag is not of this node's
/// current life (say, one sent to the node before it restarted and reused
/// its numbers) is ignored instead of answering another client's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestTag {
    /// The disk of the node that made the request.
    pub disk: DiskId,
    /// The life of that disk that made it
    /// ([`HardState::incarnation`](super::HardState::incarnation)).
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
    RequestVote {
        /// A pre-vote: nobody changes term or vote on its account.
        pre_vote: bool,
        /// The index of the candidate's last entry (or of its snapshot's end).
        /// Voters grant only a candidate whose log is at least as up to date
        /// as theirs: a later `last_log_term`, or the same one and an index
        /// at least theirs.
        last_log_index: LogIndex,
        /// The term of the candidate's last entry (or of its snapshot's end).
        last_log_term: Term,
        /// The candidate campaigns at the leader's request (`TimeoutNow`).
        transfer: bool,
    },
    /// The answer to a [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Answers a pre-vote request.
        pre_vote: bool,
        /// The vote (or pre-vote) is granted. A granted vote goes out only
        /// once the vote is durable.
        granted: bool,
    },
    /// Replicate `entries`, which follow the entry at `prev_log_index`.
    AppendEntries {
        /// The index of the entry just before `entries`. The follower accepts
        /// only if it holds an entry there of term `prev_log_term`.
        prev_log_index: LogIndex,
        /// The term of the leader's entry at `prev_log_index`.
        prev_log_term: Term,
        /// Dense entries with non-decreasing terms, at most
        /// [`MAX_ENTRIES_PER_MESSAGE`]; empty for a probe or keep-alive.
        entries: Vec<Entry>,
        /// The leader's commit index. The follower commits up to the smaller
        /// of it and the last index this append matched.
        leader_commit: LogIndex,
    },
    /// The answer to an [`MessageBody::AppendEntries`].
    AppendEntriesResponse(AppendResponse),
    /// Leader liveness and commit propagation. `commit` is already capped at
    /// what the leader knows the follower holds. `read_context` numbers the
    /// leader's heartbeat round; a quorum echoing it proves the leader was
    /// still the leader after the round was sent (ReadIndex reads).
    Heartbeat {
        /// The leader's commit index, capped at the follower's match index.
        commit: LogIndex,
        /// The number of this heartbeat round; grows across the leader's
        /// terms.
        read_context: u64,
    },
    /// The answer to a [`MessageBody::Heartbeat`], echoing its `read_context`
    /// (0 when answering a heartbeat of a stale term).
    HeartbeatResponse {
        /// The `read_context` of the heartbeat answered. 0 when the message
        /// answered (a heartbeat, an append or a snapshot chunk) is of a stale
        /// term: the answer then only tells the sender our term.
        read_context: u64,
    },
    /// Leadership transfer: the leader has brought the recipient's log up to
    /// date and asks it to campaign at once, skipping pre-vote.
    TimeoutNow,
    /// One chunk of the leader's snapshot, for a follower whose next entry
    /// was compacted. Chunks are accepted in order; `offset` is where `chunk`
    /// starts in the snapshot's `total_bytes`.
    InstallSnapshot {
        /// What the snapshot covers.
        meta: Box<SnapshotMeta>,
        /// Where `chunk` starts in the snapshot's data. A follower takes only
        /// the chunk at the offset it expects next; offset 0 (re)starts a
        /// snapshot.
        offset: u64,
        /// The size of the snapshot's data. A follower refuses a snapshot
        /// above its `max_snapshot_bytes` (with an [`Event::Violation`](super::Event::Violation)).
        total_bytes: u64,
        /// At most the leader's `snapshot_chunk_bytes` of the data.
        chunk: Vec<u8>,
    },
    /// How many bytes of the snapshot ending at `index` the follower holds
    /// (it expects the chunk at `received` next). Installation itself is
    /// answered with an [`AppendResponse::Accepted`].
    SnapshotChunkResponse {
        /// The last index the snapshot covers (its `meta.index`).
        index: LogIndex,
        /// Bytes of the snapshot the follower holds, where the next chunk must
        /// start; 0 asks the leader to start over.
        received: u64,
    },
    /// A follower forwards a client's proposal to the leader; `id` is the
    /// follower's own name for it.
    Forward {
        /// The follower's tag for the proposal.
        id: RequestTag,
        /// The client's command, opaque to Raft.
        command: Bytes,
    },
    /// The leader's answer to a [`MessageBody::Forward`], echoing its `id`.
    ForwardResponse {
        /// The tag of the [`MessageBody::Forward`] answered.
        id: RequestTag,
        /// What the leader did with the proposal.
        outcome: ForwardOutcome,
    },
    /// A follower asks the leader for a read index (follower reads);
    /// `allow_lease` lets a lease confirm it.
    ReadIndex {
        /// The follower's tag for the request.
        id: RequestTag,
        /// The client asked for [`ReadConsistency::Lease`](super::ReadConsistency::Lease):
        /// the leader's lease may confirm the read instead of a heartbeat
        /// round.
        allow_lease: bool,
    },
    /// The read index once the leader confirmed its leadership; `None` if it
    /// could not (not the leader, overloaded, or stepped down).
    ReadIndexResponse {
        /// The tag of the [`MessageBody::ReadIndex`] answered.
        id: RequestTag,
        /// The index the follower must have applied before it answers the
        /// read from its own state.
        index: Option<LogIndex>,
    },
    /// The leader's group is idle and every follower holds its whole log:
    /// stop the election timer until something happens (quiescence, see
    /// [`Config::quiesce_after_ms`](super::Config::quiesce_after_ms)).
    Quiesce {
        /// The leader's commit index, its last index: a follower that holds
        /// exactly this log quiesces; any other answers [`MessageBody::Wake`].
        commit: LogIndex,
    },
    /// A quiesced follower woke (a request, a candidate, a message from
    /// another node): the leader resumes its heartbeats.
    Wake,
}

/// What the leader did with a forwarded proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardOutcome {
    /// Appended at `index` in `term`; it takes effect if that entry commits.
    Placed {
        /// The entry's index.
        index: LogIndex,
        /// The leader's term, which the entry carries. The follower answers
        /// its client `Ok` only if the entry it applies at `index` has this
        /// term.
        term: Term,
    },
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
    /// The last log index the snapshot covers; never 0 in a snapshot a node
    /// takes or accepts ([`MessageError::EmptySnapshot`]).
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration in force at `index`; installing the snapshot
    /// installs it.
    pub membership: Membership,
}

/// A state-machine snapshot and what it covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's state after applying `meta.index`, as
    /// [`StateMachine::snapshot`](crate::StateMachine::snapshot) wrote it;
    /// opaque to Raft.
    pub data: Vec<u8>,
}

/// The answer to an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResponse {
    /// The follower's log matches the leader's up to `match_index` (and that
    /// prefix is durable on the follower).
    Accepted {
        /// The last index at which the follower's log matches the leader's.
        match_index: LogIndex,
    },
    /// The follower has no entry matching `rejected_prev_index`. The hint lets
    /// the leader skip a whole conflicting term at once.
    Rejected {
        /// The `prev_log_index` of the rejected append; lets the leader ignore
        /// rejections of appends it has since moved past.
        rejected_prev_index: LogIndex,
        /// Where the follower's log diverges.
        hint: ConflictHint,
    },
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
            MessageBody::Quiesce { .. } => "Quiesce",
            MessageBody::Wake => "Wake",
        }
    }
}

/// Most entries accepted in one append from a peer, whatever our own config
/// says: a bound on the work one message can cause.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 65_536;

/// Why a node rejected a peer's message whole, before any of it took effect
/// (see [`RaftNode::handle_message`](super::RaftNode::handle_message)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Addressed to another node.
    #[error("addressed to {to}")]
    Misaddressed {
        /// The addressee.
        to: NodeId,
    },
    /// Claims to come from the receiving node itself.
    #[error("claims to come from this node")]
    FromSelf,
    /// A term at or near the limit: accepting it would leave no room for
    /// elections, and one such message would stop the cluster for good.
    #[error("term {term} is beyond {MAX_PEER_TERM}, the highest a node accepts")]
    TermTooLarge {
        /// The message's term.
        term: Term,
    },
    /// A term further ahead of ours than any run of elections explains.
    #[error("jumps to term {term}, more than {MAX_TERM_JUMP} past ours ({ours})")]
    TermJump {
        /// The message's term.
        term: Term,
        /// The receiver's term.
        ours: Term,
    },
    /// A log index beyond the limit.
    #[error("index {index} is beyond the limit {MAX_LOG_INDEX}")]
    IndexTooLarge {
        /// The offending index.
        index: LogIndex,
    },
    /// More entries than one message may carry.
    #[error("{count} entries, more than {MAX_ENTRIES_PER_MESSAGE}")]
    TooManyEntries {
        /// How many it carried.
        count: usize,
    },
    /// An append's previous entry is of a later term than the message.
    #[error("previous entry term {prev_term} is after the message term {term}")]
    PreviousTermAfterMessage {
        /// The append's `prev_log_term`.
        prev_term: Term,
        /// The message's term.
        term: Term,
    },
    /// Entries that do not follow each other densely.
    #[error("entry {found} where {expected} was expected")]
    EntryOutOfPlace {
        /// The entry's index.
        found: LogIndex,
        /// The index that follows the previous one.
        expected: LogIndex,
    },
    /// An entry whose term goes down, or is after the message's.
    #[error("entry {index} has out-of-order term {term}")]
    EntryTermOutOfOrder {
        /// The entry's index.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
    /// A configuration entry that is not a valid configuration.
    #[error("entry {index} configuration: {error}")]
    EntryMembership {
        /// The entry's index.
        index: LogIndex,
        /// What is wrong with it.
        error: MembershipError,
    },
    /// A snapshot of a later term than the message.
    #[error("snapshot term {snapshot_term} is after the message term {term}")]
    SnapshotTermAfterMessage {
        /// The snapshot's term.
        snapshot_term: Term,
        /// The message's term.
        term: Term,
    },
    /// A snapshot that covers nothing.
    #[error("a snapshot ends at index 0")]
    EmptySnapshot,
    /// A snapshot chunk past the snapshot's size.
    #[error("a chunk at {offset} of {length} bytes overruns the snapshot's {total_bytes}")]
    ChunkOverrun {
        /// Where the chunk starts.
        offset: u64,
        /// Its length.
        length: usize,
        /// The snapshot's size.
        total_bytes: u64,
    },
    /// A snapshot whose configuration is not valid.
    #[error("snapshot configuration: {0}")]
    SnapshotMembership(MembershipError),
    /// A pre-vote request marked as part of a leadership transfer.
    #[error("a pre-vote request claims to come from a leadership transfer")]
    PreVoteTransfer,
}

impl Message {
    /// Checks what a peer cannot be trusted to get right, independently of
    /// the receiver's state: the term's limit, every index's limit, the
    /// shape of an append (dense entries with terms in order) and of a
    /// snapshot chunk, and every configuration a message carries.
    pub fn validate(&self) -> Result<(), MessageError> {
        if self.term > MAX_PEER_TERM {
            return Err(MessageError::TermTooLarge { term: self.term });
        }
        if let MessageBody::InstallSnapshot { meta, offset, total_bytes, chunk } = &self.body {
            validate_chunk(self.term, meta, *offset, *total_bytes, chunk.len())?;
        }
        if let MessageBody::RequestVote { pre_vote: true, transfer: true, .. } = self.body {
            return Err(MessageError::PreVoteTransfer);
        }
        if let Some(index) = self.body.indexes().into_iter().flatten().find(|index| *index > MAX_LOG_INDEX) {
            return Err(MessageError::IndexTooLarge { index });
        }
        if let MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, .. } = &self.body {
            validate_entries(self.term, *prev_log_index, *prev_log_term, entries)?;
        }
        Ok(())
    }
}

impl MessageBody {
    /// The log indexes a message names, whose limit the receiver checks.
    fn indexes(&self) -> [Option<LogIndex>; 2] {
        match self {
            MessageBody::RequestVote { last_log_index, .. } => [Some(*last_log_index), None],
            MessageBody::AppendEntries { prev_log_index, leader_commit, .. } => {
                [Some(*prev_log_index), Some(*leader_commit)]
            }
            MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => [Some(*match_index), None],
            MessageBody::AppendEntriesResponse(AppendResponse::Rejected { rejected_prev_index, hint }) => {
                [Some(*rejected_prev_index), Some(hint.first_index)]
            }
            MessageBody::Heartbeat { commit, .. } | MessageBody::Quiesce { commit } => [Some(*commit), None],
            MessageBody::InstallSnapshot { meta, .. } => [Some(meta.index), None],
            MessageBody::SnapshotChunkResponse { index, .. } => [Some(*index), None],
            MessageBody::ForwardResponse { outcome: ForwardOutcome::Placed { index, .. }, .. } => [Some(*index), None],
            MessageBody::ReadIndexResponse { index: Some(index), .. } => [Some(*index), None],
            MessageBody::RequestVoteResponse { .. }
            | MessageBody::HeartbeatResponse { .. }
            | MessageBody::TimeoutNow
            | MessageBody::Forward { .. }
            | MessageBody::ForwardResponse { .. }
            | MessageBody::ReadIndex { .. }
            | MessageBody::ReadIndexResponse { .. }
            | MessageBody::Wake => [None, None],
        }
    }
}

/// The shape of one snapshot chunk in a message of `term`.
fn validate_chunk(
    term: Term,
    meta: &SnapshotMeta,
    offset: u64,
    total_bytes: u64,
    length: usize,
) -> Result<(), MessageError> {
    if meta.term > term {
        return Err(MessageError::SnapshotTermAfterMessage { snapshot_term: meta.term, term });
    }
    if meta.index == LogIndex::ZERO {
        return Err(MessageError::EmptySnapshot);
    }
    if offset.checked_add(length as u64).is_none_or(|end| end > total_bytes) {
        return Err(MessageError::ChunkOverrun { offset, length, total_bytes });
    }
    meta.membership.validate().map_err(MessageError::SnapshotMembership)
}

/// The shape of an append's entries in a message of `term`: dense after the
/// previous entry, terms never decreasing and never after the message's.
fn validate_entries(
    term: Term,
    prev_log_index: LogIndex,
    prev_log_term: Term,
    entries: &[Entry],
) -> Result<(), MessageError> {
    if entries.len() > MAX_ENTRIES_PER_MESSAGE {
        return Err(MessageError::TooManyEntries { count: entries.len() });
    }
    if prev_log_term > term {
        return Err(MessageError::PreviousTermAfterMessage { prev_term: prev_log_term, term });
    }
    let mut expected = prev_log_index.next();
    let mut previous_term = prev_log_term;
    for entry in entries {
        if entry.index > MAX_LOG_INDEX {
            return Err(MessageError::IndexTooLarge { index: entry.index });
        }
        if entry.index != expected {
            return Err(MessageError::EntryOutOfPlace { found: entry.index, expected });
        }
        if entry.term < previous_term || entry.term > term {
            return Err(MessageError::EntryTermOutOfOrder { index: entry.index, term: entry.term });
        }
        if let Payload::Config(membership) = &entry.payload {
            membership.validate().map_err(|error| MessageError::EntryMembership { index: entry.index, error })?;
        }
        expected = expected.next();
        previous_term = entry.term;
    }
    Ok(())
}
