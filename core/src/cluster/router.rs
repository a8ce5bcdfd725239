//! Key → range → leader: the descriptors a node (or a client) routes by, the
//! leaders it believes in, and when that knowledge is dropped.

use crate::partition::{KeyMode, RangeDescriptor, RangeId, RangeTable};
use crate::types::{LogIndex, NodeId, Term};
use std::collections::BTreeMap;

/// How keys map to ranges in a cluster: over the BLAKE3 hash of the key, so
/// that sequential keys spread over every range.
pub const CLUSTER_KEY_MODE: KeyMode = KeyMode::Hashed;

/// A routing cache: descriptors at a meta version, and leader hints.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    version: LogIndex,
    table: RangeTable,
    /// Per range, the leader believed in and the term it was seen leading
    /// in: a hint is replaced only by one of the same or a later term.
    leaders: BTreeMap<RangeId, (NodeId, Term)>,
    /// Per range, the range's commit index its replicas were recorded as of.
    recorded: BTreeMap<RangeId, LogIndex>,
}

impl RouteTable {
    /// The meta version of the descriptors held (0: the bootstrap layout,
    /// or nothing).
    pub fn version(&self) -> LogIndex {
        self.version
    }

    /// Whether any descriptor is known.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The descriptors.
    pub fn descriptors(&self) -> impl Iterator<Item = &RangeDescriptor> + '_ {
        self.table.iter()
    }

    /// One descriptor.
    pub fn descriptor(&self, range: RangeId) -> Option<&RangeDescriptor> {
        self.table.get(range)
    }

    /// The range that holds `key`.
    pub fn lookup(&self, key: &[u8]) -> Option<&RangeDescriptor> {
        self.table.lookup_key(CLUSTER_KEY_MODE, key)
    }

    /// The range's commit index its descriptor's replicas were recorded as
    /// of: a replica whose own configuration is not newer and that the
    /// descriptor does not list was removed.
    pub fn recorded_as_of(&self, range: RangeId) -> LogIndex {
        self.recorded.get(&range).copied().unwrap_or_default()
    }

    /// Every range's recorded commit index that is not zero.
    pub fn recorded(&self) -> impl Iterator<Item = (RangeId, LogIndex)> + '_ {
        self.recorded.iter().map(|(&range, &index)| (range, index))
    }

    /// The leader believed to lead `range`.
    pub fn leader(&self, range: RangeId) -> Option<NodeId> {
        self.leaders.get(&range).map(|&(node, _)| node)
    }

    /// Every leader hint, by range, with its term.
    pub fn leaders(&self) -> impl Iterator<Item = (RangeId, NodeId, Term)> + '_ {
        self.leaders.iter().map(|(&range, &(node, term))| (range, node, term))
    }

    /// Starts from the bootstrap layout, unless something newer is known.
    pub fn bootstrap(&mut self, descriptors: &[RangeDescriptor]) {
        if self.table.is_empty() {
            if let Ok(table) = RangeTable::from_descriptors(descriptors.iter().cloned()) {
                self.table = table;
            }
        }
    }

    /// Installs descriptors at `version` if newer than what is held (or the
    /// same version and nothing is held); leader hints are merged when the
    /// version is not older. Returns whether the descriptors changed; a set
    /// of descriptors that does not form a table is refused.
    pub fn install(
        &mut self,
        version: LogIndex,
        descriptors: Vec<RangeDescriptor>,
        leaders: Vec<(RangeId, NodeId, Term)>,
        recorded: Vec<(RangeId, LogIndex)>,
    ) -> bool {
        if version < self.version {
            return false;
        }
        let changed = version > self.version || self.table.is_empty();
        if changed {
            let Ok(table) = RangeTable::from_descriptors(descriptors) else { return false };
            self.table = table;
            self.version = version;
            self.recorded = recorded.into_iter().collect();
            self.leaders.retain(|range, _| self.table.get(*range).is_some());
        }
        for (range, leader, term) in leaders {
            if self.table.get(range).is_some_and(|d| d.has_replica(leader)) {
                self.note_leader(range, leader, term);
            }
        }
        changed
    }

    /// Believes `leader` led `range` in `term` (from a report, an answer or
    /// a replica), unless a hint of a later term is held.
    pub fn note_leader(&mut self, range: RangeId, leader: NodeId, term: Term) {
        if self.leaders.get(&range).is_none_or(|&(_, known)| known <= term) {
            self.leaders.insert(range, (leader, term));
        }
    }

    /// Forgets the leader hint of `range` (it did not answer, or said it
    /// does not lead).
    pub fn forget(&mut self, range: RangeId) {
        self.leaders.remove(&range);
    }

    /// Forgets every leader on `node` (SWIM declared it failed). Returns
    /// how many hints were dropped.
    pub fn forget_leader(&mut self, node: NodeId) -> usize {
        let before = self.leaders.len();
        self.leaders.retain(|_, (leader, _)| *leader != node);
        before - self.leaders.len()
    }
}
