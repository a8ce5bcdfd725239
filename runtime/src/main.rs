//! `chorus-node`: one member of a Chorus cluster.
//!
//! ```text
//! chorus-node --id 1 --listen 127.0.0.1:7001 \
//!     --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003 \
//!     --data-dir /var/lib/chorus/1 --cert-dir /var/lib/chorus/certs --bootstrap
//! ```
//!
//! `--bootstrap` is for each initial member's first start only; restart
//! without it. A node refuses to start on an empty data directory without
//! it, so a node whose data was deleted cannot come back as a voter that
//! forgot what it acknowledged.
//!
//! On first start the node generates its TLS identity in the data directory
//! and publishes its certificate as `node-<id>.der` in the certificate
//! directory, then waits until every peer's certificate is there too. For a
//! cluster on one machine, give all nodes the same `--cert-dir`; across
//! machines, copy the `.der` files (they are public).
//!
//! Exit codes: 0 after a clean stop, 1 when the node fails, 2 for bad flags.

use chorus_core::raft::Config;
use chorus_core::types::NodeId;
use chorus_runtime::driver::{Driver, Start};
use chorus_runtime::storage::Storage;
use chorus_runtime::transport::{Identity, Peer, Transport};
use clap::{CommandFactory, Parser};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How long to wait for the peers' certificates to appear before giving up.
const CERTIFICATE_WAIT: Duration = Duration::from_secs(300);
/// How often to look for them.
const CERTIFICATE_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One member of a Chorus cluster (Raft over QUIC).
#[derive(Debug, Parser)]
#[command(name = "chorus-node", version)]
struct Args {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    id: u64,
    /// UDP address to listen on for peers, e.g. 127.0.0.1:7001.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// A peer as ID=ADDR, e.g. 2=127.0.0.1:7002. Repeat for each peer.
    #[arg(long = "peer", value_name = "ID=ADDR", value_parser = parse_peer)]
    peers: Vec<(u64, SocketAddr)>,
    /// Directory for this node's log and identity (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Directory where nodes publish their certificates (`node-<id>.der`).
    #[arg(long, value_name = "DIR")]
    cert_dir: PathBuf,
    /// First start of a member of the initial cluster (this node and its
    /// --peer nodes): create its Raft state in the empty data directory.
    /// Refused if the directory already holds Raft state. Never use it for a
    /// node whose data was lost: it would come back as a voter that forgot
    /// what it acknowledged.
    #[arg(long)]
    bootstrap: bool,
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

fn main() -> ExitCode {
    let args = Args::parse(); // exits with code 2 on bad flags
    let mut ids: Vec<u64> = args.peers.iter().map(|(id, _)| *id).collect();
    ids.push(args.id);
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        Args::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                format!("node id {} is used twice among --id and --peer", pair[0]),
            )
            .exit();
    }

    tracing_subscriber::fmt().with_target(false).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let id = NodeId(args.id);
    let (storage, recovered) = Storage::open(&args.data_dir)?;
    if recovered.discarded_tail_bytes > 0 {
        tracing::warn!(bytes = recovered.discarded_tail_bytes, "discarded a torn record at the end of the log");
    }
    let identity = load_or_create_identity(id, &args.data_dir)?;
    publish_certificate(id, &identity, &args.cert_dir)?;
    let mut peers = Vec::new();
    for (peer_id, address) in &args.peers {
        let peer = NodeId(*peer_id);
        let certificate_der = wait_for_certificate(peer, &args.cert_dir).await?;
        peers.push(Peer { id: peer, address: *address, certificate_der });
    }
    let (transport, inbox) = Transport::bind(id, args.listen, &identity, &peers)?;
    let mut voters: Vec<NodeId> = peers.iter().map(|peer| peer.id).collect();
    voters.push(id);
    let mut config = Config::new(id, voters);
    config.rng_seed = rng_seed();
    let start = if args.bootstrap { Start::Bootstrap } else { Start::Restart };
    let (driver, handle) = Driver::new(start, config, storage, recovered, transport, inbox)?;
    tracing::info!(%id, listen = %args.listen, "node started");
    // No client protocol yet: keep the handle so the driver runs until killed.
    let result = driver.run().await;
    drop(handle);
    Ok(result?)
}

fn certificate_path(cert_dir: &Path, node: NodeId) -> PathBuf {
    cert_dir.join(format!("node-{}.der", node.0))
}

/// Loads the identity kept in `data_dir`, generating it on first start.
fn load_or_create_identity(id: NodeId, data_dir: &Path) -> std::io::Result<Identity> {
    let certificate_file = data_dir.join("identity-cert.der");
    let key_file = data_dir.join("identity-key.der");
    if certificate_file.exists() && key_file.exists() {
        return Ok(Identity::from_der(std::fs::read(&certificate_file)?, std::fs::read(&key_file)?));
    }
    let identity = Identity::generate(id).map_err(std::io::Error::other)?;
    write_private(&key_file, identity.private_key_der())?;
    std::fs::write(&certificate_file, identity.certificate_der())?;
    Ok(identity)
}

/// Writes a secret readable only by this user (on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn publish_certificate(id: NodeId, identity: &Identity, cert_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(cert_dir)?;
    // Write then rename, so a peer never reads a half-written certificate.
    let path = certificate_path(cert_dir, id);
    let partial = path.with_extension("der.partial");
    std::fs::write(&partial, identity.certificate_der())?;
    std::fs::rename(&partial, &path)
}

async fn wait_for_certificate(peer: NodeId, cert_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = certificate_path(cert_dir, peer);
    let give_up = tokio::time::Instant::now() + CERTIFICATE_WAIT;
    let mut logged = false;
    loop {
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no certificate for peer {peer} at {}", path.display()),
            ));
        }
        if !logged {
            tracing::info!(%peer, path = %path.display(), "waiting for the peer's certificate");
            logged = true;
        }
        tokio::time::sleep(CERTIFICATE_POLL_INTERVAL).await;
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
