//! `chorus member list|remove` and `DELETE /v1/members/{id}` on three real
//! `chorus node` processes: a follower is removed through another
//! follower (redirected to the leader) and the cluster keeps serving, then
//! the leader removes itself and the last node serves alone.

#![cfg(unix)]

mod common;

use common::{eventually, expect, http, json, subscribe, wait_for_event, Cluster};

fn voters(cluster: &Cluster, id: u64) -> Vec<u64> {
    let status = cluster.status(id).unwrap_or_default();
    status["voters"]
        .as_array()
        .map(|voters| voters.iter().filter_map(|voter| voter.as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn members_are_removed_through_the_cli_and_the_cluster_keeps_serving() {
    let mut cluster = Cluster::new("members", 3);
    cluster.certify(3);
    for id in 1..=3 {
        cluster.start(id, true);
    }
    let leader = cluster.wait_healthy();
    let listed = expect(0, &["member", "list", "--endpoint", &cluster.endpoint(leader)]);
    assert_eq!(listed.matches(" voter ").count(), 3, "{listed}");
    assert!(listed.contains(&cluster.node(1).quic.to_string()), "{listed}");

    // Remove a follower, asking the other follower (it redirects).
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (removed, asked) = (followers[0], followers[1]);
    let events = subscribe(&cluster, asked);
    let out = expect(0, &["member", "remove", &removed.to_string(), "--endpoint", &cluster.endpoint(asked)]);
    assert!(out.contains(&format!("node {removed} removed")) && out.matches(" voter ").count() == 2, "{out}");
    let remaining: Vec<u64> = (1..=3).filter(|id| *id != removed).collect();
    assert_eq!(voters(&cluster, leader), remaining);
    let changed = wait_for_event(&events, "membership_changed", |name, data| {
        name == "membership_changed" && !data["membership"].as_str().unwrap_or("").contains(&format!("n{removed}"))
    });
    assert!(changed["index"].as_u64().is_some(), "{changed}");
    drop(events);
    eventually(0, &["put", "after-removal", "1", "--endpoint", &cluster.endpoint(asked)]);
    assert_eq!(expect(0, &["get", "after-removal", "--endpoint", &cluster.endpoint(leader)]), "1");

    // Asking again: not a member (exit 1, HTTP 404); a bad id is a 400.
    expect(1, &["member", "remove", &removed.to_string(), "--endpoint", &cluster.endpoint(leader)]);
    let (status, body) = http("DELETE", &format!("{}/v1/members/x", cluster.endpoint(leader)), None);
    assert_eq!((status, json(&body)["error"].as_str()), (400, Some("bad_id")));

    // The removed node stops; the two left keep serving.
    assert_eq!(cluster.stop(removed), Some(0));
    for round in 0..5 {
        eventually(0, &["put", &format!("two-{round}"), "v", "--endpoint", &cluster.endpoint(leader)]);
    }

    // The leader removes itself: the last node leads alone and serves.
    let leader = cluster.wait_healthy();
    let last = remaining.iter().copied().find(|id| *id != leader).unwrap();
    expect(0, &["member", "remove", &leader.to_string(), "--endpoint", &cluster.endpoint(leader)]);
    assert_eq!(cluster.stop(leader), Some(0));
    let deadline = std::time::Instant::now() + common::WAIT;
    while cluster.status(last).and_then(|status| status["leader"].as_u64()) != Some(last) {
        assert!(std::time::Instant::now() < deadline, "node {last} did not take over alone");
        std::thread::sleep(common::POLL);
    }
    assert_eq!(voters(&cluster, last), vec![last]);
    eventually(0, &["put", "alone", "yes", "--endpoint", &cluster.endpoint(last)]);
    assert_eq!(expect(0, &["get", "two-4", "--endpoint", &cluster.endpoint(last)]), "v");
}
