//! The HTTP API over TLS (`chorus node --http-tls`) on three real nodes:
//! the CLI with a client certificate from the cluster CA puts through a
//! follower (redirected to the leader's https address) and reads on every
//! node; a client without a certificate, one with a certificate of another
//! CA, and plain HTTP are refused; the CLI names missing TLS flags.

#![cfg(unix)]

mod common;

use common::{chorus, eventually, expect, text, Cluster, WAIT};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

fn https(cluster: &Cluster, id: u64) -> String {
    format!("https://{}", cluster.node(id).http)
}

/// `--cacert --cert --key` of client `name`, whose certificates are in `dir`.
fn tls_flags(dir: &std::path::Path, name: &str) -> Vec<String> {
    let file = |file: String| dir.join(file).display().to_string();
    vec![
        format!("--cacert={}", file("ca.crt".into())),
        format!("--cert={}", file(format!("client-{name}.crt"))),
        format!("--key={}", file(format!("client-{name}.key"))),
    ]
}

/// Runs the CLI with `args` then the TLS flags.
fn with_tls(args: &[&str], flags: &[String]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).chain(flags.iter().cloned()).collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// GET `url` with `tls`: the status, or 0 if the connection failed.
fn get_with(url: &str, tls: TlsConfig) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent.get(url).call().map_or(0, |response| response.status().as_u16())
}

fn client_tls(dir: &std::path::Path, name: &str, with_certificate: bool) -> TlsConfig {
    let read = |file: &str| std::fs::read(dir.join(file)).unwrap();
    let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_pem(&read("ca.crt")).unwrap()]));
    let mut builder = TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls).root_certs(roots);
    if with_certificate {
        let certificate = Certificate::from_pem(&read(&format!("client-{name}.crt"))).unwrap();
        let key = PrivateKey::from_pem(&read(&format!("client-{name}.key"))).unwrap();
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&[certificate], key)));
    }
    builder.build()
}

#[test]
fn the_api_over_tls_serves_clients_of_the_cluster_ca_and_refuses_others() {
    let mut cluster = Cluster::new("https", 3);
    cluster.extra_args = vec!["--http-tls".to_string()];
    cluster.certify(4);
    let certs = cluster.certs();
    expect(0, &["certs", "client", "--dir", certs.to_str().unwrap(), "--name", "ops"]);
    let flags = tls_flags(&certs, "ops");
    for id in 1..=3 {
        cluster.start(id, true);
    }
    let deadline = Instant::now() + WAIT;
    let leader = loop {
        let out = chorus(&strs(&with_tls(&["member", "list", "--endpoint", &https(&cluster, 1)], &flags)));
        let listed = text(&out.stdout);
        if let Some(line) = listed.lines().find(|line| line.contains(" * ")) {
            break line.trim_start_matches('|').trim().split(' ').next().unwrap().parse::<u64>().unwrap();
        }
        assert!(Instant::now() < deadline, "no leader over HTTPS: {listed}{}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    };

    // A put through a follower is redirected to the leader's https address.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let put = with_tls(&["put", "secret", "kept", "--endpoint", &https(&cluster, follower)], &flags);
    eventually(0, &strs(&put));
    for id in 1..=3 {
        let get = with_tls(&["get", "secret", "--endpoint", &https(&cluster, id)], &flags);
        assert_eq!(eventually(0, &strs(&get)), "kept", "node {id}");
    }
    let status = expect(0, &strs(&with_tls(&["status", "--endpoint", &https(&cluster, leader)], &flags)));
    assert!(status.contains("leader"), "{status}");

    // A fourth node joins over HTTPS, presenting its node certificate.
    let four = cluster.add_node();
    let mut args: Vec<String> =
        cluster.node_args(four, false).into_iter().filter(|arg| !arg.starts_with("--peer")).collect();
    args.push(format!("--join={}", https(&cluster, follower)));
    cluster.start_with(four, &args);
    let get = with_tls(&["get", "secret", "--endpoint", &https(&cluster, four)], &flags);
    assert_eq!(eventually(0, &strs(&get)), "kept", "the joined node");

    // Refused: no client certificate, a certificate of another CA, plain
    // HTTP. A client of the cluster CA gets in.
    let health = format!("{}/health", https(&cluster, leader));
    assert_eq!(get_with(&health, client_tls(&certs, "ops", true)), 200);
    assert_eq!(get_with(&health, client_tls(&certs, "ops", false)), 0, "no client certificate");
    let stranger = cluster.root.join("other-ca");
    expect(0, &["certs", "init", "--dir", stranger.to_str().unwrap()]);
    expect(0, &["certs", "client", "--dir", stranger.to_str().unwrap(), "--name", "ops"]);
    std::fs::copy(certs.join("ca.crt"), stranger.join("ca.crt")).unwrap();
    assert_eq!(get_with(&health, client_tls(&stranger, "ops", true)), 0, "a certificate of another CA");
    assert_ne!(common::http("GET", &format!("http://{}/health", cluster.node(leader).http), None).0, 200);

    // The CLI names what is missing.
    let missing = chorus(&["get", "secret", "--endpoint", &https(&cluster, leader)]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("--cacert"), "{}", text(&missing.stderr));
}
