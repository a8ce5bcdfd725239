//! The clients of `chorus bench`: each owns one HTTP/1.1 keep-alive
//! connection and writes one key after another until the run ends.

use super::histogram::Histogram;
use super::Api;
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redirects to the leader followed within one write.
const MAX_REDIRECTS: usize = 3;
/// Largest answer read (both APIs answer a put with a few dozen bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Pause after a failed write, so that a node that refuses at once is not
/// hammered in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Distinct error kinds kept by name; the rest count as `other`.
const MAX_ERROR_KINDS: usize = 16;

/// What every client needs to know, shared.
#[derive(Debug)]
pub(crate) struct Load {
    pub(crate) api: Api,
    /// `host:port` of each endpoint; client `i` starts on `i % len`.
    pub(crate) authorities: Vec<String>,
    pub(crate) clients: u32,
    pub(crate) keys: u64,
    pub(crate) value: Vec<u8>,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) request_timeout: Duration,
}

/// What the clients measured together.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Latency of every acknowledged write that started after the warm-up.
    pub(crate) latencies: Histogram,
    /// Failed writes after the warm-up, by kind (sorted: the report is stable).
    pub(crate) errors: BTreeMap<String, u64>,
    /// Redirects to the leader followed (after the warm-up).
    pub(crate) redirects: u64,
    /// From the end of the warm-up to the last client's last answer.
    pub(crate) elapsed: Duration,
}

impl Outcome {
    fn count_error(&mut self, kind: String, count: u64) {
        let kind = if self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&kind) {
            kind
        } else {
            "other".to_string()
        };
        *self.errors.entry(kind).or_default() += count;
    }

    fn merge(&mut self, other: Outcome) {
        self.latencies.merge(&other.latencies);
        for (kind, count) in other.errors {
            self.count_error(kind, count);
        }
        self.redirects += other.redirects;
    }
}

/// Runs `load.clients` clients for the warm-up and then the measured
/// duration, and gathers what they measured.
pub(crate) async fn run(load: Arc<Load>) -> Outcome {
    let measure_from = Instant::now() + load.warmup;
    let end = measure_from + load.duration;
    let tasks: Vec<_> =
        (0..load.clients).map(|index| tokio::spawn(run_client(Arc::clone(&load), index, measure_from, end))).collect();
    let mut outcome = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(client) => outcome.merge(client),
            Err(error) => outcome.count_error(format!("client task failed: {error}"), 1),
        }
    }
    outcome.elapsed = Instant::now().saturating_duration_since(measure_from);
    outcome
}

/// One write that did not succeed.
#[derive(Debug)]
enum WriteError {
    /// No connection (or it broke): the next write connects again.
    Connection(String),
    /// An answer other than success.
    Status(u16, String),
    /// A 200 whose body is not the API's success answer.
    BadAnswer,
    Redirects,
}

impl WriteError {
    fn kind(&self) -> String {
        match self {
            WriteError::Connection(problem) => format!("connection: {problem}"),
            WriteError::Status(status, code) => format!("HTTP {status} {code}"),
            WriteError::BadAnswer => "unexpected answer".to_string(),
            WriteError::Redirects => format!("more than {MAX_REDIRECTS} redirects"),
        }
    }
}

struct Client {
    load: Arc<Load>,
    authority: String,
    connection: Option<SendRequest<Full<Bytes>>>,
    redirects: u64,
}

async fn run_client(load: Arc<Load>, index: u32, measure_from: Instant, end: Instant) -> Outcome {
    let authority = load.authorities[index as usize % load.authorities.len()].clone();
    let mut client = Client { load: Arc::clone(&load), authority, connection: None, redirects: 0 };
    let mut outcome = Outcome::default();
    let mut sequence: u64 = 0;
    while Instant::now() < end {
        let key = key_name(index, sequence, load.keys);
        sequence += 1;
        let started = Instant::now();
        let result = match tokio::time::timeout(load.request_timeout, client.write(&key)).await {
            Ok(result) => result,
            Err(_) => Err(WriteError::Connection(format!("no answer within {:?}", load.request_timeout))),
        };
        let latency = started.elapsed();
        let measured = started >= measure_from;
        match result {
            Ok(()) if measured => outcome.latencies.record(latency),
            Ok(()) => {}
            Err(error) => {
                if measured {
                    outcome.count_error(error.kind(), 1);
                }
                if matches!(error, WriteError::Connection(_)) {
                    client.connection = None;
                }
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        if !measured {
            client.redirects = 0;
        }
    }
    outcome.redirects = client.redirects;
    outcome
}

/// The key of a client's `sequence`th write: clients start far apart in a
/// space of `keys` keys, so that they rarely write the same key at once.
pub(crate) fn key_name(client: u32, sequence: u64, keys: u64) -> String {
    let number = (u64::from(client).wrapping_mul(1_000_003).wrapping_add(sequence)) % keys;
    format!("bench-{number:08}")
}

impl Client {
    /// One write, following redirects to the leader (the client then stays
    /// with the leader).
    async fn write(&mut self, key: &str) -> Result<(), WriteError> {
        for _ in 0..=MAX_REDIRECTS {
            let request = request(self.load.api, &self.authority, key, &self.load.value);
            let (status, location, body) = self.send(request).await?;
            match status {
                200 if answer_is_success(self.load.api, &body) => return Ok(()),
                200 => return Err(WriteError::BadAnswer),
                307 | 308 => {
                    let target =
                        location.as_deref().and_then(authority_of).ok_or(WriteError::Status(status, String::new()))?;
                    self.redirects += 1;
                    if target != self.authority {
                        self.authority = target;
                        self.connection = None;
                    }
                }
                _ => return Err(WriteError::Status(status, error_code(&body))),
            }
        }
        Err(WriteError::Redirects)
    }

    async fn send(&mut self, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Option<String>, Bytes), WriteError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(connect(&self.authority).await?),
        };
        let broken = |error: hyper::Error| WriteError::Connection(error.to_string());
        connection.ready().await.map_err(broken)?;
        let response = connection.send_request(request).await.map_err(broken)?;
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|value| value.to_str().ok()).map(str::to_string);
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| WriteError::Connection(format!("reading the answer: {error}")))?
            .to_bytes();
        Ok((status, location, body))
    }
}

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, WriteError> {
    let failed = |error: &dyn std::fmt::Display| WriteError::Connection(error.to_string());
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|error| failed(&error))?;
    stream.set_nodelay(true).map_err(|error| failed(&error))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|error| failed(&error))?;
    // The connection's task ends when `sender` is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The put of `key` to `value` in `api`'s terms: Chorus's `PUT /v1/kv/KEY`
/// with the raw value, or etcd's JSON gateway `POST /v3/kv/put` with both
/// in base64.
pub(crate) fn request(api: Api, authority: &str, key: &str, value: &[u8]) -> hyper::Request<Full<Bytes>> {
    let (method, path, content_type, body) = match api {
        Api::Chorus => ("PUT", format!("/v1/kv/{key}"), "application/octet-stream", Bytes::copy_from_slice(value)),
        Api::Etcd => {
            let base64 = base64::engine::general_purpose::STANDARD;
            let json = serde_json::json!({ "key": base64.encode(key), "value": base64.encode(value) });
            ("POST", "/v3/kv/put".to_string(), "application/json", Bytes::from(json.to_string()))
        }
    };
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("content-type", content_type)
        .body(Full::new(body))
        .expect("invariant: the method, a path of a key made of [a-z0-9-], and the headers are valid")
}

/// Whether `body` is `api`'s answer to a successful put: Chorus's
/// `{"ok":true,...}`, etcd's `{"header":{...}}`.
pub(crate) fn answer_is_success(api: Api, body: &[u8]) -> bool {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    match api {
        Api::Chorus => json["ok"] == serde_json::Value::Bool(true),
        Api::Etcd => json["header"].is_object(),
    }
}

/// The `error` code of a JSON error answer (Chorus's `error`, etcd's
/// `error` too), or nothing.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json["error"].as_str().map(|code| code.chars().take(80).collect()))
        .unwrap_or_default()
}

/// The `host:port` of an `http://host:port/...` URL.
pub(crate) fn authority_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then(|| authority.to_string())
}
