//! Real `chorus node` processes on loopback, for the process tests: their
//! files, ports, starts, signals and waits.
//!
//! Ports are picked free by the OS; every wait is bounded; the children are
//! killed when the cluster is dropped, however the test ends. On failure
//! the nodes' logs are printed.

#![allow(dead_code)] // each test file uses a part

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const CHORUS: &str = env!("CARGO_BIN_EXE_chorus");
/// Bound on every wait for the cluster (election, catching up, stopping).
pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const POLL: Duration = Duration::from_millis(100);

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) quic: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) child: Option<Child>,
}

/// The cluster's files and processes; kills every child on drop and prints
/// their logs if the test failed.
pub(crate) struct Cluster {
    pub(crate) root: PathBuf,
    pub(crate) nodes: Vec<Node>,
    /// The members of the initial configuration (bootstrapped together).
    pub(crate) initial: Vec<u64>,
    /// `--election-timeout-ms` and `--heartbeat-interval-ms` of every node.
    pub(crate) timing_ms: (u64, u64),
    /// More `chorus node` flags for every node.
    pub(crate) extra_args: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = std::fs::read_to_string(self.log_path(node.id)).unwrap_or_default();
                // The end of a long log is what explains a failure.
                let tail: String =
                    log.lines().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                eprintln!("----- node {} log (last 200 lines) -----\n{tail}", node.id);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub(crate) fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub(crate) fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub(crate) fn chorus(args: &[&str]) -> Output {
    Command::new(CHORUS).args(args).env_remove("CHORUS_ENDPOINT").output().expect("the chorus binary runs")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command and checks its exit code; returns its stdout.
pub(crate) fn expect(code: i32, args: &[&str]) -> String {
    let output = chorus(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "chorus {args:?}\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

impl Cluster {
    /// Files and ports for nodes `1..=size`, all members of the initial
    /// configuration; nothing runs yet.
    pub(crate) fn new(name: &str, size: u64) -> Cluster {
        let root = std::env::temp_dir().join(format!(
            "chorus-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&root).unwrap();
        let nodes = (1..=size).map(|id| Node { id, quic: free_udp(), http: free_tcp(), child: None }).collect();
        Cluster { root, nodes, initial: (1..=size).collect(), timing_ms: (1000, 100), extra_args: Vec::new() }
    }

    /// Ports for one more node (not an initial member); returns its id.
    pub(crate) fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(Node { id, quic: free_udp(), http: free_tcp(), child: None });
        id
    }

    pub(crate) fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub(crate) fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// Creates the CA and every node's certificate (ids `1..=count`).
    pub(crate) fn certify(&self, count: u64) {
        let certs = self.certs();
        let certs = certs.to_str().unwrap();
        if !Path::new(certs).join("ca.crt").exists() {
            expect(0, &["certs", "init", "--dir", certs]);
        }
        for id in 1..=count {
            if !Path::new(certs).join(format!("node-{id}.crt")).exists() {
                expect(0, &["certs", "node", "--dir", certs, "--id", &id.to_string()]);
            }
        }
    }

    pub(crate) fn data_dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("data-{id}"))
    }

    pub(crate) fn log_path(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}.log"))
    }

    pub(crate) fn endpoint(&self, id: u64) -> String {
        format!("http://{}", self.node(id).http)
    }

    /// `chorus node` flags for node `id`: the other initial members as peers.
    pub(crate) fn node_args(&self, id: u64, bootstrap: bool) -> Vec<String> {
        let node = self.node(id);
        let mut args = vec![
            "node".to_string(),
            format!("--id={id}"),
            format!("--listen={}", node.quic),
            format!("--http={}", node.http),
            format!("--data-dir={}", self.data_dir(id).display()),
            format!("--certs={}", self.certs().display()),
            format!("--election-timeout-ms={}", self.timing_ms.0),
            format!("--heartbeat-interval-ms={}", self.timing_ms.1),
            "--log-level=info".to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        for peer in self.nodes.iter().filter(|peer| peer.id != id && self.initial.contains(&peer.id)) {
            args.push(format!("--peer={}={}", peer.id, peer.quic));
            args.push(format!("--peer-http={}={}", peer.id, peer.http));
        }
        if bootstrap {
            args.push("--bootstrap".to_string());
        }
        args
    }

    pub(crate) fn start(&mut self, id: u64, bootstrap: bool) {
        let args = self.node_args(id, bootstrap);
        self.start_with(id, &args);
    }

    /// Starts node `id` with exactly `args`, its output appended to its log.
    pub(crate) fn start_with(&mut self, id: u64, args: &[String]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id)).unwrap();
        let child = Command::new(CHORUS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("chorus node starts");
        self.nodes[(id - 1) as usize].child = Some(child);
    }

    pub(crate) fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    /// SIGKILL: no chance to finish anything.
    pub(crate) fn kill(&mut self, id: u64) {
        let mut child = self.nodes[(id - 1) as usize].child.take().expect("the node runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then the exit code (bounded wait).
    pub(crate) fn stop(&mut self, id: u64) -> Option<i32> {
        self.stop_with(id, "-TERM")
    }

    /// Sends `signal` (`-TERM`, `-INT`), then the exit code (bounded wait).
    pub(crate) fn stop_with(&mut self, id: u64, signal: &str) -> Option<i32> {
        let mut child = self.nodes[(id - 1) as usize].child.take().expect("the node runs");
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {id} did not stop within {WAIT:?} of {signal}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every running node answers /health with 200 and they
    /// agree on the leader. Returns the leader's id.
    pub(crate) fn wait_healthy(&self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> = self
                .nodes
                .iter()
                .filter(|node| node.child.is_some())
                .map(|node| {
                    let (status, body) = http("GET", &format!("http://{}/health", node.http), None);
                    if status != 200 {
                        return None;
                    }
                    serde_json::from_slice::<serde_json::Value>(&body).ok()?["leader"].as_u64()
                })
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|other| *other == Some(*leader)) {
                    return *leader;
                }
            }
            assert!(Instant::now() < deadline, "the cluster did not become healthy within {WAIT:?}: {leaders:?}");
            std::thread::sleep(POLL);
        }
    }

    /// Node `id`'s `/v1/status`, if it answers.
    pub(crate) fn status(&self, id: u64) -> Option<serde_json::Value> {
        let (code, body) = http("GET", &format!("{}/v1/status", self.endpoint(id)), None);
        (code == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
    }
}

/// One HTTP request (no redirects followed); (status, body). Status 0 when
/// the node cannot be reached.
pub(crate) fn http(method: &str, url: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    http_with_timeout(method, url, body, Duration::from_secs(15))
}

/// [`http`] with a bound on the whole exchange.
pub(crate) fn http_with_timeout(method: &str, url: &str, body: Option<&[u8]>, timeout: Duration) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if method == "POST" {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(body.unwrap_or_default().to_vec()).unwrap();
    match agent.run(request) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            (status, response.body_mut().read_to_vec().unwrap_or_default())
        }
        Err(_) => (0, Vec::new()),
    }
}

pub(crate) fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", text(body)))
}

/// Retries a CLI command until it exits with `code` (the cluster may be
/// settling right after an election); returns its stdout.
pub(crate) fn eventually(code: i32, args: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let output = chorus(args);
        if output.status.code() == Some(code) {
            return text(&output.stdout);
        }
        assert!(
            Instant::now() < deadline,
            "chorus {args:?} never exited with {code}; last {:?}: {}{}",
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr)
        );
        std::thread::sleep(POLL);
    }
}

/// Runs `chorus` with `args` to its end, at most `timeout` (then kills it
/// and fails); returns its exit code and stderr.
pub(crate) fn run_bounded(args: &[String], timeout: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(CHORUS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chorus starts");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return (status.code(), text(&output.stderr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chorus {args:?} still ran after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Streams node `id`'s `/v1/events` on a thread: one `(event, data)` pair
/// per server-sent event.
pub(crate) fn subscribe(cluster: &Cluster, id: u64) -> std::sync::mpsc::Receiver<(String, serde_json::Value)> {
    let url = format!("{}/v1/events", cluster.endpoint(id));
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(WAIT * 2)).build().into();
    let response = agent.get(&url).call().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut name = String::new();
        for line in std::io::BufReader::new(response.into_body().into_reader()).lines() {
            let Ok(line) = line else { return };
            if let Some(event) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
                name = event.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                let data = serde_json::from_str(data.trim()).unwrap_or_default();
                if sender.send((name.clone(), data)).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// Waits (bounded) for an event matching `wanted`; returns its data.
pub(crate) fn wait_for_event(
    events: &std::sync::mpsc::Receiver<(String, serde_json::Value)>,
    what: &str,
    wanted: impl Fn(&str, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok((name, data)) if wanted(&name, &data) => return data,
            Ok(other) => seen.push(other),
            Err(_) => panic!("no {what} event within {WAIT:?}; saw {seen:?}"),
        }
    }
}
