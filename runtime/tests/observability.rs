//! `GET /metrics` and `GET /v1/events` on three real `chorus node`
//! processes: the metrics parse as Prometheus text and count what the test
//! did; a follower's event stream reports the leader's departure (peer
//! disconnected) and the election that follows.

#![cfg(unix)]

mod common;

use common::{eventually, expect, subscribe, wait_for_event, Cluster, WAIT};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `GET /metrics` of node `id`, as `name{labels}` -> value; checks that every
/// line is a comment or a sample and that the content type is Prometheus's.
fn metrics(cluster: &Cluster, id: u64) -> BTreeMap<String, f64> {
    let url = format!("{}/metrics", cluster.endpoint(id));
    let mut response = ureq::get(&url).call().unwrap();
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let body = response.body_mut().read_to_string().unwrap();
    let mut samples = BTreeMap::new();
    for line in body.lines().filter(|line| !line.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        samples.insert(name.to_string(), value);
    }
    samples
}

#[test]
fn metrics_count_what_happened_and_events_report_the_leaders_departure() {
    let mut cluster = Cluster::new("observability", 3);
    cluster.certify(3);
    for id in 1..=3 {
        cluster.start(id, true);
    }
    let leader = cluster.wait_healthy();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let on_leader = cluster.endpoint(leader);
    for round in 0..5 {
        eventually(0, &["put", &format!("k{round}"), "v", "--endpoint", &on_leader]);
    }
    expect(0, &["get", "k0", "--endpoint", &on_leader]);
    expect(0, &["get", "k1", "--consistency", "stale", "--endpoint", &on_leader]);
    expect(0, &["get", "k2", "--consistency", "stale", "--endpoint", &on_leader]);

    let samples = metrics(&cluster, leader);
    let value = |name: &str| *samples.get(name).unwrap_or_else(|| panic!("no {name} in {samples:?}"));
    assert_eq!(value("chorus_role{role=\"leader\"}"), 1.0);
    assert_eq!(value("chorus_role{role=\"follower\"}"), 0.0);
    assert_eq!(value("chorus_leader_id"), leader as f64);
    assert!(value("chorus_term") >= 1.0 && value("chorus_commit_index") >= 5.0);
    assert!(value("chorus_proposals_total") >= 5.0 && value("chorus_proposals_applied_total") >= 5.0);
    assert!(value("chorus_proposal_seconds_count") >= 5.0);
    assert_eq!(value("chorus_reads_total{consistency=\"stale\"}"), 2.0);
    assert!(value("chorus_reads_total{consistency=\"linearizable\"}") >= 1.0);
    assert!(value("chorus_wal_fsync_seconds_count") >= 5.0);
    assert!(value("chorus_wal_fsync_seconds_bucket{le=\"+Inf\"}") >= 5.0);
    assert!(value("chorus_messages_sent_total") > 0.0 && value("chorus_messages_received_total") > 0.0);
    assert_eq!(value("chorus_messages_dropped_total{reason=\"forged_from\"}"), 0.0);
    assert_eq!(value("chorus_wal_segments"), 1.0);
    for peer in (1..=3).filter(|id| *id != leader) {
        assert_eq!(value(&format!("chorus_peer_connected{{peer=\"{peer}\"}}")), 1.0, "peer {peer}");
    }

    // A follower's events: the leader leaves, another is elected.
    let events = subscribe(&cluster, follower);
    assert_eq!(cluster.stop(leader), Some(0));
    // Either order: peers are checked every 200 ms, and a quick election
    // (or a loaded machine) reports the new leader before the departure.
    let (mut departed, mut elected) = (None, None);
    while departed.is_none() || elected.is_none() {
        let data = wait_for_event(&events, "peer_disconnected and leader_elected", |name, data| {
            let gone = name == "peer_disconnected" && data["peer"].as_u64() == Some(leader);
            let new = name == "leader_elected" && data["leader"].as_u64().is_some_and(|new| new != leader);
            (gone && departed.is_none()) || (new && elected.is_none())
        });
        match data["type"].as_str() {
            Some("peer_disconnected") => departed = Some(data),
            _ => elected = Some(data),
        }
    }
    let elected = elected.unwrap();
    let new_leader = elected["leader"].as_u64().unwrap();
    assert!(elected["term"].as_u64().unwrap() >= 2, "{elected}");
    let deadline = Instant::now() + WAIT;
    while metrics(&cluster, follower).get(&format!("chorus_peer_connected{{peer=\"{leader}\"}}")) != Some(&0.0) {
        assert!(Instant::now() < deadline, "the follower's metrics still show node {leader} connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metrics(&cluster, new_leader)["chorus_role{role=\"leader\"}"], 1.0);

    // An open event stream does not hold up a clean stop.
    assert_eq!(cluster.stop(follower), Some(0));
    drop(events);
}
