//! Running many seeds in parallel, and summarising them.
//!
//! Seeds are handed to worker threads from a shared counter; each seed's run
//! is independent and single-threaded, so results do not depend on the thread
//! count. The combined hash folds per-seed trace hashes in seed order.

use crate::raft::{run_seed, SimOptions};
use crate::scenario::Scenario;
use crate::skeleton::SeedOutcome;
use crate::trace::hex;
use crate::workload::OpCounts;
use chorus_core::raft::Bug;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Failing seeds listed in a text summary (the JSON lists them all).
pub const FAILURES_SHOWN: usize = 20;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The seeds to run, each an independent run.
    pub seeds: Range<u64>,
    /// Voters of every seed's cluster.
    pub nodes: usize,
    /// A bug injected into every node, or `None`.
    pub bug: Option<Bug>,
    /// A timed fault schedule every seed runs, or `None`.
    pub scenario: Option<Scenario>,
    /// Worker threads; outcomes (and the combined hash) do not depend on it.
    pub threads: usize,
}

/// Many seeds' outcomes, in seed order, and what the run cost.
#[derive(Clone, Debug)]
pub struct RunSummary<M = OpCounts> {
    /// One outcome per seed, in seed order.
    pub outcomes: Vec<SeedOutcome<M>>,
    /// Real (wall-clock) microseconds the whole run took; the only part that
    /// differs between identical runs.
    pub wall_micros: u64,
    /// Worker threads used.
    pub threads: usize,
}

impl<M: Default> RunSummary<M> {
    /// The failed seeds, in order.
    pub fn failed(&self) -> Vec<u64> {
        self.outcomes.iter().filter(|outcome| !outcome.passed()).map(|outcome| outcome.seed).collect()
    }
    /// Events handled, summed over seeds.
    pub fn events(&self) -> u64 {
        self.outcomes.iter().map(|outcome| outcome.events).sum()
    }
    /// Simulated microseconds, summed over seeds.
    pub fn sim_micros(&self) -> u64 {
        self.outcomes.iter().map(|outcome| outcome.sim_micros).sum()
    }
    /// Hash of every seed's trace hash, in seed order: identical for any
    /// thread count.
    pub fn combined_hash(&self) -> String {
        combined_hash(self.outcomes.iter().map(|outcome| (outcome.seed, &outcome.trace_hash)))
    }

    /// The first lines of a text summary after the system's own first line:
    /// failures, events, simulated and wall time.
    pub fn totals_text(&self) -> String {
        let wall_s = self.wall_micros.max(1) as f64 / 1e6;
        let sim_s = self.sim_micros() as f64 / 1e6;
        let mut out = String::new();
        let _ = writeln!(out, "failures:       {}", self.failed().len());
        let _ = writeln!(out, "events:         {}", self.events());
        let _ = writeln!(out, "simulated time: {sim_s:.1} s");
        let _ = writeln!(out, "wall time:      {wall_s:.2} s on {} threads", self.threads);
        out
    }

    /// The last lines of a text summary: the combined hash, then the first
    /// [`FAILURES_SHOWN`] failing seeds with their trace hash and the command
    /// that replays them.
    pub fn failures_text(&self, replay_command: impl Fn(u64) -> String) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "combined-hash:  {}", self.combined_hash());
        let failing = self.outcomes.iter().filter(|outcome| !outcome.passed());
        for outcome in failing.take(FAILURES_SHOWN) {
            let _ = writeln!(out, "FAIL seed {}: {}", outcome.seed, outcome.failures[0]);
            let _ = writeln!(out, "  trace-hash: {}", hex(&outcome.trace_hash));
            let _ = writeln!(out, "  replay: {}", replay_command(outcome.seed));
        }
        let failed = self.failed().len();
        if failed > FAILURES_SHOWN {
            let _ = writeln!(out, "... and {} more failing seeds", failed - FAILURES_SHOWN);
        }
        out
    }

    /// The JSON fields every system prints: seeds, failures (each with
    /// `replay`, when given a command), events, times, threads and hashes.
    pub fn json_fields(&self, replay_command: Option<&dyn Fn(u64) -> String>) -> serde_json::Map<String, Value> {
        let failures: Vec<Value> = self
            .outcomes
            .iter()
            .filter(|outcome| !outcome.passed())
            .map(|outcome| {
                let mut failure = json!({
                    "seed": outcome.seed,
                    "failure": outcome.failures[0],
                    "trace_hash": hex(&outcome.trace_hash),
                });
                if let Some(replay_command) = replay_command {
                    failure["replay"] = json!(replay_command(outcome.seed));
                }
                failure
            })
            .collect();
        let trace_hashes: Vec<Value> =
            self.outcomes.iter().map(|outcome| json!([outcome.seed, hex(&outcome.trace_hash)])).collect();
        let fields = json!({
            "seeds": self.outcomes.len(),
            "failed": self.failed(),
            "failures": failures,
            "events": self.events(),
            "sim_ms": self.sim_micros() / 1000,
            "wall_ms": self.wall_micros / 1000,
            "threads": self.threads,
            "combined_hash": self.combined_hash(),
            "trace_hashes": trace_hashes,
        });
        match fields {
            Value::Object(fields) => fields,
            _ => unreachable!("built as an object"),
        }
    }
}

impl RunSummary<OpCounts> {
    /// Client operations: (ok, failed, unknown).
    pub fn ops(&self) -> (u64, u64, u64) {
        self.outcomes.iter().fold((0, 0, 0), |(ok, failed, unknown), outcome| {
            (ok + outcome.metrics.ok, failed + outcome.metrics.failed, unknown + outcome.metrics.unknown)
        })
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
fn run_seeds<O: Send>(
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

/// Runs one seed with `run`; a panic (a broken internal invariant) outside
/// the event loop fails that seed.
pub fn run_caught<M: Default>(seed: u64, run: impl FnOnce() -> SeedOutcome<M>) -> SeedOutcome<M> {
    catch_panic(run).unwrap_or_else(|message| SeedOutcome::from_panic(seed, message))
}

/// Runs every seed of `seeds` with `run_one` on `threads` threads; `on_done`
/// is called (from worker threads) after each.
pub fn run_all<M: Default + Send>(
    seeds: Range<u64>,
    threads: usize,
    run_one: impl Fn(u64) -> SeedOutcome<M> + Sync,
    on_done: &(dyn Fn(&SeedOutcome<M>) + Sync),
) -> RunSummary<M> {
    let threads = threads.max(1);
    let (outcomes, wall_micros) = run_seeds(seeds, threads, run_one, on_done);
    RunSummary { outcomes, wall_micros, threads }
}

/// Runs one seed; a panic (a broken internal invariant) fails that seed.
pub fn run_one(seed: u64, options: &RunOptions) -> crate::raft::SeedOutcome {
    let sim_options = SimOptions {
        seed,
        nodes: options.nodes,
        bug: options.bug,
        scenario: options.scenario.clone(),
        keep_trace_text: false,
        keep_timeline: false,
        liveness_bound_us: crate::raft::LIVENESS_BOUND_US,
    };
    run_caught(seed, || run_seed(sim_options).outcome)
}

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(options: &RunOptions, on_done: &(dyn Fn(&crate::raft::SeedOutcome) + Sync)) -> RunSummary {
    run_all(options.seeds.clone(), options.threads, |seed| run_one(seed, options), on_done)
}
