//! The simulated disk of one node: what is durable, and the writes the node
//! issued that are not yet synced. A crash loses every unsynced write.

use chorus_core::raft::{Entry, HardState, PersistId, PersistRequest};
use std::collections::VecDeque;

#[derive(Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    unsynced: VecDeque<PersistRequest>,
    /// Writes complete in order: no write completes before this time.
    last_completion_us: u64,
}

impl Disk {
    /// Queues a write; returns the true time at which it is synced.
    pub fn submit(&mut self, write: PersistRequest, now_us: u64, latency_us: u64) -> u64 {
        self.unsynced.push_back(write);
        self.last_completion_us = self.last_completion_us.max(now_us + latency_us);
        self.last_completion_us
    }

    /// Syncs every queued write up to `id`. Returns false if there was none.
    pub fn sync_through(&mut self, id: PersistId) -> bool {
        let mut synced = false;
        while self.unsynced.front().is_some_and(|write| write.id <= id) {
            let write = self.unsynced.pop_front().expect("front exists");
            if let Some(from) = write.truncate_from {
                self.entries.truncate(from.0.saturating_sub(1) as usize);
            }
            for entry in write.entries {
                assert_eq!(
                    entry.index.0,
                    self.entries.len() as u64 + 1,
                    "the node asked for a write that leaves a hole in its log"
                );
                self.entries.push(entry);
            }
            self.hard_state = write.hard_state;
            synced = true;
        }
        synced
    }

    /// The process died: unsynced writes are gone.
    pub fn crash(&mut self, now_us: u64) {
        self.unsynced.clear();
        self.last_completion_us = now_us;
    }
}
