//! Linearizable reads without log writes (Raft thesis §6.4): the leader's
//! queue of reads waiting for leadership confirmation and apply, and the send
//! times of its recent heartbeat rounds (for leases).

use super::message::RequestTag;
use crate::types::{LogIndex, NodeId, RequestId, Time};
use std::collections::VecDeque;

/// Most heartbeat rounds whose send time a leader remembers. An answer to an
/// older round still counts for ReadIndex, but grants no lease.
pub const MAX_TRACKED_ROUNDS: usize = 64;

/// How a client chooses, per read, between freshness and cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Linearizable through ReadIndex: the leader confirms its leadership
    /// with a heartbeat round answered by a quorum. A follower asks the
    /// leader for the read index, then answers from its own state.
    Linearizable,
    /// Linearizable through a leader lease when one is running (needs
    /// check-quorum and bounded clock drift, see [`ReadMode::Lease`](super::ReadMode::Lease)),
    /// else as `Linearizable`.
    Lease,
    /// Read-your-writes and monotonic reads: any node answers once it has
    /// applied `after`, the highest index the client has seen (the node's
    /// applied index when it answered the client's previous request).
    Session { after: LogIndex },
    /// Whatever this node has applied, at once: possibly stale, never a
    /// value that was not committed.
    Stale,
}

/// Who a read held by the leader is for.
#[derive(Clone, Debug)]
pub enum ReadOrigin {
    /// A client of this node.
    Local { request: RequestId, query: Vec<u8> },
    /// A follower's ReadIndex request `id`: the answer is the read index.
    Remote { from: NodeId, id: RequestTag },
}

/// One read held by the leader.
#[derive(Clone, Debug)]
pub struct PendingRead {
    pub origin: ReadOrigin,
    /// A leader lease may confirm it (instead of a heartbeat round).
    pub allow_lease: bool,
    /// The commit index the answer must reflect. `None` until the leader has
    /// committed an entry of its own term: before that its commit index may
    /// lag what earlier leaders committed.
    pub read_index: Option<LogIndex>,
    /// The heartbeat round (sent after the read arrived) whose quorum of
    /// answers confirms leadership.
    pub context: u64,
    /// Leadership is confirmed for this read (by a round or a lease).
    pub confirmed: bool,
}

/// A read a node answers from its own state once it has applied `ready_at`.
#[derive(Clone, Debug)]
pub struct LocalRead {
    pub request: RequestId,
    pub query: Vec<u8>,
    /// The index to wait for; `None` while the leader's read index is awaited.
    pub ready_at: Option<LogIndex>,
    /// Give up (the client asks again) if not answered by then.
    pub deadline: Time,
}

/// The leader's reads and heartbeat rounds. Cleared on every role change.
#[derive(Debug, Default)]
pub struct ReadQueue {
    /// In arrival order; contexts and read indexes never decrease along it.
    pub reads: VecDeque<PendingRead>,
    /// Send time of each recent round, oldest first.
    rounds: VecDeque<(u64, Time)>,
}

impl ReadQueue {
    pub fn len(&self) -> usize {
        self.reads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// Remembers that round `context` went out at `now`.
    pub fn round_sent(&mut self, context: u64, now: Time) {
        debug_assert!(self.rounds.back().is_none_or(|(last, _)| *last < context), "rounds are numbered upward");
        if self.rounds.len() >= MAX_TRACKED_ROUNDS {
            self.rounds.pop_front();
        }
        self.rounds.push_back((context, now));
    }

    /// When round `context` was sent, if it is still remembered.
    pub fn sent_at(&self, context: u64) -> Option<Time> {
        // Rounds are numbered upward, so the queue is sorted.
        let position = self.rounds.binary_search_by_key(&context, |(round, _)| *round).ok()?;
        Some(self.rounds[position].1)
    }

    /// Does a read wait on round `context` without being confirmed yet?
    pub fn waiting_on(&self, context: u64) -> bool {
        self.reads.iter().any(|read| !read.confirmed && read.context == context)
    }

    /// Does any read wait for a round later than `context`?
    pub fn waiting_after(&self, context: u64) -> bool {
        self.reads.iter().any(|read| !read.confirmed && read.context > context)
    }

    /// Forgets everything, returning the reads that were still held.
    pub fn clear(&mut self) -> VecDeque<PendingRead> {
        self.rounds.clear();
        std::mem::take(&mut self.reads)
    }
}
