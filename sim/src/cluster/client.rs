//! Cluster clients: get / put / delete / compare-and-set on keys spread over
//! every range, routed with each client's own cache (key → range → leader),
//! retried on redirects and timeouts with the same session sequence number,
//! so a write takes effect at most once. After convergence each client
//! writes and reads back its share of the keys at every consistency level
//! that is checked: the cluster must serve every key again.

use crate::history::{Function, Operation, Outcome, Value};
use crate::workload::{ReadLevel, WeakRead};
use chorus_core::cluster::{ClientOp, ClusterResult};
use chorus_core::kv::{KvCommand, KvOp, KvQuery, KvResponse, SessionRef};
use chorus_core::partition::RangeId;
use chorus_core::raft::{DropReason, ReadConsistency};
use chorus_core::LogIndex;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// How long a client waits for one attempt.
pub(super) const ATTEMPT_TIMEOUT_US: u64 = 500_000;
/// A client gives up on an operation this old (during the faults).
pub(super) const GIVE_UP_US: u64 = 5_000_000;
/// In the final round, an operation must succeed within this long.
pub(super) const FINAL_GIVE_UP_US: u64 = 15_000_000;
/// Pause between operations (uniform up to this).
const THINK_US: u64 = 30_000;
/// Pause before retrying when nobody knew a leader.
const BACKOFF_US: u64 = 50_000;

/// One attempt for the world to send.
#[derive(Clone, Debug)]
pub(super) struct ClientAttempt {
    pub(super) client: usize,
    pub(super) attempt: u64,
    pub(super) node: usize,
    pub(super) key: String,
    pub(super) op: ClientOp,
}

/// What the world must do for a client.
#[derive(Clone, Debug)]
pub(super) enum Step {
    /// Send an attempt.
    Send(ClientAttempt),
    /// Wake the client at this time.
    NextAt(usize, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get(ReadConsistency),
    Put(i64),
    Delete,
    Cas { expected: Option<i64>, new: i64 },
}

#[derive(Clone, Debug)]
struct Pending {
    key: String,
    kind: Kind,
    invoke_at: u64,
    sequence: u64,
    attempt: u64,
    /// Some attempt may have been appended somewhere.
    maybe_applied: bool,
    give_up_at: u64,
    final_round: bool,
}

#[derive(Clone, Debug, Default)]
struct Client {
    sequence: u64,
    pending: Option<Pending>,
    /// Routing cache: key → range, range → leader.
    ranges: BTreeMap<String, RangeId>,
    leaders: BTreeMap<RangeId, usize>,
    /// Keys left for the final round.
    final_keys: Vec<String>,
    /// Where the current final-round key is: 0 put, 1 linearizable read,
    /// 2 lease read.
    final_step: u8,
    /// Per range, the highest applied index an answer came from: the
    /// session token of the client's session reads.
    tokens: BTreeMap<RangeId, LogIndex>,
    /// Attempts sent, over all operations: an attempt's number is unique,
    /// so a late answer to an earlier operation is never taken for one to
    /// the current.
    attempts: u64,
}

/// Every client and the history they produce.
pub(super) struct Workload {
    clients: Vec<Client>,
    keys: usize,
    nodes: usize,
    next_value: i64,
    final_round: bool,
    /// The completed operations.
    pub(super) history: Vec<Operation>,
    /// A final-round operation that could not complete.
    pub(super) final_failure: Option<String>,
    /// Session and stale reads that completed, with the range that served them.
    pub(super) weak_reads: Vec<(RangeId, WeakRead)>,
}

fn encode_value(value: i64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

fn decode_value(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

fn value(v: Option<i64>) -> Value {
    v.map_or(Value::Nil, Value::Int)
}

impl Workload {
    /// `clients` clients on `keys` keys over `nodes` node slots.
    pub(super) fn new(clients: usize, keys: usize, nodes: usize) -> Workload {
        Workload {
            clients: vec![Client::default(); clients],
            keys,
            nodes,
            next_value: 1,
            final_round: false,
            history: Vec::new(),
            final_failure: None,
            weak_reads: Vec::new(),
        }
    }

    pub(super) fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The key of a client's attempt, if it is the current one.
    pub(super) fn key_of(&self, client: usize, attempt: u64) -> Option<String> {
        let pending = self.clients[client].pending.as_ref()?;
        (pending.attempt == attempt).then(|| pending.key.clone())
    }

    /// After convergence: each client writes and reads back its keys.
    pub(super) fn start_final_round(&mut self) {
        self.final_round = true;
        let count = self.clients.len();
        for (index, client) in self.clients.iter_mut().enumerate() {
            client.final_keys = (0..self.keys).filter(|k| k % count == index).rev().map(|k| format!("k{k}")).collect();
        }
    }

    /// Whether every client finished its final round (trivially, with no
    /// clients).
    pub(super) fn final_round_done(&self) -> bool {
        self.final_failure.is_some()
            || (self.final_round && self.clients.iter().all(|c| c.final_keys.is_empty() && c.pending.is_none()))
            || self.clients.is_empty() && self.final_round
    }

    /// The client starts its next operation, if it has none.
    pub(super) fn next(&mut self, index: usize, now: u64, rng: &mut ChaCha8Rng) -> Vec<Step> {
        if self.clients[index].pending.is_some() {
            return self.resend(index, now, rng);
        }
        let (key, kind, final_round) = if self.final_round {
            let Some(key) = self.clients[index].final_keys.last().cloned() else { return Vec::new() };
            (key, self.final_kind(index), true)
        } else {
            let key = format!("k{}", rng.random_range(0..self.keys));
            (key, self.random_kind(rng), false)
        };
        let client = &mut self.clients[index];
        let sequence = if matches!(kind, Kind::Get(_)) { 0 } else { client.sequence + 1 };
        if sequence > 0 {
            client.sequence = sequence;
        }
        let give_up = if final_round { FINAL_GIVE_UP_US } else { GIVE_UP_US };
        client.pending = Some(Pending {
            key,
            kind,
            invoke_at: now,
            sequence,
            attempt: 0,
            maybe_applied: false,
            give_up_at: now + give_up,
            final_round,
        });
        vec![Step::Send(self.attempt(index, None, rng))]
    }

    fn random_kind(&mut self, rng: &mut ChaCha8Rng) -> Kind {
        let roll = rng.random_range(0..100);
        let v = self.fresh_value();
        match roll {
            0..40 => Kind::Put(v),
            40..55 => Kind::Get(ReadConsistency::Linearizable),
            55..68 => Kind::Get(ReadConsistency::Lease),
            68..71 => Kind::Get(ReadConsistency::Session { after: LogIndex::ZERO }),
            71..75 => Kind::Get(ReadConsistency::Stale),
            75..90 => Kind::Cas { expected: rng.random_bool(0.3).then(|| rng.random_range(1..v.max(2))), new: v },
            _ => Kind::Delete,
        }
    }

    /// The final round: a put, then a linearizable and a lease read of it.
    fn final_kind(&mut self, index: usize) -> Kind {
        match self.clients[index].final_step {
            0 => Kind::Put(self.fresh_value()),
            1 => Kind::Get(ReadConsistency::Linearizable),
            _ => Kind::Get(ReadConsistency::Lease),
        }
    }

    fn fresh_value(&mut self) -> i64 {
        self.next_value += 1;
        self.next_value
    }

    /// The next attempt of the client's operation, at `node` or where its
    /// cache points.
    fn attempt(&mut self, index: usize, node: Option<usize>, rng: &mut ChaCha8Rng) -> ClientAttempt {
        let nodes = self.nodes;
        let client = &mut self.clients[index];
        let pending = client.pending.as_mut().expect("an operation is pending");
        client.attempts += 1;
        pending.attempt = client.attempts;
        let cached = client.ranges.get(&pending.key).and_then(|range| client.leaders.get(range)).copied();
        let node = node.or(cached).unwrap_or_else(|| rng.random_range(0..nodes));
        let key = pending.key.clone();
        let session = Some(SessionRef { client: index as u64 + 1, sequence: pending.sequence });
        let op = match pending.kind {
            Kind::Get(consistency) => {
                // A session read asks for the state the client has seen
                // from the key's range, as far as it knows the range.
                let consistency = match consistency {
                    ReadConsistency::Session { .. } => {
                        let token = client.ranges.get(&key).and_then(|r| client.tokens.get(r)).copied();
                        let after = token.unwrap_or_default();
                        pending.kind = Kind::Get(ReadConsistency::Session { after });
                        ReadConsistency::Session { after }
                    }
                    other => other,
                };
                ClientOp::Read { query: KvQuery::Get { key: key.as_bytes().to_vec() }.encode(), consistency }
            }
            Kind::Put(v) => write(session, KvOp::Put { key: key.as_bytes().to_vec(), value: encode_value(v) }),
            Kind::Delete => write(session, KvOp::Delete { key: key.as_bytes().to_vec() }),
            Kind::Cas { expected, new } => write(
                session,
                KvOp::Cas {
                    key: key.as_bytes().to_vec(),
                    expected: expected.map(encode_value),
                    new: encode_value(new),
                },
            ),
        };
        ClientAttempt { client: index, attempt: pending.attempt, node, key, op }
    }

    /// An answer to an attempt.
    pub(super) fn on_answer(
        &mut self,
        index: usize,
        attempt: u64,
        result: ClusterResult,
        served_by: Option<(RangeId, LogIndex)>,
        now: u64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Step> {
        let Some(pending) = self.clients[index].pending.as_mut().filter(|p| p.attempt == attempt) else {
            return Vec::new();
        };
        match result {
            ClusterResult::Ok(bytes) => self.complete(index, &bytes, served_by, now),
            ClusterResult::Redirect { range, leader } => {
                let key = pending.key.clone();
                let client = &mut self.clients[index];
                client.ranges.insert(key, range);
                match leader.map(|l| l.0 as usize - 1).filter(|&l| l < self.nodes) {
                    Some(leader) => {
                        client.leaders.insert(range, leader);
                        self.retry(index, Some(leader), now, rng)
                    }
                    None => {
                        client.leaders.remove(&range);
                        vec![Step::NextAt(index, now + BACKOFF_US)]
                    }
                }
            }
            ClusterResult::RangeUnknown | ClusterResult::Dropped(DropReason::Overloaded) => {
                vec![Step::NextAt(index, now + BACKOFF_US)]
            }
            ClusterResult::Dropped(reason) => {
                pending.maybe_applied |= reason.outcome_unknown();
                self.retry(index, None, now, rng)
            }
        }
    }

    /// A timed-out attempt: it may have been appended.
    pub(super) fn on_timeout(&mut self, index: usize, attempt: u64, now: u64, rng: &mut ChaCha8Rng) -> Vec<Step> {
        let Some(pending) = self.clients[index].pending.as_mut().filter(|p| p.attempt == attempt) else {
            return Vec::new();
        };
        pending.maybe_applied = true;
        let key = pending.key.clone();
        let client = &mut self.clients[index];
        if let Some(range) = client.ranges.get(&key) {
            client.leaders.remove(range);
        }
        self.retry(index, None, now, rng)
    }

    fn retry(&mut self, index: usize, node: Option<usize>, now: u64, rng: &mut ChaCha8Rng) -> Vec<Step> {
        let pending = self.clients[index].pending.as_ref().expect("pending");
        if now >= pending.give_up_at {
            return self.give_up(index, now);
        }
        vec![Step::Send(self.attempt(index, node, rng))]
    }

    /// A `NextAt` wake-up with an operation pending re-sends it.
    pub(super) fn resend(&mut self, index: usize, now: u64, rng: &mut ChaCha8Rng) -> Vec<Step> {
        if self.clients[index].pending.is_none() {
            return Vec::new();
        }
        self.retry(index, None, now, rng)
    }

    fn give_up(&mut self, index: usize, now: u64) -> Vec<Step> {
        let pending = self.clients[index].pending.take().expect("pending");
        if pending.final_round {
            self.final_failure.get_or_insert_with(|| {
                format!(
                    "final round: client {index} could not complete {:?} on {} within {} ms after convergence",
                    pending.kind,
                    pending.key,
                    FINAL_GIVE_UP_US / 1000
                )
            });
        }
        if pending.maybe_applied && !matches!(pending.kind, Kind::Get(_)) {
            self.record(index, &pending, Outcome::Unknown, None);
        }
        vec![Step::NextAt(index, now + THINK_US)]
    }

    fn complete(&mut self, index: usize, bytes: &[u8], served_by: Option<(RangeId, LogIndex)>, now: u64) -> Vec<Step> {
        let pending = self.clients[index].pending.take().expect("pending");
        if let Some((range, served_at)) = served_by {
            let client = &mut self.clients[index];
            client.ranges.insert(pending.key.clone(), range);
            let token = client.tokens.entry(range).or_default();
            *token = (*token).max(served_at);
        }
        let weak = match pending.kind {
            Kind::Get(ReadConsistency::Stale) => Some((ReadLevel::Stale, LogIndex::ZERO)),
            Kind::Get(ReadConsistency::Session { after }) => Some((ReadLevel::Session, after)),
            _ => None,
        };
        if let (Some((level, session)), Ok(KvResponse::Value(v)), Some((range, served_at))) =
            (weak, KvResponse::decode(bytes), served_by)
        {
            // Session and stale reads are checked against the committed
            // history of their range at the index they were served at, not
            // for linearizability.
            let value = v.as_deref().and_then(decode_value);
            let read = WeakRead { client: index, key: pending.key.clone(), value, level, served_at, session };
            self.weak_reads.push((range, read));
            return vec![Step::NextAt(index, now + 1 + (now % THINK_US))];
        }
        let outcome = match (KvResponse::decode(bytes), pending.kind) {
            (Ok(KvResponse::Value(v)), Kind::Get(_)) => {
                Some(Outcome::Ok { read: Some(value(v.as_deref().and_then(decode_value))) })
            }
            (Ok(KvResponse::Done), Kind::Put(_) | Kind::Delete) => Some(Outcome::Ok { read: None }),
            (Ok(KvResponse::Cas { applied: true, .. }), Kind::Cas { .. }) => Some(Outcome::Ok { read: None }),
            (Ok(KvResponse::Cas { applied: false, .. }), Kind::Cas { .. }) => Some(Outcome::CasMismatch),
            _ => None,
        };
        let Some(outcome) = outcome else {
            self.final_failure
                .get_or_insert_with(|| format!("client {index}: unexpected answer to {:?}", pending.kind));
            return Vec::new();
        };
        self.record(index, &pending, outcome, Some(now));
        if pending.final_round {
            let client = &mut self.clients[index];
            client.final_step = (client.final_step + 1) % 3;
            if client.final_step == 0 {
                client.final_keys.pop();
            }
        }
        let mut steps = vec![Step::NextAt(index, now + 1)];
        if !self.final_round {
            steps = vec![Step::NextAt(index, now + 1 + (now % THINK_US))];
        }
        steps
    }

    fn record(&mut self, index: usize, pending: &Pending, outcome: Outcome, complete_at: Option<u64>) {
        let function = match pending.kind {
            Kind::Get(_) => Function::Read,
            Kind::Put(v) => Function::Write(Value::Int(v)),
            Kind::Delete => Function::Delete,
            Kind::Cas { expected, new } => Function::Cas { expected: value(expected), new: Value::Int(new) },
        };
        self.history.push(Operation {
            process: index as u64,
            key: Some(pending.key.clone()),
            function,
            outcome,
            invoke_at: pending.invoke_at,
            complete_at,
        });
    }
}

fn write(session: Option<SessionRef>, op: KvOp) -> ClientOp {
    ClientOp::Write(KvCommand { session, op }.encode().into())
}
