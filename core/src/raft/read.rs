//! Linearizable reads without log writes (Raft thesis §6.4): the leader's
//! queue of reads waiting for leadership confirmation and apply, and the send
//! times of its recent heartbeat rounds (for leases).

use super::bug::Bug;
use super::message::{MessageBody, RequestTag};
use super::node::{RaftNode, Role, FORWARD_TIMEOUT_ELECTIONS};
use super::output::{ClientResult, DropReason};
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, NodeId, RequestId, Time};
use std::collections::VecDeque;

/// Most heartbeat rounds whose send time a leader remembers. An answer to an
/// older round still counts for ReadIndex, but grants no lease.
pub(super) const MAX_TRACKED_ROUNDS: usize = 64;

/// How a client chooses, per read, between freshness and cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Linearizable through ReadIndex: the leader confirms its leadership
    /// with a heartbeat round answered by a quorum. A follower asks the
    /// leader for the read index, then answers from its own state.
    Linearizable,
    /// Linearizable through a leader lease when one is running (needs
    /// check-quorum and bounded clock drift, see [`ReadMode::Lease`](super::ReadMode::Lease)),
    /// else as `Linearizable`.
    Lease,
    /// Read-your-writes and monotonic reads: any node answers once it has
    /// applied `after`, the highest index the client has seen (the node's
    /// applied index when it answered the client's previous request).
    Session {
        /// The state the answer must reflect at least: the highest applied
        /// index the client has been shown (0 for a new client).
        after: LogIndex,
    },
    /// Whatever this node has applied, at once: possibly stale, never a
    /// value that was not committed.
    Stale,
}

/// Who a read held by the leader is for.
#[derive(Clone, Debug)]
pub(super) enum ReadOrigin {
    /// A client of this node.
    Local { request: RequestId, query: Vec<u8> },
    /// A follower's ReadIndex request `id`: the answer is the read index.
    Remote { from: NodeId, id: RequestTag },
}

/// One read held by the leader.
#[derive(Clone, Debug)]
pub(super) struct PendingRead {
    pub origin: ReadOrigin,
    /// A leader lease may confirm it (instead of a heartbeat round).
    pub allow_lease: bool,
    /// The commit index the answer must reflect. `None` until the leader has
    /// committed an entry of its own term: before that its commit index may
    /// lag what earlier leaders committed.
    pub read_index: Option<LogIndex>,
    /// The heartbeat round (sent after the read arrived) whose quorum of
    /// answers confirms leadership.
    pub context: u64,
    /// Leadership is confirmed for this read (by a round or a lease).
    pub confirmed: bool,
}

/// A read a node answers from its own state once it has applied `ready_at`.
#[derive(Clone, Debug)]
pub(super) struct LocalRead {
    pub request: RequestId,
    pub query: Vec<u8>,
    /// The index to wait for; `None` while the leader's read index is awaited.
    pub ready_at: Option<LogIndex>,
    /// Give up (the client asks again) if not answered by then.
    pub deadline: Time,
}

/// The leader's reads and heartbeat rounds. Cleared on every role change.
#[derive(Debug, Default)]
pub(super) struct ReadQueue {
    /// In arrival order; contexts and read indexes never decrease along it.
    pub reads: VecDeque<PendingRead>,
    /// Send time of each recent round, oldest first.
    rounds: VecDeque<(u64, Time)>,
}

impl ReadQueue {
    pub(super) fn len(&self) -> usize {
        self.reads.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// Remembers that round `context` went out at `now`.
    pub(super) fn round_sent(&mut self, context: u64, now: Time) {
        debug_assert!(self.rounds.back().is_none_or(|(last, _)| *last < context), "rounds are numbered upward");
        if self.rounds.len() >= MAX_TRACKED_ROUNDS {
            self.rounds.pop_front();
        }
        self.rounds.push_back((context, now));
    }

    /// When round `context` was sent, if it is still remembered.
    pub(super) fn sent_at(&self, context: u64) -> Option<Time> {
        // Rounds are numbered upward, so the queue is sorted.
        let position = self.rounds.binary_search_by_key(&context, |(round, _)| *round).ok()?;
        Some(self.rounds[position].1)
    }

    /// Does a read wait on round `context` without being confirmed yet?
    pub(super) fn waiting_on(&self, context: u64) -> bool {
        self.reads.iter().any(|read| !read.confirmed && read.context == context)
    }

    /// Does any read wait for a round later than `context`?
    pub(super) fn waiting_after(&self, context: u64) -> bool {
        self.reads.iter().any(|read| !read.confirmed && read.context > context)
    }

    /// Forgets everything, returning the reads that were still held.
    pub(super) fn clear(&mut self) -> VecDeque<PendingRead> {
        self.rounds.clear();
        std::mem::take(&mut self.reads)
    }
}

impl<S: StateMachine> RaftNode<S> {
    pub(super) fn accept_read(&mut self, now: Time, request: RequestId, query: Vec<u8>, consistency: ReadConsistency) {
        let allow_lease = consistency == ReadConsistency::Lease;
        match consistency {
            ReadConsistency::Linearizable | ReadConsistency::Lease if self.role == Role::Leader => {
                if !self.admit(request, query.len(), self.reads.len(), self.leader_read_limit()) {
                    return;
                }
                self.hold_read(now, ReadOrigin::Local { request, query }, allow_lease);
            }
            ReadConsistency::Linearizable | ReadConsistency::Lease => {
                let Some(leader) = self.leader.filter(|_| self.config.follower_reads) else {
                    // Refuses, naming the leader if known.
                    self.admit(request, query.len(), 0, 1);
                    return;
                };
                if !self.admit_local_read(request, query.len()) {
                    return;
                }
                let id = self.next_tag();
                if self.config.bug(Bug::FollowerReadWithoutReadIndex) {
                    return self.hold_local_read(now, id.seq, request, query, Some(LogIndex::ZERO));
                }
                self.hold_local_read(now, id.seq, request, query, None);
                // Like every message, it carries our term, which must be durable
                // first (a restarted node never speaks in a term it forgot).
                self.send(leader, MessageBody::ReadIndex { id, allow_lease });
            }
            ReadConsistency::Session { after } => {
                let after = if self.config.bug(Bug::SessionReadIgnoresIndex) { LogIndex::ZERO } else { after };
                if self.admit_local_read(request, query.len()) {
                    let id = self.next_tag();
                    self.hold_local_read(now, id.seq, request, query, Some(after));
                    self.pull_commit(after);
                }
            }
            ReadConsistency::Stale => {
                if self.admit_local_read(request, query.len()) {
                    let answer = self.state_machine.query(&query);
                    self.respond(request, ClientResult::Ok(answer));
                }
            }
        }
    }

    /// Most reads a leader holds: `max_pending_reads` (one more under the
    /// injected bug `read-queue-over-limit`).
    pub(super) fn leader_read_limit(&self) -> usize {
        self.config.max_pending_reads + usize::from(self.config.bug(Bug::ReadQueueOverLimit))
    }

    /// Admission of a read a node answers itself (any role).
    pub(super) fn admit_local_read(&mut self, request: RequestId, size_bytes: usize) -> bool {
        let refusal = if size_bytes > self.config.max_command_bytes {
            ClientResult::Dropped(DropReason::TooLarge)
        } else if self.local_reads.len() >= self.config.max_pending_reads {
            ClientResult::Dropped(DropReason::Overloaded)
        } else {
            return true;
        };
        self.respond(request, refusal);
        false
    }

    pub(super) fn hold_local_read(
        &mut self,
        now: Time,
        id: u64,
        request: RequestId,
        query: Vec<u8>,
        ready_at: Option<LogIndex>,
    ) {
        let deadline = now.add_millis(self.config.election_timeout_ms * FORWARD_TIMEOUT_ELECTIONS);
        self.local_reads.insert(id, LocalRead { request, query, ready_at, deadline });
    }

    /// A leader holds a read until its leadership is confirmed after the
    /// read arrived.
    pub(super) fn hold_read(&mut self, now: Time, origin: ReadOrigin, allow_lease: bool) {
        let read_index = self.committed_in_term().then_some(self.commit);
        // Only a round sent after the read arrived can confirm it.
        let context = self.read_context + 1;
        self.reads.reads.push_back(PendingRead { origin, allow_lease, read_index, context, confirmed: false });
        self.confirm_reads(now);
    }

    /// A follower asks for a read index.
    pub(super) fn handle_read_index(&mut self, from: NodeId, id: RequestTag, allow_lease: bool) {
        if self.role != Role::Leader || self.reads.len() >= self.config.max_pending_reads {
            self.send(from, MessageBody::ReadIndexResponse { id, index: None });
            return;
        }
        let now = self.now;
        self.hold_read(now, ReadOrigin::Remote { from, id }, allow_lease);
    }

    pub(super) fn handle_read_index_response(&mut self, tag: RequestTag, index: Option<LogIndex>) {
        let Some(id) = self.own_seq(tag) else {
            return; // for an earlier life of this node
        };
        let Some(read) = self.local_reads.get_mut(&id) else {
            return;
        };
        if read.ready_at.is_some() {
            return; // a duplicate
        }
        match index {
            Some(index) => {
                read.ready_at = Some(index);
                self.pull_commit(index);
            }
            None => {
                let read = self.local_reads.remove(&id).expect("found above");
                self.respond(read.request, ClientResult::Dropped(DropReason::LeadershipLost));
            }
        }
    }

    /// Answers the reads this node serves from its own state once it has
    /// applied what they wait for, and gives up on those past their deadline.
    pub(super) fn serve_local_reads(&mut self) {
        if self.local_reads.is_empty() {
            return;
        }
        let now = self.now;
        let done: Vec<u64> = self
            .local_reads
            .iter()
            .filter(|(_, read)| read.ready_at.is_some_and(|index| index <= self.applied) || now >= read.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let read = self.local_reads.remove(&id).expect("listed above");
            if read.ready_at.is_some_and(|index| index <= self.applied) {
                let answer = self.state_machine.query(&read.query);
                self.respond(read.request, ClientResult::Ok(answer));
            } else {
                self.respond(read.request, ClientResult::Dropped(DropReason::LeadershipLost));
            }
        }
    }

    /// Has this leader committed an entry of its term (so its commit index
    /// covers every earlier leader's)? The one place reads check it.
    pub(super) fn committed_in_term(&self) -> bool {
        self.config.bug(Bug::ReadBeforeTermCommit) || self.log.term(self.commit) == Some(self.term)
    }

    /// The latest heartbeat round a quorum (this node included) has answered.
    pub(super) fn confirmed_context(&self) -> u64 {
        self.quorum_value(self.read_context, |progress| progress.read_context_acked)
    }

    /// With [`ReadMode::Lease`]: has a quorum answered a round sent recently
    /// enough that no other leader can have been elected since?
    pub(super) fn lease_valid(&self, now: Time) -> bool {
        if !self.config.check_quorum || self.transfer.is_some() || now < self.lease_suspended_until {
            return false;
        }
        // Per voter, one plus when the latest round it answered was sent (0:
        // no lease from that voter).
        let granted_at = self.quorum_value(now.as_micros() + 1, |progress| {
            self.reads.sent_at(progress.read_context_acked).map_or(0, |sent| sent.as_micros() + 1)
        });
        granted_at > 0 && now.as_micros() - (granted_at - 1) < self.config.lease_duration_us()
    }

    /// Marks reads confirmed by the rounds a quorum answered (or the lease),
    /// and sends the round that unconfirmed reads wait for. Batching: while a
    /// round is out for earlier reads, later ones wait for the next round
    /// (sent when that one is confirmed, or at the next heartbeat) instead of
    /// each sending their own.
    pub(super) fn confirm_reads(&mut self, now: Time) {
        let confirmed_context = self.confirmed_context();
        let lease = self.lease_valid(now);
        for read in self.reads.reads.iter_mut() {
            read.confirmed |= read.context <= confirmed_context || (lease && read.allow_lease);
        }
        if self.reads.waiting_after(self.read_context) && !self.reads.waiting_on(self.read_context) {
            self.broadcast_heartbeat(now);
        }
    }

    /// Answers every confirmed read whose read index is applied.
    pub(super) fn serve_reads(&mut self) {
        if self.role != Role::Leader || self.reads.is_empty() {
            return;
        }
        if self.committed_in_term() {
            for read in self.reads.reads.iter_mut() {
                read.read_index.get_or_insert(self.commit);
            }
        }
        let mut waiting = std::collections::VecDeque::new();
        for read in std::mem::take(&mut self.reads.reads) {
            // Leadership is confirmed for a read once a round (or the lease)
            // proved it after the read arrived, and the leader has committed
            // an entry of its term, so its commit index covers every earlier
            // leader's. The one place this is checked; the bug skips it.
            let leadership_confirmed = read.confirmed && read.read_index.is_some();
            let ready = leadership_confirmed || self.config.bug(Bug::StaleLeaderRead);
            match &read.origin {
                // A follower waits for the index itself.
                ReadOrigin::Remote { from, id } if ready => {
                    let index = Some(read.read_index.unwrap_or(self.commit));
                    let (from, id) = (*from, *id);
                    self.send(from, MessageBody::ReadIndexResponse { id, index });
                }
                ReadOrigin::Local { request, query }
                    if ready && read.read_index.is_none_or(|read_index| read_index <= self.applied) =>
                {
                    let answer = self.state_machine.query(query);
                    self.respond(*request, ClientResult::Ok(answer));
                }
                _ => waiting.push_back(read),
            }
        }
        self.reads.reads = waiting;
    }
}
