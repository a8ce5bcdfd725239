//! Checker glue of the SWIM world: the periodic checks (join wave,
//! detection times, convergence after healing) and the excuses the accuracy
//! check allows. The checkers themselves are in `checkers.rs`.

use super::checkers::time;
use super::describe::SwimRecord;
use super::profile::HEAVY_LOSS_PPM;
use super::world::{Phase, SimEvent, SwimWorld};
use crate::skeleton::node_id;
use chorus_core::swim::{Incarnation, MemberState, SwimNode};

impl SwimWorld {
    /// Is `node` running, at an incarnation its current life may hold?
    pub(super) fn is_current_life(&self, node: usize, incarnation: Incarnation) -> bool {
        let sim_node = &self.nodes[node];
        sim_node.swim.is_some() && incarnation >= sim_node.life_floor
    }

    pub(super) fn excused(&self, node: usize) -> bool {
        let sim_node = &self.nodes[node];
        sim_node.slot.paused || sim_node.slow_lag_us > 0 || self.engine.now < sim_node.excused_until
    }

    /// A partition or heavy loss, now or recently.
    pub(super) fn everyone_excused(&self) -> bool {
        self.network.is_partitioned()
            || self.network.params.loss_ppm >= HEAVY_LOSS_PPM
            || self.engine.now < self.excused_all_until
    }

    /// The accuracy checker: `declarer` declared the running `victim` failed.
    pub(super) fn false_positive(&mut self, declarer: usize, victim: usize, incarnation: Incarnation) {
        self.metrics.false_positives += 1;
        if !self.excused(victim) {
            self.metrics.false_positives_healthy += 1;
        }
        if self.everyone_excused()
            || self.excused(declarer)
            || self.excused(victim)
            || self.excused_suspicions.contains(&(node_id(victim).0, incarnation))
        {
            self.metrics.false_positives_excused += 1;
            return;
        }
        self.checkers.fail(format!(
            "accuracy: n{} declared n{} failed at {incarnation} at {}, yet n{} is running and neither it, nor n{}, nor any member that suspected it was paused, slow, partitioned or behind heavy loss",
            declarer + 1,
            victim + 1,
            time(self.engine.now),
            victim + 1,
            declarer + 1
        ));
    }

    pub(super) fn check(&mut self) {
        self.engine.schedule(self.check_interval_us, SimEvent::Check);
        match self.phase {
            Phase::Join => self.check_join(),
            Phase::Faults => {
                let running = self.nodes.iter().filter(|node| node.swim.is_some()).count() as u64;
                self.metrics.member_periods_milli +=
                    running * self.check_interval_us * 1000 / (self.template.probe_interval_ms * 1000);
                self.check_detections();
                self.check_bounds();
            }
            Phase::Settle => {
                self.check_detections();
                self.check_bounds();
                self.check_settled();
            }
            Phase::Done => {}
        }
    }

    /// The per-run bounds (`bounds.rs`): load, dissemination, relays, refutation.
    fn check_bounds(&mut self) {
        self.check_load();
        self.check_news();
        self.check_relays();
        self.check_refutations();
    }

    pub(super) fn check_join(&mut self) {
        let nodes = self.nodes.len();
        if self.engine.now < self.last_start_at {
            return;
        }
        let agreeing = self
            .nodes
            .iter()
            .filter(|node| node.swim.as_ref().is_some_and(|swim| swim.live_member_count() == nodes))
            .count();
        let since = self.engine.now - self.last_start_at;
        if self.metrics.converge_join_9999_us.is_none() && agreeing * 10_000 >= nodes * 9_999 {
            self.metrics.converge_join_9999_us = Some(since);
        }
        if agreeing == nodes {
            self.metrics.converge_join_us = Some(since);
            self.join_converged_at = Some(self.engine.now);
            self.engine.record(SwimRecord::JoinConverged, &[since], || {
                format!("CHECK join wave converged {since} us after the last start")
            });
            self.note_fault(format!("CHECK join wave converged {since} us after the last start"), "info");
            self.engine.schedule(0, SimEvent::StartFaults);
            self.phase = Phase::Faults;
            self.faults_started_at = self.engine.now;
        } else if since > self.join_bound_us() {
            let example = self
                .nodes
                .iter()
                .enumerate()
                .find_map(|(index, node)| {
                    let swim = node.swim.as_ref().filter(|swim| swim.live_member_count() != nodes)?;
                    let missing = (0..nodes).find(|&other| {
                        other != index && swim.member(node_id(other)).is_none_or(|member| !member.state.is_live())
                    })?;
                    Some(format!(" (n{} does not see n{} alive)", index + 1, missing + 1))
                })
                .unwrap_or_default();
            self.checkers.fail(format!(
                "convergence: after the join wave only {agreeing} of {nodes} members saw everyone alive within {} s{example}",
                self.join_bound_us() / 1_000_000
            ));
            self.phase = Phase::Done;
        }
    }

    /// Times detections: first suspicion and declaration come from events;
    /// "all" is when no running member sees the crashed one as live.
    pub(super) fn check_detections(&mut self) {
        let mut detections = std::mem::take(&mut self.detections);
        detections.retain_mut(|detection| {
            let node = &self.nodes[detection.node];
            if node.life != detection.life {
                // Restarted before everyone noticed: not a clean sample.
                return false;
            }
            if self.everyone_excused() {
                detection.excused = true;
            }
            if !detection.excused && self.detection_late(detection.node, detection.crashed_at) {
                return false;
            }
            if detection.first_at.is_none() {
                return true;
            }
            let id = node_id(detection.node);
            let everyone = self.nodes.iter().all(|observer| {
                observer.swim.as_ref().is_none_or(|swim| swim.member(id).is_none_or(|member| !member.state.is_live()))
            });
            if !everyone {
                return true;
            }
            detection.all_at = Some(self.engine.now);
            let crashed_at = detection.crashed_at;
            self.metrics.detect_suspect_us.push(detection.suspect_at.unwrap_or(self.engine.now) - crashed_at);
            self.metrics.detect_first_us.push(detection.first_at.unwrap_or(self.engine.now) - crashed_at);
            self.metrics.detect_all_us.push(self.engine.now - crashed_at);
            false
        });
        self.detections = detections;
    }

    /// After healing: does every running member see exactly the running
    /// members as live, each with the metadata it publishes?
    pub(super) fn check_settled(&mut self) {
        let heal_at = self.heal_at.expect("invariant: the settle phase starts at healing");
        let running: Vec<bool> = self.nodes.iter().map(|node| node.swim.is_some()).collect();
        let running_count = running.iter().filter(|running| **running).count();
        // Read as an application reads it: the bytes it publishes.
        let metadata: Vec<Vec<u8>> = (0..self.nodes.len()).map(|node| self.metadata_of(node)).collect();
        let sees_truth = |swim: &SwimNode| {
            swim.live_member_count() == running_count
                && swim.members().all(|member| {
                    let index = member.id.0 as usize - 1;
                    member.state.is_live() == running[index]
                        && (!member.state.is_live() || member.metadata.as_bytes() == metadata[index])
                })
        };
        let disagreeing: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].swim.as_ref().is_some_and(|swim| !sees_truth(swim)))
            .collect();
        if disagreeing.is_empty() {
            let since = self.engine.now - heal_at;
            if self.partitions_seen {
                self.metrics.converge_heal_us = Some(since);
            }
            self.engine.record(SwimRecord::Settled, &[since], || {
                format!("CHECK every running member agrees, {since} us after healing")
            });
            self.note_fault(format!("CHECK every running member agrees, {since} us after healing"), "info");
            self.phase = Phase::Done;
            return;
        }
        if self.engine.now - heal_at <= self.settle_bound_us() {
            return;
        }
        self.report_unsettled(&running, running_count, &metadata, &disagreeing);
    }

    /// The settle bound passed with `disagreeing` members still wrong: says
    /// what they get wrong (a crashed member seen live, stale metadata, or
    /// the live set) and ends the run.
    fn report_unsettled(
        &mut self,
        running: &[bool],
        running_count: usize,
        metadata: &[Vec<u8>],
        disagreeing: &[usize],
    ) {
        let bound_s = self.settle_bound_us() as f64 / 1e6;
        let crashed: Vec<usize> = (0..self.nodes.len()).filter(|&node| !running[node]).collect();
        for &down in &crashed {
            let id = node_id(down);
            let seen_live_by: Vec<usize> = (0..self.nodes.len())
                .filter(|&observer| {
                    self.nodes[observer]
                        .swim
                        .as_ref()
                        .is_some_and(|swim| swim.member(id).is_some_and(|m| m.state.is_live()))
                })
                .collect();
            if let Some(&observer) = seen_live_by.first() {
                let state = self.nodes[observer].swim.as_ref().and_then(|swim| swim.member(id)).map(|m| m.state);
                self.checkers.fail(format!(
                    "completeness: crashed n{} is still {:?} at n{} (and {} other running members) {bound_s:.0} s after healing",
                    down + 1,
                    state.unwrap_or(MemberState::Alive),
                    observer + 1,
                    seen_live_by.len() - 1
                ));
            }
        }
        let node = disagreeing[0];
        let swim = self.nodes[node].swim.as_ref().expect("filtered on running");
        let stale_metadata = swim.members().find(|member| {
            let index = member.id.0 as usize - 1;
            member.state.is_live() && running[index] && member.metadata.as_bytes() != metadata[index]
        });
        if let Some(member) = stale_metadata {
            let index = member.id.0 as usize - 1;
            self.checkers.fail(format!(
                "metadata: n{} holds metadata {:?} for {} {bound_s:.0} s after healing, which publishes {:?}",
                node + 1,
                String::from_utf8_lossy(member.metadata.as_bytes()),
                member.id,
                String::from_utf8_lossy(&metadata[index])
            ));
            self.phase = Phase::Done;
            return;
        }
        let wrong: Vec<String> = swim
            .members()
            .filter(|member| member.state.is_live() != running[member.id.0 as usize - 1])
            .take(5)
            .map(|member| format!("{} {:?} {}", member.id, member.state, member.incarnation))
            .collect();
        self.checkers.fail(format!(
            "convergence: {} running members still disagree with the running set {bound_s:.0} s after healing; n{} sees {} live of {running_count} (e.g. {})",
            disagreeing.len(),
            node + 1,
            swim.live_member_count(),
            wrong.join(", ")
        ));
        self.phase = Phase::Done;
    }
}
