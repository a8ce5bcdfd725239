//! The throughput benchmark's cluster driver (`benches/common/mod.rs`),
//! checked for what the benchmark takes for granted: every command proposed
//! is committed once, in proposal order, and applied on all three nodes. No
//! timing here; `cargo bench -p chorus-core --bench throughput` measures.

#[path = "../benches/common/mod.rs"]
mod common;

use chorus_core::kv::{KvResponse, KvStore};
use chorus_core::raft::{Payload, Role};
use chorus_core::types::LogIndex;
use chorus_core::StateMachine;
use common::{BenchCluster, NullMachine, Transport};

/// Most rounds the followers may take to apply the leader's whole log once
/// the clients stop.
const MAX_CATCH_UP_ROUNDS: u64 = 1_000;

/// Runs `commands` commands from `clients` closed-loop clients, then checks
/// every node's log and state machine against the recorded proposals.
fn run_and_check(clients: usize, transport: Transport, commands: u64) {
    let mut cluster = BenchCluster::<KvStore>::new(clients, transport, |_| {});
    cluster.record_proposals();
    let before = cluster.stats();
    let first_index = cluster.leader().last_index().next();
    cluster.run(commands);
    let stats = cluster.stats().since(&before);
    assert_eq!(stats.committed, commands, "every command was answered Ok once");
    cluster.run_until_applied_everywhere(MAX_CATCH_UP_ROUNDS);

    let proposals = cluster.proposals();
    assert_eq!(proposals.len() as u64, commands);
    let leader = cluster.leader();
    assert_eq!(leader.role(), Role::Leader);
    let last = leader.last_index();
    assert_eq!(last.0, first_index.0 - 1 + commands, "the leader's log holds exactly the commands");

    // What the store must hold: every command applied once, in proposal order.
    let mut expected = KvStore::default();
    for (position, command) in proposals.iter().enumerate() {
        let answer = expected.apply(LogIndex(first_index.0 + position as u64), command);
        assert_eq!(KvResponse::decode(&answer), Ok(KvResponse::Done));
    }

    for (position, node) in cluster.nodes().iter().enumerate() {
        let id = position + 1;
        assert_eq!(node.last_index(), last, "n{id} holds the leader's whole log");
        assert_eq!(node.commit_index(), last, "n{id} committed everything");
        assert_eq!(node.applied_index(), last, "n{id} applied everything");
        for (offset, command) in proposals.iter().enumerate() {
            let index = LogIndex(first_index.0 + offset as u64);
            let entry = node.entry(index).unwrap_or_else(|| panic!("n{id} lacks entry {index}"));
            assert_eq!(
                entry.payload,
                Payload::Command(command.clone().into()),
                "n{id} entry {index} is proposal {offset}"
            );
        }
        assert!(*node.state_machine() == expected, "n{id}'s store differs from applying the proposals in order");
    }
}

#[test]
fn one_client_commits_every_command_in_order_on_every_node() {
    run_and_check(1, Transport::InMemory, 300);
}

#[test]
fn many_clients_commit_every_command_in_order_on_every_node() {
    run_and_check(256, Transport::InMemory, 3_000);
}

#[test]
fn a_thousand_clients_commit_every_command_in_order_on_every_node() {
    run_and_check(1000, Transport::InMemory, 5_000);
}

#[test]
fn the_wire_codec_transport_commits_every_command_in_order() {
    run_and_check(1, Transport::Wire, 200);
    run_and_check(64, Transport::Wire, 2_000);
}

#[test]
fn batching_puts_many_entries_in_one_append() {
    let mut cluster = BenchCluster::<NullMachine>::new(256, Transport::InMemory, |_| {});
    let before = cluster.stats();
    cluster.run(5_000);
    let stats = cluster.stats().since(&before);
    assert_eq!(stats.committed, 5_000);
    // One round trip per command would be 2 hops each; with 256 clients the
    // leader batches, so far fewer rounds than commands are needed.
    assert!(stats.rounds * 10 < stats.committed, "{stats:?}");
    assert!(stats.entries_sent > 4 * stats.appends_with_entries, "appends carry many entries: {stats:?}");
    cluster.run_until_applied_everywhere(MAX_CATCH_UP_ROUNDS);
    for node in cluster.nodes() {
        // The leader's no-op is not a command.
        assert_eq!(node.state_machine().applied, 5_000);
    }
}
