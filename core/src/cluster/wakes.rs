//! Quiesced ranges are woken a few at a time. When SWIM declares a node
//! failed, every quiesced range it led must wake and elect; when a node
//! restarts, each of its replicas must find its leader again. Doing all of
//! that in one instant is the thundering herd multi-Raft systems learned to
//! avoid: here at most [`ClusterConfig::max_wakes_per_tick`] ranges wake
//! per `tick_ms`, in range order, and the election timeouts they start are
//! randomised on top.
//!
//! A restarted replica is *held*: its Raft node handles messages as usual
//! (a leader's heartbeat makes it a follower at once), but its timer is not
//! armed until its turn comes (or a client asks it something), so 10,000
//! restarted replicas do not all campaign one election timeout after the
//! restart.
//!
//! [`ClusterConfig::max_wakes_per_tick`]: super::ClusterConfig::max_wakes_per_tick

use super::meta::META_RANGE;
use super::node::ClusterNode;
use crate::partition::RangeId;
use crate::raft::Role;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Time};
use std::collections::{BTreeSet, VecDeque};

/// Why a range is waiting to wake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WakeReason {
    /// The node restarted: release the held replica's timer.
    Restarted,
    /// SWIM declared the range's leader failed.
    LeaderFailed,
}

/// The ranges waiting to wake, and the replicas held since a restart.
#[derive(Debug, Default)]
pub(super) struct Wakes {
    queue: VecDeque<(RangeId, WakeReason)>,
    pub(super) held: BTreeSet<RangeId>,
    next: Time,
}

impl Wakes {
    /// When the next batch is due, if any range waits.
    pub(super) fn due(&self) -> Option<Time> {
        (!self.queue.is_empty()).then_some(self.next)
    }

    /// Ranges waiting to wake.
    pub(super) fn waiting(&self) -> usize {
        self.queue.len()
    }
}

impl<S: StateMachine + Default> ClusterNode<S> {
    /// A restarted node holds every replica it restarted (with quiescence
    /// on) and releases them a batch per tick.
    pub(super) fn hold_restarted(&mut self) {
        if self.config.raft.quiesce_after_ms == 0 {
            return;
        }
        for &range in self.ranges.keys() {
            self.wakes.held.insert(range);
            self.wakes.queue.push_back((range, WakeReason::Restarted));
        }
    }

    /// SWIM declared `node` failed (or it left): queue every quiesced range
    /// this node follows it in.
    pub(super) fn leader_failed(&mut self, node: NodeId) {
        if self.config.bug(super::ClusterBug::QuiescedNeverWakes) {
            return;
        }
        if self.meta.as_ref().is_some_and(|m| m.is_quiesced() && m.role() != Role::Leader && m.leader() == Some(node)) {
            self.wakes.queue.push_back((META_RANGE, WakeReason::LeaderFailed));
        }
        for (&range, hosted) in &self.ranges {
            let raft = &hosted.raft;
            if raft.is_quiesced() && raft.role() != Role::Leader && raft.leader() == Some(node) {
                self.wakes.queue.push_back((range, WakeReason::LeaderFailed));
            }
        }
        self.run_wakes();
    }

    /// A client asked `range` something: a held replica is released now.
    pub(super) fn release(&mut self, range: RangeId) {
        if self.wakes.held.remove(&range) {
            self.touched.insert(range);
        }
    }

    /// Wakes the next batch if it is due.
    pub(super) fn run_wakes(&mut self) {
        if self.wakes.queue.is_empty() || self.now < self.wakes.next {
            return;
        }
        self.wakes.next = self.now.add_millis(self.config.tick_ms);
        let now = self.now;
        for _ in 0..self.config.max_wakes_per_tick {
            let Some((range, reason)) = self.wakes.queue.pop_front() else { break };
            match reason {
                WakeReason::Restarted => self.release(range),
                WakeReason::LeaderFailed if range == META_RANGE => {
                    if let Some(meta) = self.meta.as_mut() {
                        meta.wake(now, true);
                        self.touched.insert(META_RANGE);
                    }
                }
                WakeReason::LeaderFailed => {
                    if let Some(hosted) = self.ranges.get_mut(&range) {
                        hosted.raft.wake(now, true);
                        self.touched.insert(range);
                    }
                }
            }
        }
    }
}
