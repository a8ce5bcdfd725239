//! The in-memory Raft log, and what of it the driver has made durable.

use super::message::Entry;
use crate::types::{LogIndex, Term};

/// The node's view of its log: entries `offset + 1 ..= last`, dense. Entries
/// at or before `offset` were compacted into a snapshot.
///
/// `persisted` is the highest index known to be on the driver's disk *and*
/// still part of this log: a truncation lowers it at once, an acknowledged
/// write raises it.
#[derive(Debug)]
pub(super) struct RaftLog {
    /// Index of the last compacted entry (0 when nothing was compacted).
    offset: LogIndex,
    /// Term of the entry at `offset`, when known (it is when `offset` is a
    /// snapshot's index; a log restored with a retained prefix before its
    /// snapshot does not know it, and treats `offset` as compacted).
    offset_term: Option<Term>,
    entries: Vec<Entry>,
    persisted: LogIndex,
}

impl Default for RaftLog {
    /// An empty log from index 1.
    fn default() -> RaftLog {
        RaftLog::restored(LogIndex::ZERO, None, Vec::new())
    }
}

impl RaftLog {
    /// A log restored from disk: every entry is durable. `entries` follow
    /// `offset` densely.
    pub(super) fn restored(offset: LogIndex, offset_term: Option<Term>, entries: Vec<Entry>) -> RaftLog {
        let persisted = LogIndex(offset.0 + entries.len() as u64);
        let offset_term = if offset == LogIndex::ZERO { Some(Term::ZERO) } else { offset_term };
        RaftLog { offset, offset_term, entries, persisted }
    }

    /// The first index still held (one past the compacted prefix).
    pub(super) fn first_index(&self) -> LogIndex {
        self.offset.next()
    }

    /// The last compacted index.
    pub(super) fn offset(&self) -> LogIndex {
        self.offset
    }

    pub(super) fn last_index(&self) -> LogIndex {
        LogIndex(self.offset.0 + self.entries.len() as u64)
    }

    pub(super) fn last_term(&self) -> Term {
        match self.entries.last() {
            Some(entry) => entry.term,
            None => self.offset_term.expect("invariant: an empty log knows the term of its offset"),
        }
    }

    /// The term of the entry at `index`: `Term(0)` for index 0, `None` past
    /// the end or inside the compacted prefix (except at a known offset).
    pub(super) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return self.offset_term;
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub(super) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let position = index.0.checked_sub(self.offset.0 + 1)?;
        self.entries.get(usize::try_from(position).ok()?)
    }

    /// Entries `from..=to`, clamped to what the log holds.
    pub(super) fn slice(&self, from: LogIndex, to: LogIndex) -> &[Entry] {
        let start = from.0.max(self.offset.0 + 1) - self.offset.0 - 1;
        let end = to.0.saturating_sub(self.offset.0).min(self.entries.len() as u64);
        if start >= end {
            return &[];
        }
        &self.entries[start as usize..end as usize]
    }

    /// Is a log ending at `(last_index, last_term)` at least as up to date as
    /// this one (Raft §5.4.1)?
    pub(super) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The first index of the run of entries with the same term as the entry
    /// at `index` (for conflict hints), not looking into the compacted prefix.
    /// `index` must have a known term.
    pub(super) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let term = self.term(index).expect("first_index_of_term_at: index is in the log");
        let mut first = index;
        while first > self.first_index() && self.term(first.prev()) == Some(term) {
            first = first.prev();
        }
        first
    }

    /// The last index holding an entry of `term`, if any (searching backwards;
    /// terms are non-decreasing along the log).
    pub(super) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        match self.entries.iter().rposition(|entry| entry.term <= term) {
            Some(position) => {
                (self.entries[position].term == term).then_some(LogIndex(self.offset.0 + position as u64 + 1))
            }
            None => (self.offset_term == Some(term)).then_some(self.offset),
        }
    }

    /// Appends an entry; it must follow the last one.
    pub(super) fn push(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index().next(), "log entries must be dense");
        assert!(entry.term >= self.last_term(), "terms never decrease along the log");
        self.entries.push(entry);
    }

    /// Removes every entry at `index` and after.
    pub(super) fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.offset, "compacted entries cannot be truncated");
        self.entries.truncate((index.0 - self.offset.0 - 1) as usize);
        self.persisted = self.persisted.min(index.prev());
    }

    /// Drops the entries up to and including `upto`, which must be held, and
    /// remembers its term.
    pub(super) fn compact(&mut self, upto: LogIndex) {
        if upto <= self.offset {
            return;
        }
        let term = self.term(upto).expect("invariant: compaction stays within the log");
        self.entries.drain(..(upto.0 - self.offset.0) as usize);
        self.offset = upto;
        self.offset_term = Some(term);
    }

    /// Replaces the whole log by a snapshot's end point `(index, term)`.
    pub(super) fn reset(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.offset = index;
        self.offset_term = Some(term);
        self.persisted = self.persisted.min(index);
    }

    pub(super) fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// Records that the driver made entries up to `index` durable; `index` is
    /// already capped by the caller at what is still part of the log.
    pub(super) fn mark_persisted(&mut self, index: LogIndex) {
        let index = index.min(self.last_index());
        self.persisted = self.persisted.max(index);
    }

    /// Entries held, in order.
    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn log_with_terms(terms: &[u64]) -> RaftLog {
        let mut log = RaftLog::restored(LogIndex::ZERO, None, Vec::new());
        for (position, term) in terms.iter().enumerate() {
            log.push(Entry { index: LogIndex(position as u64 + 1), term: Term(*term), payload: Payload::Noop });
        }
        log
    }

    #[test]
    fn up_to_date_compares_last_term_before_length() {
        let log = log_with_terms(&[1, 1, 2]);
        assert!(log.is_up_to_date(LogIndex(1), Term(3)));
        assert!(log.is_up_to_date(LogIndex(3), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(9), Term(1)));
        assert!(!log.is_up_to_date(LogIndex(2), Term(2)));
    }

    #[test]
    fn term_runs_are_found_for_conflict_hints() {
        let log = log_with_terms(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(log.first_index_of_term_at(LogIndex(5)), LogIndex(3));
        assert_eq!(log.first_index_of_term_at(LogIndex(2)), LogIndex(1));
        assert_eq!(log.last_index_of_term(Term(3)), Some(LogIndex(5)));
        assert_eq!(log.last_index_of_term(Term(2)), None);
        assert_eq!(log.last_index_of_term(Term(9)), None);
    }

    #[test]
    fn truncation_lowers_the_persisted_mark() {
        let mut log = log_with_terms(&[1, 1, 1]);
        log.mark_persisted(LogIndex(3));
        log.truncate_from(LogIndex(2));
        assert_eq!(log.persisted(), LogIndex(1));
        assert_eq!(log.slice(LogIndex(1), LogIndex(9)).len(), 1);
    }

    #[test]
    fn compaction_keeps_the_term_of_the_last_compacted_entry() {
        let mut log = log_with_terms(&[1, 1, 2, 3]);
        log.compact(LogIndex(2));
        assert_eq!(log.first_index(), LogIndex(3));
        assert_eq!(log.term(LogIndex(2)), Some(Term(1)));
        assert_eq!(log.term(LogIndex(1)), None);
        assert_eq!(log.slice(LogIndex(1), LogIndex(9)).len(), 2);
        assert_eq!(log.entry(LogIndex(4)).map(|entry| entry.term), Some(Term(3)));
        log.reset(LogIndex(10), Term(4));
        assert_eq!((log.last_index(), log.last_term()), (LogIndex(10), Term(4)));
        assert!(log.slice(LogIndex(1), LogIndex(10)).is_empty());
    }
}
