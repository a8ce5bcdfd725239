//! Static configuration of one Raft node.

use super::bug::Bug;
use crate::types::NodeId;
use crate::wire::MAX_MESSAGE_BYTES;

/// Configuration of one Raft node. Every limit is named here; [`Config::validate`]
/// rejects inconsistent values before a node is built.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Every voting member, this node included.
    pub voters: Vec<NodeId>,
    /// Minimum election timeout. Each election timer is drawn uniformly from
    /// `[election_timeout_ms, 2 * election_timeout_ms)`.
    pub election_timeout_ms: u64,
    /// Interval between leader heartbeats. Must be well below the election
    /// timeout.
    pub heartbeat_interval_ms: u64,
    /// Run a pre-vote round before campaigning, so that a node rejoining from
    /// a partition cannot depose a healthy leader by inflating its term.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout
    /// steps down, and followers that recently heard from a leader ignore
    /// vote requests.
    pub check_quorum: bool,
    /// Most entries in one append message.
    pub max_entries_per_append: usize,
    /// Most append messages with entries in flight to one follower.
    pub max_inflight_appends: usize,
    /// Most client requests a leader holds while they wait for commit;
    /// beyond it new requests are dropped.
    pub max_pending_requests: usize,
    /// Most messages held back while waiting for the driver to confirm
    /// persistence. Beyond it the oldest held message is discarded (Raft
    /// tolerates message loss; memory must stay bounded).
    pub max_held_messages: usize,
    /// How a leader confirms it is still the leader before answering a read.
    pub read_mode: ReadMode,
    /// Most reads a leader holds while they wait for leadership confirmation
    /// and apply; beyond it new reads are dropped (`Overloaded`).
    pub max_pending_reads: usize,
    /// Largest rate difference between any two nodes' clocks, in parts per
    /// million, that [`ReadMode::Lease`] must tolerate: the lease is shortened
    /// by this fraction of the election timeout. Must be below 1 000 000.
    pub max_clock_drift_ppm: u64,
    /// Most bytes in one client command or query.
    pub max_command_bytes: usize,
    /// Most payload bytes in one append message (at least one entry is
    /// always sent, so an entry larger than this still goes out alone).
    pub max_append_bytes: usize,
    /// Most payload bytes in flight to one follower in appends not yet
    /// acknowledged.
    pub max_inflight_bytes: usize,
    /// When to take a snapshot and compact the log.
    pub snapshot_policy: SnapshotPolicy,
    /// Entries kept in the log before the latest snapshot, so that a follower
    /// slightly behind catches up by log instead of by snapshot. Bounds the
    /// log together with the snapshot policy.
    pub max_retained_entries: u64,
    /// Bytes per snapshot chunk sent to a follower.
    pub snapshot_chunk_bytes: usize,
    /// Largest snapshot a follower accepts from a leader (the buffer it is
    /// assembled in is bounded by this).
    pub max_snapshot_bytes: u64,
    /// A follower forwards client proposals to the leader it knows of instead
    /// of refusing them with `NotLeader`.
    pub forward_proposals: bool,
    /// Followers serve linearizable reads by asking the leader for a read
    /// index, instead of refusing them with `NotLeader`.
    pub follower_reads: bool,
    /// Most forwarded proposals a follower holds while waiting for the
    /// leader to answer; beyond it new ones are refused (`Overloaded`).
    pub max_forwarded_proposals: usize,
    /// Quiescence: a leader whose group has been idle this long (no
    /// proposal, read or membership change; every follower caught up,
    /// durable and heard from within an election timeout) tells its
    /// followers so and stops beating; they stop their election timers. The
    /// group wakes on any proposal, read or message, or when the driver
    /// calls [`RaftNode::wake`](super::RaftNode::wake) (its failure detector
    /// declared the leader failed). 0 never quiesces (the default): without a
    /// failure detector to wake followers, a quiesced group whose leader dies
    /// would stay without a leader until a request arrives.
    pub quiesce_after_ms: u64,
    /// Seed of this node's private RNG (election jitter).
    pub rng_seed: u64,
    /// A deliberate protocol bug, for simulation only. `None` in production.
    pub injected_bug: Option<Bug>,
}

/// When a node snapshots its state machine and compacts its log: as soon as
/// either threshold is reached by what was applied since the last snapshot. A
/// threshold of 0 disables that criterion; both 0 disables snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Entries applied since the last snapshot.
    pub entries: u64,
    /// Payload bytes applied since the last snapshot.
    pub bytes: u64,
}

/// How a leader makes sure a read is linearizable (Raft thesis §6.4). Reads
/// never append to the log in either mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Record the commit index, confirm leadership with a heartbeat round that
    /// a quorum answers, then answer once that index is applied. Safe under
    /// any clock behaviour.
    ReadIndex,
    /// Like `ReadIndex`, but skip the heartbeat round while a quorum answered
    /// a heartbeat sent within the last `election_timeout_ms` (shortened by
    /// `max_clock_drift_ppm`): check-quorum followers will not vote for anyone
    /// else in that window. Relies on bounded clock drift; needs
    /// `check_quorum`. Not sound if a follower restarts within the lease (a
    /// restarted node has no memory of its leader and votes at once) or if a
    /// leadership transfer's `TimeoutNow` is delayed by more than two
    /// election timeouts; leases are suspended during a transfer and for two
    /// election timeouts after a `TimeoutNow`.
    Lease,
}

/// Why a [`Config`] was rejected. Nothing is built when validation fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `voters` is empty. Checked only when bootstrapping
    /// ([`RaftNode::new`](super::RaftNode::new)).
    #[error("voters is empty: a cluster needs at least one voting member")]
    NoVoters,
    /// This node's `id` is not in `voters`. Only initial voters bootstrap; a
    /// node added later starts with [`RaftNode::join`](super::RaftNode::join).
    #[error("node {0} is not among the voters")]
    SelfNotVoter(NodeId),
    /// A node appears twice in `voters`.
    #[error("node {0} is listed twice among the voters")]
    DuplicateVoter(NodeId),
    /// `heartbeat_interval_ms` is 0, or not below `election_timeout_ms`
    /// (followers would call elections between heartbeats).
    #[error("heartbeat_interval_ms ({heartbeat}) must be at least 1 and below election_timeout_ms ({election})")]
    BadTimeouts {
        /// The configured `heartbeat_interval_ms`.
        heartbeat: u64,
        /// The configured `election_timeout_ms`.
        election: u64,
    },
    /// A count or size limit is 0, which would stop all progress.
    #[error("{name} must be at least 1")]
    ZeroLimit {
        /// The field's name, e.g. `"max_inflight_appends"`.
        name: &'static str,
    },
    /// [`ReadMode::Lease`] without `check_quorum`: followers would vote for
    /// another leader while the lease runs, so lease reads could be stale.
    #[error("read_mode Lease needs check_quorum: without it followers may vote while the lease runs")]
    LeaseWithoutCheckQuorum,
    /// `max_append_bytes` is above `max_inflight_bytes`: one append could
    /// carry more payload than the whole in-flight budget of a follower.
    #[error("max_append_bytes ({append}) must not exceed max_inflight_bytes ({inflight})")]
    AppendAboveInflight {
        /// The configured `max_append_bytes`.
        append: usize,
        /// The configured `max_inflight_bytes`.
        inflight: usize,
    },
    /// `max_clock_drift_ppm` is 1,000,000 or more: the drift allowance would
    /// eat the whole lease.
    #[error("max_clock_drift_ppm ({0}) must be below 1000000")]
    DriftTooLarge(u64),
    /// `injected_bug` is set, but chorus-core was built without the
    /// `bug-injection` feature. Production configs leave it `None`.
    #[error(
        "injected_bug is {0:?}, but this build has no bug injection (build chorus-core with the `bug-injection` \
         feature, as the simulator does)"
    )]
    BugInjectionDisabled(Bug),
    /// A size limit above what one message on the wire can carry.
    #[error(
        "{name} ({value}) is above {MAX_PAYLOAD_BYTES}, the most one message can carry (the wire limit \
         {MAX_MESSAGE_BYTES} less room for the message around it)"
    )]
    AboveWireLimit {
        /// The field.
        name: &'static str,
        /// Its value.
        value: usize,
    },
}

/// The most payload bytes one message may carry: [`MAX_MESSAGE_BYTES`] less
/// one MiB for everything around the payload (entry headers, a snapshot's
/// configuration).
pub const MAX_PAYLOAD_BYTES: usize = MAX_MESSAGE_BYTES - 1024 * 1024;

impl Config {
    /// A configuration with conventional LAN timings (election 150 ms,
    /// heartbeat 50 ms), pre-vote and check-quorum on.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            election_timeout_ms: 150,
            heartbeat_interval_ms: 50,
            pre_vote: true,
            check_quorum: true,
            max_entries_per_append: 1024,
            max_inflight_appends: 8,
            max_pending_requests: 4096,
            max_held_messages: 4096,
            read_mode: ReadMode::ReadIndex,
            max_pending_reads: 4096,
            max_clock_drift_ppm: 50_000,
            max_command_bytes: 64 * 1024,
            max_append_bytes: 1024 * 1024,
            max_inflight_bytes: 8 * 1024 * 1024,
            snapshot_policy: SnapshotPolicy { entries: 100_000, bytes: 64 * 1024 * 1024 },
            max_retained_entries: 5_000,
            snapshot_chunk_bytes: 256 * 1024,
            max_snapshot_bytes: 1024 * 1024 * 1024,
            forward_proposals: true,
            follower_reads: true,
            max_forwarded_proposals: 4096,
            quiesce_after_ms: 0,
            rng_seed: id.0,
            injected_bug: None,
        }
    }

    /// Checks every field for a node that bootstraps a new cluster with
    /// `voters`; see [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_limits()?;
        if self.voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        let mut sorted = self.voters.clone();
        sorted.sort();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::DuplicateVoter(pair[0]));
        }
        if !self.voters.contains(&self.id) {
            return Err(ConfigError::SelfNotVoter(self.id));
        }
        Ok(())
    }

    /// Checks every field except `voters`, which only a bootstrapping node
    /// uses (a joining or restarting node learns the configuration from its
    /// log).
    pub fn validate_limits(&self) -> Result<(), ConfigError> {
        if let Some(bug) = self.injected_bug.filter(|_| !cfg!(feature = "bug-injection")) {
            return Err(ConfigError::BugInjectionDisabled(bug));
        }
        for (name, value) in [
            ("max_command_bytes", self.max_command_bytes),
            ("max_append_bytes", self.max_append_bytes),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
        ] {
            if value > MAX_PAYLOAD_BYTES {
                return Err(ConfigError::AboveWireLimit { name, value });
            }
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.election_timeout_ms {
            return Err(ConfigError::BadTimeouts {
                heartbeat: self.heartbeat_interval_ms,
                election: self.election_timeout_ms,
            });
        }
        for (name, value) in [
            ("max_entries_per_append", self.max_entries_per_append),
            ("max_inflight_appends", self.max_inflight_appends),
            ("max_pending_requests", self.max_pending_requests),
            ("max_held_messages", self.max_held_messages),
            ("max_command_bytes", self.max_command_bytes),
            ("max_pending_reads", self.max_pending_reads),
            ("max_append_bytes", self.max_append_bytes),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("max_forwarded_proposals", self.max_forwarded_proposals),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { name });
            }
        }
        if self.max_append_bytes > self.max_inflight_bytes {
            return Err(ConfigError::AppendAboveInflight {
                append: self.max_append_bytes,
                inflight: self.max_inflight_bytes,
            });
        }
        if self.read_mode == ReadMode::Lease && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        if self.max_clock_drift_ppm >= 1_000_000 {
            return Err(ConfigError::DriftTooLarge(self.max_clock_drift_ppm));
        }
        Ok(())
    }

    /// How long a lease lasts after the heartbeat round that grants it was
    /// sent, in microseconds: the election timeout less the drift allowance.
    pub(crate) fn lease_duration_us(&self) -> u64 {
        let election_us = self.election_timeout_ms * 1000;
        election_us - election_us * self.max_clock_drift_ppm / 1_000_000
    }

    /// Is `bug` injected? Always false without the `bug-injection`
    /// feature: the compiler then removes every bug's branch.
    #[inline(always)]
    pub(crate) fn bug(&self, bug: Bug) -> bool {
        cfg!(feature = "bug-injection") && self.injected_bug == Some(bug)
    }
}
