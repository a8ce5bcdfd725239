//! The planner against a perfect executor.

use super::*;
use crate::partition::Span;

/// A cluster of `zones.len()` nodes (node i+1 in zone `zones[i]`) and
/// `ranges` ranges all on nodes 1, 2 and 3.
fn cluster(zones: &[&str], ranges: u64) -> (Vec<NodeInfo>, Vec<RangeDescriptor>) {
    let nodes = zones
        .iter()
        .enumerate()
        .map(|(i, zone)| {
            let id = NodeId(i as u64 + 1);
            NodeInfo::new(id, Locality::new([format!("zone={zone}"), format!("host={}", id.0)]), 1, Time::ZERO)
        })
        .collect();
    let descriptors = (0..ranges)
        .map(|r| {
            let start = if r == 0 { Vec::new() } else { vec![r as u8] };
            let end = (r + 1 < ranges).then(|| vec![r as u8 + 1]);
            RangeDescriptor::new(RangeId(r + 1), Span { start, end }, [1, 2, 3].map(NodeId))
        })
        .collect();
    (nodes, descriptors)
}

/// Applies every queued operation at once, as a perfect executor would,
/// checking that no removal costs a range its live quorum. Returns the
/// operations applied.
fn execute(planner: &mut Planner, now: Time) -> Vec<Operation> {
    let mut applied = Vec::new();
    while let Some(action) = planner.poll_action() {
        let PlannerAction::Start(op) = action else { continue };
        let mut descriptor = planner.ranges[&op.range].descriptor.clone();
        assert_eq!(descriptor.generation, op.generation, "planned against the current descriptor");
        let outcome = match &op.kind {
            OpKind::AddLearner(node) => descriptor.add_learner(*node).map(|_| ()),
            OpKind::Promote(node) => descriptor.promote(*node),
            OpKind::Remove(node) => {
                let result = descriptor.remove(*node);
                let up = descriptor.voters().filter(|v| planner.nodes[v].is_up()).count();
                assert!(up > descriptor.voter_count() / 2, "{op:?} cost the range its live quorum");
                result
            }
            OpKind::TransferLeader(_) | OpKind::Split(_) | OpKind::Merge { .. } => Ok(()),
        };
        outcome.unwrap_or_else(|e| panic!("{op:?} refused: {e}"));
        let outcome = match op.kind {
            OpKind::TransferLeader(to) => OpOutcome::LeaderMoved(to),
            _ => OpOutcome::Applied { descriptors: vec![descriptor], removed: None },
        };
        planner.operation_finished(now, op.id, outcome);
        applied.push(op);
    }
    applied
}

fn replicas_per_node(planner: &Planner) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for range in planner.descriptors() {
        for replica in range.replicas() {
            *counts.entry(replica.node).or_insert(0) += 1;
        }
    }
    counts
}

fn settle(planner: &mut Planner, from: Time, passes: u64) -> Time {
    let mut now = from;
    for _ in 0..passes {
        now = planner.poll_timeout().max(now);
        planner.handle_timeout(now);
        execute(planner, now);
    }
    now
}

#[test]
fn new_nodes_get_their_share_one_zone_at_a_time_within_the_limits() {
    let (nodes, ranges) = cluster(&["a", "b", "c", "a", "b", "c"], 60);
    let config = PlannerConfig { max_moves_total: 4, ..PlannerConfig::default() };
    let mut planner = Planner::new(config, 7, Time::ZERO, nodes, ranges).unwrap();
    planner.handle_timeout(Time::ZERO);
    let first: Vec<_> = std::iter::from_fn(|| planner.poll_action()).collect();
    assert_eq!(first.len(), 4, "at most max_moves_total plans at once");
    assert!(first.iter().all(|a| matches!(a, PlannerAction::Start(Operation { kind: OpKind::AddLearner(_), .. }))));
    for action in first {
        planner.actions.push_back(action);
    }
    settle(&mut planner, Time::ZERO, 400);
    let counts = replicas_per_node(&planner);
    assert!(counts.values().all(|&c| (29..=31).contains(&c)), "balanced within each zone: {counts:?}");
    for range in planner.descriptors() {
        let zones: BTreeSet<_> =
            range.voters().map(|v| planner.nodes[&v].locality.top().unwrap().to_string()).collect();
        assert_eq!((range.voter_count(), zones.len()), (3, 3), "{range:?}");
    }
}

#[test]
fn a_dead_nodes_replicas_are_replaced_only_after_the_grace_period() {
    let (nodes, ranges) = cluster(&["a", "b", "c", "a", "b", "c"], 12);
    let config = PlannerConfig { grace_period_us: 60_000_000, ..PlannerConfig::default() };
    let mut planner = Planner::new(config, 7, Time::ZERO, nodes, ranges).unwrap();
    let now = settle(&mut planner, Time::ZERO, 100);
    let on_one = planner.descriptors().filter(|r| r.has_replica(NodeId(1))).count();
    assert!(on_one > 0);
    planner.node_liveness(now, NodeId(1), Liveness::Dead);
    let before_grace = settle(&mut planner, now, 50);
    assert!(before_grace.micros_since(now) < 60_000_000);
    assert_eq!(planner.descriptors().filter(|r| r.has_replica(NodeId(1))).count(), on_one, "nothing moved yet");
    settle(&mut planner, now.add_micros(60_000_000), 100);
    assert_eq!(planner.descriptors().filter(|r| r.has_replica(NodeId(1))).count(), 0);
    assert!(planner.descriptors().all(|r| r.voter_count() == 3 && r.has_replica(NodeId(4))));
}

#[test]
fn a_new_planner_finishes_a_half_done_move_from_the_descriptors_alone() {
    let (nodes, mut ranges) = cluster(&["a", "b", "c", "a"], 2);
    ranges[0].add_learner(NodeId(4)).unwrap(); // the old planner died here
    ranges[1].add_learner(NodeId(4)).unwrap();
    ranges[1].promote(NodeId(4)).unwrap(); // ... and here
    let mut planner = Planner::new(PlannerConfig::default(), 1, Time::ZERO, nodes, ranges).unwrap();
    planner.handle_timeout(Time::ZERO);
    let ops = execute(&mut planner, Time::ZERO);
    assert!(ops.iter().any(|op| op.range == RangeId(1) && op.kind == OpKind::Remove(NodeId(4))), "{ops:?}");
    assert!(ops.iter().any(|op| op.range == RangeId(2) && matches!(op.kind, OpKind::Remove(NodeId(1 | 4)))));
    assert!(planner.descriptors().all(|r| r.voter_count() == 3 && r.learners().count() == 0));
}

#[test]
fn a_removal_that_would_lose_the_live_quorum_waits() {
    let (nodes, mut ranges) = cluster(&["a", "b", "c", "a"], 1);
    ranges[0].add_learner(NodeId(4)).unwrap();
    ranges[0].promote(NodeId(4)).unwrap(); // voters 1, 2, 3, 4
    let mut planner = Planner::new(PlannerConfig::default(), 1, Time::ZERO, nodes, ranges).unwrap();
    planner.node_liveness(Time::ZERO, NodeId(2), Liveness::Suspect);
    planner.node_liveness(Time::ZERO, NodeId(3), Liveness::Suspect);
    planner.node_liveness(Time::ZERO, NodeId(4), Liveness::Dead);
    planner.handle_timeout(Time::ZERO);
    // Removing any voter but 4 leaves 2 up of 3; removing 4 leaves 3 up
    // of 3: only 4 can go.
    let ops = execute(&mut planner, Time::ZERO);
    assert_eq!(ops.iter().map(|op| &op.kind).collect::<Vec<_>>(), vec![&OpKind::Remove(NodeId(4))]);
}

/// The ring's targets for every range of `planner`, over `members`.
fn ring_targets(planner: &Planner, members: &[u64]) -> BTreeMap<RangeId, BTreeSet<NodeId>> {
    let ring = RingPlacement::build(members.iter().map(|&n| (NodeId(n), 1)), 16, 3).unwrap();
    let zone = |id: NodeId| planner.nodes.get(&id).and_then(|n| n.locality.top());
    planner.descriptors().map(|d| (d.id, ring.targets(&d.span.start, 3, zone).into_iter().collect())).collect()
}

#[test]
fn under_the_ring_every_range_ends_on_its_targets_and_a_dead_node_is_replaced_by_the_ring_after_the_grace() {
    let (nodes, ranges) = cluster(&["a", "b", "c", "a", "b", "c"], 24);
    let config = PlannerConfig {
        placement: Placement::Ring { vnodes: 16 },
        grace_period_us: 60_000_000,
        // The id-order rebuild re-places the tokens of nodes after the
        // dead one, so some ranges not on it move too; a short window
        // lets them within the test.
        thrash_window_us: 30_000_000,
        ..PlannerConfig::default()
    };
    let mut planner = Planner::new(config, 3, Time::ZERO, nodes, ranges).unwrap();
    let now = settle(&mut planner, Time::ZERO, 200);
    let targets = ring_targets(&planner, &[1, 2, 3, 4, 5, 6]);
    for range in planner.descriptors() {
        assert_eq!(range.voters().collect::<BTreeSet<_>>(), targets[&range.id], "{range:?}");
        assert_eq!(range.learners().count(), 0);
    }
    assert!(planner.descriptors().any(|r| r.has_replica(NodeId(4))), "the ring uses the joined nodes");
    planner.node_liveness(now, NodeId(4), Liveness::Dead);
    let within_grace = settle(&mut planner, now, 20);
    assert!(within_grace.micros_since(now) < 60_000_000);
    for range in planner.descriptors() {
        assert_eq!(range.voters().collect::<BTreeSet<_>>(), targets[&range.id], "nothing moves within the grace");
    }
    settle(&mut planner, now.add_micros(60_000_000), 200);
    let targets = ring_targets(&planner, &[1, 2, 3, 5, 6]);
    for range in planner.descriptors() {
        assert_eq!(range.voters().collect::<BTreeSet<_>>(), targets[&range.id], "{range:?}");
    }
}

#[test]
fn a_ring_without_vnodes_is_refused() {
    let config = PlannerConfig { placement: Placement::Ring { vnodes: 0 }, ..PlannerConfig::default() };
    assert_eq!(Planner::new(config, 0, Time::ZERO, [], []).err(), Some(PlannerConfigError::Vnodes(0)));
}

#[test]
fn a_bad_config_is_refused_with_its_reason() {
    let refused = |config: PlannerConfig| Planner::new(config, 0, Time::ZERO, [], []).err().unwrap().to_string();
    assert!(refused(PlannerConfig { replication_factor: 0, ..PlannerConfig::default() }).contains("replication_factor"));
    assert!(refused(PlannerConfig { max_moves_total: 0, ..PlannerConfig::default() }).contains("max_moves_total"));
}
