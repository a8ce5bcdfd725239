//! Static configuration of one SWIM node: identity, timings, Lifeguard and
//! every limit.

use super::bug::Bug;
use super::member::{Address, Incarnation, MemberId, MemberRecord, MemberState, Metadata, MAX_INCARNATION};
use super::message::{Message, MessageBody, ProbeNumber, Update};
use super::wire::{self, MAX_DATAGRAM_BYTES};

/// Configuration of one SWIM node. Every limit is named here;
/// [`Config::validate`] rejects inconsistent values before a node is built.
///
/// Defaults ([`Config::new`]) follow memberlist's LAN profile.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node. Stable across restarts.
    pub id: MemberId,
    /// Where others reach this node. At most `max_address_bytes`.
    pub address: Address,
    /// This node's initial metadata. At most `max_metadata_bytes`.
    pub metadata: Metadata,
    /// The incarnation to start with. Zero is fine even after a restart: a
    /// node that hears of its previous life at a higher (or equal but
    /// conflicting) incarnation reclaims its identity by raising its own. A
    /// driver that persists the incarnation can start above it to skip that
    /// round trip. At most [`MAX_INCARNATION`].
    pub initial_incarnation: Incarnation,
    /// Addresses to join through. Contacted with a push-pull exchange at
    /// start, every `join_retry_interval_ms` while this node knows no live
    /// member, and among failed members every `reconnect_interval_ms` when a
    /// seed is not a known live member. This node's own address is skipped.
    /// At most `max_members` entries.
    pub seeds: Vec<Address>,
    /// Seed of this node's private RNG (probe order, helpers, peers for
    /// anti-entropy and reconnection).
    pub rng_seed: u64,

    /// Turns on the three Lifeguard extensions: the local health multiplier,
    /// suspicion timeouts that shrink with confirmations, and the buddy system
    /// (pings to a suspect carry the suspicion). Off is classic SWIM, kept for
    /// side-by-side comparison.
    pub lifeguard: bool,

    /// Length of a protocol period: one probe target per period. Scaled by the
    /// local health multiplier.
    pub probe_interval_ms: u64,
    /// How long to wait for a direct ack before asking helpers to probe
    /// indirectly. Scaled by the local health multiplier; must stay below
    /// `probe_interval_ms`. Helpers wait four fifths of it (unscaled) before
    /// answering with a nack.
    pub probe_timeout_ms: u64,
    /// Helpers asked to probe a silent target indirectly (SWIM's `k`). Zero
    /// disables indirect probes.
    pub indirect_checks: usize,
    /// SWIM's suspicion multiplier α: the classic suspicion timeout is
    /// `α · max(1, log10(n)) · probe_interval`. With Lifeguard it is the
    /// minimum timeout.
    pub suspicion_multiplier: u32,
    /// Lifeguard's β: the maximum suspicion timeout is β times the minimum.
    pub suspicion_max_multiplier: u32,
    /// Lifeguard's `K`: independent confirmations after which the suspicion
    /// timeout reaches its minimum (capped at `n − 2`, the members that could
    /// possibly confirm).
    pub suspicion_confirmations: u32,
    /// Lifeguard's local health score saturates at this value, so probe
    /// interval and timeout stretch at most `local_health_max + 1` times.
    pub local_health_max: u32,
    /// λ: each update is piggybacked `λ · ⌈log10(n + 1)⌉` times.
    pub retransmit_multiplier: u32,
    /// Interval of gossip rounds (memberlist's `GossipInterval`): every
    /// round, while more than `gossip_backlog_bytes` of updates wait in the
    /// piggyback queue, this node sends them to `gossip_fanout` random live
    /// (alive or suspect) members in messages of their own. Piggybacking on
    /// probes alone carries about two messages' worth of news per period; a
    /// burst of news (a join wave) needs more bandwidth.
    pub gossip_interval_ms: u64,
    /// Members sent a gossip message per gossip round (memberlist's
    /// `GossipNodes`). Zero disables gossip rounds: news then rides on
    /// probes and acks only, as in the SWIM paper.
    pub gossip_fanout: usize,
    /// Gossip rounds run only while the piggyback queue holds more than this
    /// many encoded bytes of updates: a backlog that piggybacking cannot
    /// carry soon. The default (one datagram's worth) keeps the message load
    /// at SWIM's two messages per member per period under a steady trickle
    /// of news (a crash, a refutation), and opens the valve for bursts. Zero
    /// gossips whenever anything waits, as memberlist does.
    pub gossip_backlog_bytes: usize,
    /// Interval of push-pull anti-entropy with one random live member, in
    /// clusters of up to 32 live members. Larger clusters stretch it as
    /// memberlist does, by `⌈log2(n) − log2(32)⌉ + 1`, so that the cost of
    /// full-state exchanges (which grow with `n`) stays bounded per member.
    pub push_pull_interval_ms: u64,
    /// Mean interval of attempts to reach one failed member (or an absent
    /// seed), so that a cluster split by a long partition heals by itself.
    /// Each interval is drawn uniformly from half to one and a half times this.
    pub reconnect_interval_ms: u64,
    /// Mean interval of join attempts to every seed while this node knows no
    /// live member (jittered like `reconnect_interval_ms`).
    pub join_retry_interval_ms: u64,
    /// How long a failed or left member is remembered (so that stale news
    /// cannot resurrect it, and so that failed members are retried).
    pub tombstone_retention_ms: u64,
    /// Live members sent a leave notice directly when this node leaves (the
    /// notice is also piggybacked as usual).
    pub leave_fanout: usize,

    /// Most members known at once, this node and tombstones included. News of
    /// more is dropped (after evicting the oldest tombstone, if any) with
    /// [`Event::MemberLimitReached`](super::Event::MemberLimitReached).
    pub max_members: usize,
    /// Most bytes in one encoded message, in both directions. Every message
    /// this node builds, piggyback included, fits; larger input is rejected.
    /// At most [`MAX_DATAGRAM_BYTES`]; the default suits a 1500-byte MTU.
    pub max_message_bytes: usize,
    /// Most bytes of a member's address.
    pub max_address_bytes: usize,
    /// Most bytes of a member's metadata.
    pub max_metadata_bytes: usize,
    /// Most updates waiting to be piggybacked (at most one per member). When
    /// full, the most-transmitted, oldest update is evicted: the members who
    /// heard it are spreading it too, and push-pull repairs whatever is
    /// lost. At the gossip rate a full default queue takes about two minutes
    /// to drain.
    pub max_dissemination_queue: usize,
    /// Most indirect probes this node runs at once for others; further
    /// ping-reqs are ignored.
    pub max_pending_relays: usize,

    /// A deliberate protocol bug, for proving the simulator's checkers.
    /// Always `None` outside such tests.
    pub injected_bug: Option<Bug>,
}

/// Why a [`Config`] was rejected. Nothing is built when validation fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An interval, multiplier or limit that must be at least 1 is 0.
    #[error("{name} must be at least 1")]
    Zero {
        /// The field's name, e.g. `"max_members"`.
        name: &'static str,
    },
    /// `injected_bug` is set, but chorus-core was built without the
    /// `bug-injection` feature. Production configs leave it `None`.
    #[error(
        "injected_bug is {0:?}, but this build has no bug injection (build chorus-core with the `bug-injection` \
         feature, as the simulator does)"
    )]
    BugInjectionDisabled(Bug),
    /// `probe_timeout_ms` is below 2 or not below `probe_interval_ms`: the
    /// indirect probe must have time to run within the period.
    #[error("probe_timeout_ms ({timeout}) must be at least 2 and below probe_interval_ms ({interval})")]
    BadProbeTimeout {
        /// The configured `probe_timeout_ms`.
        timeout: u64,
        /// The configured `probe_interval_ms`.
        interval: u64,
    },
    /// An interval is beyond [`MAX_DURATION_MS`], the tombstone retention
    /// beyond [`MAX_RETENTION_MS`], or a multiplier (α, β, K, λ, the local
    /// health maximum) beyond [`MAX_MULTIPLIER`]. For a multiplier the
    /// message says "ms" although the value has no unit.
    #[error("{name} ({value} ms) is beyond the limit of {limit} ms")]
    TooLong {
        /// The field's name.
        name: &'static str,
        /// The configured value.
        value: u64,
        /// The largest value accepted.
        limit: u64,
    },
    /// This node's address, or one of the seeds, is longer than
    /// `max_address_bytes`.
    #[error("the address has {bytes} bytes, more than max_address_bytes ({limit})")]
    AddressTooLong {
        /// The address's length.
        bytes: usize,
        /// The configured `max_address_bytes`.
        limit: usize,
    },
    /// The initial metadata is longer than `max_metadata_bytes`.
    #[error("the metadata has {bytes} bytes, more than max_metadata_bytes ({limit})")]
    MetadataTooLarge {
        /// The metadata's length.
        bytes: usize,
        /// The configured `max_metadata_bytes`.
        limit: usize,
    },
    /// More seeds than `max_members`.
    #[error("{count} seeds, more than max_members ({limit})")]
    TooManySeeds {
        /// How many seeds are configured.
        count: usize,
        /// The configured `max_members`.
        limit: usize,
    },
    /// `initial_incarnation` is beyond [`MAX_INCARNATION`].
    #[error("initial incarnation {0} is beyond the limit {MAX_INCARNATION}")]
    IncarnationTooLarge(Incarnation),
    /// `max_message_bytes` is above [`MAX_DATAGRAM_BYTES`], or too small for
    /// one update or push-pull record at the configured address and metadata
    /// limits: raise it, or lower those limits.
    #[error("max_message_bytes ({configured}) must be at most {MAX_DATAGRAM_BYTES} and at least {required}, the largest message with one update or record at the configured size limits")]
    BadMessageBudget {
        /// The configured `max_message_bytes`.
        configured: usize,
        /// The smallest budget these limits allow
        /// ([`Config::largest_single_item_message_bytes`]).
        required: usize,
    },
}

/// Longest interval or timeout accepted: a day. Keeps every deadline and
/// every scaled duration far from overflow.
pub const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;

/// Longest tombstone retention accepted: thirty days.
pub const MAX_RETENTION_MS: u64 = 30 * MAX_DURATION_MS;

/// Largest value accepted for the small multipliers (α, β, K, λ, the local
/// health maximum).
pub const MAX_MULTIPLIER: u32 = 64;

impl Config {
    /// A configuration with memberlist's LAN timings (1 s probe interval,
    /// 500 ms probe timeout, 3 indirect checks, α = 4, β = 6, K = 3, λ = 4),
    /// gossip rounds of 3 members every 200 ms, Lifeguard on, and a
    /// 1,400-byte message budget.
    pub fn new(id: MemberId, address: Address) -> Config {
        Config {
            id,
            address,
            metadata: Metadata::default(),
            initial_incarnation: Incarnation::ZERO,
            seeds: Vec::new(),
            rng_seed: id.0,
            lifeguard: true,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 500,
            indirect_checks: 3,
            suspicion_multiplier: 4,
            suspicion_max_multiplier: 6,
            suspicion_confirmations: 3,
            local_health_max: 8,
            retransmit_multiplier: 4,
            gossip_interval_ms: 200,
            gossip_fanout: 3,
            gossip_backlog_bytes: 1_400,
            push_pull_interval_ms: 30_000,
            reconnect_interval_ms: 10_000,
            join_retry_interval_ms: 1_000,
            tombstone_retention_ms: 24 * 60 * 60 * 1000,
            leave_fanout: 3,
            max_members: 4_096,
            max_message_bytes: 1_400,
            max_address_bytes: 128,
            max_metadata_bytes: 256,
            max_dissemination_queue: 4_096,
            max_pending_relays: 256,
            injected_bug: None,
        }
    }

    /// Checks every field; see [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(bug) = self.injected_bug.filter(|_| !cfg!(feature = "bug-injection")) {
            return Err(ConfigError::BugInjectionDisabled(bug));
        }
        for (name, value) in [
            ("probe_interval_ms", self.probe_interval_ms),
            ("gossip_interval_ms", self.gossip_interval_ms),
            ("push_pull_interval_ms", self.push_pull_interval_ms),
            ("reconnect_interval_ms", self.reconnect_interval_ms),
            ("join_retry_interval_ms", self.join_retry_interval_ms),
            ("tombstone_retention_ms", self.tombstone_retention_ms),
            ("suspicion_multiplier", u64::from(self.suspicion_multiplier)),
            ("suspicion_max_multiplier", u64::from(self.suspicion_max_multiplier)),
            ("retransmit_multiplier", u64::from(self.retransmit_multiplier)),
            ("max_members", self.max_members as u64),
            ("max_address_bytes", self.max_address_bytes as u64),
            ("max_dissemination_queue", self.max_dissemination_queue as u64),
            ("max_pending_relays", self.max_pending_relays as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { name });
            }
        }
        for (name, value) in [
            ("probe_interval_ms", self.probe_interval_ms),
            ("gossip_interval_ms", self.gossip_interval_ms),
            ("push_pull_interval_ms", self.push_pull_interval_ms),
            ("reconnect_interval_ms", self.reconnect_interval_ms),
            ("join_retry_interval_ms", self.join_retry_interval_ms),
        ] {
            if value > MAX_DURATION_MS {
                return Err(ConfigError::TooLong { name, value, limit: MAX_DURATION_MS });
            }
        }
        if self.tombstone_retention_ms > MAX_RETENTION_MS {
            return Err(ConfigError::TooLong {
                name: "tombstone_retention_ms",
                value: self.tombstone_retention_ms,
                limit: MAX_RETENTION_MS,
            });
        }
        for (name, value) in [
            ("suspicion_multiplier", self.suspicion_multiplier),
            ("suspicion_max_multiplier", self.suspicion_max_multiplier),
            ("suspicion_confirmations", self.suspicion_confirmations),
            ("local_health_max", self.local_health_max),
            ("retransmit_multiplier", self.retransmit_multiplier),
        ] {
            if value > MAX_MULTIPLIER {
                return Err(ConfigError::TooLong { name, value: u64::from(value), limit: u64::from(MAX_MULTIPLIER) });
            }
        }
        self.validate_sizes()
    }

    /// The timeout and the size limits: addresses, seeds, metadata, the
    /// incarnation and the message budget.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        if self.probe_timeout_ms < 2 || self.probe_timeout_ms >= self.probe_interval_ms {
            return Err(ConfigError::BadProbeTimeout {
                timeout: self.probe_timeout_ms,
                interval: self.probe_interval_ms,
            });
        }
        if self.address.0.len() > self.max_address_bytes {
            return Err(ConfigError::AddressTooLong { bytes: self.address.0.len(), limit: self.max_address_bytes });
        }
        if let Some(seed) = self.seeds.iter().find(|seed| seed.0.len() > self.max_address_bytes) {
            return Err(ConfigError::AddressTooLong { bytes: seed.0.len(), limit: self.max_address_bytes });
        }
        if self.seeds.len() > self.max_members {
            return Err(ConfigError::TooManySeeds { count: self.seeds.len(), limit: self.max_members });
        }
        if self.metadata.0.len() > self.max_metadata_bytes {
            return Err(ConfigError::MetadataTooLarge { bytes: self.metadata.0.len(), limit: self.max_metadata_bytes });
        }
        if self.initial_incarnation > MAX_INCARNATION {
            return Err(ConfigError::IncarnationTooLarge(self.initial_incarnation));
        }
        let required = self.largest_single_item_message_bytes();
        if self.max_message_bytes > MAX_DATAGRAM_BYTES || self.max_message_bytes < required {
            return Err(ConfigError::BadMessageBudget { configured: self.max_message_bytes, required });
        }
        Ok(())
    }

    /// Encoded size of the largest message carrying exactly one update or
    /// push-pull record, with every field at its limit. A budget at least this
    /// large guarantees every body can be sent and every update and record
    /// fits in some message.
    pub fn largest_single_item_message_bytes(&self) -> usize {
        let id = crate::types::NodeId(u64::MAX);
        let address = Address::new(vec![0xff; self.max_address_bytes]);
        let metadata = Metadata::new(vec![0xff; self.max_metadata_bytes]);
        let incarnation = MAX_INCARNATION;
        let header = |body: MessageBody, updates: Vec<Update>| Message {
            from: id,
            from_address: address.clone(),
            to: Some(id),
            body,
            updates,
        };
        let largest_update =
            Update::Alive { member: id, incarnation, address: address.clone(), metadata: metadata.clone() };
        let ping_req = MessageBody::PingReq {
            probe: ProbeNumber(u64::MAX),
            target: id,
            target_address: address.clone(),
            want_nack: true,
        };
        let record = MemberRecord { id, address: address.clone(), metadata, incarnation, state: MemberState::Left };
        let push_pull = MessageBody::PushPull { want_reply: true, members: vec![record] };
        [header(ping_req, vec![largest_update]), header(push_pull, Vec::new())]
            .iter()
            .map(wire::encoded_len)
            .max()
            .expect("invariant: the array is not empty")
    }

    /// Whether `bug` is injected.
    #[inline(always)]
    pub(crate) fn has_bug(&self, bug: Bug) -> bool {
        cfg!(feature = "bug-injection") && self.injected_bug == Some(bug)
    }

    /// The push-pull interval for a cluster of `live_members` (see
    /// [`Config::push_pull_interval_ms`]).
    pub fn push_pull_interval_micros(&self, live_members: usize) -> u64 {
        const UNSCALED_MEMBERS: usize = 32;
        let base = self.push_pull_interval_ms * 1000;
        if live_members <= UNSCALED_MEMBERS {
            return base;
        }
        // ⌈log2(n) − 5⌉ + 1, in integers: ⌈log2(n / 32)⌉ + 1.
        let ratio_ceiling = live_members.div_ceil(UNSCALED_MEMBERS);
        let multiplier = u64::from(ratio_ceiling.next_power_of_two().trailing_zeros()) + 1;
        base.saturating_mul(multiplier)
    }

    pub(crate) fn probe_interval_micros(&self) -> u64 {
        self.probe_interval_ms * 1000
    }

    pub(crate) fn probe_timeout_micros(&self) -> u64 {
        self.probe_timeout_ms * 1000
    }

    /// How long a helper waits for the target's ack before nacking.
    pub(crate) fn relay_timeout_micros(&self) -> u64 {
        self.probe_timeout_micros() * 4 / 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn config() -> Config {
        Config::new(NodeId(1), Address::new(b"10.0.0.1:7946".to_vec()))
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn the_default_budget_leaves_room_for_piggybacking() {
        // A ping with every field at its limit still has room for two updates
        // of the largest size.
        let config = config();
        let id = NodeId(u64::MAX);
        let address = Address::new(vec![0xff; config.max_address_bytes]);
        let update = Update::Alive {
            member: id,
            incarnation: MAX_INCARNATION,
            address: address.clone(),
            metadata: Metadata::new(vec![0xff; config.max_metadata_bytes]),
        };
        let ping = Message {
            from: id,
            from_address: address,
            to: Some(id),
            body: MessageBody::Ping { probe: ProbeNumber(u64::MAX) },
            updates: vec![update.clone(), update],
        };
        assert!(wire::encoded_len(&ping) <= config.max_message_bytes);
    }

    #[test]
    fn push_pull_stretches_with_log_of_the_cluster_size() {
        let config = config();
        assert_eq!(config.push_pull_interval_micros(1), 30_000_000);
        assert_eq!(config.push_pull_interval_micros(32), 30_000_000);
        assert_eq!(config.push_pull_interval_micros(33), 60_000_000);
        assert_eq!(config.push_pull_interval_micros(64), 60_000_000);
        assert_eq!(config.push_pull_interval_micros(1_000), 180_000_000);
        assert_eq!(config.push_pull_interval_micros(10_000), 300_000_000);
    }

    #[test]
    fn each_limit_is_enforced() {
        let mut bad = config();
        bad.probe_timeout_ms = bad.probe_interval_ms;
        assert!(matches!(bad.validate(), Err(ConfigError::BadProbeTimeout { .. })));

        let mut bad = config();
        bad.max_members = 0;
        assert_eq!(bad.validate(), Err(ConfigError::Zero { name: "max_members" }));

        let mut bad = config();
        bad.metadata = Metadata::new(vec![0; bad.max_metadata_bytes + 1]);
        assert!(matches!(bad.validate(), Err(ConfigError::MetadataTooLarge { .. })));

        let mut bad = config();
        bad.address = Address::new(vec![0; bad.max_address_bytes + 1]);
        assert!(matches!(bad.validate(), Err(ConfigError::AddressTooLong { .. })));

        let mut bad = config();
        bad.max_metadata_bytes = 2_000;
        assert!(matches!(bad.validate(), Err(ConfigError::BadMessageBudget { .. })));

        let mut bad = config();
        bad.max_message_bytes = MAX_DATAGRAM_BYTES + 1;
        assert!(matches!(bad.validate(), Err(ConfigError::BadMessageBudget { .. })));

        let mut bad = config();
        bad.initial_incarnation = MAX_INCARNATION.next();
        assert!(matches!(bad.validate(), Err(ConfigError::IncarnationTooLarge(_))));

        let mut bad = config();
        bad.probe_interval_ms = MAX_DURATION_MS + 1;
        bad.probe_timeout_ms = 500;
        assert!(matches!(bad.validate(), Err(ConfigError::TooLong { name: "probe_interval_ms", .. })));

        let mut bad = config();
        bad.local_health_max = MAX_MULTIPLIER + 1;
        assert!(matches!(bad.validate(), Err(ConfigError::TooLong { name: "local_health_max", .. })));
    }
}
