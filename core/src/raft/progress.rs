//! The leader's view of each follower's replication progress.

use super::membership::DiskId;
use crate::types::{LogIndex, Time};
use std::collections::VecDeque;

/// How the leader is currently replicating to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReplicationState {
    /// The match point is unknown: send one append at a time and wait.
    Probe,
    /// The follower is known to match: pipeline appends optimistically.
    Replicate,
    /// The follower needs entries the leader compacted: send it the snapshot
    /// ending at `index`, one chunk at a time.
    Snapshot { index: LogIndex },
}

/// Progress of one follower, kept by the leader.
#[derive(Clone, Debug)]
pub(super) struct Progress {
    /// Highest index known to be replicated (and durable) on the follower.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
    pub state: ReplicationState,
    /// In [`ReplicationState::Probe`], an append is outstanding; in
    /// [`ReplicationState::Snapshot`], a chunk is. Wait for its answer or the
    /// next heartbeat answer before sending another.
    pub probe_sent: bool,
    /// Last index and payload bytes of each in-flight append (Replicate only).
    inflight: VecDeque<(LogIndex, usize)>,
    inflight_bytes: usize,
    /// Snapshot bytes the follower confirmed holding (Snapshot state only).
    pub snapshot_received: u64,
    /// Heard from since the last check-quorum round.
    pub recently_active: bool,
    /// Highest heartbeat round (`read_context`) the follower has answered.
    pub read_context_acked: u64,
    /// The disk the follower last answered from; its answers count toward a
    /// quorum only if the configuration records this disk for it.
    pub disk: Option<DiskId>,
    /// The latest life of that disk heard from ([`HardState::incarnation`](super::HardState::incarnation)).
    pub incarnation: u64,
    /// The latest life of that disk that acknowledged `match_index`. A
    /// later life rejecting an append at or before `match_index` proves the
    /// disk lost acknowledged entries (see [`Progress::forget_match`]).
    pub match_incarnation: u64,
    /// When the leader last heard from the follower (any message).
    pub last_heard: Option<Time>,
    /// The highest commit index this leader has told the follower (capped,
    /// as the follower caps it, at what the message matched). The follower
    /// may know less if a message was lost; the next heartbeat repairs that.
    pub commit_sent: LogIndex,
    /// The highest index where a proposal the follower forwarded was placed:
    /// its client is answered there once the follower learns it committed.
    pub commit_wanted: LogIndex,
}

impl Progress {
    pub(super) fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex::ZERO,
            next_index,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            snapshot_received: 0,
            recently_active: false,
            read_context_acked: 0,
            disk: None,
            incarnation: 0,
            match_incarnation: 0,
            last_heard: None,
            commit_sent: LogIndex::ZERO,
            commit_wanted: LogIndex::ZERO,
        }
    }

    /// Replicating with nothing in flight (quiescence needs it).
    pub(super) fn is_idle(&self) -> bool {
        self.state == ReplicationState::Replicate && self.inflight.is_empty() && !self.probe_sent
    }

    pub(super) fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.next_index = self.match_index.next();
        self.reset_inflight();
    }

    pub(super) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.reset_inflight();
    }

    pub(super) fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ReplicationState::Snapshot { index };
        self.snapshot_received = 0;
        self.reset_inflight();
    }

    fn reset_inflight(&mut self) {
        self.probe_sent = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// The follower answered from life `incarnation` of `disk`. A different
    /// disk than before means it lost its state: everything known about it
    /// is void. A later life of the same disk means it restarted: appends in
    /// flight to its earlier life are lost, so probe again from the match
    /// point (which also shows at once whether the disk still holds what it
    /// acknowledged). Returns whether the follower restarted.
    pub(super) fn observe_disk(&mut self, disk: DiskId, incarnation: u64) -> bool {
        if self.disk.is_some_and(|known| known != disk) {
            self.match_index = LogIndex::ZERO;
            self.read_context_acked = 0;
            self.incarnation = 0;
            self.match_incarnation = 0;
            self.become_probe();
        }
        let restarted = self.disk == Some(disk) && self.incarnation != 0 && incarnation > self.incarnation;
        self.disk = Some(disk);
        self.incarnation = self.incarnation.max(incarnation);
        if restarted {
            match self.state {
                ReplicationState::Replicate => self.become_probe(),
                ReplicationState::Probe => self.probe_sent = false,
                ReplicationState::Snapshot { .. } => {}
            }
        }
        restarted
    }

    /// Life `incarnation` of the follower's disk rejected an append at
    /// `rejected_prev_index`. Does that prove it lost entries it had
    /// acknowledged? Within one life an acknowledged entry stays (it was
    /// durable, and only a leader of a later term truncates), so a rejection
    /// at or before the match point is an answer to an older append,
    /// reordered. From a later life than the acknowledgement's, it can only
    /// mean the disk no longer holds what it acknowledged.
    pub(super) fn proves_lost_entries(&self, rejected_prev_index: LogIndex, incarnation: u64) -> bool {
        rejected_prev_index <= self.match_index
            && self.match_index != LogIndex::ZERO
            && incarnation > self.match_incarnation
    }

    /// The follower lost what it acknowledged: forget the match and probe
    /// again.
    pub(super) fn forget_match(&mut self, incarnation: u64) {
        self.match_index = LogIndex::ZERO;
        self.match_incarnation = incarnation;
        self.become_probe();
    }

    /// Records a match acknowledged by life `incarnation` of the follower's
    /// disk. Returns false if it was stale.
    pub(super) fn acknowledge(&mut self, match_index: LogIndex, incarnation: u64) -> bool {
        if match_index >= self.match_index {
            self.match_incarnation = self.match_incarnation.max(incarnation);
        }
        if match_index <= self.match_index && self.match_index != LogIndex::ZERO {
            // A duplicate or reordered answer still proves the follower is
            // alive, but it moves nothing.
            self.probe_sent = false;
            return false;
        }
        self.match_index = self.match_index.max(match_index);
        self.next_index = self.next_index.max(self.match_index.next());
        self.probe_sent = false;
        while self.inflight.front().is_some_and(|(last, _)| *last <= self.match_index) {
            let (_, bytes) = self.inflight.pop_front().expect("front exists");
            self.inflight_bytes -= bytes;
        }
        true
    }

    /// The follower is told the commit index `commit`, in a message that
    /// matched its log up to `matched`.
    pub(super) fn told_commit(&mut self, commit: LogIndex, matched: LogIndex) {
        self.commit_sent = self.commit_sent.max(commit.min(matched));
    }

    /// Would telling the follower the commit index `commit` now let a client
    /// there be answered? (Otherwise it can wait for the next append or
    /// heartbeat.)
    pub(super) fn awaits_commit(&self, commit: LogIndex) -> bool {
        commit.min(self.match_index).min(self.commit_wanted) > self.commit_sent
    }

    /// Are `count_limit` appends or `bytes_limit` bytes already in flight?
    pub(super) fn inflight_full(&self, count_limit: usize, bytes_limit: usize) -> bool {
        self.inflight.len() >= count_limit || self.inflight_bytes >= bytes_limit
    }

    /// Records a sent append whose last entry is `last`, carrying `bytes` of
    /// payload.
    pub(super) fn sent_entries(&mut self, last: LogIndex, bytes: usize) {
        match self.state {
            ReplicationState::Probe | ReplicationState::Snapshot { .. } => self.probe_sent = true,
            ReplicationState::Replicate => {
                self.next_index = last.next();
                self.inflight.push_back((last, bytes));
                self.inflight_bytes += bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_later_life_rejecting_below_the_match_proves_lost_entries() {
        let mut progress = Progress::new(LogIndex(1));
        progress.observe_disk(DiskId(5), 2);
        assert!(progress.acknowledge(LogIndex(10), 2));
        // Life 2 rejecting at 7: an answer to an older append, reordered.
        assert!(!progress.proves_lost_entries(LogIndex(7), 2));
        // Beyond the match point: an ordinary conflict.
        assert!(!progress.proves_lost_entries(LogIndex(11), 3));
        // Life 3 rejecting at 7: the disk lost entries 7..=10.
        assert!(progress.proves_lost_entries(LogIndex(7), 3));
        progress.forget_match(3);
        assert_eq!(progress.match_index, LogIndex::ZERO);
        assert_eq!(progress.state, ReplicationState::Probe);
        assert!(!progress.proves_lost_entries(LogIndex(7), 3));
    }

    #[test]
    fn a_restarted_follower_is_probed_again_from_its_match_point() {
        let mut progress = Progress::new(LogIndex(1));
        assert!(!progress.observe_disk(DiskId(5), 1), "the first answer is no restart");
        progress.acknowledge(LogIndex(10), 1);
        progress.become_replicate();
        progress.sent_entries(LogIndex(12), 20);
        assert!(!progress.observe_disk(DiskId(5), 1));
        assert!(progress.observe_disk(DiskId(5), 2));
        assert_eq!(
            (progress.state, progress.next_index, progress.probe_sent),
            (ReplicationState::Probe, LogIndex(11), false)
        );
        assert!(!progress.observe_disk(DiskId(5), 1), "a late answer from the earlier life changes nothing");
    }

    #[test]
    fn a_new_disk_voids_what_the_old_one_acknowledged() {
        let mut progress = Progress::new(LogIndex(1));
        progress.observe_disk(DiskId(5), 4);
        progress.acknowledge(LogIndex(10), 4);
        assert!(!progress.observe_disk(DiskId(6), 1), "a new disk is not a restart");
        assert_eq!(progress.match_index, LogIndex::ZERO);
        assert_eq!((progress.incarnation, progress.match_incarnation), (1, 0));
    }
}
