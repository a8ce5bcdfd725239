use super::histogram::Histogram;
use super::load::{self, answer_is_success, authority_of, key_name, request};
use super::*;
use crate::{Cli, Command};
use clap::Parser;

fn parse(extra: &[&str]) -> Result<BenchArgs, clap::Error> {
    let cli = Cli::try_parse_from(["chorus", "bench"].iter().chain(extra))?;
    match cli.command {
        Command::Bench(args) => Ok(args),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn bench_flags_have_defaults_and_endpoints_are_reduced_to_host_and_port() {
    let args = parse(&["--endpoint", "http://127.0.0.1:8001/", "--endpoint", "localhost:2379"]).unwrap();
    assert_eq!(args.endpoints, ["127.0.0.1:8001", "localhost:2379"]);
    assert_eq!((args.api, args.clients, args.duration_secs, args.warmup_secs), (Api::Chorus, 1, 10, 1));
    assert_eq!(
        (args.value_bytes, args.keys, args.request_timeout_ms, args.format),
        (256, 10_000, 10_000, Format::Text)
    );
    let args = parse(&[
        "--endpoint=127.0.0.1:1",
        "--api=etcd",
        "--clients=256",
        "--duration-secs=3",
        "--warmup-secs=0",
        "--format=tsv",
    ])
    .unwrap();
    assert_eq!((args.api, args.clients, args.duration_secs, args.warmup_secs), (Api::Etcd, 256, 3, 0));
    assert_eq!(args.format, Format::Tsv);
}

#[test]
fn bad_bench_flags_are_usage_errors_naming_the_problem() {
    let cases: [(&[&str], &str); 12] = [
        (&[], "--endpoint"),
        (&["--endpoint=https://127.0.0.1:8001"], "plain HTTP"),
        (&["--endpoint=127.0.0.1"], "no :PORT"),
        (&["--endpoint=:8001"], "no host"),
        (&["--endpoint=127.0.0.1:0"], "the port must be"),
        (&["--endpoint=127.0.0.1:+80"], "the port must be"),
        (&["--endpoint=127.0.0.1:99999"], "the port must be"),
        (&["--endpoint=http://127.0.0.1:8001/v1/kv"], "expected http://HOST:PORT"),
        (&["--endpoint=127.0.0.1:8001", "--clients=0"], "--clients"),
        (&["--endpoint=127.0.0.1:8001", "--clients=5000"], "--clients"),
        (&["--endpoint=127.0.0.1:8001", "--duration-secs=0"], "--duration-secs"),
        (&["--endpoint=127.0.0.1:8001", "--api=consul"], "--api"),
    ];
    for (extra, problem) in cases {
        let error = parse(extra).expect_err(&format!("{extra:?}"));
        assert_eq!(error.exit_code(), i32::from(exit::USAGE), "{extra:?}: {error}");
        assert!(error.to_string().contains(problem), "{extra:?}: {error}");
    }
    for extra in [["--value-bytes=0"], ["--value-bytes=40000"], ["--keys=0"], ["--request-timeout-ms=0"]] {
        let error = parse(&["--endpoint=127.0.0.1:8001", extra[0]]).expect_err(extra[0]);
        assert_eq!(error.exit_code(), i32::from(exit::USAGE), "{error}");
    }
}

fn outcome_of(latencies_micros: impl IntoIterator<Item = u64>, elapsed: Duration) -> load::Outcome {
    let mut latencies = Histogram::default();
    for micros in latencies_micros {
        latencies.record(Duration::from_micros(micros));
    }
    let errors = [("HTTP 503 no_leader".to_string(), 2), ("connection: refused".to_string(), 1)].into();
    load::Outcome { latencies, errors, redirects: 4, elapsed }
}

#[test]
fn the_summary_counts_writes_errors_and_percentiles_and_divides_by_the_measured_time() {
    let outcome = outcome_of((1..=1000).map(|n| if n <= 990 { 100 } else { 2_000 + n }), Duration::from_secs(2));
    let summary = Summary::of(&outcome);
    assert_eq!((summary.writes, summary.errors, summary.p50_micros, summary.p99_micros), (1000, 3, 100, 100));
    assert!((2_991..=2_991 + 2_991 / 64).contains(&summary.p999_micros), "{}", summary.p999_micros);
    assert_eq!(summary.max_micros, 3_000);
    assert_eq!(summary.writes_per_second(), 500.0);
    let empty = Summary::of(&outcome_of([], Duration::ZERO));
    assert_eq!((empty.writes, empty.p99_micros, empty.writes_per_second()), (0, 0, 0.0));
}

#[test]
fn the_tsv_line_has_ten_fields_with_latencies_in_milliseconds() {
    let args = parse(&["--endpoint=127.0.0.1:1", "--api=etcd", "--clients=8", "--format=tsv"]).unwrap();
    let summary = Summary::of(&outcome_of([100, 100, 12_345], Duration::from_millis(1_500)));
    let line = tsv_line(&args, &summary);
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[..6], ["etcd", "8", "1.500", "3", "3", "2.0"]);
    assert_eq!(fields[6..], ["0.100", "12.345", "12.345", "12.345"], "p50, p99, p99.9 and max");
    assert_eq!(milliseconds(7), "0.007");
}

#[test]
fn keys_stay_within_the_key_space_and_clients_start_apart() {
    assert_eq!(key_name(0, 0, 10_000), "bench-00000000");
    assert_eq!(key_name(0, 10_001, 10_000), "bench-00000001");
    assert_ne!(key_name(1, 0, 10_000), key_name(2, 0, 10_000));
    assert_eq!(key_name(u32::MAX, u64::MAX, 1), "bench-00000000");
}

#[test]
fn the_two_apis_send_the_same_put_in_their_own_terms() {
    let chorus = request(Api::Chorus, "127.0.0.1:8001", "bench-00000007", b"xyz");
    assert_eq!((chorus.method().as_str(), chorus.uri().path()), ("PUT", "/v1/kv/bench-00000007"));
    assert_eq!(chorus.headers()["host"], "127.0.0.1:8001");
    let etcd = request(Api::Etcd, "127.0.0.1:2379", "k", b"xyz");
    assert_eq!((etcd.method().as_str(), etcd.uri().path()), ("POST", "/v3/kv/put"));
    assert_eq!(etcd.headers()["content-type"], "application/json");
    let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(etcd.into_body()))
        .expect("a full body is ready")
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json, serde_json::json!({ "key": "aw==", "value": "eHl6" }));
}

#[test]
fn success_answers_are_recognised_per_api_and_redirects_give_the_leader() {
    assert!(answer_is_success(Api::Chorus, br#"{"ok":true,"session":3}"#));
    assert!(!answer_is_success(Api::Chorus, br#"{"ok":false}"#));
    assert!(answer_is_success(Api::Etcd, br#"{"header":{"revision":"2"}}"#));
    assert!(!answer_is_success(Api::Etcd, br#"{"error":"etcdserver: too many requests"}"#));
    assert!(!answer_is_success(Api::Etcd, b"<html>"));
    assert_eq!(authority_of("http://127.0.0.1:8002/v1/kv/a").as_deref(), Some("127.0.0.1:8002"));
    assert_eq!(authority_of("https://127.0.0.1:8002/v1/kv/a"), None);
    assert_eq!(authority_of("http:///v1"), None);
}
