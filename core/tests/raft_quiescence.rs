//! Quiescence (`Config::quiesce_after_ms`): an idle group stops its timers,
//! and wakes on a request, on any message, or when the driver says the
//! leader failed. Each test drives the in-memory cluster of `harness`.

mod harness;

use chorus_core::raft::{Bug, ClientResult, DiskId, MembershipChange, Message, MessageBody, Role, SnapshotMeta};
use chorus_core::types::{LogIndex, NodeId, Term, Time};
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

/// A node that was removed while cut off never learns of it and campaigns
/// forever. A quiesced group ignores campaigns from outside its
/// configuration, as a group in a leader's lease does, instead of waking
/// for each one (the simulator's quiet tail found groups that never went
/// quiet that way). A member's campaign wakes the group as any message
/// does: a restarted member needs the leader's heartbeats, and if the
/// leader is gone the members' votes must follow.
#[test]
fn a_quiesced_group_ignores_an_outsiders_campaign_and_wakes_for_a_members() {
    let (mut cluster, leader) = quiesced_cluster();
    let term = cluster.node(leader).term();
    let followers: Vec<NodeId> = cluster.ids().into_iter().filter(|&id| id != leader).collect();
    let campaign = |from: NodeId, to: NodeId| Message {
        from,
        to,
        term: Term(term.0 + 3),
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
        body: MessageBody::RequestVote {
            pre_vote: true,
            last_log_index: LogIndex(1_000),
            last_log_term: Term(term.0 + 2),
            transfer: false,
        },
    };
    let removed = NodeId(9);
    cluster.inject(campaign(removed, leader));
    cluster.inject(campaign(removed, followers[0]));
    let before = messages_sent(&cluster);
    cluster.deliver_all();
    assert_eq!(messages_sent(&cluster), before, "a quiesced node answered or woke for an outsider's campaign");
    for id in [leader, followers[0]] {
        assert!(cluster.node(id).is_quiesced(), "{id} woke for an outsider's campaign");
        assert_eq!(cluster.node(id).term(), term);
    }
    cluster.inject(campaign(followers[1], followers[0]));
    cluster.deliver_next();
    assert!(!cluster.node(followers[0]).is_quiesced(), "a follower stayed quiesced through a member's campaign");
    cluster.stabilize();
    assert_eq!(cluster.node(leader).role(), Role::Leader, "a pre-vote deposed the leader");
    assert_eq!(cluster.node(leader).term(), term);
}

/// A membership change wakes a quiesced leader, whose followers it last
/// heard from before the group went quiet. It counts them as heard from
/// when it wakes (as its followers count it): otherwise the change is
/// refused as one that would lose the quorum, and a retry after the group
/// quiesced again is too, forever (the simulator's operator could never
/// renew a lost disk).
#[test]
fn a_membership_change_that_wakes_a_quiesced_leader_is_accepted() {
    let mut cluster = quiescing_cluster();
    let leader = cluster.tick_until_leader();
    cluster.propose(leader, 1, put("k", "v"));
    cluster.stabilize();
    let joiner = NodeId(4);
    cluster.add_joining(joiner, DiskId(44), |config| config.quiesce_after_ms = QUIESCE_AFTER_MS);
    cluster.change_membership(leader, 2, MembershipChange::AddLearner(joiner)).expect("add the learner");
    cluster.advance(1_000);
    cluster.advance(QUIESCE_AFTER_MS + 200);
    assert!(cluster.ids().iter().all(|&id| cluster.node(id).is_quiesced()), "the group did not quiesce");
    cluster.advance(5_000);
    cluster.change_membership(leader, 3, MembershipChange::Promote(joiner)).expect("a woken leader promotes");
    cluster.advance(500);
    assert!(cluster.node(leader).membership().is_voter(joiner));
    cluster.assert_safe();
}

/// A follower that received part of a snapshot, then saw the term move on,
/// can never finish it: it drops the buffer. Kept (the injected bug
/// `partial-snapshot-kept`), it held its memory and kept the follower from
/// quiescing, so it woke its leader after every `Quiesce`.
#[test]
fn a_partial_snapshot_from_an_earlier_term_is_dropped() {
    for bug in [None, Some(Bug::PartialSnapshotKept)] {
        let mut cluster = Cluster::with_config(3, |config| {
            config.quiesce_after_ms = QUIESCE_AFTER_MS;
            config.injected_bug = bug;
        });
        let leader = cluster.tick_until_leader();
        cluster.propose(leader, 1, put("k", "v"));
        cluster.stabilize();
        let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
        let node = cluster.node(leader);
        let meta = SnapshotMeta {
            index: LogIndex(node.commit_index().0 + 10),
            term: node.term(),
            membership: node.membership().clone(),
        };
        cluster.inject(Message {
            from: leader,
            to: follower,
            term: node.term(),
            disk: DiskId::BOOTSTRAP,
            incarnation: 1,
            body: MessageBody::InstallSnapshot {
                meta: Box::new(meta),
                offset: 0,
                total_bytes: 1_000,
                chunk: vec![0; 10],
            },
        });
        cluster.deliver_where(|message| message.to == follower);
        // A new term: the chunk's sender can no longer finish it.
        let other = cluster.ids().into_iter().find(|&id| id != leader && id != follower).expect("a third node");
        cluster.transfer_leadership(leader, other).expect("transfer");
        cluster.advance(1_000);
        cluster.advance(QUIESCE_AFTER_MS + 500);
        let quiet = cluster.ids().iter().all(|&id| cluster.node(id).is_quiesced());
        assert_eq!(quiet, bug.is_none(), "bug {bug:?}: the group quiesced: {quiet}");
        cluster.assert_safe();
    }
}
