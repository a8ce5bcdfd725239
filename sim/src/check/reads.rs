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
