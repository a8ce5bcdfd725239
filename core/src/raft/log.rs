//! The in-memory Raft log, and what of it the driver has made durable.

use super::message::Entry;
use crate::types::{LogIndex, Term};

/// The node's view of its log. Entries are dense from index 1.
///
/// `persisted` is the highest index known to be on the driver's disk *and*
/// still part of this log: a truncation lowers it at once, an acknowledged
/// write raises it.
#[derive(Debug, Default)]
pub struct RaftLog {
    entries: Vec<Entry>,
    persisted: LogIndex,
}

impl RaftLog {
    /// A log restored from disk: every entry is durable.
    pub fn restored(entries: Vec<Entry>) -> RaftLog {
        let persisted = LogIndex(entries.len() as u64);
        RaftLog { entries, persisted }
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(Term::ZERO, |entry| entry.term)
    }

    /// The term of the entry at `index`; `Term(0)` for index 0, `None` past
    /// the end.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex::ZERO {
            return Some(Term::ZERO);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let position = index.0.checked_sub(1)?;
        self.entries.get(usize::try_from(position).ok()?)
    }

    /// Entries `from..=to`, clamped to the log.
    pub fn slice(&self, from: LogIndex, to: LogIndex) -> &[Entry] {
        let start = (from.0.max(1) - 1) as usize;
        let end = (to.0 as usize).min(self.entries.len());
        if start >= end {
            return &[];
        }
        &self.entries[start..end]
    }

    /// Is a log ending at `(last_index, last_term)` at least as up to date as
    /// this one (Raft §5.4.1)?
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The first index of the run of entries with the same term as the entry
    /// at `index` (for conflict hints). `index` must be in the log.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let term = self.term(index).expect("first_index_of_term_at: index is in the log");
        let mut first = index;
        while first.0 > 1 && self.term(first.prev()) == Some(term) {
            first = first.prev();
        }
        first
    }

    /// The last index holding an entry of `term`, if any (searching backwards;
    /// terms are non-decreasing along the log).
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let position = self.entries.iter().rposition(|entry| entry.term <= term)?;
        (self.entries[position].term == term).then_some(LogIndex(position as u64 + 1))
    }

    /// Appends an entry; it must follow the last one.
    pub fn push(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index().next(), "log entries must be dense");
        assert!(entry.term >= self.last_term(), "terms never decrease along the log");
        self.entries.push(entry);
    }

    /// Removes every entry at `index` and after.
    pub fn truncate_from(&mut self, index: LogIndex) {
        assert!(index.0 >= 1, "entry 0 cannot be truncated");
        self.entries.truncate((index.0 - 1) as usize);
        self.persisted = self.persisted.min(index.prev());
    }

    pub fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// Records that the driver made entries up to `index` durable; `index` is
    /// already capped by the caller at what is still part of the log.
    pub fn mark_persisted(&mut self, index: LogIndex) {
        let index = index.min(self.last_index());
        self.persisted = self.persisted.max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn log_with_terms(terms: &[u64]) -> RaftLog {
        let mut log = RaftLog::default();
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
}
