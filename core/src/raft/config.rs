//! Static configuration of one Raft node.

use super::bug::Bug;
use crate::types::NodeId;

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
    /// Most bytes in one client command or query.
    pub max_command_bytes: usize,
    /// Seed of this node's private RNG (election jitter).
    pub rng_seed: u64,
    /// A deliberate protocol bug, for simulation only. `None` in production.
    pub injected_bug: Option<Bug>,
}

/// Why a [`Config`] was rejected. Nothing is built when validation fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("voters is empty: a cluster needs at least one voting member")]
    NoVoters,
    #[error("node {0} is not among the voters")]
    SelfNotVoter(NodeId),
    #[error("node {0} is listed twice among the voters")]
    DuplicateVoter(NodeId),
    #[error("heartbeat_interval_ms ({heartbeat}) must be at least 1 and below election_timeout_ms ({election})")]
    BadTimeouts { heartbeat: u64, election: u64 },
    #[error("{name} must be at least 1")]
    ZeroLimit { name: &'static str },
}

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
            max_entries_per_append: 64,
            max_inflight_appends: 8,
            max_pending_requests: 4096,
            max_held_messages: 4096,
            max_command_bytes: 64 * 1024,
            rng_seed: id.0,
            injected_bug: None,
        }
    }

    /// Checks every field; see [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { name });
            }
        }
        Ok(())
    }

    pub(crate) fn bug(&self, bug: Bug) -> bool {
        self.injected_bug == Some(bug)
    }
}
