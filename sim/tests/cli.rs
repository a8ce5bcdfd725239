//! The `chorus-sim` command line: its names, outputs and exit codes are a
//! contract.

use std::path::PathBuf;
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

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn histories() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/histories")
}

#[test]
fn bugs_lists_one_bug_per_line_with_a_description() {
    let output = chorus_sim(&["bugs"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 6);
    for line in &lines {
        let (name, description) = line.split_once('\t').expect("name, tab, description");
        assert!(!name.contains(' ') && !description.trim().is_empty(), "{line}");
    }
    assert!(text.contains("commit-old-term\t"));
}

#[test]
fn bad_usage_exits_2_with_a_message_naming_the_problem() {
    let unknown_bug = chorus_sim(&["run", "--seeds", "0..1", "--bug", "no-such-bug"]);
    assert_eq!(unknown_bug.status.code(), Some(2));
    assert!(stderr(&unknown_bug).contains("--bug \"no-such-bug\": no such bug; known bugs: vote-without-log-check"));

    let empty_range = chorus_sim(&["run", "--seeds", "5..2"]);
    assert_eq!(empty_range.status.code(), Some(2));
    assert!(stderr(&empty_range).contains("the range is empty"));

    let scenario = temp_path("bad.toml");
    std::fs::write(&scenario, "[[events]]\nat_ms = 100\naction = \"crash\"\nnode = 9\n").unwrap();
    let bad_scenario = chorus_sim(&["run", "--seeds", "0..1", "--scenario", scenario.to_str().unwrap()]);
    assert_eq!(bad_scenario.status.code(), Some(2));
    assert!(stderr(&bad_scenario).contains("event 1 (at_ms 100): node 9 does not exist"), "{}", stderr(&bad_scenario));

    let missing = chorus_sim(&["check-history", "/nonexistent/history.edn"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("cannot read history file /nonexistent/history.edn"));

    let garbage = temp_path("garbage.edn");
    std::fs::write(&garbage, "{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0 :type").unwrap();
    let malformed = chorus_sim(&["check-history", garbage.to_str().unwrap()]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(stderr(&malformed).contains("line 2"), "{}", stderr(&malformed));

    let unknown_flag = chorus_sim(&["run", "--sedes", "0..1"]);
    assert_eq!(unknown_flag.status.code(), Some(2));
}

#[test]
fn run_json_has_the_contract_keys_and_exit_code() {
    let output = chorus_sim(&["run", "--seeds", "0..6", "--threads", "2", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for key in
        ["seeds", "failed", "events", "sim_ms", "wall_ms", "ops_ok", "ops_failed", "ops_unknown", "combined_hash"]
    {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["seeds"], 6);
    assert_eq!(json["failed"], serde_json::json!([]));

    let single = chorus_sim(&["run", "--seeds", "0..6", "--threads", "1", "--json"]);
    let single: serde_json::Value = serde_json::from_str(&stdout(&single)).unwrap();
    assert_eq!(single["combined_hash"], json["combined_hash"], "thread count must not change the hash");
}

#[test]
fn a_failing_run_exits_1_and_prints_the_replay_command() {
    let output = chorus_sim(&["run", "--seeds", "0..20", "--bug", "ack-before-commit"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("replay: chorus-sim replay --seed "), "{text}");
    assert!(text.contains("--bug ack-before-commit"), "{text}");

    // The printed replay command reproduces the run exactly: same trace hash.
    let seed = text.lines().find_map(|line| line.strip_prefix("FAIL seed ")).unwrap().split(':').next().unwrap();
    let run_hash = text.lines().find_map(|line| line.trim().strip_prefix("trace-hash: ")).unwrap();
    let replay = chorus_sim(&["replay", "--seed", seed, "--bug", "ack-before-commit"]);
    assert_eq!(replay.status.code(), Some(1));
    let replay_text = stdout(&replay);
    let replay_hash = replay_text.lines().find_map(|line| line.strip_prefix("trace-hash: ")).unwrap();
    assert_eq!(replay_hash, run_hash);
}

#[test]
fn replay_prints_trace_verdict_and_hash_and_writes_a_checkable_history() {
    let history = temp_path("replay-history.edn");
    let trace = temp_path("replay-trace.txt");
    let output = chorus_sim(&[
        "replay",
        "--seed",
        "4",
        "--trace",
        trace.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = stdout(&output);
    let hash_line = text.lines().find(|line| line.starts_with("trace-hash: ")).expect("a trace-hash line");
    assert_eq!(hash_line.len(), "trace-hash: ".len() + 64);
    assert!(text.contains("verdict:        PASS"));
    let trace_text = std::fs::read_to_string(&trace).unwrap();
    assert!(trace_text.contains("deliver n"), "the trace is readable");

    let again = chorus_sim(&["replay", "--seed", "4"]);
    let again_text = stdout(&again);
    assert!(again_text.lines().any(|line| line == hash_line), "replays agree on the hash");
    assert!(again_text.contains("deliver n"), "without --trace the trace goes to stdout");

    let checked = chorus_sim(&["check-history", history.to_str().unwrap(), "--model", "kv"]);
    assert_eq!(stdout(&checked).lines().next(), Some("linearizable"));
    assert_eq!(checked.status.code(), Some(0));
}

#[test]
fn check_history_agrees_with_known_verdicts() {
    for (file, expected, code) in [
        ("jepsen-etcd/etcd_002.log", "linearizable", 0),
        ("jepsen-etcd/etcd_000.log", "not linearizable", 1),
        ("jepsen-kv/c01-ok.edn", "linearizable", 0),
        ("jepsen-kv/c01-bad.edn", "not linearizable", 1),
    ] {
        let path = histories().join(file);
        let output = chorus_sim(&["check-history", path.to_str().unwrap()]);
        assert_eq!(stdout(&output).lines().next(), Some(expected), "{file}");
        assert_eq!(output.status.code(), Some(code), "{file}");
    }
    let keyed = histories().join("jepsen-kv/c01-ok.edn");
    let wrong_model = chorus_sim(&["check-history", keyed.to_str().unwrap(), "--model", "register"]);
    assert_eq!(wrong_model.status.code(), Some(2));
    assert!(stderr(&wrong_model).contains("use --model kv"));
}
