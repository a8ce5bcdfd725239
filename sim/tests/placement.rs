//! `--system placement` end to end, through the library.

use chorus_sim::placement::{run_seed, PlacementOptions, Strategy};

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

#[test]
fn the_ring_strategy_is_named_on_the_command_line() {
    assert_eq!(Strategy::from_name("ring"), Some(Strategy::Ring));
    assert_eq!(Strategy::from_name("balanced"), Some(Strategy::Balanced));
    assert_eq!(Strategy::from_name("jump"), None);
}
