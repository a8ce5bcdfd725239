//! The phases after convergence: the idle phase (`--idle-secs`), which
//! measures what an idle cluster costs, and the failover check, which
//! crashes the node leading the most ranges and requires every range it
//! led to elect a leader elsewhere soon after SWIM declares it failed —
//! by itself, before the planner's grace period could have repaired
//! anything: a quiesced range must be woken by the failure detector.

use super::world::{ClusterWorld, Ev};
use chorus_core::cluster::META_RANGE;
use chorus_core::partition::RangeId;
use chorus_core::raft::Role;

/// How long SWIM may take to declare the crashed node failed: a probe
/// reaches it within two rounds of the 5 to 33 members (1 s each), and its
/// suspicion times out after at most `suspicion_max_multiplier` (6) ×
/// log10(n) periods; 30 s is well beyond both.
pub(super) const FAILOVER_DECLARE_BOUND_US: u64 = 30_000_000;
/// How long after the first declaration every range the node led must have
/// a leader again. Each node wakes its replicas when its *own* SWIM
/// declares the failure: its suspicion timer starts when the suspicion
/// reaches it by gossip (200 ms rounds) and Lifeguard shortens it by the
/// confirmations it has heard, so the declarations of 5 to 33 members
/// spread over up to about 2 s. Then the woken ranges are paced at
/// `max_wakes_per_tick` (64) per 10 ms tick (2,000 led ranges: 0.3 s), and
/// one pre-vote and one vote round follow an election timeout (150 to
/// 300 ms, up to 5% longer on a slow clock). 4 s covers that. It must stay
/// below the planner's 5 s grace period: after it, a repair would wake the
/// range too, and a range nobody woke could pass.
pub(super) const FAILOVER_BOUND_US: u64 = 4_000_000;
/// Time between failover checks.
const FAILOVER_CHECK_US: u64 = 50_000;

/// Where the idle phase (`--idle-secs`) started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdleStart {
    at_us: u64,
    events: u64,
    raft_messages: u64,
}

impl ClusterWorld {
    /// Starts the idle phase: nothing more happens but the nodes' own
    /// timers for `idle_secs`.
    pub(super) fn start_idle(&mut self) {
        self.idle_start =
            Some(IdleStart { at_us: self.engine.now, events: self.engine.events, raft_messages: self.raft_messages });
        self.engine.record(8u64, &[], || "idle phase starts".into());
        self.engine.schedule(self.options.idle_secs * 1_000_000, Ev::IdleEnd);
    }

    /// Ends the idle phase and records what it cost.
    pub(super) fn end_idle(&mut self) {
        let start = self.idle_start.expect("the idle phase started");
        let span_us = (self.engine.now - start.at_us).max(1);
        let per_sim_s = |count: u64| count * 1_000_000 / span_us;
        let (mut replicas, mut quiesced) = (0, 0);
        for node in self.nodes.iter().filter_map(|sim| sim.node.as_ref()) {
            let status = node.status();
            replicas += status.ranges.len() as u64;
            quiesced += status.quiesced as u64;
        }
        let converged = self.converged_at.expect("idle comes after convergence");
        self.metrics.idle = Some(super::report::IdleMetrics {
            settled_ms: (start.at_us - converged) / 1000,
            events_per_sim_s: per_sim_s(self.engine.events - start.events),
            raft_messages_per_sim_s: per_sim_s(self.raft_messages - start.raft_messages),
            replicas,
            quiesced,
            heap_bytes_per_replica: None,
        });
        self.idle_over = true;
        self.engine.record(9u64, &[], || format!("idle phase ends: {quiesced} of {replicas} replicas quiesced"));
    }

    /// The heap bytes one hosted replica costs: what dropping every node
    /// gives back, over the replicas they host (measured only under the
    /// `chorus-sim` binary's counting allocator).
    pub(super) fn measure_idle_heap(&mut self) {
        let nodes: Vec<_> = self.nodes.iter_mut().filter_map(|sim| sim.node.take()).collect();
        let replicas: usize = nodes.iter().map(|node| node.status().ranges.len()).sum();
        let freed = crate::heap::net_freed_by(move || drop(nodes));
        if let (Some(freed), Some(idle)) = (freed, self.metrics.idle.as_mut()) {
            idle.heap_bytes_per_replica = Some(freed.max(0) as u64 / replicas.max(1) as u64);
        }
    }
}

/// The failover check in progress.
#[derive(Clone, Debug)]
pub(crate) struct Failover {
    /// The crashed node.
    node: usize,
    /// The ranges it led when it crashed.
    ranges: Vec<RangeId>,
    crashed_at: u64,
    /// When some node first declared it failed.
    declared_at: Option<u64>,
    /// The check is done (passed, failed, or skipped).
    pub(super) over: bool,
}

impl ClusterWorld {
    /// Crashes the running node that leads the most ranges (the lowest
    /// index on a tie) among those whose ranges keep a quorum of running
    /// voters without it, and starts checking that its ranges fail over.
    /// (With `rf` below 3, or a meta voter lost for good, no node may
    /// qualify: there is then nothing to check.)
    pub(super) fn start_failover(&mut self) {
        if self.failover.is_some() {
            return;
        }
        self.metrics.under_replicated_final = self.under_replicated();
        let now = self.engine.now;
        let mut failover = Failover { node: 0, ranges: Vec::new(), crashed_at: now, declared_at: None, over: true };
        let mut candidates: Vec<(usize, Vec<RangeId>)> =
            (0..self.nodes.len()).filter_map(|i| self.led_if_crashable(i).map(|led| (i, led))).collect();
        candidates.sort_by_key(|(i, led)| (std::cmp::Reverse(led.len()), *i));
        if let Some((node, ranges)) = candidates.into_iter().next() {
            failover = Failover { node, ranges, over: false, ..failover };
            let count = failover.ranges.len();
            self.engine
                .record(10u64, &[node as u64], || format!("failover: crash n{}, which leads {count} ranges", node + 1));
            self.crash(node);
            self.engine.schedule(FAILOVER_CHECK_US, Ev::FailoverCheck);
        }
        self.failover = Some(failover);
    }

    /// The ranges node `index` leads, if it leads any and each of them
    /// keeps a quorum of running voters without it.
    fn led_if_crashable(&self, index: usize) -> Option<Vec<RangeId>> {
        let node = self.nodes[index].node.as_ref()?;
        let me = crate::skeleton::node_id(index);
        // Its crash must be news: a node some member already holds failed
        // (declared while cut off, not yet rejoined) cannot be declared
        // again, so its failover could not be timed (seed 250).
        let seen_live = |other: &super::world::SimNode| {
            other.node.as_ref().is_none_or(|peer| peer.swim().member(me).is_some_and(|m| m.state.is_live()))
        };
        if !self.nodes.iter().enumerate().all(|(i, other)| i == index || seen_live(other)) {
            return None;
        }
        let running = |id: chorus_core::NodeId| {
            id != me && (0..self.nodes.len()).any(|i| crate::skeleton::node_id(i) == id && self.is_up(i))
        };
        let mut led = Vec::new();
        for status in node.status().ranges.iter().filter(|r| r.role == Role::Leader) {
            let membership = if status.range == META_RANGE {
                node.meta()?.committed_membership()
            } else {
                node.range(status.range)?.committed_membership()
            };
            if !membership.is_quorum(|id, _| running(id)) {
                return None;
            }
            led.push(status.range);
        }
        (!led.is_empty()).then_some(led)
    }

    /// Some node's SWIM declared `id` failed.
    pub(super) fn node_declared_failed(&mut self, id: chorus_core::NodeId) {
        let now = self.engine.now;
        if let Some(failover) = self.failover.as_mut().filter(|f| crate::skeleton::node_id(f.node) == id) {
            failover.declared_at.get_or_insert(now);
        }
    }

    /// The ranges of the failover set with no leader on a running node.
    fn leaderless(&self, ranges: &[RangeId]) -> Vec<RangeId> {
        let leads = |node: &chorus_core::cluster::ClusterNode<chorus_core::kv::KvStore>, range: RangeId| {
            let role =
                if range == META_RANGE { node.meta().map(|m| m.role()) } else { node.range(range).map(|r| r.role()) };
            role == Some(Role::Leader)
        };
        ranges
            .iter()
            .copied()
            .filter(|&range| !self.nodes.iter().filter_map(|sim| sim.node.as_ref()).any(|node| leads(node, range)))
            .collect()
    }

    pub(super) fn failover_check(&mut self) {
        let failover = self.failover.clone().expect("the failover check started");
        let now = self.engine.now;
        let leaderless = self.leaderless(&failover.ranges);
        let name = failover.node + 1;
        let why = if leaderless.is_empty() {
            self.metrics.failover_ms = Some((now - failover.crashed_at) / 1000);
            self.metrics.failover_after_declared_ms = failover.declared_at.map(|at| (now - at) / 1000);
            None
        } else if let Some(declared) = failover.declared_at.filter(|&at| now > at + FAILOVER_BOUND_US) {
            Some(format!(
                "failover: {} of the {} ranges n{name} led have no leader {} ms after SWIM declared it failed (bound {} ms), e.g. {}",
                leaderless.len(),
                failover.ranges.len(),
                (now - declared) / 1000,
                FAILOVER_BOUND_US / 1000,
                leaderless[0]
            ))
        } else if failover.declared_at.is_none() && now > failover.crashed_at + FAILOVER_DECLARE_BOUND_US {
            Some(format!(
                "failover: no node declared the crashed n{name} failed within {} ms",
                FAILOVER_DECLARE_BOUND_US / 1000
            ))
        } else {
            self.engine.schedule(FAILOVER_CHECK_US, Ev::FailoverCheck);
            return;
        };
        if let Some(why) = why {
            self.checker.fail(why);
        }
        self.failover.as_mut().expect("started").over = true;
        self.engine.record(11u64, &[], || "failover check over".into());
    }
}
