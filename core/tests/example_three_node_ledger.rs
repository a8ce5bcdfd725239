//! Runs `core/examples/three_node_ledger.rs` (the embedding example) and
//! checks that it told the whole story: commits, reads on every node, a
//! stopped leader, a new leader, a restart from the node's own file, and
//! commits after it, every answer equal to a single-copy ledger.

#[path = "../examples/three_node_ledger.rs"]
#[allow(dead_code)] // the example's `main` is not called here
mod example;

use chorus_core::types::LogIndex;

#[test]
fn the_three_node_ledger_example_commits_reads_and_survives_a_restart() {
    let summary = example::run().unwrap_or_else(|problem| panic!("the example failed: {problem}"));

    // 3 openings + 3 transfers, 8 transfers while a node is down, 3 after
    // the restart; each answer was already compared with a local ledger.
    assert_eq!(summary.committed_commands, 17, "{summary:#?}");
    assert_eq!(summary.committed_after_restart, 3, "{summary:#?}");
    // 3 nodes x 4 reads, 2 x 4 while one is down, 4 on the restarted node,
    // 3 x 4 at the end, 3 final balances.
    assert_eq!(summary.reads_checked, 12 + 8 + 4 + 12 + 3, "{summary:#?}");

    // The leader was stopped, and another node led a later term.
    let (stopped, stopped_term) = (summary.restarted, summary.restarted_term);
    assert!(summary.leaders.contains(&(stopped, stopped_term)), "{:?}", summary.leaders);
    assert!(
        summary.leaders.iter().any(|(leader, term)| *leader != stopped && *term > stopped_term),
        "no new leader after stopping {stopped}: {:?}",
        summary.leaders
    );

    // The restart really read the node's own file: a term, a log or a
    // snapshot, and a ledger rebuilt to a nonzero index holding all money.
    let recovery = &summary.recovery;
    assert!(recovery.records > 0, "{recovery:?}");
    assert!(recovery.term >= stopped_term, "{recovery:?}");
    assert!(recovery.applied_index > LogIndex::ZERO, "{recovery:?}");
    assert_eq!(recovery.total, "150", "{recovery:?}");

    // Snapshots were taken (the example's policy snapshots every 5 entries).
    assert!(summary.snapshots_written > 0, "{summary:#?}");

    let balances: Vec<(&str, u64)> =
        summary.final_balances.iter().map(|(name, value)| (name.as_str(), *value)).collect();
    assert_eq!(balances, [("alice", 59), ("bob", 32), ("carol", 59)]);
    assert!(summary.alarms.is_empty(), "{:?}", summary.alarms);
}
