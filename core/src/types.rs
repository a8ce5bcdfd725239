//! Newtypes shared by every protocol: identities, Raft terms and indexes, and
//! time. Time is a plain value handed in by the driver; nothing here reads a
//! clock.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of a cluster member. Stable across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// A Raft term: a logical clock that only moves forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Term(pub u64);

/// Position of an entry in the replicated log. Index 0 is the empty prefix;
/// the first entry has index 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogIndex(pub u64);

/// Identifies one client request to the node that received it. Chosen by the
/// driver; echoed back in [`crate::raft::Action::Respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// A point in time, in microseconds since an epoch chosen by the driver.
///
/// The core never reads a clock: every input carries the driver's `now`, and
/// every deadline the core asks for is expressed in the same clock. The
/// simulator hands each node its own drifting clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time {
    micros: u64,
}

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time { micros: 0 };

    /// The time `micros` microseconds after the driver's epoch.
    pub const fn from_micros(micros: u64) -> Time {
        Time { micros }
    }

    /// The time `millis` milliseconds after the driver's epoch, saturating
    /// at the end of time.
    pub const fn from_millis(millis: u64) -> Time {
        Time { micros: millis.saturating_mul(1000) }
    }

    /// Microseconds since the driver's epoch.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Whole milliseconds since the driver's epoch (rounded down).
    pub const fn as_millis(self) -> u64 {
        self.micros / 1000
    }

    /// `self + micros`, saturating at the end of time.
    pub const fn add_micros(self, micros: u64) -> Time {
        Time { micros: self.micros.saturating_add(micros) }
    }

    /// `self + millis`, saturating at the end of time.
    pub const fn add_millis(self, millis: u64) -> Time {
        self.add_micros(millis.saturating_mul(1000))
    }

    /// Microseconds from `earlier` to `self`; zero if `earlier` is later.
    pub const fn micros_since(self, earlier: Time) -> u64 {
        self.micros.saturating_sub(earlier.micros)
    }
}

/// The highest term a node accepts from a peer or from disk. Far beyond any
/// real cluster's lifetime, and far enough below `u64::MAX` that incrementing
/// an accepted term can never overflow.
pub const MAX_TERM: Term = Term(1 << 62);

/// The most a single message can raise a node's term (plus one, when the
/// message is a `TimeoutNow` that starts an election in the term after it):
/// a peer's term further ahead of the node's own is reported as a violation
/// and ignored. Far more
/// elections than any partition can miss (2^48), yet one message with an
/// absurd term (a bug, a corrupt packet) cannot carry the cluster to the
/// limit, where no election could follow and the cluster would stop for
/// good: that takes 16,383 such messages (or 2^62 elections).
pub const MAX_TERM_JUMP: u64 = 1 << 48;

/// The highest term a node accepts from a peer or restarts into from its
/// disk: [`MAX_TERM`] less room for [`MAX_TERM_JUMP`] elections.
pub const MAX_PEER_TERM: Term = Term(MAX_TERM.0 - MAX_TERM_JUMP);

/// The highest log index a node accepts from a peer or from disk (see
/// [`MAX_TERM`]).
pub const MAX_LOG_INDEX: LogIndex = LogIndex(1 << 62);

impl Term {
    /// The term of a node that has never seen an election; no leader is ever
    /// elected in it.
    pub const ZERO: Term = Term(0);
    /// The term after this one. Panics on overflow, which the node's limits
    /// rule out: no accepted term exceeds [`MAX_TERM`].
    pub const fn next(self) -> Term {
        match self.0.checked_add(1) {
            Some(next) => Term(next),
            None => panic!("invariant: terms stay below MAX_TERM, so they never overflow"),
        }
    }
}

impl LogIndex {
    /// The empty prefix: no entry has this index (a snapshot or log "ending
    /// at 0" holds nothing).
    pub const ZERO: LogIndex = LogIndex(0);
    /// The index after this one. Panics on overflow, which the node's limits
    /// rule out: no accepted index exceeds [`MAX_LOG_INDEX`].
    pub const fn next(self) -> LogIndex {
        match self.0.checked_add(1) {
            Some(next) => LogIndex(next),
            None => panic!("invariant: indexes stay below MAX_LOG_INDEX, so they never overflow"),
        }
    }
    /// The previous index; `LogIndex(0)` stays `LogIndex(0)`.
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.micros / 1_000_000, self.micros % 1_000_000)
    }
}
