//! The named scenario files in `sim/scenarios/` run clean across seeds.

use chorus_sim::scenario::Scenario;
use chorus_sim::{run_seed, SimOptions};
use std::path::PathBuf;

fn scenarios() -> Vec<(String, Scenario)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let scenario = Scenario::parse(&text, 5).unwrap_or_else(|error| panic!("{name}: {error}"));
            (name, scenario)
        })
        .collect()
}

#[test]
fn every_named_scenario_passes_on_twenty_seeds() {
    let all = scenarios();
    assert!(all.len() >= 5);
    for (name, scenario) in all {
        for seed in 0..20 {
            let report = run_seed(SimOptions { scenario: Some(scenario.clone()), ..SimOptions::new(seed) });
            assert!(report.passed(), "{name} seed {seed}: {:?}", report.outcome.failures);
            assert!(report.outcome.metrics.ok > 50, "{name} seed {seed}: the workload barely ran");
        }
    }
}

#[test]
fn an_isolated_leader_is_replaced_and_steps_down() {
    let (_, scenario) = scenarios().into_iter().find(|(name, _)| name == "partitioned-leader-rejoins.toml").unwrap();
    let report = run_seed(SimOptions { scenario: Some(scenario), keep_trace_text: true, ..SimOptions::new(1) });
    assert!(report.passed(), "{:?}", report.outcome.failures);
    let trace = report.trace_text.unwrap();
    let isolation = trace.find("FAULT isolate the leader").expect("the leader was isolated");
    let after = &trace[isolation..];
    let heal = after.find("FAULT heal network").unwrap();
    let during = &after[..heal];
    assert!(during.contains("becomes Leader"), "a new leader is elected during the isolation");
    assert!(during.contains("becomes Follower"), "the old leader steps down (check-quorum)");
}

fn trace_of(file: &str, seed: u64) -> String {
    let (_, scenario) = scenarios().into_iter().find(|(name, _)| name == file).unwrap();
    let report = run_seed(SimOptions { scenario: Some(scenario), keep_trace_text: true, ..SimOptions::new(seed) });
    assert!(report.passed(), "{file} seed {seed}: {:?}", report.outcome.failures);
    report.trace_text.unwrap()
}

#[test]
fn a_transfer_catches_the_slow_target_up_then_hands_over_and_an_impossible_one_is_abandoned() {
    for seed in 0..5 {
        let trace = trace_of("transfer-to-slow-follower.toml", seed);
        let start = trace.find("starts handing leadership").expect("the first transfer starts");
        let after = &trace[start..];
        let first_leader = after.find("n2 becomes Leader").expect("the lagging target takes over");
        let second = after.find("FAULT operator: transfer leadership to n3").unwrap();
        assert!(first_leader < second, "seed {seed}: n2 took over before the second transfer");
        assert!(after[second..].contains("abandons the transfer"), "seed {seed}: the cut-off target never takes over");
    }
}

#[test]
fn the_leader_replaced_through_joint_consensus_steps_down() {
    for seed in 0..5 {
        let trace = trace_of("replace-leader-joint.toml", seed);
        // The trace names the configuration's learners while it has any,
        // and only then.
        let configurations: Vec<&str> = trace.lines().filter(|line| line.contains("configuration at")).collect();
        assert!(
            configurations.iter().any(|line| line.ends_with("voters [n1,n2,n3,n4,n5] learners [n6]")),
            "seed {seed}"
        );
        assert!(configurations.iter().all(|line| !line.contains("learners []")), "seed {seed}");
        let asked = trace.find("Replace { remove: NodeId(1), add: NodeId(6) }: Ok").expect("the replacement starts");
        let after = &trace[asked..];
        assert!(after.lines().filter(|line| line.contains("configuration at")).all(|line| !line.contains("learners")));
        assert!(after.contains("joint with [n1,"), "seed {seed}: the change goes through a joint configuration");
        let final_config = "configuration at";
        assert!(
            after
                .lines()
                .filter(|line| line.contains(final_config))
                .any(|line| !line.contains("n1") && !line.contains("joint")),
            "seed {seed}: a configuration without n1 is reached"
        );
        assert!(
            after.lines().filter(|line| line.contains("becomes Leader")).all(|line| !line.contains("n1 becomes")),
            "seed {seed}: n1 never leads again"
        );
    }
}

#[test]
fn lagging_followers_catch_up_by_snapshot_under_loss_and_after_everyone_crashes() {
    for file in ["snapshot-install-under-loss.toml", "all-crash-mid-snapshot.toml"] {
        for seed in 0..5 {
            let trace = trace_of(file, seed);
            assert!(trace.contains("installed the snapshot"), "{file} seed {seed}: a snapshot was installed");
        }
    }
}
