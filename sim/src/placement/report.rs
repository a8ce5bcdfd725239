//! What one placement seed measured, what many add up to, and how `run`
//! prints them (text, or one JSON object with the keys the issue names).

use super::{PlacementOptions, PlacementSeedOutcome, Strategy};
use crate::runner::{run_all, run_caught, RunSummary};
use serde_json::json;
use std::fmt::Write as _;
use std::ops::Range;

/// What one seed measured. Percentages are kept in hundredths of a percent
/// (basis points), so that outcomes compare exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedMetrics {
    /// Replicas added (learners that applied): the data the run moved.
    pub moves: u64,
    /// The fewest replica moves that take the cluster from its first
    /// placement to its final one: per node, the replicas it ended with
    /// beyond those it started with and those splits and merges gave or
    /// took, summed.
    pub moves_optimal: u64,
    /// Largest deviation of an eligible node's replica count from its
    /// share, after settling, in basis points of the share.
    pub balance_spread_bp: u64,
    /// The same for leader counts.
    pub leader_spread_bp: u64,
    /// Most operations in flight at once.
    pub max_concurrent_moves: u64,
    /// From the end of the fault phase to convergence, in simulated
    /// microseconds; `None` if the run did not converge.
    pub converge_us: Option<u64>,
    /// Operations the planner asked for.
    pub operations: u64,
    /// Operations that failed (refused, timed out, lost their node).
    pub operations_failed: u64,
    /// Planner restarts.
    pub planner_restarts: u64,
}

/// Many seeds' measurements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Moves, summed.
    pub moves: u64,
    /// Optimal moves, summed.
    pub moves_optimal: u64,
    /// Largest replica spread of any seed, in percent.
    pub balance_spread_pct: f64,
    /// Largest leader spread of any seed, in percent.
    pub leader_spread_pct: f64,
    /// Most operations in flight at once in any seed.
    pub max_concurrent_moves: u64,
    /// Slowest convergence of any seed, in milliseconds.
    pub converge_ms_max: u64,
    /// Mean convergence time, in milliseconds.
    pub converge_ms_mean: u64,
    /// Operations asked for, summed.
    pub operations: u64,
    /// Operations failed, summed.
    pub operations_failed: u64,
    /// Planner restarts, summed.
    pub planner_restarts: u64,
}

impl Summary {
    /// The sum and extremes of `metrics`.
    pub fn of<'a>(metrics: impl IntoIterator<Item = &'a SeedMetrics>) -> Summary {
        let mut summary = Summary::default();
        let (mut converged, mut converge_total) = (0u64, 0u64);
        for m in metrics {
            summary.moves += m.moves;
            summary.moves_optimal += m.moves_optimal;
            summary.balance_spread_pct = summary.balance_spread_pct.max(m.balance_spread_bp as f64 / 100.0);
            summary.leader_spread_pct = summary.leader_spread_pct.max(m.leader_spread_bp as f64 / 100.0);
            summary.max_concurrent_moves = summary.max_concurrent_moves.max(m.max_concurrent_moves);
            summary.operations += m.operations;
            summary.operations_failed += m.operations_failed;
            summary.planner_restarts += m.planner_restarts;
            if let Some(us) = m.converge_us {
                converged += 1;
                converge_total += us;
                summary.converge_ms_max = summary.converge_ms_max.max(us / 1000);
            }
        }
        summary.converge_ms_mean = converge_total / converged.max(1) / 1000;
        summary
    }

    /// Moves over optimal moves (1.0 when nothing had to move).
    pub fn movement_ratio(&self) -> f64 {
        if self.moves_optimal == 0 {
            return if self.moves == 0 { 1.0 } else { self.moves as f64 };
        }
        self.moves as f64 / self.moves_optimal as f64
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct PlacementRunOptions {
    /// Seeds.
    pub seeds: Range<u64>,
    /// Options shared by every seed (its `seed` is replaced).
    pub base: PlacementOptions,
    /// Worker threads.
    pub threads: usize,
}

/// Many placement seeds' outcomes.
pub type PlacementRunSummary = RunSummary<SeedMetrics>;

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(
    options: &PlacementRunOptions,
    on_done: &(dyn Fn(&PlacementSeedOutcome) + Sync),
) -> PlacementRunSummary {
    let run_one = |seed| {
        let seed_options = PlacementOptions { seed, keep_trace_text: false, ..options.base.clone() };
        run_caught(seed, || super::run_seed(seed_options).outcome)
    };
    run_all(options.seeds.clone(), options.threads, run_one, on_done)
}

/// The command that replays `seed` of a run with `options`.
pub fn replay_command(seed: u64, options: &PlacementOptions) -> String {
    let mut command = format!(
        "chorus-sim replay --system placement --seed {seed} --nodes {} --ranges {} --rf {}",
        options.nodes, options.ranges, options.rf
    );
    if options.strategy != Strategy::Balanced {
        command.push_str(&format!(" --strategy {}", options.strategy.name()));
    }
    if let Some(bug) = options.bug {
        command.push_str(&format!(" --bug {}", bug.name()));
    }
    command
}

/// The text summary of a run.
pub fn text(summary: &PlacementRunSummary, options: &PlacementRunOptions) -> String {
    let metrics = Summary::of(summary.outcomes.iter().map(|o| &o.metrics));
    let base = &options.base;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seeds:          {} ({}..{}), placement, {} nodes, {} ranges, rf {}, strategy {}, bug: {}",
        summary.outcomes.len(),
        options.seeds.start,
        options.seeds.end,
        base.nodes,
        base.ranges,
        base.rf,
        base.strategy.name(),
        base.bug.map_or("none", |bug| bug.name())
    );
    out.push_str(&summary.totals_text());
    let _ = writeln!(
        out,
        "moves:          {} ({} optimal, ratio {:.2}); {} operations, {} failed; {} planner restarts",
        metrics.moves,
        metrics.moves_optimal,
        metrics.movement_ratio(),
        metrics.operations,
        metrics.operations_failed,
        metrics.planner_restarts
    );
    let _ = writeln!(
        out,
        "balance:        replicas within {:.1}% of their share, leaders within {:.1}% (worst seed)",
        metrics.balance_spread_pct, metrics.leader_spread_pct
    );
    let _ = writeln!(
        out,
        "convergence:    {} ms worst, {} ms mean after the fault phase; at most {} operations at once",
        metrics.converge_ms_max, metrics.converge_ms_mean, metrics.max_concurrent_moves
    );
    out.push_str(&summary.failures_text(|seed| replay_command(seed, base)));
    out
}

/// The JSON object of a run.
pub fn json(summary: &PlacementRunSummary, options: &PlacementRunOptions) -> serde_json::Value {
    let metrics = Summary::of(summary.outcomes.iter().map(|o| &o.metrics));
    let mut value = json!({
        "system": "placement",
        "nodes": options.base.nodes,
        "ranges": options.base.ranges,
        "rf": options.base.rf,
        "strategy": options.base.strategy.name(),
        "moves": metrics.moves,
        "moves_optimal": metrics.moves_optimal,
        "movement_ratio": (metrics.movement_ratio() * 1000.0).round() / 1000.0,
        "balance_spread_pct": metrics.balance_spread_pct,
        "leader_spread_pct": metrics.leader_spread_pct,
        "max_concurrent_moves": metrics.max_concurrent_moves,
        "converge_ms": metrics.converge_ms_max,
        "converge_ms_mean": metrics.converge_ms_mean,
        "operations": metrics.operations,
        "operations_failed": metrics.operations_failed,
        "planner_restarts": metrics.planner_restarts,
    });
    let base = options.base.clone();
    let replay = move |seed| replay_command(seed, &base);
    value.as_object_mut().expect("built as an object").extend(summary.json_fields(Some(&replay)));
    value
}
