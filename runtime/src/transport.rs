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
//! ## Connections and reconnection
//!
//! One QUIC connection carries messages both ways: whichever node dials, the
//! other adopts the connection for its own sends to the dialler (newest
//! connection first, at most [`MAX_CONNECTIONS_PER_PEER`] kept per peer).
//! A node says hello when it starts: it dials every peer it knows at once,
//! so a restarted node is reachable again as soon as its peers have adopted
//! that connection, within one heartbeat of its start, instead of after the
//! old connection's [`IDLE_TIMEOUT`].
//!
//! The connections a crashed node left behind are found dead three ways:
//! a send that fails (the connection closed or was reset), a send that
//! stalls for [`SEND_STALL_TIMEOUT`] (the peer stopped granting streams),
//! and a stateless reset: the restarted node answers packets of its previous
//! life's connections with a reset that the peer trusts, because the reset
//! key is derived from the node's private key and so survives the restart.
//! A peer that cannot be reached is dialled again with a backoff from
//! [`RECONNECT_BACKOFF_MIN`] doubling to [`RECONNECT_BACKOFF_MAX`];
//! messages for it are dropped meanwhile (counted).
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
use std::sync::{Arc, Mutex};
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

/// How long a connection attempt may take. Attempts run beside the
/// sending loop, so a dead peer never holds up anything.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The first wait after a failed connection attempt; messages to that peer
/// are dropped meanwhile. Doubles after every failure up to
/// [`RECONNECT_BACKOFF_MAX`], and starts over once a connection works.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// The longest wait between connection attempts to an unreachable peer.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A message that cannot be handed to a connection within this long (no
/// stream credit: the peer stopped acknowledging) marks the connection dead;
/// it is closed and the peer dialled again.
pub const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Most peers one transport sends to (the core's limit on members).
pub const MAX_PEERS: usize = chorus_core::raft::MAX_MEMBERS;

/// Most connections kept per peer (one per side that dialled, and a few
/// left from restarts). Beyond it the oldest is closed.
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;

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
    /// Connections this node dialled that were established.
    pub connections_dialled: u64,
    /// Connections from known peers adopted for sending to them.
    pub connections_adopted: u64,
    /// Connections found dead by a failed or stalled send.
    pub connections_failed: u64,
    /// Messages dropped because their peer had no working connection
    /// (connecting or backing off), or its outbox was full.
    pub unreachable_dropped: u64,
    /// Messages sent (each on a stream of its own).
    pub messages_sent: u64,
    /// Bytes of the messages sent.
    pub bytes_sent: u64,
    /// Messages received from authenticated peers and queued for the node.
    pub messages_received: u64,
    /// Bytes of the messages received.
    pub bytes_received: u64,
}

#[derive(Default)]
struct Counters {
    handshakes_failed: AtomicU64,
    connections_without_node: AtomicU64,
    forged_from_dropped: AtomicU64,
    undecodable_dropped: AtomicU64,
    inbox_full_dropped: AtomicU64,
    connections_dialled: AtomicU64,
    connections_adopted: AtomicU64,
    connections_failed: AtomicU64,
    unreachable_dropped: AtomicU64,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
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
            connections_dialled: self.connections_dialled.load(Ordering::Relaxed),
            connections_adopted: self.connections_adopted.load(Ordering::Relaxed),
            connections_failed: self.connections_failed.load(Ordering::Relaxed),
            unreachable_dropped: self.unreachable_dropped.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// A node's QUIC endpoint. Dropping it (or calling [`close`](Self::close))
/// stops its background tasks.
pub struct Transport {
    shared: Arc<Shared>,
}

/// What the transport's tasks share.
struct Shared {
    local: NodeId,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    inbox: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    /// The peers this node sends to. Locked only briefly, never across an
    /// await.
    links: Mutex<BTreeMap<NodeId, Link>>,
}

/// One peer this node sends to: its outbox (drained by the peer's sending
/// task) and its connections.
struct Link {
    outbox: mpsc::Sender<Vec<u8>>,
    connections: Arc<Mutex<Connections>>,
}

/// The open connections with one peer, oldest first; sends use the newest.
struct Connections {
    /// Where the peer listens (the next dial goes there).
    address: SocketAddr,
    open: std::collections::VecDeque<quinn::Connection>,
    /// Wakes the peer's sending task when a connection is adopted.
    added: Arc<tokio::sync::Notify>,
}

impl Connections {
    fn new(address: SocketAddr) -> Connections {
        Connections { address, open: std::collections::VecDeque::new(), added: Arc::default() }
    }

    /// The newest connection not known to be closed.
    fn current(&mut self) -> Option<quinn::Connection> {
        self.open.retain(|connection| connection.close_reason().is_none());
        self.open.back().cloned()
    }

    /// Makes `connection` the one sends use; closes the oldest beyond
    /// [`MAX_CONNECTIONS_PER_PEER`].
    fn add(&mut self, connection: quinn::Connection) {
        self.open.retain(|open| open.close_reason().is_none() && open.stable_id() != connection.stable_id());
        self.open.push_back(connection);
        self.added.notify_one();
        while self.open.len() > MAX_CONNECTIONS_PER_PEER {
            if let Some(oldest) = self.open.pop_front() {
                oldest.close(quinn::VarInt::from_u32(CLOSE_REPLACED), b"replaced by a newer connection");
            }
        }
    }

    /// Stops using `connection` (found dead).
    fn forget(&mut self, connection: &quinn::Connection) {
        self.open.retain(|open| open.stable_id() != connection.stable_id());
    }
}

/// QUIC application close codes.
const CLOSE_SHUTDOWN: u32 = 0;
const CLOSE_NO_NODE: u32 = 1;
const CLOSE_STALLED: u32 = 2;
const CLOSE_REPLACED: u32 = 3;

/// Locks `mutex`, whose holders never panic while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    /// ephemeral ports before configuring peers), and dials every peer at
    /// once (the hello that makes a restarted node reachable). Returns the
    /// transport and the inbox of decoded messages. Must be called inside a
    /// tokio runtime.
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
            quinn::EndpointConfig::new(stateless_reset_key(identity)),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { address, source })?;

        let (inbox, inbox_receiver) = mpsc::channel(INBOX_CAPACITY);
        let shared = Arc::new(Shared {
            local,
            endpoint,
            client_config,
            inbox,
            counters: Arc::new(Counters::default()),
            links: Mutex::new(BTreeMap::new()),
        });
        tokio::spawn(accept_connections(Arc::clone(&shared)));
        let transport = Transport { shared };
        for peer in peers {
            transport.add_peer(*peer);
        }
        Ok((transport, inbox_receiver))
    }

    /// Starts sending to `peer` (and dials it at once). A peer already known
    /// keeps its connections; its address is updated for the next dial.
    /// Returns whether the peer is known now (false for this node itself, or
    /// beyond [`MAX_PEERS`]).
    pub fn add_peer(&self, peer: Peer) -> bool {
        add_link(&self.shared, peer, true).is_some()
    }

    /// The peers this transport sends to, and where they listen.
    pub fn peers(&self) -> Vec<Peer> {
        peers_of(&self.shared)
    }

    /// A handle that adds and lists peers, usable after the transport moved
    /// into a driver.
    pub fn peer_book(&self) -> PeerBook {
        PeerBook(Arc::clone(&self.shared))
    }

    /// The address the endpoint listens on.
    pub fn local_address(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// Queues `message` for its addressee without waiting. Messages that
    /// cannot be encoded, are addressed to an unknown peer, or find the
    /// peer's outbox full are dropped with a log line.
    pub fn send(&self, message: &Message) {
        let links = lock(&self.shared.links);
        let Some(link) = links.get(&message.to) else {
            // A member whose address this node has not learned yet (it
            // joined while this node was down): it is learned when it calls.
            Counters::bump(&self.shared.counters.unreachable_dropped);
            tracing::debug!(to = %message.to, "message to a peer of unknown address dropped");
            return;
        };
        let bytes = match encode_message(message) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(to = %message.to, %error, "unencodable message dropped");
                return;
            }
        };
        if link.outbox.try_send(bytes).is_err() {
            Counters::bump(&self.shared.counters.unreachable_dropped);
            tracing::debug!(to = %message.to, "outbox full or closed; message dropped");
        }
    }

    /// What was refused or dropped so far.
    pub fn counters(&self) -> TransportCounters {
        self.shared.counters.snapshot()
    }

    /// A shared view of the counters, readable after the transport moved
    /// into a driver.
    pub fn counters_handle(&self) -> CountersHandle {
        CountersHandle(Arc::clone(&self.shared.counters))
    }

    /// Closes every connection. Background tasks end soon after.
    pub fn close(&self) {
        self.shared.endpoint.close(quinn::VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
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

/// Adds and lists a [`Transport`]'s peers from anywhere. Cheap to clone.
#[derive(Clone)]
pub struct PeerBook(Arc<Shared>);

impl PeerBook {
    /// See [`Transport::add_peer`].
    pub fn add(&self, peer: Peer) -> bool {
        add_link(&self.0, peer, true).is_some()
    }

    /// See [`Transport::peers`].
    pub fn list(&self) -> Vec<Peer> {
        peers_of(&self.0)
    }

    /// Each peer, and whether it has a working connection now.
    pub fn connected(&self) -> BTreeMap<NodeId, bool> {
        let links = lock(&self.0.links);
        links.iter().map(|(id, link)| (*id, lock(&link.connections).current().is_some())).collect()
    }
}

impl std::fmt::Debug for PeerBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

fn peers_of(shared: &Shared) -> Vec<Peer> {
    lock(&shared.links).iter().map(|(id, link)| Peer { id: *id, address: lock(&link.connections).address }).collect()
}

/// The link to `peer`, made (with its sending task, which dials at once if
/// `hello`) if it is new. A known peer's address is updated. `None` for this
/// node itself or beyond [`MAX_PEERS`].
fn add_link(shared: &Arc<Shared>, peer: Peer, hello: bool) -> Option<Arc<Mutex<Connections>>> {
    if peer.id == shared.local {
        return None;
    }
    let mut links = lock(&shared.links);
    if let Some(link) = links.get(&peer.id) {
        lock(&link.connections).address = peer.address;
        return Some(Arc::clone(&link.connections));
    }
    if links.len() >= MAX_PEERS {
        tracing::warn!(peer = %peer.id, limit = MAX_PEERS, "too many peers; not adding another");
        return None;
    }
    let (outbox, outbox_receiver) = mpsc::channel(OUTBOX_CAPACITY);
    let connections = Arc::new(Mutex::new(Connections::new(peer.address)));
    tokio::spawn(send_to_peer(Arc::clone(shared), peer.id, Arc::clone(&connections), outbox_receiver, hello));
    links.insert(peer.id, Link { outbox, connections: Arc::clone(&connections) });
    Some(connections)
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

/// The key of this node's stateless resets: derived from its private key,
/// so it is secret and the same in every life of the node. A restarted node
/// can then reset the connections of its previous life, and its peers
/// (which learned the reset tokens from that life) believe it.
fn stateless_reset_key(identity: &Identity) -> Arc<dyn quinn::crypto::HmacKey> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"chorus stateless reset key v1\0");
    context.update(identity.private_key_der());
    let secret = context.finish();
    Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref()))
}

/// Accepts connections until the endpoint closes; serves each on its own
/// task once the peer's certificate has told which node it is. A known
/// peer's connection is adopted for sending to it too.
async fn accept_connections(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let counters = &shared.counters;
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
                connection.close(quinn::VarInt::from_u32(CLOSE_NO_NODE), b"certificate names no node");
                return;
            };
            // A certificate of this very node used elsewhere is no peer: its
            // messages are dropped as forged, and nothing is sent back. A
            // node not known yet (one that joined) is learned: its endpoint
            // dialled from the address it listens on.
            if peer != shared.local {
                let learned = Peer { id: peer, address: connection.remote_address() };
                let known = lock(&shared.links).get(&peer).map(|link| Arc::clone(&link.connections));
                let connections = known.or_else(|| {
                    tracing::info!(%peer, address = %learned.address, "learned a new peer from its connection");
                    add_link(&shared, learned, false)
                });
                if let Some(connections) = connections {
                    lock(&connections).add(connection.clone());
                    Counters::bump(&counters.connections_adopted);
                    tracing::debug!(%peer, remote = %connection.remote_address(), "adopted a connection from a peer");
                }
            }
            receive_streams(connection, peer, &shared).await;
        });
    }
}

/// The node named by the (already verified) certificate the peer presented.
fn peer_node(connection: &quinn::Connection) -> Option<NodeId> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_of_certificate(chain.first()?)
}

/// Reads every stream of one connection from `peer` as one message, until
/// the connection closes. Runs for every connection, whichever side dialled.
async fn receive_streams(connection: quinn::Connection, peer: NodeId, shared: &Shared) {
    let remote = connection.remote_address();
    let local = shared.local;
    loop {
        let mut stream = match connection.accept_uni().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %remote, %error, "connection closed");
                return;
            }
        };
        let inbox = shared.inbox.clone();
        let counters = Arc::clone(&shared.counters);
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
                return;
            }
            Counters::bump(&counters.messages_received);
            counters.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        });
    }
}

/// When the next connection attempt to an unreachable peer may start.
#[derive(Debug)]
struct Backoff {
    wait: Duration,
    next_attempt: Instant,
}

impl Backoff {
    fn new(now: Instant) -> Backoff {
        Backoff { wait: RECONNECT_BACKOFF_MIN, next_attempt: now }
    }

    fn may_attempt(&self, now: Instant) -> bool {
        now >= self.next_attempt
    }

    /// An attempt failed: wait, twice as long as last time, at most
    /// [`RECONNECT_BACKOFF_MAX`].
    fn failed(&mut self, now: Instant) {
        self.next_attempt = now + self.wait;
        self.wait = (self.wait * 2).min(RECONNECT_BACKOFF_MAX);
    }

    /// A connection works: the next failure starts from the shortest wait.
    fn succeeded(&mut self, now: Instant) {
        self.wait = RECONNECT_BACKOFF_MIN;
        self.next_attempt = now;
    }
}

type Dial = tokio::task::JoinHandle<Option<quinn::Connection>>;

/// Sends everything queued for one peer until the outbox closes. Dials the
/// peer at once, and again whenever it has no working connection. While a
/// dial is under way (at most [`CONNECT_TIMEOUT`]) messages wait in the
/// outbox, unless the peer's own connection is adopted meanwhile; after a
/// failed dial they are dropped until the [`Backoff`] allows the next.
async fn send_to_peer(
    shared: Arc<Shared>,
    peer: NodeId,
    connections: Arc<Mutex<Connections>>,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    hello: bool,
) {
    let counters = Arc::clone(&shared.counters);
    let mut backoff = Backoff::new(Instant::now());
    let mut dialling: Option<Dial> = hello.then(|| dial(&shared, peer, &connections));
    let added = Arc::clone(&lock(&connections).added);
    loop {
        let ready = dialling.is_none() || lock(&connections).current().is_some();
        tokio::select! {
            () = added.notified(), if !ready => {}
            dialled = async { dialling.as_mut().expect("guarded by the select condition").await },
                if dialling.is_some() =>
            {
                dialling = None;
                match dialled {
                    Ok(Some(connection)) => {
                        backoff.succeeded(Instant::now());
                        lock(&connections).add(connection);
                    }
                    _ => backoff.failed(Instant::now()),
                }
            }
            bytes = outbox.recv(), if ready => {
                let Some(bytes) = bytes else { break };
                let current = lock(&connections).current();
                let Some(connection) = current else {
                    Counters::bump(&counters.unreachable_dropped);
                    if dialling.is_none() && backoff.may_attempt(Instant::now()) {
                        dialling = Some(dial(&shared, peer, &connections));
                    }
                    continue;
                };
                backoff.succeeded(Instant::now());
                let error = match tokio::time::timeout(SEND_STALL_TIMEOUT, send_stream(&connection, &bytes)).await {
                    Ok(Ok(())) => {
                        Counters::bump(&counters.messages_sent);
                        counters.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        continue;
                    }
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => {
                        connection.close(quinn::VarInt::from_u32(CLOSE_STALLED), b"stalled");
                        format!("no stream credit within {SEND_STALL_TIMEOUT:?}")
                    }
                };
                Counters::bump(&counters.connections_failed);
                Counters::bump(&counters.unreachable_dropped);
                tracing::debug!(%peer, %error, "connection dead; message dropped, dialling again");
                lock(&connections).forget(&connection);
                if dialling.is_none() {
                    dialling = Some(dial(&shared, peer, &connections));
                }
            }
        }
    }
    if let Some(dialling) = dialling {
        dialling.abort();
    }
}

/// Dials `peer` on a task of its own; the connection's incoming streams are
/// served too (the peer adopts it for its sends to this node).
fn dial(shared: &Arc<Shared>, peer: NodeId, connections: &Mutex<Connections>) -> Dial {
    let shared = Arc::clone(shared);
    let address = lock(connections).address;
    tokio::spawn(async move {
        let connection = connect(&shared.endpoint, &shared.client_config, address, &node_name(peer)).await?;
        Counters::bump(&shared.counters.connections_dialled);
        tracing::debug!(%peer, %address, "connected");
        let receiving = connection.clone();
        let receiver_shared = Arc::clone(&shared);
        tokio::spawn(async move { receive_streams(receiving, peer, &receiver_shared).await });
        Some(connection)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound_and_starts_over_after_a_success() {
        let start = Instant::now();
        let mut backoff = Backoff::new(start);
        assert!(backoff.may_attempt(start));
        let mut waits = Vec::new();
        let mut now = start;
        for _ in 0..8 {
            backoff.failed(now);
            assert!(!backoff.may_attempt(now));
            waits.push(backoff.next_attempt - now);
            now = backoff.next_attempt;
            assert!(backoff.may_attempt(now));
        }
        assert_eq!(waits[0], RECONNECT_BACKOFF_MIN);
        assert_eq!(waits[1], RECONNECT_BACKOFF_MIN * 2);
        assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(*waits.last().unwrap(), RECONNECT_BACKOFF_MAX);
        backoff.succeeded(now);
        backoff.failed(now);
        assert_eq!(backoff.next_attempt - now, RECONNECT_BACKOFF_MIN);
    }
}
