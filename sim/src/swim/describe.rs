//! How the SWIM world describes its steps: the kinds of trace record, and the
//! compact words and readable text of messages and events.

use chorus_core::swim::{Event, Message, MessageBody, Update};

/// The kind of a trace record: the first word of its binary form. The
/// numbers are part of the trace hash; never renumber them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum SwimRecord {
    /// The cluster size and profile.
    RunStarted = 0,
    Delivered = 1,
    /// Cut by a partition (last field 0) or lost (1) when sent.
    DroppedAtSend = 2,
    TimerFired = 3,
    /// The receiver was down (last field 0) or cut off in flight (1).
    NotDelivered = 4,
    /// An event a member reported.
    Event = 5,
    NodeStarted = 10,
    FaultPhaseStarted = 20,
    SlowMember = 21,
    Crashed = 22,
    Restarted = 23,
    Paused = 24,
    Resumed = 25,
    Partitioned = 26,
    PartitionHealed = 27,
    HealedEverything = 28,
    JoinConverged = 30,
    Settled = 31,
    /// A handler panicked (a broken internal invariant).
    Panic = 98,
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
