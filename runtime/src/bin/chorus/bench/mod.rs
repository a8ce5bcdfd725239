//! `chorus bench`: N concurrent clients write for a fixed time through a
//! key-value HTTP API (Chorus's, or etcd's v3 JSON gateway, so that both
//! pay for HTTP and JSON alike) and the command reports writes per second,
//! latency percentiles and errors. `scripts/bench-vs-etcd.sh` runs it
//! against both; see "Benchmark against etcd" in `docs/runtime.md`.

mod histogram;
mod load;

use crate::exit;
use clap::{Args, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Most concurrent clients (each holds a connection, a file descriptor).
const MAX_CLIENTS: u64 = 4096;
/// Longest measured run, in seconds.
const MAX_DURATION_SECS: u64 = 3600;
/// Largest value: Chorus takes bodies up to 64 KiB.
const MAX_VALUE_BYTES: u64 = 32 * 1024;

/// Which API the clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Api {
    /// `PUT /v1/kv/KEY` with the value as body (redirects to the leader followed).
    Chorus,
    /// etcd's v3 JSON gateway: `POST /v3/kv/put` with base64 key and value.
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A few lines for people.
    Text,
    /// One tab-separated line: api, clients, seconds, writes, errors,
    /// writes per second, p50, p99, p99.9 and max latency in milliseconds.
    Tsv,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// An HTTP API to write to (http://HOST:PORT or HOST:PORT); repeat to
    /// spread the clients over several (client i starts on endpoint i mod n).
    #[arg(long = "endpoint", value_name = "URL", required = true, value_parser = parse_endpoint)]
    endpoints: Vec<String>,
    /// The API the endpoints speak.
    #[arg(long, value_enum, default_value_t = Api::Chorus)]
    api: Api,
    /// Concurrent clients, each with one connection and one write in flight.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_CLIENTS as i64))]
    clients: u32,
    /// How long to measure, in seconds (after the warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    duration_secs: u64,
    /// Seconds of writes before measuring (connections opened, leader found).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60))]
    warmup_secs: u64,
    /// Size of every value written, in bytes.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=MAX_VALUE_BYTES))]
    value_bytes: u64,
    /// Distinct keys written (bench-00000000, ...), over and over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    keys: u64,
    /// A write without an answer within this many milliseconds counts as an
    /// error (and its connection is dropped).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    request_timeout_ms: u64,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `http://HOST:PORT[/]` or `HOST:PORT` to `HOST:PORT`; HTTPS and paths are
/// refused (the bench speaks plain HTTP to the root of an API).
pub(crate) fn parse_endpoint(text: &str) -> Result<String, String> {
    if text.starts_with("https://") {
        return Err("chorus bench speaks plain HTTP: give http://HOST:PORT (a node without --http-tls)".into());
    }
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) || authority.contains("://") {
        return Err(format!("expected http://HOST:PORT, got {text:?}"));
    }
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| format!("{text:?} has no :PORT"))?;
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(number) if number > 0 && port.bytes().all(|byte| byte.is_ascii_digit()) => Ok(authority.to_string()),
        _ => Err(format!("{text:?}: the port must be a number from 1 to 65535")),
    }
}

/// What a run measured, ready to print.
#[derive(Debug, PartialEq)]
pub(crate) struct Summary {
    pub(crate) writes: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
    pub(crate) p50_micros: u64,
    pub(crate) p99_micros: u64,
    pub(crate) p999_micros: u64,
    pub(crate) max_micros: u64,
    pub(crate) mean_micros: u64,
}

impl Summary {
    fn of(outcome: &load::Outcome) -> Summary {
        let latencies = &outcome.latencies;
        Summary {
            writes: latencies.count(),
            errors: outcome.errors.values().sum(),
            elapsed: outcome.elapsed,
            p50_micros: latencies.quantile_micros(50, 100),
            p99_micros: latencies.quantile_micros(99, 100),
            p999_micros: latencies.quantile_micros(999, 1000),
            max_micros: latencies.max_micros(),
            mean_micros: latencies.mean_micros(),
        }
    }

    /// Acknowledged writes per second of the measured time (0 if none).
    pub(crate) fn writes_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.writes as f64 / seconds
        } else {
            0.0
        }
    }
}

fn milliseconds(micros: u64) -> String {
    format!("{}.{:03}", micros / 1000, micros % 1000)
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    let load = Arc::new(load::Load {
        api: args.api,
        authorities: args.endpoints.clone(),
        clients: args.clients,
        keys: args.keys,
        value: vec![b'x'; args.value_bytes as usize],
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            return exit::code(exit::FAILED);
        }
    };
    let outcome = runtime.block_on(load::run(Arc::clone(&load)));
    let summary = Summary::of(&outcome);
    match args.format {
        Format::Text => print_text(&args, &outcome, &summary),
        Format::Tsv => println!("{}", tsv_line(&args, &summary)),
    }
    for (kind, count) in &outcome.errors {
        eprintln!("errors: {count} x {kind}");
    }
    if summary.writes == 0 {
        eprintln!("error: no write was acknowledged (is a leader elected? are the endpoints right?)");
        return exit::code(exit::UNAVAILABLE);
    }
    exit::code(exit::OK)
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::Chorus => "chorus",
        Api::Etcd => "etcd",
    }
}

pub(crate) fn tsv_line(args: &BenchArgs, summary: &Summary) -> String {
    let fields = [
        api_name(args.api).to_string(),
        args.clients.to_string(),
        format!("{:.3}", summary.elapsed.as_secs_f64()),
        summary.writes.to_string(),
        summary.errors.to_string(),
        format!("{:.1}", summary.writes_per_second()),
        milliseconds(summary.p50_micros),
        milliseconds(summary.p99_micros),
        milliseconds(summary.p999_micros),
        milliseconds(summary.max_micros),
    ];
    fields.join("\t")
}

fn print_text(args: &BenchArgs, outcome: &load::Outcome, summary: &Summary) {
    println!(
        "chorus bench: api {}, {} client(s), {} s measured after {} s warm-up, {} endpoint(s), {}-byte values",
        api_name(args.api),
        args.clients,
        args.duration_secs,
        args.warmup_secs,
        args.endpoints.len(),
        args.value_bytes
    );
    println!("writes      {} acknowledged, {:.1}/s", summary.writes, summary.writes_per_second());
    println!(
        "latency ms  p50 {}  p99 {}  p99.9 {}  max {}  mean {}",
        milliseconds(summary.p50_micros),
        milliseconds(summary.p99_micros),
        milliseconds(summary.p999_micros),
        milliseconds(summary.max_micros),
        milliseconds(summary.mean_micros)
    );
    println!("errors      {}", summary.errors);
    println!("redirects   {}", outcome.redirects);
}

#[cfg(test)]
mod tests;
