//! Quiescence: an idle group stops ticking (CockroachDB's quiesced ranges,
//! TiKV's hibernate regions). With thousands of groups per process, idle
//! heartbeats alone would otherwise keep a core busy.
//!
//! The protocol, enabled by [`Config::quiesce_after_ms`](super::Config::quiesce_after_ms):
//! - At a heartbeat deadline, a leader whose group has been idle that long,
//!   whose log is committed, applied and durable everywhere, and whose
//!   followers all answered within an election timeout, sends
//!   [`MessageBody::Quiesce`] instead of a heartbeat and stops its timers.
//! - A follower holding exactly the leader's log quiesces too: no election
//!   timer. One that does not answers [`MessageBody::Wake`].
//! - A quiesced node ignores a campaign from outside its configuration (a
//!   removed node that never learned of its removal), without waking, as a
//!   node in a leader's lease does.
//! - Anything else wakes a quiesced node: a proposal, a read, a membership change
//!   or a transfer; any other message (a leader's message wakes its follower
//!   quietly; anything else makes a follower ask its leader to resume with
//!   `Wake`); and [`RaftNode::wake`], which the driver calls when its failure
//!   detector declares the leader failed.
//! - A leader woken counts its followers as heard from at that moment (for
//!   the health check of membership changes; check-quorum still wants
//!   fresh answers). A follower woken by anything but the leader's failure
//!   counts the leader as heard from at that moment: it rejects a candidate's (pre-)votes for
//!   an election timeout, while its `Wake` brings the leader's heartbeats
//!   back. A restarted replica that campaigns therefore does not depose a
//!   quiesced leader.
//!
//! Safety does not depend on any of it: quiescence only stops timers and
//! withholds votes. Liveness does: a quiesced group whose leader dies waits
//! for [`RaftNode::wake`] or a request.

use super::message::MessageBody;
use super::node::{RaftNode, Role};
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, Time};

impl<S: StateMachine> RaftNode<S> {
    /// Whether this node is quiesced: it has no election or heartbeat timer
    /// running until something wakes it.
    pub fn is_quiesced(&self) -> bool {
        self.quiesced
    }

    /// Wakes a quiesced node. `leader_failed`: the driver's failure detector
    /// declared the leader this follower knows failed, so the follower may
    /// vote for a candidate at once and campaigns after an election timeout
    /// (randomised, so that the groups of one failed leader do not all
    /// campaign together). Otherwise the follower asks its leader to resume.
    /// A leader resumes its heartbeats at once. Does nothing to a node that is
    /// not quiesced.
    pub fn wake(&mut self, now: Time, leader_failed: bool) {
        self.now = now;
        self.wake_up(now, leader_failed);
        self.finish_input();
    }

    pub(super) fn wake_up(&mut self, now: Time, leader_failed: bool) {
        if !self.quiesced {
            return;
        }
        self.quiesced = false;
        if self.role == Role::Leader {
            self.idle_since = now;
            self.check_quorum_deadline = now.add_millis(self.config.election_timeout_ms);
            for progress in self.progress.values_mut() {
                // Check-quorum wants fresh answers; but a follower that
                // quiesced with us counts as heard from now, as we count for
                // it: without that, a membership change that woke the group
                // would be refused (`WouldLoseQuorum`), and a retry after
                // the group quiesced again would be too, forever.
                progress.recently_active = false;
                progress.last_heard = Some(now);
            }
            self.broadcast_heartbeat(now);
            return;
        }
        self.reset_election_deadline(now);
        if leader_failed {
            self.last_leader_contact = None;
        } else {
            self.last_leader_contact = Some(now);
            if let Some(leader) = self.leader {
                self.send(leader, MessageBody::Wake);
            }
        }
    }

    /// A client or operator request arrived: it wakes the group, and keeps
    /// a leader from quiescing for another `quiesce_after_ms`.
    pub(super) fn busy(&mut self, now: Time) {
        self.idle_since = now;
        self.wake_up(now, false);
    }

    /// Before a message is handled: a message from the leader of our term
    /// wakes a quiesced follower quietly (a `Quiesce` keeps it quiesced);
    /// anything else wakes it and asks the leader to resume. Any message
    /// wakes a quiesced leader.
    pub(super) fn wake_for_message(
        &mut self,
        now: Time,
        from: crate::types::NodeId,
        message: &MessageBody,
        term: crate::types::Term,
    ) {
        if !self.quiesced {
            return;
        }
        if self.role == Role::Leader {
            // Even a later term's message (a pre-vote, which does not depose
            // us) must restart the heartbeat and check-quorum clocks.
            self.wake_up(now, false);
            return;
        }
        let from_leader = term == self.term && self.leader == Some(from);
        match message {
            MessageBody::Quiesce { .. } if from_leader => {}
            _ if from_leader => {
                self.quiesced = false;
                self.last_leader_contact = Some(now);
                self.reset_election_deadline(now);
            }
            _ => self.wake_up(now, false),
        }
    }

    /// At a heartbeat deadline: quiesces the group instead of beating if it
    /// may. Returns whether it did.
    pub(super) fn maybe_quiesce(&mut self, now: Time) -> bool {
        if !self.can_quiesce(now) {
            return false;
        }
        self.heartbeat_deadline = now.add_millis(self.config.heartbeat_interval_ms);
        let commit = self.commit;
        let mut next = self.progress.keys().next().copied();
        while let Some(peer) = next {
            if let Some(progress) = self.progress.get_mut(&peer) {
                progress.told_commit(commit, commit);
            }
            self.send(peer, MessageBody::Quiesce { commit });
            next = self.next_peer(peer);
        }
        self.quiesced = true;
        true
    }

    /// Whether the leader's group is idle: nothing in flight anywhere,
    /// everything committed, applied and durable on every member, every
    /// member heard from within an election timeout.
    fn can_quiesce(&self, now: Time) -> bool {
        let quiet_for = self.config.quiesce_after_ms.saturating_mul(1000);
        let last = self.log.last_index();
        let recent = |heard: Option<Time>| {
            heard.is_some_and(|at| now.micros_since(at) < self.config.election_timeout_ms.saturating_mul(1000))
        };
        quiet_for > 0
            && self.role == Role::Leader
            && !self.quiesced
            && now.micros_since(self.idle_since) >= quiet_for
            && self.transfer.is_none()
            && !self.membership.is_joint()
            && self.commit == last
            && self.applied == last
            && self.log.persisted() == last
            && self.log.term(last) == Some(self.term)
            && self.pending_requests.is_empty()
            && self.reads.is_empty()
            && self.local_reads.is_empty()
            && self.forwarded.len() == 0
            && self.durability.held_count() == 0
            && !self.durability.hard_state_dirty()
            && !self.batch_open
            && self.progress.values().all(|p| p.match_index == last && p.is_idle() && recent(p.last_heard))
    }

    /// A `Quiesce` from the leader of our term: quiesce if we hold exactly
    /// its log, durably; otherwise ask it to keep beating.
    pub(super) fn handle_quiesce(&mut self, now: Time, from: crate::types::NodeId, commit: LogIndex) {
        if !self.accept_leader(now, from) {
            return;
        }
        let last = self.log.last_index();
        let reachable = commit.min(last).min(self.known_leader_match());
        if reachable > self.commit {
            self.commit = reachable;
        }
        let holds_log = last == commit && self.commit == commit && self.log.persisted() == last;
        let idle = self.incoming_snapshot.is_none() && self.forwarded.len() == 0 && self.local_reads.is_empty();
        if self.config.quiesce_after_ms > 0 && holds_log && idle && !self.durability.hard_state_dirty() {
            self.quiesced = true;
        } else {
            self.send(from, MessageBody::Wake);
        }
    }
}
