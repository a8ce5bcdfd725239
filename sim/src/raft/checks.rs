//! Checker glue: what the world tells the safety checker and the reference
//! store after each step, and the liveness checks after healing.

use super::world::{node_id, RaftWorld};
use super::WORKLOAD_TAIL_US;
use crate::check::linearizability::{self, SearchLimits};
use crate::check::safety::ElectionView;
use crate::history::{History, Value};
use chorus_core::raft::{Message, MessageBody, Role};
use chorus_core::{LogIndex, NodeId, Term, Time};

impl RaftWorld {
    /// The newest committed entry must be safe from every possible election.
    pub(super) fn check_commit_protected(&mut self) {
        let index = chorus_core::LogIndex(self.checker.committed_len() as u64);
        let committed_term = self.checker.committed_term(index);
        let initial_voters: Vec<NodeId> = (0..self.options.nodes).map(node_id).collect();
        let views: Vec<ElectionView> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(position, sim_node)| {
                let durable_last = sim_node.disk.last();
                let (last, holds, membership) = match sim_node.raft.as_ref() {
                    Some(raft) => {
                        let covered = raft.snapshot().is_some_and(|snapshot| snapshot.meta.index >= index);
                        let holds = covered || raft.term_at(index) == committed_term;
                        ((raft.status().last_term, raft.last_index()), holds, raft.membership().clone())
                    }
                    None if sim_node.wiped || sim_node.disk.hard_state.disk != sim_node.disk_id => return None,
                    None => {
                        // A crashed node campaigns with what its disk holds.
                        let disk = &sim_node.disk;
                        let covered = disk.snapshot.as_ref().is_some_and(|snapshot| snapshot.meta.index >= index);
                        let holds = covered || disk.term_at(index) == committed_term;
                        (durable_last, holds, disk.membership(&initial_voters))
                    }
                };
                Some(ElectionView {
                    id: node_id(position),
                    disk: sim_node.disk_id,
                    votes: sim_node.votes,
                    membership,
                    last,
                    holds,
                    durable_last,
                })
            })
            .collect();
        self.checker.check_commit_protected(index, &views);
    }

    pub(super) fn check_finished(&mut self) {
        if let Some(healed_at) = self.healed_at {
            if self.leader_progress_after_heal
                && self.engine.now >= healed_at + WORKLOAD_TAIL_US
                && self.workload.all_idle()
            {
                self.finish_or_go_quiet();
            }
        }
    }

    pub(super) fn check_liveness_deadline(&mut self) {
        self.check_finished();
        if self.finished || self.quiet_tail_from.is_some() || self.probe.is_some() {
            return;
        }
        let bound_s = self.options.liveness_bound_us as f64 / 1e6;
        let failure = if !self.leader_progress_after_heal {
            format!("liveness: no leader committed anything within {bound_s}s after healing")
        } else {
            let pending: Vec<String> = self
                .workload
                .pending()
                .map(|(client, invoked)| format!("c{client} (invoked at {})", Time::from_micros(invoked)))
                .collect();
            format!("liveness: client operations still pending {bound_s}s after healing: {}", pending.join(", "))
        };
        self.liveness_failure = Some(failure);
    }

    /// Tells the safety checker and the reference store what `node` just
    /// did. Returns whether a leader committed something, or `None` if the
    /// node is not running.
    pub(super) fn check_step(&mut self, node: usize, roles: Vec<(Role, Term)>) -> Option<bool> {
        let raft = self.nodes[node].raft.as_ref()?;
        let leads = raft.role() == Role::Leader;
        let led = std::mem::replace(&mut self.nodes[node].led, leads)
            || leads
            || roles.iter().any(|(role, _)| *role == Role::Leader);
        let raft = self.nodes[node].raft.as_ref().expect("running");
        for (role, term) in roles {
            self.checker.on_role(node, role, term, raft);
        }
        let commit_before = self.checker.commit_seen(node);
        let committed_before = self.checker.committed_len();
        self.checker.after_step(node, raft);
        if self.checker.committed_len() > committed_before {
            // Replay what this node just committed into the reference store
            // (compaction waits an input, so the entries are still held).
            for index in self.reference.replayed().0 + 1..=self.checker.committed_len() as u64 {
                let index = chorus_core::LogIndex(index);
                let Some(entry) = raft.entry(index) else {
                    break; // the checker already reported how this node committed it
                };
                self.reference.apply(index, &entry.payload);
            }
            self.check_commit_protected();
        }
        self.check_snapshot_policy(node, led);
        let raft = self.nodes[node].raft.as_ref().expect("still running");
        let leader_committed = raft.role() == Role::Leader && raft.commit_index() > commit_before;
        if self.healed_at.is_some() && leader_committed {
            self.leader_progress_after_heal = true;
            self.check_finished();
        }
        Some(leader_committed)
    }

    /// The append limits (`limits:`): an append carries at most
    /// `max_entries_per_append` entries, and more than one only if their
    /// bytes fit `max_append_bytes` (the first entry always goes, whatever
    /// its size). A leader that overfills its appends stays correct, so only
    /// this sees it.
    pub(super) fn check_append_limits(&mut self, from: usize, message: &Message) {
        let MessageBody::AppendEntries { entries, .. } = &message.body else {
            return;
        };
        let raft = self.nodes[from].raft.as_ref().expect("a running node sends");
        let config = raft.config();
        let bytes: usize = entries.iter().map(|entry| entry.payload.len_bytes()).sum();
        let over_bytes = entries.len() > 1 && bytes > config.max_append_bytes;
        if entries.len() > config.max_entries_per_append || over_bytes {
            self.checker.violations.push(format!(
                "limits: {} sent an append of {} entries and {bytes} bytes to {}, over its limits of {} entries and {} bytes",
                node_id(from),
                entries.len(),
                message.to,
                config.max_entries_per_append,
                config.max_append_bytes
            ));
        }
    }

    /// The snapshot policy (`snapshot:`). A node snapshots at the end of an
    /// input, before it applies, once `entries` entries are applied past its
    /// snapshot (`SnapshotPolicy::entries`), and then keeps only
    /// `max_retained_entries` of the log before the snapshot. So after each
    /// input, with `A` the applied index before it: (1) `A` is less than
    /// `entries` past the snapshot; (2) if the policy was due at `A`, the
    /// log starts at most `max_retained_entries` before the snapshot. A node
    /// that never snapshots, or never compacts, fails as soon as its log
    /// outgrows the policy. A leader may take a snapshot for a joiner in
    /// the same input, which does not compact and leaves the policy nothing
    /// to do, so (2) is judged on inputs that a follower or candidate
    /// handled throughout (`led` is false). (3) Such a node takes a snapshot
    /// of its own (not a leader's, installed) only when the policy is due:
    /// one that snapshots more often than asked wastes its disk.
    fn check_snapshot_policy(&mut self, node: usize, led: bool) {
        let (entries, retained) = (self.profile.snapshot_every_entries, self.profile.max_retained_entries);
        let sim_node = &mut self.nodes[node];
        let Some(raft) = sim_node.raft.as_ref() else {
            return;
        };
        let status = raft.status();
        let snapshot = raft.snapshot().map_or(LogIndex::ZERO, |snapshot| snapshot.meta.index);
        // A step that changed neither was a call outside an input (an
        // operator's request refused, say): the policy only runs at the
        // end of an input.
        let now_seen = (status.applied_index, snapshot);
        let installed = std::mem::take(&mut sim_node.installed);
        let Some((before, snapshot_before)) = sim_node.applied_seen.filter(|seen| *seen != now_seen) else {
            sim_node.applied_seen = Some(now_seen);
            return;
        };
        sim_node.applied_seen = Some(now_seen);
        if self.checker.violations.iter().any(|failure| failure.starts_with("snapshot:")) {
            return;
        }
        let behind = before.0.saturating_sub(snapshot.0);
        let kept = snapshot.0.saturating_sub(status.first_index.0.saturating_sub(1));
        let due = entries > 0 && before.0.saturating_sub(snapshot_before.0) >= entries;
        let own = snapshot > snapshot_before && !installed && !led;
        let failure = if own && !due {
            format!("{} took a snapshot at {snapshot} though its policy was not due: the previous one is at {snapshot_before}, the policy snapshots every {entries} entries (0: never)", node_id(node))
        } else if entries == 0 {
            return;
        } else if behind >= entries {
            format!("{} had applied {before} and its snapshot is at {snapshot}: {behind} entries, the policy snapshots every {entries}", node_id(node))
        } else if due && !led && kept > retained {
            format!("{} snapshotted at {snapshot} and still holds the log from {}: {kept} entries before the snapshot, max_retained_entries is {retained}", node_id(node), status.first_index)
        } else {
            return;
        };
        let now = Time::from_micros(self.engine.now);
        self.checker.violations.push(format!("snapshot: {failure} (at {now})"));
    }

    /// After the event loop: every failure the checkers hold, then (if none)
    /// the linearizability of the client history, which it returns.
    pub(super) fn check_final(&mut self, failures: &mut Vec<String>) -> History {
        failures.extend(self.checker.violations.iter().cloned());
        failures.extend(self.read_failure.take());
        failures.extend(self.workload.wrong_answer.take());
        if let Some(failure) = self.liveness_failure.take() {
            failures.push(failure);
        }
        self.workload.finish();
        let history = History { initial: Value::Nil, operations: std::mem::take(&mut self.workload.history) };
        if failures.is_empty() {
            failures.extend(linearizability::check(&history, &SearchLimits::default()).failure());
        }
        history
    }
}
