//! The replicas a node hosts: creating one when a leader first speaks to it,
//! destroying one it no longer belongs to, reporting the ranges it leads, and
//! carrying out the meta leader's commands on them.

use super::message::{ClusterMessage, CommandKind, CommandResult, RangeCommand, RangeReport, MAX_REPORTS_PER_MESSAGE};
use super::node::{ClusterNode, Hosted, Waiter};
use super::nodemeta::NodeMeta;
use super::output::{ClusterEvent, ClusterResult};
use crate::partition::RangeId;
use crate::raft::{
    self, ChangeError, ClientResult, DiskId, DropReason, Membership, MembershipChange, MessageBody, RaftNode, Role,
};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Term};
use rand::Rng;

/// A membership change a meta leader asked this node (the range's leader)
/// for, waiting to be committed and settled.
#[derive(Clone, Debug)]
pub(super) struct CommandWait {
    pub(super) op: u64,
    pub(super) meta_leader: NodeId,
    pub(super) meta_term: Term,
    pub(super) range: RangeId,
}

impl<S: StateMachine + Default> ClusterNode<S> {
    /// Creates an empty replica of `range` when its leader first speaks to
    /// this node (it is being added as a learner). Returns whether it
    /// exists now.
    pub(super) fn create_replica(&mut self, range: RangeId, message: &raft::Message) -> bool {
        let from_leader = matches!(
            message.body,
            MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. }
        );
        if !from_leader || self.ranges.len() >= self.config.max_ranges {
            return false;
        }
        // A fresh disk id, never the bootstrap one: this replica never held
        // anything it could have acknowledged.
        let disk = DiskId(self.rng.random::<u64>() | 1);
        let config = self.raft_config(range, Vec::new());
        match RaftNode::join(config, disk, S::default(), self.now) {
            Ok(raft) => {
                self.ranges.insert(range, Hosted { raft, created: self.now, leader_term: None });
                self.event(ClusterEvent::ReplicaCreated(range));
                true
            }
            Err(error) => {
                self.event(ClusterEvent::BadMessage(format!("{range}: cannot create a replica: {error}")));
                false
            }
        }
    }

    /// After a range's group ran: leadership news.
    pub(super) fn range_changed(&mut self, range: RangeId) {
        let id = self.config.id;
        let Some(hosted) = self.ranges.get_mut(&range) else { return };
        let (role, term, leader) = (hosted.raft.role(), hosted.raft.term(), hosted.raft.leader());
        if role == Role::Leader {
            if hosted.leader_term != Some(term) {
                hosted.leader_term = Some(term);
                self.table.note_leader(range, id, term);
                self.event(ClusterEvent::LeaderElected { range, term });
            }
        } else {
            hosted.leader_term = None;
            if let Some(leader) = leader {
                self.table.note_leader(range, leader, term);
            }
        }
    }

    /// The report of a range this node leads.
    pub(super) fn report(&self, range: RangeId) -> Option<RangeReport> {
        let raft = &self.ranges.get(&range)?.raft;
        if raft.role() != Role::Leader {
            return None;
        }
        let committed = raft.committed_membership();
        let voters = (!committed.is_joint()).then(|| committed.voters.keys().copied().collect());
        let commit = raft.commit_index();
        let lagging = committed
            .voters
            .keys()
            .filter(|&&v| v != self.config.id && raft.match_index(v).is_none_or(|m| m < commit))
            .copied()
            .collect();
        Some(RangeReport {
            range,
            term: raft.term(),
            commit,
            voters,
            learners: committed.learners.iter().copied().collect(),
            // The state machine interface has no size yet: splits and
            // merges are not driven by the cluster.
            size_bytes: 0,
            lagging,
        })
    }

    /// The node SWIM says runs the meta range's leader (the highest active
    /// term published), if any.
    pub(super) fn active_node(&self) -> Option<NodeId> {
        if let Some(control) = &self.control {
            return Some(self.config.id).filter(|_| control.term > Term(0));
        }
        self.swim
            .members()
            .filter(|m| m.state == crate::swim::MemberState::Alive)
            .filter_map(|m| NodeMeta::decode(&m.metadata).and_then(|meta| meta.active_term).map(|t| (t, m.id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Reports every range this node leads to the active node.
    pub(super) fn send_reports(&mut self) {
        let reports: Vec<RangeReport> = self.ranges.keys().filter_map(|&range| self.report(range)).collect();
        if reports.is_empty() {
            return;
        }
        let Some(active) = self.active_node() else { return };
        let from = self.config.id;
        for chunk in reports.chunks(MAX_REPORTS_PER_MESSAGE) {
            if active == from {
                self.handle_reports(from, chunk.to_vec());
            } else {
                self.send(active, ClusterMessage::Reports { from, reports: chunk.to_vec() });
            }
        }
    }

    /// Destroys replicas this node no longer belongs to: the recorded
    /// descriptor does not list it and was recorded as of a commit index at
    /// or past the configuration the replica itself knows (so the removal
    /// is newer than anything the replica holds), or — for a replica that
    /// never learned a configuration naming it as a voter — the descriptor
    /// does not list it and the replica is older than the orphan grace
    /// period.
    pub(super) fn collect_orphans(&mut self) {
        if self.table.version().0 == 0 || self.config.bug(super::ClusterBug::OrphansKept) {
            return;
        }
        let id = self.config.id;
        let grace = self.config.orphan_grace_ms;
        let orphans: Vec<RangeId> = self
            .ranges
            .iter()
            .filter(|(&range, hosted)| {
                let Some(descriptor) = self.table.descriptor(range) else { return false };
                if descriptor.has_replica(id) {
                    return false;
                }
                // A replica that still believes it leads is collected too
                // once a newer configuration without it is recorded: a
                // quiesced leader cut off while its group removed it never
                // steps down by itself (it has no timer), and nobody in the
                // new configuration will talk to it.
                // A voter's disk counts towards its group's quorums: it goes
                // only on proof of a newer configuration without it. A
                // learner's does not (the leader re-creates a learner it
                // still wants), so it goes like an unnamed replica: its
                // add may never have committed, and then no record will
                // ever mention it.
                let membership = hosted.raft.membership();
                if membership.voters.contains_key(&id) || membership.outgoing.contains_key(&id) {
                    hosted.raft.membership_index() <= self.table.recorded_as_of(range)
                } else {
                    hosted.raft.role() != Role::Leader && self.now.as_millis() >= hosted.created.as_millis() + grace
                }
            })
            .map(|(&range, _)| range)
            .collect();
        for range in orphans {
            self.destroy_replica(range);
        }
    }

    fn destroy_replica(&mut self, range: RangeId) {
        self.ranges.remove(&range);
        self.timers.remove(range);
        self.destroyed.push(range);
        self.write.retain(|(r, _)| *r != range);
        let waiting: Vec<_> = self.waiters.iter().filter(|(_, (r, _))| *r == range).map(|(&id, _)| id).collect();
        for request in waiting {
            if let Some((_, Waiter::Client(client))) = self.waiters.remove(&request) {
                let result = ClusterResult::Dropped(DropReason::LeadershipLost);
                self.actions.push_back(super::output::ClusterAction::Respond {
                    request: client,
                    result,
                    served_by: None,
                });
            }
        }
        self.event(ClusterEvent::ReplicaDestroyed(range));
    }

    /// A meta leader's command for a range this node should lead.
    pub(super) fn handle_command(&mut self, command: RangeCommand) {
        let RangeCommand { from, meta_term, op, range, kind, expected } = command;
        let reply = |node: &mut Self, result| node.command_done(from, op, meta_term, result);
        let Some(hosted) = self.ranges.get_mut(&range) else {
            return reply(self, CommandResult::NotLeader(None));
        };
        if hosted.raft.role() != Role::Leader {
            let hint = hosted.raft.leader();
            return reply(self, CommandResult::NotLeader(hint));
        }
        self.touched.insert(range);
        let change = match kind {
            CommandKind::TransferLeader(target) => {
                let result = match hosted.raft.transfer_leadership(self.now, target) {
                    Ok(()) => CommandResult::TransferStarted,
                    Err(error) => CommandResult::Failed(error.to_string()),
                };
                return reply(self, result);
            }
            CommandKind::AddLearner(node) => MembershipChange::AddLearner(node),
            CommandKind::Promote(node) => MembershipChange::Promote(node),
            CommandKind::Remove(node) => MembershipChange::Remove(node),
        };
        let committed = hosted.raft.committed_membership();
        if already_done(&change, committed) && !committed.is_joint() {
            let report = self.report(range).expect("this node leads the range");
            return reply(self, CommandResult::Applied(report));
        }
        let (voters, learners) = &expected;
        if committed.is_joint()
            || !committed.voters.keys().eq(voters.iter())
            || !committed.learners.iter().eq(learners.iter())
        {
            let why = format!(
                "the range's configuration (voters {:?}, learners {:?}) is not the one planned against",
                committed.voters.keys().collect::<Vec<_>>(),
                committed.learners
            );
            return reply(self, CommandResult::Failed(why));
        }
        let wait = wait_of(op, from, meta_term, range);
        let Some(request) = self.request_id(range, Waiter::Command(wait)) else {
            return reply(self, CommandResult::Failed("too many requests waiting".into()));
        };
        self.try_change(request, wait_of(op, from, meta_term, range), change, self.now);
    }

    /// Proposes `change` for the command waiting under `request`; a
    /// change refused for a reason time may cure (a learner that has not
    /// caught up, a majority not heard from since the range woke from
    /// quiescence) is parked and tried again (until
    /// `operation_timeout_ms` after `since`, when the meta leader has given
    /// up on it anyway).
    fn try_change(
        &mut self,
        request: crate::types::RequestId,
        wait: CommandWait,
        change: MembershipChange,
        since: crate::types::Time,
    ) {
        let Some(hosted) = self.ranges.get_mut(&wait.range) else { return };
        match hosted.raft.change_membership(self.now, request, change.clone()) {
            Ok(()) => {}
            // A learner still catching up, or a leader that has not heard
            // from a majority recently: typically one just woken from
            // quiescence, whose first heartbeats' answers are on their way.
            Err(ChangeError::NotCaughtUp(_) | ChangeError::WouldLoseQuorum)
                if self.now.as_millis() < since.as_millis() + self.config.operation_timeout_ms
                    && self.parked.len() < MAX_PARKED =>
            {
                self.parked.push(Parked { request, wait, change, since });
            }
            Err(error) => {
                self.waiters.remove(&request);
                self.command_done(wait.meta_leader, wait.op, wait.meta_term, CommandResult::Failed(error.to_string()));
            }
        }
    }

    /// Tries the parked changes of the ranges touched in this round again.
    pub(super) fn retry_parked(&mut self, touched: &std::collections::BTreeSet<RangeId>) {
        if self.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.parked);
        for item in parked {
            if touched.contains(&item.wait.range) {
                self.touched.insert(item.wait.range);
                self.try_change(item.request, item.wait, item.change, item.since);
            } else {
                self.parked.push(item);
            }
        }
    }

    pub(super) fn command_done(&mut self, to: NodeId, op: u64, meta_term: Term, result: CommandResult) {
        let from = self.config.id;
        if to == from {
            self.handle_command_done(from, op, meta_term, result);
        } else {
            self.send(to, ClusterMessage::CommandDone { from, op, meta_term, result });
        }
    }

    /// The range answered a membership change this node proposed for a
    /// meta leader.
    pub(super) fn command_answered(&mut self, wait: CommandWait, result: ClientResult) {
        match result {
            ClientResult::Ok(_) => self.settling.push(wait),
            ClientResult::NotLeader { leader_hint } => self.command_done(
                wait.meta_leader,
                wait.op,
                wait.meta_term,
                CommandResult::NotLeader(Some(leader_hint)),
            ),
            other => {
                let result = CommandResult::Failed(format!("{other:?}"));
                self.command_done(wait.meta_leader, wait.op, wait.meta_term, result)
            }
        }
    }

    /// Answers commands whose change committed once the configuration has
    /// left its joint phase.
    pub(super) fn check_settling(&mut self) {
        let waits = std::mem::take(&mut self.settling);
        for wait in waits {
            let Some(hosted) = self.ranges.get(&wait.range) else {
                self.command_done(wait.meta_leader, wait.op, wait.meta_term, CommandResult::NotLeader(None));
                continue;
            };
            if hosted.raft.role() != Role::Leader {
                let hint = hosted.raft.leader();
                self.command_done(wait.meta_leader, wait.op, wait.meta_term, CommandResult::NotLeader(hint));
            } else if hosted.raft.committed_membership().is_joint() {
                self.settling.push(wait);
            } else {
                let report = self.report(wait.range).expect("this node leads the range");
                self.command_done(wait.meta_leader, wait.op, wait.meta_term, CommandResult::Applied(report));
            }
        }
    }
}

fn wait_of(op: u64, meta_leader: NodeId, meta_term: Term, range: RangeId) -> CommandWait {
    CommandWait { op, meta_leader, meta_term, range }
}

/// Most membership changes parked until they can be proposed.
const MAX_PARKED: usize = 4096;

/// A membership change waiting until it can be proposed.
#[derive(Clone, Debug)]
pub(super) struct Parked {
    request: crate::types::RequestId,
    wait: CommandWait,
    change: MembershipChange,
    since: crate::types::Time,
}

/// Whether `membership` already reflects `change` (a repeated command).
fn already_done(change: &MembershipChange, membership: &Membership) -> bool {
    match *change {
        MembershipChange::AddLearner(node) => membership.members().contains(&node),
        MembershipChange::Promote(node) => membership.is_voter(node),
        MembershipChange::Remove(node) => !membership.members().contains(&node),
        MembershipChange::Replace { add, remove } => membership.is_voter(add) && !membership.is_voter(remove),
        MembershipChange::RenewDisk(_) => false,
    }
}
