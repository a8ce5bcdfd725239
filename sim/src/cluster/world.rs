//! One cluster seed: nodes, their disks, the network, faults and clients.

use super::checks::Checker;
use super::client::{ClientAttempt, Workload};
use super::report::SeedMetrics;
use super::{ClusterOptions, ClusterReport, FaultMix};
use crate::clock::{DriftClock, MAX_DRIFT_PPM};
use crate::network::{Fate, Network, NetworkParams};
use crate::skeleton::{run_events, Engine, LoopEnd, SeedOutcome, World};
use chorus_core::cluster::{
    message, Bootstrap, ClusterAction, ClusterConfig, ClusterEvent, ClusterNode, ClusterResult, ClusterWrite,
};
use chorus_core::kv::KvStore;
use chorus_core::partition::{Locality, NodeInfo, RangeId};
use chorus_core::raft::DurableState;
use chorus_core::swim::Address;
use chorus_core::{NodeId, RequestId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// How long the fault phase lasts.
pub const FAULT_PHASE_US: u64 = 30_000_000;
/// After the fault phase, how long the cluster has to converge: this plus
/// [`CONVERGE_PER_RANGE_US`] per range. A planning pass a second starts at
/// most 16 moves; reports (every second), records, SWIM's detection of the
/// restarted nodes and the 10 s orphan grace come on top.
pub const CONVERGE_BASE_US: u64 = 60_000_000;
/// The part of the convergence bound that grows with the ranges.
pub const CONVERGE_PER_RANGE_US: u64 = 500_000;
/// Time between checks of convergence.
const CONVERGE_CHECK_US: u64 = 500_000;
/// The idle phase starts once the planner has started no operation for
/// this long.
const SETTLED_QUIET_US: u64 = 10_000_000;
/// A node deadline at or beyond this is "never" (every group quiesced).
const NEVER_US: u64 = u64::MAX / 4;
/// Time between checks of recovery after a node is lost.
const RECOVERY_CHECK_US: u64 = 100_000;
/// Fsync latency range.
const SYNC_US: (u64, u64) = (200, 2_000);
/// Grace period before the planner replaces a dead node's replicas.
pub const GRACE_US: u64 = 5_000_000;
/// Most events one seed may run.
const MAX_EVENTS: u64 = 50_000_000;
/// Zones the nodes are spread over (round robin).
const ZONES: usize = 3;

/// What can happen. Nodes and clients are named by their index (node `i` is
/// `n{i+1}`).
#[derive(Clone, Debug)]
#[allow(missing_docs)] // each variant says what it is; its fields are indexes and payloads
pub enum Ev {
    /// Bytes arrive at node `to`.
    Deliver { to: usize, bytes: Vec<u8> },
    /// A node's timer, valid while `token` is its latest.
    Timer { node: usize, token: u64 },
    /// A node's disk synced its writes through `write`, in life `life`.
    Synced { node: usize, write: u64, life: u64 },
    /// A node's process dies (its unsynced writes are lost).
    Crash { node: usize },
    /// A crashed node restarts from its disk.
    Restart { node: usize },
    /// A node's process stops taking input (a GC pause, a stalled VM)
    /// until `until`: what arrives meanwhile waits for it.
    Pause { node: usize, until: u64 },
    /// A client request that reached a paused node, handed over now.
    Request { node: usize, request: u64, key: String, op: chorus_core::cluster::ClientOp },
    /// A node is lost for good: crashed, disk gone, never back.
    Lose { node: usize },
    /// A node starts (the initial ones at time zero, a new one later).
    Join { node: usize },
    /// The network splits into these groups.
    Partition { groups: Vec<Vec<usize>> },
    /// The network heals.
    Heal,
    /// A client starts its next operation (or re-sends its current one).
    ClientNext { client: usize },
    /// A client's attempt was answered.
    ClientAnswer {
        client: usize,
        attempt: u64,
        result: ClusterResult,
        served_by: Option<(RangeId, chorus_core::LogIndex)>,
    },
    /// A client's attempt timed out.
    ClientTimeout { client: usize, attempt: u64 },
    /// The fault phase ends: heal, restart what is down.
    FaultsEnd,
    /// Check whether the cluster has converged.
    ConvergeCheck,
    /// Check whether every range is back to `rf` voters after a node was
    /// lost for good.
    RecoveryCheck,
    /// The idle phase (`--idle-secs`) ends.
    IdleEnd,
    /// Check whether the ranges the crashed node led have leaders again.
    FailoverCheck,
}

/// A simulated machine: the process (when running) and its disk.
pub(super) struct SimNode {
    pub(super) node: Option<ClusterNode<KvStore>>,
    /// Its clock (offset and drift against simulated time).
    clock: DriftClock,
    /// Paused until this simulated time (0: never paused).
    paused_until: u64,
    pub(super) config: ClusterConfig,
    pub(super) life: u64,
    pub(super) durable: BTreeMap<RangeId, DurableState>,
    unsynced: VecDeque<ClusterWrite>,
    last_sync_us: u64,
    timer_token: u64,
    timer_at: Option<u64>,
    /// Lost for good.
    pub(super) lost: bool,
    /// Started (a spare node starts when it joins).
    pub(super) started: bool,
}

/// The world of one seed.
pub struct ClusterWorld {
    pub(super) options: ClusterOptions,
    pub(super) engine: Engine<Ev>,
    pub(super) nodes: Vec<SimNode>,
    network: Network,
    pub(super) workload: Workload,
    pub(super) checker: Checker,
    pub(super) metrics: SeedMetrics,
    /// Client request ids in flight: node request id → (client, attempt).
    requests: BTreeMap<(usize, u64), (usize, u64)>,
    next_request: u64,
    pub(super) faults_over_at: Option<u64>,
    /// When a node was lost for good, if one was.
    lost_at: Option<u64>,
    pub(super) converged_at: Option<u64>,
    pub(super) profile: String,
    /// Raft messages sent (a batch counts each message in it).
    pub(super) raft_messages: u64,
    /// When the active node last started an operation.
    last_operation_at: u64,
    /// The idle phase, once started.
    pub(super) idle_start: Option<super::phases::IdleStart>,
    /// The idle phase is over (or there is none).
    pub(super) idle_over: bool,
    /// The failover check, once started.
    pub(super) failover: Option<super::phases::Failover>,
}

fn address(index: usize) -> Address {
    Address::new((index as u64).to_le_bytes().to_vec())
}

fn index_of(address: &Address) -> Option<usize> {
    let bytes: [u8; 8] = address.as_bytes().try_into().ok()?;
    Some(u64::from_le_bytes(bytes) as usize)
}

impl ClusterWorld {
    /// A world for `options`: the initial nodes and one spare, the fault
    /// schedule, the clients.
    pub fn new(options: ClusterOptions) -> ClusterWorld {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let total = options.nodes + 1;
        // Half the swarm seeds run with drifting clocks (up to 5% either way).
        let drift_max = if options.faults == FaultMix::Swarm && rng.random_bool(0.5) { MAX_DRIFT_PPM } else { 0 };
        let infos: Vec<NodeInfo> = (0..options.nodes)
            .map(|i| NodeInfo::new(crate::skeleton::node_id(i), locality(i), 1, Time::ZERO))
            .collect();
        let bootstrap =
            Bootstrap::placed(&infos, options.ranges, options.rf, 3, rng.random()).expect("options were validated");
        let nodes = (0..total)
            .map(|i| {
                let config = node_config(&options, i, (i < options.nodes).then(|| bootstrap.clone()), &mut rng);
                let drift = if drift_max > 0 { rng.random_range(-drift_max..=drift_max) } else { 0 };
                SimNode {
                    node: None,
                    clock: DriftClock::new(rng.random_range(0..1_000_000_000), drift),
                    paused_until: 0,
                    config,
                    life: 0,
                    durable: BTreeMap::new(),
                    unsynced: VecDeque::new(),
                    last_sync_us: 0,
                    timer_token: 0,
                    timer_at: None,
                    lost: false,
                    started: false,
                }
            })
            .collect();
        let params = NetworkParams {
            loss_ppm: 2_000,
            duplicate_ppm: 1_000,
            reorder_ppm: 5_000,
            reorder_delay_max_us: 5_000,
            ..NetworkParams::reliable()
        };
        let workload = Workload::new(if options.workload { 6 } else { 0 }, 24, total);
        let mut world = ClusterWorld {
            engine: Engine::new(rng, options.keep_trace_text),
            nodes,
            network: Network::new(total, params),
            workload,
            checker: Checker::new(&bootstrap.ranges, options.rf),
            metrics: SeedMetrics { ranges: options.ranges as u64, ..SeedMetrics::default() },
            requests: BTreeMap::new(),
            next_request: 1,
            faults_over_at: None,
            lost_at: None,
            converged_at: None,
            profile: String::new(),
            raft_messages: 0,
            last_operation_at: 0,
            idle_start: None,
            idle_over: options.idle_secs == 0,
            failover: None,
            options,
        };
        world.schedule_start();
        world
    }

    fn schedule_start(&mut self) {
        for node in 0..self.options.nodes {
            self.engine.schedule(0, Ev::Join { node });
        }
        let fault_end = match self.options.faults {
            FaultMix::Swarm => {
                self.profile = super::checks::schedule_faults(self);
                if self.nodes.iter().any(|n| n.clock.drift_ppm() != 0) {
                    let drifts: Vec<String> = self.nodes.iter().map(|n| format!("{:+}", n.clock.drift_ppm())).collect();
                    self.profile.push_str(&format!("clock drift ppm {}; ", drifts.join(" ")));
                }
                FAULT_PHASE_US
            }
            FaultMix::None => {
                self.profile = "no faults".into();
                1_000_000
            }
            FaultMix::Lose => {
                // Any node would do; if it is a meta voter, the meta range
                // stays one voter short (its replicas do not move yet).
                let node = self.options.nodes - 1;
                self.profile = format!("lose n{} for good at 2000 ms", node + 1);
                self.engine.schedule(2_000_000, Ev::Lose { node });
                3_000_000
            }
        };
        for client in 0..self.workload.client_count() {
            let start = 500_000 + self.engine.rng.random_range(0..100_000);
            self.engine.schedule(start, Ev::ClientNext { client });
        }
        self.engine.schedule(fault_end, Ev::FaultsEnd);
    }

    /// Runs the seed to its end and reports.
    pub fn run(mut self) -> ClusterReport {
        let per_second = crate::skeleton::MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND * self.nodes.len() as u64;
        let end = run_events(&mut self, MAX_EVENTS, per_second);
        let mut failures = Vec::new();
        match end {
            LoopEnd::Finished => {}
            LoopEnd::QueueEmpty => failures.push("liveness: nothing left to happen before convergence".into()),
            other => failures.push(format!("run ended: {other:?}")),
        }
        let history = self.check_final(&mut failures);
        if self.idle_over && self.idle_start.is_some() {
            self.measure_idle_heap();
        }
        let sim_micros = self.engine.now;
        self.metrics.events_per_sim_s = self.engine.events * 1_000_000 / sim_micros.max(1);
        let trace = std::mem::replace(&mut self.engine.trace, crate::trace::Trace::new(false, 0));
        let (trace_hash, trace_text) = trace.finish();
        let outcome = SeedOutcome {
            seed: self.options.seed,
            trace_hash,
            failures,
            events: self.engine.events,
            sim_micros,
            metrics: self.metrics.clone(),
        };
        ClusterReport { outcome, trace_text, profile: self.profile.clone(), history, timeline: None }
    }

    pub(super) fn is_up(&self, node: usize) -> bool {
        self.nodes[node].node.is_some()
    }

    /// Node `index`'s clock now.
    fn local_now(&self, index: usize) -> Time {
        self.nodes[index].clock.local(self.engine.now)
    }

    /// Whether node `index` is paused now.
    fn paused(&self, index: usize) -> bool {
        self.nodes[index].paused_until > self.engine.now
    }

    fn start_node(&mut self, index: usize) {
        let now = self.local_now(index);
        let sim = &mut self.nodes[index];
        let built = if sim.durable.is_empty() {
            ClusterNode::new(sim.config.clone(), now).map_err(|e| e.to_string())
        } else {
            ClusterNode::restart(sim.config.clone(), sim.durable.clone(), now).map_err(|e| e.to_string())
        };
        match built {
            Ok(node) => {
                sim.node = Some(node);
                sim.started = true;
                sim.life += 1;
                self.engine.record(1u64, &[index as u64], || format!("n{} starts", index + 1));
                self.after_input(index);
            }
            Err(error) => self.checker.fail(format!("n{} cannot start: {error}", index + 1)),
        }
    }

    pub(super) fn crash(&mut self, index: usize) {
        let sim = &mut self.nodes[index];
        if sim.node.take().is_none() {
            return;
        }
        sim.unsynced.clear();
        sim.paused_until = 0;
        sim.life += 1;
        sim.timer_token += 1;
        sim.timer_at = None;
        self.checker.node_restarted(index);
        self.engine.record(2u64, &[index as u64], || format!("n{} crashes", index + 1));
    }

    /// Drains a node's actions and re-arms its timer.
    pub(super) fn after_input(&mut self, index: usize) {
        loop {
            let Some(action) = self.nodes[index].node.as_mut().and_then(|n| n.poll_action()) else { break };
            self.perform(index, action);
        }
        if let Some(node) = self.nodes[index].node.as_ref() {
            self.checker.after_input(index, node);
        }
        self.arm_timer(index);
    }

    fn arm_timer(&mut self, index: usize) {
        let Some(node) = self.nodes[index].node.as_ref() else { return };
        let deadline = node.poll_timeout();
        if deadline.as_micros() >= NEVER_US {
            return; // every group quiesced: nothing to wake for
        }
        let at = self.nodes[index].clock.true_time_of(deadline, self.engine.now);
        let sim = &mut self.nodes[index];
        if sim.timer_at.is_some_and(|armed| armed <= at) {
            return;
        }
        sim.timer_token += 1;
        sim.timer_at = Some(at);
        let token = sim.timer_token;
        self.engine.schedule_at(at, Ev::Timer { node: index, token });
    }

    fn perform(&mut self, index: usize, action: ClusterAction) {
        match action {
            ClusterAction::Send { to, message } => {
                self.raft_messages += match &message {
                    message::ClusterMessage::Raft { .. } => 1,
                    message::ClusterMessage::RaftBatch(batch) => batch.len() as u64,
                    _ => 0,
                };
                let Some(to) = index_of(&to).filter(|&to| to < self.nodes.len()) else {
                    self.checker.fail(format!("n{} sent to an address no node has", index + 1));
                    return;
                };
                match message::encode(&message, chorus_core::wire::MAX_MESSAGE_BYTES) {
                    Ok(bytes) => self.transmit(index, to, bytes),
                    Err(error) => self.checker.fail(format!("n{} sent an unencodable message: {error}", index + 1)),
                }
            }
            ClusterAction::Persist(write) => self.submit(index, write),
            ClusterAction::Respond { request, result, served_by } => {
                let Some((client, attempt)) = self.requests.remove(&(index, request.0)) else { return };
                let delay = self.engine.rng.random_range(100..1_000);
                self.engine.schedule(delay, Ev::ClientAnswer { client, attempt, result, served_by });
            }
            ClusterAction::Event(event) => self.on_event(index, event),
        }
    }

    fn on_event(&mut self, index: usize, event: ClusterEvent) {
        match &event {
            ClusterEvent::LeaderElected { range, term } => self.checker.leader(*range, *term, index),
            ClusterEvent::Raft { range, event: chorus_core::raft::Event::Violation { description } } => {
                self.checker.fail(format!("n{} {range}: raft violation: {description}", index + 1))
            }
            // No fault here loses a synced write (a lost node never comes
            // back), so a follower that lost what it acknowledged was told
            // a write was durable before it was.
            ClusterEvent::Raft {
                range,
                event: chorus_core::raft::Event::FollowerLostEntries { follower, acknowledged, holds },
            } => self.checker.fail(format!(
                "durability: n{} {range}: follower n{} lost entries it had acknowledged (up to {}, holds {})",
                index + 1,
                follower.0,
                acknowledged.0,
                holds.0
            )),
            ClusterEvent::NodeFailed(node) => self.node_declared_failed(*node),
            ClusterEvent::BadMessage(what) => self.checker.fail(format!("n{}: bad message: {what}", index + 1)),
            ClusterEvent::OperationStarted { what, .. } => {
                self.last_operation_at = self.engine.now;
                if what.starts_with("AddLearner") {
                    self.metrics.replica_moves += 1
                }
            }
            _ => {}
        }
        self.engine.record(3u64, &[index as u64], || format!("n{} {event:?}", index + 1));
    }

    fn transmit(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if from == to {
            self.engine.schedule(10, Ev::Deliver { to, bytes });
            return;
        }
        match self.network.route(&mut self.engine.rng, from, to) {
            Fate::Blocked | Fate::Lost => {}
            Fate::Arrives { first_us, second_us } => {
                if let Some(second) = second_us {
                    self.engine.schedule(second, Ev::Deliver { to, bytes: bytes.clone() });
                }
                self.engine.schedule(first_us, Ev::Deliver { to, bytes });
            }
        }
    }

    fn submit(&mut self, index: usize, write: ClusterWrite) {
        let latency = self.engine.rng.random_range(SYNC_US.0..SYNC_US.1);
        let sim = &mut self.nodes[index];
        let at = sim.last_sync_us.max(self.engine.now + latency);
        sim.last_sync_us = at;
        let (id, life) = (write.id, sim.life);
        sim.unsynced.push_back(write);
        self.engine.schedule_at(at, Ev::Synced { node: index, write: id, life });
    }

    fn synced(&mut self, index: usize, through: u64, life: u64) {
        let sim = &mut self.nodes[index];
        if sim.life != life || sim.node.is_none() {
            return;
        }
        while sim.unsynced.front().is_some_and(|w| w.id <= through) {
            let write = sim.unsynced.pop_front().expect("front exists");
            for (range, part) in &write.writes {
                if let Err(error) = sim.durable.entry(*range).or_default().apply(part) {
                    let message = format!("n{} {range}: a write no correct node asks for: {error}", index + 1);
                    self.checker.fail(message);
                    return;
                }
            }
            for range in &write.destroyed {
                sim.durable.remove(range);
            }
        }
        let now = self.local_now(index);
        if let Some(node) = self.nodes[index].node.as_mut() {
            node.handle_persisted(now, through);
        }
        self.after_input(index);
    }

    /// Sends a client's attempt to a node.
    pub(super) fn send_attempt(&mut self, attempt: ClientAttempt) {
        let ClientAttempt { client, attempt: number, node, key, op } = attempt;
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let timeout = super::client::ATTEMPT_TIMEOUT_US;
        self.engine.schedule(timeout, Ev::ClientTimeout { client, attempt: number });
        if !self.is_up(node) {
            return;
        }
        self.requests.insert((node, request.0), (client, number));
        self.deliver_request(node, request.0, key, op);
    }

    /// Hands a client request to a node (later, if it is paused).
    fn deliver_request(&mut self, node: usize, request: u64, key: String, op: chorus_core::cluster::ClientOp) {
        if self.paused(node) {
            let until = self.nodes[node].paused_until;
            self.engine.schedule_at(until, Ev::Request { node, request, key, op });
            return;
        }
        let now = self.local_now(node);
        let Some(cluster_node) = self.nodes[node].node.as_mut() else { return };
        cluster_node.request(now, RequestId(request), key.as_bytes(), op);
        self.after_input(node);
    }

    fn handle_client(&mut self, event: Ev) {
        let now = self.engine.now;
        let steps = match event {
            Ev::ClientNext { client } => self.workload.next(client, now, &mut self.engine.rng),
            Ev::ClientAnswer { client, attempt, result, served_by } => {
                if let (Some((range, _)), ClusterResult::Ok(_)) = (served_by, &result) {
                    if let Some(key) = self.workload.key_of(client, attempt) {
                        self.checker.served(&key, range);
                    }
                }
                if matches!(result, ClusterResult::Redirect { .. } | ClusterResult::RangeUnknown) {
                    self.metrics.routing_redirects += 1;
                }
                self.workload.on_answer(client, attempt, result, served_by, now, &mut self.engine.rng)
            }
            Ev::ClientTimeout { client, attempt } => {
                self.workload.on_timeout(client, attempt, now, &mut self.engine.rng)
            }
            _ => unreachable!("client events only"),
        };
        for step in steps {
            match step {
                super::client::Step::Send(attempt) => self.send_attempt(attempt),
                super::client::Step::NextAt(client, at) => self.engine.schedule_at(at, Ev::ClientNext { client }),
            }
        }
    }

    /// A fault (or a node joining) happens.
    fn handle_fault(&mut self, event: Ev) {
        match event {
            Ev::Pause { node, until } => {
                if self.is_up(node) {
                    self.engine.record(12u64, &[node as u64], || format!("n{} pauses until {until}", node + 1));
                    let sim = &mut self.nodes[node];
                    sim.paused_until = sim.paused_until.max(until);
                }
            }
            Ev::Crash { node } => self.crash(node),
            Ev::Restart { node } => {
                if self.nodes[node].node.is_none() && !self.nodes[node].lost {
                    self.start_node(node);
                }
            }
            Ev::Lose { node } => {
                self.crash(node);
                self.nodes[node].lost = true;
                self.nodes[node].durable.clear();
                self.lost_at.get_or_insert(self.engine.now);
                self.engine.schedule(RECOVERY_CHECK_US, Ev::RecoveryCheck);
                self.engine.record(5u64, &[node as u64], || format!("n{} is lost for good", node + 1));
            }
            Ev::Join { node } => {
                if !self.nodes[node].started {
                    self.start_node(node);
                }
            }
            Ev::Partition { groups } => {
                self.engine.record(6u64, &[], || format!("partition {groups:?}"));
                self.network.partition(&groups);
            }
            Ev::Heal => {
                self.engine.record(7u64, &[], || "heal".into());
                self.network.heal();
            }
            _ => unreachable!("fault events only"),
        }
    }

    /// The convergence bound of this run.
    pub(super) fn converge_bound_us(&self) -> u64 {
        CONVERGE_BASE_US + CONVERGE_PER_RANGE_US * self.options.ranges as u64
    }

    /// Whether every range the active node records has `rf` voters, none
    /// on a node lost for good, and its group agrees.
    fn recovered(&self) -> bool {
        let Some(active) = self.nodes.iter().filter_map(|n| n.node.as_ref()).find(|n| n.is_active()) else {
            return false;
        };
        let Some(store) = active.meta().map(|m| m.state_machine()) else { return false };
        let lost: Vec<NodeId> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].lost).map(crate::skeleton::node_id).collect();
        store.descriptors().all(|d| d.voter_count() == self.options.rf && d.voters().all(|v| !lost.contains(&v)))
    }

    fn faults_end(&mut self) {
        self.faults_over_at = Some(self.engine.now);
        self.network.heal();
        self.engine.record(4u64, &[], || "faults end: heal, restart every crashed node".into());
        for index in 0..self.nodes.len() {
            let sim = &self.nodes[index];
            if sim.node.is_none() && !sim.lost && sim.started {
                self.start_node(index);
            }
        }
        self.engine.schedule(CONVERGE_CHECK_US, Ev::ConvergeCheck);
    }

    fn converge_check(&mut self) {
        let over = self.faults_over_at.expect("checks start after the faults");
        match self.convergence() {
            Ok(()) => {
                if self.converged_at.is_none() {
                    self.converged_at = Some(self.engine.now);
                    self.metrics.converge_ms = Some((self.engine.now - over) / 1000);
                    self.workload.start_final_round();
                    for client in 0..self.workload.client_count() {
                        self.engine.schedule(0, Ev::ClientNext { client });
                    }
                }
                if self.workload.final_round_done() {
                    if self.idle_over {
                        self.start_failover();
                        return;
                    }
                    // The idle phase measures a settled cluster: it starts
                    // once the planner has started nothing (leadership
                    // balancing, mostly) for a while, or at the bound.
                    let quiet = self.engine.now.saturating_sub(self.last_operation_at) >= SETTLED_QUIET_US;
                    if quiet || self.engine.now > over + self.converge_bound_us() {
                        self.start_idle();
                        return;
                    }
                }
            }
            Err(why) if self.engine.now > over + self.converge_bound_us() => {
                self.checker.fail(format!(
                    "convergence: not converged {} ms after the faults (bound {} ms): {why}",
                    (self.engine.now - over) / 1000,
                    self.converge_bound_us() / 1000
                ));
                return;
            }
            Err(_) => {}
        }
        self.engine.schedule(CONVERGE_CHECK_US, Ev::ConvergeCheck);
    }
}

impl World for ClusterWorld {
    type Event = Ev;

    fn engine(&mut self) -> &mut Engine<Ev> {
        &mut self.engine
    }

    fn handle(&mut self, event: Ev) {
        // A paused node takes no input: what is for it waits until it resumes.
        if let Ev::Deliver { to: node, .. } | Ev::Timer { node, .. } | Ev::Synced { node, .. } = event {
            if self.paused(node) {
                let until = self.nodes[node].paused_until;
                self.engine.schedule_at(until, event);
                return;
            }
        }
        match event {
            Ev::Deliver { to, bytes } => {
                let now = self.local_now(to);
                if let Some(node) = self.nodes[to].node.as_mut() {
                    node.handle_bytes(now, &bytes);
                    self.after_input(to);
                }
            }
            Ev::Timer { node: index, token } => {
                let sim = &mut self.nodes[index];
                if sim.timer_token != token {
                    return;
                }
                sim.timer_at = None;
                let now = sim.clock.local(self.engine.now);
                if let Some(node) = sim.node.as_mut() {
                    if node.poll_timeout() <= now {
                        node.handle_timeout(now);
                    }
                    self.after_input(index);
                }
            }
            Ev::Synced { node, write, life } => self.synced(node, write, life),
            Ev::Request { node, request, key, op } => self.deliver_request(node, request, key, op),
            event @ (Ev::Pause { .. }
            | Ev::Crash { .. }
            | Ev::Restart { .. }
            | Ev::Lose { .. }
            | Ev::Join { .. }
            | Ev::Partition { .. }
            | Ev::Heal) => self.handle_fault(event),
            event @ (Ev::ClientNext { .. } | Ev::ClientAnswer { .. } | Ev::ClientTimeout { .. }) => {
                self.handle_client(event)
            }
            Ev::FaultsEnd => self.faults_end(),
            Ev::ConvergeCheck => self.converge_check(),
            Ev::RecoveryCheck => {
                if self.recovered() {
                    let lost_at = self.lost_at.expect("a node was lost");
                    self.metrics.recovery_ms = Some((self.engine.now - lost_at) / 1000);
                } else {
                    self.engine.schedule(RECOVERY_CHECK_US, Ev::RecoveryCheck);
                }
            }
            Ev::IdleEnd => {
                self.end_idle();
                self.start_failover();
            }
            Ev::FailoverCheck => self.failover_check(),
        }
    }

    fn finished(&self) -> bool {
        self.checker.failed()
            || (self.converged_at.is_some()
                && self.workload.final_round_done()
                && self.idle_over
                && self.failover.as_ref().is_some_and(|f| f.over))
    }
}

/// Node `index`'s failure domain: the zones are dealt round robin.
fn locality(index: usize) -> Locality {
    Locality::new([format!("zone={}", index % ZONES)])
}

/// The configuration of node `index` (0-based).
fn node_config(
    options: &ClusterOptions,
    index: usize,
    bootstrap: Option<Bootstrap>,
    rng: &mut ChaCha8Rng,
) -> ClusterConfig {
    let id = crate::skeleton::node_id(index);
    let mut config = ClusterConfig::new(id, address(index));
    config.seeds = (0..options.nodes.min(3)).filter(|&i| i != index).map(address).collect();
    config.peers = (0..options.nodes).map(|i| (crate::skeleton::node_id(i), address(i))).collect();
    config.bootstrap = bootstrap;
    config.locality = locality(index);
    config.rng_seed = rng.random();
    config.planner.replication_factor = options.rf;
    config.planner.grace_period_us = GRACE_US;
    config.planner.thrash_window_us = 30_000_000;
    config.planner.operation_timeout_us = 20_000_000;
    config.orphan_grace_ms = 10_000;
    config.injected_bug = options.bug;
    // Leases must allow for the largest drift the seed may draw, both ways.
    config.raft.max_clock_drift_ppm = 2 * MAX_DRIFT_PPM as u64;
    if !options.quiesce {
        config.raft.quiesce_after_ms = 0;
    }
    config
}
