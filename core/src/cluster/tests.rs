//! Unit tests of the cluster's pieces, and a tiny in-memory cluster.

use super::*;
use crate::kv::{KvCommand, KvOp, KvQuery, KvResponse};
use crate::partition::{RangeDescriptor, RangeId, Span};
use crate::raft::{ReadConsistency, Role};
use crate::swim::Address;
use crate::types::{LogIndex, NodeId, RequestId, Term, Time};
use std::collections::{BTreeMap, VecDeque};

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

fn record(range: u64, as_of: u64, voters: &[u64]) -> MetaCommand {
    MetaCommand::Record {
        range: RangeId(range),
        as_of: LogIndex(as_of),
        voters: voters.iter().map(|&v| NodeId(v)).collect(),
        learners: Vec::new(),
    }
}

#[test]
fn the_meta_store_bootstraps_once_and_never_records_backwards() {
    let layout = Bootstrap::even(&ids(5), 4, 3, 3).unwrap();
    let mut store = MetaStore::default();
    assert!(matches!(
        store.execute(LogIndex(1), MetaCommand::Bootstrap { part: 0, parts: 1, ranges: layout.ranges.clone() }),
        MetaOutcome::Changed(_)
    ));
    assert_eq!(
        store.execute(LogIndex(2), MetaCommand::Bootstrap { part: 0, parts: 1, ranges: Vec::new() }),
        MetaOutcome::Unchanged
    );
    let MetaOutcome::Changed(changed) = store.execute(LogIndex(3), record(1, 10, &[1, 2, 4])) else { panic!() };
    assert_eq!(changed[0].generation, 1);
    // An older record (a late report from an earlier leader) changes nothing.
    assert_eq!(store.execute(LogIndex(4), record(1, 9, &[1, 2, 3])), MetaOutcome::Unchanged);
    assert_eq!(
        store.descriptor(RangeId(1)).unwrap().voters().collect::<Vec<_>>(),
        ids(4).into_iter().filter(|n| n.0 != 3).collect::<Vec<_>>()
    );
    assert_eq!(store.version(), LogIndex(3));
    assert_eq!(store.recorded_as_of(RangeId(1)), LogIndex(10));
    assert!(matches!(store.execute(LogIndex(5), record(99, 11, &[1])), MetaOutcome::Rejected(_)));
    assert!(matches!(store.execute(LogIndex(6), record(2, 11, &[])), MetaOutcome::Rejected(_)));
    // Snapshots carry the records' commit indexes too.
    let mut restored = MetaStore::default();
    crate::StateMachine::restore(&mut restored, &crate::StateMachine::snapshot(&store)).unwrap();
    assert_eq!(restored, store);
    assert!(crate::StateMachine::restore(&mut restored, b"garbage").is_err());
}

#[test]
fn a_bootstrap_that_leaves_a_gap_or_uses_the_meta_id_is_refused() {
    let mut layout = Bootstrap::even(&ids(3), 3, 3, 3).unwrap();
    layout.ranges.remove(1);
    assert!(layout.validate().is_err(), "a layout with a gap");
    let mut store = MetaStore::default();
    assert!(matches!(
        store.execute(LogIndex(1), MetaCommand::Bootstrap { part: 0, parts: 1, ranges: layout.ranges }),
        MetaOutcome::Rejected(_)
    ));
    let meta_id = vec![RangeDescriptor::new(META_RANGE, Span::full(), ids(1))];
    assert!(Bootstrap { meta_voters: ids(1), ranges: meta_id }.validate().is_err());
    assert!(Bootstrap::even(&ids(2), 4, 3, 3).is_err(), "rf above the node count");
    assert!(Bootstrap::even(&ids(2), 0, 1, 3).is_err(), "no ranges");
}

#[test]
fn a_bootstrap_in_parts_applies_only_when_every_part_has_committed() {
    let layout = Bootstrap::even(&ids(3), 6, 3, 3).unwrap();
    let part = |part: u32, parts: u32| MetaCommand::Bootstrap {
        part,
        parts,
        ranges: layout.ranges.iter().skip(part as usize * 2).take(2).cloned().collect(),
    };
    let mut store = MetaStore::default();
    assert_eq!(store.execute(LogIndex(1), part(2, 3)), MetaOutcome::Unchanged);
    assert_eq!(store.execute(LogIndex(2), part(2, 3)), MetaOutcome::Unchanged, "a part committed twice");
    assert_eq!(store.missing_bootstrap_parts(3).collect::<Vec<_>>(), vec![0, 1]);
    assert!(matches!(store.execute(LogIndex(3), part(0, 4)), MetaOutcome::Rejected(_)), "parts disagree");
    assert!(matches!(store.execute(LogIndex(3), part(3, 3)), MetaOutcome::Rejected(_)), "part out of range");
    assert_eq!(store.execute(LogIndex(4), part(0, 3)), MetaOutcome::Unchanged);
    assert_eq!(store.descriptors().count(), 0, "incomplete: no descriptors yet");
    // A snapshot taken halfway carries the parts.
    let mut restored = MetaStore::default();
    crate::StateMachine::restore(&mut restored, &crate::StateMachine::snapshot(&store)).unwrap();
    assert!(matches!(restored.execute(LogIndex(5), part(1, 3)), MetaOutcome::Changed(d) if d.len() == 6));
    assert_eq!(restored.version(), LogIndex(5));
    assert_eq!(restored.missing_bootstrap_parts(3).count(), 0);
}

#[test]
fn a_placed_layout_spreads_every_range_over_the_zones_and_balances_the_rest() {
    use crate::partition::{Locality, NodeInfo};
    // Six nodes in three zones: every range can take one node per zone.
    let infos: Vec<NodeInfo> =
        (1..=6).map(|i| NodeInfo::new(NodeId(i), Locality::new([format!("zone={}", i % 3)]), 1, Time::ZERO)).collect();
    let layout = Bootstrap::placed(&infos, 600, 3, 3, 7).unwrap();
    layout.validate().unwrap();
    let mut per_node = BTreeMap::new();
    for range in &layout.ranges {
        let zones: std::collections::BTreeSet<u64> = range.voters().map(|v| v.0 % 3).collect();
        assert_eq!(zones.len(), 3, "{range:?}");
        for voter in range.voters() {
            *per_node.entry(voter).or_insert(0) += 1;
        }
    }
    let (least, most) = (per_node.values().min().unwrap(), per_node.values().max().unwrap());
    assert!(most - least <= 6, "{per_node:?}");
    let meta_zones: std::collections::BTreeSet<u64> = layout.meta_voters.iter().map(|v| v.0 % 3).collect();
    assert_eq!(meta_zones.len(), 3, "{:?}", layout.meta_voters);
    assert_eq!(Bootstrap::placed(&infos, 600, 3, 3, 7).unwrap(), layout, "the same seed, the same layout");
    assert!(Bootstrap::placed(&infos, 10, 7, 3, 7).is_err(), "rf above the node count");
}

#[test]
fn a_layout_too_large_for_one_command_bootstraps_in_parts() {
    // 3,000 descriptors are far more than one 64 KiB meta command holds.
    let mut tiny = Tiny::new(3, 3_000);
    tiny.run_until(|t| t.nodes.iter().filter(|n| n.is_active()).count() == 1);
    let active = tiny.nodes.iter().find(|n| n.is_active()).unwrap();
    assert_eq!(active.meta().unwrap().state_machine().descriptors().count(), 3_000);
}

#[test]
fn leader_hints_only_move_forward_in_term_and_die_with_their_node() {
    let layout = Bootstrap::even(&ids(3), 2, 3, 3).unwrap();
    let mut table = RouteTable::default();
    table.bootstrap(&layout.ranges);
    table.note_leader(RangeId(1), NodeId(2), Term(5));
    table.note_leader(RangeId(1), NodeId(3), Term(4));
    assert_eq!(table.leader(RangeId(1)), Some(NodeId(2)), "a hint from an older term loses");
    table.note_leader(RangeId(1), NodeId(3), Term(6));
    assert_eq!(table.leader(RangeId(1)), Some(NodeId(3)));
    assert_eq!(table.forget_leader(NodeId(3)), 1);
    assert_eq!(table.leader(RangeId(1)), None);
    // Older descriptors never replace newer ones.
    assert!(table.install(LogIndex(7), layout.ranges.clone(), Vec::new(), Vec::new()));
    assert!(!table.install(LogIndex(6), Vec::new(), Vec::new(), Vec::new()));
    assert_eq!(table.version(), LogIndex(7));
}

#[test]
fn a_configuration_that_would_split_or_merge_is_refused() {
    let mut config = ClusterConfig::new(NodeId(1), Address::new(vec![1]));
    assert!(config.validate().is_ok());
    config.planner.split = crate::partition::SplitPolicy::default();
    assert_eq!(config.validate(), Err(ClusterConfigError::SplitsUnsupported));
    let mut config = ClusterConfig::new(NodeId(1), Address::new(vec![1]));
    config.capacity = 0;
    assert_eq!(config.validate(), Err(ClusterConfigError::Capacity));
}

/// A cluster of `n` nodes on a perfect network with instant disks.
struct Tiny {
    nodes: Vec<ClusterNode<crate::kv::KvStore>>,
    configs: Vec<ClusterConfig>,
    /// What each node's disk holds, per range.
    disks: Vec<BTreeMap<RangeId, crate::raft::DurableState>>,
    /// Crashed: takes no input, gets no message.
    down: Vec<bool>,
    now: Time,
    answers: BTreeMap<(usize, RequestId), ClusterResult>,
    events: Vec<(usize, ClusterEvent)>,
    /// Sends that carried Raft messages, and the Raft messages they carried.
    raft_sends: u64,
    raft_messages: u64,
}

impl Tiny {
    fn new(n: u64, ranges: usize) -> Tiny {
        Tiny::with(n, ranges, |_| {})
    }

    fn with(n: u64, ranges: usize, configure: impl Fn(&mut ClusterConfig)) -> Tiny {
        let layout = Bootstrap::even(&ids(n), ranges, 3, 3).unwrap();
        let configs: Vec<ClusterConfig> = (1..=n)
            .map(|i| {
                let mut config = ClusterConfig::new(NodeId(i), Address::new(vec![i as u8]));
                config.bootstrap = Some(layout.clone());
                config.peers = (1..=n).map(|p| (NodeId(p), Address::new(vec![p as u8]))).collect();
                config.seeds = vec![Address::new(vec![1])];
                configure(&mut config);
                config
            })
            .collect();
        let nodes = configs.iter().map(|config| ClusterNode::new(config.clone(), Time::ZERO).unwrap()).collect();
        Tiny {
            nodes,
            disks: vec![BTreeMap::new(); configs.len()],
            down: vec![false; configs.len()],
            configs,
            now: Time::ZERO,
            answers: BTreeMap::new(),
            events: Vec::new(),
            raft_sends: 0,
            raft_messages: 0,
        }
    }

    fn crash(&mut self, i: usize) {
        self.down[i] = true;
    }

    fn restart(&mut self, i: usize) {
        self.nodes[i] = ClusterNode::restart(self.configs[i].clone(), self.disks[i].clone(), self.now).unwrap();
        self.down[i] = false;
    }

    fn persist(&mut self, i: usize, write: &ClusterWrite) {
        for (range, request) in &write.writes {
            self.disks[i].entry(*range).or_default().apply(request).unwrap();
        }
        for range in &write.destroyed {
            self.disks[i].remove(range);
        }
    }

    /// Runs every action until quiet, then advances time to the next deadline.
    fn step(&mut self) {
        let mut inbox: VecDeque<(usize, ClusterMessage)> = VecDeque::new();
        loop {
            for i in 0..self.nodes.len() {
                while let Some(action) = self.nodes[i].poll_action() {
                    if self.down[i] {
                        continue;
                    }
                    match action {
                        ClusterAction::Send { to, message } => {
                            let carried = match &message {
                                ClusterMessage::Raft { .. } => 1,
                                ClusterMessage::RaftBatch(batch) => batch.len() as u64,
                                _ => 0,
                            };
                            if carried > 0 {
                                self.raft_sends += 1;
                                self.raft_messages += carried;
                            }
                            inbox.push_back((to.as_bytes()[0] as usize - 1, message))
                        }
                        ClusterAction::Persist(write) => {
                            self.persist(i, &write);
                            self.nodes[i].handle_persisted(self.now, write.id)
                        }
                        ClusterAction::Respond { request, result, .. } => {
                            self.answers.insert((i, request), result);
                        }
                        ClusterAction::Event(event) => self.events.push((i, event)),
                    }
                }
            }
            let Some((to, message)) = inbox.pop_front() else { break };
            if !self.down[to] {
                let bytes = message::encode(&message, usize::MAX).unwrap();
                self.nodes[to].handle_bytes(self.now, &bytes);
            }
        }
        let up = |i: &usize| !self.down[*i];
        let next = (0..self.nodes.len()).filter(up).map(|i| self.nodes[i].poll_timeout()).min().unwrap();
        self.now = next.max(self.now.add_micros(1));
        for i in 0..self.nodes.len() {
            if !self.down[i] && self.nodes[i].poll_timeout() <= self.now {
                self.nodes[i].handle_timeout(self.now);
            }
        }
    }

    fn run_until(&mut self, done: impl Fn(&Tiny) -> bool) {
        for _ in 0..200_000 {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!("not done by {:?}", self.now);
    }
}

#[test]
fn a_tiny_cluster_elects_an_active_node_and_serves_keys_through_redirects() {
    let mut tiny = Tiny::new(4, 4);
    tiny.run_until(|t| {
        t.nodes.iter().filter(|n| n.is_active()).count() == 1 && t.nodes.iter().all(|n| n.routes().version().0 > 0)
    });
    let key = b"some key";
    let owner = tiny.nodes[0].routes().lookup(key).unwrap().clone();
    let outsider = (0..4).find(|&i| !owner.has_replica(NodeId(i as u64 + 1))).expect("rf 3 of 4 nodes");
    let put = KvCommand { session: None, op: KvOp::Put { key: key.to_vec(), value: b"v".to_vec() } };
    tiny.nodes[outsider].request(tiny.now, RequestId(1), key, ClientOp::Write(put.encode().into()));
    tiny.step();
    let Some(ClusterResult::Redirect { range, .. }) = tiny.answers.get(&(outsider, RequestId(1))).cloned() else {
        panic!("{:?}", tiny.answers)
    };
    assert_eq!(range, owner.id);
    // Ask a replica: it serves (a follower forwards to its leader).
    let replica = owner.voters().next().unwrap().0 as usize - 1;
    tiny.run_until(|t| t.nodes[replica].range(owner.id).is_some_and(|r| r.leader().is_some()));
    tiny.nodes[replica].request(tiny.now, RequestId(2), key, ClientOp::Write(put.encode().into()));
    tiny.run_until(|t| t.answers.contains_key(&(replica, RequestId(2))));
    assert_eq!(tiny.answers[&(replica, RequestId(2))], ClusterResult::Ok(KvResponse::Done.encode()));
    let get = ClientOp::Read {
        query: KvQuery::Get { key: key.to_vec() }.encode(),
        consistency: ReadConsistency::Linearizable,
    };
    tiny.nodes[replica].request(tiny.now, RequestId(3), key, get);
    tiny.run_until(|t| t.answers.contains_key(&(replica, RequestId(3))));
    assert_eq!(
        tiny.answers[&(replica, RequestId(3))],
        ClusterResult::Ok(KvResponse::Value(Some(b"v".to_vec())).encode())
    );
    let status = tiny.nodes[replica].status();
    assert!(status.active.is_some() && status.members.len() == 4, "{status:?}");
}

#[test]
fn garbage_from_a_peer_is_reported_not_a_panic() {
    let mut tiny = Tiny::new(3, 1);
    tiny.nodes[0].handle_bytes(Time::ZERO, &[0xff, 0xfe, 0x01]);
    tiny.nodes[0].handle_bytes(Time::ZERO, &[]);
    tiny.step();
    let bad = tiny.events.iter().filter(|(i, e)| *i == 0 && matches!(e, ClusterEvent::BadMessage(_))).count();
    assert_eq!(bad, 2);
}

#[test]
fn heartbeats_of_every_range_go_to_a_peer_in_one_batch_per_tick() {
    // Three nodes, 24 ranges on all three: each leader's heartbeats to a
    // peer fall due in the same tick more often than not.
    let mut tiny = Tiny::with(3, 24, |config| config.raft.quiesce_after_ms = 0);
    tiny.run_until(|t| t.nodes.iter().filter(|n| n.is_active()).count() == 1);
    let settled = tiny.now.add_millis(2_000);
    tiny.run_until(|t| t.now >= settled);
    (tiny.raft_sends, tiny.raft_messages) = (0, 0);
    let end = tiny.now.add_millis(1_000);
    tiny.run_until(|t| t.now >= end);
    // 24 ranges, 2 followers each, a heartbeat every 50 ms and its answer:
    // about 1,900 Raft messages a second, carried by far fewer sends.
    assert!(tiny.raft_messages > 1_000, "{} messages", tiny.raft_messages);
    assert!(tiny.raft_messages >= 4 * tiny.raft_sends, "{} messages in {} sends", tiny.raft_messages, tiny.raft_sends);
}

/// Runs `tiny` until every range (the meta range included) is quiesced on
/// every running node.
fn run_until_quiesced(tiny: &mut Tiny) {
    tiny.run_until(|t| {
        (0..t.nodes.len()).filter(|&i| !t.down[i]).all(|i| {
            let status = t.nodes[i].status();
            status.quiesced == status.ranges.len()
        })
    });
}

fn put_op(key: &[u8], value: &[u8]) -> ClientOp {
    let put = KvCommand { session: None, op: KvOp::Put { key: key.to_vec(), value: value.to_vec() } };
    ClientOp::Write(put.encode().into())
}

#[test]
fn idle_ranges_quiesce_and_a_write_wakes_one() {
    let mut tiny = Tiny::new(3, 24);
    tiny.run_until(|t| t.nodes.iter().filter(|n| n.is_active()).count() == 1);
    // Let the planner balance leaders first (transfers wake ranges).
    let settled = tiny.now.add_millis(5_000);
    tiny.run_until(|t| t.now >= settled);
    run_until_quiesced(&mut tiny);
    (tiny.raft_sends, tiny.raft_messages) = (0, 0);
    let end = tiny.now.add_millis(10_000);
    tiny.run_until(|t| t.now >= end);
    assert_eq!(tiny.raft_messages, 0, "quiesced ranges sent Raft messages");
    // A write to a quiesced range is served, then the range quiesces again.
    let key = b"a key";
    let owner = tiny.nodes[0].routes().lookup(key).unwrap().id;
    let leader = (0..3).find(|&i| tiny.nodes[i].range(owner).is_some_and(|r| r.role() == Role::Leader));
    let follower = (0..3).find(|&i| Some(i) != leader).unwrap();
    tiny.nodes[follower].request(tiny.now, RequestId(1), key, put_op(key, b"v"));
    tiny.run_until(|t| t.answers.contains_key(&(follower, RequestId(1))));
    assert_eq!(tiny.answers[&(follower, RequestId(1))], ClusterResult::Ok(KvResponse::Done.encode()));
    assert!(tiny.raft_messages > 0);
    run_until_quiesced(&mut tiny);
}

/// Steps `tiny` until `done`, and returns the most ranges any running node
/// had waiting to wake at once.
fn run_watching_wakes(tiny: &mut Tiny, done: impl Fn(&Tiny) -> bool) -> usize {
    let mut most = 0;
    for _ in 0..200_000 {
        for i in (0..tiny.nodes.len()).filter(|&i| !tiny.down[i]) {
            most = most.max(tiny.nodes[i].status().waking);
        }
        if done(tiny) {
            return most;
        }
        tiny.step();
    }
    panic!("not done by {:?}", tiny.now);
}

fn leaders_of(tiny: &Tiny, i: usize) -> Vec<(RangeId, Term)> {
    tiny.nodes[i].hosted().filter(|(_, r)| r.role() == Role::Leader).map(|(id, r)| (id, r.term())).collect()
}

/// A quiesced 4-node cluster with 24 ranges, waking at most 2 per tick.
fn quiesced_tiny() -> Tiny {
    let mut tiny = Tiny::with(4, 24, |config| config.max_wakes_per_tick = 2);
    tiny.run_until(|t| t.nodes.iter().filter(|n| n.is_active()).count() == 1);
    let settled = tiny.now.add_millis(5_000);
    tiny.run_until(|t| t.now >= settled);
    run_until_quiesced(&mut tiny);
    tiny
}

#[test]
fn the_ranges_of_a_failed_leader_wake_a_few_per_tick_and_elect() {
    let mut tiny = quiesced_tiny();
    // Crash a node that leads ranges but is not the active node.
    let victim = (0..4).filter(|&i| !tiny.nodes[i].is_active()).max_by_key(|&i| leaders_of(&tiny, i).len()).unwrap();
    assert!(leaders_of(&tiny, victim).len() > 2, "the victim leads too few ranges to show pacing");
    tiny.crash(victim);
    let victim_id = NodeId(victim as u64 + 1);
    let most_waiting = run_watching_wakes(&mut tiny, |t| {
        (0..4).filter(|&i| i != victim).all(|i| {
            t.nodes[i].hosted().all(|(_, r)| {
                !r.membership().voters.contains_key(&victim_id) || r.leader().is_some_and(|l| l != victim_id)
            })
        })
    });
    // Without SWIM's failure report the quiesced followers would never
    // campaign; with it they wake at most 2 per tick.
    assert!(most_waiting > 0, "no range ever waited to wake: the wakes were not paced");
}

#[test]
fn a_restarted_node_does_not_depose_quiesced_leaders_and_wakes_its_replicas_gradually() {
    let mut tiny = quiesced_tiny();
    let victim =
        (0..4).filter(|&i| !tiny.nodes[i].is_active()).max_by_key(|&i| tiny.nodes[i].hosted().count()).unwrap();
    let victim_led: Vec<RangeId> = leaders_of(&tiny, victim).into_iter().map(|(range, _)| range).collect();
    tiny.crash(victim);
    let back = tiny.now.add_millis(200);
    tiny.run_until(|t| t.now >= back);
    tiny.restart(victim);
    let mark = tiny.events.len();
    let hosted = tiny.nodes[victim].hosted().count();
    assert!(tiny.nodes[victim].status().waking >= hosted - 2, "the restarted replicas were not held");
    let victim_id = NodeId(victim as u64 + 1);
    run_watching_wakes(&mut tiny, |t| {
        t.nodes[victim].hosted().all(|(_, r)| r.leader().is_some_and(|l| l != victim_id) || r.role() == Role::Leader)
    });
    run_until_quiesced(&mut tiny);
    // The restarted replicas campaigned (their pre-votes were refused by
    // quiesced followers, whose Wake brought the leaders' heartbeats back),
    // but no other node started an election in a range the victim did not
    // lead. (The planner's leadership transfers skip pre-vote.)
    let elections: Vec<&(usize, ClusterEvent)> = tiny.events[mark..]
        .iter()
        .filter(|(i, e)| {
            *i != victim
                && matches!(e, ClusterEvent::Raft { range, event: crate::raft::Event::RoleChanged { role: Role::PreCandidate, .. } } if !victim_led.contains(range))
        })
        .collect();
    assert!(elections.is_empty(), "a restart woke elections elsewhere: {elections:?}");
}
