//! The built-in key-value state machine: get, put, delete and compare-and-set,
//! with client sessions so that a retried write takes effect once.
//!
//! A client numbers its writes 1, 2, 3, ... within its session and retries a
//! write with the same number until it gets an answer. The store remembers the
//! last number and answer per client, so a retry that arrives after the
//! original was applied gets the original answer instead of applying twice.

use crate::state_machine::{RestoreError, StateMachine};
use crate::types::LogIndex;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasherDefault;

/// Default for [`KvStore::with_max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 4096;

/// A client's identity and the number of this write within its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The client's identity, chosen by the client; sessions are keyed by it,
    /// so two live clients must never share one.
    pub client: u64,
    /// This write's number within the session (1, 2, 3, ...); a retry reuses
    /// it. A repeat of the last number gets the recorded answer, a lower
    /// number gets [`KvResponse::SessionStale`], and a higher one is applied
    /// (gaps are not checked).
    pub sequence: u64,
}

/// A write.
///
/// Keys and values are serialized as serde bytes: in bincode the same
/// encoding as a sequence of u8 (a length, then the bytes), written at once
/// instead of byte by byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Store `value` under `key`, replacing any value. Answered
    /// [`KvResponse::Done`].
    Put {
        /// The key (any bytes).
        #[serde(serialize_with = "serialize_bytes")]
        key: Vec<u8>,
        /// The value to store.
        #[serde(serialize_with = "serialize_bytes")]
        value: Vec<u8>,
    },
    /// Remove `key`. Answered [`KvResponse::Done`] whether or not it was
    /// present.
    Delete {
        /// The key to remove.
        #[serde(serialize_with = "serialize_bytes")]
        key: Vec<u8>,
    },
    /// Set `key` to `new` if it currently holds `expected` (`None`: absent).
    /// Answered [`KvResponse::Cas`].
    Cas {
        /// The key to compare and set.
        #[serde(serialize_with = "serialize_bytes")]
        key: Vec<u8>,
        /// The value the key must hold for the write to happen; `None`
        /// requires the key to be absent.
        #[serde(serialize_with = "serialize_optional_bytes")]
        expected: Option<Vec<u8>>,
        /// The value stored if the comparison holds.
        #[serde(serialize_with = "serialize_bytes")]
        new: Vec<u8>,
    },
}

/// Serializes `bytes` as serde bytes (see [`KvOp`]).
fn serialize_bytes<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Serializes optional bytes as an option of serde bytes (see [`KvOp`]).
fn serialize_optional_bytes<S: serde::Serializer>(bytes: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
    struct AsBytes<'a>(&'a [u8]);
    impl Serialize for AsBytes<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }
    match bytes {
        Some(bytes) => serializer.serialize_some(&AsBytes(bytes)),
        None => serializer.serialize_none(),
    }
}

/// A write as proposed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCommand {
    /// The client session that makes a retry take effect once. `None`: the
    /// write is applied each time it is committed, so a retried write may
    /// apply twice.
    pub session: Option<SessionRef>,
    /// The write itself.
    pub op: KvOp,
}

/// A [`KvCommand`] decoded in place: keys and values borrow from the
/// command's bytes, so applying a put to an existing key copies the value
/// into the stored one instead of allocating a key and a value. Its serde
/// layout mirrors `KvCommand` field for field and variant for variant
/// (`borrowed_decoding_matches_owned_decoding` checks it).
#[derive(Deserialize)]
struct KvCommandRef<'a> {
    session: Option<SessionRef>,
    #[serde(borrow)]
    op: KvOpRef<'a>,
}

#[derive(Deserialize)]
enum KvOpRef<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    Delete {
        key: &'a [u8],
    },
    Cas {
        key: &'a [u8],
        #[serde(borrow)]
        expected: Option<&'a [u8]>,
        new: &'a [u8],
    },
}

/// A read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The value of `key`, answered [`KvResponse::Value`].
    Get {
        /// The key to read.
        key: Vec<u8>,
    },
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// A put or delete took effect.
    Done,
    /// The value of a key (`None`: absent).
    Value(Option<Vec<u8>>),
    /// A compare-and-set; `applied` tells whether the compare matched.
    Cas {
        /// The key held `expected` and now holds `new`.
        applied: bool,
        /// The key's value before this command (`None`: absent); equal to
        /// `expected` when `applied`.
        current: Option<Vec<u8>>,
    },
    /// The request's sequence number is older than the session's last one:
    /// the original answer is no longer known. Nothing changed.
    SessionStale {
        /// The last sequence number the store recorded for this client.
        last_sequence: u64,
    },
    /// The command or query could not be decoded. Nothing changed.
    Malformed(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    last_sequence: u64,
    last_response: KvResponse,
    last_index: LogIndex,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KvSnapshot {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    sessions: BTreeMap<u64, Session>,
}

/// What a snapshot encodes: the same layout as [`KvSnapshot`], in key order,
/// borrowing the store's maps instead of copying them.
#[derive(Serialize)]
struct KvSnapshotRef<'a> {
    data: BTreeMap<&'a [u8], &'a [u8]>,
    sessions: BTreeMap<u64, &'a Session>,
}

/// Hash maps with a fixed hasher (SipHash with zero keys): no process-wide
/// random state in the core. Nothing iterates them where order could leak
/// into behaviour; snapshots sort.
type FixedHashMap<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

/// The key-value state machine.
///
/// A write costs O(1) map work: hash maps for data and sessions, and an
/// activity queue in apply order for evicting the least recently active
/// session (an entry there is stale once its session has written again;
/// stale entries are skipped when evicting and dropped when they outnumber
/// the live ones).
#[derive(Clone, Debug)]
pub struct KvStore {
    data: FixedHashMap<Vec<u8>, Vec<u8>>,
    sessions: FixedHashMap<u64, Session>,
    /// `(last_index, client)` of session writes in apply order; the live
    /// entry of each session is the one matching its `last_index`.
    activity: VecDeque<(LogIndex, u64)>,
    max_sessions: usize,
}

/// Stores are equal when they hold the same data and sessions (the activity
/// queue is bookkeeping: its stale entries depend on history, not state).
impl PartialEq for KvStore {
    fn eq(&self, other: &KvStore) -> bool {
        self.data == other.data && self.sessions == other.sessions && self.max_sessions == other.max_sessions
    }
}

impl Eq for KvStore {}

fn codec() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value with the crate's bincode configuration.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // `bincode::serde::encode_to_vec` grows its buffer from empty, which
    // takes four allocations for a small command; counting the bytes first
    // takes one.
    let mut counter = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut counter, codec())
        .expect("invariant: in-memory values always encode");
    let mut bytes = Vec::with_capacity(counter.bytes_written);
    bincode::serde::encode_into_std_write(value, &mut bytes, codec())
        .expect("invariant: in-memory values always encode, and writing to a Vec cannot fail");
    bytes
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, codec()).map_err(|error| error.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

/// Decodes a command without copying its keys and values.
fn decode_command(bytes: &[u8]) -> Result<KvCommandRef<'_>, String> {
    let decoded: Result<(KvCommandRef<'_>, usize), _> = bincode::serde::borrow_decode_from_slice(bytes, codec());
    match decoded {
        Ok((command, used)) if used == bytes.len() => Ok(command),
        // Malformed: answer with the owned decoder's error, as the store
        // always has.
        Ok((_, used)) => Err(format!("{} trailing bytes", bytes.len() - used)),
        Err(error) => Err(decode::<KvCommand>(bytes).err().unwrap_or_else(|| error.to_string())),
    }
}

impl KvCommand {
    /// Encodes the command in the store's format (bincode, standard
    /// configuration), ready for [`RaftNode::propose`](crate::raft::RaftNode::propose).
    pub fn encode(&self) -> Vec<u8> {
        // One pass into a buffer sized by an upper bound (what `encode`'s
        // counting pass would take costs as much as the encoding itself).
        let mut bytes = Vec::with_capacity(self.encoded_len_bound());
        bincode::serde::encode_into_std_write(self, &mut bytes, codec())
            .expect("invariant: in-memory values always encode, and writing to a Vec cannot fail");
        bytes
    }

    /// At least the encoded length: every varint at its longest (10 bytes).
    fn encoded_len_bound(&self) -> usize {
        const VARINT: usize = 10;
        let field = |bytes: &[u8]| VARINT + bytes.len();
        let op = match &self.op {
            KvOp::Put { key, value } => field(key) + field(value),
            KvOp::Delete { key } => field(key),
            KvOp::Cas { key, expected, new } => field(key) + 1 + expected.as_deref().map_or(0, field) + field(new),
        };
        1 + 2 * VARINT + VARINT + op
    }
    /// Decodes a command (what [`KvStore`] applies); an error names the
    /// problem.
    pub fn decode(bytes: &[u8]) -> Result<KvCommand, String> {
        decode(bytes)
    }
}

impl KvQuery {
    /// Encodes the query, ready for [`RaftNode::read`](crate::raft::RaftNode::read).
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

impl KvResponse {
    /// Encodes the answer, as [`KvStore`]'s `apply` and `query` return it.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
    /// Decodes the store's answer (the bytes of a
    /// [`ClientResult::Ok`](crate::raft::ClientResult::Ok)); an error names
    /// the problem.
    pub fn decode(bytes: &[u8]) -> Result<KvResponse, String> {
        decode(bytes)
    }
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::with_max_sessions(DEFAULT_MAX_SESSIONS)
    }
}

impl KvStore {
    /// A store remembering at most `max_sessions` client sessions; beyond it
    /// the least recently active session is forgotten (a retry in a forgotten
    /// session may apply twice, so size this above the number of live clients).
    /// 0 counts as 1. Every replica must use the same limit: which sessions
    /// are forgotten is part of the replicated state, and the limit is not in
    /// the snapshot.
    pub fn with_max_sessions(max_sessions: usize) -> KvStore {
        KvStore {
            data: FixedHashMap::default(),
            sessions: FixedHashMap::default(),
            activity: VecDeque::new(),
            max_sessions: max_sessions.max(1),
        }
    }

    /// The value stored under `key` in this replica, read directly rather than
    /// through Raft: as fresh as this replica's applied index, no more.
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.data.get(key)
    }

    /// How many keys this replica stores.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether this replica stores no key.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn execute(&mut self, op: KvOpRef<'_>) -> KvResponse {
        match op {
            KvOpRef::Put { key, value } => {
                self.put(key, value);
                KvResponse::Done
            }
            KvOpRef::Delete { key } => {
                self.data.remove(key);
                KvResponse::Done
            }
            KvOpRef::Cas { key, expected, new } => {
                let current = self.data.get(key).cloned();
                if current.as_deref() == expected {
                    self.put(key, new);
                    KvResponse::Cas { applied: true, current }
                } else {
                    KvResponse::Cas { applied: false, current }
                }
            }
        }
    }

    /// Stores `value` under `key`, reusing the old value's buffer when it is
    /// not much larger than the new value (so a key that once held a large
    /// value does not keep its memory).
    fn put(&mut self, key: &[u8], value: &[u8]) {
        match self.data.get_mut(key) {
            Some(stored) if stored.capacity() <= 2 * value.len() + 64 => {
                stored.clear();
                stored.extend_from_slice(value);
            }
            Some(stored) => *stored = value.to_vec(),
            None => {
                self.data.insert(key.to_vec(), value.to_vec());
            }
        }
    }

    fn record_session(&mut self, index: LogIndex, session: SessionRef, response: KvResponse) {
        let recorded = Session { last_sequence: session.sequence, last_response: response, last_index: index };
        self.sessions.insert(session.client, recorded);
        self.activity.push_back((index, session.client));
        while self.sessions.len() > self.max_sessions {
            let (last_index, client) =
                self.activity.pop_front().expect("invariant: every session has a live activity entry");
            if self.sessions.get(&client).is_some_and(|session| session.last_index == last_index) {
                self.sessions.remove(&client);
            }
        }
        // Stale entries (sessions that wrote again) go once they outnumber
        // the live ones: amortised O(1) per write, memory O(sessions).
        if self.activity.len() > 2 * self.sessions.len() + 64 {
            let sessions = &self.sessions;
            self.activity
                .retain(|(last_index, client)| sessions.get(client).is_some_and(|s| s.last_index == *last_index));
        }
    }

    /// Applies a command; encodes its answer only if `answer` (followers
    /// throw it away).
    fn apply_command(&mut self, index: LogIndex, command: &[u8], answer: bool) -> Option<Vec<u8>> {
        let command = match decode_command(command) {
            Ok(command) => command,
            Err(error) => return answer.then(|| KvResponse::Malformed(error).encode()),
        };
        let Some(session) = command.session else {
            let response = self.execute(command.op);
            return answer.then(|| response.encode());
        };
        if let Some(known) = self.sessions.get(&session.client) {
            if session.sequence == known.last_sequence {
                return answer.then(|| known.last_response.encode());
            }
            if session.sequence < known.last_sequence {
                return answer.then(|| KvResponse::SessionStale { last_sequence: known.last_sequence }.encode());
            }
        }
        let response = self.execute(command.op);
        let encoded = answer.then(|| response.encode());
        self.record_session(index, session, response);
        encoded
    }

    /// The activity queue of `sessions`: their last writes in index order.
    fn activity_of(sessions: &FixedHashMap<u64, Session>) -> VecDeque<(LogIndex, u64)> {
        let mut activity: Vec<(LogIndex, u64)> =
            sessions.iter().map(|(client, session)| (session.last_index, *client)).collect();
        activity.sort_unstable();
        activity.into()
    }
}

impl StateMachine for KvStore {
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Vec<u8> {
        self.apply_command(index, command, true).expect("an answer was asked for")
    }

    fn apply_unanswered(&mut self, index: LogIndex, command: &[u8]) {
        self.apply_command(index, command, false);
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        match decode::<KvQuery>(query) {
            Ok(KvQuery::Get { key }) => KvResponse::Value(self.data.get(&key).cloned()).encode(),
            Err(error) => KvResponse::Malformed(error).encode(),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let data = self.data.iter().map(|(key, value)| (key.as_slice(), value.as_slice())).collect();
        let sessions = self.sessions.iter().map(|(client, session)| (*client, session)).collect();
        encode(&KvSnapshotRef { data, sessions })
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let snapshot: KvSnapshot = decode(snapshot).map_err(RestoreError)?;
        self.data = snapshot.data.into_iter().collect();
        self.sessions = snapshot.sessions.into_iter().collect();
        self.activity = KvStore::activity_of(&self.sessions);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: u64, sequence: u64, key: &str, value: &str) -> Vec<u8> {
        KvCommand {
            session: Some(SessionRef { client, sequence }),
            op: KvOp::Put { key: key.into(), value: value.into() },
        }
        .encode()
    }

    fn get(store: &KvStore, key: &str) -> KvResponse {
        KvResponse::decode(&store.query(&KvQuery::Get { key: key.into() }.encode())).unwrap()
    }

    #[test]
    fn retried_write_takes_effect_once() {
        let mut store = KvStore::default();
        let cas = KvCommand {
            session: Some(SessionRef { client: 7, sequence: 1 }),
            op: KvOp::Cas { key: b"k".to_vec(), expected: None, new: b"1".to_vec() },
        }
        .encode();
        let first = store.apply(LogIndex(1), &cas);
        let retry = store.apply(LogIndex(2), &cas);
        assert_eq!(first, retry, "the retry gets the original answer");
        assert_eq!(KvResponse::decode(&first).unwrap(), KvResponse::Cas { applied: true, current: None });
        assert_eq!(get(&store, "k"), KvResponse::Value(Some(b"1".to_vec())));
    }

    #[test]
    fn older_sequence_is_reported_stale_and_changes_nothing() {
        let mut store = KvStore::default();
        store.apply(LogIndex(1), &put(1, 2, "k", "new"));
        let stale = store.apply(LogIndex(2), &put(1, 1, "k", "old"));
        assert_eq!(KvResponse::decode(&stale).unwrap(), KvResponse::SessionStale { last_sequence: 2 });
        assert_eq!(get(&store, "k"), KvResponse::Value(Some(b"new".to_vec())));
    }

    #[test]
    fn cas_mismatch_reports_current_value() {
        let mut store = KvStore::default();
        store.apply(LogIndex(1), &put(1, 1, "k", "a"));
        let cas = KvCommand {
            session: None,
            op: KvOp::Cas { key: b"k".to_vec(), expected: Some(b"b".to_vec()), new: b"c".to_vec() },
        };
        let answer = KvResponse::decode(&store.apply(LogIndex(2), &cas.encode())).unwrap();
        assert_eq!(answer, KvResponse::Cas { applied: false, current: Some(b"a".to_vec()) });
    }

    #[test]
    fn malformed_command_is_an_answer_not_a_panic() {
        let mut store = KvStore::default();
        let answer = KvResponse::decode(&store.apply(LogIndex(1), &[0xff, 0xff, 0xff])).unwrap();
        assert!(matches!(answer, KvResponse::Malformed(_)));
        assert!(store.is_empty());
    }

    #[test]
    fn least_recently_active_session_is_evicted_at_the_limit() {
        let mut store = KvStore::with_max_sessions(2);
        store.apply(LogIndex(1), &put(1, 1, "a", "1"));
        store.apply(LogIndex(2), &put(2, 1, "b", "1"));
        store.apply(LogIndex(3), &put(3, 1, "c", "1"));
        assert_eq!(store.sessions.len(), 2);
        assert!(!store.sessions.contains_key(&1));
    }

    #[test]
    fn a_session_that_wrote_again_is_not_evicted_by_its_older_activity() {
        let mut store = KvStore::with_max_sessions(2);
        store.apply(LogIndex(1), &put(1, 1, "a", "1"));
        store.apply(LogIndex(2), &put(2, 1, "b", "1"));
        store.apply(LogIndex(3), &put(1, 2, "a", "2"));
        store.apply(LogIndex(4), &put(3, 1, "c", "1"));
        let mut clients: Vec<u64> = store.sessions.keys().copied().collect();
        clients.sort_unstable();
        assert_eq!(clients, [1, 3], "client 2 was the least recently active");
        let mut restored = KvStore::with_max_sessions(2);
        restored.restore(&store.snapshot()).unwrap();
        restored.apply(LogIndex(5), &put(4, 1, "d", "1"));
        store.apply(LogIndex(5), &put(4, 1, "d", "1"));
        assert_eq!(restored, store, "a restored store evicts as the original does");
    }

    #[test]
    fn stale_activity_stays_bounded() {
        let mut store = KvStore::with_max_sessions(8);
        for index in 1..=10_000 {
            store.apply(LogIndex(index), &put(index % 4, index, "k", "v"));
        }
        assert!(store.activity.len() <= 2 * store.sessions.len() + 65);
    }

    #[test]
    fn an_unanswered_apply_changes_the_state_as_apply_does() {
        let (mut answered, mut unanswered) = (KvStore::default(), KvStore::default());
        for index in 1..=50 {
            let command = put(index % 3, index / 2, &format!("k{}", index % 5), &index.to_string());
            answered.apply(LogIndex(index), &command);
            unanswered.apply_unanswered(LogIndex(index), &command);
        }
        assert_eq!(answered, unanswered);
        assert_eq!(answered.snapshot(), unanswered.snapshot());
    }

    fn owned_op(op: KvOpRef<'_>) -> KvOp {
        match op {
            KvOpRef::Put { key, value } => KvOp::Put { key: key.to_vec(), value: value.to_vec() },
            KvOpRef::Delete { key } => KvOp::Delete { key: key.to_vec() },
            KvOpRef::Cas { key, expected, new } => {
                KvOp::Cas { key: key.to_vec(), expected: expected.map(<[u8]>::to_vec), new: new.to_vec() }
            }
        }
    }

    /// The borrowed decoding used by `apply` accepts exactly what the owned
    /// one does and reads the same command, and malformed input gets the
    /// owned decoder's error.
    fn assert_decodings_agree(bytes: &[u8]) {
        match (decode_command(bytes), decode::<KvCommand>(bytes)) {
            (Ok(borrowed), Ok(owned)) => {
                assert_eq!(KvCommand { session: borrowed.session, op: owned_op(borrowed.op) }, owned)
            }
            (Err(borrowed), Err(owned)) => assert_eq!(borrowed, owned),
            (borrowed, owned) => {
                panic!("decodings disagree on {bytes:?}: borrowed ok {}, owned {owned:?}", borrowed.is_ok())
            }
        }
    }

    #[test]
    fn borrowed_decoding_matches_owned_decoding() {
        let long = vec![7u8; 300];
        let ops = [
            KvOp::Put { key: b"k".to_vec(), value: b"v".to_vec() },
            KvOp::Put { key: Vec::new(), value: long.clone() },
            KvOp::Delete { key: long.clone() },
            KvOp::Cas { key: b"k".to_vec(), expected: None, new: b"n".to_vec() },
            KvOp::Cas { key: b"k".to_vec(), expected: Some(long), new: Vec::new() },
        ];
        for session in [None, Some(SessionRef { client: 3, sequence: u64::MAX })] {
            for op in &ops {
                let bytes = KvCommand { session, op: op.clone() }.encode();
                assert_decodings_agree(&bytes);
                let mut trailing = bytes.clone();
                trailing.push(0);
                assert_decodings_agree(&trailing);
                for end in 0..bytes.len() {
                    assert_decodings_agree(&bytes[..end]);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn borrowed_decoding_matches_owned_decoding_on_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)
        ) {
            assert_decodings_agree(&bytes);
        }
    }

    /// `KvOp` as it was serialized before its byte fields became serde
    /// bytes: sequences of u8.
    #[derive(Serialize)]
    enum PlainOp {
        Put { key: Vec<u8>, value: Vec<u8> },
        Delete { key: Vec<u8> },
        Cas { key: Vec<u8>, expected: Option<Vec<u8>>, new: Vec<u8> },
    }

    #[test]
    fn byte_fields_encode_as_plain_sequences_did() {
        let long = vec![7u8; 300];
        let cases = [
            (
                KvOp::Put { key: b"k".to_vec(), value: long.clone() },
                PlainOp::Put { key: b"k".to_vec(), value: long.clone() },
            ),
            (KvOp::Delete { key: Vec::new() }, PlainOp::Delete { key: Vec::new() }),
            (
                KvOp::Cas { key: b"k".to_vec(), expected: Some(long.clone()), new: b"n".to_vec() },
                PlainOp::Cas { key: b"k".to_vec(), expected: Some(long.clone()), new: b"n".to_vec() },
            ),
            (
                KvOp::Cas { key: b"k".to_vec(), expected: None, new: Vec::new() },
                PlainOp::Cas { key: b"k".to_vec(), expected: None, new: Vec::new() },
            ),
        ];
        for (op, plain) in cases {
            let encoded = KvCommand { session: Some(SessionRef { client: 9, sequence: 3 }), op: op.clone() }.encode();
            let session = Some(SessionRef { client: 9, sequence: 3 });
            let expected = bincode::serde::encode_to_vec((session, plain), codec()).unwrap();
            assert_eq!(encoded, expected);
            assert_eq!(KvCommand::decode(&encoded).unwrap().op, op);
        }
    }

    #[test]
    fn a_command_never_outgrows_its_encoding_bound() {
        let long = vec![7u8; 300];
        let ops = [
            KvOp::Put { key: long.clone(), value: long.clone() },
            KvOp::Delete { key: Vec::new() },
            KvOp::Cas { key: long.clone(), expected: Some(long.clone()), new: long },
        ];
        for op in ops {
            let command = KvCommand { session: Some(SessionRef { client: u64::MAX, sequence: u64::MAX }), op };
            let bytes = command.encode();
            assert!(bytes.len() <= command.encoded_len_bound());
            assert_eq!(bytes, bincode::serde::encode_to_vec(&command, codec()).unwrap());
        }
    }

    #[test]
    fn encoding_is_bincode_standard() {
        let command = KvCommand {
            session: Some(SessionRef { client: 300, sequence: 1 }),
            op: KvOp::Cas { key: b"key".to_vec(), expected: Some(b"old".to_vec()), new: b"new".to_vec() },
        };
        assert_eq!(command.encode(), bincode::serde::encode_to_vec(&command, codec()).unwrap());
    }

    #[test]
    fn overwriting_a_key_keeps_only_the_new_value() {
        let mut store = KvStore::default();
        store.apply(LogIndex(1), &put(1, 1, "k", &"x".repeat(1000)));
        store.apply(LogIndex(2), &put(1, 2, "k", "short"));
        assert_eq!(get(&store, "k"), KvResponse::Value(Some(b"short".to_vec())));
        assert!(store.data[&b"k".to_vec()].capacity() < 1000, "a large old value's buffer is not kept");
        store.apply(LogIndex(3), &put(1, 3, "k", "other"));
        assert_eq!(get(&store, "k"), KvResponse::Value(Some(b"other".to_vec())));
    }

    #[test]
    fn snapshot_restores_data_and_sessions() {
        let mut store = KvStore::default();
        store.apply(LogIndex(1), &put(1, 1, "a", "1"));
        let mut restored = KvStore::default();
        restored.restore(&store.snapshot()).unwrap();
        assert_eq!(restored, store);
        assert!(restored.restore(b"garbage").is_err());
        assert_eq!(restored, store, "a failed restore changes nothing");
    }
}
