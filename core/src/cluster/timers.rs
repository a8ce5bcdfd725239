//! The hosted ranges' timers, indexed by deadline: with thousands of ranges,
//! `poll_timeout` and `handle_timeout` must not walk every one of them.

use crate::partition::RangeId;
use crate::types::Time;
use std::collections::{BTreeMap, BTreeSet};

/// Per range, its Raft node's deadline (`raw`) and the instant the node is
/// woken for it (`rounded` up to a tick or a heartbeat).
#[derive(Debug, Default)]
pub(super) struct Timers {
    by_range: BTreeMap<RangeId, (Time, Time)>,
    raw: BTreeSet<(Time, RangeId)>,
    rounded: BTreeSet<(Time, RangeId)>,
}

impl Timers {
    /// Records `range`'s deadlines, replacing its previous ones.
    pub(super) fn set(&mut self, range: RangeId, raw: Time, rounded: Time) {
        self.remove(range);
        self.by_range.insert(range, (raw, rounded));
        self.raw.insert((raw, range));
        self.rounded.insert((rounded, range));
    }

    /// Forgets `range`.
    pub(super) fn remove(&mut self, range: RangeId) {
        if let Some((raw, rounded)) = self.by_range.remove(&range) {
            self.raw.remove(&(raw, range));
            self.rounded.remove(&(rounded, range));
        }
    }

    /// The earliest instant a range must be woken.
    pub(super) fn first_rounded(&self) -> Option<Time> {
        self.rounded.first().map(|&(at, _)| at)
    }

    /// The ranges whose deadline has come, in deadline order (ties by id).
    pub(super) fn due(&self, now: Time) -> Vec<RangeId> {
        self.raw.iter().take_while(|(at, _)| *at <= now).map(|&(_, range)| range).collect()
    }

    /// `range`'s indexed deadline.
    #[cfg(debug_assertions)]
    pub(super) fn raw(&self, range: RangeId) -> Option<Time> {
        self.by_range.get(&range).map(|&(raw, _)| raw)
    }

    /// How many ranges are indexed.
    pub(super) fn len(&self) -> usize {
        self.by_range.len()
    }
}
