//! One SWIM node (member 1, seeded with the addresses of members 2 to 4)
//! driven by an arbitrary script of inputs: messages from peers 2 to 12 (every
//! message kind, well-formed or hostile), answers to the node's own pings and
//! indirect-probe requests, raw datagrams, time passing, metadata changes and
//! a graceful leave. The first input byte picks the configuration: Lifeguard
//! on or off, a tight profile (small limits, the smallest valid message
//! budget, few members) or the defaults, and whether gossip rounds run
//! whenever news waits. No injected bug is ever set.
//!
//! The node must never panic on peer input (its own internal invariant checks
//! run after every input, since fuzz builds keep debug assertions), and after
//! every step:
//!
//! - every message it sends comes from itself, is not addressed to itself,
//!   and encodes within `max_message_bytes` (and decodes back unchanged);
//! - a rejected message (an `Err`) causes nothing and changes nothing we can
//!   observe (incarnation, live count, members, piggyback queue);
//! - `live_member_count()` is one (the node) plus the live members it lists;
//! - exactly the suspect members have a running suspicion;
//! - the node never lists itself, and its own incarnation never decreases;
//! - `set_metadata` raises the incarnation by exactly one when it succeeds and
//!   changes nothing when it fails; after `leave` the node stays left.
//!
//! Incarnations in fuzzed news are mostly relative to what the node currently
//! believes about that member (or its own incarnation, for news about
//! itself), so the fuzzer reaches refutations, suspicions and resurrections
//! without guessing numbers; absolute values (up to and beyond
//! `MAX_INCARNATION`) keep nonsense reachable. Acks and nacks can answer the
//! probe numbers of the node's recent pings and ping-reqs, sent from the
//! member they went to, so the ack, nack and relay paths are reachable too.

#![no_main]

use arbitrary::Arbitrary;
use chorus_core::swim::{
    wire, Action, Address, Config, Incarnation, MemberRecord, MemberState, Message, MessageBody, Metadata, ProbeNumber,
    SwimNode, Update, MAX_INCARNATION,
};
use chorus_core::types::{NodeId, Time};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;

/// Most inputs taken from one fuzz case: keeps every run fast.
const MAX_STEPS: usize = 512;
/// Most updates piggybacked on, or records carried by, one fuzzed message.
const MAX_FUZZ_ITEMS: usize = 24;
/// Recent pings and ping-reqs remembered so that answers can echo them.
const PROBE_HISTORY: usize = 16;

const SELF: NodeId = NodeId(1);

fn address(id: NodeId) -> Address {
    Address::new(format!("node-{}", id.0).into_bytes())
}

/// A member id: mostly 1 to 12 (the node itself with extra weight, for
/// refutations), sometimes 0 or `u64::MAX`.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct FuzzMember(u8);

impl FuzzMember {
    fn id(self) -> NodeId {
        match self.0 % 16 {
            n @ 0..=11 => NodeId(u64::from(n) + 1),
            12 | 13 => SELF,
            14 => NodeId(0),
            _ => NodeId(u64::MAX),
        }
    }
}

/// A peer that sends a message: 2 to 12, or any member id (the node itself
/// included, which it must reject).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzSender {
    Peer(u8),
    Any(FuzzMember),
}

impl FuzzSender {
    fn id(self) -> NodeId {
        match self {
            FuzzSender::Peer(n) => NodeId(2 + u64::from(n % 11)),
            FuzzSender::Any(member) => member.id(),
        }
    }
}

/// An incarnation, relative to what the node believes about the member the
/// news is about, or absolute.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzIncarnation {
    Relative(i8),
    Absolute(u64),
    Max,
    BeyondMax,
}

/// Where a member is said to live.
#[derive(Arbitrary, Debug, Clone)]
enum FuzzAddress {
    /// `node-<id>` of the member itself.
    Own,
    /// Another member's address (an address taken over, or a mix-up).
    OfMember(FuzzMember),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone)]
enum FuzzMetadata {
    Empty,
    Bytes(Vec<u8>),
    /// `len` bytes: anywhere around the limits.
    Filled {
        len: u16,
        byte: u8,
    },
}

#[derive(Arbitrary, Debug, Clone)]
enum FuzzUpdate {
    Alive { member: FuzzMember, incarnation: FuzzIncarnation, address: FuzzAddress, metadata: FuzzMetadata },
    Suspect { member: FuzzMember, incarnation: FuzzIncarnation, by: FuzzMember },
    Failed { member: FuzzMember, incarnation: FuzzIncarnation, by: FuzzMember },
    Left { member: FuzzMember, incarnation: FuzzIncarnation },
}

#[derive(Arbitrary, Debug, Clone)]
struct FuzzRecord {
    member: FuzzMember,
    incarnation: FuzzIncarnation,
    address: FuzzAddress,
    metadata: FuzzMetadata,
    state: u8,
}

/// A probe number: one the node recently used (counting back from its last
/// ping or ping-req), or any.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzProbe {
    Recent(u8),
    Absolute(u64),
}

#[derive(Arbitrary, Debug, Clone)]
enum FuzzBody {
    Ping { probe: u64 },
    Ack { probe: FuzzProbe },
    Nack { probe: FuzzProbe },
    PingReq { probe: u64, target: FuzzMember, target_address: FuzzAddress, want_nack: bool },
    Gossip,
    PushPull { want_reply: bool, members: Vec<FuzzRecord> },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzTo {
    Me,
    /// `None`: a joiner contacting a seed it does not know yet.
    Unaddressed,
    /// Meant for another identity: must be rejected.
    Other(FuzzMember),
}

#[derive(Arbitrary, Debug, Clone)]
struct FuzzMessage {
    from: FuzzSender,
    from_address: FuzzAddress,
    to: FuzzTo,
    body: FuzzBody,
    updates: Vec<FuzzUpdate>,
}

/// How a peer answers one of the node's recent pings or ping-reqs.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzAnswer {
    /// An ack from the member the ping or ping-req went to.
    Ack,
    /// A nack from the member the ping-req (or ping) went to.
    Nack,
    /// An ack with the right number from the wrong member.
    AckFrom(FuzzSender),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Message(FuzzMessage),
    /// The same message, encoded and handed over as a datagram.
    Datagram(FuzzMessage),
    /// Arbitrary bytes as a datagram.
    RawDatagram(Vec<u8>),
    /// Answer the `back`-th most recent ping or ping-req the node sent.
    Answer {
        back: u8,
        answer: FuzzAnswer,
        updates: Vec<FuzzUpdate>,
    },
    /// Time passes by this many milliseconds, then the timer fires.
    Advance {
        millis: u16,
    },
    /// A long silence (tombstones expire, everything times out).
    AdvanceSeconds {
        seconds: u16,
    },
    /// Jump to the node's own deadline (never backwards) and fire it.
    FireDeadline,
    SetMetadata(FuzzMetadata),
    Leave,
}

#[derive(Arbitrary, Debug)]
struct Case {
    /// Bit 0: Lifeguard. Bit 1: tight profile. Bit 2: gossip rounds whenever
    /// anything waits.
    profile: u8,
    inputs: Vec<Input>,
}

/// One ping or ping-req the node sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    to: NodeId,
    probe: ProbeNumber,
}

fn config(profile: u8) -> Config {
    let mut config = Config::new(SELF, address(SELF));
    config.rng_seed = 11;
    // Its own address among the seeds, which it must skip.
    config.seeds = [SELF, NodeId(2), NodeId(3), NodeId(4)].into_iter().map(address).collect();
    config.lifeguard = profile & 1 != 0;
    config.injected_bug = None;
    if profile & 2 != 0 {
        config.max_members = 8;
        config.max_address_bytes = 16;
        config.max_metadata_bytes = 16;
        config.max_dissemination_queue = 4;
        config.max_pending_relays = 2;
        config.tombstone_retention_ms = 60_000;
        config.indirect_checks = 2;
        config.leave_fanout = 2;
        // The smallest budget the configuration allows: push-pull states
        // split into many messages, and piggybacking has almost no room.
        config.max_message_bytes = config.largest_single_item_message_bytes();
    }
    if profile & 4 != 0 {
        config.gossip_backlog_bytes = 0;
    }
    config
}

struct Harness {
    node: SwimNode,
    now: Time,
    /// Recent pings and ping-reqs, newest last.
    sent: VecDeque<Sent>,
    last_incarnation: Incarnation,
    left: bool,
}

impl Harness {
    fn new(profile: u8) -> Harness {
        let node = SwimNode::new(config(profile), Time::ZERO).expect("the fuzz configuration is valid");
        let last_incarnation = node.incarnation();
        Harness { node, now: Time::ZERO, sent: VecDeque::new(), last_incarnation, left: false }
    }

    fn incarnation(&self, member: NodeId, incarnation: FuzzIncarnation) -> Incarnation {
        match incarnation {
            FuzzIncarnation::Relative(delta) => {
                let base = if member == SELF {
                    self.node.incarnation()
                } else {
                    self.node.member(member).map_or(Incarnation::ZERO, |known| known.incarnation)
                };
                Incarnation(base.0.saturating_add_signed(i64::from(delta)))
            }
            FuzzIncarnation::Absolute(value) => Incarnation(value),
            FuzzIncarnation::Max => MAX_INCARNATION,
            FuzzIncarnation::BeyondMax => MAX_INCARNATION.next(),
        }
    }

    fn address(&self, member: NodeId, fuzz: &FuzzAddress) -> Address {
        match fuzz {
            FuzzAddress::Own => address(member),
            FuzzAddress::OfMember(other) => address(other.id()),
            FuzzAddress::Raw(bytes) => Address::new(bytes.clone()),
        }
    }

    fn metadata(fuzz: &FuzzMetadata) -> Metadata {
        match fuzz {
            FuzzMetadata::Empty => Metadata::default(),
            FuzzMetadata::Bytes(bytes) => Metadata::new(bytes.clone()),
            FuzzMetadata::Filled { len, byte } => Metadata::new(vec![*byte; usize::from(*len % 512)]),
        }
    }

    fn update(&self, fuzz: &FuzzUpdate) -> Update {
        match fuzz {
            FuzzUpdate::Alive { member, incarnation, address, metadata } => {
                let member = member.id();
                Update::Alive {
                    member,
                    incarnation: self.incarnation(member, *incarnation),
                    address: self.address(member, address),
                    metadata: Self::metadata(metadata),
                }
            }
            FuzzUpdate::Suspect { member, incarnation, by } => {
                let member = member.id();
                Update::Suspect { member, incarnation: self.incarnation(member, *incarnation), by: by.id() }
            }
            FuzzUpdate::Failed { member, incarnation, by } => {
                let member = member.id();
                Update::Failed { member, incarnation: self.incarnation(member, *incarnation), by: by.id() }
            }
            FuzzUpdate::Left { member, incarnation } => {
                let member = member.id();
                Update::Left { member, incarnation: self.incarnation(member, *incarnation) }
            }
        }
    }

    fn updates(&self, fuzz: &[FuzzUpdate]) -> Vec<Update> {
        fuzz.iter().take(MAX_FUZZ_ITEMS).map(|update| self.update(update)).collect()
    }

    fn probe(&self, fuzz: FuzzProbe) -> ProbeNumber {
        match fuzz {
            FuzzProbe::Recent(back) if !self.sent.is_empty() => {
                let back = usize::from(back) % self.sent.len();
                self.sent[self.sent.len() - 1 - back].probe
            }
            FuzzProbe::Recent(back) => ProbeNumber(u64::from(back)),
            FuzzProbe::Absolute(number) => ProbeNumber(number),
        }
    }

    fn message(&self, fuzz: &FuzzMessage) -> Message {
        let from = fuzz.from.id();
        let body = match &fuzz.body {
            FuzzBody::Ping { probe } => MessageBody::Ping { probe: ProbeNumber(*probe) },
            FuzzBody::Ack { probe } => MessageBody::Ack { probe: self.probe(*probe) },
            FuzzBody::Nack { probe } => MessageBody::Nack { probe: self.probe(*probe) },
            FuzzBody::PingReq { probe, target, target_address, want_nack } => {
                let target = target.id();
                MessageBody::PingReq {
                    probe: ProbeNumber(*probe),
                    target,
                    target_address: self.address(target, target_address),
                    want_nack: *want_nack,
                }
            }
            FuzzBody::Gossip => MessageBody::Gossip,
            FuzzBody::PushPull { want_reply, members } => MessageBody::PushPull {
                want_reply: *want_reply,
                members: members
                    .iter()
                    .take(MAX_FUZZ_ITEMS)
                    .map(|record| {
                        let id = record.member.id();
                        MemberRecord {
                            id,
                            address: self.address(id, &record.address),
                            metadata: Self::metadata(&record.metadata),
                            incarnation: self.incarnation(id, record.incarnation),
                            state: match record.state % 4 {
                                0 => MemberState::Alive,
                                1 => MemberState::Suspect,
                                2 => MemberState::Failed,
                                _ => MemberState::Left,
                            },
                        }
                    })
                    .collect(),
            },
        };
        let to = match fuzz.to {
            FuzzTo::Me => Some(SELF),
            FuzzTo::Unaddressed => None,
            FuzzTo::Other(member) => Some(member.id()),
        };
        Message {
            from,
            from_address: self.address(from, &fuzz.from_address),
            to,
            body,
            updates: self.updates(&fuzz.updates),
        }
    }

    /// What a rejected message must leave untouched.
    fn observable(&self) -> String {
        format!(
            "{:?} {:?} {} {} {}",
            self.node.members().collect::<Vec<_>>(),
            self.node.incarnation(),
            self.node.live_member_count(),
            self.node.pending_updates(),
            self.node.local_health(),
        )
    }

    fn deliver(&mut self, input: Result<Message, Vec<u8>>) {
        let before = self.observable();
        let result = match input {
            Ok(message) => self.node.handle_message(self.now, message),
            Err(bytes) => self.node.handle_datagram(self.now, &bytes),
        };
        if let Err(error) = result {
            assert!(self.node.poll_action().is_none(), "a rejected message ({error}) caused an action");
            assert_eq!(self.observable(), before, "a rejected message ({error}) changed the node");
        }
    }

    fn step(&mut self, input: Input) {
        match input {
            Input::Message(fuzz) => {
                let message = self.message(&fuzz);
                self.deliver(Ok(message));
            }
            Input::Datagram(fuzz) => {
                let message = self.message(&fuzz);
                // Too large for any datagram: nothing to deliver.
                if let Ok(bytes) = wire::encode(&message, wire::MAX_DATAGRAM_BYTES) {
                    self.deliver(Err(bytes));
                }
            }
            Input::RawDatagram(bytes) => self.deliver(Err(bytes)),
            Input::Answer { back, answer, updates } => {
                if self.sent.is_empty() {
                    return;
                }
                let sent = self.sent[self.sent.len() - 1 - usize::from(back) % self.sent.len()];
                let (from, body) = match answer {
                    FuzzAnswer::Ack => (sent.to, MessageBody::Ack { probe: sent.probe }),
                    FuzzAnswer::Nack => (sent.to, MessageBody::Nack { probe: sent.probe }),
                    FuzzAnswer::AckFrom(sender) => (sender.id(), MessageBody::Ack { probe: sent.probe }),
                };
                let message = Message {
                    from,
                    from_address: address(from),
                    to: Some(SELF),
                    body,
                    updates: self.updates(&updates),
                };
                self.deliver(Ok(message));
            }
            Input::Advance { millis } => {
                self.now = self.now.add_millis(u64::from(millis));
                self.node.handle_timeout(self.now);
            }
            Input::AdvanceSeconds { seconds } => {
                self.now = self.now.add_millis(u64::from(seconds) * 1000);
                self.node.handle_timeout(self.now);
            }
            Input::FireDeadline => {
                // The deadline may lie in the past (by design): then fire now.
                self.now = self.now.max(self.node.poll_timeout());
                self.node.handle_timeout(self.now);
            }
            Input::SetMetadata(fuzz) => {
                let before = self.node.incarnation();
                let metadata = Self::metadata(&fuzz);
                match self.node.set_metadata(self.now, metadata.clone()) {
                    Ok(()) => {
                        assert_eq!(
                            self.node.incarnation(),
                            before.next(),
                            "set_metadata raises the incarnation by one"
                        );
                        assert_eq!(self.node.metadata(), &metadata);
                    }
                    Err(_) => assert_eq!(self.node.incarnation(), before, "a refused set_metadata changed nothing"),
                }
            }
            Input::Leave => {
                self.node.leave(self.now);
                self.left = true;
            }
        }
        self.drain();
        self.check_invariants();
    }

    fn drain(&mut self) {
        let budget = self.node.config().max_message_bytes;
        let mut actions = 0usize;
        while let Some(action) = self.node.poll_action() {
            actions += 1;
            assert!(actions < 100_000, "one input produced unbounded actions");
            let Action::Send { to: _, message } = action else {
                continue;
            };
            assert_eq!(message.from, SELF, "messages go out from the node itself");
            assert_eq!(message.from_address, self.node.config().address, "messages carry the node's address");
            assert_ne!(message.to, Some(SELF), "a message to itself: {message:?}");
            let bytes = match wire::encode(&message, budget) {
                Ok(bytes) => bytes,
                Err(error) => panic!("a message beyond the budget of {budget} bytes ({error}): {message:?}"),
            };
            assert_eq!(wire::decode(&bytes, budget).as_ref(), Ok(&message), "round trip");
            let probe = match &message.body {
                MessageBody::Ping { probe } | MessageBody::PingReq { probe, .. } => Some(*probe),
                _ => None,
            };
            if let (Some(probe), Some(to)) = (probe, message.to) {
                if self.sent.len() == PROBE_HISTORY {
                    self.sent.pop_front();
                }
                self.sent.push_back(Sent { to, probe });
            }
        }
    }

    fn check_invariants(&mut self) {
        let node = &self.node;
        assert!(node.member(SELF).is_none(), "the node lists itself");
        let mut live = 0usize;
        for member in node.members() {
            assert_ne!(member.id, SELF, "the node lists itself");
            if member.state.is_live() {
                live += 1;
            }
            assert_eq!(
                member.state == MemberState::Suspect,
                node.suspicion(member.id).is_some(),
                "suspicions run for exactly the suspects: {member:?}"
            );
        }
        assert_eq!(node.live_member_count(), live + 1, "live_member_count is the live members plus the node");
        assert!(node.incarnation() >= self.last_incarnation, "the node's incarnation went backwards");
        assert!(node.incarnation() <= MAX_INCARNATION, "the node's incarnation is beyond what peers accept");
        assert_eq!(node.has_left(), self.left, "has_left follows leave()");
        // Never panics; may lie in the past by design.
        let _ = node.poll_timeout();
        self.last_incarnation = node.incarnation();
    }
}

fuzz_target!(|case: Case| {
    let mut harness = Harness::new(case.profile);
    for input in case.inputs.into_iter().take(MAX_STEPS) {
        harness.step(input);
    }
});
