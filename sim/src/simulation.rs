//! One seed's run: a cluster of Raft nodes, a network, disks, clocks and
//! clients, driven by a discrete-event loop in virtual time.
//!
//! The run has two phases, as in TigerBeetle's VOPR. In the *fault phase*
//! faults strike (randomly from the seed's swarm profile, and/or from a
//! scenario file) while clients work and the safety checker watches every
//! step. Then everything heals — partitions lift, crashed nodes restart,
//! paused ones resume, the network stops losing messages — and the *liveness
//! phase* requires a leader to commit and every client operation to finish
//! within [`LIVENESS_BOUND_US`]. Finally the client history is checked for
//! linearizability.
//!
//! Determinism: every random choice comes from one ChaCha8 stream seeded by
//! the seed; events at the same instant run in the order they were scheduled;
//! no hash-map iteration order reaches behaviour.

use crate::check::linearizability::{self, SearchLimits, Verdict};
use crate::check::reads::ReferenceKv;
use crate::check::safety::{ElectionView, SafetyChecker};
use crate::clock::DriftClock;
use crate::disk::Disk;
use crate::faults::{FaultAction, FaultProfile, NodeRef, Recurrence};
use crate::history::{History, Value};
use crate::network::{Fate, Network, NetworkParams};
use crate::queue::EventQueue;
use crate::scenario::Scenario;
use crate::trace::{describe_message, describe_result, message_words, Trace};
use crate::workload::{ClientRequest, ClientStep, Workload, ATTEMPT_TIMEOUT_US};
use chorus_core::kv::KvStore;
use chorus_core::raft::{
    Action, Bug, ClientResult, Config, DiskId, Event, MembershipChange, Message, PersistId, RaftNode, ReadMode, Role,
    SnapshotPolicy,
};
use chorus_core::{NodeId, RequestId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Default length of the fault phase.
pub const FAULT_PHASE_US: u64 = 10_000_000;
/// After healing, a leader must commit and every client operation must finish
/// within this much simulated time.
pub const LIVENESS_BOUND_US: u64 = 10_000_000;
/// Clients keep starting operations this long after healing.
pub const WORKLOAD_TAIL_US: u64 = 1_000_000;
/// Hard cap on events in one run; reaching it fails the seed.
pub const MAX_EVENTS_PER_RUN: u64 = 20_000_000;
/// Inputs stashed for a paused node; beyond it they are dropped (as a real
/// socket buffer would overflow).
pub const PAUSED_STASH_LIMIT: usize = 10_000;
/// Default clients and keys of the workload.
pub const DEFAULT_CLIENTS: usize = 5;
pub const DEFAULT_KEYS: usize = 3;
/// Raft timing used in simulation.
pub const ELECTION_TIMEOUT_MS: u64 = 150;
pub const HEARTBEAT_INTERVAL_MS: u64 = 40;
/// The operator retries a scheduled membership change the leader refused
/// after this long.
pub const OPERATOR_RETRY_US: u64 = 100_000;
/// Most bytes of readable trace kept by a replay.
pub const TRACE_TEXT_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// What to run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub nodes: usize,
    pub bug: Option<Bug>,
    pub scenario: Option<Scenario>,
    /// Keep a readable trace (replay); the hash is always computed.
    pub keep_trace_text: bool,
    /// After healing, a leader must commit and every client operation must
    /// finish within this much simulated time.
    pub liveness_bound_us: u64,
}

impl SimOptions {
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            nodes: 5,
            bug: None,
            scenario: None,
            keep_trace_text: false,
            liveness_bound_us: LIVENESS_BOUND_US,
        }
    }
}

/// One run's outcome, without its trace text or history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedOutcome {
    pub seed: u64,
    pub trace_hash: [u8; 32],
    /// Empty when the seed passed.
    pub failures: Vec<String>,
    pub events: u64,
    pub sim_micros: u64,
    pub ops_ok: u64,
    pub ops_failed: u64,
    pub ops_unknown: u64,
}

impl SeedOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What one run found.
#[derive(Clone, Debug)]
pub struct SimReport {
    pub outcome: SeedOutcome,
    pub trace_text: Option<String>,
    pub history: History,
    pub profile: String,
}

impl SimReport {
    pub fn passed(&self) -> bool {
        self.outcome.passed()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecurringFault {
    Partition,
    Crash,
    Pause,
    Wipe,
}

/// Who a node's client request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestOwner {
    Client {
        client: usize,
        attempt: u64,
    },
    /// The simulated operator's membership changes.
    Operator,
}

enum SimEvent {
    Deliver {
        to: usize,
        message: Message,
    },
    Timer {
        node: usize,
        token: u64,
    },
    DiskSynced {
        node: usize,
        incarnation: u64,
        id: PersistId,
    },
    ToNode {
        node: usize,
        client: usize,
        attempt: u64,
        request: ClientRequest,
    },
    ToClient {
        client: usize,
        attempt: u64,
        result: ClientResult,
        served_at: chorus_core::LogIndex,
    },
    ClientTimeout {
        client: usize,
        attempt: u64,
    },
    ClientNext {
        client: usize,
    },
    Fault(FaultAction),
    Recurring(RecurringFault),
    /// The operator's next membership change or leadership transfer.
    Churn,
    EndFaultPhase,
    LivenessDeadline,
}

struct SimNode {
    raft: Option<RaftNode<KvStore>>,
    disk: Disk,
    /// The identity of the disk the node runs on (new after each wipe).
    disk_id: DiskId,
    /// The disk was wiped while the node was down: it rejoins empty.
    wiped: bool,
    /// Whether the node counted itself a voter when it last ran.
    votes: bool,
    clock: DriftClock,
    incarnation: u64,
    timer_token: u64,
    timer_at: Option<u64>,
    paused: bool,
    stash: Vec<SimEvent>,
    /// Client requests this incarnation is working on.
    requests: BTreeMap<u64, RequestOwner>,
    next_request: u64,
}

pub struct Simulation {
    options: SimOptions,
    profile: FaultProfile,
    random_faults: bool,
    now: u64,
    queue: EventQueue<SimEvent>,
    rng: ChaCha8Rng,
    network: Network,
    nodes: Vec<SimNode>,
    workload: Workload,
    checker: SafetyChecker,
    reference: ReferenceKv,
    read_failure: Option<String>,
    trace: Trace,
    events: u64,
    healed_at: Option<u64>,
    leader_progress_after_heal: bool,
    liveness_failure: Option<String>,
    finished: bool,
}

fn node_id(index: usize) -> NodeId {
    NodeId(index as u64 + 1)
}

impl Simulation {
    pub fn new(options: SimOptions) -> Simulation {
        assert!(options.nodes >= 1, "a cluster needs at least one node");
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let scenario_only = options.scenario.as_ref().is_some_and(|scenario| !scenario.random_faults);
        let mut profile = if scenario_only { FaultProfile::quiet() } else { FaultProfile::draw(&mut rng) };
        if let Some(knobs) = options.scenario.as_ref().map(|scenario| &scenario.knobs) {
            profile.spares = knobs.spares.unwrap_or(profile.spares);
            profile.snapshot_every_entries = knobs.snapshot_every_entries.unwrap_or(profile.snapshot_every_entries);
            profile.max_retained_entries = knobs.max_retained_entries.unwrap_or(profile.max_retained_entries);
            profile.snapshot_chunk_bytes = knobs.snapshot_chunk_bytes.unwrap_or(profile.snapshot_chunk_bytes);
            profile.max_entries_per_append = knobs.max_entries_per_append.unwrap_or(profile.max_entries_per_append);
        }
        let fault_phase_us = options.scenario.as_ref().map_or(FAULT_PHASE_US, |scenario| {
            scenario.duration_ms.map_or(FAULT_PHASE_US.max(scenario.last_event_ms() * 1000 + 1_000_000), |ms| ms * 1000)
        });
        let voters: Vec<NodeId> = (0..options.nodes).map(node_id).collect();
        let total = options.nodes + profile.spares;
        let mut nodes = Vec::with_capacity(total);
        for index in 0..total {
            let drift = if profile.drift_ppm_max > 0 {
                rng.random_range(-profile.drift_ppm_max..=profile.drift_ppm_max)
            } else {
                0
            };
            let clock = DriftClock::new(rng.random_range(0..1_000_000_000), drift);
            let config = Self::raft_config(&options, &profile, &voters, index, &mut rng);
            // The initial voters bootstrap the cluster; spares join empty.
            let (raft, disk_id) = if index < options.nodes {
                let raft = RaftNode::new(config, KvStore::default(), clock.local(0));
                (raft.expect("invariant: the simulator builds valid configurations"), DiskId::BOOTSTRAP)
            } else {
                let disk_id = DiskId(rng.random_range(1..u64::MAX));
                let raft = RaftNode::join(config, disk_id, KvStore::default(), clock.local(0));
                (raft.expect("invariant: the simulator builds valid configurations"), disk_id)
            };
            nodes.push(SimNode {
                votes: raft.may_campaign(),
                raft: Some(raft),
                disk: Disk::default(),
                disk_id,
                wiped: false,
                clock,
                incarnation: 0,
                timer_token: 0,
                timer_at: None,
                paused: false,
                stash: Vec::new(),
                requests: BTreeMap::new(),
                next_request: 0,
            });
        }
        let workload = Workload::new(DEFAULT_CLIENTS, total, DEFAULT_KEYS, fault_phase_us + WORKLOAD_TAIL_US);
        let mut simulation = Simulation {
            network: Network::new(total, profile.network),
            random_faults: !scenario_only,
            checker: SafetyChecker::new(total),
            reference: ReferenceKv::default(),
            read_failure: None,
            trace: Trace::new(options.keep_trace_text, TRACE_TEXT_LIMIT_BYTES),
            profile,
            options,
            now: 0,
            queue: EventQueue::default(),
            rng,
            nodes,
            workload,
            events: 0,
            healed_at: None,
            leader_progress_after_heal: false,
            liveness_failure: None,
            finished: false,
        };
        simulation.workload.give_up_before_us = fault_phase_us;
        simulation.start(fault_phase_us);
        simulation
    }

    fn raft_config(
        options: &SimOptions,
        profile: &FaultProfile,
        voters: &[NodeId],
        index: usize,
        rng: &mut ChaCha8Rng,
    ) -> Config {
        let mut config = Config::new(node_id(index), voters.to_vec());
        config.election_timeout_ms = ELECTION_TIMEOUT_MS;
        config.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
        config.max_entries_per_append = profile.max_entries_per_append;
        config.snapshot_policy = SnapshotPolicy { entries: profile.snapshot_every_entries, bytes: 0 };
        config.max_retained_entries = profile.max_retained_entries;
        config.snapshot_chunk_bytes = profile.snapshot_chunk_bytes;
        config.forward_proposals = profile.forward_proposals;
        config.follower_reads = profile.follower_reads;
        if profile.lease_reads {
            config.read_mode = ReadMode::Lease;
            // Any two simulated clocks differ in rate by at most twice the
            // largest drift.
            config.max_clock_drift_ppm = 2 * crate::clock::MAX_DRIFT_PPM as u64;
        }
        config.rng_seed = rng.random();
        config.injected_bug = options.bug;
        config
    }

    fn start(&mut self, fault_phase_us: u64) {
        let profile = self.profile.clone();
        self.trace.record(0, &[0, self.options.seed], || format!("seed {} profile: {}", self.options.seed, profile));
        for node in 0..self.nodes.len() {
            self.arm_timer(node);
        }
        for client in 0..self.workload.client_count() {
            let delay = self.rng.random_range(0..50_000);
            self.schedule(delay, SimEvent::ClientNext { client });
        }
        if self.random_faults {
            for (kind, recurrence) in [
                (RecurringFault::Partition, profile.partitions),
                (RecurringFault::Crash, profile.crashes),
                (RecurringFault::Pause, profile.pauses),
                (RecurringFault::Wipe, profile.wipes),
            ] {
                if let Some(recurrence) = recurrence {
                    let delay = Recurrence::draw(&mut self.rng, recurrence.mean_interval_ms);
                    self.schedule(delay, SimEvent::Recurring(kind));
                }
            }
        }
        if let Some(interval_ms) = profile.churn_interval_ms {
            let delay = Recurrence::draw(&mut self.rng, interval_ms);
            self.schedule(delay, SimEvent::Churn);
        }
        if let Some(scenario) = self.options.scenario.clone() {
            for (at_ms, action) in scenario.events {
                self.schedule(at_ms * 1000, SimEvent::Fault(action));
            }
        }
        self.schedule(fault_phase_us, SimEvent::EndFaultPhase);
    }

    fn schedule(&mut self, delay_us: u64, event: SimEvent) {
        self.queue.schedule_at(self.now + delay_us, event);
    }

    fn schedule_at(&mut self, at: u64, event: SimEvent) {
        self.queue.schedule_at(at.max(self.now), event);
    }

    /// Runs to completion and checks the history.
    pub fn run(mut self) -> SimReport {
        let mut failures = Vec::new();
        while let Some((at, event)) = self.queue.pop() {
            debug_assert!(at >= self.now, "time never goes backwards");
            self.now = at;
            self.events += 1;
            if self.events > MAX_EVENTS_PER_RUN {
                failures.push(format!("event limit: more than {MAX_EVENTS_PER_RUN} events"));
                break;
            }
            // A panic (a broken internal invariant, in the core or here) ends
            // the run as a failure with its trace, so `replay` can show the
            // steps that led to it.
            if let Err(message) = crate::runner::catch_panic(|| self.handle(event)) {
                self.trace.record(self.now, &[98], || format!("PANIC {message}"));
                failures.push(message);
                break;
            }
            if !self.checker.ok()
                || self.finished
                || self.liveness_failure.is_some()
                || self.read_failure.is_some()
                || self.workload.wrong_answer.is_some()
            {
                break;
            }
        }
        failures.extend(self.checker.violations.iter().cloned());
        failures.extend(self.read_failure.take());
        failures.extend(self.workload.wrong_answer.take());
        if let Some(failure) = self.liveness_failure.take() {
            failures.push(failure);
        }
        self.workload.finish();
        let history = History { initial: Value::Nil, operations: std::mem::take(&mut self.workload.history) };
        if failures.is_empty() {
            match linearizability::check(&history, &SearchLimits::default()) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable { key, explanation } => failures.push(format!(
                    "linearizability: history of key {} is not linearizable: {explanation}",
                    key.unwrap_or_default()
                )),
                Verdict::Unknown { key, reason } => failures.push(format!(
                    "linearizability: check of key {} was inconclusive: {reason}",
                    key.unwrap_or_default()
                )),
            }
        }
        let verdict = if failures.is_empty() { "PASS".to_string() } else { format!("FAIL: {}", failures[0]) };
        self.trace.record(self.now, &[99, failures.len() as u64], || format!("verdict {verdict}"));
        let events = self.events;
        let sim_micros = self.now;
        let counts = self.workload.counts;
        let profile = self.profile.to_string();
        let seed = self.options.seed;
        let (trace_hash, trace_text) = self.trace.finish();
        SimReport {
            outcome: SeedOutcome {
                seed,
                trace_hash,
                failures,
                events,
                sim_micros,
                ops_ok: counts.ok,
                ops_failed: counts.failed,
                ops_unknown: counts.unknown,
            },
            trace_text,
            history,
            profile,
        }
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Deliver { to, message } => {
                let from = message.from.0 as usize - 1;
                if self.network.is_blocked(from, to) {
                    let words = message_words(&message);
                    self.trace.record(self.now, &[10, words[0], words[1], words[2]], || {
                        format!("cut in flight: {}", describe_message(&message))
                    });
                    return;
                }
                if self.stash_if_paused(to, SimEvent::Deliver { to, message: message.clone() }) {
                    return;
                }
                let local = self.nodes[to].clock.local(self.now);
                let Some(raft) = self.nodes[to].raft.as_mut() else {
                    return;
                };
                let words = message_words(&message);
                self.trace.record(
                    self.now,
                    &[11, words[0], words[1], words[2], words[3], words[4], words[5], words[6]],
                    || format!("deliver {}", describe_message(&message)),
                );
                let from = message.from;
                if let Err(error) = raft.handle_message(local, message) {
                    let description = format!("malformed message from {from}: {error}");
                    self.trace
                        .record(self.now, &[22, to as u64], || format!("{} VIOLATION {description}", node_id(to)));
                    self.checker.on_node_violation(to, &description);
                }
                self.drain(to);
            }
            SimEvent::Timer { node, token } => {
                let sim_node = &mut self.nodes[node];
                if sim_node.timer_token != token || sim_node.paused || sim_node.raft.is_none() {
                    return;
                }
                sim_node.timer_at = None;
                let local = sim_node.clock.local(self.now);
                self.trace.record(self.now, &[12, node as u64], || format!("{} timer", node_id(node)));
                self.nodes[node].raft.as_mut().expect("checked").handle_timeout(local);
                self.drain(node);
            }
            SimEvent::DiskSynced { node, incarnation, id } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                // The disk works while the process is frozen; the process
                // learns of it when it runs again (the stashed event syncs
                // nothing more then, but must still reach the node).
                self.nodes[node].disk.sync_through(id);
                if self.stash_if_paused(node, SimEvent::DiskSynced { node, incarnation, id }) {
                    return;
                }
                let local = self.nodes[node].clock.local(self.now);
                let Some(raft) = self.nodes[node].raft.as_mut() else {
                    return;
                };
                self.trace
                    .record(self.now, &[13, node as u64, id.0], || format!("{} synced write {}", node_id(node), id.0));
                raft.handle_persisted(local, id);
                self.drain(node);
            }
            SimEvent::ToNode { node, client, attempt, request } => {
                if self.stash_if_paused(node, SimEvent::ToNode { node, client, attempt, request: request.clone() }) {
                    return;
                }
                let sim_node = &mut self.nodes[node];
                let Some(raft) = sim_node.raft.as_mut() else {
                    return;
                };
                sim_node.next_request += 1;
                let request_id = sim_node.next_request;
                sim_node.requests.insert(request_id, RequestOwner::Client { client, attempt });
                let local = sim_node.clock.local(self.now);
                let is_read = matches!(request, ClientRequest::Read(..));
                self.trace.record(self.now, &[14, node as u64, client as u64, attempt, is_read as u64], || {
                    format!(
                        "client c{client} -> {} {} (attempt {attempt})",
                        node_id(node),
                        if is_read { "read" } else { "propose" }
                    )
                });
                match request {
                    ClientRequest::Propose(command) => raft.propose(local, RequestId(request_id), command),
                    ClientRequest::Read(query, consistency) => {
                        raft.read_with(local, RequestId(request_id), query, consistency)
                    }
                }
                self.drain(node);
            }
            SimEvent::ToClient { client, attempt, result, served_at } => {
                self.trace.record(self.now, &[15, client as u64, attempt, served_at.0], || {
                    format!("client c{client} <- {} (attempt {attempt}, at {served_at})", describe_result(&result))
                });
                let weak_before = self.workload.weak_reads.len();
                let step = self.workload.on_result(client, attempt, &result, served_at, self.now, &mut self.rng);
                if let Some(read) = self.workload.weak_reads.get(weak_before) {
                    if let Err(problem) = self.reference.check(read, crate::workload::decode_value) {
                        self.read_failure.get_or_insert(problem);
                    }
                }
                self.client_step(client, step);
            }
            SimEvent::ClientTimeout { client, attempt } => {
                let step = self.workload.on_timeout(client, attempt, self.now);
                if step != ClientStep::Ignore {
                    self.trace.record(self.now, &[16, client as u64, attempt], || {
                        format!("client c{client} attempt {attempt} timed out")
                    });
                }
                self.client_step(client, step);
            }
            SimEvent::ClientNext { client } => {
                let step = self.workload.next(client, self.now, &mut self.rng);
                self.client_step(client, step);
            }
            SimEvent::Fault(action) => {
                let harmful =
                    !matches!(action, FaultAction::Heal | FaultAction::Restart { .. } | FaultAction::Resume { .. });
                if harmful && self.healed_at.is_some() {
                    return; // the fault phase is over
                }
                self.apply_fault(action)
            }
            SimEvent::Recurring(kind) => self.recurring_fault(kind),
            SimEvent::Churn => self.churn(),
            SimEvent::EndFaultPhase => self.heal_everything(),
            SimEvent::LivenessDeadline => self.check_liveness_deadline(),
        }
    }

    fn stash_if_paused(&mut self, node: usize, event: SimEvent) -> bool {
        let sim_node = &mut self.nodes[node];
        if !sim_node.paused {
            return false;
        }
        if sim_node.stash.len() < PAUSED_STASH_LIMIT {
            sim_node.stash.push(event);
        }
        true
    }

    fn client_step(&mut self, client: usize, step: ClientStep) {
        match step {
            ClientStep::Send { node, attempt, request } => {
                self.schedule(ATTEMPT_TIMEOUT_US, SimEvent::ClientTimeout { client, attempt });
                match self.network.route_unpartitioned(&mut self.rng) {
                    Fate::Arrives { first_us, .. } => {
                        self.schedule(first_us, SimEvent::ToNode { node, client, attempt, request });
                    }
                    Fate::Lost | Fate::Blocked => {}
                }
            }
            ClientStep::Wait { delay_us } => self.schedule(delay_us, SimEvent::ClientNext { client }),
            ClientStep::Idle | ClientStep::Ignore => {}
        }
        self.check_finished();
    }

    /// Performs a node's actions, runs the safety checks, re-arms its timer.
    fn drain(&mut self, node: usize) {
        let mut roles = Vec::new();
        while let Some(action) = self.nodes[node].raft.as_mut().and_then(RaftNode::poll_action) {
            match action {
                Action::Send(message) => self.send(node, message),
                Action::Persist(write) => {
                    let raft = self.nodes[node].raft.as_ref().expect("node is running");
                    if let Some(prev_term) = write.entries.first().and_then(|first| raft.term_at(first.index.prev())) {
                        self.checker.on_persist(node, &write, prev_term);
                    }
                    let id = write.id;
                    let mut latency =
                        self.rng.random_range(self.profile.disk_latency_min_us..=self.profile.disk_latency_max_us);
                    let stall_ppm = self.profile.disk_stall_ppm;
                    if stall_ppm > 0
                        && self.healed_at.is_none()
                        && self.rng.random_range(0..crate::network::PPM) < stall_ppm
                    {
                        latency += self.rng.random_range(50_000..=300_000);
                    }
                    let incarnation = self.nodes[node].incarnation;
                    let snapshot_index = write.snapshot.as_ref().map_or(0, |snapshot| snapshot.meta.index.0);
                    let words = [20, node as u64, id.0, write.entries.len() as u64, snapshot_index];
                    self.trace.record(self.now, &words, || {
                        format!(
                            "{} write {}: {}{}{} entries{} hard state {:?}",
                            node_id(node),
                            id.0,
                            write
                                .snapshot
                                .as_ref()
                                .map(|snapshot| format!("snapshot upto {}, ", snapshot.meta.index))
                                .unwrap_or_default(),
                            write.discard_upto.map(|upto| format!("discard upto {upto}, ")).unwrap_or_default(),
                            write.entries.len(),
                            write
                                .truncate_from
                                .map(|from| format!(" after truncating from {from},"))
                                .unwrap_or_default(),
                            write.hard_state
                        )
                    });
                    let done_at = self.nodes[node].disk.submit(write, self.now, latency);
                    self.schedule_at(done_at, SimEvent::DiskSynced { node, incarnation, id });
                    self.maybe_crash_in_write(node, done_at);
                }
                Action::Respond { request, result } => {
                    let owner = self.nodes[node].requests.remove(&request.0);
                    let (client, attempt) = match owner {
                        Some(RequestOwner::Client { client, attempt }) => (client, attempt),
                        Some(RequestOwner::Operator) => {
                            self.trace.record(self.now, &[25, node as u64, request.0], || {
                                format!(
                                    "{} membership change {}: {}",
                                    node_id(node),
                                    request.0,
                                    describe_result(&result)
                                )
                            });
                            continue;
                        }
                        None => panic!("{} answered request {} it never received", node_id(node), request.0),
                    };
                    let served_at =
                        self.nodes[node].raft.as_ref().map_or(chorus_core::LogIndex::ZERO, |raft| raft.applied_index());
                    if let Fate::Arrives { first_us, .. } = self.network.route_unpartitioned(&mut self.rng) {
                        self.schedule(first_us, SimEvent::ToClient { client, attempt, result, served_at });
                    }
                }
                Action::Event(Event::RoleChanged { role, term }) => {
                    self.trace.record(self.now, &[21, node as u64, role as u64, term.0], || {
                        format!("{} becomes {:?} in {}", node_id(node), role, term)
                    });
                    roles.push((role, term));
                    if role == Role::Leader {
                        self.maybe_isolate_new_leader(node);
                    }
                }
                Action::Event(Event::Violation { description }) => {
                    self.trace
                        .record(self.now, &[22, node as u64], || format!("{} VIOLATION {description}", node_id(node)));
                    self.checker.on_node_violation(node, &description);
                }
                Action::Event(Event::TransferStarted { target, term }) => {
                    self.trace.record(self.now, &[23, node as u64, target.0, term.0], || {
                        format!("{} starts handing leadership of {term} to {target}", node_id(node))
                    });
                }
                Action::Event(Event::TransferAbandoned { target, term }) => {
                    self.trace.record(self.now, &[24, node as u64, target.0, term.0], || {
                        format!("{} abandons the transfer of {term} to {target}", node_id(node))
                    });
                }
                Action::Event(Event::FollowerLostEntries { follower, acknowledged, holds }) => {
                    self.trace.record(self.now, &[28, node as u64, follower.0, acknowledged.0, holds.0], || {
                        format!(
                            "{} sees {follower} lost entries it acknowledged (up to {acknowledged}; holds {holds})",
                            node_id(node)
                        )
                    });
                    // Simulated disks keep what they acknowledged as synced.
                    self.checker.on_lost_entries(node, follower, acknowledged, holds);
                }
                Action::Event(Event::MembershipChanged { index, membership }) => {
                    self.trace.record(self.now, &[26, node as u64, index.0], || {
                        format!("{} configuration at {index}: {membership}", node_id(node))
                    });
                }
                Action::Event(Event::SnapshotInstalled { index, term }) => {
                    self.trace.record(self.now, &[27, node as u64, index.0, term.0], || {
                        format!("{} installed the snapshot ending at {index}/{term}", node_id(node))
                    });
                }
            }
        }
        if let Some(raft) = self.nodes[node].raft.as_ref() {
            self.nodes[node].votes = raft.may_campaign();
        }
        let Some(raft) = self.nodes[node].raft.as_ref() else {
            return;
        };
        for (role, term) in roles {
            self.checker.on_role(node, role, term, raft);
        }
        let commit_before = self.checker.commit_seen(node);
        let committed_before = self.checker.committed_len();
        self.checker.after_step(node, raft);
        if self.checker.committed_len() > committed_before {
            // Replay what this node just committed into the reference store
            // (compaction waits an input, so the entries are still held).
            for index in self.reference.replayed().0 + 1..=self.checker.committed_len() as u64 {
                let index = chorus_core::LogIndex(index);
                let Some(entry) = raft.entry(index) else {
                    break; // the checker already reported how this node committed it
                };
                self.reference.apply(index, &entry.payload);
            }
            self.check_commit_protected();
        }
        let raft = self.nodes[node].raft.as_ref().expect("still running");
        let leader_committed = raft.role() == Role::Leader && raft.commit_index() > commit_before;
        if self.healed_at.is_some() && leader_committed {
            self.leader_progress_after_heal = true;
            self.check_finished();
        }
        if leader_committed {
            self.maybe_isolate_after_commit(node);
            self.maybe_isolate_leaving_leader(node);
        }
        self.arm_timer(node);
    }

    /// The newest committed entry must be safe from every possible election.
    fn check_commit_protected(&mut self) {
        let index = chorus_core::LogIndex(self.checker.committed_len() as u64);
        let committed_term = self.checker.committed_term(index);
        let initial_voters: Vec<NodeId> = (0..self.options.nodes).map(node_id).collect();
        let views: Vec<ElectionView> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(position, sim_node)| {
                let durable_last = sim_node.disk.last();
                let (last, holds, membership) = match sim_node.raft.as_ref() {
                    Some(raft) => {
                        let covered = raft.snapshot().is_some_and(|snapshot| snapshot.meta.index >= index);
                        let holds = covered || raft.term_at(index) == committed_term;
                        ((raft.status().last_term, raft.last_index()), holds, raft.membership().clone())
                    }
                    None if sim_node.wiped || sim_node.disk.hard_state.disk != sim_node.disk_id => return None,
                    None => {
                        // A crashed node campaigns with what its disk holds.
                        let disk = &sim_node.disk;
                        let covered = disk.snapshot.as_ref().is_some_and(|snapshot| snapshot.meta.index >= index);
                        let holds = covered || disk.term_at(index) == committed_term;
                        (durable_last, holds, disk.membership(&initial_voters))
                    }
                };
                Some(ElectionView {
                    id: node_id(position),
                    disk: sim_node.disk_id,
                    votes: sim_node.votes,
                    membership,
                    last,
                    holds,
                    durable_last,
                })
            })
            .collect();
        self.checker.check_commit_protected(index, &views);
    }

    /// The leader-isolation fault: cut a new leader off soon after it wins,
    /// before it can replicate its first entries — the interleaving behind
    /// Raft's figure 8.
    fn maybe_isolate_new_leader(&mut self, node: usize) {
        let rate = self.profile.isolate_new_leader_ppm;
        if rate == 0 || self.healed_at.is_some() || self.rng.random_range(0..crate::network::PPM) >= rate {
            return;
        }
        let delay = self.rng.random_range(0..=5_000);
        let duration = self.rng.random_range(50_000..=1_500_000);
        self.schedule(delay, SimEvent::Fault(FaultAction::Isolate { node: NodeRef::Index(node) }));
        self.schedule(delay + duration, SimEvent::Fault(FaultAction::Heal));
    }

    /// The isolate-after-commit fault: cut a leader off just after it
    /// committed (and acknowledged) entries its followers may not know are
    /// committed yet.
    fn maybe_isolate_after_commit(&mut self, node: usize) {
        let rate = self.profile.isolate_after_commit_ppm;
        if rate == 0 || self.healed_at.is_some() || self.rng.random_range(0..crate::network::PPM) >= rate {
            return;
        }
        let delay = self.rng.random_range(0..=1_000);
        let duration = self.rng.random_range(200_000..=1_500_000);
        self.schedule(delay, SimEvent::Fault(FaultAction::Isolate { node: NodeRef::Index(node) }));
        self.schedule(delay + duration, SimEvent::Fault(FaultAction::Heal));
    }

    /// The isolate-leaving-leader fault: a leader that just appended the
    /// configuration removing it is cut off at once (before the others
    /// receive it) for 0.2 to 1.5 s.
    fn maybe_isolate_leaving_leader(&mut self, node: usize) {
        let leaving = self.nodes[node].raft.as_ref().is_some_and(|raft| !raft.membership().is_voter(node_id(node)));
        if !self.profile.isolate_leaving_leader || !leaving || self.healed_at.is_some() {
            return;
        }
        let duration = self.rng.random_range(200_000..=1_500_000);
        self.schedule(0, SimEvent::Fault(FaultAction::Isolate { node: NodeRef::Index(node) }));
        self.schedule(duration, SimEvent::Fault(FaultAction::Heal));
    }

    /// The crash-in-write fault: kill the node before its write syncs.
    fn maybe_crash_in_write(&mut self, node: usize, synced_at: u64) {
        let rate = self.profile.crash_in_write_ppm;
        if rate == 0 || self.healed_at.is_some() || self.rng.random_range(0..crate::network::PPM) >= rate {
            return;
        }
        let crash_at = self.rng.random_range(self.now..=synced_at);
        let downtime = self.rng.random_range(10_000..=1_000_000);
        self.schedule_at(crash_at, SimEvent::Fault(FaultAction::Crash { node: NodeRef::Index(node) }));
        self.schedule_at(crash_at + downtime, SimEvent::Fault(FaultAction::Restart { node: NodeRef::Index(node) }));
    }

    fn send(&mut self, from: usize, message: Message) {
        self.checker.on_send(from, &message);
        self.checker.on_send_request_tag(from, self.nodes[from].incarnation, &message);
        self.checker.on_send_disk(from, message.disk, self.nodes[from].disk_id);
        let to = message.to.0 as usize - 1;
        let fate = self.network.route(&mut self.rng, from, to);
        let words = message_words(&message);
        match fate {
            Fate::Blocked | Fate::Lost => {
                let lost = fate == Fate::Lost;
                self.trace.record(self.now, &[17 + lost as u64, words[0], words[1], words[2], words[3]], || {
                    format!("{} {}", if lost { "lost" } else { "cut" }, describe_message(&message))
                });
            }
            Fate::Arrives { first_us, second_us } => {
                if let Some(second_us) = second_us {
                    self.schedule(second_us, SimEvent::Deliver { to, message: message.clone() });
                }
                self.schedule(first_us, SimEvent::Deliver { to, message });
            }
        }
    }

    fn arm_timer(&mut self, node: usize) {
        let sim_node = &mut self.nodes[node];
        let Some(raft) = sim_node.raft.as_ref() else {
            return;
        };
        if sim_node.paused {
            return;
        }
        let at = sim_node.clock.true_time_of(raft.poll_timeout(), self.now);
        if sim_node.timer_at == Some(at) {
            return;
        }
        sim_node.timer_token += 1;
        sim_node.timer_at = Some(at);
        let token = sim_node.timer_token;
        self.schedule_at(at, SimEvent::Timer { node, token });
    }

    // ----- faults ----------------------------------------------------------

    fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| {
                let raft = node.raft.as_ref()?;
                (raft.role() == Role::Leader && !node.paused).then_some((raft.term(), index))
            })
            .max()
            .map(|(_, index)| index)
    }

    fn resolve(&self, node: &NodeRef) -> Vec<usize> {
        match node {
            NodeRef::Index(index) => vec![*index],
            NodeRef::Leader => self.leader().into_iter().collect(),
            NodeRef::All => (0..self.nodes.len()).collect(),
        }
    }

    fn apply_fault(&mut self, action: FaultAction) {
        self.trace.record(self.now, &[30], || format!("FAULT {action}"));
        match action {
            FaultAction::Partition { groups } => self.network.partition(&groups),
            FaultAction::Isolate { node } => {
                for index in self.resolve(&node) {
                    let others: Vec<usize> = (0..self.nodes.len()).filter(|other| *other != index).collect();
                    self.network.partition(&[others]);
                }
            }
            FaultAction::OneWay { senders, receivers } => {
                let receivers: Vec<usize> = receivers.iter().flat_map(|node| self.resolve(node)).collect();
                self.network.block_one_way(&senders, &receivers);
            }
            FaultAction::CutLink { a, b } => {
                for a in self.resolve(&a) {
                    for b in self.resolve(&b) {
                        self.network.block_one_way(&[a], &[b]);
                        self.network.block_one_way(&[b], &[a]);
                    }
                }
            }
            FaultAction::Heal => self.network.heal(),
            FaultAction::Crash { node } => {
                for index in self.resolve(&node) {
                    self.crash(index);
                }
            }
            FaultAction::Restart { node } => {
                for index in self.resolve(&node) {
                    self.restart(index);
                }
            }
            FaultAction::Pause { node } => {
                for index in self.resolve(&node) {
                    if self.nodes[index].raft.is_some() {
                        self.nodes[index].paused = true;
                    }
                }
            }
            FaultAction::Resume { node } => {
                for index in self.resolve(&node) {
                    self.resume(index);
                }
            }
            FaultAction::SetLoss { loss_ppm } => self.network.params.loss_ppm = loss_ppm,
            FaultAction::Wipe { node } => {
                for index in self.resolve(&node) {
                    self.wipe(index);
                }
            }
            FaultAction::SetReorder { reorder_ppm, max_delay_us } => {
                self.network.params.reorder_ppm = reorder_ppm;
                self.network.params.reorder_delay_max_us = max_delay_us;
            }
            FaultAction::Change(change) => {
                if !self.operator_change(change.clone()) {
                    // Not possible yet (no leader, or the node is not caught
                    // up): the operator tries again shortly.
                    self.schedule(OPERATOR_RETRY_US, SimEvent::Fault(FaultAction::Change(change)));
                }
            }
            FaultAction::Transfer { to } => {
                if let (Some(leader), Some(target)) = (self.leader(), self.resolve(&to).first().copied()) {
                    let local = self.nodes[leader].clock.local(self.now);
                    let raft = self.nodes[leader].raft.as_mut().expect("leaders run");
                    let result = raft.transfer_leadership(local, node_id(target));
                    self.trace.record(self.now, &[34, leader as u64, target as u64], || {
                        format!(
                            "operator: transfer leadership from {} to {}: {result:?}",
                            node_id(leader),
                            node_id(target)
                        )
                    });
                    self.drain(leader);
                }
            }
        }
    }

    fn crash(&mut self, node: usize) {
        let sim_node = &mut self.nodes[node];
        if sim_node.raft.is_none() {
            return;
        }
        sim_node.raft = None;
        sim_node.disk.crash(self.now);
        sim_node.incarnation += 1;
        sim_node.paused = false;
        sim_node.stash.clear();
        sim_node.requests.clear();
        sim_node.timer_at = None;
        sim_node.timer_token += 1;
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].raft.is_some() {
            return;
        }
        let voters: Vec<NodeId> = (0..self.options.nodes).map(node_id).collect();
        let config = Self::raft_config(&self.options, &self.profile, &voters, node, &mut self.rng);
        if self.nodes[node].wiped {
            self.nodes[node].wiped = false;
            self.nodes[node].disk_id = DiskId(self.rng.random_range(1..u64::MAX));
        }
        let sim_node = &mut self.nodes[node];
        let local = sim_node.clock.local(self.now);
        let hard_state = sim_node.disk.hard_state;
        // A node whose disk never recorded its identity (new, wiped, or
        // crashed before its first write synced) joins with an empty disk.
        let joins = sim_node.disk_id != DiskId::BOOTSTRAP && hard_state.disk != sim_node.disk_id;
        let stored = sim_node.disk.durable_state();
        let raft = if joins {
            RaftNode::join(config, sim_node.disk_id, KvStore::default(), local)
                .unwrap_or_else(|error| panic!("{} cannot join: {error}", node_id(node)))
        } else if stored.is_empty() {
            // An initial member that crashed before its bootstrap write
            // synced: it never said anything, so it may bootstrap again.
            RaftNode::new(config, KvStore::default(), local)
                .unwrap_or_else(|error| panic!("{} cannot bootstrap: {error}", node_id(node)))
        } else {
            RaftNode::restart(config, stored, KvStore::default(), local)
                .unwrap_or_else(|error| panic!("{} cannot restart from its own disk: {error}", node_id(node)))
        };
        let disk_id = sim_node.disk_id;
        self.trace.record(self.now, &[31, node as u64, hard_state.term.0, hard_state.commit.0, disk_id.0], || {
            if joins {
                format!("{} rejoins with an empty disk ({disk_id})", node_id(node))
            } else {
                format!(
                    "{} restarts from disk: {:?}, {} entries, snapshot {:?}",
                    node_id(node),
                    hard_state,
                    sim_node.disk.entries.len(),
                    sim_node.disk.snapshot.as_ref().map(|snapshot| snapshot.meta.index)
                )
            }
        });
        sim_node.raft = Some(raft);
        if joins {
            self.checker.on_wipe(node);
        }
        self.checker.on_restart(node, self.nodes[node].raft.as_ref().expect("just set"));
        self.drain(node);
    }

    /// Crashes the node and replaces its disk with an empty one. At most one
    /// voter at a time may be without its recorded disk (more would be data
    /// loss, which no consensus protocol survives), and never in a cluster
    /// of fewer than three voters.
    fn wipe(&mut self, node: usize) {
        let Some(leader) = self.leader() else {
            return;
        };
        let leader_raft = self.nodes[leader].raft.as_ref().expect("leaders run");
        let membership = leader_raft.committed_membership().clone();
        let latest = leader_raft.membership().clone();
        let stale_voters = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(position, sim_node)| {
                let id = node_id(*position);
                [&membership, &latest]
                    .iter()
                    .any(|config| config.is_voter(id) && !config.is_voter_on(id, sim_node.disk_id))
                    || sim_node.wiped
            })
            .count();
        if stale_voters > 0 || membership.voters.len() < 3 || membership.is_joint() || latest != membership {
            return;
        }
        self.crash(node);
        self.nodes[node].disk.wipe(self.now);
        self.nodes[node].wiped = true;
    }

    fn resume(&mut self, node: usize) {
        if !self.nodes[node].paused {
            return;
        }
        self.nodes[node].paused = false;
        // A process waking from a freeze finds input waiting on many
        // connections and reads them in whatever order its poll loop picks:
        // each source stays in order, the sources interleave at random.
        let mut sources: BTreeMap<(u8, u64), std::collections::VecDeque<SimEvent>> = BTreeMap::new();
        for event in std::mem::take(&mut self.nodes[node].stash) {
            let source = match &event {
                SimEvent::Deliver { message, .. } => (0, message.from.0),
                SimEvent::ToNode { client, .. } => (1, *client as u64),
                _ => (2, 0),
            };
            sources.entry(source).or_default().push_back(event);
        }
        let mut queues: Vec<_> = sources.into_values().collect();
        while !queues.is_empty() {
            let pick = self.rng.random_range(0..queues.len());
            let event = queues[pick].pop_front().expect("empty queues are removed");
            if queues[pick].is_empty() {
                queues.swap_remove(pick);
            }
            self.handle(event);
        }
        let local = self.nodes[node].clock.local(self.now);
        if let Some(raft) = self.nodes[node].raft.as_mut() {
            // Timers that should have fired during the pause fire late, now.
            raft.handle_timeout(local);
            self.nodes[node].timer_at = None;
            self.drain(node);
        }
    }

    fn recurring_fault(&mut self, kind: RecurringFault) {
        if self.healed_at.is_some() {
            return;
        }
        let nodes = self.nodes.len();
        let (recurrence, action, undo) = match kind {
            RecurringFault::Partition => {
                let recurrence = self.profile.partitions.expect("scheduled only when on");
                let action = match self.rng.random_range(0..4) {
                    0 => {
                        let mut order: Vec<usize> = (0..nodes).collect();
                        for i in (1..order.len()).rev() {
                            order.swap(i, self.rng.random_range(0..=i));
                        }
                        let split = self.rng.random_range(1..nodes.max(2));
                        let (left, right) = order.split_at(split.min(nodes));
                        FaultAction::Partition { groups: vec![left.to_vec(), right.to_vec()] }
                    }
                    1 => FaultAction::Isolate { node: NodeRef::Index(self.rng.random_range(0..nodes)) },
                    // A node that cannot reach the leader but reaches the
                    // others: the case check-quorum's vote lease exists for.
                    2 => {
                        FaultAction::CutLink { a: NodeRef::Leader, b: NodeRef::Index(self.rng.random_range(0..nodes)) }
                    }
                    _ => {
                        let sender = self.rng.random_range(0..nodes);
                        let receivers = (0..nodes).filter(|node| *node != sender).map(NodeRef::Index).collect();
                        if self.rng.random_bool(0.5) {
                            FaultAction::OneWay { senders: vec![sender], receivers }
                        } else {
                            let senders = (0..nodes).filter(|node| *node != sender).collect();
                            FaultAction::OneWay { senders, receivers: vec![NodeRef::Index(sender)] }
                        }
                    }
                };
                (recurrence, action, FaultAction::Heal)
            }
            RecurringFault::Crash => {
                let recurrence = self.profile.crashes.expect("scheduled only when on");
                let node = NodeRef::Index(self.rng.random_range(0..nodes));
                if self.rng.random_range(0..100) < self.profile.bounce_percent {
                    // A process bounce: back within 2 ms.
                    self.apply_fault(FaultAction::Crash { node: node.clone() });
                    let downtime = self.rng.random_range(0..=2_000);
                    self.schedule(downtime, SimEvent::Fault(FaultAction::Restart { node }));
                    let next = downtime + Recurrence::draw(&mut self.rng, recurrence.mean_interval_ms);
                    self.schedule(next, SimEvent::Recurring(kind));
                    return;
                }
                (recurrence, FaultAction::Crash { node: node.clone() }, FaultAction::Restart { node })
            }
            RecurringFault::Pause => {
                let recurrence = self.profile.pauses.expect("scheduled only when on");
                let node = NodeRef::Index(self.rng.random_range(0..nodes));
                (recurrence, FaultAction::Pause { node: node.clone() }, FaultAction::Resume { node })
            }
            RecurringFault::Wipe => {
                let recurrence = self.profile.wipes.expect("scheduled only when on");
                let node = NodeRef::Index(self.rng.random_range(0..nodes));
                (recurrence, FaultAction::Wipe { node: node.clone() }, FaultAction::Restart { node })
            }
        };
        self.apply_fault(action);
        let duration = Recurrence::draw(&mut self.rng, recurrence.mean_duration_ms);
        self.schedule(duration, SimEvent::Fault(undo));
        // The next one strikes only after this one ends.
        let next = duration + Recurrence::draw(&mut self.rng, recurrence.mean_interval_ms);
        self.schedule(next, SimEvent::Recurring(kind));
    }

    /// The operator: one membership change or leadership transfer, chosen
    /// from what the leader knows. Nodes that lost their disk get their new
    /// disk recorded first; after healing that is all the operator does.
    fn churn(&mut self) {
        if let Some(interval_ms) = self.profile.churn_interval_ms {
            let delay = Recurrence::draw(&mut self.rng, interval_ms);
            self.schedule(delay, SimEvent::Churn);
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let raft = self.nodes[leader].raft.as_ref().expect("leaders run");
        let membership = raft.membership().clone();
        // A voter whose disk was lost is renewed first (once its new disk
        // has caught up); nothing else changes meanwhile.
        let stale = membership.voters.iter().find(|(id, disk)| {
            let sim_node = &self.nodes[id.0 as usize - 1];
            sim_node.disk_id != **disk || sim_node.wiped
        });
        let renew = stale.map(|(id, _)| *id);
        let initial = self.options.nodes;
        let all: Vec<NodeId> = (0..self.nodes.len()).map(node_id).collect();
        let outsiders: Vec<NodeId> = all.iter().copied().filter(|id| !membership.members().contains(id)).collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let voters: Vec<NodeId> = membership.voters.keys().copied().collect();
        let pick = |rng: &mut ChaCha8Rng, list: &[NodeId]| list[rng.random_range(0..list.len())];
        // Removing or replacing the leader itself is the hard case (it must
        // hand over through a configuration it is not in): aim at it often.
        let leader_id = node_id(leader);
        let pick_voter = |rng: &mut ChaCha8Rng, list: &[NodeId]| {
            if list.contains(&leader_id) && rng.random_bool(0.4) {
                leader_id
            } else {
                pick(rng, list)
            }
        };
        let change = if let Some(node) = renew {
            // A voter whose disk is lost and not yet back stays as it is.
            (!self.nodes[node.0 as usize - 1].wiped).then_some(MembershipChange::RenewDisk(node))
        } else if self.healed_at.is_some() {
            None
        } else {
            match self.rng.random_range(0..6) {
                0 if !outsiders.is_empty() => Some(MembershipChange::AddLearner(pick(&mut self.rng, &outsiders))),
                1 if !learners.is_empty() => Some(MembershipChange::Promote(pick(&mut self.rng, &learners))),
                // Keep the voter count within one of the initial size (and
                // never below one).
                2 if voters.len() + 1 > initial.max(2) => {
                    Some(MembershipChange::Remove(pick_voter(&mut self.rng, &voters)))
                }
                3 if !learners.is_empty() => Some(MembershipChange::Replace {
                    remove: pick_voter(&mut self.rng, &voters),
                    add: pick(&mut self.rng, &learners),
                }),
                4 if !learners.is_empty() => Some(MembershipChange::Remove(pick(&mut self.rng, &learners))),
                _ => {
                    let target = pick(&mut self.rng, &voters);
                    let local = self.nodes[leader].clock.local(self.now);
                    let raft = self.nodes[leader].raft.as_mut().expect("leaders run");
                    let result = raft.transfer_leadership(local, target);
                    self.trace.record(self.now, &[34, leader as u64, target.0], || {
                        format!("operator: transfer leadership from {} to {target}: {result:?}", node_id(leader))
                    });
                    self.drain(leader);
                    None
                }
            }
        };
        if let Some(change) = change {
            self.operator_change(change);
        }
    }

    /// Asks the leader for `change`; false if there is no leader or it
    /// refused.
    fn operator_change(&mut self, change: MembershipChange) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let sim_node = &mut self.nodes[leader];
        sim_node.next_request += 1;
        let request = sim_node.next_request;
        sim_node.requests.insert(request, RequestOwner::Operator);
        let local = sim_node.clock.local(self.now);
        let raft = sim_node.raft.as_mut().expect("leaders run");
        let result = raft.change_membership(local, RequestId(request), change.clone());
        if result.is_err() {
            sim_node.requests.remove(&request);
        }
        self.trace.record(self.now, &[33, leader as u64, request], || {
            format!("operator asks {}: {change:?}: {result:?}", node_id(leader))
        });
        self.drain(leader);
        result.is_ok()
    }

    fn heal_everything(&mut self) {
        self.trace.record(self.now, &[32], || "END OF FAULT PHASE: heal everything".to_string());
        self.healed_at = Some(self.now);
        self.network.heal();
        let delays = self.network.params;
        self.network.params = NetworkParams {
            delay_min_us: delays.delay_min_us,
            delay_max_us: delays.delay_max_us,
            ..NetworkParams::reliable()
        };
        for node in 0..self.nodes.len() {
            self.restart(node);
            self.resume(node);
        }
        self.schedule(self.options.liveness_bound_us, SimEvent::LivenessDeadline);
    }

    fn check_finished(&mut self) {
        if let Some(healed_at) = self.healed_at {
            if self.leader_progress_after_heal && self.now >= healed_at + WORKLOAD_TAIL_US && self.workload.all_idle() {
                self.finished = true;
            }
        }
    }

    fn check_liveness_deadline(&mut self) {
        self.check_finished();
        if self.finished {
            return;
        }
        let bound_s = self.options.liveness_bound_us as f64 / 1e6;
        let failure = if !self.leader_progress_after_heal {
            format!("liveness: no leader committed anything within {bound_s}s after healing")
        } else {
            let pending: Vec<String> = self
                .workload
                .pending()
                .map(|(client, invoked)| format!("c{client} (invoked at {})", Time::from_micros(invoked)))
                .collect();
            format!("liveness: client operations still pending {bound_s}s after healing: {}", pending.join(", "))
        };
        self.liveness_failure = Some(failure);
    }
}

/// Runs one seed.
pub fn run_seed(options: SimOptions) -> SimReport {
    Simulation::new(options).run()
}
