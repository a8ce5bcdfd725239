//! The task that drives one [`RaftNode`]: it feeds the node inputs and
//! performs the actions it asks for.
//!
//! One loop iteration:
//!
//! 1. Wait for the first of: a message from the [`Transport`] inbox, a client
//!    request from a [`DriverHandle`], or the node's deadline
//!    ([`RaftNode::poll_timeout`]).
//! 2. Hand it to the node with the current [`Time`].
//! 3. Drain [`RaftNode::poll_action`] in order: `Send` goes to the transport
//!    at once (the node itself withholds anything that must wait for the
//!    disk); `Persist` writes are collected; `Respond` completes the waiting
//!    client's oneshot; `Event`s are logged.
//! 4. If writes were collected: append them all, fsync once, acknowledge the
//!    last with [`RaftNode::handle_persisted`], and drain again.
//!
//! Time: the core counts microseconds from an epoch the driver picks. The
//! driver takes a tokio [`Instant`] when it starts and maps `Time` to
//! `epoch + micros`, so tokio's paused clock works in tests too.

use crate::storage::{Recovered, Storage, StorageError};
use crate::transport::Transport;
use chorus_core::kv::{KvCommand, KvQuery, KvStore};
use chorus_core::raft::{Action, ClientResult, Config, Event, Message, PersistRequest, RaftNode, RestartError, Role};
use chorus_core::types::{LogIndex, NodeId, RequestId, Term, Time};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Most client requests queued for the driver; beyond it
/// [`DriverHandle::propose`] and [`DriverHandle::read`] wait for room.
pub const CLIENT_QUEUE_CAPACITY: usize = 1024;

/// A deadline further away than tokio can represent is treated as this far
/// off (the node will be woken by input long before).
const FAR_FUTURE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why the driver could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The stored state was refused by the core. Nothing was started.
    #[error("cannot restart from the stored state: {0}")]
    Restart(#[from] RestartError),
    /// Bootstrap was asked for a data directory that already holds Raft
    /// state. Nothing was started or changed.
    #[error(
        "cannot bootstrap: the data directory already holds Raft state (term {term}, {entries} log entries); \
         bootstrap only a new member's first start, and restart without it"
    )]
    AlreadyBootstrapped {
        /// The stored term.
        term: chorus_core::types::Term,
        /// How many log entries are stored.
        entries: usize,
    },
    /// The configuration was refused by the core. Nothing was started.
    #[error("invalid configuration: {0}")]
    Config(#[from] chorus_core::raft::ConfigError),
    /// A write could not be made durable. The driver stopped without
    /// acknowledging it, so nothing that depended on it was sent or answered;
    /// restart the node to recover from what is on disk.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The transport's inbox closed (its endpoint shut down). The driver
    /// stopped; the node's state on disk is intact.
    #[error("the transport stopped")]
    TransportClosed,
}

/// How [`Driver::new`] starts the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From the state on disk (every start but the first).
    Restart,
    /// The first start of an initial member, on an empty data directory.
    Bootstrap,
}

/// The driver stopped before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node's driver has stopped")]
pub struct DriverStopped;

/// What clients can see of the node, updated after every input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role in `term`.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader this node follows (itself when leader).
    pub leader: Option<NodeId>,
    /// Highest log index known to be committed.
    pub commit_index: LogIndex,
    /// Highest log index applied to the state machine.
    pub applied_index: LogIndex,
}

enum Operation {
    Propose(Vec<u8>),
    Read(Vec<u8>),
}

struct ClientRequest {
    operation: Operation,
    reply: oneshot::Sender<ClientResult>,
}

/// Submits client requests to a running [`Driver`] and watches its status.
/// Cheap to clone. When every handle is dropped the driver stops.
#[derive(Clone)]
pub struct DriverHandle {
    requests: mpsc::Sender<ClientRequest>,
    status: watch::Receiver<NodeStatus>,
}

impl DriverHandle {
    /// Proposes a write. `ClientResult::Ok` carries an encoded
    /// [`KvResponse`](chorus_core::kv::KvResponse).
    pub async fn propose(&self, command: &KvCommand) -> Result<ClientResult, DriverStopped> {
        self.submit(Operation::Propose(command.encode())).await
    }

    /// Asks a linearizable read. `ClientResult::Ok` carries an encoded
    /// [`KvResponse`](chorus_core::kv::KvResponse).
    pub async fn read(&self, query: &KvQuery) -> Result<ClientResult, DriverStopped> {
        self.submit(Operation::Read(query.encode())).await
    }

    /// The node's status after its latest input.
    pub fn status(&self) -> NodeStatus {
        *self.status.borrow()
    }

    async fn submit(&self, operation: Operation) -> Result<ClientResult, DriverStopped> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(ClientRequest { operation, reply }).await.map_err(|_| DriverStopped)?;
        answer.await.map_err(|_| DriverStopped)
    }
}

/// Owns a node, its storage and its transport. Start it with [`run`](Self::run).
pub struct Driver {
    node: RaftNode<KvStore>,
    storage: Arc<Mutex<Storage>>,
    transport: Transport,
    inbox: mpsc::Receiver<Message>,
    requests: mpsc::Receiver<ClientRequest>,
    /// Clients waiting for an answer, by the request id given to the node.
    waiting: BTreeMap<RequestId, oneshot::Sender<ClientResult>>,
    next_request_id: u64,
    epoch: Instant,
    status: watch::Sender<NodeStatus>,
}

impl Driver {
    /// Starts the node from what `storage` recovered. The node's clock
    /// starts now.
    ///
    /// - [`Start::Restart`]: from the stored state. An empty data directory
    ///   is refused ([`RestartError::EmptyDisk`]).
    /// - [`Start::Bootstrap`]: the first start of a member of the initial
    ///   configuration (`config.voters`), on an empty data directory; refused
    ///   if it already holds Raft state. Do it once per member: a member whose
    ///   data was lost must not bootstrap again (it would come back as a voter
    ///   that forgot what it acknowledged).
    pub fn new(
        start: Start,
        config: Config,
        storage: Storage,
        recovered: Recovered,
        transport: Transport,
        inbox: mpsc::Receiver<Message>,
    ) -> Result<(Driver, DriverHandle), DriverError> {
        let stored = recovered.state;
        let node = match start {
            Start::Restart => RaftNode::restart(config, stored, KvStore::default(), Time::ZERO)?,
            Start::Bootstrap if !stored.is_empty() => {
                let (term, entries) = (stored.hard_state.term, stored.entries.len());
                return Err(DriverError::AlreadyBootstrapped { term, entries });
            }
            Start::Bootstrap => RaftNode::new(config, KvStore::default(), Time::ZERO)?,
        };
        Ok(Self::start(node, storage, transport, inbox))
    }

    fn start(
        node: RaftNode<KvStore>,
        storage: Storage,
        transport: Transport,
        inbox: mpsc::Receiver<Message>,
    ) -> (Driver, DriverHandle) {
        let epoch = Instant::now();
        let (status, status_receiver) = watch::channel(status_of(&node));
        let (request_sender, requests) = mpsc::channel(CLIENT_QUEUE_CAPACITY);
        let driver = Driver {
            node,
            storage: Arc::new(Mutex::new(storage)),
            transport,
            inbox,
            requests,
            waiting: BTreeMap::new(),
            next_request_id: 1,
            epoch,
            status,
        };
        let handle = DriverHandle { requests: request_sender, status: status_receiver };
        (driver, handle)
    }

    /// Runs until every [`DriverHandle`] is dropped (`Ok`) or a fatal error.
    pub async fn run(mut self) -> Result<(), DriverError> {
        loop {
            self.drain().await?;
            let deadline = self.instant_of(self.node.poll_timeout());
            tokio::select! {
                message = self.inbox.recv() => {
                    let message = message.ok_or(DriverError::TransportClosed)?;
                    let from = message.from;
                    if let Err(error) = self.node.handle_message(self.now(), message) {
                        tracing::warn!(%from, %error, "rejected a malformed message");
                    }
                }
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        self.transport.close();
                        return Ok(());
                    };
                    self.submit(request);
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.node.handle_timeout(self.now());
                }
            }
        }
    }

    fn submit(&mut self, request: ClientRequest) {
        let id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        self.waiting.insert(id, request.reply);
        let now = self.now();
        match request.operation {
            Operation::Propose(command) => self.node.propose(now, id, command),
            Operation::Read(query) => self.node.read(now, id, query),
        }
    }

    /// Performs every pending action, including the writes and what their
    /// acknowledgement releases.
    async fn drain(&mut self) -> Result<(), DriverError> {
        loop {
            let mut writes = Vec::new();
            while let Some(action) = self.node.poll_action() {
                match action {
                    Action::Send(message) => self.transport.send(&message),
                    Action::Persist(write) => writes.push(write),
                    Action::Respond { request, result } => {
                        if let Some(reply) = self.waiting.remove(&request) {
                            // The client may have given up; that is fine.
                            let _ = reply.send(result);
                        }
                    }
                    Action::Event(event) => log_event(self.node.id(), &event),
                }
            }
            let Some(last) = writes.last().map(|write| write.id) else {
                break;
            };
            self.persist(writes).await?;
            self.node.handle_persisted(self.now(), last);
        }
        self.status.send_replace(status_of(&self.node));
        Ok(())
    }

    /// Appends `writes` in order and syncs once, off the async threads.
    async fn persist(&self, writes: Vec<PersistRequest>) -> Result<(), StorageError> {
        let storage = Arc::clone(&self.storage);
        tokio::task::spawn_blocking(move || {
            let mut storage =
                storage.lock().expect("invariant: storage is only locked by this driver's writes, which do not panic");
            for write in &writes {
                storage.append(write)?;
            }
            storage.sync()
        })
        .await
        .expect("invariant: the storage task does not panic")
    }

    fn now(&self) -> Time {
        let micros = Instant::now().duration_since(self.epoch).as_micros();
        Time::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn instant_of(&self, time: Time) -> Instant {
        self.epoch.checked_add(Duration::from_micros(time.as_micros())).unwrap_or_else(|| Instant::now() + FAR_FUTURE)
    }
}

fn status_of(node: &RaftNode<KvStore>) -> NodeStatus {
    NodeStatus {
        id: node.id(),
        role: node.role(),
        term: node.term(),
        leader: node.leader(),
        commit_index: node.commit_index(),
        applied_index: node.applied_index(),
    }
}

fn log_event(node: NodeId, event: &Event) {
    match event {
        Event::RoleChanged { role, term } => {
            tracing::info!(%node, ?role, %term, "role changed")
        }
        Event::Violation { description } => {
            tracing::warn!(%node, %description, "protocol violation ignored")
        }
        Event::TransferStarted { target, term } => {
            tracing::info!(%node, %target, %term, "leadership transfer started")
        }
        Event::TransferAbandoned { target, term } => {
            tracing::info!(%node, %target, %term, "leadership transfer abandoned")
        }
        Event::MembershipChanged { index, membership } => {
            tracing::info!(%node, %index, %membership, "configuration changed")
        }
        Event::SnapshotInstalled { index, term } => {
            tracing::info!(%node, %index, %term, "snapshot installed")
        }
        Event::FollowerLostEntries { follower, acknowledged, holds } => {
            tracing::error!(
                %node, %follower, %acknowledged, %holds,
                "a follower restarted without log entries it had acknowledged: check its storage"
            )
        }
    }
}
