//! `chorus-sim run|replay --system cluster`: flags, and how results print.

use super::{
    parse_seeds, parse_threads, print_replay_header, print_verdict, say_text, write_trace, ClusterArgs, ReplayArgs,
    RunArgs, SeedProgress, UsageError,
};
use chorus_sim::cluster::{self, report, ClusterOptions, FaultMix};
use std::process::ExitCode;

/// The options of a cluster seed, checked.
fn parse(args: &ClusterArgs, seed: u64) -> Result<ClusterOptions, UsageError> {
    for (given, flag) in [
        (args.lifeguard.is_some(), "--lifeguard"),
        (args.fault_ms.is_some(), "--fault-ms"),
        (args.progress, "--progress"),
        (args.scenario.is_some(), "--scenario"),
        (args.strategy.is_some(), "--strategy"),
    ] {
        if given {
            return Err(UsageError(format!("{flag} does not apply to --system cluster")));
        }
    }
    let bug = match &args.bug {
        None => None,
        Some(name) => Some(cluster::ClusterBug::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = cluster::ClusterBug::ALL.iter().map(|bug| bug.name()).collect();
            UsageError(format!("--bug {name:?}: no such cluster bug; known cluster bugs: {}", names.join(", ")))
        })?),
    };
    let defaults = ClusterOptions::new(seed);
    let rf = args.rf.unwrap_or(defaults.rf);
    if !(1..=chorus_core::partition::MAX_REPLICATION_FACTOR).contains(&rf) {
        return Err(UsageError(format!(
            "--rf {rf}: must be between 1 and {}",
            chorus_core::partition::MAX_REPLICATION_FACTOR
        )));
    }
    if args.nodes < rf || args.nodes > cluster::MAX_NODES {
        return Err(UsageError(format!(
            "--nodes {}: must be between rf ({rf}) and {} with --system cluster",
            args.nodes,
            cluster::MAX_NODES
        )));
    }
    let ranges = args.ranges.unwrap_or(defaults.ranges);
    if !(1..=cluster::MAX_RANGES).contains(&ranges) {
        return Err(UsageError(format!("--ranges {ranges}: must be between 1 and {}", cluster::MAX_RANGES)));
    }
    let workload = match args.workload.as_deref() {
        None | Some("default") => true,
        Some("none") => false,
        Some(other) => return Err(UsageError(format!("--workload {other:?}: must be default or none"))),
    };
    let faults = match args.faults.as_deref() {
        None | Some("swarm") => FaultMix::Swarm,
        Some("none") => FaultMix::None,
        Some("lose") if args.nodes > rf => FaultMix::Lose,
        Some("lose") => {
            return Err(UsageError(format!(
                "--faults lose needs more nodes than rf ({rf}) to hold every range without the lost one"
            )))
        }
        Some(other) => {
            return Err(UsageError(format!(
                "--faults {other:?}: --system cluster takes swarm (the default), none or lose"
            )))
        }
    };
    let quiesce = match args.quiesce.as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => return Err(UsageError(format!("--quiesce {other:?}: must be on or off"))),
    };
    let idle_secs = args.idle_secs.unwrap_or(0);
    if args.idle_secs.is_some() && !(1..=cluster::MAX_IDLE_SECS).contains(&idle_secs) {
        return Err(UsageError(format!("--idle-secs {idle_secs}: must be between 1 and {}", cluster::MAX_IDLE_SECS)));
    }
    Ok(ClusterOptions {
        seed,
        nodes: args.nodes,
        ranges,
        rf,
        workload,
        faults,
        quiesce,
        idle_secs,
        bug,
        keep_trace_text: false,
    })
}

/// `run --system cluster`.
pub(super) fn run(args: RunArgs) -> Result<ExitCode, UsageError> {
    let seeds = parse_seeds(&args.seeds)?;
    let threads = parse_threads(args.threads)?;
    let base = parse(&args.cluster, seeds.start)?;
    let options = report::ClusterRunOptions { seeds: seeds.clone(), base, threads };
    let progress = SeedProgress::start(args.json, seeds.end - seeds.start);
    let summary = report::run_many(&options, &|outcome| progress.seed_done(outcome.passed()));
    progress.finish();
    if args.json {
        say!("{}", report::json(&summary, &options));
    } else {
        say_text(&report::text(&summary, &options));
    }
    Ok(if summary.failed().is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `replay --system cluster`.
pub(super) fn replay(args: ReplayArgs) -> Result<ExitCode, UsageError> {
    if args.html.is_some() || args.perfetto.is_some() {
        return Err(UsageError(
            "--html and --perfetto apply to --system raft and swim; read a cluster run with --trace".into(),
        ));
    }
    let options = ClusterOptions { keep_trace_text: true, ..parse(&args.cluster, args.seed)? };
    let report = cluster::run_seed(options);
    write_trace(args.trace.as_deref(), report.trace_text.as_deref().unwrap_or_default())?;
    if let Some(path) = &args.history {
        let text = chorus_sim::history::write_edn(&report.history);
        std::fs::write(path, text)
            .map_err(|error| UsageError(format!("cannot write the history to {}: {error}", path.display())))?;
    }
    let outcome = &report.outcome;
    print_replay_header(outcome, &report.profile);
    let m = &outcome.metrics;
    say!(
        "metrics:        {} ranges, {} replica moves, {} client operations, {} redirects, converged {}",
        m.ranges,
        m.replica_moves,
        m.operations,
        m.routing_redirects,
        m.converge_ms.map_or("never".to_string(), |ms| format!("{ms} ms after the faults"))
    );
    Ok(print_verdict(outcome))
}
