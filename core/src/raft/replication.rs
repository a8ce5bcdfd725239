//! Log replication: a leader's appends and heartbeats, a follower's answers,
//! the commit rule, and the changes of configuration the log carries.

use super::bug::Bug;
use super::membership::{ChangeError, DiskId, Membership, MembershipChange};
use super::message::{AppendResponse, ConflictHint, Entry, MessageBody, Payload};
use super::node::{RaftNode, Role};
use super::output::{ClientResult, DropReason, Event};
use super::progress::{Progress, ReplicationState};
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, NodeId, RequestId, Term, Time};

impl<S: StateMachine> RaftNode<S> {
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        mut prev_log_index: LogIndex,
        mut prev_log_term: Term,
        mut entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        if self.awaits_first_snapshot() {
            // We joined with an empty disk: the configuration our log would
            // start from (the bootstrap one) is in no entry, so we must start
            // from a snapshot (seed 29718, 5 nodes: a joined node took entries
            // from index 1, then snapshotted a configuration with no voters
            // and could not restart). Refusing makes the leader, once it
            // knows our disk, send its snapshot (see `send_append`).
            let hint = ConflictHint { conflict_term: None, first_index: LogIndex(1) };
            let response = AppendResponse::Rejected { rejected_prev_index: prev_log_index, hint };
            self.send(from, MessageBody::AppendEntriesResponse(response));
            return;
        }
        // Everything up to our commit index is already settled; skip it.
        if prev_log_index < self.commit {
            let settled = (self.commit.0 - prev_log_index.0) as usize;
            if entries.len() <= settled {
                let match_index = self.commit;
                self.note_leader_match(match_index);
                self.send(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }));
                return;
            }
            prev_log_term = entries[settled - 1].term;
            prev_log_index = self.commit;
            entries.drain(..settled);
        }

        if !self.prev_matches(prev_log_index, prev_log_term) {
            return self.reject_append(from, prev_log_index, prev_log_term);
        }
        let match_index = LogIndex(prev_log_index.0 + entries.len() as u64);
        if !self.append_new_entries(from, entries) {
            return;
        }
        self.note_leader_match(match_index);
        let new_commit = leader_commit.min(match_index);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        let response = MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index });
        let durable = !self.config.bug(Bug::AckAppendBeforePersist);
        self.send_with_term(from, self.term, response, durable);
    }

    /// Our log is known to match the current leader's up to `index`.
    pub(super) fn note_leader_match(&mut self, index: LogIndex) {
        let (term, known) = self.leader_match;
        if term != self.term || known < index {
            self.leader_match = (self.term, index);
        }
    }

    /// How far our log is known to match the current term's leader's: what
    /// it told us this term, and our commit index (committed entries are in
    /// every later leader's log).
    pub(super) fn known_leader_match(&self) -> LogIndex {
        let (term, index) = self.leader_match;
        if term == self.term {
            index.max(self.commit)
        } else {
            self.commit
        }
    }

    /// Does our log hold the entry an append follows?
    fn prev_matches(&self, prev_log_index: LogIndex, prev_log_term: Term) -> bool {
        match self.log.term(prev_log_index) {
            None => false,
            Some(_) if self.config.bug(Bug::AppendWithoutPrevCheck) => true,
            Some(term) => term == prev_log_term,
        }
    }

    /// Refuses an append whose previous entry we do not hold, with a hint of
    /// where our log could agree with the leader's.
    fn reject_append(&mut self, from: NodeId, prev_log_index: LogIndex, prev_log_term: Term) {
        if prev_log_index == self.commit {
            self.violation(format!(
                "{} sent an append whose entry {} (term {}) conflicts with our committed entry",
                from, prev_log_index, prev_log_term
            ));
            return;
        }
        let hint = match self.log.term(prev_log_index) {
            None => ConflictHint { conflict_term: None, first_index: self.log.last_index().next() },
            Some(term) => {
                ConflictHint { conflict_term: Some(term), first_index: self.log.first_index_of_term_at(prev_log_index) }
            }
        };
        let response = AppendResponse::Rejected { rejected_prev_index: prev_log_index, hint };
        self.send(from, MessageBody::AppendEntriesResponse(response));
    }

    /// Appends the entries we do not hold yet, truncating a conflicting
    /// suffix first. False (with a violation) if that would overwrite a
    /// committed entry.
    fn append_new_entries(&mut self, from: NodeId, mut entries: Vec<Entry>) -> bool {
        let first_new =
            entries.iter().position(|entry| self.log.term(entry.index) != Some(entry.term)).unwrap_or(entries.len());
        let Some(first) = entries.get(first_new) else {
            return true;
        };
        if first.index <= self.log.last_index() {
            if first.index <= self.commit {
                self.violation(format!(
                    "{} sent entry {} (term {}) that would overwrite our committed entry",
                    from, first.index, first.term
                ));
                return false;
            }
            self.truncate_from(first.index);
        }
        for entry in entries.drain(first_new..) {
            self.append(entry);
        }
        true
    }

    pub(super) fn handle_append_response(&mut self, from: NodeId, incarnation: u64, response: AppendResponse) {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        match response {
            AppendResponse::Accepted { match_index } => {
                if match_index > last_index {
                    self.violation(format!("{from} acknowledged {match_index}, past our last entry {last_index}"));
                    return;
                }
                let confirms_match = match_index >= progress.match_index;
                let advanced = progress.acknowledge(match_index, incarnation);
                match progress.state {
                    // A probe answered at (or past) the match point: the logs
                    // agree there, replicate from it. (A restarted follower
                    // is probed at its match point, which does not advance it.)
                    ReplicationState::Probe if confirms_match => progress.become_replicate(),
                    ReplicationState::Snapshot { index } if progress.match_index >= index => {
                        progress.become_replicate()
                    }
                    _ => {}
                }
                if advanced {
                    self.maybe_commit();
                }
                // A follower whose client waits for a commit it now matches
                // hears of it even if nothing new is to be sent.
                let awaits = self.progress.get(&from).is_some_and(|progress| progress.awaits_commit(self.commit));
                self.send_append(from, awaits);
            }
            AppendResponse::Rejected { rejected_prev_index, hint } => {
                let mut lost = None;
                if progress.proves_lost_entries(rejected_prev_index, incarnation) {
                    // Its disk lost what it acknowledged (restored from an
                    // older copy, or a write it reported durable was not):
                    // probe again from where its log really ends.
                    lost = Some(progress.match_index);
                    progress.forget_match(incarnation);
                } else if rejected_prev_index <= progress.match_index || rejected_prev_index > last_index {
                    return; // stale
                } else if matches!(progress.state, ReplicationState::Snapshot { .. }) {
                    return; // an answer to an append sent before the snapshot
                } else if progress.state == ReplicationState::Probe && rejected_prev_index != progress.next_index.prev()
                {
                    return; // an answer to an older probe
                }
                let suggested = match hint.conflict_term {
                    Some(term) => match self.log.last_index_of_term(term) {
                        Some(index) => index.next(),
                        None => hint.first_index,
                    },
                    None => hint.first_index,
                };
                progress.become_probe();
                let lowest = progress.match_index.next();
                progress.next_index = suggested.max(lowest).min(rejected_prev_index.max(lowest));
                if let Some(acknowledged) = lost {
                    let holds = match hint.conflict_term {
                        None => hint.first_index.prev().min(rejected_prev_index.prev()),
                        Some(_) => rejected_prev_index.prev(),
                    };
                    self.event(Event::FollowerLostEntries { follower: from, acknowledged, holds });
                }
                self.send_append(from, false);
            }
        }
    }

    /// A heartbeat from the leader of our term.
    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_context: u64) {
        // The leader capped `commit` at what it recorded we hold; we cap it
        // at what we know matches its log (see `leader_match`).
        let commit = commit.min(self.log.last_index()).min(self.known_leader_match());
        if commit > self.commit {
            self.commit = commit;
        }
        self.send(from, MessageBody::HeartbeatResponse { read_context });
    }

    pub(super) fn handle_heartbeat_response(&mut self, now: Time, from: NodeId, read_context: u64) {
        if read_context > self.read_context {
            self.violation(format!("{from} answered heartbeat round {read_context}, which was never sent"));
            return;
        }
        let last_index = self.log.last_index();
        let (count_limit, bytes_limit) = (self.config.max_inflight_appends, self.config.max_inflight_bytes);
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        if read_context > progress.read_context_acked {
            progress.read_context_acked = read_context;
            self.confirm_reads(now);
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        if progress.match_index < last_index {
            match progress.state {
                // A lost probe or snapshot chunk is sent again.
                ReplicationState::Probe | ReplicationState::Snapshot { .. } => progress.probe_sent = false,
                // Appends were lost: fall back to probing from the match point.
                ReplicationState::Replicate if progress.inflight_full(count_limit, bytes_limit) => {
                    progress.become_probe()
                }
                ReplicationState::Replicate => {}
            }
            // Even with nothing new to send: in Replicate an empty append at
            // `next_index - 1` makes a follower that lost in-flight entries
            // reject it, which sends us back to probing from its match point.
            // Without it a lost append is never resent unless more writes come.
            self.send_append(from, true);
        } else if read_context == 0 {
            // The follower asks for the commit index (`pull_commit`).
            self.send_append(from, true);
        }
    }

    pub(super) fn accept_request(&mut self, _now: Time, request: RequestId, payload: Payload) {
        if let Some(transfer) = self.transfer {
            self.respond(request, ClientResult::NotLeader { leader_hint: transfer.target });
            return;
        }
        let queued = self.pending_requests.len();
        if !self.admit(request, payload.len_bytes(), queued, self.config.max_pending_requests) {
            return;
        }
        let index = self.log.last_index().next();
        self.append(Entry { index, term: self.term, payload });
        self.pending_requests.push_back((index, request, self.term));
        // Replication and the write wait until the driver polls, so that
        // proposals made back to back go out as one append and one write.
        self.batch_open = true;
    }

    /// Admission of a client request: only a leader takes requests, within
    /// the size limit and while its queue (`queued` of `limit`) has room.
    /// Otherwise answers the client and returns false.
    pub(super) fn admit(&mut self, request: RequestId, size_bytes: usize, queued: usize, limit: usize) -> bool {
        let refusal = if self.role != Role::Leader {
            match self.leader {
                Some(leader_hint) if leader_hint != self.id() => ClientResult::NotLeader { leader_hint },
                _ => ClientResult::NoLeader,
            }
        } else if size_bytes > self.config.max_command_bytes {
            ClientResult::Dropped(DropReason::TooLarge)
        } else if queued >= limit {
            ClientResult::Dropped(DropReason::Overloaded)
        } else {
            return true;
        };
        self.respond(request, refusal);
        false
    }

    pub(super) fn broadcast_append(&mut self, even_if_empty: bool) {
        let mut next = self.progress.keys().next().copied();
        while let Some(peer) = next {
            self.send_append(peer, even_if_empty);
            next = self.next_peer(peer);
        }
    }

    /// The follower after `peer` in id order (iterating without a copy of
    /// the keys, while sending borrows the node mutably).
    pub(super) fn next_peer(&self, peer: NodeId) -> Option<NodeId> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.progress.range((Excluded(peer), Unbounded)).next().map(|(next, _)| *next)
    }

    /// Tells the followers a new commit index. It rides on the appends that
    /// go out anyway; an empty append carries it alone only to a follower
    /// where it lets a client be answered (a proposal it forwarded is now
    /// committed), or to every follower when a configuration committed.
    /// Others learn it from the next append or heartbeat: with one client,
    /// that is the append of its next command, which halves the messages per
    /// command. Session and follower reads waiting there ask for it
    /// (`pull_commit`).
    fn broadcast_commit(&mut self, configuration_committed: bool) {
        let commit = self.commit;
        let mut next = self.progress.keys().next().copied();
        while let Some(peer) = next {
            let awaits = configuration_committed || self.progress[&peer].awaits_commit(commit);
            self.send_append(peer, awaits);
            next = self.next_peer(peer);
        }
    }

    /// A client here waits for `index`, which this follower does not know to
    /// be committed: ask the leader for its commit index (an answer to no
    /// heartbeat round, which the leader answers with an empty append)
    /// instead of waiting for its next heartbeat.
    pub(super) fn pull_commit(&mut self, index: LogIndex) {
        if self.role == Role::Leader || index <= self.commit || self.config.bug(Bug::SessionReadIgnoresIndex) {
            return;
        }
        if let Some(leader) = self.leader {
            self.send(leader, MessageBody::HeartbeatResponse { read_context: 0 });
        }
    }

    pub(super) fn send_append(&mut self, to: NodeId, even_if_empty: bool) {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        match progress.state {
            ReplicationState::Probe if progress.probe_sent => return,
            ReplicationState::Replicate
                if progress.inflight_full(self.config.max_inflight_appends, self.config.max_inflight_bytes) =>
            {
                return
            }
            ReplicationState::Snapshot { .. } => return self.send_snapshot_chunk(to),
            _ => {}
        }
        let next = progress.next_index.min(last_index.next());
        let prev_log_index = next.prev();
        // A node that joined with an empty disk does not know the bootstrap
        // configuration (it is in no entry): it starts from a snapshot, which
        // carries the configuration in force.
        let joining = next == LogIndex(1)
            && progress.disk.is_some_and(|disk| disk != DiskId::BOOTSTRAP)
            && !self.config.bug(Bug::JoinerSkipsSnapshot);
        let prev_log_term = self.log.term(prev_log_index).filter(|_| !joining);
        let Some(prev_log_term) = prev_log_term else {
            // The follower needs entries we compacted (or a snapshot to
            // start from): send the snapshot.
            if self.snapshot.is_none() {
                if self.applied == LogIndex::ZERO {
                    return; // nothing to snapshot yet; the next heartbeat answer retries
                }
                self.take_snapshot(false);
            }
            let progress = self.progress.get_mut(&to).expect("checked above");
            let index = self.snapshot.as_ref().expect("a snapshot was just ensured").meta.index;
            progress.become_snapshot(index);
            return self.send_snapshot_chunk(to);
        };
        let progress = self.progress.get_mut(&to).expect("checked above");
        let upto = LogIndex(next.0 + self.config.max_entries_per_append as u64 - 1);
        let mut bytes = 0;
        let entries: Vec<Entry> = self
            .log
            .slice(next, upto)
            .iter()
            .take_while(|entry| {
                let fits = bytes == 0 || bytes + entry.payload.len_bytes() <= self.config.max_append_bytes;
                bytes += entry.payload.len_bytes().max(1);
                fits
            })
            .cloned()
            .collect();
        if entries.is_empty() && progress.state == ReplicationState::Replicate && !even_if_empty {
            return;
        }
        let last_sent = LogIndex(prev_log_index.0 + entries.len() as u64);
        if !entries.is_empty() || progress.state == ReplicationState::Probe {
            let bytes = entries.iter().map(|entry| entry.payload.len_bytes()).sum();
            progress.sent_entries(last_sent, bytes);
        }
        progress.told_commit(self.commit, last_sent);
        let body = MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit: self.commit };
        self.send(to, body);
    }

    /// Sends a new heartbeat round (a fresh `read_context`) and restarts the
    /// heartbeat timer.
    pub(super) fn broadcast_heartbeat(&mut self, now: Time) {
        self.heartbeat_deadline = now.add_millis(self.config.heartbeat_interval_ms);
        self.read_context += 1;
        let read_context = self.read_context;
        self.reads.round_sent(read_context, now);
        let mut next = self.progress.keys().next().copied();
        while let Some(peer) = next {
            let progress = self.progress.get_mut(&peer).expect("listed");
            let commit = self.commit.min(progress.match_index);
            progress.told_commit(commit, commit);
            self.send(peer, MessageBody::Heartbeat { commit, read_context });
            next = self.next_peer(peer);
        }
        // A single-node cluster is its own quorum.
        self.confirm_reads(now);
    }

    pub(super) fn maybe_commit(&mut self) {
        let own = self.log.persisted().0;
        let candidate = if self.config.bug(Bug::LearnerCountedInQuorum) && !self.membership.is_joint() {
            // Learners' acknowledgements count as if they were votes, while
            // the majority is still sized by the voters alone.
            let mut matched: Vec<u64> = self
                .membership
                .members()
                .iter()
                .map(|node| match self.progress.get(node) {
                    Some(progress) => progress.match_index.0,
                    None if *node == self.id() => own,
                    None => 0,
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            LogIndex(matched[self.membership.voters.len() / 2])
        } else {
            LogIndex(self.quorum_value(own, |progress| progress.match_index.0))
        };
        if candidate <= self.commit {
            return;
        }
        let current_term = self.log.term(candidate) == Some(self.term);
        if current_term || self.config.bug(Bug::CommitOldTerm) {
            let previous = self.commit;
            self.commit = candidate;
            let configuration_committed =
                self.config_entries.iter().any(|(index, _)| *index > previous && *index <= candidate);
            self.after_commit();
            if self.role == Role::Leader {
                self.broadcast_commit(configuration_committed);
            }
        }
    }

    /// What a leader does when a configuration entry commits: leave a joint
    /// configuration, or step down if it is no longer a voter.
    pub(super) fn after_commit(&mut self) {
        let latest_index = self.config_entries.last().map_or(LogIndex::ZERO, |(index, _)| *index);
        if latest_index > self.commit {
            return;
        }
        if self.membership.is_joint() {
            let mut leave = self.membership.clone();
            leave.outgoing.clear();
            let index = self.log.last_index().next();
            self.append(Entry { index, term: self.term, payload: Payload::Config(leave) });
        } else if !self.self_votes() {
            let now = self.now;
            self.become_follower(now, self.term, None);
        }
    }

    /// A node that joined with an empty disk and has not installed a
    /// snapshot yet: it knows no configuration (its base is empty). Every
    /// joined node's log starts after a snapshot, so its offset is positive.
    pub(super) fn awaits_first_snapshot(&self) -> bool {
        self.log.offset() == LogIndex::ZERO
            && self.disk != DiskId::BOOTSTRAP
            && !self.config.bug(Bug::JoinerSkipsSnapshot)
    }

    /// The configuration in force at `index`.
    pub(super) fn membership_at(&self, index: LogIndex) -> &Membership {
        match self.config_entries.iter().rev().find(|(at, _)| *at <= index) {
            Some((_, membership)) => membership,
            None => &self.base_membership,
        }
    }

    /// Installs the configuration in force after a change of the log, and
    /// (on a leader) starts or stops replicating to members accordingly.
    pub(super) fn refresh_membership(&mut self) {
        let (index, latest) = match self.config_entries.last() {
            Some((index, membership)) => (*index, membership.clone()),
            None => (self.log.offset(), self.base_membership.clone()),
        };
        if latest == self.membership {
            return;
        }
        self.membership = latest.clone();
        self.event(Event::MembershipChanged { index, membership: latest });
        if self.role == Role::Leader {
            self.sync_progress();
        }
    }

    /// A leader tracks progress for exactly the other members.
    pub(super) fn sync_progress(&mut self) {
        let members = self.membership.members();
        self.progress.retain(|node, _| members.contains(node));
        let next = self.log.last_index().next();
        for member in members {
            if member != self.id() {
                self.progress.entry(member).or_insert_with(|| Progress::new(next));
            }
        }
    }

    pub(super) fn append(&mut self, entry: Entry) {
        let index = entry.index;
        let membership = match &entry.payload {
            Payload::Config(membership) => Some(membership.clone()),
            _ => None,
        };
        self.log.push(entry);
        self.durability.appended(index);
        if let Some(membership) = membership {
            // A configuration takes effect as soon as it is appended.
            self.config_entries.push((index, membership));
            self.refresh_membership();
        }
    }

    pub(super) fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.commit, "invariant: committed entries are never truncated");
        self.log.truncate_from(index);
        self.config_entries.retain(|(at, _)| *at < index);
        self.refresh_membership();
        self.durability.truncated(index);
    }

    pub(super) fn start_membership_change(
        &mut self,
        request: RequestId,
        change: MembershipChange,
    ) -> Result<(), ChangeError> {
        if self.role != Role::Leader {
            return Err(ChangeError::NotLeader);
        }
        let latest_index = self.config_entries.last().map_or(LogIndex::ZERO, |(index, _)| *index);
        if self.membership.is_joint() || latest_index > self.commit {
            return Err(ChangeError::ChangeInFlight);
        }
        // A learner is ready to vote once it holds everything committed, on
        // a disk we know.
        let ready = |node: NodeId| -> Result<DiskId, ChangeError> {
            let progress = self.progress.get(&node).ok_or(ChangeError::NotMember(node))?;
            match progress.disk {
                Some(disk) if progress.match_index >= self.commit => Ok(disk),
                _ => Err(ChangeError::NotCaughtUp(node)),
            }
        };
        let mut next = self.membership.apply_change(change, (self.id(), self.disk), ready)?;
        let voters_change = next.voters != self.membership.voters;
        // Refuse a voter set that could not commit anything right now (as
        // etcd's strict reconfiguration check does): a majority of the new
        // voters must be caught up on the disk the configuration records and
        // heard from within an election timeout. Otherwise the change could
        // never commit, and with it blocked no repair (such as renewing a
        // lost disk) could follow.
        let now = self.now;
        let window_us = self.config.election_timeout_ms * 1000;
        let healthy = next.quorum_value(|node, disk| {
            let caught_up = if node == self.id() {
                disk == self.disk
            } else {
                self.progress.get(&node).is_some_and(|progress| {
                    progress.disk == Some(disk)
                        && progress.match_index >= self.commit
                        && progress.last_heard.is_some_and(|heard| now.micros_since(heard) < window_us)
                })
            };
            u64::from(caught_up)
        });
        if voters_change && (healthy == 0 || self.config.bug(Bug::VoterChangesRefused)) {
            return Err(ChangeError::WouldLoseQuorum);
        }
        if voters_change && !self.config.bug(Bug::NoJointConsensus) {
            next.outgoing = self.membership.voters.clone();
        }
        let index = self.log.last_index().next();
        self.append(Entry { index, term: self.term, payload: Payload::Config(next) });
        self.pending_requests.push_back((index, request, self.term));
        self.broadcast_append(false);
        self.maybe_commit();
        Ok(())
    }
}
