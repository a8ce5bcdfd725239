//! Many SWIM seeds on many threads, and what they add up to.
//!
//! Seeds are handed to worker threads from a shared counter; each seed runs
//! alone on one thread, so results do not depend on the thread count. The
//! combined hash folds per-seed trace hashes in seed order.

use super::metrics::Summary;
use super::{run_seed, Bug, FaultMix, SwimOptions, SwimSeedOutcome};
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

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

/// Runs one seed, turning a panic (a broken internal invariant) into a
/// failure of that seed.
pub fn run_one(seed: u64, options: &SwimRunOptions) -> SwimSeedOutcome {
    match catch_unwind(AssertUnwindSafe(|| run_seed(options.seed(seed)))) {
        Ok(report) => report.outcome,
        Err(payload) => {
            let message = format!("panic: {}", crate::runner::panic_message(payload.as_ref()));
            SwimSeedOutcome {
                seed,
                trace_hash: *blake3::hash(message.as_bytes()).as_bytes(),
                failures: vec![message],
                events: 0,
                sim_micros: 0,
                metrics: Default::default(),
            }
        }
    }
}

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(options: &SwimRunOptions, on_done: &(dyn Fn(&SwimSeedOutcome) + Sync)) -> SwimRunSummary {
    let started = Instant::now();
    let count = options.seeds.end.saturating_sub(options.seeds.start);
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<SwimSeedOutcome>> = Mutex::new(Vec::new());
    let threads = options.threads.max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                if position >= count {
                    break;
                }
                let outcome = run_one(options.seeds.start + position, options);
                on_done(&outcome);
                results.lock().expect("no worker panics while holding the lock").push(outcome);
            });
        }
    });
    let mut outcomes = results.into_inner().expect("workers are done");
    outcomes.sort_by_key(|outcome| outcome.seed);
    SwimRunSummary { outcomes, wall_micros: started.elapsed().as_micros() as u64, threads }
}
