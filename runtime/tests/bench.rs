//! `chorus bench` against three real nodes: its clients write through a
//! follower (redirected to the leader) and the leader, and what it reports
//! is what the cluster holds. No timing is asserted.

#![cfg(unix)]

mod common;

use common::{expect, http, run_bounded, Cluster};
use std::time::Duration;

#[test]
fn bench_writes_through_follower_and_leader_and_reports_one_tsv_line() {
    let mut cluster = Cluster::new("bench", 3);
    cluster.certify(3);
    for id in 1..=3 {
        cluster.start(id, true);
    }
    let leader = cluster.wait_healthy();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let args = [
        "bench".to_string(),
        format!("--endpoint={}", cluster.endpoint(follower)),
        format!("--endpoint={}", cluster.endpoint(leader)),
        "--clients=4".to_string(),
        "--duration-secs=1".to_string(),
        "--warmup-secs=0".to_string(),
        "--value-bytes=10".to_string(),
        "--keys=50".to_string(),
        "--format=tsv".to_string(),
    ];
    let output = std::process::Command::new(common::CHORUS).args(&args).output().unwrap();
    let (stdout, stderr) = (common::text(&output.stdout), common::text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let fields: Vec<&str> = stdout.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 10, "{stdout}");
    assert_eq!(fields[..2], ["chorus", "4"]);
    let writes: u64 = fields[3].parse().unwrap();
    assert!(writes > 0, "{stdout}");
    let (status, value) = http("GET", &format!("{}/v1/kv/bench-00000000", cluster.endpoint(leader)), None);
    assert_eq!((status, value), (200, b"xxxxxxxxxx".to_vec()), "client 0's first key holds the bench's value");
    let metrics = common::text(&http("GET", &format!("{}/metrics", cluster.endpoint(leader)), None).1);
    let proposals = metrics
        .lines()
        .find_map(|line| line.strip_prefix("chorus_proposals_total "))
        .and_then(|count| count.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no chorus_proposals_total in {metrics}"));
    assert!(proposals >= writes, "the leader saw {proposals} proposals, the bench counted {writes} writes");
}

#[test]
fn bench_exits_2_on_bad_flags_and_3_when_nothing_answers() {
    let output = expect(2, &["bench", "--endpoint=https://127.0.0.1:1"]);
    assert!(output.is_empty());
    let free = common::free_tcp();
    let args = [
        "bench".to_string(),
        format!("--endpoint=http://{free}"),
        "--duration-secs=1".to_string(),
        "--warmup-secs=0".to_string(),
    ];
    let (code, stderr) = run_bounded(&args, Duration::from_secs(20));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("no write was acknowledged") && stderr.contains("connection"), "{stderr}");
}
