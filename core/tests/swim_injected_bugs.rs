//! The injected SWIM bugs change one rule each, and only when injected; and
//! a probe that straddles its target's restart suspects nobody.

use chorus_core::swim::{
    Action, Address, Bug, Config, Event, Incarnation, MemberRecord, MemberState, Message, MessageBody, Metadata,
    SwimNode, Update,
};
use chorus_core::types::{NodeId, Time};

fn address(id: u64) -> Address {
    Address::new(format!("node-{id}").into_bytes())
}

fn config(bug: Option<Bug>) -> Config {
    let mut config = Config::new(NodeId(1), address(1));
    config.rng_seed = 7;
    config.injected_bug = bug;
    config
}

fn message(from: u64, body: MessageBody, updates: Vec<Update>) -> Message {
    Message { from: NodeId(from), from_address: address(from), to: Some(NodeId(1)), body, updates }
}

fn record(id: u64, incarnation: u64) -> MemberRecord {
    MemberRecord {
        id: NodeId(id),
        address: address(id),
        metadata: Metadata::default(),
        incarnation: Incarnation(incarnation),
        state: MemberState::Alive,
    }
}

/// Node 1 knowing `peers` alive at the given incarnations.
fn node_knowing(peers: &[(u64, u64)], bug: Option<Bug>) -> SwimNode {
    let mut node = SwimNode::new(config(bug), Time::ZERO).unwrap();
    let members = peers.iter().map(|&(id, incarnation)| record(id, incarnation)).collect();
    node.handle_message(Time::ZERO, message(2, MessageBody::PushPull { want_reply: false, members }, vec![])).unwrap();
    drain(&mut node);
    node
}

fn drain(node: &mut SwimNode) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

fn events(actions: &[Action]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Event(event) => Some(event.clone()),
            Action::Send { .. } => None,
        })
        .collect()
}

fn gossip(from: u64, update: Update) -> Message {
    message(from, MessageBody::Gossip, vec![update])
}

#[test]
fn refutation_ignored_keeps_the_incarnation_only_when_injected() {
    for (bug, refutes) in [(None, true), (Some(Bug::RefutationIgnored), false)] {
        let mut node = node_knowing(&[(2, 0), (3, 0)], bug);
        let claim = Update::Suspect { member: NodeId(1), incarnation: Incarnation(0), by: NodeId(2) };
        node.handle_message(Time::from_millis(1), gossip(2, claim)).unwrap();
        let refuted = events(&drain(&mut node)).iter().any(|event| matches!(event, Event::Refuted { .. }));
        assert_eq!(refuted, refutes, "bug {bug:?}");
        assert_eq!(node.incarnation() == Incarnation(1), refutes, "bug {bug:?}");
    }
}

#[test]
fn lower_incarnation_accepted_lets_stale_news_win_only_when_injected() {
    for (bug, accepted) in [(None, false), (Some(Bug::LowerIncarnationAccepted), true)] {
        let mut node = node_knowing(&[(2, 0), (3, 5)], bug);
        let stale = Update::Suspect { member: NodeId(3), incarnation: Incarnation(2), by: NodeId(2) };
        node.handle_message(Time::from_millis(1), gossip(2, stale)).unwrap();
        let member = node.member(NodeId(3)).unwrap();
        assert_eq!(member.state == MemberState::Suspect, accepted, "bug {bug:?}");
        assert_eq!(member.incarnation == Incarnation(2), accepted, "bug {bug:?}");
    }
}

#[test]
fn failed_never_gossiped_keeps_failures_to_itself_only_when_injected() {
    for (bug, spread) in [(None, true), (Some(Bug::FailedNeverGossiped), false)] {
        let mut node = node_knowing(&[(2, 0), (3, 0)], bug);
        let failed = Update::Failed { member: NodeId(3), incarnation: Incarnation(0), by: NodeId(2) };
        node.handle_message(Time::from_millis(1), gossip(2, failed)).unwrap();
        drain(&mut node);
        assert_eq!(node.member(NodeId(3)).unwrap().state, MemberState::Failed);
        // Ask for its state: a push-pull reply carries every member it knows.
        node.handle_message(
            Time::from_millis(2),
            message(2, MessageBody::PushPull { want_reply: true, members: vec![] }, vec![]),
        )
        .unwrap();
        let mut failed_sent = false;
        for action in drain(&mut node) {
            if let Action::Send { message, .. } = action {
                failed_sent |= message.updates.iter().any(|update| matches!(update, Update::Failed { .. }));
                if let MessageBody::PushPull { members, .. } = &message.body {
                    failed_sent |= members.iter().any(|record| record.state == MemberState::Failed);
                }
            }
        }
        assert_eq!(failed_sent, spread, "bug {bug:?}");
    }
}

#[test]
fn suspicion_never_expires_keeps_suspects_forever_only_when_injected() {
    for (bug, declared) in [(None, true), (Some(Bug::SuspicionNeverExpires), false)] {
        let mut node = node_knowing(&[(2, 0), (3, 0)], bug);
        let suspect = Update::Suspect { member: NodeId(3), incarnation: Incarnation(0), by: NodeId(2) };
        node.handle_message(Time::from_millis(1), gossip(2, suspect)).unwrap();
        drain(&mut node);
        // Let ten minutes pass, one deadline at a time.
        let mut now = Time::from_millis(1);
        while now < Time::from_millis(600_000) {
            now = node.poll_timeout().max(now);
            node.handle_timeout(now);
            drain(&mut node);
            now = now.add_micros(1);
        }
        assert_eq!(node.member(NodeId(3)).unwrap().state == MemberState::Failed, declared, "bug {bug:?}");
    }
}

#[test]
fn a_probe_that_straddles_its_targets_restart_suspects_nobody() {
    for restarted in [false, true] {
        let mut node = node_knowing(&[(3, 0)], None);
        // Wait for the ping to node 3, which never answers.
        let mut now;
        loop {
            now = node.poll_timeout();
            node.handle_timeout(now);
            let pinged = drain(&mut node).iter().any(|action| {
                matches!(action, Action::Send { message, .. } if matches!(message.body, MessageBody::Ping { .. }))
            });
            if pinged {
                break;
            }
        }
        if restarted {
            // Node 3 restarted at a higher incarnation and says so.
            let alive = Update::Alive {
                member: NodeId(3),
                incarnation: Incarnation(1),
                address: address(3),
                metadata: Metadata::default(),
            };
            node.handle_message(now.add_micros(10), gossip(3, alive)).unwrap();
            drain(&mut node);
        }
        // The protocol period ends.
        let end = now.add_millis(1_000);
        while now < end {
            now = node.poll_timeout();
            node.handle_timeout(now);
            drain(&mut node);
        }
        let state = node.member(NodeId(3)).unwrap().state;
        let expected = if restarted { MemberState::Alive } else { MemberState::Suspect };
        assert_eq!(state, expected, "restarted: {restarted}");
    }
}

#[test]
fn a_member_alone_joins_through_a_stranger_that_pings_it() {
    // Restarted with every seed down, node 1 knows nobody; node 5 probes it.
    let mut node = SwimNode::new(config(None), Time::ZERO).unwrap();
    drain(&mut node);
    let ping = message(5, MessageBody::Ping { probe: chorus_core::swim::ProbeNumber(1) }, vec![]);
    node.handle_message(Time::from_millis(10), ping.clone()).unwrap();
    let asks_state = |actions: &[Action]| {
        actions.iter().any(|action| {
            matches!(action, Action::Send { to, message }
                if *to == address(5) && matches!(message.body, MessageBody::PushPull { want_reply: true, .. }))
        })
    };
    assert!(asks_state(&drain(&mut node)), "it asks the stranger for the cluster's state");
    // Not again at once: at most once per join retry interval.
    node.handle_message(Time::from_millis(20), ping).unwrap();
    assert!(!asks_state(&drain(&mut node)));
}
