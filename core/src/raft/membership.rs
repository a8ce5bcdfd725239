//! Cluster membership: who votes, who only learns, and joint consensus.
//!
//! A configuration takes effect on a node as soon as its entry is in the
//! node's log (appended, not committed), and is reverted if that entry is
//! truncated (Raft thesis §4.1). Changes of the voter set go through a joint
//! configuration, in which every decision (election, commit) needs a majority
//! of the old voters *and* a majority of the new ones (thesis §4.3); the leader
//! leaves the joint configuration by itself once it is committed.
//!
//! Each voter is recorded with the [`DiskId`] of the disk it voted and
//! acknowledged from. A node whose disk was lost restarts with a new disk id;
//! it no longer matches the configuration, so it neither votes nor counts
//! toward a quorum until a membership change records its new disk.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Most members (voters, outgoing voters and learners together) in one
/// configuration. Bounds the work of every quorum computation and the size of
/// a configuration entry.
pub const MAX_MEMBERS: usize = 64;

/// Identifies one incarnation of a node's disk. The members of a bootstrapped
/// cluster start on [`DiskId::BOOTSTRAP`]; a node that lost its disk must
/// rejoin with a fresh, never reused id (see [`RaftNode::join`](super::RaftNode::join)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DiskId(pub u64);

impl DiskId {
    /// The disk every member of the initial configuration starts with.
    pub const BOOTSTRAP: DiskId = DiskId(0);
}

impl fmt::Display for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disk-{:x}", self.0)
    }
}

/// One configuration of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The (incoming) voters and the disk each votes from.
    pub voters: BTreeMap<NodeId, DiskId>,
    /// During a joint configuration, the outgoing voters; empty otherwise.
    pub outgoing: BTreeMap<NodeId, DiskId>,
    /// Members that receive the log but never vote or count toward a quorum.
    pub learners: BTreeSet<NodeId>,
}

/// How an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteTally {
    /// A majority of every voter set granted.
    Won,
    /// A majority of some voter set refused: this election cannot be won.
    Lost,
    /// Neither yet.
    Pending,
}

/// Why a membership could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No (incoming) voters: nothing could ever be elected or committed.
    /// Removing the last voter leads here.
    #[error("the configuration has no voters")]
    NoVoters,
    /// A node is listed as a learner and as a voter in either half.
    #[error("node {0} is both a voter and a learner")]
    VoterAndLearner(NodeId),
    /// More than [`MAX_MEMBERS`] distinct members.
    #[error("the configuration has {count} members, more than the limit {MAX_MEMBERS}")]
    TooManyMembers {
        /// Distinct members (voters of both halves and learners).
        count: usize,
    },
}

impl Membership {
    /// The configuration a cluster is bootstrapped with.
    pub fn bootstrap(voters: &[NodeId]) -> Membership {
        Membership {
            voters: voters.iter().map(|voter| (*voter, DiskId::BOOTSTRAP)).collect(),
            outgoing: BTreeMap::new(),
            learners: BTreeSet::new(),
        }
    }

    /// Is this a joint configuration (old and new voters both deciding)?
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Is `node`, on `disk`, a voter in either half of the configuration?
    pub fn is_voter_on(&self, node: NodeId, disk: DiskId) -> bool {
        self.voters.get(&node) == Some(&disk) || self.outgoing.get(&node) == Some(&disk)
    }

    /// Is `node` a voter (on whatever disk) in either half?
    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.contains_key(&node) || self.outgoing.contains_key(&node)
    }

    /// Is `node` a learner?
    pub fn is_learner(&self, node: NodeId) -> bool {
        self.learners.contains(&node)
    }

    /// Every member the leader replicates to, in id order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.voters.keys().chain(self.outgoing.keys()).chain(self.learners.iter()).copied().collect()
    }

    /// Checks the shape of a configuration (peer-supplied or requested).
    pub fn validate(&self) -> Result<(), MembershipError> {
        if self.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if let Some(node) = self.learners.iter().find(|node| self.is_voter(**node)) {
            return Err(MembershipError::VoterAndLearner(*node));
        }
        let count = self.members().len();
        if count > MAX_MEMBERS {
            return Err(MembershipError::TooManyMembers { count });
        }
        Ok(())
    }

    /// The highest value a quorum has reached: for each voter set, the value
    /// that a majority of it has at least, then the smaller of the two sets'
    /// values. `value(node, disk)` is what that voter has reached; a voter
    /// whose disk does not match must report 0.
    pub fn quorum_value(&self, value: impl Fn(NodeId, DiskId) -> u64) -> u64 {
        let majority_value = |set: &BTreeMap<NodeId, DiskId>| -> u64 {
            let mut values: Vec<u64> = set.iter().map(|(node, disk)| value(*node, *disk)).collect();
            values.sort_unstable_by(|a, b| b.cmp(a));
            values[set.len() / 2]
        };
        assert!(!self.voters.is_empty(), "invariant: an active configuration has voters");
        let incoming = majority_value(&self.voters);
        if self.outgoing.is_empty() {
            incoming
        } else {
            incoming.min(majority_value(&self.outgoing))
        }
    }

    /// Does the set of `nodes` hold a majority of every voter set?
    pub fn is_quorum(&self, contains: impl Fn(NodeId, DiskId) -> bool) -> bool {
        self.quorum_value(|node, disk| u64::from(contains(node, disk))) == 1
    }

    /// Tallies an election: `votes` maps each answering (node, disk) to its
    /// answer. Each half of a joint configuration counts an answer only from
    /// the disk *that half* records for the node: a voter whose disk was
    /// renewed by a joint configuration has a say in the incoming half with
    /// its new disk and in the outgoing half with its old one, never both
    /// with one disk (its new disk may not have seen the votes its old disk
    /// cast in this term).
    pub fn tally(&self, votes: &BTreeMap<(NodeId, DiskId), bool>) -> VoteTally {
        let count = |set: &BTreeMap<NodeId, DiskId>, wanted: bool| {
            set.iter().filter(|(node, disk)| votes.get(&(**node, **disk)) == Some(&wanted)).count()
        };
        let majority = |set: &BTreeMap<NodeId, DiskId>| set.len() / 2 + 1;
        let sets: Vec<&BTreeMap<NodeId, DiskId>> =
            if self.outgoing.is_empty() { vec![&self.voters] } else { vec![&self.voters, &self.outgoing] };
        if sets.iter().all(|set| count(set, true) >= majority(set)) {
            VoteTally::Won
        } else if sets.iter().any(|set| count(set, false) >= majority(set)) {
            VoteTally::Lost
        } else {
            VoteTally::Pending
        }
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let voters = |set: &BTreeMap<NodeId, DiskId>| {
            let names: Vec<String> = set.iter().map(|(node, disk)| voter_name(*node, *disk)).collect();
            names.join(",")
        };
        write!(f, "voters [{}]", voters(&self.voters))?;
        if self.is_joint() {
            write!(f, " joint with [{}]", voters(&self.outgoing))?;
        }
        if !self.learners.is_empty() {
            let learners: Vec<String> = self.learners.iter().map(|node| node.to_string()).collect();
            write!(f, " learners [{}]", learners.join(","))?;
        }
        Ok(())
    }
}

/// How traces and errors name a voter: `n2`, or `n2@disk-42ad` on a disk
/// other than the bootstrap one.
pub fn voter_name(node: NodeId, disk: DiskId) -> String {
    if disk == DiskId::BOOTSTRAP {
        node.to_string()
    } else {
        format!("{node}@{disk}")
    }
}

/// A membership change a client asks the leader for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Start replicating to `node` as a learner.
    AddLearner(NodeId),
    /// Make a caught-up learner a voter (through a joint configuration).
    Promote(NodeId),
    /// Remove a voter or learner (a voter through a joint configuration).
    Remove(NodeId),
    /// Atomically replace voter `remove` by learner `add` in one joint step.
    Replace {
        /// A current voter.
        remove: NodeId,
        /// A learner that holds everything committed, on a disk the leader
        /// knows; it votes from that disk.
        add: NodeId,
    },
    /// Record the current disk of `node`, a voter that rejoined after losing
    /// its disk and has caught up (through a joint configuration).
    RenewDisk(NodeId),
}

impl Membership {
    /// The configuration `change` leads to from this one (itself not joint),
    /// proposed by the leader `leader` voting from disk `leader_disk`. A
    /// change of the voter set still has to go through a joint configuration
    /// (the caller sets `outgoing`). `ready` tells the disk a member holds
    /// everything committed on, or why it is not ready to vote.
    ///
    /// Pure: the leader's checks that need time or progress (a quorum of the
    /// new voters caught up and heard from) come after.
    pub fn apply_change(
        &self,
        change: MembershipChange,
        (leader, leader_disk): (NodeId, DiskId),
        ready: impl Fn(NodeId) -> Result<DiskId, ChangeError>,
    ) -> Result<Membership, ChangeError> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(node) => {
                if self.members().contains(&node) || node == leader {
                    return Err(ChangeError::AlreadyMember(node));
                }
                next.learners.insert(node);
            }
            MembershipChange::Promote(node) => {
                if !self.is_learner(node) {
                    return Err(ChangeError::NotLearner(node));
                }
                let disk = ready(node)?;
                next.learners.remove(&node);
                next.voters.insert(node, disk);
            }
            MembershipChange::Remove(node) => {
                let was_member = next.learners.remove(&node) || next.voters.remove(&node).is_some();
                if !was_member {
                    return Err(ChangeError::NotMember(node));
                }
            }
            MembershipChange::Replace { remove, add } => {
                if !self.voters.contains_key(&remove) {
                    return Err(ChangeError::NotVoter(remove));
                }
                if !self.is_learner(add) {
                    return Err(ChangeError::NotLearner(add));
                }
                let disk = ready(add)?;
                next.voters.remove(&remove);
                next.learners.remove(&add);
                next.voters.insert(add, disk);
            }
            MembershipChange::RenewDisk(node) => {
                let Some(recorded) = self.voters.get(&node).copied() else {
                    return Err(ChangeError::NotVoter(node));
                };
                let disk = if node == leader { leader_disk } else { ready(node)? };
                if disk == recorded {
                    return Err(ChangeError::DiskCurrent(node));
                }
                next.voters.insert(node, disk);
            }
        }
        next.validate()?;
        Ok(next)
    }
}

/// Why the leader refused a membership change. Nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Only the leader changes the configuration; ask the leader
    /// ([`RaftNode::leader`](super::RaftNode::leader)).
    #[error("this node is not the leader")]
    NotLeader,
    /// The previous change (a joint configuration, or an entry not yet
    /// committed) is not finished. Retry once it has committed, including
    /// the leader's step out of the joint configuration.
    #[error("a membership change is already in flight (only one at a time)")]
    ChangeInFlight,
    /// [`MembershipChange::AddLearner`] of a node that is already a member
    /// (or is the leader).
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// [`MembershipChange::Promote`], or the `add` of a
    /// [`MembershipChange::Replace`], names a node that is not a learner: add
    /// it as a learner first.
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    /// [`MembershipChange::Remove`] of a node in no role, or a node the
    /// leader tracks no progress for.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// The `remove` of a [`MembershipChange::Replace`], or a
    /// [`MembershipChange::RenewDisk`], names a node that is not a voter.
    #[error("node {0} is not a voter")]
    NotVoter(NodeId),
    /// The node that would vote has not yet answered the leader from a known
    /// disk, or does not hold every committed entry. Retry once it has
    /// caught up.
    #[error("node {0} has not caught up with the leader's commit index (or the leader does not know its disk yet)")]
    NotCaughtUp(NodeId),
    /// [`MembershipChange::RenewDisk`] of a voter whose recorded disk is
    /// already the one it answers from: nothing to renew.
    #[error("node {0} already votes from its current disk")]
    DiskCurrent(NodeId),
    /// The new voter set has no majority that is caught up on its recorded
    /// disk and heard from within an election timeout, so the change could
    /// never commit. Nothing was appended; heal the voters (or choose
    /// another change) and retry.
    #[error(
        "a majority of the new voters is not caught up on its recorded disk and recently heard from: the change \
         could not commit"
    )]
    WouldLoseQuorum,
    /// The configuration the change leads to is invalid (removing the last
    /// voter, or exceeding [`MAX_MEMBERS`]).
    #[error("the resulting configuration is invalid: {0}")]
    Invalid(#[from] MembershipError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u64]) -> Vec<NodeId> {
        list.iter().map(|id| NodeId(*id)).collect()
    }

    #[test]
    fn quorum_value_needs_both_halves_of_a_joint_configuration() {
        let mut membership = Membership::bootstrap(&ids(&[1, 2, 3]));
        membership.outgoing = membership.voters.clone();
        membership.voters = Membership::bootstrap(&ids(&[3, 4, 5])).voters;
        // 1, 2 and 3 at 10: the old majority has 10, the new only has node 3.
        let value = |node: NodeId, _| if node.0 <= 3 { 10 } else { 2 };
        assert_eq!(membership.quorum_value(value), 2);
        let value = |node: NodeId, _| if node.0 != 5 { 10 } else { 2 };
        assert_eq!(membership.quorum_value(value), 10);
    }

    #[test]
    fn a_voter_on_another_disk_does_not_count() {
        let membership = Membership::bootstrap(&ids(&[1, 2, 3]));
        let value = |node: NodeId, disk: DiskId| if node.0 == 1 || disk != DiskId::BOOTSTRAP { 0 } else { 7 };
        assert_eq!(membership.quorum_value(value), 7);
        assert!(!membership.is_voter_on(NodeId(2), DiskId(9)));
    }

    fn ballot(answers: &[(u64, u64, bool)]) -> BTreeMap<(NodeId, DiskId), bool> {
        answers.iter().map(|(node, disk, granted)| ((NodeId(*node), DiskId(*disk)), *granted)).collect()
    }

    #[test]
    fn tally_is_lost_when_either_half_refuses() {
        let mut membership = Membership::bootstrap(&ids(&[1, 2, 3]));
        membership.outgoing = Membership::bootstrap(&ids(&[1, 4, 5])).voters;
        let votes = ballot(&[(1, 0, true), (2, 0, true), (4, 0, false), (5, 0, false)]);
        assert_eq!(membership.tally(&votes), VoteTally::Lost);
        let votes = ballot(&[(1, 0, true), (2, 0, true), (4, 0, true)]);
        assert_eq!(membership.tally(&votes), VoteTally::Won);
    }

    /// Seed 5591 (3 nodes): a joint configuration renewing n2's disk. n2's
    /// new disk counts in the incoming half only; the outgoing half records
    /// the old disk, which may have voted for another candidate this term.
    #[test]
    fn a_renewed_disk_counts_only_in_the_half_that_records_it() {
        let mut membership = Membership::bootstrap(&ids(&[1, 2, 3]));
        membership.outgoing = membership.voters.clone();
        membership.voters.insert(NodeId(2), DiskId(7));
        // n3 votes for itself; n2 answers from its new disk; n1 refuses.
        let votes = ballot(&[(3, 0, true), (2, 7, true), (1, 0, false)]);
        assert_eq!(membership.tally(&votes), VoteTally::Pending, "the outgoing half has only n3");
        let votes = ballot(&[(3, 0, true), (2, 7, true), (1, 0, true)]);
        assert_eq!(membership.tally(&votes), VoteTally::Won);
        // A vote from a disk neither half records counts nowhere.
        let votes = ballot(&[(3, 0, true), (2, 9, true), (1, 9, true)]);
        assert_eq!(membership.tally(&votes), VoteTally::Pending);
    }

    #[test]
    fn validation_names_the_problem() {
        let mut membership = Membership::bootstrap(&ids(&[1]));
        membership.learners.insert(NodeId(1));
        assert_eq!(membership.validate(), Err(MembershipError::VoterAndLearner(NodeId(1))));
        assert_eq!(Membership::default().validate(), Err(MembershipError::NoVoters));
    }

    const LEADER: (NodeId, DiskId) = (NodeId(1), DiskId::BOOTSTRAP);

    fn caught_up_on(disk: u64) -> impl Fn(NodeId) -> Result<DiskId, ChangeError> {
        move |_| Ok(DiskId(disk))
    }

    #[test]
    fn apply_change_adds_promotes_replaces_and_removes() {
        let start = Membership::bootstrap(&ids(&[1, 2, 3]));
        let added = start.apply_change(MembershipChange::AddLearner(NodeId(4)), LEADER, caught_up_on(9)).unwrap();
        assert!(added.is_learner(NodeId(4)));
        assert_eq!(added.voters, start.voters, "a learner changes no voter");
        let promoted = added.apply_change(MembershipChange::Promote(NodeId(4)), LEADER, caught_up_on(9)).unwrap();
        assert!(promoted.is_voter_on(NodeId(4), DiskId(9)), "a voter on the disk it caught up on");
        let change = MembershipChange::Replace { remove: NodeId(2), add: NodeId(4) };
        let replaced = added.apply_change(change, LEADER, caught_up_on(9)).unwrap();
        assert!(!replaced.is_voter(NodeId(2)) && replaced.is_voter(NodeId(4)));
        let removed = start.apply_change(MembershipChange::Remove(NodeId(3)), LEADER, caught_up_on(9)).unwrap();
        assert_eq!(removed.members().len(), 2);
        assert!(!removed.is_joint(), "the caller makes it joint");
    }

    #[test]
    fn apply_change_refuses_what_cannot_be_done() {
        let start = Membership::bootstrap(&ids(&[1, 2, 3]));
        let refuse = |change, ready: &dyn Fn(NodeId) -> Result<DiskId, ChangeError>| {
            start.apply_change(change, LEADER, ready).unwrap_err()
        };
        let any = |_| Ok(DiskId(7));
        assert_eq!(refuse(MembershipChange::AddLearner(NodeId(2)), &any), ChangeError::AlreadyMember(NodeId(2)));
        assert_eq!(refuse(MembershipChange::Promote(NodeId(2)), &any), ChangeError::NotLearner(NodeId(2)));
        assert_eq!(refuse(MembershipChange::Remove(NodeId(9)), &any), ChangeError::NotMember(NodeId(9)));
        assert_eq!(refuse(MembershipChange::RenewDisk(NodeId(1)), &any), ChangeError::DiskCurrent(NodeId(1)));
        let behind = |node| Err(ChangeError::NotCaughtUp(node));
        assert_eq!(refuse(MembershipChange::RenewDisk(NodeId(2)), &behind), ChangeError::NotCaughtUp(NodeId(2)));
        let single = Membership::bootstrap(&ids(&[1]));
        let last_voter = single.apply_change(MembershipChange::Remove(NodeId(1)), LEADER, any);
        assert!(matches!(last_voter, Err(ChangeError::Invalid(_))), "{last_voter:?}");
    }
}
