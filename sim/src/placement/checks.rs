//! The placement checkers: what every operation must respect when the
//! planner asks for it, what the ranges must look like after every split
//! and merge, and what the cluster must converge to after the fault phase.
//!
//! - **two replicas on one node**: an `AddLearner` for a node that already
//!   holds a replica of the range;
//! - **grace**: a repair that starts replacing (adds a learner for) or
//!   removes a node the planner was told is dead less than the grace
//!   period ago (or that it was told is alive);
//! - **thrash**: a planner removing a replica it added to the same range
//!   within the thrash window, or re-adding one it removed, while the
//!   node's state did not change — except in a repair, which a failure
//!   drives (a restarted planner has no memory of its predecessor's moves;
//!   each planner is judged on its own);
//! - **limits**: operations in flight per node and in total, counted as the
//!   planner defines them (a node receiving a replica, a live node giving
//!   one up), for the current planner;
//! - **quorum** (in `world.rs`): a replica change that leaves a range that
//!   had a live quorum without one;
//! - **hot key**: a load split of a range whose last report named a hot
//!   key;
//! - **cover**: after every split and merge the ranges cover the keyspace
//!   with no gap and no overlap;
//! - **convergence**: within the derived bound after the fault phase,
//!   every range has `rf` voters on live, staying nodes and no learner;
//!   voters are in distinct zones when enough zones have such nodes;
//!   decommissioned nodes are empty; replica counts are within the
//!   threshold of the mean of their zone (every zone holds one replica of
//!   each range when there are no more zones than replicas; otherwise of
//!   the whole cluster), and leader counts within the threshold of the
//!   mean, both relative to capacity and with a slack of at least
//!   [`MIN_BALANCE_SLACK`] replicas and [`MIN_LEADER_SLACK`] leaders;
//! - **convergence under `--strategy ring`** judges what the ring promises
//!   instead of ±5%: the same range checks, then every range's voters are
//!   exactly its ring targets (a ring rebuilt over the live, staying nodes
//!   in id order, as the planner rebuilds its own); the replica and leader
//!   spreads are measured and reported (`balance_spread_pct`,
//!   `leader_spread_pct`) but not required to be within ±5%, since a ring
//!   of few nodes spreads replicas only as evenly as its tokens fall, and a
//!   node with few replicas cannot lead its share of ranges.

use super::world::{
    PlacementRecord, PlacementWorld, CHECK_EVERY_US, DEAD_AFTER_US, GRACE_US, MAX_MOVES_PER_NODE, MAX_MOVES_TOTAL,
    MAX_OP_US, PASS_US, THRASH_WINDOW_US,
};
use super::{Strategy, RING_VNODES};
use chorus_core::partition::{OpKind, Operation, Reason, RingPlacement, MIN_BALANCE_SLACK};
use chorus_core::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// The smallest band around a node's share of leaders. Leadership moves
/// only among a range's voters, one transfer at a time, and each transfer
/// must lower the imbalance: a node one leader over its share may have no
/// range whose other voters are under theirs, while the node under its
/// share shares no range with it. Such a state is a local optimum one
/// transfer cannot leave, and it is at most two leaders from the share in
/// the clusters simulated here.
pub(super) const MIN_LEADER_SLACK: f64 = 2.0;

/// How far past a band's edge a count may be and still count as on it.
const EDGE_TOLERANCE: f64 = 1e-6;

/// Extra time the convergence bound allows for leader balancing and for
/// operations that fail and are planned again.
pub(super) const CONVERGE_SLACK_US: u64 = 30_000_000;

impl PlacementWorld {
    /// The checks on an operation as the planner asks for it.
    pub(super) fn check_start(&mut self, op: &Operation) {
        let Some(range) = self.ranges.get(&op.range) else { return };
        if let OpKind::AddLearner(node) = op.kind {
            if range.descriptor.has_replica(node) && range.descriptor.generation == op.generation {
                let message = format!(
                    "two replicas on one node: {op:?} asks for a second replica of {} on n{}",
                    op.range, node.0
                );
                return self.fail(message);
            }
        }
        if op.reason == Reason::SplitForLoad && range.reported_hot_key {
            return self.fail(format!(
                "hot key: {op:?} splits {} for load, which its leader reported hot because of one key",
                op.range
            ));
        }
        let decides = matches!(op.kind, OpKind::AddLearner(_) | OpKind::Remove(_));
        if let (Reason::Repair { replaces: Some(node) }, true) = (op.reason, decides) {
            let n = &self.nodes[&node];
            let dead_for = self.engine.now.saturating_sub(n.told_at);
            let allowed = match n.told {
                chorus_core::partition::Liveness::Left => true,
                chorus_core::partition::Liveness::Dead => dead_for >= GRACE_US,
                _ => false,
            } || n.decommissioning;
            if !allowed {
                let message = format!(
                    "grace: {op:?} replaces n{} which the planner was told is {:?} {} ms ago (grace period {} ms)",
                    node.0,
                    n.told,
                    dead_for / 1000,
                    GRACE_US / 1000
                );
                return self.fail(message);
            }
        }
        self.check_thrash(op);
    }

    fn check_thrash(&mut self, op: &Operation) {
        if matches!(op.reason, Reason::Repair { .. }) {
            return; // Driven by a failure, not a reversal of a choice.
        }
        let (node, adding) = match op.kind {
            OpKind::AddLearner(node) => (node, true),
            OpKind::Remove(node) => (node, false),
            _ => return,
        };
        let Some(&(added, at, epoch)) = self.recent.get(&(op.range, node)) else { return };
        let n = &self.nodes[&node];
        let state_changed = n.told_at > at || n.decommissioning || n.gone || !n.up;
        let within = self.engine.now.saturating_sub(at) < THRASH_WINDOW_US;
        if epoch == self.epoch && within && !state_changed && added != adding {
            let what = if adding { "re-adds a replica it removed" } else { "removes a replica it added" };
            let message = format!(
                "thrash: {op:?} {what} on n{} {} ms ago (thrash window {} ms)",
                node.0,
                (self.engine.now - at) / 1000,
                THRASH_WINDOW_US / 1000
            );
            self.fail(message);
        }
    }

    /// Operations in flight for the current planner, per node and in total.
    pub(super) fn check_limits(&mut self) {
        let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut total = 0;
        for ((epoch, _), flight) in &self.in_flight {
            if *epoch != self.epoch {
                continue;
            }
            total += 1;
            for node in &flight.limited {
                *per_node.entry(*node).or_insert(0) += 1;
            }
        }
        if total > MAX_MOVES_TOTAL {
            return self.fail(format!("limits: {total} operations in flight, over the limit of {MAX_MOVES_TOTAL}"));
        }
        if let Some((node, count)) = per_node.into_iter().find(|&(_, count)| count > MAX_MOVES_PER_NODE) {
            self.fail(format!(
                "limits: {count} moves in flight on n{}, over the per-node limit of {MAX_MOVES_PER_NODE}",
                node.0
            ));
        }
    }

    /// The ranges cover the keyspace, in order, with no gap or overlap.
    pub(super) fn check_cover(&mut self) {
        let mut spans: Vec<_> = self.ranges.values().map(|r| (r.descriptor.span.clone(), r.descriptor.id)).collect();
        spans.sort();
        let mut expected: Option<Vec<u8>> = Some(Vec::new());
        for (span, id) in &spans {
            match &expected {
                None => return self.fail(format!("cover: {id} {span} lies past a range that reaches the end")),
                Some(start) if *start != span.start => {
                    return self.fail(format!("cover: {id} {span} does not start where the previous range ends"));
                }
                Some(_) => expected = span.end.clone(),
            }
        }
        if expected.is_some() {
            self.fail("cover: no range reaches the end of the keyspace".into());
        }
    }

    /// Every second: decommissioned nodes that are empty leave; in the
    /// settle phase, convergence is checked.
    pub(super) fn periodic_check(&mut self) {
        let emptied: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.decommissioning && !n.gone)
            .map(|(&id, _)| id)
            .filter(|&id| self.replicas_on(id) == 0)
            .collect();
        for id in emptied {
            let node = self.nodes.get_mut(&id).expect("exists");
            (node.gone, node.up, node.life) = (true, false, node.life + 1);
            (node.told, node.told_at) = (chorus_core::partition::Liveness::Left, self.engine.now);
            self.engine.record(PlacementRecord::Told, &[id.0, 3], || format!("n{} is empty and leaves", id.0));
            let now = chorus_core::Time::from_micros(self.engine.now);
            self.planner.node_liveness(now, id, chorus_core::partition::Liveness::Left);
        }
        if self.fault_phase_over {
            match self.convergence() {
                Ok((balance_bp, leader_bp)) => {
                    let after = self.engine.now - self.settle_started;
                    self.metrics.converge_us = Some(after);
                    self.metrics.balance_spread_bp = balance_bp;
                    self.metrics.leader_spread_bp = leader_bp;
                    self.metrics.moves_optimal = self.optimal_moves();
                    self.engine.record(PlacementRecord::Converged, &[after], || {
                        format!("converged {} ms after the fault phase", after / 1000)
                    });
                    self.finished = true;
                    return;
                }
                Err(reason) if self.engine.now - self.settle_started > self.settle_bound_us => {
                    let message = format!(
                        "convergence: not converged {} ms after the fault phase (bound {} ms): {reason}",
                        (self.engine.now - self.settle_started) / 1000,
                        self.settle_bound_us / 1000
                    );
                    return self.fail(message);
                }
                Err(_) => {}
            }
        }
        self.engine.schedule(CHECK_EVERY_US, super::world::SimEvent::Check);
    }

    /// The fault phase ends: no new faults; the convergence bound is set.
    pub(super) fn end_fault_phase(&mut self) {
        self.fault_phase_over = true;
        self.settle_started = self.engine.now;
        self.settle_bound_us = self.convergence_bound();
        let bound = self.settle_bound_us;
        self.engine.record(PlacementRecord::FaultPhaseEnded, &[], || {
            format!("fault phase over; the cluster must converge within {} ms", bound / 1000)
        });
    }

    /// The bound, derived: the longest a node still down may stay down
    /// (a long failure: the grace period plus at most 25 s) plus SWIM's
    /// delay and the grace period for its replicas, then the remaining
    /// moves at the total limit (and a node that needs many at the per-node
    /// limit), each of three steps of at most [`MAX_OP_US`] plus a pass,
    /// doubled for operations that fail and are planned again, plus
    /// [`CONVERGE_SLACK_US`].
    fn convergence_bound(&self) -> u64 {
        let waiting = GRACE_US + 25_000_000 + DEAD_AFTER_US + GRACE_US;
        let ranges = self.ranges.len() as u64;
        let rf = self.options.rf as u64;
        let staying = self.nodes.values().filter(|n| !n.gone && !n.decommissioning).count().max(1) as u64;
        // At worst every replica moves once, and a node receives its share.
        let moves = ranges * rf;
        let per_node = ranges * rf / staying + 1;
        let rounds = moves.div_ceil(MAX_MOVES_TOTAL as u64) + per_node.div_ceil(MAX_MOVES_PER_NODE as u64);
        waiting + 2 * rounds * 3 * (MAX_OP_US + PASS_US) + CONVERGE_SLACK_US
    }

    /// Whether the cluster has converged: `Ok((replica spread, leader
    /// spread))` in basis points, or what is still wrong.
    pub(super) fn convergence(&self) -> Result<(u64, u64), String> {
        let rf = self.options.rf;
        let eligible: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.joined && n.up && !n.gone && !n.decommissioning)
            .map(|(&id, _)| id)
            .collect();
        let zone = |id: &NodeId| self.nodes[id].locality.top().unwrap_or_default().to_string();
        let zones: BTreeSet<String> = eligible.iter().map(zone).collect();
        for range in self.ranges.values() {
            let d = &range.descriptor;
            if d.voter_count() != rf || d.learners().count() > 0 {
                return Err(format!("{} has {} voters and {} learners", d.id, d.voter_count(), d.learners().count()));
            }
            if let Some(v) = d.voters().find(|v| !eligible.contains(v)) {
                return Err(format!("{} has a voter on n{}, which is down or leaving", d.id, v.0));
            }
            let spread: BTreeSet<String> = d.voters().map(|v| zone(&v)).collect();
            if spread.len() < rf.min(zones.len()) {
                return Err(format!("{} has its voters in {} zones of {}", d.id, spread.len(), zones.len()));
            }
            if range.leader.is_none() {
                return Err(format!("{} has no leader", d.id));
            }
        }
        if let Some((&id, _)) = self.nodes.iter().find(|(&id, n)| n.decommissioning && self.replicas_on(id) > 0) {
            return Err(format!("n{} is decommissioned but holds replicas", id.0));
        }
        if self.options.strategy == Strategy::Ring {
            return self.ring_convergence(&eligible);
        }
        let classes: BTreeMap<String, Vec<NodeId>> = if zones.len() <= rf {
            zones.iter().map(|z| (z.clone(), eligible.iter().copied().filter(|id| zone(id) == *z).collect())).collect()
        } else {
            [("cluster".to_string(), eligible.iter().copied().collect())].into_iter().collect()
        };
        let mut balance_bp = 0;
        for (class, members) in &classes {
            let counts: Vec<(NodeId, f64)> = members.iter().map(|&id| (id, self.replicas_on(id) as f64)).collect();
            balance_bp = balance_bp.max(self.spread("replicas", class, &counts, Some(MIN_BALANCE_SLACK))?);
        }
        let leaders: Vec<(NodeId, f64)> = eligible
            .iter()
            .map(|&id| (id, self.ranges.values().filter(|r| r.leader == Some(id)).count() as f64))
            .collect();
        let leader_bp = self.spread("leaders", "cluster", &leaders, Some(MIN_LEADER_SLACK))?;
        Ok((balance_bp, leader_bp))
    }

    /// Convergence under the ring: every range's voters are exactly its
    /// ring targets, computed from a ring rebuilt over the live, staying
    /// nodes in id order (as the planner builds its own). Replica and leader
    /// counts are only measured: the ring promises its targets, not ±5%,
    /// and a node the ring gives few replicas may have too few ranges to
    /// lead its share.
    fn ring_convergence(&self, eligible: &BTreeSet<NodeId>) -> Result<(u64, u64), String> {
        let rf = self.options.rf;
        let members = eligible.iter().map(|&id| (id, self.nodes[&id].capacity));
        let ring = RingPlacement::build(members, RING_VNODES, rf).map_err(|e| format!("no ring: {e}"))?;
        let zone = |id: NodeId| self.nodes.get(&id).and_then(|n| n.locality.top());
        for range in self.ranges.values() {
            let d = &range.descriptor;
            let targets: BTreeSet<NodeId> = ring.targets(&d.span.start, rf, zone).into_iter().collect();
            let voters: BTreeSet<NodeId> = d.voters().collect();
            if voters != targets {
                return Err(format!("{} has voters {voters:?}, not its ring targets {targets:?}", d.id));
            }
        }
        let replicas: Vec<(NodeId, f64)> = eligible.iter().map(|&id| (id, self.replicas_on(id) as f64)).collect();
        let balance_bp = self.spread("replicas", "cluster", &replicas, None)?;
        let leaders: Vec<(NodeId, f64)> = eligible
            .iter()
            .map(|&id| (id, self.ranges.values().filter(|r| r.leader == Some(id)).count() as f64))
            .collect();
        let leader_bp = self.spread("leaders", "cluster", &leaders, None)?;
        Ok((balance_bp, leader_bp))
    }

    /// The largest deviation of `counts` from their capacity-weighted share
    /// of the total, in basis points; an error naming the node if one is
    /// outside the threshold (with at least `min_slack`; `None`: measured
    /// only, never an error).
    fn spread(&self, what: &str, class: &str, counts: &[(NodeId, f64)], min_slack: Option<f64>) -> Result<u64, String> {
        let total: f64 = counts.iter().map(|(_, c)| c).sum();
        let capacity: f64 = counts.iter().map(|(id, _)| f64::from(self.nodes[id].capacity)).sum();
        let threshold = f64::from(self.config.threshold_pct) / 100.0;
        let mut worst = 0.0f64;
        for (id, count) in counts {
            let share = total * f64::from(self.nodes[id].capacity) / capacity.max(1.0);
            let slack = (share * threshold).max(min_slack.unwrap_or(f64::INFINITY));
            // A count exactly on the band's edge is within it: the planner
            // and this check sum in different orders, and the two floats
            // may land a rounding error either side of the edge.
            if (count - share).abs() > slack + EDGE_TOLERANCE {
                return Err(format!(
                    "n{} has {count} {what}, outside {share:.1} ± {slack:.1} (its share in {class})",
                    id.0
                ));
            }
            if share > 0.0 {
                worst = worst.max((count - share).abs() / share);
            }
        }
        Ok((worst * 10_000.0).round() as u64)
    }

    /// The fewest replica moves from the first placement to the final one:
    /// per node, the replicas it ends with beyond those it started with and
    /// those splits and merges gave or took, summed.
    fn optimal_moves(&self) -> u64 {
        self.nodes
            .iter()
            .map(|(&id, n)| {
                let gained = self.replicas_on(id) as i64 - n.initial_replicas as i64 - n.free_replicas;
                gained.max(0) as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::super::PlacementOptions;
    use super::*;
    use chorus_core::partition::RangeId;

    fn world() -> PlacementWorld {
        PlacementWorld::new(PlacementOptions {
            seed: 1,
            nodes: 6,
            ranges: 8,
            rf: 3,
            strategy: Strategy::Balanced,
            bug: None,
            keep_trace_text: false,
        })
    }

    #[test]
    fn the_cover_checker_finds_a_gap_and_an_overlap() {
        let mut w = world();
        w.check_cover();
        assert!(w.failures.is_empty(), "{:?}", w.failures);
        let mut gap = world();
        let range = gap.ranges.get_mut(&RangeId(3)).unwrap();
        range.descriptor.span.start.push(0);
        gap.check_cover();
        assert!(gap.failures[0].starts_with("cover:"), "{:?}", gap.failures);
        let mut overlap = world();
        overlap.ranges.get_mut(&RangeId(8)).unwrap().descriptor.span.start = vec![0x10];
        overlap.check_cover();
        assert!(overlap.failures[0].starts_with("cover:"), "{:?}", overlap.failures);
    }

    #[test]
    fn the_convergence_check_names_what_is_not_converged() {
        // Every range on the three founders, every leader on n1.
        let mut w = world();
        let reason = w.convergence().unwrap_err();
        assert!(reason.starts_with("n1 has 8 leaders"), "{reason}");
        for (i, range) in w.ranges.values_mut().enumerate() {
            range.leader = Some(NodeId(i as u64 % 3 + 1));
        }
        assert!(w.convergence().is_ok(), "{:?}", w.convergence());
        // The other nodes join, empty.
        for node in w.nodes.values_mut() {
            (node.joined, node.up) = (true, true);
        }
        let reason = w.convergence().unwrap_err();
        assert!(reason.contains("replicas, outside"), "{reason}");
    }
}
