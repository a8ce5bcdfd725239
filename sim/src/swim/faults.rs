//! The SWIM world's fault injector: slow members, crashes and restarts,
//! pauses, partitions, and healing at the end of the fault phase.

use super::describe::SwimRecord;
use super::profile::HEAVY_LOSS_PPM;
use super::world::{Detection, Phase, SimEvent, SwimWorld};
use crate::network::PPM;
use crate::skeleton::node_id;
use chorus_core::swim::Metadata;
use rand::Rng;

impl SwimWorld {
    /// Schedules the next occurrence of a recurring fault, drawn around its
    /// mean, if it still falls inside the fault phase.
    pub(super) fn recur(&mut self, mean_ms: u64, event: SimEvent) {
        let delay = mean_ms * 1000 / 2 + self.engine.rng.random_range(0..=mean_ms * 1000);
        if self.phase == Phase::Faults && self.engine.now + delay < self.faults_started_at + self.options.fault_phase_us
        {
            self.engine.schedule(delay, event);
        }
    }

    pub(super) fn start_faults(&mut self) {
        self.phase = Phase::Faults;
        self.faults_started_at = self.engine.now;
        self.reset_load();
        self.engine.record(SwimRecord::FaultPhaseStarted, &[], || "FAULT phase starts".to_string());
        self.note_fault(format!("FAULT phase starts (loss {:.2}%)", self.profile.loss_ppm as f64 / 1e4), "fault");
        self.network.params.loss_ppm = self.profile.loss_ppm;
        if self.profile.slow_members > 0 {
            let mut candidates: Vec<usize> = (0..self.nodes.len()).collect();
            for slot in 0..self.profile.slow_members.min(candidates.len()) {
                let pick = self.engine.rng.random_range(slot..candidates.len());
                candidates.swap(slot, pick);
                let node = candidates[slot];
                let lag = self.engine.rng.random_range(100..=self.profile.slow_lag_max_ms.max(100)) * 1000;
                self.nodes[node].slow_lag_us = lag;
                self.engine.record(SwimRecord::SlowMember, &[node as u64, lag], || {
                    format!("FAULT n{} is slow: inbound lag {lag} us", node + 1)
                });
                self.note_state(node, format!("slow (inbound lag {} ms)", lag / 1000), "slow");
            }
        }
        if self.profile.split_halves {
            let nodes = self.nodes.len();
            let half = self.choose(nodes / 2);
            self.apply_partition(&half);
        }
        for (mean, event) in [
            (self.profile.crash_every_ms, SimEvent::Crash),
            (self.profile.pause_every_ms, SimEvent::Pause),
            (self.profile.partition_every_ms, SimEvent::Partition),
            (self.profile.metadata_every_ms, SimEvent::MetadataChange),
        ] {
            if let Some(mean) = mean {
                self.recur(mean, event);
            }
        }
        self.engine.schedule(self.options.fault_phase_us, SimEvent::Heal);
    }

    /// `count` distinct node indexes, uniformly.
    pub(super) fn choose(&mut self, count: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..self.nodes.len()).collect();
        let count = count.min(pool.len());
        for slot in 0..count {
            let pick = self.engine.rng.random_range(slot..pool.len());
            pool.swap(slot, pick);
        }
        pool.truncate(count);
        pool.sort_unstable();
        pool
    }

    pub(super) fn random_running(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].swim.is_some() && !self.nodes[node].slot.paused)
            .collect();
        (!running.is_empty()).then(|| running[self.engine.rng.random_range(0..running.len())])
    }

    pub(super) fn crash_random(&mut self) {
        let down = self.nodes.iter().filter(|node| node.swim.is_none()).count();
        if (down + 1) * 3 > self.nodes.len() {
            return;
        }
        let Some(node) = self.random_running() else {
            return;
        };
        self.crash(node);
        if self.engine.rng.random_range(0..PPM) < self.profile.restart_ppm {
            let delay = self.engine.rng.random_range(1_000_000..=10_000_000);
            let life = self.nodes[node].life;
            self.nodes[node].restart_pending = true;
            self.engine.schedule(delay, SimEvent::Restart { node, life });
        }
    }

    pub(super) fn crash(&mut self, node: usize) {
        self.engine.record(SwimRecord::Crashed, &[node as u64], || format!("FAULT crash n{}", node + 1));
        self.note_state(node, "down".into(), "down");
        self.note_fault(format!("FAULT crash n{}", node + 1), "fault");
        self.engine.note(|recorder, now| recorder.pause(node, now, false));
        let sim_node = &mut self.nodes[node];
        sim_node.swim = None;
        sim_node.slot.crash();
        let life = sim_node.life;
        self.detections.push(Detection {
            node,
            life,
            crashed_at: self.engine.now,
            suspect_at: None,
            first_at: None,
            all_at: None,
            excused: false,
        });
    }

    /// Restarts a crashed member with the same identity. It persisted its
    /// incarnation, so it starts one above the highest it ever held.
    pub(super) fn restart(&mut self, node: usize) {
        self.engine.record(SwimRecord::Restarted, &[node as u64], || format!("FAULT restart n{}", node + 1));
        self.engine.note(|recorder, now| recorder.mark(Some(node), now, format!("n{} restarts", node + 1), "restart"));
        let sim_node = &mut self.nodes[node];
        sim_node.life += 1;
        sim_node.life_floor = sim_node.issued.next();
        sim_node.issued = sim_node.life_floor;
        sim_node.restart_pending = false;
        self.checkers.forget_observer(node);
        self.start_node(node);
    }

    /// A random running member publishes the next version of its metadata:
    /// from now on every observer must come to hold it.
    pub(super) fn change_metadata(&mut self) {
        let Some(node) = self.random_running() else {
            return;
        };
        self.nodes[node].metadata_version += 1;
        let version = self.nodes[node].metadata_version;
        self.engine.record(SwimRecord::MetadataChanged, &[node as u64, u64::from(version)], || {
            format!("CHANGE n{} publishes metadata version {version}", node + 1)
        });
        self.checkers.metadata_changed(node_id(node), self.nodes.len());
        let metadata = Metadata::new(self.metadata_of(node));
        if let Err(error) = self.with_node(node, |swim, now| swim.set_metadata(now, metadata)) {
            self.checkers
                .fail(format!("metadata: n{} could not publish metadata within its limits: {error}", node + 1));
        }
    }

    pub(super) fn pause_random(&mut self) {
        let Some(node) = self.random_running() else {
            return;
        };
        let duration = self.engine.rng.random_range(500_000..=12_000_000);
        self.engine.record(SwimRecord::Paused, &[node as u64, duration], || {
            format!("FAULT pause n{} for {duration} us", node + 1)
        });
        self.engine.note(|recorder, now| recorder.pause(node, now, true));
        let sim_node = &mut self.nodes[node];
        sim_node.slot.paused = true;
        sim_node.slot.cancel_timer();
        let life = sim_node.life;
        self.engine.schedule(duration, SimEvent::Resume { node, life });
    }

    /// A paused member resumes: it handles what arrived meanwhile, in order,
    /// and then its timers fire, late.
    pub(super) fn resume(&mut self, node: usize) {
        if !self.nodes[node].slot.paused || self.nodes[node].swim.is_none() {
            return;
        }
        self.engine.record(SwimRecord::Resumed, &[node as u64], || format!("FAULT resume n{}", node + 1));
        self.nodes[node].slot.paused = false;
        self.engine.note(|recorder, now| recorder.pause(node, now, false));
        self.nodes[node].excused_until = self.engine.now + self.excuse_window_us();
        let stash = std::mem::take(&mut self.nodes[node].slot.stash);
        for (from, sent_us, datagram, message) in stash {
            if self.nodes[node].swim.is_none() {
                break;
            }
            self.deliver((from, node, sent_us), datagram, message, true);
        }
        if self.nodes[node].swim.is_some() {
            self.in_timeout = true;
            self.with_node(node, |swim, now| swim.handle_timeout(now));
            self.in_timeout = false;
        }
    }

    pub(super) fn partition_random(&mut self) {
        if self.network.is_partitioned() {
            return;
        }
        let nodes = self.nodes.len();
        let minority =
            if self.engine.rng.random_bool(0.5) { 1 } else { self.engine.rng.random_range(1..=(nodes / 2).max(1)) };
        let side = self.choose(minority);
        self.apply_partition(&side);
        let duration = self.engine.rng.random_range(1_000_000..=30_000_000);
        let epoch = self.partition_epoch;
        self.engine.schedule(duration, SimEvent::HealPartition { epoch });
    }

    pub(super) fn apply_partition(&mut self, side: &[usize]) {
        if side.is_empty() || side.len() == self.nodes.len() {
            return;
        }
        self.partition_epoch += 1;
        self.partitions_seen = true;
        let mut on_side = vec![false; self.nodes.len()];
        side.iter().for_each(|&node| on_side[node] = true);
        let rest: Vec<usize> = (0..self.nodes.len()).filter(|&node| !on_side[node]).collect();
        self.network.partition(&[rest, side.to_vec()]);
        let shown: Vec<String> = side.iter().take(20).map(|node| format!("n{}", node + 1)).collect();
        let label = format!(
            "FAULT partition {{{}{}}} from the rest",
            shown.join(","),
            if side.len() > 20 { ",..." } else { "" }
        );
        self.engine.note(|recorder, now| {
            recorder.network_cut(now, label.clone(), true);
            recorder.mark(None, now, label, "fault");
        });
        self.engine.record(SwimRecord::Partitioned, &[side.len() as u64, side[0] as u64], || {
            format!(
                "FAULT partition {{{}{}}} from the rest",
                shown.join(","),
                if side.len() > 20 { ",..." } else { "" }
            )
        });
    }

    pub(super) fn heal_partition(&mut self) {
        self.engine.record(SwimRecord::PartitionHealed, &[], || "FAULT heal partition".to_string());
        self.engine.note(|recorder, now| {
            recorder.network_heal(now);
            recorder.mark(None, now, "FAULT heal partition".into(), "heal");
        });
        self.network.heal();
        self.excused_all_until = self.engine.now + self.excuse_window_us();
    }

    /// The end of the fault phase: everything heals.
    pub(super) fn heal(&mut self) {
        self.engine.record(SwimRecord::HealedEverything, &[], || "FAULT heal everything".to_string());
        self.note_fault("FAULT heal everything".into(), "heal");
        if self.network.is_partitioned() {
            self.heal_partition();
        }
        if self.network.params.loss_ppm >= HEAVY_LOSS_PPM {
            self.excused_all_until = self.engine.now + self.excuse_window_us();
        }
        self.network.params.loss_ppm = 0;
        let excuse = self.engine.now + self.excuse_window_us();
        for node in 0..self.nodes.len() {
            if self.nodes[node].slow_lag_us > 0 {
                self.nodes[node].slow_lag_us = 0;
                if self.nodes[node].swim.is_some() {
                    self.note_state(node, format!("alive (life {})", self.nodes[node].life), "alive");
                }
                self.nodes[node].excused_until = excuse;
            }
            if self.nodes[node].slot.paused {
                self.resume(node);
            }
            if self.nodes[node].swim.is_none() && self.nodes[node].restart_pending {
                self.restart(node);
            }
        }
        self.phase = Phase::Settle;
        self.heal_at = Some(self.engine.now);
    }
}
