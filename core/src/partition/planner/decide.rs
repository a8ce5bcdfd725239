//! What one range needs next: the planner's per-range decision.

use super::*;

/// The planner's borrowed view for deciding one range's replica plan.
pub(super) struct Decider<'a> {
    pub(super) config: &'a PlannerConfig,
    pub(super) alloc: Allocator<'a>,
    pub(super) nodes: &'a BTreeMap<NodeId, NodeInfo>,
    pub(super) recent: &'a BTreeMap<(RangeId, NodeId), (bool, Time)>,
    pub(super) now: Time,
    /// The ring, under [`Placement::Ring`].
    pub(super) ring: Option<&'a RingPlacement>,
}

impl Decider<'_> {
    /// What `range` needs, most urgent first: finish a half-done move,
    /// drop an extra voter, repair, rebalance replicas, balance leaders.
    pub(super) fn decide(&self, state: &RangeState, rng: &mut ChaCha8Rng) -> Option<(PlanKind, Reason)> {
        let range = &state.descriptor;
        let voters: Vec<NodeId> = range.voters().collect();
        let rf = self.config.replication_factor;
        if let Some(learner) = range.learners().next() {
            let usable = self.nodes.get(&learner).is_some_and(NodeInfo::can_take_replicas);
            if usable && voters.len() < rf {
                return Some((
                    PlanKind::Move { add: Some(learner), remove: None, steps: vec![Step::Promote] },
                    Reason::Cleanup,
                ));
            }
            return Some((PlanKind::Single(OpKind::Remove(learner)), Reason::Cleanup));
        }
        if voters.len() > rf {
            // Not a voter this planner added within the thrash window, if
            // another can go.
            let fresh = |v: &NodeId| self.recently(range.id, *v, true);
            let candidates: Vec<NodeId> = voters.iter().copied().filter(|v| !fresh(v)).collect();
            let candidates = if candidates.is_empty() { voters.clone() } else { candidates };
            // Under the ring, a voter that is not a target goes first.
            let targets = self.targets(range);
            let off_ring: Vec<NodeId> = candidates.iter().copied().filter(|v| !targets.contains(v)).collect();
            let candidates = if self.ring.is_none() || off_ring.is_empty() { candidates } else { off_ring };
            let victim = self.alloc.choose_remove(range, None, candidates)?;
            return remove_is_safe(self.nodes, range, victim)
                .then_some((PlanKind::Single(OpKind::Remove(victim)), Reason::Cleanup));
        }
        let replaced = voters.iter().copied().find(|&v| self.alloc.must_replace(v));
        if voters.len() < rf || replaced.is_some() {
            return self.repair(range, &voters, replaced, rng);
        }
        let steps = || vec![Step::AddLearner, Step::Promote, Step::Remove];
        let unthrashed = |&(add, remove): &(NodeId, NodeId)| !self.thrash(range.id, add, remove);
        if self.ring.is_some() {
            if let Some((add, remove)) = self.ring_move(range, &voters).filter(unthrashed) {
                let kind = PlanKind::Move { add: Some(add), remove: Some(remove), steps: steps() };
                return Some((kind, Reason::Rebalance));
            }
        } else if let Some((add, remove)) = self.alloc.improve_diversity(range).filter(unthrashed) {
            return Some((PlanKind::Move { add: Some(add), remove: Some(remove), steps: steps() }, Reason::Diversity));
        }
        if let Some((add, remove)) =
            self.ring.is_none().then(|| self.alloc.rebalance(range)).flatten().filter(unthrashed)
        {
            return Some((PlanKind::Move { add: Some(add), remove: Some(remove), steps: steps() }, Reason::Rebalance));
        }
        if self.config.bug(Bug::LeadersNeverBalanced) {
            return None;
        }
        let leader = state.leader?;
        if let Some(to) = self.alloc.leader_transfer(range, leader) {
            return Some((PlanKind::Single(OpKind::TransferLeader(to)), Reason::LeaderBalance));
        }
        // The leader leads too many ranges and no voter of this one can take
        // it: move another voter's replica, if that evens replicas out too,
        // to a node that may then take the leadership.
        let (add, remove) = self.ring.is_none().then(|| self.alloc.unblock_leadership(range, leader)).flatten()?;
        unthrashed(&(add, remove))
            .then(|| (PlanKind::Move { add: Some(add), remove: Some(remove), steps: steps() }, Reason::LeaderBalance))
    }

    fn repair(
        &self,
        range: &RangeDescriptor,
        voters: &[NodeId],
        replaced: Option<NodeId>,
        rng: &mut ChaCha8Rng,
    ) -> Option<(PlanKind, Reason)> {
        let add = if self.config.bug(Bug::TwoReplicasOnOneNode) {
            voters.iter().copied().find(|v| self.nodes.get(v).is_some_and(NodeInfo::can_take_replicas))
        } else if self.ring.is_some() {
            self.ring_add(range)
        } else {
            self.alloc.choose_add(range, replaced, rng)
        }?;
        let steps = match replaced {
            Some(_) if self.config.bug(Bug::RemoveBeforeAdd) => vec![Step::Remove, Step::AddLearner, Step::Promote],
            Some(_) => vec![Step::AddLearner, Step::Promote, Step::Remove],
            None => vec![Step::AddLearner, Step::Promote],
        };
        Some((PlanKind::Move { add: Some(add), remove: replaced, steps }, Reason::Repair { replaces: replaced }))
    }

    /// The ring's targets for `range` (empty without a ring).
    fn targets(&self, range: &RangeDescriptor) -> Vec<NodeId> {
        let Some(ring) = self.ring else { return Vec::new() };
        let zone = |id: NodeId| self.nodes.get(&id).and_then(|n| n.locality.top());
        ring.targets(&range.span.start, self.config.replication_factor, zone)
    }

    /// The first ring target of `range` that holds no replica of it and
    /// can take one.
    fn ring_add(&self, range: &RangeDescriptor) -> Option<NodeId> {
        let usable = |id: &NodeId| self.nodes.get(id).is_some_and(NodeInfo::can_take_replicas);
        self.targets(range).into_iter().find(|id| !range.has_replica(*id) && usable(id))
    }

    /// A move of a voter of `range` that is not a ring target to a target
    /// that can take it: `(add, remove)`.
    fn ring_move(&self, range: &RangeDescriptor, voters: &[NodeId]) -> Option<(NodeId, NodeId)> {
        let targets = self.targets(range);
        // Only a voter on an up node that stays moves (as the allocator's
        // sources): a down one sends nothing and waits for its repair.
        let off_ring: Vec<NodeId> = voters
            .iter()
            .copied()
            .filter(|&v| !targets.contains(&v) && self.alloc.is_up(v) && !self.alloc.must_replace(v))
            .collect();
        if off_ring.is_empty() {
            return None;
        }
        let add = self.ring_add(range)?;
        let remove = self.alloc.choose_remove(range, Some(add), off_ring)?;
        Some((add, remove))
    }

    /// Whether adding `add` and removing `remove` would undo a move made
    /// within the thrash window (unless the node's state changed since).
    fn thrash(&self, range: RangeId, add: NodeId, remove: NodeId) -> bool {
        self.recently(range, add, false) || self.recently(range, remove, true)
    }

    /// Whether this planner added (`added`) or removed `node`'s replica of
    /// `range` within the thrash window, and the node's state has not
    /// changed since.
    fn recently(&self, range: RangeId, node: NodeId, added: bool) -> bool {
        self.recent.get(&(range, node)).is_some_and(|&(was_added, at)| {
            let changed_since = self.nodes.get(&node).is_some_and(|n| n.since > at);
            was_added == added && self.now.micros_since(at) < self.config.thrash_window_us && !changed_since
        })
    }
}

/// Whether removing `node`'s replica leaves `range` with a live quorum of
/// its remaining voters (a learner can always go).
pub(super) fn remove_is_safe(nodes: &BTreeMap<NodeId, NodeInfo>, range: &RangeDescriptor, node: NodeId) -> bool {
    if range.replica_kind(node) != Some(ReplicaKind::Voter) {
        return true;
    }
    let remaining: Vec<NodeId> = range.voters().filter(|&v| v != node).collect();
    let up = remaining.iter().filter(|v| nodes.get(v).is_some_and(NodeInfo::is_up)).count();
    up > remaining.len() / 2
}
