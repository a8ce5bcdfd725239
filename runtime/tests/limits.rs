//! The request-rate limit of `chorus node --max-requests-per-second`: beyond
//! it the API answers 429 with `retry-after`, `/health` and `/metrics` stay
//! open, and the node serves again once the bucket refills.

#![cfg(unix)]

mod common;

use common::{http, json, Cluster, WAIT};
use std::time::{Duration, Instant};

#[test]
fn requests_beyond_the_rate_limit_are_answered_429_and_the_node_recovers() {
    let mut cluster = Cluster::new("limits", 1);
    cluster.extra_args = vec!["--max-requests-per-second=5".to_string()];
    cluster.certify(1);
    cluster.start(1, true);
    cluster.wait_healthy();
    let status_url = format!("{}/v1/status", cluster.endpoint(1));
    let answers: Vec<(u16, Vec<u8>)> = (0..20).map(|_| http("GET", &status_url, None)).collect();
    let limited: Vec<&(u16, Vec<u8>)> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert!(limited.len() >= 10, "{:?}", answers.iter().map(|(status, _)| status).collect::<Vec<_>>());
    assert_eq!(json(&limited[0].1)["error"], "rate_limited");
    for path in ["/health", "/metrics"] {
        assert_eq!(http("GET", &format!("{}{path}", cluster.endpoint(1)), None).0, 200, "{path} is not limited");
    }
    let deadline = Instant::now() + WAIT;
    while http("GET", &status_url, None).0 != 200 {
        assert!(Instant::now() < deadline, "the node never served again");
        std::thread::sleep(Duration::from_millis(100));
    }
}
