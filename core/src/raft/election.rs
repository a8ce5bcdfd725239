//! Elections: pre-votes and votes, role changes, who may campaign, and the
//! check-quorum and lease rules that keep a live leader from being deposed.

use super::bug::Bug;
use super::membership::{DiskId, Membership, VoteTally};
use super::message::{Entry, MessageBody, Payload};
use super::node::{RaftNode, Role};
use super::output::{ClientResult, DropReason, Event};
use super::progress::Progress;
use super::read::ReadOrigin;
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, NodeId, Term, Time};
use rand::Rng;

impl<S: StateMachine> RaftNode<S> {
    /// An append or heartbeat in our term: its sender is the leader.
    pub(super) fn accept_leader(&mut self, now: Time, from: NodeId) -> bool {
        if self.role == Role::Leader {
            self.violation(format!("{} also claims leadership of term {}", from, self.term));
            return false;
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(now, self.term, Some(from));
        }
        self.last_leader_contact = Some(now);
        self.reset_election_deadline(now);
        true
    }

    pub(super) fn handle_vote_request(
        &mut self,
        now: Time,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        let log_ok = self.config.bug(Bug::VoteWithoutLogCheck) || self.log.is_up_to_date(last_log_index, last_log_term);
        // Any node answers, even one that does not know itself a voter: it
        // may have been promoted in a configuration it has not seen yet (and
        // could otherwise deadlock the election that would tell it). The
        // candidate counts the vote only from a voter on the disk its
        // configuration records, so a learner, a removed member or a node
        // that lost its disk never decides an election.
        let granted = if pre_vote {
            term > self.term && log_ok
        } else {
            let free = self.voted_for == Some(from) || (self.voted_for.is_none() && self.leader.is_none());
            free && log_ok
        };
        if granted && !pre_vote {
            self.voted_for = Some(from);
            self.durability.hard_state_changed();
            self.reset_election_deadline(now);
        }
        let reply_term = if pre_vote && granted { term } else { self.term };
        let body = MessageBody::RequestVoteResponse { pre_vote, granted };
        let durable = !self.config.bug(Bug::ReplyBeforePersist);
        self.send_with_term(from, reply_term, body, durable);
    }

    pub(super) fn handle_vote_response(
        &mut self,
        now: Time,
        from: (NodeId, DiskId),
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) {
        let expected = match (self.role, pre_vote) {
            (Role::PreCandidate, true) => granted && term == self.term.next() || !granted && term == self.term,
            (Role::Candidate, false) => term == self.term,
            _ => false,
        };
        if !expected {
            return;
        }
        self.votes.insert(from, granted);
        if self.config.bug(Bug::JointVoteCountsTwice) && self.membership.is_voter_on(from.0, from.1) {
            // The old rule: a voter on this disk in either half counts in both.
            let recorded = self.membership.voters.get(&from.0).into_iter().chain(self.membership.outgoing.get(&from.0));
            let recorded: Vec<DiskId> = recorded.copied().collect();
            for disk in recorded {
                self.votes.insert((from.0, disk), granted);
            }
        }
        match self.membership.tally(&self.votes) {
            VoteTally::Won if pre_vote => self.become_candidate(now, false),
            VoteTally::Won => self.become_leader(now),
            VoteTally::Lost => self.become_follower(now, self.term, None),
            VoteTally::Pending => {}
        }
    }

    /// The value a quorum of voters has reached (see
    /// [`Membership::quorum_value`]): `own` for this node, `value` of its
    /// progress for a peer. Only answers from the disk the configuration
    /// records count.
    pub(super) fn quorum_value(&self, own: u64, value: impl Fn(&Progress) -> u64) -> u64 {
        self.membership.quorum_value(|node, disk| {
            if node == self.id() {
                if disk == self.disk {
                    own
                } else {
                    0
                }
            } else {
                self.progress.get(&node).filter(|progress| progress.disk == Some(disk)).map_or(0, &value)
            }
        })
    }

    pub(super) fn check_quorum(&mut self, now: Time) {
        self.check_quorum_deadline = now.add_millis(self.config.election_timeout_ms);
        let active = self.quorum_value(1, |progress| u64::from(progress.recently_active)) == 1;
        for progress in self.progress.values_mut() {
            progress.recently_active = false;
        }
        if !active {
            self.become_follower(now, self.term, None);
        }
    }

    pub(super) fn become_follower(&mut self, now: Time, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.durability.hard_state_changed();
        }
        let changed = self.role != Role::Follower;
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
        self.transfer = None;
        self.drop_pending_requests();
        self.reset_election_deadline(now);
        if changed || self.durability.hard_state_dirty() {
            self.event(Event::RoleChanged { role: Role::Follower, term: self.term });
        }
    }

    pub(super) fn become_pre_candidate(&mut self, now: Time) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert((self.id(), self.presented_disk()), true);
        self.reset_election_deadline(now);
        self.event(Event::RoleChanged { role: Role::PreCandidate, term: self.term });
        if self.membership.tally(&self.votes) == VoteTally::Won {
            self.become_candidate(now, false);
            return;
        }
        self.request_votes(true, false);
    }

    /// `transfer`: campaigning because the leader sent `TimeoutNow`.
    pub(super) fn become_candidate(&mut self, now: Time, transfer: bool) {
        self.term = self.term.next();
        self.voted_for = Some(self.id());
        self.durability.hard_state_changed();
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert((self.id(), self.presented_disk()), true);
        self.reset_election_deadline(now);
        self.event(Event::RoleChanged { role: Role::Candidate, term: self.term });
        if self.membership.tally(&self.votes) == VoteTally::Won {
            self.become_leader(now);
            return;
        }
        self.request_votes(false, transfer);
    }

    pub(super) fn request_votes(&mut self, pre_vote: bool, transfer: bool) {
        let term = if pre_vote { self.term.next() } else { self.term };
        let body = MessageBody::RequestVote {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        let voters: Vec<NodeId> =
            self.membership.voters.keys().chain(self.membership.outgoing.keys()).copied().collect();
        for peer in voters {
            if peer != self.id() {
                self.send_with_term(peer, term, body.clone(), true);
            }
        }
    }

    pub(super) fn become_leader(&mut self, now: Time) {
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.votes.clear();
        self.transfer = None;
        debug_assert!(self.reads.is_empty(), "reads are dropped whenever a leader steps down");
        self.progress.clear();
        self.sync_progress();
        self.heartbeat_deadline = now.add_millis(self.config.heartbeat_interval_ms);
        self.check_quorum_deadline = now.add_millis(self.config.election_timeout_ms);
        self.idle_since = now;
        self.event(Event::RoleChanged { role: Role::Leader, term: self.term });
        // A no-op of our own term lets us commit what earlier leaders left.
        let index = self.log.last_index().next();
        self.append(Entry { index, term: self.term, payload: Payload::Noop });
        self.broadcast_append(true);
        self.maybe_commit();
    }

    pub(super) fn drop_pending_requests(&mut self) {
        for (_, request, _) in std::mem::take(&mut self.pending_requests) {
            self.respond(request, ClientResult::Dropped(DropReason::LeadershipLost));
        }
        for read in self.reads.clear() {
            match read.origin {
                ReadOrigin::Local { request, .. } => {
                    self.respond(request, ClientResult::Dropped(DropReason::LeadershipLost))
                }
                ReadOrigin::Remote { from, id } => self.send(from, MessageBody::ReadIndexResponse { id, index: None }),
            }
        }
    }

    /// Is this node a voter, on this disk, in the configuration in force?
    pub(super) fn self_votes(&self) -> bool {
        self.votes_in(&self.membership)
    }

    pub(super) fn votes_in(&self, membership: &Membership) -> bool {
        if self.config.bug(Bug::WipedNodeVotes) {
            return membership.is_voter(self.id());
        }
        membership.is_voter_on(self.id(), self.disk)
    }

    /// May this node start an election? Yes if it is a voter (on this disk)
    /// in the configuration in force, *or in any configuration not yet known
    /// to be superseded by a committed one*: from the configuration in force
    /// at its commit index to the latest it has appended (Raft thesis
    /// §4.2.2). A leader that appended the configuration removing itself and
    /// then lost contact is still needed: the others may hold only the joint
    /// configuration, whose outgoing half needs its vote, and it refuses
    /// them (its log is longer). If it never campaigned, nothing could be
    /// elected, ever (seeds 2011 and 102421 with 3 nodes).
    ///
    /// Campaigning never endangers safety: a candidate counts votes by its
    /// latest configuration only (its own vote only if it is a voter there),
    /// so whom it asks changes nothing about who can win. It only costs
    /// messages: a removed node that never learns its removal committed keeps
    /// asking for pre-votes, which up-to-date voters refuse (with
    /// check-quorum, voters with a live leader ignore them).
    pub fn may_campaign(&self) -> bool {
        if self.self_votes() {
            return true;
        }
        if self.config.bug(Bug::RemovedVoterNeverCampaigns) {
            return false;
        }
        self.votes_in(self.membership_at(self.commit))
            || self
                .config_entries
                .iter()
                .filter(|(at, _)| *at > self.commit)
                .any(|(_, membership)| self.votes_in(membership))
    }

    /// The disk this node speaks for in its messages: its own (the bug
    /// `wiped-node-votes` claims the one the configuration records).
    pub(super) fn presented_disk(&self) -> DiskId {
        match self.membership.voters.get(&self.id()) {
            Some(recorded) if self.config.bug(Bug::WipedNodeVotes) => *recorded,
            _ => self.disk,
        }
    }

    /// With check-quorum, a node that recently heard from a live leader (or is
    /// the leader) ignores vote requests: it cannot be disrupted.
    pub(super) fn in_lease(&self, now: Time) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        match self.role {
            Role::Leader => true,
            _ => match (self.leader, self.last_leader_contact) {
                (Some(_), Some(contact)) => now.micros_since(contact) < self.config.election_timeout_ms * 1000,
                _ => false,
            },
        }
    }

    pub(super) fn reset_election_deadline(&mut self, now: Time) {
        let base = self.config.election_timeout_ms * 1000;
        let jitter = self.rng.random_range(0..base);
        self.election_deadline = now.add_micros(base + jitter);
    }
}
