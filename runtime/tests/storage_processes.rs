//! Storage on disk through real `chorus node` processes: under a long write
//! load with frequent snapshots every node's data directory stays bounded
//! (old segments are removed); every node restarts from its snapshot and
//! segments; a node whose log is damaged before its tail refuses to start,
//! naming the file and offset and the safe path, and comes back on a fresh
//! disk through `--join`.

#![cfg(unix)]

mod common;

use common::{expect, http, run_bounded, Cluster, WAIT};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CLIENTS: u64 = 4;
const KEYS_PER_CLIENT: u64 = 5;
const PUTS_PER_CLIENT: u64 = 300;
const VALUE_BYTES: usize = 1000;
/// The bound asserted on each data directory: one snapshot of the 20 keys
/// (about 20 KB), the entries since the last snapshot and those kept before
/// it (at most 100 + 20 of about 1 KB), rounded up to whole segments of
/// 16 KiB, with room to spare. 1,200 puts write about 1.3 MB.
const DATA_DIR_BOUND_BYTES: u64 = 400 * 1024;

fn value(client: u64, round: u64) -> String {
    format!("{client}-{round}-{}", "x".repeat(VALUE_BYTES))
}

/// Bytes in the files of `dir` and its subdirectories.
fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        bytes_in(&path)
                    } else {
                        entry.metadata().map_or(0, |metadata| metadata.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Puts from `CLIENTS` threads, each on keys of its own; every put is
/// retried until acknowledged (the leader may change).
fn write_load(cluster: &Cluster, leader: u64) {
    let endpoint = cluster.endpoint(leader);
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let endpoint = endpoint.clone();
            scope.spawn(move || {
                for round in 0..PUTS_PER_CLIENT {
                    let key = format!("k{client}-{}", round % KEYS_PER_CLIENT);
                    let url = format!("{endpoint}/v1/kv/{key}");
                    let deadline = Instant::now() + WAIT;
                    while http("PUT", &url, Some(value(client, round).as_bytes())).0 != 200 {
                        assert!(Instant::now() < deadline, "put {key} was never acknowledged");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
    });
}

fn check_every_key(cluster: &Cluster, id: u64) {
    for client in 0..CLIENTS {
        for slot in 0..KEYS_PER_CLIENT {
            let last_round = PUTS_PER_CLIENT - KEYS_PER_CLIENT + slot;
            let key = format!("k{client}-{slot}");
            let got = common::eventually(0, &["get", &key, "--endpoint", &cluster.endpoint(id)]);
            assert_eq!(got, value(client, last_round), "{key} on node {id}");
        }
    }
}

/// The oldest segment of node `id`'s log, and the offset of its second
/// record (the first write after the checkpoint).
fn second_record_of_oldest_segment(data_dir: &Path) -> (PathBuf, u64) {
    let mut segments: Vec<PathBuf> =
        std::fs::read_dir(data_dir.join("wal")).unwrap().map(|entry| entry.unwrap().path()).collect();
    segments.sort();
    let oldest = segments.into_iter().next().unwrap();
    let bytes = std::fs::read(&oldest).unwrap();
    let checkpoint_length = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let second = 12 + checkpoint_length;
    let second_length = u32::from_le_bytes(bytes[second..second + 4].try_into().unwrap()) as usize;
    assert!(bytes.len() > second + 12 + second_length + 12, "the record is not the last one of {oldest:?}");
    (oldest, second as u64)
}

/// Prints what the leader's `/metrics` says of its storage (for the docs),
/// and checks that it snapshotted and compacted.
fn print_storage_metrics(cluster: &Cluster, leader: u64) {
    let (_, body) = http("GET", &format!("{}/metrics", cluster.endpoint(leader)), None);
    let text = String::from_utf8_lossy(&body);
    let value =
        |name: &str| text.lines().find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
    let (sum, count) = (value("chorus_wal_fsync_seconds_sum "), value("chorus_wal_fsync_seconds_count "));
    let (snapshots, removed) = (value("chorus_snapshots_total "), value("chorus_wal_segments_removed_total "));
    eprintln!(
        "leader {leader}: {count} fsyncs of the log, mean {:.2} ms; {snapshots} snapshots; {removed} segments removed",
        sum / count.max(1.0) * 1000.0,
    );
    assert!(snapshots >= 10.0 && removed > 0.0 && count > 0.0, "{text}");
}

#[test]
fn the_log_stays_bounded_survives_restarts_and_damage_is_refused_with_the_safe_path() {
    let mut cluster = Cluster::new("storage", 3);
    cluster.extra_args = ["--snapshot-entries=100", "--snapshot-retained-entries=20", "--wal-segment-bytes=16384"]
        .map(String::from)
        .to_vec();
    cluster.certify(3);
    for id in 1..=3 {
        cluster.start(id, true);
    }
    let leader = cluster.wait_healthy();
    write_load(&cluster, leader);
    for id in 1..=3 {
        let bytes = bytes_in(&cluster.data_dir(id));
        eprintln!("node {id}: {bytes} bytes in its data directory after the load");
        assert!(bytes < DATA_DIR_BOUND_BYTES, "node {id}'s data directory holds {bytes} bytes");
        let log = std::fs::read_to_string(cluster.log_path(id)).unwrap();
        assert!(!log.contains("ERROR"), "node {id}: {log}");
    }

    print_storage_metrics(&cluster, leader);

    // Every node restarts from its snapshot and the segments after it.
    for id in 1..=3 {
        assert_eq!(cluster.stop(id), Some(0));
    }
    for id in 1..=3 {
        cluster.start(id, false);
    }
    cluster.wait_healthy();
    for id in 1..=3 {
        check_every_key(&cluster, id);
    }

    // Damage before the tail of a follower's log: it refuses to start.
    let leader = cluster.wait_healthy();
    let damaged = (1..=3).find(|id| *id != leader).unwrap();
    assert_eq!(cluster.stop(damaged), Some(0));
    let (segment, offset) = second_record_of_oldest_segment(&cluster.data_dir(damaged));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[offset as usize + 20] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let (code, stderr) = run_bounded(&cluster.node_args(damaged, false), WAIT);
    assert_eq!(code, Some(2), "{stderr}");
    for needed in [segment.display().to_string(), format!("offset {offset}"), "--join".to_string()] {
        assert!(stderr.contains(&needed), "the refusal names {needed:?}: {stderr}");
    }
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "the damaged file is left as it was");

    // The safe path it names: move the directory aside, join on a new disk.
    let aside = cluster.root.join("damaged-aside");
    std::fs::rename(cluster.data_dir(damaged), &aside).unwrap();
    let through = (1..=3).find(|id| *id != damaged).unwrap();
    let mut args = cluster.node_args(damaged, false);
    args.push(format!("--join={}", cluster.endpoint(through)));
    cluster.start_with(damaged, &args);
    let deadline = Instant::now() + WAIT;
    while cluster.status(damaged).is_none() {
        assert!(Instant::now() < deadline, "the rejoined node did not serve within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    check_every_key(&cluster, damaged);
    expect(0, &["put", "after-rejoin", "yes", "--endpoint", &cluster.endpoint(damaged)]);
}
