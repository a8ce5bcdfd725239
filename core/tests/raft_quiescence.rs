//! Quiescence (`Config::quiesce_after_ms`): an idle group stops its timers,
//! and wakes on a request, on any message, or when the driver says the
//! leader failed. Each test drives the in-memory cluster of `harness`.

mod harness;

use chorus_core::raft::{ClientResult, MessageBody, Role};
use chorus_core::types::{NodeId, Time};
use harness::{get, put, Cluster};

const QUIESCE_AFTER_MS: u64 = 300;

fn quiescing_cluster() -> Cluster {
    Cluster::with_config(3, |config| config.quiesce_after_ms = QUIESCE_AFTER_MS)
}

/// A cluster with a leader and one committed write, then left idle long
/// enough to quiesce.
fn quiesced_cluster() -> (Cluster, NodeId) {
    let mut cluster = quiescing_cluster();
    let leader = cluster.tick_until_leader();
    cluster.propose(leader, 1, put("k", "v"));
    cluster.stabilize();
    cluster.advance(QUIESCE_AFTER_MS + 200);
    for id in cluster.ids() {
        assert!(cluster.node(id).is_quiesced(), "{id} did not quiesce");
    }
    (cluster, leader)
}

fn messages_sent(cluster: &Cluster) -> usize {
    cluster.sent().len()
}

#[test]
fn an_idle_group_quiesces_and_stays_silent() {
    let (mut cluster, leader) = quiesced_cluster();
    let term = cluster.node(leader).term();
    for id in cluster.ids() {
        assert_eq!(cluster.node(id).poll_timeout(), Time::from_micros(u64::MAX), "{id} still has a timer");
    }
    let before = messages_sent(&cluster);
    cluster.advance(10_000);
    assert_eq!(messages_sent(&cluster), before, "a quiesced group sent messages");
    assert_eq!(cluster.node(leader).role(), Role::Leader);
    assert_eq!(cluster.node(leader).term(), term);
    cluster.assert_safe();
}

#[test]
fn without_the_setting_nothing_quiesces() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.tick_until_leader();
    cluster.propose(leader, 1, put("k", "v"));
    cluster.advance(2_000);
    assert!(cluster.ids().iter().all(|&id| !cluster.node(id).is_quiesced()));
    assert!(!cluster.sent().iter().any(|m| matches!(m.body, MessageBody::Quiesce { .. })));
}

#[test]
fn a_proposal_wakes_the_group_and_it_quiesces_again() {
    let (mut cluster, leader) = quiesced_cluster();
    cluster.propose(leader, 2, put("k", "w"));
    assert!(!cluster.node(leader).is_quiesced());
    cluster.stabilize();
    assert!(matches!(cluster.answer(leader, 2), Some(ClientResult::Ok(_))));
    cluster.advance(QUIESCE_AFTER_MS + 200);
    assert!(cluster.ids().iter().all(|&id| cluster.node(id).is_quiesced()));
    for id in cluster.ids() {
        assert_eq!(cluster.kv_get(id, "k").as_deref(), Some("w"), "{id} quiesced without applying the write");
    }
    cluster.assert_safe();
}

#[test]
fn a_read_at_a_follower_wakes_the_leader() {
    let (mut cluster, leader) = quiesced_cluster();
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    cluster.read(follower, 7, get("k"));
    cluster.stabilize();
    assert!(!cluster.node(follower).is_quiesced());
    assert!(!cluster.node(leader).is_quiesced(), "the follower's Wake did not reach the leader");
    // The leader beats again: the follower hears from it and does not campaign.
    let term = cluster.node(leader).term();
    cluster.advance(1_000);
    assert_eq!(cluster.node(leader).term(), term);
    assert_eq!(cluster.node(leader).role(), Role::Leader);
}

#[test]
fn a_dead_leaders_group_waits_for_the_failure_detector() {
    let (mut cluster, leader) = quiesced_cluster();
    cluster.crash(leader);
    cluster.advance(5_000);
    let followers: Vec<NodeId> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    for &id in &followers {
        assert_eq!(cluster.node(id).role(), Role::Follower, "{id} campaigned while quiesced");
    }
    for &id in &followers {
        cluster.wake(id, true);
    }
    cluster.advance(2_000);
    let new_leader = cluster.leader().expect("a new leader once the followers were woken");
    assert_ne!(new_leader, leader);
    cluster.propose(new_leader, 3, put("k", "x"));
    cluster.stabilize();
    assert!(matches!(cluster.answer(new_leader, 3), Some(ClientResult::Ok(_))));
    cluster.assert_safe();
}

#[test]
fn a_restarted_follower_does_not_depose_a_quiesced_leader() {
    let (mut cluster, leader) = quiesced_cluster();
    let term = cluster.node(leader).term();
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    cluster.crash(follower);
    cluster.advance(500);
    cluster.restart(follower);
    cluster.advance(3_000);
    assert_eq!(cluster.node(leader).role(), Role::Leader);
    assert_eq!(cluster.node(leader).term(), term, "the restarted follower's campaign deposed the leader");
    assert_eq!(cluster.node(follower).leader(), Some(leader));
    cluster.advance(QUIESCE_AFTER_MS + 500);
    assert!(cluster.ids().iter().all(|&id| cluster.node(id).is_quiesced()), "the group did not quiesce again");
}

#[test]
fn a_group_with_an_unreachable_follower_does_not_quiesce() {
    let mut cluster = quiescing_cluster();
    let leader = cluster.tick_until_leader();
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    cluster.isolate(follower);
    cluster.propose(leader, 1, put("k", "v"));
    cluster.advance(3_000);
    assert!(!cluster.node(leader).is_quiesced(), "quiesced without hearing from every follower");
    cluster.heal();
    cluster.advance(3_000);
    assert!(cluster.leader().is_some(), "no leader after healing");
    assert!(cluster.ids().iter().all(|&id| cluster.node(id).is_quiesced()));
    assert_eq!(cluster.kv_get(follower, "k").as_deref(), Some("v"));
}

#[test]
fn a_quiesced_follower_rejects_a_candidate_until_the_leader_is_declared_failed() {
    let (mut cluster, leader) = quiesced_cluster();
    let term = cluster.node(leader).term();
    let followers: Vec<NodeId> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    // The leader is cut off from one follower only: that follower's
    // failure detector wrongly suspects it, wakes, and campaigns.
    cluster.cut(leader, followers[0]);
    cluster.wake(followers[0], true);
    cluster.advance(3_000);
    assert_eq!(cluster.node(leader).term(), term, "a quiesced follower voted the live leader out");
    assert_eq!(cluster.node(leader).role(), Role::Leader);
    cluster.assert_safe();
}
