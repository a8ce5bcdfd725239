//! What a node asks its driver to make durable, and what the driver hands
//! back on restart: the hard state, the write requests and their ids, and a
//! disk's whole durable state.

use super::membership::DiskId;
use super::message::{Entry, Snapshot};
use crate::types::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// What must survive a crash: the term, the vote, how far the node knows the
/// log to be committed, and which disk this is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub commit: LogIndex,
    /// The identity of this disk (see [`DiskId`]).
    pub disk: DiskId,
    /// How many lives of a node this disk has seen: [`RaftNode::new`](super::RaftNode::new) and
    /// [`RaftNode::join`](super::RaftNode::join) write 1, and every [`RaftNode::restart`](super::RaftNode::restart) writes one
    /// more before the node says anything. Requests the node numbers carry
    /// it (see [`RequestTag`](super::RequestTag)), so an answer meant for an earlier life is
    /// never taken for an answer to this one; leaders use it to tell a
    /// follower that restarted from its stale answers. 0 only on a disk no
    /// node ever started from.
    pub incarnation: u64,
}

/// Everything a node's disk holds, as handed to [`RaftNode::restart`](super::RaftNode::restart).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableState {
    pub hard_state: HardState,
    /// The latest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The stored log entries, dense. Without a snapshot they start at index
    /// 1; with one they start at or before the snapshot's index plus one.
    pub entries: Vec<Entry>,
}

impl DurableState {
    /// Did no node ever write to this disk? (No identity, no incarnation, no
    /// term, no log, no snapshot.)
    pub fn is_empty(&self) -> bool {
        self.hard_state == HardState::default() && self.snapshot.is_none() && self.entries.is_empty()
    }
}

/// Identifies one write the node asked the driver to make durable. Ids grow by
/// one with each write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistId(pub u64);

/// A write the driver must make durable, then acknowledge with
/// [`RaftNode::handle_persisted`](super::RaftNode::handle_persisted). Writes must be performed in the order they
/// are emitted; acknowledging a write acknowledges every earlier one. Within
/// one write, the steps go in field order: store the snapshot, discard the
/// log prefix, truncate, append, store the hard state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRequest {
    pub id: PersistId,
    /// When set, store this snapshot, replacing the previous one.
    pub snapshot: Option<Snapshot>,
    /// When set, remove every stored entry at this index or before (they are
    /// covered by the stored snapshot).
    pub discard_upto: Option<LogIndex>,
    /// When set, remove every stored entry at this index or later, first.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append (after the truncation); they extend the stored log
    /// densely.
    pub entries: Vec<Entry>,
    /// The hard state to store, replacing the previous one.
    pub hard_state: HardState,
}
