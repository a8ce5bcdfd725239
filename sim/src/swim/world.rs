//! One seed's SWIM run: `SwimNode`s on the shared network model with
//! drifting clocks, driven by the skeleton's event loop in virtual time. The
//! faults (crashes, pauses, slow members, partitions) are in `faults.rs`, the
//! periodic checks in `checks.rs`.
//!
//! The run has three phases:
//!
//! 1. **Join wave.** Members 1..=3 are the seeds and start at time zero; the
//!    others start at random moments of the first second and join through
//!    the seeds. Every member must see every member alive within
//!    [`SwimWorld::join_bound_us`].
//! 2. **Fault phase.** Faults strike from the seed's profile while the
//!    online checkers watch every event.
//! 3. **Settle phase.** Everything heals: partitions lift, the network stops
//!    losing messages, paused members resume, slow members catch up, and
//!    crashed members due to restart do. Within [`SwimWorld::settle_bound_us`]
//!    (derived from the configuration) every running member must see exactly
//!    the running members as live, and every crashed member as failed.
//!
//! Messages travel as datagrams: encoded by the core's wire codec when sent
//! (their length is what the byte budget and the load metrics use), and
//! handed to the receiver's `handle_datagram`, which decodes them, as a real
//! transport would.
//!
//! Determinism: one ChaCha8 stream seeded by the seed draws every random
//! choice of the world; each node's RNG seed is derived from the run's seed,
//! its id and its life; simultaneous events run in scheduling order.

use super::bounds::BoundsState;
use super::checkers::{time, Checkers};
use super::describe::{body_kind, body_number, describe, describe_event, event_words, SwimRecord};
use super::metrics::SeedMetrics;
use super::profile::SwimProfile;
use super::{SwimOptions, SwimReport, SwimSeedOutcome};
use crate::clock::DriftClock;
use crate::network::{Fate, Network};
use crate::skeleton::{
    node_id, run_events, Engine, LoopEnd, NodeSlot, World, MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND,
};
use crate::timeline::Fate as MessageFate;
use crate::trace::Trace;
use chorus_core::swim::{
    wire, Action, Address, Config, Event, Incarnation, Message, MessageBody, Metadata, SuspicionTimeouts, SwimNode,
};
use chorus_core::{NodeId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// Members that are seeds (the first ones).
pub const SEED_MEMBERS: usize = 3;
/// Non-seed members start at random moments within this window.
pub const JOIN_WINDOW_US: u64 = 1_000_000;
/// Every member must see every member alive this long after the last start,
/// or within three push-pull intervals if that is longer (see
/// [`SwimWorld::join_bound_us`]).
pub const JOIN_BOUND_US: u64 = 120_000_000;
/// Default length of the fault phase.
pub const FAULT_PHASE_US: u64 = 30_000_000;
/// With [`SwimOptions::progress`], a progress line every this much simulated
/// time.
pub const PROGRESS_EVERY_US: u64 = 10_000_000;
/// Hard cap on events in one run; a run with more fails its seed.
pub const MAX_EVENTS_PER_RUN: u64 = 200_000_000;

/// What can happen in the SWIM world.
///
/// Node numbers here are 0-based indexes; member `n{i + 1}` (node id
/// `i + 1`, address `n{i + 1}`) is index `i`. Events that carry a `life` or
/// `epoch` are stale, and do nothing, once the member has restarted or the
/// partition has been replaced.
#[derive(Clone, Debug)]
pub enum SimEvent {
    /// A member starts (the join wave): seeds at time zero, the others within
    /// [`JOIN_WINDOW_US`].
    Start {
        /// The member's index.
        node: usize,
    },
    /// A message arrives at `to` (if it is still running and not cut off).
    Deliver {
        /// The sender's index.
        from: usize,
        /// The receiver's index.
        to: usize,
        /// When it was sent, simulated microseconds (for the timeline).
        sent_us: u64,
        /// The message as it crosses the network, encoded by the core's codec;
        /// the receiver decodes it.
        datagram: Vec<u8>,
        /// The message as sent, for the trace only (saves a second decode).
        message: Message,
        /// Already held back by the receiver's slow lag once; not delayed
        /// again.
        lagged: bool,
    },
    /// A member's protocol timer fires, unless `token` is stale (the timer
    /// was re-armed since).
    Timer {
        /// The member's index.
        node: usize,
        /// The arming the event belongs to.
        token: u64,
    },
    /// Crash a random running member, then schedule the next crash if the
    /// profile crashes members.
    Crash,
    /// A crashed member restarts with its identity and a higher incarnation.
    Restart {
        /// The member's index.
        node: usize,
        /// The life that crashed.
        life: u32,
    },
    /// Pause a random running member, then schedule the next pause.
    Pause,
    /// A paused member resumes and handles the messages held meanwhile.
    Resume {
        /// The member's index.
        node: usize,
        /// The life that was paused.
        life: u32,
    },
    /// Partition the network at random, then schedule the next partition.
    Partition,
    /// A random running member publishes new metadata, then the next change
    /// is scheduled.
    MetadataChange,
    /// Lift the partition numbered `epoch`, if it is still the current one.
    HealPartition {
        /// The partition's sequence number.
        epoch: u64,
    },
    /// The periodic checks (join convergence, detection times, settling);
    /// reschedules itself.
    Check,
    /// The join wave converged: the fault phase begins.
    StartFaults,
    /// The fault phase ends: everything heals and the settle phase begins.
    Heal,
}

pub(super) struct SimNode {
    pub(super) swim: Option<SwimNode>,
    /// Clock, timer and the messages `(from, bytes, message)` held while
    /// paused.
    pub(super) slot: NodeSlot<(usize, u64, Vec<u8>, Message)>,
    /// Lives so far (a restart starts a new one).
    pub(super) life: u32,
    /// The lowest incarnation of the current life: a failure declaration at
    /// a lower incarnation is about an earlier life, which did crash.
    pub(super) life_floor: Incarnation,
    /// The highest incarnation this member ever held, in any life.
    pub(super) issued: Incarnation,
    /// Inbound processing lag of a slow member (0: not slow).
    pub(super) slow_lag_us: u64,
    /// Wrong failure declarations by or about this member are excused until
    /// then (it was paused or slow).
    pub(super) excused_until: u64,
    /// Will restart at the latest when the world heals.
    pub(super) restart_pending: bool,
    /// The version of the metadata the member publishes (see
    /// [`SwimWorld::metadata_of`]); kept across restarts.
    pub(super) metadata_version: u32,
}

/// A crash whose detection is being timed.
pub(super) struct Detection {
    pub(super) node: usize,
    pub(super) life: u32,
    pub(super) crashed_at: u64,
    pub(super) suspect_at: Option<u64>,
    pub(super) first_at: Option<u64>,
    pub(super) all_at: Option<u64>,
    /// The world was partitioned or losing heavily during the detection:
    /// the detection bound does not apply.
    pub(super) excused: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
    Join,
    Faults,
    Settle,
    Done,
}

/// One seed's SWIM simulation: build it with [`SwimWorld::new`], optionally
/// adjust it, and [`run`](SwimWorld::run) it. All times are simulated
/// microseconds.
pub struct SwimWorld {
    pub(super) options: SwimOptions,
    pub(super) profile: SwimProfile,
    pub(super) engine: Engine<SimEvent>,
    /// With [`SwimOptions::progress`], the next progress line is due then.
    pub(super) next_progress_us: u64,
    pub(super) nodes: Vec<SimNode>,
    /// Delays, loss and who can reach whom.
    pub(super) network: Network,
    pub(super) partition_epoch: u64,
    pub(super) partitions_seen: bool,
    /// Wrong failure declarations about anyone are excused until then (a
    /// partition or heavy loss).
    pub(super) excused_all_until: u64,
    /// Suspicions `(member id, incarnation)` that some member raised on its
    /// own while excused (paused, slow, partitioned, heavy loss): failure
    /// declarations that follow from them are excused too.
    pub(super) excused_suspicions: BTreeSet<(u64, Incarnation)>,
    pub(super) checkers: Checkers,
    /// The per-run bounds' state (`bounds.rs`).
    pub(super) bounds: BoundsState,
    pub(super) metrics: SeedMetrics,
    pub(super) detections: Vec<Detection>,
    pub(super) phase: Phase,
    pub(super) last_start_at: u64,
    pub(super) join_converged_at: Option<u64>,
    pub(super) faults_started_at: u64,
    pub(super) heal_at: Option<u64>,
    pub(super) check_interval_us: u64,
    /// A template configuration (timings, limits, Lifeguard, bug).
    pub(super) template: Config,
    /// Inside `handle_timeout` of this node: its failure and suspicion
    /// events are its own declarations.
    pub(super) in_timeout: bool,
    /// The message-size checker's limit: the nodes' budget.
    pub(super) checked_budget_bytes: usize,
    /// Checker failures already marked on the timeline.
    pub(super) failures_noted: usize,
}

/// `max_metadata_bytes` in runs with sizes at their limits (each member's
/// metadata is padded to it).
const TIGHT_METADATA_BYTES: usize = 24;

fn address_of(index: usize) -> Address {
    Address::new(format!("n{}", index + 1).into_bytes())
}

/// The node index an address made by [`address_of`] names.
fn index_of(address: &Address) -> Option<usize> {
    let text = std::str::from_utf8(address.as_bytes()).ok()?;
    let id: usize = text.strip_prefix('n')?.parse().ok()?;
    id.checked_sub(1)
}

/// A well-mixed 64-bit value (splitmix64's finaliser), for deriving node RNG
/// seeds from the run's seed.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

impl SwimWorld {
    /// A world for `options`: the seed's RNG draws the fault profile first,
    /// then each member's clock offset (up to one second) and drift. Nothing
    /// runs until [`run`](SwimWorld::run).
    pub fn new(options: SwimOptions) -> SwimWorld {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let profile = SwimProfile::draw(options.faults, options.nodes, &mut rng);
        let mut template = Config::new(NodeId(1), address_of(0));
        template.lifeguard = options.lifeguard;
        template.injected_bug = options.bug;
        template.max_members = template.max_members.max(2 * options.nodes + 16);
        template.seeds = (0..options.nodes.min(SEED_MEMBERS)).map(address_of).collect();
        if let Some(ms) = profile.tombstone_retention_ms {
            template.tombstone_retention_ms = ms;
        }
        if profile.tight_limits {
            template.max_address_bytes = address_of(options.nodes - 1).as_bytes().len();
            template.max_metadata_bytes = TIGHT_METADATA_BYTES;
            template.max_members = options.nodes;
        }
        let nodes = (0..options.nodes)
            .map(|_| {
                let drift =
                    if profile.drift_ppm > 0 { rng.random_range(-profile.drift_ppm..=profile.drift_ppm) } else { 0 };
                SimNode {
                    swim: None,
                    slot: NodeSlot::new(DriftClock::new(rng.random_range(0..1_000_000), drift)),
                    life: 0,
                    life_floor: Incarnation::ZERO,
                    issued: Incarnation::ZERO,
                    slow_lag_us: 0,
                    excused_until: 0,
                    restart_pending: false,
                    metadata_version: 0,
                }
            })
            .collect();
        let check_interval_us =
            if options.nodes <= 1_000 { template.probe_interval_ms * 100 } else { template.probe_interval_ms * 1000 };
        let metrics = SeedMetrics { probe_interval_us: template.probe_interval_ms * 1000, ..SeedMetrics::default() };
        let network = Network::new(options.nodes, profile.network_params());
        let mut world = SwimWorld {
            engine: Engine::new(rng, options.keep_trace_text),
            next_progress_us: PROGRESS_EVERY_US,
            checkers: Checkers::new(options.nodes),
            bounds: BoundsState::new(options.nodes),
            options,
            profile,
            nodes,
            network,
            partition_epoch: 0,
            partitions_seen: false,
            excused_all_until: 0,
            excused_suspicions: BTreeSet::new(),
            metrics,
            detections: Vec::new(),
            phase: Phase::Join,
            last_start_at: 0,
            join_converged_at: None,
            faults_started_at: 0,
            heal_at: None,
            check_interval_us,
            checked_budget_bytes: template.max_message_bytes,
            template,
            in_timeout: false,
            failures_noted: 0,
        };
        if world.options.keep_timeline {
            world.start_timeline();
        }
        world
    }

    /// The fault profile this run uses (drawn from the seed unless replaced
    /// with [`with_profile`](SwimWorld::with_profile)).
    pub fn profile(&self) -> &SwimProfile {
        &self.profile
    }

    /// Replaces the seed's drawn profile (for tests that need one fault
    /// kind alone).
    pub fn with_profile(mut self, profile: SwimProfile) -> SwimWorld {
        self.network.params = profile.network_params();
        self.profile = profile;
        self
    }

    /// Checks messages against `bytes` instead of the nodes' own budget
    /// (for proving that the message-size checker fires).
    pub fn with_checked_budget(mut self, bytes: usize) -> SwimWorld {
        self.checked_budget_bytes = bytes;
        self
    }

    /// The longest suspicion timeout of this cluster: Lifeguard's β times
    /// the classic `α · log10(n) · interval`, or the classic one alone.
    pub fn max_suspicion_us(&self) -> u64 {
        let config = &self.template;
        let base = SuspicionTimeouts::base_micros(
            config.suspicion_multiplier,
            self.options.nodes,
            config.probe_interval_ms * 1000,
        );
        if config.lifeguard {
            base * u64::from(config.suspicion_max_multiplier)
        } else {
            base
        }
    }

    /// How long after a member stops being paused or slow (or a partition
    /// or heavy loss ends) wrong failure declarations it caused may still
    /// happen: a suspicion started then can run the longest suspicion
    /// timeout, after probes stretched by the local health multiplier.
    pub fn excuse_window_us(&self) -> u64 {
        let interval = self.template.probe_interval_ms * 1000;
        self.max_suspicion_us() + (2 * (u64::from(self.template.local_health_max) + 1) + 10) * interval
    }

    /// How long after the last start the join wave may take to converge.
    /// Gossip carries a few hundred updates per member per second, so in a
    /// cluster of thousands the news of thousands of joins overflows the
    /// piggyback queues and push-pull anti-entropy delivers the rest. Its
    /// interval grows with log2(n), hence three intervals (15 minutes at
    /// 10,000 members) when that is longer than [`JOIN_BOUND_US`].
    pub fn join_bound_us(&self) -> u64 {
        JOIN_BOUND_US.max(3 * self.template.push_pull_interval_micros(self.options.nodes))
    }

    /// After healing, every running member must see exactly the running
    /// members as live (and so every crashed one as failed) within this
    /// bound: three reconnection intervals (a failed member is retried every
    /// half to one and a half of them), the longest suspicion timeout (for a
    /// suspicion raised just before healing), two probe periods at the
    /// highest local health multiplier and twenty plain periods for gossip.
    pub fn settle_bound_us(&self) -> u64 {
        let config = &self.template;
        let interval = config.probe_interval_ms * 1000;
        3 * config.reconnect_interval_ms * 1000
            + self.max_suspicion_us()
            + (2 * (u64::from(config.local_health_max) + 1) + 20) * interval
    }

    /// Runs the seed until every member agrees after healing, a convergence
    /// bound is missed, the event limit [`MAX_EVENTS_PER_RUN`] is exceeded,
    /// or a node panics (the last two fail the seed); other checker failures
    /// are recorded and the run goes on. Reports the failures, the trace
    /// hash and the metrics.
    pub fn run(mut self) -> SwimReport {
        let start = format!("start: {} members, profile: {}", self.options.nodes, self.profile);
        let profile = self.profile.to_string();
        self.engine.record(SwimRecord::RunStarted, &[self.options.seed, self.options.nodes as u64], || start);
        for node in 0..self.options.nodes {
            let at = if node < SEED_MEMBERS { 0 } else { self.engine.rng.random_range(0..JOIN_WINDOW_US) };
            self.last_start_at = self.last_start_at.max(at);
            self.engine.schedule_at(at, SimEvent::Start { node });
        }
        self.engine.schedule_at(self.check_interval_us, SimEvent::Check);
        let per_second = MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND * self.nodes.len() as u64;
        match run_events(&mut self, MAX_EVENTS_PER_RUN, per_second) {
            LoopEnd::Finished | LoopEnd::QueueEmpty => {}
            LoopEnd::EventLimit => self.checkers.fail(format!("the run exceeded {MAX_EVENTS_PER_RUN} events")),
            LoopEnd::EventStorm { second, limit } => {
                self.checkers.fail(format!("event storm: more than {limit} events in simulated second {second}"))
            }
            LoopEnd::Panic(message) => {
                self.engine.record(SwimRecord::Panic, &[], || format!("PANIC {message}"));
                self.checkers.fail(message);
            }
        }
        let verdict = if self.checkers.failed() { "FAIL" } else { "PASS" };
        let first = self.checkers.failures().first().cloned().unwrap_or_default();
        self.engine
            .record(SwimRecord::Verdict, &[self.checkers.failed() as u64], || format!("verdict {verdict} {first}"));
        let (trace_hash, trace_text) = std::mem::replace(&mut self.engine.trace, Trace::new(false, 0)).finish();
        let timeline = self.finish_timeline(&trace_hash);
        SwimReport {
            outcome: SwimSeedOutcome {
                seed: self.options.seed,
                trace_hash,
                failures: self.checkers.failures().to_vec(),
                events: self.engine.events,
                sim_micros: self.engine.now,
                metrics: self.metrics,
            },
            trace_text,
            profile,
            history: (),
            timeline,
        }
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Start { node } => {
                self.engine.record(SwimRecord::NodeStarted, &[node as u64], || format!("start n{}", node + 1));
                self.start_node(node);
            }
            SimEvent::Deliver { from, to, sent_us, datagram, message, lagged } => {
                self.deliver((from, to, sent_us), datagram, message, lagged)
            }
            SimEvent::Timer { node, token } => {
                let sim_node = &self.nodes[node];
                if !sim_node.slot.timer_is_due(token) || sim_node.swim.is_none() {
                    return;
                }
                self.nodes[node].slot.timer_fired();
                self.engine.record(SwimRecord::TimerFired, &[node as u64], || format!("timeout n{}", node + 1));
                self.in_timeout = true;
                self.with_node(node, |swim, now| swim.handle_timeout(now));
                self.in_timeout = false;
            }
            SimEvent::Check => self.check(),
            SimEvent::StartFaults => self.start_faults(),
            SimEvent::Heal => self.heal(),
            SimEvent::Crash => {
                self.crash_random();
                if let Some(mean) = self.profile.crash_every_ms {
                    self.recur(mean, SimEvent::Crash);
                }
            }
            SimEvent::Restart { node, life } => {
                if self.nodes[node].life == life && self.nodes[node].swim.is_none() {
                    self.restart(node);
                }
            }
            SimEvent::Pause => {
                self.pause_random();
                if let Some(mean) = self.profile.pause_every_ms {
                    self.recur(mean, SimEvent::Pause);
                }
            }
            SimEvent::Resume { node, life } => {
                if self.nodes[node].life == life {
                    self.resume(node);
                }
            }
            SimEvent::Partition => {
                self.partition_random();
                if let Some(mean) = self.profile.partition_every_ms {
                    self.recur(mean, SimEvent::Partition);
                }
            }
            SimEvent::MetadataChange => {
                self.change_metadata();
                if let Some(mean) = self.profile.metadata_every_ms {
                    self.recur(mean, SimEvent::MetadataChange);
                }
            }
            SimEvent::HealPartition { epoch } => {
                if epoch == self.partition_epoch && self.network.is_partitioned() {
                    self.heal_partition();
                }
            }
        }
    }

    // ----- nodes ------------------------------------------------------------

    pub(super) fn config_of(&self, node: usize) -> Config {
        let mut config = self.template.clone();
        config.id = node_id(node);
        config.address = address_of(node);
        config.metadata = Metadata::new(self.metadata_of(node));
        config.initial_incarnation = self.nodes[node].life_floor;
        config.rng_seed = mix(self.options.seed ^ mix((node as u64) << 20 ^ u64::from(self.nodes[node].life)));
        config
    }

    /// `observer` forgot `member`: only after the tombstone retention, or to
    /// make room at `max_members` (see the tombstone checker).
    fn check_forgotten(&mut self, observer: usize, member: NodeId) {
        let Some(swim) = self.nodes[observer].swim.as_ref() else {
            return;
        };
        let full = swim.members().count() + 1 >= self.template.max_members;
        let Some(age_us) = self.checkers.tombstone_age_us(observer, member, self.engine.now) else {
            return;
        };
        let retention_us = self.template.tombstone_retention_ms * 1000;
        let drift = self.profile.drift_ppm.unsigned_abs();
        // The observer's clock may run fast by the drift bound; twice that,
        // and a millisecond, covers rounding between clocks (50-member seed
        // 4310 forgot at 25.7 s of a 25.9 s retention with 0.9% drift).
        let floor_us = (retention_us - retention_us / 1_000_000 * 2 * drift).saturating_sub(1_000);
        if !full && age_us < floor_us {
            self.checkers.fail(format!(
                "tombstone: n{} forgot {member} {:.1} s after declaring it failed or left, before the retention of {:.0} s",
                observer + 1,
                age_us as f64 / 1e6,
                retention_us as f64 / 1e6
            ));
        }
    }

    /// The metadata member `node` publishes (the convergence check wants
    /// every member to hold it): its zone, padded to exactly
    /// `max_metadata_bytes` with sizes at their limits.
    pub(super) fn metadata_of(&self, node: usize) -> Vec<u8> {
        let mut text = format!("n{} zone-{} v{}", node + 1, node % 3, self.nodes[node].metadata_version).into_bytes();
        if self.profile.tight_limits {
            text.resize(self.template.max_metadata_bytes, b'.');
        }
        text
    }

    pub(super) fn start_node(&mut self, node: usize) {
        let config = self.config_of(node);
        let local = self.nodes[node].slot.clock.local(self.engine.now);
        let swim = SwimNode::new(config, local).expect("invariant: the simulator builds valid configurations");
        self.nodes[node].swim = Some(swim);
        self.life_started(node);
        self.forget_suspicions(node);
        let lag_ms = self.nodes[node].slow_lag_us / 1000;
        match lag_ms {
            0 => self.note_state(node, format!("alive (life {})", self.nodes[node].life), "alive"),
            _ => self.note_state(node, format!("slow (inbound lag {lag_ms} ms)"), "slow"),
        }
        self.drain(node);
        self.arm_timer(node);
    }

    /// Runs one input on a running node, then performs its actions and arms
    /// its timer.
    pub(super) fn with_node<R>(&mut self, node: usize, input: impl FnOnce(&mut SwimNode, Time) -> R) -> R {
        let local = self.nodes[node].slot.clock.local(self.engine.now);
        let swim = self.nodes[node].swim.as_mut().expect("invariant: inputs go to running nodes only");
        let result = input(swim, local);
        let incarnation = swim.incarnation();
        let sim_node = &mut self.nodes[node];
        if incarnation < sim_node.issued {
            let message = format!("incarnation: n{} went back to {incarnation} at {}", node + 1, time(self.engine.now));
            self.checkers.fail(message);
        }
        sim_node.issued = sim_node.issued.max(incarnation);
        self.drain(node);
        self.arm_timer(node);
        result
    }

    pub(super) fn drain(&mut self, node: usize) {
        while let Some(action) = self.nodes[node].swim.as_mut().and_then(SwimNode::poll_action) {
            match action {
                Action::Send { to, message } => self.send(node, &to, message),
                Action::Event(event) => self.observe(node, event),
            }
        }
    }

    pub(super) fn arm_timer(&mut self, node: usize) {
        let sim_node = &mut self.nodes[node];
        let Some(swim) = &sim_node.swim else {
            return;
        };
        if let Some((at, token)) = sim_node.slot.arm_timer(swim.poll_timeout(), self.engine.now) {
            self.engine.schedule_at(at, SimEvent::Timer { node, token });
        }
    }

    pub(super) fn send(&mut self, from: usize, to: &Address, message: Message) {
        let datagram = match wire::encode(&message, wire::MAX_DATAGRAM_BYTES) {
            Ok(datagram) => datagram,
            Err(error) => {
                let kind = message.body.kind();
                return self.checkers.fail(format!("n{} sent a {kind} the wire cannot carry: {error}", from + 1));
            }
        };
        let bytes = datagram.len();
        let budget = self.checked_budget_bytes;
        if bytes > budget {
            self.checkers.fail(format!(
                "message size: n{} sent a {} of {bytes} bytes at {}, over its budget of {budget}",
                from + 1,
                message.body.kind(),
                time(self.engine.now)
            ));
        }
        self.count_send(from, &message);
        let Some(to) = index_of(to).filter(|&index| index < self.nodes.len()) else {
            self.checkers.fail(format!("n{} sent to an address no member has: {to}", from + 1));
            return;
        };
        if self.phase == Phase::Faults {
            self.metrics.messages += 1;
            self.metrics.bytes += bytes as u64;
            if matches!(message.body, MessageBody::PushPull { .. }) {
                self.metrics.push_pull_messages += 1;
                self.metrics.push_pull_bytes += bytes as u64;
            }
        }
        let kind = body_kind(&message.body);
        let fate = self.network.route(&mut self.engine.rng, from, to);
        match fate {
            Fate::Blocked | Fate::Lost => {
                let (what, word) = if fate == Fate::Blocked { ("blocked", 0) } else { ("lost", 1) };
                self.engine.record(SwimRecord::DroppedAtSend, &[from as u64, to as u64, kind, word], || {
                    format!("{what} {}", describe(from, to, &message, bytes))
                });
                let fate = if word == 0 { MessageFate::Cut } else { MessageFate::Lost };
                self.note_message((from, to), &message, bytes, self.engine.now, fate);
            }
            Fate::Arrives { first_us, second_us } => {
                if let Some(second_us) = second_us {
                    let (datagram, message) = (datagram.clone(), message.clone());
                    let sent_us = self.engine.now;
                    let copy = SimEvent::Deliver { from, to, sent_us, datagram, message, lagged: false };
                    self.engine.schedule(second_us, copy);
                }
                let sent_us = self.engine.now;
                self.engine
                    .schedule(first_us, SimEvent::Deliver { from, to, sent_us, datagram, message, lagged: false });
            }
        }
    }

    pub(super) fn deliver(&mut self, route: (usize, usize, u64), datagram: Vec<u8>, message: Message, lagged: bool) {
        let (from, to, sent_us) = route;
        let bytes = datagram.len();
        let kind = body_kind(&message.body);
        let sim_node = &self.nodes[to];
        if sim_node.swim.is_none() {
            self.engine.record(SwimRecord::NotDelivered, &[from as u64, to as u64, kind, 0], || {
                format!("dropped (n{} is down) {}", to + 1, describe(from, to, &message, bytes))
            });
            return self.note_message((from, to), &message, bytes, sent_us, MessageFate::ReceiverDown);
        }
        if self.network.is_blocked(from, to) {
            self.engine.record(SwimRecord::NotDelivered, &[from as u64, to as u64, kind, 1], || {
                format!("cut in flight {}", describe(from, to, &message, bytes))
            });
            return self.note_message((from, to), &message, bytes, sent_us, MessageFate::CutInFlight);
        }
        if sim_node.slot.paused {
            self.nodes[to].slot.stash((from, sent_us, datagram, message));
            return;
        }
        if sim_node.slow_lag_us > 0 && !lagged {
            let lag = sim_node.slow_lag_us;
            self.engine.schedule(lag, SimEvent::Deliver { from, to, sent_us, datagram, message, lagged: true });
            return;
        }
        self.engine.record(
            SwimRecord::Delivered,
            &[from as u64, to as u64, kind, body_number(&message.body), message.updates.len() as u64],
            || format!("deliver {}", describe(from, to, &message, bytes)),
        );
        self.note_message((from, to), &message, bytes, sent_us, MessageFate::Delivered);
        self.count_handled(to, &message);
        let claim = self.claims_against(to, &message).then(|| self.nodes[to].swim.as_ref().map(SwimNode::incarnation));
        let result = self.with_node(to, |swim, now| swim.handle_datagram(now, &datagram));
        if let Some(Some(before)) = claim {
            self.check_refuted(to, from, before);
        }
        if let Err(error) = result {
            self.checkers.fail(format!(
                "n{} rejected a message from n{} at {}: {error}",
                to + 1,
                from + 1,
                time(self.engine.now)
            ));
        }
    }

    pub(super) fn observe(&mut self, observer: usize, event: Event) {
        let (kind, member, incarnation) = event_words(&event);
        self.engine.record(SwimRecord::Event, &[observer as u64, kind, member, incarnation], || {
            format!("n{}: {}", observer + 1, describe_event(&event))
        });
        self.note_event(observer, &event);
        if matches!(self.phase, Phase::Faults | Phase::Settle) {
            self.news_reported(observer, &event);
        }
        self.time_suspicion(observer, &event, self.in_timeout);
        if let Event::Refuted { incarnation } = event {
            self.refuted(observer, incarnation);
        }
        if let Event::Joined(record) | Event::Updated(record) | Event::AliveAgain(record) = &event {
            let index = record.id.0 as usize - 1;
            let truthful =
                record.address == address_of(index) && record.metadata.as_bytes() == self.metadata_of(index).as_slice();
            self.checkers.observe_record(self.engine.now, observer, &event, truthful);
        }
        if let Event::Forgotten { member } = event {
            self.check_forgotten(observer, member);
        }
        let nodes = &self.nodes;
        self.checkers.observe(self.engine.now, observer, &event, |member| {
            (member.0 as usize)
                .checked_sub(1)
                .and_then(|index| nodes.get(index))
                .map_or(Incarnation::ZERO, |node| node.issued)
        });
        match event {
            Event::Suspected { member, incarnation } => {
                let victim = member.0 as usize - 1;
                if self.in_timeout && self.is_current_life(victim, incarnation) {
                    self.metrics.false_suspicions += 1;
                    if self.everyone_excused() || self.excused(observer) || self.excused(victim) {
                        self.excused_suspicions.insert((member.0, incarnation));
                    }
                }
                for detection in &mut self.detections {
                    if detection.node == victim && detection.suspect_at.is_none() {
                        detection.suspect_at = Some(self.engine.now);
                    }
                }
            }
            Event::Failed { member, incarnation } => {
                let victim = member.0 as usize - 1;
                if self.in_timeout && self.is_current_life(victim, incarnation) {
                    self.false_positive(observer, victim, incarnation);
                }
                for detection in &mut self.detections {
                    if detection.node == victim && detection.first_at.is_none() {
                        detection.first_at = Some(self.engine.now);
                    }
                }
            }
            _ => {}
        }
    }
}

impl World for SwimWorld {
    type Event = SimEvent;

    fn engine(&mut self) -> &mut Engine<SimEvent> {
        &mut self.engine
    }

    fn handle(&mut self, event: SimEvent) {
        SwimWorld::handle(self, event);
        self.note_failures();
    }

    fn finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// With [`SwimOptions::progress`], a line on standard error every
    /// [`PROGRESS_EVERY_US`] of simulated time.
    fn before_event(&mut self) {
        if self.options.progress && self.engine.now >= self.next_progress_us {
            self.next_progress_us = (self.engine.now / PROGRESS_EVERY_US + 1) * PROGRESS_EVERY_US;
            eprintln!(
                "seed {}: {:?} phase, {} s simulated, {} events",
                self.options.seed,
                self.phase,
                self.engine.now / 1_000_000,
                self.engine.events
            );
        }
    }
}
