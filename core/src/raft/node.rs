//! The Raft node: one sans-IO state machine per member.

use super::bug::Bug;
use super::config::{Config, ConfigError, ReadMode};
use super::log::RaftLog;
use super::membership::{ChangeError, DiskId, Membership, MembershipChange, VoteTally};
use super::message::{
    AppendResponse, ConflictHint, Entry, ForwardOutcome, Message, MessageBody, Payload, RequestTag, Snapshot,
    SnapshotMeta,
};
use super::persist::{Durability, DurableState, HardState, PersistId, PersistRequest, RestartError};
use super::progress::{Progress, ReplicationState};
use super::read::{LocalRead, PendingRead, ReadConsistency, ReadOrigin, ReadQueue};
use super::transfer::{Transfer, TransferError};
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, NodeId, RequestId, Term, Time, MAX_LOG_INDEX, MAX_PEER_TERM, MAX_TERM_JUMP};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// Most entries accepted in one append from a peer, whatever our own config
/// says: a bound on the work one message can cause.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 65_536;

/// A forwarded proposal not answered by the leader within this many election
/// timeouts (or, once placed, not applied here within them) is answered
/// `Dropped(LeadershipLost)`: its outcome is unknown.
pub const FORWARD_TIMEOUT_ELECTIONS: u64 = 10;

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Follower,
    /// Asking for pre-votes; the term has not been incremented.
    PreCandidate,
    Candidate,
    Leader,
}

/// What a client is told about its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResult {
    /// Committed and applied; the state machine's answer.
    Ok(Vec<u8>),
    /// This node is not the leader; `leader_hint` is the leader it knows of.
    /// The request was not appended anywhere. A leader that is transferring
    /// leadership also refuses proposals this way, with the transfer target
    /// (the expected next leader) as the hint.
    NotLeader { leader_hint: NodeId },
    /// This node knows of no leader (an election is under way). The request
    /// was not appended anywhere.
    NoLeader,
    /// The node gave up on the request. See [`DropReason`] for whether it may
    /// still take effect.
    Dropped(DropReason),
}

/// Why a request was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Too many requests awaiting commit (`max_pending_requests`), or too many
    /// reads held (`max_pending_reads`); not appended.
    Overloaded,
    /// Larger than `max_command_bytes`; not appended.
    TooLarge,
    /// The node stopped being leader after appending the request. It may still
    /// commit under the next leader: retry in the same client session to learn
    /// the outcome. For a read (which is never appended) it only means "ask
    /// again".
    LeadershipLost,
}

impl DropReason {
    /// Could the request still take effect?
    pub fn outcome_unknown(self) -> bool {
        matches!(self, DropReason::LeadershipLost)
    }
}

/// Something the node tells its driver, for traces and checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node's role or term changed.
    RoleChanged { role: Role, term: Term },
    /// A peer broke the protocol (or the cluster's safety is already broken).
    /// The offending input was ignored; nothing of the node's state changed.
    Violation { description: String },
    /// This leader started handing leadership to `target`; it refuses
    /// proposals until the transfer ends.
    TransferStarted { target: NodeId, term: Term },
    /// The target did not take over within an election timeout; this leader
    /// takes proposals again.
    TransferAbandoned { target: NodeId, term: Term },
    /// The configuration in force on this node changed: an entry at `index`
    /// was appended (or a truncation or snapshot brought back an older one).
    MembershipChanged { index: LogIndex, membership: Membership },
    /// This node installed a snapshot received from the leader.
    SnapshotInstalled { index: LogIndex, term: Term },
    /// This leader learned that `follower`, after restarting on the same disk,
    /// no longer holds entries it had acknowledged (up to `acknowledged`; its
    /// log now ends at or diverges before `holds`): its disk lost writes it
    /// had reported durable, or was restored from an older copy. The leader
    /// stops counting the lost acknowledgements and repairs the follower
    /// from where its log really ends. An entry committed with that
    /// acknowledgement may already be unsafe (see the crate docs on lost
    /// disks): investigate the follower's storage.
    FollowerLostEntries { follower: NodeId, acknowledged: LogIndex, holds: LogIndex },
}

/// One thing the driver must do. See [`RaftNode`] for the drain order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer. Loss, duplication and reordering are fine.
    Send(Message),
    /// Make a write durable, then call [`RaftNode::handle_persisted`].
    Persist(PersistRequest),
    /// Answer a client request.
    Respond { request: RequestId, result: ClientResult },
    /// Informational.
    Event(Event),
}

/// A snapshot being received from the leader, chunk by chunk.
struct IncomingSnapshot {
    meta: SnapshotMeta,
    total_bytes: u64,
    /// The leader sending it, and its term.
    source: (NodeId, Term),
    data: Vec<u8>,
}

/// A proposal this follower forwarded to the leader.
struct Forwarded {
    request: RequestId,
    /// Where the leader appended it, once it said so.
    placed: Option<(LogIndex, Term)>,
    /// Give up (outcome unknown) if the leader has not placed it by then.
    deadline: Time,
}

/// A Raft node as a pure state machine.
///
/// Inputs: [`handle_message`](Self::handle_message),
/// [`handle_timeout`](Self::handle_timeout), [`propose`](Self::propose),
/// [`read`](Self::read), [`transfer_leadership`](Self::transfer_leadership),
/// [`handle_persisted`](Self::handle_persisted). Each takes the driver's `now`.
///
/// Outputs: after any input, drain [`poll_action`](Self::poll_action) until it
/// returns `None`, performing actions in that order, then arm a timer for
/// [`poll_timeout`](Self::poll_timeout). `Persist` actions must be made
/// durable in order; `Send` actions may go out at once, because the node itself
/// withholds every message that depends on state not yet durable (a follower's
/// votes and acknowledgements wait for the write they depend on; a leader's
/// appends go out in parallel with its own write, and the leader counts itself
/// toward a quorum only once that write is acknowledged). Calling
/// `handle_timeout` early is a harmless no-op.
pub struct RaftNode<S> {
    config: Config,
    /// This node's disk.
    disk: DiskId,
    rng: ChaCha8Rng,
    state_machine: S,
    /// The latest input's time.
    now: Time,

    /// The configuration in force: the latest in the log, else `base_membership`.
    membership: Membership,
    /// The configuration in force at the log's offset (from the snapshot, or
    /// the bootstrap configuration).
    base_membership: Membership,
    /// Configuration entries held in the log, in index order.
    config_entries: Vec<(LogIndex, Membership)>,
    /// The latest snapshot (durable, or part of a pending write).
    snapshot: Option<Snapshot>,
    /// A snapshot being received from the leader.
    incoming_snapshot: Option<IncomingSnapshot>,
    /// Payload bytes applied since the latest snapshot.
    bytes_since_snapshot: u64,
    /// Proposals forwarded to the leader, by forward id.
    forwarded: BTreeMap<u64, Forwarded>,
    /// Reads this node answers from its own state (session, stale, and
    /// follower reads), by id.
    local_reads: BTreeMap<u64, LocalRead>,
    /// Proposals were appended since the last replication and write.
    batch_open: bool,
    /// Forwarded proposals the leader placed, by log index.
    forward_placed: BTreeMap<LogIndex, u64>,
    /// The next `seq` of this life's [`RequestTag`]s.
    next_request_seq: u64,
    /// This life of this disk (see [`HardState::incarnation`]).
    incarnation: u64,

    term: Term,
    voted_for: Option<NodeId>,
    log: RaftLog,
    commit: LogIndex,
    applied: LogIndex,

    role: Role,
    leader: Option<NodeId>,
    /// Answers to this node's campaign, by the voter and the disk it answered from.
    votes: BTreeMap<(NodeId, DiskId), bool>,
    progress: BTreeMap<NodeId, Progress>,
    /// Client requests appended by this leader, by log index.
    pending_requests: BTreeMap<LogIndex, (RequestId, Term)>,
    /// Reads waiting for leadership confirmation and apply (leader only).
    reads: ReadQueue,
    /// Number of the last heartbeat round sent. Grows across terms, so an
    /// answer can never be mistaken for one to a later round.
    read_context: u64,
    /// A leadership transfer in progress (leader only).
    transfer: Option<Transfer>,
    /// No lease reads before this time: a `TimeoutNow` we sent lets its
    /// target win votes despite the followers' leases.
    lease_suspended_until: Time,

    election_deadline: Time,
    heartbeat_deadline: Time,
    check_quorum_deadline: Time,
    last_leader_contact: Option<Time>,

    /// Writes issued and acknowledged, and the messages that wait for them.
    durability: Durability,
    actions: VecDeque<Action>,
}

impl<S: StateMachine> RaftNode<S> {
    /// A member of a new cluster, bootstrapped with `config.voters` as the
    /// first configuration, on an empty disk. Every initial member must be
    /// created this way exactly once, with the same voters; never use it for
    /// a node that lost its disk (see [`RaftNode::join`]).
    pub fn new(config: Config, state_machine: S, now: Time) -> Result<Self, ConfigError> {
        config.validate()?;
        let membership = Membership::bootstrap(&config.voters);
        let hard_state = HardState { incarnation: 1, ..HardState::default() };
        let mut node = Self::build(config, state_machine, hard_state, RaftLog::default(), membership, None, now);
        // The disk must record that a node started on it before the node
        // says anything: a restart must never mistake it for an empty disk.
        node.start_life(HardState::default());
        Ok(node)
    }

    /// A node with an empty disk joining an existing cluster: a new member
    /// to be added as a learner, or a former member whose disk was lost or
    /// replaced by an older copy. `disk` must be a fresh id never used by any
    /// disk of this node (a random 64-bit value will do). The node learns the
    /// configuration from the leader; it never votes or counts toward a
    /// quorum until a configuration records it as a voter on this disk
    /// ([`MembershipChange::Promote`] or [`MembershipChange::RenewDisk`]).
    /// `config.voters` is ignored.
    pub fn join(config: Config, disk: DiskId, state_machine: S, now: Time) -> Result<Self, ConfigError> {
        config.validate_limits()?;
        let hard_state = HardState { disk, incarnation: 1, ..HardState::default() };
        let mut node =
            Self::build(config, state_machine, hard_state, RaftLog::default(), Membership::default(), None, now);
        // The disk id must be durable before the node says anything.
        node.start_life(HardState::default());
        Ok(node)
    }

    /// A member restarting from what its disk holds. The snapshot is restored
    /// and committed entries after it are replayed into the (fresh) state
    /// machine. The node's first write records its new incarnation; it says
    /// nothing before that write is acknowledged.
    ///
    /// A disk that holds nothing is refused ([`RestartError::EmptyDisk`]):
    /// coming back as a voter with an empty log would let the node vote away
    /// entries it had acknowledged.
    pub fn restart(
        config: Config,
        stored: DurableState,
        mut state_machine: S,
        now: Time,
    ) -> Result<Self, RestartError> {
        config.validate_limits()?;
        if stored.is_empty() {
            return Err(RestartError::EmptyDisk);
        }
        stored.check()?;
        let DurableState { mut hard_state, snapshot, entries } = stored;
        let stored_hard_state = hard_state;
        hard_state.incarnation =
            hard_state.incarnation.checked_add(1).ok_or(RestartError::IncarnationExhausted(hard_state.incarnation))?;
        let (base_membership, log) = match &snapshot {
            Some(snapshot) => {
                let meta = &snapshot.meta;
                state_machine.restore(&snapshot.data).map_err(|error| RestartError::SnapshotRejected(error.0))?;
                // Entries kept before the snapshot were only for slow
                // followers; after a restart they are served by snapshot.
                let kept: Vec<Entry> = entries.into_iter().filter(|entry| entry.index > meta.index).collect();
                (meta.membership.clone(), RaftLog::restored(meta.index, Some(meta.term), kept))
            }
            None if hard_state.disk == DiskId::BOOTSTRAP => {
                (Membership::bootstrap(&config.voters), RaftLog::restored(LogIndex::ZERO, None, entries))
            }
            None => (Membership::default(), RaftLog::restored(LogIndex::ZERO, None, entries)),
        };
        let mut node = Self::build(config, state_machine, hard_state, log, base_membership, snapshot, now);
        if let Some(snapshot) = &node.snapshot {
            node.applied = snapshot.meta.index;
            node.commit = node.commit.max(snapshot.meta.index);
        }
        node.apply_committed();
        // Record the new incarnation before saying anything.
        node.start_life(stored_hard_state);
        Ok(node)
    }

    /// The first write of this life: the hard state (with the disk's identity
    /// and this incarnation), over what the disk holds (`durable`).
    fn start_life(&mut self, durable: HardState) {
        self.durability = Durability::new(durable, self.config.max_held_messages);
        self.durability.hard_state_changed();
        self.flush();
    }

    fn build(
        config: Config,
        state_machine: S,
        hard_state: HardState,
        log: RaftLog,
        base_membership: Membership,
        snapshot: Option<Snapshot>,
        now: Time,
    ) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.rng_seed);
        let max_held = config.max_held_messages;
        let mut node = RaftNode {
            config,
            disk: hard_state.disk,
            rng,
            state_machine,
            now,
            membership: base_membership.clone(),
            base_membership,
            config_entries: Vec::new(),
            snapshot,
            incoming_snapshot: None,
            bytes_since_snapshot: 0,
            forwarded: BTreeMap::new(),
            forward_placed: BTreeMap::new(),
            batch_open: false,
            local_reads: BTreeMap::new(),
            next_request_seq: 1,
            incarnation: hard_state.incarnation,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            log,
            commit: hard_state.commit,
            applied: LogIndex::ZERO,
            role: Role::Follower,
            leader: None,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            pending_requests: BTreeMap::new(),
            reads: ReadQueue::default(),
            read_context: 0,
            transfer: None,
            lease_suspended_until: now,
            election_deadline: now,
            heartbeat_deadline: now,
            check_quorum_deadline: now,
            last_leader_contact: None,
            durability: Durability::new(hard_state, max_held),
            actions: VecDeque::new(),
        };
        node.config_entries = node
            .log
            .entries()
            .iter()
            .filter_map(|entry| match &entry.payload {
                Payload::Config(membership) => Some((entry.index, membership.clone())),
                _ => None,
            })
            .collect();
        if let Some((_, latest)) = node.config_entries.last() {
            node.membership = latest.clone();
        }
        node.reset_election_deadline(now);
        node
    }

    // ----- accessors ------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn role(&self) -> Role {
        self.role
    }
    /// The leader this node currently follows (itself when leader).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    /// Highest log index acknowledged as durable by the driver.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted()
    }
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }
    /// The term of the entry at `index`, if the log still knows it (entries
    /// compacted into the snapshot are forgotten, except the last one).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }
    /// The term of the last log entry (or of the snapshot's end).
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }
    /// The hard state as of the last acknowledged write.
    pub fn durable_hard_state(&self) -> HardState {
        self.durability.durable_hard_state()
    }
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }
    /// Messages held back until a write is acknowledged.
    pub fn held_message_count(&self) -> usize {
        self.durability.held_count()
    }
    /// Reads this leader holds (waiting for confirmation or apply).
    pub fn pending_read_count(&self) -> usize {
        self.reads.len()
    }
    /// The target of the leadership transfer in progress, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|transfer| transfer.target)
    }
    /// This node's disk.
    pub fn disk(&self) -> DiskId {
        self.disk
    }
    /// The configuration in force on this node (the latest it has appended).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// The latest configuration known to be committed on this node.
    pub fn committed_membership(&self) -> &Membership {
        self.membership_at(self.commit)
    }
    /// Does this node vote (is it a voter on its current disk)?
    pub fn is_voter(&self) -> bool {
        self.self_votes()
    }
    /// The latest snapshot this node holds.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    /// The first log index still held (earlier entries were compacted).
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }
    /// The leader's view of `peer`'s match index (leader only).
    pub fn match_index(&self, peer: NodeId) -> Option<LogIndex> {
        self.progress.get(&peer).map(|progress| progress.match_index)
    }
    /// The disk `peer` last answered this leader from (leader only).
    pub fn peer_disk(&self, peer: NodeId) -> Option<DiskId> {
        self.progress.get(&peer).and_then(|progress| progress.disk)
    }

    // ----- outputs --------------------------------------------------------

    /// The next action to perform, in order.
    ///
    /// Proposals are batched: those made before the driver polls are
    /// replicated in one append per follower and made durable in one write.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.batch_open {
            self.finish_input();
        }
        self.actions.pop_front()
    }

    /// When the node next needs [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Time {
        let forwarded = self
            .forwarded
            .values()
            .map(|forwarded| forwarded.deadline)
            .chain(self.local_reads.values().map(|read| read.deadline))
            .min();
        let role_deadline = match self.role {
            Role::Leader => {
                let mut deadline = self.heartbeat_deadline;
                if self.config.check_quorum {
                    deadline = deadline.min(self.check_quorum_deadline);
                }
                if let Some(transfer) = self.transfer {
                    deadline = deadline.min(transfer.deadline);
                }
                deadline
            }
            _ => self.election_deadline,
        };
        forwarded.map_or(role_deadline, |deadline| deadline.min(role_deadline))
    }

    // ----- inputs ---------------------------------------------------------

    /// Handles a message from a peer. Malformed or misaddressed input is
    /// ignored (with an [`Event::Violation`] when it breaks the protocol).
    pub fn handle_message(&mut self, now: Time, message: Message) {
        self.now = now;
        self.step(now, message);
        self.finish_input();
    }

    /// Lets time pass: fires any expired election, heartbeat, check-quorum or
    /// leadership-transfer deadline.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        self.expire_forwarded(now);
        match self.role {
            Role::Leader => {
                if let Some(transfer) = self.transfer.filter(|transfer| now >= transfer.deadline) {
                    // The target did not take over within an election
                    // timeout: take writes again.
                    self.transfer = None;
                    self.event(Event::TransferAbandoned { target: transfer.target, term: self.term });
                }
                if now >= self.heartbeat_deadline {
                    self.broadcast_heartbeat(now);
                }
                if self.config.check_quorum && now >= self.check_quorum_deadline {
                    self.check_quorum(now);
                }
            }
            _ => {
                if now >= self.election_deadline && !self.may_campaign() {
                    // Learners, members whose removal is known committed and
                    // nodes that lost their disk never campaign.
                    self.reset_election_deadline(now);
                } else if now >= self.election_deadline {
                    if self.config.pre_vote {
                        self.become_pre_candidate(now);
                    } else {
                        self.become_candidate(now, false);
                    }
                }
            }
        }
        self.finish_input();
    }

    /// Proposes a state-machine command. The answer comes as an
    /// [`Action::Respond`] for `request`, once the command is applied (or at
    /// once if this node cannot take it).
    ///
    /// On a follower that knows the leader, with
    /// [`Config::forward_proposals`], the command is forwarded to the leader
    /// and answered here once this node applies it.
    pub fn propose(&mut self, now: Time, request: RequestId, command: Vec<u8>) {
        self.now = now;
        if self.role != Role::Leader && self.config.forward_proposals && self.leader.is_some() {
            self.forward_proposal(now, request, command);
        } else {
            self.accept_request(now, request, Payload::Command(command));
        }
        if !self.batch_open {
            self.finish_input();
        } else if self.config.bug(Bug::AckBeforeCommit) {
            self.apply_committed();
        }
    }

    /// Asks the leader to change the configuration. The change is appended
    /// at once (and takes effect on each node when appended); `request` is
    /// answered `Ok(empty)` once it is applied. Changes of the voter set go
    /// through a joint configuration that the leader leaves by itself once it
    /// commits; only one change may be in flight, so the next is refused with
    /// [`ChangeError::ChangeInFlight`] until the previous one (including the
    /// leave step) is committed. A leader that removes itself steps down once
    /// the configuration without it is committed.
    pub fn change_membership(
        &mut self,
        now: Time,
        request: RequestId,
        change: MembershipChange,
    ) -> Result<(), ChangeError> {
        self.now = now;
        let result = self.start_membership_change(request, change);
        self.finish_input();
        result
    }

    /// Asks a linearizable read-only query, without writing to the log (Raft
    /// thesis §6.4). The leader takes its commit index as the read index
    /// (once it has committed an entry of its own term), confirms it is still
    /// the leader (a heartbeat round sent after the read arrived and answered
    /// by a quorum, or with [`ReadMode::Lease`] a lease still running), and
    /// answers from the state machine once the read index is applied. Reads
    /// that arrive together share one heartbeat round. A leader that steps
    /// down answers held reads `Dropped(LeadershipLost)`: they had no effect,
    /// so the client simply asks again.
    pub fn read(&mut self, now: Time, request: RequestId, query: Vec<u8>) {
        let consistency = match self.config.read_mode {
            ReadMode::ReadIndex => ReadConsistency::Linearizable,
            ReadMode::Lease => ReadConsistency::Lease,
        };
        self.read_with(now, request, query, consistency);
    }

    /// Asks a read-only query at the chosen [`ReadConsistency`]. A follower
    /// serves linearizable and lease reads by asking the leader for a read
    /// index (with [`Config::follower_reads`]; otherwise it refuses them as
    /// `NotLeader`), serves session reads once it has applied the session's
    /// index, and stale reads at once. A read held longer than
    /// [`FORWARD_TIMEOUT_ELECTIONS`] election timeouts is answered
    /// `Dropped(LeadershipLost)`: it had no effect; ask again.
    ///
    /// Session tokens: after draining the actions of any input, the node's
    /// [`applied_index`](Self::applied_index) is at least the index of the
    /// state behind every answer drained, so a client may keep the highest
    /// such value as `after` for its next session read.
    pub fn read_with(&mut self, now: Time, request: RequestId, query: Vec<u8>, consistency: ReadConsistency) {
        self.now = now;
        self.accept_read(now, request, query, consistency);
        self.finish_input();
    }

    /// Hands leadership to `target`: from now on proposals are refused with
    /// `NotLeader { leader_hint: target }`, the target's log is brought up to
    /// date, and then it is sent [`MessageBody::TimeoutNow`] so that it
    /// campaigns at once. If this node still leads one election timeout
    /// later, the transfer is abandoned and proposals are accepted again.
    /// A transfer to a new target replaces one in progress (its deadline
    /// restarts); asking again for the same target changes nothing.
    pub fn transfer_leadership(&mut self, now: Time, target: NodeId) -> Result<(), TransferError> {
        self.now = now;
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target == self.id() {
            return Err(TransferError::ToSelf);
        }
        if !self.membership.voters.contains_key(&target) {
            return Err(TransferError::NotVoter(target));
        }
        if self.transfer.is_none_or(|transfer| transfer.target != target) {
            let deadline = now.add_millis(self.config.election_timeout_ms);
            self.transfer = Some(Transfer { target, deadline, timeout_now_sent: false });
            self.event(Event::TransferStarted { target, term: self.term });
            // Even an empty append helps: a target that lost in-flight
            // entries rejects it, which restarts probing from its match point.
            self.send_append(target, true);
            self.maybe_send_timeout_now(now);
        }
        self.finish_input();
        Ok(())
    }

    /// The driver made every write up to and including `id` durable.
    /// Acknowledgements of writes the node never issued are ignored.
    pub fn handle_persisted(&mut self, now: Time, id: PersistId) {
        self.now = now;
        if !self.durability.acknowledge(id, &mut self.log) {
            return;
        }
        while let Some(message) = self.durability.release() {
            self.actions.push_back(Action::Send(message));
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.finish_input();
    }

    // ----- message handling ----------------------------------------------

    fn step(&mut self, now: Time, message: Message) {
        if message.to != self.id() || message.from == self.id() {
            return;
        }
        if let Err(problem) = validate_message(&message) {
            self.violation(format!("malformed message from {}: {problem}", message.from));
            return;
        }
        if message.term.0 > self.term.0.saturating_add(MAX_TERM_JUMP) {
            self.violation(format!(
                "message from {} jumps to term {}, more than {MAX_TERM_JUMP} past ours ({})",
                message.from, message.term, self.term
            ));
            return;
        }
        let from = message.from;
        if message.term > self.term {
            match &message.body {
                // A candidate the leader told to campaign may interrupt the lease.
                MessageBody::RequestVote { transfer: false, .. } if self.in_lease(now) => return,
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse { pre_vote: true, granted: true } => {}
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                    self.become_follower(now, message.term, Some(from));
                }
                _ => self.become_follower(now, message.term, None),
            }
        } else if message.term < self.term {
            match message.body {
                // A stale leader learns our term from the answer and steps down.
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                    self.send(from, MessageBody::HeartbeatResponse { read_context: 0 });
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    self.send(from, MessageBody::RequestVoteResponse { pre_vote: true, granted: false });
                }
                MessageBody::InstallSnapshot { .. } => {
                    self.send(from, MessageBody::HeartbeatResponse { read_context: 0 });
                }
                MessageBody::Forward { id, .. } => {
                    self.send(from, MessageBody::ForwardResponse { id, outcome: ForwardOutcome::NotLeader });
                }
                MessageBody::ReadIndex { id, .. } => {
                    self.send(from, MessageBody::ReadIndexResponse { id, index: None });
                }
                _ => {}
            }
            return;
        }
        let mut restarted = false;
        if self.role == Role::Leader {
            if let Some(progress) = self.progress.get_mut(&from) {
                restarted = progress.observe_disk(message.disk, message.incarnation);
                progress.last_heard = Some(now);
            }
        }
        self.step_body(now, from, message);
        if restarted && self.role == Role::Leader {
            // Probe the restarted follower at once (see `Progress::observe_disk`).
            self.send_append(from, true);
        }
    }

    /// Handles a message in our term (after the term rules of `step`).
    fn step_body(&mut self, now: Time, from: NodeId, message: Message) {
        match message.body {
            MessageBody::RequestVote { pre_vote, last_log_index, last_log_term, .. } => {
                self.handle_vote_request(now, from, message.term, pre_vote, last_log_index, last_log_term)
            }
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                // Each half of the configuration counts the answer only if
                // it records the disk it came from (see `Membership::tally`).
                self.handle_vote_response(now, (from, message.disk), message.term, pre_vote, granted)
            }
            MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit } => {
                if !self.accept_leader(now, from) {
                    return;
                }
                self.handle_append(from, prev_log_index, prev_log_term, entries, leader_commit);
            }
            MessageBody::AppendEntriesResponse(response) => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, message.incarnation, response);
                    self.maybe_send_timeout_now(now);
                }
            }
            MessageBody::Heartbeat { commit, read_context } => {
                if !self.accept_leader(now, from) {
                    return;
                }
                // The leader capped `commit` at what it knows we hold.
                let commit = commit.min(self.log.last_index());
                if commit > self.commit {
                    self.commit = commit;
                }
                self.send(from, MessageBody::HeartbeatResponse { read_context });
            }
            MessageBody::HeartbeatResponse { read_context } => {
                if self.role != Role::Leader {
                    return;
                }
                if read_context > self.read_context {
                    self.violation(format!("{from} answered heartbeat round {read_context}, which was never sent"));
                    return;
                }
                self.handle_heartbeat_response(now, from, read_context);
                self.maybe_send_timeout_now(now);
            }
            MessageBody::TimeoutNow => match self.role {
                Role::Leader => self.violation(format!("{from} told the leader of term {} to campaign", self.term)),
                // Whoever sent it led our term and chose us; campaign at once,
                // without pre-vote, and ask voters to ignore their leases.
                _ if self.may_campaign() => self.become_candidate(now, true),
                _ => {}
            },
            MessageBody::InstallSnapshot { meta, offset, total_bytes, chunk } => {
                if !self.accept_leader(now, from) {
                    return;
                }
                self.handle_snapshot_chunk(from, *meta, offset, total_bytes, chunk);
            }
            MessageBody::SnapshotChunkResponse { index, received } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_chunk_response(from, index, received);
                }
            }
            // Only members may use the leader's queues.
            MessageBody::Forward { id, command } if self.membership.members().contains(&from) => {
                self.handle_forward(from, id, command)
            }
            MessageBody::ReadIndex { id, allow_lease } if self.membership.members().contains(&from) => {
                self.handle_read_index(from, id, allow_lease)
            }
            MessageBody::Forward { .. } | MessageBody::ReadIndex { .. } => {}
            MessageBody::ReadIndexResponse { id, index } => self.handle_read_index_response(id, index),
            MessageBody::ForwardResponse { id, outcome } => self.handle_forward_response(id, outcome),
        }
    }

    /// An append or heartbeat in our term: its sender is the leader.
    fn accept_leader(&mut self, now: Time, from: NodeId) -> bool {
        if self.role == Role::Leader {
            self.violation(format!("{} also claims leadership of term {}", from, self.term));
            return false;
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.term, Some(from));
        }
        self.last_leader_contact = Some(now);
        self.reset_election_deadline(now);
        true
    }

    fn handle_vote_request(
        &mut self,
        now: Time,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        let log_ok = self.config.bug(Bug::VoteWithoutLogCheck) || self.log.is_up_to_date(last_log_index, last_log_term);
        // Any node answers, even one that does not know itself a voter: it
        // may have been promoted in a configuration it has not seen yet (and
        // could otherwise deadlock the election that would tell it). The
        // candidate counts the vote only from a voter on the disk its
        // configuration records, so a learner, a removed member or a node
        // that lost its disk never decides an election.
        let granted = if pre_vote {
            term > self.term && log_ok
        } else {
            let free = self.voted_for == Some(from) || (self.voted_for.is_none() && self.leader.is_none());
            free && log_ok
        };
        if granted && !pre_vote {
            self.voted_for = Some(from);
            self.durability.hard_state_changed();
            self.reset_election_deadline(now);
        }
        let reply_term = if pre_vote && granted { term } else { self.term };
        let body = MessageBody::RequestVoteResponse { pre_vote, granted };
        let durable = !self.config.bug(Bug::ReplyBeforePersist);
        self.send_with_term(from, reply_term, body, durable);
    }

    fn handle_vote_response(&mut self, now: Time, from: (NodeId, DiskId), term: Term, pre_vote: bool, granted: bool) {
        let expected = match (self.role, pre_vote) {
            (Role::PreCandidate, true) => granted && term == self.term.next() || !granted && term == self.term,
            (Role::Candidate, false) => term == self.term,
            _ => false,
        };
        if !expected {
            return;
        }
        self.votes.insert(from, granted);
        if self.config.bug(Bug::JointVoteCountsTwice) && self.membership.is_voter_on(from.0, from.1) {
            // The old rule: a voter on this disk in either half counts in both.
            let recorded = self.membership.voters.get(&from.0).into_iter().chain(self.membership.outgoing.get(&from.0));
            let recorded: Vec<DiskId> = recorded.copied().collect();
            for disk in recorded {
                self.votes.insert((from.0, disk), granted);
            }
        }
        match self.membership.tally(&self.votes) {
            VoteTally::Won if pre_vote => self.become_candidate(now, false),
            VoteTally::Won => self.become_leader(now),
            VoteTally::Lost => self.become_follower(now, self.term, None),
            VoteTally::Pending => {}
        }
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_log_index: LogIndex,
        mut prev_log_term: Term,
        mut entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        if self.awaits_first_snapshot() {
            // We joined with an empty disk: the configuration our log would
            // start from (the bootstrap one) is in no entry, so we must start
            // from a snapshot (seed 29718, 5 nodes: a joined node took entries
            // from index 1, then snapshotted a configuration with no voters
            // and could not restart). Refusing makes the leader, once it
            // knows our disk, send its snapshot (see `send_append`).
            let hint = ConflictHint { conflict_term: None, first_index: LogIndex(1) };
            let response = AppendResponse::Rejected { rejected_prev_index: prev_log_index, hint };
            self.send(from, MessageBody::AppendEntriesResponse(response));
            return;
        }
        // Everything up to our commit index is already settled; skip it.
        if prev_log_index < self.commit {
            let settled = (self.commit.0 - prev_log_index.0) as usize;
            if entries.len() <= settled {
                let match_index = self.commit;
                self.send(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }));
                return;
            }
            prev_log_term = entries[settled - 1].term;
            prev_log_index = self.commit;
            entries.drain(..settled);
        }

        let prev_matches = match self.log.term(prev_log_index) {
            None => false,
            Some(_) if self.config.bug(Bug::AppendWithoutPrevCheck) => true,
            Some(term) => term == prev_log_term,
        };
        if !prev_matches {
            if prev_log_index == self.commit {
                self.violation(format!(
                    "{} sent an append whose entry {} (term {}) conflicts with our committed entry",
                    from, prev_log_index, prev_log_term
                ));
                return;
            }
            let hint = match self.log.term(prev_log_index) {
                None => ConflictHint { conflict_term: None, first_index: self.log.last_index().next() },
                Some(term) => ConflictHint {
                    conflict_term: Some(term),
                    first_index: self.log.first_index_of_term_at(prev_log_index),
                },
            };
            let response = AppendResponse::Rejected { rejected_prev_index: prev_log_index, hint };
            self.send(from, MessageBody::AppendEntriesResponse(response));
            return;
        }

        let match_index = LogIndex(prev_log_index.0 + entries.len() as u64);
        let first_new =
            entries.iter().position(|entry| self.log.term(entry.index) != Some(entry.term)).unwrap_or(entries.len());
        if let Some(first) = entries.get(first_new) {
            if first.index <= self.log.last_index() {
                if first.index <= self.commit {
                    self.violation(format!(
                        "{} sent entry {} (term {}) that would overwrite our committed entry",
                        from, first.index, first.term
                    ));
                    return;
                }
                self.truncate_from(first.index);
            }
            for entry in entries.drain(first_new..) {
                self.append(entry);
            }
        }
        let new_commit = leader_commit.min(match_index);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        let response = MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index });
        let durable = !self.config.bug(Bug::AckAppendBeforePersist);
        self.send_with_term(from, self.term, response, durable);
    }

    fn handle_append_response(&mut self, from: NodeId, incarnation: u64, response: AppendResponse) {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        match response {
            AppendResponse::Accepted { match_index } => {
                if match_index > last_index {
                    self.violation(format!("{from} acknowledged {match_index}, past our last entry {last_index}"));
                    return;
                }
                let confirms_match = match_index >= progress.match_index;
                let advanced = progress.acknowledge(match_index, incarnation);
                match progress.state {
                    // A probe answered at (or past) the match point: the logs
                    // agree there, replicate from it. (A restarted follower
                    // is probed at its match point, which does not advance it.)
                    ReplicationState::Probe if confirms_match => progress.become_replicate(),
                    ReplicationState::Snapshot { index } if progress.match_index >= index => {
                        progress.become_replicate()
                    }
                    _ => {}
                }
                if advanced {
                    self.maybe_commit();
                }
                self.send_append(from, false);
            }
            AppendResponse::Rejected { rejected_prev_index, hint } => {
                let mut lost = None;
                if progress.proves_lost_entries(rejected_prev_index, incarnation) {
                    // Its disk lost what it acknowledged (restored from an
                    // older copy, or a write it reported durable was not):
                    // probe again from where its log really ends.
                    lost = Some(progress.match_index);
                    progress.forget_match(incarnation);
                } else if rejected_prev_index <= progress.match_index || rejected_prev_index > last_index {
                    return; // stale
                } else if matches!(progress.state, ReplicationState::Snapshot { .. }) {
                    return; // an answer to an append sent before the snapshot
                } else if progress.state == ReplicationState::Probe && rejected_prev_index != progress.next_index.prev()
                {
                    return; // an answer to an older probe
                }
                let suggested = match hint.conflict_term {
                    Some(term) => match self.log.last_index_of_term(term) {
                        Some(index) => index.next(),
                        None => hint.first_index,
                    },
                    None => hint.first_index,
                };
                progress.become_probe();
                let lowest = progress.match_index.next();
                progress.next_index = suggested.max(lowest).min(rejected_prev_index.max(lowest));
                if let Some(acknowledged) = lost {
                    let holds = match hint.conflict_term {
                        None => hint.first_index.prev().min(rejected_prev_index.prev()),
                        Some(_) => rejected_prev_index.prev(),
                    };
                    self.event(Event::FollowerLostEntries { follower: from, acknowledged, holds });
                }
                self.send_append(from, false);
            }
        }
    }

    fn handle_heartbeat_response(&mut self, now: Time, from: NodeId, read_context: u64) {
        let last_index = self.log.last_index();
        let (count_limit, bytes_limit) = (self.config.max_inflight_appends, self.config.max_inflight_bytes);
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        if read_context > progress.read_context_acked {
            progress.read_context_acked = read_context;
            self.confirm_reads(now);
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        if progress.match_index < last_index {
            match progress.state {
                // A lost probe or snapshot chunk is sent again.
                ReplicationState::Probe | ReplicationState::Snapshot { .. } => progress.probe_sent = false,
                // Appends were lost: fall back to probing from the match point.
                ReplicationState::Replicate if progress.inflight_full(count_limit, bytes_limit) => {
                    progress.become_probe()
                }
                ReplicationState::Replicate => {}
            }
            // Even with nothing new to send: in Replicate an empty append at
            // `next_index - 1` makes a follower that lost in-flight entries
            // reject it, which sends us back to probing from its match point.
            // Without it a lost append is never resent unless more writes come.
            self.send_append(from, true);
        }
    }

    // ----- leader ----------------------------------------------------------

    fn accept_request(&mut self, _now: Time, request: RequestId, payload: Payload) {
        if let Some(transfer) = self.transfer {
            self.respond(request, ClientResult::NotLeader { leader_hint: transfer.target });
            return;
        }
        let queued = self.pending_requests.len();
        if !self.admit(request, payload.len_bytes(), queued, self.config.max_pending_requests) {
            return;
        }
        let index = self.log.last_index().next();
        self.append(Entry { index, term: self.term, payload });
        self.pending_requests.insert(index, (request, self.term));
        // Replication and the write wait until the driver polls, so that
        // proposals made back to back go out as one append and one write.
        self.batch_open = true;
    }

    /// Admission of a client request: only a leader takes requests, within
    /// the size limit and while its queue (`queued` of `limit`) has room.
    /// Otherwise answers the client and returns false.
    fn admit(&mut self, request: RequestId, size_bytes: usize, queued: usize, limit: usize) -> bool {
        let refusal = if self.role != Role::Leader {
            match self.leader {
                Some(leader_hint) if leader_hint != self.id() => ClientResult::NotLeader { leader_hint },
                _ => ClientResult::NoLeader,
            }
        } else if size_bytes > self.config.max_command_bytes {
            ClientResult::Dropped(DropReason::TooLarge)
        } else if queued >= limit {
            ClientResult::Dropped(DropReason::Overloaded)
        } else {
            return true;
        };
        self.respond(request, refusal);
        false
    }

    fn broadcast_append(&mut self, even_if_empty: bool) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer, even_if_empty);
        }
    }

    fn send_append(&mut self, to: NodeId, even_if_empty: bool) {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        match progress.state {
            ReplicationState::Probe if progress.probe_sent => return,
            ReplicationState::Replicate
                if progress.inflight_full(self.config.max_inflight_appends, self.config.max_inflight_bytes) =>
            {
                return
            }
            ReplicationState::Snapshot { .. } => return self.send_snapshot_chunk(to),
            _ => {}
        }
        let next = progress.next_index.min(last_index.next());
        let prev_log_index = next.prev();
        // A node that joined with an empty disk does not know the bootstrap
        // configuration (it is in no entry): it starts from a snapshot, which
        // carries the configuration in force.
        let joining = next == LogIndex(1)
            && progress.disk.is_some_and(|disk| disk != DiskId::BOOTSTRAP)
            && !self.config.bug(Bug::JoinerSkipsSnapshot);
        let prev_log_term = self.log.term(prev_log_index).filter(|_| !joining);
        let Some(prev_log_term) = prev_log_term else {
            // The follower needs entries we compacted (or a snapshot to
            // start from): send the snapshot.
            if self.snapshot.is_none() {
                if self.applied == LogIndex::ZERO {
                    return; // nothing to snapshot yet; the next heartbeat answer retries
                }
                self.take_snapshot(false);
            }
            let progress = self.progress.get_mut(&to).expect("checked above");
            let index = self.snapshot.as_ref().expect("a snapshot was just ensured").meta.index;
            progress.become_snapshot(index);
            return self.send_snapshot_chunk(to);
        };
        let progress = self.progress.get_mut(&to).expect("checked above");
        let upto = LogIndex(next.0 + self.config.max_entries_per_append as u64 - 1);
        let mut bytes = 0;
        let entries: Vec<Entry> = self
            .log
            .slice(next, upto)
            .iter()
            .take_while(|entry| {
                let fits = bytes == 0 || bytes + entry.payload.len_bytes() <= self.config.max_append_bytes;
                bytes += entry.payload.len_bytes().max(1);
                fits
            })
            .cloned()
            .collect();
        if entries.is_empty() && progress.state == ReplicationState::Replicate && !even_if_empty {
            return;
        }
        let last_sent = LogIndex(prev_log_index.0 + entries.len() as u64);
        if !entries.is_empty() || progress.state == ReplicationState::Probe {
            let bytes = entries.iter().map(|entry| entry.payload.len_bytes()).sum();
            progress.sent_entries(last_sent, bytes);
        }
        let body = MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit: self.commit };
        self.send(to, body);
    }

    /// Sends the follower the next chunk of our latest snapshot (restarting
    /// from its first byte if the snapshot changed since the last chunk).
    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let snapshot = self.snapshot.as_ref().expect("invariant: Snapshot state needs a snapshot");
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        if progress.state != (ReplicationState::Snapshot { index: snapshot.meta.index }) {
            progress.become_snapshot(snapshot.meta.index);
        }
        if progress.probe_sent {
            return;
        }
        let total_bytes = snapshot.data.len() as u64;
        let offset = progress.snapshot_received.min(total_bytes);
        let end = (offset + self.config.snapshot_chunk_bytes as u64).min(total_bytes);
        let chunk = snapshot.data[offset as usize..end as usize].to_vec();
        progress.probe_sent = true;
        let meta = Box::new(snapshot.meta.clone());
        let body = MessageBody::InstallSnapshot { meta, offset, total_bytes, chunk };
        self.send(to, body);
    }

    fn handle_snapshot_chunk_response(&mut self, from: NodeId, index: LogIndex, received: u64) {
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        if progress.state != (ReplicationState::Snapshot { index }) {
            return; // about a snapshot we no longer send
        }
        // Fewer bytes than before means the follower restarted and lost the
        // chunks: start over from where it is.
        progress.snapshot_received = received;
        progress.probe_sent = false;
        self.send_snapshot_chunk(from);
    }

    /// Sends a new heartbeat round (a fresh `read_context`) and restarts the
    /// heartbeat timer.
    fn broadcast_heartbeat(&mut self, now: Time) {
        self.heartbeat_deadline = now.add_millis(self.config.heartbeat_interval_ms);
        self.read_context += 1;
        let read_context = self.read_context;
        self.reads.round_sent(read_context, now);
        let peers: Vec<(NodeId, LogIndex)> =
            self.progress.iter().map(|(peer, progress)| (*peer, progress.match_index)).collect();
        for (peer, match_index) in peers {
            let commit = self.commit.min(match_index);
            self.send(peer, MessageBody::Heartbeat { commit, read_context });
        }
        // A single-node cluster is its own quorum.
        self.confirm_reads(now);
    }

    // ----- reads -------------------------------------------------------------

    fn accept_read(&mut self, now: Time, request: RequestId, query: Vec<u8>, consistency: ReadConsistency) {
        let allow_lease = consistency == ReadConsistency::Lease;
        match consistency {
            ReadConsistency::Linearizable | ReadConsistency::Lease if self.role == Role::Leader => {
                if !self.admit(request, query.len(), self.reads.len(), self.config.max_pending_reads) {
                    return;
                }
                self.hold_read(now, ReadOrigin::Local { request, query }, allow_lease);
            }
            ReadConsistency::Linearizable | ReadConsistency::Lease => {
                let Some(leader) = self.leader.filter(|_| self.config.follower_reads) else {
                    // Refuses, naming the leader if known.
                    self.admit(request, query.len(), 0, 1);
                    return;
                };
                if !self.admit_local_read(request, query.len()) {
                    return;
                }
                let id = self.next_tag();
                if self.config.bug(Bug::FollowerReadWithoutReadIndex) {
                    return self.hold_local_read(now, id.seq, request, query, Some(LogIndex::ZERO));
                }
                self.hold_local_read(now, id.seq, request, query, None);
                // Like every message, it carries our term, which must be durable
                // first (a restarted node never speaks in a term it forgot).
                self.send(leader, MessageBody::ReadIndex { id, allow_lease });
            }
            ReadConsistency::Session { after } => {
                let after = if self.config.bug(Bug::SessionReadIgnoresIndex) { LogIndex::ZERO } else { after };
                if self.admit_local_read(request, query.len()) {
                    let id = self.next_tag();
                    self.hold_local_read(now, id.seq, request, query, Some(after));
                }
            }
            ReadConsistency::Stale => {
                if self.admit_local_read(request, query.len()) {
                    let answer = self.state_machine.query(&query);
                    self.respond(request, ClientResult::Ok(answer));
                }
            }
        }
    }

    /// Admission of a read a node answers itself (any role).
    fn admit_local_read(&mut self, request: RequestId, size_bytes: usize) -> bool {
        let refusal = if size_bytes > self.config.max_command_bytes {
            ClientResult::Dropped(DropReason::TooLarge)
        } else if self.local_reads.len() >= self.config.max_pending_reads {
            ClientResult::Dropped(DropReason::Overloaded)
        } else {
            return true;
        };
        self.respond(request, refusal);
        false
    }

    fn hold_local_read(&mut self, now: Time, id: u64, request: RequestId, query: Vec<u8>, ready_at: Option<LogIndex>) {
        let deadline = now.add_millis(self.config.election_timeout_ms * FORWARD_TIMEOUT_ELECTIONS);
        self.local_reads.insert(id, LocalRead { request, query, ready_at, deadline });
    }

    /// A leader holds a read until its leadership is confirmed after the
    /// read arrived.
    fn hold_read(&mut self, now: Time, origin: ReadOrigin, allow_lease: bool) {
        let read_index = self.committed_in_term().then_some(self.commit);
        // Only a round sent after the read arrived can confirm it.
        let context = self.read_context + 1;
        self.reads.reads.push_back(PendingRead { origin, allow_lease, read_index, context, confirmed: false });
        self.confirm_reads(now);
    }

    /// A follower asks for a read index.
    fn handle_read_index(&mut self, from: NodeId, id: RequestTag, allow_lease: bool) {
        if self.role != Role::Leader || self.reads.len() >= self.config.max_pending_reads {
            self.send(from, MessageBody::ReadIndexResponse { id, index: None });
            return;
        }
        let now = self.now;
        self.hold_read(now, ReadOrigin::Remote { from, id }, allow_lease);
    }

    fn handle_read_index_response(&mut self, tag: RequestTag, index: Option<LogIndex>) {
        let Some(id) = self.own_seq(tag) else {
            return; // for an earlier life of this node
        };
        let Some(read) = self.local_reads.get_mut(&id) else {
            return;
        };
        if read.ready_at.is_some() {
            return; // a duplicate
        }
        match index {
            Some(index) => read.ready_at = Some(index),
            None => {
                let read = self.local_reads.remove(&id).expect("found above");
                self.respond(read.request, ClientResult::Dropped(DropReason::LeadershipLost));
            }
        }
    }

    /// Answers the reads this node serves from its own state once it has
    /// applied what they wait for, and gives up on those past their deadline.
    fn serve_local_reads(&mut self) {
        let now = self.now;
        let done: Vec<u64> = self
            .local_reads
            .iter()
            .filter(|(_, read)| read.ready_at.is_some_and(|index| index <= self.applied) || now >= read.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let read = self.local_reads.remove(&id).expect("listed above");
            if read.ready_at.is_some_and(|index| index <= self.applied) {
                let answer = self.state_machine.query(&read.query);
                self.respond(read.request, ClientResult::Ok(answer));
            } else {
                self.respond(read.request, ClientResult::Dropped(DropReason::LeadershipLost));
            }
        }
    }

    /// Has this leader committed an entry of its term (so its commit index
    /// covers every earlier leader's)? The one place reads check it.
    fn committed_in_term(&self) -> bool {
        self.config.bug(Bug::ReadBeforeTermCommit) || self.log.term(self.commit) == Some(self.term)
    }

    /// The latest heartbeat round a quorum (this node included) has answered.
    fn confirmed_context(&self) -> u64 {
        self.quorum_value(self.read_context, |progress| progress.read_context_acked)
    }

    /// With [`ReadMode::Lease`]: has a quorum answered a round sent recently
    /// enough that no other leader can have been elected since?
    fn lease_valid(&self, now: Time) -> bool {
        if !self.config.check_quorum || self.transfer.is_some() || now < self.lease_suspended_until {
            return false;
        }
        // Per voter, one plus when the latest round it answered was sent (0:
        // no lease from that voter).
        let granted_at = self.quorum_value(now.as_micros() + 1, |progress| {
            self.reads.sent_at(progress.read_context_acked).map_or(0, |sent| sent.as_micros() + 1)
        });
        granted_at > 0 && now.as_micros() - (granted_at - 1) < self.config.lease_duration_us()
    }

    /// The value a quorum of voters has reached (see
    /// [`Membership::quorum_value`]): `own` for this node, `value` of its
    /// progress for a peer. Only answers from the disk the configuration
    /// records count.
    fn quorum_value(&self, own: u64, value: impl Fn(&Progress) -> u64) -> u64 {
        self.membership.quorum_value(|node, disk| {
            if node == self.id() {
                if disk == self.disk {
                    own
                } else {
                    0
                }
            } else {
                self.progress.get(&node).filter(|progress| progress.disk == Some(disk)).map_or(0, &value)
            }
        })
    }

    /// Marks reads confirmed by the rounds a quorum answered (or the lease),
    /// and sends the round that unconfirmed reads wait for. Batching: while a
    /// round is out for earlier reads, later ones wait for the next round
    /// (sent when that one is confirmed, or at the next heartbeat) instead of
    /// each sending their own.
    fn confirm_reads(&mut self, now: Time) {
        let confirmed_context = self.confirmed_context();
        let lease = self.lease_valid(now);
        for read in self.reads.reads.iter_mut() {
            read.confirmed |= read.context <= confirmed_context || (lease && read.allow_lease);
        }
        if self.reads.waiting_after(self.read_context) && !self.reads.waiting_on(self.read_context) {
            self.broadcast_heartbeat(now);
        }
    }

    /// Answers every confirmed read whose read index is applied.
    fn serve_reads(&mut self) {
        if self.role != Role::Leader || self.reads.is_empty() {
            return;
        }
        if self.committed_in_term() {
            for read in self.reads.reads.iter_mut() {
                read.read_index.get_or_insert(self.commit);
            }
        }
        let mut waiting = std::collections::VecDeque::new();
        for read in std::mem::take(&mut self.reads.reads) {
            // Leadership is confirmed for a read once a round (or the lease)
            // proved it after the read arrived, and the leader has committed
            // an entry of its term, so its commit index covers every earlier
            // leader's. The one place this is checked; the bug skips it.
            let leadership_confirmed = read.confirmed && read.read_index.is_some();
            let ready = leadership_confirmed || self.config.bug(Bug::StaleLeaderRead);
            match &read.origin {
                // A follower waits for the index itself.
                ReadOrigin::Remote { from, id } if ready => {
                    let index = Some(read.read_index.unwrap_or(self.commit));
                    let (from, id) = (*from, *id);
                    self.send(from, MessageBody::ReadIndexResponse { id, index });
                }
                ReadOrigin::Local { request, query }
                    if ready && read.read_index.is_none_or(|read_index| read_index <= self.applied) =>
                {
                    let answer = self.state_machine.query(query);
                    self.respond(*request, ClientResult::Ok(answer));
                }
                _ => waiting.push_back(read),
            }
        }
        self.reads.reads = waiting;
    }

    // ----- leadership transfer --------------------------------------------------

    /// Sends `TimeoutNow` once the transfer target holds our whole log.
    fn maybe_send_timeout_now(&mut self, now: Time) {
        let Some(transfer) = self.transfer else {
            return;
        };
        if transfer.timeout_now_sent || self.role != Role::Leader {
            return;
        }
        let caught_up =
            self.progress.get(&transfer.target).is_some_and(|progress| progress.match_index == self.log.last_index());
        if !caught_up {
            return;
        }
        self.transfer = Some(Transfer { timeout_now_sent: true, ..transfer });
        // The target may now win votes that bypass our followers' leases.
        self.lease_suspended_until = now.add_millis(2 * self.config.election_timeout_ms);
        self.send(transfer.target, MessageBody::TimeoutNow);
    }

    fn check_quorum(&mut self, now: Time) {
        self.check_quorum_deadline = now.add_millis(self.config.election_timeout_ms);
        let active = self.quorum_value(1, |progress| u64::from(progress.recently_active)) == 1;
        for progress in self.progress.values_mut() {
            progress.recently_active = false;
        }
        if !active {
            self.become_follower(now, self.term, None);
        }
    }

    fn maybe_commit(&mut self) {
        let own = self.log.persisted().0;
        let candidate = if self.config.bug(Bug::LearnerCountedInQuorum) && !self.membership.is_joint() {
            // Learners' acknowledgements count as if they were votes, while
            // the majority is still sized by the voters alone.
            let mut matched: Vec<u64> = self
                .membership
                .members()
                .iter()
                .map(|node| match self.progress.get(node) {
                    Some(progress) => progress.match_index.0,
                    None if *node == self.id() => own,
                    None => 0,
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            LogIndex(matched[self.membership.voters.len() / 2])
        } else {
            LogIndex(self.quorum_value(own, |progress| progress.match_index.0))
        };
        if candidate <= self.commit {
            return;
        }
        let current_term = self.log.term(candidate) == Some(self.term);
        if current_term || self.config.bug(Bug::CommitOldTerm) {
            self.commit = candidate;
            self.after_commit();
            if self.role == Role::Leader {
                self.broadcast_append(true);
            }
        }
    }

    /// What a leader does when a configuration entry commits: leave a joint
    /// configuration, or step down if it is no longer a voter.
    fn after_commit(&mut self) {
        let latest_index = self.config_entries.last().map_or(LogIndex::ZERO, |(index, _)| *index);
        if latest_index > self.commit {
            return;
        }
        if self.membership.is_joint() {
            let mut leave = self.membership.clone();
            leave.outgoing.clear();
            let index = self.log.last_index().next();
            self.append(Entry { index, term: self.term, payload: Payload::Config(leave) });
        } else if !self.self_votes() {
            let now = self.now;
            self.become_follower(now, self.term, None);
        }
    }

    // ----- role changes ---------------------------------------------------

    fn become_follower(&mut self, now: Time, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.durability.hard_state_changed();
        }
        let changed = self.role != Role::Follower;
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
        self.transfer = None;
        self.drop_pending_requests();
        self.reset_election_deadline(now);
        if changed || self.durability.hard_state_dirty() {
            self.event(Event::RoleChanged { role: Role::Follower, term: self.term });
        }
    }

    fn become_pre_candidate(&mut self, now: Time) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert((self.id(), self.presented_disk()), true);
        self.reset_election_deadline(now);
        self.event(Event::RoleChanged { role: Role::PreCandidate, term: self.term });
        if self.membership.tally(&self.votes) == VoteTally::Won {
            self.become_candidate(now, false);
            return;
        }
        self.request_votes(true, false);
    }

    /// `transfer`: campaigning because the leader sent `TimeoutNow`.
    fn become_candidate(&mut self, now: Time, transfer: bool) {
        self.term = self.term.next();
        self.voted_for = Some(self.id());
        self.durability.hard_state_changed();
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert((self.id(), self.presented_disk()), true);
        self.reset_election_deadline(now);
        self.event(Event::RoleChanged { role: Role::Candidate, term: self.term });
        if self.membership.tally(&self.votes) == VoteTally::Won {
            self.become_leader(now);
            return;
        }
        self.request_votes(false, transfer);
    }

    fn request_votes(&mut self, pre_vote: bool, transfer: bool) {
        let term = if pre_vote { self.term.next() } else { self.term };
        let body = MessageBody::RequestVote {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        let voters: Vec<NodeId> =
            self.membership.voters.keys().chain(self.membership.outgoing.keys()).copied().collect();
        for peer in voters {
            if peer != self.id() {
                self.send_with_term(peer, term, body.clone(), true);
            }
        }
    }

    fn become_leader(&mut self, now: Time) {
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.votes.clear();
        self.transfer = None;
        debug_assert!(self.reads.is_empty(), "reads are dropped whenever a leader steps down");
        self.progress.clear();
        self.sync_progress();
        self.heartbeat_deadline = now.add_millis(self.config.heartbeat_interval_ms);
        self.check_quorum_deadline = now.add_millis(self.config.election_timeout_ms);
        self.event(Event::RoleChanged { role: Role::Leader, term: self.term });
        // A no-op of our own term lets us commit what earlier leaders left.
        let index = self.log.last_index().next();
        self.append(Entry { index, term: self.term, payload: Payload::Noop });
        self.broadcast_append(true);
        self.maybe_commit();
    }

    fn drop_pending_requests(&mut self) {
        for (_, (request, _)) in std::mem::take(&mut self.pending_requests) {
            self.respond(request, ClientResult::Dropped(DropReason::LeadershipLost));
        }
        for read in self.reads.clear() {
            match read.origin {
                ReadOrigin::Local { request, .. } => {
                    self.respond(request, ClientResult::Dropped(DropReason::LeadershipLost))
                }
                ReadOrigin::Remote { from, id } => self.send(from, MessageBody::ReadIndexResponse { id, index: None }),
            }
        }
    }

    // ----- helpers ---------------------------------------------------------

    /// Is this node a voter, on this disk, in the configuration in force?
    fn self_votes(&self) -> bool {
        self.votes_in(&self.membership)
    }

    fn votes_in(&self, membership: &Membership) -> bool {
        if self.config.bug(Bug::WipedNodeVotes) {
            return membership.is_voter(self.id());
        }
        membership.is_voter_on(self.id(), self.disk)
    }

    /// May this node start an election? Yes if it is a voter (on this disk)
    /// in the configuration in force, *or in any configuration not yet known
    /// to be superseded by a committed one*: from the configuration in force
    /// at its commit index to the latest it has appended (Raft thesis
    /// §4.2.2). A leader that appended the configuration removing itself and
    /// then lost contact is still needed: the others may hold only the joint
    /// configuration, whose outgoing half needs its vote, and it refuses
    /// them (its log is longer). If it never campaigned, nothing could be
    /// elected, ever (seeds 2011 and 102421 with 3 nodes).
    ///
    /// Campaigning never endangers safety: a candidate counts votes by its
    /// latest configuration only (its own vote only if it is a voter there),
    /// so whom it asks changes nothing about who can win. It only costs
    /// messages: a removed node that never learns its removal committed keeps
    /// asking for pre-votes, which up-to-date voters refuse (with
    /// check-quorum, voters with a live leader ignore them).
    pub fn may_campaign(&self) -> bool {
        if self.self_votes() {
            return true;
        }
        if self.config.bug(Bug::RemovedVoterNeverCampaigns) {
            return false;
        }
        self.votes_in(self.membership_at(self.commit))
            || self
                .config_entries
                .iter()
                .filter(|(at, _)| *at > self.commit)
                .any(|(_, membership)| self.votes_in(membership))
    }

    /// The disk this node speaks for in its messages: its own (the bug
    /// `wiped-node-votes` claims the one the configuration records).
    fn presented_disk(&self) -> DiskId {
        match self.membership.voters.get(&self.id()) {
            Some(recorded) if self.config.bug(Bug::WipedNodeVotes) => *recorded,
            _ => self.disk,
        }
    }

    /// A node that joined with an empty disk and has not installed a
    /// snapshot yet: it knows no configuration (its base is empty). Every
    /// joined node's log starts after a snapshot, so its offset is positive.
    fn awaits_first_snapshot(&self) -> bool {
        self.log.offset() == LogIndex::ZERO
            && self.disk != DiskId::BOOTSTRAP
            && !self.config.bug(Bug::JoinerSkipsSnapshot)
    }

    /// The configuration in force at `index`.
    fn membership_at(&self, index: LogIndex) -> &Membership {
        match self.config_entries.iter().rev().find(|(at, _)| *at <= index) {
            Some((_, membership)) => membership,
            None => &self.base_membership,
        }
    }

    /// Installs the configuration in force after a change of the log, and
    /// (on a leader) starts or stops replicating to members accordingly.
    fn refresh_membership(&mut self) {
        let (index, latest) = match self.config_entries.last() {
            Some((index, membership)) => (*index, membership.clone()),
            None => (self.log.offset(), self.base_membership.clone()),
        };
        if latest == self.membership {
            return;
        }
        self.membership = latest.clone();
        self.event(Event::MembershipChanged { index, membership: latest });
        if self.role == Role::Leader {
            self.sync_progress();
        }
    }

    /// A leader tracks progress for exactly the other members.
    fn sync_progress(&mut self) {
        let members = self.membership.members();
        self.progress.retain(|node, _| members.contains(node));
        let next = self.log.last_index().next();
        for member in members {
            if member != self.id() {
                self.progress.entry(member).or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// With check-quorum, a node that recently heard from a live leader (or is
    /// the leader) ignores vote requests: it cannot be disrupted.
    fn in_lease(&self, now: Time) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        match self.role {
            Role::Leader => true,
            _ => match (self.leader, self.last_leader_contact) {
                (Some(_), Some(contact)) => now.micros_since(contact) < self.config.election_timeout_ms * 1000,
                _ => false,
            },
        }
    }

    fn reset_election_deadline(&mut self, now: Time) {
        let base = self.config.election_timeout_ms * 1000;
        let jitter = self.rng.random_range(0..base);
        self.election_deadline = now.add_micros(base + jitter);
    }

    fn append(&mut self, entry: Entry) {
        let index = entry.index;
        let membership = match &entry.payload {
            Payload::Config(membership) => Some(membership.clone()),
            _ => None,
        };
        self.log.push(entry);
        self.durability.appended(index);
        if let Some(membership) = membership {
            // A configuration takes effect as soon as it is appended.
            self.config_entries.push((index, membership));
            self.refresh_membership();
        }
    }

    fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.commit, "invariant: committed entries are never truncated");
        self.log.truncate_from(index);
        self.config_entries.retain(|(at, _)| *at < index);
        self.refresh_membership();
        self.durability.truncated(index);
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.commit,
            disk: self.disk,
            incarnation: self.incarnation,
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        // A leader's appends and heartbeats depend only on its term, which was
        // durable before it could win; everything else waits for the disk.
        let durable = !(self.role == Role::Leader
            && matches!(
                body,
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } | MessageBody::TimeoutNow
            ));
        self.send_with_term(to, self.term, body, durable);
    }

    fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody, needs_durability: bool) {
        let message =
            Message { from: self.id(), to, term, disk: self.presented_disk(), incarnation: self.incarnation, body };
        if let Some(message) = self.durability.hold_or_send(message, needs_durability) {
            self.actions.push_back(Action::Send(message));
        }
    }

    fn respond(&mut self, request: RequestId, result: ClientResult) {
        self.actions.push_back(Action::Respond { request, result });
    }

    fn event(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }

    fn violation(&mut self, description: String) {
        self.event(Event::Violation { description });
    }

    /// Applies what is committed, then turns this input's changes into one
    /// write.
    ///
    /// Snapshots are taken before applying, so entries applied by one input
    /// stay in the log at least until the next (observers such as the
    /// simulator's checkers see every applied entry).
    fn finish_input(&mut self) {
        if self.batch_open {
            self.batch_open = false;
            self.broadcast_append(false);
        }
        self.maybe_snapshot();
        self.apply_committed();
        self.serve_reads();
        self.serve_local_reads();
        self.flush();
    }

    fn apply_committed(&mut self) {
        let apply_upto = if self.role == Role::Leader && self.config.bug(Bug::AckBeforeCommit) {
            self.log.last_index()
        } else {
            self.commit
        };
        while self.applied < apply_upto {
            let index = self.applied.next();
            let entry = self.log.entry(index).expect("invariant: committed entries are in the log");
            self.bytes_since_snapshot += entry.payload.len_bytes() as u64;
            let answer = match &entry.payload {
                Payload::Noop => None,
                Payload::Command(command) => Some(self.state_machine.apply(index, command)),
                Payload::Read(query) => Some(self.state_machine.query(query)),
                Payload::Config(_) => Some(Vec::new()),
            };
            let entry_term = entry.term;
            self.applied = index;
            let waiting = self.pending_requests.remove(&index).or_else(|| {
                let id = self.forward_placed.remove(&index)?;
                let forwarded = self.forwarded.remove(&id)?;
                Some((forwarded.request, forwarded.placed?.1))
            });
            if let Some((request, term)) = waiting {
                let result = match answer {
                    Some(answer) if term == entry_term => ClientResult::Ok(answer),
                    _ => ClientResult::Dropped(DropReason::LeadershipLost),
                };
                self.respond(request, result);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(request) = self.durability.flush(&self.log, self.hard_state()) {
            self.actions.push_back(Action::Persist(request));
        }
    }

    // ----- snapshots ---------------------------------------------------------

    /// Takes a snapshot of the state machine when the policy says so, and
    /// compacts the log up to `max_retained_entries` before it.
    fn maybe_snapshot(&mut self) {
        let policy = self.config.snapshot_policy;
        let snapshot_index = self.snapshot.as_ref().map_or(LogIndex::ZERO, |snapshot| snapshot.meta.index);
        let entries_since = self.applied.0.saturating_sub(snapshot_index.0);
        let due = (policy.entries > 0 && entries_since >= policy.entries)
            || (policy.bytes > 0 && self.bytes_since_snapshot >= policy.bytes);
        if !due || self.applied <= snapshot_index {
            return;
        }
        self.take_snapshot(true);
    }

    /// Snapshots the state machine at the applied index and, with `compact`,
    /// discards the log up to `max_retained_entries` before it.
    fn take_snapshot(&mut self, compact: bool) {
        let index = self.applied;
        let term = self.log.term(index).expect("invariant: applied entries past the snapshot are in the log");
        let meta = SnapshotMeta { index, term, membership: self.membership_at(index).clone() };
        if let Err(error) = meta.membership.validate() {
            panic!("invariant: a snapshot at {index} records a valid configuration, not one where {error}");
        }
        let snapshot = Snapshot { meta, data: self.state_machine.snapshot() };
        let discard_upto = LogIndex(index.0.saturating_sub(self.config.max_retained_entries));
        if compact && discard_upto > self.log.offset() {
            self.compact_log(discard_upto);
            self.durability.discard_upto(discard_upto);
        }
        self.bytes_since_snapshot = 0;
        self.durability.store_snapshot(snapshot.clone());
        self.snapshot = Some(snapshot);
    }

    /// Drops log entries up to `upto`, remembering the configuration in force
    /// there.
    fn compact_log(&mut self, upto: LogIndex) {
        self.base_membership = self.membership_at(upto).clone();
        self.config_entries.retain(|(at, _)| *at > upto);
        self.log.compact(upto);
    }

    /// One chunk of the leader's snapshot.
    fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total_bytes: u64,
        chunk: Vec<u8>,
    ) {
        let index = meta.index;
        if index <= self.commit && !self.config.bug(Bug::SnapshotOverNewerLog) {
            // We already hold everything it covers.
            let match_index = self.commit;
            self.send(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }));
            return;
        }
        if total_bytes > self.config.max_snapshot_bytes {
            self.violation(format!(
                "{from} sent a snapshot of {total_bytes} bytes, more than max_snapshot_bytes {}",
                self.config.max_snapshot_bytes
            ));
            return;
        }
        // Chunks fit together only if they come from one leader's term (two
        // nodes' snapshots of one index need not be byte-identical).
        let source = (from, self.term);
        let same = |incoming: &IncomingSnapshot| {
            incoming.meta == meta && incoming.total_bytes == total_bytes && incoming.source == source
        };
        if offset == 0 && !self.incoming_snapshot.as_ref().is_some_and(same) {
            // The first chunk of a new snapshot replaces any other.
            let meta = meta.clone();
            self.incoming_snapshot = Some(IncomingSnapshot { meta, total_bytes, source, data: Vec::new() });
        }
        let incoming = self.incoming_snapshot.as_mut().filter(|incoming| same(incoming));
        let Some(incoming) = incoming else {
            // A chunk of a snapshot we are not receiving: start over.
            self.send(from, MessageBody::SnapshotChunkResponse { index, received: 0 });
            return;
        };
        if offset == incoming.data.len() as u64 {
            incoming.data.extend_from_slice(&chunk);
        }
        let received = incoming.data.len() as u64;
        if received < total_bytes {
            self.send(from, MessageBody::SnapshotChunkResponse { index, received });
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("checked above");
        self.install_snapshot(from, Snapshot { meta: incoming.meta, data: incoming.data });
    }

    fn install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let meta = snapshot.meta.clone();
        if let Err(error) = self.state_machine.restore(&snapshot.data) {
            self.violation(format!("{from} sent a snapshot at {} the state machine rejected: {error}", meta.index));
            return;
        }
        if self.log.term(meta.index) == Some(meta.term) && !self.config.bug(Bug::SnapshotOverNewerLog) {
            // Our log continues the snapshot: keep what follows it.
            self.compact_log(meta.index);
            self.base_membership = meta.membership.clone();
        } else {
            self.log.reset(meta.index, meta.term);
            self.config_entries.clear();
            self.base_membership = meta.membership.clone();
            let persisted = self.log.persisted();
            self.durability.reset_log(meta.index.next(), persisted);
        }
        self.durability.discard_upto(meta.index);
        self.commit = if self.config.bug(Bug::SnapshotOverNewerLog) { meta.index } else { self.commit.max(meta.index) };
        self.applied = meta.index;
        self.bytes_since_snapshot = 0;
        self.refresh_membership();
        self.event(Event::SnapshotInstalled { index: meta.index, term: meta.term });
        self.durability.store_snapshot(snapshot.clone());
        self.snapshot = Some(snapshot);
        let match_index = meta.index;
        self.send(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }));
    }

    // ----- membership changes ---------------------------------------------------

    fn start_membership_change(&mut self, request: RequestId, change: MembershipChange) -> Result<(), ChangeError> {
        if self.role != Role::Leader {
            return Err(ChangeError::NotLeader);
        }
        let latest_index = self.config_entries.last().map_or(LogIndex::ZERO, |(index, _)| *index);
        if self.membership.is_joint() || latest_index > self.commit {
            return Err(ChangeError::ChangeInFlight);
        }
        let current = self.membership.clone();
        let mut next = current.clone();
        // A learner is ready to vote once it holds everything committed, on
        // a disk we know.
        let caught_up = |node: NodeId| -> Result<DiskId, ChangeError> {
            let progress = self.progress.get(&node).ok_or(ChangeError::NotMember(node))?;
            match progress.disk {
                Some(disk) if progress.match_index >= self.commit => Ok(disk),
                _ => Err(ChangeError::NotCaughtUp(node)),
            }
        };
        let voters_change = match change {
            MembershipChange::AddLearner(node) => {
                if current.members().contains(&node) || node == self.id() {
                    return Err(ChangeError::AlreadyMember(node));
                }
                next.learners.insert(node);
                false
            }
            MembershipChange::Promote(node) => {
                if !current.is_learner(node) {
                    return Err(ChangeError::NotLearner(node));
                }
                let disk = caught_up(node)?;
                next.learners.remove(&node);
                next.voters.insert(node, disk);
                true
            }
            MembershipChange::Remove(node) => {
                if current.is_learner(node) {
                    next.learners.remove(&node);
                    false
                } else if current.voters.contains_key(&node) {
                    next.voters.remove(&node);
                    true
                } else {
                    return Err(ChangeError::NotMember(node));
                }
            }
            MembershipChange::Replace { remove, add } => {
                if !current.voters.contains_key(&remove) {
                    return Err(ChangeError::NotVoter(remove));
                }
                if !current.is_learner(add) {
                    return Err(ChangeError::NotLearner(add));
                }
                let disk = caught_up(add)?;
                next.voters.remove(&remove);
                next.learners.remove(&add);
                next.voters.insert(add, disk);
                true
            }
            MembershipChange::RenewDisk(node) => {
                let Some(recorded) = current.voters.get(&node).copied() else {
                    return Err(ChangeError::NotVoter(node));
                };
                let disk = if node == self.id() { self.disk } else { caught_up(node)? };
                if disk == recorded {
                    return Err(ChangeError::DiskCurrent(node));
                }
                next.voters.insert(node, disk);
                true
            }
        };
        next.validate()?;
        // Refuse a voter set that could not commit anything right now (as
        // etcd's strict reconfiguration check does): a majority of the new
        // voters must be caught up on the disk the configuration records and
        // heard from within an election timeout. Otherwise the change could
        // never commit, and with it blocked no repair (such as renewing a
        // lost disk) could follow.
        let now = self.now;
        let window_us = self.config.election_timeout_ms * 1000;
        let healthy = next.quorum_value(|node, disk| {
            let caught_up = if node == self.id() {
                disk == self.disk
            } else {
                self.progress.get(&node).is_some_and(|progress| {
                    progress.disk == Some(disk)
                        && progress.match_index >= self.commit
                        && progress.last_heard.is_some_and(|heard| now.micros_since(heard) < window_us)
                })
            };
            u64::from(caught_up)
        });
        if voters_change && healthy == 0 {
            return Err(ChangeError::WouldLoseQuorum);
        }
        if voters_change && !self.config.bug(Bug::NoJointConsensus) {
            next.outgoing = current.voters.clone();
        }
        let index = self.log.last_index().next();
        self.append(Entry { index, term: self.term, payload: Payload::Config(next) });
        self.pending_requests.insert(index, (request, self.term));
        self.broadcast_append(false);
        self.maybe_commit();
        Ok(())
    }

    // ----- proposal forwarding ---------------------------------------------------

    /// A new tag for a request this node sends the leader.
    fn next_tag(&mut self) -> RequestTag {
        let seq = self.next_request_seq;
        self.next_request_seq += 1;
        RequestTag { disk: self.disk, incarnation: self.tag_incarnation(), seq }
    }

    /// The `seq` of a tag this life of this node made, or `None` for a tag
    /// of another disk or an earlier life.
    fn own_seq(&self, tag: RequestTag) -> Option<u64> {
        (tag.disk == self.disk && tag.incarnation == self.tag_incarnation()).then_some(tag.seq)
    }

    /// The incarnation this life's tags carry (the bug `request-ids-reused`
    /// makes every life the same).
    fn tag_incarnation(&self) -> u64 {
        if self.config.bug(Bug::RequestIdsReused) {
            0
        } else {
            self.incarnation
        }
    }

    fn forward_proposal(&mut self, now: Time, request: RequestId, command: Vec<u8>) {
        let leader = self.leader.expect("forwarding needs a known leader");
        if command.len() > self.config.max_command_bytes {
            return self.respond(request, ClientResult::Dropped(DropReason::TooLarge));
        }
        if self.forwarded.len() >= self.config.max_forwarded_proposals {
            return self.respond(request, ClientResult::Dropped(DropReason::Overloaded));
        }
        let id = self.next_tag();
        let deadline = now.add_millis(self.config.election_timeout_ms * FORWARD_TIMEOUT_ELECTIONS);
        self.forwarded.insert(id.seq, Forwarded { request, placed: None, deadline });
        self.send(leader, MessageBody::Forward { id, command });
    }

    /// A leader appends a forwarded proposal like its own, but the answer is
    /// where it was placed: the follower answers its client when it applies
    /// that entry.
    fn handle_forward(&mut self, from: NodeId, id: RequestTag, command: Vec<u8>) {
        let outcome = if self.role != Role::Leader || self.transfer.is_some() {
            ForwardOutcome::NotLeader
        } else if command.len() > self.config.max_command_bytes {
            ForwardOutcome::TooLarge
        } else if self.pending_requests.len() >= self.config.max_pending_requests {
            ForwardOutcome::Overloaded
        } else {
            let index = self.log.last_index().next();
            self.append(Entry { index, term: self.term, payload: Payload::Command(command) });
            self.broadcast_append(false);
            ForwardOutcome::Placed { index, term: self.term }
        };
        self.send(from, MessageBody::ForwardResponse { id, outcome });
    }

    fn handle_forward_response(&mut self, tag: RequestTag, outcome: ForwardOutcome) {
        let Some(id) = self.own_seq(tag) else {
            return; // for an earlier life of this node (seed 55657)
        };
        let Some(forwarded) = self.forwarded.get_mut(&id) else {
            return; // already answered (timed out) or a duplicate
        };
        if forwarded.placed.is_some() {
            return;
        }
        let refusal = match outcome {
            ForwardOutcome::Placed { index, term } => {
                if index <= self.applied {
                    // Applied before we knew where it went: the outcome is
                    // whatever that entry was, which we can no longer tell.
                    let request = forwarded.request;
                    self.forwarded.remove(&id);
                    return self.respond(request, ClientResult::Dropped(DropReason::LeadershipLost));
                }
                forwarded.placed = Some((index, term));
                self.forward_placed.insert(index, id);
                return;
            }
            ForwardOutcome::NotLeader => ClientResult::NoLeader,
            ForwardOutcome::Overloaded => ClientResult::Dropped(DropReason::Overloaded),
            ForwardOutcome::TooLarge => ClientResult::Dropped(DropReason::TooLarge),
        };
        let request = forwarded.request;
        self.forwarded.remove(&id);
        self.respond(request, refusal);
    }

    /// Gives up on forwarded proposals the leader has not answered in time;
    /// their outcome is unknown.
    fn expire_forwarded(&mut self, now: Time) {
        let expired: Vec<u64> =
            self.forwarded.iter().filter(|(_, forwarded)| now >= forwarded.deadline).map(|(id, _)| *id).collect();
        for id in expired {
            let forwarded = self.forwarded.remove(&id).expect("listed above");
            if let Some((index, _)) = forwarded.placed {
                self.forward_placed.remove(&index);
            }
            self.respond(forwarded.request, ClientResult::Dropped(DropReason::LeadershipLost));
        }
    }
}

/// Checks what a peer cannot be trusted to get right: the shape of an append.
fn validate_message(message: &Message) -> Result<(), String> {
    if message.term > MAX_PEER_TERM {
        // Accepting a term at the limit would leave no room for elections:
        // one such message would stop the cluster for good.
        return Err(format!("term {} is beyond {MAX_PEER_TERM}, the highest a node accepts", message.term));
    }
    let indexes: &[LogIndex] = match &message.body {
        MessageBody::RequestVote { last_log_index, .. } => &[*last_log_index],
        MessageBody::AppendEntries { prev_log_index, leader_commit, .. } => &[*prev_log_index, *leader_commit],
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => &[*match_index],
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected { rejected_prev_index, hint }) => {
            &[*rejected_prev_index, hint.first_index]
        }
        MessageBody::Heartbeat { commit, .. } => &[*commit],
        MessageBody::InstallSnapshot { meta, .. } => &[meta.index],
        MessageBody::SnapshotChunkResponse { index, .. } => &[*index],
        MessageBody::ForwardResponse { outcome: ForwardOutcome::Placed { index, .. }, .. } => &[*index],
        MessageBody::ReadIndexResponse { index: Some(index), .. } => &[*index],
        MessageBody::RequestVoteResponse { .. }
        | MessageBody::HeartbeatResponse { .. }
        | MessageBody::TimeoutNow
        | MessageBody::Forward { .. }
        | MessageBody::ForwardResponse { .. }
        | MessageBody::ReadIndex { .. }
        | MessageBody::ReadIndexResponse { .. } => &[],
    };
    if let MessageBody::InstallSnapshot { meta, offset, total_bytes, chunk } = &message.body {
        if meta.term > message.term {
            return Err(format!("snapshot term {} is after the message term {}", meta.term, message.term));
        }
        if meta.index == LogIndex::ZERO {
            return Err("a snapshot ends at index 0".into());
        }
        if offset.checked_add(chunk.len() as u64).is_none_or(|end| end > *total_bytes) {
            return Err(format!("a chunk at {offset} of {} bytes overruns the snapshot's {total_bytes}", chunk.len()));
        }
        meta.membership.validate().map_err(|error| format!("snapshot configuration: {error}"))?;
    }
    if let MessageBody::RequestVote { pre_vote: true, transfer: true, .. } = message.body {
        return Err("a pre-vote request claims to come from a leadership transfer".into());
    }
    if let Some(index) = indexes.iter().find(|index| **index > MAX_LOG_INDEX) {
        return Err(format!("index {index} is beyond the limit {MAX_LOG_INDEX}"));
    }
    if let MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, .. } = &message.body {
        if entries.len() > MAX_ENTRIES_PER_MESSAGE {
            return Err(format!("{} entries, more than {MAX_ENTRIES_PER_MESSAGE}", entries.len()));
        }
        if *prev_log_term > message.term {
            return Err(format!("previous entry term {prev_log_term} is after the message term {}", message.term));
        }
        let mut expected_index = prev_log_index.next();
        let mut previous_term = *prev_log_term;
        for entry in entries {
            if entry.index != expected_index {
                return Err(format!("entry {} where {} was expected", entry.index, expected_index));
            }
            if entry.term < previous_term || entry.term > message.term {
                return Err(format!("entry {} has out-of-order term {}", entry.index, entry.term));
            }
            if let Payload::Config(membership) = &entry.payload {
                membership.validate().map_err(|error| format!("entry {} configuration: {error}", entry.index))?;
            }
            expected_index = expected_index.next();
            previous_term = entry.term;
        }
    }
    Ok(())
}
