//! What a cluster node reports about itself: members, the active node, the
//! ranges it hosts and how healthy their replication is.

use super::meta::META_RANGE;
use super::node::ClusterNode;
use crate::partition::RangeId;
use crate::raft::Role;
use crate::state_machine::StateMachine;
use crate::swim::MemberState;
use crate::types::{LogIndex, NodeId, Term};

/// One hosted range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeStatus {
    /// The range ([`META_RANGE`] for the meta range).
    pub range: RangeId,
    /// This replica's role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it follows.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: LogIndex,
    /// Its applied index.
    pub applied: LogIndex,
    /// On a leader: the largest number of entries a voter lags behind the
    /// commit index (replication lag).
    pub replication_lag: Option<u64>,
    /// On a leader: voters in the configuration in force.
    pub voters: usize,
    /// Quiesced: no timers, no heartbeats until something wakes it.
    pub quiesced: bool,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node.
    pub id: NodeId,
    /// Members SWIM knows (this node included) and their state.
    pub members: Vec<(NodeId, MemberState)>,
    /// The active node (meta leader) as this node believes.
    pub active: Option<NodeId>,
    /// Primary and secondaries in cluster-mode's terms: the active node and
    /// every other live member.
    pub secondaries: Vec<NodeId>,
    /// Is this node the active one?
    pub is_active: bool,
    /// The meta version of the descriptors it routes by.
    pub descriptors_version: LogIndex,
    /// The ranges it hosts (the meta range first).
    pub ranges: Vec<RangeStatus>,
    /// Ranges it leads with fewer live voters than the replication factor.
    pub under_replicated: usize,
    /// Whether every range it leads has all its voters caught up within
    /// one append.
    pub replication_healthy: bool,
    /// Messages dropped because the addressee's address was unknown.
    pub unaddressable_drops: u64,
    /// Hosted ranges (the meta range included) that are quiesced.
    pub quiesced: usize,
    /// Quiesced ranges waiting for their turn to wake.
    pub waking: usize,
}

impl<S: StateMachine + Default> ClusterNode<S> {
    /// This node's status.
    pub fn status(&self) -> ClusterStatus {
        let mut members: Vec<(NodeId, MemberState)> = vec![(self.config.id, MemberState::Alive)];
        members.extend(self.swim.members().filter(|m| m.id != self.config.id).map(|m| (m.id, m.state)));
        members.sort();
        let active = self.active_node();
        let secondaries = members
            .iter()
            .filter(|(id, s)| *s == MemberState::Alive && Some(*id) != active)
            .map(|(id, _)| *id)
            .collect();
        let mut ranges = Vec::new();
        if let Some(meta) = &self.meta {
            ranges.push(range_status(META_RANGE, meta));
        }
        ranges.extend(self.ranges.iter().map(|(&range, hosted)| range_status(range, &hosted.raft)));
        let alive =
            |id: &NodeId| members.iter().any(|(m, s)| m == id && *s != MemberState::Failed && *s != MemberState::Left);
        let rf = self.config.planner.replication_factor;
        let under_replicated = self
            .ranges
            .values()
            .filter(|h| h.raft.role() == Role::Leader)
            .filter(|h| h.raft.committed_membership().voters.keys().filter(|v| alive(v)).count() < rf)
            .count();
        let replication_healthy = ranges.iter().all(|r| r.replication_lag.is_none_or(|lag| lag <= 1));
        let quiesced = ranges.iter().filter(|r| r.quiesced).count();
        ClusterStatus {
            id: self.config.id,
            members,
            active,
            secondaries,
            is_active: self.control.is_some(),
            descriptors_version: self.table.version(),
            ranges,
            under_replicated,
            replication_healthy,
            unaddressable_drops: self.unaddressable,
            quiesced,
            waking: self.wakes.waiting(),
        }
    }
}

fn range_status<T: StateMachine>(range: RangeId, raft: &crate::raft::RaftNode<T>) -> RangeStatus {
    let leading = raft.role() == Role::Leader;
    let commit = raft.commit_index();
    let lag = leading.then(|| {
        raft.membership()
            .voters
            .keys()
            .filter(|&&v| v != raft.id())
            .map(|&v| commit.0.saturating_sub(raft.match_index(v).map_or(0, |m| m.0)))
            .max()
            .unwrap_or(0)
    });
    RangeStatus {
        range,
        role: raft.role(),
        term: raft.term(),
        leader: raft.leader(),
        commit,
        applied: raft.applied_index(),
        replication_lag: lag,
        voters: raft.membership().voters.len(),
        quiesced: raft.is_quiesced(),
    }
}
