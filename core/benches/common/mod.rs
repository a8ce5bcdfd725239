//! An in-process 3-node Raft cluster with no I/O, driven in one thread: the
//! driver of the throughput benchmark (`benches/throughput.rs`) and of its
//! functional test (`tests/throughput_smoke.rs`).
//!
//! - **Network**: an in-memory queue. Everything sent during a round is
//!   delivered, in send order, at the end of the round: a round is one network
//!   hop, and virtual time moves [`HOP_MICROS`] per round. With
//!   [`Transport::Wire`] every message is encoded with
//!   `chorus_core::wire::encode_message` when sent and decoded when delivered;
//!   with [`Transport::InMemory`] the `Message` value itself is handed over.
//! - **Disk**: instant. A `Persist` action is dropped (nothing is written) and
//!   acknowledged as soon as the node's queued actions are drained: one
//!   `handle_persisted` with the latest id covers every write drained so far,
//!   as a group-committing disk would.
//! - **Clients**: a closed loop. Each of the clients keeps exactly one command
//!   outstanding, a `KvCommand` put of a 16-byte value to a 16-byte key in its
//!   own session, encoded with the real codec. When its answer arrives it
//!   proposes the next one in the following round.
//! - **State machine**: the built-in `KvStore`, or [`NullMachine`], which
//!   does nothing, to measure Raft alone.
//! - **Batching**: within a round the leader first gets every ready client's
//!   proposal, and only then are its actions drained and its messages sent, so
//!   one append can carry many entries (how many is up to the node's own
//!   pipelining: `max_inflight_appends`, `max_entries_per_append`).
//!
//! Everything is deterministic: fixed RNG seeds, virtual time, FIFO queues.

// Shared test support: `pub` for the test files that include it.
#![allow(unreachable_pub, missing_docs)]
#![allow(dead_code)]

use chorus_core::kv::{KvCommand, KvOp, KvResponse, KvStore, SessionRef};
use chorus_core::raft::{Action, ClientResult, Config, Event, Message, MessageBody, PersistId, RaftNode, Role};
use chorus_core::types::{LogIndex, NodeId, RequestId, Time};
use chorus_core::wire;
use chorus_core::{RestoreError, StateMachine};
use std::collections::VecDeque;

/// Members of the cluster.
pub const NODES: usize = 3;

/// Virtual time per round (one network hop).
pub const HOP_MICROS: u64 = 50;

/// Bytes in every key and every value.
pub const KEY_BYTES: usize = 16;
pub const VALUE_BYTES: usize = 16;

/// Each client cycles through this many keys of its own.
pub const KEYS_PER_CLIENT: u64 = 16;

/// Most rounds spent electing the first leader (5 virtual seconds).
pub const MAX_ELECTION_ROUNDS: u64 = 100_000;

/// Most rounds without a single client answer before the driver gives up:
/// the cluster has stopped committing.
pub const MAX_ROUNDS_WITHOUT_PROGRESS: u64 = 100_000;

/// Most drain-then-acknowledge passes within one round.
pub const MAX_SETTLE_PASSES: usize = 1_000;

/// Base of the nodes' RNG seeds.
pub const SEED_BASE: u64 = 0xBE_0000;

/// How messages travel between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The `Message` value is moved to its receiver.
    InMemory,
    /// Encoded with the wire codec on send, decoded on delivery.
    Wire,
}

/// What the driver counted since the cluster was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rounds (network hops) run.
    pub rounds: u64,
    /// Commands answered `Ok`.
    pub committed: u64,
    /// Messages sent, of every kind.
    pub messages: u64,
    /// Appends that carried at least one entry.
    pub appends_with_entries: u64,
    /// Entries carried by appends, summed.
    pub entries_sent: u64,
    /// `Persist` actions performed.
    pub persists: u64,
    /// `handle_persisted` calls.
    pub persist_acks: u64,
    /// Encoded message bytes ([`Transport::Wire`] only).
    pub wire_bytes: u64,
}

impl Stats {
    /// The counts accumulated between `earlier` and `self`.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            rounds: self.rounds - earlier.rounds,
            committed: self.committed - earlier.committed,
            messages: self.messages - earlier.messages,
            appends_with_entries: self.appends_with_entries - earlier.appends_with_entries,
            entries_sent: self.entries_sent - earlier.entries_sent,
            persists: self.persists - earlier.persists,
            persist_acks: self.persist_acks - earlier.persist_acks,
            wire_bytes: self.wire_bytes - earlier.wire_bytes,
        }
    }
}

/// A state machine the cluster can run: how to build one, and what it
/// answers to every command of the workload.
pub trait BenchMachine: StateMachine {
    fn fresh() -> Self;
    fn expected_answer() -> Vec<u8>;
}

impl BenchMachine for KvStore {
    fn fresh() -> Self {
        KvStore::default()
    }
    fn expected_answer() -> Vec<u8> {
        KvResponse::Done.encode()
    }
}

/// A state machine that ignores every command and answers nothing: the
/// benchmark then measures Raft (and the client encoding) alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NullMachine {
    /// How many commands were applied.
    pub applied: u64,
}

impl StateMachine for NullMachine {
    fn apply(&mut self, _index: LogIndex, _command: &[u8]) -> Vec<u8> {
        self.applied += 1;
        Vec::new()
    }
    fn query(&self, _query: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.applied.to_le_bytes().to_vec()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| RestoreError("not 8 bytes".into()))?;
        self.applied = u64::from_le_bytes(bytes);
        Ok(())
    }
}

impl BenchMachine for NullMachine {
    fn fresh() -> Self {
        NullMachine::default()
    }
    fn expected_answer() -> Vec<u8> {
        Vec::new()
    }
}

enum Packet {
    Value(Message),
    Encoded { to: NodeId, bytes: Vec<u8> },
}

/// The encoded command `client` sends as its write number `sequence`: a put
/// of a 16-byte value to one of the client's 16-byte keys, in its session.
pub fn command(client: u64, sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_BYTES);
    key.extend_from_slice(b"key-");
    key.extend_from_slice(&client.to_be_bytes()[4..]);
    key.extend_from_slice(&(sequence % KEYS_PER_CLIENT).to_be_bytes()[..8]);
    let mut value = Vec::with_capacity(VALUE_BYTES);
    value.extend_from_slice(&sequence.to_le_bytes());
    value.extend_from_slice(b"value-16");
    debug_assert_eq!((key.len(), value.len()), (KEY_BYTES, VALUE_BYTES));
    KvCommand { session: Some(SessionRef { client, sequence }), op: KvOp::Put { key, value } }.encode()
}

/// The in-process cluster and its clients.
pub struct BenchCluster<S> {
    nodes: Vec<RaftNode<S>>,
    transport: Transport,
    now: Time,
    /// Position of the leader in `nodes`, once elected.
    leader: Option<usize>,
    /// Sent this round, delivered at its end.
    network: Vec<Packet>,
    /// Spare buffer swapped with `network` while delivering.
    delivering: Vec<Packet>,
    /// Per node, the latest write drained but not yet acknowledged.
    unacknowledged: [Option<PersistId>; NODES],
    /// Per client, the number of its last proposed write (0: none yet).
    sequences: Vec<u64>,
    /// Per client, whether a command is outstanding.
    outstanding: Vec<bool>,
    outstanding_count: u64,
    /// Clients with no command outstanding, in the order they became ready.
    ready: VecDeque<u64>,
    /// Commands still to be proposed in the current run.
    budget: u64,
    /// What the state machine answers to every command.
    expected_answer: Vec<u8>,
    /// Every proposed command, in proposal order (when recording).
    proposals: Option<Vec<Vec<u8>>>,
    stats: Stats,
}

impl<S: BenchMachine> BenchCluster<S> {
    /// Builds the cluster (default `Config` apart from the RNG seeds), elects
    /// a leader and waits until it has committed its first entry. `configure`
    /// may adjust every node's config.
    pub fn new(clients: usize, transport: Transport, configure: impl Fn(&mut Config)) -> BenchCluster<S> {
        assert!(clients >= 1, "at least one client");
        let ids: Vec<NodeId> = (1..=NODES as u64).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|id| {
                let mut config = Config::new(*id, ids.clone());
                config.rng_seed = SEED_BASE + id.0;
                configure(&mut config);
                RaftNode::new(config, S::fresh(), Time::ZERO).expect("the benchmark's config is valid")
            })
            .collect();
        let mut cluster = BenchCluster {
            nodes,
            transport,
            now: Time::ZERO,
            leader: None,
            network: Vec::new(),
            delivering: Vec::new(),
            unacknowledged: [None; NODES],
            sequences: vec![0; clients],
            outstanding: vec![false; clients],
            outstanding_count: 0,
            ready: (0..clients as u64).collect(),
            budget: 0,
            expected_answer: S::expected_answer(),
            proposals: None,
            stats: Stats::default(),
        };
        cluster.elect();
        cluster
    }

    /// Keeps a copy of every command proposed from now on.
    pub fn record_proposals(&mut self) {
        self.proposals.get_or_insert_with(Vec::new);
    }

    /// The commands proposed since recording started, in proposal order.
    pub fn proposals(&self) -> &[Vec<u8>] {
        self.proposals.as_deref().unwrap_or(&[])
    }

    pub fn nodes(&self) -> &[RaftNode<S>] {
        &self.nodes
    }

    pub fn leader(&self) -> &RaftNode<S> {
        &self.nodes[self.leader.expect("a leader was elected when the cluster was built")]
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Proposes exactly `commands` more commands through the closed loop and
    /// runs until every one of them has been answered.
    pub fn run(&mut self, commands: u64) {
        self.budget += commands;
        let mut idle_rounds = 0;
        while self.budget > 0 || self.outstanding_count > 0 {
            let answered = self.stats.committed;
            self.round();
            if self.stats.committed == answered {
                idle_rounds += 1;
                assert!(
                    idle_rounds < MAX_ROUNDS_WITHOUT_PROGRESS,
                    "no command answered in {MAX_ROUNDS_WITHOUT_PROGRESS} rounds"
                );
            } else {
                idle_rounds = 0;
            }
        }
    }

    /// Runs rounds without new commands until every node has applied the
    /// leader's whole log; returns how many rounds that took.
    pub fn run_until_applied_everywhere(&mut self, max_rounds: u64) -> u64 {
        for rounds in 0..max_rounds {
            let last = self.leader().last_index();
            if self.nodes.iter().all(|node| node.applied_index() == last && node.commit_index() == last) {
                return rounds;
            }
            self.round();
        }
        panic!("the followers did not apply the leader's log within {max_rounds} rounds");
    }

    /// One network hop: answered clients propose, the nodes' actions are
    /// performed and their writes acknowledged, every message sent is
    /// delivered, and time moves on.
    fn round(&mut self) {
        self.settle();
        self.propose_ready();
        self.settle();
        self.deliver();
        self.now = self.now.add_micros(HOP_MICROS);
        for node in &mut self.nodes {
            if node.poll_timeout() <= self.now {
                node.handle_timeout(self.now);
            }
        }
        self.stats.rounds += 1;
    }

    fn elect(&mut self) {
        for _ in 0..MAX_ELECTION_ROUNDS {
            self.round();
            let leader = self
                .nodes
                .iter()
                .position(|node| node.role() == Role::Leader && node.commit_index() == node.last_index());
            if let Some(leader) = leader {
                if self.nodes[leader].commit_index().0 >= 1 {
                    self.settle();
                    self.leader = Some(leader);
                    return;
                }
            }
        }
        panic!("no leader committed an entry within {MAX_ELECTION_ROUNDS} rounds");
    }

    fn propose_ready(&mut self) {
        let Some(leader) = self.leader else {
            return;
        };
        while self.budget > 0 {
            let Some(client) = self.ready.pop_front() else {
                return;
            };
            let position = client as usize;
            self.sequences[position] += 1;
            self.outstanding[position] = true;
            self.outstanding_count += 1;
            self.budget -= 1;
            let command = command(client, self.sequences[position]);
            if let Some(proposals) = self.proposals.as_mut() {
                proposals.push(command.clone());
            }
            self.nodes[leader].propose(self.now, RequestId(client), command);
        }
    }

    /// Drains every node and acknowledges its writes until no node has
    /// anything left to say but messages on the wire.
    fn settle(&mut self) {
        for _ in 0..MAX_SETTLE_PASSES {
            for position in 0..NODES {
                self.drain(position);
            }
            let mut acknowledged = false;
            for position in 0..NODES {
                if let Some(id) = self.unacknowledged[position].take() {
                    self.nodes[position].handle_persisted(self.now, id);
                    self.stats.persist_acks += 1;
                    acknowledged = true;
                }
            }
            if !acknowledged {
                return;
            }
        }
        panic!("the nodes kept writing for {MAX_SETTLE_PASSES} passes in one round");
    }

    fn drain(&mut self, position: usize) {
        while let Some(action) = self.nodes[position].poll_action() {
            match action {
                Action::Send(message) => self.send(message),
                Action::Persist(write) => {
                    // The instant disk: nothing to write, acknowledged below.
                    self.stats.persists += 1;
                    self.unacknowledged[position] = Some(write.id);
                }
                Action::Respond { request, result } => self.answer(request, result),
                Action::Event(event) => self.observe(position, event),
            }
        }
    }

    fn send(&mut self, message: Message) {
        self.stats.messages += 1;
        if let MessageBody::AppendEntries { entries, .. } = &message.body {
            if !entries.is_empty() {
                self.stats.appends_with_entries += 1;
                self.stats.entries_sent += entries.len() as u64;
            }
        }
        let packet = match self.transport {
            Transport::InMemory => Packet::Value(message),
            Transport::Wire => {
                let bytes = wire::encode_message(&message).expect("the benchmark's messages fit the wire limit");
                self.stats.wire_bytes += bytes.len() as u64;
                Packet::Encoded { to: message.to, bytes }
            }
        };
        self.network.push(packet);
    }

    fn deliver(&mut self) {
        std::mem::swap(&mut self.network, &mut self.delivering);
        for packet in self.delivering.drain(..) {
            let message = match packet {
                Packet::Value(message) => message,
                Packet::Encoded { to, bytes } => {
                    let message = wire::decode_message(&bytes).expect("what the wire codec encoded, it decodes");
                    assert_eq!(message.to, to, "the decoded message is addressed as the encoded one");
                    message
                }
            };
            let position = (message.to.0 - 1) as usize;
            self.nodes[position].handle_message(self.now, message).expect("correct nodes send well-formed messages");
        }
    }

    fn answer(&mut self, request: RequestId, result: ClientResult) {
        let client = request.0 as usize;
        match result {
            ClientResult::Ok(answer) if answer == self.expected_answer => {}
            other => panic!("client {client} got {other:?} for write {}", self.sequences[client]),
        }
        assert!(self.outstanding[client], "client {client} was answered with no command outstanding");
        self.outstanding[client] = false;
        self.outstanding_count -= 1;
        self.ready.push_back(request.0);
        self.stats.committed += 1;
    }

    fn observe(&mut self, position: usize, event: Event) {
        match event {
            Event::RoleChanged { .. } if self.leader.is_none() => {}
            other => panic!("node {} reported {other:?} during the benchmark", position + 1),
        }
    }
}
