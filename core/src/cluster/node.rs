//! [`ClusterNode`]: SWIM, the meta range, the planner and every range's Raft
//! group behind one sans-IO surface.

use super::config::{ClusterConfig, ClusterConfigError};
use super::control::Control;
use super::message::{self, ClusterMessage};
use super::meta::{MetaStore, META_RANGE};
use super::nodemeta::NodeMeta;
use super::output::{ClusterAction, ClusterEvent, ClusterWrite, WritePart};
use super::router::RouteTable;
use crate::partition::RangeId;
use crate::raft::{self, DurableState, PersistRequest, RaftNode, RestartError};
use crate::state_machine::StateMachine;
use crate::swim::{self, Address, SwimNode};
use crate::types::{NodeId, RequestId, Term, Time};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Largest number of rounds of cross-group work one input may cause (a
/// range's answer feeding the meta range, whose answer feeds the planner,
/// ...). Each round drains what the previous one touched.
const MAX_DRAIN_ROUNDS: usize = 16;

/// Largest number of internal and client requests waiting for an answer.
pub const MAX_WAITING_REQUESTS: usize = 1 << 20;

/// Why a cluster node could not restart.
#[derive(Debug, thiserror::Error)]
pub enum ClusterRestartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ClusterConfigError),
    /// One range's stored state could not be restarted from.
    #[error("range {range}: {error}")]
    Range {
        /// The range.
        range: RangeId,
        /// Why.
        error: RestartError,
    },
}

/// One replica this node hosts.
pub(super) struct Hosted<S> {
    pub(super) raft: RaftNode<S>,
    pub(super) created: Time,
    pub(super) leader_term: Option<Term>,
}

/// Who waits for a Raft group's answer to a request this node made.
#[derive(Clone, Debug)]
pub(super) enum Waiter {
    /// A client's request, under the client's id.
    Client(RequestId),
    /// A membership change a meta leader asked for.
    Command(super::hosting::CommandWait),
    /// A descriptor record proposed to the meta range, for an operation.
    MetaRecord { op: Option<u64> },
}

/// A cluster node. See the [module documentation](super).
pub struct ClusterNode<S> {
    pub(super) config: ClusterConfig,
    pub(super) rng: ChaCha8Rng,
    pub(super) now: Time,
    pub(super) swim: SwimNode,
    pub(super) meta: Option<RaftNode<MetaStore>>,
    /// The bootstrap layout cut into meta commands (computed when first
    /// needed, on a meta leader of a new cluster).
    pub(super) bootstrap_parts: Option<Vec<Vec<crate::partition::RangeDescriptor>>>,
    pub(super) ranges: BTreeMap<RangeId, Hosted<S>>,
    pub(super) table: RouteTable,
    pub(super) control: Option<Control>,
    pub(super) addresses: BTreeMap<NodeId, Address>,
    pub(super) waiters: BTreeMap<RequestId, (RangeId, Waiter)>,
    pub(super) next_request: u64,
    pub(super) settling: Vec<super::hosting::CommandWait>,
    pub(super) parked: Vec<super::hosting::Parked>,
    pub(super) touched: BTreeSet<RangeId>,
    pub(super) write: Vec<(RangeId, PersistRequest)>,
    pub(super) destroyed: Vec<RangeId>,
    pub(super) unacked: VecDeque<(u64, Vec<WritePart>)>,
    pub(super) next_write: u64,
    pub(super) actions: VecDeque<ClusterAction>,
    /// Raft messages of this input, by peer, sent as one batch each when
    /// the input ends.
    pub(super) outbox: BTreeMap<NodeId, Vec<(RangeId, raft::Message)>>,
    /// Every hosted range's timer, indexed: `poll_timeout` and
    /// `handle_timeout` look at the due ranges only, not at every range.
    pub(super) timers: super::timers::Timers,
    pub(super) next_report: Time,
    pub(super) next_fetch: Time,
    pub(super) published: NodeMeta,
    /// Messages dropped because the addressee's address is unknown.
    pub(super) unaddressable: u64,
    /// Quiesced ranges waiting to wake, a batch per tick.
    pub(super) wakes: super::wakes::Wakes,
}

impl<S: StateMachine + Default> ClusterNode<S> {
    /// A node of a new cluster (with `config.bootstrap` set, the same on
    /// every initial member) or a new node joining one (without).
    pub fn new(config: ClusterConfig, now: Time) -> Result<Self, ClusterConfigError> {
        config.validate()?;
        let mut node = Self::empty(config, now)?;
        if let Some(bootstrap) = node.config.bootstrap.clone() {
            if bootstrap.meta_voters.contains(&node.config.id) {
                let config = node.raft_config(META_RANGE, bootstrap.meta_voters.clone());
                node.meta = Some(RaftNode::new(config, MetaStore::default(), now)?);
                node.touched.insert(META_RANGE);
            }
            node.table.bootstrap(&bootstrap.ranges);
            for descriptor in bootstrap.ranges.iter().filter(|d| d.has_replica(node.config.id)) {
                let config = node.raft_config(descriptor.id, descriptor.voters().collect());
                let raft = RaftNode::new(config, S::default(), now)?;
                node.ranges.insert(descriptor.id, Hosted { raft, created: now, leader_term: None });
                node.touched.insert(descriptor.id);
            }
        }
        node.finish_input();
        Ok(node)
    }

    /// A node restarting from its storage: per range (the meta range under
    /// [`META_RANGE`]) what its disk holds.
    pub fn restart(
        config: ClusterConfig,
        stored: BTreeMap<RangeId, DurableState>,
        now: Time,
    ) -> Result<Self, ClusterRestartError> {
        config.validate()?;
        let mut node = Self::empty(config, now)?;
        for (range, state) in stored {
            if state.is_empty() {
                continue;
            }
            let voters = node.bootstrap_voters(range);
            let config = node.raft_config(range, voters);
            if range == META_RANGE {
                let meta = RaftNode::restart(config, state, MetaStore::default(), now)
                    .map_err(|error| ClusterRestartError::Range { range, error })?;
                node.meta = Some(meta);
            } else {
                let raft = RaftNode::restart(config, state, S::default(), now)
                    .map_err(|error| ClusterRestartError::Range { range, error })?;
                node.ranges.insert(range, Hosted { raft, created: now, leader_term: None });
            }
            node.touched.insert(range);
        }
        if let Some(bootstrap) = node.config.bootstrap.clone() {
            node.table.bootstrap(&bootstrap.ranges);
        }
        node.hold_restarted();
        node.finish_input();
        Ok(node)
    }

    fn empty(config: ClusterConfig, now: Time) -> Result<Self, ClusterConfigError> {
        let published =
            NodeMeta { locality: config.locality.clone(), capacity: config.capacity, ..NodeMeta::default() };
        let mut swim_config = config.swim.clone();
        swim_config.id = config.id;
        swim_config.address = config.address.clone();
        swim_config.seeds = config.seeds.clone();
        swim_config.metadata = published.encode();
        let swim = SwimNode::new(swim_config, now)?;
        let addresses = config.peers.iter().cloned().collect();
        Ok(ClusterNode {
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            now,
            swim,
            meta: None,
            bootstrap_parts: None,
            ranges: BTreeMap::new(),
            table: RouteTable::default(),
            control: None,
            addresses,
            waiters: BTreeMap::new(),
            next_request: 1,
            settling: Vec::new(),
            parked: Vec::new(),
            touched: BTreeSet::new(),
            write: Vec::new(),
            destroyed: Vec::new(),
            unacked: VecDeque::new(),
            next_write: 1,
            actions: VecDeque::new(),
            outbox: BTreeMap::new(),
            timers: super::timers::Timers::default(),
            next_report: now.add_millis(config.report_interval_ms),
            next_fetch: now,
            published,
            unaddressable: 0,
            wakes: super::wakes::Wakes::default(),
            config,
        })
    }

    /// The voters a range was bootstrapped with (what a restart from a disk
    /// without a snapshot needs); empty for a range added later.
    fn bootstrap_voters(&self, range: RangeId) -> Vec<NodeId> {
        let Some(bootstrap) = &self.config.bootstrap else { return Vec::new() };
        if range == META_RANGE {
            return bootstrap.meta_voters.clone();
        }
        bootstrap.ranges.iter().find(|d| d.id == range).map(|d| d.voters().collect()).unwrap_or_default()
    }

    /// The Raft configuration of `range` on this node.
    pub(super) fn raft_config(&self, range: RangeId, voters: Vec<NodeId>) -> raft::Config {
        let mut config = self.config.raft.clone();
        config.id = self.config.id;
        config.voters = voters;
        config.rng_seed = self.config.rng_seed ^ range.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        config
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The SWIM node (membership as this node sees it).
    pub fn swim(&self) -> &SwimNode {
        &self.swim
    }

    /// The meta range's Raft node, if this node holds a replica.
    pub fn meta(&self) -> Option<&RaftNode<MetaStore>> {
        self.meta.as_ref()
    }

    /// The replica of `range` this node hosts.
    pub fn range(&self, range: RangeId) -> Option<&RaftNode<S>> {
        self.ranges.get(&range).map(|hosted| &hosted.raft)
    }

    /// The ranges this node hosts, in id order.
    pub fn hosted(&self) -> impl Iterator<Item = (RangeId, &RaftNode<S>)> + '_ {
        self.ranges.iter().map(|(&id, hosted)| (id, &hosted.raft))
    }

    /// The descriptors this node routes by.
    pub fn routes(&self) -> &RouteTable {
        &self.table
    }

    /// Is this node the active node (the meta range's leader, running the
    /// planner)?
    pub fn is_active(&self) -> bool {
        self.control.is_some()
    }

    /// The planner, while this node is active.
    pub fn planner(&self) -> Option<&crate::partition::Planner> {
        self.control.as_ref().map(|control| &control.planner)
    }

    /// The next action to perform. Drain order: whatever order the node
    /// queued them in; a [`ClusterAction::Persist`] comes after the sends
    /// of the same input that do not depend on it (Raft holds back those
    /// that do until the write is acknowledged).
    pub fn poll_action(&mut self) -> Option<ClusterAction> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Time {
        let mut due = self.swim.poll_timeout().min(self.next_report).min(self.next_fetch);
        if let Some(meta) = &self.meta {
            due = due.min(meta.poll_timeout());
        }
        if let Some(first) = self.timers.first_rounded() {
            due = due.min(first);
        }
        if let Some(control) = &self.control {
            due = due.min(control.poll_timeout());
        }
        if let Some(wakes) = self.wakes.due() {
            due = due.min(wakes);
        }
        due
    }

    /// Time passed: every group whose deadline is due runs.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        if self.swim.poll_timeout() <= now {
            self.swim.handle_timeout(now);
        }
        if let Some(meta) = self.meta.as_mut().filter(|meta| meta.poll_timeout() <= now) {
            meta.handle_timeout(now);
            self.touched.insert(META_RANGE);
        }
        let due: Vec<RangeId> = self.timers.due(now);
        for range in due {
            if let Some(hosted) = self.ranges.get_mut(&range) {
                hosted.raft.handle_timeout(now);
                self.touched.insert(range);
            }
        }
        if now >= self.next_report {
            self.next_report = now.add_millis(self.config.report_interval_ms);
            self.send_reports();
            self.collect_orphans();
        }
        if now >= self.next_fetch {
            self.maybe_fetch_descriptors();
        }
        self.control_timeout();
        self.run_wakes();
        self.finish_input();
    }

    /// Bytes from a peer. Malformed input is dropped and reported as a
    /// [`ClusterEvent::BadMessage`]; it never panics the node.
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        match message::decode(bytes, self.config.max_message_bytes) {
            Ok(message) => self.handle_message(now, message),
            Err(error) => {
                self.now = now;
                self.event(ClusterEvent::BadMessage(error.to_string()));
            }
        }
    }

    /// A message from a peer.
    pub fn handle_message(&mut self, now: Time, message: ClusterMessage) {
        self.now = now;
        match message {
            ClusterMessage::Swim(message) => {
                if let Err(error) = self.swim.handle_message(now, message) {
                    self.event(ClusterEvent::BadMessage(format!("swim: {error}")));
                }
            }
            ClusterMessage::Raft { range, message } => self.raft_message(range, message),
            ClusterMessage::RaftBatch(messages) => {
                for (range, message) in messages.into_iter().take(message::MAX_BATCH_MESSAGES) {
                    self.raft_message(range, message);
                }
            }
            ClusterMessage::Reports { from, reports } => self.handle_reports(from, reports),
            ClusterMessage::Command(command) => self.handle_command(command),
            ClusterMessage::CommandDone { from, op, meta_term, result } => {
                self.handle_command_done(from, op, meta_term, result)
            }
            ClusterMessage::MetaFetch { from } => self.answer_fetch(from),
            ClusterMessage::MetaTable { version, descriptors, leaders, recorded } => {
                if self.table.install(version, descriptors, leaders, recorded) {
                    self.event(ClusterEvent::DescriptorsUpdated(version.0));
                }
            }
        }
        self.finish_input();
    }

    fn raft_message(&mut self, range: RangeId, message: raft::Message) {
        if message.to != self.config.id {
            self.event(ClusterEvent::BadMessage(format!("{range}: message for n{}", message.to.0)));
            return;
        }
        let result = if range == META_RANGE {
            match self.meta.as_mut() {
                Some(meta) => meta.handle_message(self.now, message),
                None => return,
            }
        } else {
            if !self.ranges.contains_key(&range) && !self.create_replica(range, &message) {
                return;
            }
            let hosted = self.ranges.get_mut(&range).expect("created above");
            hosted.raft.handle_message(self.now, message)
        };
        self.touched.insert(range);
        if let Err(error) = result {
            self.event(ClusterEvent::BadMessage(format!("{range}: {error}")));
        }
    }

    /// The write `id` (and every earlier one) is durable.
    pub fn handle_persisted(&mut self, now: Time, id: u64) {
        self.now = now;
        while let Some((write, _)) = self.unacked.front() {
            if *write > id {
                break;
            }
            let (_, parts) = self.unacked.pop_front().expect("front exists");
            for (range, persist) in parts {
                if range == META_RANGE {
                    if let Some(meta) = self.meta.as_mut() {
                        meta.handle_persisted(now, persist);
                    }
                } else if let Some(hosted) = self.ranges.get_mut(&range) {
                    hosted.raft.handle_persisted(now, persist);
                }
                self.touched.insert(range);
            }
        }
        self.finish_input();
    }

    /// A fresh id for a request this node makes of one of its groups.
    pub(super) fn request_id(&mut self, range: RangeId, waiter: Waiter) -> Option<RequestId> {
        if self.waiters.len() >= MAX_WAITING_REQUESTS {
            return None;
        }
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.waiters.insert(id, (range, waiter));
        Some(id)
    }

    pub(super) fn event(&mut self, event: ClusterEvent) {
        self.actions.push_back(ClusterAction::Event(event));
    }

    /// Sends `message` to `to` if its address is known (SWIM's member
    /// table, then the configured peers); otherwise drops it, as a lossy
    /// network would.
    pub(super) fn send(&mut self, to: NodeId, message: ClusterMessage) {
        let address = self
            .swim
            .member(to)
            .map(|member| member.address.clone())
            .or_else(|| self.addresses.get(&to).cloned())
            .or_else(|| (to == self.config.id).then(|| self.config.address.clone()));
        match address {
            Some(to) => self.actions.push_back(ClusterAction::Send { to, message }),
            None => self.unaddressable += 1,
        }
    }

    /// Drains every group the input touched, lets the layers react, and
    /// queues one write for all of it.
    pub(super) fn finish_input(&mut self) {
        for _ in 0..MAX_DRAIN_ROUNDS {
            self.drain_swim();
            let touched = std::mem::take(&mut self.touched);
            for range in &touched {
                if *range == META_RANGE {
                    self.drain_meta();
                } else {
                    self.drain_range(*range);
                }
            }
            self.retry_parked(&touched);
            self.after_groups();
            if self.touched.is_empty() {
                break;
            }
        }
        self.publish_metadata();
        self.flush_outbox();
        self.flush_write();
        if self.config.bug(super::ClusterBug::AckBeforeDurable) {
            self.ack_everything_now();
            self.flush_outbox();
            self.flush_write();
        }
        #[cfg(any(debug_assertions, feature = "check-invariants"))]
        self.check_invariants();
    }

    /// Sends this input's Raft messages: one message per peer when there
    /// is one, batches otherwise, each under [`message::MAX_BATCH_MESSAGES`]
    /// messages and half the message size limit.
    fn flush_outbox(&mut self) {
        let budget = self.config.max_message_bytes / 2;
        for (to, messages) in std::mem::take(&mut self.outbox) {
            let mut batch: Vec<(RangeId, raft::Message)> = Vec::new();
            let mut bytes = 0;
            for (range, message) in messages {
                let size = crate::wire::encoded_len_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(&message);
                if !batch.is_empty() && (bytes + size > budget || batch.len() == message::MAX_BATCH_MESSAGES) {
                    self.send_batch(to, std::mem::take(&mut batch));
                    bytes = 0;
                }
                bytes += size;
                batch.push((range, message));
            }
            self.send_batch(to, batch);
        }
    }

    fn send_batch(&mut self, to: NodeId, mut batch: Vec<(RangeId, raft::Message)>) {
        match batch.len() {
            0 => {}
            1 => {
                let (range, message) = batch.pop().expect("one message");
                self.send(to, ClusterMessage::Raft { range, message });
            }
            _ => self.send(to, ClusterMessage::RaftBatch(batch)),
        }
    }

    fn flush_write(&mut self) {
        if self.write.is_empty() && self.destroyed.is_empty() {
            return;
        }
        let id = self.next_write;
        self.next_write += 1;
        let writes = std::mem::take(&mut self.write);
        let parts = writes.iter().map(|(range, write)| (*range, write.id)).collect();
        self.unacked.push_back((id, parts));
        let destroyed = std::mem::take(&mut self.destroyed);
        self.actions.push_back(ClusterAction::Persist(ClusterWrite { id, writes, destroyed }));
    }

    /// [`ClusterBug::AckBeforeDurable`](super::ClusterBug::AckBeforeDurable):
    /// tells every group its writes are durable before the driver synced
    /// them, and drains what that releases (the write it makes next is
    /// acknowledged the same way, on the next input).
    fn ack_everything_now(&mut self) {
        let parts: Vec<WritePart> = self.unacked.iter().flat_map(|(_, parts)| parts.iter().copied()).collect();
        for (range, persist) in parts {
            if range == META_RANGE {
                if let Some(meta) = self.meta.as_mut() {
                    meta.handle_persisted(self.now, persist);
                }
            } else if let Some(hosted) = self.ranges.get_mut(&range) {
                hosted.raft.handle_persisted(self.now, persist);
            }
            self.touched.insert(range);
        }
        for (_, parts) in self.unacked.iter_mut() {
            parts.clear();
        }
        let touched = std::mem::take(&mut self.touched);
        for range in touched {
            if range == META_RANGE {
                self.drain_meta();
            } else {
                self.drain_range(range);
            }
        }
        self.touched.clear();
    }

    fn drain_swim(&mut self) {
        while let Some(action) = self.swim.poll_action() {
            match action {
                swim::Action::Send { to, message } => {
                    self.actions.push_back(ClusterAction::Send { to, message: ClusterMessage::Swim(message) })
                }
                swim::Action::Event(event) => self.swim_event(event),
            }
        }
    }

    fn drain_meta(&mut self) {
        let Some(meta) = self.meta.as_mut() else { return };
        let mut actions = Vec::new();
        while let Some(action) = meta.poll_action() {
            actions.push(action);
        }
        for action in actions {
            self.raft_action(META_RANGE, action);
        }
        self.meta_changed();
    }

    fn drain_range(&mut self, range: RangeId) {
        let Some(hosted) = self.ranges.get_mut(&range) else { return };
        let mut actions = Vec::new();
        while let Some(action) = hosted.raft.poll_action() {
            actions.push(action);
        }
        for action in actions {
            self.raft_action(range, action);
        }
        self.range_changed(range);
        self.update_timer(range);
    }

    /// Re-indexes `range`'s timer after an input. Leaders' timers
    /// (heartbeats, check-quorum) are rounded up to the heartbeat interval,
    /// so every range this node leads beats at the same instants and a
    /// peer gets one batch per beat; others' (elections) only to the tick.
    pub(super) fn update_timer(&mut self, range: RangeId) {
        let Some(hosted) = self.ranges.get(&range) else {
            self.timers.remove(range);
            return;
        };
        let tick = self.config.tick_ms.saturating_mul(1000).max(1);
        let beat = self.config.raft.heartbeat_interval_ms.saturating_mul(1000).max(1);
        let step = if hosted.raft.role() == raft::Role::Leader { beat } else { tick };
        if self.wakes.held.contains(&range) {
            let never = Time::from_micros(u64::MAX);
            self.timers.set(range, never, never);
            return;
        }
        let raw = hosted.raft.poll_timeout();
        let rounded = Time::from_micros(raw.as_micros().div_ceil(step).saturating_mul(step));
        self.timers.set(range, raw, rounded);
    }

    fn raft_action(&mut self, range: RangeId, action: raft::Action) {
        match action {
            raft::Action::Send(message) => self.outbox.entry(message.to).or_default().push((range, message)),
            raft::Action::Persist(write) => self.write.push((range, write)),
            raft::Action::Respond { request, result } => self.raft_response(range, request, result),
            raft::Action::Event(event) => self.event(ClusterEvent::Raft { range, event }),
        }
    }

    fn raft_response(&mut self, range: RangeId, request: RequestId, result: raft::ClientResult) {
        let Some((_, waiter)) = self.waiters.remove(&request) else { return };
        match waiter {
            Waiter::Client(client) => self.answer_client(range, client, result),
            Waiter::Command(wait) => self.command_answered(wait, result),
            Waiter::MetaRecord { op } => self.record_answered(op, result),
        }
    }

    /// Runs after the groups were drained: leadership changes, planner
    /// work, commands waiting for their configuration to settle.
    fn after_groups(&mut self) {
        self.update_control();
        self.check_settling();
        self.drain_control();
    }

    /// Publishes this node's facts in SWIM when they changed.
    fn publish_metadata(&mut self) {
        let next = NodeMeta {
            locality: self.config.locality.clone(),
            capacity: self.config.capacity,
            meta_version: self.table.version(),
            active_term: self.control.as_ref().map(|control| control.term),
        };
        if next != self.published {
            self.published = next;
            let encoded = self.published.encode();
            let _ = self.swim.set_metadata(self.now, encoded);
            self.drain_swim();
        }
    }

    #[cfg(any(debug_assertions, feature = "check-invariants"))]
    fn check_invariants(&self) {
        assert!(
            self.control.is_none() || self.meta.as_ref().is_some_and(|m| m.role() == raft::Role::Leader),
            "n{}: runs the planner without leading the meta range",
            self.config.id.0
        );
        assert!(self.ranges.keys().all(|&r| r != META_RANGE), "the meta range is hosted as a user range");
        assert!(self.touched.is_empty() || self.touched.len() <= self.ranges.len() + 1);
        #[cfg(debug_assertions)]
        for (&range, hosted) in &self.ranges {
            let held = self.wakes.held.contains(&range);
            assert_eq!(
                self.timers.raw(range),
                Some(if held { Time::from_micros(u64::MAX) } else { hosted.raft.poll_timeout() }),
                "n{}: {range}'s timer is not indexed as due",
                self.config.id.0
            );
        }
        assert_eq!(self.timers.len(), self.ranges.len(), "the timer index and the hosted ranges differ");
    }
}
