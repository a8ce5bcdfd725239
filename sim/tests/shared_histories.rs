//! Checks every history listed in the `VERDICTS` files of the shared Jepsen
//! histories (etcd register logs and key-value EDN histories) and compares the
//! checker's verdict with the known one.
//!
//! The data directory is `$CHORUS_HISTORIES` if set, otherwise the vendored
//! copy in `tests/data/histories` at the workspace root.

use chorus_sim::check::linearizability::{check, SearchLimits, Verdict};
use chorus_sim::history::parse_auto;
use std::path::PathBuf;
use std::time::Instant;

fn data_dir() -> PathBuf {
    match std::env::var_os("CHORUS_HISTORIES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/histories")),
    }
}

fn check_suite(suite: &str) -> usize {
    let dir = data_dir().join(suite);
    let verdicts_path = dir.join("VERDICTS");
    let verdicts = std::fs::read_to_string(&verdicts_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", verdicts_path.display()));
    let mut failures = Vec::new();
    let mut count = 0;
    let started = Instant::now();
    for (n, line) in verdicts.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(file), Some(expected), None) = (parts.next(), parts.next(), parts.next()) else {
            panic!("{}:{}: malformed line {line:?}", verdicts_path.display(), n + 1);
        };
        let expected = match expected {
            "linearizable" => true,
            "not-linearizable" => false,
            other => panic!("{}:{}: unknown verdict {other:?}", verdicts_path.display(), n + 1),
        };
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let history = match parse_auto(&text) {
            Ok(h) => h,
            Err(e) => {
                failures.push(format!("{file}: parse error: {e}"));
                continue;
            }
        };
        let t = Instant::now();
        let verdict = check(&history, &SearchLimits::default());
        let elapsed = t.elapsed();
        count += 1;
        let got = match &verdict {
            Verdict::Linearizable => Some(true),
            Verdict::NotLinearizable { .. } => Some(false),
            Verdict::Unknown { .. } => None,
        };
        eprintln!("{suite}/{file}: {} ops, {verdict:?} in {elapsed:?}", history.operations.len());
        if got != Some(expected) {
            failures.push(format!(
                "{file}: expected {}, got {verdict:?}",
                if expected { "linearizable" } else { "not-linearizable" }
            ));
        }
    }
    eprintln!("{suite}: {count} histories checked in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{} wrong verdict(s) in {suite}:\n{}", failures.len(), failures.join("\n"));
    count
}

#[test]
fn jepsen_etcd_verdicts() {
    assert!(check_suite("jepsen-etcd") > 0);
}

#[test]
fn jepsen_kv_verdicts() {
    assert!(check_suite("jepsen-kv") > 0);
}

/// Histories with 50 concurrent clients made by `generated/generate.py`:
/// the shape that used to exhaust memory (docs/measurements.md).
#[test]
fn generated_fifty_client_kv_verdicts() {
    assert_eq!(check_suite("generated"), 4);
}
