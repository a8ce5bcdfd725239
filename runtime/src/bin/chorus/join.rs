//! `chorus node --join`: asking a running cluster to take this node in, and
//! the `peers` file that remembers where the other members listen.

use chorus_runtime::http::{JoinAnswer, JOIN_TIMEOUT};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the file in the data directory listing the members' addresses.
pub(crate) const PEERS_FILE_NAME: &str = "peers";

/// Most lines read from a peers file (the transport's peer limit).
const MAX_PEER_LINES: usize = chorus_runtime::transport::MAX_PEERS;

/// Redirects to the leader followed in one join attempt.
const MAX_REDIRECTS: usize = 3;

/// Pause between join attempts that found no leader or failed.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Where a member listens: its peer (QUIC) address and its HTTP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Addresses {
    pub(crate) quic: SocketAddr,
    pub(crate) http: Option<SocketAddr>,
}

/// `--join ADDR`: a member's HTTP API, `IP:PORT`, `http://IP:PORT` or
/// `https://IP:PORT` (the scheme follows `--http-tls`).
pub(crate) fn parse_join(text: &str) -> Result<SocketAddr, String> {
    let bare = text.strip_prefix("http://").or(text.strip_prefix("https://")).unwrap_or(text).trim_end_matches('/');
    bare.parse().map_err(|error| {
        format!("--join {text:?}: expected a member's HTTP address as IP:PORT or http://IP:PORT ({error})")
    })
}

fn peers_path(data_dir: &Path) -> PathBuf {
    data_dir.join(PEERS_FILE_NAME)
}

/// The addresses remembered in `data_dir`, one `ID QUIC_ADDR [HTTP_ADDR]`
/// per line. A missing file is an empty list; a malformed line is an error
/// naming it.
pub(crate) fn load_peers(data_dir: &Path) -> Result<BTreeMap<u64, Addresses>, String> {
    let path = peers_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let mut peers = BTreeMap::new();
    for (number, line) in text.lines().enumerate().take(MAX_PEER_LINES) {
        let bad =
            || format!("{} line {}: expected `ID QUIC_ADDR [HTTP_ADDR]`, got {line:?}", path.display(), number + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let id: u64 = fields[0].parse().map_err(|_| bad())?;
        let quic = fields.get(1).and_then(|field| field.parse().ok()).ok_or_else(bad)?;
        let http = match fields.get(2) {
            Some(field) => Some(field.parse().map_err(|_| bad())?),
            None => None,
        };
        if id == 0 || fields.len() > 3 {
            return Err(bad());
        }
        peers.insert(id, Addresses { quic, http });
    }
    Ok(peers)
}

/// Writes the addresses to `data_dir` (a new file renamed over the old).
/// They are hints: the transport learns a member's address when it calls.
pub(crate) fn save_peers(data_dir: &Path, peers: &BTreeMap<u64, Addresses>) -> std::io::Result<()> {
    let mut text = String::new();
    for (id, addresses) in peers {
        text.push_str(&format!("{id} {}", addresses.quic));
        if let Some(http) = addresses.http {
            text.push_str(&format!(" {http}"));
        }
        text.push('\n');
    }
    let path = peers_path(data_dir);
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text)?;
    std::fs::rename(&fresh, &path)
}

/// Why joining stopped for good.
#[derive(Debug)]
pub(crate) struct JoinRefused(pub(crate) String);

/// Asks the cluster through `endpoint` (any member's HTTP API; redirects
/// lead to the leader) to make node `id` a voter on disk `disk`.
/// Retries while there is no leader, the member cannot be reached, or the
/// node is still catching up; stops on a refusal. Blocking: run it off the
/// async threads.
pub(crate) fn join(
    endpoint: SocketAddr,
    tls: Option<ureq::tls::TlsConfig>,
    id: u64,
    disk: u64,
    quic: SocketAddr,
    http: SocketAddr,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<JoinAnswer, JoinRefused> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.unwrap_or_default())
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(JOIN_TIMEOUT + Duration::from_secs(5)))
        .build()
        .into();
    let body = serde_json::json!({ "id": id, "address": quic.to_string(), "http": http.to_string(), "disk": disk })
        .to_string();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut url = format!("{scheme}://{endpoint}/v1/members");
        for _ in 0..=MAX_REDIRECTS {
            let request = ureq::http::Request::builder()
                .method("POST")
                .uri(&url)
                .header("content-type", "application/json")
                .body(body.clone().into_bytes())
                .map_err(|error| JoinRefused(format!("cannot build the join request: {error}")))?;
            let mut response = match agent.run(request) {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(%url, %error, "cannot reach the cluster to join; retrying");
                    break;
                }
            };
            let status = response.status().as_u16();
            let answer = response.body_mut().with_config().limit(1024 * 1024).read_to_vec().unwrap_or_default();
            match status {
                200 => {
                    return serde_json::from_slice(&answer)
                        .map_err(|error| JoinRefused(format!("unreadable answer to the join: {error}")))
                }
                307 => match response.headers().get("location").and_then(|location| location.to_str().ok()) {
                    Some(location) => url = location.to_string(),
                    None => break,
                },
                400..=499 => {
                    return Err(JoinRefused(format!(
                        "the cluster refused to take node {id} in ({status}): {}",
                        String::from_utf8_lossy(&answer)
                    )))
                }
                _ => {
                    tracing::info!(status, answer = %String::from_utf8_lossy(&answer), "join not done yet; retrying");
                    break;
                }
            }
        }
        std::thread::sleep(RETRY_INTERVAL);
    }
    Err(JoinRefused("stopped before the join completed".to_string()))
}
