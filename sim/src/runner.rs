//! Running many seeds in parallel, and summarising them.
//!
//! Seeds are handed to worker threads from a shared counter; each seed's run
//! is independent and single-threaded, so results do not depend on the thread
//! count. The combined hash folds per-seed trace hashes in seed order.

use crate::scenario::Scenario;
pub use crate::simulation::SeedOutcome;
use crate::simulation::{run_seed, SimOptions};
use crate::trace::hex;
use chorus_core::raft::Bug;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seeds: Range<u64>,
    pub nodes: usize,
    pub bug: Option<Bug>,
    pub scenario: Option<Scenario>,
    pub threads: usize,
}

#[derive(Clone, Debug)]
pub struct RunSummary {
    pub outcomes: Vec<SeedOutcome>,
    pub wall_micros: u64,
    pub threads: usize,
}

impl RunSummary {
    pub fn failed(&self) -> Vec<u64> {
        self.outcomes.iter().filter(|outcome| !outcome.failures.is_empty()).map(|outcome| outcome.seed).collect()
    }
    pub fn events(&self) -> u64 {
        self.outcomes.iter().map(|outcome| outcome.events).sum()
    }
    pub fn sim_micros(&self) -> u64 {
        self.outcomes.iter().map(|outcome| outcome.sim_micros).sum()
    }
    pub fn ops(&self) -> (u64, u64, u64) {
        self.outcomes.iter().fold((0, 0, 0), |(ok, failed, unknown), outcome| {
            (ok + outcome.ops_ok, failed + outcome.ops_failed, unknown + outcome.ops_unknown)
        })
    }
    /// Hash of every seed's trace hash, in seed order: identical for any
    /// thread count.
    pub fn combined_hash(&self) -> String {
        combined_hash(self.outcomes.iter().map(|outcome| (outcome.seed, &outcome.trace_hash)))
    }
}

/// Hash of `(seed, trace hash)` pairs in the given (seed) order; shared by the
/// Raft and SWIM runners.
pub(crate) fn combined_hash<'a>(seeds: impl Iterator<Item = (u64, &'a [u8; 32])>) -> String {
    let mut hasher = blake3::Hasher::new();
    for (seed, trace_hash) in seeds {
        hasher.update(&seed.to_le_bytes());
        hasher.update(trace_hash);
    }
    hex(hasher.finalize().as_bytes())
}

/// The text of a caught panic; shared by the Raft and SWIM runners.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs one seed, turning a panic (a broken internal invariant) into a
/// failure of that seed.
pub fn run_one(seed: u64, options: &RunOptions) -> SeedOutcome {
    let sim_options = SimOptions {
        seed,
        nodes: options.nodes,
        bug: options.bug,
        scenario: options.scenario.clone(),
        keep_trace_text: false,
        liveness_bound_us: crate::simulation::LIVENESS_BOUND_US,
    };
    match catch_unwind(AssertUnwindSafe(|| run_seed(sim_options))) {
        Ok(report) => report.outcome,
        Err(payload) => {
            let message = format!("panic: {}", panic_message(payload.as_ref()));
            SeedOutcome {
                seed,
                trace_hash: *blake3::hash(message.as_bytes()).as_bytes(),
                failures: vec![message],
                events: 0,
                sim_micros: 0,
                ops_ok: 0,
                ops_failed: 0,
                ops_unknown: 0,
            }
        }
    }
}

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(options: &RunOptions, on_done: &(dyn Fn(&SeedOutcome) + Sync)) -> RunSummary {
    let started = Instant::now();
    let count = options.seeds.end.saturating_sub(options.seeds.start);
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<SeedOutcome>> = Mutex::new(Vec::with_capacity(count as usize));
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
    RunSummary { outcomes, wall_micros: started.elapsed().as_micros() as u64, threads }
}
