//! Running many seeds in parallel, and summarising them.
//!
//! Seeds are handed to worker threads from a shared counter; each seed's run
//! is independent and single-threaded, so results do not depend on the thread
//! count. The combined hash folds per-seed trace hashes in seed order.

pub use crate::raft::SeedOutcome;
use crate::raft::{run_seed, SimOptions};
use crate::scenario::Scenario;
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

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs one seed's `run`, turning a panic (a broken internal invariant) into
/// `Err("panic: ...")`; shared by the Raft and SWIM runners.
pub(crate) fn catch_panic<R>(run: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(run)).map_err(|payload| format!("panic: {}", panic_message(payload.as_ref())))
}

/// Runs `run` for every seed of `seeds` on `threads` worker threads, which
/// take seeds from a shared counter; `on_done` is called (from the workers)
/// after each. Returns the outcomes in seed order and the wall time in
/// microseconds. Each seed runs alone on one thread, so outcomes do not
/// depend on the thread count. Shared by the Raft and SWIM runners.
pub(crate) fn run_seeds<O: Send>(
    seeds: Range<u64>,
    threads: usize,
    run: impl Fn(u64) -> O + Sync,
    on_done: &(dyn Fn(&O) + Sync),
) -> (Vec<O>, u64) {
    let started = Instant::now();
    let count = seeds.end.saturating_sub(seeds.start);
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, O)>> = Mutex::new(Vec::with_capacity(count as usize));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                if position >= count {
                    break;
                }
                let seed = seeds.start + position;
                let outcome = run(seed);
                on_done(&outcome);
                results.lock().expect("no worker panics while holding the lock").push((seed, outcome));
            });
        }
    });
    let mut outcomes = results.into_inner().expect("workers are done");
    outcomes.sort_by_key(|(seed, _)| *seed);
    (outcomes.into_iter().map(|(_, outcome)| outcome).collect(), started.elapsed().as_micros() as u64)
}

/// Runs one seed; a panic (a broken internal invariant) fails that seed.
pub fn run_one(seed: u64, options: &RunOptions) -> SeedOutcome {
    let sim_options = SimOptions {
        seed,
        nodes: options.nodes,
        bug: options.bug,
        scenario: options.scenario.clone(),
        keep_trace_text: false,
        liveness_bound_us: crate::raft::LIVENESS_BOUND_US,
    };
    match catch_panic(|| run_seed(sim_options)) {
        Ok(report) => report.outcome,
        Err(message) => SeedOutcome {
            seed,
            trace_hash: *blake3::hash(message.as_bytes()).as_bytes(),
            failures: vec![message],
            events: 0,
            sim_micros: 0,
            ops_ok: 0,
            ops_failed: 0,
            ops_unknown: 0,
        },
    }
}

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(options: &RunOptions, on_done: &(dyn Fn(&SeedOutcome) + Sync)) -> RunSummary {
    let threads = options.threads.max(1);
    let (outcomes, wall_micros) = run_seeds(options.seeds.clone(), threads, |seed| run_one(seed, options), on_done);
    RunSummary { outcomes, wall_micros, threads }
}
