//! `chorus-sim placement-stats`: its JSON keys and exit codes are a
//! contract.

use std::process::{Command, Output};

fn chorus_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chorus-sim")).args(args).output().expect("the binary runs")
}

#[test]
fn placement_stats_json_has_the_documented_keys_for_ring_and_jump() {
    for strategy in ["ring", "jump"] {
        let args = ["placement-stats", "--nodes", "8", "--vnodes", "16", "--rf", "3", "--keys", "5000"];
        let output = chorus_sim(&[&args[..], &["--strategy", strategy, "--json"]].concat());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        for key in [
            "share_sd_pct",
            "replica_share_sd_pct",
            "max_over_mean",
            "move_on_add",
            "move_on_add_optimal",
            "move_on_remove",
            "move_on_remove_optimal",
            "lookup_ns",
        ] {
            assert!(json[key].is_number(), "{strategy}: {key} missing in {json}");
        }
        assert_eq!(json["move_on_add_optimal"].as_f64(), Some(1.0 / 9.0));
    }
}

#[test]
fn placement_stats_refuses_bad_flags_with_exit_code_2_and_no_panic() {
    for bad in [
        &["--nodes", "0"][..],
        &["--nodes", "1"],
        &["--vnodes", "0"],
        &["--rf", "0"],
        &["--rf", "101"],
        &["--keys", "0"],
        &["--keys", "100000000000"],
        &["--nodes", "10000", "--vnodes", "1000"],
        &["--nodes", "-1"],
    ] {
        let output = chorus_sim(&[&["placement-stats"][..], bad].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bad:?}: {stderr}");
    }
    let balanced =
        chorus_sim(&["placement-stats", "--strategy", "balanced", "--nodes", "10", "--keys", "10000", "--json"]);
    assert_eq!(balanced.status.code(), Some(0), "{}", String::from_utf8_lossy(&balanced.stderr));
    assert!(String::from_utf8_lossy(&balanced.stdout).contains("\"replica_share_sd_pct\""));
}
