//! The fault injector: random faults from the swarm profile, scheduled ones
//! from a scenario, and how each strikes a node or the network.

use super::describe::RaftRecord;
use super::world::{node_id, RaftWorld, SimEvent};
use super::OPERATOR_RETRY_US;
use crate::faults::{FaultAction, NodeRef, Recurrence};
use crate::network::NetworkParams;
use chorus_core::kv::KvStore;
use chorus_core::raft::{DiskId, DurableState, HardState, RaftNode, RestartError, Role};
use chorus_core::NodeId;
use rand::Rng;
use std::collections::BTreeMap;

/// A fault of the swarm profile that strikes again and again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurringFault {
    Partition,
    Crash,
    Pause,
    Wipe,
}

impl RaftWorld {
    /// The leader-isolation fault: cut a new leader off soon after it wins,
    /// before it can replicate its first entries — the interleaving behind
    /// Raft's figure 8.
    pub(super) fn maybe_isolate_new_leader(&mut self, node: usize) {
        let rate = self.profile.isolate_new_leader_ppm;
        if rate == 0 || self.healed_at.is_some() || self.engine.rng.random_range(0..crate::network::PPM) >= rate {
            return;
        }
        let delay = self.engine.rng.random_range(0..=5_000);
        let duration = self.engine.rng.random_range(50_000..=1_500_000);
        if self.strike {
            self.engine.schedule(delay, SimEvent::Fault(FaultAction::Isolate { node: NodeRef::Index(node) }));
            self.engine.schedule(delay + duration, SimEvent::Fault(FaultAction::Heal));
        }
    }

    /// The isolate-after-commit fault: cut a leader off just after it
    /// committed (and acknowledged) entries its followers may not know are
    /// committed yet.
    pub(super) fn maybe_isolate_after_commit(&mut self, node: usize) {
        let rate = self.profile.isolate_after_commit_ppm;
        if rate == 0 || self.healed_at.is_some() || self.engine.rng.random_range(0..crate::network::PPM) >= rate {
            return;
        }
        let delay = self.engine.rng.random_range(0..=1_000);
        let duration = self.engine.rng.random_range(200_000..=1_500_000);
        if self.strike {
            self.engine.schedule(delay, SimEvent::Fault(FaultAction::Isolate { node: NodeRef::Index(node) }));
            self.engine.schedule(delay + duration, SimEvent::Fault(FaultAction::Heal));
        }
    }

    /// The isolate-leaving-leader fault: a leader that just appended the
    /// configuration removing it is cut off at once (before the others
    /// receive it) for 0.2 to 1.5 s.
    pub(super) fn maybe_isolate_leaving_leader(&mut self, node: usize) {
        let leaving = self.nodes[node].raft.as_ref().is_some_and(|raft| !raft.membership().is_voter(node_id(node)));
        if !self.profile.isolate_leaving_leader || !leaving || self.healed_at.is_some() {
            return;
        }
        let duration = self.engine.rng.random_range(200_000..=1_500_000);
        if self.strike {
            self.engine.schedule(0, SimEvent::Fault(FaultAction::Isolate { node: NodeRef::Index(node) }));
            self.engine.schedule(duration, SimEvent::Fault(FaultAction::Heal));
        }
    }

    /// The crash-in-write fault: kill the node before its write syncs.
    pub(super) fn maybe_crash_in_write(&mut self, node: usize, synced_at: u64) {
        let rate = self.profile.crash_in_write_ppm;
        if rate == 0 || self.healed_at.is_some() || self.engine.rng.random_range(0..crate::network::PPM) >= rate {
            return;
        }
        let crash_at = self.engine.rng.random_range(self.engine.now..=synced_at);
        let downtime = self.engine.rng.random_range(10_000..=1_000_000);
        if self.strike {
            self.engine.schedule_at(crash_at, SimEvent::Fault(FaultAction::Crash { node: NodeRef::Index(node) }));
            self.engine
                .schedule_at(crash_at + downtime, SimEvent::Fault(FaultAction::Restart { node: NodeRef::Index(node) }));
        }
    }

    pub(super) fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| {
                let raft = node.raft.as_ref()?;
                (raft.role() == Role::Leader && !node.slot.paused).then_some((raft.term(), index))
            })
            .max()
            .map(|(_, index)| index)
    }

    fn resolve(&self, node: &NodeRef) -> Vec<usize> {
        match node {
            NodeRef::Index(index) => vec![*index],
            NodeRef::Leader => self.leader().into_iter().collect(),
            NodeRef::All => (0..self.nodes.len()).collect(),
        }
    }

    /// Adds `action`, about to be applied, to the run's applied faults,
    /// with "the leader" resolved; one that finds no leader does nothing
    /// and is left out, and so is what happens after the fault phase (the
    /// operator's repairs, undoing what healing already undid).
    pub(super) fn note_applied(&mut self, action: &FaultAction) {
        if self.healed_at.is_some() {
            return;
        }
        let leader = self.leader().map(NodeRef::Index);
        let resolve = |node: &NodeRef| if *node == NodeRef::Leader { leader.clone() } else { Some(node.clone()) };
        let resolved = match action {
            FaultAction::Isolate { node } => resolve(node).map(|node| FaultAction::Isolate { node }),
            FaultAction::Crash { node } => resolve(node).map(|node| FaultAction::Crash { node }),
            FaultAction::Restart { node } => resolve(node).map(|node| FaultAction::Restart { node }),
            FaultAction::Pause { node } => resolve(node).map(|node| FaultAction::Pause { node }),
            FaultAction::Resume { node } => resolve(node).map(|node| FaultAction::Resume { node }),
            FaultAction::Wipe { node } => resolve(node).map(|node| FaultAction::Wipe { node }),
            FaultAction::CutLink { a, b } => resolve(a).zip(resolve(b)).map(|(a, b)| FaultAction::CutLink { a, b }),
            FaultAction::OneWay { senders, receivers } => {
                let receivers: Vec<NodeRef> = receivers.iter().filter_map(resolve).collect();
                (!receivers.is_empty()).then(|| FaultAction::OneWay { senders: senders.clone(), receivers })
            }
            FaultAction::Transfer { to } => leader.as_ref().and(resolve(to)).map(|to| FaultAction::Transfer { to }),
            other => Some(other.clone()),
        };
        if let Some(resolved) = resolved {
            self.applied_faults.push((self.engine.now, resolved));
        }
    }

    pub(super) fn apply_fault(&mut self, action: FaultAction) {
        self.engine.record(RaftRecord::Fault, &[], || format!("FAULT {action}"));
        self.note_fault(&action);
        self.note_applied(&action);
        match action {
            FaultAction::Partition { .. }
            | FaultAction::Isolate { .. }
            | FaultAction::OneWay { .. }
            | FaultAction::CutLink { .. }
            | FaultAction::Heal
            | FaultAction::SetLoss { .. }
            | FaultAction::SetReorder { .. } => self.apply_network_fault(action),
            FaultAction::Crash { node } => {
                for index in self.resolve(&node) {
                    self.crash(index);
                }
            }
            FaultAction::Restart { node } => {
                for index in self.resolve(&node) {
                    self.restart(index);
                }
            }
            FaultAction::Pause { node } => {
                for index in self.resolve(&node) {
                    if self.nodes[index].raft.is_some() {
                        self.nodes[index].slot.paused = true;
                        self.engine.note(|recorder, now| recorder.pause(index, now, true));
                    }
                }
            }
            FaultAction::Resume { node } => {
                for index in self.resolve(&node) {
                    self.resume(index);
                }
            }
            FaultAction::Wipe { node } => {
                for index in self.resolve(&node) {
                    self.wipe(index);
                }
            }
            FaultAction::Change(change) => {
                if !self.operator_change(change.clone()) && self.strike {
                    // Not possible yet (no leader, or the node is not caught
                    // up): the operator tries again shortly. (Under a seed
                    // profile, a scenario's change stands for one attempt the
                    // seed's operator made; its retries are events too.)
                    self.engine.schedule(OPERATOR_RETRY_US, SimEvent::Fault(FaultAction::Change(change)));
                }
            }
            FaultAction::Transfer { to } => {
                if let (Some(leader), Some(target)) = (self.leader(), self.resolve(&to).first().copied()) {
                    self.operator_transfer(leader, node_id(target), target as u64);
                }
            }
        }
    }

    /// A fault of the network: partitions, cuts, healing, loss, reordering.
    fn apply_network_fault(&mut self, action: FaultAction) {
        match action {
            FaultAction::Partition { groups } => self.network.partition(&groups),
            FaultAction::Isolate { node } => {
                for index in self.resolve(&node) {
                    let others: Vec<usize> = (0..self.nodes.len()).filter(|other| *other != index).collect();
                    self.network.partition(&[others]);
                }
            }
            FaultAction::OneWay { senders, receivers } => {
                let receivers: Vec<usize> = receivers.iter().flat_map(|node| self.resolve(node)).collect();
                self.network.block_one_way(&senders, &receivers);
            }
            FaultAction::CutLink { a, b } => {
                for a in self.resolve(&a) {
                    for b in self.resolve(&b) {
                        self.network.block_one_way(&[a], &[b]);
                        self.network.block_one_way(&[b], &[a]);
                    }
                }
            }
            FaultAction::Heal => self.network.heal(),
            FaultAction::SetLoss { loss_ppm } => self.network.params.loss_ppm = loss_ppm,
            FaultAction::SetReorder { reorder_ppm, max_delay_us } => {
                self.network.params.reorder_ppm = reorder_ppm;
                self.network.params.reorder_delay_max_us = max_delay_us;
            }
            _ => unreachable!("apply_fault passes network faults only"),
        }
    }

    pub(super) fn crash(&mut self, node: usize) {
        let sim_node = &mut self.nodes[node];
        if sim_node.raft.is_none() {
            return;
        }
        sim_node.raft = None;
        sim_node.applied_seen = None;
        sim_node.led = false;
        sim_node.disk.crash(self.engine.now);
        sim_node.incarnation += 1;
        sim_node.slot.crash();
        sim_node.requests.clear();
        self.note_down(node, "down");
    }

    pub(super) fn restart(&mut self, node: usize) {
        if self.nodes[node].raft.is_some() || self.nodes[node].retired {
            return;
        }
        let voters: Vec<NodeId> = (0..self.options.nodes).map(node_id).collect();
        let config = Self::raft_config(&self.options, &self.profile, &voters, node, &mut self.engine.rng);
        if self.nodes[node].wiped {
            self.nodes[node].wiped = false;
            self.nodes[node].disk_id = DiskId(self.engine.rng.random_range(1..u64::MAX));
        }
        let sim_node = &mut self.nodes[node];
        let local = sim_node.slot.clock.local(self.engine.now);
        let hard_state = sim_node.disk.hard_state;
        // A node whose disk never recorded its identity (new, wiped, or
        // crashed before its first write synced) joins with an empty disk.
        let joins = sim_node.disk_id != DiskId::BOOTSTRAP && hard_state.disk != sim_node.disk_id;
        let stored = sim_node.disk.durable_state();
        // Decided by what the simulated disk holds, not by the core's
        // `DurableState::is_empty`, which the check below judges.
        let never_written =
            hard_state == HardState::default() && sim_node.disk.snapshot.is_none() && sim_node.disk.entries.is_empty();
        if never_written || joins {
            // Restarting from a disk that holds nothing must be refused
            // (`restart:`): the node cannot know what it acknowledged, so
            // a driver must bootstrap or join instead.
            let refused = RaftNode::restart(config.clone(), DurableState::default(), KvStore::default(), local);
            if !matches!(refused, Err(RestartError::EmptyDisk)) {
                self.checker.on_restart_refusal(node, refused.err());
            }
        }
        let sim_node = &mut self.nodes[node];
        let raft = if joins {
            RaftNode::join(config, sim_node.disk_id, KvStore::default(), local)
                .unwrap_or_else(|error| panic!("{} cannot join: {error}", node_id(node)))
        } else if never_written {
            // An initial member that crashed before its bootstrap write
            // synced: it never said anything, so it may bootstrap again.
            RaftNode::new(config, KvStore::default(), local)
                .unwrap_or_else(|error| panic!("{} cannot bootstrap: {error}", node_id(node)))
        } else {
            RaftNode::restart(config, stored, KvStore::default(), local)
                .unwrap_or_else(|error| panic!("{} cannot restart from its own disk: {error}", node_id(node)))
        };
        let disk_id = sim_node.disk_id;
        self.engine.trace.record(
            self.engine.now,
            RaftRecord::Restarted,
            &[node as u64, hard_state.term.0, hard_state.commit.0, disk_id.0],
            || {
                if joins {
                    format!("{} rejoins with an empty disk ({disk_id})", node_id(node))
                } else {
                    format!(
                        "{} restarts from disk: {:?}, {} entries, snapshot {:?}",
                        node_id(node),
                        hard_state,
                        sim_node.disk.entries.len(),
                        sim_node.disk.snapshot.as_ref().map(|snapshot| snapshot.meta.index)
                    )
                }
            },
        );
        sim_node.raft = Some(raft);
        self.note_restart(node, if joins { "rejoins with an empty disk" } else { "restarts from its disk" });
        if joins {
            self.checker.on_wipe(node);
        }
        self.checker.on_restart(node, self.nodes[node].raft.as_ref().expect("just set"));
        self.drain(node);
    }

    /// Crashes the node and replaces its disk with an empty one. At most one
    /// voter at a time may be without its recorded disk (more would be data
    /// loss, which no consensus protocol survives), and never in a cluster
    /// of fewer than three voters.
    fn wipe(&mut self, node: usize) {
        let Some(leader) = self.leader() else {
            return;
        };
        let leader_raft = self.nodes[leader].raft.as_ref().expect("leaders run");
        let membership = leader_raft.committed_membership().clone();
        let latest = leader_raft.membership().clone();
        let stale_voters = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(position, sim_node)| {
                let id = node_id(*position);
                [&membership, &latest]
                    .iter()
                    .any(|config| config.is_voter(id) && !config.is_voter_on(id, sim_node.disk_id))
                    || sim_node.wiped
            })
            .count();
        // Every node that may campaign must hold the leader's configuration
        // as its latest: one holding a newer, uncommitted one (a joint
        // configuration a deposed leader appended) campaigns with it, and
        // if the wiped node decides that configuration's incoming half the
        // node can never win, while the others lack its log (3-node seeds
        // 16322 and 45181: no leader after healing). A disk loss the
        // cluster cannot survive is not the fault this models.
        let initial_voters: Vec<NodeId> = (0..self.options.nodes).map(node_id).collect();
        let all_agree = self.nodes.iter().all(|sim_node| match sim_node.raft.as_ref() {
            Some(raft) => !raft.may_campaign() || *raft.membership() == membership,
            None => !sim_node.votes || sim_node.wiped || sim_node.disk.membership(&initial_voters) == membership,
        });
        if stale_voters > 0
            || membership.voters.len() < 3
            || membership.is_joint()
            || latest != membership
            || !all_agree
        {
            return;
        }
        self.crash(node);
        self.nodes[node].disk.wipe(self.engine.now);
        self.nodes[node].wiped = true;
        self.note_down(node, "down, disk wiped");
    }

    pub(super) fn resume(&mut self, node: usize) {
        if !self.nodes[node].slot.paused {
            return;
        }
        self.nodes[node].slot.paused = false;
        self.engine.note(|recorder, now| recorder.pause(node, now, false));
        // A process waking from a freeze finds input waiting on many
        // connections and reads them in whatever order its poll loop picks:
        // each source stays in order, the sources interleave at random.
        let mut sources: BTreeMap<(u8, u64), std::collections::VecDeque<SimEvent>> = BTreeMap::new();
        for event in std::mem::take(&mut self.nodes[node].slot.stash) {
            let source = match &event {
                SimEvent::Deliver { from, .. } => (0, *from as u64 + 1),
                SimEvent::ToNode { client, .. } => (1, *client as u64),
                _ => (2, 0),
            };
            sources.entry(source).or_default().push_back(event);
        }
        let mut queues: Vec<_> = sources.into_values().collect();
        while !queues.is_empty() {
            let pick = self.engine.rng.random_range(0..queues.len());
            let event = queues[pick].pop_front().expect("empty queues are removed");
            if queues[pick].is_empty() {
                queues.swap_remove(pick);
            }
            self.handle(event);
        }
        let local = self.nodes[node].slot.clock.local(self.engine.now);
        if let Some(raft) = self.nodes[node].raft.as_mut() {
            // Timers that should have fired during the pause fire late, now.
            raft.handle_timeout(local);
            self.nodes[node].slot.timer_at = None;
            self.drain(node);
        }
    }

    pub(super) fn recurring_fault(&mut self, kind: RecurringFault) {
        if self.healed_at.is_some() {
            return;
        }
        let nodes = self.nodes.len();
        let (recurrence, action, undo) = match kind {
            RecurringFault::Partition => {
                let recurrence = self.profile.partitions.expect("scheduled only when on");
                let action = self.draw_partition(nodes);
                (recurrence, action, FaultAction::Heal)
            }
            RecurringFault::Crash => {
                let recurrence = self.profile.crashes.expect("scheduled only when on");
                let node = NodeRef::Index(self.engine.rng.random_range(0..nodes));
                if self.engine.rng.random_range(0..100) < self.profile.bounce_percent {
                    // A process bounce: back within 2 ms.
                    if self.strike {
                        self.apply_fault(FaultAction::Crash { node: node.clone() });
                    }
                    let downtime = self.engine.rng.random_range(0..=2_000);
                    if self.strike {
                        self.engine.schedule(downtime, SimEvent::Fault(FaultAction::Restart { node }));
                    }
                    let next = downtime + Recurrence::draw(&mut self.engine.rng, recurrence.mean_interval_ms);
                    self.engine.schedule(next, SimEvent::Recurring(kind));
                    return;
                }
                (recurrence, FaultAction::Crash { node: node.clone() }, FaultAction::Restart { node })
            }
            RecurringFault::Pause => {
                let recurrence = self.profile.pauses.expect("scheduled only when on");
                let node = NodeRef::Index(self.engine.rng.random_range(0..nodes));
                (recurrence, FaultAction::Pause { node: node.clone() }, FaultAction::Resume { node })
            }
            RecurringFault::Wipe => {
                let recurrence = self.profile.wipes.expect("scheduled only when on");
                let node = NodeRef::Index(self.engine.rng.random_range(0..nodes));
                (recurrence, FaultAction::Wipe { node: node.clone() }, FaultAction::Restart { node })
            }
        };
        // Without `strike` the draws happen all the same, so that the rest
        // of the run sees the same random stream.
        if self.strike {
            self.apply_fault(action);
        }
        let duration = Recurrence::draw(&mut self.engine.rng, recurrence.mean_duration_ms);
        if self.strike {
            self.engine.schedule(duration, SimEvent::Fault(undo));
        }
        // The next one strikes only after this one ends.
        let next = duration + Recurrence::draw(&mut self.engine.rng, recurrence.mean_interval_ms);
        self.engine.schedule(next, SimEvent::Recurring(kind));
    }

    /// One partition of the swarm's recurring kinds, drawn at random: a
    /// random split, an isolated node, a link cut between the leader and a
    /// node, or a one-way cut to or from one node.
    fn draw_partition(&mut self, nodes: usize) -> FaultAction {
        match self.engine.rng.random_range(0..4) {
            0 => {
                let mut order: Vec<usize> = (0..nodes).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, self.engine.rng.random_range(0..=i));
                }
                let split = self.engine.rng.random_range(1..nodes.max(2));
                let (left, right) = order.split_at(split.min(nodes));
                FaultAction::Partition { groups: vec![left.to_vec(), right.to_vec()] }
            }
            1 => FaultAction::Isolate { node: NodeRef::Index(self.engine.rng.random_range(0..nodes)) },
            // A node that cannot reach the leader but reaches the
            // others: the case check-quorum's vote lease exists for.
            2 => FaultAction::CutLink { a: NodeRef::Leader, b: NodeRef::Index(self.engine.rng.random_range(0..nodes)) },
            _ => {
                let sender = self.engine.rng.random_range(0..nodes);
                let receivers = (0..nodes).filter(|node| *node != sender).map(NodeRef::Index).collect();
                if self.engine.rng.random_bool(0.5) {
                    FaultAction::OneWay { senders: vec![sender], receivers }
                } else {
                    let senders = (0..nodes).filter(|node| *node != sender).collect();
                    FaultAction::OneWay { senders, receivers: vec![NodeRef::Index(sender)] }
                }
            }
        }
    }

    pub(super) fn heal_everything(&mut self) {
        self.engine.record(RaftRecord::FaultPhaseEnded, &[], || "END OF FAULT PHASE: heal everything".to_string());
        self.healed_at = Some(self.engine.now);
        self.network.heal();
        self.engine.note(|recorder, now| {
            recorder.network_heal(now);
            recorder.mark(None, now, "END OF FAULT PHASE: heal everything".into(), "heal");
        });
        let delays = self.network.params;
        self.network.params = NetworkParams {
            delay_min_us: delays.delay_min_us,
            delay_max_us: delays.delay_max_us,
            ..NetworkParams::reliable()
        };
        for node in 0..self.nodes.len() {
            self.restart(node);
            self.resume(node);
        }
        self.engine.schedule(self.options.liveness_bound_us, SimEvent::LivenessDeadline);
    }
}
