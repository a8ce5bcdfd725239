//! Deliberate protocol bugs, for proving that the simulator's checkers fail.
//!
//! A production configuration has `injected_bug: None`. Each variant breaks
//! exactly one rule of the protocol, in the place where the correct code
//! enforces it; `chorus-sim run --bug NAME` turns one on and the simulator must
//! report a violation within its first thousand seeds.

use std::fmt;

/// One deliberate protocol bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// Grant votes (and pre-votes) without checking that the candidate's log
    /// is at least as up to date as the voter's.
    VoteWithoutLogCheck,
    /// Commit an entry of an earlier term by counting replicas, ignoring the
    /// current-term rule (Raft paper, figure 8).
    CommitOldTerm,
    /// Answer vote requests before the new term and vote are durable.
    ReplyBeforePersist,
    /// Append entries without checking that the previous entry matches.
    AppendWithoutPrevCheck,
    /// Apply and acknowledge client writes as soon as the leader has appended
    /// them, before they are committed.
    AckBeforeCommit,
    /// Serve reads from the leader's local state without confirming it is
    /// still the leader.
    StaleLeaderRead,
}

impl Bug {
    /// Every bug, in the order `chorus-sim bugs` lists them.
    pub const ALL: [Bug; 6] = [
        Bug::VoteWithoutLogCheck,
        Bug::CommitOldTerm,
        Bug::ReplyBeforePersist,
        Bug::AppendWithoutPrevCheck,
        Bug::AckBeforeCommit,
        Bug::StaleLeaderRead,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "vote-without-log-check",
            Bug::CommitOldTerm => "commit-old-term",
            Bug::ReplyBeforePersist => "reply-before-persist",
            Bug::AppendWithoutPrevCheck => "append-without-prev-check",
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::StaleLeaderRead => "stale-leader-read",
        }
    }

    /// One line for `chorus-sim bugs`.
    pub fn description(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "votes are granted without the candidate-log up-to-date check",
            Bug::CommitOldTerm => "a leader commits an old-term entry by counting replicas (Raft figure 8)",
            Bug::ReplyBeforePersist => "term and vote are not persisted before the vote reply",
            Bug::AppendWithoutPrevCheck => "a follower appends entries without the previous-entry check",
            Bug::AckBeforeCommit => "a client write is applied and acknowledged before commit",
            Bug::StaleLeaderRead => "a read is served by a leader that may already be deposed",
        }
    }

    /// Looks a bug up by its command-line name.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
