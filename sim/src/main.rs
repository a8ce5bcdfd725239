//! The `chorus-sim` command. See `chorus-sim --help`.

use chorus_core::raft::Bug;
use chorus_sim::check::linearizability::{self, SearchLimits, Verdict};
use chorus_sim::history;
use chorus_sim::placement;
use chorus_sim::raft::{run_seed, SimOptions};
use chorus_sim::runner::{run_many, RunOptions, RunSummary};
use chorus_sim::scenario::Scenario;
use chorus_sim::skeleton::SeedOutcome;
use chorus_sim::swim;
use chorus_sim::trace::hex;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// `println!` that tolerates a closed pipe (`chorus-sim ... | head`): output
/// that nobody reads is not an error worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Largest cluster the simulator accepts.
const MAX_NODES: usize = 64;

mod cluster_cmd;

/// Counts the heap bytes dropping the nodes gives back (`--idle-secs`).
#[global_allocator]
static ALLOCATOR: chorus_sim::heap::CountingAllocator = chorus_sim::heap::CountingAllocator;

#[derive(Parser)]
#[command(name = "chorus-sim", version, about = "Deterministic simulator for the Chorus cluster core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run many seeds in parallel and summarise.
    Run(RunArgs),
    /// Re-run one seed and print its trace, verdict and trace hash.
    Replay(ReplayArgs),
    /// List the injectable protocol bugs (name, then description).
    Bugs(BugsArgs),
    /// Check a Jepsen history for linearizability.
    CheckHistory(CheckHistoryArgs),
    /// Shrink a failing Raft seed to a small scenario that fails the same
    /// checker (exit 0: written; 2: bad usage; 4: the seed passes; 5: it
    /// does not fail again with its faults made explicit).
    Shrink(ShrinkArgs),
    /// Measure a placement strategy: key and replica-slot spread over nodes,
    /// keys moved when a node is added or removed (next to the minimum),
    /// lookup time per key.
    PlacementStats(PlacementStatsArgs),
}

/// Which placement `placement-stats` measures.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlacementStrategy {
    /// Consistent hashing with virtual nodes.
    Ring,
    /// Jump consistent hashing, one shard per node.
    Jump,
    /// The balanced allocator.
    Balanced,
}

/// How the ring places a joining node's tokens.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RingTokens {
    /// The best of several BLAKE3 candidates for balance (the default).
    Balanced,
    /// One BLAKE3 token per vnode.
    Random,
}

#[derive(Args)]
struct PlacementStatsArgs {
    /// Nodes (one more is added, one removed).
    #[arg(long, default_value_t = 100)]
    nodes: u64,
    /// Virtual nodes per node (ring).
    #[arg(long, default_value_t = 100)]
    vnodes: u64,
    /// Replicas per key.
    #[arg(long, default_value_t = 3)]
    rf: u64,
    /// Keys (`key-0`, `key-1`, ...).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    #[arg(long, value_enum, default_value_t = PlacementStrategy::Ring)]
    strategy: PlacementStrategy,
    /// Token placement of the ring.
    #[arg(long, value_enum, default_value_t = RingTokens::Balanced)]
    tokens: RingTokens,
    /// Candidate tokens weighed per vnode by balanced tokens.
    #[arg(long, default_value_t = chorus_core::partition::DEFAULT_CANDIDATES,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(chorus_core::partition::MAX_CANDIDATES)))]
    candidates: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ShrinkArgs {
    /// The failing seed.
    #[arg(long)]
    seed: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Write the scenario to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Most candidate runs (each one whole simulation of the seed).
    #[arg(long, default_value_t = chorus_sim::shrink::MAX_SHRINK_RUNS as u64,
          value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    max_runs: u64,
}

/// Which protocol a run simulates.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum System {
    /// Raft consensus with a key-value workload (the default).
    Raft,
    /// SWIM membership and failure detection with Lifeguard.
    Swim,
    /// The partitioning planner against a cluster of range descriptors.
    Placement,
    /// Whole cluster nodes: SWIM, the meta range, the planner and a Raft
    /// group per range, with clients routing keys.
    Cluster,
}

/// SWIM's Lifeguard extensions.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lifeguard {
    On,
    Off,
    /// Run every seed twice, with and without Lifeguard, and print both
    /// side by side (`run` only).
    Compare,
}

#[derive(Args)]
struct BugsArgs {
    /// Whose bugs to list.
    #[arg(long, value_enum, default_value_t = System::Raft)]
    system: System,
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Which protocol to simulate.
    #[arg(long, value_enum, default_value_t = System::Raft)]
    system: System,
    /// Number of nodes (Raft: 1 to 64; SWIM: 1 to 10000).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Inject a protocol bug (see `chorus-sim bugs`).
    #[arg(long, value_name = "NAME")]
    bug: Option<String>,
    /// A TOML fault schedule, run instead of (or, with `random_faults = true`,
    /// on top of) the seed's random faults.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// SWIM only: Lifeguard on (default), off, or compare.
    #[arg(long, value_enum)]
    lifeguard: Option<Lifeguard>,
    /// SWIM: the fault mix: swarm (default), crashes, slow, partition or
    /// none. Cluster: swarm (default), none, or lose (one node lost for good
    /// 2 s in, nothing else).
    #[arg(long, value_name = "MIX")]
    faults: Option<String>,
    /// SWIM only: length of the fault phase in milliseconds (default 30000).
    #[arg(long, value_name = "MS")]
    fault_ms: Option<u64>,
    /// SWIM only: report each seed's phase, simulated time and events on
    /// standard error every 10 simulated seconds (for large clusters, whose
    /// seeds take minutes).
    #[arg(long)]
    progress: bool,
    /// Placement and cluster only: ranges at the start (default 64 for
    /// placement, 16 for cluster).
    #[arg(long, value_name = "R")]
    ranges: Option<usize>,
    /// Placement and cluster only: replication factor (default 3).
    #[arg(long, value_name = "N")]
    rf: Option<usize>,
    /// Cluster only: the client workload, default or none.
    #[arg(long, value_name = "NAME")]
    workload: Option<String>,
    /// Placement only: the placement strategy (balanced or ring).
    #[arg(long, value_name = "NAME")]
    strategy: Option<String>,
    /// Cluster only: idle ranges quiesce, on (default) or off.
    #[arg(long, value_name = "on|off")]
    quiesce: Option<String>,
    /// Cluster only: after convergence and the final round, let the cluster
    /// idle this many simulated seconds and report its cost (events and
    /// Raft messages per simulated second, heap bytes per replica).
    #[arg(long, value_name = "SECS")]
    idle_secs: Option<u64>,
}

#[derive(Args)]
struct RunArgs {
    /// Seeds to run: `START..END` (END exclusive) or a single seed.
    #[arg(long, default_value = "0..100")]
    seeds: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReplayArgs {
    #[arg(long)]
    seed: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Write the readable trace to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write the client history to FILE in Jepsen's EDN format.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Write the run as one self-contained HTML page to FILE: a lane per
    /// node (role, term, crashes, pauses), messages, faults, client
    /// operations and the failure.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the run as Chrome trace-event JSON to FILE, for Perfetto UI or
    /// chrome://tracing.
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
}

impl ReplayArgs {
    /// Whether the run must keep its timeline.
    fn wants_timeline(&self) -> bool {
        self.html.is_some() || self.perfetto.is_some()
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Model {
    /// A single register (no keys).
    Register,
    /// Independent keys, each a register (checked key by key).
    Kv,
}

#[derive(Args)]
struct CheckHistoryArgs {
    /// A history in Jepsen's EDN format or `jepsen.util` log lines.
    file: PathBuf,
    /// The model; by default `kv` when operations carry keys, else `register`.
    #[arg(long, value_enum)]
    model: Option<Model>,
    /// Memory the search may use, in MiB (approximate, over all keys). When
    /// it runs out, the largest key's search is given up (the others go on)
    /// and, unless another key is found not linearizable, the verdict is
    /// `unknown` with exit code 3.
    #[arg(long, value_name = "MIB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    max_memory_mb: u64,
}

/// A usage error: printed, exit code 2.
struct UsageError(String);

fn parse_seeds(text: &str) -> Result<Range<u64>, UsageError> {
    let bad = || UsageError(format!("--seeds {text:?}: expected START..END (e.g. 0..1000) or a single seed"));
    if let Some((start, end)) = text.split_once("..") {
        let start: u64 = start.trim().parse().map_err(|_| bad())?;
        let end: u64 = end.trim().parse().map_err(|_| bad())?;
        if end <= start {
            return Err(UsageError(format!("--seeds {text}: the range is empty (END is exclusive)")));
        }
        Ok(start..end)
    } else {
        let seed: u64 = text.trim().parse().map_err(|_| bad())?;
        Ok(seed..seed.checked_add(1).ok_or_else(bad)?)
    }
}

fn parse_cluster(args: &ClusterArgs) -> Result<(usize, Option<Bug>, Option<Scenario>), UsageError> {
    for (given, flag) in [
        (args.lifeguard.is_some(), "--lifeguard"),
        (args.faults.is_some(), "--faults"),
        (args.fault_ms.is_some(), "--fault-ms"),
        (args.progress, "--progress"),
    ] {
        if given {
            return Err(UsageError(format!("{flag} applies to --system swim only")));
        }
    }
    reject_placement_flags(args)?;
    if args.nodes == 0 || args.nodes > MAX_NODES {
        return Err(UsageError(format!("--nodes {}: must be between 1 and {MAX_NODES}", args.nodes)));
    }
    let bug = match &args.bug {
        None => None,
        Some(name) => Some(Bug::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Bug::ALL.iter().map(|bug| bug.name()).collect();
            UsageError(format!("--bug {name:?}: no such bug; known bugs: {}", names.join(", ")))
        })?),
    };
    let scenario = match &args.scenario {
        None => None,
        Some(path) => {
            let text = read_file(path, "scenario")?;
            Some(
                Scenario::parse(&text, args.nodes)
                    .map_err(|error| UsageError(format!("scenario {}: {error}", path.display())))?,
            )
        }
    };
    Ok((args.nodes, bug, scenario))
}

fn read_file(path: &Path, what: &str) -> Result<String, UsageError> {
    std::fs::read_to_string(path)
        .map_err(|error| UsageError(format!("cannot read {what} file {}: {error}", path.display())))
}

fn replay_command(seed: u64, cluster: &ClusterArgs) -> String {
    let mut command = format!("chorus-sim replay --seed {seed} --nodes {}", cluster.nodes);
    if let Some(bug) = &cluster.bug {
        command.push_str(&format!(" --bug {bug}"));
    }
    if let Some(scenario) = &cluster.scenario {
        command.push_str(&format!(" --scenario {}", scenario.display()));
    }
    command
}

/// The command that shrinks a failing Raft seed of a run.
fn shrink_command(seed: u64, cluster: &ClusterArgs) -> String {
    replay_command(seed, cluster).replacen("chorus-sim replay", "chorus-sim shrink", 1)
}

fn run(args: RunArgs) -> Result<ExitCode, UsageError> {
    match args.cluster.system {
        System::Swim => return swim_run(args),
        System::Placement => return placement_run(args),
        System::Cluster => return cluster_cmd::run(args),
        System::Raft => {}
    }
    let seeds = parse_seeds(&args.seeds)?;
    let (nodes, bug, scenario) = parse_cluster(&args.cluster)?;
    let threads = parse_threads(args.threads)?;
    let options = RunOptions { seeds: seeds.clone(), nodes, bug, scenario, threads };
    let progress = SeedProgress::start(args.json, seeds.end - seeds.start);
    let summary = run_many(&options, &|outcome| progress.seed_done(outcome.passed()));
    progress.finish();
    if args.json {
        print_json(&summary);
    } else {
        print_summary(&summary, &args.cluster, &seeds);
    }
    Ok(if summary.failed().is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_json(summary: &RunSummary) {
    let (ok, failed, unknown) = summary.ops();
    let mut json = serde_json::json!({
        "events_per_s": (summary.events() as f64 / (summary.wall_micros.max(1) as f64 / 1e6)).round(),
        "ops_ok": ok,
        "ops_failed": failed,
        "ops_unknown": unknown,
    });
    json.as_object_mut().expect("built as an object").extend(summary.json_fields(None));
    say!("{json}");
}

fn print_summary(summary: &RunSummary, cluster: &ClusterArgs, seeds: &Range<u64>) {
    let (ok, failed, unknown) = summary.ops();
    let wall_s = summary.wall_micros.max(1) as f64 / 1e6;
    let events = summary.events();
    let sim_s = summary.sim_micros() as f64 / 1e6;
    say!(
        "seeds:          {} ({}..{}), {} nodes, bug: {}",
        summary.outcomes.len(),
        seeds.start,
        seeds.end,
        cluster.nodes,
        cluster.bug.as_deref().unwrap_or("none")
    );
    say_text(&summary.totals_text());
    say!(
        "events/s:       {:.0} ({:.0} per thread)",
        events as f64 / wall_s,
        events as f64 / wall_s / summary.threads as f64
    );
    say!("sim s / wall s: {:.0}", sim_s / wall_s);
    say!("client ops:     {ok} ok, {failed} failed, {unknown} unknown");
    // Each failing seed's replay line is followed by its shrink line.
    say_text(&summary.failures_text(|seed| {
        format!("{}\n  shrink: {}", replay_command(seed, cluster), shrink_command(seed, cluster))
    }));
}

fn replay(args: ReplayArgs) -> Result<ExitCode, UsageError> {
    match args.cluster.system {
        System::Swim => return swim_replay(args),
        System::Placement => return placement_replay(args),
        System::Cluster => return cluster_cmd::replay(args),
        System::Raft => {}
    }
    let (nodes, bug, scenario) = parse_cluster(&args.cluster)?;
    let options = SimOptions {
        seed: args.seed,
        nodes,
        bug,
        scenario,
        keep_trace_text: true,
        keep_timeline: args.wants_timeline(),
        ..SimOptions::new(args.seed)
    };
    timeline_files_writable(&args)?;
    let report = run_seed(options);
    write_trace(args.trace.as_deref(), report.trace_text.as_deref().unwrap_or_default())?;
    write_timeline(&args, report.timeline.as_ref())?;
    if let Some(path) = &args.history {
        std::fs::write(path, history::write_edn(&report.history))
            .map_err(|error| UsageError(format!("cannot write history file {}: {error}", path.display())))?;
    }
    print_replay_header(&report.outcome, &report.profile);
    say!(
        "client ops:     {} ok, {} failed, {} unknown",
        report.outcome.metrics.ok,
        report.outcome.metrics.failed,
        report.outcome.metrics.unknown
    );
    Ok(print_verdict(&report.outcome))
}

/// Exit code of `shrink` when the seed passes.
const EXIT_SEED_PASSES: u8 = 4;
/// Exit code of `shrink` when the seed fails, but not with its faults made
/// explicit.
const EXIT_NOT_REPRODUCED: u8 = 5;

fn shrink(args: ShrinkArgs) -> Result<ExitCode, UsageError> {
    if args.cluster.system != System::Raft {
        return Err(UsageError("shrink applies to --system raft only".into()));
    }
    let (nodes, bug, scenario) = parse_cluster(&args.cluster)?;
    let request =
        chorus_sim::shrink::ShrinkRequest { seed: args.seed, nodes, bug, scenario, max_runs: args.max_runs as usize };
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    let result = chorus_sim::shrink::shrink(&request, &mut |line| eprintln!("shrink: {line}"));
    let shrunk = match result {
        Ok(shrunk) => shrunk,
        Err(error) => {
            eprintln!("shrink: {error}");
            let code = match error {
                chorus_sim::shrink::ShrinkError::Passes(_) => EXIT_SEED_PASSES,
                chorus_sim::shrink::ShrinkError::NotReproduced { .. } => EXIT_NOT_REPRODUCED,
            };
            return Ok(ExitCode::from(code));
        }
    };
    let wall_s = started.elapsed().as_secs_f64();
    let text = shrunk_file(&args, &shrunk, wall_s);
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|error| UsageError(format!("cannot write scenario file {}: {error}", path.display())))?,
        None => say_text(&text),
    }
    eprintln!(
        "shrink: {} checker, {} -> {} fault events, {} nodes, {} runs in {wall_s:.1} s",
        shrunk.class,
        shrunk.events_before,
        shrunk.scenario.events.len(),
        shrunk.nodes,
        shrunk.runs
    );
    Ok(ExitCode::SUCCESS)
}

/// The shrunk scenario file: a header naming the seed, bug, checker and
/// counts, and the command that runs it, then the scenario.
fn shrunk_file(args: &ShrinkArgs, shrunk: &chorus_sim::shrink::Shrunk, wall_s: f64) -> String {
    let mut run = format!("chorus-sim run --seeds {} --nodes {}", args.seed, shrunk.nodes);
    if let Some(bug) = &args.cluster.bug {
        run.push_str(&format!(" --bug {bug}"));
    }
    let file = args.out.as_ref().map_or("FILE.toml".into(), |path| path.display().to_string());
    let exhausted = if shrunk.budget_exhausted { " (run budget exhausted)" } else { "" };
    format!(
        "# Shrunk by: {shrink}\n\
         # seed {seed}, bug {bug}, checker {class}\n\
         # fault events: {before} before, {after} after; {runs} runs, {wall_s:.1} s{exhausted}\n\
         # original failure: {original}\n\
         # shrunk failure:   {failure}\n\
         # run it: {run} --scenario {file}\n\
         {body}",
        shrink = shrink_command(args.seed, &args.cluster),
        seed = args.seed,
        bug = args.cluster.bug.as_deref().unwrap_or("none"),
        class = shrunk.class,
        before = shrunk.events_before,
        after = shrunk.scenario.events.len(),
        runs = shrunk.runs,
        original = shrunk.original_failure.replace('\n', " "),
        failure = shrunk.failure.replace('\n', " "),
        body = chorus_sim::shrink::scenario_toml(&shrunk.scenario),
    )
}

fn bugs(args: BugsArgs) -> ExitCode {
    match args.system {
        System::Raft => {
            for bug in Bug::ALL {
                say!("{}\t{}", bug.name(), bug.description());
            }
        }
        System::Swim => {
            for bug in swim::Bug::ALL {
                say!("{}\t{}", bug.name(), bug.description());
            }
        }
        System::Placement => {
            for bug in placement::Bug::ALL {
                say!("{}\t{}", bug.name(), bug.description());
            }
        }
        System::Cluster => {
            for bug in chorus_sim::cluster::ClusterBug::ALL {
                say!("{}\t{}", bug.name(), bug.description());
            }
        }
    }
    ExitCode::SUCCESS
}

/// The SWIM options of `run` and `replay`, and the Lifeguard mode.
fn parse_swim(
    args: &ClusterArgs,
    seeds: Range<u64>,
    threads: usize,
) -> Result<(swim::runner::SwimRunOptions, Lifeguard), UsageError> {
    if args.nodes == 0 || args.nodes > swim::MAX_NODES {
        return Err(UsageError(format!(
            "--nodes {}: must be between 1 and {} with --system swim",
            args.nodes,
            swim::MAX_NODES
        )));
    }
    reject_placement_flags(args)?;
    if args.scenario.is_some() {
        return Err(UsageError(
            "--scenario applies to --system raft only; SWIM faults come from --faults (swarm, crashes, slow, partition, none)".into(),
        ));
    }
    let bug = match &args.bug {
        None => None,
        Some(name) => Some(swim::Bug::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = swim::Bug::ALL.iter().map(|bug| bug.name()).collect();
            let raft = if Bug::from_name(name).is_some() { " (that is a Raft bug)" } else { "" };
            UsageError(format!("--bug {name:?}: no such SWIM bug{raft}; known SWIM bugs: {}", names.join(", ")))
        })?),
    };
    let faults = match &args.faults {
        None => swim::FaultMix::Swarm,
        Some(name) => swim::FaultMix::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = swim::FaultMix::ALL.iter().map(|mix| mix.name()).collect();
            UsageError(format!("--faults {name:?}: no such fault mix; known mixes: {}", names.join(", ")))
        })?,
    };
    let fault_phase_us = match args.fault_ms {
        None => swim::world::FAULT_PHASE_US,
        Some(ms) if (1_000..=3_600_000).contains(&ms) => ms * 1000,
        Some(ms) => return Err(UsageError(format!("--fault-ms {ms}: must be between 1000 and 3600000"))),
    };
    let mode = args.lifeguard.unwrap_or(Lifeguard::On);
    let options = swim::runner::SwimRunOptions {
        seeds,
        nodes: args.nodes,
        bug,
        lifeguard: mode != Lifeguard::Off,
        faults,
        fault_phase_us,
        threads,
        progress: args.progress,
    };
    Ok((options, mode))
}

fn swim_run(args: RunArgs) -> Result<ExitCode, UsageError> {
    let seeds = parse_seeds(&args.seeds)?;
    let threads = parse_threads(args.threads)?;
    let (options, mode) = parse_swim(&args.cluster, seeds.clone(), threads)?;
    let runs: Vec<bool> = if mode == Lifeguard::Compare { vec![true, false] } else { vec![options.lifeguard] };
    let progress = SeedProgress::start(args.json, (seeds.end - seeds.start) * runs.len() as u64);
    let summaries: Vec<swim::runner::SwimRunSummary> = runs
        .iter()
        .map(|&lifeguard| {
            let options = swim::runner::SwimRunOptions { lifeguard, ..options.clone() };
            swim::runner::run_many(&options, &|outcome| progress.seed_done(outcome.passed()))
        })
        .collect();
    progress.finish();
    let passed = summaries.iter().all(|summary| summary.failed().is_empty());
    if let [on, off] = summaries.as_slice() {
        if args.json {
            say!("{}", swim::report::compare_json(on, off, &options));
        } else {
            say_text(&swim::report::compare_text(on, off, &options));
        }
    } else if args.json {
        say!("{}", swim::report::json(&summaries[0], &options));
    } else {
        say_text(&swim::report::text(&summaries[0], &options));
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn swim_replay(args: ReplayArgs) -> Result<ExitCode, UsageError> {
    let (options, mode) = parse_swim(&args.cluster, args.seed..args.seed.saturating_add(1), 1)?;
    if mode == Lifeguard::Compare {
        return Err(UsageError("--lifeguard compare applies to run only; replay one side with on or off".into()));
    }
    if args.history.is_some() {
        return Err(UsageError("--history applies to --system raft only (SWIM has no client history)".into()));
    }
    let keep_timeline = args.wants_timeline();
    timeline_files_writable(&args)?;
    let report = swim::run_seed(swim::SwimOptions { keep_trace_text: true, keep_timeline, ..options.seed(args.seed) });
    write_trace(args.trace.as_deref(), report.trace_text.as_deref().unwrap_or_default())?;
    write_timeline(&args, report.timeline.as_ref())?;
    let outcome = &report.outcome;
    let metrics = swim::Summary::of([&outcome.metrics]);
    print_replay_header(outcome, &report.profile);
    say!(
        "metrics:        {} crashes timed (first declaration p50 {} periods), {} false positives ({} excused), {} msgs per member per period",
        metrics.crashes_measured,
        metrics.detect_first_p50,
        metrics.false_positives,
        metrics.false_positives_excused,
        metrics.msgs_per_member_period
    );
    Ok(print_verdict(outcome))
}

/// `--ranges`, `--rf`, `--strategy`, `--workload`, `--quiesce` and
/// `--idle-secs` belong to `--system placement` or `cluster`.
fn reject_placement_flags(args: &ClusterArgs) -> Result<(), UsageError> {
    const BOTH: &str = "--system placement or cluster";
    for (given, flag, systems) in [
        (args.ranges.is_some(), "--ranges", BOTH),
        (args.rf.is_some(), "--rf", BOTH),
        (args.strategy.is_some(), "--strategy", "--system placement"),
        (args.workload.is_some(), "--workload", "--system cluster"),
        (args.quiesce.is_some(), "--quiesce", "--system cluster"),
        (args.idle_secs.is_some(), "--idle-secs", "--system cluster"),
    ] {
        if given {
            return Err(UsageError(format!("{flag} applies to {systems} only")));
        }
    }
    Ok(())
}

/// The options of a placement seed, checked.
fn parse_placement(args: &ClusterArgs, seed: u64) -> Result<placement::PlacementOptions, UsageError> {
    for (given, flag) in [
        (args.lifeguard.is_some(), "--lifeguard"),
        (args.faults.is_some(), "--faults"),
        (args.fault_ms.is_some(), "--fault-ms"),
        (args.progress, "--progress"),
        (args.scenario.is_some(), "--scenario"),
        (args.workload.is_some(), "--workload"),
        (args.quiesce.is_some(), "--quiesce"),
        (args.idle_secs.is_some(), "--idle-secs"),
    ] {
        if given {
            return Err(UsageError(format!("{flag} does not apply to --system placement")));
        }
    }
    let defaults = placement::PlacementOptions::new(seed);
    let rf = args.rf.unwrap_or(defaults.rf);
    if !(1..=chorus_core::partition::MAX_REPLICATION_FACTOR).contains(&rf) {
        return Err(UsageError(format!(
            "--rf {rf}: must be between 1 and {}",
            chorus_core::partition::MAX_REPLICATION_FACTOR
        )));
    }
    if args.nodes < rf + 1 || args.nodes > placement::MAX_NODES {
        return Err(UsageError(format!(
            "--nodes {}: must be between rf + 1 ({}) and {} with --system placement",
            args.nodes,
            rf + 1,
            placement::MAX_NODES
        )));
    }
    let ranges = args.ranges.unwrap_or(defaults.ranges);
    if !(1..=placement::MAX_RANGES).contains(&ranges) {
        return Err(UsageError(format!("--ranges {ranges}: must be between 1 and {}", placement::MAX_RANGES)));
    }
    let strategy = match &args.strategy {
        None => defaults.strategy,
        Some(name) => placement::Strategy::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = placement::Strategy::ALL.iter().map(|s| s.name()).collect();
            UsageError(format!("--strategy {name:?}: no such strategy; known: {}", names.join(", ")))
        })?,
    };
    let bug = match &args.bug {
        None => None,
        Some(name) => Some(placement::Bug::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = placement::Bug::ALL.iter().map(|bug| bug.name()).collect();
            UsageError(format!("--bug {name:?}: no such placement bug; known placement bugs: {}", names.join(", ")))
        })?),
    };
    Ok(placement::PlacementOptions { seed, nodes: args.nodes, ranges, rf, strategy, bug, keep_trace_text: false })
}

fn placement_run(args: RunArgs) -> Result<ExitCode, UsageError> {
    let seeds = parse_seeds(&args.seeds)?;
    let threads = parse_threads(args.threads)?;
    let base = parse_placement(&args.cluster, seeds.start)?;
    let options = placement::report::PlacementRunOptions { seeds: seeds.clone(), base, threads };
    let progress = SeedProgress::start(args.json, seeds.end - seeds.start);
    let summary = placement::report::run_many(&options, &|outcome| progress.seed_done(outcome.passed()));
    progress.finish();
    if args.json {
        say!("{}", placement::report::json(&summary, &options));
    } else {
        say_text(&placement::report::text(&summary, &options));
    }
    Ok(if summary.failed().is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn placement_replay(args: ReplayArgs) -> Result<ExitCode, UsageError> {
    if args.history.is_some() {
        return Err(UsageError("--history applies to --system raft only (placement has no client history)".into()));
    }
    if args.html.is_some() || args.perfetto.is_some() {
        return Err(UsageError(
            "--html and --perfetto apply to --system raft and swim; read a placement run with --trace".into(),
        ));
    }
    let options = placement::PlacementOptions { keep_trace_text: true, ..parse_placement(&args.cluster, args.seed)? };
    let report = placement::run_seed(options);
    write_trace(args.trace.as_deref(), report.trace_text.as_deref().unwrap_or_default())?;
    let outcome = &report.outcome;
    print_replay_header(outcome, &report.profile);
    let m = &outcome.metrics;
    say!(
        "metrics:        {} moves ({} optimal), {} operations ({} failed), {} planner restarts, converged {}",
        m.moves,
        m.moves_optimal,
        m.operations,
        m.operations_failed,
        m.planner_restarts,
        m.converge_us.map_or("never".to_string(), |us| format!("{} ms after the fault phase", us / 1000))
    );
    Ok(print_verdict(outcome))
}

fn check_history(args: CheckHistoryArgs) -> Result<ExitCode, UsageError> {
    let text = read_file(&args.file, "history")?;
    let parsed =
        history::parse_auto(&text).map_err(|error| UsageError(format!("history {}: {error}", args.file.display())))?;
    let keyed = parsed.operations.iter().any(|op| op.key.is_some());
    if matches!(args.model, Some(Model::Register)) && keyed {
        return Err(UsageError(format!(
            "history {}: operations carry keys, so it is not a single register; use --model kv",
            args.file.display()
        )));
    }
    let limits = SearchLimits { max_memory_bytes: args.max_memory_mb << 20, ..SearchLimits::default() };
    match linearizability::check(&parsed, &limits) {
        Verdict::Linearizable => {
            say!("linearizable");
            Ok(ExitCode::SUCCESS)
        }
        Verdict::NotLinearizable { key, explanation } => {
            say!("not linearizable");
            if let Some(key) = key {
                say!("key: {key}");
            }
            say!("{explanation}");
            Ok(ExitCode::from(1))
        }
        Verdict::Unknown { key, reason } => {
            say!("unknown");
            say!("the search gave up{}: {reason}", key.map(|key| format!(" on key {key}")).unwrap_or_default());
            Ok(ExitCode::from(3))
        }
    }
}

/// Writes text that may be long (a summary, a trace) to standard output,
/// tolerating a closed pipe as [`say!`] does.
fn say_text(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// `--threads`: at least one; by default the available cores.
fn parse_threads(threads: Option<usize>) -> Result<usize, UsageError> {
    match threads {
        Some(0) => Err(UsageError("--threads 0: need at least one thread".into())),
        Some(threads) => Ok(threads),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// The progress bar of a `run` (hidden with `--json`) and its count of
/// failed seeds.
struct SeedProgress {
    bar: indicatif::ProgressBar,
    failures: AtomicU64,
}

impl SeedProgress {
    /// A bar for `seeds` seeds to go. A panic inside a seed is a broken
    /// invariant that the runner reports as that seed's failure (with the
    /// replay command), so the default hook's backtrace on stderr would only
    /// be noise: it is silenced.
    fn start(json: bool, seeds: u64) -> SeedProgress {
        let bar = if json {
            indicatif::ProgressBar::hidden()
        } else {
            let bar = indicatif::ProgressBar::new(seeds);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} seeds, {msg} [{elapsed_precise}, eta {eta}]",
                )
                .expect("the template is valid"),
            );
            bar
        };
        std::panic::set_hook(Box::new(|_| {}));
        SeedProgress { bar, failures: AtomicU64::new(0) }
    }

    /// Called from worker threads after each seed.
    fn seed_done(&self, passed: bool) {
        if !passed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.bar.set_message(format!("{} failed", self.failures.load(Ordering::Relaxed)));
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A replay's trace: to `path`, or to standard output.
fn write_trace(path: Option<&Path>, text: &str) -> Result<(), UsageError> {
    match path {
        Some(path) => std::fs::write(path, text)
            .map_err(|error| UsageError(format!("cannot write trace file {}: {error}", path.display()))),
        None => {
            say_text(text);
            Ok(())
        }
    }
}

/// The names of a replay's timeline files, for its messages.
const TIMELINE_FILES: [&str; 2] = ["HTML", "Perfetto trace"];

/// Fails before the run (which may take minutes) if a timeline file cannot
/// be created; the files are written after it.
fn timeline_files_writable(args: &ReplayArgs) -> Result<(), UsageError> {
    for (path, what) in [args.html.as_deref(), args.perfetto.as_deref()].into_iter().zip(TIMELINE_FILES) {
        if let Some(path) = path {
            std::fs::File::create(path)
                .map_err(|error| UsageError(format!("cannot write {what} file {}: {error}", path.display())))?;
        }
    }
    Ok(())
}

/// A replay's timeline as an HTML page and/or a Perfetto trace, where asked.
fn write_timeline(args: &ReplayArgs, timeline: Option<&chorus_sim::timeline::Timeline>) -> Result<(), UsageError> {
    let outputs = [
        (args.html.as_deref(), TIMELINE_FILES[0], chorus_sim::timeline::html::render as fn(&_) -> String),
        (args.perfetto.as_deref(), TIMELINE_FILES[1], chorus_sim::timeline::perfetto::render),
    ];
    for (path, what, render) in outputs {
        let Some(path) = path else { continue };
        let timeline = timeline.ok_or_else(|| UsageError(format!("no timeline was kept for the {what} file")))?;
        std::fs::write(path, render(timeline))
            .map_err(|error| UsageError(format!("cannot write {what} file {}: {error}", path.display())))?;
    }
    Ok(())
}

/// The first lines of a replay's summary.
fn print_replay_header<M: Default>(outcome: &SeedOutcome<M>, profile: &str) {
    say!("seed:           {}", outcome.seed);
    say!("profile:        {profile}");
    say!("events:         {}", outcome.events);
    say!("simulated time: {:.3} s", outcome.sim_micros as f64 / 1e6);
}

/// The last lines of a replay's summary; exit code 1 if the seed failed.
fn print_verdict<M: Default>(outcome: &SeedOutcome<M>) -> ExitCode {
    if outcome.passed() {
        say!("verdict:        PASS");
    } else {
        say!("verdict:        FAIL");
        for failure in &outcome.failures {
            say!("  {failure}");
        }
    }
    say!("trace-hash: {}", hex(&outcome.trace_hash));
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn placement_stats(args: PlacementStatsArgs) -> Result<ExitCode, UsageError> {
    use chorus_sim::placement_stats::{measure, to_json, to_text, StatsOptions, Strategy};
    let tokens = match args.tokens {
        RingTokens::Balanced => chorus_core::partition::TokenPlacement::Balanced {
            candidates: args.candidates,
            // Checked by `measure` against the node count; capped here only
            // to form a valid placement.
            replication: args.rf.clamp(1, u64::from(chorus_core::partition::MAX_BALANCED_REPLICATION)) as u32,
        },
        RingTokens::Random => chorus_core::partition::TokenPlacement::Random,
    };
    let strategy = match args.strategy {
        PlacementStrategy::Ring => Strategy::Ring(tokens),
        PlacementStrategy::Jump => Strategy::Jump,
        PlacementStrategy::Balanced => Strategy::Balanced,
    };
    let options = StatsOptions { nodes: args.nodes, vnodes: args.vnodes, rf: args.rf, keys: args.keys, strategy };
    let stats = measure(&options).map_err(UsageError)?;
    if args.json {
        say!("{}", to_json(&options, &stats));
    } else {
        say_text(&to_text(&options, &stats));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Replay(args) => replay(args),
        Command::Bugs(args) => Ok(bugs(args)),
        Command::CheckHistory(args) => check_history(args),
        Command::Shrink(args) => shrink(args),
        Command::PlacementStats(args) => placement_stats(args),
    };
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
