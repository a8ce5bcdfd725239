//! `chorus-sim run --system placement`: seeds pass, every planner bug is
//! caught, runs are deterministic, the JSON keys are a contract, and bad
//! flags are named.

use chorus_sim::placement::report::{run_many, PlacementRunOptions};
use chorus_sim::placement::{run_seed, Bug, PlacementOptions, Strategy};
use std::process::{Command, Output};

fn chorus_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chorus-sim")).args(args).output().expect("the binary runs")
}

fn options(seed: u64) -> PlacementOptions {
    PlacementOptions { nodes: 6, ranges: 24, ..PlacementOptions::new(seed) }
}

#[test]
fn a_few_seeds_pass_and_converge() {
    let run = PlacementRunOptions { seeds: 0..30, base: options(0), threads: 2 };
    let summary = run_many(&run, &|_| {});
    let failed: Vec<(u64, &String)> =
        summary.outcomes.iter().filter(|o| !o.passed()).map(|o| (o.seed, &o.failures[0])).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(summary.outcomes.iter().all(|o| o.metrics.converge_us.is_some() && o.metrics.moves > 0));
}

#[test]
fn every_planner_bug_is_caught_within_twenty_seeds() {
    for bug in Bug::ALL {
        let caught = (0..20).find(|&seed| !run_seed(PlacementOptions { bug: Some(bug), ..options(seed) }).passed());
        assert!(caught.is_some(), "{} survived seeds 0..20", bug.name());
    }
}

#[test]
fn the_same_seed_gives_the_same_trace_and_any_thread_count_the_same_combined_hash() {
    let once = run_seed(PlacementOptions { keep_trace_text: true, ..options(7) });
    let again = run_seed(PlacementOptions { keep_trace_text: true, ..options(7) });
    assert_eq!(once.outcome, again.outcome);
    assert_eq!(once.trace_text, again.trace_text);
    let one = run_many(&PlacementRunOptions { seeds: 0..6, base: options(0), threads: 1 }, &|_| {});
    let three = run_many(&PlacementRunOptions { seeds: 0..6, base: options(0), threads: 3 }, &|_| {});
    assert_eq!(one.combined_hash(), three.combined_hash());
}

#[test]
fn run_json_has_the_documented_keys() {
    let output =
        chorus_sim(&["run", "--system", "placement", "--seeds", "0..3", "--nodes", "5", "--ranges", "16", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    for key in [
        "seeds",
        "failed",
        "events",
        "combined_hash",
        "moves",
        "moves_optimal",
        "movement_ratio",
        "balance_spread_pct",
        "leader_spread_pct",
        "max_concurrent_moves",
        "converge_ms",
    ] {
        assert!(!json[key].is_null(), "{key} missing in {json}");
    }
}

#[test]
fn a_failing_seed_prints_its_replay_command_and_replay_gives_the_same_hash() {
    let output = chorus_sim(&[
        "run",
        "--system",
        "placement",
        "--seeds",
        "0..5",
        "--nodes",
        "5",
        "--ranges",
        "16",
        "--bug",
        "no-move-limits",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    let replay_line = text.lines().find_map(|l| l.trim().strip_prefix("replay: ")).expect("a replay command");
    let hash_line = text.lines().find_map(|l| l.trim().strip_prefix("trace-hash: ")).expect("a trace hash");
    let args: Vec<&str> = replay_line.split_whitespace().skip(1).chain(["--trace", "/dev/null"]).collect();
    let replay = chorus_sim(&args);
    assert_eq!(replay.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&replay.stdout).contains(&format!("trace-hash: {hash_line}")));
}

#[test]
fn bad_placement_flags_are_named_with_exit_code_2() {
    for (args, expected) in [
        (&["--rf", "0"][..], "--rf 0"),
        (&["--nodes", "3"], "--nodes 3"),
        (&["--ranges", "0"], "--ranges 0"),
        (&["--strategy", "random"], "--strategy \"random\""),
        (&["--bug", "split-brain"], "no such placement bug"),
        (&["--faults", "none"], "--faults does not apply"),
    ] {
        let output = chorus_sim(&[&["run", "--system", "placement", "--seeds", "0..1"][..], args].concat());
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let output = chorus_sim(&["run", "--seeds", "0..1", "--ranges", "5"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--ranges applies to --system placement or cluster only"));
}

#[test]
fn a_small_ring_run_converges_to_the_rings_targets_and_replays_bit_for_bit() {
    for seed in 0..4 {
        let options =
            PlacementOptions { nodes: 6, ranges: 16, strategy: Strategy::Ring, ..PlacementOptions::new(seed) };
        let report = run_seed(options.clone());
        assert!(report.outcome.failures.is_empty(), "seed {seed}: {:?}", report.outcome.failures);
        assert!(report.outcome.metrics.converge_us.is_some(), "seed {seed} converged");
        assert_eq!(run_seed(options).outcome.trace_hash, report.outcome.trace_hash, "seed {seed} replays");
    }
}
