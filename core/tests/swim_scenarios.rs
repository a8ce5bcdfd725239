//! SWIM + Lifeguard scenarios on the deterministic in-memory cluster
//! (`swim_harness`). Each test reads as the property it checks.

mod swim_harness;

use chorus_core::swim::{Event, Incarnation, MemberState, Message, MessageBody, Metadata, SuspicionTimeouts, Update};
use chorus_core::types::NodeId;
use rand::Rng;
use swim_harness::{address, config, Cluster};

/// A message from `from` to `to` carrying only `updates`.
fn gossip(from: u64, to: u64, updates: Vec<Update>) -> Message {
    Message {
        from: NodeId(from),
        from_address: address(from),
        to: Some(NodeId(to)),
        body: MessageBody::Gossip,
        updates,
    }
}

fn alive(member: u64, incarnation: u64) -> Update {
    Update::Alive {
        member: NodeId(member),
        incarnation: Incarnation(incarnation),
        address: address(member),
        metadata: Metadata::default(),
    }
}

/// The longest a suspicion can run in a cluster of `n` under the default
/// config: Lifeguard's maximum, β times the classic timeout.
fn max_suspicion_ms(n: usize) -> u64 {
    let config = config(1);
    let base = SuspicionTimeouts::base_micros(config.suspicion_multiplier, n, config.probe_interval_ms * 1000);
    base * u64::from(config.suspicion_max_multiplier) / 1000
}

#[test]
fn probe_ping_ack_cycle() {
    let mut cluster = Cluster::converged(2);
    let start = cluster.sent.len();
    cluster.run_for(10_000);
    let pings: Vec<_> = cluster.sent[start..]
        .iter()
        .filter_map(|sent| match sent.message.body {
            MessageBody::Ping { probe } if sent.from == 1 => Some((sent.at, probe)),
            _ => None,
        })
        .collect();
    assert!(pings.len() >= 9, "one probe per one-second period: {} pings", pings.len());
    for (at, probe) in pings {
        let acked = cluster.sent.iter().any(|sent| {
            sent.from == 2 && sent.to == 1 && sent.message.body == MessageBody::Ack { probe } && sent.at >= at
        });
        assert!(acked, "ping {probe:?} sent at {at} was acked");
    }
    assert!(cluster.events_where(|event| matches!(event, Event::Suspected { .. })).is_empty());
    assert_eq!(cluster.node(1).local_health(), 0);
    assert!(cluster.sent_of_kind("PingReq").is_empty(), "no indirect probes when every ping is answered");
}

#[test]
fn indirect_probe_succeeds_when_the_direct_path_is_cut() {
    let mut cluster = Cluster::converged(4);
    cluster.cut(1, 2);
    let start = cluster.sent.len();
    cluster.run_for(30_000);
    let ping_reqs = cluster.sent[start..]
        .iter()
        .filter(|sent| {
            sent.from == 1 && matches!(sent.message.body, MessageBody::PingReq { target, .. } if target == NodeId(2))
        })
        .count();
    assert!(ping_reqs > 0, "node 1 asked helpers to probe node 2");
    let relayed_acks = cluster.sent[start..]
        .iter()
        .filter(|sent| sent.to == 1 && sent.from != 2 && matches!(sent.message.body, MessageBody::Ack { .. }))
        .count();
    assert!(relayed_acks > 0, "helpers relayed node 2's acks");
    assert!(
        cluster.events_where(|event| matches!(event, Event::Suspected { .. } | Event::Failed { .. })).is_empty(),
        "nobody was suspected: the indirect path vouched for node 2"
    );
    assert!(cluster.all_see_alive(&[1, 2, 3, 4], &[1, 2, 3, 4]));
}

#[test]
fn a_crashed_member_is_declared_failed_by_every_other_member_within_a_bound_derived_from_the_config() {
    let n = 5;
    let mut cluster = Cluster::converged(n);
    let interval_ms = config(1).probe_interval_ms;
    // Round-robin probing reaches the crashed member within two passes over
    // the n - 1 others; the probe is judged at the end of its period; the
    // suspicion then runs at most Lifeguard's maximum; allow two periods for
    // the news to spread. (Local health stays at zero on a healthy network,
    // checked below, so intervals are not stretched.)
    let bound_ms = (2 * (n - 1) + 1 + 2) * interval_ms + max_suspicion_ms(n as usize);
    let crashed_at = cluster.now;
    cluster.crash(5);
    let detected = cluster
        .run_until_true(bound_ms, |cluster| cluster.all_see(&[1, 2, 3, 4], 5, MemberState::Failed))
        .expect("every survivor declared the crashed member failed within the bound");
    for observer in 1..=4 {
        assert!(cluster
            .events_of(observer)
            .any(|record| record.event == Event::Failed { member: NodeId(5), incarnation: Incarnation(0) }));
        assert_eq!(cluster.node(observer).local_health(), 0);
    }
    let false_positives =
        cluster.events_where(|event| matches!(event, Event::Failed { member, .. } if *member != NodeId(5)));
    assert!(false_positives.is_empty(), "only the crashed member failed: {false_positives:?}");
    println!("detected after {} ms (bound {bound_ms} ms)", detected.micros_since(crashed_at) / 1000);
}

#[test]
fn a_suspected_member_refutes_and_stays_alive() {
    let mut cluster = Cluster::converged(3);
    // Node 3 tells node 1 that it suspects node 2 (a false suspicion).
    let suspect = Update::Suspect { member: NodeId(2), incarnation: Incarnation(0), by: NodeId(3) };
    cluster.inject(1, gossip(3, 1, vec![suspect])).unwrap();
    assert_eq!(cluster.state(1, 2), Some(MemberState::Suspect));
    let min_suspicion_ms = max_suspicion_ms(3) / u64::from(config(1).suspicion_max_multiplier);
    cluster
        .run_until_true(min_suspicion_ms, |cluster| {
            cluster.all_see(&[1, 3], 2, MemberState::Alive) && cluster.node(2).incarnation() == Incarnation(1)
        })
        .expect("node 2 refuted before even the shortest suspicion timeout");
    assert!(cluster.events_of(2).any(|record| record.event == Event::Refuted { incarnation: Incarnation(1) }));
    assert!(cluster.events_of(1).any(|record| matches!(&record.event, Event::AliveAgain(r) if r.id == NodeId(2))));
    cluster.run_for(60_000);
    assert!(cluster.events_where(|event| matches!(event, Event::Failed { .. })).is_empty());
    assert_eq!(cluster.node(1).member(NodeId(2)).unwrap().incarnation, Incarnation(1));
}

#[test]
fn a_stale_alive_does_not_resurrect_a_failed_member() {
    let mut cluster = Cluster::converged(3);
    cluster.crash(3);
    cluster
        .run_until_true(60_000, |cluster| cluster.all_see(&[1, 2], 3, MemberState::Failed))
        .expect("the crash is detected");
    // An old piece of gossip, and an old full state, still call node 3 alive.
    cluster.inject(1, gossip(2, 1, vec![alive(3, 0)])).unwrap();
    let stale_state = MessageBody::PushPull {
        want_reply: false,
        members: vec![chorus_core::swim::MemberRecord {
            id: NodeId(3),
            address: address(3),
            metadata: Metadata::default(),
            incarnation: Incarnation(0),
            state: MemberState::Alive,
        }],
    };
    let message =
        Message { from: NodeId(2), from_address: address(2), to: Some(NodeId(1)), body: stale_state, updates: vec![] };
    cluster.inject(1, message).unwrap();
    assert_eq!(cluster.state(1, 3), Some(MemberState::Failed));
    cluster.run_for(10_000);
    assert!(cluster.all_see(&[1, 2], 3, MemberState::Failed));
    assert!(cluster.events_where(|event| matches!(event, Event::AliveAgain(_))).is_empty());
    // Only the member's own alive with a strictly higher incarnation revives it.
    cluster.inject(1, gossip(2, 1, vec![alive(3, 1)])).unwrap();
    assert_eq!(cluster.state(1, 3), Some(MemberState::Alive));
}

#[test]
fn a_restarted_member_reclaims_its_identity_with_a_higher_incarnation() {
    let mut cluster = Cluster::converged(4);
    cluster.crash(4);
    cluster
        .run_until_true(60_000, |cluster| cluster.all_see(&[1, 2, 3], 4, MemberState::Failed))
        .expect("the crash is detected");
    // Restarted with a fresh state: incarnation 0, which the others hold as failed.
    cluster.start(config(4));
    let ids = [1, 2, 3, 4];
    cluster
        .run_until_true(30_000, |cluster| cluster.all_see_alive(&ids, &ids))
        .expect("the restarted member is alive again everywhere");
    let incarnation = cluster.node(4).incarnation();
    assert!(incarnation > Incarnation(0), "it outbid its previous life's failure");
    for observer in 1..=3 {
        assert_eq!(cluster.node(observer).member(NodeId(4)).unwrap().incarnation, incarnation);
        assert!(cluster
            .events_of(observer)
            .any(|record| matches!(&record.event, Event::AliveAgain(r) if r.id == NodeId(4))));
    }
    assert!(cluster.events_of(4).any(|record| matches!(record.event, Event::Refuted { .. })));
}

#[test]
fn local_health_grows_when_acks_are_missed_and_shrinks_on_success() {
    let mut cluster = Cluster::converged(5);
    // Node 1 becomes slow to receive: every answer reaches it after its
    // protocol period is over.
    cluster.inbound_delay_ms.insert(1, 1_500);
    cluster.run_for(20_000);
    let slow_score = cluster.node(1).local_health();
    assert!(slow_score >= 3, "missed acks and nacks raised the score: {slow_score}");
    assert!(cluster.node(1).probe_interval_micros() > config(1).probe_interval_ms * 1000);
    for healthy in 2..=5 {
        assert!(
            cluster.node(healthy).local_health() < slow_score,
            "healthy node {healthy} got nacks from helpers, so it blamed the target, not itself"
        );
    }
    cluster.inbound_delay_ms.clear();
    let max = u64::from(config(1).local_health_max);
    // One point back per successful probe, each period stretched by the score.
    let bound_ms = (1..=max + 1).sum::<u64>() * config(1).probe_interval_ms + 10_000;
    cluster
        .run_until_true(bound_ms, |cluster| cluster.node(1).local_health() == 0)
        .expect("successful probes brought the score back to zero");
}

#[test]
fn dissemination_respects_the_message_budget_even_with_many_updates() {
    let mut cluster = Cluster::converged(3);
    let budget = config(1).max_message_bytes;
    // Three hundred members with sizeable metadata appear at once.
    for batch in 0..30u64 {
        let updates = (0..10u64)
            .map(|index| {
                let member = 100 + batch * 10 + index;
                Update::Alive {
                    member: NodeId(member),
                    incarnation: Incarnation(0),
                    address: address(member),
                    metadata: Metadata::new(vec![7; 100]),
                }
            })
            .collect();
        cluster.inject(1, gossip(2, 1, updates)).unwrap();
    }
    assert!(cluster.node(1).pending_updates() >= 300);
    let start = cluster.sent.len();
    cluster.run_for(5_000);
    let from_one: Vec<_> = cluster.sent[start..].iter().filter(|sent| sent.from == 1).collect();
    assert!(!from_one.is_empty());
    for sent in &from_one {
        assert!(sent.bytes <= budget, "{} bytes over the {budget}-byte budget", sent.bytes);
    }
    // While the queue is long, messages leave full: another update would not have fit.
    let largest_update = chorus_core::swim::wire::encoded_len(&alive(999, 0)) + 100;
    let full = from_one.iter().filter(|sent| sent.bytes + largest_update > budget).count();
    assert!(full * 2 >= from_one.len(), "{full} of {} messages full", from_one.len());
    // The full state needs several messages, each within the budget.
    let chunks = cluster.sent.iter().filter(|sent| sent.from == 1 && sent.message.body.kind().starts_with("PushPull"));
    for chunk in chunks {
        assert!(chunk.bytes <= budget);
    }
}

#[test]
fn join_through_a_seed_converges_the_member_list_of_fifty_nodes() {
    let n = 50u64;
    let mut cluster = Cluster::new();
    cluster.record_messages = false;
    for id in 1..=n {
        cluster.start(config(id));
        cluster.run_for(20);
    }
    let ids: Vec<u64> = (1..=n).collect();
    let converged_at = cluster
        .run_until_true(30_000, |cluster| cluster.all_see_alive(&ids, &ids))
        .expect("fifty nodes joining through one seed converge within 30 s");
    for id in 1..=n {
        assert_eq!(cluster.node(id).live_member_count(), n as usize);
    }
    assert!(cluster.events_where(|event| matches!(event, Event::Failed { .. })).is_empty());
    assert!(cluster.rejected.is_empty());
    let largest = cluster.sent.iter().map(|sent| sent.bytes).max().unwrap();
    assert!(largest <= config(1).max_message_bytes);
    println!("converged at {converged_at}; largest message {largest} bytes");
}

#[test]
fn graceful_leave_is_reported_as_left_not_failed() {
    let mut cluster = Cluster::converged(5);
    cluster.with_node(5, |node, now| node.leave(now));
    assert!(cluster.node(5).has_left());
    // The leaver stays up briefly so the news spreads, then goes away.
    cluster.run_for(3_000);
    cluster.crash(5);
    let stopped_at = cluster.now;
    cluster.run_for(120_000);
    assert!(cluster.all_see(&[1, 2, 3, 4], 5, MemberState::Left));
    for observer in 1..=4 {
        assert!(cluster
            .events_of(observer)
            .any(|record| matches!(record.event, Event::Left { member, .. } if member == NodeId(5))));
    }
    assert!(cluster.events_where(|event| matches!(event, Event::Failed { .. } | Event::Suspected { .. })).is_empty());
    let contacted_after = cluster.sent.iter().filter(|sent| sent.to == 5 && sent.at > stopped_at).count();
    assert_eq!(contacted_after, 0, "a member that left is neither probed nor reconnected to");
}

#[test]
fn a_partition_that_heals_is_repaired_by_itself() {
    let ids = [1, 2, 3, 4, 5, 6];
    let mut cluster = Cluster::converged(6);
    cluster.partition(&[1, 2, 3], &[4, 5, 6]);
    cluster
        .run_until_true(120_000, |cluster| {
            [4, 5, 6].iter().all(|&member| cluster.all_see(&[1, 2, 3], member, MemberState::Failed))
                && [1, 2, 3].iter().all(|&member| cluster.all_see(&[4, 5, 6], member, MemberState::Failed))
        })
        .expect("each side declares the other failed");
    cluster.run_for(60_000);
    cluster.heal();
    let reconnect_ms = config(1).reconnect_interval_ms;
    cluster
        .run_until_true(6 * reconnect_ms, |cluster| cluster.all_see_alive(&ids, &ids))
        .expect("reconnection attempts to failed members merged the two sides");
    let reconnects = cluster
        .sent
        .iter()
        .filter(|sent| matches!(sent.message.body, MessageBody::PushPull { want_reply: true, .. }))
        .filter(|sent| (sent.from <= 3) != (sent.to <= 3))
        .count();
    assert!(reconnects > 0);
}

#[test]
fn metadata_changes_reach_everyone_as_updated() {
    let mut cluster = Cluster::converged(4);
    cluster.with_node(2, |node, now| node.set_metadata(now, Metadata::new(b"zone=b".to_vec()))).unwrap();
    cluster
        .run_until_true(10_000, |cluster| {
            [1, 3, 4].iter().all(|&observer| {
                cluster.node(observer).member(NodeId(2)).unwrap().metadata == Metadata::new(b"zone=b".to_vec())
            })
        })
        .expect("the new metadata spread");
    for observer in [1, 3, 4] {
        assert!(cluster
            .events_of(observer)
            .any(|record| matches!(&record.event, Event::Updated(r) if r.id == NodeId(2))));
    }
    let too_large = Metadata::new(vec![0; config(2).max_metadata_bytes + 1]);
    assert!(cluster.with_node(2, |node, now| node.set_metadata(now, too_large)).is_err());
}

#[test]
fn the_same_seeds_give_the_same_run() {
    let run = || {
        let mut cluster = Cluster::converged(6);
        cluster.crash(6);
        cluster.run_for(30_000);
        cluster.sent.iter().map(|sent| (sent.at, sent.from, sent.to, sent.bytes)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_seed_that_is_down_is_retried_until_it_comes_up() {
    let mut cluster = Cluster::new();
    cluster.start(config(2));
    cluster.run_for(5_000);
    let attempts = cluster.sent.iter().filter(|sent| sent.to == 1).count();
    assert!(attempts >= 4, "join retried every join_retry_interval_ms: {attempts}");
    cluster.start(config(1));
    cluster
        .run_until_true(5_000, |cluster| cluster.all_see_alive(&[1, 2], &[1, 2]))
        .expect("the join completed once the seed came up");
}

/// Loss, crashes, restarts and metadata changes for a minute, then a quiet
/// network with everyone back up: the nodes never panic (their internal
/// invariants are checked after every input), never send over budget, and
/// converge again.
fn churn_then_recover(lifeguard: bool, seed: u64) {
    let n = 8u64;
    let ids: Vec<u64> = (1..=n).collect();
    let make = |id: u64| {
        let mut config = config(id);
        config.lifeguard = lifeguard;
        config.rng_seed ^= seed;
        config
    };
    let mut cluster = Cluster::converged_with(n, make);
    cluster.seed(seed);
    cluster.loss_per_mille = 50;
    let mut down: Vec<u64> = Vec::new();
    for round in 0..12u64 {
        let victim = cluster.rng.random_range(2..=n);
        if down.contains(&victim) {
            cluster.start(make(victim));
            down.retain(|id| *id != victim);
        } else if down.len() < 2 {
            cluster.crash(victim);
            down.push(victim);
        }
        let changer = cluster.rng.random_range(1..=n);
        if cluster.is_running(changer) {
            let metadata = Metadata::new(format!("round={round}").into_bytes());
            cluster.with_node(changer, |node, now| node.set_metadata(now, metadata)).unwrap();
        }
        cluster.run_for(5_000);
    }
    cluster.loss_per_mille = 0;
    for id in down {
        cluster.start(make(id));
    }
    cluster
        .run_until_true(120_000, |cluster| cluster.all_see_alive(&ids, &ids))
        .unwrap_or_else(|| panic!("seed {seed} (lifeguard {lifeguard}): the cluster did not converge after churn"));
    assert!(cluster.rejected.is_empty(), "well-formed peers never send rejectable messages");
    if std::env::var("SWIM_STATS").is_ok() {
        let mut counts = std::collections::BTreeMap::new();
        for record in &cluster.events {
            let name = format!("{:?}", record.event);
            let name = name.split(|c: char| !c.is_alphanumeric()).next().unwrap().to_string();
            *counts.entry(name).or_insert(0) += 1;
        }
        println!("lifeguard {lifeguard} seed {seed}: {} messages, {counts:?}", cluster.sent.len());
    }
}

#[test]
fn under_loss_and_churn_nodes_stay_sound_and_converge_afterwards() {
    for seed in 1..=4 {
        churn_then_recover(true, seed);
    }
}

#[test]
fn under_loss_and_churn_classic_swim_also_converges_afterwards() {
    for seed in 1..=4 {
        churn_then_recover(false, seed);
    }
}
