//! How the SWIM world describes its steps: the kinds of trace record, and the
//! compact words and readable text of messages and events.

use chorus_core::swim::{Event, Message, MessageBody, Update};

/// The kind of a trace record: the first word of its binary form. The
/// numbers are part of the trace hash; never renumber them.
///
/// Each record is the simulated time in microseconds, this kind, and the
/// words listed per kind below. Members are 0-based indexes (`n{i + 1}` in
/// the text); a message kind word is 1 ping, 2 ack, 3 ping-req, 4 nack,
/// 5 gossip, 6 push-pull asking for a reply, 7 push-pull reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum SwimRecord {
    /// The run begins. Words: seed, cluster size. (The text also names the
    /// drawn fault profile, which follows from the seed.)
    RunStarted = 0,
    /// A member handled a message. Words: sender, receiver, message kind, the
    /// probe number (ping, ack, nack; a ping-req also mixes in its target's
    /// id shifted left 40 bits; a push-pull its member count; 0 for gossip),
    /// number of piggybacked updates.
    Delivered = 1,
    /// A message that never left: cut by a partition (last word 0) or lost
    /// (1) when sent. Words: sender, receiver, message kind, 0 or 1.
    DroppedAtSend = 2,
    /// A member's protocol timer fired. Word: the member.
    TimerFired = 3,
    /// A message that arrived but was not handled: the receiver was down
    /// (last word 0) or a partition cut it off in flight (1). Words: sender,
    /// receiver, message kind, 0 or 1. (Messages held by a paused member are
    /// not recorded until they are delivered.)
    NotDelivered = 4,
    /// An event a member reported about its view. Words: the observer, the
    /// event kind (1 joined, 2 updated, 3 suspected, 4 alive again, 5 failed,
    /// 6 left, 7 forgotten, 8 refuted, 9 member limit reached), the member id
    /// it is about (1-based; 0 for a refutation, which is about the observer
    /// itself), the incarnation (0 for forgotten and member limit).
    Event = 5,
    /// A member started (first start of the join wave). Word: the member.
    NodeStarted = 10,
    /// The fault phase begins (the profile's loss rate applies from now). No
    /// words.
    FaultPhaseStarted = 20,
    /// A member was made slow for the rest of the fault phase. Words: the
    /// member, its inbound lag in simulated microseconds.
    SlowMember = 21,
    /// A member crashed (its state is gone). Word: the member.
    Crashed = 22,
    /// A crashed member restarted with its identity and a higher
    /// incarnation. Word: the member.
    Restarted = 23,
    /// A member was paused: it handles nothing and its messages wait. Words:
    /// the member, the pause's length in simulated microseconds.
    Paused = 24,
    /// A paused member resumed. Word: the member.
    Resumed = 25,
    /// The network was split into a side and the rest. Words: the side's
    /// size, its first member.
    Partitioned = 26,
    /// The partition was lifted. No words.
    PartitionHealed = 27,
    /// The end of the fault phase: everything heals. No words.
    HealedEverything = 28,
    /// A member published new metadata (`SwimNode::set_metadata`). Words:
    /// the member, the metadata's version.
    MetadataChanged = 29,
    /// Every member sees every member alive. Word: simulated microseconds
    /// since the last member started.
    JoinConverged = 30,
    /// After healing, every running member sees exactly the running members
    /// as live. Word: simulated microseconds since healing.
    Settled = 31,
    /// A handler panicked (a broken internal invariant); the seed fails. No
    /// words.
    Panic = 98,
    /// The last record. Word: 1 if the seed failed, 0 if it passed.
    Verdict = 99,
}

impl From<SwimRecord> for u64 {
    fn from(kind: SwimRecord) -> u64 {
        kind as u64
    }
}

pub(super) fn body_kind(body: &MessageBody) -> u64 {
    match body {
        MessageBody::Ping { .. } => 1,
        MessageBody::Ack { .. } => 2,
        MessageBody::PingReq { .. } => 3,
        MessageBody::Nack { .. } => 4,
        MessageBody::Gossip => 5,
        MessageBody::PushPull { want_reply: true, .. } => 6,
        MessageBody::PushPull { want_reply: false, .. } => 7,
    }
}

pub(super) fn body_number(body: &MessageBody) -> u64 {
    match body {
        MessageBody::Ping { probe } | MessageBody::Ack { probe } | MessageBody::Nack { probe } => probe.0,
        MessageBody::PingReq { probe, target, .. } => probe.0 ^ (target.0 << 40),
        MessageBody::Gossip => 0,
        MessageBody::PushPull { members, .. } => members.len() as u64,
    }
}

pub(super) fn describe(from: usize, to: usize, message: &Message, bytes: usize) -> String {
    let detail = match &message.body {
        MessageBody::Ping { probe } | MessageBody::Ack { probe } | MessageBody::Nack { probe } => {
            format!("#{}", probe.0)
        }
        MessageBody::PingReq { probe, target, .. } => format!("#{} target {target}", probe.0),
        MessageBody::Gossip => String::new(),
        MessageBody::PushPull { members, .. } => format!("{} records", members.len()),
    };
    let mut text = format!("n{} -> n{} {} {detail} ({bytes} B", from + 1, to + 1, message.body.kind());
    if !message.updates.is_empty() {
        let updates: Vec<String> = message.updates.iter().take(4).map(describe_update).collect();
        text.push_str(&format!(", {} updates: {}", message.updates.len(), updates.join(" ")));
        if message.updates.len() > 4 {
            text.push_str(" ...");
        }
    }
    text.push(')');
    text
}

pub(super) fn describe_update(update: &Update) -> String {
    match update {
        Update::Alive { member, incarnation, .. } => format!("alive({member},{incarnation})"),
        Update::Suspect { member, incarnation, by } => format!("suspect({member},{incarnation},by {by})"),
        Update::Failed { member, incarnation, by } => format!("failed({member},{incarnation},by {by})"),
        Update::Left { member, incarnation } => format!("left({member},{incarnation})"),
    }
}

pub(super) fn event_words(event: &Event) -> (u64, u64, u64) {
    match event {
        Event::Joined(record) => (1, record.id.0, record.incarnation.0),
        Event::Updated(record) => (2, record.id.0, record.incarnation.0),
        Event::Suspected { member, incarnation } => (3, member.0, incarnation.0),
        Event::AliveAgain(record) => (4, record.id.0, record.incarnation.0),
        Event::Failed { member, incarnation } => (5, member.0, incarnation.0),
        Event::Left { member, incarnation } => (6, member.0, incarnation.0),
        Event::Forgotten { member } => (7, member.0, 0),
        Event::Refuted { incarnation } => (8, 0, incarnation.0),
        Event::MemberLimitReached { member } => (9, member.0, 0),
    }
}

pub(super) fn describe_event(event: &Event) -> String {
    match event {
        Event::Joined(record) => format!("Joined {} {}", record.id, record.incarnation),
        Event::Updated(record) => format!("Updated {} {}", record.id, record.incarnation),
        Event::Suspected { member, incarnation } => format!("Suspected {member} {incarnation}"),
        Event::AliveAgain(record) => format!("AliveAgain {} {}", record.id, record.incarnation),
        Event::Failed { member, incarnation } => format!("Failed {member} {incarnation}"),
        Event::Left { member, incarnation } => format!("Left {member} {incarnation}"),
        Event::Forgotten { member } => format!("Forgotten {member}"),
        Event::Refuted { incarnation } => format!("Refuted, now {incarnation}"),
        Event::MemberLimitReached { member } => format!("MemberLimitReached {member}"),
    }
}
