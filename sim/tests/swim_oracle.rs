//! The oracle of the SWIM mutation campaign (`docs/simulator.md`, "Mutation
//! score"): SWIM seeds of the swarm at 5 and 20 members must pass. By
//! default a handful of seeds, so that it costs CI nothing;
//! `CHORUS_ORACLE_SEEDS=N` runs `0..N` at 5 members and `0..N/2` at 20.

use chorus_sim::swim::runner::{run_many, SwimRunOptions};
use chorus_sim::swim::FaultMix;

fn failures(nodes: usize, seeds: u64) -> Vec<String> {
    let options = SwimRunOptions {
        seeds: 0..seeds,
        nodes,
        bug: None,
        lifeguard: true,
        faults: FaultMix::Swarm,
        fault_phase_us: chorus_sim::swim::world::FAULT_PHASE_US,
        threads: 2,
        progress: false,
    };
    run_many(&options, &|_| {})
        .outcomes
        .iter()
        .filter(|outcome| !outcome.passed())
        .map(|outcome| format!("{nodes} members, seed {}: {}", outcome.seed, outcome.failures[0]))
        .collect()
}

#[test]
fn swim_seeds_of_the_swarm_pass_at_5_and_20_members() {
    let seeds = std::env::var("CHORUS_ORACLE_SEEDS").ok().and_then(|text| text.parse().ok()).unwrap_or(10);
    let mut failed = failures(5, seeds);
    failed.extend(failures(20, seeds / 2));
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
