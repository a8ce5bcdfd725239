//! Checks of session and stale reads against the committed history.
//!
//! Linearizable and lease reads go to the linearizability checker with the
//! writes. Weaker reads cannot: a stale read may legally return an old value.
//! Instead, the committed log is replayed into a reference [`KvStore`], which
//! records every key's value after every committed index. A read answered by
//! a node that had applied index `i` must return exactly the reference value
//! at `i` (so a stale read returns a committed value, never an invented or
//! uncommitted one), and a session read must have been served at an index at
//! least the client's session token (read-your-writes and monotonic reads).

use crate::workload::{ReadLevel, WeakRead};
use chorus_core::kv::{KvCommand, KvOp, KvStore};
use chorus_core::raft::Payload;
use chorus_core::{LogIndex, StateMachine};
use std::collections::BTreeMap;

/// One key's committed changes: (index, value after it), in index order.
type KeyHistory = Vec<(LogIndex, Option<Vec<u8>>)>;

/// The committed log replayed into a reference store.
#[derive(Default)]
pub struct ReferenceKv {
    store: KvStore,
    /// Index of the last replayed entry.
    replayed: LogIndex,
    /// Per key, each committed change: (index, value after it).
    changes: BTreeMap<Vec<u8>, KeyHistory>,
}

impl ReferenceKv {
    /// The index of the last committed entry replayed (0 before any).
    pub fn replayed(&self) -> LogIndex {
        self.replayed
    }

    /// Replays the committed entry at the next index.
    pub fn apply(&mut self, index: LogIndex, payload: &Payload) {
        assert_eq!(index, self.replayed.next(), "the reference store replays committed entries in order");
        self.replayed = index;
        let Payload::Command(command) = payload else {
            return;
        };
        self.store.apply(index, command);
        let Ok(decoded) = KvCommand::decode(command) else {
            return;
        };
        let key = match decoded.op {
            KvOp::Put { key, .. } | KvOp::Delete { key } | KvOp::Cas { key, .. } => key,
        };
        let value = self.store.get(&key).cloned();
        let history = self.changes.entry(key).or_default();
        if history.last().map(|(_, last)| last) != Some(&value) {
            history.push((index, value));
        }
    }

    /// The committed value of `key` after applying index `at`.
    pub fn value_at(&self, key: &[u8], at: LogIndex) -> Option<&[u8]> {
        let history = self.changes.get(key)?;
        let position = history.partition_point(|(index, _)| *index <= at);
        position.checked_sub(1).and_then(|position| history[position].1.as_deref())
    }

    /// Checks one weak read; `decode` turns stored bytes into the workload's
    /// values. Returns the problem, if any.
    pub fn check(&self, read: &WeakRead, decode: impl Fn(&[u8]) -> Option<i64>) -> Result<(), String> {
        let level = match read.level {
            ReadLevel::Session => "session",
            ReadLevel::Stale => "stale",
            ReadLevel::Linearizable | ReadLevel::Lease => return Ok(()),
        };
        if read.served_at > self.replayed {
            return Err(format!(
                "{level} read by c{}: served at applied index {}, which was never committed (committed up to {})",
                read.client, read.served_at, self.replayed
            ));
        }
        let expected = self.value_at(read.key.as_bytes(), read.served_at).and_then(&decode);
        if expected != read.value {
            return Err(format!(
                "{level} read by c{} of {}: got {:?} from a node at applied index {}, but the committed value there is {:?}",
                read.client, read.key, read.value, read.served_at, expected
            ));
        }
        if read.level == ReadLevel::Session && read.served_at < read.session {
            return Err(format!(
                "session read by c{} of {}: served at index {}, before the session's index {} (read-your-writes \
                 and monotonic reads broken)",
                read.client, read.key, read.served_at, read.session
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_core::kv::{KvCommand, KvOp};

    fn put(key: &str, value: i64) -> Payload {
        let op = KvOp::Put { key: key.as_bytes().to_vec(), value: value.to_le_bytes().to_vec() };
        Payload::Command(KvCommand { session: None, op }.encode().into())
    }

    fn decode(bytes: &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(bytes.try_into().ok()?))
    }

    fn read(level: ReadLevel, value: Option<i64>, served_at: u64, session: u64) -> WeakRead {
        WeakRead {
            client: 1,
            key: "k".into(),
            value,
            level,
            served_at: LogIndex(served_at),
            session: LogIndex(session),
        }
    }

    #[test]
    fn weak_reads_must_match_the_committed_value_at_their_index_and_the_session() {
        let mut reference = ReferenceKv::default();
        reference.apply(LogIndex(1), &Payload::Noop);
        reference.apply(LogIndex(2), &put("k", 10));
        reference.apply(LogIndex(3), &put("other", 5));
        reference.apply(LogIndex(4), &put("k", 20));
        assert_eq!(reference.value_at(b"k", LogIndex(1)), None);
        assert_eq!(reference.value_at(b"k", LogIndex(3)).and_then(decode), Some(10));
        assert!(reference.check(&read(ReadLevel::Stale, None, 1, 0), decode).is_ok());
        assert!(reference.check(&read(ReadLevel::Stale, Some(10), 3, 0), decode).is_ok());
        assert!(reference.check(&read(ReadLevel::Session, Some(20), 4, 4), decode).is_ok());
        // An invented or mis-indexed value, a read behind the session, and a
        // state that was never committed are all caught.
        assert!(reference.check(&read(ReadLevel::Stale, Some(20), 3, 0), decode).is_err());
        assert!(reference.check(&read(ReadLevel::Session, Some(10), 3, 4), decode).is_err());
        assert!(reference.check(&read(ReadLevel::Stale, Some(20), 9, 0), decode).is_err());
    }
}
