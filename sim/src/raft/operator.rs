//! The simulated operator: membership churn, disk renewal and leadership
//! transfers, asked of the leader.

use super::describe::RaftRecord;
use super::world::{node_id, RaftWorld, RequestOwner, SimEvent};
use crate::faults::{FaultAction, NodeRef, Recurrence};
use chorus_core::raft::{ChangeError, DiskId, Membership, MembershipChange, TransferError};
use chorus_core::{NodeId, RequestId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

impl RaftWorld {
    /// The operator: one membership change or leadership transfer, chosen
    /// from what the leader knows. Nodes that lost their disk get their new
    /// disk recorded first; after healing that is all the operator does.
    pub(super) fn churn(&mut self) {
        if let Some(interval_ms) = self.profile.churn_interval_ms {
            let delay = Recurrence::draw(&mut self.engine.rng, interval_ms);
            self.engine.schedule(delay, SimEvent::Churn);
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let raft = self.nodes[leader].raft.as_ref().expect("leaders run");
        let membership = raft.membership().clone();
        self.check_mistakes_refused(&membership, node_id(leader), self.nodes[leader].disk_id);
        let renew = self.voter_to_renew(&membership);
        let initial = self.options.nodes;
        let all: Vec<NodeId> = (0..self.nodes.len()).map(node_id).collect();
        let outsiders: Vec<NodeId> = all.iter().copied().filter(|id| !membership.members().contains(id)).collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let voters: Vec<NodeId> = membership.voters.keys().copied().collect();
        let pick = |rng: &mut ChaCha8Rng, list: &[NodeId]| list[rng.random_range(0..list.len())];
        // Removing or replacing the leader itself is the hard case (it must
        // hand over through a configuration it is not in): aim at it often.
        let leader_id = node_id(leader);
        let pick_voter = |rng: &mut ChaCha8Rng, list: &[NodeId]| {
            if list.contains(&leader_id) && rng.random_bool(0.4) {
                leader_id
            } else {
                pick(rng, list)
            }
        };
        let change = if let Some(node) = renew {
            // A voter whose disk is lost and not yet back stays as it is.
            (!self.nodes[node.0 as usize - 1].wiped).then_some(MembershipChange::RenewDisk(node))
        } else if self.healed_at.is_some() {
            None
        } else {
            match self.engine.rng.random_range(0..6) {
                0 if !outsiders.is_empty() => {
                    Some(MembershipChange::AddLearner(pick(&mut self.engine.rng, &outsiders)))
                }
                1 if !learners.is_empty() => Some(MembershipChange::Promote(pick(&mut self.engine.rng, &learners))),
                // Keep the voter count within one of the initial size (and
                // never below one).
                2 if voters.len() + 1 > initial.max(2) => {
                    Some(MembershipChange::Remove(pick_voter(&mut self.engine.rng, &voters)))
                }
                3 if !learners.is_empty() => Some(MembershipChange::Replace {
                    remove: pick_voter(&mut self.engine.rng, &voters),
                    add: pick(&mut self.engine.rng, &learners),
                }),
                4 if !learners.is_empty() => Some(MembershipChange::Remove(pick(&mut self.engine.rng, &learners))),
                _ => {
                    let target = pick(&mut self.engine.rng, &voters);
                    if self.strike {
                        self.note_applied(&FaultAction::Transfer { to: NodeRef::Index(target.0 as usize - 1) });
                        self.operator_transfer(leader, target, target.0);
                    }
                    None
                }
            }
        };
        // Without `strike` the choice is drawn but not made (a seed-profile
        // scenario's events stand for it); renewing disks after healing is
        // repair, not a fault, and always happens.
        if let Some(change) = change.filter(|_| self.strike || self.healed_at.is_some()) {
            self.note_applied(&FaultAction::Change(change.clone()));
            self.operator_change(change);
        }
    }

    /// A voter whose recorded disk is not the one it runs on (or that lost
    /// its disk): the operator renews it first (once its new disk has caught
    /// up), and changes nothing else meanwhile.
    pub(super) fn voter_to_renew(&self, membership: &Membership) -> Option<NodeId> {
        let stale = membership.voters.iter().find(|(id, disk)| {
            let sim_node = &self.nodes[id.0 as usize - 1];
            sim_node.disk_id != **disk || sim_node.wiped
        });
        stale.map(|(id, _)| *id)
    }

    /// Asks `leader` to hand leadership to `target`. `target_word` stands
    /// for the target in the trace (a node id from churn, a node index from
    /// a scenario).
    pub(super) fn operator_transfer(&mut self, leader: usize, target: NodeId, target_word: u64) {
        let local = self.nodes[leader].slot.clock.local(self.engine.now);
        let raft = self.nodes[leader].raft.as_mut().expect("leaders run");
        // What the leader must answer (`operator:`): only a voter other
        // than itself can take over.
        let expected = if target == raft.id() {
            Err(TransferError::ToSelf)
        } else if !raft.membership().voters.contains_key(&target) {
            Err(TransferError::NotVoter(target))
        } else {
            Ok(())
        };
        let result = raft.transfer_leadership(local, target);
        if result != expected {
            self.checker.on_operator_answer(&format!(
                "leader {} answered a transfer to {target} with {result:?}, expected {expected:?}",
                node_id(leader)
            ));
        }
        self.engine.record(RaftRecord::OperatorTransfer, &[leader as u64, target_word], || {
            format!("operator: transfer leadership from {} to {target}: {result:?}", node_id(leader))
        });
        self.drain(leader);
    }

    /// Asks the leader for `change`; false if there is no leader or it
    /// refused.
    pub(super) fn operator_change(&mut self, change: MembershipChange) -> bool {
        self.ask_change(change).is_some_and(|result| result.is_ok())
    }

    /// Asks the leader for `change`: its answer, or `None` without a leader.
    pub(super) fn ask_change(&mut self, change: MembershipChange) -> Option<Result<(), ChangeError>> {
        let leader = self.leader()?;
        let sim_node = &mut self.nodes[leader];
        sim_node.next_request += 1;
        let request = sim_node.next_request;
        sim_node.requests.insert(request, RequestOwner::Operator);
        let local = sim_node.slot.clock.local(self.engine.now);
        let raft = sim_node.raft.as_mut().expect("leaders run");
        // The one-change-at-a-time promise (`operator:`): a change is
        // refused as in flight exactly while the latest configuration is
        // joint or not yet committed.
        let in_flight = raft.membership().is_joint() || raft.membership_index() > raft.commit_index();
        let result = raft.change_membership(local, RequestId(request), change.clone());
        let broken = match &result {
            Err(ChangeError::ChangeInFlight) if !in_flight => {
                Some("refused it as in flight, its latest configuration being committed")
            }
            Ok(()) if in_flight => Some("accepted it while its latest configuration was not committed"),
            _ => None,
        };
        if let Some(broken) = broken {
            self.checker.on_operator_answer(&format!("leader {} {broken}: {change:?}", node_id(leader)));
        }
        let sim_node = &mut self.nodes[leader];
        if result.is_err() {
            sim_node.requests.remove(&request);
        }
        self.engine.record(RaftRecord::OperatorAsked, &[leader as u64, request], || {
            format!("operator asks {}: {change:?}: {result:?}", node_id(leader))
        });
        self.drain(leader);
        Some(result)
    }

    /// The operator's mistakes must be refused (`operator:`): against the
    /// leader's configuration as the faults left it, promoting a voter,
    /// adding a member again, removing or replacing a node that is not a
    /// voter, swapping in a voter, and renewing a disk that is current each
    /// get their own error from `Membership::apply_change`. Checked on a
    /// copy: the run does not change.
    fn check_mistakes_refused(&mut self, membership: &Membership, leader: NodeId, leader_disk: DiskId) {
        if membership.is_joint() {
            return;
        }
        let voters: Vec<NodeId> = membership.voters.keys().copied().collect();
        let outsider = NodeId(self.nodes.len() as u64 + 1);
        let learner = membership.learners.iter().next().copied();
        let (first, last) = (voters[0], voters[voters.len() - 1]);
        let mut mistakes = vec![
            (MembershipChange::Promote(first), ChangeError::NotLearner(first)),
            (MembershipChange::AddLearner(last), ChangeError::AlreadyMember(last)),
            (MembershipChange::Remove(outsider), ChangeError::NotMember(outsider)),
            (MembershipChange::Replace { remove: outsider, add: last }, ChangeError::NotVoter(outsider)),
            (MembershipChange::Replace { remove: first, add: last }, ChangeError::NotLearner(last)),
        ];
        if let Some(&other) = voters.iter().find(|&&voter| voter != leader) {
            mistakes.push((MembershipChange::RenewDisk(other), ChangeError::DiskCurrent(other)));
        }
        if let Some(learner) = learner {
            mistakes.push((MembershipChange::RenewDisk(learner), ChangeError::NotVoter(learner)));
        }
        // Every member is ready on the disk the configuration records.
        let ready = |node: NodeId| membership.voters.get(&node).copied().ok_or(ChangeError::NotCaughtUp(node));
        for (change, expected) in mistakes {
            let got = membership.apply_change(change.clone(), (leader, leader_disk), ready);
            if got.as_ref().err() != Some(&expected) {
                self.checker.on_operator_answer(&format!(
                    "the configuration [{membership}] took {change:?}: expected {expected:?}, got {:?}",
                    got.map(|next| next.to_string())
                ));
            }
        }
    }
}
