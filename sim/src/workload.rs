//! Concurrent clients doing get / put / compare-and-set on a small key space.
//!
//! Each client runs one operation at a time. It retries an operation — with
//! the same session sequence number, so a write takes effect at most once —
//! against other nodes after a timeout or a redirect. An operation whose
//! attempts may have reached a leader but never got an answer ends with an
//! unknown outcome, which the history records as such (Jepsen's `:info`).

use crate::history::{Function, Operation, Outcome, Value};
use chorus_core::kv::{KvCommand, KvOp, KvQuery, KvResponse, SessionRef};
use chorus_core::raft::{ClientResult, ReadConsistency};
use chorus_core::LogIndex;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How long a client waits for one attempt before trying another node.
pub const ATTEMPT_TIMEOUT_US: u64 = 400_000;
/// During the fault phase a client gives up on an operation this old.
pub const OPERATION_GIVE_UP_US: u64 = 4_000_000;
/// Pause between a client's operations (uniform up to this).
pub const THINK_TIME_MAX_US: u64 = 40_000;
/// Share of operations that start at a random node rather than at the node
/// that answered the client last.
pub const RANDOM_TARGET_PERCENT: u32 = 30;
/// Pause before retrying when no node knows a leader.
pub const NO_LEADER_BACKOFF_US: u64 = 50_000;

/// What a client sends to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// A write (put or compare-and-set): an encoded `KvCommand` carrying the
    /// client's session and sequence number, to be proposed to the Raft log.
    Propose(Vec<u8>),
    /// A get: an encoded `KvQuery` and the consistency the node must serve
    /// it with.
    Read(Vec<u8>, ReadConsistency),
}

/// Which consistency a get asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadLevel {
    /// [`ReadConsistency::Linearizable`] (ReadIndex); recorded in the
    /// history and checked for linearizability. 40% of gets.
    Linearizable,
    /// [`ReadConsistency::Lease`] (a leader lease when one runs, else
    /// ReadIndex); recorded in the history. 20% of gets.
    Lease,
    /// Served by any node that has applied at least the client's session
    /// index; recorded as a [`WeakRead`]. 25% of gets.
    Session,
    /// Served by any node from whatever it has applied; recorded as a
    /// [`WeakRead`]. 15% of gets.
    Stale,
}

/// A session or stale read that completed: checked against the committed
/// history instead of for linearizability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeakRead {
    /// The index (0-based) of the client that read.
    pub client: usize,
    /// The key read, `k0`, `k1`, ...
    pub key: String,
    /// The value returned; `None` if the key was absent (or the bytes were
    /// not a workload value).
    pub value: Option<i64>,
    /// [`ReadLevel::Session`] or [`ReadLevel::Stale`].
    pub level: ReadLevel,
    /// The answering node's applied index: the state the answer reflects.
    pub served_at: LogIndex,
    /// The client's session index when it sent the read.
    pub session: LogIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Get(ReadLevel),
    Put(i64),
    Cas { expected: Option<i64>, new: i64 },
}

#[derive(Clone, Debug)]
struct InFlight {
    kind: OpKind,
    key: usize,
    invoke_at: u64,
    sequence: u64,
    /// Some attempt may have been appended by a leader without an answer.
    ambiguous: bool,
}

#[derive(Clone, Debug)]
struct Client {
    session: u64,
    process: u64,
    sequence: u64,
    op: Option<InFlight>,
    /// Incremented per attempt; stale answers and timeouts carry old values.
    attempt: u64,
    target: usize,
    /// Last value this client saw per key, to aim compare-and-sets.
    last_seen: Vec<Option<i64>>,
    /// The highest applied index behind any answer this client got: its
    /// session token.
    session_index: LogIndex,
}

/// What the simulation should do next for a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientStep {
    /// Send this request to `node` now, tagged with `attempt`, and arm a
    /// timeout.
    Send {
        /// The node's 0-based index.
        node: usize,
        /// The attempt number; the answer and the timeout carry it back,
        /// and only the latest attempt's count.
        attempt: u64,
        /// What to send.
        request: ClientRequest,
    },
    /// Call [`Workload::next`] again after `delay_us`.
    Wait {
        /// Simulated microseconds to wait (0: at once, as a new event).
        delay_us: u64,
    },
    /// The client is finished with the workload.
    Idle,
    /// Nothing to do (a stale answer or timeout).
    Ignore,
}

/// How the workload's operations ended, over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Operations answered, including compare-and-sets that did not apply
    /// and session and stale reads.
    pub ok: u64,
    /// Operations given up without any attempt possibly having taken effect
    /// (only redirects and "no leader" answers).
    pub failed: u64,
    /// Operations given up, wrongly answered, or still in flight at the end
    /// after some attempt may have reached a leader: they may or may not have
    /// taken effect. Only writes among them appear in the history.
    pub unknown: u64,
}

/// The clients of one Raft simulation: they choose operations with the run's
/// RNG, and record the [`history`](Workload::history) the linearizability
/// checker reads and the [`weak_reads`](Workload::weak_reads) the read
/// checker reads. All times are simulated microseconds.
pub struct Workload {
    clients: Vec<Client>,
    nodes: usize,
    keys: usize,
    next_value: i64,
    next_process: u64,
    /// No new operations start at or after this time.
    pub stop_at_us: u64,
    /// Clients give up on operations only before this time (the fault phase).
    pub give_up_before_us: u64,
    /// `(every_us, length_us)`: no operation starts during the first
    /// `length_us` of every `every_us` (lulls in which groups go idle),
    /// before `give_up_before_us` (the fault phase).
    pub lulls: Option<(u64, u64)>,
    /// Completed and unknown-outcome operations in completion order (unknown
    /// ones when given up or at [`finish`](Workload::finish)); keys are
    /// `k0`, `k1`, ..., times are simulated microseconds. Session and stale
    /// reads are in `weak_reads` instead.
    pub history: Vec<Operation>,
    /// Completed session and stale reads.
    pub weak_reads: Vec<WeakRead>,
    /// How the operations ended so far.
    pub counts: OpCounts,
    /// The first answer that cannot be the answer to the operation it was
    /// given for (a remembered session answer handed to another request, a
    /// request id reused, undecodable bytes): a wrong result, which the
    /// simulation reports as a failure.
    pub wrong_answer: Option<String>,
}

fn key_name(key: usize) -> String {
    format!("k{key}")
}

pub(crate) fn encode_value(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// A value as the workload stores it.
pub fn decode_value(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

fn history_value(value: Option<i64>) -> Value {
    value.map_or(Value::Nil, Value::Int)
}

impl Workload {
    /// `clients` clients over a cluster of `nodes` nodes (client `i` starts
    /// at node `i % nodes`, with session id `i + 1` and Jepsen process `i`),
    /// on `keys` keys (`k0`..); no operation starts at or after `stop_at_us`.
    /// `nodes` and `keys` must be at least 1.
    pub fn new(clients: usize, nodes: usize, keys: usize, stop_at_us: u64) -> Workload {
        let clients = (0..clients)
            .map(|index| Client {
                session: index as u64 + 1,
                process: index as u64,
                sequence: 0,
                op: None,
                attempt: 0,
                target: index % nodes,
                last_seen: vec![None; keys],
                session_index: LogIndex::ZERO,
            })
            .collect::<Vec<_>>();
        let next_process = clients.len() as u64;
        Workload {
            clients,
            nodes,
            keys,
            next_value: 1,
            next_process,
            stop_at_us,
            give_up_before_us: u64::MAX,
            lulls: None,
            history: Vec::new(),
            weak_reads: Vec::new(),
            counts: OpCounts::default(),
            wrong_answer: None,
        }
    }

    /// How many clients there are; client indexes are `0..client_count()`.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Clients with an operation in flight: `(client index, invoke time in
    /// simulated microseconds)`.
    pub fn pending(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.clients.iter().enumerate().filter_map(|(index, client)| client.op.as_ref().map(|op| (index, op.invoke_at)))
    }

    /// Whether no client has an operation in flight.
    pub fn all_idle(&self) -> bool {
        self.clients.iter().all(|client| client.op.is_none())
    }

    /// Starts the client's next operation (or resends the current one).
    pub fn next(&mut self, client_index: usize, now: u64, rng: &mut ChaCha8Rng) -> ClientStep {
        let keys = self.keys;
        if self.clients[client_index].op.is_none() {
            if now >= self.stop_at_us {
                return ClientStep::Idle;
            }
            // No lull after the fault phase: the liveness phase needs an
            // operation for a leader to commit.
            if let Some((every_us, length_us)) = self.lulls.filter(|_| now < self.give_up_before_us) {
                let into = now % every_us;
                if into < length_us {
                    return ClientStep::Wait { delay_us: length_us - into };
                }
            }
            let key = rng.random_range(0..keys);
            let roll = rng.random_range(0..100);
            let kind = if roll < 40 {
                OpKind::Get(match rng.random_range(0..100) {
                    0..40 => ReadLevel::Linearizable,
                    40..60 => ReadLevel::Lease,
                    60..85 => ReadLevel::Session,
                    _ => ReadLevel::Stale,
                })
            } else if roll < 75 {
                self.next_value += 1;
                OpKind::Put(self.next_value)
            } else {
                self.next_value += 1;
                let seen = self.clients[client_index].last_seen[key];
                let expected = if rng.random_bool(0.8) { seen } else { Some(rng.random_range(1..=self.next_value)) };
                OpKind::Cas { expected, new: self.next_value }
            };
            let nodes = self.nodes;
            let client = &mut self.clients[client_index];
            // Like clients behind a load balancer, some operations start at a
            // random node (and follow its redirect) instead of the last leader.
            if rng.random_range(0..100) < RANDOM_TARGET_PERCENT {
                client.target = rng.random_range(0..nodes);
            }
            client.sequence += 1;
            client.op = Some(InFlight { kind, key, invoke_at: now, sequence: client.sequence, ambiguous: false });
        }
        self.send_current(client_index)
    }

    fn send_current(&mut self, client_index: usize) -> ClientStep {
        let client = &mut self.clients[client_index];
        let op = client.op.as_ref().expect("send_current needs an operation");
        client.attempt += 1;
        let key = key_name(op.key).into_bytes();
        let session = Some(SessionRef { client: client.session, sequence: op.sequence });
        let request = match op.kind {
            OpKind::Get(level) => {
                let consistency = match level {
                    ReadLevel::Linearizable => ReadConsistency::Linearizable,
                    ReadLevel::Lease => ReadConsistency::Lease,
                    ReadLevel::Session => ReadConsistency::Session { after: client.session_index },
                    ReadLevel::Stale => ReadConsistency::Stale,
                };
                ClientRequest::Read(KvQuery::Get { key }.encode(), consistency)
            }
            OpKind::Put(value) => ClientRequest::Propose(
                KvCommand { session, op: KvOp::Put { key, value: encode_value(value) } }.encode(),
            ),
            OpKind::Cas { expected, new } => ClientRequest::Propose(
                KvCommand {
                    session,
                    op: KvOp::Cas { key, expected: expected.map(encode_value), new: encode_value(new) },
                }
                .encode(),
            ),
        };
        ClientStep::Send { node: client.target, attempt: client.attempt, request }
    }

    /// A node answered attempt `attempt` of the client's current operation.
    /// `served_at` is the answering node's applied index after it answered.
    pub fn on_result(
        &mut self,
        client_index: usize,
        attempt: u64,
        result: &ClientResult,
        served_at: LogIndex,
        now: u64,
        rng: &mut ChaCha8Rng,
    ) -> ClientStep {
        let nodes = self.nodes;
        let client = &mut self.clients[client_index];
        if attempt != client.attempt || client.op.is_none() {
            return ClientStep::Ignore;
        }
        match result {
            ClientResult::Ok(bytes) => match KvResponse::decode(bytes) {
                Ok(response) => self.complete(client_index, response, served_at, now, rng),
                Err(error) => {
                    let kind = client.op.as_ref().expect("checked").kind;
                    let problem = format!("undecodable bytes ({error})");
                    self.wrong_answer(client_index, kind, problem)
                }
            },
            ClientResult::NotLeader { leader_hint } => {
                let hint = leader_hint.0 as usize;
                client.target = if (1..=nodes).contains(&hint) { hint - 1 } else { (client.target + 1) % nodes };
                self.retry_or_give_up(client_index, now, 0)
            }
            ClientResult::NoLeader => {
                client.target = rng.random_range(0..nodes);
                self.retry_or_give_up(client_index, now, NO_LEADER_BACKOFF_US)
            }
            ClientResult::Dropped(reason) => {
                if reason.outcome_unknown() {
                    client.op.as_mut().expect("checked").ambiguous = true;
                }
                client.target = (client.target + 1) % nodes;
                self.retry_or_give_up(client_index, now, NO_LEADER_BACKOFF_US)
            }
        }
    }

    /// Attempt `attempt` got no answer in time.
    pub fn on_timeout(&mut self, client_index: usize, attempt: u64, now: u64) -> ClientStep {
        let nodes = self.nodes;
        let client = &mut self.clients[client_index];
        if attempt != client.attempt || client.op.is_none() {
            return ClientStep::Ignore;
        }
        client.op.as_mut().expect("checked").ambiguous = true;
        client.target = (client.target + 1) % nodes;
        self.retry_or_give_up(client_index, now, 0)
    }

    fn retry_or_give_up(&mut self, client_index: usize, now: u64, delay_us: u64) -> ClientStep {
        let client = &mut self.clients[client_index];
        let op = client.op.as_ref().expect("retry needs an operation");
        if now < self.give_up_before_us && now.saturating_sub(op.invoke_at) >= OPERATION_GIVE_UP_US {
            self.give_up(client_index);
            return ClientStep::Wait { delay_us: 0 };
        }
        if delay_us == 0 {
            self.send_current(client_index)
        } else {
            ClientStep::Wait { delay_us }
        }
    }

    /// An answer that does not fit the operation: a wrong result for a real
    /// client. Recorded as a failure; the operation ends with an unknown
    /// outcome (whatever happened to it, the client was not told).
    fn wrong_answer(&mut self, client_index: usize, kind: OpKind, answer: String) -> ClientStep {
        self.wrong_answer.get_or_insert_with(|| {
            format!("wrong answer: client c{client_index}'s {kind:?} was answered {answer}, which does not fit it")
        });
        let client = &mut self.clients[client_index];
        client.op.as_mut().expect("an operation is in flight").ambiguous = true;
        self.give_up(client_index);
        ClientStep::Wait { delay_us: 0 }
    }

    /// Ends the client's current operation without an answer.
    fn give_up(&mut self, client_index: usize) {
        let client = &mut self.clients[client_index];
        let op = client.op.take().expect("giving up needs an operation");
        client.attempt += 1; // late answers to the abandoned op are ignored
        let writes = !matches!(op.kind, OpKind::Get(_));
        if op.ambiguous && writes {
            self.counts.unknown += 1;
            let process = client.process;
            // Like Jepsen, a client whose operation is in doubt continues
            // as a new process.
            client.process = self.next_process;
            self.next_process += 1;
            self.history.push(Operation {
                process,
                key: Some(key_name(op.key)),
                function: function_of(op.kind),
                outcome: Outcome::Unknown,
                invoke_at: op.invoke_at,
                complete_at: None,
            });
        } else if op.ambiguous {
            self.counts.unknown += 1; // an unanswered read has no effect to record
        } else {
            self.counts.failed += 1;
        }
    }

    fn complete(
        &mut self,
        client_index: usize,
        response: KvResponse,
        served_at: LogIndex,
        now: u64,
        rng: &mut ChaCha8Rng,
    ) -> ClientStep {
        let fits = matches!(
            (self.clients[client_index].op.as_ref().expect("complete needs an operation").kind, &response),
            (OpKind::Get(_), KvResponse::Value(_))
                | (OpKind::Put(_), KvResponse::Done)
                | (OpKind::Cas { .. }, KvResponse::Cas { .. })
        );
        if !fits {
            let kind = self.clients[client_index].op.as_ref().expect("checked").kind;
            return self.wrong_answer(client_index, kind, format!("{response:?}"));
        }
        let client = &mut self.clients[client_index];
        let op = client.op.take().expect("complete needs an operation");
        client.attempt += 1;
        let session_before = client.session_index;
        client.session_index = client.session_index.max(served_at);
        let outcome = match (op.kind, response) {
            (OpKind::Get(level @ (ReadLevel::Session | ReadLevel::Stale)), KvResponse::Value(value)) => {
                let value = value.as_deref().and_then(decode_value);
                client.last_seen[op.key] = value;
                self.counts.ok += 1;
                self.weak_reads.push(WeakRead {
                    client: client_index,
                    key: key_name(op.key),
                    value,
                    level,
                    served_at,
                    session: session_before,
                });
                return ClientStep::Wait { delay_us: rng.random_range(0..=THINK_TIME_MAX_US) };
            }
            (OpKind::Get(_), KvResponse::Value(value)) => {
                let value = value.as_deref().and_then(decode_value);
                client.last_seen[op.key] = value;
                Outcome::Ok { read: Some(history_value(value)) }
            }
            (OpKind::Put(value), KvResponse::Done) => {
                client.last_seen[op.key] = Some(value);
                Outcome::Ok { read: None }
            }
            (OpKind::Cas { new, .. }, KvResponse::Cas { applied, current }) => {
                if applied {
                    client.last_seen[op.key] = Some(new);
                    Outcome::Ok { read: None }
                } else {
                    client.last_seen[op.key] = current.as_deref().and_then(decode_value);
                    Outcome::CasMismatch
                }
            }
            (kind, response) => unreachable!("checked above that {response:?} fits {kind:?}"),
        };
        self.counts.ok += 1;
        self.history.push(Operation {
            process: client.process,
            key: Some(key_name(op.key)),
            function: function_of(op.kind),
            outcome,
            invoke_at: op.invoke_at,
            complete_at: Some(now),
        });
        ClientStep::Wait { delay_us: rng.random_range(0..=THINK_TIME_MAX_US) }
    }

    /// Records operations still in flight when the run ends.
    pub fn finish(&mut self) {
        for index in 0..self.clients.len() {
            let client = &mut self.clients[index];
            if let Some(op) = client.op.take() {
                self.counts.unknown += 1;
                if !matches!(op.kind, OpKind::Get(_)) {
                    self.history.push(Operation {
                        process: client.process,
                        key: Some(key_name(op.key)),
                        function: function_of(op.kind),
                        outcome: Outcome::Unknown,
                        invoke_at: op.invoke_at,
                        complete_at: None,
                    });
                }
            }
        }
    }
}

fn function_of(kind: OpKind) -> Function {
    match kind {
        OpKind::Get(_) => Function::Read,
        OpKind::Put(value) => Function::Write(Value::Int(value)),
        OpKind::Cas { expected, new } => Function::Cas { expected: history_value(expected), new: Value::Int(new) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Drives client 0 until its operation is a compare-and-set.
    fn client_with_cas(workload: &mut Workload, rng: &mut ChaCha8Rng) -> u64 {
        for now in 0..10_000 {
            if let ClientStep::Send { attempt, request: ClientRequest::Propose(bytes), .. } = workload.next(0, now, rng)
            {
                let command = KvCommand::decode(&bytes).expect("the workload encodes commands");
                if matches!(command.op, KvOp::Cas { .. }) {
                    return attempt;
                }
            }
            // Finish whatever else it started, so the next call starts anew.
            workload.clients[0].op = None;
        }
        panic!("no compare-and-set in 10,000 operations");
    }

    #[test]
    fn an_answer_of_the_wrong_kind_is_a_failure_not_a_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut workload = Workload::new(1, 3, 2, u64::MAX);
        let attempt = client_with_cas(&mut workload, &mut rng);
        let done = ClientResult::Ok(KvResponse::Done.encode());
        let step = workload.on_result(0, attempt, &done, LogIndex(5), 20_000, &mut rng);
        assert_eq!(step, ClientStep::Wait { delay_us: 0 });
        let failure = workload.wrong_answer.clone().expect("the wrong answer is recorded");
        assert!(failure.contains("Cas") && failure.contains("Done"), "{failure}");
        assert!(workload.all_idle(), "the operation ended");
        assert_eq!(workload.counts.unknown, 1, "its outcome is unknown");
        let garbage = ClientResult::Ok(vec![0xff; 3]);
        let attempt = client_with_cas(&mut workload, &mut rng);
        workload.on_result(0, attempt, &garbage, LogIndex(6), 30_000, &mut rng);
        assert_eq!(workload.wrong_answer, Some(failure), "the first wrong answer is kept");
    }
}
