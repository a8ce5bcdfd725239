//! Raft messages over QUIC (quinn).
//!
//! Each node runs one QUIC endpoint that both accepts connections from peers
//! and opens connections to them. Every Raft message travels as one
//! unidirectional stream holding exactly the bytes of [`encode_message`];
//! the receiver reads at most [`MAX_MESSAGE_BYTES`] and decodes with
//! [`decode_message`]. Anything that does not decode is logged and dropped:
//! peer input never panics the node.
//!
//! ## Delivery
//!
//! Raft tolerates loss, duplication and reordering, and the transport leans
//! on that to keep memory bounded: [`Transport::send`] never waits. It puts
//! the message in the peer's outbox (at most [`OUTBOX_CAPACITY`] messages);
//! a full outbox, an unreachable peer or a failed stream drops the message.
//! Received messages go into one inbox of [`INBOX_CAPACITY`] messages, and
//! are dropped when the driver falls that far behind.
//!
//! ## Identity and authentication (mutual TLS)
//!
//! Every connection is mutual TLS 1.3 against the cluster CA
//! ([`crate::certs`]): the connecting node checks that the listener's
//! certificate is signed by the CA and names the node it meant to reach
//! ([`node_name`]); the listener requires a certificate signed by the CA
//! and takes the peer's node id from it ([`node_of_certificate`]). A
//! connection whose certificate names no node (a client certificate) is
//! closed. A received message whose `from` is not the certificate's node is
//! dropped and counted ([`TransportCounters::forged_from_dropped`]): a
//! cluster member cannot speak for another.

pub use crate::certs::Identity;
use crate::certs::{node_name, node_of_certificate};
use chorus_core::raft::Message;
use chorus_core::types::NodeId;
use chorus_core::wire::{decode_message, encode_message, MAX_MESSAGE_BYTES};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls;
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most messages waiting to be sent to one peer; beyond it new ones are dropped.
pub const OUTBOX_CAPACITY: usize = 1024;

/// Most received messages waiting for the driver; beyond it new ones are dropped.
pub const INBOX_CAPACITY: usize = 4096;

/// Most concurrent incoming message streams on one connection (QUIC flow
/// control makes peers wait beyond it). Bounds the memory one peer can pin.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 64;

/// How long a connection attempt may take before the messages for that peer
/// are dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// After a failed connection attempt, messages to that peer are dropped for
/// this long before the next attempt (so a dead peer costs nothing).
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keep-alive interval, well below [`IDLE_TIMEOUT`], so that a quiet cluster
/// keeps its connections.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Why the transport could not be set up. Nothing was bound or spawned.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The UDP socket could not be bound or configured.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The node's certificate, key or CA certificate was rejected by TLS.
    #[error("unusable TLS identity: {0}")]
    Identity(String),
    /// A peer is listed twice, or the node lists itself.
    #[error("peer {0} is listed twice or is this node")]
    DuplicatePeer(NodeId),
}

/// A peer: its node id (its certificate must name [`node_name`]`(id)`,
/// signed by the cluster CA) and where it listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node id.
    pub id: NodeId,
    /// The UDP address its endpoint listens on.
    pub address: SocketAddr,
}

/// What the transport refused or dropped since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Incoming connections whose TLS handshake failed (no certificate, a
    /// certificate not signed by the cluster CA, not TLS at all, ...).
    pub handshakes_failed: u64,
    /// Incoming connections closed because their certificate names no node.
    pub connections_without_node: u64,
    /// Messages dropped because their `from` is not the node the sender's
    /// certificate names, their `to` is not this node, or the sender
    /// presented this node's own certificate.
    pub forged_from_dropped: u64,
    /// Message streams dropped because they did not read or decode.
    pub undecodable_dropped: u64,
    /// Decoded messages dropped because the inbox was full.
    pub inbox_full_dropped: u64,
}

#[derive(Default)]
struct Counters {
    handshakes_failed: AtomicU64,
    connections_without_node: AtomicU64,
    forged_from_dropped: AtomicU64,
    undecodable_dropped: AtomicU64,
    inbox_full_dropped: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TransportCounters {
        TransportCounters {
            handshakes_failed: self.handshakes_failed.load(Ordering::Relaxed),
            connections_without_node: self.connections_without_node.load(Ordering::Relaxed),
            forged_from_dropped: self.forged_from_dropped.load(Ordering::Relaxed),
            undecodable_dropped: self.undecodable_dropped.load(Ordering::Relaxed),
            inbox_full_dropped: self.inbox_full_dropped.load(Ordering::Relaxed),
        }
    }
}

/// A node's QUIC endpoint. Dropping it (or calling [`close`](Self::close))
/// stops its background tasks.
pub struct Transport {
    endpoint: quinn::Endpoint,
    outboxes: BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>,
    counters: Arc<Counters>,
}

impl Transport {
    /// Binds a UDP socket on `listen` and starts the endpoint; see
    /// [`from_socket`](Self::from_socket).
    pub fn bind(
        local: NodeId,
        listen: SocketAddr,
        identity: &Identity,
        peers: &[Peer],
    ) -> Result<(Transport, mpsc::Receiver<Message>), TransportError> {
        let socket = UdpSocket::bind(listen).map_err(|source| TransportError::Bind { address: listen, source })?;
        Transport::from_socket(local, socket, identity, peers)
    }

    /// Starts the endpoint on an already-bound socket (useful to learn
    /// ephemeral ports before configuring peers). Returns the transport and
    /// the inbox of decoded messages. Must be called inside a tokio runtime.
    pub fn from_socket(
        local: NodeId,
        socket: UdpSocket,
        identity: &Identity,
        peers: &[Peer],
    ) -> Result<(Transport, mpsc::Receiver<Message>), TransportError> {
        let address = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let transport_config = Arc::new(transport_config());
        let (mut server_config, mut client_config) = tls_configs(identity)?;
        server_config.transport_config(transport_config.clone());
        client_config.transport_config(transport_config);
        let mut seen = std::collections::BTreeSet::new();
        for peer in peers {
            if peer.id == local || !seen.insert(peer.id) {
                return Err(TransportError::DuplicatePeer(peer.id));
            }
        }

        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { address, source })?;

        let counters = Arc::new(Counters::default());
        let (inbox, inbox_receiver) = mpsc::channel(INBOX_CAPACITY);
        tokio::spawn(accept_connections(endpoint.clone(), local, inbox, Arc::clone(&counters)));

        let mut outboxes = BTreeMap::new();
        for peer in peers {
            let (outbox, outbox_receiver) = mpsc::channel(OUTBOX_CAPACITY);
            tokio::spawn(send_to_peer(endpoint.clone(), peer.id, peer.address, client_config.clone(), outbox_receiver));
            outboxes.insert(peer.id, outbox);
        }
        Ok((Transport { endpoint, outboxes, counters }, inbox_receiver))
    }

    /// The address the endpoint listens on.
    pub fn local_address(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Queues `message` for its addressee without waiting. Messages that
    /// cannot be encoded, are addressed to an unknown peer, or find the
    /// peer's outbox full are dropped with a log line.
    pub fn send(&self, message: &Message) {
        let Some(outbox) = self.outboxes.get(&message.to) else {
            tracing::warn!(to = %message.to, "message to an unknown peer dropped");
            return;
        };
        let bytes = match encode_message(message) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(to = %message.to, %error, "unencodable message dropped");
                return;
            }
        };
        if outbox.try_send(bytes).is_err() {
            tracing::debug!(to = %message.to, "outbox full or closed; message dropped");
        }
    }

    /// What was refused or dropped so far.
    pub fn counters(&self) -> TransportCounters {
        self.counters.snapshot()
    }

    /// A shared view of the counters, readable after the transport moved
    /// into a driver.
    pub fn counters_handle(&self) -> CountersHandle {
        CountersHandle(Arc::clone(&self.counters))
    }

    /// Closes every connection. Background tasks end soon after.
    pub fn close(&self) {
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.close();
    }
}

fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_CONCURRENT_STREAMS_PER_CONNECTION))
        // Raft never opens bidirectional streams.
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0))
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("IDLE_TIMEOUT fits a QUIC idle timeout")))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    config
}

/// Reads a [`Transport`]'s counters from anywhere. Cheap to clone.
#[derive(Clone)]
pub struct CountersHandle(Arc<Counters>);

impl CountersHandle {
    /// What was refused or dropped so far.
    pub fn get(&self) -> TransportCounters {
        self.0.snapshot()
    }
}

impl std::fmt::Debug for CountersHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The listener's and the connector's TLS configurations: both present this
/// node's certificate and require the peer's to be signed by the cluster CA.
fn tls_configs(identity: &Identity) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let problem = |error: &dyn std::fmt::Display| TransportError::Identity(error.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.ca()).map_err(|error| problem(&error))?;
    let roots = Arc::new(roots);
    let chain = vec![identity.certificate()];
    let key = || PrivateKeyDer::Pkcs8(identity.private_key());

    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|error| problem(&error))?;
    let server_tls = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| problem(&error))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key())
        .map_err(|error| problem(&error))?;
    let server_crypto = QuicServerConfig::try_from(server_tls).map_err(|error| problem(&error))?;

    let client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| problem(&error))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key())
        .map_err(|error| problem(&error))?;
    let client_crypto = QuicClientConfig::try_from(client_tls).map_err(|error| problem(&error))?;
    Ok((quinn::ServerConfig::with_crypto(Arc::new(server_crypto)), quinn::ClientConfig::new(Arc::new(client_crypto))))
}

/// Accepts connections until the endpoint closes; serves each on its own
/// task once the peer's certificate has told which node it is.
async fn accept_connections(
    endpoint: quinn::Endpoint,
    local: NodeId,
    inbox: mpsc::Sender<Message>,
    counters: Arc<Counters>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let inbox = inbox.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    Counters::bump(&counters.handshakes_failed);
                    tracing::debug!(%error, "incoming connection refused");
                    return;
                }
            };
            let Some(peer) = peer_node(&connection) else {
                Counters::bump(&counters.connections_without_node);
                tracing::warn!(remote = %connection.remote_address(), "a certificate naming no node was refused");
                connection.close(quinn::VarInt::from_u32(1), b"certificate names no node");
                return;
            };
            receive_streams(connection, local, peer, inbox, counters).await;
        });
    }
}

/// The node named by the (already verified) certificate the peer presented.
fn peer_node(connection: &quinn::Connection) -> Option<NodeId> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_of_certificate(chain.first()?)
}

/// Reads every stream of one connection from `peer` as one message.
async fn receive_streams(
    connection: quinn::Connection,
    local: NodeId,
    peer: NodeId,
    inbox: mpsc::Sender<Message>,
    counters: Arc<Counters>,
) {
    let remote = connection.remote_address();
    loop {
        let mut stream = match connection.accept_uni().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %remote, %error, "connection closed");
                return;
            }
        };
        let inbox = inbox.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let bytes = match stream.read_to_end(MAX_MESSAGE_BYTES).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    Counters::bump(&counters.undecodable_dropped);
                    tracing::warn!(%peer, %error, "unreadable message stream dropped");
                    return;
                }
            };
            let message = match decode_message(&bytes) {
                Ok(message) => message,
                Err(error) => {
                    Counters::bump(&counters.undecodable_dropped);
                    tracing::warn!(%peer, %error, bytes = bytes.len(), "undecodable message dropped");
                    return;
                }
            };
            // A certificate of this very node used elsewhere is no peer.
            if message.from != peer || message.to != local || peer == local {
                Counters::bump(&counters.forged_from_dropped);
                tracing::warn!(%peer, from = %message.from, to = %message.to, "message with a forged sender dropped");
                return;
            }
            if inbox.try_send(message).is_err() {
                Counters::bump(&counters.inbox_full_dropped);
                tracing::debug!(%peer, "inbox full or closed; message dropped");
            }
        });
    }
}

/// Sends everything queued for one peer, (re)connecting as needed, until the
/// outbox closes.
async fn send_to_peer(
    endpoint: quinn::Endpoint,
    peer: NodeId,
    address: SocketAddr,
    client_config: quinn::ClientConfig,
    mut outbox: mpsc::Receiver<Vec<u8>>,
) {
    let name = node_name(peer);
    let mut connection: Option<quinn::Connection> = None;
    let mut next_attempt = Instant::now();
    while let Some(bytes) = outbox.recv().await {
        if connection.as_ref().is_some_and(|open| open.close_reason().is_some()) {
            connection = None;
        }
        if connection.is_none() {
            if Instant::now() < next_attempt {
                continue; // backing off: drop the message
            }
            connection = connect(&endpoint, &client_config, address, &name).await;
            if connection.is_none() {
                next_attempt = Instant::now() + RECONNECT_BACKOFF;
                continue;
            }
        }
        let open = connection.as_ref().expect("invariant: connected just above");
        if let Err(error) = send_stream(open, &bytes).await {
            tracing::debug!(%peer, %error, "send failed; message dropped");
            connection = None;
        }
    }
}

async fn connect(
    endpoint: &quinn::Endpoint,
    client_config: &quinn::ClientConfig,
    address: SocketAddr,
    name: &str,
) -> Option<quinn::Connection> {
    let connecting = match endpoint.connect_with(client_config.clone(), address, name) {
        Ok(connecting) => connecting,
        Err(error) => {
            tracing::debug!(%address, %error, "cannot start connecting");
            return None;
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => Some(connection),
        Ok(Err(error)) => {
            tracing::debug!(%address, %error, "connection attempt failed");
            None
        }
        Err(_) => {
            tracing::debug!(%address, "connection attempt timed out");
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    #[error(transparent)]
    Write(#[from] quinn::WriteError),
    #[error(transparent)]
    Closed(#[from] quinn::ClosedStream),
}

async fn send_stream(connection: &quinn::Connection, bytes: &[u8]) -> Result<(), StreamError> {
    let mut stream = connection.open_uni().await?;
    stream.write_all(bytes).await?;
    stream.finish()?;
    Ok(())
}
