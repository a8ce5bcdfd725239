//! Regressions for the failures the simulator found past seed 2,000 (issue
//! 9), each as a scenario on the in-memory cluster of `harness`. Where a
//! deliberate bug reintroduces the root cause, the scenario runs with it too
//! and must fail there: the test proves both the fix and its own power.

mod harness;

use chorus_core::kv::{KvResponse, KvStore};
use chorus_core::raft::{
    Bug, ClientResult, Config, DiskId, DurableState, Event, Message, MessageBody, Payload, RaftNode, RestartError,
    Role, SnapshotMeta,
};
use chorus_core::types::{LogIndex, NodeId, Term, Time, MAX_PEER_TERM, MAX_TERM};
use harness::{append_entries, cas, hard_state, is_heartbeat, log_with_terms, put, Cluster, Disk};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);

/// Does `message` carry a configuration that is not joint (the final step
/// of a change)?
fn carries_final_configuration(message: &Message) -> bool {
    append_entries(message)
        .iter()
        .any(|entry| matches!(&entry.payload, Payload::Config(membership) if !membership.is_joint()))
}

fn with_bug(bug: Option<Bug>) -> impl Fn(&mut Config) {
    move |config: &mut Config| config.injected_bug = bug
}

/// Seeds 2011 and 102421 (3 nodes). Two voters, n1 and the leader n2; n2 is
/// replaced by the learner n3 through the joint configuration
/// `[n1,n3] joint with [n1,n2]`. The joint configuration commits, n2 appends
/// the final `[n1,n3]` and is cut off before anyone receives it. n1 and n3
/// hold only the joint configuration, whose outgoing half needs n2's vote;
/// n2 refuses theirs (its log is longer). Unless n2 campaigns although its
/// latest configuration removes it, nothing can be elected, ever.
#[test]
fn a_leader_that_appended_its_own_removal_campaigns_until_the_removal_commits() {
    for bug in [None, Some(Bug::RemovedVoterNeverCampaigns)] {
        let mut cluster = Cluster::with_config(2, with_bug(bug));
        cluster.elect(N2);
        cluster.add_joining(N3, DiskId(33), with_bug(bug));
        cluster.change_membership(N2, 100, chorus_core::raft::MembershipChange::AddLearner(N3)).expect("learner");
        cluster.advance(300);
        // Nothing carrying the final configuration leaves n2.
        cluster.set_drop_rule(|message: &Message| message.from == N2 && carries_final_configuration(message));
        cluster
            .change_membership(N2, 101, chorus_core::raft::MembershipChange::Replace { remove: N2, add: N3 })
            .expect("replace");
        cluster.advance(50);
        let latest = cluster.node(N2).membership().clone();
        assert!(!latest.is_joint() && !latest.is_voter(N2), "n2 appended its removal: {latest}");
        assert!(cluster.node(N1).membership().is_joint(), "n1 holds only the joint configuration");
        // n2 is cut off long enough to step down (check-quorum), then the
        // network heals completely.
        cluster.isolate(N2);
        cluster.advance(3_000);
        assert_ne!(cluster.node(N2).role(), Role::Leader);
        cluster.heal();
        cluster.clear_drop_rule();
        cluster.advance(5_000);
        let leader = cluster.leader();
        match bug {
            None => {
                let leader = leader.expect("a leader after healing");
                assert!([N1, N3].contains(&leader), "the removed n2 handed over, leader {leader}");
                let voters: Vec<NodeId> = cluster.node(leader).membership().voters.keys().copied().collect();
                assert_eq!(voters, vec![N1, N3]);
                assert!(!cluster.node(N2).may_campaign(), "n2 knows its removal committed");
                cluster.assert_safe();
            }
            Some(_) => assert_eq!(leader, None, "with the bug, no leader can ever be elected"),
        }
    }
}

/// Seed 55657 (3 nodes). A follower forwards a put; the leader's answer
/// ("placed at index i") is delayed past the follower's restart. The
/// restarted follower forwards a compare-and-set: unless its request ids
/// differ from its earlier life's, the stale answer is taken for the new
/// request, and the compare-and-set is answered with the put's result.
#[test]
fn a_restarted_follower_ignores_answers_meant_for_its_earlier_life() {
    for bug in [None, Some(Bug::RequestIdsReused)] {
        let mut cluster = Cluster::with_config(3, |config| {
            config.injected_bug = bug;
            config.forward_proposals = true;
        });
        cluster.elect(N1);
        cluster.propose(N2, 1, put("k", "a"));
        // The put reaches the leader; the leader's answer and appends to n2
        // stay on the wire.
        let stale_answer = deliver_forward(&mut cluster);
        cluster.set_drop_rule(|message: &Message| message.to == N2);
        cluster.advance(100); // the put commits on n1 and n3
        cluster.crash(N2);
        cluster.restart(N2);
        // The restarted n2 hears only heartbeats (so it knows the leader but
        // not the put), and nothing it sends reaches n1.
        cluster.set_drop_rule(|message: &Message| {
            (message.to == N2 && !is_heartbeat(message) && !matches!(message.body, MessageBody::ForwardResponse { .. }))
                || message.from == N2
        });
        cluster.advance(200);
        assert_eq!(cluster.node(N2).leader(), Some(N1));
        cluster.propose(N2, 2, cas("k", Some("a"), "b"));
        // The answer to the put, sent to n2's earlier life, arrives now.
        cluster.inject(stale_answer);
        cluster.deliver_all();
        cluster.clear_drop_rule();
        cluster.advance(3_000);
        let answer = cluster.answer(N2, 2);
        let fits = match &answer {
            Some(ClientResult::Ok(bytes)) => matches!(KvResponse::decode(bytes), Ok(KvResponse::Cas { .. })),
            Some(ClientResult::Dropped(_)) | Some(ClientResult::NoLeader) | Some(ClientResult::NotLeader { .. }) => {
                true
            }
            None => false,
        };
        match bug {
            None => {
                assert!(fits, "the compare-and-set got its own kind of answer: {answer:?}");
                cluster.assert_safe();
            }
            Some(_) => assert!(!fits, "with the bug, the put's answer reaches the compare-and-set: {answer:?}"),
        }
    }
}

/// A peer that sends a term at (or near) the limit must not stop the
/// cluster: the message is reported and ignored, and elections go on, also
/// after every node restarts.
#[test]
fn a_message_at_the_term_limit_cannot_stop_the_cluster() {
    let mut cluster = Cluster::new(3);
    cluster.elect(N1);
    for term in [MAX_TERM, MAX_PEER_TERM, Term(u64::MAX)] {
        for to in [N1, N2, N3] {
            cluster.inject(Message {
                from: if to == N2 { N3 } else { N2 },
                to,
                term,
                disk: DiskId::BOOTSTRAP,
                incarnation: 1,
                body: MessageBody::RequestVote {
                    pre_vote: false,
                    last_log_index: chorus_core::types::LogIndex(u64::MAX >> 2),
                    last_log_term: term,
                    transfer: true,
                },
            });
        }
    }
    cluster.deliver_all();
    assert!(cluster.check_no_protocol_violations().is_err(), "each absurd term is reported");
    for id in [N1, N2, N3] {
        assert!(cluster.node(id).term() < Term(1000), "{id} did not adopt an absurd term");
    }
    for id in [N1, N2, N3] {
        cluster.crash(id);
    }
    for id in [N1, N2, N3] {
        cluster.restart(id);
    }
    let leader = cluster.tick_until_leader();
    cluster.propose(leader, 1, put("k", "v"));
    cluster.advance(200);
    assert!(matches!(cluster.answer(leader, 1), Some(ClientResult::Ok(_))));
    cluster.check_safety().expect("safe");
}

/// A disk that lost its files must not restart as a voter with an empty log.
#[test]
fn restarting_from_an_empty_disk_is_refused_with_what_to_do() {
    let config = Config::new(N1, vec![N1, N2, N3]);
    let error = RaftNode::restart(config, DurableState::default(), KvStore::default(), Time::ZERO)
        .err()
        .expect("an empty disk is refused");
    assert_eq!(error, RestartError::EmptyDisk);
    let text = error.to_string();
    assert!(text.contains("RaftNode::new") && text.contains("join") && text.contains("fresh disk id"), "{text}");
    // A term within the headroom of the limit is refused as well.
    let mut stored = DurableState::default();
    stored.hard_state.term = Term(MAX_PEER_TERM.0 + 1);
    stored.hard_state.incarnation = 3;
    let config = Config::new(N1, vec![N1, N2, N3]);
    let error = RaftNode::restart(config, stored, KvStore::default(), Time::ZERO).err().expect("refused");
    assert!(matches!(error, RestartError::TermTooLarge(_)), "{error}");
}

/// A bootstrapped or restarted node records a new incarnation before it
/// says anything.
#[test]
fn every_life_of_a_disk_has_its_own_incarnation() {
    let mut cluster = Cluster::new(3);
    cluster.elect(N1);
    assert_eq!(cluster.disk(N2).hard_state.incarnation, 1, "bootstrap writes incarnation 1");
    cluster.crash(N2);
    cluster.restart(N2);
    cluster.advance(100);
    assert_eq!(cluster.disk(N2).hard_state.incarnation, 2);
    let spoke_as: Vec<u64> =
        cluster.sent().iter().filter(|message| message.from == N2).map(|message| message.incarnation).collect();
    assert_eq!(spoke_as.last(), Some(&2));
}

/// A follower whose disk is replaced by an older copy comes back under its
/// old identity without entries it acknowledged. The leader, which still
/// counts those acknowledgements, must notice from the follower's
/// rejections (they come from a later life of the disk than the
/// acknowledgements), report it, and repair the follower, instead of taking
/// the rejections for stale ones forever.
#[test]
fn a_leader_repairs_a_follower_restored_from_an_older_copy() {
    let mut cluster = Cluster::new(3);
    cluster.elect(N1);
    for request in 1..=3 {
        cluster.propose(N1, request, put("k", &format!("v{request}")));
        cluster.stabilize();
    }
    let old_copy = cluster.disk(N3).clone();
    for request in 4..=8 {
        cluster.propose(N1, request, put("k", &format!("v{request}")));
        cluster.stabilize();
    }
    let acknowledged = cluster.node(N1).match_index(N3).expect("n1 leads");
    cluster.replace_disk(N3, old_copy);
    cluster.restart(N3);
    let holds = cluster.node(N3).last_index();
    assert!(holds < acknowledged, "n3 lost entries it acknowledged ({holds} < {acknowledged})");
    cluster.advance(500);
    let reported = cluster.member(N1).other_events.iter().any(|event| {
        matches!(event, Event::FollowerLostEntries { follower, acknowledged: seen, .. }
            if *follower == N3 && *seen == acknowledged)
    });
    assert!(reported, "the leader reports the lost entries: {:?}", cluster.member(N1).other_events);
    assert_eq!(cluster.leader(), Some(N1), "no leadership change was needed");
    assert_eq!(cluster.node(N3).last_index(), cluster.node(N1).last_index(), "n3 was repaired");
    assert_eq!(cluster.node(N1).match_index(N3), Some(cluster.node(N1).last_index()));
    assert_eq!(cluster.kv_get(N3, "k"), Some("v8".to_string()));
    cluster.assert_safe();
}

/// Seed 29718 (5 nodes). A node that joined with an empty disk must start
/// from a snapshot: the bootstrap configuration is in no log entry, so a log
/// taken from index 1 would leave it (and every snapshot it takes) without
/// voters. A stale message had made the leader take the joiner for its old
/// disk and send entries from index 1; the joiner must refuse them.
#[test]
fn a_node_that_joined_empty_refuses_appends_until_it_has_a_snapshot() {
    for bug in [None, Some(Bug::JoinerSkipsSnapshot)] {
        let mut cluster = Cluster::with_config(3, with_bug(bug));
        cluster.elect(N1);
        cluster.propose(N1, 1, put("k", "v"));
        cluster.stabilize();
        cluster.add_joining(NodeId(4), DiskId(44), with_bug(bug));
        // The leader's entries from index 1, as it sends them to a bootstrap
        // member with an empty log.
        let entries = cluster.log(N1);
        let leader_commit = cluster.node(N1).commit_index();
        let term = cluster.node(N1).term();
        cluster.inject(Message {
            from: N1,
            to: NodeId(4),
            term,
            disk: DiskId::BOOTSTRAP,
            incarnation: 1,
            body: MessageBody::AppendEntries {
                prev_log_index: chorus_core::types::LogIndex(0),
                prev_log_term: Term(0),
                entries,
                leader_commit,
            },
        });
        cluster.deliver_next();
        let took_entries = cluster.node(NodeId(4)).last_index() > chorus_core::types::LogIndex(0);
        assert_eq!(took_entries, bug.is_some(), "bug {bug:?}");
        if bug.is_none() {
            let refused = cluster.sent().iter().rev().find(|message| message.from == NodeId(4)).expect("it answered");
            assert!(
                matches!(
                    &refused.body,
                    MessageBody::AppendEntriesResponse(chorus_core::raft::AppendResponse::Rejected { .. })
                ),
                "{refused:?}"
            );
        }
    }
}

/// Seed 5591 (3 nodes). n2 lost its disk and rejoined as disk 22; the leader
/// n1 renews it through the joint configuration `[n1,n2@22,n3] joint with
/// [n1,n2,n3]`. Cut off from n1, n3 campaigns with that configuration and
/// n2's new disk grants: that is a majority of the incoming half only. The
/// outgoing half records n2's *old* disk, which may have voted for someone
/// else in this term (in the seed it had, and two leaders of one term
/// followed); the new disk must not count there.
#[test]
fn a_renewed_disk_does_not_count_in_the_half_that_records_its_old_disk() {
    for bug in [None, Some(Bug::JointVoteCountsTwice)] {
        let mut cluster = Cluster::with_config(3, with_bug(bug));
        cluster.elect(N1);
        cluster.propose(N1, 1, put("k", "v"));
        cluster.stabilize();
        cluster.wipe_and_rejoin(N2, DiskId(22));
        cluster.advance(500); // n2 catches up from a snapshot or the log
                              // The final configuration never leaves n1.
        cluster.set_drop_rule(|message: &Message| message.from == N1 && carries_final_configuration(message));
        cluster.change_membership(N1, 100, chorus_core::raft::MembershipChange::RenewDisk(N2)).expect("renew n2");
        cluster.advance(50);
        let joint = cluster.node(N3).membership().clone();
        assert!(joint.is_joint() && joint.voters.get(&N2) == Some(&DiskId(22)), "n3 holds the joint: {joint}");
        cluster.isolate(N1);
        cluster.clear_drop_rule();
        cluster.elect_attempt(N3);
        let n3_leads = cluster.node(N3).role() == Role::Leader;
        assert_eq!(n3_leads, bug.is_some(), "bug {bug:?}: n3 and n2's new disk are no majority of the outgoing half");
        if bug.is_none() {
            cluster.heal();
            let leader = cluster.tick_until_leader();
            cluster.propose(leader, 2, put("k", "w"));
            cluster.advance(300);
            assert!(matches!(cluster.answer(leader, 2), Some(ClientResult::Ok(_))));
            cluster.assert_safe();
        }
    }
}

/// 3-node seed 4474. n3 lost its disk and rejoined from the old leader's
/// snapshot, then took that leader's entries of term 3 while a new leader
/// of term 4 had committed other entries at the same indexes. The new
/// leader still recorded n3's old disk as holding its log, so its heartbeat
/// carried commit 68, and n3 committed its term-3 entries there. A follower
/// may advance its commit on a heartbeat only as far as it knows its log
/// matches the leader's (what it accepted from that leader this term).
#[test]
fn a_heartbeat_commits_only_what_the_follower_knows_it_shares_with_the_leader() {
    // n3 holds entries of term 1 at 2..=4 that the others (term 2) do not.
    let disks = vec![
        Disk::holding(hard_state(2, Some(1), 1), log_with_terms(&[1, 2, 2, 2])),
        Disk::holding(hard_state(2, Some(1), 1), log_with_terms(&[1, 2, 2, 2])),
        Disk::holding(hard_state(1, Some(3), 1), log_with_terms(&[1, 1, 1, 1])),
    ];
    let mut cluster = Cluster::from_disks(disks, |_| {});
    // n1, leader of term 3, committed 4 entries and believes n3 holds them.
    cluster.inject(Message {
        from: N1,
        to: N3,
        term: Term(3),
        disk: DiskId::BOOTSTRAP,
        incarnation: 2,
        body: MessageBody::Heartbeat { commit: LogIndex(4), read_context: 1 },
    });
    cluster.deliver_where(|message| message.to == N3);
    assert_eq!(cluster.node(N3).leader(), Some(N1));
    assert_eq!(cluster.node(N3).commit_index(), LogIndex(1), "n3 committed entries it does not share with n1");
    // Once an append shows where the logs agree, the commit follows.
    cluster.advance(500);
    cluster.stabilize();
    assert_eq!(cluster.log_terms(N3)[..4], [1, 2, 2, 2]);
    cluster.assert_safe();
}

/// Delivers n2's forwarded proposal to the leader and returns the leader's
/// answer, which stays on the wire too.
fn deliver_forward(cluster: &mut Cluster) -> Message {
    cluster.deliver_where(|message| message.from == N2 && matches!(message.body, MessageBody::Forward { .. }));
    cluster
        .in_flight()
        .iter()
        .find(|message| matches!(message.body, MessageBody::ForwardResponse { .. }))
        .cloned()
        .expect("the leader answered the forward")
}

/// Takes the leader's answer to n2's forwarded proposal off the wire, then
/// lets everything else run (`rounds` heartbeat intervals of the leader n1),
/// so that the commit reaches n2 before the answer does.
fn hold_forward_answer(cluster: &mut Cluster, rounds: usize) -> Message {
    let answer = deliver_forward(cluster);
    cluster.set_drop_rule(|message: &Message| matches!(message.body, MessageBody::ForwardResponse { .. }));
    for _ in 0..rounds {
        cluster.deliver_all();
        cluster.tick(N1, 50);
    }
    cluster.deliver_all();
    cluster.clear_drop_rule();
    answer
}

/// The calm probe (2026-12-03): a follower forwards a put; the leader
/// appends it and answers where it placed it, but the commit reaches the
/// follower first, which applies the entry before it knows the entry is
/// its own. It used to answer `Dropped(LeadershipLost)` (outcome unknown)
/// for a write that committed, in about 5% of seeds. It now keeps the
/// answers of what it applies while a proposal awaits its placement.
#[test]
fn a_forwarded_write_whose_commit_overtakes_its_placement_is_answered_ok() {
    let mut cluster = Cluster::with_config(3, |config| config.forward_proposals = true);
    cluster.elect(N1);
    cluster.propose(N2, 1, put("k", "v"));
    let placement = hold_forward_answer(&mut cluster, 3);
    let index = cluster.node(N1).last_index();
    assert!(cluster.node(N2).applied_index() >= index, "the commit reached n2 first");
    assert_eq!(cluster.answer(N2, 1), None, "n2 cannot yet tell the entry is its own");
    cluster.inject(placement);
    cluster.deliver_all();
    assert_eq!(cluster.answer(N2, 1), Some(ClientResult::Ok(KvResponse::Done.encode())));
    cluster.assert_safe();
}

/// The calm probe's 3-node seed 90319 (2026-12-03): n2's log already holds
/// the entry its forwarded put went to, when a snapshot ending at that
/// entry arrives (the leader sent it on a stale rejection). Installing it
/// replaced n2's state without applying the entry, so the put, which
/// committed, was answered `Dropped(LeadershipLost)`. A snapshot whose last
/// entry the log holds is now taken as a commit: n2 applies its own entries.
#[test]
fn a_snapshot_ending_at_an_entry_the_log_holds_commits_it_instead_of_replacing_the_state() {
    let mut cluster = Cluster::with_config(3, |config| config.forward_proposals = true);
    cluster.elect(N1);
    cluster.propose(N2, 1, put("k", "v"));
    let placement = deliver_forward(&mut cluster);
    // n2 receives the entry, but never the commit nor the placement.
    cluster.set_drop_rule(|message: &Message| {
        message.to == N2 && !matches!(&message.body, MessageBody::AppendEntries { entries, .. } if !entries.is_empty())
    });
    cluster.advance(100);
    let leader = cluster.node(N1);
    let (index, term) = (leader.commit_index(), leader.term());
    let meta = SnapshotMeta { index, term, membership: leader.membership().clone() };
    assert_eq!(cluster.node(N2).last_index(), index, "n2 holds the entry");
    assert!(cluster.node(N2).commit_index() < index, "n2 does not know it committed");
    cluster.clear_drop_rule();
    cluster.inject(Message {
        from: N1,
        to: N2,
        term,
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
        body: MessageBody::InstallSnapshot { meta: Box::new(meta), offset: 0, total_bytes: 3, chunk: vec![1, 2, 3] },
    });
    cluster.deliver_where(|message| message.to == N2 && matches!(message.body, MessageBody::InstallSnapshot { .. }));
    assert_eq!(cluster.node(N2).commit_index(), index, "the snapshot told n2 the entry committed");
    assert_eq!(cluster.kv_get(N2, "k"), Some("v".to_string()), "n2 applied its own entry");
    cluster.inject(placement);
    cluster.deliver_all();
    assert_eq!(cluster.answer(N2, 1), Some(ClientResult::Ok(KvResponse::Done.encode())));
    cluster.check_no_protocol_violations().expect("the snapshot's bytes were never restored");
    cluster.assert_safe();
}
