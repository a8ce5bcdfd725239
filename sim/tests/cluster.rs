//! `--system cluster`: seeds pass, replay is exact, and every injected bug
//! is caught.

use chorus_sim::cluster::{run_seed, ClusterBug, ClusterOptions};

#[test]
fn a_calm_cluster_converges_and_serves_every_key() {
    let report = run_seed(ClusterOptions { faults: false, ..ClusterOptions::new(1) });
    assert!(report.passed(), "{:?}\nprofile: {}", report.outcome.failures, report.profile);
    let metrics = &report.outcome.metrics;
    assert!(metrics.operations > 0 && metrics.converge_ms.is_some(), "{metrics:?}");
    // The bootstrap layout puts two replicas of some ranges in one zone:
    // the planner moves them, through the ranges' own joint consensus.
    assert!(metrics.replica_moves > 0, "{metrics:?}");
}

#[test]
fn seeds_with_faults_pass() {
    for seed in 0..6 {
        let report = run_seed(ClusterOptions::new(seed));
        assert!(report.passed(), "seed {seed}: {:?}\nprofile: {}", report.outcome.failures, report.profile);
    }
}

#[test]
fn a_replay_is_the_same_run() {
    let first = run_seed(ClusterOptions::new(7));
    let again = run_seed(ClusterOptions { keep_trace_text: true, ..ClusterOptions::new(7) });
    assert_eq!(first.outcome, again.outcome);
    assert!(again.trace_text.is_some_and(|text| text.contains("OperationStarted")));
}

/// The first seed in `0..limit` that fails with `bug`, and its failures.
fn first_failure(bug: ClusterBug, limit: u64) -> Option<(u64, Vec<String>)> {
    (0..limit).find_map(|seed| {
        let report = run_seed(ClusterOptions { bug: Some(bug), ..ClusterOptions::new(seed) });
        (!report.passed()).then_some((seed, report.outcome.failures))
    })
}

#[test]
fn every_injected_bug_is_caught_by_the_checker_meant_for_it() {
    let expected = [
        (ClusterBug::ServesForeignKeys, "routing:", 5),
        (ClusterBug::AckBeforeDurable, "durability:", 120),
        (ClusterBug::RemoveBeforeAdd, "replicas:", 20),
        (ClusterBug::NoDescriptorGossip, "routes by descriptors version", 5),
        (ClusterBug::LocalLinearizableReads, "linearizability:", 5),
        (ClusterBug::OrphansKept, "still hosts a replica", 5),
    ];
    for (bug, what, limit) in expected {
        let (seed, failures) = first_failure(bug, limit).unwrap_or_else(|| panic!("{} never caught", bug.name()));
        assert!(failures.iter().any(|f| f.contains(what)), "{} at seed {seed}: {failures:?}", bug.name());
    }
}
