//! The simulated disk of one node: what is durable, and the writes the node
//! issued that are not yet synced. A crash loses every unsynced write; a wipe
//! loses everything.

use chorus_core::raft::{
    ApplyError, DiskId, DurableState, Entry, HardState, Membership, Payload, PersistId, PersistRequest, Snapshot,
};
use chorus_core::{LogIndex, NodeId, Term};
use std::collections::VecDeque;

/// One node's disk. The public fields are the durable (synced) state, what
/// a restart reads; queued writes reach them only when synced.
#[derive(Default)]
pub struct Disk {
    /// The durable term, vote, commit index and disk id.
    pub hard_state: HardState,
    /// The durable snapshot, if one was synced.
    pub snapshot: Option<Snapshot>,
    /// Stored entries, dense; they start at index 1 or within the snapshot.
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
    /// A write no correct node asks for (one that would leave a hole in the
    /// log, say) is an error: the node broke the durability protocol, and
    /// the disk keeps whatever part of the write came before the problem.
    pub fn sync_through(&mut self, id: PersistId) -> Result<bool, ApplyError> {
        let mut synced = false;
        while self.unsynced.front().is_some_and(|write| write.id <= id) {
            let write = self.unsynced.pop_front().expect("front exists");
            self.apply(&write)?;
            synced = true;
        }
        Ok(synced)
    }

    /// One write, by the core's one rule for applying writes
    /// ([`DurableState::apply`]).
    fn apply(&mut self, write: &PersistRequest) -> Result<(), ApplyError> {
        let mut state = DurableState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.take(),
            entries: std::mem::take(&mut self.entries),
        };
        let result = state.apply(write);
        DurableState { hard_state: self.hard_state, snapshot: self.snapshot, entries: self.entries } = state;
        result
    }

    /// The end of the durable log: what the node would campaign or vote with
    /// after a crash.
    pub fn last(&self) -> (Term, LogIndex) {
        match (self.entries.last(), &self.snapshot) {
            (Some(entry), _) => (entry.term, entry.index),
            (None, Some(snapshot)) => (snapshot.meta.term, snapshot.meta.index),
            (None, None) => (Term::ZERO, LogIndex::ZERO),
        }
    }

    /// The term the durable log holds at `index`, if it holds it (a snapshot
    /// covers every index up to its own).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if let Some(entry) = self.entries.iter().find(|entry| entry.index == index) {
            return Some(entry.term);
        }
        self.snapshot.as_ref().filter(|snapshot| snapshot.meta.index >= index).map(|snapshot| snapshot.meta.term)
    }

    /// The configuration a restart from this disk would be in: the latest
    /// stored configuration entry, else the snapshot's, else the bootstrap
    /// one (for a bootstrap disk) or none.
    pub fn membership(&self, bootstrap_voters: &[NodeId]) -> Membership {
        let latest = self.entries.iter().rev().find_map(|entry| match &entry.payload {
            Payload::Config(membership) => Some(membership.clone()),
            _ => None,
        });
        match (latest, &self.snapshot) {
            (Some(membership), _) => membership,
            (None, Some(snapshot)) => snapshot.meta.membership.clone(),
            (None, None) if self.hard_state.disk == DiskId::BOOTSTRAP => Membership::bootstrap(bootstrap_voters),
            (None, None) => Membership::default(),
        }
    }

    /// What a restart reads back.
    pub fn durable_state(&self) -> DurableState {
        DurableState { hard_state: self.hard_state, snapshot: self.snapshot.clone(), entries: self.entries.clone() }
    }

    /// The process died: unsynced writes are gone.
    pub fn crash(&mut self, now_us: u64) {
        self.unsynced.clear();
        self.last_completion_us = now_us;
    }

    /// The disk is lost (replaced by an empty one).
    pub fn wipe(&mut self, now_us: u64) {
        *self = Disk { last_completion_us: now_us, ..Disk::default() };
    }
}
