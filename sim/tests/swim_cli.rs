//! `chorus-sim --system swim`: flags, outputs and exit codes are a contract,
//! and Raft stays the default.

use std::process::{Command, Output};

fn chorus_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chorus-sim")).args(args).output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bugs_lists_swim_bugs_with_system_swim_and_raft_bugs_by_default() {
    let swim = chorus_sim(&["bugs", "--system", "swim"]);
    assert!(swim.status.success());
    let text = stdout(&swim);
    let names: Vec<&str> = text.lines().map(|line| line.split_once('\t').expect("name, tab, description").0).collect();
    assert_eq!(
        names,
        [
            "refutation-ignored",
            "lower-incarnation-accepted",
            "failed-never-gossiped",
            "suspicion-never-expires",
            "retransmit-once",
            "no-piggyback",
            "slow-probes",
            "hasty-probes",
            "long-suspicion",
            "refutation-not-spread",
            "late-nacks",
            "metadata-dropped",
            "spurious-updates",
        ]
    );
    let raft = stdout(&chorus_sim(&["bugs"]));
    assert!(raft.contains("commit-old-term\t") && !raft.contains("refutation-ignored"));
    assert_eq!(raft, stdout(&chorus_sim(&["bugs", "--system", "raft"])));
}

#[test]
fn bad_swim_usage_exits_2_with_a_message_naming_the_problem() {
    let cases: [(&[&str], &str); 10] = [
        (&["run", "--system", "swim", "--lifeguard", "maybe"], "invalid value 'maybe' for '--lifeguard"),
        (
            &["run", "--system", "swim", "--bug", "no-such"],
            "--bug \"no-such\": no such SWIM bug; known SWIM bugs: refutation-ignored",
        ),
        (&["run", "--system", "swim", "--bug", "commit-old-term"], "(that is a Raft bug)"),
        (&["run", "--system", "swim", "--scenario", "x.toml"], "--scenario applies to --system raft only"),
        (&["run", "--system", "swim", "--nodes", "0"], "--nodes 0: must be between 1 and 10000 with --system swim"),
        (&["run", "--system", "swim", "--nodes", "10001"], "must be between 1 and 10000"),
        (&["run", "--system", "swim", "--faults", "most"], "--faults \"most\": no such fault mix"),
        (&["run", "--lifeguard", "off"], "--lifeguard applies to --system swim only"),
        (&["run", "--progress"], "--progress applies to --system swim only"),
        (&["replay", "--system", "swim", "--seed", "1", "--lifeguard", "compare"], "applies to run only"),
    ];
    for (args, expected) in cases {
        let output = chorus_sim(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
        assert!(!stderr(&output).contains("panicked"), "{args:?}");
    }
    let system = chorus_sim(&["run", "--system", "paxos"]);
    assert_eq!(system.status.code(), Some(2));
}

#[test]
fn run_json_has_the_swim_keys_and_replay_reproduces_its_hashes() {
    let args = ["run", "--system", "swim", "--nodes", "20", "--seeds", "0..3", "--json"];
    let output = chorus_sim(&[&args[..], &["--threads", "2"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for key in [
        "seeds",
        "failed",
        "combined_hash",
        "trace_hashes",
        "detect_first_p50",
        "detect_first_p99",
        "detect_all_p99",
        "false_positives",
        "msgs_per_member_period",
        "bytes_per_member_period",
        "converge_join_ms",
        "converge_heal_ms",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["system"], "swim");
    let single = chorus_sim(&[&args[..], &["--threads", "1"]].concat());
    let single: serde_json::Value = serde_json::from_str(&stdout(&single)).unwrap();
    assert_eq!(single["combined_hash"], json["combined_hash"], "thread count must not change the hash");

    let (seed, hash) = (json["trace_hashes"][1][0].as_u64().unwrap(), json["trace_hashes"][1][1].as_str().unwrap());
    let replay = chorus_sim(&["replay", "--system", "swim", "--nodes", "20", "--seed", &seed.to_string()]);
    assert_eq!(replay.status.code(), Some(0));
    let text = stdout(&replay);
    assert!(text.contains("deliver n"), "the trace is readable");
    assert!(text.contains("verdict:        PASS"));
    assert_eq!(text.lines().find_map(|line| line.strip_prefix("trace-hash: ")), Some(hash));
}

#[test]
fn a_failing_swim_run_exits_1_and_prints_the_replay_command() {
    let output = chorus_sim(&[
        "run",
        "--system",
        "swim",
        "--nodes",
        "20",
        "--seeds",
        "0..8",
        "--bug",
        "suspicion-never-expires",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let replay_line =
        text.lines().find_map(|line| line.trim().strip_prefix("replay: chorus-sim ")).expect("a replay line");
    assert!(replay_line.contains("--system swim") && replay_line.contains("--bug suspicion-never-expires"), "{text}");
    let run_hash = text.lines().find_map(|line| line.trim().strip_prefix("trace-hash: ")).unwrap();
    let replay = chorus_sim(&replay_line.split(' ').collect::<Vec<_>>());
    assert_eq!(replay.status.code(), Some(1));
    assert_eq!(stdout(&replay).lines().find_map(|line| line.strip_prefix("trace-hash: ")), Some(run_hash));
}

#[test]
fn lifeguard_compare_runs_both_on_the_same_seeds() {
    let args =
        ["run", "--system", "swim", "--nodes", "20", "--seeds", "0..2", "--faults", "slow", "--lifeguard", "compare"];
    let output = chorus_sim(&[&args[..], &["--json"]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["lifeguard_on"]["lifeguard"], true);
    assert_eq!(json["lifeguard_off"]["lifeguard"], false);
    assert_ne!(json["lifeguard_on"]["combined_hash"], json["lifeguard_off"]["combined_hash"]);
    assert!(json.get("false_positive_ratio").is_some());
    let text = stdout(&chorus_sim(&args));
    assert!(text.contains("== lifeguard on ==") && text.contains("== lifeguard off =="), "{text}");
    assert!(text.contains("fewer with lifeguard"), "{text}");
}

#[test]
fn progress_reports_phases_and_simulated_time_on_stderr_without_changing_the_run() {
    let args = ["run", "--system", "swim", "--nodes", "10", "--seeds", "0..1", "--faults", "none", "--json"];
    let quiet = chorus_sim(&args);
    let loud = chorus_sim(&[&args[..], &["--progress"]].concat());
    assert_eq!(loud.status.code(), Some(0));
    let hash =
        |output: &Output| serde_json::from_str::<serde_json::Value>(&stdout(output)).unwrap()["combined_hash"].clone();
    assert_eq!(hash(&quiet), hash(&loud), "progress reports never touch the run");
    let text = stderr(&loud);
    // Ten members join within seconds; the 30 s fault phase follows.
    assert!(text.starts_with("seed 0: Faults phase, 10 s simulated, "), "{text}");
    assert!(text.contains("seed 0: Faults phase, 30 s simulated, "), "{text}");
}
