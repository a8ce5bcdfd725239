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
    /// The cluster's first descriptors. Applies only to an empty meta range.
    Bootstrap(Vec<RangeDescriptor>),
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
}

impl MetaStore {
    /// The descriptors, in range id order.
    pub fn descriptors(&self) -> impl Iterator<Item = &RangeDescriptor> + '_ {
        self.descriptors.values()
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
            MetaCommand::Bootstrap(descriptors) => self.bootstrap(index, descriptors),
            MetaCommand::Record { range, as_of, voters, learners } => {
                self.record(index, range, as_of, &voters, &learners)
            }
        }
    }

    fn bootstrap(&mut self, index: LogIndex, descriptors: Vec<RangeDescriptor>) -> MetaOutcome {
        if !self.descriptors.is_empty() {
            return MetaOutcome::Unchanged;
        }
        if descriptors.len() > MAX_RANGES {
            return MetaOutcome::Rejected(format!("{} ranges, more than {MAX_RANGES}", descriptors.len()));
        }
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
