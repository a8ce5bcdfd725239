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
//! ## Identity
//!
//! Each node has a self-signed certificate ([`Identity`]) for the name
//! [`server_name`]`(id)`. A node connecting to peer `p` trusts only `p`'s
//! certificate and checks that it names `p`, so a node talks only to the
//! peers it was configured with. Clients are not authenticated (no mutual
//! TLS yet): the `from` field of a received message is taken on trust.

use chorus_core::raft::Message;
use chorus_core::types::NodeId;
use chorus_core::wire::{decode_message, encode_message, MAX_MESSAGE_BYTES};
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
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

/// The TLS server name a node's certificate carries and peers check.
pub fn server_name(node: NodeId) -> String {
    format!("node-{}.chorus", node.0)
}

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
    /// Generating a certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The node's own certificate or key was rejected by TLS.
    #[error("unusable identity: {0}")]
    Identity(#[from] quinn::rustls::Error),
    /// A peer's certificate could not be used as a trust anchor.
    #[error("unusable certificate for peer {peer}: {reason}")]
    PeerCertificate {
        /// The peer whose certificate it is.
        peer: NodeId,
        /// Why TLS refused it.
        reason: String,
    },
    /// A peer is listed twice, or the node lists itself.
    #[error("peer {0} is listed twice or is this node")]
    DuplicatePeer(NodeId),
}

/// A node's TLS identity: a certificate and its private key, both DER.
#[derive(Clone)]
pub struct Identity {
    certificate: CertificateDer<'static>,
    private_key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("Identity").field("certificate_bytes", &self.certificate.len()).finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh self-signed certificate for `node` (valid for
    /// [`server_name`]`(node)`).
    pub fn generate(node: NodeId) -> Result<Identity, TransportError> {
        let certified = rcgen::generate_simple_self_signed(vec![server_name(node)])?;
        Ok(Identity {
            certificate: certified.cert.der().clone(),
            private_key_der: certified.signing_key.serialize_der(),
        })
    }

    /// An identity stored earlier: a DER certificate and a PKCS#8 DER key.
    pub fn from_der(certificate_der: Vec<u8>, private_key_der: Vec<u8>) -> Identity {
        Identity { certificate: CertificateDer::from(certificate_der), private_key_der }
    }

    /// The certificate, DER-encoded: what peers must be given to trust this node.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// The private key, PKCS#8 DER. Secret: store it readable only by the node.
    pub fn private_key_der(&self) -> &[u8] {
        &self.private_key_der
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.private_key_der.clone()))
    }
}

/// A peer: where it listens and the certificate it must present.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The peer's node id; its certificate must name [`server_name`]`(id)`.
    pub id: NodeId,
    /// The UDP address its endpoint listens on.
    pub address: SocketAddr,
    /// The peer's certificate, DER (see [`Identity::certificate_der`]).
    pub certificate_der: Vec<u8>,
}

/// A node's QUIC endpoint. Dropping it (or calling [`close`](Self::close))
/// stops its background tasks.
pub struct Transport {
    endpoint: quinn::Endpoint,
    outboxes: BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>,
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
        let mut server_config =
            quinn::ServerConfig::with_single_cert(vec![identity.certificate.clone()], identity.private_key())?;
        server_config.transport_config(transport_config.clone());

        let mut client_configs = BTreeMap::new();
        for peer in peers {
            if peer.id == local || client_configs.contains_key(&peer.id) {
                return Err(TransportError::DuplicatePeer(peer.id));
            }
            let mut client_config = client_config_trusting(peer)?;
            client_config.transport_config(transport_config.clone());
            client_configs.insert(peer.id, client_config);
        }

        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { address, source })?;

        let (inbox, inbox_receiver) = mpsc::channel(INBOX_CAPACITY);
        tokio::spawn(accept_connections(endpoint.clone(), inbox));

        let mut outboxes = BTreeMap::new();
        for peer in peers {
            let (outbox, outbox_receiver) = mpsc::channel(OUTBOX_CAPACITY);
            let client_config =
                client_configs.remove(&peer.id).expect("invariant: a client config was built for every peer");
            tokio::spawn(send_to_peer(endpoint.clone(), peer.id, peer.address, client_config, outbox_receiver));
            outboxes.insert(peer.id, outbox);
        }
        Ok((Transport { endpoint, outboxes }, inbox_receiver))
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

/// A client configuration that accepts exactly `peer`'s certificate.
fn client_config_trusting(peer: &Peer) -> Result<quinn::ClientConfig, TransportError> {
    let problem = |reason: String| TransportError::PeerCertificate { peer: peer.id, reason };
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(peer.certificate_der.clone())).map_err(|error| problem(error.to_string()))?;
    quinn::ClientConfig::with_root_certificates(Arc::new(roots)).map_err(|error| problem(error.to_string()))
}

/// Accepts connections until the endpoint closes; serves each on its own task.
async fn accept_connections(endpoint: quinn::Endpoint, inbox: mpsc::Sender<Message>) {
    while let Some(incoming) = endpoint.accept().await {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => receive_streams(connection, inbox).await,
                Err(error) => tracing::debug!(%error, "incoming connection failed"),
            }
        });
    }
}

/// Reads every stream of one connection as one message.
async fn receive_streams(connection: quinn::Connection, inbox: mpsc::Sender<Message>) {
    let remote = connection.remote_address();
    loop {
        let mut stream = match connection.accept_uni().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%remote, %error, "connection closed");
                return;
            }
        };
        let inbox = inbox.clone();
        tokio::spawn(async move {
            let bytes = match stream.read_to_end(MAX_MESSAGE_BYTES).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%remote, %error, "unreadable message stream dropped");
                    return;
                }
            };
            match decode_message(&bytes) {
                Ok(message) => {
                    if inbox.try_send(message).is_err() {
                        tracing::debug!(%remote, "inbox full or closed; message dropped");
                    }
                }
                Err(error) => {
                    tracing::warn!(%remote, %error, bytes = bytes.len(), "undecodable message dropped")
                }
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
    let name = server_name(peer);
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
