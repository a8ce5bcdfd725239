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
            assert!(report.outcome.ops_ok > 50, "{name} seed {seed}: the workload barely ran");
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
