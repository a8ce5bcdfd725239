//! Three real `chorus node` processes on loopback, driven through the CLI
//! and over HTTP: certificates, put, get at every consistency level, cas,
//! delete, status, health, clean stops (SIGTERM, exit 0), restart of every
//! node from disk, and a wiped node that refuses to start.
//!
//! Ports are picked free by the OS; every wait is bounded; the children are
//! killed when the test ends, however it ends. On failure the nodes' logs
//! are printed.

#![cfg(unix)]

mod common;

use common::{chorus, eventually, expect, free_tcp, http, json, text, Cluster};
use std::path::Path;

const NODES: [u64; 3] = [1, 2, 3];

fn make_certificates(cluster: &Cluster) {
    let certs = cluster.certs();
    let certs = certs.to_str().unwrap();
    assert!(expect(0, &["certs", "init", "--dir", certs]).contains("created the cluster CA"));
    // A second init would orphan every certificate: refused.
    let refused = chorus(&["certs", "init", "--dir", certs]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("exists already"), "{}", text(&refused.stderr));
    for id in NODES {
        expect(0, &["certs", "node", "--dir", certs, "--id", &id.to_string()]);
    }
    expect(0, &["certs", "client", "--dir", certs, "--name", "ci"]);
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "node-1.key", "client-ci.key"] {
        let mode = std::fs::metadata(Path::new(certs).join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
}

fn key_value_through_the_cli(cluster: &Cluster, leader: u64) {
    let follower = NODES.into_iter().find(|id| *id != leader).unwrap();
    let on_leader = cluster.endpoint(leader);
    let on_follower = cluster.endpoint(follower);

    // A put on a follower is forwarded to the leader.
    let out = eventually(0, &["put", "colour", "blue", "--endpoint", &on_follower]);
    assert!(out.starts_with("OK (session "), "{out}");
    let session: u64 = out.trim().trim_start_matches("OK (session ").trim_end_matches(')').parse().unwrap();

    for id in NODES {
        let endpoint = cluster.endpoint(id);
        for consistency in ["linearizable", "lease"] {
            let value = expect(0, &["get", "colour", "--consistency", consistency, "--endpoint", &endpoint]);
            assert_eq!(value, "blue", "{consistency} read on node {id}");
        }
        let session = session.to_string();
        let value =
            expect(0, &["get", "colour", "--consistency", "session", "--session", &session, "--endpoint", &endpoint]);
        assert_eq!(value, "blue", "session read on node {id}");
        // A stale read may lag, but shows the value once the node applied it.
        assert_eq!(eventually(0, &["get", "colour", "--consistency", "stale", "--endpoint", &endpoint]), "blue");
    }

    let missing = chorus(&["get", "no-such-key", "--endpoint", &on_leader]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("not found"));

    // Compare-and-set: a wrong expectation changes nothing and exits 1.
    let out = expect(1, &["cas", "colour", "red", "green", "--endpoint", &on_leader]);
    assert!(out.contains("NOT APPLIED") && out.contains("\"blue\""), "{out}");
    expect(0, &["cas", "colour", "blue", "green", "--endpoint", &on_follower]);
    assert_eq!(expect(0, &["get", "colour", "--endpoint", &on_leader]), "green");
    expect(0, &["cas", "fresh", "--absent", "x", "--endpoint", &on_leader]);
    expect(1, &["cas", "fresh", "--absent", "y", "--endpoint", &on_leader]);

    expect(0, &["delete", "colour", "--endpoint", &on_follower]);
    expect(1, &["get", "colour", "--endpoint", &on_leader]);

    // Keys are bytes: a slash and a space survive the trip.
    expect(0, &["put", "a/b c", "slashed", "--endpoint", &on_leader]);
    assert_eq!(expect(0, &["get", "a/b c", "--endpoint", &on_follower]), "slashed");

    // Usage errors exit 2 with the problem named; an unreachable node exits 3.
    let bad = chorus(&["get", "k", "--consistency", "eventual", "--endpoint", &on_leader]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("eventual"));
    let closed = format!("http://{}", free_tcp());
    let unreachable = chorus(&["get", "k", "--endpoint", &closed]);
    assert_eq!(unreachable.status.code(), Some(3), "{}", text(&unreachable.stderr));

    // The status table has a row per node and one leader.
    let mut args = vec!["status".to_string()];
    for id in NODES {
        args.push("--endpoint".to_string());
        args.push(cluster.endpoint(id));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let table = expect(0, &args);
    assert!(table.contains("ROLE") && table.contains("APPLIED"), "{table}");
    assert_eq!(table.matches(" leader ").count(), 1, "{table}");
    assert_eq!(table.matches(" follower ").count(), 2, "{table}");
}

fn key_value_over_http(cluster: &Cluster, leader: u64) {
    // A follower sends writes to the leader's API.
    let follower = NODES.into_iter().find(|id| *id != leader).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .into();
    let response = agent.put(format!("{}/v1/kv/redirected", cluster.endpoint(follower))).send("x").unwrap();
    assert_eq!(response.status().as_u16(), 307);
    let location = response.headers().get("location").unwrap().to_str().unwrap();
    assert_eq!(location, format!("{}/v1/kv/redirected", cluster.endpoint(leader)));

    let base = cluster.endpoint(leader);
    let (status, body) = http("PUT", &format!("{base}/v1/kv/http-key"), Some(b"\x00\xffbytes"));
    assert_eq!(status, 200, "{}", text(&body));
    assert!(json(&body)["session"].as_u64().is_some());
    let (status, body) = http("GET", &format!("{base}/v1/kv/http-key?consistency=linearizable"), None);
    assert_eq!((status, body), (200, b"\x00\xffbytes".to_vec()));
    let (status, body) = http("GET", &format!("{base}/v1/kv/absent-key"), None);
    assert_eq!((status, json(&body)["error"].as_str()), (404, Some("not_found")));

    let (status, body) = http("POST", &format!("{base}/v1/kv/http-key/cas"), Some(br#"{"expected":"nope","new":"x"}"#));
    assert_eq!(status, 409);
    assert_eq!(json(&body)["applied"], serde_json::json!(false));

    // Malformed input: clear 4xx JSON errors, and nothing changes.
    for (method, path, body, want) in [
        ("POST", "/v1/kv/http-key/cas", &b"{not json"[..], 400),
        ("POST", "/v1/kv/http-key/cas", &br#"{"new":"x","extra":1}"#[..], 422),
        ("GET", "/v1/kv/http-key?consistency=eventual", &b""[..], 400),
        ("GET", "/v1/kv/bad%zzkey", &b""[..], 400),
        ("GET", "/v1/nothing-here", &b""[..], 404),
    ] {
        let (status, answer) = http(method, &format!("{base}{path}"), Some(body));
        assert_eq!(status, want, "{method} {path}: {}", text(&answer));
        assert!(json(&answer)["error"].is_string(), "{method} {path}: {}", text(&answer));
    }
    let (status, body) = http("PUT", &format!("{base}/v1/kv/big"), Some(&vec![b'x'; 65 * 1024]));
    assert_eq!((status, json(&body)["error"].as_str()), (413, Some("too_large")));
    let (_, body) = http("GET", &format!("{base}/v1/kv/http-key"), None);
    assert_eq!(body, b"\x00\xffbytes");

    let (status, body) = http("GET", &format!("{base}/v1/status"), None);
    assert_eq!(status, 200);
    let report = json(&body);
    assert_eq!(report["role"], "leader");
    assert_eq!(report["leader"].as_u64(), Some(leader));
    assert_eq!(report["voters"], serde_json::json!([1, 2, 3]));
    assert!(report["commit_index"].as_u64().unwrap() >= report["applied_index"].as_u64().unwrap());
    assert_eq!(report["forged_messages_dropped"].as_u64(), Some(0));
}

#[test]
fn a_three_process_cluster_serves_the_cli_and_http_and_restarts_from_disk() {
    let mut cluster = Cluster::new("processes", 3);
    make_certificates(&cluster);

    // Nothing listens yet: health is unreachable, not a false "ok".
    assert_eq!(http("GET", &format!("{}/health", cluster.endpoint(1)), None).0, 0);
    for id in NODES {
        cluster.start(id, true);
    }
    let leader = cluster.wait_healthy();
    key_value_through_the_cli(&cluster, leader);
    key_value_over_http(&cluster, leader);
    expect(0, &["put", "survivor", "kept", "--endpoint", &cluster.endpoint(leader)]);

    // Every node stops cleanly on SIGTERM (or Ctrl-C's SIGINT) and comes
    // back from its disk.
    for id in NODES {
        let signal = if id == 2 { "-INT" } else { "-TERM" };
        assert_eq!(cluster.stop_with(id, signal), Some(0), "node {id} exits 0 on {signal}");
    }
    for id in NODES {
        cluster.start(id, false);
    }
    let leader = cluster.wait_healthy();
    for id in NODES {
        let value = eventually(0, &["get", "survivor", "--endpoint", &cluster.endpoint(id)]);
        assert_eq!(value, "kept", "node {id} after the restart (leader {leader})");
    }

    // A node whose data directory was deleted refuses to start without
    // --bootstrap, and says what to do; the others keep serving.
    assert_eq!(cluster.stop(3), Some(0));
    std::fs::remove_dir_all(cluster.data_dir(3)).unwrap();
    let refused = chorus(&cluster.node_args(3, false).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let message = text(&refused.stderr);
    assert!(message.contains("holds no Raft state") && message.contains("do NOT use --bootstrap"), "{message}");
    // With one of three down, the other two still have a quorum. (If node 3
    // led, the others redirect to it until they elect a new leader: the CLI
    // exits 3, "unavailable, retry", meanwhile.)
    cluster.wait_healthy();
    eventually(0, &["put", "after-wipe", "yes", "--endpoint", &cluster.endpoint(1)]);
    assert_eq!(expect(0, &["get", "after-wipe", "--endpoint", &cluster.endpoint(2)]), "yes");
    // And a restarted node refuses a second --bootstrap.
    assert_eq!(cluster.stop(1), Some(0));
    let again = chorus(&cluster.node_args(1, true).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already holds Raft state"));
}

#[test]
fn bad_flags_are_named_and_never_panic() {
    let root = std::env::temp_dir().join(format!("chorus-flags-{}", std::process::id()));
    let dir = root.to_str().unwrap();
    let cases: [(&[&str], &str); 9] = [
        (
            &["node", "--id", "1", "--listen", "127.0.0.1:1", "--join", "nowhere", "--data-dir", dir, "--certs", dir],
            "--join",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--bootstrap",
                "--join",
                "127.0.0.1:2",
                "--data-dir",
                dir,
                "--certs",
                dir,
            ],
            "--bootstrap",
        ),
        (&["node", "--id", "0", "--listen", "127.0.0.1:1", "--data-dir", dir, "--certs", dir], "--id"),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--cors-origin",
                "app.example",
                "--data-dir",
                dir,
                "--certs",
                dir,
            ],
            "CORS origin",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--wal-segment-bytes",
                "10",
                "--data-dir",
                dir,
                "--certs",
                dir,
            ],
            "--wal-segment-bytes",
        ),
        (&["node", "--id", "1", "--listen", "nowhere", "--data-dir", dir, "--certs", dir], "--listen"),
        (
            &["node", "--id", "1", "--listen", "127.0.0.1:1", "--http", "0.0.0.0:1", "--data-dir", dir, "--certs", dir],
            "--insecure-http",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:1",
                "--peer",
                "1=127.0.0.1:2",
                "--data-dir",
                dir,
                "--certs",
                dir,
            ],
            "used twice",
        ),
        (&["node", "--id", "1", "--listen", "127.0.0.1:1", "--data-dir", dir, "--certs", dir], "chorus certs node"),
    ];
    for (args, named) in cases {
        let output = chorus(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} should name {named:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
