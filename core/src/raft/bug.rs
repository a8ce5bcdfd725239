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
    /// Change the voter set in one step instead of through a joint
    /// configuration, so old and new majorities may not overlap.
    NoJointConsensus,
    /// Count learners' acknowledgements toward the commit quorum (sized by
    /// the voters).
    LearnerCountedInQuorum,
    /// A node that lost its disk votes and acknowledges as the voter it was
    /// (it claims the disk the configuration records for it).
    WipedNodeVotes,
    /// Install a snapshot from the leader even over a log that already holds
    /// (and has applied) more than the snapshot.
    SnapshotOverNewerLog,
    /// Answer a ReadIndex read before the new leader has committed an entry
    /// of its own term (its commit index may lag its predecessor's).
    ReadBeforeTermCommit,
    /// A follower answers a linearizable read from its own state without
    /// asking the leader for a read index.
    FollowerReadWithoutReadIndex,
    /// A session read is answered at once, without waiting for the node to
    /// apply the session's index.
    SessionReadIgnoresIndex,
    /// A vote from a node that is a voter on the answering disk in either
    /// half of a joint configuration counts in both halves, even where the
    /// other half records its old disk (seed 5591: two leaders in a term).
    JointVoteCountsTwice,
    /// A node campaigns only if it is a voter in its latest configuration,
    /// even while the configuration removing it is not known committed
    /// (seeds 2011 and 102421: no leader can ever be elected).
    RemovedVoterNeverCampaigns,
    /// A node numbers its forwarded proposals and read-index requests from 1
    /// again after every restart (seed 55657: a client's compare-and-set
    /// answered with another request's result).
    RequestIdsReused,
    /// A follower acknowledges appended entries before they are durable; a
    /// crash then loses entries the leader counted.
    AckAppendBeforePersist,
    /// A node that joined with an empty disk is sent, and accepts, appends
    /// before it has installed a snapshot, so its log starts without the
    /// configuration in force (seed 29718: a stale message made the leader
    /// take the joiner for its old disk and send entries from index 1; the
    /// joiner then snapshotted a configuration with no voters).
    JoinerSkipsSnapshot,
    /// Snapshots taken by the snapshot policy never compact the log: it
    /// grows without bound however often the node snapshots.
    SnapshotNeverCompacts,
    /// A follower keeps a partly received snapshot after its log caught up
    /// or the term moved on: its buffer stays, and with quiescence on the
    /// follower keeps waking its leader.
    PartialSnapshotKept,
    /// A leader holds one linearizable read more than `max_pending_reads`
    /// before it refuses reads as overloaded.
    ReadQueueOverLimit,
    /// A leader refuses every change of the voter set as one that would
    /// lose the quorum, however healthy the new voters are.
    VoterChangesRefused,
}

impl Bug {
    /// Every bug, in the order `chorus-sim bugs` lists them.
    pub const ALL: [Bug; 22] = [
        Bug::VoteWithoutLogCheck,
        Bug::CommitOldTerm,
        Bug::ReplyBeforePersist,
        Bug::AppendWithoutPrevCheck,
        Bug::AckBeforeCommit,
        Bug::StaleLeaderRead,
        Bug::NoJointConsensus,
        Bug::LearnerCountedInQuorum,
        Bug::WipedNodeVotes,
        Bug::SnapshotOverNewerLog,
        Bug::ReadBeforeTermCommit,
        Bug::FollowerReadWithoutReadIndex,
        Bug::SessionReadIgnoresIndex,
        Bug::JointVoteCountsTwice,
        Bug::RemovedVoterNeverCampaigns,
        Bug::RequestIdsReused,
        Bug::AckAppendBeforePersist,
        Bug::JoinerSkipsSnapshot,
        Bug::SnapshotNeverCompacts,
        Bug::PartialSnapshotKept,
        Bug::ReadQueueOverLimit,
        Bug::VoterChangesRefused,
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
            Bug::NoJointConsensus => "no-joint-consensus",
            Bug::LearnerCountedInQuorum => "learner-counted-in-quorum",
            Bug::WipedNodeVotes => "wiped-node-votes",
            Bug::SnapshotOverNewerLog => "snapshot-over-newer-log",
            Bug::ReadBeforeTermCommit => "read-before-term-commit",
            Bug::FollowerReadWithoutReadIndex => "follower-read-without-read-index",
            Bug::SessionReadIgnoresIndex => "session-read-ignores-index",
            Bug::JointVoteCountsTwice => "joint-vote-counts-twice",
            Bug::RemovedVoterNeverCampaigns => "removed-voter-never-campaigns",
            Bug::RequestIdsReused => "request-ids-reused",
            Bug::AckAppendBeforePersist => "ack-append-before-persist",
            Bug::JoinerSkipsSnapshot => "joiner-skips-snapshot",
            Bug::SnapshotNeverCompacts => "snapshot-never-compacts",
            Bug::PartialSnapshotKept => "partial-snapshot-kept",
            Bug::ReadQueueOverLimit => "read-queue-over-limit",
            Bug::VoterChangesRefused => "voter-changes-refused",
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
            Bug::NoJointConsensus => "voter-set changes take effect in one step, without a joint configuration",
            Bug::LearnerCountedInQuorum => "learners' acknowledgements count toward the commit quorum",
            Bug::WipedNodeVotes => "a node that lost its disk votes and acknowledges as the voter it was",
            Bug::SnapshotOverNewerLog => "a follower installs a snapshot over a log that holds more than it",
            Bug::ReadBeforeTermCommit => "a new leader answers reads before committing an entry of its term",
            Bug::FollowerReadWithoutReadIndex => {
                "a follower answers linearizable reads without the leader's read index"
            }
            Bug::SessionReadIgnoresIndex => "a session read does not wait for the session's index",
            Bug::JointVoteCountsTwice => "a renewed disk's vote counts in both halves of a joint configuration",
            Bug::RemovedVoterNeverCampaigns => {
                "a voter removed by an uncommitted configuration never campaigns, though it may be needed"
            }
            Bug::RequestIdsReused => {
                "a restarted node reuses the ids of its forwarded proposals and read-index requests"
            }
            Bug::AckAppendBeforePersist => "a follower acknowledges appended entries before they are durable",
            Bug::JoinerSkipsSnapshot => "a node that joined empty accepts appends before installing a snapshot",
            Bug::SnapshotNeverCompacts => "the snapshot policy's snapshots never discard the log before them",
            Bug::PartialSnapshotKept => "a partly received snapshot is kept after the log caught up",
            Bug::ReadQueueOverLimit => "a leader holds one read more than max_pending_reads",
            Bug::VoterChangesRefused => "a leader refuses every voter change as one that would lose the quorum",
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
