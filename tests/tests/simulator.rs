//! The simulator end to end: seeds pass, bugs are caught, runs replay exactly.

use chorus_core::raft::Bug;
use chorus_sim::runner::{run_many, run_one, RunOptions};
use chorus_sim::scenario::Scenario;
use chorus_sim::{run_seed, SimOptions};

/// Every injected bug must be caught within this many seeds of the default swarm.
const BUG_SEED_BUDGET: u64 = 1000;

fn options(seeds: std::ops::Range<u64>, bug: Option<Bug>, threads: usize) -> RunOptions {
    RunOptions { seeds, nodes: 5, bug, scenario: None, threads }
}

#[test]
fn three_hundred_seeds_of_the_default_swarm_pass() {
    let summary = run_many(&options(0..300, None, 2), &|_| {});
    let failures: Vec<String> = summary
        .outcomes
        .iter()
        .filter(|outcome| !outcome.failures.is_empty())
        .map(|outcome| format!("seed {}: {}", outcome.seed, outcome.failures[0]))
        .collect();
    assert!(failures.is_empty(), "failing seeds:\n{}", failures.join("\n"));
    let (ok, _, _) = summary.ops();
    assert!(ok > 10_000, "the workload barely ran: {ok} operations succeeded");
}

/// The cluster size each bug is hunted with. Five nodes, except where the
/// failure needs a smaller cluster: the removed-leader deadlock needs an
/// outgoing half where the leaving leader's vote decides (two voters), which
/// the operator reaches only from three nodes (it keeps the voter count
/// within one of the initial size).
fn nodes_for(bug: Bug) -> usize {
    match bug {
        Bug::RemovedVoterNeverCampaigns => 3,
        _ => 5,
    }
}

#[test]
fn every_injected_bug_is_caught_within_the_seed_budget() {
    let mut report = Vec::new();
    for bug in Bug::ALL {
        // Seeds in chunks on two threads; the first failing seed is the same
        // as running them one by one.
        let caught = (0..BUG_SEED_BUDGET).step_by(32).find_map(|start| {
            let mut run = options(start..(start + 32).min(BUG_SEED_BUDGET), Some(bug), 2);
            run.nodes = nodes_for(bug);
            let summary = run_many(&run, &|_| {});
            summary.outcomes.into_iter().find(|outcome| !outcome.failures.is_empty())
        });
        match caught {
            Some(outcome) => report.push(format!("{bug}: seed {} — {}", outcome.seed, outcome.failures[0])),
            None => panic!("bug {bug} survived {BUG_SEED_BUDGET} seeds: a checker is blind to it"),
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn the_same_seed_replays_byte_for_byte() {
    let first = run_seed(SimOptions::new(7));
    let second = run_seed(SimOptions { keep_trace_text: true, ..SimOptions::new(7) });
    assert_eq!(first.outcome.trace_hash, second.outcome.trace_hash, "keeping the text must not change the run");
    assert_eq!(first.outcome.events, second.outcome.events);
    assert_eq!(first.history, second.history);
    let other = run_seed(SimOptions::new(8));
    assert_ne!(first.outcome.trace_hash, other.outcome.trace_hash, "different seeds should differ");
}

#[test]
fn the_combined_hash_does_not_depend_on_the_thread_count() {
    let one = run_many(&options(0..24, None, 1), &|_| {});
    let three = run_many(&options(0..24, None, 3), &|_| {});
    assert_eq!(one.combined_hash(), three.combined_hash());
    assert_eq!(one.events(), three.events());
}

#[test]
fn a_failing_seed_replays_to_the_same_failure() {
    let run = options(0..1, Some(Bug::AckBeforeCommit), 1);
    let failing = (0..200).map(|seed| run_one(seed, &run)).find(|outcome| !outcome.failures.is_empty()).unwrap();
    let replay = run_seed(SimOptions {
        bug: Some(Bug::AckBeforeCommit),
        keep_trace_text: true,
        ..SimOptions::new(failing.seed)
    });
    assert_eq!(replay.outcome.trace_hash, failing.trace_hash);
    assert_eq!(replay.outcome.failures, failing.failures);
    let text = replay.trace_text.unwrap();
    assert!(text.contains("verdict FAIL"), "the trace ends with the verdict");
}

#[test]
fn a_scenario_schedule_runs_instead_of_random_faults() {
    let text = r#"
        duration_ms = 6000
        [[events]]
        at_ms = 1000
        action = "partition"
        groups = [[1, 2], [3, 4, 5]]
        [[events]]
        at_ms = 2500
        action = "heal"
        [[events]]
        at_ms = 3000
        action = "crash"
        node = "leader"
        [[events]]
        at_ms = 4000
        action = "restart"
        node = "all"
    "#;
    let scenario = Scenario::parse(text, 5).unwrap();
    let report = run_seed(SimOptions { scenario: Some(scenario), keep_trace_text: true, ..SimOptions::new(3) });
    assert!(report.passed(), "{:?}", report.outcome.failures);
    let trace = report.trace_text.unwrap();
    for expected in
        ["FAULT partition {n1,n2}|{n3,n4,n5}", "FAULT heal network", "FAULT crash the leader", "FAULT restart all"]
    {
        assert!(trace.contains(expected), "trace lacks {expected:?}");
    }
    assert!(!trace.contains("FAULT isolate"), "no random faults were asked for");
}

#[test]
fn the_liveness_checker_fires_when_recovery_takes_longer_than_its_bound() {
    // No cluster elects a leader and finishes its clients' operations within
    // a millisecond of healing: the liveness checker must say so.
    let report = run_seed(SimOptions { liveness_bound_us: 1_000, ..SimOptions::new(5) });
    assert!(
        report.outcome.failures.iter().any(|failure| failure.starts_with("liveness:")),
        "expected a liveness failure, got {:?}",
        report.outcome.failures
    );
}

#[test]
fn a_paused_nodes_disk_acknowledgements_reach_it_after_it_resumes() {
    // Regression: seed 218 with three nodes lost a disk acknowledgement that
    // arrived while its node was paused, so the node held its messages
    // forever and the liveness checker (rightly) failed the seed.
    let report = run_seed(SimOptions { nodes: 3, ..SimOptions::new(218) });
    assert!(report.passed(), "{:?}", report.outcome.failures);
}

#[test]
fn three_and_seven_node_clusters_pass_too() {
    for nodes in [3, 7] {
        let summary = run_many(&RunOptions { nodes, ..options(0..60, None, 2) }, &|_| {});
        assert!(summary.failed().is_empty(), "{nodes} nodes: failing seeds {:?}", summary.failed());
    }
}

/// The seeds that failed before issue 9's fixes (two leaders in a term, the
/// removed-leader deadlock, a wrong answer, a restart panic). The fixes
/// changed every trace, so these no longer replay the original schedules
/// (the scenario tests in `core/tests/raft_regressions.rs` do, by
/// construction); they stay as cheap guards.
#[test]
fn the_seeds_that_once_failed_pass() {
    for (seed, nodes) in [(5591, 3), (2011, 3), (102421, 3), (55657, 3), (29718, 5)] {
        let outcome = run_one(seed, &RunOptions { nodes, ..options(0..1, None, 1) });
        assert!(outcome.failures.is_empty(), "seed {seed} ({nodes} nodes): {:?}", outcome.failures);
    }
}

/// The seeds that failed when the swarm first simulated quiescence
/// (2026-12-03), on that swarm: a wiped follower committed another term's
/// entries from a heartbeat (4474, 3 nodes), a quiesced node's "never"
/// deadline became a timer storm in the simulator (1), and groups never
/// went quiet: a stale partial snapshot (176), a forwarded proposal a
/// snapshot covered (244), a removed node's campaigns (378, 6191), a
/// membership change refused after every wake (2970); and two seeds of the
/// 100k soak on it where a disk wipe struck while a deposed leader's
/// uncommitted joint configuration needed the wiped node (16322, 45181,
/// 3 nodes: the fault injector now waits).
#[test]
fn the_seeds_quiescence_found_pass() {
    for (seed, nodes) in [(4474, 3), (1, 5), (176, 5), (244, 5), (378, 5), (6191, 5), (2970, 5), (16322, 3), (45181, 3)]
    {
        let outcome = run_one(seed, &RunOptions { nodes, ..options(0..1, None, 1) });
        assert!(outcome.failures.is_empty(), "seed {seed} ({nodes} nodes): {:?}", outcome.failures);
    }
}

/// A broken internal invariant (a panic) ends the seed as a failure with its
/// trace, so `replay` shows the steps that led to it (it used to die before
/// writing the trace).
#[test]
fn a_panicking_seed_still_writes_its_trace() {
    let run = RunOptions { nodes: 5, ..options(0..1, Some(Bug::JoinerSkipsSnapshot), 1) };
    let failing = (0..200)
        .map(|seed| run_one(seed, &run))
        .find(|outcome| outcome.failures.iter().any(|failure| failure.starts_with("panic:")))
        .expect("the bug breaks an internal invariant within 200 seeds");
    let replay = run_seed(SimOptions {
        bug: Some(Bug::JoinerSkipsSnapshot),
        keep_trace_text: true,
        ..SimOptions::new(failing.seed)
    });
    assert_eq!(replay.outcome.trace_hash, failing.trace_hash, "run and replay agree on a panicking seed");
    let text = replay.trace_text.expect("kept");
    assert!(text.contains("PANIC panic: invariant"), "the trace names the panic");
    assert!(text.trim_end().ends_with(&format!("verdict FAIL: {}", failing.failures[0])));
}
