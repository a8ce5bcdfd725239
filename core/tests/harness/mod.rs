//! A tiny in-memory Raft cluster for deterministic scenario tests.
//!
//! The harness is the driver a real runtime would be, done by hand:
//!
//! - **Nodes**: `N` [`RaftNode<KvStore>`]s with ids `1..=N`, each with a fixed
//!   `rng_seed`, its own clock ([`Member::now`]) and its own fake disk.
//! - **Disk**: every [`PersistRequest`] is queued as *unsynced*; syncing
//!   applies it (truncate, then append, then replace the hard state) and
//!   acknowledges it with `handle_persisted`. In [`SyncMode::Immediate`] that
//!   happens as soon as the request is drained; in [`SyncMode::Manual`] only
//!   when the test calls [`Cluster::sync`]. A crash loses unsynced writes.
//! - **Network**: a FIFO of in-flight messages. Tests deliver, drop, duplicate
//!   or reorder them, cut links (`(from, to)` pairs) for partitions, or install
//!   a drop rule. Cuts and the drop rule are applied when a message is about
//!   to be delivered.
//! - **Checkers**: after every input the harness records who became leader of
//!   which term and the entries each node reports as committed; two leaders in
//!   one term, or two different entries committed at one index, are safety
//!   violations ([`Cluster::check_safety`]).
//!
//! Everything is deterministic: members live in a `BTreeMap` and are visited
//! in id order, there is no wall clock, and no randomness beyond the nodes'
//! seeded RNGs.

// Shared test support: `pub` for the test files that include it.
#![allow(unreachable_pub, missing_docs)]
#![allow(dead_code)]

use chorus_core::kv::{KvCommand, KvOp, KvQuery, KvResponse, KvStore, SessionRef};
use chorus_core::raft::{
    Action, ChangeError, ClientResult, Config, DiskId, DurableState, Entry, Event, HardState, MembershipChange,
    Message, MessageBody, Payload, PersistRequest, RaftNode, ReadConsistency, Role, Snapshot, TransferError,
};
use chorus_core::types::{LogIndex, NodeId, RequestId, Term, Time};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Base of the per-node RNG seeds: node `n` gets `SEED_BASE + n`.
pub const SEED_BASE: u64 = 0x5EED_0000;

/// Most message deliveries in one [`Cluster::deliver_all`]; more means the
/// cluster is chattering forever, which is a bug worth a loud failure.
pub const MAX_DELIVERIES_PER_ROUND: usize = 100_000;

/// Most rounds of deliver-then-sync in one [`Cluster::stabilize`].
pub const MAX_STABILIZE_ROUNDS: usize = 1_000;

/// Most milliseconds [`Cluster::tick_until_leader`] waits.
pub const MAX_ELECTION_WAIT_MS: u64 = 10_000;

/// Most election rounds [`Cluster::elect`] tries.
pub const MAX_ELECTION_ATTEMPTS: usize = 4;

/// When a member's disk acknowledges writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Every write is synced and acknowledged as soon as it is drained.
    Immediate,
    /// Writes wait for [`Cluster::sync`] or [`Cluster::sync_one`].
    Manual,
}

/// A member's fake disk.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The durable hard state.
    pub hard_state: HardState,
    /// The durable snapshot.
    pub snapshot: Option<Snapshot>,
    /// The durable log, dense (from index 1, or within the snapshot).
    pub entries: Vec<Entry>,
    /// Writes handed to the disk but not yet synced: a crash loses them.
    pub unsynced: VecDeque<PersistRequest>,
}

impl Disk {
    /// A disk that already holds `hard_state` and `entries`.
    pub fn holding(hard_state: HardState, entries: Vec<Entry>) -> Disk {
        Disk { hard_state, snapshot: None, entries, unsynced: VecDeque::new() }
    }

    /// Makes one write durable, by the core's one rule for applying writes.
    fn apply(&mut self, write: &PersistRequest) {
        let mut state = self.durable_state();
        if let Err(error) = state.apply(write) {
            panic!("write {:?} cannot be applied: {error}", write.id);
        }
        DurableState { hard_state: self.hard_state, snapshot: self.snapshot, entries: self.entries } = state;
    }

    /// What a restart reads back.
    pub fn durable_state(&self) -> DurableState {
        DurableState { hard_state: self.hard_state, snapshot: self.snapshot.clone(), entries: self.entries.clone() }
    }

    /// The terms of the stored entries, in order.
    pub fn terms(&self) -> Vec<u64> {
        self.entries.iter().map(|entry| entry.term.0).collect()
    }
}

/// One cluster member: a node (absent while crashed) and what survives it.
pub struct Member {
    pub config: Config,
    /// `None` while the member is down.
    pub node: Option<RaftNode<KvStore>>,
    pub disk: Disk,
    pub sync_mode: SyncMode,
    /// This member's clock. It keeps running while the member is down.
    pub now: Time,
    /// Every client answer the node gave, in order, across restarts.
    pub responses: Vec<(RequestId, ClientResult)>,
    /// Every `Event::Violation` the node reported.
    pub violations: Vec<String>,
    /// Every role change the node reported, in order, across restarts.
    pub role_changes: Vec<(Role, Term)>,
    /// Every other event (leadership transfers), in order, across restarts.
    pub other_events: Vec<Event>,
    /// Id of the last write drained from the current incarnation.
    last_persist_id: u64,
}

/// Decides, when a message is about to be delivered, whether the network
/// loses it instead. It sees every message that passes the cut links, so it
/// may keep state about what has been on the wire.
pub type DropRule = Box<dyn FnMut(&Message) -> bool>;

/// The in-memory cluster.
pub struct Cluster {
    members: BTreeMap<NodeId, Member>,
    in_flight: VecDeque<Message>,
    cut_links: BTreeSet<(NodeId, NodeId)>,
    drop_rule: Option<DropRule>,
    sent: Vec<Message>,
    leaders_by_term: BTreeMap<Term, BTreeSet<NodeId>>,
    committed: BTreeMap<LogIndex, Entry>,
    safety_violations: Vec<String>,
}

/// Node ids `1..=size`.
pub fn node_ids(size: u64) -> Vec<NodeId> {
    (1..=size).map(NodeId).collect()
}

fn base_config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut config = Config::new(id, voters.to_vec());
    config.rng_seed = SEED_BASE + id.0;
    // Scenario tests expect followers to refuse proposals; forwarding has its
    // own tests.
    config.forward_proposals = false;
    config.follower_reads = false;
    config
}

impl Cluster {
    /// `size` brand-new members with default configuration.
    pub fn new(size: u64) -> Cluster {
        Cluster::with_config(size, |_| {})
    }

    /// `size` brand-new members; `configure` adjusts each one's config (it
    /// sees `config.id`).
    pub fn with_config(size: u64, configure: impl Fn(&mut Config)) -> Cluster {
        let disks = node_ids(size).into_iter().map(|_| Disk::default()).collect();
        Cluster::from_disks(disks, configure)
    }

    /// One member per disk (node `i + 1` gets `disks[i]`), each started with
    /// `RaftNode::restart` from what its disk holds. An empty disk is a
    /// brand-new member, bootstrapped with `RaftNode::new`.
    pub fn from_disks(disks: Vec<Disk>, configure: impl Fn(&mut Config)) -> Cluster {
        let ids = node_ids(disks.len() as u64);
        let mut members = BTreeMap::new();
        for (id, disk) in ids.iter().zip(disks) {
            let mut config = base_config(*id, &ids);
            configure(&mut config);
            let stored = disk.durable_state();
            let node = if stored.is_empty() {
                RaftNode::new(config.clone(), KvStore::default(), Time::ZERO).expect("a valid config")
            } else {
                RaftNode::restart(config.clone(), stored, KvStore::default(), Time::ZERO)
                    .expect("the hand-built disk state is valid")
            };
            members.insert(
                *id,
                Member {
                    config,
                    node: Some(node),
                    disk,
                    sync_mode: SyncMode::Immediate,
                    now: Time::ZERO,
                    responses: Vec::new(),
                    violations: Vec::new(),
                    role_changes: Vec::new(),
                    other_events: Vec::new(),
                    last_persist_id: 0,
                },
            );
        }
        let mut cluster = Cluster {
            members,
            in_flight: VecDeque::new(),
            cut_links: BTreeSet::new(),
            drop_rule: None,
            sent: Vec::new(),
            leaders_by_term: BTreeMap::new(),
            committed: BTreeMap::new(),
            safety_violations: Vec::new(),
        };
        for id in cluster.ids() {
            // The bootstrap (or restart) write reaches each disk at once.
            cluster.drain(id);
            cluster.observe_commit(id);
        }
        cluster
    }

    // ----- access -----------------------------------------------------------

    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    pub fn member(&self, id: NodeId) -> &Member {
        self.members.get(&id).expect("no such member")
    }

    fn member_mut(&mut self, id: NodeId) -> &mut Member {
        self.members.get_mut(&id).expect("no such member")
    }

    /// The running node; panics if it is down.
    pub fn node(&self, id: NodeId) -> &RaftNode<KvStore> {
        self.member(id).node.as_ref().unwrap_or_else(|| panic!("{id} is down"))
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.member(id).node.is_some()
    }

    pub fn disk(&self, id: NodeId) -> &Disk {
        &self.member(id).disk
    }

    pub fn now(&self, id: NodeId) -> Time {
        self.member(id).now
    }

    /// The node's log (volatile view), in order.
    pub fn log(&self, id: NodeId) -> Vec<Entry> {
        let node = self.node(id);
        (1..=node.last_index().0).map(|index| node.entry(LogIndex(index)).expect("entries are dense").clone()).collect()
    }

    /// The terms of the node's log entries, in order.
    pub fn log_terms(&self, id: NodeId) -> Vec<u64> {
        self.log(id).iter().map(|entry| entry.term.0).collect()
    }

    /// The value the node's state machine holds for `key`.
    pub fn kv_get(&self, id: NodeId, key: &str) -> Option<String> {
        self.node(id)
            .state_machine()
            .get(key.as_bytes())
            .map(|value| String::from_utf8(value.clone()).expect("test values are UTF-8"))
    }

    /// Every answer the node gave to `request`, in order.
    pub fn answers(&self, id: NodeId, request: u64) -> Vec<ClientResult> {
        self.member(id)
            .responses
            .iter()
            .filter(|(answered, _)| *answered == RequestId(request))
            .map(|(_, result)| result.clone())
            .collect()
    }

    /// The single answer the node gave to `request`, if any; panics on two.
    pub fn answer(&self, id: NodeId, request: u64) -> Option<ClientResult> {
        let mut answers = self.answers(id, request);
        assert!(answers.len() <= 1, "{request} was answered twice: {answers:?}");
        answers.pop()
    }

    /// Every message any node has emitted so far, in emission order
    /// (including ones later dropped).
    pub fn sent(&self) -> &[Message] {
        &self.sent
    }

    /// Messages still on the wire.
    pub fn in_flight(&self) -> &VecDeque<Message> {
        &self.in_flight
    }

    /// Who reported becoming leader of `term`.
    pub fn leaders_of(&self, term: Term) -> BTreeSet<NodeId> {
        self.leaders_by_term.get(&term).cloned().unwrap_or_default()
    }

    /// Every term that had a leader, with its leaders.
    pub fn leaders_by_term(&self) -> &BTreeMap<Term, BTreeSet<NodeId>> {
        &self.leaders_by_term
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.members
            .iter()
            .filter_map(|(id, member)| member.node.as_ref().map(|node| (*id, node)))
            .filter(|(_, node)| node.role() == Role::Leader)
            .max_by_key(|(_, node)| node.term())
            .map(|(id, _)| id)
    }

    // ----- checkers ---------------------------------------------------------

    /// Err if two leaders were seen in one term, or two different entries
    /// were seen committed at one index (across all nodes and restarts).
    pub fn check_safety(&self) -> Result<(), String> {
        if self.safety_violations.is_empty() {
            Ok(())
        } else {
            Err(self.safety_violations.join("; "))
        }
    }

    /// Err if any node reported an `Event::Violation`.
    pub fn check_no_protocol_violations(&self) -> Result<(), String> {
        let reported: Vec<String> = self
            .members
            .iter()
            .flat_map(|(id, member)| member.violations.iter().map(move |violation| format!("{id}: {violation}")))
            .collect();
        if reported.is_empty() {
            Ok(())
        } else {
            Err(reported.join("; "))
        }
    }

    /// Panics unless [`check_safety`](Self::check_safety) and
    /// [`check_no_protocol_violations`](Self::check_no_protocol_violations)
    /// pass.
    pub fn assert_safe(&self) {
        if let Err(problem) = self.check_safety() {
            panic!("safety violated: {problem}");
        }
        if let Err(problem) = self.check_no_protocol_violations() {
            panic!("protocol violation reported: {problem}");
        }
    }

    fn observe_commit(&mut self, id: NodeId) {
        let Some(node) = self.members.get(&id).and_then(|member| member.node.as_ref()) else {
            return;
        };
        for index in node.status().first_index.0..=node.commit_index().0 {
            let index = LogIndex(index);
            let Some(entry) = node.entry(index) else {
                self.safety_violations
                    .push(format!("{id} reports commit {} but has no entry {index}", node.commit_index()));
                return;
            };
            match self.committed.get(&index) {
                None => {
                    self.committed.insert(index, entry.clone());
                }
                Some(known) if known != entry => {
                    let problem = format!(
                        "{id} committed {index} in term {} but it was committed in term {} before",
                        entry.term, known.term
                    );
                    if !self.safety_violations.contains(&problem) {
                        self.safety_violations.push(problem);
                    }
                }
                Some(_) => {}
            }
        }
    }

    // ----- draining a node ----------------------------------------------------

    /// Performs every action the node has queued, syncing its disk at once in
    /// [`SyncMode::Immediate`], until the node has nothing more to say.
    fn drain(&mut self, id: NodeId) {
        loop {
            let member = self.members.get_mut(&id).expect("no such member");
            let Some(node) = member.node.as_mut() else {
                return;
            };
            while let Some(action) = node.poll_action() {
                match action {
                    Action::Send(message) => {
                        assert_eq!(message.from, id, "a node sends in its own name");
                        self.sent.push(message.clone());
                        self.in_flight.push_back(message);
                    }
                    Action::Persist(write) => {
                        assert_eq!(write.id.0, member.last_persist_id + 1, "{id}: persist ids grow by one");
                        member.last_persist_id = write.id.0;
                        member.disk.unsynced.push_back(write);
                    }
                    Action::Respond { request, result } => {
                        member.responses.push((request, result));
                    }
                    Action::Event(Event::RoleChanged { role, term }) => {
                        member.role_changes.push((role, term));
                        if role == Role::Leader {
                            let leaders = self.leaders_by_term.entry(term).or_default();
                            leaders.insert(id);
                            if leaders.len() > 1 {
                                self.safety_violations.push(format!("two leaders in {term}: {leaders:?}"));
                            }
                        }
                    }
                    Action::Event(Event::Violation { description }) => {
                        member.violations.push(description);
                    }
                    Action::Event(event) => member.other_events.push(event),
                }
            }
            let sync_now = member.sync_mode == SyncMode::Immediate && !member.disk.unsynced.is_empty();
            self.observe_commit(id);
            if !sync_now {
                return;
            }
            self.sync_writes(id, usize::MAX);
        }
    }

    /// Makes up to `count` of the member's oldest unsynced writes durable and
    /// acknowledges the last of them. Does not drain.
    fn sync_writes(&mut self, id: NodeId, count: usize) {
        let member = self.member_mut(id);
        let mut last = None;
        for _ in 0..count {
            let Some(write) = member.disk.unsynced.pop_front() else {
                break;
            };
            member.disk.apply(&write);
            last = Some(write.id);
        }
        let now = member.now;
        if let (Some(last), Some(node)) = (last, member.node.as_mut()) {
            node.handle_persisted(now, last);
        }
    }

    // ----- inputs -------------------------------------------------------------

    /// Proposes a command at node `id` as client request `request`.
    pub fn propose(&mut self, id: NodeId, request: u64, command: Vec<u8>) {
        let member = self.member_mut(id);
        let now = member.now;
        member.node.as_mut().unwrap_or_else(|| panic!("{id} is down")).propose(now, RequestId(request), command);
        self.drain(id);
    }

    /// Asks node `id` to hand leadership to `target`.
    pub fn transfer_leadership(&mut self, id: NodeId, target: NodeId) -> Result<(), TransferError> {
        let member = self.member_mut(id);
        let now = member.now;
        let result = member.node.as_mut().unwrap_or_else(|| panic!("{id} is down")).transfer_leadership(now, target);
        self.drain(id);
        result
    }

    /// Asks node `id` a read-only query as client request `request`.
    pub fn read(&mut self, id: NodeId, request: u64, query: Vec<u8>) {
        let member = self.member_mut(id);
        let now = member.now;
        member.node.as_mut().unwrap_or_else(|| panic!("{id} is down")).read(now, RequestId(request), query);
        self.drain(id);
    }

    /// Asks node `id` a read-only query at the given consistency.
    pub fn read_with(&mut self, id: NodeId, request: u64, query: Vec<u8>, consistency: ReadConsistency) {
        let member = self.member_mut(id);
        let now = member.now;
        let node = member.node.as_mut().unwrap_or_else(|| panic!("{id} is down"));
        node.read_with(now, RequestId(request), query, consistency);
        self.drain(id);
    }

    /// Wakes node `id` if it is quiesced (`leader_failed`: its failure
    /// detector declared the leader failed).
    pub fn wake(&mut self, id: NodeId, leader_failed: bool) {
        let member = self.member_mut(id);
        let now = member.now;
        member.node.as_mut().unwrap_or_else(|| panic!("{id} is down")).wake(now, leader_failed);
        self.drain(id);
    }

    /// Advances node `id`'s clock by `ms` and lets it handle the timeout.
    pub fn tick(&mut self, id: NodeId, ms: u64) {
        let member = self.member_mut(id);
        member.now = member.now.add_millis(ms);
        let now = member.now;
        if let Some(node) = member.node.as_mut() {
            node.handle_timeout(now);
        }
        self.drain(id);
    }

    /// Moves node `id`'s clock forward by `ms` *without* firing its timers: its
    /// timer is late. Used to let a lease lapse without starting an election.
    pub fn skip_clock(&mut self, id: NodeId, ms: u64) {
        let member = self.member_mut(id);
        member.now = member.now.add_millis(ms);
    }

    /// Moves node `id`'s clock to its next deadline (if that is later) and
    /// fires it. Nobody else's clock moves.
    pub fn fire_timeout(&mut self, id: NodeId) {
        let member = self.member_mut(id);
        let node = member.node.as_mut().unwrap_or_else(|| panic!("{id} is down"));
        member.now = member.now.max(node.poll_timeout());
        node.handle_timeout(member.now);
        self.drain(id);
    }

    /// Runs the whole cluster for `ms` milliseconds, one millisecond at a
    /// time: every clock (also of members that are down) moves by 1 ms, each
    /// running node whose deadline has come handles its timeout (in id order),
    /// then every in-flight message is delivered (zero latency).
    pub fn advance(&mut self, ms: u64) {
        for _ in 0..ms {
            self.advance_one_ms();
        }
    }

    fn advance_one_ms(&mut self) {
        for id in self.ids() {
            let member = self.member_mut(id);
            member.now = member.now.add_millis(1);
            let now = member.now;
            if let Some(node) = member.node.as_mut() {
                if now >= node.poll_timeout() {
                    node.handle_timeout(now);
                }
            }
            self.drain(id);
        }
        self.deliver_all();
    }

    /// Runs the cluster until some node is leader, and returns it.
    pub fn tick_until_leader(&mut self) -> NodeId {
        for _ in 0..MAX_ELECTION_WAIT_MS {
            if let Some(leader) = self.leader() {
                return leader;
            }
            self.advance_one_ms();
        }
        panic!("no leader after {MAX_ELECTION_WAIT_MS} ms");
    }

    /// Makes node `id` win an election: lets every other member's lease lapse
    /// (their clocks move one maximal election timeout, without firing), fires
    /// `id`'s election timer and stabilizes; repeats if a round fails (for
    /// example because `id` first had to learn a higher term).
    pub fn elect(&mut self, id: NodeId) {
        for _ in 0..MAX_ELECTION_ATTEMPTS {
            self.elect_attempt(id);
            if self.node(id).role() == Role::Leader {
                return;
            }
        }
        panic!(
            "{id} did not win an election in {MAX_ELECTION_ATTEMPTS} attempts (role {:?}, term {})",
            self.node(id).role(),
            self.node(id).term()
        );
    }

    /// One election attempt by `id` (as in [`elect`](Self::elect), but
    /// without retrying or insisting that it wins).
    pub fn elect_attempt(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                let lapse_ms = 2 * self.member(other).config.election_timeout_ms;
                self.skip_clock(other, lapse_ms);
            }
        }
        self.fire_timeout(id);
        self.stabilize();
    }

    // ----- network ------------------------------------------------------------

    /// Delivers one message (subject to cuts and the drop rule). Returns
    /// whether it reached a running node.
    fn deliver(&mut self, message: Message) -> bool {
        if self.cut_links.contains(&(message.from, message.to)) {
            return false;
        }
        if let Some(rule) = self.drop_rule.as_mut() {
            if rule(&message) {
                return false;
            }
        }
        let to = message.to;
        let Some(member) = self.members.get_mut(&to) else {
            return false;
        };
        let now = member.now;
        let Some(node) = member.node.as_mut() else {
            return false;
        };
        let from = message.from;
        if let Err(error) = node.handle_message(now, message) {
            // Rejected whole: recorded like a protocol violation, so that
            // `check_no_protocol_violations` fails on it.
            member.violations.push(format!("rejected a message from {from}: {error}"));
        }
        self.drain(to);
        true
    }

    /// Delivers the oldest in-flight message. Returns false if none was left.
    pub fn deliver_next(&mut self) -> bool {
        match self.in_flight.pop_front() {
            Some(message) => {
                self.deliver(message);
                true
            }
            None => false,
        }
    }

    /// Delivers the in-flight message at `position` (reordering).
    pub fn deliver_at(&mut self, position: usize) {
        if let Some(message) = self.in_flight.remove(position) {
            self.deliver(message);
        }
    }

    /// Loses the in-flight message at `position`.
    pub fn drop_at(&mut self, position: usize) {
        self.in_flight.remove(position);
    }

    /// Puts a second copy of the in-flight message at `position` on the wire.
    pub fn duplicate_at(&mut self, position: usize) {
        if let Some(message) = self.in_flight.get(position).cloned() {
            self.in_flight.push_back(message);
        }
    }

    /// Delivers, in order, the in-flight messages that match `select` now
    /// (not the ones their delivery causes).
    pub fn deliver_where(&mut self, select: impl Fn(&Message) -> bool) {
        let (chosen, rest): (Vec<Message>, Vec<Message>) =
            self.in_flight.drain(..).partition(|message| select(message));
        self.in_flight = rest.into();
        for message in chosen {
            self.deliver(message);
        }
    }

    /// Puts `message` on the wire, as a network replaying an old message would.
    pub fn inject(&mut self, message: Message) {
        self.in_flight.push_back(message);
    }

    /// Delivers messages until none are in flight. Writes of members in
    /// [`SyncMode::Manual`] stay unsynced.
    pub fn deliver_all(&mut self) {
        let mut delivered = 0;
        while self.deliver_next() {
            delivered += 1;
            assert!(delivered < MAX_DELIVERIES_PER_ROUND, "the cluster never goes quiet");
        }
    }

    /// Delivers every message and syncs every disk (whatever its mode) until
    /// nothing is in flight and nothing is unsynced.
    pub fn stabilize(&mut self) {
        for _ in 0..MAX_STABILIZE_ROUNDS {
            self.deliver_all();
            let pending: Vec<NodeId> = self
                .members
                .iter()
                .filter(|(_, member)| member.node.is_some() && !member.disk.unsynced.is_empty())
                .map(|(id, _)| *id)
                .collect();
            if pending.is_empty() {
                return;
            }
            for id in pending {
                self.sync(id);
            }
        }
        panic!("the cluster did not stabilize in {MAX_STABILIZE_ROUNDS} rounds");
    }

    /// Cuts the link from `from` to `to` (one direction).
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut_links.insert((from, to));
    }

    /// Cuts the links between `a` and `b`, both directions.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.cut(id, other);
            }
        }
    }

    /// Cuts every link between the two sides.
    pub fn partition(&mut self, side_a: &[NodeId], side_b: &[NodeId]) {
        for a in side_a {
            for b in side_b {
                self.cut(*a, *b);
            }
        }
    }

    /// Restores every link and removes the drop rule.
    pub fn heal(&mut self) {
        self.cut_links.clear();
        self.drop_rule = None;
    }

    /// Installs a drop rule (replacing any previous one).
    pub fn set_drop_rule(&mut self, rule: impl FnMut(&Message) -> bool + 'static) {
        self.drop_rule = Some(Box::new(rule));
    }

    pub fn clear_drop_rule(&mut self) {
        self.drop_rule = None;
    }

    // ----- disks and crashes ----------------------------------------------------

    pub fn set_sync_mode(&mut self, id: NodeId, mode: SyncMode) {
        self.member_mut(id).sync_mode = mode;
        if mode == SyncMode::Immediate {
            self.sync(id);
        }
    }

    /// Syncs and acknowledges every unsynced write of `id`.
    pub fn sync(&mut self, id: NodeId) {
        self.sync_writes(id, usize::MAX);
        self.drain(id);
    }

    /// Syncs and acknowledges only the oldest unsynced write of `id`.
    pub fn sync_one(&mut self, id: NodeId) {
        self.sync_writes(id, 1);
        self.drain(id);
    }

    /// Crashes `id`: its volatile state, held messages and unsynced writes
    /// are lost; its disk and clock survive.
    pub fn crash(&mut self, id: NodeId) {
        let member = self.member_mut(id);
        member.node = None;
        member.disk.unsynced.clear();
    }

    /// Adds member `id` with an empty disk `disk`, started with
    /// `RaftNode::join` (it is in no configuration until one adds it).
    pub fn add_joining(&mut self, id: NodeId, disk: DiskId, configure: impl Fn(&mut Config)) {
        assert!(!self.members.contains_key(&id), "{id} already exists");
        let mut config = base_config(id, &[]);
        configure(&mut config);
        let now = self.members.values().map(|member| member.now).max().unwrap_or(Time::ZERO);
        let node = RaftNode::join(config.clone(), disk, KvStore::default(), now).expect("a valid config");
        let member = Member {
            config,
            node: Some(node),
            disk: Disk::default(),
            sync_mode: SyncMode::Immediate,
            now,
            responses: Vec::new(),
            violations: Vec::new(),
            role_changes: Vec::new(),
            other_events: Vec::new(),
            last_persist_id: 0,
        };
        self.members.insert(id, member);
        self.drain(id);
    }

    /// Crashes `id`, loses its disk, and starts it again with an empty disk
    /// under the new identity `disk` (`RaftNode::join`).
    pub fn wipe_and_rejoin(&mut self, id: NodeId, disk: DiskId) {
        self.crash(id);
        let member = self.member_mut(id);
        member.disk = Disk::default();
        let node = RaftNode::join(member.config.clone(), disk, KvStore::default(), member.now).expect("a valid config");
        member.node = Some(node);
        member.last_persist_id = 0;
        self.drain(id);
    }

    /// Crashes `id` and puts `disk` in place of its disk (say, an older copy
    /// restored from a backup): a later [`restart`](Self::restart) reads it.
    pub fn replace_disk(&mut self, id: NodeId, disk: Disk) {
        self.crash(id);
        self.member_mut(id).disk = disk;
    }

    /// Asks node `id` for a membership change as client request `request`.
    pub fn change_membership(&mut self, id: NodeId, request: u64, change: MembershipChange) -> Result<(), ChangeError> {
        let member = self.member_mut(id);
        let now = member.now;
        let node = member.node.as_mut().unwrap_or_else(|| panic!("{id} is down"));
        let result = node.change_membership(now, RequestId(request), change);
        self.drain(id);
        result
    }

    /// Restarts a crashed `id` from its disk with a fresh `KvStore`.
    pub fn restart(&mut self, id: NodeId) {
        let member = self.member_mut(id);
        assert!(member.node.is_none(), "{id} is already running");
        let stored = member.disk.durable_state();
        let node = if stored.is_empty() {
            // It crashed before its bootstrap write was synced: it never said
            // anything, so it may bootstrap again.
            RaftNode::new(member.config.clone(), KvStore::default(), member.now).expect("a valid config")
        } else {
            RaftNode::restart(member.config.clone(), stored, KvStore::default(), member.now)
                .unwrap_or_else(|error| panic!("{id} cannot restart from its own disk: {error}"))
        };
        member.node = Some(node);
        member.last_persist_id = 0;
        self.drain(id);
    }
}

// ----- messages -------------------------------------------------------------

pub fn is_append(message: &Message) -> bool {
    matches!(message.body, MessageBody::AppendEntries { .. })
}

/// The entries an append carries (empty for other messages).
pub fn append_entries(message: &Message) -> &[Entry] {
    match &message.body {
        MessageBody::AppendEntries { entries, .. } => entries,
        _ => &[],
    }
}

pub fn is_heartbeat(message: &Message) -> bool {
    matches!(message.body, MessageBody::Heartbeat { .. })
}

pub fn is_heartbeat_response(message: &Message) -> bool {
    matches!(message.body, MessageBody::HeartbeatResponse { .. })
}

pub fn is_vote_response(message: &Message) -> bool {
    matches!(message.body, MessageBody::RequestVoteResponse { pre_vote: false, .. })
}

// ----- the key-value workload ---------------------------------------------------

/// A put outside any session.
pub fn put(key: &str, value: &str) -> Vec<u8> {
    KvCommand { session: None, op: KvOp::Put { key: key.into(), value: value.into() } }.encode()
}

/// A compare-and-set in `client`'s session, as its write number `sequence`.
pub fn cas_in_session(client: u64, sequence: u64, key: &str, expected: Option<&str>, new: &str) -> Vec<u8> {
    KvCommand {
        session: Some(SessionRef { client, sequence }),
        op: KvOp::Cas { key: key.into(), expected: expected.map(Into::into), new: new.into() },
    }
    .encode()
}

/// A compare-and-set outside any session.
pub fn cas(key: &str, expected: Option<&str>, new: &str) -> Vec<u8> {
    KvCommand { session: None, op: KvOp::Cas { key: key.into(), expected: expected.map(Into::into), new: new.into() } }
        .encode()
}

pub fn get(key: &str) -> Vec<u8> {
    KvQuery::Get { key: key.into() }.encode()
}

/// The store's answer inside a `ClientResult::Ok`; panics on anything else.
pub fn ok_response(result: &ClientResult) -> KvResponse {
    match result {
        ClientResult::Ok(bytes) => KvResponse::decode(bytes).expect("the store answers in KvResponse"),
        other => panic!("expected Ok, got {other:?}"),
    }
}

/// A log for hand-built disks: one entry per term in `terms`, at indexes
/// `1..`. The entry at index `i` of term `t` puts `i{i}` = `t{t}`, so two
/// entries with the same index and term are identical, as Raft's log matching
/// property says they must be.
pub fn log_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(position, term)| {
            let index = position as u64 + 1;
            Entry {
                index: LogIndex(index),
                term: Term(*term),
                payload: Payload::Command(put(&format!("i{index}"), &format!("t{term}")).into()),
            }
        })
        .collect()
}

/// A hand-built hard state.
pub fn hard_state(term: u64, voted_for: Option<u64>, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        voted_for: voted_for.map(NodeId),
        commit: LogIndex(commit),
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
    }
}
