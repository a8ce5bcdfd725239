//! One seed's SWIM run: `SwimNode`s, a lossy partitionable network, drifting
//! clocks, crashes, pauses and slow members, driven by a discrete-event loop
//! in virtual time.
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
//! Messages travel as values (the receiver gets what was sent, as after a
//! lossless decode); each is measured with the wire encoder when sent, which
//! is what the byte budget and the load metrics use.
//!
//! Determinism: one ChaCha8 stream seeded by the seed draws every random
//! choice of the world; each node's RNG seed is derived from the run's seed,
//! its id and its life; simultaneous events run in scheduling order.

use super::checkers::{time, Checkers};
use super::describe::{body_kind, body_number, describe, describe_event, event_words, SwimRecord};
use super::metrics::SeedMetrics;
use super::profile::{SwimProfile, HEAVY_LOSS_PPM};
use super::{SwimOptions, SwimReport, SwimSeedOutcome};
use crate::clock::DriftClock;
use crate::network::{Fate, Network, PPM};
use crate::skeleton::{node_id, run_events, Engine, LoopEnd, NodeSlot, World};
use crate::trace::Trace;
use chorus_core::swim::{
    wire, Action, Address, Config, Event, Incarnation, MemberState, Message, MessageBody, SuspicionTimeouts, SwimNode,
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
/// Hard cap on events in one run; reaching it fails the seed.
pub const MAX_EVENTS_PER_RUN: u64 = 200_000_000;

/// What can happen in the SWIM world.
#[derive(Clone, Debug)]
pub enum SimEvent {
    Start { node: usize },
    Deliver { from: usize, to: usize, bytes: usize, message: Message, lagged: bool },
    Timer { node: usize, token: u64 },
    Crash,
    Restart { node: usize, life: u32 },
    Pause,
    Resume { node: usize, life: u32 },
    Partition,
    HealPartition { epoch: u64 },
    Check,
    StartFaults,
    Heal,
}

struct SimNode {
    swim: Option<SwimNode>,
    /// Clock, timer and the messages `(from, bytes, message)` held while
    /// paused.
    slot: NodeSlot<(usize, usize, Message)>,
    /// Lives so far (a restart starts a new one).
    life: u32,
    /// The lowest incarnation of the current life: a failure declaration at
    /// a lower incarnation is about an earlier life, which did crash.
    life_floor: Incarnation,
    /// The highest incarnation this member ever held, in any life.
    issued: Incarnation,
    /// Inbound processing lag of a slow member (0: not slow).
    slow_lag_us: u64,
    /// Wrong failure declarations by or about this member are excused until
    /// then (it was paused or slow).
    excused_until: u64,
    /// Will restart at the latest when the world heals.
    restart_pending: bool,
}

/// A crash whose detection is being timed.
struct Detection {
    node: usize,
    life: u32,
    crashed_at: u64,
    suspect_at: Option<u64>,
    first_at: Option<u64>,
    all_at: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Join,
    Faults,
    Settle,
    Done,
}

pub struct SwimWorld {
    options: SwimOptions,
    profile: SwimProfile,
    engine: Engine<SimEvent>,
    /// With [`SwimOptions::progress`], the next progress line is due then.
    next_progress_us: u64,
    nodes: Vec<SimNode>,
    /// Delays, loss and who can reach whom.
    network: Network,
    partition_epoch: u64,
    partitions_seen: bool,
    /// Wrong failure declarations about anyone are excused until then (a
    /// partition or heavy loss).
    excused_all_until: u64,
    /// Suspicions `(member id, incarnation)` that some member raised on its
    /// own while excused (paused, slow, partitioned, heavy loss): failure
    /// declarations that follow from them are excused too.
    excused_suspicions: BTreeSet<(u64, Incarnation)>,
    checkers: Checkers,
    metrics: SeedMetrics,
    detections: Vec<Detection>,
    phase: Phase,
    last_start_at: u64,
    join_converged_at: Option<u64>,
    faults_started_at: u64,
    heal_at: Option<u64>,
    check_interval_us: u64,
    /// A template configuration (timings, limits, Lifeguard, bug).
    template: Config,
    /// Inside `handle_timeout` of this node: its failure and suspicion
    /// events are its own declarations.
    in_timeout: bool,
    /// The message-size checker's limit: the nodes' budget.
    checked_budget_bytes: usize,
}

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
    pub fn new(options: SwimOptions) -> SwimWorld {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let profile = SwimProfile::draw(options.faults, options.nodes, &mut rng);
        let mut template = Config::new(NodeId(1), address_of(0));
        template.lifeguard = options.lifeguard;
        template.injected_bug = options.bug;
        template.max_members = template.max_members.max(2 * options.nodes + 16);
        template.seeds = (0..options.nodes.min(SEED_MEMBERS)).map(address_of).collect();
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
                }
            })
            .collect();
        let check_interval_us =
            if options.nodes <= 1_000 { template.probe_interval_ms * 100 } else { template.probe_interval_ms * 1000 };
        let metrics = SeedMetrics { probe_interval_us: template.probe_interval_ms * 1000, ..SeedMetrics::default() };
        let network = Network::new(options.nodes, profile.network_params());
        SwimWorld {
            engine: Engine::new(rng, options.keep_trace_text),
            next_progress_us: PROGRESS_EVERY_US,
            checkers: Checkers::new(options.nodes),
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
        }
    }

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

    /// After healing, every running member must see exactly the running
    /// members as live (and so every crashed one as failed) within this
    /// bound: three reconnection intervals (a failed member is retried every
    /// half to one and a half of them), the longest suspicion timeout (for a
    /// suspicion raised just before healing), two probe periods at the
    /// highest local health multiplier and twenty plain periods for gossip.
    /// How long after the last start the join wave may take to converge.
    /// Gossip carries a few hundred updates per member per second, so in a
    /// cluster of thousands the news of thousands of joins overflows the
    /// piggyback queues and push-pull anti-entropy delivers the rest. Its
    /// interval grows with log2(n), hence three intervals (15 minutes at
    /// 10,000 members) when that is longer than [`JOIN_BOUND_US`].
    pub fn join_bound_us(&self) -> u64 {
        JOIN_BOUND_US.max(3 * self.template.push_pull_interval_micros(self.options.nodes))
    }

    pub fn settle_bound_us(&self) -> u64 {
        let config = &self.template;
        let interval = config.probe_interval_ms * 1000;
        3 * config.reconnect_interval_ms * 1000
            + self.max_suspicion_us()
            + (2 * (u64::from(config.local_health_max) + 1) + 20) * interval
    }

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
        match run_events(&mut self, MAX_EVENTS_PER_RUN) {
            LoopEnd::Finished | LoopEnd::QueueEmpty => {}
            LoopEnd::EventLimit => self.checkers.fail(format!("the run exceeded {MAX_EVENTS_PER_RUN} events")),
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
        }
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Start { node } => {
                self.engine.record(SwimRecord::NodeStarted, &[node as u64], || format!("start n{}", node + 1));
                self.start_node(node);
            }
            SimEvent::Deliver { from, to, bytes, message, lagged } => self.deliver(from, to, bytes, message, lagged),
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
            SimEvent::HealPartition { epoch } => {
                if epoch == self.partition_epoch && self.network.is_partitioned() {
                    self.heal_partition();
                }
            }
        }
    }

    /// Schedules the next occurrence of a recurring fault, drawn around its
    /// mean, if it still falls inside the fault phase.
    fn recur(&mut self, mean_ms: u64, event: SimEvent) {
        let delay = mean_ms * 1000 / 2 + self.engine.rng.random_range(0..=mean_ms * 1000);
        if self.phase == Phase::Faults && self.engine.now + delay < self.faults_started_at + self.options.fault_phase_us
        {
            self.engine.schedule(delay, event);
        }
    }

    // ----- nodes ------------------------------------------------------------

    fn config_of(&self, node: usize) -> Config {
        let mut config = self.template.clone();
        config.id = node_id(node);
        config.address = address_of(node);
        config.initial_incarnation = self.nodes[node].life_floor;
        config.rng_seed = mix(self.options.seed ^ mix((node as u64) << 20 ^ u64::from(self.nodes[node].life)));
        config
    }

    fn start_node(&mut self, node: usize) {
        let config = self.config_of(node);
        let local = self.nodes[node].slot.clock.local(self.engine.now);
        let swim = SwimNode::new(config, local).expect("invariant: the simulator builds valid configurations");
        self.nodes[node].swim = Some(swim);
        self.drain(node);
        self.arm_timer(node);
    }

    /// Runs one input on a running node, then performs its actions and arms
    /// its timer.
    fn with_node<R>(&mut self, node: usize, input: impl FnOnce(&mut SwimNode, Time) -> R) -> R {
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

    fn drain(&mut self, node: usize) {
        while let Some(action) = self.nodes[node].swim.as_mut().and_then(SwimNode::poll_action) {
            match action {
                Action::Send { to, message } => self.send(node, &to, message),
                Action::Event(event) => self.observe(node, event),
            }
        }
    }

    fn arm_timer(&mut self, node: usize) {
        let sim_node = &mut self.nodes[node];
        let Some(swim) = &sim_node.swim else {
            return;
        };
        if let Some((at, token)) = sim_node.slot.arm_timer(swim.poll_timeout(), self.engine.now) {
            self.engine.schedule_at(at, SimEvent::Timer { node, token });
        }
    }

    fn send(&mut self, from: usize, to: &Address, message: Message) {
        let bytes = wire::encoded_len(&message);
        let budget = self.checked_budget_bytes;
        if bytes > budget {
            self.checkers.fail(format!(
                "message size: n{} sent a {} of {bytes} bytes at {}, over its budget of {budget}",
                from + 1,
                message.body.kind(),
                time(self.engine.now)
            ));
        }
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
            }
            Fate::Arrives { first_us, second_us } => {
                if let Some(second_us) = second_us {
                    let copy = message.clone();
                    self.engine
                        .schedule(second_us, SimEvent::Deliver { from, to, bytes, message: copy, lagged: false });
                }
                self.engine.schedule(first_us, SimEvent::Deliver { from, to, bytes, message, lagged: false });
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: usize, message: Message, lagged: bool) {
        let kind = body_kind(&message.body);
        let sim_node = &self.nodes[to];
        if sim_node.swim.is_none() {
            self.engine.record(SwimRecord::NotDelivered, &[from as u64, to as u64, kind, 0], || {
                format!("dropped (n{} is down) {}", to + 1, describe(from, to, &message, bytes))
            });
            return;
        }
        if self.network.is_blocked(from, to) {
            self.engine.record(SwimRecord::NotDelivered, &[from as u64, to as u64, kind, 1], || {
                format!("cut in flight {}", describe(from, to, &message, bytes))
            });
            return;
        }
        if sim_node.slot.paused {
            self.nodes[to].slot.stash((from, bytes, message));
            return;
        }
        if sim_node.slow_lag_us > 0 && !lagged {
            let lag = sim_node.slow_lag_us;
            self.engine.schedule(lag, SimEvent::Deliver { from, to, bytes, message, lagged: true });
            return;
        }
        self.engine.record(
            SwimRecord::Delivered,
            &[from as u64, to as u64, kind, body_number(&message.body), message.updates.len() as u64],
            || format!("deliver {}", describe(from, to, &message, bytes)),
        );
        let result = self.with_node(to, |swim, now| swim.handle_message(now, message));
        if let Err(error) = result {
            self.checkers.fail(format!(
                "n{} rejected a message from n{} at {}: {error}",
                to + 1,
                from + 1,
                time(self.engine.now)
            ));
        }
    }

    fn observe(&mut self, observer: usize, event: Event) {
        let (kind, member, incarnation) = event_words(&event);
        self.engine.record(SwimRecord::Event, &[observer as u64, kind, member, incarnation], || {
            format!("n{}: {}", observer + 1, describe_event(&event))
        });
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

    /// Is `node` running, at an incarnation its current life may hold?
    fn is_current_life(&self, node: usize, incarnation: Incarnation) -> bool {
        let sim_node = &self.nodes[node];
        sim_node.swim.is_some() && incarnation >= sim_node.life_floor
    }

    fn excused(&self, node: usize) -> bool {
        let sim_node = &self.nodes[node];
        sim_node.slot.paused || sim_node.slow_lag_us > 0 || self.engine.now < sim_node.excused_until
    }

    /// A partition or heavy loss, now or recently.
    fn everyone_excused(&self) -> bool {
        self.network.is_partitioned()
            || self.network.params.loss_ppm >= HEAVY_LOSS_PPM
            || self.engine.now < self.excused_all_until
    }

    /// The accuracy checker: `declarer` declared the running `victim` failed.
    fn false_positive(&mut self, declarer: usize, victim: usize, incarnation: Incarnation) {
        self.metrics.false_positives += 1;
        if !self.excused(victim) {
            self.metrics.false_positives_healthy += 1;
        }
        if self.everyone_excused()
            || self.excused(declarer)
            || self.excused(victim)
            || self.excused_suspicions.contains(&(node_id(victim).0, incarnation))
        {
            self.metrics.false_positives_excused += 1;
            return;
        }
        self.checkers.fail(format!(
            "accuracy: n{} declared n{} failed at {incarnation} at {}, yet n{} is running and neither it, nor n{}, nor any member that suspected it was paused, slow, partitioned or behind heavy loss",
            declarer + 1,
            victim + 1,
            time(self.engine.now),
            victim + 1,
            declarer + 1
        ));
    }

    // ----- faults -----------------------------------------------------------

    fn start_faults(&mut self) {
        self.phase = Phase::Faults;
        self.faults_started_at = self.engine.now;
        self.engine.record(SwimRecord::FaultPhaseStarted, &[], || "FAULT phase starts".to_string());
        self.network.params.loss_ppm = self.profile.loss_ppm;
        if self.profile.slow_members > 0 {
            let mut candidates: Vec<usize> = (0..self.nodes.len()).collect();
            for slot in 0..self.profile.slow_members.min(candidates.len()) {
                let pick = self.engine.rng.random_range(slot..candidates.len());
                candidates.swap(slot, pick);
                let node = candidates[slot];
                let lag = self.engine.rng.random_range(100..=self.profile.slow_lag_max_ms.max(100)) * 1000;
                self.nodes[node].slow_lag_us = lag;
                self.engine.record(SwimRecord::SlowMember, &[node as u64, lag], || {
                    format!("FAULT n{} is slow: inbound lag {lag} us", node + 1)
                });
            }
        }
        if self.profile.split_halves {
            let nodes = self.nodes.len();
            let half = self.choose(nodes / 2);
            self.apply_partition(&half);
        }
        for (mean, event) in [
            (self.profile.crash_every_ms, SimEvent::Crash),
            (self.profile.pause_every_ms, SimEvent::Pause),
            (self.profile.partition_every_ms, SimEvent::Partition),
        ] {
            if let Some(mean) = mean {
                self.recur(mean, event);
            }
        }
        self.engine.schedule(self.options.fault_phase_us, SimEvent::Heal);
    }

    /// `count` distinct node indexes, uniformly.
    fn choose(&mut self, count: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..self.nodes.len()).collect();
        let count = count.min(pool.len());
        for slot in 0..count {
            let pick = self.engine.rng.random_range(slot..pool.len());
            pool.swap(slot, pick);
        }
        pool.truncate(count);
        pool.sort_unstable();
        pool
    }

    fn random_running(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].swim.is_some() && !self.nodes[node].slot.paused)
            .collect();
        (!running.is_empty()).then(|| running[self.engine.rng.random_range(0..running.len())])
    }

    fn crash_random(&mut self) {
        let down = self.nodes.iter().filter(|node| node.swim.is_none()).count();
        if (down + 1) * 3 > self.nodes.len() {
            return;
        }
        let Some(node) = self.random_running() else {
            return;
        };
        self.crash(node);
        if self.engine.rng.random_range(0..PPM) < self.profile.restart_ppm {
            let delay = self.engine.rng.random_range(1_000_000..=10_000_000);
            let life = self.nodes[node].life;
            self.nodes[node].restart_pending = true;
            self.engine.schedule(delay, SimEvent::Restart { node, life });
        }
    }

    fn crash(&mut self, node: usize) {
        self.engine.record(SwimRecord::Crashed, &[node as u64], || format!("FAULT crash n{}", node + 1));
        let sim_node = &mut self.nodes[node];
        sim_node.swim = None;
        sim_node.slot.crash();
        let life = sim_node.life;
        self.detections.push(Detection {
            node,
            life,
            crashed_at: self.engine.now,
            suspect_at: None,
            first_at: None,
            all_at: None,
        });
    }

    /// Restarts a crashed member with the same identity. It persisted its
    /// incarnation, so it starts one above the highest it ever held.
    fn restart(&mut self, node: usize) {
        self.engine.record(SwimRecord::Restarted, &[node as u64], || format!("FAULT restart n{}", node + 1));
        let sim_node = &mut self.nodes[node];
        sim_node.life += 1;
        sim_node.life_floor = sim_node.issued.next();
        sim_node.issued = sim_node.life_floor;
        sim_node.restart_pending = false;
        self.checkers.forget_observer(node);
        self.start_node(node);
    }

    fn pause_random(&mut self) {
        let Some(node) = self.random_running() else {
            return;
        };
        let duration = self.engine.rng.random_range(500_000..=12_000_000);
        self.engine.record(SwimRecord::Paused, &[node as u64, duration], || {
            format!("FAULT pause n{} for {duration} us", node + 1)
        });
        let sim_node = &mut self.nodes[node];
        sim_node.slot.paused = true;
        sim_node.slot.cancel_timer();
        let life = sim_node.life;
        self.engine.schedule(duration, SimEvent::Resume { node, life });
    }

    /// A paused member resumes: it handles what arrived meanwhile, in order,
    /// and then its timers fire, late.
    fn resume(&mut self, node: usize) {
        if !self.nodes[node].slot.paused || self.nodes[node].swim.is_none() {
            return;
        }
        self.engine.record(SwimRecord::Resumed, &[node as u64], || format!("FAULT resume n{}", node + 1));
        self.nodes[node].slot.paused = false;
        self.nodes[node].excused_until = self.engine.now + self.excuse_window_us();
        let stash = std::mem::take(&mut self.nodes[node].slot.stash);
        for (from, bytes, message) in stash {
            if self.nodes[node].swim.is_none() {
                break;
            }
            self.deliver(from, node, bytes, message, true);
        }
        if self.nodes[node].swim.is_some() {
            self.in_timeout = true;
            self.with_node(node, |swim, now| swim.handle_timeout(now));
            self.in_timeout = false;
        }
    }

    fn partition_random(&mut self) {
        if self.network.is_partitioned() {
            return;
        }
        let nodes = self.nodes.len();
        let minority =
            if self.engine.rng.random_bool(0.5) { 1 } else { self.engine.rng.random_range(1..=(nodes / 2).max(1)) };
        let side = self.choose(minority);
        self.apply_partition(&side);
        let duration = self.engine.rng.random_range(1_000_000..=30_000_000);
        let epoch = self.partition_epoch;
        self.engine.schedule(duration, SimEvent::HealPartition { epoch });
    }

    fn apply_partition(&mut self, side: &[usize]) {
        if side.is_empty() || side.len() == self.nodes.len() {
            return;
        }
        self.partition_epoch += 1;
        self.partitions_seen = true;
        let mut on_side = vec![false; self.nodes.len()];
        side.iter().for_each(|&node| on_side[node] = true);
        let rest: Vec<usize> = (0..self.nodes.len()).filter(|&node| !on_side[node]).collect();
        self.network.partition(&[rest, side.to_vec()]);
        let shown: Vec<String> = side.iter().take(20).map(|node| format!("n{}", node + 1)).collect();
        self.engine.record(SwimRecord::Partitioned, &[side.len() as u64, side[0] as u64], || {
            format!(
                "FAULT partition {{{}{}}} from the rest",
                shown.join(","),
                if side.len() > 20 { ",..." } else { "" }
            )
        });
    }

    fn heal_partition(&mut self) {
        self.engine.record(SwimRecord::PartitionHealed, &[], || "FAULT heal partition".to_string());
        self.network.heal();
        self.excused_all_until = self.engine.now + self.excuse_window_us();
    }

    /// The end of the fault phase: everything heals.
    fn heal(&mut self) {
        self.engine.record(SwimRecord::HealedEverything, &[], || "FAULT heal everything".to_string());
        if self.network.is_partitioned() {
            self.heal_partition();
        }
        if self.network.params.loss_ppm >= HEAVY_LOSS_PPM {
            self.excused_all_until = self.engine.now + self.excuse_window_us();
        }
        self.network.params.loss_ppm = 0;
        let excuse = self.engine.now + self.excuse_window_us();
        for node in 0..self.nodes.len() {
            if self.nodes[node].slow_lag_us > 0 {
                self.nodes[node].slow_lag_us = 0;
                self.nodes[node].excused_until = excuse;
            }
            if self.nodes[node].slot.paused {
                self.resume(node);
            }
            if self.nodes[node].swim.is_none() && self.nodes[node].restart_pending {
                self.restart(node);
            }
        }
        self.phase = Phase::Settle;
        self.heal_at = Some(self.engine.now);
    }

    // ----- periodic checks --------------------------------------------------

    fn check(&mut self) {
        self.engine.schedule(self.check_interval_us, SimEvent::Check);
        match self.phase {
            Phase::Join => self.check_join(),
            Phase::Faults => {
                let running = self.nodes.iter().filter(|node| node.swim.is_some()).count() as u64;
                self.metrics.member_periods_milli +=
                    running * self.check_interval_us * 1000 / (self.template.probe_interval_ms * 1000);
                self.check_detections();
            }
            Phase::Settle => {
                self.check_detections();
                self.check_settled();
            }
            Phase::Done => {}
        }
    }

    fn check_join(&mut self) {
        let nodes = self.nodes.len();
        if self.engine.now < self.last_start_at {
            return;
        }
        let agreeing = self
            .nodes
            .iter()
            .filter(|node| node.swim.as_ref().is_some_and(|swim| swim.live_member_count() == nodes))
            .count();
        let since = self.engine.now - self.last_start_at;
        if self.metrics.converge_join_9999_us.is_none() && agreeing * 10_000 >= nodes * 9_999 {
            self.metrics.converge_join_9999_us = Some(since);
        }
        if agreeing == nodes {
            self.metrics.converge_join_us = Some(since);
            self.join_converged_at = Some(self.engine.now);
            self.engine.record(SwimRecord::JoinConverged, &[since], || {
                format!("CHECK join wave converged {since} us after the last start")
            });
            self.engine.schedule(0, SimEvent::StartFaults);
            self.phase = Phase::Faults;
            self.faults_started_at = self.engine.now;
        } else if since > self.join_bound_us() {
            let example = self
                .nodes
                .iter()
                .enumerate()
                .find_map(|(index, node)| {
                    let swim = node.swim.as_ref().filter(|swim| swim.live_member_count() != nodes)?;
                    let missing = (0..nodes).find(|&other| {
                        other != index && swim.member(node_id(other)).is_none_or(|member| !member.state.is_live())
                    })?;
                    Some(format!(" (n{} does not see n{} alive)", index + 1, missing + 1))
                })
                .unwrap_or_default();
            self.checkers.fail(format!(
                "convergence: after the join wave only {agreeing} of {nodes} members saw everyone alive within {} s{example}",
                self.join_bound_us() / 1_000_000
            ));
            self.phase = Phase::Done;
        }
    }

    /// Times detections: first suspicion and declaration come from events;
    /// "all" is when no running member sees the crashed one as live.
    fn check_detections(&mut self) {
        let mut detections = std::mem::take(&mut self.detections);
        detections.retain_mut(|detection| {
            let node = &self.nodes[detection.node];
            if node.life != detection.life {
                // Restarted before everyone noticed: not a clean sample.
                return false;
            }
            if detection.first_at.is_none() {
                return true;
            }
            let id = node_id(detection.node);
            let everyone = self.nodes.iter().all(|observer| {
                observer.swim.as_ref().is_none_or(|swim| swim.member(id).is_none_or(|member| !member.state.is_live()))
            });
            if !everyone {
                return true;
            }
            detection.all_at = Some(self.engine.now);
            let crashed_at = detection.crashed_at;
            self.metrics.detect_suspect_us.push(detection.suspect_at.unwrap_or(self.engine.now) - crashed_at);
            self.metrics.detect_first_us.push(detection.first_at.unwrap_or(self.engine.now) - crashed_at);
            self.metrics.detect_all_us.push(self.engine.now - crashed_at);
            false
        });
        self.detections = detections;
    }

    /// After healing: does every running member see exactly the running
    /// members as live?
    fn check_settled(&mut self) {
        let heal_at = self.heal_at.expect("invariant: the settle phase starts at healing");
        let running: Vec<bool> = self.nodes.iter().map(|node| node.swim.is_some()).collect();
        let running_count = running.iter().filter(|running| **running).count();
        let sees_truth = |swim: &SwimNode| {
            swim.live_member_count() == running_count
                && swim.members().all(|member| member.state.is_live() == running[member.id.0 as usize - 1])
        };
        let disagreeing: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].swim.as_ref().is_some_and(|swim| !sees_truth(swim)))
            .collect();
        if disagreeing.is_empty() {
            let since = self.engine.now - heal_at;
            if self.partitions_seen {
                self.metrics.converge_heal_us = Some(since);
            }
            self.engine.record(SwimRecord::Settled, &[since], || {
                format!("CHECK every running member agrees, {since} us after healing")
            });
            self.phase = Phase::Done;
            return;
        }
        if self.engine.now - heal_at <= self.settle_bound_us() {
            return;
        }
        let bound_s = self.settle_bound_us() as f64 / 1e6;
        let crashed: Vec<usize> = (0..self.nodes.len()).filter(|&node| !running[node]).collect();
        for &down in &crashed {
            let id = node_id(down);
            let seen_live_by: Vec<usize> = (0..self.nodes.len())
                .filter(|&observer| {
                    self.nodes[observer]
                        .swim
                        .as_ref()
                        .is_some_and(|swim| swim.member(id).is_some_and(|m| m.state.is_live()))
                })
                .collect();
            if let Some(&observer) = seen_live_by.first() {
                let state = self.nodes[observer].swim.as_ref().and_then(|swim| swim.member(id)).map(|m| m.state);
                self.checkers.fail(format!(
                    "completeness: crashed n{} is still {:?} at n{} (and {} other running members) {bound_s:.0} s after healing",
                    down + 1,
                    state.unwrap_or(MemberState::Alive),
                    observer + 1,
                    seen_live_by.len() - 1
                ));
            }
        }
        let node = disagreeing[0];
        let swim = self.nodes[node].swim.as_ref().expect("filtered on running");
        let wrong: Vec<String> = swim
            .members()
            .filter(|member| member.state.is_live() != running[member.id.0 as usize - 1])
            .take(5)
            .map(|member| format!("{} {:?} {}", member.id, member.state, member.incarnation))
            .collect();
        self.checkers.fail(format!(
            "convergence: {} running members still disagree with the running set {bound_s:.0} s after healing; n{} sees {} live of {running_count} (e.g. {})",
            disagreeing.len(),
            node + 1,
            swim.live_member_count(),
            wrong.join(", ")
        ));
        self.phase = Phase::Done;
    }
}

impl World for SwimWorld {
    type Event = SimEvent;

    fn engine(&mut self) -> &mut Engine<SimEvent> {
        &mut self.engine
    }

    fn handle(&mut self, event: SimEvent) {
        SwimWorld::handle(self, event);
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
