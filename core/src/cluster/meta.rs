//! The meta range's state machine: the committed range descriptors.
//!
//! Every change of a descriptor is a [`MetaCommand`] committed through the
//! meta range's own Raft group, so the descriptors a new planner starts
//! from are the ones a quorum of meta voters agreed on. A range's replica
//! set is decided by the range's own Raft group (its joint consensus); the
//! meta range *records* it, keyed by the range's commit index at the time
//! (`as_of`), so a late or repeated record can never move a descriptor
//! backwards.

use crate::partition::{RangeDescriptor, RangeId, RangeTable, ReplicaKind};
use crate::state_machine::{RestoreError, StateMachine};
use crate::types::{LogIndex, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The range id the meta range itself uses. Never the id of a user range.
pub const META_RANGE: RangeId = RangeId(0);

/// Largest number of descriptors the meta range holds.
pub const MAX_RANGES: usize = 1 << 20;

/// A change to the descriptors, as committed in the meta range's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Part `part` of `parts` of the cluster's first descriptors (a large
    /// layout does not fit one command). Applies only while the meta range
    /// holds no descriptors; a part already held is ignored. When the last
    /// missing part arrives, the parts together must form a table that
    /// covers the keyspace, and become the descriptors.
    Bootstrap {
        /// Which part, from 0.
        part: u32,
        /// How many parts the layout has.
        parts: u32,
        /// This part's descriptors.
        ranges: Vec<RangeDescriptor>,
    },
    /// A range's committed (non-joint) configuration as of its commit index
    /// `as_of`. Applies when `as_of` is later than the last record of the
    /// range and the replicas differ from the descriptor's; the descriptor's
    /// generation then grows by one.
    Record {
        /// The range.
        range: RangeId,
        /// The range's commit index when the configuration was read.
        as_of: LogIndex,
        /// Its voters.
        voters: Vec<NodeId>,
        /// Its learners.
        learners: Vec<NodeId>,
    },
}

/// What applying a [`MetaCommand`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOutcome {
    /// The descriptors changed; these are the new ones.
    Changed(Vec<RangeDescriptor>),
    /// Nothing changed (an older or identical record, a second bootstrap).
    Unchanged,
    /// The command was malformed or named an unknown range.
    Rejected(String),
}

/// The meta range's state: every range's descriptor, and the commit index
/// each was last recorded at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaStore {
    descriptors: BTreeMap<RangeId, RangeDescriptor>,
    recorded_as_of: BTreeMap<RangeId, LogIndex>,
    /// The meta log index of the last command that changed a descriptor.
    version: LogIndex,
    /// Bootstrap parts received while the layout is incomplete.
    bootstrap_parts: BTreeMap<u32, Vec<RangeDescriptor>>,
    /// How many parts the layout being received has (0: none received).
    bootstrap_total: u32,
}

impl MetaStore {
    /// The descriptors, in range id order.
    pub fn descriptors(&self) -> impl Iterator<Item = &RangeDescriptor> + '_ {
        self.descriptors.values()
    }

    /// The bootstrap parts (of `parts`) not yet committed, in order; none
    /// once the layout is complete.
    pub fn missing_bootstrap_parts(&self, parts: u32) -> impl Iterator<Item = u32> + '_ {
        let complete = !self.descriptors.is_empty();
        (0..parts).filter(move |part| !complete && !self.bootstrap_parts.contains_key(part))
    }

    /// One range's descriptor.
    pub fn descriptor(&self, range: RangeId) -> Option<&RangeDescriptor> {
        self.descriptors.get(&range)
    }

    /// The meta log index of the last change: grows with every change, so
    /// two nodes compare their copies by it.
    pub fn version(&self) -> LogIndex {
        self.version
    }

    /// The range's commit index its descriptor's replicas were recorded as
    /// of (zero for the bootstrap layout).
    pub fn recorded_as_of(&self, range: RangeId) -> LogIndex {
        self.recorded_as_of.get(&range).copied().unwrap_or_default()
    }

    /// Every range's [`recorded_as_of`](Self::recorded_as_of) that is not zero.
    pub fn recorded(&self) -> impl Iterator<Item = (RangeId, LogIndex)> + '_ {
        self.recorded_as_of.iter().map(|(&range, &index)| (range, index))
    }

    /// The descriptors as a routing table.
    pub fn table(&self) -> RangeTable {
        RangeTable::from_descriptors(self.descriptors.values().cloned())
            .expect("the meta range holds only descriptors that form a table")
    }

    /// Applies `command` committed at `index`.
    pub fn execute(&mut self, index: LogIndex, command: MetaCommand) -> MetaOutcome {
        match command {
            MetaCommand::Bootstrap { part, parts, ranges } => self.bootstrap(index, part, parts, ranges),
            MetaCommand::Record { range, as_of, voters, learners } => {
                self.record(index, range, as_of, &voters, &learners)
            }
        }
    }

    fn bootstrap(&mut self, index: LogIndex, part: u32, parts: u32, ranges: Vec<RangeDescriptor>) -> MetaOutcome {
        if !self.descriptors.is_empty() || self.bootstrap_parts.contains_key(&part) {
            return MetaOutcome::Unchanged;
        }
        if parts == 0 || part >= parts || parts as usize > MAX_RANGES {
            return MetaOutcome::Rejected(format!("bootstrap part {part} of {parts}"));
        }
        if self.bootstrap_total != 0 && self.bootstrap_total != parts {
            return MetaOutcome::Rejected(format!(
                "bootstrap part {part} of {parts}, but earlier parts said {}",
                self.bootstrap_total
            ));
        }
        let held: usize = self.bootstrap_parts.values().map(Vec::len).sum();
        if held + ranges.len() > MAX_RANGES {
            return MetaOutcome::Rejected(format!("{} ranges, more than {MAX_RANGES}", held + ranges.len()));
        }
        self.bootstrap_total = parts;
        self.bootstrap_parts.insert(part, ranges);
        if self.bootstrap_parts.len() < parts as usize {
            return MetaOutcome::Unchanged;
        }
        let descriptors: Vec<RangeDescriptor> =
            std::mem::take(&mut self.bootstrap_parts).into_values().flatten().collect();
        self.bootstrap_total = 0;
        if descriptors.iter().any(|d| d.id == META_RANGE) {
            return MetaOutcome::Rejected(format!("{META_RANGE} is the meta range's own id"));
        }
        if let Err(error) = RangeTable::from_descriptors(descriptors.iter().cloned())
            .map_err(|e| e.to_string())
            .and_then(|table| table.check_cover().map_err(|e| e.to_string()))
        {
            return MetaOutcome::Rejected(format!("bootstrap descriptors: {error}"));
        }
        self.descriptors = descriptors.iter().map(|d| (d.id, d.clone())).collect();
        self.version = index;
        MetaOutcome::Changed(descriptors)
    }

    fn record(
        &mut self,
        index: LogIndex,
        range: RangeId,
        as_of: LogIndex,
        voters: &[NodeId],
        learners: &[NodeId],
    ) -> MetaOutcome {
        let Some(descriptor) = self.descriptors.get(&range) else {
            return MetaOutcome::Rejected(format!("no range {range}"));
        };
        if self.recorded_as_of.get(&range).is_some_and(|&last| last >= as_of) {
            return MetaOutcome::Unchanged;
        }
        if voters.is_empty() || voters.iter().any(|v| learners.contains(v)) {
            return MetaOutcome::Rejected(format!("{range}: voters {voters:?} and learners {learners:?}"));
        }
        self.recorded_as_of.insert(range, as_of);
        let same = descriptor.voters().eq(sorted(voters)) && descriptor.learners().eq(sorted(learners));
        if same {
            return MetaOutcome::Unchanged;
        }
        let mut next = descriptor.clone();
        next.set_replicas(
            voters.iter().map(|&v| (v, ReplicaKind::Voter)).chain(learners.iter().map(|&l| (l, ReplicaKind::Learner))),
        );
        self.descriptors.insert(range, next.clone());
        self.version = index;
        MetaOutcome::Changed(vec![next])
    }
}

fn sorted(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes
}

impl StateMachine for MetaStore {
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Vec<u8> {
        let outcome = match decode_command(command) {
            Ok(command) => self.execute(index, command),
            Err(error) => MetaOutcome::Rejected(error),
        };
        crate::wire::encode_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(&outcome, usize::MAX)
            .expect("a meta outcome fits the wire limit")
    }

    fn query(&self, _query: &[u8]) -> Vec<u8> {
        Vec::new()
    }

    fn snapshot(&self) -> Vec<u8> {
        crate::wire::encode_bounded::<_, { usize::MAX }>(self, usize::MAX).expect("a meta store always encodes")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let store: MetaStore = crate::wire::decode_bounded::<_, { usize::MAX }>(snapshot, usize::MAX)
            .map_err(|error| RestoreError(format!("meta snapshot: {error}")))?;
        *self = store;
        Ok(())
    }
}

/// The encoded size of one descriptor (to cut a bootstrap layout into parts).
pub(super) fn encoded_len(descriptor: &RangeDescriptor) -> usize {
    crate::wire::encode_bounded::<_, { usize::MAX }>(descriptor, usize::MAX).map_or(usize::MAX, |bytes| bytes.len())
}

/// Encodes a meta command for the meta range's log.
pub fn encode_command(command: &MetaCommand) -> Vec<u8> {
    crate::wire::encode_bounded::<_, { usize::MAX }>(command, usize::MAX).expect("a meta command always encodes")
}

/// Decodes a meta command; an error names what is wrong.
pub fn decode_command(bytes: &[u8]) -> Result<MetaCommand, String> {
    crate::wire::decode_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(bytes, usize::MAX)
        .map_err(|error| format!("meta command: {error}"))
}

/// Decodes what [`MetaStore`] answered a command.
pub fn decode_outcome(bytes: &[u8]) -> Result<MetaOutcome, String> {
    crate::wire::decode_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(bytes, usize::MAX)
        .map_err(|error| format!("meta outcome: {error}"))
}
