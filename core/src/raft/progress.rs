//! The leader's view of each follower's replication progress.

use super::membership::DiskId;
use crate::types::{LogIndex, Time};
use std::collections::VecDeque;

/// How the leader is currently replicating to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
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
pub struct Progress {
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
    /// When the leader last heard from the follower (any message).
    pub last_heard: Option<Time>,
}

impl Progress {
    pub fn new(next_index: LogIndex) -> Progress {
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
            last_heard: None,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.next_index = self.match_index.next();
        self.reset_inflight();
    }

    pub fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.reset_inflight();
    }

    pub fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ReplicationState::Snapshot { index };
        self.snapshot_received = 0;
        self.reset_inflight();
    }

    fn reset_inflight(&mut self) {
        self.probe_sent = false;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// The follower answered from `disk`. A different disk than before means
    /// it lost its state: everything known about it is void.
    pub fn observe_disk(&mut self, disk: DiskId) {
        if self.disk.is_some_and(|known| known != disk) {
            self.match_index = LogIndex::ZERO;
            self.read_context_acked = 0;
            self.become_probe();
        }
        self.disk = Some(disk);
    }

    /// Records an acknowledged match. Returns false if it was stale.
    pub fn acknowledge(&mut self, match_index: LogIndex) -> bool {
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

    /// Are `count_limit` appends or `bytes_limit` bytes already in flight?
    pub fn inflight_full(&self, count_limit: usize, bytes_limit: usize) -> bool {
        self.inflight.len() >= count_limit || self.inflight_bytes >= bytes_limit
    }

    /// Records a sent append whose last entry is `last`, carrying `bytes` of
    /// payload.
    pub fn sent_entries(&mut self, last: LogIndex, bytes: usize) {
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
