//! The calm probe (`cost:`): what each kind of client request costs once
//! the faults are over.
//!
//! The other checkers judge what reads and writes *return*; a protocol that
//! answers correctly but slowly (a lease that never holds, reads that wait
//! for a timeout instead of a round, a forwarded write refused as overload,
//! a follower read given up too early) passes them all, because clients
//! retry. The probe judges the *cost*: after healing, once the workload is
//! done and liveness shown, the group is left alone until it is settled (one
//! leader that committed in its term; every member running, in that term,
//! following it, with the leader's log, commit and applied index; no joint
//! configuration). Then the world itself sends [`PROBE_OPS`] requests, one
//! at a time, each at a random moment of the heartbeat cycle, to the node
//! the request kind names, and each must be answered `Ok` within its bound.
//!
//! The bounds follow from the network and disks of the healed run: with `D`
//! the longest one-way delay (nothing is lost, duplicated or reordered after
//! healing), `W` the longest disk write and `H` the heartbeat interval on
//! the fastest clock, and 1 ms of slack per term. A node holds the messages
//! of an input until that input's write is on disk, so any answer may wait
//! up to `W` behind a write it did not cause (a snapshot, a term change):
//! - a write at the leader: its entries go out at once; a follower writes
//!   them and answers (`2D + W`); the leader's own write runs alongside.
//!   Bound `2D + 2W`;
//! - a linearizable read at the leader: at most one round in flight to wait
//!   for and its own round, each `2D + W`;
//! - a lease read at the leader (lease reads on, quiescence off): at once.
//!   Heartbeat rounds every `H` renew a lease that lasts most of an election
//!   timeout, so in a calm group it always holds;
//! - a write at a follower (forwarding on): forwarded (`D`), the leader's
//!   write (`2D + 2W`), and the follower learns the commit, at worst at the
//!   next heartbeat (`H + D`) or by asking (`2D + W`);
//! - a linearizable read at a follower (follower reads on): asked of the
//!   leader (`D`), the leader's read (`2(2D + W)`), the answer (`D`), and
//!   the commit index pulled from the leader (`2D + W`);
//! - a stale read anywhere: at once.
//!
//! A group that does not settle within [`SETTLE_LIMIT_US`] fails too: in a
//! calm network every member must catch up with its leader.
//!
//! Two more duties of a settled group follow the requests:
//! - **the read limit** (`limits:`), where the swarm drew a small
//!   `max_pending_reads`: `max_pending_reads + `[`BURST_EXTRA`]
//!   linearizable reads sent to the leader at one instant (and, with
//!   follower reads on, to a follower) must be served `max_pending_reads`
//!   within the read's bound and the rest refused `Dropped(Overloaded)` at
//!   once: a queue past its limit, or refusals below it, fail;
//! - **disk renewal**: a voter running on a disk its configuration does not
//!   record (it lost its disk, and no operator renewed it) is renewed by
//!   the probe, as an operator would, when quiescence is off (a quiesced
//!   leader has not heard its followers lately, and the core's health check
//!   rightly refuses voter changes then). In a settled group every member
//!   is caught up and heard within a heartbeat, so the leader must accept.

use super::describe::RaftRecord;
use super::world::{node_id, RaftWorld, RequestOwner, SimEvent};
use super::HEARTBEAT_INTERVAL_MS;
use chorus_core::kv::{KvCommand, KvOp, KvQuery};
use chorus_core::raft::{ClientResult, DropReason, MembershipChange, ReadConsistency};
use chorus_core::{NodeId, RequestId};
use rand::Rng;

/// Requests the probe sends, one after another.
pub(super) const PROBE_OPS: u64 = 8;
/// A calm group must settle within this long (before each request).
pub(super) const SETTLE_LIMIT_US: u64 = 5_000_000;
/// How often the probe looks whether the group has settled.
const SETTLE_POLL_US: u64 = 20_000;
/// Slack per term of a bound: events at the same instant, rounding.
const SLACK_US: u64 = 1_000;
/// The largest pause between one answer and the next request: a few
/// heartbeat intervals, so requests land anywhere in the cycle.
const GAP_MAX_US: u64 = 3 * HEARTBEAT_INTERVAL_MS * 1000;
/// Reads the burst sends past `max_pending_reads`.
pub(super) const BURST_EXTRA: usize = 2;

/// The kinds of request the probe sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProbeKind {
    LeaderWrite,
    LeaderRead,
    LeaseRead,
    FollowerWrite,
    FollowerRead,
    StaleRead,
}

impl ProbeKind {
    fn describe(self) -> &'static str {
        match self {
            ProbeKind::LeaderWrite => "a write at the leader",
            ProbeKind::LeaderRead => "a linearizable read at the leader",
            ProbeKind::LeaseRead => "a lease read at the leader",
            ProbeKind::FollowerWrite => "a write at a follower",
            ProbeKind::FollowerRead => "a linearizable read at a follower",
            ProbeKind::StaleRead => "a stale read",
        }
    }
}

/// The request in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    seq: u64,
    kind: ProbeKind,
    node: usize,
    issued_us: u64,
    bound_us: u64,
}

/// A burst of reads in flight: `sent` linearizable reads issued to `node`
/// at one instant.
#[derive(Clone, Copy, Debug)]
struct Burst {
    seq: u64,
    kind: ProbeKind,
    node: usize,
    issued_us: u64,
    bound_us: u64,
    limit: usize,
    sent: usize,
    served: usize,
    refused: usize,
}

/// The probe's progress.
pub(super) struct Probe {
    /// Requests answered so far.
    answered: u64,
    /// When the probe began waiting for the group to settle.
    waiting_since_us: u64,
    in_flight: Option<InFlight>,
    /// The read bursts still to send (leader, follower), last first.
    bursts_left: Vec<ProbeKind>,
    burst: Option<Burst>,
    /// The probe is over (answered all, or failed).
    pub(super) done: bool,
}

/// The bound of `kind` for delay `d`, disk write `w` and heartbeat
/// interval `h` (all microseconds), with its formula for the failure text.
fn bound_of(kind: ProbeKind, d: u64, w: u64, h: u64) -> (u64, &'static str) {
    match kind {
        ProbeKind::LeaderWrite => (2 * d + 2 * w + 3 * SLACK_US, "2D + 2W"),
        ProbeKind::LeaderRead => (4 * d + 2 * w + 2 * SLACK_US, "2(2D + W)"),
        ProbeKind::LeaseRead | ProbeKind::StaleRead => (0, "at once"),
        ProbeKind::FollowerWrite => (5 * d + 3 * w + h + 5 * SLACK_US, "D + (2D + 2W) + H + 2D + W"),
        ProbeKind::FollowerRead => (8 * d + 3 * w + 4 * SLACK_US, "D + 2(2D + W) + D + (2D + W)"),
    }
}

impl RaftWorld {
    /// Starts the probe (once): the workload is done and liveness shown.
    pub(super) fn start_probe(&mut self) {
        if self.probe.is_some() {
            return;
        }
        let mut bursts_left = Vec::new();
        if self.profile.max_pending_reads > 0 {
            if self.profile.follower_reads {
                bursts_left.push(ProbeKind::FollowerRead);
            }
            bursts_left.push(ProbeKind::LeaderRead);
        }
        let now = self.engine.now;
        self.probe =
            Some(Probe { answered: 0, waiting_since_us: now, in_flight: None, bursts_left, burst: None, done: false });
        self.engine.record(RaftRecord::ProbeStarted, &[], || "calm probe: waiting for the group to settle".into());
        self.stop_removed_nodes();
        self.engine.schedule(0, SimEvent::Probe);
    }

    /// The settled leader, if the group has settled (see the module text),
    /// else what keeps it from settling.
    fn settled_leader(&self) -> Result<usize, String> {
        let leader = self.leader().ok_or_else(|| "no leader".to_string())?;
        let raft = self.nodes[leader].raft.as_ref().expect("a leader runs");
        let (term, last, commit) = (raft.term(), raft.last_index(), raft.commit_index());
        if raft.term_at(commit) != Some(term) {
            return Err(format!("leader {} has not committed in its term", node_id(leader)));
        }
        if raft.membership().is_joint() {
            return Err("the configuration is joint".into());
        }
        for member in raft.membership().members() {
            let node = member.0 as usize - 1;
            let Some(other) = self.nodes.get(node).and_then(|sim_node| sim_node.raft.as_ref()) else {
                return Err(format!("member {member} is down"));
            };
            let caught_up = other.term() == term
                && (node == leader || other.leader() == Some(node_id(leader)))
                && other.last_index() == last
                && other.commit_index() == commit
                && other.applied_index() == commit;
            // Reads held from the faults (a follower read whose read-index
            // request was lost waits for its deadline) would take the
            // places the burst counts on.
            let status = other.status();
            let idle = status.local_read_count == 0 && (node != leader || status.pending_read_count == 0);
            if !caught_up || !idle || self.nodes[node].slot.paused {
                return Err(format!(
                    "{member} ({:?}, term {}, last {}, commit {}, applied {}, {} reads held; leader {} has term \
                     {term}, last {last}, commit {commit})",
                    status.role,
                    status.term,
                    status.last_index,
                    status.commit_index,
                    other.applied_index(),
                    status.local_read_count + status.pending_read_count,
                    node_id(leader)
                ));
            }
        }
        Ok(leader)
    }

    /// The probe's clock tick: sends the next request once the group has
    /// settled, or ends the probe.
    pub(super) fn probe_step(&mut self) {
        let Some(probe) = self.probe.as_ref() else {
            return;
        };
        if probe.done || probe.in_flight.is_some() || probe.burst.is_some() {
            return;
        }
        if probe.answered >= PROBE_OPS && probe.bursts_left.is_empty() {
            return self.end_probe(None);
        }
        let (waiting_since_us, requests_left) = (probe.waiting_since_us, probe.answered < PROBE_OPS);
        // As the quiet tail does: a removed node that never learned of its
        // removal campaigns until the operator stops it (there may have
        // been no leader to tell whom to stop when the probe began).
        self.stop_removed_nodes();
        match self.settled_leader() {
            Ok(leader) if self.renewal_due(leader).is_some() => self.probe_renew(leader, waiting_since_us),
            Ok(leader) if requests_left => self.send_probe(leader),
            Ok(leader) => self.send_burst(leader),
            Err(reason) if self.engine.now - waiting_since_us >= SETTLE_LIMIT_US => {
                let limit_s = SETTLE_LIMIT_US as f64 / 1e6;
                self.end_probe(Some(format!("cost: the calm group did not settle within {limit_s}s: {reason}")));
            }
            Err(_) => self.engine.schedule(SETTLE_POLL_US, SimEvent::Probe),
        }
    }

    fn probe_kinds(&self) -> Vec<ProbeKind> {
        let profile = &self.profile;
        let mut kinds = vec![ProbeKind::LeaderWrite, ProbeKind::LeaderRead, ProbeKind::StaleRead];
        if profile.lease_reads && profile.quiesce_after_ms == 0 {
            kinds.push(ProbeKind::LeaseRead);
        }
        if profile.forward_proposals {
            kinds.push(ProbeKind::FollowerWrite);
        }
        if profile.follower_reads {
            kinds.push(ProbeKind::FollowerRead);
        }
        kinds
    }

    fn send_probe(&mut self, leader: usize) {
        let kinds = self.probe_kinds();
        let kind = kinds[self.engine.rng.random_range(0..kinds.len())];
        let raft = self.nodes[leader].raft.as_ref().expect("a leader runs");
        let followers: Vec<usize> =
            raft.membership().members().iter().map(|id| id.0 as usize - 1).filter(|&node| node != leader).collect();
        let node = match kind {
            ProbeKind::LeaderWrite | ProbeKind::LeaderRead | ProbeKind::LeaseRead => leader,
            _ if followers.is_empty() => leader,
            ProbeKind::StaleRead if self.engine.rng.random_bool(0.5) => leader,
            _ => followers[self.engine.rng.random_range(0..followers.len())],
        };
        let (bound_us, _) = self.bound_now(kind);
        let probe = self.probe.as_mut().expect("probing");
        let seq = probe.answered;
        probe.in_flight = Some(InFlight { seq, kind, node, issued_us: self.engine.now, bound_us });
        self.engine.record(RaftRecord::ProbeSent, &[seq, node as u64, kind as u64], || {
            format!("calm probe {seq}: {} ({})", kind.describe(), node_id(node))
        });
        self.engine.schedule(bound_us + 1, SimEvent::ProbeDeadline { seq });
        let sim_node = &mut self.nodes[node];
        sim_node.next_request += 1;
        let request = RequestId(sim_node.next_request);
        sim_node.requests.insert(request.0, RequestOwner::Probe);
        let local = sim_node.slot.clock.local(self.engine.now);
        let raft = sim_node.raft.as_mut().expect("settled members run");
        let key = b"probe".to_vec();
        match kind {
            ProbeKind::LeaderWrite | ProbeKind::FollowerWrite => {
                let value = crate::workload::encode_value(seq as i64);
                raft.propose(local, request, KvCommand { session: None, op: KvOp::Put { key, value } }.encode())
            }
            ProbeKind::LeaderRead | ProbeKind::FollowerRead => {
                raft.read_with(local, request, KvQuery::Get { key }.encode(), ReadConsistency::Linearizable)
            }
            ProbeKind::LeaseRead => {
                raft.read_with(local, request, KvQuery::Get { key }.encode(), ReadConsistency::Lease)
            }
            ProbeKind::StaleRead => {
                raft.read_with(local, request, KvQuery::Get { key }.encode(), ReadConsistency::Stale)
            }
        }
        self.drain(node);
    }

    /// A voter of the settled group whose disk the configuration does not
    /// record, which the probe renews (see the module text).
    fn renewal_due(&self, leader: usize) -> Option<NodeId> {
        if self.profile.quiesce_after_ms > 0 {
            return None;
        }
        let raft = self.nodes[leader].raft.as_ref().expect("a leader runs");
        self.voter_to_renew(raft.membership())
    }

    /// Asks the settled leader to record a voter's new disk. The leader may
    /// refuse while the last acknowledgements are in flight (its view lags
    /// the world's by a message), so a refusal is retried at each poll;
    /// refused until the settling limit, it fails.
    fn probe_renew(&mut self, leader: usize, waiting_since_us: u64) {
        let node = self.renewal_due(leader).expect("a renewal is due");
        match self.ask_change(MembershipChange::RenewDisk(node)) {
            Some(Ok(())) => {
                self.probe.as_mut().expect("probing").waiting_since_us = self.engine.now;
                self.engine.schedule(SETTLE_POLL_US, SimEvent::Probe);
            }
            refused if self.engine.now - waiting_since_us >= SETTLE_LIMIT_US => self.end_probe(Some(format!(
                "cost: the settled leader {} refused for {}s to record {node}'s new disk, last with {refused:?} \
                 (every member is caught up and heard within a heartbeat)",
                node_id(leader),
                SETTLE_LIMIT_US as f64 / 1e6
            ))),
            _ => self.engine.schedule(SETTLE_POLL_US, SimEvent::Probe),
        }
    }

    /// Sends the next read burst: `max_pending_reads + BURST_EXTRA`
    /// linearizable reads at one instant, to the leader or a follower.
    fn send_burst(&mut self, leader: usize) {
        let raft = self.nodes[leader].raft.as_ref().expect("a leader runs");
        let voters = raft.membership().voters.len();
        let followers: Vec<usize> =
            raft.membership().members().iter().map(|id| id.0 as usize - 1).filter(|&node| node != leader).collect();
        let probe = self.probe.as_mut().expect("probing");
        let kind = probe.bursts_left.pop().expect("a burst is left");
        let seq = PROBE_OPS + probe.bursts_left.len() as u64 + 1;
        // A lone voter confirms each read as it arrives: nothing queues.
        if voters < 2 || (kind == ProbeKind::FollowerRead && followers.is_empty()) {
            self.engine.schedule(0, SimEvent::Probe);
            return;
        }
        let node = match kind {
            ProbeKind::LeaderRead => leader,
            _ => followers[self.engine.rng.random_range(0..followers.len())],
        };
        let limit = self.profile.max_pending_reads;
        let sent = limit + BURST_EXTRA;
        let (bound_us, _) = self.bound_now(kind);
        let issued_us = self.engine.now;
        self.probe.as_mut().expect("probing").burst =
            Some(Burst { seq, kind, node, issued_us, bound_us, limit, sent, served: 0, refused: 0 });
        self.engine.record(RaftRecord::ProbeSent, &[seq, node as u64, kind as u64], || {
            format!("calm probe {seq}: {sent} linearizable reads at once ({}, at most {limit} held)", node_id(node))
        });
        self.engine.schedule(bound_us + 1, SimEvent::ProbeDeadline { seq });
        let sim_node = &mut self.nodes[node];
        let local = sim_node.slot.clock.local(self.engine.now);
        for _ in 0..sent {
            sim_node.next_request += 1;
            let request = RequestId(sim_node.next_request);
            sim_node.requests.insert(request.0, RequestOwner::Probe);
            let raft = sim_node.raft.as_mut().expect("settled members run");
            raft.read_with(
                local,
                request,
                KvQuery::Get { key: b"probe".to_vec() }.encode(),
                ReadConsistency::Linearizable,
            );
        }
        self.drain(node);
    }

    /// One answer to the read burst.
    fn burst_answered(&mut self, result: &ClientResult) {
        let now = self.engine.now;
        let probe = self.probe.as_mut().expect("probing");
        let burst = probe.burst.as_mut().expect("a burst is in flight");
        let took_us = now - burst.issued_us;
        let what = format!(
            "of {} linearizable reads sent at once to {} (max_pending_reads = {})",
            burst.sent,
            node_id(burst.node),
            burst.limit
        );
        match result {
            ClientResult::Ok(_) if took_us <= burst.bound_us => burst.served += 1,
            ClientResult::Dropped(DropReason::Overloaded) if took_us == 0 => burst.refused += 1,
            other => {
                let failure = format!("cost: {what}, one was answered {other:?} after {took_us}us");
                return self.end_probe(Some(failure));
            }
        }
        if burst.served + burst.refused < burst.sent {
            return;
        }
        if burst.served != burst.limit {
            let failure = format!(
                "limits: {what}, {} were served and {} refused as overloaded: exactly {} may be held",
                burst.served, burst.refused, burst.limit
            );
            return self.end_probe(Some(failure));
        }
        let (seq, served, refused) = (burst.seq, burst.served, burst.refused);
        probe.burst = None;
        probe.waiting_since_us = now;
        self.engine.record(RaftRecord::ProbeAnswered, &[seq, served as u64, refused as u64], || {
            format!("calm probe {seq}: {served} served, {refused} refused as overloaded")
        });
        let gap = self.engine.rng.random_range(0..=GAP_MAX_US);
        self.engine.schedule(gap, SimEvent::Probe);
    }

    /// The bound of `kind` in this run's healed network.
    fn bound_now(&self, kind: ProbeKind) -> (u64, &'static str) {
        let d = self.network.params.delay_max_us.max(self.network.params.delay_min_us);
        let drift = self.profile.drift_ppm_max.unsigned_abs();
        let h = HEARTBEAT_INTERVAL_MS * 1000 * (1_000_000 + drift) / 1_000_000 + 1;
        bound_of(kind, d, self.profile.disk_latency_max_us, h)
    }

    /// A node answered the probe's request.
    pub(super) fn probe_answered(&mut self, node: usize, result: &ClientResult) {
        if self.probe.as_ref().is_some_and(|probe| probe.burst.is_some()) {
            return self.burst_answered(result);
        }
        let Some(in_flight) = self.probe.as_mut().and_then(|probe| probe.in_flight.take()) else {
            return;
        };
        let took_us = self.engine.now - in_flight.issued_us;
        let seq = in_flight.seq;
        self.engine.record(RaftRecord::ProbeAnswered, &[seq, node as u64, took_us], || {
            format!("calm probe {seq} answered after {took_us}us (bound {}us)", in_flight.bound_us)
        });
        let what = format!("{} ({})", in_flight.kind.describe(), node_id(in_flight.node));
        if !matches!(result, ClientResult::Ok(_)) {
            return self.end_probe(Some(format!("cost: {what} was answered {result:?} in a calm group")));
        }
        if took_us > in_flight.bound_us {
            return self.end_probe(Some(self.over_bound(&in_flight, &what, took_us)));
        }
        let probe = self.probe.as_mut().expect("probing");
        probe.answered += 1;
        probe.waiting_since_us = self.engine.now;
        let gap = self.engine.rng.random_range(0..=GAP_MAX_US);
        self.engine.schedule(gap, SimEvent::Probe);
    }

    fn over_bound(&self, in_flight: &InFlight, what: &str, took_us: u64) -> String {
        let d = self.network.params.delay_max_us.max(self.network.params.delay_min_us);
        let w = self.profile.disk_latency_max_us;
        let (_, formula) = bound_of(in_flight.kind, d, w, HEARTBEAT_INTERVAL_MS * 1000);
        format!(
            "cost: {what} took {:.1} ms in a calm group, over its bound of {:.1} ms ({formula}, with D = {d}us, W = {w}us, H = {HEARTBEAT_INTERVAL_MS} ms)",
            took_us as f64 / 1000.0,
            in_flight.bound_us as f64 / 1000.0
        )
    }

    /// The request `seq` is past its bound.
    pub(super) fn probe_deadline(&mut self, seq: u64) {
        if let Some(burst) = self.probe.as_ref().and_then(|probe| probe.burst).filter(|burst| burst.seq == seq) {
            let failure = format!(
                "cost: of {} linearizable reads sent at once to {}, {} were served and {} refused; the rest are \
                 still unanswered after {:.1} ms ({}, max_pending_reads = {})",
                burst.sent,
                node_id(burst.node),
                burst.served,
                burst.refused,
                burst.bound_us as f64 / 1000.0,
                burst.kind.describe(),
                burst.limit
            );
            return self.end_probe(Some(failure));
        }
        let Some(in_flight) = self.probe.as_ref().and_then(|probe| probe.in_flight).filter(|op| op.seq == seq) else {
            return;
        };
        let what = format!("{} ({})", in_flight.kind.describe(), node_id(in_flight.node));
        let took_us = self.engine.now - in_flight.issued_us;
        let mut failure = self.over_bound(&in_flight, &what, took_us);
        failure.push_str(": still unanswered");
        self.end_probe(Some(failure));
    }

    fn end_probe(&mut self, failure: Option<String>) {
        if let Some(probe) = self.probe.as_mut() {
            probe.done = true;
            probe.in_flight = None;
            probe.burst = None;
        }
        if let Some(failure) = failure {
            self.liveness_failure.get_or_insert(failure);
            return;
        }
        self.finish_or_go_quiet();
    }
}
