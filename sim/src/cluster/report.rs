//! What one cluster seed measured, what many add up to, and how `run`
//! prints them (text, or one JSON object).

use super::{ClusterOptions, ClusterSeedOutcome};
use crate::runner::{run_all, run_caught, RunSummary};
use serde_json::json;
use std::fmt::Write as _;
use std::ops::Range;

/// What one seed measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedMetrics {
    /// Ranges at the start.
    pub ranges: u64,
    /// Replicas the active node started adding (moves and repairs).
    pub replica_moves: u64,
    /// Ranges with fewer than `rf` voters on running nodes at the end.
    pub under_replicated_final: u64,
    /// Simulated events per simulated second.
    pub events_per_sim_s: u64,
    /// Client attempts answered with a redirect or "range unknown".
    pub routing_redirects: u64,
    /// Client operations in the history.
    pub operations: u64,
    /// Session and stale reads checked against their range's committed history.
    pub weak_reads: u64,
    /// From the end of the faults to convergence, in milliseconds.
    pub converge_ms: Option<u64>,
    /// From a node's loss for good to every range recorded with `rf`
    /// voters, none on the lost node, in milliseconds (`None`: no node
    /// was lost, or the run ended first).
    pub recovery_ms: Option<u64>,
    /// What the idle phase cost (`--idle-secs`), if there was one.
    pub idle: Option<IdleMetrics>,
    /// The failover check: from the crash of the node leading the most
    /// ranges to every range it led having a leader again, in milliseconds.
    pub failover_ms: Option<u64>,
    /// The same, from the first node's SWIM declaring it failed.
    pub failover_after_declared_ms: Option<u64>,
}

/// What an idle cluster costs, measured over the idle phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdleMetrics {
    /// From convergence to the start of the idle phase: until the planner
    /// had started nothing (leadership balancing, mostly) for 10 s.
    pub settled_ms: u64,
    /// Simulated events (message deliveries, timers, syncs) per simulated second.
    pub events_per_sim_s: u64,
    /// Raft messages sent per simulated second (each message of a batch counts).
    pub raft_messages_per_sim_s: u64,
    /// Replicas hosted at the end, over every running node (the meta range's included).
    pub replicas: u64,
    /// Of those, quiesced at the end.
    pub quiesced: u64,
    /// Heap bytes per hosted replica: what dropping every node gave back,
    /// over `replicas` (`None` outside the `chorus-sim` binary).
    pub heap_bytes_per_replica: Option<u64>,
}

/// Many cluster seeds' outcomes.
pub type ClusterRunSummary = RunSummary<SeedMetrics>;

/// What to run.
#[derive(Clone, Debug)]
pub struct ClusterRunOptions {
    /// Seeds.
    pub seeds: Range<u64>,
    /// Options shared by every seed (its `seed` is replaced).
    pub base: ClusterOptions,
    /// Worker threads.
    pub threads: usize,
}

/// Many seeds' measurements, summed or at their worst.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Replica moves, summed.
    pub replica_moves: u64,
    /// Under-replicated ranges at the end, summed.
    pub under_replicated_final: u64,
    /// Mean events per simulated second.
    pub events_per_sim_s: u64,
    /// Redirects, summed.
    pub routing_redirects: u64,
    /// Operations, summed.
    pub operations: u64,
    /// Session and stale reads checked, summed.
    pub weak_reads: u64,
    /// Slowest convergence, in milliseconds.
    pub converge_ms_max: u64,
    /// Seeds that lost a node for good and recovered.
    pub recoveries: u64,
    /// Slowest recovery after a node was lost, in milliseconds.
    pub recovery_ms_max: u64,
    /// Mean recovery, in milliseconds.
    pub recovery_ms_mean: u64,
    /// The idle phases' costs, averaged over the seeds that had one.
    pub idle: Option<IdleMetrics>,
    /// Slowest failover (crash to every range led again), in milliseconds.
    pub failover_ms_max: u64,
    /// Slowest failover after SWIM's declaration, in milliseconds.
    pub failover_after_declared_ms_max: u64,
}

impl Summary {
    /// The sums and extremes of `metrics`.
    pub fn of<'a>(metrics: impl IntoIterator<Item = &'a SeedMetrics>) -> Summary {
        let mut summary = Summary::default();
        let mut seeds = 0u64;
        let mut idle_seeds = Vec::new();
        for m in metrics {
            seeds += 1;
            summary.replica_moves += m.replica_moves;
            summary.under_replicated_final += m.under_replicated_final;
            summary.events_per_sim_s += m.events_per_sim_s;
            summary.routing_redirects += m.routing_redirects;
            summary.operations += m.operations;
            summary.weak_reads += m.weak_reads;
            summary.converge_ms_max = summary.converge_ms_max.max(m.converge_ms.unwrap_or(0));
            if let Some(ms) = m.recovery_ms {
                summary.recoveries += 1;
                summary.recovery_ms_max = summary.recovery_ms_max.max(ms);
                summary.recovery_ms_mean += ms;
            }
            if let Some(idle) = &m.idle {
                idle_seeds.push(idle);
            }
            summary.failover_ms_max = summary.failover_ms_max.max(m.failover_ms.unwrap_or(0));
            summary.failover_after_declared_ms_max =
                summary.failover_after_declared_ms_max.max(m.failover_after_declared_ms.unwrap_or(0));
        }
        summary.events_per_sim_s /= seeds.max(1);
        summary.recovery_ms_mean /= summary.recoveries.max(1);
        summary.idle = IdleMetrics::mean(&idle_seeds);
        summary
    }
}

impl IdleMetrics {
    /// The mean of `seeds` (`None` when empty; the heap figure only over
    /// the seeds that measured it).
    fn mean(seeds: &[&IdleMetrics]) -> Option<IdleMetrics> {
        let n = seeds.len() as u64;
        if n == 0 {
            return None;
        }
        let mean = |f: fn(&IdleMetrics) -> u64| seeds.iter().map(|m| f(m)).sum::<u64>() / n;
        let heap: Vec<u64> = seeds.iter().filter_map(|m| m.heap_bytes_per_replica).collect();
        Some(IdleMetrics {
            settled_ms: mean(|m| m.settled_ms),
            events_per_sim_s: mean(|m| m.events_per_sim_s),
            raft_messages_per_sim_s: mean(|m| m.raft_messages_per_sim_s),
            replicas: mean(|m| m.replicas),
            quiesced: mean(|m| m.quiesced),
            heap_bytes_per_replica: (!heap.is_empty()).then(|| heap.iter().sum::<u64>() / heap.len() as u64),
        })
    }
}

/// Runs every seed; `on_done` is called (from worker threads) after each.
pub fn run_many(options: &ClusterRunOptions, on_done: &(dyn Fn(&ClusterSeedOutcome) + Sync)) -> ClusterRunSummary {
    let run_one = |seed| {
        let seed_options = ClusterOptions { seed, keep_trace_text: false, ..options.base.clone() };
        run_caught(seed, || super::run_seed(seed_options).outcome)
    };
    run_all(options.seeds.clone(), options.threads, run_one, on_done)
}

/// The command that replays `seed` of a run with `options`.
pub fn replay_command(seed: u64, options: &ClusterOptions) -> String {
    let mut command = format!(
        "chorus-sim replay --system cluster --seed {seed} --nodes {} --ranges {} --rf {}",
        options.nodes, options.ranges, options.rf
    );
    if !options.workload {
        command.push_str(" --workload none");
    }
    if options.faults != super::FaultMix::Swarm {
        command.push_str(&format!(" --faults {}", options.faults.name()));
    }
    if !options.quiesce {
        command.push_str(" --quiesce off");
    }
    if options.idle_secs > 0 {
        command.push_str(&format!(" --idle-secs {}", options.idle_secs));
    }
    if let Some(bug) = options.bug {
        command.push_str(&format!(" --bug {}", bug.name()));
    }
    command
}

/// The text summary of a run.
pub fn text(summary: &ClusterRunSummary, options: &ClusterRunOptions) -> String {
    let m = Summary::of(summary.outcomes.iter().map(|o| &o.metrics));
    let base = &options.base;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seeds:          {} ({}..{}), cluster, {} nodes, {} ranges, rf {}, workload {}, quiesce {}, bug: {}",
        summary.outcomes.len(),
        options.seeds.start,
        options.seeds.end,
        base.nodes,
        base.ranges,
        base.rf,
        if base.workload { "default" } else { "none" },
        if base.quiesce { "on" } else { "off" },
        base.bug.map_or("none", |bug| bug.name())
    );
    out.push_str(&summary.totals_text());
    let _ = writeln!(
        out,
        "cluster:        {} replica moves, {} client operations (and {} session and stale reads), {} redirects, {} under-replicated at the end",
        m.replica_moves, m.operations, m.weak_reads, m.routing_redirects, m.under_replicated_final
    );
    let _ = writeln!(
        out,
        "convergence:    {} ms worst after the faults; {} events per simulated second (mean)",
        m.converge_ms_max, m.events_per_sim_s
    );
    let _ = writeln!(
        out,
        "recovery:       {} seeds lost a node for good; rf voters again after {} ms worst, {} ms mean",
        m.recoveries, m.recovery_ms_max, m.recovery_ms_mean
    );
    let _ = writeln!(
        out,
        "failover:       the busiest leader's ranges led again {} ms after its crash worst, {} ms after SWIM declared it failed",
        m.failover_ms_max, m.failover_after_declared_ms_max
    );
    if let Some(idle) = &m.idle {
        let _ = writeln!(
            out,
            "idle:           {} s, from {} ms after convergence: {} events and {} Raft messages per simulated second; {} of {} replicas quiesced; {} heap bytes per replica",
            base.idle_secs,
            idle.settled_ms,
            idle.events_per_sim_s,
            idle.raft_messages_per_sim_s,
            idle.quiesced,
            idle.replicas,
            idle.heap_bytes_per_replica.map_or("unmeasured".to_string(), |b| b.to_string())
        );
    }
    out.push_str(&summary.failures_text(|seed| replay_command(seed, base)));
    out
}

/// The JSON object of a run.
pub fn json(summary: &ClusterRunSummary, options: &ClusterRunOptions) -> serde_json::Value {
    let m = Summary::of(summary.outcomes.iter().map(|o| &o.metrics));
    let mut value = json!({
        "system": "cluster",
        "nodes": options.base.nodes,
        "ranges": options.base.ranges,
        "rf": options.base.rf,
        "replica_moves": m.replica_moves,
        "under_replicated_final": m.under_replicated_final,
        "events_per_sim_s": m.events_per_sim_s,
        "routing_redirects": m.routing_redirects,
        "operations": m.operations,
        "weak_reads": m.weak_reads,
        "converge_ms": m.converge_ms_max,
        "recoveries": m.recoveries,
        "recovery_ms": m.recovery_ms_max,
        "recovery_ms_mean": m.recovery_ms_mean,
        "quiesce": options.base.quiesce,
        "failover_ms": m.failover_ms_max,
        "failover_after_declared_ms": m.failover_after_declared_ms_max,
    });
    if let Some(idle) = &m.idle {
        let object = value.as_object_mut().expect("built as an object");
        object.insert("idle_secs".into(), json!(options.base.idle_secs));
        object.insert("idle_settled_ms".into(), json!(idle.settled_ms));
        object.insert("idle_events_per_sim_s".into(), json!(idle.events_per_sim_s));
        object.insert("idle_raft_messages_per_sim_s".into(), json!(idle.raft_messages_per_sim_s));
        object.insert("idle_replicas".into(), json!(idle.replicas));
        object.insert("idle_quiesced_replicas".into(), json!(idle.quiesced));
        object.insert("heap_bytes_per_replica".into(), json!(idle.heap_bytes_per_replica));
    }
    let base = options.base.clone();
    let replay = move |seed| replay_command(seed, &base);
    value.as_object_mut().expect("built as an object").extend(summary.json_fields(Some(&replay)));
    value
}
