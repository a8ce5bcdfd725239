//! Quiescence in the Raft world (on in the seeds whose profile has
//! `quiesce_after_ms`): the failure detector a driver must provide, and the
//! quiet tail that checks idle groups do go quiet.
//!
//! A quiesced follower runs no election timer, so when its leader dies it
//! waits for [`RaftNode::wake`](chorus_core::raft::RaftNode::wake) or a
//! request. The cluster gets that call from SWIM; here the world plays the
//! failure detector: every [`DETECTOR_INTERVAL_US`] it wakes each quiesced
//! follower whose leader is down, paused or cut off from it.
//!
//! The quiet tail (`quiescence:`): once the workload is done and a leader
//! committed after healing, nothing asks the group for anything. Within
//! [`quiet_tail_us`] the leader and every running member of its
//! configuration must be quiesced. A group that never quiesces (or that a
//! follower keeps waking) fails here; the checkers of what reads and writes
//! return cannot see it, since a group that keeps beating stays correct.

use super::describe::RaftRecord;
use super::world::{node_id, RaftWorld, SimEvent};
use super::{ELECTION_TIMEOUT_MS, HEARTBEAT_INTERVAL_MS};
use chorus_core::raft::{Role, FORWARD_TIMEOUT_ELECTIONS};

/// How often the world's failure detector looks at quiesced followers.
pub(super) const DETECTOR_INTERVAL_US: u64 = 250_000;

/// The quiet tail's length for `quiesce_after_ms`: a forwarded proposal or
/// follower read whose answer was lost in the fault phase holds its
/// follower awake until it expires ([`FORWARD_TIMEOUT_ELECTIONS`] election
/// timeouts after it was sent); then two idle periods (a follower's `Wake`
/// may restart one), a heartbeat interval to reach the deadline, two
/// election timeouts for every member to have been heard from, and 100 ms
/// for messages in flight. Clock drift is a few hundred ppm, well inside it.
pub(super) fn quiet_tail_us(quiesce_after_ms: u64) -> u64 {
    let expiry_ms = FORWARD_TIMEOUT_ELECTIONS * ELECTION_TIMEOUT_MS;
    (expiry_ms + 2 * quiesce_after_ms + HEARTBEAT_INTERVAL_MS + 2 * ELECTION_TIMEOUT_MS + 100) * 1000
}

impl RaftWorld {
    /// The workload is done and liveness shown: the calm probe runs; then
    /// the run ends, or, with quiescence on, the quiet tail begins.
    pub(super) fn finish_or_go_quiet(&mut self) {
        if !self.probe.as_ref().is_some_and(|probe| probe.done) {
            return self.start_probe();
        }
        if self.profile.quiesce_after_ms == 0 {
            self.finished = true;
            return;
        }
        if self.quiet_tail_from.is_some() {
            return;
        }
        self.quiet_tail_from = Some(self.engine.now);
        self.engine.record(RaftRecord::QuietTailStarted, &[], || "quiet tail: the group must quiesce".to_string());
        self.stop_removed_nodes();
        self.engine.schedule(quiet_tail_us(self.profile.quiesce_after_ms), SimEvent::QuietTailEnd);
    }

    /// In the quiet tail (at its start and in each failure-detector round),
    /// the operator shuts down the running nodes the leader's configuration
    /// does not list, as the Raft thesis advises for removed servers (§4.2.3).
    /// Left running, one that never learned of its removal campaigns
    /// forever, and with pre-vote and check-quorum off each campaign
    /// deposes the leader, so the group can never go quiet.
    pub(super) fn stop_removed_nodes(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let members = self.nodes[leader].raft.as_ref().expect("a leader runs").membership().members();
        for node in 0..self.nodes.len() {
            if self.nodes[node].raft.is_some() && !members.contains(&node_id(node)) {
                self.engine.record(RaftRecord::RemovedNodeStopped, &[node as u64], || {
                    format!("operator stops {}, which the configuration no longer lists", node_id(node))
                });
                self.crash(node);
                self.nodes[node].retired = true;
            }
        }
    }

    /// The failure detector's round: wakes each quiesced follower whose
    /// leader is down, paused or cut off from it, as a driver does when
    /// its membership layer declares the leader failed.
    pub(super) fn detect_failures(&mut self) {
        if self.quiet_tail_from.is_some() {
            // A removal may commit during the tail (the operator's last
            // change): its node is stopped in the next round.
            self.stop_removed_nodes();
        }
        for node in 0..self.nodes.len() {
            let sim_node = &self.nodes[node];
            if sim_node.slot.paused {
                continue;
            }
            let Some(raft) = sim_node.raft.as_ref() else {
                continue;
            };
            if !raft.is_quiesced() || raft.role() == Role::Leader {
                continue;
            }
            let Some(leader) = raft.leader().map(|id| id.0 as usize - 1) else {
                continue;
            };
            let failed = leader >= self.nodes.len()
                || self.nodes[leader].raft.is_none()
                || self.nodes[leader].slot.paused
                || self.network.is_blocked(leader, node);
            if !failed {
                continue;
            }
            self.engine.record(RaftRecord::DetectorWoke, &[node as u64, leader as u64], || {
                format!("failure detector: {} wakes, its leader {} failed", node_id(node), node_id(leader))
            });
            let local = self.nodes[node].slot.clock.local(self.engine.now);
            self.nodes[node].raft.as_mut().expect("checked").wake(local, true);
            self.drain(node);
        }
        self.engine.schedule(DETECTOR_INTERVAL_US, SimEvent::DetectFailures);
    }

    /// The end of the quiet tail: the leader and every running member of
    /// its configuration must be quiesced.
    pub(super) fn check_quiet_tail(&mut self) {
        let Some(from) = self.quiet_tail_from else {
            return;
        };
        let idle_ms = (self.engine.now - from) / 1000;
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].raft.as_ref().is_some_and(|raft| raft.role() == Role::Leader))
            .collect();
        let mut awake = Vec::new();
        match leaders.as_slice() {
            [leader] => {
                let raft = self.nodes[*leader].raft.as_ref().expect("a leader runs");
                let members = raft.membership().members();
                for node in 0..self.nodes.len() {
                    let Some(member) = self.nodes[node].raft.as_ref() else {
                        continue;
                    };
                    let id = node_id(node);
                    if members.contains(&id) && !member.is_quiesced() {
                        let status = member.status();
                        awake.push(format!(
                            "{} ({:?}, term {}, last {}, commit {})",
                            id, status.role, status.term, status.last_index, status.commit_index
                        ));
                    }
                }
            }
            _ => awake.push(format!("{} leaders", leaders.len())),
        }
        if !awake.is_empty() {
            let description = format!(
                "quiescence: the group did not quiesce within {idle_ms} ms of idleness (quiesce after {} ms): not quiesced: {}",
                self.profile.quiesce_after_ms,
                awake.join(", ")
            );
            self.liveness_failure = Some(description);
        }
        self.finished = true;
    }
}
