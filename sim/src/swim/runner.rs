//! Many SWIM seeds on many threads, and what they add up to.
//!
//! Seeds run on worker threads through [`crate::runner::run_all`], as
//! Raft's do; the combined hash folds per-seed trace hashes in seed order.

use super::metrics::{SeedMetrics, Summary};
use super::{run_seed, Bug, FaultMix, SwimOptions, SwimSeedOutcome};
use crate::runner::{run_all, run_caught, RunSummary};
use std::ops::Range;

/// What to run.
#[derive(Clone, Debug)]
pub struct SwimRunOptions {
    /// The seeds to run, each an independent run (see [`SwimOptions::seed`]).
    pub seeds: Range<u64>,
    /// Cluster size of every seed.
    pub nodes: usize,
    /// A bug injected into every member, or `None`.
    pub bug: Option<Bug>,
    /// Lifeguard's extensions on, or classic SWIM.
    pub lifeguard: bool,
    /// Which family of faults each seed's profile is drawn from.
    pub faults: FaultMix,
    /// Length of each seed's fault phase, in simulated microseconds.
    pub fault_phase_us: u64,
    /// Worker threads; seeds are independent, so the outcomes (and the
    /// combined hash) do not depend on it.
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
            keep_timeline: false,
            progress: self.progress,
        }
    }
}

/// Many SWIM seeds' outcomes.
pub type SwimRunSummary = RunSummary<SeedMetrics>;

impl RunSummary<SeedMetrics> {
    /// The seeds' measurements summed (see [`Summary::of`]).
    pub fn metrics(&self) -> Summary {
        Summary::of(self.outcomes.iter().map(|outcome| &outcome.metrics))
    }
}

/// Runs one seed; a panic (a broken internal invariant) fails that seed.
pub fn run_one(seed: u64, options: &SwimRunOptions) -> SwimSeedOutcome {
    run_caught(seed, || run_seed(options.seed(seed)).outcome)
}

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(options: &SwimRunOptions, on_done: &(dyn Fn(&SwimSeedOutcome) + Sync)) -> SwimRunSummary {
    run_all(options.seeds.clone(), options.threads, |seed| run_one(seed, options), on_done)
}
