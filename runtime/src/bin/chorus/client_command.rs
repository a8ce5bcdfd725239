//! The client commands: `chorus put|get|delete|cas|status`, over the node's
//! HTTP API (see `chorus_runtime::http`).

use crate::exit;
use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Redirects to the leader followed before giving up.
const MAX_REDIRECTS: usize = 3;
/// How long one HTTP request may take (the node itself answers within 10 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read from a node.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;
/// Where the commands go without `--endpoint`.
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

#[derive(Debug, Args)]
pub(crate) struct Endpoint {
    /// The node's HTTP API (or set CHORUS_ENDPOINT).
    #[arg(long, value_name = "URL", env = "CHORUS_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub(crate) endpoint: String,
    #[command(flatten)]
    pub(crate) tls: ClientTls,
}

/// The client's TLS files, for an `https://` endpoint (a node started with
/// `--http-tls`).
#[derive(Debug, Args)]
pub(crate) struct ClientTls {
    /// The cluster CA's certificate (ca.crt), the only authority trusted.
    #[arg(long, id = "tls_cacert", value_name = "FILE", env = "CHORUS_CACERT")]
    cacert: Option<std::path::PathBuf>,
    /// This client's certificate (from `chorus certs client`).
    #[arg(long, id = "tls_cert", value_name = "FILE", env = "CHORUS_CERT")]
    cert: Option<std::path::PathBuf>,
    /// This client's private key.
    #[arg(long = "key", id = "tls_key", value_name = "FILE", env = "CHORUS_KEY")]
    tls_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The key (any text; sent percent-encoded).
    key: String,
    /// The value.
    value: String,
    #[command(flatten)]
    endpoint: Endpoint,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Consistency {
    /// Confirmed with the leader (ReadIndex): never stale.
    Linearizable,
    /// Through the leader's lease when running, else as linearizable.
    Lease,
    /// Read-your-writes with --session.
    Session,
    /// This node's state at once: possibly stale.
    Stale,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The key.
    key: String,
    /// How fresh the answer must be.
    #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
    consistency: Consistency,
    /// With --consistency session: the session token of an earlier answer
    /// (printed by put, delete and cas).
    #[arg(long, value_name = "TOKEN")]
    session: Option<u64>,
    #[command(flatten)]
    endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The key.
    key: String,
    #[command(flatten)]
    endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub(crate) struct CasArgs {
    /// The key.
    key: String,
    /// EXPECTED NEW, or only NEW with --absent.
    #[arg(value_name = "EXPECTED NEW", num_args = 1..=2, required = true)]
    values: Vec<String>,
    /// Set the key only if it does not exist (then give only NEW).
    #[arg(long)]
    absent: bool,
    #[command(flatten)]
    endpoint: Endpoint,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The nodes' HTTP APIs; repeat for a row per node.
    #[arg(long = "endpoint", value_name = "URL", env = "CHORUS_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoints: Vec<String>,
    #[command(flatten)]
    tls: ClientTls,
}

/// A failure, with the exit code it maps to.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

fn unavailable(message: String) -> Failure {
    Failure { code: exit::UNAVAILABLE, message }
}

pub(crate) fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => exit::code(exit::OK),
        Err(Failure { code, message }) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            exit::code(code)
        }
    }
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    session: Option<u64>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The `message` (or `error`) of a JSON error body, else the body text.
    fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(json) => json["message"].as_str().or(json["error"].as_str()).map_or(text, str::to_string),
            Err(_) => text,
        }
    }

    /// The failure for an answer that is not what the command wanted.
    pub(crate) fn failure(&self) -> Failure {
        let code = match self.status {
            429 | 503 | 504 | 502 | 307 | 308 => exit::UNAVAILABLE,
            _ => exit::FAILED,
        };
        Failure { code, message: format!("HTTP {}: {}", self.status, self.message()) }
    }
}

fn agent(url: &str, tls: &ClientTls) -> Result<ureq::Agent, Failure> {
    let mut config = ureq::Agent::config_builder();
    if url.starts_with("https://") {
        let (Some(cacert), Some(cert), Some(key)) = (&tls.cacert, &tls.cert, &tls.tls_key) else {
            let message = format!("{url} is HTTPS: give --cacert, --cert and --key (see `chorus certs client`)");
            return Err(Failure { code: exit::USAGE, message });
        };
        let tls = crate::tls_client::from_files(cacert, cert, key)
            .map_err(|message| Failure { code: exit::USAGE, message })?;
        config = config.tls_config(tls);
    }
    Ok(config
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into())
}

/// Sends one request, following the node's redirects to the leader.
pub(crate) fn request(
    method: &str,
    endpoint: &str,
    tls: &ClientTls,
    path_and_query: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Reply, Failure> {
    let mut url = format!("{}{path_and_query}", endpoint.trim_end_matches('/'));
    let agent = agent(&url, tls)?;
    for _ in 0..=MAX_REDIRECTS {
        let builder = ureq::http::Request::builder().method(method).uri(&url);
        let builder = match body {
            Some((content_type, _)) => builder.header("content-type", content_type),
            None => builder,
        };
        let request = builder
            .body(body.map(|(_, bytes)| bytes.to_vec()).unwrap_or_default())
            .map_err(|error| Failure { code: exit::USAGE, message: format!("bad endpoint {url:?}: {error}") })?;
        let mut response = agent.run(request).map_err(|error| unavailable(format!("cannot reach {url}: {error}")))?;
        let status = response.status().as_u16();
        let header =
            |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
        if matches!(status, 307 | 308) {
            if let Some(location) = header("location") {
                url = location;
                continue;
            }
        }
        let session = header("x-chorus-session").and_then(|value| value.parse().ok());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|error| unavailable(format!("reading the answer from {url}: {error}")))?;
        return Ok(Reply { status, session, body });
    }
    Err(unavailable(format!("more than {MAX_REDIRECTS} redirects, last to {url}; is a leader being elected?")))
}

/// Percent-encodes a key for the path (everything but unreserved characters).
fn encode_key(key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn print_ok(reply: &Reply) {
    match reply.session {
        Some(session) => println!("OK (session {session})"),
        None => println!("OK"),
    }
}

pub(crate) fn put(args: PutArgs) -> ExitCode {
    finish((|| {
        let path = format!("/v1/kv/{}", encode_key(&args.key));
        let reply = request(
            "PUT",
            &args.endpoint.endpoint,
            &args.endpoint.tls,
            &path,
            Some(("application/octet-stream", args.value.as_bytes())),
        )?;
        if reply.status != 200 {
            return Err(reply.failure());
        }
        print_ok(&reply);
        Ok(())
    })())
}

pub(crate) fn delete(args: DeleteArgs) -> ExitCode {
    finish((|| {
        let reply = request(
            "DELETE",
            &args.endpoint.endpoint,
            &args.endpoint.tls,
            &format!("/v1/kv/{}", encode_key(&args.key)),
            None,
        )?;
        if reply.status != 200 {
            return Err(reply.failure());
        }
        print_ok(&reply);
        Ok(())
    })())
}

pub(crate) fn get(args: GetArgs) -> ExitCode {
    finish((|| {
        let consistency = match args.consistency {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Session => "session",
            Consistency::Stale => "stale",
        };
        let mut path = format!("/v1/kv/{}?consistency={consistency}", encode_key(&args.key));
        match (args.consistency, args.session) {
            (Consistency::Session, Some(session)) => path.push_str(&format!("&session={session}")),
            (_, Some(_)) => {
                return Err(Failure { code: exit::USAGE, message: "--session goes with --consistency session".into() })
            }
            _ => {}
        }
        let reply = request("GET", &args.endpoint.endpoint, &args.endpoint.tls, &path, None)?;
        match reply.status {
            200 => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&reply.body);
                if std::io::stdout().is_terminal() {
                    let _ = stdout.write_all(b"\n");
                }
                Ok(())
            }
            404 => Err(Failure { code: exit::NO, message: format!("key {:?} not found", args.key) }),
            _ => Err(reply.failure()),
        }
    })())
}

pub(crate) fn cas(args: CasArgs) -> ExitCode {
    finish((|| {
        let (expected, new) = match (args.absent, args.values.as_slice()) {
            (false, [expected, new]) => (Some(expected.clone()), new.clone()),
            (true, [new]) => (None, new.clone()),
            (false, _) => {
                return Err(Failure {
                    code: exit::USAGE,
                    message: "cas needs KEY EXPECTED NEW (or KEY --absent NEW)".into(),
                })
            }
            (true, _) => return Err(Failure { code: exit::USAGE, message: "with --absent, give only KEY NEW".into() }),
        };
        let body = serde_json::json!({ "expected": expected, "new": new }).to_string();
        let path = format!("/v1/kv/{}/cas", encode_key(&args.key));
        let reply = request(
            "POST",
            &args.endpoint.endpoint,
            &args.endpoint.tls,
            &path,
            Some(("application/json", body.as_bytes())),
        )?;
        match reply.status {
            200 => {
                print_ok(&reply);
                Ok(())
            }
            409 => {
                let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                let current = match &json["current"] {
                    serde_json::Value::String(value) => format!("{value:?}"),
                    _ => "absent".to_string(),
                };
                println!("NOT APPLIED: the key holds {current}");
                Err(Failure { code: exit::NO, message: String::new() })
            }
            _ => Err(reply.failure()),
        }
    })())
}

pub(crate) fn status(args: StatusArgs) -> ExitCode {
    let columns = ["ENDPOINT", "NODE", "ROLE", "TERM", "LEADER", "VOTERS", "LAST", "COMMIT", "APPLIED"];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut failures = Vec::new();
    for endpoint in &args.endpoints {
        match request("GET", endpoint, &args.tls, "/v1/status", None) {
            Ok(reply) if reply.status == 200 => match serde_json::from_slice::<serde_json::Value>(&reply.body) {
                Ok(json) => {
                    let field = |name: &str| match &json[name] {
                        serde_json::Value::Null => "-".to_string(),
                        serde_json::Value::String(text) => text.clone(),
                        serde_json::Value::Array(items) => {
                            items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                        }
                        other => other.to_string(),
                    };
                    let mut row = vec![endpoint.clone()];
                    for name in
                        ["node", "role", "term", "leader", "voters", "last_index", "commit_index", "applied_index"]
                    {
                        row.push(field(name));
                    }
                    rows.push(row);
                }
                Err(error) => failures.push(Failure { code: exit::FAILED, message: format!("{endpoint}: {error}") }),
            },
            Ok(reply) => failures.push(reply.failure()),
            Err(failure) => failures.push(failure),
        }
    }
    print_table(&columns, &rows);
    let worst = failures.iter().map(|failure| failure.code).max();
    for failure in &failures {
        eprintln!("error: {}", failure.message);
    }
    exit::code(worst.unwrap_or(exit::OK))
}

/// Prints `rows` under `columns` as a table with rules (nothing if empty).
pub(crate) fn print_table(columns: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|column| rows.iter().map(|row| row[column].len()).chain([columns[column].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!(" {cell:<width$} ")).collect();
        format!("|{}|", padded.join("|"))
    };
    let rule = format!("+{}+", widths.iter().map(|width| "-".repeat(width + 2)).collect::<Vec<_>>().join("+"));
    println!("{rule}");
    println!("{}", line(&columns.iter().map(|column| column.to_string()).collect::<Vec<_>>()));
    println!("{rule}");
    for row in rows {
        println!("{}", line(row));
    }
    println!("{rule}");
}
