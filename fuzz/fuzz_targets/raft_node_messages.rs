//! One Raft node (member 1 of voters 1, 2, 3) driven by an arbitrary script of
//! inputs: messages from peers (well-formed or nonsense), time passing,
//! client proposals and reads, persistence acknowledgements and crashes.
//!
//! The node must never panic on peer input, and a handful of cheap invariants
//! must hold after every step. Terms and indexes in fuzzed messages are mostly
//! expressed relative to the node's own state, so that the fuzzer can reach
//! the interesting paths (winning an election, replicating, committing)
//! without guessing exact numbers; absolute values keep nonsense reachable.

#![no_main]

use arbitrary::Arbitrary;
use chorus_core::kv::{KvCommand, KvOp, KvQuery, KvStore, SessionRef};
use chorus_core::raft::{
    Action, AppendResponse, Config, ConflictHint, DiskId, DurableState, Entry, Event, HardState, Membership, Message,
    MessageBody, Payload, PersistId, PersistRequest, RaftNode, RequestTag, Role, Snapshot, SnapshotMeta,
    SnapshotPolicy,
};
use chorus_core::types::{LogIndex, NodeId, RequestId, Term, Time, MAX_PEER_TERM, MAX_TERM_JUMP};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

/// Most inputs taken from one fuzz case: keeps every run fast.
const MAX_STEPS: usize = 512;
/// Most entries in one fuzzed append (the core accepts far more; small logs
/// keep runs fast while still exercising truncation and conflicts).
const MAX_FUZZ_ENTRIES: usize = 16;

const SELF: NodeId = NodeId(1);

// No fuzz case can carry the node to MAX_PEER_TERM legitimately: each step
// raises the term by at most MAX_TERM_JUMP (plus one for an election).
const _: () = assert!((MAX_STEPS as u64) * (MAX_TERM_JUMP + 1) < MAX_PEER_TERM.0);

/// A term, relative to the node's current term, to the limits a node
/// enforces (so their edges are reachable), or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzTerm {
    Relative(i8),
    /// The node's term plus `MAX_TERM_JUMP`, plus this.
    PastJump(i8),
    /// `MAX_PEER_TERM` plus this.
    NearLimit(i8),
    Absolute(u64),
}

/// An index, relative to the node's last or commit index, or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzIndex {
    FromLast(i8),
    FromCommit(i8),
    Absolute(u64),
}

/// A request tag (forwarded proposals and read-index requests).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzTag {
    /// In the node's own current tag space (its disk, this life's
    /// incarnation) with a small sequence number, so answers can match a
    /// request the node sent.
    Own { seq: u8 },
    /// On the message's disk (from its disk byte), incarnation 0..=3: an
    /// earlier life of the node, another node's tag, or nonsense.
    Fuzzed { incarnation: u8, seq: u64 },
}

#[derive(Arbitrary, Debug)]
enum FuzzPayload {
    Noop,
    Command(Vec<u8>),
    Read(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct FuzzEntry {
    /// `None`: the next index after the previous entry (dense).
    index: Option<FuzzIndex>,
    /// `None`: the message term (a leader's new entries).
    term: Option<FuzzTerm>,
    payload: FuzzPayload,
}

#[derive(Arbitrary, Debug)]
enum FuzzBody {
    RequestVote {
        pre_vote: bool,
        last_log_index: FuzzIndex,
        last_log_term: FuzzTerm,
        transfer: bool,
    },
    RequestVoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    AppendEntries {
        prev_log_index: FuzzIndex,
        prev_log_term: FuzzTerm,
        entries: Vec<FuzzEntry>,
        leader_commit: FuzzIndex,
    },
    Accepted {
        match_index: FuzzIndex,
    },
    Rejected {
        rejected_prev_index: FuzzIndex,
        conflict_term: Option<FuzzTerm>,
        first_index: FuzzIndex,
    },
    Heartbeat {
        commit: FuzzIndex,
        read_context: u64,
    },
    HeartbeatResponse {
        read_context: u64,
    },
    TimeoutNow,
    InstallSnapshot {
        index: FuzzIndex,
        term: FuzzTerm,
        offset: u64,
        total_bytes: u64,
        chunk: Vec<u8>,
        voters: Vec<u8>,
    },
    SnapshotChunkResponse {
        index: FuzzIndex,
        received: u64,
    },
    ReadIndex {
        id: FuzzTag,
        allow_lease: bool,
    },
    ReadIndexResponse {
        id: FuzzTag,
        index: Option<FuzzIndex>,
    },
    Forward {
        id: FuzzTag,
        command: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct FuzzMessage {
    /// Mapped onto node ids 0..=4: peers 2 and 3 mostly, but also the node
    /// itself and non-members.
    from: u8,
    /// Usually the node itself; sometimes misaddressed.
    misaddressed: Option<u8>,
    term: FuzzTerm,
    /// 0 is the bootstrap disk; anything else a disk the configuration does
    /// not record.
    disk: u8,
    /// The sender's incarnation, mapped onto 0..=3.
    incarnation: u8,
    body: FuzzBody,
}

#[derive(Arbitrary, Debug)]
enum FuzzOp {
    Put { key: u8, value: Vec<u8> },
    Delete { key: u8 },
    Cas { key: u8, expected: Option<Vec<u8>>, new: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum Input {
    Message(FuzzMessage),
    /// Time passes by this many milliseconds, then the timer fires.
    Advance {
        millis: u16,
    },
    /// Jump to the node's own deadline and fire it.
    FireDeadline,
    Propose {
        session: Option<(u8, u8)>,
        op: FuzzOp,
    },
    ProposeRaw(Vec<u8>),
    Read {
        key: u8,
    },
    ReadRaw(Vec<u8>),
    /// Acknowledge the n-th outstanding write (and so every earlier one).
    Persisted {
        which: u8,
    },
    /// Acknowledge an id the node may never have issued.
    PersistedBogus(u64),
    /// Crash and restart from what was acknowledged as durable.
    Crash,
}

/// What the fuzz harness keeps besides the node: a model of the disk and the
/// bookkeeping the invariants need.
struct Harness {
    node: RaftNode<KvStore>,
    now: Time,
    /// Writes issued but not yet acknowledged, in order.
    outstanding: Vec<PersistRequest>,
    /// Highest persist id seen in this incarnation.
    last_persist_id: u64,
    disk_hard_state: HardState,
    disk_snapshot: Option<Snapshot>,
    disk_entries: Vec<Entry>,
    next_request: u64,
    open_requests: BTreeSet<u64>,
    last_term: Term,
    last_commit: LogIndex,
    /// This life's incarnation: 1 after `RaftNode::new`, one more than the
    /// disk's after `RaftNode::restart`.
    incarnation: u64,
    /// Was a write of this life acknowledged? (Its first write records the
    /// incarnation.)
    life_acknowledged: bool,
}

fn config() -> Config {
    let mut config = Config::new(SELF, vec![NodeId(1), NodeId(2), NodeId(3)]);
    config.rng_seed = 7;
    // Snapshots and compaction happen often, as do chunked installs.
    config.snapshot_policy = SnapshotPolicy { entries: 4, bytes: 0 };
    config.max_retained_entries = 2;
    config.snapshot_chunk_bytes = 8;
    config
}

impl Harness {
    fn new() -> Harness {
        let node = RaftNode::new(config(), KvStore::default(), Time::ZERO).expect("the fuzz configuration is valid");
        let mut harness = Harness {
            node,
            now: Time::ZERO,
            outstanding: Vec::new(),
            last_persist_id: 0,
            disk_hard_state: HardState::default(),
            disk_snapshot: None,
            disk_entries: Vec::new(),
            next_request: 1,
            open_requests: BTreeSet::new(),
            last_term: Term::ZERO,
            last_commit: LogIndex::ZERO,
            incarnation: 1,
            life_acknowledged: false,
        };
        // `RaftNode::new` asks at once for its bootstrap write.
        harness.drain();
        assert!(!harness.outstanding.is_empty(), "a new node writes its incarnation at once");
        harness.check_invariants();
        harness
    }

    fn tag(&self, tag: FuzzTag, disk: DiskId) -> RequestTag {
        match tag {
            FuzzTag::Own { seq } => {
                RequestTag { disk: self.node.status().disk, incarnation: self.incarnation, seq: u64::from(seq % 16) }
            }
            FuzzTag::Fuzzed { incarnation, seq } => RequestTag { disk, incarnation: u64::from(incarnation % 4), seq },
        }
    }

    fn term(&self, term: FuzzTerm) -> Term {
        match term {
            FuzzTerm::Relative(delta) => Term(self.node.term().0.saturating_add_signed(i64::from(delta))),
            FuzzTerm::PastJump(delta) => {
                Term(self.node.term().0.saturating_add(MAX_TERM_JUMP).saturating_add_signed(i64::from(delta)))
            }
            FuzzTerm::NearLimit(delta) => Term(MAX_PEER_TERM.0.saturating_add_signed(i64::from(delta))),
            FuzzTerm::Absolute(term) => Term(term),
        }
    }

    fn index(&self, index: FuzzIndex) -> LogIndex {
        match index {
            FuzzIndex::FromLast(delta) => LogIndex(self.node.last_index().0.saturating_add_signed(i64::from(delta))),
            FuzzIndex::FromCommit(delta) => {
                LogIndex(self.node.commit_index().0.saturating_add_signed(i64::from(delta)))
            }
            FuzzIndex::Absolute(index) => LogIndex(index),
        }
    }

    fn message(&self, fuzz: FuzzMessage) -> Message {
        let from = NodeId(u64::from(match fuzz.from % 8 {
            0..=2 => 2,
            3..=5 => 3,
            other => other - 6 + if fuzz.from >= 128 { 4 } else { 0 }, // 0, 1, 4, 5
        }));
        let to = fuzz.misaddressed.map_or(SELF, |to| NodeId(u64::from(to % 5)));
        let term = self.term(fuzz.term);
        let disk = DiskId(u64::from(fuzz.disk % 3));
        let body = match fuzz.body {
            FuzzBody::RequestVote { pre_vote, last_log_index, last_log_term, transfer } => MessageBody::RequestVote {
                pre_vote,
                last_log_index: self.index(last_log_index),
                last_log_term: self.term(last_log_term),
                transfer,
            },
            FuzzBody::RequestVoteResponse { pre_vote, granted } => {
                MessageBody::RequestVoteResponse { pre_vote, granted }
            }
            FuzzBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit } => {
                let prev_log_index = self.index(prev_log_index);
                let prev_log_term = self.term(prev_log_term);
                let mut next_index = LogIndex(prev_log_index.0.saturating_add(1));
                let entries = entries
                    .into_iter()
                    .take(MAX_FUZZ_ENTRIES)
                    .map(|entry| {
                        let index = entry.index.map_or(next_index, |index| self.index(index));
                        let term = entry.term.map_or(term, |term| self.term(term));
                        next_index = LogIndex(index.0.saturating_add(1));
                        Entry {
                            index,
                            term,
                            payload: match entry.payload {
                                FuzzPayload::Noop => Payload::Noop,
                                FuzzPayload::Command(bytes) => Payload::Command(bytes.into()),
                                FuzzPayload::Read(bytes) => Payload::Read(bytes.into()),
                            },
                        }
                    })
                    .collect();
                MessageBody::AppendEntries {
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit: self.index(leader_commit),
                }
            }
            FuzzBody::Accepted { match_index } => {
                MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: self.index(match_index) })
            }
            FuzzBody::Rejected { rejected_prev_index, conflict_term, first_index } => {
                MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                    rejected_prev_index: self.index(rejected_prev_index),
                    hint: ConflictHint {
                        conflict_term: conflict_term.map(|term| self.term(term)),
                        first_index: self.index(first_index),
                    },
                })
            }
            FuzzBody::Heartbeat { commit, read_context } => {
                MessageBody::Heartbeat { commit: self.index(commit), read_context }
            }
            FuzzBody::HeartbeatResponse { read_context } => MessageBody::HeartbeatResponse { read_context },
            FuzzBody::TimeoutNow => MessageBody::TimeoutNow,
            FuzzBody::InstallSnapshot { index, term: snapshot_term, offset, total_bytes, chunk, voters } => {
                let voters: Vec<NodeId> = voters.iter().take(8).map(|voter| NodeId(u64::from(voter % 6))).collect();
                MessageBody::InstallSnapshot {
                    meta: Box::new(SnapshotMeta {
                        index: self.index(index),
                        term: self.term(snapshot_term),
                        membership: Membership::bootstrap(&voters),
                    }),
                    offset,
                    total_bytes,
                    chunk,
                }
            }
            FuzzBody::SnapshotChunkResponse { index, received } => {
                MessageBody::SnapshotChunkResponse { index: self.index(index), received }
            }
            FuzzBody::ReadIndex { id, allow_lease } => MessageBody::ReadIndex { id: self.tag(id, disk), allow_lease },
            FuzzBody::ReadIndexResponse { id, index } => {
                MessageBody::ReadIndexResponse { id: self.tag(id, disk), index: index.map(|index| self.index(index)) }
            }
            FuzzBody::Forward { id, command } => MessageBody::Forward { id: self.tag(id, disk), command: command.into() },
        };
        Message { from, to, term, disk, incarnation: u64::from(fuzz.incarnation % 4), body }
    }

    fn request_id(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.open_requests.insert(id);
        RequestId(id)
    }

    fn step(&mut self, input: Input) {
        match input {
            Input::Message(fuzz) => {
                let message = self.message(fuzz);
                let before = self.node.term();
                let timeout_now = message.body == MessageBody::TimeoutNow;
                // Rejected input is fine; panics and broken invariants are not.
                let _ = self.node.handle_message(self.now, message);
                // One peer message never raises the term by more than
                // MAX_TERM_JUMP (an absurd term cannot carry the node to the
                // limit in one step), plus one when a TimeoutNow starts an
                // election in the same step (as `MAX_TERM_JUMP` documents).
                let risen = self.node.term().0 - before.0;
                let election = u64::from(timeout_now && self.node.role() == Role::Candidate);
                assert!(
                    risen <= MAX_TERM_JUMP + election,
                    "one message raised the term by {risen} (from {before} to {}), more than MAX_TERM_JUMP",
                    self.node.term()
                );
            }
            Input::Advance { millis } => {
                self.now = self.now.add_millis(u64::from(millis));
                self.node.handle_timeout(self.now);
            }
            Input::FireDeadline => {
                self.now = self.now.max(self.node.poll_timeout());
                self.node.handle_timeout(self.now);
            }
            Input::Propose { session, op } => {
                let key = |key: u8| vec![key % 4];
                let command = KvCommand {
                    session: session.map(|(client, sequence)| SessionRef {
                        client: u64::from(client % 4),
                        sequence: u64::from(sequence),
                    }),
                    op: match op {
                        FuzzOp::Put { key: k, value } => KvOp::Put { key: key(k), value },
                        FuzzOp::Delete { key: k } => KvOp::Delete { key: key(k) },
                        FuzzOp::Cas { key: k, expected, new } => KvOp::Cas { key: key(k), expected, new },
                    },
                };
                let request = self.request_id();
                self.node.propose(self.now, request, command.encode());
            }
            Input::ProposeRaw(bytes) => {
                let request = self.request_id();
                self.node.propose(self.now, request, bytes);
            }
            Input::Read { key } => {
                let query = KvQuery::Get { key: vec![key % 4] };
                let request = self.request_id();
                self.node.read(self.now, request, query.encode());
            }
            Input::ReadRaw(bytes) => {
                let request = self.request_id();
                self.node.read(self.now, request, bytes);
            }
            Input::Persisted { which } => {
                if self.outstanding.is_empty() {
                    return;
                }
                let position = usize::from(which) % self.outstanding.len();
                let id = self.outstanding[position].id;
                // The disk holds every write up to and including this one.
                for write in self.outstanding.drain(..=position) {
                    apply_write(&mut self.disk_hard_state, &mut self.disk_snapshot, &mut self.disk_entries, &write);
                }
                self.life_acknowledged = true;
                self.node.handle_persisted(self.now, id);
            }
            Input::PersistedBogus(id) => {
                // Only ids the node never issued, or already-acknowledged ones:
                // acknowledging an outstanding write without applying it to
                // the disk model would make the model lie.
                let outstanding = self.outstanding.first().map(|write| write.id.0);
                if outstanding.is_some_and(|first| id >= first && id <= self.last_persist_id) {
                    return;
                }
                self.node.handle_persisted(self.now, PersistId(id));
            }
            Input::Crash => {
                let durable = self.node.durable_hard_state();
                // Until this life's first write is acknowledged, the disk
                // still holds the previous life's hard state (or nothing).
                let expected = self.disk_hard_state;
                assert_eq!(durable, expected, "the node's durable hard state matches what was acknowledged");
                let stored = DurableState {
                    hard_state: self.disk_hard_state,
                    snapshot: self.disk_snapshot.clone(),
                    entries: self.disk_entries.clone(),
                };
                if stored.is_empty() {
                    // The bootstrap write never became durable: the node
                    // never started, as far as its disk knows. Bootstrap
                    // again (as the simulator does); restart would refuse.
                    self.node =
                        RaftNode::new(config(), KvStore::default(), self.now).expect("the fuzz configuration is valid");
                    self.incarnation = 1;
                } else {
                    self.incarnation = self.disk_hard_state.incarnation + 1;
                    self.node = RaftNode::restart(config(), stored, KvStore::default(), self.now)
                        .expect("a node restarts from what it made durable");
                }
                self.life_acknowledged = false;
                self.outstanding.clear();
                self.last_persist_id = 0;
                self.open_requests.clear();
                self.last_term = self.node.term();
                self.last_commit = self.node.commit_index();
                assert_eq!(self.node.role(), Role::Follower);
            }
        }
        self.drain();
        self.check_invariants();
    }

    fn drain(&mut self) {
        let mut actions = 0usize;
        while let Some(action) = self.node.poll_action() {
            actions += 1;
            assert!(actions < 1_000_000, "one input produced unbounded actions");
            match action {
                Action::Send(message) => {
                    assert_eq!(message.from, SELF, "messages go out from the node itself");
                    assert_eq!(message.disk, self.node.status().disk, "a message names the node's own disk");
                    assert_eq!(message.incarnation, self.incarnation, "a message names this life: {message:?}");
                    // Only a leader's appends, heartbeats and TimeoutNow may
                    // go out before a write: the node's first write records
                    // its incarnation, and it says nothing else before that.
                    let unconditional = matches!(
                        message.body,
                        MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } | MessageBody::TimeoutNow
                    );
                    assert!(
                        unconditional || self.life_acknowledged,
                        "a message before this life's incarnation is durable: {message:?}"
                    );
                    // Replies may go to any node that wrote to us (a node
                    // joining the cluster is in no configuration yet), but
                    // never back to ourselves.
                    assert_ne!(message.to, SELF, "a message to itself: {message:?}");
                }
                Action::Persist(write) => {
                    assert_eq!(write.id.0, self.last_persist_id + 1, "persist ids grow by one");
                    assert_eq!(write.hard_state.incarnation, self.incarnation, "every write records this life");
                    self.last_persist_id = write.id.0;
                    self.outstanding.push(write);
                }
                Action::Respond { request, .. } => {
                    assert!(
                        self.open_requests.remove(&request.0),
                        "request {request:?} answered twice, or never asked"
                    );
                }
                Action::Event(Event::FollowerLostEntries { follower, acknowledged, holds }) => {
                    assert_eq!(self.node.role(), Role::Leader, "only a leader tracks what followers hold");
                    assert!(follower == NodeId(2) || follower == NodeId(3), "lost entries of {follower}");
                    assert!(
                        holds < acknowledged,
                        "{follower} lost nothing: holds {holds}, acknowledged {acknowledged}"
                    );
                }
                Action::Event(_) => {}
            }
        }
    }

    fn check_invariants(&mut self) {
        let node = &self.node;
        assert!(node.commit_index() <= node.last_index(), "commit past the log");
        assert!(node.applied_index() <= node.commit_index(), "applied past commit");
        assert!(node.status().persisted_index <= node.last_index(), "persisted past the log");
        assert!(node.term() >= self.last_term, "term went backwards");
        // Sound while MAX_STEPS * MAX_TERM_JUMP < MAX_PEER_TERM: no node can
        // legitimately reach the limit in one fuzz case, so it is reached
        // only by adopting a term it should have refused.
        assert!(node.term() <= MAX_PEER_TERM, "term {} leaves no room for elections", node.term());
        assert!(node.commit_index() >= self.last_commit, "commit index went backwards");
        assert!(node.durable_hard_state().term <= node.term(), "durable term ahead of the term");
        match node.role() {
            Role::Leader => assert_eq!(node.leader(), Some(SELF), "a leader follows itself"),
            Role::PreCandidate | Role::Candidate => {
                assert_eq!(node.leader(), None, "a candidate knows no leader")
            }
            Role::Follower => assert_ne!(node.leader(), Some(SELF), "a follower is not leader"),
        }
        if node.role() == Role::Candidate || node.role() == Role::Leader {
            assert_eq!(node.status().voted_for, Some(SELF), "a candidate votes for itself");
        }
        // Every stored entry is dense and its term is not after ours.
        if let Some(last) = node.entry(node.last_index()) {
            assert_eq!(last.index, node.last_index());
            assert!(last.term <= node.term(), "log ahead of the term");
        }
        self.last_term = node.term();
        self.last_commit = node.commit_index();
    }
}

/// What a driver's disk does with one write.
fn apply_write(
    hard_state: &mut HardState,
    snapshot: &mut Option<Snapshot>,
    entries: &mut Vec<Entry>,
    write: &PersistRequest,
) {
    if let Some(new) = &write.snapshot {
        *snapshot = Some(new.clone());
    }
    if let Some(upto) = write.discard_upto {
        entries.retain(|entry| entry.index > upto);
    }
    let first = snapshot.as_ref().map_or(LogIndex(1), |snapshot| snapshot.meta.index.next());
    if let Some(from) = write.truncate_from {
        assert!(from.0 >= 1, "truncation from index 0");
        let next = entries.last().map_or(first, |entry| entry.index.next());
        assert!(from <= next, "truncation past the end of the stored log");
        entries.retain(|entry| entry.index < from);
    }
    for entry in &write.entries {
        let next = entries.last().map_or(first, |entry| entry.index.next());
        assert_eq!(entry.index, next, "persisted entries extend the stored log densely");
        entries.push(entry.clone());
    }
    *hard_state = write.hard_state;
}

fuzz_target!(|inputs: Vec<Input>| {
    let mut harness = Harness::new();
    for input in inputs.into_iter().take(MAX_STEPS) {
        harness.step(input);
    }
});
