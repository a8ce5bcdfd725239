//! Proposals a follower forwards to the leader: the table of those awaiting
//! an answer or their apply, their tags, the leader's side, and expiry.

use super::bug::Bug;
use super::message::{Entry, ForwardOutcome, MessageBody, Payload, RequestTag};
use super::node::{RaftNode, Role, FORWARD_TIMEOUT_ELECTIONS};
use super::output::{ClientResult, DropReason};
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, NodeId, RequestId, Term, Time};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// Answers a follower keeps of entries it applied while a forwarded
/// proposal awaited the leader's word on where it was placed (the commit
/// can overtake that word). Older ones are forgotten: a placement that
/// arrives after that many entries were applied gets an unknown outcome.
pub(super) const EARLY_ANSWERS_KEPT: usize = 256;

/// A proposal this follower forwarded to the leader.
#[derive(Debug)]
struct Forwarded {
    request: RequestId,
    /// Where the leader appended it, once it said so.
    placed: Option<(LogIndex, Term)>,
    /// Give up (outcome unknown) if the leader has not placed it by then.
    deadline: Time,
}

/// What a leader's answer to a forwarded proposal settles.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answered {
    /// Not ours, already answered, or already placed: nothing to do.
    Nothing,
    /// Placed; the client is answered when that entry is applied here.
    Placed,
    /// Answer the client with this.
    Respond(RequestId, ClientResult),
}

/// The proposals this follower forwarded, by the `seq` of their tag, and
/// where the leader placed them.
#[derive(Debug, Default)]
pub(super) struct Forwarder {
    by_seq: BTreeMap<u64, Forwarded>,
    /// Placed proposals, by log index.
    placed: BTreeMap<LogIndex, u64>,
    /// `(index, term, answer)` of commands applied while a proposal awaited
    /// its placement, oldest first, at most [`EARLY_ANSWERS_KEPT`].
    early: VecDeque<(LogIndex, Term, Vec<u8>)>,
}

impl Forwarder {
    /// How many await an answer or their apply.
    pub(super) fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Whether a proposal awaits the leader's word on where it was placed:
    /// then answers of applied commands are kept ([`Self::remember_early`]).
    pub(super) fn awaits_placement(&self) -> bool {
        self.by_seq.len() > self.placed.len()
    }

    /// Keeps the answer of the command applied at `index` in `term`, for a
    /// placement that arrives after it was applied.
    pub(super) fn remember_early(&mut self, index: LogIndex, term: Term, answer: Vec<u8>) {
        if self.early.len() >= EARLY_ANSWERS_KEPT {
            self.early.pop_front();
        }
        self.early.push_back((index, term, answer));
    }

    /// Forgets the kept answers once no proposal awaits its placement.
    pub(super) fn forget_early_if_settled(&mut self) {
        if !self.early.is_empty() && !self.awaits_placement() {
            self.early.clear();
        }
    }

    /// Tracks a proposal forwarded with tag `seq`.
    pub(super) fn insert(&mut self, seq: u64, request: RequestId, deadline: Time) {
        self.by_seq.insert(seq, Forwarded { request, placed: None, deadline });
    }

    /// The earliest deadline, if any.
    pub(super) fn deadline(&self) -> Option<Time> {
        if self.by_seq.is_empty() {
            return None;
        }
        self.by_seq.values().map(|forwarded| forwarded.deadline).min()
    }

    /// The request placed at `index` (now applied) and the term it was
    /// placed in, forgetting it.
    pub(super) fn take_applied(&mut self, index: LogIndex) -> Option<(RequestId, Term)> {
        let seq = self.placed.remove(&index)?;
        let forwarded = self.by_seq.remove(&seq)?;
        Some((forwarded.request, forwarded.placed?.1))
    }

    /// Removes and returns the requests placed at or below `index`, which a
    /// snapshot just covered: they were applied without this node seeing
    /// their entries, so their outcome is unknown here.
    pub(super) fn take_placed_upto(&mut self, index: LogIndex) -> Vec<RequestId> {
        let mut requests = Vec::new();
        while let Some(entry) = self.placed.first_entry() {
            if *entry.key() > index {
                break;
            }
            let seq = entry.remove();
            if let Some(forwarded) = self.by_seq.remove(&seq) {
                requests.push(forwarded.request);
            }
        }
        requests
    }

    /// The leader's answer for tag `seq`, on a node that has applied up to
    /// `applied`.
    pub(super) fn answer(&mut self, seq: u64, outcome: ForwardOutcome, applied: LogIndex) -> Answered {
        let Some(forwarded) = self.by_seq.get_mut(&seq) else {
            return Answered::Nothing; // already answered (timed out) or a duplicate
        };
        if forwarded.placed.is_some() {
            return Answered::Nothing;
        }
        let refusal = match outcome {
            ForwardOutcome::Placed { index, term } => {
                if index <= applied {
                    // Applied before we knew where it went (the commit
                    // overtook the leader's answer): the outcome is that
                    // entry's, if it is ours and still kept.
                    let request = forwarded.request;
                    self.by_seq.remove(&seq);
                    let kept = self.early.iter().find(|(at, at_term, _)| *at == index && *at_term == term);
                    let result = match kept {
                        Some((_, _, answer)) => ClientResult::Ok(answer.clone()),
                        None => ClientResult::Dropped(DropReason::LeadershipLost),
                    };
                    self.forget_early_if_settled();
                    return Answered::Respond(request, result);
                }
                forwarded.placed = Some((index, term));
                self.placed.insert(index, seq);
                self.forget_early_if_settled();
                return Answered::Placed;
            }
            ForwardOutcome::NotLeader => ClientResult::NoLeader,
            ForwardOutcome::Overloaded => ClientResult::Dropped(DropReason::Overloaded),
            ForwardOutcome::TooLarge => ClientResult::Dropped(DropReason::TooLarge),
        };
        let request = forwarded.request;
        self.by_seq.remove(&seq);
        self.forget_early_if_settled();
        Answered::Respond(request, refusal)
    }

    /// Removes and returns the requests past their deadline at `now`.
    pub(super) fn expire(&mut self, now: Time) -> Vec<RequestId> {
        if self.by_seq.is_empty() {
            return Vec::new();
        }
        let expired: Vec<u64> =
            self.by_seq.iter().filter(|(_, forwarded)| now >= forwarded.deadline).map(|(seq, _)| *seq).collect();
        let mut requests = Vec::with_capacity(expired.len());
        for seq in expired {
            let forwarded = self.by_seq.remove(&seq).expect("listed above");
            if let Some((index, _)) = forwarded.placed {
                self.placed.remove(&index);
            }
            requests.push(forwarded.request);
        }
        self.forget_early_if_settled();
        requests
    }
}

impl<S: StateMachine> RaftNode<S> {
    /// A new tag for a request this node sends the leader.
    pub(super) fn next_tag(&mut self) -> RequestTag {
        let seq = self.next_request_seq;
        self.next_request_seq += 1;
        RequestTag { disk: self.disk, incarnation: self.tag_incarnation(), seq }
    }

    /// The `seq` of a tag this life of this node made, or `None` for a tag
    /// of another disk or an earlier life.
    pub(super) fn own_seq(&self, tag: RequestTag) -> Option<u64> {
        (tag.disk == self.disk && tag.incarnation == self.tag_incarnation()).then_some(tag.seq)
    }

    /// The incarnation this life's tags carry (the bug `request-ids-reused`
    /// makes every life the same).
    fn tag_incarnation(&self) -> u64 {
        if self.config.bug(Bug::RequestIdsReused) {
            0
        } else {
            self.incarnation
        }
    }

    pub(super) fn forward_proposal(&mut self, now: Time, request: RequestId, command: Bytes) {
        let leader = self.leader.expect("forwarding needs a known leader");
        if command.len() > self.config.max_command_bytes {
            return self.respond(request, ClientResult::Dropped(DropReason::TooLarge));
        }
        if self.forwarded.len() >= self.config.max_forwarded_proposals {
            return self.respond(request, ClientResult::Dropped(DropReason::Overloaded));
        }
        let id = self.next_tag();
        let deadline = now.add_millis(self.config.election_timeout_ms * FORWARD_TIMEOUT_ELECTIONS);
        self.forwarded.insert(id.seq, request, deadline);
        self.send(leader, MessageBody::Forward { id, command });
    }

    /// A leader appends a forwarded proposal like its own, but the answer is
    /// where it was placed: the follower answers its client when it applies
    /// that entry.
    pub(super) fn handle_forward(&mut self, from: NodeId, id: RequestTag, command: Bytes) {
        let outcome = if self.role != Role::Leader || self.transfer.is_some() {
            ForwardOutcome::NotLeader
        } else if command.len() > self.config.max_command_bytes {
            ForwardOutcome::TooLarge
        } else if self.pending_requests.len() >= self.config.max_pending_requests {
            ForwardOutcome::Overloaded
        } else {
            let index = self.log.last_index().next();
            self.append(Entry { index, term: self.term, payload: Payload::Command(command) });
            if let Some(progress) = self.progress.get_mut(&from) {
                progress.commit_wanted = progress.commit_wanted.max(index);
            }
            self.broadcast_append(false);
            ForwardOutcome::Placed { index, term: self.term }
        };
        self.send(from, MessageBody::ForwardResponse { id, outcome });
    }

    pub(super) fn handle_forward_response(&mut self, tag: RequestTag, outcome: ForwardOutcome) {
        let Some(seq) = self.own_seq(tag) else {
            return; // for an earlier life of this node (seed 55657)
        };
        if let Answered::Respond(request, result) = self.forwarded.answer(seq, outcome, self.applied) {
            self.respond(request, result);
        }
    }

    /// Gives up on forwarded proposals the leader has not answered in time;
    /// their outcome is unknown.
    pub(super) fn expire_forwarded(&mut self, now: Time) {
        for request in self.forwarded.expire(now) {
            self.respond(request, ClientResult::Dropped(DropReason::LeadershipLost));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placed_proposal_is_answered_when_its_entry_is_applied() {
        let mut table = Forwarder::default();
        table.insert(7, RequestId(1), Time::from_millis(100));
        let placed = ForwardOutcome::Placed { index: LogIndex(5), term: Term(2) };
        assert_eq!(table.answer(7, placed, LogIndex(3)), Answered::Placed);
        assert_eq!(table.answer(7, ForwardOutcome::NotLeader, LogIndex(3)), Answered::Nothing, "a duplicate");
        assert_eq!(table.take_applied(LogIndex(4)), None);
        assert_eq!(table.take_applied(LogIndex(5)), Some((RequestId(1), Term(2))));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_proposal_placed_at_an_index_already_applied_gets_the_answer_kept_for_that_entry() {
        let mut table = Forwarder::default();
        table.insert(1, RequestId(9), Time::from_millis(100));
        table.insert(2, RequestId(10), Time::from_millis(100));
        assert!(table.awaits_placement());
        // The commit overtook the leader's answers: entries 3 and 4 were
        // applied while both proposals awaited their placement.
        table.remember_early(LogIndex(3), Term(2), b"three".to_vec());
        table.remember_early(LogIndex(4), Term(2), b"four".to_vec());
        let placed = ForwardOutcome::Placed { index: LogIndex(3), term: Term(2) };
        assert_eq!(
            table.answer(1, placed, LogIndex(4)),
            Answered::Respond(RequestId(9), ClientResult::Ok(b"three".to_vec()))
        );
        // Placed at 4 but in another term: entry 4 is not this proposal.
        let elsewhere = ForwardOutcome::Placed { index: LogIndex(4), term: Term(1) };
        let lost = ClientResult::Dropped(DropReason::LeadershipLost);
        assert_eq!(table.answer(2, elsewhere, LogIndex(4)), Answered::Respond(RequestId(10), lost));
        assert!(!table.awaits_placement());
        assert!(table.early.is_empty(), "nothing awaits a placement: the kept answers are dropped");
        for index in 0..EARLY_ANSWERS_KEPT as u64 + 10 {
            table.insert(3, RequestId(11), Time::from_millis(100));
            table.remember_early(LogIndex(index), Term(3), Vec::new());
        }
        assert_eq!(table.early.len(), EARLY_ANSWERS_KEPT, "bounded");
    }

    #[test]
    fn a_proposal_placed_at_an_index_applied_and_no_longer_kept_has_an_unknown_outcome() {
        let mut table = Forwarder::default();
        table.insert(1, RequestId(9), Time::from_millis(100));
        let placed = ForwardOutcome::Placed { index: LogIndex(3), term: Term(2) };
        let lost = ClientResult::Dropped(DropReason::LeadershipLost);
        assert_eq!(table.answer(1, placed, LogIndex(3)), Answered::Respond(RequestId(9), lost));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn refusals_are_answered_and_deadlines_expire_placed_proposals_too() {
        let mut table = Forwarder::default();
        table.insert(1, RequestId(1), Time::from_millis(100));
        table.insert(2, RequestId(2), Time::from_millis(50));
        table.insert(3, RequestId(3), Time::from_millis(300));
        let overloaded = ClientResult::Dropped(DropReason::Overloaded);
        assert_eq!(
            table.answer(1, ForwardOutcome::Overloaded, LogIndex(0)),
            Answered::Respond(RequestId(1), overloaded)
        );
        assert_eq!(table.deadline(), Some(Time::from_millis(50)));
        let placed = ForwardOutcome::Placed { index: LogIndex(4), term: Term(1) };
        assert_eq!(table.answer(2, placed, LogIndex(0)), Answered::Placed);
        assert_eq!(table.expire(Time::from_millis(60)), vec![RequestId(2)]);
        assert_eq!(table.take_applied(LogIndex(4)), None, "expired: no longer answered at apply");
        assert_eq!(table.deadline(), Some(Time::from_millis(300)));
    }
}
