//! `--system cluster`: seeds pass, replay is exact, and the checkers fire.

use chorus_sim::cluster::{run_seed, ClusterOptions};

#[test]
fn a_calm_cluster_converges_and_serves_every_key() {
    let report = run_seed(ClusterOptions { faults: false, ..ClusterOptions::new(1) });
    assert!(report.passed(), "{:?}\nprofile: {}", report.outcome.failures, report.profile);
    assert!(report.outcome.metrics.operations > 0);
}

#[test]
fn seeds_with_faults_pass() {
    for seed in 0..3 {
        let report = run_seed(ClusterOptions::new(seed));
        assert!(report.passed(), "seed {seed}: {:?}\nprofile: {}", report.outcome.failures, report.profile);
    }
}

#[test]
#[ignore]
fn debug_one() {
    let seed: u64 = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let faults = std::env::var("CALM").is_err();
    let report = run_seed(ClusterOptions {
        faults,
        keep_trace_text: std::env::var("TRACE").is_ok(),
        ..ClusterOptions::new(seed)
    });
    if let Some(text) = &report.trace_text {
        std::fs::write("/tmp/cluster-trace.txt", text).unwrap();
    }
    eprintln!("{:?}\n{}\nops {}", report.outcome, report.profile, report.history.operations.len());
}
