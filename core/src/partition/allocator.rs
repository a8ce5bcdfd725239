//! The balanced allocator: where a range's next replica goes, which replica
//! leaves, and which moves and leader transfers even out the cluster.
//!
//! The rules, in order of precedence (those of CockroachDB's and TiKV's
//! placement drivers):
//! 1. never two replicas of a range on one node;
//! 2. spread across failure domains first ([`Locality::diversity`]);
//! 3. balance replica counts, relative to capacity, within a threshold of
//!    the mean of the nodes that are *comparable* for that range (as
//!    diverse as the replica they would replace), so that zones of unequal
//!    size are balanced within themselves instead of fought over;
//! 4. of several equally good targets, take the less loaded of two drawn at
//!    random, so that planners working from the same counts do not all pile
//!    onto the one emptiest node;
//! 5. before adding a replica to rebalance, simulate the removal that would
//!    follow: if the allocator would then remove the replica just added, the
//!    move would be undone at once, and it is not made.

use super::descriptor::RangeDescriptor;
use super::nodes::NodeInfo;
use crate::types::{NodeId, Time};
use rand::Rng;
use std::collections::BTreeMap;

/// The smallest band around a mean, in replicas (or leaders): with few
/// replicas per node, a percentage of the mean would demand a balance that
/// whole numbers cannot reach.
pub const MIN_BALANCE_SLACK: f64 = 1.0;

/// Two diversity scores closer than this are equal.
const DIVERSITY_EPSILON: f64 = 1e-9;

/// A diversity score as a whole number of millionths, so that sums taken in
/// different orders (1/3 + 1 + 1 against 1 + 1 + 1/3) compare equal.
fn quantized(diversity: f64) -> i64 {
    (diversity * 1e6).round() as i64
}

/// Replica and leader counts per node, including moves in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Replicas (voters and learners) per node.
    pub replicas: BTreeMap<NodeId, u64>,
    /// Ranges led per node.
    pub leaders: BTreeMap<NodeId, u64>,
}

impl Counts {
    /// Replicas on `node`.
    pub fn replicas_on(&self, node: NodeId) -> u64 {
        self.replicas.get(&node).copied().unwrap_or(0)
    }

    /// Ranges led by `node`.
    pub fn leaders_on(&self, node: NodeId) -> u64 {
        self.leaders.get(&node).copied().unwrap_or(0)
    }

    /// Adds `delta` (which may be negative) to `node`'s replica count.
    pub fn adjust_replicas(&mut self, node: NodeId, delta: i64) {
        let count = self.replicas.entry(node).or_insert(0);
        *count = count.saturating_add_signed(delta);
    }

    /// Adds `delta` (which may be negative) to `node`'s leader count.
    pub fn adjust_leaders(&mut self, node: NodeId, delta: i64) {
        let count = self.leaders.entry(node).or_insert(0);
        *count = count.saturating_add_signed(delta);
    }
}

/// Sums over the whole cluster that the allocator's targets divide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Capacity of the nodes that can take replicas.
    pub up_capacity: u64,
    /// Ranges with a known leader.
    pub leaders: u64,
    /// Some node leads more ranges than its band allows (at the balance
    /// threshold given to [`Totals::of`]).
    pub leaders_over_band: bool,
}

impl Totals {
    /// The totals of `nodes` and `counts`, with the leader band at
    /// `threshold_pct` percent.
    pub fn of(nodes: &BTreeMap<NodeId, NodeInfo>, counts: &Counts, threshold_pct: u32) -> Totals {
        let up_capacity: u64 = nodes.values().filter(|n| n.can_take_replicas()).map(|n| u64::from(n.capacity)).sum();
        let leaders: u64 = counts.leaders.values().sum();
        let threshold = f64::from(threshold_pct) / 100.0;
        let leaders_over_band = counts.leaders.iter().any(|(id, &count)| {
            let capacity = nodes.get(id).map_or(1, |n| n.capacity);
            let expected = leaders as f64 * f64::from(capacity) / up_capacity.max(1) as f64;
            count as f64 > expected + (expected * threshold).max(MIN_BALANCE_SLACK)
        });
        Totals { up_capacity, leaders, leaders_over_band }
    }
}

/// The nodes that can take replicas, grouped by their widest failure
/// domain (zone; `None` for a node without locality), with each zone's
/// replica and capacity sums and its nodes ordered by replica load. A
/// planning pass builds it once and keeps it in step with its [`Counts`],
/// so that the allocator finds a rebalancing target among the zones a
/// range does not use without looking at every node.
#[derive(Clone, Debug, Default)]
pub(crate) struct ZoneIndex {
    zones: BTreeMap<Option<String>, ZoneLoads>,
}

/// One zone of a [`ZoneIndex`].
#[derive(Clone, Debug, Default)]
struct ZoneLoads {
    replicas: u64,
    capacity: u64,
    /// (replica load as the bits of a non-negative `f64`, which order as
    /// the numbers do; node).
    by_load: std::collections::BTreeSet<(u64, NodeId)>,
}

fn load_bits(replicas: u64, capacity: u32) -> u64 {
    (replicas as f64 / f64::from(capacity)).to_bits()
}

impl ZoneIndex {
    /// The index of the nodes of `nodes` that can take replicas.
    pub(crate) fn new(nodes: &BTreeMap<NodeId, NodeInfo>, counts: &Counts) -> ZoneIndex {
        let mut index = ZoneIndex::default();
        for node in nodes.values().filter(|n| n.can_take_replicas()) {
            let zone = index.zones.entry(node.locality.top().map(str::to_string)).or_default();
            let replicas = counts.replicas_on(node.id);
            zone.replicas += replicas;
            zone.capacity += u64::from(node.capacity);
            zone.by_load.insert((load_bits(replicas, node.capacity), node.id));
        }
        index
    }

    /// `node`'s replica count went from `before` to `after`.
    pub(crate) fn adjust(&mut self, node: &NodeInfo, before: u64, after: u64) {
        if !node.can_take_replicas() {
            return;
        }
        let Some(zone) = self.zones.get_mut(&node.locality.top().map(str::to_string)) else { return };
        zone.replicas = zone.replicas - before + after;
        zone.by_load.remove(&(load_bits(before, node.capacity), node.id));
        zone.by_load.insert((load_bits(after, node.capacity), node.id));
    }
}

/// Whether moving one unit (a replica, a leadership) from a node holding
/// `from` with weight `from_weight` to one holding `to` with weight
/// `to_weight` lowers the sum over nodes of `count² / weight`. Every move
/// the allocator makes does, so no sequence of its moves can come back to
/// where it started: balancing cannot loop.
fn improves(to: f64, to_weight: f64, from: f64, from_weight: f64) -> bool {
    let (to_weight, from_weight) = (to_weight.max(f64::MIN_POSITIVE), from_weight.max(f64::MIN_POSITIVE));
    (2.0 * to + 1.0) / to_weight < (2.0 * from - 1.0) / from_weight
}

/// The allocator's view of the cluster at one moment: nodes, counts and the
/// balance threshold. Cheap to build; every decision is a pure function of
/// it (and of the random draws handed in).
pub struct Allocator<'a> {
    nodes: &'a BTreeMap<NodeId, NodeInfo>,
    counts: &'a Counts,
    threshold: f64,
    now: Time,
    grace_us: u64,
    /// Capacity of the nodes that hold ranges' leaders (up nodes).
    up_capacity: u64,
    /// Leaders in the cluster.
    total_leaders: u64,
    /// Some node leads more than its band allows.
    leaders_over_band: bool,
    /// The pass's zone index, if it keeps one (a shortcut; every decision
    /// is the same without it).
    zones: Option<&'a ZoneIndex>,
}

impl<'a> Allocator<'a> {
    /// A view over `nodes` and `counts`; `threshold_pct` is the balance band
    /// around the mean (CockroachDB uses 5); replicas of dead nodes are
    /// replaced after `grace_us`.
    pub fn new(
        nodes: &'a BTreeMap<NodeId, NodeInfo>,
        counts: &'a Counts,
        threshold_pct: u32,
        now: Time,
        grace_us: u64,
    ) -> Allocator<'a> {
        Allocator::with_totals(nodes, counts, Totals::of(nodes, counts, threshold_pct), threshold_pct, now, grace_us)
    }

    /// As [`Allocator::new`], with the totals already summed (they cost a
    /// walk over every node; a planning pass sums them once).
    pub fn with_totals(
        nodes: &'a BTreeMap<NodeId, NodeInfo>,
        counts: &'a Counts,
        totals: Totals,
        threshold_pct: u32,
        now: Time,
        grace_us: u64,
    ) -> Allocator<'a> {
        Allocator {
            nodes,
            counts,
            threshold: f64::from(threshold_pct) / 100.0,
            now,
            grace_us,
            up_capacity: totals.up_capacity,
            total_leaders: totals.leaders,
            leaders_over_band: totals.leaders_over_band,
            zones: None,
        }
    }

    /// Uses `zones` (which must match this view's nodes and counts) to find
    /// rebalancing targets without a walk over every node.
    pub(crate) fn with_zone_index(mut self, zones: &'a ZoneIndex) -> Allocator<'a> {
        self.zones = Some(zones);
        self
    }

    fn node(&self, id: NodeId) -> Option<&'a NodeInfo> {
        self.nodes.get(&id)
    }

    /// Replicas per unit of capacity on `node`.
    fn replica_load(&self, id: NodeId) -> f64 {
        let capacity = self.node(id).map_or(1, |n| n.capacity);
        self.counts.replicas_on(id) as f64 / f64::from(capacity)
    }

    /// Whether `node`'s replicas must go (it left, is decommissioning, or
    /// has been dead past the grace period).
    pub fn must_replace(&self, id: NodeId) -> bool {
        self.node(id).is_none_or(|n| n.should_be_replaced(self.now, self.grace_us))
    }

    /// Whether `node`'s replica counts towards its range's quorum now.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some_and(NodeInfo::is_up)
    }

    /// Sum of `candidate`'s diversity to each of `others` (skipping itself
    /// and replicas that must go).
    fn diversity(&self, candidate: NodeId, others: impl Iterator<Item = NodeId>) -> f64 {
        let Some(info) = self.node(candidate) else { return 0.0 };
        others
            .filter(|&other| other != candidate && !self.must_replace(other))
            .filter_map(|other| self.node(other))
            .map(|other| info.locality.diversity(&other.locality))
            .sum()
    }

    /// The diversity-counted members of `others` (known, not to be
    /// replaced, not `candidate`), whose zones `candidate` avoids entirely
    /// when its diversity to them is at its maximum, one per member: each
    /// term is 1.0 exactly when the two nodes' widest domains differ, and at
    /// most 1 - 1/[`MAX_LOCALITY_TIERS`](super::nodes::MAX_LOCALITY_TIERS)
    /// otherwise.
    fn counted(&self, candidate: NodeId, others: impl Iterator<Item = NodeId>) -> Vec<&'a NodeInfo> {
        others.filter(|&other| other != candidate && !self.must_replace(other)).filter_map(|o| self.node(o)).collect()
    }

    /// Where a new replica of `range` should go, or `None` if no node can
    /// take it: the most diverse place, then (among nodes at or below the
    /// mean load of those) the less loaded of two random ones. `except` is
    /// a replica about to leave, not counted for diversity.
    pub fn choose_add(&self, range: &RangeDescriptor, except: Option<NodeId>, rng: &mut impl Rng) -> Option<NodeId> {
        let existing = || range.replicas().iter().map(|r| r.node).filter(move |&n| Some(n) != except);
        let candidates: Vec<(NodeId, f64)> = self
            .nodes
            .values()
            .filter(|n| n.can_take_replicas() && !range.has_replica(n.id))
            .map(|n| (n.id, self.diversity(n.id, existing())))
            .collect();
        let best = candidates.iter().map(|&(_, d)| d).fold(f64::NEG_INFINITY, f64::max);
        let mut best: Vec<NodeId> =
            candidates.iter().filter(|&&(_, d)| d >= best - DIVERSITY_EPSILON).map(|&(id, _)| id).collect();
        if best.len() > 2 {
            let mean = best.iter().map(|&id| self.replica_load(id)).sum::<f64>() / best.len() as f64;
            let light: Vec<NodeId> = best.iter().copied().filter(|&id| self.replica_load(id) <= mean).collect();
            if !light.is_empty() {
                best = light;
            }
        }
        self.less_loaded_of_two(&best, rng)
    }

    fn less_loaded_of_two(&self, candidates: &[NodeId], rng: &mut impl Rng) -> Option<NodeId> {
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            len => {
                let first = rng.random_range(0..len);
                let second = (first + rng.random_range(1..len)) % len;
                let (a, b) = (candidates[first], candidates[second]);
                Some(if (self.replica_load(b), b) < (self.replica_load(a), a) { b } else { a })
            }
        }
    }

    /// Which of `candidates` (replicas of `range`, whose replica set is
    /// taken to be `range`'s plus `extra`) should leave first: one that
    /// must be replaced, then one that is down, then the one that adds the
    /// least diversity, then the most loaded; ties go to the higher id.
    pub fn choose_remove(
        &self,
        range: &RangeDescriptor,
        extra: Option<NodeId>,
        candidates: impl IntoIterator<Item = NodeId>,
    ) -> Option<NodeId> {
        let members: Vec<NodeId> = range.replicas().iter().map(|r| r.node).chain(extra).collect();
        candidates.into_iter().max_by(|&a, &b| {
            let key = |id: NodeId| {
                (
                    self.must_replace(id),
                    !self.is_up(id),
                    -quantized(self.diversity(id, members.iter().copied())),
                    self.replica_load(id),
                    id,
                )
            };
            key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal)
        })
    }

    /// A move that spreads `range` over more failure domains: `(add,
    /// remove)`, where `remove` is the voter that adds the least diversity
    /// and `add` the least loaded node that would add more in its place; or
    /// `None` when no node would (a node in a missing zone came back, say).
    pub fn improve_diversity(&self, range: &RangeDescriptor) -> Option<(NodeId, NodeId)> {
        let voters: Vec<NodeId> = range.voters().collect();
        let source = self.choose_remove(range, None, voters.iter().copied().filter(|&v| self.is_up(v)))?;
        let others = || voters.iter().copied().filter(move |&v| v != source);
        let source_diversity = self.diversity(source, others());
        let counted = self.counted(source, others()).len() as f64;
        if source_diversity >= counted - DIVERSITY_EPSILON {
            return None; // No node can be more diverse than every term at 1.0.
        }
        let target = self
            .nodes
            .values()
            .filter(|n| n.can_take_replicas() && !range.has_replica(n.id))
            .filter(|n| self.diversity(n.id, others()) > source_diversity + DIVERSITY_EPSILON)
            .map(|n| n.id)
            .min_by(|&a, &b| self.replica_load(a).total_cmp(&self.replica_load(b)).then(a.cmp(&b)))?;
        let would_remove = self.choose_remove(range, Some(target), voters.iter().copied().chain([target]))?;
        (would_remove == source).then_some((target, source))
    }

    /// A move that evens out replica counts for `range`: `(add, remove)`,
    /// where `remove` is a voter on a node above the mean of its comparable
    /// nodes and `add` a node that is as diverse in its place and less
    /// loaded; or `None` when the range is where it should be. The removal
    /// that would follow the addition is simulated first: a move whose new
    /// replica would be the one removed is never proposed.
    pub fn rebalance(&self, range: &RangeDescriptor) -> Option<(NodeId, NodeId)> {
        self.rebalance_among(range, None, true)
    }

    /// A move of one of `range`'s voters other than `leader` (which leads
    /// more ranges than its band allows and, as no voter of `range` could
    /// take the leadership, is stuck): to a node with fewer leaders, when
    /// the move also lowers Σ replicas²/capacity, so it needs no further
    /// reason and cannot loop. The node that gets the replica can then take
    /// the leadership. `None` when `leader` is within its band.
    pub fn unblock_leadership(&self, range: &RangeDescriptor, leader: NodeId) -> Option<(NodeId, NodeId)> {
        let expected = self.expected_leaders(leader);
        let band = (expected * self.threshold).max(MIN_BALANCE_SLACK);
        if (self.counts.leaders_on(leader) as f64) <= expected + band {
            return None;
        }
        let (target, source) = self.rebalance_among(range, Some(leader), false)?;
        let leaders = |id: NodeId| self.counts.leaders_on(id) as f64;
        improves(leaders(target), self.expected_leaders(target), leaders(leader), expected).then_some((target, source))
    }

    fn rebalance_among(&self, range: &RangeDescriptor, keep: Option<NodeId>, needed: bool) -> Option<(NodeId, NodeId)> {
        let voters: Vec<NodeId> = range.voters().collect();
        let mut sources: Vec<NodeId> =
            voters.iter().copied().filter(|&v| self.is_up(v) && !self.must_replace(v) && Some(v) != keep).collect();
        sources.sort_by(|&a, &b| self.replica_load(b).total_cmp(&self.replica_load(a)).then(b.cmp(&a)));
        sources.into_iter().find_map(|source| self.rebalance_from(range, &voters, source, needed))
    }

    /// A move of `source`'s replica that lowers Σ replicas²/capacity; when
    /// `needed`, only if `source` or the target is outside its band.
    fn rebalance_from(
        &self,
        range: &RangeDescriptor,
        voters: &[NodeId],
        source: NodeId,
        needed: bool,
    ) -> Option<(NodeId, NodeId)> {
        let others = || voters.iter().copied().filter(move |&v| v != source);
        let source_diversity = self.diversity(source, others());
        let capacity = |id: NodeId| f64::from(self.node(id).map_or(1, |n| n.capacity));
        let count = |id: NodeId| self.counts.replicas_on(id) as f64;
        let (target, targets_replicas, targets_capacity) = match self.zones {
            Some(zones) => {
                let counted = self.counted(source, others());
                if source_diversity < counted.len() as f64 - DIVERSITY_EPSILON {
                    self.comparable_by_walk(range, source, source_diversity, voters)?
                } else {
                    // Comparable targets: the nodes outside every counted
                    // voter's zone (the sums are of whole numbers: exact in
                    // any order).
                    let used: Vec<Option<&str>> = counted.iter().map(|o| o.locality.top()).collect();
                    self.comparable_in_zones(zones, range, &used)?
                }
            }
            None => self.comparable_by_walk(range, source, source_diversity, voters)?,
        };
        // Replicas per unit of capacity over the comparable nodes.
        let mean = (targets_replicas + count(source)) / (targets_capacity + capacity(source));
        let band = |id: NodeId| {
            let share = mean * capacity(id);
            (share, (share * self.threshold).max(MIN_BALANCE_SLACK))
        };
        let ((source_share, source_slack), (target_share, target_slack)) = (band(source), band(target));
        let needed =
            !needed || count(source) > source_share + source_slack || count(target) < target_share - target_slack;
        if !(needed && improves(count(target), capacity(target), count(source), capacity(source))) {
            return None;
        }
        // Simulate the removal that follows the addition. With the
        // diversity filter above it always picks `source` (the target is at
        // least as diverse against the others, and less loaded); it stays as
        // the rule's own guard against a change to either.
        let would_remove = self.choose_remove(range, Some(target), voters.iter().copied().chain([target]))?;
        (would_remove == source).then_some((target, source))
    }

    /// The nodes as diverse in `source`'s place as `source` (and able to
    /// take a replica of `range`), found by a walk over every node: the
    /// least loaded of them (lower id on a tie) and the sums of their
    /// replicas and capacities; `None` if there are none.
    fn comparable_by_walk(
        &self,
        range: &RangeDescriptor,
        source: NodeId,
        source_diversity: f64,
        voters: &[NodeId],
    ) -> Option<(NodeId, f64, f64)> {
        let others = || voters.iter().copied().filter(move |&v| v != source);
        let targets: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.can_take_replicas() && !range.has_replica(n.id))
            .filter(|n| self.diversity(n.id, others()) >= source_diversity - DIVERSITY_EPSILON)
            .map(|n| n.id)
            .collect();
        let capacity = |id: NodeId| f64::from(self.node(id).map_or(1, |n| n.capacity));
        let count = |id: NodeId| self.counts.replicas_on(id) as f64;
        let target =
            *targets.iter().min_by(|&&a, &&b| self.replica_load(a).total_cmp(&self.replica_load(b)).then(a.cmp(&b)))?;
        Some((target, targets.iter().copied().map(count).sum(), targets.iter().copied().map(capacity).sum()))
    }

    /// [`Allocator::comparable_by_walk`] for the nodes in no zone of
    /// `used`, from the zone index.
    fn comparable_in_zones(
        &self,
        zones: &ZoneIndex,
        range: &RangeDescriptor,
        used: &[Option<&str>],
    ) -> Option<(NodeId, f64, f64)> {
        let mut best: Option<(u64, NodeId)> = None;
        let (mut replicas, mut capacity) = (0u64, 0u64);
        for (zone, loads) in zones.zones.iter().filter(|(zone, _)| !used.contains(&zone.as_deref())) {
            replicas += loads.replicas;
            capacity += loads.capacity;
            // A range has a handful of replicas: few are skipped.
            if let Some(&first) = loads.by_load.iter().find(|(_, id)| !range.has_replica(*id)) {
                best = Some(best.map_or(first, |b| b.min(first)));
            }
            let holders = range.replicas().iter().filter_map(|r| self.node(r.node));
            for holder in holders.filter(|n| n.can_take_replicas() && n.locality.top() == zone.as_deref()) {
                replicas -= self.counts.replicas_on(holder.id);
                capacity -= u64::from(holder.capacity);
            }
        }
        best.map(|(_, id)| (id, replicas as f64, capacity as f64))
    }

    /// The leader count `node` should have: the cluster's leaders shared by
    /// capacity among nodes that can hold replicas.
    pub fn expected_leaders(&self, id: NodeId) -> f64 {
        let capacity = self.node(id).map_or(1, |n| n.capacity);
        self.total_leaders as f64 * f64::from(capacity) / self.up_capacity.max(1) as f64
    }

    /// A voter of `range` to hand its leadership to, if the hand-over lowers
    /// Σ leaders²/capacity and either end is outside its band — or, while
    /// some node is over its band, the leader is above its share and the
    /// voter below it. That last case breaks the local optimum where a node
    /// over its band shares all its ranges with nodes one leader short of
    /// it: they pass a leadership on to a node below its share, and then
    /// the node over its band can hand one to them. Every transfer still
    /// lowers the sum, so none loops; with every node within its band,
    /// nothing moves.
    pub fn leader_transfer(&self, range: &RangeDescriptor, leader: NodeId) -> Option<NodeId> {
        let leader_count = self.counts.leaders_on(leader) as f64;
        let band = |expected: f64| (expected * self.threshold).max(MIN_BALANCE_SLACK);
        let target = range
            .voters()
            .filter(|&v| v != leader && self.node(v).is_some_and(NodeInfo::can_take_replicas))
            .min_by(|&a, &b| {
            let load = |id| self.counts.leaders_on(id) as f64 / self.expected_leaders(id).max(f64::MIN_POSITIVE);
            load(a).total_cmp(&load(b)).then(a.cmp(&b))
        })?;
        let target_count = self.counts.leaders_on(target) as f64;
        let (leader_expected, target_expected) = (self.expected_leaders(leader), self.expected_leaders(target));
        let needed = leader_count > leader_expected + band(leader_expected)
            || target_count < target_expected - band(target_expected)
            || (self.leaders_over_band && leader_count > leader_expected && target_count < target_expected);
        let improves = improves(target_count, target_expected, leader_count, leader_expected);
        (improves && needed).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{Locality, RangeId, Span};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn nodes(zones: &[&str]) -> BTreeMap<NodeId, NodeInfo> {
        zones
            .iter()
            .enumerate()
            .map(|(i, zone)| {
                let id = NodeId(i as u64 + 1);
                let locality = Locality::new([format!("zone={zone}"), format!("host={}", id.0)]);
                (id, NodeInfo::new(id, locality, 1, Time::ZERO))
            })
            .collect()
    }

    fn counts(replicas: &[u64]) -> Counts {
        Counts {
            replicas: replicas.iter().enumerate().map(|(i, &c)| (NodeId(i as u64 + 1), c)).collect(),
            leaders: BTreeMap::new(),
        }
    }

    fn range(voters: &[u64]) -> RangeDescriptor {
        RangeDescriptor::new(RangeId(1), Span::full(), voters.iter().map(|&n| NodeId(n)))
    }

    #[test]
    fn a_new_replica_goes_to_a_zone_the_range_lacks_even_when_that_zone_is_fuller() {
        let nodes = nodes(&["a", "a", "b", "b", "c"]);
        let counts = counts(&[0, 0, 0, 0, 50]);
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(alloc.choose_add(&range(&[1, 3]), None, &mut rng), Some(NodeId(5)));
        }
        assert_eq!(alloc.choose_add(&range(&[1, 2, 3, 4, 5]), None, &mut rng), None, "never two on one node");
    }

    #[test]
    fn the_removal_prefers_a_dead_node_then_the_least_diverse_then_the_most_loaded() {
        let mut nodes = nodes(&["a", "a", "b", "c"]);
        let counts = counts(&[10, 20, 10, 10]);
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        // 1 and 2 share zone a: one of them goes, the more loaded.
        assert_eq!(alloc.choose_remove(&range(&[1, 2, 3, 4]), None, [1, 2, 3, 4].map(NodeId)), Some(NodeId(2)));
        nodes.get_mut(&NodeId(4)).unwrap().liveness = crate::partition::Liveness::Dead;
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.choose_remove(&range(&[1, 2, 3, 4]), None, [1, 2, 3, 4].map(NodeId)), Some(NodeId(4)));
    }

    #[test]
    fn rebalancing_moves_from_the_fullest_node_to_the_emptiest_within_the_zone() {
        let nodes = nodes(&["a", "a", "b", "c"]);
        let counts = counts(&[30, 10, 20, 20]);
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.rebalance(&range(&[1, 3, 4])), Some((NodeId(2), NodeId(1))));
        let balanced = self::counts(&[20, 20, 20, 20]);
        let alloc = Allocator::new(&nodes, &balanced, 5, Time::ZERO, 0);
        assert_eq!(alloc.rebalance(&range(&[1, 3, 4])), None, "balanced: nothing to do");
    }

    #[test]
    fn a_target_that_would_make_the_range_less_diverse_is_not_proposed() {
        // Node 4 is the emptiest, but in zone a with node 1: moving node 2's
        // replica (zone b) there would leave the range without zone b.
        let nodes = nodes(&["a", "b", "c", "a"]);
        let counts = counts(&[10, 40, 10, 0]);
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.rebalance(&range(&[1, 2, 3])), Some((NodeId(4), NodeId(1))), "only within zone a");
    }

    #[test]
    fn a_range_in_two_zones_moves_a_replica_to_the_third_when_a_node_there_can_take_it() {
        let nodes = nodes(&["a", "a", "b", "c"]);
        let counts = counts(&[10, 10, 10, 40]);
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.improve_diversity(&range(&[1, 2, 3])), Some((NodeId(4), NodeId(2))));
        assert_eq!(alloc.improve_diversity(&range(&[1, 3, 4])), None, "already in every zone");
    }

    #[test]
    fn equal_diversity_summed_in_another_order_is_equal_and_load_decides() {
        // Nodes 1 and 7 share zone 0 and rack 0: with a range on 1, 8, 9
        // and 7 added, both score 1/3 + 1 + 1, summed in different orders.
        let nodes: BTreeMap<NodeId, NodeInfo> = (1..=9u64)
            .map(|n| {
                let tiers = [format!("zone={}", (n - 1) % 3), format!("rack={}", (n - 1) / 3 % 2), format!("host={n}")];
                (NodeId(n), NodeInfo::new(NodeId(n), Locality::new(tiers), 1, Time::ZERO))
            })
            .collect();
        let counts = counts(&[63, 59, 22, 1, 3, 21, 0, 2, 21]);
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.choose_remove(&range(&[1, 8, 9]), Some(NodeId(7)), [1, 8, 9, 7].map(NodeId)), Some(NodeId(1)));
        assert_eq!(alloc.rebalance(&range(&[1, 8, 9])), Some((NodeId(7), NodeId(1))));
    }

    #[test]
    fn the_zone_index_changes_no_rebalancing_decision() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..300 {
            let zones = rng.random_range(1..=5u64);
            let mut nodes: BTreeMap<NodeId, NodeInfo> = (1..=rng.random_range(4..=24u64))
                .map(|n| {
                    let tiers = [format!("zone={}", n % zones), format!("rack={}", n % 2), format!("host={n}")];
                    let mut info = NodeInfo::new(NodeId(n), Locality::new(tiers), rng.random_range(1..=3), Time::ZERO);
                    info.decommissioning = rng.random_range(0..10) == 0;
                    (NodeId(n), info)
                })
                .collect();
            nodes.insert(NodeId(99), NodeInfo::new(NodeId(99), Locality::default(), 1, Time::ZERO));
            let counts = Counts {
                replicas: nodes.keys().map(|&id| (id, rng.random_range(0..60))).collect(),
                leaders: BTreeMap::new(),
            };
            let index = ZoneIndex::new(&nodes, &counts);
            let ids: Vec<u64> = nodes.keys().map(|id| id.0).collect();
            for _ in 0..20 {
                let mut voters: Vec<u64> = Vec::new();
                while voters.len() < 3.min(ids.len()) {
                    let pick = ids[rng.random_range(0..ids.len())];
                    if !voters.contains(&pick) {
                        voters.push(pick);
                    }
                }
                let plain = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
                let indexed = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0).with_zone_index(&index);
                assert_eq!(plain.rebalance(&range(&voters)), indexed.rebalance(&range(&voters)), "{voters:?}");
            }
        }
    }

    #[test]
    fn leadership_balance_is_relative_to_capacity() {
        let mut nodes = nodes(&["a", "b", "c"]);
        nodes.get_mut(&NodeId(2)).unwrap().capacity = 2;
        let mut counts = counts(&[10, 10, 10]);
        // 40 leaders: shares 10, 20, 10. Node 1 leads 17: node 2 (17 of 20)
        // is the least loaded relative to its share and takes one.
        counts.leaders = [(NodeId(1), 17), (NodeId(2), 17), (NodeId(3), 6)].into_iter().collect();
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.leader_transfer(&range(&[1, 2]), NodeId(1)), Some(NodeId(2)));
    }

    #[test]
    fn leadership_moves_from_a_node_over_its_share_to_the_voter_with_fewest() {
        let nodes = nodes(&["a", "b", "c"]);
        let mut counts = counts(&[10, 10, 10]);
        counts.leaders = [(NodeId(1), 8), (NodeId(2), 1), (NodeId(3), 1)].into_iter().collect();
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.leader_transfer(&range(&[1, 2, 3]), NodeId(1)), Some(NodeId(2)));
        assert_eq!(alloc.leader_transfer(&range(&[1, 2, 3]), NodeId(2)), None);
    }
    #[test]
    fn a_node_over_its_band_gets_out_of_a_local_optimum_through_its_peers() {
        // 127 leaders on 5 nodes: a share of 25.4, a band of ±1.27. Node 1
        // (27) is over it but shares its ranges with nodes 2 and 3 (26):
        // handing them one would not lower Σ leaders². Node 2, above its
        // share, first passes one to node 4, below it; then node 1 can.
        let nodes = nodes(&["a", "b", "c", "a", "b"]);
        let mut counts = counts(&[10, 10, 10, 10, 10]);
        counts.leaders =
            [(NodeId(1), 27), (NodeId(2), 26), (NodeId(3), 26), (NodeId(4), 24), (NodeId(5), 24)].into_iter().collect();
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.leader_transfer(&range(&[1, 2, 3]), NodeId(1)), None);
        assert_eq!(alloc.leader_transfer(&range(&[2, 4, 5]), NodeId(2)), Some(NodeId(4)));
        counts.adjust_leaders(NodeId(2), -1);
        counts.adjust_leaders(NodeId(4), 1);
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.leader_transfer(&range(&[1, 2, 3]), NodeId(1)), Some(NodeId(2)));
        // Node 2 (25) is now below its share: it has nothing to hand on.
        assert_eq!(alloc.leader_transfer(&range(&[2, 5]), NodeId(2)), None);
        // With every node within its band, nothing moves: 26 → 24 would
        // lower the sum, but no node needs the room.
        counts.leaders =
            [(NodeId(1), 26), (NodeId(2), 26), (NodeId(3), 25), (NodeId(4), 24), (NodeId(5), 24)].into_iter().collect();
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.leader_transfer(&range(&[1, 4]), NodeId(1)), None);
    }
    #[test]
    fn a_stuck_leader_gets_a_voter_moved_to_a_node_with_fewer_leaders() {
        // Node 1 leads 10 of 28 ranges (share 7, band ±1) and shares this
        // range with nodes 2 and 3, which lead 9: no transfer lowers Σ
        // leaders². Moving node 2's replica to node 4 (same zone, fewer
        // replicas, no leaders) evens replicas and unblocks the leadership.
        let nodes = nodes(&["a", "b", "c", "b"]);
        let mut counts = counts(&[10, 11, 10, 9]);
        counts.leaders = [(NodeId(1), 10), (NodeId(2), 9), (NodeId(3), 9), (NodeId(4), 0)].into_iter().collect();
        let alloc = Allocator::new(&nodes, &counts, 5, Time::ZERO, 0);
        assert_eq!(alloc.leader_transfer(&range(&[1, 2, 3]), NodeId(1)), None);
        assert_eq!(alloc.rebalance(&range(&[1, 2, 3])), None, "replicas are within their band");
        assert_eq!(alloc.unblock_leadership(&range(&[1, 2, 3]), NodeId(1)), Some((NodeId(4), NodeId(2))));
        // A leader within its band is not a reason to move anything.
        assert_eq!(alloc.unblock_leadership(&range(&[1, 2, 3]), NodeId(2)), None);
        // Nor is a move that would unbalance replicas: node 4 as loaded as node 2.
        let mut even = counts.clone();
        even.replicas.insert(NodeId(4), 11);
        let alloc = Allocator::new(&nodes, &even, 5, Time::ZERO, 0);
        assert_eq!(alloc.unblock_leadership(&range(&[1, 2, 3]), NodeId(1)), None);
    }
}
