//! Snapshots: taking one when the policy says so, compacting the log behind
//! it, sending it to a follower in chunks, and receiving and installing one.

use super::bug::Bug;
use super::message::{AppendResponse, MessageBody, Snapshot, SnapshotMeta};
use super::node::RaftNode;
use super::output::{ClientResult, DropReason, Event};
use super::progress::ReplicationState;
use crate::state_machine::StateMachine;
use crate::types::{LogIndex, NodeId, Term};

/// A snapshot being received from the leader, chunk by chunk.
pub(super) struct IncomingSnapshot {
    meta: SnapshotMeta,
    total_bytes: u64,
    /// The leader sending it, and its term.
    source: (NodeId, Term),
    data: Vec<u8>,
}

impl<S: StateMachine> RaftNode<S> {
    /// Sends the follower the next chunk of our latest snapshot (restarting
    /// from its first byte if the snapshot changed since the last chunk).
    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let snapshot = self.snapshot.as_ref().expect("invariant: Snapshot state needs a snapshot");
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        if progress.state != (ReplicationState::Snapshot { index: snapshot.meta.index }) {
            progress.become_snapshot(snapshot.meta.index);
        }
        if progress.probe_sent {
            return;
        }
        let total_bytes = snapshot.data.len() as u64;
        let offset = progress.snapshot_received.min(total_bytes);
        let end = (offset + self.config.snapshot_chunk_bytes as u64).min(total_bytes);
        let chunk = snapshot.data[offset as usize..end as usize].to_vec();
        progress.probe_sent = true;
        let meta = Box::new(snapshot.meta.clone());
        let body = MessageBody::InstallSnapshot { meta, offset, total_bytes, chunk };
        self.send(to, body);
    }

    pub(super) fn handle_snapshot_chunk_response(&mut self, from: NodeId, index: LogIndex, received: u64) {
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.recently_active = true;
        if progress.state != (ReplicationState::Snapshot { index }) {
            return; // about a snapshot we no longer send
        }
        // Fewer bytes than before means the follower restarted and lost the
        // chunks: start over from where it is.
        progress.snapshot_received = received;
        progress.probe_sent = false;
        self.send_snapshot_chunk(from);
    }

    /// Takes a snapshot of the state machine when the policy says so, and
    /// compacts the log up to `max_retained_entries` before it.
    pub(super) fn maybe_snapshot(&mut self) {
        let policy = self.config.snapshot_policy;
        let snapshot_index = self.snapshot.as_ref().map_or(LogIndex::ZERO, |snapshot| snapshot.meta.index);
        let entries_since = self.applied.0.saturating_sub(snapshot_index.0);
        let due = (policy.entries > 0 && entries_since >= policy.entries)
            || (policy.bytes > 0 && self.bytes_since_snapshot >= policy.bytes);
        if !due || self.applied <= snapshot_index {
            return;
        }
        self.take_snapshot(!self.config.bug(Bug::SnapshotNeverCompacts));
    }

    /// Snapshots the state machine at the applied index and, with `compact`,
    /// discards the log up to `max_retained_entries` before it.
    pub(super) fn take_snapshot(&mut self, compact: bool) {
        let index = self.applied;
        let term = self.log.term(index).expect("invariant: applied entries past the snapshot are in the log");
        let meta = SnapshotMeta { index, term, membership: self.membership_at(index).clone() };
        if let Err(error) = meta.membership.validate() {
            panic!("invariant: a snapshot at {index} records a valid configuration, not one where {error}");
        }
        let snapshot = Snapshot { meta, data: self.state_machine.snapshot() };
        let discard_upto = LogIndex(index.0.saturating_sub(self.config.max_retained_entries));
        if compact && discard_upto > self.log.offset() {
            self.compact_log(discard_upto);
            self.durability.discard_upto(discard_upto);
        }
        self.bytes_since_snapshot = 0;
        self.durability.store_snapshot(snapshot.clone());
        self.snapshot = Some(snapshot);
    }

    /// Drops log entries up to `upto`, remembering the configuration in force
    /// there.
    pub(super) fn compact_log(&mut self, upto: LogIndex) {
        self.base_membership = self.membership_at(upto).clone();
        self.config_entries.retain(|(at, _)| *at > upto);
        self.log.compact(upto);
    }

    /// One chunk of the leader's snapshot.
    pub(super) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total_bytes: u64,
        chunk: Vec<u8>,
    ) {
        let index = meta.index;
        if index <= self.commit && !self.config.bug(Bug::SnapshotOverNewerLog) {
            // We already hold everything it covers.
            let match_index = self.commit;
            self.send(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }));
            return;
        }
        if self.log.term(index) == Some(meta.term) && !self.config.bug(Bug::SnapshotOverNewerLog) {
            // Our log holds the snapshot's last entry, so (log matching) it
            // holds everything the snapshot covers, and the leader only
            // snapshots what is committed: commit and apply our own entries
            // instead of replacing the state (the leader sent it on a stale
            // rejection, say). Applying them answers the forwarded proposals
            // among them, which a restored state could not.
            self.incoming_snapshot = None;
            self.note_leader_match(index);
            self.commit = index;
            self.send(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: index }));
            return;
        }
        if total_bytes > self.config.max_snapshot_bytes {
            self.violation(format!(
                "{from} sent a snapshot of {total_bytes} bytes, more than max_snapshot_bytes {}",
                self.config.max_snapshot_bytes
            ));
            return;
        }
        // Chunks fit together only if they come from one leader's term (two
        // nodes' snapshots of one index need not be byte-identical).
        let source = (from, self.term);
        let same = |incoming: &IncomingSnapshot| {
            incoming.meta == meta && incoming.total_bytes == total_bytes && incoming.source == source
        };
        if offset == 0 && !self.incoming_snapshot.as_ref().is_some_and(same) {
            // The first chunk of a new snapshot replaces any other.
            let meta = meta.clone();
            self.incoming_snapshot = Some(IncomingSnapshot { meta, total_bytes, source, data: Vec::new() });
        }
        let incoming = self.incoming_snapshot.as_mut().filter(|incoming| same(incoming));
        let Some(incoming) = incoming else {
            // A chunk of a snapshot we are not receiving: start over.
            self.send(from, MessageBody::SnapshotChunkResponse { index, received: 0 });
            return;
        };
        if offset == incoming.data.len() as u64 {
            incoming.data.extend_from_slice(&chunk);
        }
        let received = incoming.data.len() as u64;
        if received < total_bytes {
            self.send(from, MessageBody::SnapshotChunkResponse { index, received });
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("checked above");
        self.install_snapshot(from, Snapshot { meta: incoming.meta, data: incoming.data });
    }

    /// A partly received snapshot is dropped (with its buffer, up to
    /// `max_snapshot_bytes`) once it cannot be finished or is no longer
    /// needed: the commit index reached it (the log caught up by appends),
    /// or the term moved on (chunks fit together only within the sending
    /// leader's term). Left behind, it would hold its memory for good and
    /// keep the node from quiescing.
    pub(super) fn drop_stale_incoming_snapshot(&mut self) {
        if self.config.bug(Bug::PartialSnapshotKept) {
            return;
        }
        let stale = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            let covered = incoming.meta.index <= self.commit && !self.config.bug(Bug::SnapshotOverNewerLog);
            covered || incoming.source.1 != self.term
        });
        if stale {
            self.incoming_snapshot = None;
        }
    }

    pub(super) fn install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let meta = snapshot.meta.clone();
        if let Err(error) = self.state_machine.restore(&snapshot.data) {
            self.violation(format!("{from} sent a snapshot at {} the state machine rejected: {error}", meta.index));
            return;
        }
        if self.log.term(meta.index) == Some(meta.term) && !self.config.bug(Bug::SnapshotOverNewerLog) {
            // Our log continues the snapshot: keep what follows it.
            self.compact_log(meta.index);
            self.base_membership = meta.membership.clone();
        } else {
            self.log.reset(meta.index, meta.term);
            self.config_entries.clear();
            self.base_membership = meta.membership.clone();
            let persisted = self.log.persisted();
            self.durability.reset_log(meta.index.next(), persisted);
        }
        self.durability.discard_upto(meta.index);
        self.commit = if self.config.bug(Bug::SnapshotOverNewerLog) { meta.index } else { self.commit.max(meta.index) };
        self.applied = meta.index;
        self.note_leader_match(meta.index);
        for request in self.forwarded.take_placed_upto(meta.index) {
            self.respond(request, ClientResult::Dropped(DropReason::LeadershipLost));
        }
        self.bytes_since_snapshot = 0;
        self.refresh_membership();
        self.event(Event::SnapshotInstalled { index: meta.index, term: meta.term });
        self.durability.store_snapshot(snapshot.clone());
        self.snapshot = Some(snapshot);
        let match_index = meta.index;
        self.send(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }));
    }
}
