//! One SWIM node driven by hand: the test plays every peer, so each message
//! the node sends and each answer it gets is under the test's control.

use chorus_core::swim::{
    Action, Address, Config, Event, Incarnation, MemberRecord, MemberState, Message, MessageBody, Metadata,
    ProbeNumber, SwimNode, Update,
};
use chorus_core::types::{NodeId, Time};

fn address(id: u64) -> Address {
    Address::new(format!("node-{id}").into_bytes())
}

fn config(lifeguard: bool) -> Config {
    let mut config = Config::new(NodeId(1), address(1));
    config.lifeguard = lifeguard;
    config.rng_seed = 42;
    config
}

/// Node 1, told by node 2 (through a push-pull) that `peers` are alive.
fn node_knowing(peers: &[u64], config: Config) -> SwimNode {
    let mut node = SwimNode::new(config, Time::ZERO).unwrap();
    let members = peers
        .iter()
        .map(|&id| MemberRecord {
            id: NodeId(id),
            address: address(id),
            metadata: Metadata::default(),
            incarnation: Incarnation(0),
            state: MemberState::Alive,
        })
        .collect();
    let body = MessageBody::PushPull { want_reply: false, members };
    node.handle_message(Time::ZERO, message(2, body, vec![])).unwrap();
    drain(&mut node);
    node
}

fn message(from: u64, body: MessageBody, updates: Vec<Update>) -> Message {
    Message { from: NodeId(from), from_address: address(from), to: Some(NodeId(1)), body, updates }
}

fn drain(node: &mut SwimNode) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

fn sends(actions: &[Action]) -> Vec<(u64, Message)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { to, message } => {
                let id = std::str::from_utf8(to.as_bytes()).unwrap().strip_prefix("node-").unwrap().parse().unwrap();
                Some((id, message.clone()))
            }
            Action::Event(_) => None,
        })
        .collect()
}

/// Fires the node's timers until it sends a message matching `wanted`;
/// returns the time and the message.
fn next_send(node: &mut SwimNode, wanted: impl Fn(u64, &Message) -> bool) -> (Time, u64, Message) {
    for _ in 0..1_000 {
        let now = node.poll_timeout();
        node.handle_timeout(now);
        if let Some((to, message)) = sends(&drain(node)).into_iter().find(|(to, message)| wanted(*to, message)) {
            return (now, to, message);
        }
    }
    panic!("the node never sent the expected message");
}

fn is_ping(message: &Message) -> Option<ProbeNumber> {
    match message.body {
        MessageBody::Ping { probe } => Some(probe),
        _ => None,
    }
}

fn suspect(member: u64, by: u64) -> Update {
    Update::Suspect { member: NodeId(member), incarnation: Incarnation(0), by: NodeId(by) }
}

#[test]
fn handle_timeout_before_the_deadline_is_a_no_op() {
    let mut node = node_knowing(&[2, 3], config(true));
    let (now, _, _) = next_send(&mut node, |_, message| is_ping(message).is_some());
    let deadline = node.poll_timeout();
    assert!(deadline > now);
    node.handle_timeout(Time::from_micros(deadline.as_micros() - 1));
    assert!(drain(&mut node).is_empty());
    assert_eq!(node.poll_timeout(), deadline);
}

#[test]
fn lifeguard_suspicion_timeout_shrinks_with_independent_confirmations() {
    let mut node = node_knowing(&[2, 3, 4, 5, 6], config(true));
    let start = Time::from_millis(100);
    node.handle_message(start, message(2, MessageBody::Gossip, vec![suspect(6, 2)])).unwrap();
    let timeouts = node.suspicion(NodeId(6)).unwrap().timeouts();
    assert_eq!(timeouts.expected_confirmations, 3);
    assert_eq!(timeouts.max_micros, 6 * timeouts.min_micros);
    let mut deadlines = vec![node.suspicion(NodeId(6)).unwrap().deadline()];
    assert_eq!(deadlines[0], start.add_micros(timeouts.max_micros), "with no confirmation: the maximum");
    for by in [3, 3, 4, 5, 4] {
        node.handle_message(start, message(by, MessageBody::Gossip, vec![suspect(6, by)])).unwrap();
        deadlines.push(node.suspicion(NodeId(6)).unwrap().deadline());
    }
    assert!(deadlines[1] < deadlines[0], "the first confirmation shortens the timeout");
    assert_eq!(deadlines[2], deadlines[1], "a repeated confirmation is not independent");
    assert!(deadlines[3] < deadlines[2]);
    assert_eq!(deadlines[4], start.add_micros(timeouts.min_micros), "K confirmations reach the minimum");
    assert_eq!(deadlines[5], deadlines[4], "never below the minimum");
    drain(&mut node);

    node.handle_timeout(deadlines[4]);
    let events: Vec<_> = drain(&mut node)
        .into_iter()
        .filter_map(|action| match action {
            Action::Event(event) => Some(event),
            Action::Send { .. } => None,
        })
        .collect();
    assert!(events.contains(&Event::Failed { member: NodeId(6), incarnation: Incarnation(0) }));
}

#[test]
fn without_lifeguard_the_suspicion_timeout_is_fixed() {
    let mut node = node_knowing(&[2, 3, 4, 5, 6], config(false));
    let start = Time::from_millis(100);
    node.handle_message(start, message(2, MessageBody::Gossip, vec![suspect(6, 2)])).unwrap();
    let first = node.suspicion(NodeId(6)).unwrap().deadline();
    let timeouts = node.suspicion(NodeId(6)).unwrap().timeouts();
    assert_eq!(first, start.add_micros(timeouts.min_micros));
    node.handle_message(start, message(3, MessageBody::Gossip, vec![suspect(6, 3)])).unwrap();
    assert_eq!(node.suspicion(NodeId(6)).unwrap().deadline(), first);
}

/// Drives node 1 for `periods` protocol periods, acking every ping so that
/// suspicions can only end by timing out; returns every ping it sent.
fn pings_with_acks(node: &mut SwimNode, periods: usize) -> Vec<(u64, Message)> {
    let mut pings = Vec::new();
    for _ in 0..periods {
        let (now, to, ping) = next_send(node, |_, message| is_ping(message).is_some());
        let probe = is_ping(&ping).unwrap();
        node.handle_message(now, message(to, MessageBody::Ack { probe }, vec![])).unwrap();
        drain(node);
        pings.push((to, ping));
    }
    pings
}

/// A long suspicion timeout, and each update piggybacked only once.
fn buddy_config(lifeguard: bool) -> Config {
    let mut config = config(lifeguard);
    config.suspicion_multiplier = 20;
    config.retransmit_multiplier = 1;
    config
}

fn carries_suspicion_of(message: &Message, member: u64) -> bool {
    message.updates.iter().any(|update| matches!(update, Update::Suspect { member: m, .. } if *m == NodeId(member)))
}

#[test]
fn the_buddy_system_puts_the_suspicion_on_every_ping_to_the_suspect() {
    let mut node = node_knowing(&[2, 3], buddy_config(true));
    node.handle_message(Time::ZERO, message(3, MessageBody::Gossip, vec![suspect(2, 3)])).unwrap();
    drain(&mut node);
    let pings = pings_with_acks(&mut node, 12);
    assert_eq!(node.member(NodeId(2)).unwrap().state, MemberState::Suspect, "still suspect: acks do not refute");
    let to_suspect: Vec<_> = pings.iter().filter(|(to, _)| *to == 2).collect();
    assert!(to_suspect.len() >= 4);
    for (_, ping) in &to_suspect {
        assert!(
            matches!(ping.updates.first(), Some(Update::Suspect { member, .. }) if *member == NodeId(2)),
            "every ping to the suspect leads with its suspicion"
        );
    }
    let to_others_with_it = pings.iter().filter(|(to, ping)| *to == 3 && carries_suspicion_of(ping, 2)).count();
    assert!(to_others_with_it <= 1, "ordinary piggybacking sent it once");
}

#[test]
fn without_lifeguard_pings_to_a_suspect_carry_the_suspicion_only_while_it_is_gossiped() {
    let mut node = node_knowing(&[2, 3], buddy_config(false));
    node.handle_message(Time::ZERO, message(3, MessageBody::Gossip, vec![suspect(2, 3)])).unwrap();
    drain(&mut node);
    let pings = pings_with_acks(&mut node, 12);
    assert_eq!(node.member(NodeId(2)).unwrap().state, MemberState::Suspect);
    assert!(pings.iter().filter(|(to, _)| *to == 2).count() >= 4);
    let carrying = pings.iter().filter(|(_, ping)| carries_suspicion_of(ping, 2)).count();
    assert!(carrying <= 1, "the suspicion went out once, like any other update: {carrying}");
}

/// Fires the node's timers until one step sends a message matching
/// `wanted`; returns the time and everything sent in that step.
fn step_until(node: &mut SwimNode, wanted: impl Fn(&Message) -> bool) -> (Time, Vec<(u64, Message)>) {
    for _ in 0..1_000 {
        let now = node.poll_timeout();
        node.handle_timeout(now);
        let out = sends(&drain(node));
        if out.iter().any(|(_, message)| wanted(message)) {
            return (now, out);
        }
    }
    panic!("the node never sent the expected message");
}

fn is_ping_req(message: &Message) -> bool {
    matches!(message.body, MessageBody::PingReq { .. })
}

#[test]
fn missed_nacks_raise_local_health_but_received_nacks_do_not() {
    let mut node = node_knowing(&[2, 3, 4, 5], config(true));

    // Probe 1: the target is silent, but every helper nacks: the problem is
    // the target's, not ours.
    let (_, target, ping) = next_send(&mut node, |_, message| is_ping(message).is_some());
    let probe = is_ping(&ping).unwrap();
    let (now, ping_reqs) = step_until(&mut node, is_ping_req);
    assert_eq!(ping_reqs.len(), 3, "indirect_checks helpers");
    for (helper, _) in &ping_reqs {
        node.handle_message(now, message(*helper, MessageBody::Nack { probe }, vec![])).unwrap();
    }
    drain(&mut node);
    next_send(&mut node, |_, message| is_ping(message).is_some());
    assert_eq!(node.local_health(), 0, "every promised nack came");
    assert_eq!(node.member(NodeId(target)).unwrap().state, MemberState::Suspect, "the silent target is suspected");

    // Probe 2: silence all around, helpers included: we are the likely problem.
    let (_, ping_reqs) = step_until(&mut node, is_ping_req);
    let helpers = ping_reqs.iter().filter(|(_, message)| is_ping_req(message)).count() as u32;
    assert!(helpers >= 1);
    let (_, third_target, third_ping) = next_send(&mut node, |_, message| is_ping(message).is_some());
    assert_eq!(node.local_health(), helpers, "one point per missed nack");
    assert_eq!(node.probe_interval_micros(), u64::from(helpers + 1) * config(true).probe_interval_ms * 1000);
    assert_eq!(node.probe_timeout_micros(), u64::from(helpers + 1) * config(true).probe_timeout_ms * 1000);

    // Probe 3: answered. Success lowers the score by one.
    let probe = is_ping(&third_ping).unwrap();
    node.handle_message(node.poll_timeout(), message(third_target, MessageBody::Ack { probe }, vec![])).unwrap();
    next_send(&mut node, |_, message| is_ping(message).is_some());
    assert_eq!(node.local_health(), helpers - 1);
}

#[test]
fn local_health_grows_by_one_per_unanswered_probe_without_helpers_and_saturates() {
    let mut config = config(true);
    config.suspicion_multiplier = 64; // keep the silent member suspect, not failed
    let max = config.local_health_max;
    let mut node = node_knowing(&[2], config);
    next_send(&mut node, |_, message| is_ping(message).is_some());
    for expected in 1..=max + 2 {
        next_send(&mut node, |_, message| is_ping(message).is_some());
        assert_eq!(node.local_health(), expected.min(max));
    }
    assert_eq!(node.member(NodeId(2)).unwrap().state, MemberState::Suspect);
}

#[test]
fn without_lifeguard_local_health_stays_zero() {
    let mut config = config(false);
    config.suspicion_multiplier = 64;
    let mut node = node_knowing(&[2, 3, 4], config);
    let (_, _, ping_req) = next_send(&mut node, |_, message| is_ping_req(message));
    assert!(matches!(ping_req.body, MessageBody::PingReq { want_nack: false, .. }), "no nacks asked for");
    for _ in 0..6 {
        next_send(&mut node, |_, message| is_ping(message).is_some());
        assert_eq!(node.local_health(), 0, "silent probes do not count against this node");
    }
}

#[test]
fn a_helper_relays_the_targets_ack_or_nacks_when_it_stays_silent() {
    let mut node = node_knowing(&[2, 3, 4], config(true));
    let now = Time::from_millis(10);
    let ping_req = |probe| MessageBody::PingReq {
        probe: ProbeNumber(probe),
        target: NodeId(3),
        target_address: address(3),
        want_nack: true,
    };
    node.handle_message(now, message(2, ping_req(77), vec![])).unwrap();
    let out = sends(&drain(&mut node));
    let (to, ping) = out.iter().find(|(_, message)| is_ping(message).is_some()).unwrap();
    assert_eq!(*to, 3);
    let relay_probe = is_ping(ping).unwrap();
    node.handle_message(now, message(3, MessageBody::Ack { probe: relay_probe }, vec![])).unwrap();
    let out = sends(&drain(&mut node));
    assert!(out.iter().any(|(to, message)| *to == 2 && message.body == MessageBody::Ack { probe: ProbeNumber(77) }));

    node.handle_message(now, message(2, ping_req(78), vec![])).unwrap();
    drain(&mut node);
    let (_, to, nack) = next_send(&mut node, |_, message| matches!(message.body, MessageBody::Nack { .. }));
    assert_eq!((to, nack.body), (2, MessageBody::Nack { probe: ProbeNumber(78) }));
}

#[test]
fn an_ack_from_someone_other_than_the_target_or_a_helper_does_not_count() {
    let mut node = node_knowing(&[2, 3, 4], config(true));
    let (now, target, ping) = next_send(&mut node, |_, message| is_ping(message).is_some());
    let probe = is_ping(&ping).unwrap();
    let impostor = (2..=4).find(|id| *id != target).unwrap();
    node.handle_message(now, message(impostor, MessageBody::Ack { probe }, vec![])).unwrap();
    let out = sends(&drain(&mut node));
    assert!(out.is_empty());
    next_send(&mut node, |_, message| matches!(message.body, MessageBody::PingReq { .. }));
}

fn gossip_sends(actions: &[Action]) -> Vec<(u64, Message)> {
    sends(actions).into_iter().filter(|(_, message)| message.body == MessageBody::Gossip).collect()
}

#[test]
fn gossip_rounds_send_waiting_news_to_fanout_distinct_alive_members() {
    let mut config = config(true);
    // memberlist's behaviour: gossip whenever anything waits.
    config.gossip_backlog_bytes = 0;
    let (fanout, interval_micros) = (config.gossip_fanout, config.gossip_interval_ms * 1000);
    let mut node = node_knowing(&(2..=20).collect::<Vec<_>>(), config);
    assert!(node.pending_updates() > 0, "node 2 and this node itself are news to spread");
    let mut rounds: Vec<(Time, Vec<(u64, Message)>)> = Vec::new();
    for _ in 0..200 {
        let now = node.poll_timeout();
        node.handle_timeout(now);
        let gossip = gossip_sends(&drain(&mut node));
        if !gossip.is_empty() {
            rounds.push((now, gossip));
        }
        if rounds.len() == 2 {
            break;
        }
    }
    assert_eq!(rounds.len(), 2, "gossip rounds happen while news waits");
    for (_, gossip) in &rounds {
        let targets: std::collections::BTreeSet<u64> = gossip.iter().map(|(to, _)| *to).collect();
        assert_eq!(targets.len(), gossip.len(), "distinct targets");
        assert!(gossip.len() <= fanout);
        assert!(targets.iter().all(|to| (2..=20).contains(to)));
        assert!(gossip.iter().all(|(_, message)| !message.updates.is_empty()), "never an empty gossip message");
    }
    assert_eq!(rounds[1].0.micros_since(rounds[0].0), interval_micros, "one round per gossip interval");
}

fn alive(id: u64) -> Update {
    Update::Alive {
        member: NodeId(id),
        incarnation: Incarnation(0),
        address: address(id),
        metadata: Metadata::default(),
    }
}

/// Runs `node` through `steps` timeouts, answering no ping, and counts the
/// gossip messages it sends.
fn gossip_messages_over(node: &mut SwimNode, steps: usize) -> usize {
    (0..steps)
        .map(|_| {
            let now = node.poll_timeout();
            node.handle_timeout(now);
            gossip_sends(&drain(node)).len()
        })
        .sum()
}

#[test]
fn a_trickle_of_news_rides_on_probes_and_only_a_backlog_opens_gossip_rounds() {
    let config = config(true);
    let backlog = config.gossip_backlog_bytes;
    let mut node = node_knowing(&(2..=20).collect::<Vec<_>>(), config.clone());
    assert_eq!(gossip_messages_over(&mut node, 30), 0, "two updates are no backlog");

    let mut node = node_knowing(&(2..=20).collect::<Vec<_>>(), config);
    // A hundred and twenty newcomers, announced by node 3 in three messages.
    for batch in [100..140, 140..180, 180..220] {
        let updates = batch.map(alive).collect();
        node.handle_message(Time::ZERO, message(3, MessageBody::Gossip, updates)).unwrap();
    }
    drain(&mut node);
    assert!(chorus_core::swim::wire::encoded_len(&(100..220).map(alive).collect::<Vec<_>>()) > backlog);
    assert!(gossip_messages_over(&mut node, 10) > 0, "a backlog is gossiped");
}

#[test]
fn a_refutation_goes_out_in_one_gossip_round_whatever_the_backlog() {
    let config = config(true);
    let interval_micros = config.gossip_interval_ms * 1000;
    let mut node = node_knowing(&(2..=20).collect::<Vec<_>>(), config);
    assert_eq!(gossip_messages_over(&mut node, 30), 0, "no backlog, no gossip");
    let now = node.poll_timeout();
    let suspicion = Update::Suspect { member: NodeId(1), incarnation: node.incarnation(), by: NodeId(7) };
    node.handle_message(now, message(7, MessageBody::Gossip, vec![suspicion])).unwrap();
    drain(&mut node);
    let refuted = node.incarnation();
    assert!(refuted > Incarnation(0));
    let mut rounds = Vec::new();
    for _ in 0..60 {
        let at = node.poll_timeout();
        node.handle_timeout(at);
        let gossip = gossip_sends(&drain(&mut node));
        if !gossip.is_empty() {
            rounds.push((at, gossip));
        }
    }
    assert_eq!(rounds.len(), 1, "one round for the refutation, then quiet again");
    let (at, gossip) = &rounds[0];
    assert!(at.micros_since(now) <= interval_micros, "within one gossip interval");
    for (_, message) in gossip {
        assert!(message.updates.iter().any(|update| matches!(update,
            Update::Alive { member: NodeId(1), incarnation, .. } if *incarnation == refuted)));
    }
}

#[test]
fn records_relayed_by_push_pull_are_spread_only_once_gossip_repeats_them() {
    let mut node = node_knowing(&(2..=20).collect::<Vec<_>>(), config(true));
    // This node's own alive, and node 2's (the sender's own record).
    assert_eq!(node.pending_updates(), 2, "the relayed records are repair, not news");
    node.handle_message(Time::ZERO, message(3, MessageBody::Gossip, vec![alive(5)])).unwrap();
    assert_eq!(node.pending_updates(), 3, "gossip about member 5 makes this node spread it too");
    assert!(drain(&mut node).iter().all(|action| !matches!(action, Action::Event(_))), "no news for the layers above");
    node.handle_message(Time::ZERO, message(4, MessageBody::Gossip, vec![alive(5)])).unwrap();
    assert_eq!(node.pending_updates(), 3);
}

#[test]
fn without_gossip_fanout_news_rides_on_probes_only() {
    let mut config = config(true);
    config.gossip_fanout = 0;
    let mut node = node_knowing(&(2..=20).collect::<Vec<_>>(), config);
    for _ in 0..50 {
        let now = node.poll_timeout();
        node.handle_timeout(now);
        assert!(gossip_sends(&drain(&mut node)).is_empty());
    }
}

#[test]
fn a_node_with_no_news_sends_no_gossip() {
    let mut node = node_knowing(&[2, 3, 4], config(true));
    // Answer every ping so that nothing new happens; the join news drains.
    let (mut gossip_after_drain, mut quiet_steps) = (0, 0);
    for _ in 0..400 {
        let quiet = node.pending_updates() == 0;
        let now = node.poll_timeout();
        node.handle_timeout(now);
        let actions = drain(&mut node);
        if quiet && node.pending_updates() == 0 {
            quiet_steps += 1;
            gossip_after_drain += gossip_sends(&actions).len();
        }
        for (to, message) in sends(&actions) {
            if let MessageBody::Ping { probe } = message.body {
                node.handle_message(now, message_to_ack(to, probe)).unwrap();
                drain(&mut node);
            }
        }
    }
    assert!(quiet_steps > 100, "the join news was spread and dropped ({quiet_steps} quiet steps)");
    assert_eq!(gossip_after_drain, 0);
}

fn message_to_ack(from: u64, probe: ProbeNumber) -> Message {
    message(from, MessageBody::Ack { probe }, vec![])
}

fn record(id: u64, state: MemberState) -> MemberRecord {
    MemberRecord {
        id: NodeId(id),
        address: address(id),
        metadata: Metadata::default(),
        incarnation: Incarnation(0),
        state,
    }
}

fn deadline_of_suspicion(node: &SwimNode, member: u64) -> Time {
    node.suspicion(NodeId(member)).expect("the member is suspect").deadline()
}

#[test]
fn a_suspicion_learned_from_push_pull_is_no_confirmation_by_its_sender() {
    let mut node = node_knowing(&[2, 3, 4, 5, 6], config(true));
    let start = Time::from_millis(100);
    let state = MessageBody::PushPull { want_reply: false, members: vec![record(6, MemberState::Suspect)] };
    node.handle_message(start, message(2, state, vec![])).unwrap();
    let max = start.add_micros(node.suspicion(NodeId(6)).unwrap().timeouts().max_micros);
    assert_eq!(deadline_of_suspicion(&node, 6), max, "the full timeout");
    // Node 2 only said it believes 6 suspect; it may have heard it from
    // node 3. Neither node 2's nor node 3's word is a second opinion yet.
    node.handle_message(start, message(2, MessageBody::Gossip, vec![suspect(6, 6)])).unwrap();
    assert_eq!(deadline_of_suspicion(&node, 6), max, "an unattributed suspicion confirms nothing");
    node.handle_message(start, message(3, MessageBody::Gossip, vec![suspect(6, 3)])).unwrap();
    assert_eq!(deadline_of_suspicion(&node, 6), max, "the first suspecter named is the original one");
    node.handle_message(start, message(4, MessageBody::Gossip, vec![suspect(6, 4)])).unwrap();
    assert!(deadline_of_suspicion(&node, 6) < max, "the second one confirms");
}

#[test]
fn a_suspicion_learned_from_push_pull_is_gossiped_on_as_unattributed() {
    let mut node = node_knowing(&[2, 3, 4, 5, 6], config(true));
    let state = MessageBody::PushPull { want_reply: false, members: vec![record(6, MemberState::Failed)] };
    node.handle_message(Time::ZERO, message(2, state, vec![])).unwrap();
    assert_eq!(node.member(NodeId(6)).unwrap().state, MemberState::Suspect, "a failure in a state is a suspicion");
    let (_, _, ping) = next_send(&mut node, |to, message| to != 6 && carries_suspicion_of(message, 6));
    let gossiped = ping.updates.iter().find(|update| update.member() == NodeId(6)).unwrap();
    assert_eq!(*gossiped, suspect(6, 6), "attributed to the suspect itself: no one's confirmation");
}

fn suspect_of_node_1(incarnation: u64, by: u64) -> Update {
    Update::Suspect { member: NodeId(1), incarnation: Incarnation(incarnation), by: NodeId(by) }
}

fn is_alive_at(update: &Update, member: u64, incarnation: Incarnation) -> bool {
    matches!(update, Update::Alive { member: m, incarnation: i, .. } if *m == NodeId(member) && *i == incarnation)
}

#[test]
fn an_ack_to_a_ping_carrying_an_outdated_suspicion_carries_the_refutation() {
    let mut node = node_knowing(&[2, 3], config(true));
    node.handle_message(Time::ZERO, message(3, MessageBody::Gossip, vec![suspect_of_node_1(0, 3)])).unwrap();
    drain(&mut node);
    let refuted = node.incarnation();
    assert_eq!(refuted, Incarnation(1));
    // The refutation has been piggybacked as often as it will be.
    pings_with_acks(&mut node, 20);
    assert_eq!(node.pending_updates(), 0, "nothing left to piggyback");
    // Node 2 missed all of it and still counts down its suspicion of us.
    let now = node.poll_timeout();
    let ping = MessageBody::Ping { probe: ProbeNumber(9) };
    node.handle_message(now, message(2, ping, vec![suspect_of_node_1(0, 2)])).unwrap();
    let out = sends(&drain(&mut node));
    let (to, ack) = out.iter().find(|(_, message)| matches!(message.body, MessageBody::Ack { .. })).unwrap();
    assert_eq!(*to, 2);
    assert!(ack.updates.first().is_some_and(|update| is_alive_at(update, 1, refuted)), "{:?}", ack.updates);
    assert_eq!(node.incarnation(), refuted, "an outdated claim needs no new refutation");
}

#[test]
fn an_outdated_suspicion_on_a_message_without_reply_is_answered_in_the_next_gossip_round() {
    let mut node = node_knowing(&[2, 3, 4, 5, 6], config(true));
    node.handle_message(Time::ZERO, message(3, MessageBody::Gossip, vec![suspect_of_node_1(0, 3)])).unwrap();
    drain(&mut node);
    let refuted = node.incarnation();
    pings_with_acks(&mut node, 40);
    assert_eq!(node.pending_updates(), 0, "nothing left to piggyback");
    assert!(gossip_over(&mut node, 20).is_empty(), "no news, no gossip");
    // Node 2 missed the refutation; its ack (the buddy system puts its
    // suspicion on it) and its ping-req both repeat the outdated claim.
    let now = node.poll_timeout();
    node.handle_message(now, message(2, MessageBody::Ack { probe: ProbeNumber(99) }, vec![suspect_of_node_1(0, 2)]))
        .unwrap();
    let ping_req =
        MessageBody::PingReq { probe: ProbeNumber(7), target: NodeId(5), target_address: address(5), want_nack: true };
    node.handle_message(now, message(2, ping_req, vec![suspect_of_node_1(0, 2)])).unwrap();
    assert!(sends(&drain(&mut node)).iter().all(|(_, message)| !matches!(message.body, MessageBody::Gossip)));
    let gossip = gossip_over(&mut node, 10);
    let answers: Vec<_> = gossip
        .iter()
        .filter(|(to, message)| *to == 2 && message.updates.first().is_some_and(|u| is_alive_at(u, 1, refuted)))
        .collect();
    assert_eq!(answers.len(), 1, "one answer, our alive record first: {gossip:?}");
    assert_eq!(gossip.len(), 1, "nothing else to gossip: {gossip:?}");
    assert_eq!(node.incarnation(), refuted, "an outdated claim needs no new refutation");
}

#[test]
fn a_push_pull_record_that_says_an_unknown_member_is_down_does_not_introduce_it() {
    let mut node = node_knowing(&[2, 3], config(true));
    let members = vec![record(7, MemberState::Suspect), record(8, MemberState::Failed), record(9, MemberState::Alive)];
    node.handle_message(Time::ZERO, message(2, MessageBody::PushPull { want_reply: false, members }, vec![])).unwrap();
    assert!(node.member(NodeId(7)).is_none(), "a suspect we never knew is not learned");
    assert!(node.member(NodeId(8)).is_none(), "nor a failed one");
    assert_eq!(node.member(NodeId(9)).unwrap().state, MemberState::Alive);
    assert!(node.suspicion(NodeId(7)).is_none());
}

/// Steps `node` through its timers for `steps` deadlines; the gossip it sent.
fn gossip_over(node: &mut SwimNode, steps: usize) -> Vec<(u64, Message)> {
    (0..steps)
        .flat_map(|_| {
            let now = node.poll_timeout();
            node.handle_timeout(now);
            gossip_sends(&drain(node))
        })
        .collect()
}

#[test]
fn a_refutation_is_gossiped_to_suspects_too() {
    let mut config = config(true);
    config.suspicion_multiplier = 64; // keep node 2 suspect, not failed
    let mut node = node_knowing(&[2], config);
    node.handle_message(Time::ZERO, message(2, MessageBody::Gossip, vec![suspect(2, 3)])).unwrap();
    assert_eq!(node.member(NodeId(2)).unwrap().state, MemberState::Suspect);
    node.handle_message(Time::ZERO, message(2, MessageBody::Gossip, vec![suspect_of_node_1(0, 2)])).unwrap();
    drain(&mut node);
    let refuted = node.incarnation();
    let gossip = gossip_over(&mut node, 5);
    assert!(
        gossip.iter().any(|(to, message)| *to == 2 && message.updates.iter().any(|u| is_alive_at(u, 1, refuted))),
        "the only live member, a suspect, hears the refutation: {gossip:?}"
    );
}

#[test]
fn a_gossip_round_that_reaches_nobody_leaves_the_refutation_unsent() {
    let mut node = node_knowing(&[2], config(true));
    let failed = Update::Failed { member: NodeId(2), incarnation: Incarnation(0), by: NodeId(3) };
    node.handle_message(Time::ZERO, message(3, MessageBody::Gossip, vec![failed, suspect_of_node_1(0, 3)])).unwrap();
    drain(&mut node);
    let refuted = node.incarnation();
    assert_eq!(node.live_member_count(), 1, "alone: only a tombstone is known");
    assert!(gossip_over(&mut node, 10).is_empty(), "rounds with no one to reach");
    // Node 4 turns up: the refutation goes to it in the next round.
    let now = node.poll_timeout();
    node.handle_message(now, message(4, MessageBody::Gossip, vec![alive(4)])).unwrap();
    drain(&mut node);
    let gossip = gossip_over(&mut node, 3);
    assert!(
        gossip.iter().any(|(to, message)| *to == 4 && message.updates.iter().any(|u| is_alive_at(u, 1, refuted))),
        "{gossip:?}"
    );
}

/// A ping that repeats a suspicion its subject has refuted is answered with
/// the refutation: the pinger holds news that gossip of the newer
/// incarnation may have missed for good (50-member seed 12325: one member
/// kept a refuted suspicion 25 s, until push-pull). A claim at the current
/// incarnation is not stale and gets no correction.
#[test]
fn an_ack_corrects_a_refuted_suspicion_the_pinger_repeats() {
    let mut node = node_knowing(&[2, 3], config(true));
    let refuted = Update::Alive {
        member: NodeId(3),
        incarnation: Incarnation(1),
        address: address(3),
        metadata: Metadata::default(),
    };
    // Learned from a push-pull state, so not queued for gossip: only the
    // correction can put it on the ack.
    let record = MemberRecord {
        id: NodeId(3),
        address: address(3),
        metadata: Metadata::default(),
        incarnation: Incarnation(1),
        state: MemberState::Alive,
    };
    let state = MessageBody::PushPull { want_reply: false, members: vec![record] };
    node.handle_message(Time::ZERO, message(2, state, vec![])).unwrap();
    drain(&mut node);
    assert_eq!(node.member(NodeId(3)).unwrap().incarnation, Incarnation(1));
    let ping = |probe| MessageBody::Ping { probe: ProbeNumber(probe) };
    node.handle_message(Time::ZERO, message(2, ping(7), vec![suspect(3, 2)])).unwrap();
    let acks = sends(&drain(&mut node));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].1.body, MessageBody::Ack { probe: ProbeNumber(7) });
    assert_eq!(acks[0].1.updates.first(), Some(&refuted), "the correction goes first: {:?}", acks[0].1.updates);
    assert_eq!(node.member(NodeId(3)).unwrap().state, MemberState::Alive, "the stale claim lost");

    let current = Update::Suspect { member: NodeId(3), incarnation: Incarnation(1), by: NodeId(2) };
    node.handle_message(Time::ZERO, message(2, ping(8), vec![current])).unwrap();
    let acks = sends(&drain(&mut node));
    assert!(!acks[0].1.updates.contains(&refuted), "a current claim is not corrected: {:?}", acks[0].1.updates);
}
