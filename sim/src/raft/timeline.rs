//! The Raft world's timeline (`replay --html`, `--perfetto`): what each
//! node's lane shows, and the client operations, with those a failure names.
//! Nothing here touches the trace hash or the run's random stream.

use super::world::{node_id, RaftWorld};
use crate::faults::{FaultAction, NodeRef};
use crate::history::{History, Operation, Outcome};
use crate::timeline::{self, MessageArrow, OpBar, Recorder, Timeline};
use chorus_core::raft::{Message, Role};
use chorus_core::Term;

impl RaftWorld {
    /// Starts keeping the timeline: one lane per node (spares included),
    /// named with its clock drift, in its first role.
    pub(super) fn start_timeline(&mut self) {
        let lanes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let spare = if index >= self.options.nodes { ", spare" } else { "" };
                let drift = node.slot.clock.drift_ppm() as f64 / 10_000.0;
                format!("{} (drift {drift:+.2}%{spare})", node_id(index))
            })
            .collect();
        let mut recorder = Recorder::new(lanes);
        for (lane, node) in self.nodes.iter().enumerate() {
            if let Some(raft) = node.raft.as_ref() {
                recorder.state(lane, 0, role_label(raft.role(), raft.term()), &role_class(raft.role()));
            }
        }
        self.engine.timeline = Some(recorder);
    }

    /// `node` is in `role` in `term` from now.
    pub(super) fn note_role(&mut self, node: usize, role: Role, term: Term) {
        self.engine.note(|recorder, now| recorder.state(node, now, role_label(role, term), &role_class(role)));
    }

    /// `node` is down from now.
    pub(super) fn note_down(&mut self, node: usize, label: &str) {
        self.engine.note(|recorder, now| {
            recorder.state(node, now, label.to_string(), "down");
            recorder.pause(node, now, false);
        });
    }

    /// `node` (re)started in its first role; `how` says from what.
    pub(super) fn note_restart(&mut self, node: usize, how: &str) {
        let Some((role, term)) = self.nodes[node].raft.as_ref().map(|raft| (raft.role(), raft.term())) else {
            return;
        };
        self.engine.note(|recorder, now| {
            recorder.state(node, now, role_label(role, term), &role_class(role));
            recorder.mark(Some(node), now, format!("{} {how}", node_id(node)), "restart");
        });
    }

    /// A fault or operator action strikes now: a mark for the cluster, and
    /// the network lane for cuts and healing. "The leader" is resolved.
    pub(super) fn note_fault(&mut self, action: &FaultAction) {
        if self.engine.timeline.is_none() {
            return;
        }
        let mut label = format!("FAULT {action}");
        if mentions_leader(action) {
            match self.leader() {
                Some(leader) => label.push_str(&format!(" (the leader is {})", node_id(leader))),
                None => label.push_str(" (no leader: nothing happens)"),
            }
        }
        let class = match action {
            FaultAction::Heal | FaultAction::Restart { .. } | FaultAction::Resume { .. } => "heal",
            FaultAction::Change(_) | FaultAction::Transfer { .. } => "operator",
            _ => "fault",
        };
        self.engine.note(|recorder, now| {
            match action {
                FaultAction::Partition { .. } | FaultAction::Isolate { .. } => {
                    recorder.network_cut(now, label.clone(), true)
                }
                FaultAction::OneWay { .. } | FaultAction::CutLink { .. } => {
                    recorder.network_cut(now, label.clone(), false)
                }
                FaultAction::Heal => recorder.network_heal(now),
                _ => {}
            }
            recorder.mark(None, now, label, class);
        });
    }

    /// A message sent now that never left (`fate` lost or cut).
    pub(super) fn note_dropped(&mut self, message: &Message, fate: timeline::Fate) {
        let (from, to) = (message.from.0 as usize - 1, message.to.0 as usize - 1);
        self.engine.note(|recorder, now| {
            let label = super::describe::describe_body(message);
            recorder.message(MessageArrow { from, to, sent_us: now, arrived_us: None, label, fate });
        });
    }

    /// A message sent at `sent_us` arrives now, with `fate`.
    pub(super) fn note_arrived(&mut self, message: &Message, sent_us: u64, fate: timeline::Fate) {
        let (from, to) = (message.from.0 as usize - 1, message.to.0 as usize - 1);
        self.engine.note(|recorder, now| {
            let label = super::describe::describe_body(message);
            recorder.message(MessageArrow { from, to, sent_us, arrived_us: Some(now), label, fate });
        });
    }

    /// The finished timeline, if one was kept: the recorder's lanes and
    /// messages, the client operations (those the failures name marked),
    /// the verdict at the run's last instant.
    pub(super) fn finish_timeline(
        &mut self,
        failures: &[String],
        history: &History,
        trace_hash: &[u8; 32],
    ) -> Option<Timeline> {
        let recorder = self.engine.timeline.take()?;
        let mut timeline = recorder.finish(self.engine.now);
        timeline.system = "raft".into();
        timeline.title = self.timeline_title();
        timeline.profile = self.profile.to_string();
        timeline.trace_hash = crate::trace::hex(trace_hash);
        timeline::push_ops(&mut timeline, history.operations.iter().map(|op| op_bar(op, failures)));
        timeline.verdict = timeline::verdict(failures, self.engine.now);
        Some(timeline)
    }

    fn timeline_title(&self) -> String {
        let options = &self.options;
        let mut title = format!("chorus-sim replay --seed {} --nodes {}", options.seed, options.nodes);
        if let Some(bug) = options.bug {
            title.push_str(&format!(" --bug {}", bug.name()));
        }
        if options.scenario.is_some() {
            title.push_str(" --scenario ...");
        }
        title
    }
}

fn mentions_leader(action: &FaultAction) -> bool {
    let leader = |node: &NodeRef| *node == NodeRef::Leader;
    match action {
        FaultAction::Isolate { node }
        | FaultAction::Crash { node }
        | FaultAction::Restart { node }
        | FaultAction::Pause { node }
        | FaultAction::Resume { node }
        | FaultAction::Wipe { node } => leader(node),
        FaultAction::CutLink { a, b } => leader(a) || leader(b),
        FaultAction::OneWay { receivers, .. } => receivers.iter().any(leader),
        FaultAction::Transfer { .. } => true,
        _ => false,
    }
}

fn role_label(role: Role, term: Term) -> String {
    format!("{role:?} {term}")
}

fn role_class(role: Role) -> String {
    format!("{role:?}").to_lowercase()
}

/// One operation as a bar; `named` says why a failure names it (its
/// printed form appears in the failure's text).
pub(super) fn op_bar(op: &Operation, failures: &[String]) -> OpBar {
    let label = op.to_string();
    let named = failures.iter().find_map(|failure| why_named(failure, &label));
    let outcome = match op.outcome {
        Outcome::Ok { .. } => "ok",
        Outcome::CasMismatch => "fail",
        Outcome::Unknown => "unknown",
    };
    OpBar {
        process: op.process,
        key: op.key.clone(),
        invoke_us: op.invoke_at,
        complete_us: op.complete_at,
        label,
        outcome: outcome.into(),
        named,
    }
}

/// Why `failure` names the operation printed as `label`, in the words of
/// the linearizability checker's explanation; `None` if it does not.
fn why_named(failure: &str, label: &str) -> Option<String> {
    let at = failure.find(label)?;
    if failure.contains(&format!("Next, {label} had to take effect")) {
        return Some("had to take effect next, but nothing could come before it".into());
    }
    let candidate = format!("  - {label}: ");
    if let Some(start) = failure.find(&candidate) {
        let why = failure[start + candidate.len()..].lines().next().unwrap_or_default();
        return Some(format!("could not come next: {why}"));
    }
    let ends = failure.find("It ends with:");
    let next = failure.find("Next, ");
    if ends.is_some_and(|ends| at > ends) && next.is_none_or(|next| at < next) {
        return Some("ends the longest linearizable prefix found".into());
    }
    Some("named in the verdict".into())
}
