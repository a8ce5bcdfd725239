//! Peer input never panics a SWIM node: oversized and malformed input is
//! rejected as a value, whole, and leaves the node's state untouched; random
//! bytes and random (structurally valid but hostile) messages are survived.

use chorus_core::swim::{
    wire, Action, Address, Config, Incarnation, MemberRecord, MemberState, Message, MessageBody, MessageError,
    Metadata, ProbeNumber, SwimNode, Update, WireError, MAX_INCARNATION,
};
use chorus_core::types::{NodeId, Time};
use proptest::prelude::*;

fn address(id: u64) -> Address {
    Address::new(format!("node-{id}").into_bytes())
}

fn record(id: u64) -> MemberRecord {
    MemberRecord {
        id: NodeId(id),
        address: address(id),
        metadata: Metadata::default(),
        incarnation: Incarnation(0),
        state: MemberState::Alive,
    }
}

/// Node 1, knowing nodes 2 to 5.
fn node() -> SwimNode {
    let mut node = SwimNode::new(Config::new(NodeId(1), address(1)), Time::ZERO).unwrap();
    let body = MessageBody::PushPull { want_reply: false, members: (2..=5).map(record).collect() };
    node.handle_message(Time::ZERO, message(2, body, vec![])).unwrap();
    while node.poll_action().is_some() {}
    node
}

fn message(from: u64, body: MessageBody, updates: Vec<Update>) -> Message {
    Message { from: NodeId(from), from_address: address(from), to: Some(NodeId(1)), body, updates }
}

/// Drains the node, checking that everything it sends fits its budget.
fn drain_checked(node: &mut SwimNode) -> Vec<Action> {
    let budget = node.config().max_message_bytes;
    let actions: Vec<Action> = std::iter::from_fn(|| node.poll_action()).collect();
    for action in &actions {
        if let Action::Send { message, .. } = action {
            let bytes = wire::encode(message, budget).expect("every message the node builds fits its budget");
            assert_eq!(wire::decode(&bytes, budget).as_ref(), Ok(message), "round trip");
        }
    }
    actions
}

/// A view of the node's state that must not change when input is rejected.
fn snapshot(node: &SwimNode) -> String {
    format!(
        "{:?} {:?} {} {}",
        node.members().collect::<Vec<_>>(),
        node.incarnation(),
        node.local_health(),
        node.pending_updates()
    )
}

fn assert_rejected(node: &mut SwimNode, message: Message, expected: fn(&MessageError) -> bool) {
    let before = snapshot(node);
    let result = node.handle_message(Time::from_millis(5), message);
    assert!(result.as_ref().is_err_and(expected), "unexpected result {result:?}");
    assert!(drain_checked(node).is_empty(), "a rejected message causes nothing");
    assert_eq!(snapshot(node), before, "a rejected message changes nothing");
}

#[test]
fn an_oversized_datagram_is_rejected_before_decoding() {
    let mut node = node();
    let bytes = vec![0u8; node.config().max_message_bytes + 1];
    let result = node.handle_datagram(Time::ZERO, &bytes);
    assert!(matches!(result, Err(MessageError::Wire(WireError::TooLarge { .. }))));
}

#[test]
fn an_incarnation_beyond_the_limit_is_rejected() {
    let mut node = node();
    let update = Update::Suspect { member: NodeId(3), incarnation: MAX_INCARNATION.next(), by: NodeId(2) };
    assert_rejected(&mut node, message(2, MessageBody::Gossip, vec![update]), |error| {
        matches!(error, MessageError::IncarnationTooLarge { .. })
    });
}

#[test]
fn oversized_metadata_and_addresses_are_rejected() {
    let mut node = node();
    let limit = node.config().max_metadata_bytes;
    let update = Update::Alive {
        member: NodeId(9),
        incarnation: Incarnation(0),
        address: address(9),
        metadata: Metadata::new(vec![0; limit + 1]),
    };
    assert_rejected(&mut node, message(2, MessageBody::Gossip, vec![update]), |error| {
        matches!(error, MessageError::MetadataTooLarge { .. })
    });
    let mut long = message(2, MessageBody::Ping { probe: ProbeNumber(1) }, vec![]);
    long.from_address = Address::new(vec![b'x'; node.config().max_address_bytes + 1]);
    assert_rejected(&mut node, long, |error| matches!(error, MessageError::AddressTooLong { .. }));
}

#[test]
fn a_message_for_another_identity_or_from_our_own_is_rejected() {
    let mut node = node();
    let mut misaddressed = message(2, MessageBody::Ping { probe: ProbeNumber(1) }, vec![]);
    misaddressed.to = Some(NodeId(7));
    assert_rejected(&mut node, misaddressed, |error| matches!(error, MessageError::Misaddressed { .. }));
    let from_self = message(1, MessageBody::Ping { probe: ProbeNumber(1) }, vec![]);
    assert_rejected(&mut node, from_self, |error| matches!(error, MessageError::FromSelf));
}

#[test]
fn a_state_with_more_members_than_the_limit_is_rejected() {
    let mut config = Config::new(NodeId(1), address(1));
    config.max_members = 8;
    let mut node = SwimNode::new(config, Time::ZERO).unwrap();
    let body = MessageBody::PushPull { want_reply: true, members: (2..=10).map(record).collect() };
    assert_rejected(&mut node, message(2, body, vec![]), |error| matches!(error, MessageError::TooManyItems { .. }));
}

#[test]
fn news_beyond_max_members_is_dropped_with_an_event() {
    let mut config = Config::new(NodeId(1), address(1));
    config.max_members = 4;
    let mut node = SwimNode::new(config, Time::ZERO).unwrap();
    let mut actions = Vec::new();
    for members in [vec![2, 3, 4], vec![5, 6]] {
        let body = MessageBody::PushPull { want_reply: false, members: members.into_iter().map(record).collect() };
        node.handle_message(Time::ZERO, message(2, body, vec![])).unwrap();
        actions.extend(drain_checked(&mut node));
    }
    let limited = actions
        .into_iter()
        .filter(|action| matches!(action, Action::Event(chorus_core::swim::Event::MemberLimitReached { .. })))
        .count();
    assert_eq!(node.members().count(), 3, "four members, this node included");
    assert_eq!(limited, 2);
}

#[test]
fn a_claim_about_us_at_the_incarnation_limit_does_not_overflow() {
    let mut node = node();
    let update = Update::Failed { member: NodeId(1), incarnation: MAX_INCARNATION, by: NodeId(2) };
    node.handle_message(Time::ZERO, message(2, MessageBody::Gossip, vec![update])).unwrap();
    drain_checked(&mut node);
    assert_eq!(node.incarnation(), MAX_INCARNATION);
}

// ----- random input ---------------------------------------------------------

fn member_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![4 => (1u64..=7).prop_map(NodeId), 1 => any::<u64>().prop_map(NodeId)]
}

fn incarnation() -> impl Strategy<Value = Incarnation> {
    prop_oneof![
        4 => (0u64..4).prop_map(Incarnation),
        1 => Just(MAX_INCARNATION),
        1 => Just(MAX_INCARNATION.next()),
        1 => any::<u64>().prop_map(Incarnation),
    ]
}

fn address_bytes() -> impl Strategy<Value = Address> {
    prop_oneof![
        4 => (1u64..=7).prop_map(address),
        1 => proptest::collection::vec(any::<u8>(), 0..140).prop_map(Address::new),
    ]
}

fn metadata() -> impl Strategy<Value = Metadata> {
    prop_oneof![4 => Just(Metadata::default()), 1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Metadata::new)]
}

fn state() -> impl Strategy<Value = MemberState> {
    prop_oneof![
        Just(MemberState::Alive),
        Just(MemberState::Suspect),
        Just(MemberState::Failed),
        Just(MemberState::Left)
    ]
}

fn update() -> impl Strategy<Value = Update> {
    prop_oneof![
        (member_id(), incarnation(), address_bytes(), metadata()).prop_map(
            |(member, incarnation, address, metadata)| Update::Alive { member, incarnation, address, metadata }
        ),
        (member_id(), incarnation(), member_id()).prop_map(|(member, incarnation, by)| Update::Suspect {
            member,
            incarnation,
            by
        }),
        (member_id(), incarnation(), member_id()).prop_map(|(member, incarnation, by)| Update::Failed {
            member,
            incarnation,
            by
        }),
        (member_id(), incarnation()).prop_map(|(member, incarnation)| Update::Left { member, incarnation }),
    ]
}

fn member_record() -> impl Strategy<Value = MemberRecord> {
    (member_id(), address_bytes(), metadata(), incarnation(), state()).prop_map(
        |(id, address, metadata, incarnation, state)| MemberRecord { id, address, metadata, incarnation, state },
    )
}

fn probe() -> impl Strategy<Value = ProbeNumber> {
    prop_oneof![(0u64..8).prop_map(ProbeNumber), any::<u64>().prop_map(ProbeNumber)]
}

fn body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        probe().prop_map(|probe| MessageBody::Ping { probe }),
        probe().prop_map(|probe| MessageBody::Ack { probe }),
        probe().prop_map(|probe| MessageBody::Nack { probe }),
        (probe(), member_id(), address_bytes(), any::<bool>()).prop_map(
            |(probe, target, target_address, want_nack)| {
                MessageBody::PingReq { probe, target, target_address, want_nack }
            }
        ),
        Just(MessageBody::Gossip),
        (any::<bool>(), proptest::collection::vec(member_record(), 0..6))
            .prop_map(|(want_reply, members)| MessageBody::PushPull { want_reply, members }),
    ]
}

fn hostile_message() -> impl Strategy<Value = Message> {
    let to = prop_oneof![4 => Just(Some(NodeId(1))), 1 => Just(None), 1 => member_id().prop_map(Some)];
    (member_id(), address_bytes(), to, body(), proptest::collection::vec(update(), 0..6))
        .prop_map(|(from, from_address, to, body, updates)| Message { from, from_address, to, body, updates })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_a_node(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let mut node = node();
        let _ = node.handle_datagram(Time::ZERO, &bytes);
        drain_checked(&mut node);
    }

    #[test]
    fn random_messages_never_panic_a_node(
        inputs in proptest::collection::vec((hostile_message(), 0u64..3_000, any::<bool>()), 1..24)
    ) {
        let mut node = node();
        let mut now = Time::ZERO;
        for (message, advance_ms, encode_first) in inputs {
            now = now.add_millis(advance_ms);
            // The driver's loop: fire every deadline that has come.
            for _ in 0..100 {
                if node.poll_timeout() > now {
                    break;
                }
                node.handle_timeout(now);
                drain_checked(&mut node);
            }
            prop_assert!(node.poll_timeout() > now, "handling the timeout at `now` settles everything due");
            if encode_first {
                // Through the wire, as a driver would (too large is an error, not a panic).
                if let Ok(bytes) = wire::encode(&message, wire::MAX_DATAGRAM_BYTES) {
                    let _ = node.handle_datagram(now, &bytes);
                }
            } else {
                let _ = node.handle_message(now, message);
            }
            drain_checked(&mut node);
        }
        // Time still works afterwards.
        for _ in 0..20 {
            let deadline = node.poll_timeout().max(now);
            node.handle_timeout(deadline);
            drain_checked(&mut node);
            prop_assert!(node.poll_timeout() > deadline, "the node asks for a later wake-up");
            now = deadline;
        }
    }
}
