//! Scenario tests for snapshots and compaction, membership changes (joint
//! consensus, learners), lost disks, proposal forwarding and byte-bounded
//! flow control. Each drives the in-memory cluster of `harness`.

mod harness;

use chorus_core::raft::{
    Bug, ChangeError, ClientResult, DiskId, Event, MembershipChange, MessageBody, ReadConsistency, Role, SnapshotPolicy,
};
use chorus_core::types::{LogIndex, NodeId};
use harness::{put, Cluster};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);
const N4: NodeId = NodeId(4);

/// Tiny snapshots: every 5 applied entries, nothing kept behind, 8-byte chunks.
fn tiny_snapshots(config: &mut chorus_core::raft::Config) {
    config.snapshot_policy = SnapshotPolicy { entries: 5, bytes: 0 };
    config.max_retained_entries = 0;
    config.snapshot_chunk_bytes = 8;
}

fn write_keys(cluster: &mut Cluster, leader: NodeId, first_request: u64, count: u64) {
    for offset in 0..count {
        let request = first_request + offset;
        cluster.propose(leader, request, put(&format!("k{}", request % 7), &format!("v{request}")));
        cluster.stabilize();
        assert!(matches!(cluster.answer(leader, request), Some(ClientResult::Ok(_))), "request {request} committed");
    }
}

fn snapshots_installed(cluster: &Cluster, id: NodeId) -> usize {
    cluster.member(id).other_events.iter().filter(|event| matches!(event, Event::SnapshotInstalled { .. })).count()
}

fn same_state(cluster: &Cluster, a: NodeId, b: NodeId) {
    for key in 0..7 {
        let key = format!("k{key}");
        assert_eq!(cluster.kv_get(a, &key), cluster.kv_get(b, &key), "{a} and {b} disagree on {key}");
    }
}

// ----- snapshots and compaction -----------------------------------------------

#[test]
fn a_follower_far_behind_catches_up_by_snapshot_chunks_despite_loss_then_by_log() {
    let mut cluster = Cluster::with_config(3, tiny_snapshots);
    cluster.elect(N1);
    cluster.isolate(N3);
    write_keys(&mut cluster, N1, 1, 30);
    assert!(cluster.node(N1).status().first_index > LogIndex(20), "the leader compacted its log");
    cluster.heal();
    // Lose every third snapshot chunk on the way.
    let mut chunks = 0;
    cluster.set_drop_rule(move |message| {
        if matches!(message.body, MessageBody::InstallSnapshot { .. }) {
            chunks += 1;
            return chunks % 3 == 0;
        }
        false
    });
    cluster.advance(2_000);
    assert_eq!(snapshots_installed(&cluster, N3), 1);
    let chunk_messages =
        cluster.sent().iter().filter(|message| matches!(message.body, MessageBody::InstallSnapshot { .. })).count();
    assert!(chunk_messages > 3, "the snapshot went in several chunks ({chunk_messages})");
    assert_eq!(cluster.node(N3).applied_index(), cluster.node(N1).applied_index());
    same_state(&cluster, N1, N3);
    // After the snapshot, new entries reach it by log.
    cluster.clear_drop_rule();
    write_keys(&mut cluster, N1, 100, 3);
    assert_eq!(snapshots_installed(&cluster, N3), 1, "no second snapshot for entries the leader still holds");
    // The last commit index reaches an idle follower with the next heartbeat.
    cluster.advance(100);
    same_state(&cluster, N1, N3);
    cluster.assert_safe();
}

#[test]
fn a_node_restarts_from_its_snapshot_plus_log_tail() {
    let mut cluster = Cluster::with_config(3, |config| {
        config.snapshot_policy = SnapshotPolicy { entries: 5, bytes: 0 };
        config.max_retained_entries = 2;
    });
    cluster.elect(N1);
    write_keys(&mut cluster, N1, 1, 12);
    let disk = cluster.disk(N2).clone();
    let snapshot = disk.snapshot.as_ref().expect("n2 took a snapshot");
    assert!(disk.entries.first().is_some_and(|entry| entry.index <= snapshot.meta.index), "a retained tail");
    let applied = cluster.node(N2).applied_index();
    cluster.crash(N2);
    cluster.restart(N2);
    assert!(cluster.node(N2).applied_index() >= snapshot.meta.index);
    assert!(cluster.node(N2).applied_index() <= applied);
    cluster.stabilize();
    cluster.advance(200);
    assert_eq!(cluster.node(N2).applied_index(), cluster.node(N1).applied_index());
    same_state(&cluster, N1, N2);
    cluster.assert_safe();
}

#[test]
fn a_follower_that_restarts_mid_snapshot_gets_it_again_from_the_start() {
    let mut cluster = Cluster::with_config(3, tiny_snapshots);
    cluster.elect(N1);
    cluster.isolate(N3);
    write_keys(&mut cluster, N1, 1, 20);
    cluster.heal();
    // Three chunks reach n3, then the link fails for chunks.
    let mut chunks = 0;
    cluster.set_drop_rule(move |message| {
        if matches!(message.body, MessageBody::InstallSnapshot { .. }) {
            chunks += 1;
            return chunks > 3;
        }
        false
    });
    cluster.advance(300);
    assert_eq!(snapshots_installed(&cluster, N3), 0, "still receiving");
    cluster.crash(N3);
    cluster.restart(N3);
    let sent_before = cluster.sent().len();
    cluster.clear_drop_rule();
    cluster.advance(2_000);
    assert_eq!(snapshots_installed(&cluster, N3), 1);
    let restarted_from_zero = cluster.sent()[sent_before..]
        .iter()
        .any(|message| matches!(message.body, MessageBody::InstallSnapshot { offset: 0, .. }));
    assert!(restarted_from_zero, "the leader started the transfer over");
    same_state(&cluster, N1, N3);
    cluster.assert_safe();
}

#[test]
fn the_log_stays_bounded_by_the_policy_and_the_retained_entries() {
    let mut cluster = Cluster::with_config(3, |config| {
        config.snapshot_policy = SnapshotPolicy { entries: 10, bytes: 0 };
        config.max_retained_entries = 4;
    });
    cluster.elect(N1);
    write_keys(&mut cluster, N1, 1, 60);
    for id in [N1, N2, N3] {
        let node = cluster.node(id);
        let held = node.last_index().0 - node.status().first_index.0 + 1;
        assert!(held <= 10 + 4 + 1, "{id} holds {held} entries");
    }
}

#[test]
fn a_stale_snapshot_never_rolls_a_follower_back_but_the_bug_does() {
    for bug in [None, Some(Bug::SnapshotOverNewerLog)] {
        let mut cluster = Cluster::with_config(3, |config| {
            tiny_snapshots(config);
            config.injected_bug = bug;
        });
        cluster.elect(N1);
        cluster.isolate(N3);
        write_keys(&mut cluster, N1, 1, 10);
        cluster.heal();
        cluster.advance(1_000);
        let old_chunks: Vec<_> = cluster
            .sent()
            .iter()
            .filter(|message| matches!(message.body, MessageBody::InstallSnapshot { .. }) && message.to == N3)
            .cloned()
            .collect();
        write_keys(&mut cluster, N1, 50, 10);
        let applied = cluster.node(N3).applied_index();
        // The network replays the old install.
        for message in old_chunks {
            cluster.inject(message);
        }
        cluster.deliver_all();
        let after = cluster.node(N3).applied_index();
        match bug {
            None => assert_eq!(after, applied, "a stale snapshot changes nothing"),
            Some(_) => assert!(after < applied, "the bug rolls the follower back ({applied} -> {after})"),
        }
    }
}

// ----- membership changes ----------------------------------------------------------

#[test]
fn a_learner_catches_up_and_is_promoted_through_a_joint_configuration() {
    let mut cluster = Cluster::new(3);
    cluster.elect(N1);
    write_keys(&mut cluster, N1, 1, 5);
    cluster.add_joining(N4, DiskId(44), |_| {});
    cluster.change_membership(N1, 100, MembershipChange::AddLearner(N4)).expect("a new learner");
    cluster.advance(300);
    assert!(cluster.node(N4).membership().is_learner(N4));
    assert!(!cluster.node(N4).status().is_voter);
    same_state(&cluster, N1, N4);
    assert_eq!(cluster.change_membership(N1, 101, MembershipChange::Promote(N2)), Err(ChangeError::NotLearner(N2)));
    cluster.change_membership(N1, 102, MembershipChange::Promote(N4)).expect("a caught-up learner");
    assert!(cluster.node(N1).membership().is_joint(), "a voter change starts joint");
    assert_eq!(
        cluster.change_membership(N1, 103, MembershipChange::Remove(N2)),
        Err(ChangeError::ChangeInFlight),
        "one change at a time"
    );
    cluster.advance(300);
    let membership = cluster.node(N1).membership().clone();
    assert!(!membership.is_joint(), "the leader left the joint configuration by itself");
    assert_eq!(membership.voters.keys().copied().collect::<Vec<_>>(), vec![N1, N2, N3, N4]);
    assert_eq!(membership.voters[&N4], DiskId(44));
    assert!(cluster.node(N4).status().is_voter);
    assert!(matches!(cluster.answer(N1, 102), Some(ClientResult::Ok(_))));
    // Four voters: two of them are no longer a quorum.
    cluster.partition(&[N1, N2], &[N3, N4]);
    cluster.propose(N1, 200, put("k", "v"));
    cluster.advance(100);
    assert_eq!(cluster.answer(N1, 200), None, "no commit with two of four");
    cluster.assert_safe();
}

#[test]
fn learners_never_count_toward_a_quorum_unless_the_bug_says_so() {
    for bug in [None, Some(Bug::LearnerCountedInQuorum)] {
        let mut cluster = Cluster::with_config(3, |config| config.injected_bug = bug);
        cluster.elect(N1);
        cluster.add_joining(N4, DiskId(44), |config| config.injected_bug = bug);
        cluster.change_membership(N1, 100, MembershipChange::AddLearner(N4)).expect("a new learner");
        cluster.advance(300);
        cluster.isolate(N2);
        cluster.isolate(N3);
        cluster.propose(N1, 1, put("k", "v"));
        cluster.advance(100);
        let committed = matches!(cluster.answer(N1, 1), Some(ClientResult::Ok(_)));
        assert_eq!(committed, bug.is_some(), "bug {bug:?}: leader plus learner is a quorum only with the bug");
    }
}

#[test]
fn replacing_the_leader_through_joint_consensus_hands_leadership_over() {
    let mut cluster = Cluster::new(3);
    cluster.elect(N1);
    cluster.add_joining(N4, DiskId(44), |_| {});
    cluster.change_membership(N1, 100, MembershipChange::AddLearner(N4)).expect("a new learner");
    cluster.advance(300);
    cluster.change_membership(N1, 101, MembershipChange::Replace { remove: N1, add: N4 }).expect("replace");
    cluster.advance(300);
    assert_ne!(cluster.node(N1).role(), Role::Leader, "a removed leader steps down");
    assert!(!cluster.node(N1).status().is_voter);
    let leader = cluster.tick_until_leader();
    assert!([N2, N3, N4].contains(&leader));
    let voters: Vec<NodeId> = cluster.node(leader).membership().voters.keys().copied().collect();
    assert_eq!(voters, vec![N2, N3, N4]);
    cluster.propose(leader, 1, put("k", "v"));
    cluster.advance(100);
    assert!(matches!(cluster.answer(leader, 1), Some(ClientResult::Ok(_))));
    cluster.assert_safe();
}

#[test]
fn a_change_that_could_never_commit_is_refused() {
    let mut cluster = Cluster::new(3);
    cluster.elect(N1);
    cluster.wipe_and_rejoin(N3, DiskId(33));
    cluster.advance(300);
    // Voters {n1, n3} where n3 lost the disk the configuration records:
    // the joint configuration could never commit, and would block the repair.
    assert_eq!(cluster.change_membership(N1, 1, MembershipChange::Remove(N2)), Err(ChangeError::WouldLoseQuorum));
    assert_eq!(cluster.change_membership(N2, 2, MembershipChange::Remove(N1)), Err(ChangeError::NotLeader));
    cluster.change_membership(N1, 3, MembershipChange::RenewDisk(N3)).expect("the repair is allowed");
}

// ----- lost disks ------------------------------------------------------------------

#[test]
fn a_wiped_voter_neither_votes_nor_counts_until_its_new_disk_is_recorded() {
    for bug in [None, Some(Bug::WipedNodeVotes)] {
        let mut cluster = Cluster::with_config(3, |config| config.injected_bug = bug);
        cluster.elect(N1);
        write_keys(&mut cluster, N1, 1, 3);
        cluster.wipe_and_rejoin(N3, DiskId(33));
        assert!(!cluster.node(N3).status().is_voter, "no configuration yet");
        cluster.advance(300);
        // It learned the configuration, which lists it on its old disk.
        assert!(cluster.node(N3).membership().is_voter(N3));
        assert_eq!(cluster.node(N3).status().is_voter, bug.is_some(), "bug {bug:?}");
        // With n2 unreachable, n3's acknowledgements must not make a quorum.
        cluster.isolate(N2);
        cluster.propose(N1, 10, put("k", "v"));
        cluster.advance(100);
        let committed = matches!(cluster.answer(N1, 10), Some(ClientResult::Ok(_)));
        assert_eq!(
            committed,
            bug.is_some(),
            "bug {bug:?}: only a forgetful disk posing as its old self completes a quorum"
        );
        cluster.heal();
        cluster.advance(300);
        if bug.is_none() {
            cluster.change_membership(N1, 11, MembershipChange::RenewDisk(N3)).expect("renew the lost disk");
            cluster.advance(300);
            assert_eq!(cluster.node(N1).membership().voters[&N3], DiskId(33));
            assert!(cluster.node(N3).status().is_voter);
            assert_eq!(
                cluster.change_membership(N1, 12, MembershipChange::RenewDisk(N3)),
                Err(ChangeError::DiskCurrent(N3))
            );
            cluster.assert_safe();
        }
    }
}

// ----- forwarding and flow control ----------------------------------------------------

#[test]
fn a_follower_forwards_proposals_and_answers_once_it_applies_them() {
    let mut cluster = Cluster::with_config(3, |config| config.forward_proposals = true);
    cluster.elect(N1);
    cluster.propose(N2, 1, put("k", "forwarded"));
    cluster.stabilize();
    cluster.advance(100);
    assert!(matches!(cluster.answer(N2, 1), Some(ClientResult::Ok(_))), "got {:?}", cluster.answer(N2, 1));
    assert_eq!(cluster.kv_get(N1, "k").as_deref(), Some("forwarded"));
    // A forward the leader never answers is given up as unknown.
    cluster.cut_one_way(N2, N1);
    cluster.propose(N2, 2, put("k", "lost"));
    cluster.advance(10 * 150 * 2 + 10);
    assert_eq!(cluster.answer(N2, 2), Some(ClientResult::Dropped(chorus_core::raft::DropReason::LeadershipLost)));
}

#[test]
fn appends_respect_the_byte_limits() {
    let mut cluster = Cluster::with_config(3, |config| {
        config.max_append_bytes = 40;
        config.max_inflight_bytes = 80;
    });
    cluster.elect(N1);
    cluster.isolate(N3);
    write_keys(&mut cluster, N1, 1, 20);
    cluster.heal();
    cluster.advance(500);
    let mut multi_entry_appends = 0;
    for message in cluster.sent() {
        if let MessageBody::AppendEntries { entries, .. } = &message.body {
            let bytes: usize = entries.iter().map(|entry| entry.payload.len_bytes()).sum();
            assert!(entries.len() <= 1 || bytes <= 40, "an append of {} entries carries {bytes} bytes", entries.len());
            multi_entry_appends += usize::from(entries.len() > 1);
        }
    }
    assert!(multi_entry_appends > 0, "small entries are still batched");
    assert_eq!(cluster.node(N3).applied_index(), cluster.node(N1).applied_index());
}

// ----- read consistency levels ------------------------------------------------------

fn read_value(cluster: &Cluster, id: NodeId, request: u64) -> Option<Option<Vec<u8>>> {
    match cluster.answer(id, request)? {
        ClientResult::Ok(_) => match harness::ok_response(&cluster.answer(id, request).expect("answered")) {
            chorus_core::kv::KvResponse::Value(value) => Some(value),
            other => panic!("a get answered {other:?}"),
        },
        other => panic!("read {request} at {id} answered {other:?}"),
    }
}

fn follower_reading_cluster() -> Cluster {
    let mut cluster = Cluster::with_config(3, |config| config.follower_reads = true);
    cluster.elect(N1);
    cluster.propose(N1, 1, put("k", "old"));
    cluster.stabilize();
    // Followers learn that "old" committed from the next heartbeat (no
    // client waits on them for it).
    cluster.advance(100);
    cluster
}

#[test]
fn a_follower_serves_linearizable_reads_through_the_leaders_read_index() {
    let mut cluster = follower_reading_cluster();
    // n3 misses the new write's commit, but a linearizable read there must
    // wait for it.
    cluster.set_drop_rule(|message| {
        message.to == N3 && matches!(message.body, MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. })
    });
    cluster.propose(N1, 2, put("k", "new"));
    cluster.stabilize();
    cluster.read_with(N3, 10, harness::get("k"), ReadConsistency::Linearizable);
    cluster.stabilize();
    assert_eq!(cluster.answer(N3, 10), None, "n3 has not applied the read index yet");
    cluster.clear_drop_rule();
    cluster.advance(100);
    assert_eq!(read_value(&cluster, N3, 10), Some(Some(b"new".to_vec())));
    let asked = cluster.sent().iter().any(|message| matches!(message.body, MessageBody::ReadIndex { .. }));
    assert!(asked, "the follower asked the leader");
}

#[test]
fn stale_reads_answer_at_once_and_session_reads_wait_for_the_session_index() {
    let mut cluster = follower_reading_cluster();
    cluster.isolate(N3);
    cluster.propose(N1, 2, put("k", "new"));
    cluster.stabilize();
    let session = cluster.node(N1).applied_index();
    cluster.read_with(N3, 10, harness::get("k"), ReadConsistency::Stale);
    assert_eq!(read_value(&cluster, N3, 10), Some(Some(b"old".to_vec())), "stale but committed");
    cluster.read_with(N3, 11, harness::get("k"), ReadConsistency::Session { after: session });
    cluster.advance(50);
    assert_eq!(cluster.answer(N3, 11), None, "the session's write is not applied at n3 yet");
    cluster.heal();
    cluster.advance(200);
    assert_eq!(read_value(&cluster, N3, 11), Some(Some(b"new".to_vec())), "read-your-writes");
}

#[test]
fn a_follower_read_without_a_reachable_leader_is_given_up() {
    let mut cluster = follower_reading_cluster();
    cluster.cut_one_way(N3, N1);
    cluster.read_with(N3, 10, harness::get("k"), ReadConsistency::Linearizable);
    cluster.advance(10 * 150 * 2 + 10);
    assert_eq!(cluster.answer(N3, 10), Some(ClientResult::Dropped(chorus_core::raft::DropReason::LeadershipLost)));
}

#[test]
fn forwards_and_read_index_requests_wait_until_the_term_they_carry_is_durable() {
    // Found by the simulator: a follower forwarded a proposal in a term it had
    // not yet persisted, crashed, and restarted in the older term.
    let mut cluster = Cluster::with_config(3, |config| {
        config.forward_proposals = true;
        config.follower_reads = true;
    });
    cluster.elect(N1);
    cluster.isolate(N2);
    cluster.transfer_leadership(N1, N3).expect("n3 is a voter");
    cluster.stabilize();
    assert_eq!(cluster.leader(), Some(N3));
    cluster.set_sync_mode(N2, harness::SyncMode::Manual);
    cluster.heal();
    cluster.advance(60); // n3's heartbeat teaches n2 the new term, unpersisted
    let term = cluster.node(N2).term();
    assert!(cluster.node(N2).durable_hard_state().term < term, "n2 has not persisted {term} yet");
    assert_eq!(cluster.node(N2).leader(), Some(N3));
    let sent_before = cluster.sent().len();
    cluster.propose(N2, 1, put("k", "v"));
    cluster.read_with(N2, 2, harness::get("k"), ReadConsistency::Linearizable);
    cluster.deliver_all();
    let early = cluster.sent()[sent_before..].iter().any(|message| {
        message.from == N2 && matches!(message.body, MessageBody::Forward { .. } | MessageBody::ReadIndex { .. })
    });
    assert!(!early, "nothing leaves n2 in a term its disk does not hold");
    cluster.sync(N2);
    cluster.stabilize();
    assert!(matches!(cluster.answer(N2, 1), Some(ClientResult::Ok(_))));
    assert!(matches!(cluster.answer(N2, 2), Some(ClientResult::Ok(_))));
}

#[test]
fn a_learner_answers_votes_since_it_may_be_promoted_without_knowing_yet() {
    // Found by the simulator: a learner promoted in a joint configuration it
    // had not received refused to vote, and no leader of the joint
    // configuration could ever be elected to tell it.
    let mut cluster = Cluster::new(3);
    cluster.elect(N1);
    cluster.add_joining(N4, DiskId(44), |_| {});
    cluster.change_membership(N1, 100, MembershipChange::AddLearner(N4)).expect("a new learner");
    cluster.advance(300);
    let node = cluster.node(N2);
    let (last_log_index, last_log_term, term) = (node.last_index(), node.status().last_term, node.term());
    let vote = chorus_core::raft::Message {
        from: N2,
        to: N4,
        term: chorus_core::types::Term(term.0 + 5),
        disk: DiskId::BOOTSTRAP,
        incarnation: 1,
        body: MessageBody::RequestVote { pre_vote: false, last_log_index, last_log_term, transfer: false },
    };
    let sent_before = cluster.sent().len();
    cluster.skip_clock(N4, 1_000); // its leader lease has lapsed
    cluster.inject(vote);
    cluster.deliver_where(|message| message.to == N4);
    let granted = cluster.sent()[sent_before..].iter().any(|message| {
        message.from == N4 && matches!(message.body, MessageBody::RequestVoteResponse { granted: true, .. })
    });
    assert!(granted, "the learner grants the vote; only the candidate's configuration decides whether it counts");
    assert!(!cluster.node(N4).status().is_voter, "and it still does not campaign");
}
