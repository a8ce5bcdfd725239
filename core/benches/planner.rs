//! The planner's cost: one [`Planner::handle_timeout`] pass over 100,000
//! ranges on 1,000 nodes (the target: under a second).
//!
//!     cargo bench -p chorus-core --bench planner
//!
//! The cluster: 1,000 nodes of capacity 1 in 4 zones (2 racks each), and
//! 100,000 ranges of rf 3, range `i` in zones `i`, `i + 1` and `i + 2`
//! (mod 4), each zone handing out its nodes round-robin, so every node holds
//! 300 replicas and leads 100 ranges. Every range
//! has a load report (32 MiB, 10 qps: no split, no merge). Three scenarios,
//! each on a fresh planner and timed over one pass:
//!
//! - **balanced**: nothing to do; the pass looks at every range;
//! - **dead node**: one node declared dead, the pass runs after the grace
//!   period and starts repairs until the move limits stop it;
//! - **10 joins**: 10 empty nodes joined (spread over the zones); the pass
//!   starts rebalancing moves onto them until the limits stop it.
//!
//! Each row prints the median and best of [`PASSES`] passes in ms. Run
//! without `--bench` (as `cargo test` does; `test = true`) it builds a tiny
//! cluster, does one pass per scenario and checks what the planner asked
//! for.

use chorus_core::partition::{
    Liveness, Locality, NodeInfo, OpKind, Planner, PlannerAction, PlannerConfig, RangeDescriptor, RangeId, RangeLoad,
    Reason, Span,
};
use chorus_core::types::{NodeId, Time};
use std::collections::BTreeMap;
use std::time::Instant;

/// Zones (top-level failure domains).
const ZONES: u64 = 4;
/// Racks per zone.
const RACKS: u64 = 2;
/// Replicas per range.
const RF: u64 = 3;
/// Timed passes per scenario under `cargo bench`.
const PASSES: usize = 3;
/// Nodes joining in the third scenario.
const JOINERS: u64 = 10;

/// The size of a run.
#[derive(Clone, Copy)]
struct Size {
    nodes: u64,
    ranges: u64,
}

/// The full run: the target.
const FULL: Size = Size { nodes: 1_000, ranges: 100_000 };
/// The smoke run under `cargo test`.
const SMOKE: Size = Size { nodes: 40, ranges: 400 };

/// Node `n` (1-based) sits in zone `(n - 1) % ZONES`.
fn node(n: u64, now: Time) -> NodeInfo {
    NodeInfo::new(NodeId(n), locality(n), 1, now)
}

fn locality(n: u64) -> Locality {
    let zone = (n - 1) % ZONES;
    let rack = (n - 1) / ZONES % RACKS;
    Locality::new([format!("zone={zone}"), format!("rack={rack}"), format!("host={n}")])
}

/// The routing key that starts range `i` of `ranges` equal spans of the
/// 64-bit hash space (empty for the first).
fn span_start(i: u64, ranges: u64) -> Vec<u8> {
    if i == 0 {
        return Vec::new();
    }
    (((u128::from(i) << 64) / u128::from(ranges)) as u64).to_be_bytes().to_vec()
}

/// The balanced cluster of `size`: nodes and descriptors.
fn cluster(size: Size) -> (Vec<NodeInfo>, Vec<RangeDescriptor>) {
    let nodes: Vec<NodeInfo> = (1..=size.nodes).map(|n| node(n, Time::ZERO)).collect();
    let per_zone: Vec<Vec<u64>> =
        (0..ZONES).map(|z| (1..=size.nodes).filter(|n| (n - 1) % ZONES == z).collect()).collect();
    let mut next_in_zone = vec![0usize; ZONES as usize];
    let descriptors = (0..size.ranges)
        .map(|i| {
            let voters: Vec<NodeId> = (0..RF)
                .map(|k| {
                    let zone = ((i + k) % ZONES) as usize;
                    let members = &per_zone[zone];
                    let id = members[next_in_zone[zone] % members.len()];
                    next_in_zone[zone] += 1;
                    NodeId(id)
                })
                .collect();
            let end = (i + 1 < size.ranges).then(|| span_start(i + 1, size.ranges));
            let span = Span::new(span_start(i, size.ranges), end).expect("sorted starts");
            RangeDescriptor::new(RangeId(i + 1), span, voters)
        })
        .collect();
    (nodes, descriptors)
}

/// A planner over the balanced cluster, with every range's leader and load
/// reported: each range is led by its voter that leads the fewest ranges so
/// far (the lower id on a tie), which evens leaders out.
fn planner(size: Size) -> Planner {
    let (nodes, descriptors) = cluster(size);
    let mut led: BTreeMap<NodeId, u64> = BTreeMap::new();
    let leaders: Vec<(RangeId, NodeId)> = descriptors
        .iter()
        .map(|d| {
            let leader = d.voters().min_by_key(|v| (led.get(v).copied().unwrap_or(0), *v)).expect("rf voters");
            *led.entry(leader).or_insert(0) += 1;
            (d.id, leader)
        })
        .collect();
    let mut planner = Planner::new(PlannerConfig::default(), 7, Time::ZERO, nodes, descriptors).expect("valid");
    for (id, leader) in leaders {
        let load =
            RangeLoad { size_bytes: 32 << 20, qps: 10.0, size_midpoint: None, load_midpoint: None, hottest_key: None };
        planner.range_load(Time::ZERO, id, Some(leader), load);
    }
    planner
}

/// What a scenario does to the planner before the timed pass, and when the
/// pass runs.
fn prepare(scenario: &str, planner: &mut Planner, size: Size) -> Time {
    let grace = planner.config().grace_period_us;
    match scenario {
        "balanced" => Time::ZERO,
        "dead node" => {
            planner.node_liveness(Time::from_millis(1), NodeId(1), Liveness::Dead);
            Time::from_millis(1).add_micros(grace)
        }
        "10 joins" => {
            for n in size.nodes + 1..=size.nodes + JOINERS {
                planner.node_joined(Time::from_millis(1), NodeId(n), locality(n), 1);
            }
            Time::from_millis(2)
        }
        _ => unreachable!("known scenarios only"),
    }
}

/// Checks what one scenario's pass asked for.
fn check(scenario: &str, size: Size, actions: &[PlannerAction]) {
    let starts: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            PlannerAction::Start(op) => Some(op),
            PlannerAction::Event(_) => None,
        })
        .collect();
    match scenario {
        "balanced" => assert!(starts.is_empty(), "a balanced cluster needs nothing: {starts:?}"),
        "dead node" => {
            // Leaders move too: the dead node no longer counts for the
            // leader shares, which grow.
            let repairs: Vec<_> = starts.iter().filter(|op| matches!(op.reason, Reason::Repair { .. })).collect();
            assert!(!repairs.is_empty(), "the dead node's replicas are replaced: {starts:?}");
            for op in repairs {
                assert_eq!(op.reason, Reason::Repair { replaces: Some(NodeId(1)) }, "{op:?}");
                assert!(matches!(op.kind, OpKind::AddLearner(n) if n != NodeId(1)), "{op:?}");
            }
        }
        "10 joins" => {
            let adds: Vec<_> = starts.iter().filter(|op| matches!(op.kind, OpKind::AddLearner(_))).collect();
            assert!(!adds.is_empty(), "the new nodes get replicas: {starts:?}");
            for op in adds {
                assert!(matches!(op.kind, OpKind::AddLearner(n) if n.0 > size.nodes), "{op:?}");
                assert_eq!(op.reason, Reason::Rebalance, "{op:?}");
            }
        }
        _ => unreachable!("known scenarios only"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let full = std::env::args().any(|argument| argument == "--bench");
    let (size, passes) = if full { (FULL, PASSES) } else { (SMOKE, 1) };
    if !full {
        println!("(smoke run: {} nodes, {} ranges, checked; `cargo bench` runs the real one)", size.nodes, size.ranges);
    }
    for scenario in ["balanced", "dead node", "10 joins"] {
        let mut times_ms = Vec::with_capacity(passes);
        let mut started_ops = 0;
        for _ in 0..passes {
            let mut planner = planner(size);
            let at = prepare(scenario, &mut planner, size);
            let started = Instant::now();
            planner.handle_timeout(at);
            let actions: Vec<PlannerAction> = std::iter::from_fn(|| planner.poll_action()).collect();
            times_ms.push(started.elapsed().as_secs_f64() * 1e3);
            check(scenario, size, &actions);
            started_ops = actions.len();
        }
        times_ms.sort_by(f64::total_cmp);
        let (median, best) = (times_ms[times_ms.len() / 2], times_ms[0]);
        println!(
            "planner pass, {} ranges × {} nodes, {scenario:<10} {median:>9.1} ms  (best {best:.1}; {started_ops} actions)",
            size.ranges, size.nodes
        );
    }
}
