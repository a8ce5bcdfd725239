//! The request-rate limit of `chorus node --max-requests-per-second`: beyond
//! it the API answers 429 with `retry-after`, `/health` and `/metrics` stay
//! open, and the node serves again once the bucket refills. And CORS: only a
//! `--cors-origin` gets CORS headers.

#![cfg(unix)]

mod common;

use common::{http, json, Cluster, WAIT};
use std::time::{Duration, Instant};

#[test]
fn requests_beyond_the_rate_limit_are_answered_429_and_the_node_recovers() {
    let mut cluster = Cluster::new("limits", 1);
    cluster.extra_args =
        vec!["--max-requests-per-second=5".to_string(), "--cors-origin=https://app.example".to_string()];
    cluster.certify(1);
    cluster.start(1, true);
    cluster.wait_healthy();
    cross_origin_requests_only_from_the_listed_origin(&cluster);
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

/// One request with an `Origin` header: (status, the CORS headers).
fn with_origin(method: &str, url: &str, origin: &str) -> (u16, Option<String>, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .body(Vec::new())
        .unwrap();
    let response = agent.run(request).unwrap();
    let header = |name: &str| response.headers().get(name).map(|value| value.to_str().unwrap().to_string());
    (response.status().as_u16(), header("access-control-allow-origin"), header("access-control-allow-methods"))
}

fn cross_origin_requests_only_from_the_listed_origin(cluster: &Cluster) {
    let health = format!("{}/health", cluster.endpoint(1));
    let key = format!("{}/v1/kv/k", cluster.endpoint(1));
    let (status, origin, methods) = with_origin("OPTIONS", &key, "https://app.example");
    assert_eq!((status, origin.as_deref()), (204, Some("https://app.example")));
    assert!(methods.unwrap().contains("PUT"));
    let (status, origin, _) = with_origin("GET", &health, "https://app.example");
    assert_eq!((status, origin.as_deref()), (200, Some("https://app.example")));
    let (_, origin, _) = with_origin("GET", &health, "https://evil.example");
    assert_eq!(origin, None, "an origin not listed gets no CORS headers");
    let (status, origin, _) = with_origin("OPTIONS", &key, "https://evil.example");
    assert_ne!(status, 204);
    assert_eq!(origin, None);
}
