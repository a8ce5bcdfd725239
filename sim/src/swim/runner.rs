//! Many SWIM seeds on many threads, and what they add up to.
//!
//! Seeds run on worker threads through [`crate::runner::run_seeds`], as
//! Raft's do; the combined hash folds per-seed trace hashes in seed order.

use super::metrics::Summary;
use super::{run_seed, Bug, FaultMix, SwimOptions, SwimSeedOutcome};
use std::ops::Range;

/// What to run.
#[derive(Clone, Debug)]
pub struct SwimRunOptions {
    pub seeds: Range<u64>,
    pub nodes: usize,
    pub bug: Option<Bug>,
    pub lifeguard: bool,
    pub faults: FaultMix,
    pub fault_phase_us: u64,
    pub threads: usize,
    /// Report each seed's progress on standard error.
    pub progress: bool,
}

impl SwimRunOptions {
    /// The options of one seed of this run.
    pub fn seed(&self, seed: u64) -> SwimOptions {
        SwimOptions {
            seed,
            nodes: self.nodes,
            bug: self.bug,
            lifeguard: self.lifeguard,
            faults: self.faults,
            fault_phase_us: self.fault_phase_us,
            keep_trace_text: false,
            progress: self.progress,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SwimRunSummary {
    pub outcomes: Vec<SwimSeedOutcome>,
    pub wall_micros: u64,
    pub threads: usize,
}

impl SwimRunSummary {
    pub fn failed(&self) -> Vec<u64> {
        self.outcomes.iter().filter(|outcome| !outcome.passed()).map(|outcome| outcome.seed).collect()
    }
    pub fn events(&self) -> u64 {
        self.outcomes.iter().map(|outcome| outcome.events).sum()
    }
    pub fn sim_micros(&self) -> u64 {
        self.outcomes.iter().map(|outcome| outcome.sim_micros).sum()
    }
    pub fn metrics(&self) -> Summary {
        Summary::of(self.outcomes.iter().map(|outcome| &outcome.metrics))
    }
    /// Hash of every seed's trace hash, in seed order: identical for any
    /// thread count.
    pub fn combined_hash(&self) -> String {
        crate::runner::combined_hash(self.outcomes.iter().map(|outcome| (outcome.seed, &outcome.trace_hash)))
    }
}

/// Runs one seed; a panic (a broken internal invariant) fails that seed.
pub fn run_one(seed: u64, options: &SwimRunOptions) -> SwimSeedOutcome {
    match crate::runner::catch_panic(|| run_seed(options.seed(seed))) {
        Ok(report) => report.outcome,
        Err(message) => SwimSeedOutcome {
            seed,
            trace_hash: *blake3::hash(message.as_bytes()).as_bytes(),
            failures: vec![message],
            events: 0,
            sim_micros: 0,
            metrics: Default::default(),
        },
    }
}

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(options: &SwimRunOptions, on_done: &(dyn Fn(&SwimSeedOutcome) + Sync)) -> SwimRunSummary {
    let threads = options.threads.max(1);
    let (outcomes, wall_micros) =
        crate::runner::run_seeds(options.seeds.clone(), threads, |seed| run_one(seed, options), on_done);
    SwimRunSummary { outcomes, wall_micros, threads }
}
