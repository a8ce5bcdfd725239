//! Durability: what a node asks its driver to make durable, what the driver
//! hands back on restart, the one reference rule for applying a write to a
//! disk's state ([`DurableState::apply`]), and the node's durability barrier
//! (the writes it issued and the messages that wait for them).

use super::config::ConfigError;
use super::log::RaftLog;
use super::membership::{DiskId, MembershipError};
use super::message::{Entry, Message, Snapshot};
use crate::types::{LogIndex, NodeId, Term, MAX_LOG_INDEX, MAX_PEER_TERM, MAX_TERM};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What must survive a crash: the term, the vote, how far the node knows the
/// log to be committed, and which disk this is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The node's current term. Never decreases, and is durable before the
    /// node sends anything in it.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any. Durable before
    /// the vote is sent, so a restarted node never votes twice in a term.
    pub voted_for: Option<NodeId>,
    /// The highest index the node knew committed when this hard state was
    /// written. It may lag the cluster's commit index; a restart replays the
    /// stored entries up to it into the state machine.
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
    /// The last hard state stored (`HardState::default()` if none was).
    pub hard_state: HardState,
    /// The latest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The stored log entries, dense. Without a snapshot they start at index
    /// 1; with one they start at or before the snapshot's index plus one.
    pub entries: Vec<Entry>,
}

/// Identifies one write the node asked the driver to make durable. Ids grow by
/// one with each write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersistId(pub u64);

/// A write the driver must make durable, then acknowledge with
/// [`RaftNode::handle_persisted`](super::RaftNode::handle_persisted). Writes must be performed in the order they
/// are emitted; acknowledging a write acknowledges every earlier one. Within
/// one write, the steps go in field order: store the snapshot, discard the
/// log prefix, truncate, append, store the hard state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistRequest {
    /// The write's id; pass it to `handle_persisted` once this write (and so
    /// every earlier one) is durable.
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

/// Why a write cannot be applied to a disk's state: the node asked for
/// something no correct node asks for (a protocol violation of the node, or a
/// driver that reordered or dropped writes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The write discards entries the stored snapshot does not cover.
    #[error("the write discards entries up to {upto}, past the stored snapshot's end {snapshot_end}")]
    DiscardPastSnapshot {
        /// The write's `discard_upto`.
        upto: LogIndex,
        /// Where the stored snapshot ends (0: none).
        snapshot_end: LogIndex,
    },
    /// The write truncates from an index the stored log cannot be cut at.
    #[error("the write truncates from {from}, but the stored log ends at {last}")]
    TruncateOutsideLog {
        /// The write's `truncate_from`.
        from: LogIndex,
        /// The last stored index.
        last: LogIndex,
    },
    /// An entry that does not extend the stored log densely.
    #[error("the write appends entry {found} where {expected} was expected (a hole in the log)")]
    Hole {
        /// The entry's index.
        found: LogIndex,
        /// The index that would extend the stored log.
        expected: LogIndex,
    },
}

impl DurableState {
    /// Did no node ever write to this disk? (No identity, no incarnation, no
    /// term, no log, no snapshot.)
    pub fn is_empty(&self) -> bool {
        self.hard_state == HardState::default() && self.snapshot.is_none() && self.entries.is_empty()
    }

    /// The index the next stored entry must have: one past the last stored
    /// entry, else one past the snapshot, else 1.
    pub fn next_index(&self) -> LogIndex {
        match (self.entries.last(), &self.snapshot) {
            (Some(entry), _) => entry.index.next(),
            (None, Some(snapshot)) => snapshot.meta.index.next(),
            (None, None) => LogIndex(1),
        }
    }

    /// Applies one write, in the order [`PersistRequest`] specifies: store the
    /// snapshot, discard the log prefix, truncate, append, store the hard
    /// state. The one reference implementation of that rule: a driver whose
    /// storage replays writes (the simulator's disk, the test harness, the
    /// runtime's recovery) applies them with this.
    ///
    /// On error the state may hold part of the write: the write was one no
    /// correct node asks for, and the disk should be treated as corrupt.
    pub fn apply(&mut self, write: &PersistRequest) -> Result<(), ApplyError> {
        if let Some(snapshot) = &write.snapshot {
            self.snapshot = Some(snapshot.clone());
        }
        let snapshot_end = self.snapshot.as_ref().map_or(LogIndex::ZERO, |snapshot| snapshot.meta.index);
        if let Some(upto) = write.discard_upto {
            if upto > snapshot_end {
                return Err(ApplyError::DiscardPastSnapshot { upto, snapshot_end });
            }
            self.entries.retain(|entry| entry.index > upto);
        }
        if let Some(from) = write.truncate_from {
            let next = self.next_index();
            if from == LogIndex::ZERO || from > next {
                return Err(ApplyError::TruncateOutsideLog { from, last: next.prev() });
            }
            self.entries.retain(|entry| entry.index < from);
        }
        for entry in &write.entries {
            let expected = self.next_index();
            if entry.index != expected {
                return Err(ApplyError::Hole { found: entry.index, expected });
            }
            self.entries.push(entry.clone());
        }
        self.hard_state = write.hard_state;
        Ok(())
    }

    /// Checks what [`RaftNode::restart`](super::RaftNode::restart) relies on:
    /// a dense log with terms that never decrease, following the snapshot
    /// without a gap and agreeing with it, a hard state whose term and commit
    /// index cover the log, and a valid snapshot configuration.
    pub fn check(&self) -> Result<(), RestartError> {
        let hard_state = &self.hard_state;
        let first = self.entries.first().map_or(LogIndex(1), |entry| entry.index);
        if first == LogIndex::ZERO {
            return Err(RestartError::SparseLog { position: 0, found: first, expected: LogIndex(1) });
        }
        if let Some(entry) = self.entries.last().filter(|entry| entry.index > MAX_LOG_INDEX) {
            return Err(RestartError::IndexTooLarge(entry.index));
        }
        let snapshot_end = self.snapshot.as_ref().map_or(LogIndex::ZERO, |snapshot| snapshot.meta.index);
        if first > snapshot_end.next() {
            return Err(RestartError::LogGapAfterSnapshot { first, snapshot: snapshot_end });
        }
        let mut previous_term = Term::ZERO;
        for (position, entry) in self.entries.iter().enumerate() {
            let expected = LogIndex(first.0 + position as u64);
            if entry.index != expected {
                return Err(RestartError::SparseLog { position, found: entry.index, expected });
            }
            if entry.term < previous_term {
                return Err(RestartError::TermsDecrease { index: entry.index, term: entry.term });
            }
            previous_term = entry.term;
        }
        if hard_state.term > MAX_PEER_TERM {
            return Err(RestartError::TermTooLarge(hard_state.term));
        }
        if previous_term > hard_state.term {
            return Err(RestartError::LogAheadOfTerm { log_term: previous_term, hard_term: hard_state.term });
        }
        let last = LogIndex(first.0 - 1 + self.entries.len() as u64).max(snapshot_end);
        if hard_state.commit > last {
            return Err(RestartError::CommitPastLog { commit: hard_state.commit, last });
        }
        let Some(snapshot) = &self.snapshot else {
            return Ok(());
        };
        let meta = &snapshot.meta;
        meta.membership.validate()?;
        if let Some(entry) = self.entries.iter().find(|entry| entry.index == meta.index) {
            if entry.term != meta.term {
                return Err(RestartError::SnapshotTermMismatch {
                    index: meta.index,
                    found: entry.term,
                    expected: meta.term,
                });
            }
        }
        if meta.term > hard_state.term {
            return Err(RestartError::LogAheadOfTerm { log_term: meta.term, hard_term: hard_state.term });
        }
        Ok(())
    }
}

/// Why [`RaftNode::restart`](super::RaftNode::restart) refused the stored
/// state. Nothing is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A stored index beyond [`MAX_LOG_INDEX`]: the disk is corrupt.
    #[error("stored entry {0} is beyond the index limit {MAX_LOG_INDEX}: the disk is corrupt")]
    IndexTooLarge(LogIndex),
    /// The stored log has a gap.
    #[error(
        "stored entry at position {position} has index {found}, expected {expected} (the log must be dense from 1)"
    )]
    SparseLog {
        /// Position in the stored list.
        position: usize,
        /// The entry's index.
        found: LogIndex,
        /// The index a dense log has there.
        expected: LogIndex,
    },
    /// The stored terms go down.
    #[error("stored entry {index} has term {term}, lower than the entry before it")]
    TermsDecrease {
        /// The entry.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
    /// The stored log (or snapshot) is of a later term than the hard state.
    #[error("stored log ends in term {log_term}, after the stored hard-state term {hard_term}")]
    LogAheadOfTerm {
        /// The term of the log's end.
        log_term: Term,
        /// The stored current term.
        hard_term: Term,
    },
    /// The stored term leaves no room for elections.
    #[error(
        "stored term {0} is beyond {MAX_PEER_TERM}, the highest a node accepts (the limit {MAX_TERM} less room for \
         elections): the disk is corrupt"
    )]
    TermTooLarge(Term),
    /// Nothing was ever stored on the disk.
    #[error(
        "the disk holds no Raft state (no identity, term, log or snapshot): a node never ran on it, or its files \
         were deleted. Bootstrap with `RaftNode::new` only once, for a member of the initial configuration that \
         never ran; a member whose state was lost must `RaftNode::join` with a fresh disk id and be renewed by the \
         leader (`MembershipChange::RenewDisk`)"
    )]
    EmptyDisk,
    /// The stored incarnation is at its maximum.
    #[error("stored incarnation {0} cannot be incremented: the disk is corrupt")]
    IncarnationExhausted(u64),
    /// The stored commit index is past the stored log.
    #[error("stored commit index {commit} is past the end of the stored log ({last})")]
    CommitPastLog {
        /// The stored commit index.
        commit: LogIndex,
        /// The last stored index.
        last: LogIndex,
    },
    /// The stored log does not follow the snapshot.
    #[error("stored log starts at index {first}, but the stored snapshot ends at {snapshot} (a gap)")]
    LogGapAfterSnapshot {
        /// The first stored entry.
        first: LogIndex,
        /// The snapshot's last index.
        snapshot: LogIndex,
    },
    /// The stored log and snapshot disagree.
    #[error("stored entry {index} has term {found}, but the stored snapshot says term {expected}")]
    SnapshotTermMismatch {
        /// The snapshot's last index.
        index: LogIndex,
        /// The stored entry's term.
        found: Term,
        /// The snapshot's term.
        expected: Term,
    },
    /// The state machine could not restore the snapshot.
    #[error("the state machine rejected the stored snapshot: {0}")]
    SnapshotRejected(String),
    /// The snapshot's configuration is invalid.
    #[error("stored snapshot configuration is invalid: {0}")]
    SnapshotMembership(#[from] MembershipError),
}

/// A write issued but not yet acknowledged.
#[derive(Debug)]
struct PendingWrite {
    id: PersistId,
    /// Last log index this write makes durable, lowered if a later truncation
    /// removes part of it from the node's log.
    durable_upto: LogIndex,
    hard_state: HardState,
}

/// Changes made since the last write was issued.
#[derive(Debug, Default)]
struct Dirty {
    hard_state: bool,
    snapshot: Option<Snapshot>,
    discard_upto: Option<LogIndex>,
    truncate_from: Option<LogIndex>,
    append_from: Option<LogIndex>,
}

impl Dirty {
    fn any(&self) -> bool {
        self.hard_state
            || self.snapshot.is_some()
            || self.discard_upto.is_some()
            || self.truncate_from.is_some()
            || self.append_from.is_some()
    }
}

/// The durability barrier of one node: which writes it issued and which the
/// driver acknowledged, the changes not yet written, and the messages held
/// until the write they depend on is durable.
///
/// The rule it keeps: a message that depends on state (a vote, an
/// acknowledgement, any message carrying a term) leaves only once every
/// change made before it was queued is durable. Changes are batched into one
/// [`PersistRequest`] per input by [`flush`](Self::flush).
#[derive(Debug)]
pub(super) struct Durability {
    /// The id the next write gets.
    next_id: u64,
    /// The last write acknowledged (0: none).
    acknowledged: u64,
    dirty: Dirty,
    /// Writes issued and not yet acknowledged, in id order.
    pending: VecDeque<PendingWrite>,
    /// The hard state as of the last acknowledged write.
    durable_hard_state: HardState,
    /// Messages and the write each waits for, in the order they were queued.
    held: VecDeque<(u64, Message)>,
    /// Most messages held; beyond it the oldest is dropped (peers retry).
    max_held: usize,
}

impl Durability {
    /// Nothing issued yet; `durable` is what the disk holds.
    pub(super) fn new(durable: HardState, max_held: usize) -> Durability {
        Durability {
            next_id: 1,
            acknowledged: 0,
            dirty: Dirty::default(),
            pending: VecDeque::new(),
            durable_hard_state: durable,
            held: VecDeque::new(),
            max_held,
        }
    }

    /// The hard state as of the last acknowledged write.
    pub(super) fn durable_hard_state(&self) -> HardState {
        self.durable_hard_state
    }

    /// Messages held back until a write is acknowledged.
    pub(super) fn held_count(&self) -> usize {
        self.held.len()
    }

    /// The hard state changed: the next write stores it.
    pub(super) fn hard_state_changed(&mut self) {
        self.dirty.hard_state = true;
    }

    /// Has the hard state changed since the last write?
    pub(super) fn hard_state_dirty(&self) -> bool {
        self.dirty.hard_state
    }

    /// An entry was appended to the log at `index`.
    pub(super) fn appended(&mut self, index: LogIndex) {
        if self.dirty.append_from.is_none() {
            self.dirty.append_from = Some(index);
        }
    }

    /// The log lost every entry from `index` on.
    pub(super) fn truncated(&mut self, index: LogIndex) {
        for write in self.pending.iter_mut() {
            write.durable_upto = write.durable_upto.min(index.prev());
        }
        self.dirty.truncate_from = Some(self.dirty.truncate_from.map_or(index, |from| from.min(index)));
        if self.dirty.append_from.is_some_and(|from| from >= index) {
            self.dirty.append_from = None;
        }
    }

    /// The log was replaced by a snapshot's end: every stored entry from
    /// `from` on goes, and no pending write makes more than `persisted`
    /// durable.
    pub(super) fn reset_log(&mut self, from: LogIndex, persisted: LogIndex) {
        self.dirty.truncate_from = Some(from);
        self.dirty.append_from = None;
        for write in self.pending.iter_mut() {
            write.durable_upto = write.durable_upto.min(persisted);
        }
    }

    /// The next write stores `snapshot`.
    pub(super) fn store_snapshot(&mut self, snapshot: Snapshot) {
        self.dirty.snapshot = Some(snapshot);
    }

    /// The next write discards stored entries up to `upto`.
    pub(super) fn discard_upto(&mut self, upto: LogIndex) {
        self.dirty.discard_upto = Some(upto);
    }

    /// `message`, if it may go out now; otherwise it is held until the
    /// changes made so far are durable (when `needs_durability`).
    pub(super) fn hold_or_send(&mut self, message: Message, needs_durability: bool) -> Option<Message> {
        let barrier = if self.dirty.any() { self.next_id } else { self.next_id - 1 };
        if !needs_durability || barrier <= self.acknowledged {
            return Some(message);
        }
        if self.held.len() >= self.max_held {
            self.held.pop_front();
        }
        self.held.push_back((barrier, message));
        None
    }

    /// Turns the changes since the last write into one write of `log`'s
    /// changed entries and `hard_state`; `None` if nothing changed.
    pub(super) fn flush(&mut self, log: &RaftLog, hard_state: HardState) -> Option<PersistRequest> {
        if !self.dirty.any() {
            return None;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let start = match (dirty.truncate_from, dirty.append_from) {
            (Some(truncate), Some(append)) => Some(truncate.min(append)),
            (truncate, append) => truncate.or(append),
        };
        let entries = match start {
            Some(start) => log.slice(start, log.last_index()).to_vec(),
            None => Vec::new(),
        };
        let truncate_from = dirty.truncate_from.map(|_| start.expect("truncation sets a start"));
        let id = PersistId(self.next_id);
        self.next_id += 1;
        self.pending.push_back(PendingWrite { id, durable_upto: log.last_index(), hard_state });
        Some(PersistRequest {
            id,
            snapshot: dirty.snapshot,
            discard_upto: dirty.discard_upto,
            truncate_from,
            entries,
            hard_state,
        })
    }

    /// The driver made every write up to `id` durable: marks `log` durable
    /// that far. False (and nothing changes) for an id never issued or
    /// already acknowledged. Then take the released messages with
    /// [`release`](Self::release).
    pub(super) fn acknowledge(&mut self, id: PersistId, log: &mut RaftLog) -> bool {
        if id.0 <= self.acknowledged || id.0 >= self.next_id {
            return false;
        }
        self.acknowledged = id.0;
        while self.pending.front().is_some_and(|write| write.id <= id) {
            let write = self.pending.pop_front().expect("front exists");
            log.mark_persisted(write.durable_upto);
            self.durable_hard_state = write.hard_state;
        }
        true
    }

    /// The next held message whose write is durable.
    pub(super) fn release(&mut self) -> Option<Message> {
        if self.held.front().is_some_and(|(barrier, _)| *barrier <= self.acknowledged) {
            return self.held.pop_front().map(|(_, message)| message);
        }
        None
    }

    /// Panics if a broken invariant shows.
    pub(super) fn check_invariants(&self) {
        assert!(self.acknowledged < self.next_id, "invariant: only issued writes are acknowledged");
        let mut previous = self.acknowledged;
        for write in &self.pending {
            assert!(write.id.0 > previous, "invariant: pending writes are unacknowledged and in id order");
            previous = write.id.0;
        }
        assert!(previous < self.next_id, "invariant: pending writes were issued");
        assert!(self.held.len() <= self.max_held, "invariant: max_held_messages holds");
        let barriers = self.held.iter().map(|(barrier, _)| *barrier);
        assert!(
            barriers.clone().zip(barriers.skip(1)).all(|(a, b)| a <= b),
            "invariant: held messages wait for writes in order"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::{MessageBody, Payload, SnapshotMeta};
    use crate::raft::Membership;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index: LogIndex(index), term: Term(term), payload: Payload::Noop }
    }

    fn message(to: u64) -> Message {
        let body = MessageBody::TimeoutNow;
        Message { from: NodeId(1), to: NodeId(to), term: Term(1), disk: DiskId::BOOTSTRAP, incarnation: 1, body }
    }

    fn log_of(entries: &[(u64, u64)]) -> RaftLog {
        let mut log = RaftLog::default();
        for &(index, term) in entries {
            log.push(entry(index, term));
        }
        log
    }

    fn write(entries: Vec<Entry>) -> PersistRequest {
        PersistRequest {
            id: PersistId(1),
            snapshot: None,
            discard_upto: None,
            truncate_from: None,
            entries,
            hard_state: HardState { term: Term(2), ..HardState::default() },
        }
    }

    #[test]
    fn a_message_waits_for_the_write_of_changes_made_before_it() {
        let mut durability = Durability::new(HardState::default(), 8);
        assert!(durability.hold_or_send(message(2), true).is_some(), "nothing is pending: it goes at once");
        durability.hard_state_changed();
        assert!(durability.hold_or_send(message(3), true).is_none(), "held until the term is durable");
        assert!(durability.hold_or_send(message(4), false).is_some(), "needs no durability: it goes at once");
        let mut log = RaftLog::default();
        let request = durability.flush(&log, HardState { term: Term(5), ..HardState::default() }).unwrap();
        assert_eq!(request.id, PersistId(1));
        assert!(durability.release().is_none(), "not acknowledged yet");
        assert!(durability.acknowledge(PersistId(1), &mut log));
        assert_eq!(durability.release().map(|message| message.to), Some(NodeId(3)));
        assert!(durability.release().is_none());
        assert_eq!(durability.durable_hard_state().term, Term(5));
        durability.check_invariants();
    }

    #[test]
    fn acknowledgements_of_writes_never_issued_or_already_acknowledged_are_ignored() {
        let mut durability = Durability::new(HardState::default(), 8);
        let mut log = RaftLog::default();
        assert!(!durability.acknowledge(PersistId(1), &mut log), "never issued");
        durability.hard_state_changed();
        durability.flush(&log, HardState::default()).unwrap();
        assert!(!durability.acknowledge(PersistId(2), &mut log), "not issued yet");
        assert!(durability.acknowledge(PersistId(1), &mut log));
        assert!(!durability.acknowledge(PersistId(1), &mut log), "already acknowledged");
        assert!(durability.flush(&log, HardState::default()).is_none(), "nothing changed since");
    }

    #[test]
    fn a_truncation_lowers_what_a_pending_write_makes_durable() {
        let mut durability = Durability::new(HardState::default(), 8);
        let mut log = log_of(&[(1, 1), (2, 1), (3, 1)]);
        durability.appended(LogIndex(1));
        let first = durability.flush(&log, HardState::default()).unwrap();
        assert_eq!(first.entries.len(), 3);
        log.truncate_from(LogIndex(2));
        durability.truncated(LogIndex(2));
        log.push(entry(2, 2));
        durability.appended(LogIndex(2));
        let second = durability.flush(&log, HardState::default()).unwrap();
        assert_eq!((second.truncate_from, second.entries), (Some(LogIndex(2)), vec![entry(2, 2)]));
        assert!(durability.acknowledge(first.id, &mut log));
        assert_eq!(log.persisted(), LogIndex(1), "entries 2 and 3 of the first write were truncated away");
        assert!(durability.acknowledge(second.id, &mut log));
        assert_eq!(log.persisted(), LogIndex(2));
    }

    #[test]
    fn held_messages_are_bounded_and_the_oldest_goes_first() {
        let mut durability = Durability::new(HardState::default(), 2);
        durability.hard_state_changed();
        for to in 2..6 {
            assert!(durability.hold_or_send(message(to), true).is_none());
        }
        assert_eq!(durability.held_count(), 2);
        durability.check_invariants();
        let mut log = RaftLog::default();
        durability.flush(&log, HardState::default()).unwrap();
        durability.acknowledge(PersistId(1), &mut log);
        let released: Vec<u64> = std::iter::from_fn(|| durability.release()).map(|message| message.to.0).collect();
        assert_eq!(released, vec![4, 5]);
    }

    #[test]
    fn apply_follows_the_field_order_and_keeps_the_log_dense() {
        let mut state = DurableState::default();
        state.apply(&write(vec![entry(1, 1), entry(2, 1), entry(3, 1)])).unwrap();
        let mut truncating = write(vec![entry(3, 2)]);
        truncating.truncate_from = Some(LogIndex(3));
        state.apply(&truncating).unwrap();
        assert_eq!(state.entries, vec![entry(1, 1), entry(2, 1), entry(3, 2)]);
        assert_eq!(state.hard_state.term, Term(2));
        let meta = SnapshotMeta { index: LogIndex(2), term: Term(1), membership: Membership::default() };
        let mut compacting = write(vec![entry(4, 2)]);
        compacting.snapshot = Some(Snapshot { meta, data: Vec::new() });
        compacting.discard_upto = Some(LogIndex(2));
        state.apply(&compacting).unwrap();
        assert_eq!(state.entries, vec![entry(3, 2), entry(4, 2)]);
        assert_eq!(state.next_index(), LogIndex(5));
    }

    #[test]
    fn apply_refuses_writes_no_correct_node_asks_for() {
        let mut state = DurableState::default();
        let hole = state.apply(&write(vec![entry(2, 1)]));
        assert_eq!(hole, Err(ApplyError::Hole { found: LogIndex(2), expected: LogIndex(1) }));
        let mut discard = write(Vec::new());
        discard.discard_upto = Some(LogIndex(1));
        let error = state.apply(&discard).unwrap_err();
        assert_eq!(error, ApplyError::DiscardPastSnapshot { upto: LogIndex(1), snapshot_end: LogIndex::ZERO });
        let mut truncate = write(Vec::new());
        truncate.truncate_from = Some(LogIndex(3));
        let error = state.apply(&truncate).unwrap_err();
        assert_eq!(error, ApplyError::TruncateOutsideLog { from: LogIndex(3), last: LogIndex::ZERO });
        assert!(error.to_string().contains("truncates from i3"), "{error}");
    }

    #[test]
    fn check_refuses_indexes_a_disk_cannot_hold() {
        let state = DurableState { entries: vec![entry(0, 0)], ..DurableState::default() };
        assert!(matches!(state.check(), Err(RestartError::SparseLog { position: 0, .. })), "no underflow");
        let past = MAX_LOG_INDEX.0 + 1;
        let state = DurableState { entries: vec![entry(past, 0)], ..DurableState::default() };
        assert_eq!(state.check(), Err(RestartError::IndexTooLarge(LogIndex(past))));
    }

    #[test]
    fn check_refuses_a_stored_log_with_a_hole_or_a_commit_past_its_end() {
        let mut state = DurableState { entries: vec![entry(1, 1), entry(3, 1)], ..DurableState::default() };
        state.hard_state.term = Term(1);
        assert!(matches!(state.check(), Err(RestartError::SparseLog { position: 1, .. })));
        state.entries.pop();
        state.hard_state.commit = LogIndex(2);
        assert!(matches!(state.check(), Err(RestartError::CommitPastLog { .. })));
        state.hard_state.commit = LogIndex(1);
        assert_eq!(state.check(), Ok(()));
    }
}
