//! Which checker a failure came from: what "fails the same checker" means
//! to the shrinker.

use std::fmt;

/// The checker (or kind of end) behind a failing seed's first failure.
///
/// A failure's class is read from the leading words of its message, which
/// every checker writes in a fixed form (see [`FailureClass::of`]). Two
/// failures of one class may differ in every detail (nodes, terms, indexes,
/// keys): the shrinker keeps the class, not the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Two leaders of one term, or a leader without a quorum of votes
    /// (`election safety:`, `election quorum:`).
    Election,
    /// A committed entry changed, vanished, lost its election protection or
    /// is missing from a new leader (`committed entry ...`, `leader
    /// completeness:`, `... committed index ... through a snapshot`).
    CommittedEntries,
    /// `log matching:`.
    LogMatching,
    /// Nodes applied different commands or hold different snapshots at one
    /// index, or applied what is not in their log (`state machine safety:`,
    /// `... applied index ... which is not in its log`, `... committed index
    /// ... past the end of its log`).
    StateMachine,
    /// Terms, commit or applied indexes went back, across restarts or not
    /// (`... restarted in term`, `... restarted with commit index`, `...
    /// index went back`).
    Monotonicity,
    /// `vote safety:` (two votes in one term).
    VoteSafety,
    /// `durability:` (acknowledged entries lost, or an impossible write).
    Durability,
    /// `disk identity:`.
    DiskIdentity,
    /// `request ids:`.
    RequestIds,
    /// A node reported a peer breaking the protocol.
    ProtocolViolation,
    /// A session or stale read that does not fit the committed log.
    Reads,
    /// `wrong answer:` (an answer of the wrong kind).
    WrongAnswer,
    /// `linearizability:` (the client history, checked at the end).
    Linearizability,
    /// `liveness:` (no progress, or operations pending, after healing).
    Liveness,
    /// `quiescence:` (an idle group that did not go quiet).
    Quiescence,
    /// `cost:` (the calm probe: a request answered late or not `Ok` once
    /// the faults are over).
    Cost,
    /// `snapshot:` (the snapshot policy).
    SnapshotPolicy,
    /// `leader knowledge:` (a follower that does not name its leader).
    LeaderKnowledge,
    /// `operator:` (an operator mistake not refused as it should be).
    Operator,
    /// `limits:` (a message over the limits the node was configured with).
    Limits,
    /// `restart:` (an empty disk not refused by `RaftNode::restart`).
    Restart,
    /// `panic:` (a broken internal invariant).
    Panic,
    /// `event limit:`.
    EventLimit,
    /// None of the above (a message of a checker this list does not know).
    Other,
}

/// `(class, pattern, at the start)`: the first match wins.
const PATTERNS: &[(FailureClass, &str, bool)] = &[
    (FailureClass::Panic, "panic:", true),
    (FailureClass::EventLimit, "event limit:", true),
    (FailureClass::Liveness, "liveness:", true),
    (FailureClass::Quiescence, "quiescence:", true),
    (FailureClass::Cost, "cost:", true),
    (FailureClass::SnapshotPolicy, "snapshot:", true),
    (FailureClass::LeaderKnowledge, "leader knowledge:", true),
    (FailureClass::Operator, "operator:", true),
    (FailureClass::Limits, "limits:", true),
    (FailureClass::Restart, "restart:", true),
    (FailureClass::Linearizability, "linearizability:", true),
    (FailureClass::WrongAnswer, "wrong answer:", true),
    (FailureClass::Election, "election safety:", true),
    (FailureClass::Election, "election quorum:", true),
    (FailureClass::CommittedEntries, "committed entry", true),
    (FailureClass::CommittedEntries, "leader completeness:", true),
    (FailureClass::CommittedEntries, "through a snapshot before any node committed it", false),
    (FailureClass::LogMatching, "log matching:", true),
    (FailureClass::StateMachine, "state machine safety:", true),
    (FailureClass::StateMachine, "which is not in its log", false),
    (FailureClass::StateMachine, "past the end of its log", false),
    (FailureClass::Monotonicity, "index went back", false),
    (FailureClass::Monotonicity, " restarted in term ", false),
    (FailureClass::Monotonicity, " restarted with commit index ", false),
    (FailureClass::VoteSafety, "vote safety:", true),
    (FailureClass::Durability, "durability:", true),
    (FailureClass::DiskIdentity, "disk identity:", true),
    (FailureClass::RequestIds, "request ids:", true),
    (FailureClass::ProtocolViolation, "reported a protocol violation", false),
    (FailureClass::Reads, " read by c", false),
];

impl FailureClass {
    /// The class of a failure message (a seed's first failure).
    pub fn of(failure: &str) -> FailureClass {
        PATTERNS
            .iter()
            .find(
                |(_, pattern, at_start)| {
                    if *at_start {
                        failure.starts_with(pattern)
                    } else {
                        failure.contains(pattern)
                    }
                },
            )
            .map_or(FailureClass::Other, |(class, _, _)| *class)
    }

    /// A short name, as the shrinker prints it.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Election => "election",
            FailureClass::CommittedEntries => "committed-entries",
            FailureClass::LogMatching => "log-matching",
            FailureClass::StateMachine => "state-machine",
            FailureClass::Monotonicity => "monotonicity",
            FailureClass::VoteSafety => "vote-safety",
            FailureClass::Durability => "durability",
            FailureClass::DiskIdentity => "disk-identity",
            FailureClass::RequestIds => "request-ids",
            FailureClass::ProtocolViolation => "protocol-violation",
            FailureClass::Reads => "reads",
            FailureClass::WrongAnswer => "wrong-answer",
            FailureClass::Linearizability => "linearizability",
            FailureClass::Liveness => "liveness",
            FailureClass::Quiescence => "quiescence",
            FailureClass::Cost => "cost",
            FailureClass::SnapshotPolicy => "snapshot-policy",
            FailureClass::LeaderKnowledge => "leader-knowledge",
            FailureClass::Operator => "operator",
            FailureClass::Limits => "limits",
            FailureClass::Restart => "restart",
            FailureClass::Panic => "panic",
            FailureClass::EventLimit => "event-limit",
            FailureClass::Other => "other",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_checker_s_message_gets_its_class() {
        let cases = [
            ("committed entry i28 (term t1) is unprotected: n3 lacks it", FailureClass::CommittedEntries),
            ("election quorum: n2 became leader of t4 without a quorum", FailureClass::Election),
            ("log matching: n1 stores entry 3 of term 2 that follows", FailureClass::LogMatching),
            ("n3 restarted in term 2 after sending messages in term 3 (term not durable)", FailureClass::Monotonicity),
            ("n2 applied index went back from 5 to 3", FailureClass::Monotonicity),
            ("session read by c1 of k0: served at index 3", FailureClass::Reads),
            ("linearizability: history of key k1 is not linearizable", FailureClass::Linearizability),
            ("liveness: no leader committed anything within 10s after healing", FailureClass::Liveness),
            ("panic: invariant broken", FailureClass::Panic),
            ("quiescence: the group did not quiesce within 900 ms", FailureClass::Quiescence),
            ("cost: a write at a follower (n2) was answered NoLeader in a calm group", FailureClass::Cost),
            ("snapshot: n3 applied 12 entries past its snapshot (at 1.2s)", FailureClass::SnapshotPolicy),
            ("leader knowledge: n2 handled an append from n1", FailureClass::LeaderKnowledge),
            ("operator: promoting voter n2 was accepted", FailureClass::Operator),
            ("limits: n1 sent an append of 5 entries and 900 bytes to n2", FailureClass::Limits),
            ("disk identity: n4 sent a message as d1", FailureClass::DiskIdentity),
            ("something new", FailureClass::Other),
        ];
        for (message, class) in cases {
            assert_eq!(FailureClass::of(message), class, "{message}");
        }
    }
}
