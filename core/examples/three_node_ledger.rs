//! Embedding Chorus Raft: a three-node bank ledger, end to end.
//!
//! Run it with
//!
//! ```text
//! cargo run -p chorus-core --example three_node_ledger
//! ```
//!
//! `chorus-core` is *sans-IO*: a [`RaftNode`] never reads a clock, opens a
//! file or touches a socket. It takes inputs (a message arrived, time passed,
//! a client asked something, a write became durable) and hands back
//! [`Action`]s (send this, make this durable, answer that client). Everything
//! else is the embedder's job, and this file does all of it with nothing but
//! the standard library:
//!
//! | concern            | here                                                         |
//! |--------------------|--------------------------------------------------------------|
//! | state machine      | [`Ledger`]: accounts and transfers, text commands            |
//! | transport          | one thread per node, `std::sync::mpsc` channels as the wire  |
//! | clock              | `std::time::Instant`, mapped to the core's [`Time`]          |
//! | storage            | [`LogFile`]: one append-only file per node, fsynced          |
//! | the driving loop   | [`run_node`] and [`drain`]                                   |
//!
//! The story it tells (and checks): three nodes elect a leader and commit
//! account openings and transfers; every node answers linearizable reads;
//! the leader is stopped, the other two elect a new one and keep committing;
//! the old leader is rebuilt from its own file with [`RaftNode::restart`],
//! catches up, and answers reads again; more transfers commit. Every answer
//! is compared with a local, single-copy [`Ledger`] fed the same commands:
//! the replicated ledger must behave exactly like one ledger. Any mismatch
//! makes [`run`] return an error and the process exit with status 1.
//!
//! `core/tests/example_three_node_ledger.rs` runs this same file as a test.

// `pub` items are for the test that runs this example (core/tests/).
#![allow(unreachable_pub)]

use chorus_core::raft::{
    Action, ClientResult, Config, DurableState, Event, PersistId, PersistRequest, RaftNode, Role, SnapshotPolicy,
};
use chorus_core::types::{LogIndex, NodeId, RequestId, Term, Time};
use chorus_core::wire::{decode_message, encode_message};
use chorus_core::{RestoreError, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Limits. Everything that queues or waits has a bound, so the example always
// ends by itself.
// ---------------------------------------------------------------------------

/// The cluster: three voters.
const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// Inputs queued for one node thread. When full, further inputs are dropped,
/// as a real network drops packets; Raft retries by itself, and clients retry.
const INBOX_CAPACITY: usize = 1024;

/// How long a client waits for one answer before trying again (possibly on
/// another node).
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a client keeps retrying one operation before giving up.
const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// Pause before retrying when no node knows a leader (an election is on).
const RETRY_PAUSE: Duration = Duration::from_millis(30);

/// A node thread never sleeps longer than this, even if the node's next
/// deadline is further away. Waking early is harmless: `handle_timeout`
/// before a deadline does nothing.
const MAX_IDLE: Duration = Duration::from_millis(500);

/// Largest record the log file writes or accepts. A length prefix above it
/// means the file is damaged, not that we should allocate gigabytes.
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

// ===========================================================================
// 1. The state machine: a bank ledger
// ===========================================================================

/// A tiny bank: named accounts holding whole units of money.
///
/// Raft replicates *bytes*; what they mean is up to the state machine. Here
/// commands and queries are short text lines, easy to read in a debugger:
///
/// | command                              | effect                                   |
/// |--------------------------------------|------------------------------------------|
/// | `open <txn> <account> <amount>`      | create an account with an opening amount |
/// | `transfer <txn> <from> <to> <amount>`| move money if `from` has enough          |
///
/// | query               | answer                       |
/// |---------------------|------------------------------|
/// | `balance <account>` | the balance, or an error     |
/// | `total`             | the sum of every balance     |
///
/// The rules `StateMachine` imposes, and how this type meets them:
///
/// - **Deterministic.** Every node applies the same commands in the same
///   order and must reach the same state. So: `BTreeMap` (ordered), integer
///   money, no clock, no randomness.
/// - **Malformed input is an answer, not a panic.** Commands come from
///   clients; a bad one is answered `error: ...` and changes nothing.
/// - **Exactly-once under retries.** A client that loses its answer (the
///   leader died, a reply timed out) cannot know whether its command
///   committed, so it sends it again. Each command carries a transaction id
///   chosen by the client; the ledger remembers the answer given to each id
///   and returns it again instead of applying the command twice. (A real
///   system would expire these per client session, as `chorus_core::kv`
///   does; this example keeps them all.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    balances: BTreeMap<String, u64>,
    /// The answer given to each transaction id.
    answers: BTreeMap<u64, String>,
}

/// A parsed ledger command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `open <txn> <account> <amount>`: a new account with a first deposit.
    Open {
        /// The client's transaction id: a retry with the same id gets the
        /// same answer and changes nothing.
        txn: u64,
        /// The account to open.
        account: String,
        /// Its opening balance.
        amount: u64,
    },
    /// `transfer <txn> <from> <to> <amount>`: move money if `from` has it.
    Transfer {
        /// The client's transaction id (see `Open`).
        txn: u64,
        /// The account debited.
        from: String,
        /// The account credited.
        to: String,
        /// How much.
        amount: u64,
    },
}

impl Command {
    /// The bytes that go into the Raft log.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Command::Open { txn, account, amount } => format!("open {txn} {account} {amount}"),
            Command::Transfer { txn, from, to, amount } => format!("transfer {txn} {from} {to} {amount}"),
        }
        .into_bytes()
    }

    /// Parses what [`encode`](Self::encode) wrote. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let words: Vec<&str> = text.split(' ').collect();
        let number = |word: &str| word.parse::<u64>().map_err(|_| format!("{word:?} is not a number"));
        match words.as_slice() {
            ["open", txn, account, amount] => {
                Ok(Command::Open { txn: number(txn)?, account: account.to_string(), amount: number(amount)? })
            }
            ["transfer", txn, from, to, amount] => Ok(Command::Transfer {
                txn: number(txn)?,
                from: from.to_string(),
                to: to.to_string(),
                amount: number(amount)?,
            }),
            _ => Err(format!("unknown command {text:?}")),
        }
    }

    fn txn(&self) -> u64 {
        match self {
            Command::Open { txn, .. } | Command::Transfer { txn, .. } => *txn,
        }
    }
}

impl Ledger {
    /// Applies one command and returns the answer for the client.
    fn execute(&mut self, command: &Command) -> String {
        match command {
            Command::Open { account, amount, .. } => {
                if self.balances.contains_key(account) {
                    return format!("refused: {account} already exists");
                }
                self.balances.insert(account.clone(), *amount);
                format!("ok: {account} opened with {amount}")
            }
            Command::Transfer { from, to, amount, .. } => {
                let (Some(&have), Some(&theirs)) = (self.balances.get(from), self.balances.get(to)) else {
                    return "refused: no such account".to_string();
                };
                if from == to {
                    return "refused: transfer to the same account".to_string();
                }
                if have < *amount {
                    return format!("refused: {from} has {have}, cannot send {amount}");
                }
                let Some(new_theirs) = theirs.checked_add(*amount) else {
                    return format!("refused: {to} would overflow");
                };
                self.balances.insert(from.clone(), have - amount);
                self.balances.insert(to.clone(), new_theirs);
                format!("ok: {from} {} -> {to} {new_theirs}", have - amount)
            }
        }
    }
}

impl StateMachine for Ledger {
    fn apply(&mut self, _index: LogIndex, command: &[u8]) -> Vec<u8> {
        let command = match Command::decode(command) {
            Ok(command) => command,
            // Not remembered under any txn: a malformed command has no id.
            Err(problem) => return format!("error: {problem}").into_bytes(),
        };
        if let Some(answer) = self.answers.get(&command.txn()) {
            return answer.clone().into_bytes(); // a retry: answer again, apply nothing
        }
        let answer = self.execute(&command);
        self.answers.insert(command.txn(), answer.clone());
        answer.into_bytes()
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(query);
        let words: Vec<&str> = text.split(' ').collect();
        let answer = match words.as_slice() {
            ["balance", account] => match self.balances.get(*account) {
                Some(balance) => balance.to_string(),
                None => format!("error: no account {account}"),
            },
            // Sums in u128: cannot overflow for any number of u64 balances
            // this example will ever hold.
            ["total"] => self.balances.values().map(|balance| u128::from(*balance)).sum::<u128>().to_string(),
            _ => format!("error: unknown query {text:?}"),
        };
        answer.into_bytes()
    }

    /// The whole ledger, for Raft's snapshots: the core calls this when its
    /// `snapshot_policy` says so, stores the bytes through a `Persist`
    /// action, and uses them to compact the log and to bring a far-behind
    /// follower up to date.
    fn snapshot(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("invariant: a map of strings and integers always encodes")
    }

    /// Replaces the whole ledger; on a bad snapshot, changes nothing.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let (ledger, used): (Ledger, usize) = bincode::serde::decode_from_slice(snapshot, bincode::config::standard())
            .map_err(|error| RestoreError(error.to_string()))?;
        if used != snapshot.len() {
            return Err(RestoreError(format!("{} bytes after the ledger", snapshot.len() - used)));
        }
        *self = ledger;
        Ok(())
    }
}

// ===========================================================================
// 2. Storage: one append-only file per node
// ===========================================================================

/// One node's durable state: an append-only file of records, one per
/// [`PersistRequest`].
///
/// Record format: `length: u32 little-endian`, then `length` bytes of
/// bincode. A production log would also checksum each record to tell a torn
/// write from a damaged disk (see `runtime/src/storage.rs`); this one only
/// recognises a record cut short at the end of the file, the usual leftover
/// of a crash in the middle of an append.
///
/// The file only grows. A real store would rewrite it now and then from the
/// latest snapshot and the log after it (the core tells us, through
/// `discard_upto`, which entries are no longer needed).
pub struct LogFile {
    path: PathBuf,
    file: File,
}

impl LogFile {
    /// Creates the file of a brand-new node. Fails if it exists: a node that
    /// already has a disk must never be bootstrapped again (it would come
    /// back having forgotten its votes and its log).
    pub fn create(path: &Path) -> Result<LogFile, String> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|error| format!("create {}: {error}", path.display()))?;
        // Make the new directory entry itself durable, not just the file's
        // contents: otherwise a crash could lose the whole file.
        sync_directory(path)?;
        Ok(LogFile { path: path.to_path_buf(), file })
    }

    /// Opens an existing file and replays it into what
    /// [`RaftNode::restart`] wants. Returns the number of records replayed.
    pub fn open(path: &Path) -> Result<(LogFile, DurableState, usize), String> {
        let mut file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(path)
            .map_err(|error| format!("open {}: {error}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|error| format!("read {}: {error}", path.display()))?;

        let mut state = DurableState::default();
        let mut offset = 0usize;
        let mut records = 0usize;
        while bytes.len() - offset >= 4 {
            let length = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            if length > MAX_RECORD_BYTES {
                return Err(format!("{}: impossible record length {length} at byte {offset}", path.display()));
            }
            let Some(payload) = bytes.get(offset + 4..offset + 4 + length) else {
                break; // cut short at the end of the file: a torn, never acknowledged write
            };
            let (write, used): (PersistRequest, usize) =
                bincode::serde::decode_from_slice(payload, bincode::config::standard())
                    .map_err(|error| format!("{}: bad record at byte {offset}: {error}", path.display()))?;
            if used != payload.len() {
                return Err(format!("{}: record at byte {offset} has trailing bytes", path.display()));
            }
            // The core's one rule for applying a write (its id only ordered
            // writes within the life that issued it; replay ignores it).
            state.apply(&write).map_err(|problem| format!("{}: byte {offset}: {problem}", path.display()))?;
            offset += 4 + length;
            records += 1;
        }
        if offset < bytes.len() {
            // Cut the torn tail off, or the next append would land after it
            // and the file would no longer replay.
            file.set_len(offset as u64)
                .and_then(|()| file.sync_all())
                .map_err(|error| format!("truncate {}: {error}", path.display()))?;
        }
        Ok((LogFile { path: path.to_path_buf(), file }, state, records))
    }

    /// Appends one write and waits until it is on stable storage. Only after
    /// this returns may the node be told (`handle_persisted`).
    pub fn append_durably(&mut self, write: &PersistRequest) -> Result<(), String> {
        let payload = bincode::serde::encode_to_vec(write, bincode::config::standard())
            .expect("invariant: entries, snapshots and hard states always encode");
        if payload.len() > MAX_RECORD_BYTES {
            return Err(format!("a record of {} bytes is over the limit", payload.len()));
        }
        let length = u32::try_from(payload.len()).expect("MAX_RECORD_BYTES fits in u32");
        let mut frame = Vec::with_capacity(4 + payload.len());
        frame.extend_from_slice(&length.to_le_bytes());
        frame.extend_from_slice(&payload);
        self.file.write_all(&frame).map_err(|error| format!("append to {}: {error}", self.path.display()))?;
        // The fsync is the whole point: until it returns, the write may
        // vanish in a power cut, and the node must not act as if it had not.
        self.file.sync_data().map_err(|error| format!("sync {}: {error}", self.path.display()))
    }
}

fn sync_directory(path: &Path) -> Result<(), String> {
    let directory = path.parent().ok_or_else(|| format!("{} has no directory", path.display()))?;
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| format!("sync directory {}: {error}", directory.display()))
}

// ===========================================================================
// 3. Transport and shared bookkeeping
// ===========================================================================

/// What a node thread receives.
enum Input {
    /// Bytes from a peer, in the core's wire format.
    Message(Vec<u8>),
    /// A client's command; the answer goes back on `reply`.
    Propose { command: Vec<u8>, reply: SyncSender<ClientResult> },
    /// A client's linearizable query; the answer goes back on `reply`.
    Read { query: Vec<u8>, reply: SyncSender<ClientResult> },
    /// Stop the node (between two inputs, so every acknowledged write is
    /// already in its file).
    Stop,
}

/// What one node last reported of itself, for the client and the narrative.
#[derive(Clone, Copy, Debug)]
struct Status {
    role: Role,
    term: Term,
}

/// Everything the threads share. The "network" is `inboxes`: a node that is
/// down has no inbox, and whatever is sent to it is lost.
struct Shared {
    /// Time zero for every node: `Time` is microseconds since this instant.
    epoch: Instant,
    inboxes: Mutex<BTreeMap<NodeId, SyncSender<Input>>>,
    status: Mutex<BTreeMap<NodeId, Status>>,
    journal: Mutex<Journal>,
}

/// What the nodes reported while running.
#[derive(Default)]
struct Journal {
    /// Each leader, in the order they took office.
    leaders: Vec<(NodeId, Term)>,
    /// Writes that carried a snapshot, over all nodes.
    snapshots_written: usize,
    /// Snapshots a follower received from the leader and installed.
    snapshots_installed: Vec<(NodeId, LogIndex)>,
    /// `Event::Violation` or `Event::FollowerLostEntries`: never expected.
    alarms: Vec<String>,
}

impl Shared {
    /// The core's `Time` for this instant. All nodes share one epoch here;
    /// each could have its own, since the core only compares a node's times
    /// with each other.
    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Delivers `input` to `to`, or drops it if `to` is down or its inbox
    /// is full. Returns whether it was queued.
    fn deliver(&self, to: NodeId, input: Input) -> bool {
        let inboxes = self.inboxes.lock().expect("invariant: no thread panics while holding this lock");
        match inboxes.get(&to).map(|inbox| inbox.try_send(input)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }

    fn say(&self, line: &str) {
        println!("{:>7.3}s  {line}", self.epoch.elapsed().as_secs_f64());
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().expect("invariant: no thread panics while holding this lock")
    }

    /// The leader of the highest term any node reports, if any.
    fn leader(&self) -> Option<(NodeId, Term)> {
        let status = self.status.lock().expect("invariant: no thread panics while holding this lock");
        status
            .iter()
            .filter(|(_, status)| status.role == Role::Leader)
            .map(|(id, status)| (*id, status.term))
            .max_by_key(|(_, term)| *term)
    }
}

// ===========================================================================
// 4. The driver: one thread per node
// ===========================================================================

/// Drives one node until told to stop. This loop is the heart of embedding:
///
/// 1. Perform everything the node asked for ([`drain`]).
/// 2. Sleep until an input arrives or the node's deadline
///    ([`RaftNode::poll_timeout`]) passes.
/// 3. Hand the input, or the passing of time, to the node, with `now`.
fn run_node(
    mut node: RaftNode<Ledger>,
    mut disk: LogFile,
    inbox: Receiver<Input>,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let id = node.id();
    // Clients waiting for an answer, by the request id we gave the node.
    let mut waiting: BTreeMap<RequestId, SyncSender<ClientResult>> = BTreeMap::new();
    let mut next_request = 1u64;
    loop {
        // A freshly built node already has actions queued (its first write),
        // so the loop starts with a drain.
        drain(&mut node, &mut disk, &mut waiting, &shared)?;
        shared
            .status
            .lock()
            .expect("invariant: no thread panics while holding this lock")
            .insert(id, Status { role: node.role(), term: node.term() });

        let deadline = node.poll_timeout();
        let wait = Duration::from_micros(deadline.micros_since(shared.now())).min(MAX_IDLE);
        match inbox.recv_timeout(wait) {
            Ok(Input::Message(bytes)) => match decode_message(&bytes) {
                Ok(message) => {
                    // A message that breaks the protocol's shape or limits is
                    // rejected whole; a real node would log it and move on.
                    let from = message.from;
                    if let Err(error) = node.handle_message(shared.now(), message) {
                        shared.say(&format!("{id}: rejected a message from {from}: {error}"));
                    }
                }
                // Garbage from the network is dropped, never trusted.
                Err(error) => shared.say(&format!("{id}: dropped an undecodable message: {error}")),
            },
            Ok(Input::Propose { command, reply }) => {
                let request = RequestId(next_request);
                next_request += 1;
                waiting.insert(request, reply);
                node.propose(shared.now(), request, command);
            }
            Ok(Input::Read { query, reply }) => {
                let request = RequestId(next_request);
                next_request += 1;
                waiting.insert(request, reply);
                // `read` is linearizable (ReadIndex by default): the answer
                // reflects every write committed before the read arrived,
                // even when this node is a follower.
                node.read(shared.now(), request, query);
            }
            // Dropping `node` and `disk` here is the "crash": only what is in
            // the file survives. Clients still waiting see their reply
            // channel close and retry elsewhere.
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => node.handle_timeout(shared.now()),
        }
    }
}

/// Performs every action the node has queued, in order, until it has nothing
/// more to say. This is the documented drain order of [`RaftNode`]: after
/// any input, take actions from `poll_action` until it returns `None`,
/// performing each in the order given.
///
/// - `Persist`: made durable right here, in order (append + fsync), before
///   the next action is looked at. So any `Send` queued after a write goes
///   out only once that write is on disk. (The core is even more careful:
///   it holds back every message that depends on a write until the write is
///   acknowledged, so a `Send` may go out at once. Doing the writes in line
///   is simply the easiest correct order to follow.)
/// - Once the pass is over, the last write is acknowledged with
///   `handle_persisted`, which acknowledges every earlier one too. That is a
///   new input: it can release held messages and answers, and even queue a
///   new write, so we drain again until a pass makes no write.
/// - `Send`: encoded and handed to the network, which may lose it.
/// - `Respond`: the answer for a client request.
/// - `Event`: informational; we narrate and count some.
fn drain(
    node: &mut RaftNode<Ledger>,
    disk: &mut LogFile,
    waiting: &mut BTreeMap<RequestId, SyncSender<ClientResult>>,
    shared: &Shared,
) -> Result<(), String> {
    let id = node.id();
    loop {
        let mut last_write: Option<PersistId> = None;
        while let Some(action) = node.poll_action() {
            match action {
                Action::Persist(write) => {
                    // If this fails we return without acknowledging, so
                    // nothing that depended on the write is ever sent or
                    // answered. The node must be restarted from the file.
                    disk.append_durably(&write)?;
                    if write.snapshot.is_some() {
                        shared.journal().snapshots_written += 1;
                    }
                    last_write = Some(write.id);
                }
                Action::Send(message) => match encode_message(&message) {
                    Ok(bytes) => {
                        shared.deliver(message.to, Input::Message(bytes));
                    }
                    // Too large to send: like a lost message, Raft copes.
                    Err(error) => shared.say(&format!("{id}: could not encode a message: {error}")),
                },
                Action::Respond { request, result } => {
                    if let Some(reply) = waiting.remove(&request) {
                        // The client may have given up and gone; that is fine.
                        let _ = reply.try_send(result);
                    }
                }
                Action::Event(event) => narrate(id, &event, shared),
            }
        }
        match last_write {
            Some(write) => node.handle_persisted(shared.now(), write),
            None => return Ok(()),
        }
    }
}

fn narrate(id: NodeId, event: &Event, shared: &Shared) {
    match event {
        Event::RoleChanged { role: Role::Leader, term } => {
            shared.journal().leaders.push((id, *term));
            shared.say(&format!("{id} is the leader of term {}", term.0));
        }
        Event::SnapshotInstalled { index, .. } => {
            shared.journal().snapshots_installed.push((id, *index));
            shared.say(&format!("{id} installed a snapshot from the leader, up to index {}", index.0));
        }
        Event::Violation { description } => {
            shared.journal().alarms.push(format!("{id}: {description}"));
            shared.say(&format!("{id}: PROTOCOL VIOLATION: {description}"));
        }
        Event::FollowerLostEntries { follower, .. } => {
            shared.journal().alarms.push(format!("{id}: {follower} lost acknowledged entries"));
            shared.say(&format!("{id}: {follower} lost entries it had acknowledged: its disk is unsafe"));
        }
        _ => {}
    }
}

// ===========================================================================
// 5. Starting, stopping and restarting nodes
// ===========================================================================

/// The configuration every node uses.
fn config(id: NodeId) -> Config {
    let mut config = Config::new(id, NODES.to_vec());
    // Generous for a machine busy with other work: a thread that is not
    // scheduled for a while must not look like a dead leader.
    config.election_timeout_ms = 300;
    config.heartbeat_interval_ms = 50;
    // Snapshot often, so that this short run exercises `Ledger::snapshot`,
    // snapshot records in the file, restart from a snapshot, and (for the
    // node that was down) catching up by snapshot. Real values are far
    // larger; see `Config::new`.
    config.snapshot_policy = SnapshotPolicy { entries: 5, bytes: 0 };
    config.max_retained_entries = 2;
    config
}

/// The running cluster: one thread per running node.
struct Cluster {
    shared: Arc<Shared>,
    directory: PathBuf,
    threads: BTreeMap<NodeId, JoinHandle<Result<(), String>>>,
}

impl Cluster {
    fn file_of(&self, id: NodeId) -> PathBuf {
        self.directory.join(format!("node-{}.log", id.0))
    }

    /// Starts a node on its own thread, with a fresh inbox.
    fn spawn(&mut self, node: RaftNode<Ledger>, disk: LogFile) {
        let id = node.id();
        let (sender, inbox) = mpsc::sync_channel(INBOX_CAPACITY);
        self.shared.inboxes.lock().expect("invariant: no thread panics while holding this lock").insert(id, sender);
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name(format!("node-{}", id.0))
            .spawn(move || run_node(node, disk, inbox, shared))
            .expect("the OS can start three threads");
        self.threads.insert(id, thread);
    }

    /// First start of a member of the initial configuration: a new file and
    /// `RaftNode::new`. Done exactly once per member, ever.
    fn bootstrap(&mut self, id: NodeId) -> Result<(), String> {
        let disk = LogFile::create(&self.file_of(id))?;
        let node =
            RaftNode::new(config(id), Ledger::default(), self.shared.now()).map_err(|error| error.to_string())?;
        self.spawn(node, disk);
        Ok(())
    }

    /// Stops a node: takes it off the network, then ends its thread.
    fn stop(&mut self, id: NodeId) -> Result<(), String> {
        let inbox =
            self.shared.inboxes.lock().expect("invariant: no thread panics while holding this lock").remove(&id);
        if let Some(inbox) = inbox {
            // Blocking send: Stop must arrive even if the inbox is full.
            let _ = inbox.send(Input::Stop);
        }
        self.shared.status.lock().expect("invariant: no thread panics while holding this lock").remove(&id);
        match self.threads.remove(&id) {
            Some(thread) => thread.join().map_err(|_| format!("{id}'s thread panicked"))?,
            None => Ok(()),
        }
    }

    /// Rebuilds a stopped node from nothing but its file. Returns what the
    /// restart recovered, before the node heard from anyone.
    fn restart(&mut self, id: NodeId) -> Result<Recovery, String> {
        let (disk, state, records) = LogFile::open(&self.file_of(id))?;
        let recovery = Recovery {
            records,
            term: state.hard_state.term,
            snapshot_index: state.snapshot.as_ref().map(|snapshot| snapshot.meta.index),
            log_entries: state.entries.len(),
            applied_index: LogIndex::ZERO,
            total: String::new(),
        };
        // `restart` restores the snapshot into the fresh `Ledger`, replays the
        // committed entries after it, and queues a first write (its new
        // incarnation) that it must see acknowledged before saying anything.
        let node = RaftNode::restart(config(id), state, Ledger::default(), self.shared.now())
            .map_err(|error| format!("{id} cannot restart: {error}"))?;
        let recovery = Recovery {
            applied_index: node.applied_index(),
            total: String::from_utf8_lossy(&node.state_machine().query(b"total")).into_owned(),
            ..recovery
        };
        self.spawn(node, disk);
        Ok(recovery)
    }

    fn shutdown(&mut self) -> Result<(), String> {
        let ids: Vec<NodeId> = self.threads.keys().copied().collect();
        let mut first_error = Ok(());
        for id in ids {
            let result = self.stop(id);
            if first_error.is_ok() {
                first_error = result;
            }
        }
        first_error
    }
}

impl Drop for Cluster {
    /// Even when a check fails half-way, stop every thread and delete the
    /// files.
    fn drop(&mut self) {
        let _ = self.shutdown();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// What a node had recovered from its own file when it restarted.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// Records replayed from the file.
    pub records: usize,
    /// The stored term.
    pub term: Term,
    /// The end of the stored snapshot, if any.
    pub snapshot_index: Option<LogIndex>,
    /// Log entries stored after (or around) the snapshot.
    pub log_entries: usize,
    /// How far the rebuilt ledger got from the file alone.
    pub applied_index: LogIndex,
    /// The rebuilt ledger's `total`, from the file alone.
    pub total: String,
}

// ===========================================================================
// 6. A client that retries correctly
// ===========================================================================

/// Sends commands and reads to the cluster, as an application would, and
/// checks each answer against `model`: a plain, local `Ledger` fed the same
/// commands in the same order.
struct Client {
    shared: Arc<Shared>,
    model: Ledger,
    /// Where to send the next command.
    target: NodeId,
    next_txn: u64,
    committed: usize,
    reads_checked: usize,
}

/// One attempt's outcome, as a client sees it.
enum Attempt {
    Answer(Vec<u8>),
    /// Try again on this node (the leader the asked node knows of).
    Redirect(NodeId),
    /// Try again, after a pause, on another node. `outcome_unknown`: the
    /// command may still commit, so only an idempotent retry is safe.
    Retry {
        problem: String,
        outcome_unknown: bool,
    },
}

fn retry(problem: String) -> Attempt {
    Attempt::Retry { problem, outcome_unknown: false }
}

fn unknown(problem: String) -> Attempt {
    Attempt::Retry { problem, outcome_unknown: true }
}

impl Client {
    /// Sends `input` to `to` and waits for the answer.
    fn attempt(&self, to: NodeId, make_input: impl FnOnce(SyncSender<ClientResult>) -> Input) -> Attempt {
        let (reply, answer) = mpsc::sync_channel(1);
        if !self.shared.deliver(to, make_input(reply)) {
            return retry(format!("{to} is down"));
        }
        match answer.recv_timeout(REPLY_TIMEOUT) {
            Ok(ClientResult::Ok(bytes)) => Attempt::Answer(bytes),
            Ok(ClientResult::NotLeader { leader_hint }) => Attempt::Redirect(leader_hint),
            Ok(ClientResult::NoLeader) => retry(format!("{to} knows no leader yet")),
            // Appended, then the leader lost office: it may still commit.
            Ok(ClientResult::Dropped(reason)) if reason.outcome_unknown() => {
                unknown(format!("{to} lost leadership after appending it"))
            }
            // Overloaded or too large: refused, never appended.
            Ok(ClientResult::Dropped(reason)) => retry(format!("{to} refused it: {reason:?}")),
            // The node stopped, or is slow, or forwarded the command to a
            // leader that is gone: the outcome is unknown too.
            Err(_) => unknown(format!("no answer from {to} within {REPLY_TIMEOUT:?}")),
        }
    }

    fn next_node(after: NodeId) -> NodeId {
        let position = NODES.iter().position(|id| *id == after).unwrap_or(0);
        NODES[(position + 1) % NODES.len()]
    }

    /// Commits one command and checks its answer. Retries (with the same
    /// txn id) until an answer arrives or the deadline passes.
    fn propose(&mut self, command: Command) -> Result<String, String> {
        let bytes = command.encode();
        let started = Instant::now();
        let mut last_problem = String::new();
        while started.elapsed() < OPERATION_DEADLINE {
            let to = self.target;
            let input = |reply| Input::Propose { command: bytes.clone(), reply };
            match self.attempt(to, input) {
                Attempt::Answer(answer) => {
                    let answer = String::from_utf8_lossy(&answer).into_owned();
                    let expected = String::from_utf8_lossy(&self.model.apply(LogIndex::ZERO, &bytes)).into_owned();
                    if answer != expected {
                        return Err(format!(
                            "{command:?}: the cluster answered {answer:?}, one ledger says {expected:?}"
                        ));
                    }
                    self.committed += 1;
                    return Ok(answer);
                }
                Attempt::Redirect(leader) => self.target = leader,
                Attempt::Retry { problem, outcome_unknown } => {
                    if outcome_unknown {
                        // Safe to send again only because the txn id makes
                        // the command idempotent (see `Ledger`).
                        self.shared.say(&format!("client: {problem}; sending it again, same txn id"));
                    }
                    last_problem = problem;
                    self.target = Self::next_node(to);
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        Err(format!("{command:?} did not commit within {OPERATION_DEADLINE:?}: {last_problem}"))
    }

    fn open(&mut self, account: &str, amount: u64) -> Result<String, String> {
        self.next_txn += 1;
        self.propose(Command::Open { txn: self.next_txn, account: account.to_string(), amount })
    }

    fn transfer(&mut self, from: &str, to: &str, amount: u64) -> Result<String, String> {
        self.next_txn += 1;
        self.propose(Command::Transfer { txn: self.next_txn, from: from.to_string(), to: to.to_string(), amount })
    }

    /// A linearizable read on one particular node (leader or follower), checked
    /// against the model. Retries on the same node: the point is to see what
    /// *that* node answers.
    fn read_on(&mut self, node: NodeId, query: &str) -> Result<String, String> {
        let started = Instant::now();
        let mut last_problem = String::new();
        while started.elapsed() < OPERATION_DEADLINE {
            let input = |reply| Input::Read { query: query.as_bytes().to_vec(), reply };
            match self.attempt(node, input) {
                Attempt::Answer(answer) => {
                    let answer = String::from_utf8_lossy(&answer).into_owned();
                    let expected = String::from_utf8_lossy(&self.model.query(query.as_bytes())).into_owned();
                    if answer != expected {
                        return Err(format!("{node} answered {query:?} with {answer:?}, one ledger says {expected:?}"));
                    }
                    self.reads_checked += 1;
                    return Ok(answer);
                }
                Attempt::Redirect(leader) => last_problem = format!("{node} sent us to {leader}"),
                Attempt::Retry { problem, .. } => last_problem = problem,
            }
            std::thread::sleep(RETRY_PAUSE);
        }
        Err(format!("{node} did not answer {query:?} within {OPERATION_DEADLINE:?}: {last_problem}"))
    }

    /// Reads every account and the total on `node`; returns a one-line view.
    fn read_all_on(&mut self, node: NodeId) -> Result<String, String> {
        let mut parts = Vec::new();
        for account in ACCOUNTS {
            parts.push(format!("{account} {}", self.read_on(node, &format!("balance {account}"))?));
        }
        parts.push(format!("total {}", self.read_on(node, "total")?));
        Ok(parts.join(", "))
    }
}

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];

// ===========================================================================
// 7. The scenario
// ===========================================================================

/// What happened, for the test to check.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Commands committed and answered (including the ledger's refusals,
    /// which are committed answers too).
    pub committed_commands: usize,
    /// Of those, committed after the stopped node came back.
    pub committed_after_restart: usize,
    /// Linearizable reads answered and found equal to the single-copy ledger.
    pub reads_checked: usize,
    /// Each leader, in the order they took office.
    pub leaders: Vec<(NodeId, Term)>,
    /// The node that was stopped and restarted: the leader at the time.
    pub restarted: NodeId,
    /// The term it was leading when it was stopped.
    pub restarted_term: Term,
    /// What it recovered from its own file.
    pub recovery: Recovery,
    /// Writes that carried a snapshot, over all nodes.
    pub snapshots_written: usize,
    /// Snapshots sent by a leader and installed by a follower.
    pub snapshots_installed: Vec<(NodeId, LogIndex)>,
    /// Final balances, as every node reported them.
    pub final_balances: BTreeMap<String, u64>,
    /// Protocol violations or lost-entry alarms (must be empty).
    pub alarms: Vec<String>,
}

/// Runs the whole story. `Err` says which check failed.
pub fn run() -> Result<Summary, String> {
    let directory = std::env::temp_dir().join(format!(
        "chorus-three-node-ledger-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos())
    ));
    std::fs::create_dir_all(&directory).map_err(|error| format!("create {}: {error}", directory.display()))?;
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        inboxes: Mutex::new(BTreeMap::new()),
        status: Mutex::new(BTreeMap::new()),
        journal: Mutex::new(Journal::default()),
    });
    // From here on, `cluster`'s Drop stops the threads and deletes the files,
    // however we leave.
    let mut cluster = Cluster { shared: Arc::clone(&shared), directory, threads: BTreeMap::new() };
    let mut client = Client {
        shared: Arc::clone(&shared),
        model: Ledger::default(),
        target: NODES[0],
        next_txn: 0,
        committed: 0,
        reads_checked: 0,
    };

    // --- Act 1: bootstrap, elect, commit, read ---------------------------
    shared.say(&format!("starting {} nodes, files in {}", NODES.len(), cluster.directory.display()));
    for id in NODES {
        cluster.bootstrap(id)?;
    }
    // The first command also waits out the first election: until there is a
    // leader, nodes answer `NoLeader` and the client retries.
    for (account, amount) in [("alice", 100), ("bob", 50), ("carol", 0)] {
        shared.say(&format!("open {account} with {amount}: {}", client.open(account, amount)?));
    }
    for (from, to, amount) in [("alice", "bob", 30), ("bob", "carol", 70), ("carol", "alice", 500)] {
        shared.say(&format!("transfer {amount} {from} -> {to}: {}", client.transfer(from, to, amount)?));
    }
    for id in NODES {
        shared.say(&format!("{id} reads: {}", client.read_all_on(id)?));
    }

    // --- Act 2: stop the leader; the other two carry on ------------------
    let (first_leader, first_term) = shared.leader().ok_or("no leader after act 1")?;
    shared.say(&format!("stopping {first_leader}, the leader of term {}", first_term.0));
    cluster.stop(first_leader)?;
    // Watch the first transfer below: the client tries a follower that still
    // believes in the stopped leader and forwards the command there, where it
    // is lost. Nobody answers; the client's own timeout notices, and it sends
    // the command again (same txn id) until the new leader commits it.
    // Enough transfers to cross the snapshot threshold while it is down, so
    // that the leader compacts past the stopped node's log.
    for round in 0..8u64 {
        let (from, to) = if round % 2 == 0 { ("alice", "carol") } else { ("carol", "bob") };
        shared.say(&format!("transfer {} {from} -> {to}: {}", round + 1, client.transfer(from, to, round + 1)?));
    }
    let (second_leader, second_term) = shared.leader().ok_or("no leader while a node is down")?;
    if second_leader == first_leader || second_term <= first_term {
        return Err(format!("expected a new leader after stopping {first_leader}, found {second_leader}"));
    }
    for id in NODES.into_iter().filter(|id| *id != first_leader) {
        shared.say(&format!("{id} reads: {}", client.read_all_on(id)?));
    }

    // --- Act 3: restart it from its own file; it catches up --------------
    let recovery = cluster.restart(first_leader)?;
    shared.say(&format!(
        "restarted {first_leader} from {} records: term {}, snapshot up to {}, {} log entries; \
         its ledger (from disk alone) is at index {} with total {}",
        recovery.records,
        recovery.term.0,
        recovery.snapshot_index.map_or("none".to_string(), |index| index.0.to_string()),
        recovery.log_entries,
        recovery.applied_index.0,
        recovery.total,
    ));
    // A linearizable read on the restarted node waits until it has applied
    // everything committed before the read: it has caught up.
    shared.say(&format!("{first_leader} reads: {}", client.read_all_on(first_leader)?));
    let before_restart = client.committed;
    for (from, to, amount) in [("bob", "alice", 5), ("carol", "bob", 7), ("alice", "carol", 1000)] {
        shared.say(&format!("transfer {amount} {from} -> {to}: {}", client.transfer(from, to, amount)?));
    }
    let committed_after_restart = client.committed - before_restart;

    // --- Curtain: every node agrees with the single-copy ledger ----------
    let mut final_balances = BTreeMap::new();
    for id in NODES {
        shared.say(&format!("{id} reads: {}", client.read_all_on(id)?));
    }
    for account in ACCOUNTS {
        let balance = client.read_on(first_leader, &format!("balance {account}"))?;
        final_balances.insert(account.to_string(), balance.parse::<u64>().map_err(|error| error.to_string())?);
    }
    cluster.shutdown()?;

    let journal = shared.journal();
    if !journal.alarms.is_empty() {
        return Err(format!("the nodes raised alarms: {:?}", journal.alarms));
    }
    shared.say("all nodes stopped; every answer matched a single-copy ledger");
    Ok(Summary {
        committed_commands: client.committed,
        committed_after_restart,
        reads_checked: client.reads_checked,
        leaders: journal.leaders.clone(),
        restarted: first_leader,
        restarted_term: first_term,
        recovery,
        snapshots_written: journal.snapshots_written,
        snapshots_installed: journal.snapshots_installed.clone(),
        final_balances,
        alarms: journal.alarms.clone(),
    })
}

fn main() {
    match run() {
        Ok(summary) => {
            println!();
            println!("commands committed:     {}", summary.committed_commands);
            println!("reads checked:          {}", summary.reads_checked);
            println!(
                "leaders (node, term):   {:?}",
                summary.leaders.iter().map(|(id, term)| (id.0, term.0)).collect::<Vec<_>>()
            );
            println!("snapshots written:      {}", summary.snapshots_written);
            println!("final balances:         {:?}", summary.final_balances);
        }
        Err(problem) => {
            eprintln!("FAILED: {problem}");
            std::process::exit(1);
        }
    }
}
