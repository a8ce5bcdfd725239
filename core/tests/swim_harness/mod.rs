//! A tiny in-memory SWIM cluster for deterministic scenario tests.
//!
//! The harness is the driver a real runtime would be, done by hand:
//!
//! - **Nodes**: [`SwimNode`]s with ids `1..=N` and addresses `node-<id>`, each
//!   with a fixed `rng_seed` ([`SEED_BASE`]` + id`). All share one virtual
//!   clock, [`Cluster::now`].
//! - **Network**: every `Send` is encoded with `swim::wire` (which enforces the
//!   node's byte budget; a message over it fails the test), recorded in
//!   [`Cluster::sent`], and delivered as bytes after [`Cluster::latency_ms`]
//!   plus any extra inbound delay of the receiver. Links can be cut in one or
//!   both directions (checked at delivery), a share of all datagrams can be
//!   lost ([`Cluster::loss_per_mille`], drawn from the harness's own seeded
//!   RNG), and a crashed node's mail is dropped.
//! - **Time**: [`Cluster::run_until`] repeatedly takes the earliest of the
//!   next delivery and every node's `poll_timeout`, advances the clock to it,
//!   and performs it. Deliveries due at the same instant go first, in send
//!   order; then timers, in id order.
//! - **Records**: every event with its time and node ([`Cluster::events`]),
//!   and every rejected datagram ([`Cluster::rejected`]).
//!
//! Everything is deterministic: nodes live in `BTreeMap`s and there is no
//! randomness beyond the nodes' seeded RNGs and the harness's (seeded by
//! [`Cluster::seed`]).

// Shared test support: `pub` for the test files that include it.
#![allow(unreachable_pub, missing_docs)]
#![allow(dead_code)]

use chorus_core::swim::{
    wire, Action, Address, Config, Event, MemberState, Message, MessageBody, MessageError, SwimNode,
};
use chorus_core::types::{NodeId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Base of the per-node RNG seeds: node `n` gets `SEED_BASE + n`.
pub const SEED_BASE: u64 = 0x5317_0000;

/// Most steps (deliveries or timer firings) in one [`Cluster::run_until`];
/// more means the cluster spins, which is a bug worth a loud failure.
pub const MAX_STEPS_PER_RUN: usize = 5_000_000;

/// The address of node `id`.
pub fn address(id: u64) -> Address {
    Address::new(format!("node-{id}").into_bytes())
}

/// The node id behind an address made by [`address`].
pub fn id_of(address: &Address) -> u64 {
    std::str::from_utf8(address.as_bytes())
        .ok()
        .and_then(|text| text.strip_prefix("node-"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a harness address: {address}"))
}

/// The default test configuration of node `id`: memberlist LAN timings,
/// Lifeguard on, node 1 as the seed.
pub fn config(id: u64) -> Config {
    let mut config = Config::new(NodeId(id), address(id));
    config.seeds = vec![address(1)];
    config.rng_seed = SEED_BASE + id;
    config
}

/// One message as the network saw it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub at: Time,
    pub from: u64,
    pub to: u64,
    pub bytes: usize,
    pub message: Message,
}

/// One event as a node reported it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Time,
    pub node: u64,
    pub event: Event,
}

struct Datagram {
    from: u64,
    to: u64,
    bytes: Vec<u8>,
}

/// The simulated cluster.
pub struct Cluster {
    pub now: Time,
    nodes: BTreeMap<u64, SwimNode>,
    deadlines: BTreeMap<u64, Time>,
    /// Datagrams by delivery time, then send order.
    in_flight: BTreeMap<(Time, u64), Datagram>,
    next_sequence: u64,
    /// One-way delay of every datagram.
    pub latency_ms: u64,
    /// Extra delay of datagrams to a node (a slow receiver).
    pub inbound_delay_ms: BTreeMap<u64, u64>,
    /// Directed links `(from, to)` that drop everything.
    cut: BTreeSet<(u64, u64)>,
    /// Datagrams lost at random, per thousand.
    pub loss_per_mille: u32,
    /// The harness's own randomness (message loss, test choices).
    pub rng: ChaCha8Rng,
    pub sent: Vec<Sent>,
    /// Keep full messages in `sent` (off for large clusters to save memory).
    pub record_messages: bool,
    pub events: Vec<Recorded>,
    pub rejected: Vec<(Time, u64, MessageError)>,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            now: Time::ZERO,
            nodes: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_sequence: 0,
            latency_ms: 1,
            inbound_delay_ms: BTreeMap::new(),
            cut: BTreeSet::new(),
            loss_per_mille: 0,
            rng: ChaCha8Rng::seed_from_u64(SEED_BASE),
            sent: Vec::new(),
            record_messages: true,
            events: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// Nodes `1..=n` with [`config`], all started now.
    pub fn with_nodes(n: u64) -> Cluster {
        let mut cluster = Cluster::new();
        for id in 1..=n {
            cluster.start(config(id));
        }
        cluster
    }

    /// Reseeds the harness's RNG.
    pub fn seed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Like [`with_nodes`](Self::with_nodes), then runs until everyone sees
    /// everyone alive (panics after a minute).
    pub fn converged(n: u64) -> Cluster {
        Cluster::converged_with(n, config)
    }

    /// Nodes `1..=n` configured by `make`, run until everyone sees everyone
    /// alive (panics after a minute).
    pub fn converged_with(n: u64, make: impl Fn(u64) -> Config) -> Cluster {
        let mut cluster = Cluster::new();
        for id in 1..=n {
            cluster.start(make(id));
        }
        let ids: Vec<u64> = (1..=n).collect();
        cluster
            .run_until_true(60_000, |cluster| cluster.all_see_alive(&ids, &ids))
            .expect("a healthy cluster converges within a minute");
        cluster
    }

    /// Starts (or restarts, with a fresh state) a node now.
    pub fn start(&mut self, config: Config) {
        let id = config.id.0;
        let node = SwimNode::new(config, self.now).expect("valid test config");
        self.nodes.insert(id, node);
        self.drain(id);
    }

    /// Stops a node without a word; its mail is dropped from now on.
    pub fn crash(&mut self, id: u64) {
        self.nodes.remove(&id);
        self.deadlines.remove(&id);
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.contains_key(&id)
    }

    pub fn node(&self, id: u64) -> &SwimNode {
        &self.nodes[&id]
    }

    /// Runs `input` on a node, then drains its actions into the network.
    pub fn with_node<R>(&mut self, id: u64, input: impl FnOnce(&mut SwimNode, Time) -> R) -> R {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("node is running");
        let result = input(node, now);
        self.drain(id);
        result
    }

    /// Hands a message to a node directly, as if it had arrived now.
    pub fn inject(&mut self, to: u64, message: Message) -> Result<(), MessageError> {
        self.with_node(to, |node, now| node.handle_message(now, message))
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: u64, b: u64) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Cuts every link between the two groups.
    pub fn partition(&mut self, left: &[u64], right: &[u64]) {
        for &a in left {
            for &b in right {
                self.cut(a, b);
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Runs until `deadline` (inclusive).
    pub fn run_until(&mut self, deadline: Time) {
        for _ in 0..MAX_STEPS_PER_RUN {
            if !self.step(deadline) {
                return;
            }
        }
        panic!("more than {MAX_STEPS_PER_RUN} steps before {deadline}: the cluster spins");
    }

    pub fn run_for(&mut self, millis: u64) {
        self.run_until(self.now.add_millis(millis));
    }

    /// Runs until `done` holds (checked after every step) or `max_millis`
    /// pass; returns the time it first held.
    pub fn run_until_true(&mut self, max_millis: u64, mut done: impl FnMut(&Cluster) -> bool) -> Option<Time> {
        let deadline = self.now.add_millis(max_millis);
        if done(self) {
            return Some(self.now);
        }
        for _ in 0..MAX_STEPS_PER_RUN {
            if !self.step(deadline) {
                return None;
            }
            if done(self) {
                return Some(self.now);
            }
        }
        panic!("more than {MAX_STEPS_PER_RUN} steps: the cluster spins");
    }

    /// Performs the earliest delivery or timer at or before `limit`. Returns
    /// false (having moved the clock to `limit`) if there is none.
    fn step(&mut self, limit: Time) -> bool {
        let next_delivery = self.in_flight.keys().next().map(|(at, _)| *at);
        let next_timer = self.deadlines.iter().min_by_key(|(id, at)| (**at, **id)).map(|(id, at)| (*id, *at));
        let next = match (next_delivery, next_timer) {
            (Some(delivery), Some((_, timer))) => delivery.min(timer),
            (Some(delivery), None) => delivery,
            (None, Some((_, timer))) => timer,
            (None, None) => Time::from_micros(u64::MAX),
        };
        if next > limit {
            self.now = self.now.max(limit);
            return false;
        }
        self.now = self.now.max(next);
        if next_delivery == Some(next) {
            let (_, datagram) = self.in_flight.pop_first().expect("peeked");
            self.deliver(datagram);
        } else {
            let (id, _) = next_timer.expect("a timer is next");
            let now = self.now;
            self.nodes.get_mut(&id).expect("timers belong to running nodes").handle_timeout(now);
            self.drain(id);
            assert!(self.deadlines[&id] > now, "node {id} asked to be woken again at {now}: it would spin");
        }
        true
    }

    fn deliver(&mut self, datagram: Datagram) {
        if self.cut.contains(&(datagram.from, datagram.to)) {
            return;
        }
        if self.loss_per_mille > 0 && self.rng.random_range(0..1000) < self.loss_per_mille {
            return;
        }
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&datagram.to) else {
            return;
        };
        if let Err(error) = node.handle_datagram(now, &datagram.bytes) {
            self.rejected.push((now, datagram.to, error));
        }
        self.drain(datagram.to);
    }

    fn drain(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node is running");
        let budget = node.config().max_message_bytes;
        while let Some(action) = node.poll_action() {
            match action {
                Action::Send { to, message } => {
                    let bytes = wire::encode(&message, budget)
                        .unwrap_or_else(|error| panic!("node {id} built a message over its budget: {error}"));
                    let to = id_of(&to);
                    let delay_ms = self.latency_ms + self.inbound_delay_ms.get(&to).copied().unwrap_or(0);
                    let at = self.now.add_millis(delay_ms);
                    let record = Sent {
                        at: self.now,
                        from: id,
                        to,
                        bytes: bytes.len(),
                        message: if self.record_messages { message } else { empty_like(&message) },
                    };
                    self.sent.push(record);
                    self.in_flight.insert((at, self.next_sequence), Datagram { from: id, to, bytes });
                    self.next_sequence += 1;
                }
                Action::Event(event) => self.events.push(Recorded { at: self.now, node: id, event }),
            }
        }
        self.deadlines.insert(id, node.poll_timeout());
    }

    // ----- views and queries ------------------------------------------------

    /// What `observer` believes about `member`.
    pub fn state(&self, observer: u64, member: u64) -> Option<MemberState> {
        self.nodes[&observer].member(NodeId(member)).map(|member| member.state)
    }

    /// Every running observer in `observers` sees every other member of
    /// `members` as alive.
    pub fn all_see_alive(&self, observers: &[u64], members: &[u64]) -> bool {
        observers.iter().filter(|id| self.is_running(**id)).all(|&observer| {
            members
                .iter()
                .filter(|member| **member != observer)
                .all(|&member| self.state(observer, member) == Some(MemberState::Alive))
        })
    }

    /// Every running observer sees `member` in `state`.
    pub fn all_see(&self, observers: &[u64], member: u64, state: MemberState) -> bool {
        observers.iter().filter(|id| self.is_running(**id)).all(|&observer| self.state(observer, member) == Some(state))
    }

    /// Events a node reported, in order.
    pub fn events_of(&self, node: u64) -> impl Iterator<Item = &Recorded> + '_ {
        self.events.iter().filter(move |record| record.node == node)
    }

    /// Events anywhere matching `keep`.
    pub fn events_where(&self, keep: impl Fn(&Event) -> bool) -> Vec<&Recorded> {
        self.events.iter().filter(|record| keep(&record.event)).collect()
    }

    /// Messages of a kind (see [`MessageBody::kind`]).
    pub fn sent_of_kind(&self, kind: &str) -> Vec<&Sent> {
        self.sent.iter().filter(|sent| sent.message.body.kind() == kind).collect()
    }
}

/// A stand-in that keeps a message's addressing and kind but not its
/// payload.
fn empty_like(message: &Message) -> Message {
    let body = match &message.body {
        MessageBody::PushPull { want_reply, .. } => MessageBody::PushPull { want_reply: *want_reply, members: vec![] },
        other => other.clone(),
    };
    Message {
        from: message.from,
        from_address: message.from_address.clone(),
        to: message.to,
        body,
        updates: Vec::new(),
    }
}
