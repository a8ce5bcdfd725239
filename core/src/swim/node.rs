//! The SWIM node: one sans-IO state machine per member.

use super::bug::Bug;
use super::config::{Config, ConfigError};
use super::dissemination::{retransmit_limit, Dissemination};
use super::health::LocalHealth;
use super::member::{
    supersedes, Address, Incarnation, Member, MemberId, MemberRecord, MemberState, Metadata, MAX_INCARNATION,
};
use super::message::{Message, MessageBody, MessageError, ProbeNumber, Update};
use super::probe::{choose_distinct, Probe, ProbeOrder, ProbePhase, Relay};
use super::suspicion::{Suspicion, SuspicionTimeouts};
use super::wire;
use crate::types::Time;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[path = "news.rs"]
mod news;

/// Something the node tells the layers above about the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member we did not know (or that had left) is alive.
    Joined(MemberRecord),
    /// An alive member published a new address or new metadata.
    Updated(MemberRecord),
    /// A member missed a probe and is suspected; it will be declared failed
    /// unless it refutes.
    Suspected {
        /// The suspected member.
        member: MemberId,
        /// The incarnation suspected.
        incarnation: Incarnation,
    },
    /// A suspected member refuted, or a failed member came back with a higher
    /// incarnation.
    AliveAgain(MemberRecord),
    /// A member was declared failed (by us or by others).
    Failed {
        /// The failed member.
        member: MemberId,
        /// The incarnation declared failed.
        incarnation: Incarnation,
    },
    /// A member left gracefully.
    Left {
        /// The member that left.
        member: MemberId,
        /// Its incarnation when it left.
        incarnation: Incarnation,
    },
    /// A failed or left member was forgotten after `tombstone_retention_ms`
    /// (or evicted early to make room for a new member under `max_members`).
    Forgotten {
        /// The member forgotten.
        member: MemberId,
    },
    /// This node heard itself suspected, declared failed or outdated, and
    /// refuted by moving to `incarnation`.
    Refuted {
        /// This node's new incarnation.
        incarnation: Incarnation,
    },
    /// News of `member` was dropped because `max_members` members are known
    /// and none of them is a tombstone that could be evicted.
    MemberLimitReached {
        /// The member whose news was dropped; this node does not know it.
        member: MemberId,
    },
}

/// One thing the driver must do. See [`SwimNode`] for the drain order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `message` to the member at `to`. Encode it with
    /// [`wire::encode`]; it fits `max_message_bytes`.
    /// Loss, duplication, delay and reordering are all tolerated.
    Send {
        /// Where to send it: the recipient's address as this node knows it,
        /// or a seed's.
        to: Address,
        /// The message.
        message: Message,
    },
    /// Informational, for the layers above.
    Event(Event),
}

/// Why [`SwimNode::set_metadata`] refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The metadata is longer than `max_metadata_bytes`.
    #[error("metadata of {bytes} bytes, more than max_metadata_bytes ({limit})")]
    TooLarge {
        /// The metadata's length.
        bytes: usize,
        /// The configured `max_metadata_bytes`.
        limit: usize,
    },
    /// [`SwimNode::leave`] was called: a node that left publishes nothing.
    #[error("this node has left the cluster")]
    Left,
    /// This node's incarnation is at [`MAX_INCARNATION`], so it cannot
    /// version new metadata. In practice only an `initial_incarnation` at the
    /// limit, or refuting a peer's claim about this node at the limit, gets
    /// it there; the identity can then publish no change, so rejoin under a
    /// new [`MemberId`].
    #[error("this node's incarnation reached the limit {MAX_INCARNATION}")]
    IncarnationExhausted,
}

/// A SWIM member with the Lifeguard extensions, as a pure state machine.
///
/// Inputs: [`handle_message`](Self::handle_message) (or
/// [`handle_datagram`](Self::handle_datagram) for raw bytes),
/// [`handle_timeout`](Self::handle_timeout),
/// [`set_metadata`](Self::set_metadata) and [`leave`](Self::leave). Each
/// takes the driver's `now`; `now` must not go backwards.
///
/// Outputs: after any input, drain [`poll_action`](Self::poll_action) until it
/// returns `None`, performing the actions in order, then arm a timer for
/// [`poll_timeout`](Self::poll_timeout). Calling `handle_timeout` early is a
/// harmless no-op; calling it late only makes the node act late (a probe
/// whose direct and indirect phases both fell due is judged at once, and the
/// resulting missed nacks raise the local health score, as they should for a
/// node too slow to keep its own timers).
///
/// One timer covers everything: the protocol period (probe a new target,
/// judge the previous one), the direct-probe timeout (ask helpers), indirect
/// probes run for others (relay or nack), suspicion timeouts, gossip rounds
/// (while updates wait), push-pull anti-entropy, and join/reconnect attempts.
pub struct SwimNode {
    config: Config,
    rng: ChaCha8Rng,

    incarnation: Incarnation,
    metadata: Metadata,
    left: bool,

    /// Every other member we know, tombstones included.
    members: BTreeMap<MemberId, Member>,
    /// Alive and suspect members in `members`, plus this node.
    live_count: usize,
    suspicions: BTreeMap<MemberId, Suspicion>,
    dissemination: Dissemination,
    health: LocalHealth,

    probe_order: ProbeOrder,
    probe: Option<Probe>,
    relays: BTreeMap<ProbeNumber, Relay>,
    next_probe_number: u64,

    next_probe_at: Time,
    next_push_pull_at: Time,
    /// The next gossip round (only acted on while updates wait).
    next_gossip_at: Time,
    next_contact_at: Time,
    /// No tombstone expires before this (`None`: no tombstones). Keeps the
    /// per-period work independent of the cluster size.
    next_forget_at: Option<Time>,
    /// While alone, joining through a stranger that talks to us is allowed
    /// again from this time (once per `join_retry_interval_ms`).
    next_stranger_join_at: Time,
    /// This node refuted and has not yet gossiped it: the next gossip round
    /// goes out whatever the backlog, so that members counting down a
    /// suspicion of us hear the refutation within one gossip interval
    /// rather than a few probe periods.
    refutation_unsent: bool,
    /// Members that told us an outdated claim that we are down on a message
    /// with no reply (an ack, nack, ping-req, gossip or push-pull): the next
    /// gossip round sends each our alive record, at most
    /// [`MAX_OWED_REFUTATIONS`] of them waiting.
    owed_refutations: BTreeSet<MemberId>,

    actions: VecDeque<Action>,
}

impl SwimNode {
    /// A node that starts at `now`. If the config has seeds, the first
    /// [`handle_timeout`](Self::handle_timeout) (due at once) contacts them.
    pub fn new(config: Config, now: Time) -> Result<SwimNode, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.rng_seed);
        // Stagger the periodic work so that nodes started together do not
        // probe and exchange state in lockstep.
        let next_probe_at = now.add_micros(rng.random_range(0..config.probe_interval_micros()));
        let next_push_pull_at = now.add_micros(rng.random_range(0..config.push_pull_interval_ms * 1000));
        let next_gossip_at = now.add_micros(rng.random_range(0..config.gossip_interval_ms * 1000));
        let mut node = SwimNode {
            incarnation: config.initial_incarnation,
            metadata: config.metadata.clone(),
            left: false,
            members: BTreeMap::new(),
            live_count: 1,
            suspicions: BTreeMap::new(),
            dissemination: Dissemination::new(config.max_dissemination_queue),
            health: LocalHealth::new(config.local_health_max),
            probe_order: ProbeOrder::default(),
            probe: None,
            relays: BTreeMap::new(),
            next_probe_number: 0,
            next_probe_at,
            next_push_pull_at,
            next_gossip_at,
            next_contact_at: now,
            next_forget_at: None,
            next_stranger_join_at: now,
            refutation_unsent: false,
            owed_refutations: BTreeSet::new(),
            actions: VecDeque::new(),
            rng,
            config,
        };
        node.dissemination.enqueue(node.own_alive());
        Ok(node)
    }

    // ----- accessors ------------------------------------------------------

    /// This node's identity.
    pub fn id(&self) -> MemberId {
        self.config.id
    }
    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// This node's current incarnation.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }
    /// This node's current metadata (the configured one, or the latest
    /// [`set_metadata`](Self::set_metadata)).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// Whether [`leave`](Self::leave) was called.
    pub fn has_left(&self) -> bool {
        self.left
    }
    /// This node as others should see it.
    pub fn local_record(&self) -> MemberRecord {
        MemberRecord {
            id: self.config.id,
            address: self.config.address.clone(),
            metadata: self.metadata.clone(),
            incarnation: self.incarnation,
            state: if self.left { MemberState::Left } else { MemberState::Alive },
        }
    }
    /// Another member, as this node sees it.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }
    /// Every other known member, tombstones included, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members.values()
    }
    /// Alive and suspect members, this node included: the cluster size `n`
    /// used by retransmission and suspicion.
    pub fn live_member_count(&self) -> usize {
        self.live_count
    }
    /// The running suspicion of `member`, if it is suspect.
    pub fn suspicion(&self, member: MemberId) -> Option<&Suspicion> {
        self.suspicions.get(&member)
    }
    /// Lifeguard's local health score (0 is healthy; always 0 without
    /// Lifeguard).
    pub fn local_health(&self) -> u32 {
        self.health.score()
    }
    /// The current probe interval, stretched by the local health multiplier.
    pub fn probe_interval_micros(&self) -> u64 {
        self.health.scale_micros(self.config.probe_interval_micros())
    }
    /// The current probe timeout, stretched by the local health multiplier.
    pub fn probe_timeout_micros(&self) -> u64 {
        self.health.scale_micros(self.config.probe_timeout_micros())
    }
    /// Updates waiting to be piggybacked.
    pub fn pending_updates(&self) -> usize {
        self.dissemination.len()
    }

    // ----- outputs --------------------------------------------------------

    /// The next action to perform, in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the node next needs [`handle_timeout`](Self::handle_timeout).
    /// It may lie in the past (a new confirmation can shorten a running
    /// suspicion below the time already elapsed): then call it at once.
    /// Costs time linear in the number of suspects and relays.
    #[must_use]
    pub fn poll_timeout(&self) -> Time {
        let mut deadline = self.next_probe_at;
        if let Some(Probe { phase: ProbePhase::Direct { deadline: direct }, acked: false, .. }) = &self.probe {
            deadline = deadline.min(*direct);
        }
        if !self.left {
            deadline = deadline.min(self.next_push_pull_at).min(self.next_contact_at);
        }
        if self.gossip_backlog() || !self.owed_refutations.is_empty() {
            deadline = deadline.min(self.next_gossip_at);
        }
        for relay in self.relays.values() {
            deadline = deadline.min(relay.deadline);
        }
        if !self.config.has_bug(Bug::SuspicionNeverExpires) {
            for suspicion in self.suspicions.values() {
                deadline = deadline.min(suspicion.deadline());
            }
        }
        deadline
    }

    // ----- inputs ---------------------------------------------------------

    /// Decodes `bytes` (at most `max_message_bytes`) and handles the message.
    pub fn handle_datagram(&mut self, now: Time, bytes: &[u8]) -> Result<(), MessageError> {
        let message = wire::decode(bytes, self.config.max_message_bytes)?;
        self.handle_message(now, message)
    }

    /// Handles a message from a peer. A message that breaks a limit or is not
    /// meant for this node is rejected whole, before any of it takes effect.
    pub fn handle_message(&mut self, now: Time, message: Message) -> Result<(), MessageError> {
        message.validate(&self.config)?;
        let Message { from, from_address, to: _, body, updates } = message;
        let claims_us_down = !self.left && updates.iter().any(|update| self.claims_down(update));
        if claims_us_down && !matches!(body, MessageBody::Ping { .. }) {
            self.owe_refutation(from);
        }
        // Judged before the updates apply (they lose, so nothing changes).
        let corrections =
            if matches!(body, MessageBody::Ping { .. }) { self.corrections(&updates) } else { Vec::new() };
        for update in updates {
            self.apply_update(now, update);
        }
        // Alone, we join through whoever talks to us: after a restart with
        // every seed down, the members probing us are the only way back.
        let wants_state = matches!(body, MessageBody::PushPull { .. });
        if self.live_count == 1
            && !self.left
            && !wants_state
            && now >= self.next_stranger_join_at
            && !self.members.contains_key(&from)
        {
            self.next_stranger_join_at = now.add_millis(self.config.join_retry_interval_ms);
            self.send_state(Some(from), from_address.clone(), true);
        }
        match body {
            MessageBody::Ping { probe } => {
                // The pinger believes us suspect or failed (Lifeguard's buddy
                // system puts that on every ping to a suspect): answer with our
                // alive record, refuting it to the one member sure to count
                // the suspicion down, even when our refutation came earlier
                // and its gossip missed the pinger.
                let answer = claims_us_down && !self.config.has_bug(Bug::RefutationNotSpread);
                let first = if answer { vec![self.own_alive()] } else { Vec::new() };
                self.send_with(Some(from), from_address, MessageBody::Ack { probe }, first, corrections);
            }
            MessageBody::Ack { probe } => self.handle_ack(from, probe),
            MessageBody::Nack { probe } => {
                if let Some(own) = self.probe.as_mut().filter(|own| own.number == probe) {
                    if own.helpers.contains(&from) {
                        own.nacks.insert(from);
                    }
                }
            }
            MessageBody::PingReq { probe, target, target_address, want_nack } => {
                self.handle_ping_req(now, from, from_address, probe, target, target_address, want_nack)
            }
            MessageBody::Gossip => {}
            MessageBody::PushPull { want_reply, members } => {
                for record in members {
                    self.merge_record(now, from, record);
                }
                if want_reply {
                    self.send_state(Some(from), from_address, false);
                }
            }
        }
        self.check_invariants();
        Ok(())
    }

    /// Lets time pass: acts on every deadline that has come.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(probe) = &self.probe {
            if let ProbePhase::Direct { deadline } = probe.phase {
                if !probe.acked && now >= deadline {
                    self.start_indirect_probe();
                }
            }
        }
        if now >= self.next_probe_at {
            self.protocol_period(now);
        }
        self.expire_relays(now);
        self.expire_suspicions(now);
        if now >= self.next_gossip_at {
            self.gossip_round(now);
        }
        if !self.left && now >= self.next_push_pull_at {
            self.next_push_pull_at = now.add_micros(self.config.push_pull_interval_micros(self.live_count));
            let alive = self.members_in(|member| member.state == MemberState::Alive);
            if let Some(&peer) = choose_distinct(&alive, 1, &mut self.rng).first() {
                let address = self.members[&peer].address.clone();
                self.send_state(Some(peer), address, true);
            }
        }
        if !self.left && now >= self.next_contact_at {
            self.contact_seeds_and_failed(now);
        }
        self.check_invariants();
    }

    /// Publishes new metadata. Raises this node's incarnation so that the new
    /// metadata supersedes the old everywhere.
    pub fn set_metadata(&mut self, _now: Time, metadata: Metadata) -> Result<(), MetadataError> {
        if metadata.0.len() > self.config.max_metadata_bytes {
            return Err(MetadataError::TooLarge { bytes: metadata.0.len(), limit: self.config.max_metadata_bytes });
        }
        if self.left {
            return Err(MetadataError::Left);
        }
        if self.incarnation >= MAX_INCARNATION {
            return Err(MetadataError::IncarnationExhausted);
        }
        self.metadata = metadata;
        self.incarnation = self.incarnation.next();
        self.dissemination.enqueue(self.own_alive());
        Ok(())
    }

    /// Leaves the cluster gracefully: announces it to `leave_fanout` live
    /// members at once and queues the announcement for piggybacking. The node
    /// stops probing but keeps answering; the driver should keep it running
    /// for a few probe intervals so the news spreads, then drop it. Others
    /// report it as left, not failed. Calling it twice does nothing more.
    pub fn leave(&mut self, _now: Time) {
        if self.left {
            return;
        }
        self.left = true;
        self.probe = None;
        self.dissemination.enqueue(Update::Left { member: self.config.id, incarnation: self.incarnation });
        let live = self.members_in(|member| member.state.is_live());
        for peer in choose_distinct(&live, self.config.leave_fanout, &mut self.rng) {
            let address = self.members[&peer].address.clone();
            self.send(Some(peer), address, MessageBody::Gossip, Vec::new());
        }
    }

    /// Whether `update` says this node is suspect, failed or left, at any
    /// incarnation (an outdated claim needs refuting to its holder too).
    fn claims_down(&self, update: &Update) -> bool {
        update.member() == self.config.id && !matches!(update, Update::Alive { .. })
    }

    /// Our alive records of members that `updates` claim suspect or failed
    /// at an incarnation they have since refuted: the sender holds news its
    /// subject answered, and gossip of the refutation may have missed it
    /// for good (each holder sends news only `λ·log n` times). The ack to
    /// its ping carries the correction (50-member seed 12325: one member
    /// held a refuted suspicion for 25 s, until push-pull). At most
    /// [`MAX_CORRECTIONS`], after our own refutation and as room allows.
    fn corrections(&self, updates: &[Update]) -> Vec<Update> {
        let stale = |update: &Update| match *update {
            Update::Suspect { member, incarnation, .. } | Update::Failed { member, incarnation, .. } => self
                .members
                .get(&member)
                .filter(|known| known.state == MemberState::Alive && known.incarnation > incarnation),
            Update::Alive { .. } | Update::Left { .. } => None,
        };
        updates
            .iter()
            .filter_map(stale)
            .take(MAX_CORRECTIONS)
            .map(|known| news::alive_update(&known.record()))
            .collect()
    }

    /// Whether more news waits than piggybacking can carry soon (see
    /// [`Config::gossip_backlog_bytes`]).
    fn gossip_backlog(&self) -> bool {
        self.config.gossip_fanout > 0
            && !self.dissemination.is_empty()
            && (self.refutation_unsent || self.dissemination.bytes() > self.config.gossip_backlog_bytes)
    }

    /// A gossip round (memberlist's `gossip`): while a backlog of updates
    /// waits, send them to `gossip_fanout` random alive members in `Gossip`
    /// messages, each filled to the budget. Without a backlog nothing is
    /// sent: a trickle of news rides on probes and acks at no cost in
    /// messages. Rounds keep their phase: a round that comes without a
    /// backlog is skipped, not delayed.
    ///
    /// Suspects are gossiped to as well: a suspect that hears of its
    /// suspicion (the buddy system puts it first) can refute it. A
    /// refutation counts as sent only once a round reached someone, so that
    /// a member alone, or knowing only tombstones, still gossips it
    /// promptly to the first member it learns of.
    fn gossip_round(&mut self, now: Time) {
        let interval_micros = self.config.gossip_interval_ms * 1000;
        let behind = now.micros_since(self.next_gossip_at) / interval_micros;
        self.next_gossip_at = self.next_gossip_at.add_micros((behind + 1) * interval_micros);
        let answered = self.answer_outdated_claims();
        if !self.gossip_backlog() {
            return;
        }
        let members = &self.members;
        let peers = self.probe_order.sample_where(
            self.config.gossip_fanout - answered.len(),
            |id| !answered.contains(&id) && members.get(&id).is_some_and(|member| member.state.is_live()),
            &mut self.rng,
        );
        for peer in peers {
            if self.dissemination.is_empty() {
                break;
            }
            let address = self.members[&peer].address.clone();
            self.send(Some(peer), address, MessageBody::Gossip, Vec::new());
            self.refutation_unsent = false;
        }
    }

    /// Remembers to send `from` our alive record: it told us we are down at
    /// an incarnation we already left behind, on a message we do not answer
    /// (a ping's ack carries the record at once). Without this, a member
    /// that missed our refutation keeps its stale suspicion, and repeats it
    /// to us on every ack, until push-pull repairs it (50-member SWIM seed
    /// 1710: 24.7 s). Nothing is owed when gossip is off or the set is full.
    fn owe_refutation(&mut self, from: MemberId) {
        if self.config.gossip_fanout > 0
            && self.owed_refutations.len() < MAX_OWED_REFUTATIONS
            && !self.config.has_bug(Bug::RefutationNotSpread)
        {
            self.owed_refutations.insert(from);
        }
    }

    /// Sends our alive record, in a `Gossip` message, to up to
    /// `gossip_fanout` members owed one (lowest ids first; the rest wait for
    /// the next round). Counts against the round's fanout. Returns the
    /// members it went to.
    fn answer_outdated_claims(&mut self) -> Vec<MemberId> {
        let mut answered = Vec::new();
        while answered.len() < self.config.gossip_fanout {
            let Some(peer) = self.owed_refutations.pop_first() else {
                break;
            };
            let Some(address) = self.members.get(&peer).map(|member| member.address.clone()) else {
                continue;
            };
            self.send(Some(peer), address, MessageBody::Gossip, vec![self.own_alive()]);
            answered.push(peer);
        }
        answered
    }

    // ----- probing --------------------------------------------------------

    /// The length of the period that starts: the (health-scaled) probe
    /// interval, unless a bug stretches or shrinks it.
    fn probe_period_micros(&self) -> u64 {
        let interval = self.probe_interval_micros();
        if self.config.has_bug(Bug::SlowProbes) {
            interval * 10
        } else if self.config.has_bug(Bug::HastyProbes) {
            (interval / 10).max(1)
        } else {
            interval
        }
    }

    /// End of a protocol period: judge the probe of the period that ends,
    /// forget expired tombstones, and probe the next target.
    fn protocol_period(&mut self, now: Time) {
        if let Some(probe) = self.probe.take() {
            self.judge_probe(now, probe);
        }
        self.forget_tombstones(now);
        self.next_probe_at = now.add_micros(self.probe_period_micros());
        if self.left {
            return;
        }
        let members = &self.members;
        let Some(target) = self.probe_order.next_target_where(
            |id| members.get(&id).is_some_and(|member| member.state.is_live()),
            || members.values().filter(|member| member.state.is_live()).map(|member| member.id).collect(),
            &mut self.rng,
        ) else {
            return;
        };
        let number = self.new_probe_number();
        let deadline = now.add_micros(self.probe_timeout_micros());
        let target_incarnation = self.members[&target].incarnation;
        self.probe = Some(Probe {
            number,
            target,
            target_incarnation,
            phase: ProbePhase::Direct { deadline },
            helpers: Vec::new(),
            nacks: BTreeSet::new(),
            nacks_expected: false,
            acked: false,
        });
        self.send_ping(target, number);
    }

    /// Sends a ping to a known member (carrying our suspicion of it, if any:
    /// see [`send`](Self::send)).
    fn send_ping(&mut self, target: MemberId, number: ProbeNumber) {
        let address = self.members[&target].address.clone();
        self.send(Some(target), address, MessageBody::Ping { probe: number }, Vec::new());
    }

    /// The direct ping went unanswered: ask up to `indirect_checks` alive
    /// members to ping the target for us.
    fn start_indirect_probe(&mut self) {
        let probe = self.probe.as_ref().expect("invariant: called only with a probe in its direct phase");
        let target = probe.target;
        let number = probe.number;
        let Some(target_address) = self.members.get(&target).map(|member| member.address.clone()) else {
            self.probe.as_mut().expect("checked above").phase = ProbePhase::Indirect;
            return;
        };
        let members = &self.members;
        let is_helper = |id: MemberId| id != target && members.get(&id).is_some_and(|m| m.state == MemberState::Alive);
        let helpers = if self.live_count <= EXACT_SAMPLING_MAX_MEMBERS {
            let alive: Vec<MemberId> = members.keys().copied().filter(|&id| is_helper(id)).collect();
            choose_distinct(&alive, self.config.indirect_checks, &mut self.rng)
        } else {
            self.probe_order.sample_where(self.config.indirect_checks, is_helper, &mut self.rng)
        };
        let want_nack = self.config.lifeguard;
        for &helper in &helpers {
            let address = self.members[&helper].address.clone();
            let body =
                MessageBody::PingReq { probe: number, target, target_address: target_address.clone(), want_nack };
            self.send(Some(helper), address, body, Vec::new());
        }
        let probe = self.probe.as_mut().expect("checked above");
        probe.phase = ProbePhase::Indirect;
        probe.helpers = helpers;
        probe.nacks_expected = want_nack;
    }

    /// The verdict on a probe whose period ended: adjust local health, and
    /// suspect a silent target.
    fn judge_probe(&mut self, now: Time, probe: Probe) {
        if probe.acked {
            if self.config.lifeguard {
                self.health.apply(-1);
            }
            return;
        }
        if self.config.lifeguard {
            let delta = probe.missed_nacks().unwrap_or(1);
            self.health.apply(i64::try_from(delta).unwrap_or(i64::MAX));
        }
        let Some(member) = self.members.get(&probe.target) else {
            return;
        };
        if member.state.is_live() && member.incarnation == probe.target_incarnation {
            let update = Update::Suspect { member: member.id, incarnation: member.incarnation, by: self.config.id };
            self.apply_update(now, update);
        }
    }

    fn handle_ack(&mut self, from: MemberId, probe: ProbeNumber) {
        if let Some(own) = self.probe.as_mut().filter(|own| own.number == probe) {
            if from == own.target || own.helpers.contains(&from) {
                own.acked = true;
            }
            return;
        }
        if self.relays.get(&probe).is_some_and(|relay| relay.target == from) {
            let relay = self.relays.remove(&probe).expect("checked above");
            let body = MessageBody::Ack { probe: relay.origin_probe };
            self.send(Some(relay.origin), relay.origin_address, body, Vec::new());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_ping_req(
        &mut self,
        now: Time,
        origin: MemberId,
        origin_address: Address,
        origin_probe: ProbeNumber,
        target: MemberId,
        target_address: Address,
        want_nack: bool,
    ) {
        if target == self.config.id {
            // The origin thinks the target lives elsewhere; an ack from us
            // would be a lie about that member. Ignore.
            return;
        }
        if self.relays.len() >= self.config.max_pending_relays {
            return;
        }
        let number = self.new_probe_number();
        let timeout = if self.config.has_bug(Bug::LateNacks) {
            self.config.probe_timeout_micros() * 5
        } else {
            self.config.relay_timeout_micros()
        };
        let deadline = now.add_micros(timeout);
        self.relays.insert(number, Relay { origin, origin_address, origin_probe, target, deadline, want_nack });
        self.send(Some(target), target_address, MessageBody::Ping { probe: number }, Vec::new());
    }

    /// Indirect probes for others that got no ack in time: nack if asked.
    fn expire_relays(&mut self, now: Time) {
        let expired: Vec<ProbeNumber> =
            self.relays.iter().filter(|(_, relay)| relay.deadline <= now).map(|(number, _)| *number).collect();
        for number in expired {
            let relay = self.relays.remove(&number).expect("collected above");
            if relay.want_nack {
                let body = MessageBody::Nack { probe: relay.origin_probe };
                self.send(Some(relay.origin), relay.origin_address, body, Vec::new());
            }
        }
    }

    fn new_probe_number(&mut self) -> ProbeNumber {
        self.next_probe_number += 1;
        ProbeNumber(self.next_probe_number)
    }

    // ----- suspicion ------------------------------------------------------

    fn suspicion_timeouts(&self) -> SuspicionTimeouts {
        let n = self.live_count;
        let mut min_micros =
            SuspicionTimeouts::base_micros(self.config.suspicion_multiplier, n, self.config.probe_interval_micros());
        if self.config.has_bug(Bug::LongSuspicion) {
            min_micros *= 10;
        }
        if !self.config.lifeguard {
            return SuspicionTimeouts { min_micros, max_micros: min_micros, expected_confirmations: 0 };
        }
        let possible = u32::try_from(n.saturating_sub(2)).unwrap_or(u32::MAX);
        SuspicionTimeouts {
            min_micros,
            max_micros: min_micros.saturating_mul(u64::from(self.config.suspicion_max_multiplier)),
            expected_confirmations: self.config.suspicion_confirmations.min(possible),
        }
    }

    fn expire_suspicions(&mut self, now: Time) {
        if self.config.has_bug(Bug::SuspicionNeverExpires) {
            return;
        }
        let expired: Vec<MemberId> = self
            .suspicions
            .iter()
            .filter(|(_, suspicion)| suspicion.deadline() <= now)
            .map(|(member, _)| *member)
            .collect();
        for member in expired {
            let suspicion = self.suspicions.remove(&member).expect("collected above");
            debug_assert_eq!(self.members[&member].state, MemberState::Suspect);
            debug_assert_eq!(self.members[&member].incarnation, suspicion.incarnation);
            let update = Update::Failed { member, incarnation: suspicion.incarnation, by: self.config.id };
            self.apply_update(now, update);
        }
    }

    // ----- joining, anti-entropy, reconnection ---------------------------

    /// While alone, ask every seed to exchange state; otherwise try one failed
    /// member or absent seed, so that partitions heal by themselves.
    fn contact_seeds_and_failed(&mut self, now: Time) {
        let alone = self.live_count == 1;
        let interval_ms = if alone { self.config.join_retry_interval_ms } else { self.config.reconnect_interval_ms };
        // Jitter (uniform in [interval/2, 3·interval/2)) keeps nodes that
        // started together from reconnecting in a synchronized burst.
        let interval_micros = interval_ms * 1000;
        let jittered_micros = interval_micros / 2 + self.rng.random_range(0..interval_micros);
        self.next_contact_at = now.add_micros(jittered_micros);
        // One pass over the members, comparing each live one with the few
        // seeds (building a set of every live address cost O(n log n)).
        let mut absent_seeds: Vec<Address> =
            self.config.seeds.iter().filter(|seed| **seed != self.config.address).cloned().collect();
        absent_seeds.sort();
        absent_seeds.dedup();
        let mut present = vec![false; absent_seeds.len()];
        let mut failed: Vec<(MemberId, Address)> = Vec::new();
        // `next_forget_at` is set exactly while tombstones exist.
        let any_tombstone = self.next_forget_at.is_some();
        for member in self.members.values() {
            if member.state.is_live() {
                if let Some(seed) = absent_seeds.iter().position(|seed| *seed == member.address) {
                    present[seed] = true;
                }
            } else if any_tombstone && member.state == MemberState::Failed {
                failed.push((member.id, member.address.clone()));
            }
        }
        let mut present = present.into_iter();
        absent_seeds.retain(|_| !present.next().expect("one flag per seed"));
        let seeds = absent_seeds.into_iter().map(|seed| (None, seed));
        let mut targets: Vec<(Option<MemberId>, Address)> = Vec::new();
        let mut candidates: Vec<(Option<MemberId>, Address)> =
            failed.into_iter().map(|(id, address)| (Some(id), address)).collect();
        if alone {
            targets.extend(seeds);
        } else {
            candidates.extend(seeds);
        }
        if !candidates.is_empty() {
            let pick = self.rng.random_range(0..candidates.len());
            targets.push(candidates.swap_remove(pick));
        }
        for (id, address) in targets {
            self.send_state(id, address, true);
        }
    }

    /// Sends this node's full state, split into as many messages as the byte
    /// budget needs. This node's own record comes first, and only the first
    /// message asks for a reply.
    fn send_state(&mut self, to: Option<MemberId>, address: Address, want_reply: bool) {
        let mut records = Vec::with_capacity(self.members.len() + 1);
        records.push(self.local_record());
        let hide_failed = self.config.has_bug(Bug::FailedNeverGossiped);
        records.extend(
            self.members
                .values()
                .filter(|member| !(hide_failed && member.state == MemberState::Failed))
                .map(Member::record),
        );
        let mut first = true;
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let empty = Message {
                from: self.config.id,
                from_address: self.config.address.clone(),
                to,
                body: MessageBody::PushPull { want_reply: want_reply && first, members: Vec::new() },
                updates: Vec::new(),
            };
            // Room for the records list, its length prefix included.
            let room = self.config.max_message_bytes - (wire::encoded_len(&empty) - 1);
            let mut chunk = Vec::new();
            let mut used = wire::length_prefix_len(0);
            while let Some(record) = records.peek() {
                let bytes = wire::encoded_len(record);
                let growth = wire::length_prefix_len(chunk.len() + 1) - wire::length_prefix_len(chunk.len());
                if used + bytes + growth > room {
                    break;
                }
                used += bytes + growth;
                chunk.push(records.next().expect("peeked"));
            }
            assert!(!chunk.is_empty(), "invariant: validate() guarantees one record fits in a message");
            let body = MessageBody::PushPull { want_reply: want_reply && first, members: chunk };
            self.send(to, address.clone(), body, Vec::new());
            first = false;
        }
    }

    // ----- plumbing ---------------------------------------------------------

    /// Queues a message, filling what room the budget leaves with piggybacked
    /// updates (after `first`, which always goes).
    /// Sends `body` with `first` and then whatever the piggyback queue holds
    /// within the byte budget.
    ///
    /// Lifeguard's buddy system, on every message: if we believe the
    /// addressee suspect, the message carries that suspicion first, so the
    /// suspect learns of it directly and refutes in time. (On pings alone, a
    /// suspect that our probes skip hears of it only through gossip that may
    /// go elsewhere: SWIM seed 4056 with 5 nodes, where n3 declared the
    /// healthy n2 failed after sending it three answers without the news.)
    fn send(&mut self, to: Option<MemberId>, address: Address, body: MessageBody, first: Vec<Update>) {
        self.send_with(to, address, body, first, Vec::new());
    }

    /// As [`send`](Self::send), with `optional` updates after `first` and
    /// the buddy suspicion, each only if it fits.
    fn send_with(
        &mut self,
        to: Option<MemberId>,
        address: Address,
        body: MessageBody,
        mut first: Vec<Update>,
        optional: Vec<Update>,
    ) {
        let mut message =
            Message { from: self.config.id, from_address: self.config.address.clone(), to, body, updates: Vec::new() };
        let fixed = wire::encoded_len(&message) - wire::length_prefix_len(0);
        let room = self.config.max_message_bytes.saturating_sub(fixed);
        // Only what fits: a push-pull reply may fill the budget alone.
        let fits = |first: &[Update], update: &Update| {
            let with = first.iter().chain([update]).map(wire::encoded_len).sum::<usize>();
            !first.contains(update) && with + wire::length_prefix_len(first.len() + 1) <= room
        };
        if let Some(suspicion) = to.and_then(|to| self.buddy_suspicion(to)) {
            if fits(&first, &suspicion) {
                first.insert(0, suspicion);
            }
        }
        for update in optional {
            if fits(&first, &update) {
                first.push(update);
            }
        }
        let multiplier = if self.config.has_bug(Bug::RetransmitOnce) { 1 } else { self.config.retransmit_multiplier };
        let limit = retransmit_limit(multiplier, self.live_count);
        let more = if self.config.has_bug(Bug::NoPiggyback) && !matches!(message.body, MessageBody::Gossip) {
            Vec::new()
        } else {
            self.dissemination.select(room, &first, limit)
        };
        message.updates = first;
        message.updates.extend(more);
        debug_assert!(
            wire::encoded_len(&message) <= self.config.max_message_bytes,
            "invariant: every message fits the budget ({} > {})",
            wire::encoded_len(&message),
            self.config.max_message_bytes
        );
        self.actions.push_back(Action::Send { to: address, message });
    }

    /// Our suspicion of `member`, if we hold one and Lifeguard is on.
    fn buddy_suspicion(&self, member: MemberId) -> Option<Update> {
        let known = self.members.get(&member).filter(|known| known.state == MemberState::Suspect)?;
        let suspicion = Update::Suspect { member, incarnation: known.incarnation, by: self.config.id };
        self.config.lifeguard.then_some(suspicion)
    }

    fn event(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }

    fn own_alive(&self) -> Update {
        Update::Alive {
            member: self.config.id,
            incarnation: self.incarnation,
            address: self.config.address.clone(),
            metadata: self.metadata.clone(),
        }
    }

    fn members_in(&self, keep: impl Fn(&Member) -> bool) -> Vec<MemberId> {
        self.members.values().filter(|member| keep(member)).map(|member| member.id).collect()
    }

    /// Internal invariants, checked after every input in debug builds.
    fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            let live = self.members.values().filter(|member| member.state.is_live()).count();
            assert_eq!(self.live_count, live + 1, "invariant: live_count counts live members and this node");
            assert!(self.members.len() < self.config.max_members, "invariant: max_members holds");
            for (id, suspicion) in &self.suspicions {
                let member = &self.members[id];
                assert_eq!(member.state, MemberState::Suspect, "invariant: suspicions are of suspects");
                assert_eq!(member.incarnation, suspicion.incarnation, "invariant: suspicions match incarnations");
            }
            let suspects = self.members.values().filter(|member| member.state == MemberState::Suspect).count();
            assert_eq!(suspects, self.suspicions.len(), "invariant: every suspect has a suspicion");
            assert!(self.relays.len() <= self.config.max_pending_relays, "invariant: max_pending_relays holds");
            assert!(self.incarnation <= MAX_INCARNATION, "invariant: our incarnation is acceptable to peers");
            assert_eq!(
                self.dissemination.bytes(),
                self.dissemination.recounted_bytes(),
                "invariant: the gossip backlog counts the queued updates"
            );
            let tombstones = self.members.values().any(|member| member.state.is_tombstone());
            assert!(!tombstones || self.next_forget_at.is_some(), "invariant: tombstones have a forget deadline");
        }
    }
}

/// Up to this many live members, indirect-probe helpers are drawn from the
/// exact list of alive members; above it, by sampling the probe order in
/// constant time (which may, rarely, find fewer than `indirect_checks`).
const EXACT_SAMPLING_MAX_MEMBERS: usize = 64;

/// At most this many corrections of refuted claims ride on one ack.
const MAX_CORRECTIONS: usize = 2;

/// At most this many members wait for our alive record in answer to an
/// outdated claim (see `owed_refutations`); more are left to dissemination
/// and push-pull.
const MAX_OWED_REFUTATIONS: usize = 64;
