//! The leader's view of each follower's replication progress.

use crate::types::LogIndex;
use std::collections::VecDeque;

/// How the leader is currently replicating to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// The match point is unknown: send one append at a time and wait.
    Probe,
    /// The follower is known to match: pipeline appends optimistically.
    Replicate,
}

/// Progress of one follower, kept by the leader.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated (and durable) on the follower.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
    pub state: ReplicationState,
    /// In [`ReplicationState::Probe`], an append is outstanding; wait for its
    /// answer or the next heartbeat before probing again.
    pub probe_sent: bool,
    /// Last index carried by each in-flight append (Replicate state only).
    inflight: VecDeque<LogIndex>,
    /// Heard from since the last check-quorum round.
    pub recently_active: bool,
    /// Highest heartbeat round (`read_context`) the follower has answered.
    pub read_context_acked: u64,
}

impl Progress {
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex::ZERO,
            next_index,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recently_active: false,
            read_context_acked: 0,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflight.clear();
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
        while self.inflight.front().is_some_and(|last| *last <= self.match_index) {
            self.inflight.pop_front();
        }
        true
    }

    pub fn inflight_full(&self, limit: usize) -> bool {
        self.inflight.len() >= limit
    }

    /// Records a sent append whose last entry is `last`.
    pub fn sent_entries(&mut self, last: LogIndex) {
        match self.state {
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Replicate => {
                self.next_index = last.next();
                self.inflight.push_back(last);
            }
        }
    }
}
