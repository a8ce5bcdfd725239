//! `chorus node ...`: one member of a cluster, serving the HTTP API.

use crate::join::{self, Addresses, JoinTarget};
use crate::{exit, logging};
use chorus_core::kv::KvStore;
use chorus_core::raft::{Config, DiskId, RestartError};
use chorus_core::types::NodeId;
use chorus_runtime::certs::Identity;
use chorus_runtime::discovery::DEFAULT_DNS_INTERVAL;
use chorus_runtime::driver::{Driver, DriverError, Start};
use chorus_runtime::http::{self, HttpOptions};
use chorus_runtime::storage::{Storage, StorageError, StorageOptions, MIN_SEGMENT_BYTES};
use chorus_runtime::transport::{Peer, Transport};
use clap::Args;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    id: u64,
    /// UDP address to listen on for peers (QUIC), e.g. 127.0.0.1:7001.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// TCP address of the HTTP API. Loopback only unless --insecure-http.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Serve the HTTP API on a non-loopback address, without TLS or client
    /// authentication: anyone who reaches it can read and write. Only for
    /// trusted networks.
    #[arg(long)]
    insecure_http: bool,
    /// Serve the HTTP API over TLS with this node's certificate, and accept
    /// only clients presenting a certificate signed by the cluster CA
    /// (`chorus certs client`). Required on a non-loopback --http address
    /// (unless --insecure-http). Every node of a cluster should agree.
    #[arg(long, conflicts_with = "insecure_http")]
    http_tls: bool,
    /// Directory for this node's Raft log (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory holding ca.crt and this node's node-N.crt and
    /// node-N.key (see `chorus certs`).
    #[arg(long, value_name = "DIR")]
    certs: PathBuf,
    /// First start of a member of the initial cluster (this node and its
    /// --peer nodes): create its Raft state in the empty data directory.
    /// Refused if the directory already holds Raft state. Never use it for a
    /// node whose data was lost.
    #[arg(long, conflicts_with = "join")]
    bootstrap: bool,
    /// Join a running cluster through a member's HTTP API (IP:PORT or
    /// http://IP:PORT), or through the members a DNS name resolves to
    /// (dns:NAME:PORT, e.g. a Kubernetes headless service; PORT is their
    /// HTTP port; each address is tried in turn): on an empty data directory
    /// the node starts on a new disk and asks the leader to add it as a
    /// learner, then to make it a voter once it has caught up; a former
    /// member whose data was lost comes back this way (its new disk is
    /// recorded). Ignored once the data directory holds Raft state (the node
    /// restarts from it).
    #[arg(long, value_name = "ADDR", value_parser = join::parse_join)]
    join: Option<JoinTarget>,
    /// How often a `--join dns:NAME:PORT` name is resolved again while
    /// joining, in seconds. A failed resolution keeps the addresses found
    /// last.
    #[arg(long, default_value_t = DEFAULT_DNS_INTERVAL.as_secs(), value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    discovery_interval_secs: u64,
    /// A peer's QUIC address as ID=ADDR, e.g. 2=127.0.0.1:7002. Repeat for
    /// each peer.
    #[arg(long = "peer", value_name = "ID=ADDR", value_parser = parse_peer)]
    peers: Vec<(u64, SocketAddr)>,
    /// A peer's HTTP address as ID=ADDR, so that this node can redirect
    /// clients to the leader. Repeat for each peer.
    #[arg(long = "peer-http", value_name = "ID=ADDR", value_parser = parse_peer)]
    peer_http: Vec<(u64, SocketAddr)>,
    /// Minimum election timeout in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    election_timeout_ms: u64,
    /// Leader heartbeat interval in milliseconds (below the election timeout).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    heartbeat_interval_ms: u64,
    /// Take a snapshot (and compact the log on disk) every this many applied
    /// entries (0: only by size, 64 MiB of commands).
    #[arg(long, default_value_t = 100_000, value_name = "ENTRIES")]
    snapshot_entries: u64,
    /// Log entries kept before each snapshot, so that a follower slightly
    /// behind catches up from the log rather than by snapshot.
    #[arg(long, default_value_t = 5_000, value_name = "ENTRIES")]
    snapshot_retained_entries: u64,
    /// Size at which a segment of the write-ahead log ends, in bytes.
    #[arg(long, default_value_t = chorus_runtime::storage::DEFAULT_SEGMENT_BYTES, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(MIN_SEGMENT_BYTES..))]
    wal_segment_bytes: u64,
    /// Client requests served per second (bursts of one second's worth);
    /// beyond it the API answers 429. 0: no limit.
    #[arg(long, default_value_t = http::DEFAULT_MAX_REQUESTS_PER_SECOND, value_name = "N")]
    max_requests_per_second: u32,
    /// A browser origin (scheme://host or scheme://host:port) allowed to call the API
    /// across origins. Repeat; none by default (CORS off).
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    cors_origins: Vec<String>,
    /// Log filter, e.g. `info` or `chorus_runtime=debug` (overrides RUST_LOG).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn parse_origin(text: &str) -> Result<String, String> {
    http::validate_origin(text).map(|()| text.to_string())
}

fn parse_peer(text: &str) -> Result<(u64, SocketAddr), String> {
    let (id, address) = text.split_once('=').ok_or_else(|| format!("expected ID=ADDR, got {text:?}"))?;
    let id: u64 = id.parse().map_err(|error| format!("peer id {id:?}: {error}"))?;
    if id == 0 {
        return Err("peer id must be at least 1".to_string());
    }
    let address = address.parse().map_err(|error| format!("peer address {address:?}: {error}"))?;
    Ok((id, address))
}

/// A start refused for a reason the operator must fix, with what to do.
struct Refusal(String);

fn usage_error(message: String) -> ExitCode {
    eprintln!("error: {message}");
    exit::code(exit::USAGE)
}

pub(crate) fn run(args: NodeArgs) -> ExitCode {
    if let Err(problem) = check(&args) {
        return usage_error(problem);
    }
    if let Err(problem) = logging::init(args.log_level.as_deref()) {
        return usage_error(problem);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the tokio runtime");
            return exit::code(exit::NO);
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            exit::code(exit::OK)
        }
        Err(Ok(Refusal(message))) => {
            tracing::error!("{message}");
            exit::code(exit::USAGE)
        }
        Err(Err(error)) => {
            tracing::error!("{error}");
            exit::code(exit::NO)
        }
    }
}

/// Flag combinations clap cannot check.
fn check(args: &NodeArgs) -> Result<(), String> {
    let mut ids: Vec<u64> = args.peers.iter().map(|(id, _)| *id).collect();
    ids.push(args.id);
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("node id {} is used twice among --id and --peer", pair[0]));
    }
    if let Some((id, _)) = args.peer_http.iter().find(|(id, _)| !args.peers.iter().any(|(peer, _)| peer == id)) {
        return Err(format!("--peer-http names node {id}, which is not a --peer"));
    }
    if args.heartbeat_interval_ms >= args.election_timeout_ms {
        return Err(format!(
            "--heartbeat-interval-ms {} must be below --election-timeout-ms {}",
            args.heartbeat_interval_ms, args.election_timeout_ms
        ));
    }
    if !args.http.ip().is_loopback() && !args.insecure_http && !args.http_tls {
        return Err(format!(
            "--http {} is not a loopback address: serve it with --http-tls (HTTPS; clients must present a \
             certificate from the cluster CA), or add --insecure-http on a trusted network (anyone who reaches \
             it could read and write).",
            args.http
        ));
    }
    Ok(())
}

type ServeError = Result<Refusal, Box<dyn std::error::Error>>;

async fn serve(args: NodeArgs) -> Result<(), ServeError> {
    let id = NodeId(args.id);
    let identity = Identity::load_node(&args.certs, id).map_err(|error| {
        Ok(Refusal(format!(
            "cannot load node {}'s certificate: {error}. Create it with `chorus certs node --dir {} --id {}`",
            id.0,
            args.certs.display(),
            id.0
        )))
    })?;
    let storage_options = StorageOptions { segment_bytes: args.wal_segment_bytes };
    let (storage, recovered) =
        Storage::open_with(&args.data_dir, storage_options).map_err(|error| storage_refusal(error, &args))?;
    let mut addresses = known_addresses(&args)?;
    let peers: Vec<Peer> =
        addresses.iter().map(|(peer, found)| Peer { id: NodeId(*peer), address: found.quic }).collect();
    let start = start_of(&args, recovered.state.is_empty());
    let (transport, inbox) = Transport::bind(id, args.listen, &identity, &peers).map_err(|error| Err(error.into()))?;
    let (driver, handle) =
        Driver::new(start, raft_config(&args), KvStore::default(), storage, recovered, transport, inbox)
            .map_err(|error| refusal_or_error(error, &args))?;

    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|error| Err(format!("cannot listen on --http {}: {error}", args.http).into()))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signal_stopping = std::sync::Arc::clone(&stopping);
    tokio::spawn(async move {
        shutdown_signal().await;
        signal_stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let driver_task = tokio::spawn(driver.run_until(until_stopped(stopped.clone())));

    if let (Start::Join { disk }, Some(target)) = (start, &args.join) {
        if let Err(refusal) = join_cluster(&args, &identity, disk, target, &handle, &mut addresses, &stopping).await {
            drop(handle);
            let _ = driver_task.await;
            return Err(refusal);
        }
    }
    if let Err(error) = join::save_peers(&args.data_dir, &addresses) {
        tracing::warn!(%error, "cannot remember the members' addresses");
    }
    tokio::spawn(remember_peers(handle.clone(), args.data_dir.clone(), addresses.clone()));

    let peer_http = peer_http_of(&addresses, id, args.http);
    let http_task = spawn_http(&args, &identity, listener, handle.clone(), peer_http, until_stopped(stopped))?;
    tracing::info!(%id, listen = %args.listen, http = %args.http, "node started");

    let result: Result<(), Box<dyn std::error::Error>> = match driver_task.await {
        Ok(result) => result.map_err(Into::into),
        Err(error) => Err(format!("the driver task failed: {error}").into()),
    };
    drop(handle);
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the HTTP server failed"),
        Err(error) => tracing::warn!(%error, "the HTTP server task failed"),
    }
    result.map_err(Err)
}

/// How the node starts: `--bootstrap`, a join on an empty data directory
/// (`empty`), or else from its disk.
fn start_of(args: &NodeArgs, empty: bool) -> Start {
    match (args.bootstrap, &args.join) {
        (true, _) => Start::Bootstrap,
        (false, Some(_)) if empty => Start::Join { disk: fresh_disk_id() },
        (false, Some(_)) => {
            tracing::info!("the data directory holds Raft state: restarting from it (--join is not needed)");
            Start::Restart
        }
        (false, None) => Start::Restart,
    }
}

/// The members' HTTP addresses, for redirects to the leader. Its own
/// address too, so that /v1/status names the leader's address when this
/// node leads.
fn peer_http_of(addresses: &BTreeMap<u64, Addresses>, id: NodeId, http: SocketAddr) -> BTreeMap<NodeId, SocketAddr> {
    addresses
        .iter()
        .filter_map(|(peer, found)| Some((NodeId(*peer), found.http?)))
        .chain(std::iter::once((id, http)))
        .collect()
}

/// Where the members listen: what the node remembered, then the flags.
fn known_addresses(args: &NodeArgs) -> Result<BTreeMap<u64, Addresses>, ServeError> {
    let mut addresses = join::load_peers(&args.data_dir).map_err(|error| Err(error.into()))?;
    addresses.remove(&args.id);
    for (peer, quic) in &args.peers {
        let http = args.peer_http.iter().find(|(other, _)| other == peer).map(|(_, http)| *http);
        addresses.insert(*peer, Addresses { quic: *quic, http });
    }
    Ok(addresses)
}

/// The Raft configuration the flags ask for.
fn raft_config(args: &NodeArgs) -> Config {
    let id = NodeId(args.id);
    let mut voters: Vec<NodeId> = args.peers.iter().map(|(peer, _)| NodeId(*peer)).collect();
    voters.push(id);
    let mut config = Config::new(id, voters);
    config.rng_seed = rng_seed();
    config.election_timeout_ms = args.election_timeout_ms;
    config.heartbeat_interval_ms = args.heartbeat_interval_ms;
    config.snapshot_policy.entries = args.snapshot_entries;
    config.max_retained_entries = args.snapshot_retained_entries;
    config
}

/// Asks the cluster found through `target` to take this node in on `disk`
/// (blocking work, off the async threads); learns the members' addresses
/// from the answer. `Err` is a refusal the operator must see.
async fn join_cluster(
    args: &NodeArgs,
    identity: &Identity,
    disk: DiskId,
    target: &JoinTarget,
    handle: &chorus_runtime::driver::DriverHandle,
    addresses: &mut BTreeMap<u64, Addresses>,
    stopping: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), ServeError> {
    let id = args.id;
    tracing::info!(%id, %disk, through = %target, "joining the cluster on a new disk");
    let discovery = target.discovery(std::time::Duration::from_secs(args.discovery_interval_secs));
    let (quic, http) = (args.listen, args.http);
    let asking = std::sync::Arc::clone(stopping);
    let tls = args.http_tls.then(|| {
        crate::tls_client::from_der(identity.ca_der(), identity.certificate_der(), identity.private_key_der())
    });
    let answer =
        tokio::task::spawn_blocking(move || join::join(discovery.as_ref(), tls, id, disk.0, quic, http, &asking))
            .await
            .map_err(|error| Err(error.into()))?;
    match answer {
        Ok(answer) => {
            for member in answer.members.iter().filter(|member| member.id != id) {
                handle.add_peer(Peer { id: NodeId(member.id), address: member.address });
                addresses.insert(member.id, Addresses { quic: member.address, http: member.http });
            }
            tracing::info!(%id, voters = ?answer.voters, "joined the cluster as a voter");
            Ok(())
        }
        Err(join::JoinRefused(message)) if stopping.load(std::sync::atomic::Ordering::Relaxed) => {
            tracing::info!("{message}");
            Ok(())
        }
        Err(join::JoinRefused(message)) => Err(Ok(Refusal(message))),
    }
}

/// Serves the HTTP API on `listener` (over TLS with --http-tls) until
/// `shutdown` resolves.
fn spawn_http(
    args: &NodeArgs,
    identity: &Identity,
    listener: tokio::net::TcpListener,
    handle: chorus_runtime::driver::DriverHandle,
    peer_http: BTreeMap<NodeId, SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, ServeError> {
    let options = HttpOptions {
        peer_http,
        listen: Some(args.listen),
        max_requests_per_second: args.max_requests_per_second,
        scheme: if args.http_tls { "https" } else { "http" },
        cors_origins: args.cors_origins.clone(),
    };
    if !args.http_tls {
        return Ok(tokio::spawn(http::serve(listener, handle, options, shutdown)));
    }
    let config = http::tls::server_config(identity)
        .map_err(|error| Err(format!("cannot serve HTTPS with node {}'s certificate: {error}", args.id).into()))?;
    let listener = http::tls::TlsListener::new(listener, config).map_err(|error| Err(error.into()))?;
    Ok(tokio::spawn(http::serve(listener, handle, options, shutdown)))
}

/// How often the members' addresses the transport knows are compared with
/// the `peers` file.
const REMEMBER_PEERS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps the `peers` file up to date with the members the transport learned
/// (a node that joined while this one was up), so a restart still finds them.
async fn remember_peers(
    handle: chorus_runtime::driver::DriverHandle,
    data_dir: std::path::PathBuf,
    mut remembered: BTreeMap<u64, Addresses>,
) {
    let mut ticks = tokio::time::interval(REMEMBER_PEERS_INTERVAL);
    loop {
        ticks.tick().await;
        let mut changed = false;
        for peer in handle.peers() {
            let known = remembered.get(&peer.id.0).copied();
            if known.map(|known| known.quic) != Some(peer.address) {
                let http = known.and_then(|known| known.http);
                remembered.insert(peer.id.0, Addresses { quic: peer.address, http });
                changed = true;
            }
        }
        if changed {
            if let Err(error) = join::save_peers(&data_dir, &remembered) {
                tracing::warn!(%error, "cannot remember the members' addresses");
            }
        }
        if handle.is_stopped() {
            return;
        }
    }
}

/// A disk id for a node joining on an empty data directory: random, never
/// the bootstrap disk's.
fn fresh_disk_id() -> DiskId {
    loop {
        let disk = DiskId(rng_seed());
        if disk != DiskId::BOOTSTRAP {
            return disk;
        }
    }
}

/// A data directory the node must not start from is a refusal that says
/// what to do; other storage errors are failures.
fn storage_refusal(error: StorageError, args: &NodeArgs) -> ServeError {
    let dir = args.data_dir.display();
    match error {
        error if error.is_damage() => Ok(Refusal(format!(
            "refusing to start: the data in {dir} is damaged: {error}.\n  \
             Acknowledged writes may be lost, so this node must not vote from this disk again. The safe path: \
             move {dir} aside (keep it for inspection), then start this node with --join ADDR (a member's HTTP \
             address) on an empty data directory: it comes back as a new disk, catches up from the others, and \
             the leader records the new disk. Do not use --bootstrap."
        ))),
        StorageError::LegacyLog { .. } => Ok(Refusal(format!(
            "refusing to start: {error}. Move {dir} aside and start this node with --join ADDR on an empty \
             data directory"
        ))),
        other => Err(other.into()),
    }
}

fn refusal_or_error(error: DriverError, args: &NodeArgs) -> ServeError {
    match error {
        DriverError::Restart(RestartError::EmptyDisk) => Ok(Refusal(format!(
            "refusing to start: the data directory {dir} holds no Raft state, and --bootstrap was not given.\n  \
             - If this is the first start of a member of a new cluster, start it with --bootstrap \
             (and the same --peer list on every initial member).\n  \
             - If this node was a member and its data was lost or deleted, do NOT use --bootstrap: it would \
             come back as a voter that forgot what it acknowledged. It must rejoin as a new disk through the \
             cluster's membership change: start it with --join ADDR (a member's HTTP address) instead. \
             The leader records its new disk once it has caught up.",
            dir = args.data_dir.display()
        ))),
        DriverError::AlreadyBootstrapped { .. } => {
            Ok(Refusal(format!("{error} (data directory {})", args.data_dir.display())))
        }
        other => Err(other.into()),
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: stopping"),
        () = terminate => tracing::info!("SIGTERM: stopping"),
    }
}

/// Election jitter must differ between runs and nodes; the OS supplies the
/// seed (the core itself never reads randomness).
fn rng_seed() -> u64 {
    use rand::TryRngCore;
    rand::rngs::OsRng.try_next_u64().unwrap_or_else(|_| {
        // No OS randomness: fall back to the clock, which differs enough
        // between nodes and runs for election jitter.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
    })
}
