//! A node killed with SIGKILL and restarted is reachable again at once: its
//! peers' messages reach it within about a heartbeat of its start, not
//! after the dead connection's idle timeout (10 s).
//!
//! Three real `chorus node` processes; the node is down for a few seconds
//! while the others keep writing (so the leader's old connection to it is
//! truly dead), then restarted. "Reachable" is measured from the moment the
//! restarted node answers HTTP (it has started) until it knows the leader
//! and holds what was committed before: only the leader's own messages
//! tell it either.

#![cfg(unix)]

mod common;

use common::{http_with_timeout, Cluster};
use std::time::{Duration, Instant};

/// How long the killed node stays down (several heartbeats and keep-alives
/// of the old connection, so that the leader's side of it is stuck).
const DOWN: Duration = Duration::from_secs(3);
/// The bound asserted on reconnection. Measured on a loaded 2-core machine:
/// 18 to 94 ms over four runs; with the transport before reconnection (the old connection
/// used until it timed out) 6.9 and 8.1 s, and this test failed. Generous
/// for a loaded CI machine.
const REACHABLE_WITHIN: Duration = Duration::from_secs(3);

fn commit_index(cluster: &Cluster, id: u64) -> Option<u64> {
    cluster.status(id)?["commit_index"].as_u64()
}

/// Kills `victim`, keeps writing through the others while it is down,
/// restarts it, and returns how long after it answered HTTP it knew the
/// leader and held what the leader had committed.
fn kill_and_measure(cluster: &mut Cluster, victim: u64) -> Duration {
    cluster.kill(victim);
    let down_until = Instant::now() + DOWN;
    let mut written = 0;
    while Instant::now() < down_until {
        // Whichever of the others leads answers 200 (a follower answers 307).
        for writer in (1..=3).filter(|id| *id != victim) {
            let url = format!("{}/v1/kv/while-down-{victim}-{written}", cluster.endpoint(writer));
            if http_with_timeout("PUT", &url, Some(b"x"), Duration::from_secs(2)).0 == 200 {
                written += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(written > 0, "no write succeeded while node {victim} was down");
    let leader = cluster.wait_healthy();
    let committed = commit_index(cluster, leader).expect("the leader answers");

    cluster.start(victim, false);
    let spawned = Instant::now();
    let deadline = spawned + common::WAIT;
    let started = loop {
        if cluster.status(victim).is_some() {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "node {victim} did not start");
        std::thread::sleep(Duration::from_millis(5));
    };
    loop {
        let status = cluster.status(victim);
        let knows_leader = status.as_ref().and_then(|status| status["leader"].as_u64()) == Some(leader);
        let caught_up = status.as_ref().and_then(|status| status["commit_index"].as_u64()) >= Some(committed);
        if knows_leader && caught_up {
            let reachable = started.elapsed();
            eprintln!(
                "node {victim}: answered HTTP {:?} after spawn; knew leader {leader} and commit {committed} {:?} later",
                started - spawned,
                reachable
            );
            return reachable;
        }
        assert!(Instant::now() < deadline, "node {victim} never heard from leader {leader}: {status:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_killed_node_is_reachable_again_right_after_it_restarts() {
    let mut cluster = Cluster::new("reconnect", 3);
    cluster.certify(3);
    for id in 1..=3 {
        cluster.start(id, true);
    }
    let leader = cluster.wait_healthy();

    // A follower, then the leader itself (the others elect a new one while
    // it is down; it must hear from that one at once when it is back).
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let after_follower = kill_and_measure(&mut cluster, follower);
    let after_leader = kill_and_measure(&mut cluster, leader);

    for (who, took) in [("the follower", after_follower), ("the old leader", after_leader)] {
        assert!(took < REACHABLE_WITHIN, "{who} was reached only {took:?} after it started");
    }
}
