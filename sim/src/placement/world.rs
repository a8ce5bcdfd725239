//! One seed's placement run: the planner against a cluster modelled at the
//! level of range descriptors, in virtual time.
//!
//! The run has three phases:
//!
//! 1. **Join waves.** The cluster starts with `rf` nodes (one per zone)
//!    holding every range; the other nodes join in two or three waves
//!    within [`JOIN_PHASE_US`], and the planner spreads the ranges.
//! 2. **Fault phase** ([`FAULT_PHASE_US`]). Faults drawn from the seed
//!    strike: nodes fail briefly (back before the grace period), for long
//!    (back after it) or for good; nodes are decommissioned or change
//!    capacity; ranges grow (and split), shrink (and merge), get hot (and
//!    split for load) or hot on one key (reported, never split); the
//!    planner crashes and restarts elsewhere from the descriptors alone.
//!    Every operation takes simulated time and may fail.
//! 3. **Settle.** No new faults; nodes due back come back. The cluster
//!    must converge within a bound derived from the configuration (see
//!    `checks.rs`).
//!
//! The world holds the truth (what the meta range would hold: descriptors,
//! leaders, sizes and loads, and which nodes are really up) and tells the
//! planner what SWIM and the ranges' leaders would tell it, with delays.
//!
//! Node numbers are node ids (1-based): `n3` is `NodeId(3)`. Determinism:
//! one ChaCha8 stream draws every choice; the planner's seed is drawn from
//! it; all maps are ordered.

use super::report::SeedMetrics;
use super::{PlacementOptions, PlacementReport, PlacementSeedOutcome};
use crate::skeleton::{run_events, Engine, LoopEnd, World, MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND};
use crate::trace::Trace;
use chorus_core::partition::{
    Liveness, Locality, NodeInfo, OpFailure, OpId, OpKind, OpOutcome, Operation, Planner, PlannerAction, PlannerConfig,
    PlannerEvent, RangeDescriptor, RangeId, RangeLoad, Reason, Span, SplitPolicy,
};
use chorus_core::{NodeId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Nodes join within this long of the start.
pub const JOIN_PHASE_US: u64 = 10_000_000;
/// Length of the fault phase.
pub const FAULT_PHASE_US: u64 = 60_000_000;
/// The planner's grace period before replacing a dead node's replicas.
pub const GRACE_US: u64 = 10_000_000;
/// The planner's thrash window.
pub const THRASH_WINDOW_US: u64 = 60_000_000;
/// The planner's pass interval.
pub const PASS_US: u64 = 500_000;
/// The planner's per-node move limit.
pub const MAX_MOVES_PER_NODE: usize = 2;
/// The planner's total move limit.
pub const MAX_MOVES_TOTAL: usize = 8;
/// Leaders report their ranges' sizes and loads this often.
pub const REPORT_EVERY_US: u64 = 2_000_000;
/// Convergence (and decommission completion) is checked this often.
pub const CHECK_EVERY_US: u64 = 1_000_000;
/// SWIM suspects a node this long after it went down...
pub const SUSPECT_AFTER_US: u64 = 1_000_000;
/// ... and declares it failed this long after.
pub const DEAD_AFTER_US: u64 = 3_000_000;
/// SWIM reports a node back this long after it came up.
pub const ALIVE_AFTER_US: u64 = 500_000;
/// Longest an operation takes.
pub const MAX_OP_US: u64 = 3_000_000;
/// Operations that fail for no reason the planner could know, per mille.
pub const OP_FAILURE_PER_MILLE: u64 = 30;
/// Top-level failure domains (zones) at least; there are as many as the
/// replication factor if it is larger. Node `n` is in zone `(n - 1) %
/// zones`. A node is never taken away for good (failed for good,
/// decommissioned) if it is the last staying node of its zone, so that
/// every range can always have one replica per zone.
pub const MIN_ZONES: u64 = 3;
/// Hard cap on events in one run.
pub const MAX_EVENTS_PER_RUN: u64 = 50_000_000;
/// Faults drawn per seed: at least...
pub const MIN_FAULTS: u64 = 6;
/// ... and at most.
pub const MAX_FAULTS: u64 = 20;

const MIB: u64 = 1 << 20;

/// The kind of a trace record (the first word of its binary form; part of
/// the trace hash: never renumber).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum PlacementRecord {
    /// Words: seed, nodes, ranges, rf.
    RunStarted = 0,
    /// A node joined. Word: node.
    Joined = 1,
    /// A node went down. Words: node, kind (1 brief, 2 long, 3 for good).
    Down = 2,
    /// A node came back. Word: node.
    Up = 3,
    /// The planner was told of a node's liveness. Words: node, liveness (0
    /// live, 1 suspect, 2 dead, 3 left).
    Told = 4,
    /// A decommission began. Word: node.
    Decommission = 5,
    /// A node's capacity changed. Words: node, capacity.
    Capacity = 6,
    /// A range's size or load changed. Words: range, MiB, qps, hot key.
    RangeLoad = 7,
    /// The planner started an operation. Words: epoch, op, range,
    /// generation, kind, node or 0.
    OpStarted = 8,
    /// An operation ended. Words: epoch, op, range, outcome (0 applied, 1
    /// leader moved, 2 failed).
    OpDone = 9,
    /// A range has a new leader. Words: range, node.
    Leader = 10,
    /// The planner restarted. Words: epoch, host node.
    PlannerRestart = 11,
    /// The planner raised an event. Words: kind (1 hot key, 2 cannot
    /// place), range.
    PlannerEvent = 12,
    /// The fault phase ended. No words.
    FaultPhaseEnded = 13,
    /// The cluster converged. Words: microseconds after the fault phase.
    Converged = 14,
    /// A checker failed. No words.
    Violation = 15,
    /// The verdict. Word: 1 if failed.
    Verdict = 16,
    /// A handler panicked.
    Panic = 17,
}

impl From<PlacementRecord> for u64 {
    fn from(record: PlacementRecord) -> u64 {
        record as u64
    }
}

/// A fault the seed draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A node goes down and comes back before the grace period ends.
    Brief,
    /// A node goes down and comes back after the grace period.
    Long,
    /// A node goes down for good.
    Permanent,
    /// A node is decommissioned.
    Decommission,
    /// A node's capacity doubles or halves.
    Capacity,
    /// A range grows by tens of MiB.
    Grow,
    /// A range and its neighbour shrink to a few MiB.
    Shrink,
    /// A range gets hot for a while.
    Hot,
    /// A range gets hot on one key for a while.
    HotKey,
    /// The planner crashes and restarts elsewhere.
    PlannerCrash,
}

/// Faults and their weights.
const FAULT_WEIGHTS: [(Fault, u64); 10] = [
    (Fault::Brief, 4),
    (Fault::Long, 1),
    (Fault::Permanent, 1),
    (Fault::Decommission, 1),
    (Fault::Capacity, 1),
    (Fault::Grow, 3),
    (Fault::Shrink, 2),
    (Fault::Hot, 2),
    (Fault::HotKey, 1),
    (Fault::PlannerCrash, 1),
];

/// What can happen.
#[derive(Clone, Debug)]
pub enum SimEvent {
    /// A node joins.
    Join(NodeId),
    /// A fault strikes.
    Fault(Fault),
    /// A node that went down comes back (if `life` is still current).
    Recover {
        /// The node.
        node: NodeId,
        /// Its life when it went down.
        life: u64,
    },
    /// SWIM's news reaches the planner (if `life` is still current).
    Tell {
        /// The node.
        node: NodeId,
        /// The news.
        liveness: Liveness,
        /// The node's life when the news was born.
        life: u64,
    },
    /// A range without a leader elects one (if it has a live quorum).
    Elect(RangeId),
    /// An operation finishes.
    OpDone {
        /// The planner's epoch that asked for it.
        epoch: u64,
        /// Its id.
        op: OpId,
    },
    /// The planner's timer (stale unless `epoch` and `at` are current).
    PlannerTimer {
        /// The planner's epoch.
        epoch: u64,
    },
    /// The planner restarts on another node.
    PlannerRestart,
    /// A hot range cools down.
    Cool(RangeId),
    /// Leaders report sizes and loads.
    Report,
    /// Periodic check: decommissions done, convergence.
    Check,
    /// The fault phase ends.
    FaultPhaseEnd,
}

/// A node as the world knows it.
#[derive(Clone, Debug)]
pub(super) struct SimNode {
    pub(super) locality: Locality,
    pub(super) capacity: u32,
    pub(super) joined: bool,
    pub(super) up: bool,
    /// Down for good, or decommissioned and removed.
    pub(super) gone: bool,
    pub(super) decommissioning: bool,
    /// Bumped whenever it goes down or up: stale events check it.
    pub(super) life: u64,
    /// What the planner was last told, and when.
    pub(super) told: Liveness,
    pub(super) told_at: u64,
    /// Replicas when the run started (for the optimal move count).
    pub(super) initial_replicas: u64,
    /// Replicas splits gave and merges took.
    pub(super) free_replicas: i64,
}

/// A range as the world knows it.
#[derive(Clone, Debug)]
pub(super) struct SimRange {
    pub(super) descriptor: RangeDescriptor,
    pub(super) leader: Option<NodeId>,
    pub(super) size: u64,
    pub(super) qps: u64,
    pub(super) hot_key: bool,
    /// Whether the last report to the planner named a hot key.
    pub(super) reported_hot_key: bool,
    pub(super) electing: bool,
}

/// An operation in flight.
#[derive(Clone, Debug)]
pub(super) struct InFlight {
    pub(super) op: Operation,
    /// Nodes it counts against for the per-node limit.
    pub(super) limited: Vec<NodeId>,
}

/// The world of one seed.
pub struct PlacementWorld {
    pub(super) options: PlacementOptions,
    pub(super) engine: Engine<SimEvent>,
    pub(super) nodes: BTreeMap<NodeId, SimNode>,
    pub(super) ranges: BTreeMap<RangeId, SimRange>,
    pub(super) planner: Planner,
    pub(super) config: PlannerConfig,
    pub(super) epoch: u64,
    pub(super) planner_host: NodeId,
    pub(super) planner_timer_at: Option<u64>,
    pub(super) in_flight: BTreeMap<(u64, OpId), InFlight>,
    pub(super) next_range: u64,
    pub(super) fault_phase_over: bool,
    pub(super) settle_started: u64,
    pub(super) settle_bound_us: u64,
    pub(super) finished: bool,
    pub(super) failures: Vec<String>,
    pub(super) metrics: SeedMetrics,
    /// (range, node) → (added?, when, epoch): completed moves, for the
    /// thrash checker.
    pub(super) recent: BTreeMap<(RangeId, NodeId), (bool, u64, u64)>,
    profile: String,
}

/// The routing key that starts range `i` of `ranges` equal spans of the
/// 64-bit hash space (empty for the first).
fn span_start(i: u64, ranges: u64) -> Vec<u8> {
    if i == 0 {
        return Vec::new();
    }
    let start = ((u128::from(i) << 64) / u128::from(ranges)) as u64;
    start.to_be_bytes().to_vec()
}

/// A routing key as a point of the 64-bit hash space (its first 8 bytes,
/// big-endian, zero-padded).
fn point(key: &[u8]) -> u128 {
    let mut bytes = [0u8; 8];
    for (slot, byte) in bytes.iter_mut().zip(key) {
        *slot = *byte;
    }
    u128::from(u64::from_be_bytes(bytes))
}

/// The middle of a span of the hash space, if it has one strictly inside.
fn midpoint(span: &Span) -> Option<Vec<u8>> {
    let start = point(&span.start);
    let end = span.end.as_deref().map_or(1u128 << 64, point);
    let middle = start + (end - start) / 2;
    (middle > start && middle < end).then(|| (middle as u64).to_be_bytes().to_vec())
}

impl PlacementWorld {
    /// The world of `options.seed`: `rf` founding nodes holding every range,
    /// the others waiting to join.
    pub fn new(options: PlacementOptions) -> PlacementWorld {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let config = PlannerConfig {
            replication_factor: options.rf,
            grace_period_us: GRACE_US,
            max_moves_per_node: MAX_MOVES_PER_NODE,
            max_moves_total: MAX_MOVES_TOTAL,
            thrash_window_us: THRASH_WINDOW_US,
            pass_interval_us: PASS_US,
            split: SplitPolicy { load_sustain_us: 5_000_000, ..SplitPolicy::default() },
            injected_bug: options.bug,
            placement: options.strategy.placement(),
            ..PlannerConfig::default()
        };
        let founders: Vec<NodeId> = (1..=options.rf as u64).map(NodeId).collect();
        let zones = MIN_ZONES.max(options.rf as u64);
        let nodes: BTreeMap<NodeId, SimNode> = (1..=options.nodes as u64)
            .map(|n| {
                let locality = Locality::new([
                    format!("zone={}", (n - 1) % zones),
                    format!("rack={}", (n - 1) / zones % 2),
                    format!("host={n}"),
                ]);
                let founder = n <= options.rf as u64;
                let node = SimNode {
                    locality,
                    capacity: 1,
                    joined: founder,
                    up: founder,
                    gone: false,
                    decommissioning: false,
                    life: 0,
                    told: Liveness::Live,
                    told_at: 0,
                    initial_replicas: if founder { options.ranges as u64 } else { 0 },
                    free_replicas: 0,
                };
                (NodeId(n), node)
            })
            .collect();
        let count = options.ranges as u64;
        let ranges: BTreeMap<RangeId, SimRange> = (0..count)
            .map(|i| {
                let end = (i + 1 < count).then(|| span_start(i + 1, count));
                let span = Span { start: span_start(i, count), end };
                let descriptor = RangeDescriptor::new(RangeId(i + 1), span, founders.iter().copied());
                let range = SimRange {
                    descriptor,
                    leader: Some(founders[0]),
                    size: rng.random_range(4..40) * MIB,
                    qps: rng.random_range(10..100),
                    hot_key: false,
                    reported_hot_key: false,
                    electing: false,
                };
                (RangeId(i + 1), range)
            })
            .collect();
        let infos = founders.iter().map(|&id| NodeInfo::new(id, nodes[&id].locality.clone(), 1, Time::ZERO));
        let planner_seed = rng.random();
        let descriptors = ranges.values().map(|r| r.descriptor.clone());
        let planner = Planner::new(config.clone(), planner_seed, Time::ZERO, infos, descriptors)
            .expect("the simulator's planner configuration is valid");
        let faults = rng.random_range(MIN_FAULTS..=MAX_FAULTS);
        let profile = format!("{faults} faults, {} joining nodes", options.nodes - options.rf);
        PlacementWorld {
            next_range: count + 1,
            engine: Engine::new(rng, options.keep_trace_text),
            options,
            nodes,
            ranges,
            planner,
            config,
            epoch: 1,
            planner_host: founders[0],
            planner_timer_at: None,
            in_flight: BTreeMap::new(),
            fault_phase_over: false,
            settle_started: 0,
            settle_bound_us: 0,
            finished: false,
            failures: Vec::new(),
            metrics: SeedMetrics::default(),
            recent: BTreeMap::new(),
            profile,
        }
    }

    /// Runs the seed to its verdict.
    pub fn run(mut self) -> PlacementReport {
        let o = &self.options;
        let (seed, nodes, ranges, rf) = (o.seed, o.nodes as u64, o.ranges as u64, o.rf as u64);
        let profile = self.profile.clone();
        self.engine.record(PlacementRecord::RunStarted, &[seed, nodes, ranges, rf], || {
            format!("start: {nodes} nodes ({rf} founders), {ranges} ranges, rf {rf}, profile: {profile}")
        });
        self.schedule_joins();
        self.schedule_faults();
        self.engine.schedule_at(JOIN_PHASE_US + FAULT_PHASE_US, SimEvent::FaultPhaseEnd);
        self.engine.schedule_at(REPORT_EVERY_US, SimEvent::Report);
        self.engine.schedule_at(CHECK_EVERY_US, SimEvent::Check);
        self.drive_planner();
        let per_second = MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND * nodes;
        match run_events(&mut self, MAX_EVENTS_PER_RUN, per_second) {
            LoopEnd::Finished | LoopEnd::QueueEmpty => {}
            LoopEnd::EventLimit => self.fail(format!("the run exceeded {MAX_EVENTS_PER_RUN} events")),
            LoopEnd::EventStorm { second, limit } => {
                self.fail(format!("event storm: more than {limit} events in simulated second {second}"))
            }
            LoopEnd::Panic(message) => {
                self.engine.record(PlacementRecord::Panic, &[], || format!("PANIC {message}"));
                self.failures.push(message);
            }
        }
        if !self.finished && self.failures.is_empty() {
            self.fail("the run ended before the cluster converged".into());
        }
        let failed = !self.failures.is_empty();
        let first = self.failures.first().cloned().unwrap_or_default();
        let verdict = if failed { "FAIL" } else { "PASS" };
        self.engine.record(PlacementRecord::Verdict, &[failed as u64], || format!("verdict {verdict} {first}"));
        let (trace_hash, trace_text) = std::mem::replace(&mut self.engine.trace, Trace::new(false, 0)).finish();
        PlacementReport {
            outcome: PlacementSeedOutcome {
                seed: self.options.seed,
                trace_hash,
                failures: self.failures,
                events: self.engine.events,
                sim_micros: self.engine.now,
                metrics: self.metrics,
            },
            trace_text,
            profile: self.profile,
            history: (),
            timeline: None,
        }
    }

    /// Records a checker failure; the run stops.
    pub(super) fn fail(&mut self, message: String) {
        let text = message.clone();
        self.engine.record(PlacementRecord::Violation, &[], || format!("VIOLATION {text}"));
        self.failures.push(message);
    }

    fn schedule_joins(&mut self) {
        let joiners: Vec<NodeId> = self.nodes.iter().filter(|(_, n)| !n.joined).map(|(&id, _)| id).collect();
        let waves = self.engine.rng.random_range(2..=3u64);
        let wave_times: Vec<u64> = (0..waves).map(|w| (w * JOIN_PHASE_US / waves).max(200_000)).collect();
        for (i, node) in joiners.into_iter().enumerate() {
            let at = wave_times[i % wave_times.len()] + self.engine.rng.random_range(0..200_000);
            self.engine.schedule_at(at, SimEvent::Join(node));
        }
    }

    fn schedule_faults(&mut self) {
        let count = self.engine.rng.random_range(MIN_FAULTS..=MAX_FAULTS);
        let total: u64 = FAULT_WEIGHTS.iter().map(|(_, w)| w).sum();
        for _ in 0..count {
            let at = JOIN_PHASE_US + self.engine.rng.random_range(0..FAULT_PHASE_US);
            let mut pick = self.engine.rng.random_range(0..total);
            let fault = FAULT_WEIGHTS
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map(|(f, _)| *f)
                .expect("pick < total");
            self.engine.schedule_at(at, SimEvent::Fault(fault));
        }
    }

    /// Hands the planner's queued actions to the executor and re-arms its
    /// timer.
    pub(super) fn drive_planner(&mut self) {
        while let Some(action) = self.planner.poll_action() {
            match action {
                PlannerAction::Start(op) => self.start_operation(op),
                PlannerAction::Event(event) => {
                    let (kind, range) = match &event {
                        PlannerEvent::HotKey { range, .. } => (1, *range),
                        PlannerEvent::CannotPlace { range } => (2, *range),
                    };
                    self.engine
                        .record(PlacementRecord::PlannerEvent, &[kind, range.0], || format!("planner: {event:?}"));
                }
            }
        }
        let at = self.planner.poll_timeout().as_micros().max(self.engine.now);
        if self.planner_timer_at != Some(at) {
            self.planner_timer_at = Some(at);
            self.engine.schedule_at(at, SimEvent::PlannerTimer { epoch: self.epoch });
        }
    }

    fn now(&self) -> Time {
        Time::from_micros(self.engine.now)
    }
}

impl World for PlacementWorld {
    type Event = SimEvent;

    fn engine(&mut self) -> &mut Engine<SimEvent> {
        &mut self.engine
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Join(node) => self.join(node),
            SimEvent::Fault(fault) => self.fault(fault),
            SimEvent::Recover { node, life } => self.recover(node, life),
            SimEvent::Tell { node, liveness, life } => self.tell(node, liveness, life),
            SimEvent::Elect(range) => self.elect(range),
            SimEvent::OpDone { epoch, op } => self.finish_operation(epoch, op),
            SimEvent::PlannerTimer { epoch } => {
                if epoch == self.epoch && self.planner_timer_at == Some(self.engine.now) {
                    self.planner_timer_at = None;
                    let now = self.now();
                    self.planner.handle_timeout(now);
                }
            }
            SimEvent::PlannerRestart => self.restart_planner(),
            SimEvent::Cool(range) => {
                if let Some(r) = self.ranges.get_mut(&range) {
                    (r.qps, r.hot_key) = (50, false);
                    self.record_load(range);
                }
            }
            SimEvent::Report => self.report(),
            SimEvent::Check => self.periodic_check(),
            SimEvent::FaultPhaseEnd => self.end_fault_phase(),
        }
        if !self.finished() {
            self.drive_planner();
        }
    }

    fn finished(&self) -> bool {
        self.finished || !self.failures.is_empty()
    }
}

impl PlacementWorld {
    fn join(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("joiners exist");
        node.joined = true;
        node.up = true;
        (node.told, node.told_at) = (Liveness::Live, self.engine.now);
        let (locality, capacity) = (node.locality.clone(), node.capacity);
        self.engine.record(PlacementRecord::Joined, &[id.0], || format!("n{} joins ({locality:?})", id.0));
        let now = self.now();
        self.planner.node_joined(now, id, locality, capacity);
    }

    /// Nodes that may take a fault now: joined, up, not gone.
    fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.joined && n.up && !n.gone).map(|(&id, _)| id).collect()
    }

    /// Nodes still expected to serve at the end (not gone, not leaving).
    fn staying_nodes(&self) -> usize {
        self.nodes.values().filter(|n| !n.gone && !n.decommissioning).count()
    }

    /// Whether `id`'s zone has another node that is joined, not gone and
    /// not leaving.
    fn zone_keeps_a_node_without(&self, id: NodeId) -> bool {
        let zone = self.nodes[&id].locality.top();
        self.nodes
            .iter()
            .any(|(&other, n)| other != id && n.joined && !n.gone && !n.decommissioning && n.locality.top() == zone)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.engine.rng.random_range(0..items.len())])
    }

    fn fault(&mut self, fault: Fault) {
        let down_now = self.nodes.values().filter(|n| n.joined && !n.up && !n.gone).count();
        // A node down for good that still holds replicas.
        let unrepaired = self.nodes.iter().any(|(&id, n)| n.gone && !n.up && self.replicas_on(id) > 0);
        let spare = self.staying_nodes() > self.options.rf + 1;
        match fault {
            Fault::Brief | Fault::Long | Fault::Permanent => {
                let serious = fault != Fault::Brief;
                if serious && (down_now > 0 || unrepaired || (fault == Fault::Permanent && !spare)) {
                    return;
                }
                let for_good = fault == Fault::Permanent;
                let candidates: Vec<NodeId> = self
                    .up_nodes()
                    .into_iter()
                    .filter(|id| !(serious && self.nodes[id].decommissioning))
                    .filter(|&id| !for_good || self.zone_keeps_a_node_without(id))
                    .collect();
                if let Some(node) = self.pick(&candidates) {
                    self.take_down(node, fault);
                }
            }
            Fault::Decommission => {
                let candidates: Vec<NodeId> = self
                    .up_nodes()
                    .into_iter()
                    .filter(|id| !self.nodes[id].decommissioning && self.zone_keeps_a_node_without(*id))
                    .collect();
                if let Some(node) = self.pick(&candidates).filter(|_| spare) {
                    self.nodes.get_mut(&node).expect("picked").decommissioning = true;
                    self.engine
                        .record(PlacementRecord::Decommission, &[node.0], || format!("n{} decommissioned", node.0));
                    let now = self.now();
                    self.planner.decommission(now, node);
                }
            }
            Fault::Capacity => {
                if let Some(node) = self.pick(&self.up_nodes()) {
                    let n = self.nodes.get_mut(&node).expect("picked");
                    n.capacity = if n.capacity == 1 { 2 } else { 1 };
                    let capacity = n.capacity;
                    self.engine.record(PlacementRecord::Capacity, &[node.0, u64::from(capacity)], || {
                        format!("n{} capacity now {capacity}", node.0)
                    });
                    let now = self.now();
                    self.planner.set_capacity(now, node, capacity);
                }
            }
            Fault::Grow | Fault::Shrink | Fault::Hot | Fault::HotKey => self.range_fault(fault),
            Fault::PlannerCrash => {
                let after = self.engine.rng.random_range(100_000..2_000_000);
                self.engine.schedule(after, SimEvent::PlannerRestart);
            }
        }
    }

    fn range_fault(&mut self, fault: Fault) {
        let ids: Vec<RangeId> = self.ranges.keys().copied().collect();
        let Some(id) = self.pick(&ids) else { return };
        match fault {
            Fault::Grow => {
                let grow = self.engine.rng.random_range(20..60) * MIB;
                self.ranges.get_mut(&id).expect("picked").size += grow;
            }
            Fault::Shrink => {
                let next = self.ranges.range(id..).nth(1).map(|(&next, _)| next);
                for range in [Some(id), next].into_iter().flatten() {
                    let size = self.engine.rng.random_range(1..8) * MIB;
                    self.ranges.get_mut(&range).expect("exists").size = size;
                    self.record_load(range);
                }
                return;
            }
            Fault::Hot | Fault::HotKey => {
                let qps = self.engine.rng.random_range(3_000..8_000);
                let range = self.ranges.get_mut(&id).expect("picked");
                range.qps = qps;
                range.hot_key = fault == Fault::HotKey;
                let cool_after = self.engine.rng.random_range(15_000_000..25_000_000);
                self.engine.schedule(cool_after, SimEvent::Cool(id));
            }
            _ => unreachable!("only range faults"),
        }
        self.record_load(id);
    }

    fn record_load(&mut self, id: RangeId) {
        let range = &self.ranges[&id];
        let words = [id.0, range.size / MIB, range.qps, range.hot_key as u64];
        self.engine.record(PlacementRecord::RangeLoad, &words, || {
            format!("{id}: {} MiB, {} qps{}", words[1], words[2], if words[3] == 1 { ", hot key" } else { "" })
        });
    }

    fn take_down(&mut self, id: NodeId, fault: Fault) {
        let node = self.nodes.get_mut(&id).expect("picked");
        node.up = false;
        node.life += 1;
        let life = node.life;
        let kind = match fault {
            Fault::Brief => 1,
            Fault::Long => 2,
            _ => 3,
        };
        if fault == Fault::Permanent {
            node.gone = true;
        }
        self.engine.record(PlacementRecord::Down, &[id.0, kind], || format!("n{} down ({fault:?})", id.0));
        let back_after = match fault {
            Fault::Brief => Some(self.engine.rng.random_range(500_000..GRACE_US / 2)),
            Fault::Long => Some(GRACE_US + self.engine.rng.random_range(5_000_000..20_000_000)),
            _ => None,
        };
        if let Some(after) = back_after {
            self.engine.schedule(after, SimEvent::Recover { node: id, life });
        }
        self.engine.schedule(SUSPECT_AFTER_US, SimEvent::Tell { node: id, liveness: Liveness::Suspect, life });
        self.engine.schedule(DEAD_AFTER_US, SimEvent::Tell { node: id, liveness: Liveness::Dead, life });
        let led: Vec<RangeId> = self.ranges.iter().filter(|(_, r)| r.leader == Some(id)).map(|(&r, _)| r).collect();
        for range in led {
            self.lose_leader(range);
        }
        if self.planner_host == id {
            let after = self.engine.rng.random_range(1_000_000..3_000_000);
            self.engine.schedule(after, SimEvent::PlannerRestart);
        }
    }

    fn recover(&mut self, id: NodeId, life: u64) {
        let node = self.nodes.get_mut(&id).expect("exists");
        if node.life != life || node.gone {
            return;
        }
        node.up = true;
        node.life += 1;
        let life = node.life;
        self.engine.record(PlacementRecord::Up, &[id.0], || format!("n{} up", id.0));
        self.engine.schedule(ALIVE_AFTER_US, SimEvent::Tell { node: id, liveness: Liveness::Live, life });
        let leaderless: Vec<RangeId> = self
            .ranges
            .iter()
            .filter(|(_, r)| r.leader.is_none() && !r.electing && r.descriptor.has_replica(id))
            .map(|(&r, _)| r)
            .collect();
        for range in leaderless {
            self.schedule_election(range);
        }
    }

    fn tell(&mut self, id: NodeId, liveness: Liveness, life: u64) {
        let node = self.nodes.get_mut(&id).expect("exists");
        if node.life != life || node.told == liveness || node.told == Liveness::Left {
            return;
        }
        node.told = liveness;
        node.told_at = self.engine.now;
        self.engine.record(PlacementRecord::Told, &[id.0, liveness as u64], || {
            format!("planner told n{} is {liveness:?}", id.0)
        });
        let now = self.now();
        self.planner.node_liveness(now, id, liveness);
    }

    fn lose_leader(&mut self, id: RangeId) {
        if let Some(range) = self.ranges.get_mut(&id) {
            range.leader = None;
            if !range.electing {
                self.schedule_election(id);
            }
        }
    }

    fn schedule_election(&mut self, id: RangeId) {
        if let Some(range) = self.ranges.get_mut(&id) {
            range.electing = true;
            let after = self.engine.rng.random_range(300_000..1_000_000);
            self.engine.schedule(after, SimEvent::Elect(id));
        }
    }

    /// Whether `range`'s voters on up nodes are a majority of its voters.
    pub(super) fn has_live_quorum(&self, descriptor: &RangeDescriptor) -> bool {
        let voters = descriptor.voter_count();
        let up = descriptor.voters().filter(|v| self.nodes.get(v).is_some_and(|n| n.up)).count();
        up > voters / 2
    }

    fn elect(&mut self, id: RangeId) {
        let Some(range) = self.ranges.get(&id) else { return };
        if range.leader.is_some() {
            self.ranges.get_mut(&id).expect("exists").electing = false;
            return;
        }
        if !self.has_live_quorum(&range.descriptor) {
            self.ranges.get_mut(&id).expect("exists").electing = false;
            return; // A voter coming back schedules the next election.
        }
        let up: Vec<NodeId> = range.descriptor.voters().filter(|v| self.nodes[v].up).collect();
        let leader = self.pick(&up).expect("a live quorum has a live voter");
        let range = self.ranges.get_mut(&id).expect("exists");
        (range.leader, range.electing) = (Some(leader), false);
        self.engine.record(PlacementRecord::Leader, &[id.0, leader.0], || format!("{id}: n{} leads", leader.0));
    }

    pub(super) fn replicas_on(&self, id: NodeId) -> usize {
        self.ranges.values().filter(|r| r.descriptor.has_replica(id)).count()
    }

    fn restart_planner(&mut self) {
        let hosts: Vec<NodeId> = self.up_nodes();
        let Some(host) = self.pick(&hosts) else { return };
        self.epoch += 1;
        self.planner_host = host;
        self.metrics.planner_restarts += 1;
        let epoch = self.epoch;
        self.engine.record(PlacementRecord::PlannerRestart, &[epoch, host.0], || {
            format!("planner restarts on n{} (epoch {epoch}) from the descriptors", host.0)
        });
        let now = self.now();
        let infos: Vec<NodeInfo> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.joined)
            .map(|(&id, n)| NodeInfo {
                id,
                locality: n.locality.clone(),
                capacity: n.capacity,
                liveness: n.told,
                since: Time::from_micros(n.told_at),
                decommissioning: n.decommissioning,
            })
            .collect();
        let seed = self.engine.rng.random();
        let descriptors = self.ranges.values().map(|r| r.descriptor.clone());
        self.planner = Planner::new(self.config.clone(), seed, now, infos, descriptors).expect("valid config");
        self.planner_timer_at = None;
    }

    fn report(&mut self) {
        let now = self.now();
        let reports: Vec<(RangeId, NodeId, RangeLoad)> = self
            .ranges
            .iter()
            .filter_map(|(&id, r)| {
                let leader = r.leader.filter(|l| self.nodes[l].up)?;
                let middle = midpoint(&r.descriptor.span);
                let load = RangeLoad {
                    size_bytes: r.size,
                    qps: r.qps as f64,
                    size_midpoint: middle.clone(),
                    load_midpoint: middle,
                    hottest_key: r.hot_key.then(|| (r.descriptor.span.start.clone(), 0.9)),
                };
                Some((id, leader, load))
            })
            .collect();
        for (id, leader, load) in reports {
            self.ranges.get_mut(&id).expect("reported").reported_hot_key = load.hottest_key.is_some();
            self.planner.range_load(now, id, Some(leader), load);
        }
        self.engine.schedule(REPORT_EVERY_US, SimEvent::Report);
    }
}

/// An operation's kind as a trace word, and the node it names (0 if none).
fn op_words(kind: &OpKind) -> (u64, u64) {
    match kind {
        OpKind::AddLearner(n) => (1, n.0),
        OpKind::Promote(n) => (2, n.0),
        OpKind::Remove(n) => (3, n.0),
        OpKind::TransferLeader(n) => (4, n.0),
        OpKind::Split(_) => (5, 0),
        OpKind::Merge { right, .. } => (6, right.0),
    }
}

impl PlacementWorld {
    /// The nodes an operation counts against for the per-node limit (as the
    /// planner defines it: the node receiving a replica, and a live node
    /// giving one up).
    fn limited_nodes(&self, kind: &OpKind) -> Vec<NodeId> {
        match kind {
            OpKind::AddLearner(n) | OpKind::Promote(n) => vec![*n],
            // Up as the planner knows it (it cannot count what it was not told).
            OpKind::Remove(n)
                if self.nodes.get(n).is_some_and(|node| matches!(node.told, Liveness::Live | Liveness::Suspect)) =>
            {
                vec![*n]
            }
            _ => Vec::new(),
        }
    }

    fn start_operation(&mut self, op: Operation) {
        self.metrics.operations += 1;
        let (kind, node) = op_words(&op.kind);
        let epoch = self.epoch;
        let words = [epoch, op.id.0, op.range.0, op.generation, kind, node];
        self.engine.record(PlacementRecord::OpStarted, &words, || {
            format!(
                "planner#{epoch} op {}: {} gen {} {:?} ({:?})",
                op.id.0, op.range, op.generation, op.kind, op.reason
            )
        });
        self.check_start(&op);
        let limited = self.limited_nodes(&op.kind);
        let duration = match &op.kind {
            OpKind::AddLearner(_) => {
                let size = self.ranges.get(&op.range).map_or(0, |r| r.size);
                (200_000 + size.saturating_mul(1_000_000) / (32 * MIB)).min(MAX_OP_US)
            }
            _ => self.engine.rng.random_range(10_000..200_000),
        };
        self.engine.schedule(duration, SimEvent::OpDone { epoch, op: op.id });
        self.in_flight.insert((epoch, op.id), InFlight { op, limited });
        self.check_limits();
        self.metrics.max_concurrent_moves = self.metrics.max_concurrent_moves.max(self.in_flight.len() as u64);
    }

    fn finish_operation(&mut self, epoch: u64, id: OpId) {
        let Some(InFlight { op, .. }) = self.in_flight.remove(&(epoch, id)) else { return };
        let outcome = self.apply(&op, epoch);
        let code = match &outcome {
            OpOutcome::Applied { .. } => 0,
            OpOutcome::LeaderMoved(_) => 1,
            OpOutcome::Failed(_) => 2,
        };
        if code == 2 {
            self.metrics.operations_failed += 1;
        }
        self.engine.record(PlacementRecord::OpDone, &[epoch, id.0, op.range.0, code], || {
            format!("planner#{epoch} op {} on {}: {outcome:?}", id.0, op.range)
        });
        let now = self.now();
        if epoch == self.epoch {
            self.planner.operation_finished(now, id, outcome);
        } else if let OpOutcome::Applied { descriptors, removed } = outcome {
            for descriptor in descriptors {
                self.planner.range_updated(now, descriptor);
            }
            if let Some(removed) = removed {
                self.planner.range_removed(now, removed);
            }
        }
    }

    /// Carries out `op` against the truth, as the range's Raft group and the
    /// meta range would: refused on a stale generation, without a live
    /// quorum, or when its node is down; sometimes failing for no reason.
    fn apply(&mut self, op: &Operation, epoch: u64) -> OpOutcome {
        let Some(range) = self.ranges.get(&op.range) else {
            return OpOutcome::Failed(OpFailure::Other("the range is gone".into()));
        };
        if range.descriptor.generation != op.generation {
            return OpOutcome::Failed(OpFailure::StaleGeneration);
        }
        if !self.has_live_quorum(&range.descriptor) {
            return OpOutcome::Failed(OpFailure::NoQuorum);
        }
        if let OpKind::AddLearner(n) | OpKind::Promote(n) | OpKind::TransferLeader(n) = &op.kind {
            if !self.nodes.get(n).is_some_and(|node| node.up && node.joined && !node.gone) {
                return OpOutcome::Failed(OpFailure::NodeUnavailable(*n));
            }
        }
        if self.engine.rng.random_range(0..1000) < OP_FAILURE_PER_MILLE {
            return OpOutcome::Failed(OpFailure::Other("injected failure".into()));
        }
        match &op.kind {
            OpKind::Split(at) => self.apply_split(op.range, at, op.reason),
            OpKind::Merge { right, right_generation } => self.apply_merge(op.range, *right, *right_generation),
            OpKind::TransferLeader(to) => {
                if range.descriptor.replica_kind(*to) != Some(chorus_core::partition::ReplicaKind::Voter) {
                    return OpOutcome::Failed(OpFailure::Other(format!("n{} is not a voter", to.0)));
                }
                self.ranges.get_mut(&op.range).expect("exists").leader = Some(*to);
                self.engine
                    .record(PlacementRecord::Leader, &[op.range.0, to.0], || format!("{}: n{} leads", op.range, to.0));
                OpOutcome::LeaderMoved(*to)
            }
            kind => self.apply_replica_change(op.range, kind, epoch),
        }
    }

    fn apply_replica_change(&mut self, id: RangeId, kind: &OpKind, epoch: u64) -> OpOutcome {
        let mut descriptor = self.ranges[&id].descriptor.clone();
        let had_quorum = self.has_live_quorum(&descriptor);
        let result = match kind {
            OpKind::AddLearner(n) => descriptor.add_learner(*n),
            OpKind::Promote(n) => descriptor.promote(*n),
            OpKind::Remove(n) => descriptor.remove(*n),
            _ => unreachable!("replica changes only"),
        };
        if let Err(error) = result {
            return OpOutcome::Failed(OpFailure::Other(error.to_string()));
        }
        if had_quorum && !self.has_live_quorum(&descriptor) {
            let voters: Vec<String> = descriptor
                .voters()
                .map(|v| format!("n{}{}", v.0, if self.nodes[&v].up { "" } else { " (down)" }))
                .collect();
            self.fail(format!(
                "quorum: {kind:?} left {id} without a live quorum of its voters [{}]",
                voters.join(", ")
            ));
        }
        let range = self.ranges.get_mut(&id).expect("exists");
        range.descriptor = descriptor.clone();
        match kind {
            OpKind::AddLearner(_) => self.metrics.moves += 1,
            OpKind::Promote(n) => self.note_move(id, *n, true, epoch),
            OpKind::Remove(n) => {
                self.note_move(id, *n, false, epoch);
                if self.ranges[&id].leader == Some(*n) {
                    self.lose_leader(id);
                }
            }
            _ => {}
        }
        OpOutcome::Applied { descriptors: vec![descriptor], removed: None }
    }

    /// Remembers a completed replica change and the planner that asked for
    /// it, for the thrash checker.
    fn note_move(&mut self, range: RangeId, node: NodeId, added: bool, epoch: u64) {
        self.recent.insert((range, node), (added, self.engine.now, epoch));
    }

    fn apply_split(&mut self, id: RangeId, at: &[u8], reason: Reason) -> OpOutcome {
        let right_id = RangeId(self.next_range);
        let _ = reason;
        let range = self.ranges.get_mut(&id).expect("checked");
        let right_descriptor = match range.descriptor.split(at, right_id) {
            Ok(right) => right,
            Err(error) => return OpOutcome::Failed(OpFailure::Other(error.to_string())),
        };
        self.next_range += 1;
        range.size /= 2;
        range.qps /= 2;
        let right = SimRange {
            descriptor: right_descriptor.clone(),
            leader: range.leader,
            size: range.size,
            qps: range.qps,
            hot_key: false,
            reported_hot_key: false,
            electing: false,
        };
        let left_descriptor = range.descriptor.clone();
        for node in right_descriptor.replicas().iter().map(|r| r.node) {
            self.nodes.get_mut(&node).expect("replicas are on known nodes").free_replicas += 1;
        }
        let leaderless = right.leader.is_none();
        self.ranges.insert(right_id, right);
        if leaderless {
            self.schedule_election(right_id);
        }
        self.check_cover();
        OpOutcome::Applied { descriptors: vec![left_descriptor, right_descriptor], removed: None }
    }

    fn apply_merge(&mut self, id: RangeId, right_id: RangeId, right_generation: u64) -> OpOutcome {
        let Some(right) = self.ranges.get(&right_id).cloned() else {
            return OpOutcome::Failed(OpFailure::Other(format!("{right_id} is gone")));
        };
        if right.descriptor.generation != right_generation {
            return OpOutcome::Failed(OpFailure::StaleGeneration);
        }
        let left = self.ranges.get_mut(&id).expect("checked");
        if let Err(error) = left.descriptor.merge(&right.descriptor) {
            return OpOutcome::Failed(OpFailure::Other(error.to_string()));
        }
        left.size += right.size;
        left.qps += right.qps;
        let descriptor = left.descriptor.clone();
        self.ranges.remove(&right_id);
        for node in right.descriptor.replicas().iter().map(|r| r.node) {
            self.nodes.get_mut(&node).expect("replicas are on known nodes").free_replicas -= 1;
        }
        self.check_cover();
        OpOutcome::Applied { descriptors: vec![descriptor], removed: Some(right_id) }
    }
}
