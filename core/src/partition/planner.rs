//! The planner (rebalancer): a sans-IO state machine that watches nodes and
//! ranges and asks for the operations that keep every range replicated,
//! spread across failure domains and balanced.
//!
//! Like [`crate::raft::RaftNode`] and [`crate::swim::SwimNode`], it takes
//! inputs with the driver's `now`, queues what it wants done, and says when
//! it next needs [`Planner::handle_timeout`]:
//!
//! - inputs: membership news ([`Planner::node_joined`],
//!   [`Planner::node_liveness`], [`Planner::decommission`],
//!   [`Planner::set_capacity`]), range news ([`Planner::range_updated`],
//!   [`Planner::range_removed`], [`Planner::range_load`]) and the outcomes
//!   of the operations it asked for ([`Planner::operation_finished`]);
//! - outputs, drained with [`Planner::poll_action`]: operations to start
//!   (each naming the descriptor generation it was planned against, so the
//!   executor refuses it if the range changed meanwhile) and events;
//! - [`Planner::poll_timeout`]: when the next planning pass is due.
//!
//! A replica moves in three steps, each its own operation: add a learner,
//! promote it (through the range's joint consensus), remove the old replica.
//! A removal happens only while the range keeps a live quorum without it.
//! At most one plan per range is in flight, and concurrent moves are limited
//! per node and in total.
//!
//! The planner keeps no state that the descriptors do not imply: a new
//! planner (on another node, after a crash) built with [`Planner::new`] from
//! the descriptors finishes what it finds half done (a learner is promoted
//! or removed, an extra voter removed) and abandons nothing unsafely: an
//! operation of the old planner still in flight either applies (and the new
//! planner hears of the new descriptor) or fails on its generation.

use super::allocator::{Allocator, Counts, ZoneIndex};
use super::bug::Bug;
use super::descriptor::{RangeDescriptor, RangeId, ReplicaKind};
use super::nodes::{Liveness, Locality, NodeInfo};
use super::ring::MAX_VNODES;
use super::ring_placement::RingPlacement;
use super::split::{LoadHistory, RangeLoad, SplitDecision, SplitPolicy, SplitPolicyError};
use crate::types::{NodeId, Time};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Most actions queued for the driver; a pass stops planning when the queue
/// is this full (the driver is not draining it).
pub const MAX_QUEUED_ACTIONS: usize = 100_000;
/// Most (range, node) pairs remembered for the thrash window.
pub const MAX_RECENT_MOVES: usize = 1_000_000;
/// Largest replication factor.
pub const MAX_REPLICATION_FACTOR: usize = 15;

/// How the planner behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannerConfig {
    /// Voters per range (default 3).
    pub replication_factor: usize,
    /// How long a node must have been dead before its replicas are
    /// replaced (default 5 minutes, as CockroachDB's
    /// `server.time_until_store_dead`).
    pub grace_period_us: u64,
    /// Most moves in flight that add to or remove from one node (default 2).
    pub max_moves_per_node: usize,
    /// Most plans (moves, splits, merges, transfers) in flight (default 16).
    pub max_moves_total: usize,
    /// Balance band around the mean, in percent (default 5).
    pub threshold_pct: u32,
    /// A replica added to a range is not removed from it again (nor a
    /// removed one added back) within this window, unless its node's state
    /// changed (default 10 minutes).
    pub thrash_window_us: u64,
    /// Time between planning passes (default 1 s).
    pub pass_interval_us: u64,
    /// A plan whose operation has not finished after this long is
    /// forgotten (default 60 s); the operation itself, if it still
    /// applies, is seen through [`Planner::range_updated`].
    pub operation_timeout_us: u64,
    /// When ranges split and merge.
    pub split: SplitPolicy,
    /// Where replicas should be: the balanced allocator (the default) or
    /// the ring.
    pub placement: Placement,
    /// A deliberate bug, for proving the simulator's checkers; `None` in
    /// production (and refused without the `bug-injection` feature).
    pub injected_bug: Option<Bug>,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            replication_factor: 3,
            grace_period_us: 300_000_000,
            max_moves_per_node: 2,
            max_moves_total: 16,
            threshold_pct: 5,
            thrash_window_us: 600_000_000,
            pass_interval_us: 1_000_000,
            operation_timeout_us: 60_000_000,
            split: SplitPolicy::default(),
            placement: Placement::Balanced,
            injected_bug: None,
        }
    }
}

/// Which strategy names a range's desired replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// The balanced allocator: failure domains first, then replica counts
    /// within the threshold of the mean, power of two choices.
    #[default]
    Balanced,
    /// The ring ([`RingPlacement`]) over the nodes whose replicas stay
    /// (live, suspect, or dead within the grace period; not leaving): a
    /// range's voters should be the ring's zone-aware targets for its start
    /// key. Repairs add the ring's missing node; a voter that is not a
    /// target moves to one. Same safety as the allocator's moves.
    Ring {
        /// Tokens per node per unit of capacity (1 to [`MAX_VNODES`]).
        vnodes: u32,
    },
}

/// A [`PlannerConfig`] the planner cannot work with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlannerConfigError {
    /// Replication factor 0 or above [`MAX_REPLICATION_FACTOR`].
    #[error("replication_factor must be between 1 and {MAX_REPLICATION_FACTOR}, not {0}")]
    ReplicationFactor(usize),
    /// A limit of zero would stop every move.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// The split policy could loop.
    #[error("split policy: {0}")]
    Split(#[from] SplitPolicyError),
    /// A ring placement with 0 or more than [`MAX_VNODES`] vnodes.
    #[error("placement ring: vnodes must be between 1 and {MAX_VNODES}, not {0}")]
    Vnodes(u32),
    /// A bug named without the `bug-injection` feature.
    #[error("injected_bug is {0:?}, but this build has no bug injection (build chorus-core with the `bug-injection` feature)")]
    BugInjectionDisabled(Bug),
}

impl PlannerConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), PlannerConfigError> {
        if !(1..=MAX_REPLICATION_FACTOR).contains(&self.replication_factor) {
            return Err(PlannerConfigError::ReplicationFactor(self.replication_factor));
        }
        for (name, value) in [
            ("max_moves_per_node", self.max_moves_per_node as u64),
            ("max_moves_total", self.max_moves_total as u64),
            ("pass_interval_us", self.pass_interval_us),
            ("operation_timeout_us", self.operation_timeout_us),
        ] {
            if value == 0 {
                return Err(PlannerConfigError::ZeroLimit(name));
            }
        }
        self.split.validate()?;
        if let Placement::Ring { vnodes } = self.placement {
            if !(1..=MAX_VNODES).contains(&vnodes) {
                return Err(PlannerConfigError::Vnodes(vnodes));
            }
        }
        if let Some(bug) = self.injected_bug.filter(|_| !cfg!(feature = "bug-injection")) {
            return Err(PlannerConfigError::BugInjectionDisabled(bug));
        }
        Ok(())
    }

    fn bug(&self, bug: Bug) -> bool {
        cfg!(feature = "bug-injection") && self.injected_bug == Some(bug)
    }
}

/// Identifies one operation the planner asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// What an operation does to its range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Add a learner on the node (it receives a snapshot and catches up).
    AddLearner(NodeId),
    /// Make the node's learner a voter (a joint-consensus change).
    Promote(NodeId),
    /// Remove the node's replica (voter or learner).
    Remove(NodeId),
    /// Hand the range's leadership to the node's voter.
    TransferLeader(NodeId),
    /// Split the range at the key (the first key of the right half).
    Split(Vec<u8>),
    /// Absorb the right neighbour, whose descriptor must be at the given
    /// generation.
    Merge {
        /// The neighbour.
        right: RangeId,
        /// Its generation when planned.
        right_generation: u64,
    },
}

/// Why the planner asked for an operation (for traces, events and the
/// simulator's checkers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The range has fewer voters than the replication factor, or one of
    /// its replicas is on a node that must be replaced (`replaces`).
    Repair {
        /// The node whose replica is replaced, if any.
        replaces: Option<NodeId>,
    },
    /// Evening out replica counts.
    Rebalance,
    /// Spreading a range over more failure domains.
    Diversity,
    /// Evening out leader counts.
    LeaderBalance,
    /// Finishing what a move left half done: a learner to promote or
    /// remove, an extra voter to remove.
    Cleanup,
    /// The range is larger than the split size.
    SplitForSize,
    /// The range has served more than the split load for long enough.
    SplitForLoad,
    /// Two small, quiet neighbours.
    Merge,
}

/// One operation for the driver to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Echo it in [`Planner::operation_finished`].
    pub id: OpId,
    /// The range it changes.
    pub range: RangeId,
    /// The range's descriptor generation it was planned against: refuse it
    /// if the range has changed since.
    pub generation: u64,
    /// What to do.
    pub kind: OpKind,
    /// Why.
    pub reason: Reason,
}

/// Why an operation did not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpFailure {
    /// The range's generation was not the one the operation names.
    StaleGeneration,
    /// The range has no live quorum to commit the change.
    NoQuorum,
    /// The node the operation needs is down or unreachable.
    NodeUnavailable(NodeId),
    /// Any other reason, in words.
    Other(String),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// It applied: the ranges' new descriptors (two after a split), and
    /// the range that ceased to exist (after a merge).
    Applied {
        /// New descriptors.
        descriptors: Vec<RangeDescriptor>,
        /// The range merged away, if any.
        removed: Option<RangeId>,
    },
    /// Leadership moved (after [`OpKind::TransferLeader`]).
    LeaderMoved(NodeId),
    /// It did not apply.
    Failed(OpFailure),
}

/// Something the planner noticed that the operator should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlannerEvent {
    /// A range is hot because of one key; splitting cannot spread it.
    HotKey {
        /// The range.
        range: RangeId,
        /// The key.
        key: Vec<u8>,
    },
    /// A range needs a replica and no node can take one (too few live
    /// nodes, or none in a failure domain it may use).
    CannotPlace {
        /// The range.
        range: RangeId,
    },
}

/// What the planner asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlannerAction {
    /// Start an operation and report its outcome.
    Start(Operation),
    /// Tell the operator.
    Event(PlannerEvent),
}

/// One range as the planner knows it.
#[derive(Clone, Debug)]
struct RangeState {
    descriptor: RangeDescriptor,
    leader: Option<NodeId>,
    /// The last load report; `None` until one arrives (a range of unknown
    /// size neither splits nor merges).
    load: Option<RangeLoad>,
    history: LoadHistory,
}

/// The steps of a replica move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    AddLearner,
    Promote,
    Remove,
}

/// What a plan is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PlanKind {
    /// Move a replica: add `add` (unless `None`), then remove `remove`
    /// (unless `None`), in the order `steps` gives.
    Move { add: Option<NodeId>, remove: Option<NodeId>, steps: Vec<Step> },
    /// One operation.
    Single(OpKind),
}

/// A plan in flight: at most one per range.
#[derive(Clone, Debug)]
struct Plan {
    kind: PlanKind,
    reason: Reason,
    op: OpId,
    started: Time,
}

/// The planner. See the [module documentation](self).
pub struct Planner {
    config: PlannerConfig,
    rng: ChaCha8Rng,
    nodes: BTreeMap<NodeId, NodeInfo>,
    ranges: BTreeMap<RangeId, RangeState>,
    plans: BTreeMap<RangeId, Plan>,
    ops: BTreeMap<OpId, RangeId>,
    /// (range, node) → (added?, when): the thrash window's memory.
    recent: BTreeMap<(RangeId, NodeId), (bool, Time)>,
    actions: VecDeque<PlannerAction>,
    next_op: u64,
    next_pass: Time,
    /// Where the next pass starts, so that every range gets its turn when
    /// the limits stop a pass early.
    cursor: RangeId,
    hot_reported: BTreeSet<RangeId>,
    /// The ring of [`Placement::Ring`], rebuilt when its members change.
    ring: Option<RingPlacement>,
}

impl Planner {
    /// A planner that knows `nodes` and `descriptors` (as the meta range
    /// holds them) at `now`; `seed` seeds its random choices. Its first pass
    /// is due at once.
    pub fn new(
        config: PlannerConfig,
        seed: u64,
        now: Time,
        nodes: impl IntoIterator<Item = NodeInfo>,
        descriptors: impl IntoIterator<Item = RangeDescriptor>,
    ) -> Result<Planner, PlannerConfigError> {
        config.validate()?;
        let ranges = descriptors
            .into_iter()
            .map(|descriptor| {
                let state = RangeState { descriptor, leader: None, load: None, history: LoadHistory::default() };
                (state.descriptor.id, state)
            })
            .collect();
        Ok(Planner {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: nodes.into_iter().map(|node| (node.id, node)).collect(),
            ranges,
            plans: BTreeMap::new(),
            ops: BTreeMap::new(),
            recent: BTreeMap::new(),
            actions: VecDeque::new(),
            next_op: 1,
            next_pass: now,
            cursor: RangeId(0),
            hot_reported: BTreeSet::new(),
            ring: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// The nodes it knows.
    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeInfo> {
        &self.nodes
    }

    /// The descriptors it knows, by range.
    pub fn descriptors(&self) -> impl Iterator<Item = &RangeDescriptor> {
        self.ranges.values().map(|range| &range.descriptor)
    }

    /// Plans in flight.
    pub fn plans_in_flight(&self) -> usize {
        self.plans.len()
    }

    // ----- inputs -----

    /// A node joined (or came back with new details): live, with its
    /// failure domains and capacity.
    pub fn node_joined(&mut self, now: Time, id: NodeId, locality: Locality, capacity: u32) {
        let node = self.nodes.entry(id).or_insert_with(|| NodeInfo::new(id, locality.clone(), capacity, now));
        node.locality = locality;
        node.capacity = capacity.max(1);
        if node.liveness != Liveness::Live {
            node.liveness = Liveness::Live;
            node.since = now;
        }
    }

    /// SWIM's news about a node. Unknown nodes are ignored until they join.
    pub fn node_liveness(&mut self, now: Time, id: NodeId, liveness: Liveness) {
        if let Some(node) = self.nodes.get_mut(&id) {
            if node.liveness != liveness && node.liveness != Liveness::Left {
                node.liveness = liveness;
                node.since = now;
            }
        }
    }

    /// The operator asked for `id` to be emptied.
    pub fn decommission(&mut self, _now: Time, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.decommissioning = true;
        }
    }

    /// A node's capacity changed (at least 1).
    pub fn set_capacity(&mut self, _now: Time, id: NodeId, capacity: u32) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.capacity = capacity.max(1);
        }
    }

    /// A range's descriptor, as the meta range now holds it. Older
    /// generations than the one known are ignored.
    pub fn range_updated(&mut self, _now: Time, descriptor: RangeDescriptor) {
        match self.ranges.get_mut(&descriptor.id) {
            Some(state) if state.descriptor.generation >= descriptor.generation => {}
            Some(state) => {
                if state.leader.is_some_and(|leader| descriptor.replica_kind(leader) != Some(ReplicaKind::Voter)) {
                    state.leader = None;
                }
                state.descriptor = descriptor;
            }
            None => {
                let id = descriptor.id;
                let state = RangeState { descriptor, leader: None, load: None, history: LoadHistory::default() };
                self.ranges.insert(id, state);
            }
        }
    }

    /// A range ceased to exist (merged away). A plan of its that is in
    /// flight stays until its operation reports (it will fail), so that it
    /// keeps counting against the limits meanwhile.
    pub fn range_removed(&mut self, _now: Time, id: RangeId) {
        self.ranges.remove(&id);
        self.hot_reported.remove(&id);
    }

    /// A range's leader and load, as its leaseholder reports them.
    pub fn range_load(&mut self, _now: Time, id: RangeId, leader: Option<NodeId>, load: RangeLoad) {
        if let Some(state) = self.ranges.get_mut(&id) {
            state.leader = leader;
            state.load = Some(load);
        }
    }

    /// An operation ended. Outcomes of unknown (forgotten or an earlier
    /// planner's) operations only update descriptors.
    pub fn operation_finished(&mut self, now: Time, id: OpId, outcome: OpOutcome) {
        let range = self.ops.remove(&id);
        match &outcome {
            OpOutcome::Applied { descriptors, removed } => {
                for descriptor in descriptors {
                    self.range_updated(now, descriptor.clone());
                }
                if let Some(removed) = removed {
                    self.range_removed(now, *removed);
                }
            }
            OpOutcome::LeaderMoved(to) => {
                if let Some(state) = range.and_then(|range| self.ranges.get_mut(&range)) {
                    state.leader = Some(*to);
                }
            }
            OpOutcome::Failed(_) => {}
        }
        let Some(range) = range else { return };
        let Some(mut plan) = self.plans.remove(&range) else { return };
        if plan.op != id {
            self.plans.insert(range, plan);
            return;
        }
        if matches!(outcome, OpOutcome::Failed(_)) {
            return; // Abandoned; the next pass cleans up what is half done.
        }
        self.note_recent(now, range, &plan);
        if plan.reason == Reason::SplitForLoad {
            if let Some(state) = self.ranges.get_mut(&range) {
                state.history.last_load_split = Some(now);
                state.history.hot_since = None;
            }
        }
        if let PlanKind::Move { steps, .. } = &mut plan.kind {
            steps.remove(0);
            if !steps.is_empty() {
                plan.started = now;
                self.continue_move(now, range, plan);
            }
        }
    }

    /// Remembers the step that just applied, for the thrash window.
    fn note_recent(&mut self, now: Time, range: RangeId, plan: &Plan) {
        let entry = match &plan.kind {
            PlanKind::Move { add, remove, steps } => match steps.first() {
                Some(Step::Promote) => add.map(|node| (node, true)),
                Some(Step::Remove) => remove.map(|node| (node, false)),
                _ => None,
            },
            PlanKind::Single(OpKind::Remove(node)) => Some((*node, false)),
            PlanKind::Single(_) => None,
        };
        {
            if let Some((node, added)) = entry {
                if self.recent.len() >= MAX_RECENT_MOVES {
                    self.forget_old_moves(now);
                }
                if self.recent.len() < MAX_RECENT_MOVES {
                    self.recent.insert((range, node), (added, now));
                }
            }
        }
    }

    fn forget_old_moves(&mut self, now: Time) {
        let window = self.config.thrash_window_us;
        self.recent.retain(|_, (_, at)| now.micros_since(*at) < window);
    }

    /// Time passed: runs a planning pass when one is due, and forgets
    /// plans whose operation timed out.
    pub fn handle_timeout(&mut self, now: Time) {
        if now < self.next_pass {
            return;
        }
        self.next_pass = now.add_micros(self.config.pass_interval_us);
        let timeout = self.config.operation_timeout_us;
        let expired: Vec<RangeId> =
            self.plans.iter().filter(|(_, plan)| now.micros_since(plan.started) >= timeout).map(|(&r, _)| r).collect();
        for range in expired {
            if let Some(plan) = self.plans.remove(&range) {
                self.ops.remove(&plan.op);
            }
        }
        self.forget_old_moves(now);
        self.pass(now);
    }

    /// The next action for the driver.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<PlannerAction> {
        self.actions.pop_front()
    }

    /// When [`Planner::handle_timeout`] is next needed.
    #[must_use]
    pub fn poll_timeout(&self) -> Time {
        self.next_pass
    }
}

impl Planner {
    /// Replica and leader counts as the descriptors give them, with the
    /// moves in flight counted as done.
    fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for state in self.ranges.values() {
            for replica in state.descriptor.replicas() {
                counts.adjust_replicas(replica.node, 1);
            }
            if let Some(leader) = state.leader {
                counts.adjust_leaders(leader, 1);
            }
        }
        for plan in self.plans.values() {
            if let PlanKind::Move { add, remove, steps } = &plan.kind {
                if let Some(add) = add.filter(|_| steps.contains(&Step::AddLearner)) {
                    counts.adjust_replicas(add, 1);
                }
                if let Some(remove) = remove.filter(|_| steps.contains(&Step::Remove)) {
                    counts.adjust_replicas(remove, -1);
                }
            }
        }
        counts
    }

    /// The nodes a plan counts against for the per-node limit: the node
    /// that receives a replica, and a live node that gives one up. Dead and
    /// departed nodes send nothing, so they are not limited.
    fn limited_nodes(&self, plan_kind: &PlanKind) -> Vec<NodeId> {
        let is_up = |node: &NodeId| self.nodes.get(node).is_some_and(NodeInfo::is_up);
        match plan_kind {
            PlanKind::Move { add, remove, .. } => add.iter().copied().chain(remove.filter(is_up)).collect(),
            PlanKind::Single(OpKind::Remove(node)) if is_up(node) => vec![*node],
            PlanKind::Single(_) => Vec::new(),
        }
    }

    /// One planning pass over every range (from the cursor, wrapping), until
    /// the limits are reached.
    fn pass(&mut self, now: Time) {
        let mut counts = self.counts();
        let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
        for plan in self.plans.values() {
            for node in self.limited_nodes(&plan.kind) {
                *per_node.entry(node).or_insert(0) += 1;
            }
        }
        let limits = !self.config.bug(Bug::NoMoveLimits);
        let ids: Vec<RangeId> =
            self.ranges.range(self.cursor..).chain(self.ranges.range(..self.cursor)).map(|(&id, _)| id).collect();
        let grace = if self.config.bug(Bug::NoGracePeriod) { 0 } else { self.config.grace_period_us };
        let totals = super::allocator::Totals::of(&self.nodes, &counts, self.config.threshold_pct);
        let mut zones = ZoneIndex::new(&self.nodes, &counts);
        self.refresh_ring(now, grace);
        let by_start: BTreeMap<Vec<u8>, RangeId> =
            self.ranges.iter().map(|(&id, r)| (r.descriptor.span.start.clone(), id)).collect();
        // Ranges about to be absorbed by their left neighbour get no plan.
        let mut merging: BTreeSet<RangeId> = self
            .plans
            .values()
            .filter_map(|plan| match &plan.kind {
                PlanKind::Single(OpKind::Merge { right, .. }) => Some(*right),
                _ => None,
            })
            .collect();
        for id in ids {
            if limits && self.plans.len() >= self.config.max_moves_total {
                self.cursor = id;
                return;
            }
            if self.plans.contains_key(&id) || merging.contains(&id) || self.actions.len() >= MAX_QUEUED_ACTIONS {
                continue;
            }
            let decision = match self.split_or_merge(now, id, &by_start) {
                Some(decision) => Some(decision),
                None => {
                    let ring = self.ring.as_ref();
                    let alloc =
                        Allocator::with_totals(&self.nodes, &counts, totals, self.config.threshold_pct, now, grace)
                            .with_zone_index(&zones);
                    let decider =
                        Decider { config: &self.config, alloc, nodes: &self.nodes, recent: &self.recent, now, ring };
                    decider.decide(&self.ranges[&id], &mut self.rng)
                }
            };
            let Some((kind, reason)) = decision else { continue };
            let limited = self.limited_nodes(&kind);
            if limits && limited.iter().any(|n| per_node.get(n).copied().unwrap_or(0) >= self.config.max_moves_per_node)
            {
                continue;
            }
            for node in limited {
                *per_node.entry(node).or_insert(0) += 1;
            }
            self.count_move(&kind, &mut counts, &mut zones);
            if let PlanKind::Single(OpKind::Merge { right, .. }) = &kind {
                merging.insert(*right);
            }
            if let PlanKind::Single(OpKind::TransferLeader(to)) = &kind {
                counts.adjust_leaders(*to, 1);
                if let Some(from) = self.ranges[&id].leader {
                    counts.adjust_leaders(from, -1);
                }
            }
            self.start_plan(now, id, kind, reason);
        }
        self.cursor = RangeId(0);
    }

    /// Counts a planned move as done in `counts` and `zones`, so that the
    /// rest of the pass plans against it.
    fn count_move(&self, kind: &PlanKind, counts: &mut Counts, zones: &mut ZoneIndex) {
        let PlanKind::Move { add, remove, .. } = kind else { return };
        for (node, delta) in add.map(|n| (n, 1)).into_iter().chain(remove.map(|n| (n, -1))) {
            let before = counts.replicas_on(node);
            counts.adjust_replicas(node, delta);
            if let Some(info) = self.nodes.get(&node) {
                zones.adjust(info, before, counts.replicas_on(node));
            }
        }
    }

    /// Under [`Placement::Ring`], rebuilds the ring if its members (the
    /// nodes whose replicas stay at `now`, with their capacities) changed.
    /// A ring that cannot be built (more than the ring's token limit) is
    /// no ring: the pass then falls back to the balanced allocator.
    fn refresh_ring(&mut self, now: Time, grace_us: u64) {
        let Placement::Ring { vnodes } = self.config.placement else { return };
        let members: Vec<(NodeId, u32)> =
            self.nodes.values().filter(|n| !n.should_be_replaced(now, grace_us)).map(|n| (n.id, n.capacity)).collect();
        if self.ring.as_ref().is_some_and(|ring| ring.members() == members) {
            return;
        }
        let rf = self.config.replication_factor;
        self.ring = RingPlacement::build(members, vnodes, rf).ok();
    }

    /// A split or merge `id` needs now, if any; reports hot keys.
    fn split_or_merge(
        &mut self,
        now: Time,
        id: RangeId,
        by_start: &BTreeMap<Vec<u8>, RangeId>,
    ) -> Option<(PlanKind, Reason)> {
        let state = self.ranges.get_mut(&id)?;
        let load = state.load.as_ref()?;
        match self.config.split.decide(now, load, &mut state.history) {
            SplitDecision::Split { at, for_load } if state.descriptor.span.can_split_at(&at) => {
                let reason = if for_load { Reason::SplitForLoad } else { Reason::SplitForSize };
                return Some((PlanKind::Single(OpKind::Split(at)), reason));
            }
            SplitDecision::HotKey { key } => {
                if self.hot_reported.insert(id) {
                    self.actions.push_back(PlannerAction::Event(PlannerEvent::HotKey { range: id, key }));
                }
                return None;
            }
            SplitDecision::Split { .. } | SplitDecision::Keep => {}
        }
        if state.history.hot_since.is_none() {
            self.hot_reported.remove(&id);
        }
        self.merge(now, id, by_start)
    }

    /// A merge of `id` with its right neighbour, or a move that lines the
    /// neighbour's replicas up with `id`'s so that they can merge.
    fn merge(&self, now: Time, id: RangeId, by_start: &BTreeMap<Vec<u8>, RangeId>) -> Option<(PlanKind, Reason)> {
        let left = &self.ranges[&id];
        let right_id = *by_start.get(left.descriptor.span.end.as_ref()?)?;
        let right = self.ranges.get(&right_id)?;
        let (Some(left_load), Some(right_load)) = (&left.load, &right.load) else { return None };
        if self.plans.contains_key(&right_id)
            || !self.config.split.should_merge(now, (left_load, &left.history), (right_load, &right.history))
        {
            return None;
        }
        let (l, r) = (&left.descriptor, &right.descriptor);
        if l.replicas() == r.replicas() {
            let kind = OpKind::Merge { right: right_id, right_generation: r.generation };
            return Some((PlanKind::Single(kind), Reason::Merge));
        }
        None
    }

    /// Starts a plan for `range`: queues its first operation.
    fn start_plan(&mut self, now: Time, range: RangeId, kind: PlanKind, reason: Reason) {
        let op = OpId(self.next_op);
        self.next_op += 1;
        let plan = Plan { kind, reason, op, started: now };
        match &plan.kind {
            PlanKind::Single(op_kind) => {
                let op_kind = op_kind.clone();
                self.issue(range, op, op_kind, reason, plan);
            }
            PlanKind::Move { .. } => self.continue_move(now, range, plan),
        }
    }

    /// Queues the next step of a move, or drops the move if that step is
    /// not safe now (a removal that would cost the range its live quorum;
    /// the range keeps its extra voter until a later pass can remove one).
    fn continue_move(&mut self, now: Time, range: RangeId, mut plan: Plan) {
        let PlanKind::Move { add, remove, steps } = &plan.kind else { return };
        let Some(state) = self.ranges.get(&range) else { return };
        let op_kind = match (steps.first(), add, remove) {
            (Some(Step::AddLearner), Some(add), _) => OpKind::AddLearner(*add),
            (Some(Step::Promote), Some(add), _) => OpKind::Promote(*add),
            (Some(Step::Remove), _, Some(remove)) => {
                if !self.config.bug(Bug::RemoveBeforeAdd) && !remove_is_safe(&self.nodes, &state.descriptor, *remove) {
                    return;
                }
                // A repaired node that came back meanwhile keeps its replica;
                // a later pass removes whichever voter is then the extra one.
                let grace = self.config.grace_period_us;
                let back = self.nodes.get(remove).is_some_and(|n| !n.should_be_replaced(now, grace));
                if matches!(plan.reason, Reason::Repair { .. }) && back && !self.config.bug(Bug::NoGracePeriod) {
                    return;
                }
                OpKind::Remove(*remove)
            }
            _ => return,
        };
        let op = OpId(self.next_op);
        self.next_op += 1;
        plan.op = op;
        let reason = plan.reason;
        self.issue(range, op, op_kind, reason, plan);
    }

    fn issue(&mut self, range: RangeId, op: OpId, kind: OpKind, reason: Reason, plan: Plan) {
        let generation = self.ranges.get(&range).map_or(0, |state| state.descriptor.generation);
        self.ops.insert(op, range);
        self.plans.insert(range, plan);
        self.actions.push_back(PlannerAction::Start(Operation { id: op, range, generation, kind, reason }));
    }
}

mod decide;
use decide::{remove_is_safe, Decider};

#[cfg(test)]
mod tests;
