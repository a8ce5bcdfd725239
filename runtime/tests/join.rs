//! `chorus node --join`: a fourth node joins a running three-node cluster
//! (added as a learner, promoted once caught up) and serves linearizable
//! reads; a node whose data directory was wiped comes back through
//! `--join dns:localhost:PORT` on a fresh disk (the leader records it with
//! `RenewDisk`); and
//! the new voters count: with one original member down, writes still
//! commit only because nodes 3 and 4 vote.

#![cfg(unix)]

mod common;

use common::{chorus, eventually, expect, text, Cluster, WAIT};
use std::time::{Duration, Instant};

fn voters(cluster: &Cluster, id: u64) -> Vec<u64> {
    let status = cluster.status(id).unwrap_or_default();
    status["voters"]
        .as_array()
        .map(|voters| voters.iter().filter_map(|voter| voter.as_u64()).collect())
        .unwrap_or_default()
}

/// `chorus node` flags for a node that joins through `through` (a `--join`
/// value).
fn join_args(cluster: &Cluster, id: u64, through: &str) -> Vec<String> {
    let node = cluster.node(id);
    vec![
        "node".to_string(),
        format!("--id={id}"),
        format!("--listen={}", node.quic),
        format!("--http={}", node.http),
        format!("--data-dir={}", cluster.data_dir(id).display()),
        format!("--certs={}", cluster.certs().display()),
        "--election-timeout-ms=1000".to_string(),
        "--heartbeat-interval-ms=100".to_string(),
        format!("--join={through}"),
        "--discovery-interval-secs=1".to_string(),
    ]
}

/// Waits until node `id` answers HTTP (a joining node serves once it votes).
fn wait_serving(cluster: &Cluster, id: u64) {
    let deadline = Instant::now() + WAIT;
    while cluster.status(id).is_none() {
        assert!(Instant::now() < deadline, "node {id} did not start serving within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_new_node_joins_and_a_wiped_node_rejoins_on_a_fresh_disk() {
    let mut cluster = Cluster::new("join", 3);
    cluster.certify(4);
    for id in 1..=3 {
        cluster.start(id, true);
    }
    let leader = cluster.wait_healthy();
    for round in 0..5 {
        expect(0, &["put", &format!("before-{round}"), "old", "--endpoint", &cluster.endpoint(leader)]);
    }

    // Node 4 joins through a follower (redirected to the leader), knowing
    // no peer addresses.
    let four = cluster.add_node();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let args = join_args(&cluster, four, &cluster.endpoint(follower));
    cluster.start_with(four, &args);
    wait_serving(&cluster, four);
    assert_eq!(voters(&cluster, leader), vec![1, 2, 3, 4], "node 4 is a voter");
    assert_ne!(cluster.status(four).unwrap()["disk"].as_u64(), Some(0), "node 4 runs on a disk of its own");
    let log = std::fs::read_to_string(cluster.log_path(four)).unwrap();
    assert!(
        log.contains("joining the cluster on a new disk") && log.contains("joined the cluster as a voter"),
        "{log}"
    );

    // It serves linearizable reads: of what was there before it joined, and
    // of writes made through another node just before the read.
    let on_four = cluster.endpoint(four);
    for round in 0..5 {
        assert_eq!(expect(0, &["get", &format!("before-{round}"), "--endpoint", &on_four]), "old");
    }
    for round in 0..10 {
        let key = format!("after-{round}");
        eventually(0, &["put", &key, &round.to_string(), "--endpoint", &cluster.endpoint(leader)]);
        let value = expect(0, &["get", &key, "--consistency", "linearizable", "--endpoint", &on_four]);
        assert_eq!(value, round.to_string());
    }
    // Asking again changes nothing (it already votes from its disk).
    let (status, body) = common::http(
        "POST",
        &format!("{}/v1/members", cluster.endpoint(leader)),
        Some(format!(r#"{{"id":4,"address":"{}"}}"#, cluster.node(four).quic).as_bytes()),
    );
    assert_eq!(status, 200, "{}", text(&body));

    // Node 3 loses its data. Without --join it refuses to start; with it,
    // it comes back on a fresh disk, which the leader records. It finds the
    // member to join through by DNS (`localhost`: 127.0.0.1, maybe ::1
    // where nothing listens).
    let wiped = if leader == 3 { 2 } else { 3 };
    assert_eq!(cluster.stop(wiped), Some(0));
    std::fs::remove_dir_all(cluster.data_dir(wiped)).unwrap();
    let refused = chorus(&cluster.node_args(wiped, false).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--join"), "{}", text(&refused.stderr));
    let leader = cluster.wait_healthy();
    let through = (1..=4).find(|id| *id != leader && *id != wiped).unwrap();
    let by_dns = format!("dns:localhost:{}", cluster.node(through).http.port());
    let args = join_args(&cluster, wiped, &by_dns);
    cluster.start_with(wiped, &args);
    wait_serving(&cluster, wiped);
    let log = std::fs::read_to_string(cluster.log_path(wiped)).unwrap();
    assert!(log.contains(&format!("through={by_dns}")) && log.contains("DNS discovery found new addresses"), "{log}");
    let leader_log = std::fs::read_to_string(cluster.log_path(leader)).unwrap();
    assert!(leader_log.contains(&format!("RenewDisk(NodeId({wiped}))")), "the leader renewed node {wiped}'s disk");
    assert_eq!(expect(0, &["get", "after-9", "--endpoint", &cluster.endpoint(wiped)]), "9");
    let disk = cluster.status(wiped).unwrap()["disk"].as_u64().unwrap();
    assert_ne!(disk, 0, "the wiped node runs on a fresh disk, not the bootstrap one");

    // The new voters count: with one original member (on its bootstrap
    // disk) down, three of four voters remain, and two of them are the
    // joined node and the renewed one.
    let leader = cluster.wait_healthy();
    let original = (1..=3).find(|id| *id != wiped && *id != leader).unwrap();
    assert_eq!(cluster.stop(original), Some(0));
    let leader = cluster.wait_healthy();
    eventually(0, &["put", "with-new-voters", "yes", "--endpoint", &cluster.endpoint(leader)]);
    for id in [wiped, four] {
        assert_eq!(expect(0, &["get", "with-new-voters", "--endpoint", &cluster.endpoint(id)]), "yes");
    }
}
