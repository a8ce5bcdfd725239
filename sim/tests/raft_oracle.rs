//! The oracle of the Raft mutation campaign (`docs/simulator.md`, "Mutation
//! score"): Raft seeds of the default swarm at 5 and 3 nodes must pass. By
//! default a handful of seeds, so that it costs CI nothing;
//! `CHORUS_ORACLE_SEEDS=N` runs `0..N` at 5 nodes and `0..N/2` at 3.

use chorus_sim::runner::{run_many, RunOptions};

fn failures(nodes: usize, seeds: u64) -> Vec<String> {
    let options = RunOptions { seeds: 0..seeds, nodes, bug: None, scenario: None, threads: 2 };
    run_many(&options, &|_| {})
        .outcomes
        .iter()
        .filter(|outcome| !outcome.passed())
        .map(|outcome| format!("{nodes} nodes, seed {}: {}", outcome.seed, outcome.failures[0]))
        .collect()
}

#[test]
fn raft_seeds_of_the_swarm_pass_at_5_and_3_nodes() {
    let seeds = std::env::var("CHORUS_ORACLE_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(10);
    let mut failed = failures(5, seeds);
    failed.extend(failures(3, seeds / 2));
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
