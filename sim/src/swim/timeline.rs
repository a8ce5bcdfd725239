//! The SWIM world's timeline (`replay --system swim --html`, `--perfetto`):
//! each member's lane (alive, slow, down, paused), messages, faults, the
//! views members report (suspected, failed, refuted, alive again), and every
//! checker failure at the moment it was found. Nothing here touches the
//! trace hash or the run's random stream.

use super::describe::describe;
use super::world::SwimWorld;
use crate::timeline::{self, Fate, MessageArrow, Recorder, Timeline};
use chorus_core::swim::{Event, Message};

impl SwimWorld {
    /// Starts keeping the timeline: one lane per member, named with its
    /// clock drift; a lane shows nothing until its member starts.
    pub(super) fn start_timeline(&mut self) {
        let lanes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| format!("n{} (drift {:+.2}%)", index + 1, node.slot.clock.drift_ppm() as f64 / 1e4))
            .collect();
        self.engine.timeline = Some(Recorder::new(lanes));
    }

    /// `node` is in a new state from now (`alive`, `slow`, `down`).
    pub(super) fn note_state(&mut self, node: usize, label: String, class: &'static str) {
        self.engine.note(|recorder, now| recorder.state(node, now, label, class));
    }

    /// A fault strikes now (a cluster-wide mark).
    pub(super) fn note_fault(&mut self, label: String, class: &'static str) {
        self.engine.note(|recorder, now| recorder.mark(None, now, label, class));
    }

    /// A message `from` → `to` sent at `sent_us` met its `fate` now (at
    /// send for one that never left: lost or cut).
    pub(super) fn note_message(
        &mut self,
        (from, to): (usize, usize),
        message: &Message,
        bytes: usize,
        sent_us: u64,
        fate: Fate,
    ) {
        self.engine.note(|recorder, now| {
            let text = describe(from, to, message, bytes);
            let label = text.splitn(4, ' ').nth(3).unwrap_or_default().to_string();
            let arrived_us = (!matches!(fate, Fate::Lost | Fate::Cut)).then_some(now);
            recorder.message(MessageArrow { from, to, sent_us, arrived_us, label, fate });
        });
    }

    /// What `observer` reported about its view, when it is news worth a
    /// mark (joins and updates are too many to show).
    pub(super) fn note_event(&mut self, observer: usize, event: &Event) {
        let label = match event {
            Event::Suspected { member, incarnation } => format!("n{} suspects {member} ({incarnation})", observer + 1),
            Event::Failed { member, incarnation } => {
                format!("n{} declares {member} failed ({incarnation})", observer + 1)
            }
            Event::AliveAgain(record) => format!("n{} sees {} alive again", observer + 1, record.id),
            Event::Refuted { incarnation } => format!("n{} refutes a suspicion, now {incarnation}", observer + 1),
            Event::Left { member, .. } => format!("n{} sees {member} leave", observer + 1),
            _ => return,
        };
        self.engine.note(|recorder, now| recorder.mark(Some(observer), now, label, "event"));
    }

    /// Marks the checker failures found since the last call, now.
    pub(super) fn note_failures(&mut self) {
        let failures = self.checkers.failures();
        if self.engine.timeline.is_none() || failures.len() <= self.failures_noted {
            return;
        }
        let new: Vec<String> = failures[self.failures_noted..].to_vec();
        self.failures_noted = failures.len();
        self.engine.note(|recorder, now| {
            for failure in new {
                recorder.mark(None, now, format!("FAILURE {failure}"), "violation");
            }
        });
    }

    /// The finished timeline, if one was kept; the verdict stands at the
    /// first failure found (the run goes on after it) or at the end.
    pub(super) fn finish_timeline(&mut self, trace_hash: &[u8; 32]) -> Option<Timeline> {
        self.note_failures();
        let recorder = self.engine.timeline.take()?;
        let mut timeline = recorder.finish(self.engine.now);
        let failures = self.checkers.failures();
        let first_at = timeline.marks.iter().find(|mark| mark.class == "violation").map(|mark| mark.at_us);
        timeline.system = "swim".into();
        let options = &self.options;
        timeline.title = format!(
            "chorus-sim replay --system swim --seed {} --nodes {} --faults {} --fault-ms {}{}{}",
            options.seed,
            options.nodes,
            options.faults.name(),
            options.fault_phase_us / 1000,
            options.bug.map(|bug| format!(" --bug {}", bug.name())).unwrap_or_default(),
            if options.lifeguard { "" } else { " --lifeguard off" }
        );
        timeline.profile = self.profile.to_string();
        timeline.trace_hash = crate::trace::hex(trace_hash);
        timeline.verdict = timeline::verdict(failures, first_at.unwrap_or(self.engine.now));
        Some(timeline)
    }
}
