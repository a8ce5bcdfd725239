//! The task that drives one [`RaftNode`]: it feeds the node inputs and
//! performs the actions it asks for.
//!
//! One loop iteration:
//!
//! 1. Wait for the first of: a message from the [`Transport`] inbox, a client
//!    request from a [`DriverHandle`], or the node's deadline
//!    ([`RaftNode::poll_timeout`]).
//! 2. Hand it to the node with the current [`Time`]. A client request
//!    brings along the requests already queued behind it (at most
//!    `MAX_REQUESTS_PER_BATCH`), so that concurrent writes share one
//!    append and one fsync in step 4 (group commit across clients).
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

use crate::events::{NodeEvent, EVENT_BUFFER_CAPACITY, PEER_WATCH_INTERVAL};
use crate::metrics::DriverMetrics;
use crate::storage::{Recovered, Storage, StorageError};
use crate::transport::{CountersHandle, Peer, PeerBook, Transport, TransportCounters};
use chorus_core::raft::{
    Action, ChangeError, ClientResult, Config, DiskId, Event, MembershipChange, Message, PersistRequest, RaftNode,
    ReadConsistency, RestartError, Role, Status,
};
use chorus_core::types::{LogIndex, NodeId, RequestId, Term, Time};
use chorus_core::StateMachine;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

/// Most client requests queued for the driver; beyond it
/// [`DriverHandle::propose`] and [`DriverHandle::read`] wait for room.
pub const CLIENT_QUEUE_CAPACITY: usize = 1024;

/// Most queued client requests handed to the node before the next drain:
/// one queue's worth, so that the loop is bounded and peer messages and
/// timers get their turn.
const MAX_REQUESTS_PER_BATCH: usize = CLIENT_QUEUE_CAPACITY;

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
    /// The first start on an empty data directory of a node joining a
    /// running cluster: a new member, or a former one whose disk was lost.
    /// `disk` must be fresh (never used by any disk of this node; a random
    /// value will do). The node votes only once the leader has promoted it
    /// or renewed its disk ([`MembershipChange`]).
    Join {
        /// The new disk's identity.
        disk: DiskId,
    },
}

/// The driver stopped before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node's driver has stopped")]
pub struct DriverStopped;

/// What clients can see of the node, updated after every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The core's view: role, term, leader, log and commit indexes, ...
    pub raft: Status,
    /// The voters of the configuration in force (with joint consensus, the
    /// incoming ones).
    pub voters: Vec<NodeId>,
    /// The disk each voter of the configuration in force votes from (with
    /// joint consensus, the incoming voters).
    pub voter_disks: BTreeMap<NodeId, DiskId>,
    /// The learners of the configuration in force.
    pub learners: Vec<NodeId>,
    /// What the transport refused or dropped.
    pub transport: TransportCounters,
}

impl NodeStatus {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id
    }

    /// Is this node the leader (as far as it knows)?
    pub fn is_leader(&self) -> bool {
        self.raft.role == Role::Leader
    }
}

/// An answer from the node: the core's result, and the session token to
/// pass as `ReadConsistency::Session { after }` for read-your-writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What the core answered.
    pub result: ClientResult,
    /// The node's applied index when it answered: at least the index of the
    /// state behind the answer.
    pub session_index: LogIndex,
}

enum Operation {
    Propose(Vec<u8>),
    Read(Vec<u8>, ReadConsistency),
    ChangeMembership(MembershipChange),
}

/// Who waits for a request's answer.
enum Waiter {
    Answer(oneshot::Sender<Answer>),
    /// A membership change: refused at once, or answered once applied.
    Change(oneshot::Sender<Result<Answer, ChangeError>>),
}

impl Waiter {
    fn answer(self, answer: Answer) {
        // The client may have given up; that is fine.
        let _ = match self {
            Waiter::Answer(reply) => reply.send(answer).map_err(drop),
            Waiter::Change(reply) => reply.send(Ok(answer)).map_err(drop),
        };
    }
}

struct ClientRequest {
    operation: Operation,
    waiter: Waiter,
}

/// [`DriverHandle::wait_for_leader`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// No leader was known within the time allowed.
    #[error("no leader within {0:?}")]
    TimedOut(Duration),
    /// The driver stopped.
    #[error(transparent)]
    Stopped(#[from] DriverStopped),
}

/// Submits client requests to a running [`Driver`] and watches its status.
/// Cheap to clone. When every handle is dropped the driver stops.
///
/// Commands and queries are the bytes the node's
/// [`StateMachine`] understands; answers are the bytes it returned.
#[derive(Clone)]
pub struct DriverHandle {
    requests: mpsc::Sender<ClientRequest>,
    status: watch::Receiver<NodeStatus>,
    peers: PeerBook,
    metrics: Arc<DriverMetrics>,
    events: broadcast::Sender<NodeEvent>,
}

impl DriverHandle {
    /// Proposes a write. `ClientResult::Ok` carries the state machine's
    /// answer once the command is committed and applied on this node. A
    /// follower forwards the proposal to the leader it knows of (see
    /// `Config::forward_proposals`).
    pub async fn propose(&self, command: Vec<u8>) -> Result<Answer, DriverStopped> {
        self.submit(Operation::Propose(command)).await
    }

    /// Asks a read-only query at `consistency`. `ClientResult::Ok` carries
    /// the state machine's answer.
    pub async fn read(&self, query: Vec<u8>, consistency: ReadConsistency) -> Result<Answer, DriverStopped> {
        self.submit(Operation::Read(query, consistency)).await
    }

    /// Asks the leader to change the configuration (see
    /// `RaftNode::change_membership`): `Ok` once the change is applied on
    /// this node, `Err` at once if the core refused it (nothing changed).
    /// The new member must be reachable: add its address with
    /// [`add_peer`](Self::add_peer) first.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<Result<Answer, ChangeError>, DriverStopped> {
        let (reply, answer) = oneshot::channel();
        let request = ClientRequest { operation: Operation::ChangeMembership(change), waiter: Waiter::Change(reply) };
        self.requests.send(request).await.map_err(|_| DriverStopped)?;
        answer.await.map_err(|_| DriverStopped)
    }

    /// Lets the transport reach `peer` (a member about to join, or one that
    /// moved). Returns false when the peer limit is reached.
    pub fn add_peer(&self, peer: Peer) -> bool {
        self.peers.add(peer)
    }

    /// The peers the transport knows, and where they listen.
    pub fn peers(&self) -> Vec<Peer> {
        self.peers.list()
    }

    /// Each peer, and whether the transport has a working connection to it.
    pub fn peer_connections(&self) -> BTreeMap<NodeId, bool> {
        self.peers.connected()
    }

    /// What the driver counted (proposals, reads, elections, storage).
    pub fn metrics(&self) -> Arc<DriverMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Events from now on (leader elected, membership changed, snapshot
    /// taken, peer connected or disconnected, ...). A subscriber more than
    /// [`EVENT_BUFFER_CAPACITY`] events behind misses the oldest: its next
    /// `recv` says how many (`RecvError::Lagged`). The stream closes when
    /// the driver stops.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// How many subscribers [`subscribe`](Self::subscribe) has now.
    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// The node's status after its latest input.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// Is this node the leader (as far as it knows)?
    pub fn is_leader(&self) -> bool {
        self.status.borrow().is_leader()
    }

    /// The leader this node follows (itself when leader), if it knows one.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.status.borrow().raft.leader
    }

    /// Waits until this node knows a leader (itself or another), at most
    /// `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, WaitError> {
        let mut status = self.status.clone();
        let wait = async move {
            let leader = status.wait_for(|status| status.raft.leader.is_some()).await?.raft.leader;
            Ok::<_, watch::error::RecvError>(leader)
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(Some(leader))) => Ok(leader),
            Ok(Ok(None) | Err(_)) => Err(WaitError::Stopped(DriverStopped)),
            Err(_) => Err(WaitError::TimedOut(timeout)),
        }
    }

    /// Has the driver stopped?
    pub fn is_stopped(&self) -> bool {
        self.requests.is_closed()
    }

    /// A future that resolves when the driver has stopped, without keeping
    /// it running (unlike a clone of this handle).
    pub fn stopped_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut status = self.status.clone();
        async move { while status.changed().await.is_ok() {} }
    }

    /// Resolves when the driver has stopped.
    pub async fn stopped(&self) {
        self.requests.closed().await;
    }

    async fn submit(&self, operation: Operation) -> Result<Answer, DriverStopped> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(ClientRequest { operation, waiter: Waiter::Answer(reply) })
            .await
            .map_err(|_| DriverStopped)?;
        answer.await.map_err(|_| DriverStopped)
    }
}

/// Owns a node, its storage and its transport. Start it with [`run`](Self::run).
///
/// Generic over the user's [`StateMachine`]; `chorus` runs
/// [`KvStore`](chorus_core::kv::KvStore).
pub struct Driver<S> {
    node: RaftNode<S>,
    storage: Arc<Mutex<Storage>>,
    transport: Transport,
    inbox: mpsc::Receiver<Message>,
    requests: mpsc::Receiver<ClientRequest>,
    /// Clients waiting for an answer, by the request id given to the node.
    waiting: BTreeMap<RequestId, Waiter>,
    next_request_id: u64,
    epoch: Instant,
    status: watch::Sender<NodeStatus>,
    counters: CountersHandle,
    metrics: Arc<DriverMetrics>,
    events: broadcast::Sender<NodeEvent>,
    /// When each waiting proposal was submitted.
    proposals_started: BTreeMap<RequestId, Instant>,
    /// The leader and term last reported as elected.
    reported_leader: Option<(NodeId, Term)>,
}

impl<S: StateMachine + Send + 'static> Driver<S> {
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
    ///
    /// `state_machine` is the empty state the node starts from; a restart
    /// restores the stored snapshot into it and replays committed entries.
    #[allow(clippy::too_many_arguments)] // each is a distinct part the caller owns
    pub fn new(
        start: Start,
        config: Config,
        state_machine: S,
        storage: Storage,
        recovered: Recovered,
        transport: Transport,
        inbox: mpsc::Receiver<Message>,
    ) -> Result<(Driver<S>, DriverHandle), DriverError> {
        let stored = recovered.state;
        let node = match start {
            Start::Restart => RaftNode::restart(config, stored, state_machine, Time::ZERO)?,
            Start::Bootstrap if !stored.is_empty() => {
                let (term, entries) = (stored.hard_state.term, stored.entries.len());
                return Err(DriverError::AlreadyBootstrapped { term, entries });
            }
            Start::Bootstrap => RaftNode::new(config, state_machine, Time::ZERO)?,
            Start::Join { .. } if !stored.is_empty() => {
                let (term, entries) = (stored.hard_state.term, stored.entries.len());
                return Err(DriverError::AlreadyBootstrapped { term, entries });
            }
            Start::Join { disk } => RaftNode::join(config, disk, state_machine, Time::ZERO)?,
        };
        Ok(Self::start(node, storage, transport, inbox))
    }

    fn start(
        node: RaftNode<S>,
        storage: Storage,
        transport: Transport,
        inbox: mpsc::Receiver<Message>,
    ) -> (Driver<S>, DriverHandle) {
        let epoch = Instant::now();
        let metrics = Arc::new(DriverMetrics { storage: storage.stats(), ..DriverMetrics::default() });
        let (events, _) = broadcast::channel(EVENT_BUFFER_CAPACITY);
        let counters = transport.counters_handle();
        let peers = transport.peer_book();
        let (status, status_receiver) = watch::channel(status_of(&node, &counters));
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
            counters,
            metrics: Arc::clone(&metrics),
            events: events.clone(),
            proposals_started: BTreeMap::new(),
            reported_leader: None,
        };
        let handle = DriverHandle { requests: request_sender, status: status_receiver, peers, metrics, events };
        (driver, handle)
    }

    /// Runs until every [`DriverHandle`] is dropped (`Ok`) or a fatal error.
    pub async fn run(self) -> Result<(), DriverError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `shutdown` resolves or every [`DriverHandle`] is dropped
    /// (`Ok`), or a fatal error. Requests still waiting for an answer are
    /// answered with [`DriverStopped`]; every acknowledged write is on disk.
    pub async fn run_until(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<(), DriverError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let peers = self.transport.peer_book();
        tokio::spawn(watch_peers(peers, self.events.clone(), self.status.subscribe()));
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
                    self.submit_queued();
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.node.handle_timeout(self.now());
                }
                () = &mut shutdown => {
                    self.transport.close();
                    return Ok(());
                }
            }
        }
    }

    /// Submits the requests already queued, without waiting (bounded).
    /// Without it every write got an fsync of its own however many clients
    /// waited: one request per loop iteration, and each iteration's drain
    /// waits for its fsync.
    fn submit_queued(&mut self) {
        for _ in 0..MAX_REQUESTS_PER_BATCH {
            match self.requests.try_recv() {
                Ok(request) => self.submit(request),
                // Empty, or every handle dropped: the next `recv` sees it.
                Err(_) => return,
            }
        }
    }

    fn submit(&mut self, request: ClientRequest) {
        let id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        let now = self.now();
        let waiter = request.waiter;
        match request.operation {
            Operation::Propose(command) => {
                self.metrics.proposals.fetch_add(1, Ordering::Relaxed);
                self.proposals_started.insert(id, Instant::now());
                self.waiting.insert(id, waiter);
                self.node.propose(now, id, command);
            }
            Operation::Read(query, consistency) => {
                let kind = match consistency {
                    ReadConsistency::Linearizable => 0,
                    ReadConsistency::Lease => 1,
                    ReadConsistency::Session { .. } => 2,
                    ReadConsistency::Stale => 3,
                };
                self.metrics.reads[kind].fetch_add(1, Ordering::Relaxed);
                self.waiting.insert(id, waiter);
                self.node.read_with(now, id, query, consistency);
            }
            Operation::ChangeMembership(change) => {
                // Registered first: the core may answer during the call.
                self.waiting.insert(id, waiter);
                if let Err(error) = self.node.change_membership(now, id, change) {
                    if let Some(Waiter::Change(reply)) = self.waiting.remove(&id) {
                        let _ = reply.send(Err(error));
                    }
                }
            }
        }
    }

    /// Performs every pending action, including the writes and what their
    /// acknowledgement releases.
    ///
    /// Answers go out once everything is drained, carrying the applied index
    /// as their session token (the core guarantees it only then).
    async fn drain(&mut self) -> Result<(), DriverError> {
        let mut answers = Vec::new();
        loop {
            let mut writes = Vec::new();
            while let Some(action) = self.node.poll_action() {
                match action {
                    Action::Send(message) => self.transport.send(&message),
                    Action::Persist(write) => writes.push(write),
                    Action::Respond { request, result } => {
                        self.measure_answer(request, &result);
                        if let Some(reply) = self.waiting.remove(&request) {
                            answers.push((reply, result));
                        }
                    }
                    Action::Event(event) => {
                        log_event(self.node.id(), &event);
                        self.report_core_event(&event);
                    }
                }
            }
            let Some(last) = writes.last().map(|write| write.id) else {
                break;
            };
            let snapshots: Vec<NodeEvent> = writes
                .iter()
                .filter_map(|write| write.snapshot.as_ref())
                .map(|snapshot| NodeEvent::SnapshotTaken { index: snapshot.meta.index.0, term: snapshot.meta.term.0 })
                .collect();
            self.persist(writes).await?;
            for event in snapshots {
                let _ = self.events.send(event);
            }
            self.node.handle_persisted(self.now(), last);
        }
        self.report_leader();
        let session_index = self.node.applied_index();
        for (waiter, result) in answers {
            waiter.answer(Answer { result, session_index });
        }
        self.status.send_replace(status_of(&self.node, &self.counters));
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

    /// Counts a proposal's answer and its latency.
    fn measure_answer(&mut self, request: RequestId, result: &ClientResult) {
        if let Some(started) = self.proposals_started.remove(&request) {
            self.metrics.proposal_latency.observe(started.elapsed());
            if matches!(result, ClientResult::Ok(_)) {
                self.metrics.proposals_applied.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn report_core_event(&self, event: &Event) {
        if let Event::RoleChanged { role: Role::Leader, .. } = event {
            self.metrics.elections_won.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(event) = NodeEvent::from_core(event) {
            // No subscriber is fine.
            let _ = self.events.send(event);
        }
    }

    /// Reports a leader (or term) this node has not reported yet.
    fn report_leader(&mut self) {
        let status = self.node.status();
        let Some(leader) = status.leader else {
            return;
        };
        if self.reported_leader != Some((leader, status.term)) {
            self.reported_leader = Some((leader, status.term));
            let _ = self.events.send(NodeEvent::LeaderElected { term: status.term.0, leader: leader.0 });
        }
    }

    fn now(&self) -> Time {
        let micros = Instant::now().duration_since(self.epoch).as_micros();
        Time::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn instant_of(&self, time: Time) -> Instant {
        self.epoch.checked_add(Duration::from_micros(time.as_micros())).unwrap_or_else(|| Instant::now() + FAR_FUTURE)
    }
}

/// Reports peers whose connection came or went, every
/// [`PEER_WATCH_INTERVAL`], until the driver stops (its status sender is
/// dropped).
async fn watch_peers(peers: PeerBook, events: broadcast::Sender<NodeEvent>, status: watch::Receiver<NodeStatus>) {
    let mut reported: BTreeMap<NodeId, bool> = BTreeMap::new();
    loop {
        tokio::time::sleep(PEER_WATCH_INTERVAL).await;
        if status.has_changed().is_err() {
            return;
        }
        for (peer, connected) in peers.connected() {
            // A peer starts out disconnected: only a connection is news.
            if reported.get(&peer).copied().unwrap_or(false) != connected {
                let event = match connected {
                    true => NodeEvent::PeerConnected { peer: peer.0 },
                    false => NodeEvent::PeerDisconnected { peer: peer.0 },
                };
                let _ = events.send(event);
            }
            reported.insert(peer, connected);
        }
    }
}

fn status_of<S: StateMachine>(node: &RaftNode<S>, counters: &CountersHandle) -> NodeStatus {
    let membership = node.membership();
    NodeStatus {
        raft: node.status(),
        voters: membership.voters.keys().copied().collect(),
        voter_disks: membership.voters.clone(),
        learners: membership.learners.iter().copied().collect(),
        transport: counters.get(),
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
