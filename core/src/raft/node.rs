//! The Raft node: one sans-IO state machine per member.

use super::bug::Bug;
use super::config::{Config, ConfigError, ReadMode};
use super::forward::Forwarder;
use super::log::RaftLog;
use super::membership::{ChangeError, DiskId, Membership, MembershipChange};
use super::message::{Entry, ForwardOutcome, Message, MessageBody, MessageError, Payload, Snapshot};
use super::output::{Action, ClientResult, DropReason, Event, Status};
use super::persist::{Durability, DurableState, HardState, PersistId, RestartError};
use super::progress::Progress;
use super::read::{LocalRead, ReadConsistency, ReadQueue};
use super::snapshot::IncomingSnapshot;
use super::transfer::{Transfer, TransferError};
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, NodeId, RequestId, Term, Time, MAX_TERM_JUMP};
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// A forwarded proposal not answered by the leader within this many election
/// timeouts (or, once placed, not applied here within them) is answered
/// `Dropped(LeadershipLost)`: its outcome is unknown.
pub const FORWARD_TIMEOUT_ELECTIONS: u64 = 10;

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Follows the leader it knows of, if any; votes; campaigns when the
    /// election timeout passes without word from a leader.
    Follower,
    /// Asking for pre-votes; the term has not been incremented.
    PreCandidate,
    /// Campaigning in a term it started; voted for itself.
    Candidate,
    /// Leads its term: takes proposals and reads, replicates, commits.
    Leader,
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
    pub(super) config: Config,
    /// This node's disk.
    pub(super) disk: DiskId,
    pub(super) rng: ChaCha8Rng,
    pub(super) state_machine: S,
    /// The latest input's time.
    pub(super) now: Time,

    /// The configuration in force: the latest in the log, else `base_membership`.
    pub(super) membership: Membership,
    /// The configuration in force at the log's offset (from the snapshot, or
    /// the bootstrap configuration).
    pub(super) base_membership: Membership,
    /// Configuration entries held in the log, in index order.
    pub(super) config_entries: Vec<(LogIndex, Membership)>,
    /// The latest snapshot (durable, or part of a pending write).
    pub(super) snapshot: Option<Snapshot>,
    /// A snapshot being received from the leader.
    pub(super) incoming_snapshot: Option<IncomingSnapshot>,
    /// Payload bytes applied since the latest snapshot.
    pub(super) bytes_since_snapshot: u64,
    /// Proposals forwarded to the leader, by forward id.
    pub(super) forwarded: Forwarder,
    /// Reads this node answers from its own state (session, stale, and
    /// follower reads), by id.
    pub(super) local_reads: BTreeMap<u64, LocalRead>,
    /// Proposals were appended since the last replication and write.
    pub(super) batch_open: bool,
    /// The next `seq` of this life's [`RequestTag`]s.
    pub(super) next_request_seq: u64,
    /// This life of this disk (see [`HardState::incarnation`]).
    pub(super) incarnation: u64,

    pub(super) term: Term,
    pub(super) voted_for: Option<NodeId>,
    pub(super) log: RaftLog,
    pub(super) commit: LogIndex,
    pub(super) applied: LogIndex,

    pub(super) role: Role,
    pub(super) leader: Option<NodeId>,
    /// Answers to this node's campaign, by the voter and the disk it answered from.
    pub(super) votes: BTreeMap<(NodeId, DiskId), bool>,
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Client requests appended by this leader: index, request and term, in
    /// index order (appended in that order, applied in that order).
    pub(super) pending_requests: VecDeque<(LogIndex, RequestId, Term)>,
    /// Reads waiting for leadership confirmation and apply (leader only).
    pub(super) reads: ReadQueue,
    /// Number of the last heartbeat round sent. Grows across terms, so an
    /// answer can never be mistaken for one to a later round.
    pub(super) read_context: u64,
    /// A leadership transfer in progress (leader only).
    pub(super) transfer: Option<Transfer>,
    /// No lease reads before this time: a `TimeoutNow` we sent lets its
    /// target win votes despite the followers' leases.
    pub(super) lease_suspended_until: Time,

    pub(super) election_deadline: Time,
    pub(super) heartbeat_deadline: Time,
    pub(super) check_quorum_deadline: Time,
    pub(super) last_leader_contact: Option<Time>,
    /// `(term, index)`: our log is known to hold exactly what the leader of
    /// `term` holds up to `index` (we accepted its append or installed its
    /// snapshot). A heartbeat or `Quiesce` advances our commit only up to
    /// it: the leader caps the commit it sends at the match it recorded for
    /// us, which is stale if we lost our log since (a wiped disk; 3-node
    /// seed 4474 committed another term's entries that way).
    pub(super) leader_match: (Term, LogIndex),
    /// Quiesced: no election or heartbeat timer (see `quiesce.rs`).
    pub(super) quiesced: bool,
    /// The last client or operator request (a leader quiesces only after
    /// `quiesce_after_ms` without one).
    pub(super) idle_since: Time,

    /// Writes issued and acknowledged, and the messages that wait for them.
    pub(super) durability: Durability,
    pub(super) actions: VecDeque<Action>,
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
    /// The state machine is rebuilt up to the commit index the disk recorded,
    /// which may lag what the cluster had committed (the commit index is
    /// stored with other writes, not on its own); the rest is applied once
    /// the leader's next append or heartbeat tells the node. For a disk with
    /// no snapshot that was bootstrapped by [`RaftNode::new`], the initial
    /// configuration is `config.voters`: pass the same voters as at
    /// bootstrap.
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
    pub(super) fn start_life(&mut self, durable: HardState) {
        self.durability = Durability::new(durable, self.config.max_held_messages);
        self.durability.hard_state_changed();
        self.flush();
    }

    pub(super) fn build(
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
            forwarded: Forwarder::default(),
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
            pending_requests: VecDeque::new(),
            reads: ReadQueue::default(),
            read_context: 0,
            transfer: None,
            lease_suspended_until: now,
            election_deadline: now,
            heartbeat_deadline: now,
            check_quorum_deadline: now,
            last_leader_contact: None,
            leader_match: (Term(0), LogIndex::ZERO),
            quiesced: false,
            idle_since: now,
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

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The role in the current term.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node currently follows (itself when leader).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The highest log index this node knows committed.
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }

    /// The highest log index applied to the state machine. After draining
    /// the actions of an input, every answer drained reflects at least this
    /// state (the token for session reads).
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }

    /// The index of the last entry in the log (durable or not).
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The entry at `index`, if the log still holds it (not compacted, not
    /// past the end).
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The term of the entry at `index`, if the log still knows it (entries
    /// compacted into the snapshot are forgotten, except the last one).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The hard state as of the last acknowledged write.
    pub fn durable_hard_state(&self) -> HardState {
        self.durability.durable_hard_state()
    }

    /// A snapshot of the node's state, for observers (status pages, the
    /// simulator's checkers, tests).
    pub fn status(&self) -> Status {
        Status {
            id: self.id(),
            role: self.role,
            term: self.term,
            voted_for: self.voted_for,
            leader: self.leader,
            disk: self.disk,
            incarnation: self.incarnation,
            is_voter: self.self_votes(),
            may_campaign: self.may_campaign(),
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            persisted_index: self.log.persisted(),
            commit_index: self.commit,
            applied_index: self.applied,
            held_message_count: self.durability.held_count(),
            pending_read_count: self.reads.len(),
            local_read_count: self.local_reads.len(),
            transfer_target: self.transfer.map(|transfer| transfer.target),
        }
    }
    /// The state machine, as applied up to [`applied_index`](Self::applied_index).
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// The configuration in force on this node (the latest it has appended).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The log index of the configuration in force (the snapshot's or the
    /// bootstrap's base when no configuration entry is in the log).
    pub fn membership_index(&self) -> LogIndex {
        self.config_entries.last().map_or(self.log.offset(), |(index, _)| *index)
    }

    /// The latest configuration known to be committed on this node.
    pub fn committed_membership(&self) -> &Membership {
        self.membership_at(self.commit)
    }

    /// The latest snapshot this node holds.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The leader's view of `peer`'s match index (leader only).
    pub fn match_index(&self, peer: NodeId) -> Option<LogIndex> {
        self.progress.get(&peer).map(|progress| progress.match_index)
    }

    /// The disk `peer` last answered this leader from (leader only).
    pub fn peer_disk(&self, peer: NodeId) -> Option<DiskId> {
        self.progress.get(&peer).and_then(|progress| progress.disk)
    }

    /// The next action to perform, in order.
    ///
    /// Proposals are batched: those made before the driver polls are
    /// replicated in one append per follower and made durable in one write.
    #[must_use = "every action must be performed, in order"]
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.batch_open {
            self.finish_input();
        }
        self.actions.pop_front()
    }

    /// When the node next needs [`handle_timeout`](Self::handle_timeout).
    #[must_use]
    pub fn poll_timeout(&self) -> Time {
        // Scans only what is held: usually nothing.
        let reads =
            if self.local_reads.is_empty() { None } else { self.local_reads.values().map(|read| read.deadline).min() };
        let forwarded = match (self.forwarded.deadline(), reads) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let role_deadline = match self.role {
            _ if self.quiesced => Time::from_micros(u64::MAX),
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

    /// Handles a message from a peer. A message that is malformed, breaks a
    /// limit, or is not meant for this node is rejected whole, before any of
    /// it takes effect (as the SWIM node does). Input that is well formed but
    /// breaks the protocol given this node's state (a second leader in one
    /// term, say) is ignored with an [`Event::Violation`].
    pub fn handle_message(&mut self, now: Time, message: Message) -> Result<(), MessageError> {
        self.now = now;
        let checked = self.check_message(&message);
        if checked.is_ok() {
            self.step(now, message);
        }
        self.finish_input();
        checked
    }

    /// What makes a message unacceptable whatever it says: the wrong
    /// addressee or sender, a malformed body, or a term further ahead of ours
    /// than any run of elections explains.
    fn check_message(&self, message: &Message) -> Result<(), MessageError> {
        if message.to != self.id() {
            return Err(MessageError::Misaddressed { to: message.to });
        }
        if message.from == self.id() {
            return Err(MessageError::FromSelf);
        }
        message.validate()?;
        if message.term.0 > self.term.0.saturating_add(MAX_TERM_JUMP) {
            return Err(MessageError::TermJump { term: message.term, ours: self.term });
        }
        Ok(())
    }

    /// Lets time pass: fires any expired election, heartbeat, check-quorum or
    /// leadership-transfer deadline.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        self.expire_forwarded(now);
        match self.role {
            _ if self.quiesced => {}
            Role::Leader => {
                if let Some(transfer) = self.transfer.filter(|transfer| now >= transfer.deadline) {
                    // The target did not take over within an election
                    // timeout: take writes again.
                    self.transfer = None;
                    self.event(Event::TransferAbandoned { target: transfer.target, term: self.term });
                }
                if now >= self.heartbeat_deadline && !self.maybe_quiesce(now) {
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
    pub fn propose(&mut self, now: Time, request: RequestId, command: impl Into<Bytes>) {
        self.now = now;
        self.busy(now);
        let command = command.into();
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
        self.busy(now);
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
        self.busy(now);
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
        self.busy(now);
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
    ///
    /// Like any input, call it between drains, not while draining: finish
    /// draining [`poll_action`](Self::poll_action), perform the writes, then
    /// acknowledge the last one (acknowledging it acknowledges the earlier
    /// ones) and drain again.
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

    pub(super) fn step(&mut self, now: Time, message: Message) {
        let from = message.from;
        if self.quiesced
            && matches!(message.body, MessageBody::RequestVote { transfer: false, .. })
            && !self.membership.members().contains(&from)
        {
            // A quiesced node ignores a campaign from outside its
            // configuration, as one in a leader's lease does: a node that
            // never learned of its removal would otherwise keep the group
            // beating forever. A member's campaign wakes it like any message
            // (a follower then withholds its vote for an election timeout and
            // asks its leader to resume; a restarted member needs the leader's
            // heartbeats, and if the leader is gone the vote follows).
            return;
        }
        self.wake_for_message(now, from, &message.body, message.term);
        if message.term > self.term {
            match &message.body {
                // A candidate the leader told to campaign may interrupt the lease.
                MessageBody::RequestVote { transfer: false, .. } if self.in_lease(now) => return,
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse { pre_vote: true, granted: true } => {}
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } | MessageBody::Quiesce { .. } => {
                    self.become_follower(now, message.term, Some(from));
                }
                _ => self.become_follower(now, message.term, None),
            }
        } else if message.term < self.term {
            match message.body {
                // A stale leader learns our term from the answer and steps down.
                MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } | MessageBody::Quiesce { .. } => {
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
    pub(super) fn step_body(&mut self, now: Time, from: NodeId, message: Message) {
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
                if self.accept_leader(now, from) {
                    self.handle_heartbeat(from, commit, read_context);
                }
            }
            MessageBody::HeartbeatResponse { read_context } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(now, from, read_context);
                    self.maybe_send_timeout_now(now);
                }
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
                self.idle_since = now;
                self.handle_forward(from, id, command)
            }
            MessageBody::ReadIndex { id, allow_lease } if self.membership.members().contains(&from) => {
                self.idle_since = now;
                self.handle_read_index(from, id, allow_lease)
            }
            MessageBody::Forward { .. } | MessageBody::ReadIndex { .. } => {}
            MessageBody::ReadIndexResponse { id, index } => self.handle_read_index_response(id, index),
            MessageBody::ForwardResponse { id, outcome } => self.handle_forward_response(id, outcome),
            MessageBody::Quiesce { commit } => self.handle_quiesce(now, from, commit),
            // `wake_for_message` did what a wake asks.
            MessageBody::Wake => {}
        }
    }

    pub(super) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.commit,
            disk: self.disk,
            incarnation: self.incarnation,
        }
    }

    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        // A leader's appends and heartbeats depend only on its term, which was
        // durable before it could win; everything else waits for the disk.
        let durable = !(self.role == Role::Leader
            && matches!(
                body,
                MessageBody::AppendEntries { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::TimeoutNow
                    | MessageBody::Quiesce { .. }
            ));
        self.send_with_term(to, self.term, body, durable);
    }

    pub(super) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody, needs_durability: bool) {
        let message =
            Message { from: self.id(), to, term, disk: self.presented_disk(), incarnation: self.incarnation, body };
        if let Some(message) = self.durability.hold_or_send(message, needs_durability) {
            self.actions.push_back(Action::Send(message));
        }
    }

    pub(super) fn respond(&mut self, request: RequestId, result: ClientResult) {
        self.actions.push_back(Action::Respond { request, result });
    }

    pub(super) fn event(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }

    pub(super) fn violation(&mut self, description: String) {
        self.event(Event::Violation { description });
    }

    /// Applies what is committed, then turns this input's changes into one
    /// write.
    ///
    /// Snapshots are taken before applying, so entries applied by one input
    /// stay in the log at least until the next (observers such as the
    /// simulator's checkers see every applied entry).
    pub(super) fn finish_input(&mut self) {
        if self.batch_open {
            self.batch_open = false;
            self.broadcast_append(false);
        }
        self.drop_stale_incoming_snapshot();
        self.maybe_snapshot();
        self.apply_committed();
        self.serve_reads();
        self.serve_local_reads();
        self.flush();
        self.check_invariants();
    }

    /// Internal invariants, checked after every input in debug builds and
    /// with the `check-invariants` feature (the simulator enables it). A
    /// broken one panics: it is a bug in this node, never bad peer input.
    fn check_invariants(&self) {
        if !cfg!(any(debug_assertions, feature = "check-invariants")) {
            return;
        }
        let last = self.log.last_index();
        let applied_past_commit = self.config.bug(Bug::AckBeforeCommit);
        assert!(self.applied <= self.commit || applied_past_commit, "invariant: applied <= commit");
        assert!(self.commit <= last, "invariant: commit {} <= last index {last}", self.commit);
        assert!(self.log.offset() <= self.applied, "invariant: only applied entries are compacted");
        assert!(self.log.persisted() <= last, "invariant: persisted <= last index");
        assert!(self.log.last_term() <= self.term, "invariant: the log's last term <= the current term");
        self.durability.check_invariants();
        assert!(
            !self.quiesced || matches!(self.role, Role::Leader | Role::Follower) && self.leader.is_some(),
            "invariant: only a leader or a follower that knows its leader is quiesced"
        );
        let indexes = self.config_entries.iter().map(|(index, _)| *index);
        assert!(
            indexes.clone().zip(indexes.skip(1)).all(|(a, b)| a < b),
            "invariant: configuration entries are sorted by index"
        );
        assert!(
            self.config_entries.iter().all(|(index, _)| *index > self.log.offset() && *index <= last),
            "invariant: configuration entries are in the log"
        );
        let latest = self.config_entries.last().map_or(&self.base_membership, |(_, membership)| membership);
        assert_eq!(&self.membership, latest, "invariant: the latest configuration is in force");
        assert!(self.forwarded.len() <= self.config.max_forwarded_proposals, "invariant: forwarded bound");
        assert!(self.local_reads.len() <= self.config.max_pending_reads, "invariant: local read bound");
        assert!(self.reads.len() <= self.leader_read_limit(), "invariant: leader read bound");
        assert!(
            self.pending_requests.front().is_none_or(|(index, ..)| *index > self.applied)
                && self.pending_requests.iter().zip(self.pending_requests.iter().skip(1)).all(|(a, b)| a.0 < b.0),
            "invariant: appended requests wait past the applied index, in index order"
        );
        if self.role == Role::Leader {
            assert_eq!(self.leader, Some(self.id()), "invariant: a leader follows itself");
            assert!(self.votes.is_empty(), "invariant: a leader holds no votes");
        } else {
            assert!(self.progress.is_empty(), "invariant: only a leader tracks progress");
            assert!(self.reads.is_empty(), "invariant: only a leader holds reads");
            assert!(self.transfer.is_none(), "invariant: only a leader transfers leadership");
            assert!(self.pending_requests.is_empty(), "invariant: only a leader holds appended requests");
        }
    }

    pub(super) fn apply_committed(&mut self) {
        let apply_upto = if self.role == Role::Leader && self.config.bug(Bug::AckBeforeCommit) {
            self.log.last_index()
        } else {
            self.commit
        };
        while self.applied < apply_upto {
            let index = self.applied.next();
            let entry = self.log.entry(index).expect("invariant: committed entries are in the log");
            self.bytes_since_snapshot += entry.payload.len_bytes() as u64;
            let entry_term = entry.term;
            let waiting =
                take_pending_request(&mut self.pending_requests, index).or_else(|| self.forwarded.take_applied(index));
            // Only the node answering the client builds the answer, and a
            // follower whose forwarded proposal the leader has not yet
            // placed (this entry may be it: the commit can overtake the
            // leader's answer).
            let answered = waiting.is_some_and(|(_, term)| term == entry_term);
            let early = waiting.is_none() && self.forwarded.awaits_placement();
            let answer = match &entry.payload {
                Payload::Noop => None,
                Payload::Command(command) if answered || early => Some(self.state_machine.apply(index, command)),
                Payload::Command(command) => {
                    self.state_machine.apply_unanswered(index, command);
                    None
                }
                Payload::Read(query) => answered.then(|| self.state_machine.query(query)),
                Payload::Config(_) => Some(Vec::new()),
            };
            self.applied = index;
            if let (true, Some(answer)) = (early, answer.as_ref()) {
                self.forwarded.remember_early(index, entry_term, answer.clone());
            }
            if let Some((request, term)) = waiting {
                let result = match answer {
                    Some(answer) if term == entry_term => ClientResult::Ok(answer),
                    _ => ClientResult::Dropped(DropReason::LeadershipLost),
                };
                self.respond(request, result);
            }
        }
    }

    pub(super) fn flush(&mut self) {
        if let Some(request) = self.durability.flush(&self.log, self.hard_state()) {
            self.actions.push_back(Action::Persist(request));
        }
    }
}

/// The request a leader appended at `index` (now applied), if any: the
/// front of `pending`, which is in index order.
fn take_pending_request(
    pending: &mut VecDeque<(LogIndex, RequestId, Term)>,
    index: LogIndex,
) -> Option<(RequestId, Term)> {
    let (at, request, term) = *pending.front()?;
    if at != index {
        return None;
    }
    pending.pop_front();
    Some((request, term))
}
