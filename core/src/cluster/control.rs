//! The active node: the meta range's leader runs the planner, sends its
//! operations to the ranges' leaders, and records every committed
//! configuration in the meta range.

use super::message::{
    ClusterMessage, CommandKind, CommandResult, RangeCommand, RangeReport, MAX_DESCRIPTORS_PER_MESSAGE,
};
use super::meta::{self, MetaCommand, MetaOutcome, META_RANGE};
use super::node::{ClusterNode, Waiter};
use super::nodemeta::NodeMeta;
use super::output::ClusterEvent;
use crate::partition::{
    Liveness, NodeInfo, OpFailure, OpId, OpOutcome, Operation, Planner, PlannerAction, RangeId, RangeLoad,
};
use crate::raft::{ClientResult, Role};
use crate::state_machine::StateMachine;
use crate::swim::{self, MemberState};
use crate::types::{LogIndex, NodeId, Term, Time};
use std::collections::BTreeMap;

/// Largest number of operations the active node tracks at once (the
/// planner's own limits are far lower).
const MAX_OPERATIONS: usize = 65_536;

/// Most bootstrap parts proposed at once.
const MAX_BOOTSTRAP_PARTS_IN_FLIGHT: usize = 32;

/// `ranges` cut into parts of at most `max_bytes` encoded (one descriptor
/// per part at least, so every part is proposable when one descriptor is).
fn bootstrap_parts(
    ranges: &[crate::partition::RangeDescriptor],
    max_bytes: usize,
) -> Vec<Vec<crate::partition::RangeDescriptor>> {
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = 0;
    for descriptor in ranges {
        let size = meta::encoded_len(descriptor);
        if !part.is_empty() && bytes + size > max_bytes {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += size;
        part.push(descriptor.clone());
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// An operation sent to a range's leader.
#[derive(Clone, Debug)]
struct InFlight {
    range: RangeId,
    kind: CommandKind,
    deadline: Time,
}

/// The active node's state: exists only while this node leads the meta
/// range and its state machine has caught up with its term.
pub(super) struct Control {
    pub(super) planner: Planner,
    pub(super) term: Term,
    ops: BTreeMap<u64, InFlight>,
    /// Per range, the latest commit index a record was proposed for.
    proposed: BTreeMap<RangeId, LogIndex>,
}

impl Control {
    pub(super) fn poll_timeout(&self) -> Time {
        let earliest = self.ops.values().map(|op| op.deadline).min().unwrap_or(Time::from_micros(u64::MAX));
        self.planner.poll_timeout().min(earliest)
    }
}

impl<S: StateMachine + Default> ClusterNode<S> {
    /// Starts or stops being the active node as meta leadership comes and
    /// goes; bootstraps the descriptors on a new cluster.
    pub(super) fn update_control(&mut self) {
        let Some(meta) = self.meta.as_ref() else {
            self.stop_control();
            return;
        };
        let term = meta.term();
        let leading = meta.role() == Role::Leader;
        let caught_up =
            leading && meta.term_at(meta.commit_index()) == Some(term) && meta.applied_index() == meta.commit_index();
        let empty = meta.state_machine().descriptors().next().is_none();
        let descriptors: Vec<_> = if caught_up && !empty && self.control.as_ref().is_none_or(|c| c.term != term) {
            meta.state_machine().descriptors().cloned().collect()
        } else {
            Vec::new()
        };
        if !caught_up {
            if !leading {
                self.stop_control();
            }
            return;
        }
        if self.control.as_ref().is_some_and(|control| control.term == term) {
            return;
        }
        self.stop_control();
        if empty {
            self.propose_bootstrap();
            return;
        }
        let nodes = self.planner_nodes();
        let seed = self.config.rng_seed ^ term.0;
        let mut planner_config = self.config.planner.clone();
        if self.config.bug(super::ClusterBug::RemoveBeforeAdd) {
            planner_config.injected_bug = Some(crate::partition::Bug::RemoveBeforeAdd);
        }
        let planner = Planner::new(planner_config, seed, self.now, nodes, descriptors)
            .expect("the planner configuration was validated with the node's");
        self.control = Some(Control { planner, term, ops: BTreeMap::new(), proposed: BTreeMap::new() });
        self.event(ClusterEvent::Active(true));
    }

    fn stop_control(&mut self) {
        if self.control.take().is_some() {
            self.event(ClusterEvent::Active(false));
        }
    }

    /// Proposes the parts of the bootstrap layout the meta range does not
    /// hold yet, at most [`MAX_BOOTSTRAP_PARTS_IN_FLIGHT`] at a time and
    /// only when nothing else is in flight (a refused or lost proposal is
    /// proposed again on the next input that finds the log settled; a
    /// part committed twice is ignored).
    fn propose_bootstrap(&mut self) {
        let Some(meta) = self.meta.as_ref() else { return };
        if meta.last_index() != meta.commit_index() {
            return;
        }
        let Some(bootstrap) = self.config.bootstrap.as_ref() else { return };
        let max_bytes = self.config.raft.max_command_bytes / 2;
        let parts = self.bootstrap_parts.get_or_insert_with(|| bootstrap_parts(&bootstrap.ranges, max_bytes));
        let total = parts.len() as u32;
        let missing: Vec<u32> =
            meta.state_machine().missing_bootstrap_parts(total).take(MAX_BOOTSTRAP_PARTS_IN_FLIGHT).collect();
        let commands: Vec<MetaCommand> = missing
            .into_iter()
            .map(|part| MetaCommand::Bootstrap { part, parts: total, ranges: parts[part as usize].clone() })
            .collect();
        for command in commands {
            self.propose_meta(command, None);
        }
    }

    /// Every node SWIM knows (and this one), as the planner sees them.
    fn planner_nodes(&self) -> Vec<NodeInfo> {
        let mut nodes =
            vec![NodeInfo::new(self.config.id, self.config.locality.clone(), self.config.capacity, self.now)];
        for member in self.swim.members().filter(|m| m.id != self.config.id) {
            let Some(meta) = NodeMeta::decode(&member.metadata) else { continue };
            let mut info = NodeInfo::new(member.id, meta.locality, meta.capacity.max(1), self.now);
            info.liveness = liveness(member.state);
            nodes.push(info);
        }
        nodes
    }

    fn propose_meta(&mut self, command: MetaCommand, op: Option<u64>) {
        let Some(request) = self.request_id(META_RANGE, Waiter::MetaRecord { op }) else { return };
        let Some(meta) = self.meta.as_mut() else { return };
        meta.propose(self.now, request, meta::encode_command(&command));
        self.touched.insert(META_RANGE);
    }

    /// The meta range's state machine may have changed: adopt its
    /// descriptors for routing, and tell the planner.
    pub(super) fn meta_changed(&mut self) {
        let Some(meta) = self.meta.as_ref() else { return };
        let store = meta.state_machine();
        if store.version() <= self.table.version() && !(self.table.is_empty() && store.version().0 > 0) {
            return;
        }
        let descriptors: Vec<_> = store.descriptors().cloned().collect();
        let version = store.version();
        let recorded = store.recorded().collect();
        if self.table.install(version, descriptors.clone(), Vec::new(), recorded) {
            self.event(ClusterEvent::DescriptorsUpdated(version.0));
        }
        if let Some(control) = self.control.as_mut() {
            for descriptor in descriptors {
                control.planner.range_updated(self.now, descriptor);
            }
        }
    }

    /// The meta range answered a record this node proposed.
    pub(super) fn record_answered(&mut self, op: Option<u64>, result: ClientResult) {
        let Some(op) = op else { return };
        let Some(control) = self.control.as_mut() else { return };
        let Some(flight) = control.ops.remove(&op) else { return };
        let outcome = match result {
            ClientResult::Ok(bytes) => match meta::decode_outcome(&bytes) {
                Ok(MetaOutcome::Rejected(why)) => OpOutcome::Failed(OpFailure::Other(why)),
                Ok(_) => {
                    let store = self.meta.as_ref().expect("control implies a meta replica").state_machine();
                    OpOutcome::Applied {
                        descriptors: store.descriptor(flight.range).cloned().into_iter().collect(),
                        removed: None,
                    }
                }
                Err(why) => OpOutcome::Failed(OpFailure::Other(why)),
            },
            other => OpOutcome::Failed(OpFailure::Other(format!("meta record: {other:?}"))),
        };
        control.planner.operation_finished(self.now, OpId(op), outcome.clone());
        self.event(ClusterEvent::OperationFinished { op, range: flight.range, outcome: format!("{outcome:?}") });
    }

    /// Starts what the planner asked for.
    pub(super) fn drain_control(&mut self) {
        loop {
            let Some(control) = self.control.as_mut() else { return };
            let Some(action) = control.planner.poll_action() else { return };
            match action {
                PlannerAction::Start(operation) => self.start_operation(operation),
                PlannerAction::Event(event) => self.event(ClusterEvent::Planner(event)),
            }
        }
    }

    fn start_operation(&mut self, operation: Operation) {
        let now = self.now;
        let timeout = self.config.operation_timeout_ms;
        let me = self.config.id;
        let current = self.meta.as_ref().and_then(|m| m.state_machine().descriptor(operation.range).cloned());
        let target = self.command_target(operation.range, operation.id.0, current.as_ref());
        let control = self.control.as_mut().expect("called while active");
        let failure = match (CommandKind::from_op(&operation.kind), &current, target) {
            (None, _, _) => Some(OpFailure::Other("splits and merges are not run by the cluster yet".into())),
            (_, Some(d), _) if d.generation != operation.generation => Some(OpFailure::StaleGeneration),
            (_, None, _) | (_, _, None) => Some(OpFailure::Other("no known replica to ask".into())),
            _ => None,
        };
        if let Some(failure) = failure
            .or_else(|| (control.ops.len() >= MAX_OPERATIONS).then(|| OpFailure::Other("too many operations".into())))
        {
            let outcome = format!("{failure:?}");
            control.planner.operation_finished(now, operation.id, OpOutcome::Failed(failure));
            self.event(ClusterEvent::OperationFinished { op: operation.id.0, range: operation.range, outcome });
            return;
        }
        let (kind, target) = (CommandKind::from_op(&operation.kind).expect("checked"), target.expect("checked"));
        control.ops.insert(
            operation.id.0,
            InFlight { range: operation.range, kind: kind.clone(), deadline: now.add_millis(timeout) },
        );
        let expected =
            current.as_ref().map_or_else(Default::default, |d| (d.voters().collect(), d.learners().collect()));
        let command = RangeCommand {
            from: me,
            meta_term: control.term,
            op: operation.id.0,
            range: operation.range,
            kind,
            expected,
        };
        self.event(ClusterEvent::OperationStarted {
            op: operation.id.0,
            range: operation.range,
            what: format!("{:?}", operation.kind),
        });
        if target == me {
            self.handle_command(command);
        } else {
            self.send(target, ClusterMessage::Command(command));
        }
    }

    /// Where to send an operation on `range`: the leader believed in, if
    /// SWIM says it is alive; otherwise one of the recorded voters that is,
    /// a different one for each attempt.
    fn command_target(
        &self,
        range: RangeId,
        op: u64,
        current: Option<&crate::partition::RangeDescriptor>,
    ) -> Option<NodeId> {
        let alive = |node: NodeId| {
            node == self.config.id || self.swim.member(node).is_some_and(|m| m.state == MemberState::Alive)
        };
        if let Some(leader) = self.table.leader(range).filter(|&l| alive(l)) {
            return Some(leader);
        }
        let voters: Vec<NodeId> = current?.voters().filter(|&v| alive(v)).collect();
        (!voters.is_empty()).then(|| voters[op as usize % voters.len()])
    }

    /// A range leader's answer to an operation.
    pub(super) fn handle_command_done(&mut self, _from: NodeId, op: u64, meta_term: Term, result: CommandResult) {
        let now = self.now;
        let Some(control) = self.control.as_mut().filter(|c| c.term == meta_term) else { return };
        let Some(flight) = control.ops.get(&op).cloned() else { return };
        let outcome = match result {
            CommandResult::Applied(report) => {
                if self.record(&report, Some(op)) {
                    return;
                }
                let store = self.meta.as_ref().expect("active").state_machine();
                OpOutcome::Applied {
                    descriptors: store.descriptor(flight.range).cloned().into_iter().collect(),
                    removed: None,
                }
            }
            CommandResult::TransferStarted => match flight.kind {
                CommandKind::TransferLeader(target) => OpOutcome::LeaderMoved(target),
                _ => OpOutcome::Failed(OpFailure::Other("a transfer answer to a membership change".into())),
            },
            CommandResult::NotLeader(hint) => {
                self.table.forget(flight.range);
                if let Some(hint) = hint {
                    self.table.note_leader(flight.range, hint, Term(0));
                }
                OpOutcome::Failed(OpFailure::Other("asked a replica that does not lead".into()))
            }
            CommandResult::Failed(why) => OpOutcome::Failed(OpFailure::Other(why)),
        };
        let control = self.control.as_mut().expect("checked above");
        control.ops.remove(&op);
        control.planner.operation_finished(now, OpId(op), outcome.clone());
        self.event(ClusterEvent::OperationFinished { op, range: flight.range, outcome: format!("{outcome:?}") });
    }

    /// Proposes recording a range's reported configuration, unless nothing
    /// changed or an as new record is already proposed. Returns whether a
    /// record was proposed.
    fn record(&mut self, report: &RangeReport, op: Option<u64>) -> bool {
        let Some(voters) = report.voters.clone() else { return false };
        let Some(control) = self.control.as_mut() else { return false };
        let Some(current) = self.meta.as_ref().and_then(|m| m.state_machine().descriptor(report.range)) else {
            return false;
        };
        let same =
            current.voters().eq(voters.iter().copied()) && current.learners().eq(report.learners.iter().copied());
        if same && op.is_none() {
            return false;
        }
        if op.is_none() && control.proposed.get(&report.range).is_some_and(|&p| p >= report.commit) {
            return false;
        }
        control.proposed.insert(report.range, report.commit);
        let command = MetaCommand::Record {
            range: report.range,
            as_of: report.commit,
            voters,
            learners: report.learners.clone(),
        };
        self.propose_meta(command, op);
        true
    }

    /// Reports from a node on the ranges it leads.
    pub(super) fn handle_reports(&mut self, from: NodeId, reports: Vec<RangeReport>) {
        if self.control.is_none() {
            return;
        }
        for report in reports {
            self.table.note_leader(report.range, from, report.term);
            let load = RangeLoad {
                size_bytes: report.size_bytes,
                qps: 0.0,
                size_midpoint: None,
                load_midpoint: None,
                hottest_key: None,
            };
            if let Some(control) = self.control.as_mut() {
                control.planner.range_load(self.now, report.range, Some(from), load);
            }
            self.record(&report, None);
        }
    }

    /// Operations whose leader never answered.
    pub(super) fn control_timeout(&mut self) {
        let now = self.now;
        let Some(control) = self.control.as_mut() else { return };
        let expired: Vec<u64> = control.ops.iter().filter(|(_, op)| op.deadline <= now).map(|(&id, _)| id).collect();
        for op in expired {
            let Some(flight) = control.ops.remove(&op) else { continue };
            self.table.forget(flight.range);
            control.planner.operation_finished(now, OpId(op), OpOutcome::Failed(OpFailure::Other("timed out".into())));
            let event = ClusterEvent::OperationFinished { op, range: flight.range, outcome: "timed out".into() };
            self.actions.push_back(super::output::ClusterAction::Event(event));
        }
        if control.planner.poll_timeout() <= now {
            control.planner.handle_timeout(now);
        }
    }

    /// Answers a request for the descriptors.
    pub(super) fn answer_fetch(&mut self, from: NodeId) {
        if self.table.is_empty() {
            return;
        }
        let descriptors: Vec<_> = self.table.descriptors().take(MAX_DESCRIPTORS_PER_MESSAGE).cloned().collect();
        let leaders = self.table.leaders().collect();
        let version = self.table.version();
        let recorded = self.table.recorded().collect();
        self.send(from, ClusterMessage::MetaTable { version, descriptors, leaders, recorded });
    }

    /// Asks a member that published a newer meta version for its copy.
    pub(super) fn maybe_fetch_descriptors(&mut self) {
        self.next_fetch = self.now.add_millis(self.config.meta_fetch_interval_ms);
        if self.config.bug(super::ClusterBug::NoDescriptorGossip) {
            return;
        }
        let mine = self.table.version();
        let newest = self
            .swim
            .members()
            .filter(|m| m.state == MemberState::Alive && m.id != self.config.id)
            .filter_map(|m| NodeMeta::decode(&m.metadata).map(|meta| (meta.meta_version, m.id)))
            .max();
        if let Some((_, holder)) = newest.filter(|(version, _)| *version > mine) {
            let from = self.config.id;
            self.send(holder, ClusterMessage::MetaFetch { from });
        }
    }

    /// What SWIM learned, for routing and the planner.
    pub(super) fn swim_event(&mut self, event: swim::Event) {
        let now = self.now;
        let announce = matches!(event, swim::Event::Joined(_) | swim::Event::AliveAgain(_));
        let (node, liveness, record) = match event {
            swim::Event::Joined(record) | swim::Event::AliveAgain(record) | swim::Event::Updated(record) => {
                (record.id, Liveness::Live, Some(record))
            }
            swim::Event::Suspected { member, .. } => (member, Liveness::Suspect, None),
            swim::Event::Failed { member, .. } => (member, Liveness::Dead, None),
            swim::Event::Left { member, .. } => (member, Liveness::Left, None),
            _ => return,
        };
        match liveness {
            Liveness::Live if announce && record.as_ref().is_some_and(|r| r.state == MemberState::Alive) => {
                self.event(ClusterEvent::NodeJoined(node))
            }
            Liveness::Dead => {
                self.table.forget_leader(node);
                self.event(ClusterEvent::NodeFailed(node));
                self.leader_failed(node);
            }
            Liveness::Left => {
                self.table.forget_leader(node);
                self.event(ClusterEvent::NodeLeft(node));
                self.leader_failed(node);
            }
            _ => {}
        }
        let Some(control) = self.control.as_mut() else { return };
        match record.and_then(|r| NodeMeta::decode(&r.metadata)) {
            Some(meta) if liveness == Liveness::Live => {
                control.planner.node_joined(now, node, meta.locality, meta.capacity)
            }
            _ => control.planner.node_liveness(now, node, liveness),
        }
    }
}

fn liveness(state: MemberState) -> Liveness {
    match state {
        MemberState::Alive => Liveness::Live,
        MemberState::Suspect => Liveness::Suspect,
        MemberState::Failed => Liveness::Dead,
        MemberState::Left => Liveness::Left,
    }
}
