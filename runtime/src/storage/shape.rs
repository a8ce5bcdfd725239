//! The shape of the stored log without its entries: what a checkpoint
//! records, what the store tracks while it runs (to start segments and to
//! know which ones a snapshot covers), and the replay that rebuilds the
//! entries on open.
//!
//! The rules are those of [`DurableState::apply`](chorus_core::raft::DurableState::apply)
//! (store the snapshot, discard the prefix, truncate, append, store the hard
//! state); a test checks that both agree.

use super::record::WriteRecord;
use chorus_core::raft::{Entry, HardState, SnapshotMeta};
use chorus_core::types::LogIndex;
use serde::{Deserialize, Serialize};

/// The stored log's hard state, snapshot and range of entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LogShape {
    pub(super) hard_state: HardState,
    /// What the stored snapshot covers (its data is in a snapshot file).
    pub(super) snapshot: Option<SnapshotMeta>,
    /// The first and last stored entries, if any are stored.
    pub(super) stored: Option<(LogIndex, LogIndex)>,
}

impl LogShape {
    fn snapshot_end(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex::ZERO, |meta| meta.index)
    }

    /// The index the next stored entry must have.
    pub(super) fn next_index(&self) -> LogIndex {
        match self.stored {
            Some((_, last)) => last.next(),
            None => self.snapshot_end().next(),
        }
    }

    /// The lowest index still stored or yet to be stored: every entry
    /// before it is covered by the snapshot (or was never written).
    pub(super) fn first_live(&self) -> LogIndex {
        match self.stored {
            Some((first, _)) => first,
            None => self.next_index(),
        }
    }

    /// Applies one write, or says why it does not fit (the shape is then
    /// unspecified).
    pub(super) fn apply(&mut self, write: &WriteRecord<'_>) -> Result<(), String> {
        if let Some(meta) = &write.snapshot {
            self.snapshot = Some(meta.clone());
        }
        if let Some(upto) = write.discard_upto {
            let snapshot_end = self.snapshot_end();
            if upto > snapshot_end {
                return Err(format!("discards entries up to {upto}, past the stored snapshot's end {snapshot_end}"));
            }
            self.stored = self.stored.and_then(|(first, last)| (last > upto).then(|| (first.max(upto.next()), last)));
        }
        if let Some(from) = write.truncate_from {
            let next = self.next_index();
            if from == LogIndex::ZERO || from > next {
                return Err(format!("truncates from {from}, but the stored log ends at {}", next.prev()));
            }
            self.stored = self.stored.and_then(|(first, last)| (from > first).then(|| (first, last.min(from.prev()))));
        }
        for entry in write.entries.iter() {
            let expected = self.next_index();
            if entry.index != expected {
                return Err(format!("appends entry {} where {expected} was expected (a hole)", entry.index));
            }
            self.stored = Some((self.stored.map_or(entry.index, |(first, _)| first), entry.index));
        }
        self.hard_state = write.hard_state;
        Ok(())
    }
}

/// The log rebuilt from the segments, starting at the oldest segment's
/// checkpoint.
#[derive(Debug)]
pub(super) struct Replay {
    pub(super) shape: LogShape,
    /// The stored entries replay has seen, dense, ending where `shape` ends.
    pub(super) entries: Vec<Entry>,
    /// Stored entries that were written in segments deleted since (they
    /// must all be discarded by the end of the replay).
    pub(super) missing: Option<(LogIndex, LogIndex)>,
}

impl Replay {
    /// Starts from the checkpoint of the oldest segment.
    pub(super) fn new(checkpoint: LogShape) -> Replay {
        let missing = checkpoint.stored;
        Replay { shape: checkpoint, entries: Vec::new(), missing }
    }

    /// Applies one write to the shape and the entries.
    pub(super) fn apply(&mut self, write: WriteRecord<'_>) -> Result<(), String> {
        self.shape.apply(&write)?;
        if let Some(upto) = write.discard_upto {
            self.entries.retain(|entry| entry.index > upto);
            self.missing = self.missing.and_then(|(first, last)| (last > upto).then(|| (first.max(upto.next()), last)));
        }
        if let Some(from) = write.truncate_from {
            self.entries.retain(|entry| entry.index < from);
            self.missing =
                self.missing.and_then(|(first, last)| (from > first).then(|| (first, last.min(from.prev()))));
        }
        self.entries.extend(write.entries.iter().cloned());
        Ok(())
    }

    /// The entries, once every missing one turned out to be discarded.
    /// `Err` names the entries that are gone.
    pub(super) fn finish(self) -> Result<(LogShape, Vec<Entry>), (LogIndex, LogIndex)> {
        if let Some(missing) = self.missing {
            return Err(missing);
        }
        let seen = self.entries.first().map(|first| first.index).zip(self.entries.last().map(|last| last.index));
        assert_eq!(seen, self.shape.stored, "invariant: replayed entries span the stored range");
        Ok((self.shape, self.entries))
    }
}
