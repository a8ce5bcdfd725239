//! The Raft world: its nodes, events and event loop.

use super::describe::{describe_message, describe_result, message_words, RaftRecord};
use super::faults::RecurringFault;
use super::{
    SeedOutcome, SimOptions, SimReport, DEFAULT_CLIENTS, DEFAULT_KEYS, ELECTION_TIMEOUT_MS, FAULT_PHASE_US,
    HEARTBEAT_INTERVAL_MS, MAX_EVENTS_PER_RUN, WORKLOAD_TAIL_US,
};
use crate::check::reads::ReferenceKv;
use crate::check::safety::SafetyChecker;
use crate::clock::DriftClock;
use crate::disk::Disk;
use crate::faults::{FaultAction, FaultProfile, Recurrence};
use crate::network::{Fate, Network};
pub(super) use crate::skeleton::node_id;
use crate::skeleton::{run_events, Engine, LoopEnd, NodeSlot, World, MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND};
use crate::timeline::Fate as MessageFate;
use crate::trace::Trace;
use crate::workload::{ClientRequest, ClientStep, Workload, ATTEMPT_TIMEOUT_US};
use chorus_core::kv::KvStore;
use chorus_core::raft::{
    Action, ClientResult, Config, DiskId, Event, Message, MessageBody, PersistId, PersistRequest, RaftNode, ReadMode,
    Role, SnapshotPolicy,
};
use chorus_core::wire;
use chorus_core::{NodeId, RequestId, Term};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Who a node's client request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestOwner {
    Client {
        client: usize,
        attempt: u64,
    },
    /// The simulated operator's membership changes.
    Operator,
    /// The calm probe's request (`probe.rs`).
    Probe,
}

/// What can happen in the Raft world.
pub enum SimEvent {
    Deliver {
        /// The receiving node's index.
        to: usize,
        /// When it was sent, simulated microseconds (for the timeline).
        sent_us: u64,
        /// The sending node's index.
        from: usize,
        /// The message as it crossed the network: encoded by the core's
        /// wire codec at send, decoded at delivery, as a real transport
        /// would.
        bytes: Vec<u8>,
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
    /// With quiescence on: the world, as the driver's failure detector,
    /// wakes the quiesced followers of a leader that is down, paused or cut
    /// off from them (every [`DETECTOR_INTERVAL_US`](super::quiet::DETECTOR_INTERVAL_US)).
    DetectFailures,
    /// The end of the quiet tail: the group must have quiesced.
    QuietTailEnd,
    /// The calm probe looks whether the group settled, or sends its next
    /// request.
    Probe,
    /// The calm probe's request `seq` is past its bound.
    ProbeDeadline {
        seq: u64,
    },
}

pub(super) struct SimNode {
    pub(super) raft: Option<RaftNode<KvStore>>,
    pub(super) disk: Disk,
    /// The identity of the disk the node runs on (new after each wipe).
    pub(super) disk_id: DiskId,
    /// The disk was wiped while the node was down: it rejoins empty.
    pub(super) wiped: bool,
    /// Whether the node counted itself a voter when it last ran.
    pub(super) votes: bool,
    /// Clock, timer and pause stash.
    pub(super) slot: NodeSlot<SimEvent>,
    pub(super) incarnation: u64,
    /// Client requests this incarnation is working on.
    pub(super) requests: BTreeMap<u64, RequestOwner>,
    pub(super) next_request: u64,
    /// The applied and snapshot indexes after this life's previous step
    /// (the snapshot-policy checker).
    pub(super) applied_seen: Option<(chorus_core::LogIndex, chorus_core::LogIndex)>,
    /// Whether this node was the leader after its previous step.
    pub(super) led: bool,
    /// The node installed a leader's snapshot in the step being checked.
    pub(super) installed: bool,
    /// The operator shut the node down for good (its configuration no
    /// longer lists it): restarts scheduled earlier leave it down.
    pub(super) retired: bool,
}

/// One seed's Raft cluster, network, clients and checkers in virtual time.
pub struct RaftWorld {
    pub(super) options: SimOptions,
    pub(super) profile: FaultProfile,
    pub(super) random_faults: bool,
    /// The seed's random faults and operator actions strike; false with a
    /// `seed_profile` scenario, where they are drawn but only the
    /// scenario's events strike.
    pub(super) strike: bool,
    /// Every fault and operator action applied so far, at its simulated
    /// microsecond, with "the leader" resolved to a node: the run's faults
    /// made explicit (what `chorus-sim shrink` starts from).
    pub(super) applied_faults: Vec<(u64, FaultAction)>,
    pub(super) engine: Engine<SimEvent>,
    pub(super) network: Network,
    pub(super) nodes: Vec<SimNode>,
    pub(super) workload: Workload,
    pub(super) checker: SafetyChecker,
    pub(super) reference: ReferenceKv,
    pub(super) read_failure: Option<String>,
    pub(super) healed_at: Option<u64>,
    pub(super) leader_progress_after_heal: bool,
    pub(super) liveness_failure: Option<String>,
    pub(super) finished: bool,
    /// With quiescence on: when the quiet tail began (the workload done
    /// and liveness shown after healing); the group must quiesce in it.
    pub(super) quiet_tail_from: Option<u64>,
    /// The calm probe, once the workload is done and liveness shown.
    pub(super) probe: Option<super::probe::Probe>,
    /// While a client request is handed to a follower: the node, the
    /// request and the leader it followed then. An answer given at once
    /// must name that leader, not say there is none (`leader knowledge:`).
    answering: Option<(usize, u64, NodeId)>,
}

impl RaftWorld {
    /// A world for `options`: the seed's RNG draws the fault profile, then
    /// the nodes' clocks and settings and the workload. Panics without
    /// nodes. Nothing runs until [`run`](RaftWorld::run).
    pub fn new(options: SimOptions) -> RaftWorld {
        assert!(options.nodes >= 1, "a cluster needs at least one node");
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let scenario = options.scenario.as_ref();
        let scenario_only = scenario.is_some_and(|scenario| !scenario.random_faults && !scenario.seed_profile);
        let strike = !scenario.is_some_and(|scenario| scenario.seed_profile);
        let mut profile = if scenario_only { FaultProfile::quiet() } else { FaultProfile::draw(&mut rng) };
        if let Some(knobs) = options.scenario.as_ref().map(|scenario| &scenario.knobs) {
            profile.spares = knobs.spares.unwrap_or(profile.spares);
            profile.snapshot_every_entries = knobs.snapshot_every_entries.unwrap_or(profile.snapshot_every_entries);
            profile.max_retained_entries = knobs.max_retained_entries.unwrap_or(profile.max_retained_entries);
            profile.snapshot_chunk_bytes = knobs.snapshot_chunk_bytes.unwrap_or(profile.snapshot_chunk_bytes);
            profile.max_entries_per_append = knobs.max_entries_per_append.unwrap_or(profile.max_entries_per_append);
            if let Some((append, inflight)) = knobs.append_bytes {
                (profile.max_append_bytes, profile.max_inflight_bytes) = (append, inflight);
            }
            profile.max_pending_reads = knobs.max_pending_reads.unwrap_or(profile.max_pending_reads);
        }
        let fault_phase_us = options.scenario.as_ref().map_or(FAULT_PHASE_US, |scenario| {
            scenario.duration_ms.map_or(FAULT_PHASE_US.max(scenario.last_event_us() + 1_000_000), |ms| ms * 1000)
        });
        let total = options.nodes + profile.spares;
        let nodes = Self::build_nodes(&options, &profile, &mut rng);
        let clients = options.scenario.as_ref().and_then(|scenario| scenario.knobs.clients);
        let workload =
            Workload::new(clients.unwrap_or(DEFAULT_CLIENTS), total, DEFAULT_KEYS, fault_phase_us + WORKLOAD_TAIL_US);
        let mut simulation = RaftWorld {
            network: Network::new(total, profile.network),
            random_faults: !scenario_only,
            strike,
            applied_faults: Vec::new(),
            checker: SafetyChecker::new(total),
            reference: ReferenceKv::default(),
            read_failure: None,
            engine: Engine::new(rng, options.keep_trace_text),
            profile,
            options,
            nodes,
            workload,
            healed_at: None,
            leader_progress_after_heal: false,
            liveness_failure: None,
            finished: false,
            quiet_tail_from: None,
            probe: None,
            answering: None,
        };
        simulation.workload.give_up_before_us = fault_phase_us;
        if simulation.profile.quiesce_after_ms > 0 {
            let (every, length) = (simulation.profile.lull_every_ms, simulation.profile.lull_ms);
            simulation.workload.lulls = Some((every * 1000, length * 1000));
        }
        if simulation.options.keep_timeline {
            simulation.start_timeline();
        }
        simulation.start(fault_phase_us);
        simulation
    }

    /// The cluster's nodes: the initial voters bootstrapped, the spares
    /// joined empty on fresh disks, each with its drifting clock.
    fn build_nodes(options: &SimOptions, profile: &FaultProfile, rng: &mut ChaCha8Rng) -> Vec<SimNode> {
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
            let config = Self::raft_config(options, profile, &voters, index, rng);
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
                slot: NodeSlot::new(clock),
                incarnation: 0,
                requests: BTreeMap::new(),
                next_request: 0,
                applied_seen: None,
                led: false,
                installed: false,
                retired: false,
            });
        }
        nodes
    }

    pub(super) fn raft_config(
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
        if profile.max_append_bytes > 0 {
            config.max_append_bytes = profile.max_append_bytes;
            config.max_inflight_bytes = profile.max_inflight_bytes;
        }
        if profile.max_pending_reads > 0 {
            config.max_pending_reads = profile.max_pending_reads;
        }
        config.snapshot_policy = SnapshotPolicy { entries: profile.snapshot_every_entries, bytes: 0 };
        config.max_retained_entries = profile.max_retained_entries;
        config.snapshot_chunk_bytes = profile.snapshot_chunk_bytes;
        config.forward_proposals = profile.forward_proposals;
        config.follower_reads = profile.follower_reads;
        config.pre_vote = profile.pre_vote;
        config.check_quorum = profile.check_quorum;
        config.quiesce_after_ms = profile.quiesce_after_ms;
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
        self.engine.record(RaftRecord::RunStarted, &[self.options.seed], || {
            format!("seed {} profile: {}", self.options.seed, profile)
        });
        for node in 0..self.nodes.len() {
            self.arm_timer(node);
        }
        for client in 0..self.workload.client_count() {
            let delay = self.engine.rng.random_range(0..50_000);
            self.engine.schedule(delay, SimEvent::ClientNext { client });
        }
        if self.random_faults {
            for (kind, recurrence) in [
                (RecurringFault::Partition, profile.partitions),
                (RecurringFault::Crash, profile.crashes),
                (RecurringFault::Pause, profile.pauses),
                (RecurringFault::Wipe, profile.wipes),
            ] {
                if let Some(recurrence) = recurrence {
                    let delay = Recurrence::draw(&mut self.engine.rng, recurrence.mean_interval_ms);
                    self.engine.schedule(delay, SimEvent::Recurring(kind));
                }
            }
        }
        if let Some(interval_ms) = profile.churn_interval_ms {
            let delay = Recurrence::draw(&mut self.engine.rng, interval_ms);
            self.engine.schedule(delay, SimEvent::Churn);
        }
        if let Some(scenario) = self.options.scenario.clone() {
            for (at_us, action) in scenario.events {
                if scenario.seed_profile {
                    // Stands for a fault the injector scheduled at that moment,
                    // which would run after what was already due then.
                    self.engine.queue.schedule_after_ties_at(at_us, SimEvent::Fault(action));
                } else {
                    self.engine.schedule(at_us, SimEvent::Fault(action));
                }
            }
        }
        self.engine.schedule(fault_phase_us, SimEvent::EndFaultPhase);
        if profile.quiesce_after_ms > 0 {
            self.engine.schedule(super::quiet::DETECTOR_INTERVAL_US, SimEvent::DetectFailures);
        }
    }

    /// Runs to completion and checks the history.
    pub fn run(self) -> SimReport {
        self.run_recorded().0
    }

    /// Runs to completion and checks the history; also returns every fault
    /// and operator action that was applied, `(at_us, action)` in order,
    /// with "the leader" resolved to the node it was.
    pub fn run_recorded(mut self) -> (SimReport, Vec<(u64, FaultAction)>) {
        let mut failures = self.run_events();
        let history = self.check_final(&mut failures);
        let verdict = if failures.is_empty() { "PASS".to_string() } else { format!("FAIL: {}", failures[0]) };
        self.engine.record(RaftRecord::Verdict, &[failures.len() as u64], || format!("verdict {verdict}"));
        let events = self.engine.events;
        let sim_micros = self.engine.now;
        let counts = self.workload.counts;
        let profile = self.profile.to_string();
        let seed = self.options.seed;
        let (trace_hash, trace_text) = std::mem::replace(&mut self.engine.trace, Trace::new(false, 0)).finish();
        let timeline = self.finish_timeline(&failures, &history, &trace_hash);
        let report = SimReport {
            outcome: SeedOutcome { seed, trace_hash, failures, events, sim_micros, metrics: counts },
            trace_text,
            history,
            profile,
            timeline,
        };
        (report, self.applied_faults)
    }

    /// Runs the event loop; returns the failure it stopped on, if any.
    fn run_events(&mut self) -> Vec<String> {
        let per_second = MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND * self.nodes.len() as u64;
        match run_events(self, MAX_EVENTS_PER_RUN, per_second) {
            LoopEnd::Finished | LoopEnd::QueueEmpty => Vec::new(),
            LoopEnd::EventLimit => vec![format!("event limit: more than {MAX_EVENTS_PER_RUN} events")],
            LoopEnd::EventStorm { second, limit } => {
                vec![format!("event storm: more than {limit} events in simulated second {second}")]
            }
            // A panic (a broken internal invariant, in the core or here) ends
            // the run as a failure with its trace, so `replay` can show the
            // steps that led to it.
            LoopEnd::Panic(message) => {
                self.engine.record(RaftRecord::Panic, &[], || format!("PANIC {message}"));
                self.engine.note(|recorder, now| recorder.mark(None, now, format!("PANIC {message}"), "violation"));
                vec![message]
            }
        }
    }

    pub(super) fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Deliver { to, sent_us, from, bytes } => self.deliver(to, sent_us, from, bytes),
            SimEvent::Timer { node, token } => self.timer_fired(node, token),
            SimEvent::DiskSynced { node, incarnation, id } => self.disk_synced(node, incarnation, id),
            SimEvent::ToNode { node, client, attempt, request } => self.client_request(node, client, attempt, request),
            SimEvent::ToClient { client, attempt, result, served_at } => {
                self.client_response(client, attempt, result, served_at)
            }
            SimEvent::ClientTimeout { client, attempt } => {
                let step = self.workload.on_timeout(client, attempt, self.engine.now);
                if step != ClientStep::Ignore {
                    self.engine.record(RaftRecord::ClientTimedOut, &[client as u64, attempt], || {
                        format!("client c{client} attempt {attempt} timed out")
                    });
                }
                self.client_step(client, step);
            }
            SimEvent::ClientNext { client } => {
                let step = self.workload.next(client, self.engine.now, &mut self.engine.rng);
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
            SimEvent::DetectFailures => self.detect_failures(),
            SimEvent::QuietTailEnd => self.check_quiet_tail(),
            SimEvent::Probe => self.probe_step(),
            SimEvent::ProbeDeadline { seq } => self.probe_deadline(seq),
        }
    }

    fn deliver(&mut self, to: usize, sent_us: u64, from: usize, bytes: Vec<u8>) {
        let message = match wire::decode_message(&bytes) {
            Ok(message) => message,
            Err(error) => {
                let description = format!("a message from {} does not decode: {error}", node_id(from));
                return self.checker.on_wire_error(description);
            }
        };
        if self.network.is_blocked(from, to) {
            let words = message_words(&message);
            self.engine.record(RaftRecord::CutInFlight, &[words[0], words[1], words[2]], || {
                format!("cut in flight: {}", describe_message(&message))
            });
            return self.note_arrived(&message, sent_us, MessageFate::CutInFlight);
        }
        if self.stash_if_paused(to, SimEvent::Deliver { to, sent_us, from, bytes }) {
            return;
        }
        if self.nodes[to].raft.is_none() {
            return self.note_arrived(&message, sent_us, MessageFate::ReceiverDown);
        }
        self.note_arrived(&message, sent_us, MessageFate::Delivered);
        let local = self.nodes[to].slot.clock.local(self.engine.now);
        let Some(raft) = self.nodes[to].raft.as_mut() else {
            return;
        };
        let words = message_words(&message);
        self.engine.trace.record(
            self.engine.now,
            RaftRecord::Delivered,
            &[words[0], words[1], words[2], words[3], words[4], words[5], words[6]],
            || format!("deliver {}", describe_message(&message)),
        );
        let from = message.from;
        let (term, from_leader) = (message.term, is_leaders_message(&message.body));
        if let Err(error) = raft.handle_message(local, message) {
            // Rejected whole by the node: a peer broke the protocol's shape.
            self.record_violation(to, format!("malformed message from {from}: {error}"));
        } else if from_leader && raft.term() == term && raft.role() == Role::Follower && raft.leader() != Some(from) {
            self.checker.on_leader_unknown(to, from, term, raft.leader());
        }
        self.drain(to);
    }

    /// A node reported a protocol violation (or rejected a message whole).
    fn record_violation(&mut self, node: usize, description: String) {
        self.engine.note(|recorder, now| {
            recorder.mark(Some(node), now, format!("{} VIOLATION {description}", node_id(node)), "violation")
        });
        self.engine
            .record(RaftRecord::Violation, &[node as u64], || format!("{} VIOLATION {description}", node_id(node)));
        self.checker.on_node_violation(node, &description);
    }

    fn timer_fired(&mut self, node: usize, token: u64) {
        let sim_node = &mut self.nodes[node];
        if !sim_node.slot.timer_is_due(token) || sim_node.raft.is_none() {
            return;
        }
        sim_node.slot.timer_fired();
        let local = sim_node.slot.clock.local(self.engine.now);
        self.engine.record(RaftRecord::TimerFired, &[node as u64], || format!("{} timer", node_id(node)));
        self.nodes[node].raft.as_mut().expect("checked").handle_timeout(local);
        self.drain(node);
    }

    fn disk_synced(&mut self, node: usize, incarnation: u64, id: PersistId) {
        if self.nodes[node].incarnation != incarnation {
            return;
        }
        // The disk works while the process is frozen; the process
        // learns of it when it runs again (the stashed event syncs
        // nothing more then, but must still reach the node).
        if let Err(error) = self.nodes[node].disk.sync_through(id) {
            let description = format!("{} asked its disk for an impossible write ({id:?}): {error}", node_id(node));
            self.engine.record(RaftRecord::ImpossibleWrite, &[node as u64, id.0], || description.clone());
            self.engine.note(|recorder, now| recorder.mark(Some(node), now, description.clone(), "violation"));
            self.checker.on_impossible_write(description);
            return;
        }
        if self.stash_if_paused(node, SimEvent::DiskSynced { node, incarnation, id }) {
            return;
        }
        let local = self.nodes[node].slot.clock.local(self.engine.now);
        let Some(raft) = self.nodes[node].raft.as_mut() else {
            return;
        };
        self.engine.record(RaftRecord::WriteSynced, &[node as u64, id.0], || {
            format!("{} synced write {}", node_id(node), id.0)
        });
        raft.handle_persisted(local, id);
        self.drain(node);
    }

    fn client_request(&mut self, node: usize, client: usize, attempt: u64, request: ClientRequest) {
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
        let local = sim_node.slot.clock.local(self.engine.now);
        let is_read = matches!(request, ClientRequest::Read(..));
        self.engine.trace.record(
            self.engine.now,
            RaftRecord::ClientRequest,
            &[node as u64, client as u64, attempt, is_read as u64],
            || {
                format!(
                    "client c{client} -> {} {} (attempt {attempt})",
                    node_id(node),
                    if is_read { "read" } else { "propose" }
                )
            },
        );
        let following = raft.leader().filter(|leader| raft.role() != Role::Leader && *leader != raft.id());
        match request {
            ClientRequest::Propose(command) => raft.propose(local, RequestId(request_id), command),
            ClientRequest::Read(query, consistency) => raft.read_with(local, RequestId(request_id), query, consistency),
        }
        self.answering = following.map(|leader| (node, request_id, leader));
        self.drain(node);
        self.answering = None;
    }

    fn client_response(&mut self, client: usize, attempt: u64, result: ClientResult, served_at: chorus_core::LogIndex) {
        self.engine.record(RaftRecord::ClientResponse, &[client as u64, attempt, served_at.0], || {
            format!("client c{client} <- {} (attempt {attempt}, at {served_at})", describe_result(&result))
        });
        let weak_before = self.workload.weak_reads.len();
        let step = self.workload.on_result(client, attempt, &result, served_at, self.engine.now, &mut self.engine.rng);
        if let Some(read) = self.workload.weak_reads.get(weak_before) {
            if let Err(problem) = self.reference.check(read, crate::workload::decode_value) {
                self.read_failure.get_or_insert(problem);
            }
        }
        self.client_step(client, step);
    }

    fn persist(&mut self, node: usize, write: PersistRequest) {
        let raft = self.nodes[node].raft.as_ref().expect("node is running");
        if let Some(prev_term) = write.entries.first().and_then(|first| raft.term_at(first.index.prev())) {
            self.checker.on_persist(node, &write, prev_term);
        }
        let id = write.id;
        let mut latency =
            self.engine.rng.random_range(self.profile.disk_latency_min_us..=self.profile.disk_latency_max_us);
        let stall_ppm = self.profile.disk_stall_ppm;
        if stall_ppm > 0 && self.healed_at.is_none() && self.engine.rng.random_range(0..crate::network::PPM) < stall_ppm
        {
            latency += self.engine.rng.random_range(50_000..=300_000);
        }
        let incarnation = self.nodes[node].incarnation;
        let snapshot_index = write.snapshot.as_ref().map_or(0, |snapshot| snapshot.meta.index.0);
        let fields = [node as u64, id.0, write.entries.len() as u64, snapshot_index];
        self.engine.record(RaftRecord::WriteSubmitted, &fields, || {
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
                write.truncate_from.map(|from| format!(" after truncating from {from},")).unwrap_or_default(),
                write.hard_state
            )
        });
        let done_at = self.nodes[node].disk.submit(write, self.engine.now, latency);
        self.engine.schedule_at(done_at, SimEvent::DiskSynced { node, incarnation, id });
        self.maybe_crash_in_write(node, done_at);
    }

    fn respond(&mut self, node: usize, request: RequestId, result: ClientResult) {
        let owner = self.nodes[node].requests.remove(&request.0);
        let (client, attempt) = match owner {
            Some(RequestOwner::Client { client, attempt }) => (client, attempt),
            Some(RequestOwner::Operator) => {
                self.engine.record(RaftRecord::MembershipChangeAnswered, &[node as u64, request.0], || {
                    format!("{} membership change {}: {}", node_id(node), request.0, describe_result(&result))
                });
                return;
            }
            Some(RequestOwner::Probe) => return self.probe_answered(node, &result),
            None => panic!("{} answered request {} it never received", node_id(node), request.0),
        };
        if let Some((at, asked, leader)) = self.answering {
            if at == node && asked == request.0 && result == ClientResult::NoLeader {
                self.checker.on_no_leader_answer(node, leader);
            }
        }
        let served_at = self.nodes[node].raft.as_ref().map_or(chorus_core::LogIndex::ZERO, |raft| raft.applied_index());
        if let Fate::Arrives { first_us, .. } = self.network.route_unpartitioned(&mut self.engine.rng) {
            self.engine.schedule(first_us, SimEvent::ToClient { client, attempt, result, served_at });
        }
    }

    /// Records what a node reports; role changes are collected in `roles`
    /// for the safety checker, which sees them after the step.
    fn observe(&mut self, node: usize, event: Event, roles: &mut Vec<(Role, Term)>) {
        match event {
            Event::RoleChanged { role, term } => {
                self.engine.record(RaftRecord::RoleChanged, &[node as u64, role as u64, term.0], || {
                    format!("{} becomes {:?} in {}", node_id(node), role, term)
                });
                roles.push((role, term));
                self.note_role(node, role, term);
                if role == Role::Leader {
                    self.maybe_isolate_new_leader(node);
                }
            }
            Event::Violation { description } => self.record_violation(node, description),
            Event::TransferStarted { target, term } => {
                self.engine.record(RaftRecord::TransferStarted, &[node as u64, target.0, term.0], || {
                    format!("{} starts handing leadership of {term} to {target}", node_id(node))
                });
            }
            Event::TransferAbandoned { target, term } => {
                self.engine.record(RaftRecord::TransferAbandoned, &[node as u64, target.0, term.0], || {
                    format!("{} abandons the transfer of {term} to {target}", node_id(node))
                });
            }
            Event::FollowerLostEntries { follower, acknowledged, holds } => {
                self.engine.trace.record(
                    self.engine.now,
                    RaftRecord::FollowerLostEntries,
                    &[node as u64, follower.0, acknowledged.0, holds.0],
                    || {
                        format!(
                            "{} sees {follower} lost entries it acknowledged (up to {acknowledged}; holds {holds})",
                            node_id(node)
                        )
                    },
                );
                // Simulated disks keep what they acknowledged as synced.
                self.checker.on_lost_entries(node, follower, acknowledged, holds);
                let text = format!("{follower} lost entries it acknowledged (up to {acknowledged}; holds {holds})");
                self.engine.note(|recorder, now| recorder.mark(Some(node), now, text, "violation"));
            }
            Event::MembershipChanged { index, membership } => {
                let text = format!("{} configuration at {index}: {membership}", node_id(node));
                self.engine.note(|recorder, now| recorder.mark(Some(node), now, text.clone(), "operator"));
                self.engine.record(RaftRecord::MembershipChanged, &[node as u64, index.0], || text);
            }
            Event::SnapshotInstalled { index, term } => {
                self.nodes[node].installed = true;
                let text = format!("{} installed the snapshot ending at {index}/{term}", node_id(node));
                self.engine.note(|recorder, now| recorder.mark(Some(node), now, text.clone(), "info"));
                self.engine.record(RaftRecord::SnapshotInstalled, &[node as u64, index.0, term.0], || text);
            }
        }
    }

    fn stash_if_paused(&mut self, node: usize, event: SimEvent) -> bool {
        let sim_node = &mut self.nodes[node];
        if !sim_node.slot.paused {
            return false;
        }
        sim_node.slot.stash(event);
        true
    }

    fn client_step(&mut self, client: usize, step: ClientStep) {
        match step {
            ClientStep::Send { node, attempt, request } => {
                self.engine.schedule(ATTEMPT_TIMEOUT_US, SimEvent::ClientTimeout { client, attempt });
                match self.network.route_unpartitioned(&mut self.engine.rng) {
                    Fate::Arrives { first_us, .. } => {
                        self.engine.schedule(first_us, SimEvent::ToNode { node, client, attempt, request });
                    }
                    Fate::Lost | Fate::Blocked => {}
                }
            }
            ClientStep::Wait { delay_us } => self.engine.schedule(delay_us, SimEvent::ClientNext { client }),
            ClientStep::Idle | ClientStep::Ignore => {}
        }
        self.check_finished();
    }

    /// Performs a node's actions, runs the safety checks, re-arms its timer.
    pub(super) fn drain(&mut self, node: usize) {
        let mut roles = Vec::new();
        while let Some(action) = self.nodes[node].raft.as_mut().and_then(RaftNode::poll_action) {
            match action {
                Action::Send(message) => self.send(node, message),
                Action::Persist(write) => self.persist(node, write),
                Action::Respond { request, result } => self.respond(node, request, result),
                Action::Event(event) => self.observe(node, event, &mut roles),
            }
        }
        if let Some(raft) = self.nodes[node].raft.as_ref() {
            self.nodes[node].votes = raft.may_campaign();
        }
        let Some(leader_committed) = self.check_step(node, roles) else {
            return;
        };
        if leader_committed {
            self.maybe_isolate_after_commit(node);
            self.maybe_isolate_leaving_leader(node);
        }
        self.arm_timer(node);
    }

    fn send(&mut self, from: usize, message: Message) {
        self.checker.on_send(from, &message);
        self.check_append_limits(from, &message);
        self.checker.on_send_request_tag(from, self.nodes[from].incarnation, &message);
        self.checker.on_send_disk(from, message.disk, self.nodes[from].disk_id);
        let to = message.to.0 as usize - 1;
        let fate = self.network.route(&mut self.engine.rng, from, to);
        let words = message_words(&message);
        match fate {
            Fate::Blocked | Fate::Lost => {
                let lost = fate == Fate::Lost;
                let kind = if lost { RaftRecord::Lost } else { RaftRecord::CutAtSend };
                self.engine.record(kind, &[words[0], words[1], words[2], words[3]], || {
                    format!("{} {}", if lost { "lost" } else { "cut" }, describe_message(&message))
                });
                self.note_dropped(&message, if lost { MessageFate::Lost } else { MessageFate::Cut });
            }
            Fate::Arrives { first_us, second_us } => {
                // Across the network as bytes, through the core's codec.
                let bytes = match wire::encode_message(&message) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        let description = format!("{} sent a message the wire cannot carry: {error}", node_id(from));
                        return self.checker.on_wire_error(description);
                    }
                };
                if let Some(second_us) = second_us {
                    let copy = SimEvent::Deliver { to, sent_us: self.engine.now, from, bytes: bytes.clone() };
                    self.engine.schedule(second_us, copy);
                }
                self.engine.schedule(first_us, SimEvent::Deliver { to, sent_us: self.engine.now, from, bytes });
            }
        }
    }

    pub(super) fn arm_timer(&mut self, node: usize) {
        let sim_node = &mut self.nodes[node];
        let Some(raft) = sim_node.raft.as_ref() else {
            return;
        };
        if let Some((at, token)) = sim_node.slot.arm_timer(raft.poll_timeout(), self.engine.now) {
            self.engine.schedule_at(at, SimEvent::Timer { node, token });
        }
    }
}

/// A message only the leader of its term sends.
fn is_leaders_message(body: &MessageBody) -> bool {
    matches!(
        body,
        MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. }
            | MessageBody::Quiesce { .. }
    )
}

impl World for RaftWorld {
    type Event = SimEvent;

    fn engine(&mut self) -> &mut Engine<SimEvent> {
        &mut self.engine
    }

    fn handle(&mut self, event: SimEvent) {
        RaftWorld::handle(self, event);
    }

    fn finished(&self) -> bool {
        !self.checker.ok()
            || self.finished
            || self.liveness_failure.is_some()
            || self.read_failure.is_some()
            || self.workload.wrong_answer.is_some()
    }
}
