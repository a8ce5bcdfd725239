//! The cluster's checkers, its fault schedule and its convergence rule.

use super::world::{ClusterWorld, Ev, FAULT_PHASE_US};
use crate::check::linearizability::{self, SearchLimits};
use crate::check::reads::ReferenceKv;
use crate::history::{History, Value};
use crate::workload::WeakRead;
use chorus_core::cluster::{ClusterNode, CLUSTER_KEY_MODE};
use chorus_core::kv::KvStore;
use chorus_core::partition::{RangeDescriptor, RangeId, RangeTable};
use chorus_core::raft::{Payload, RaftNode, Role};
use chorus_core::{LogIndex, NodeId, StateMachine, Term};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Watches every step: Raft safety per range, who serves which key, the
/// descriptors' cover.
pub(super) struct Checker {
    failures: Vec<String>,
    /// (range, term) → the node that led it.
    leaders: BTreeMap<(RangeId, Term), usize>,
    /// Per range, the term of every committed index seen.
    committed: BTreeMap<RangeId, BTreeMap<LogIndex, Term>>,
    /// (node, range) → the commit index checked up to.
    checked: BTreeMap<(usize, RangeId), LogIndex>,
    /// The spans every key belongs to (ranges do not split in the cluster).
    owners: RangeTable,
    /// Per node, the descriptor version whose cover was checked.
    covered: BTreeMap<usize, LogIndex>,
    /// The replication factor: no range's committed configuration may have
    /// fewer voters (the planner adds before it removes).
    rf: usize,
    /// Per range, its committed log replayed into a reference store (stale
    /// reads are checked against it), and committed entries seen ahead of
    /// the next one to replay.
    references: BTreeMap<RangeId, ReferenceKv>,
    ahead: BTreeMap<RangeId, BTreeMap<LogIndex, Payload>>,
}

impl Checker {
    pub(super) fn new(ranges: &[RangeDescriptor], rf: usize) -> Checker {
        Checker {
            failures: Vec::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            checked: BTreeMap::new(),
            owners: RangeTable::from_descriptors(ranges.iter().cloned()).expect("the bootstrap layout is a table"),
            covered: BTreeMap::new(),
            rf,
            references: BTreeMap::new(),
            ahead: BTreeMap::new(),
        }
    }

    pub(super) fn fail(&mut self, failure: String) {
        if self.failures.len() < 16 {
            self.failures.push(failure);
        }
    }

    pub(super) fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    /// Two leaders of one range in one term is a safety violation.
    pub(super) fn leader(&mut self, range: RangeId, term: Term, node: usize) {
        if let Some(&other) = self.leaders.get(&(range, term)) {
            if other != node {
                self.fail(format!(
                    "election safety: {range} has two leaders in term {}: n{} and n{}",
                    term.0,
                    other + 1,
                    node + 1
                ));
            }
        } else {
            self.leaders.insert((range, term), node);
        }
    }

    /// A node restarted: its commit indexes start over.
    pub(super) fn node_restarted(&mut self, node: usize) {
        self.checked.retain(|(n, _), _| *n != node);
    }

    /// An answer for `key` came from `range`'s replica.
    pub(super) fn served(&mut self, key: &str, range: RangeId) {
        let owner = self.owners.lookup_key(CLUSTER_KEY_MODE, key.as_bytes()).map(|d| d.id);
        if owner != Some(range) {
            self.fail(format!("routing: key {key} was served by {range}, but {owner:?} owns it"));
        }
    }

    /// After every input to a node: what it committed agrees with what
    /// every other node committed; its descriptors cover the keyspace.
    pub(super) fn after_input(&mut self, index: usize, node: &ClusterNode<KvStore>) {
        if let Some(meta) = node.meta() {
            self.check_log(index, chorus_core::cluster::META_RANGE, meta);
        }
        for (range, raft) in node.hosted() {
            self.check_log(index, range, raft);
            let committed = raft.committed_membership();
            if raft.role() == Role::Leader && !committed.is_joint() && committed.voters.len() < self.rf {
                self.fail(format!(
                    "replicas: {range} committed a configuration of {} voters (rf {}) on leader n{}: a move removed before it added",
                    committed.voters.len(),
                    self.rf,
                    index + 1
                ));
            }
        }
        let version = node.routes().version();
        if !node.routes().is_empty() && self.covered.get(&index) != Some(&version) {
            self.covered.insert(index, version);
            if let Err(error) = chorus_core::partition::check_cover(node.routes().descriptors()) {
                self.fail(format!("cover: n{} routes by descriptors (version {}) that {error}", index + 1, version.0));
            }
        }
    }

    fn check_log<S: StateMachine>(&mut self, index: usize, range: RangeId, raft: &RaftNode<S>) {
        let commit = raft.commit_index();
        let from = self.checked.get(&(index, range)).copied().unwrap_or_default();
        if commit <= from {
            return;
        }
        let seen = self.committed.entry(range).or_default();
        let mut conflict = None;
        for i in from.0 + 1..=commit.0 {
            let Some(term) = raft.term_at(LogIndex(i)) else { continue };
            match seen.get(&LogIndex(i)) {
                Some(&other) if other != term => {
                    conflict = Some((i, other, term));
                    break;
                }
                Some(_) => {}
                None => {
                    seen.insert(LogIndex(i), term);
                    if let Some(entry) = raft.entry(LogIndex(i)).filter(|_| range != chorus_core::cluster::META_RANGE) {
                        self.ahead.entry(range).or_default().insert(LogIndex(i), entry.payload.clone());
                    }
                }
            }
        }
        self.checked.insert((index, range), commit);
        self.replay(range);
        if let Some((i, other, term)) = conflict {
            self.fail(format!(
                "log matching: {range} index {i} committed in term {} elsewhere but in term {} on n{}",
                other.0,
                term.0,
                index + 1
            ));
        }
    }
}

impl Checker {
    /// Replays `range`'s committed entries that are next in line.
    fn replay(&mut self, range: RangeId) {
        let Some(ahead) = self.ahead.get_mut(&range) else { return };
        let reference = self.references.entry(range).or_default();
        while let Some(payload) = ahead.remove(&reference.replayed().next()) {
            let index = reference.replayed().next();
            reference.apply(index, &payload);
        }
    }

    /// Checks every stale read against its range's committed history.
    pub(super) fn check_weak_reads(&mut self, reads: &[(RangeId, WeakRead)]) {
        for (range, read) in reads {
            let result = match self.references.get(range) {
                Some(reference) => reference.check(read, |bytes| Some(i64::from_le_bytes(bytes.try_into().ok()?))),
                None if read.value.is_none() => Ok(()),
                None => Err(format!("stale read of {} on {range}, which committed nothing", read.key)),
            };
            if let Err(problem) = result {
                self.fail(format!("reads: {range}: {problem}"));
            }
        }
    }
}

/// Draws the seed's faults and schedules them; returns them as text.
pub(super) fn schedule_faults(world: &mut ClusterWorld) -> String {
    let n = world.options.nodes;
    let rng = &mut world.engine.rng;
    let mut profile = String::new();
    let mut planned: Vec<(u64, Ev)> = Vec::new();
    for _ in 0..rng.random_range(2..6) {
        let (node, at, down) = (
            rng.random_range(0..n),
            rng.random_range(2_000_000..FAULT_PHASE_US - 3_000_000),
            rng.random_range(300_000..4_000_000),
        );
        let _ = write!(profile, "crash n{} at {} ms for {} ms; ", node + 1, at / 1000, down / 1000);
        planned.push((at, Ev::Crash { node }));
        planned.push((at + down, Ev::Restart { node }));
    }
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(2_000_000..FAULT_PHASE_US - 2_000_000);
        let size = rng.random_range(1..=(n - 1) / 2);
        let mut minority: BTreeSet<usize> = BTreeSet::new();
        while minority.len() < size {
            minority.insert(rng.random_range(0..n));
        }
        let rest: Vec<usize> = (0..=n).filter(|i| !minority.contains(i)).collect();
        let heal = at + rng.random_range(1_000_000..5_000_000);
        let _ = write!(
            profile,
            "isolate {:?} at {} ms until {} ms; ",
            minority.iter().map(|i| i + 1).collect::<Vec<_>>(),
            at / 1000,
            heal / 1000
        );
        planned.push((at, Ev::Partition { groups: vec![minority.into_iter().collect(), rest] }));
        planned.push((heal, Ev::Heal));
    }
    for _ in 0..rng.random_range(0..3) {
        let (node, at) = (rng.random_range(0..n), rng.random_range(2_000_000..FAULT_PHASE_US - 4_000_000));
        let until = at + rng.random_range(200_000..3_000_000);
        let _ = write!(profile, "pause n{} at {} ms until {} ms; ", node + 1, at / 1000, until / 1000);
        planned.push((at, Ev::Pause { node, until }));
    }
    // A node is lost for good only when the others can still hold `rf`
    // replicas of every range (the joining node may come too late).
    let losable = n > world.options.rf;
    if rng.random_bool(0.5) && losable {
        let (node, at) = (rng.random_range(0..n), rng.random_range(4_000_000..15_000_000));
        let _ = write!(profile, "lose n{} for good at {} ms; ", node + 1, at / 1000);
        planned.push((at, Ev::Lose { node }));
    }
    if rng.random_bool(0.5) {
        let at = rng.random_range(3_000_000..25_000_000);
        let _ = write!(profile, "n{} joins at {} ms; ", n + 1, at / 1000);
        planned.push((at, Ev::Join { node: n }));
    }
    for (at, event) in planned {
        world.engine.schedule_at(at, event);
    }
    profile
}

impl ClusterWorld {
    /// Whether the cluster has converged, or what is still wrong.
    pub(super) fn convergence(&self) -> Result<(), String> {
        let live: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].started && !self.nodes[i].lost).collect();
        if let Some(down) = live.iter().find(|&&i| !self.is_up(i)) {
            return Err(format!("n{} is down", down + 1));
        }
        let node = |i: usize| self.nodes[i].node.as_ref().expect("live nodes are up");
        let active: Vec<usize> = live.iter().copied().filter(|&i| node(i).is_active()).collect();
        let [active] = active[..] else { return Err(format!("{} active nodes", active.len())) };
        let store = node(active).meta().expect("the active node holds the meta range").state_machine();
        let live_ids: BTreeSet<NodeId> = live.iter().map(|&i| crate::skeleton::node_id(i)).collect();
        for d in store.descriptors() {
            self.range_converged(d, &live, &live_ids)?;
        }
        // Stale descriptors first: a node that never learned of a removal
        // cannot collect the replica it removed.
        for &i in &live {
            if node(i).routes().version() != store.version() {
                return Err(format!(
                    "n{} routes by descriptors version {}, the meta range is at {}",
                    i + 1,
                    node(i).routes().version().0,
                    store.version().0
                ));
            }
        }
        for &i in &live {
            let id = crate::skeleton::node_id(i);
            if let Some((range, _)) =
                node(i).hosted().find(|(r, _)| store.descriptor(*r).is_none_or(|d| !d.has_replica(id)))
            {
                return Err(format!("n{} still hosts a replica of {range}, which it no longer belongs to", i + 1));
            }
        }
        Ok(())
    }

    fn range_converged(&self, d: &RangeDescriptor, live: &[usize], live_ids: &BTreeSet<NodeId>) -> Result<(), String> {
        let rf = self.options.rf;
        if d.voter_count() != rf || d.learners().count() > 0 {
            return Err(format!(
                "{} has {} voters and {} learners recorded",
                d.id,
                d.voter_count(),
                d.learners().count()
            ));
        }
        if let Some(v) = d.voters().find(|v| !live_ids.contains(v)) {
            return Err(format!("{} has a voter on n{}, which is gone", d.id, v.0));
        }
        let leader = live.iter().find_map(|&i| {
            let raft = self.nodes[i].node.as_ref()?.range(d.id)?;
            (raft.role() == Role::Leader).then_some(raft)
        });
        let Some(leader) = leader else { return Err(format!("{} has no leader", d.id)) };
        let committed = leader.committed_membership();
        let voters: Vec<NodeId> = committed.voters.keys().copied().collect();
        if committed.is_joint() || !d.voters().eq(voters.iter().copied()) || !committed.learners.is_empty() {
            return Err(format!("{}: its group's configuration {committed:?} is not the recorded one", d.id));
        }
        let commit = leader.commit_index();
        if let Some(v) = voters.iter().find(|&&v| v != leader.id() && leader.match_index(v).is_none_or(|m| m < commit))
        {
            return Err(format!(
                "{}: voter n{} has not caught up with the leader's commit index {}",
                d.id, v.0, commit.0
            ));
        }
        Ok(())
    }

    /// After the run: every failure, then the linearizability of the
    /// history, which it returns.
    pub(super) fn check_final(&mut self, failures: &mut Vec<String>) -> History {
        let weak_reads = std::mem::take(&mut self.workload.weak_reads);
        self.metrics.weak_reads = weak_reads.len() as u64;
        self.checker.check_weak_reads(&weak_reads);
        failures.extend(self.checker.failures.iter().cloned());
        failures.extend(self.workload.final_failure.take());
        if failures.is_empty() && self.converged_at.is_none() {
            failures.push("convergence: the run ended before the cluster converged".into());
        }
        let history = History { initial: Value::Nil, operations: std::mem::take(&mut self.workload.history) };
        self.metrics.operations = history.operations.len() as u64;
        if failures.is_empty() {
            failures.extend(linearizability::check(&history, &SearchLimits::default()).failure());
        }
        // Measured before the failover check crashes a node on purpose.
        if self.failover.is_none() {
            self.metrics.under_replicated_final = self.under_replicated();
        }
        history
    }

    pub(super) fn under_replicated(&self) -> u64 {
        let active = self.nodes.iter().filter_map(|n| n.node.as_ref()).find(|n| n.is_active());
        let Some(store) = active.and_then(|n| n.meta()).map(|m| m.state_machine()) else { return 0 };
        let live: BTreeSet<NodeId> =
            (0..self.nodes.len()).filter(|&i| self.is_up(i)).map(crate::skeleton::node_id).collect();
        store.descriptors().filter(|d| d.voters().filter(|v| live.contains(v)).count() < self.options.rf).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::ReadLevel;
    use chorus_core::kv::{KvCommand, KvOp};

    fn read(value: Option<i64>, served_at: u64) -> WeakRead {
        WeakRead {
            client: 0,
            key: "k1".into(),
            value,
            level: ReadLevel::Stale,
            served_at: LogIndex(served_at),
            session: LogIndex::ZERO,
        }
    }

    #[test]
    fn a_stale_read_must_return_the_committed_value_at_the_index_it_was_served_at() {
        let layout = chorus_core::cluster::Bootstrap::even(&[NodeId(1), NodeId(2), NodeId(3)], 1, 3, 3).unwrap();
        let mut checker = Checker::new(&layout.ranges, 3);
        let put = |v: i64| {
            let op = KvOp::Put { key: b"k1".to_vec(), value: v.to_le_bytes().to_vec() };
            Payload::Command(KvCommand { session: None, op }.encode().into())
        };
        // Index 2 arrives before index 1: it waits, then both replay.
        let range = RangeId(1);
        checker.ahead.entry(range).or_default().insert(LogIndex(2), put(8));
        checker.replay(range);
        checker.ahead.entry(range).or_default().insert(LogIndex(1), put(7));
        checker.replay(range);
        checker.check_weak_reads(&[(range, read(None, 0)), (range, read(Some(7), 1)), (range, read(Some(8), 2))]);
        assert!(!checker.failed(), "{:?}", checker.failures);
        checker.check_weak_reads(&[(range, read(Some(8), 1))]);
        assert!(checker.failures.iter().any(|f| f.contains("stale read")), "{:?}", checker.failures);
        checker.check_weak_reads(&[(range, read(Some(8), 3))]);
        assert!(checker.failures.iter().any(|f| f.contains("never committed")), "{:?}", checker.failures);
        // A session read served before the client's token breaks
        // read-your-writes, even with the value committed there.
        let session = WeakRead { level: ReadLevel::Session, session: LogIndex(2), ..read(Some(7), 1) };
        checker.check_weak_reads(&[(range, session)]);
        assert!(checker.failures.iter().any(|f| f.contains("read-your-writes")), "{:?}", checker.failures);
    }
}
