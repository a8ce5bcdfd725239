//! `chorus node --join`: asking a running cluster to take this node in, and
//! the `peers` file that remembers where the other members listen.

use chorus_runtime::discovery::{Discovery, DnsDiscovery, DnsTarget, StaticDiscovery, DNS_PREFIX};
use chorus_runtime::http::{JoinAnswer, JOIN_TIMEOUT};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// `--join`: where to find a member's HTTP API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JoinTarget {
    /// One member's address.
    Address(SocketAddr),
    /// The members a DNS name resolves to (a Kubernetes headless service),
    /// resolved again every `--discovery-interval-secs`.
    Dns(DnsTarget),
}

impl JoinTarget {
    /// The discovery source of the members to ask; a DNS name is resolved
    /// every `interval` (in a task: call inside the tokio runtime) until the
    /// source is dropped.
    pub(crate) fn discovery(&self, interval: Duration) -> Arc<dyn Discovery> {
        match self {
            JoinTarget::Address(address) => Arc::new(StaticDiscovery::new([*address])),
            JoinTarget::Dns(target) => Arc::new(DnsDiscovery::new(target.clone()).spawn(interval)),
        }
    }
}

impl std::fmt::Display for JoinTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinTarget::Address(address) => address.fmt(f),
            JoinTarget::Dns(target) => target.fmt(f),
        }
    }
}

/// `--join`: a member's HTTP API, `IP:PORT`, `http://IP:PORT` or
/// `https://IP:PORT` (the scheme follows `--http-tls`), or the members a DNS
/// name resolves to, `dns:NAME:PORT`.
pub(crate) fn parse_join(text: &str) -> Result<JoinTarget, String> {
    if text.starts_with(DNS_PREFIX) {
        return DnsTarget::parse(text).map(JoinTarget::Dns).map_err(|error| format!("--join {error}"));
    }
    let bare = text.strip_prefix("http://").or(text.strip_prefix("https://")).unwrap_or(text).trim_end_matches('/');
    bare.parse().map(JoinTarget::Address).map_err(|error| {
        format!(
            "--join {text:?}: expected a member's HTTP address as IP:PORT or http://IP:PORT, or dns:NAME:PORT \
             ({error})"
        )
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

/// Asks the cluster to make node `id` a voter on disk `disk`, through the
/// members `discovery` finds (each in turn, skipping this node's own `http`
/// address; redirects lead to the leader). Retries while no member is
/// found, there is no leader, no member can be reached, or the node is
/// still catching up; stops on a refusal. Blocking: run it off the async
/// threads.
pub(crate) fn join(
    discovery: &dyn Discovery,
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
        let members: Vec<SocketAddr> = discovery.addresses().into_iter().filter(|member| *member != http).collect();
        if members.is_empty() {
            tracing::info!("no member found to join through yet; retrying");
        }
        for member in members {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if let Some(answer) = ask(&agent, format!("{scheme}://{member}/v1/members"), &body, id)? {
                return Ok(answer);
            }
        }
        std::thread::sleep(RETRY_INTERVAL);
    }
    Err(JoinRefused("stopped before the join completed".to_string()))
}

/// One join request to `url`, following redirects: `Some` once joined,
/// `None` to try again (another member, or later), `Err` on a refusal.
fn ask(agent: &ureq::Agent, mut url: String, body: &str, id: u64) -> Result<Option<JoinAnswer>, JoinRefused> {
    for _ in 0..=MAX_REDIRECTS {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .map_err(|error| JoinRefused(format!("cannot build the join request: {error}")))?;
        let mut response = match agent.run(request) {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%url, %error, "cannot reach the cluster to join; retrying");
                return Ok(None);
            }
        };
        let status = response.status().as_u16();
        let answer = response.body_mut().with_config().limit(1024 * 1024).read_to_vec().unwrap_or_default();
        match status {
            200 => {
                return serde_json::from_slice(&answer)
                    .map(Some)
                    .map_err(|error| JoinRefused(format!("unreadable answer to the join: {error}")))
            }
            307 => match response.headers().get("location").and_then(|location| location.to_str().ok()) {
                Some(location) => url = location.to_string(),
                None => return Ok(None),
            },
            400..=499 => {
                return Err(JoinRefused(format!(
                    "the cluster refused to take node {id} in ({status}): {}",
                    String::from_utf8_lossy(&answer)
                )))
            }
            _ => {
                tracing::info!(status, answer = %String::from_utf8_lossy(&answer), "join not done yet; retrying");
                return Ok(None);
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_accepts_an_address_or_a_dns_name_and_nothing_else() {
        let member: SocketAddr = "10.0.0.1:8080".parse().expect("an address");
        for text in ["10.0.0.1:8080", "http://10.0.0.1:8080", "https://10.0.0.1:8080/"] {
            assert_eq!(parse_join(text), Ok(JoinTarget::Address(member)), "{text}");
        }
        let dns = parse_join("dns:chorus.default.svc:8080").expect("a DNS name");
        assert_eq!(dns.to_string(), "dns:chorus.default.svc:8080");
        for (text, problem) in [
            ("dns:", "the port is missing"),
            ("dns:chorus", "the port is missing"),
            ("dns:chorus:http", "the port \"http\" is not a number"),
            ("dns::8080", "the name is empty"),
            ("dns:chorus:0", "the port \"0\""),
            ("chorus:8080", "or dns:NAME:PORT"),
            ("http://dns:chorus:8080", "or dns:NAME:PORT"),
        ] {
            let error = parse_join(text).expect_err(text);
            assert!(error.starts_with("--join ") && error.contains(problem), "{text}: {error}");
        }
    }
}
