//! What a cluster node is built from, and the first layout of a new cluster.

use super::meta::META_RANGE;
use crate::partition::{
    Allocator, Counts, Locality, NodeInfo, PlannerConfig, PlannerConfigError, RangeDescriptor, RangeId, Span,
    SplitPolicy,
};
use crate::raft;
use crate::swim::{self, Address};
use crate::types::NodeId;
use crate::types::Time;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// A cluster's ranges quiesce after this long idle by default (twice the
/// default election timeout): SWIM wakes them if their leader fails.
pub const QUIESCE_AFTER_MS: u64 = 300;

/// Largest number of ranges a bootstrap layout may create.
pub const MAX_BOOTSTRAP_RANGES: usize = 1 << 20;

/// Checks the sizes a bootstrap layout is asked for.
fn check_layout_size(nodes: usize, ranges: usize, rf: usize) -> Result<(), String> {
    if nodes == 0 || ranges == 0 || ranges > MAX_BOOTSTRAP_RANGES {
        return Err(format!("{nodes} nodes and {ranges} ranges (1 to {MAX_BOOTSTRAP_RANGES})"));
    }
    if rf == 0 || rf > nodes {
        return Err(format!("replication factor {rf} with {nodes} nodes"));
    }
    Ok(())
}

/// Range `i` of `ranges` ranges of equal width over the hashed keyspace.
fn even_span(i: usize, ranges: usize) -> Span {
    let bound = |i: usize| -> Vec<u8> { (((i as u128) << 64) / ranges as u128).to_be_bytes()[8..].to_vec() };
    let start = if i == 0 { Vec::new() } else { bound(i) };
    let end = (i + 1 < ranges).then(|| bound(i + 1));
    Span::new(start, end).expect("even bounds grow")
}

/// A cluster node's configuration.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node. Stable across restarts; the same id in SWIM and in every
    /// Raft group.
    pub id: NodeId,
    /// Where others reach this node.
    pub address: Address,
    /// Addresses to join through (SWIM seeds).
    pub seeds: Vec<Address>,
    /// Addresses known before SWIM has heard of their nodes (the initial
    /// members, typically).
    pub peers: Vec<(NodeId, Address)>,
    /// The first layout; the same on every initial member, `None` on a node
    /// that joins an existing cluster.
    pub bootstrap: Option<Bootstrap>,
    /// This node's failure domains, most significant first.
    pub locality: Locality,
    /// Its relative capacity (1 for a standard node).
    pub capacity: u32,
    /// The template for every range's Raft group: `id`, `voters` and
    /// `rng_seed` are set per range. Quiescence is on
    /// (`quiesce_after_ms` = [`QUIESCE_AFTER_MS`]); 0 turns it off.
    pub raft: raft::Config,
    /// The SWIM configuration: `id`, `address` and `metadata` are set by
    /// the node.
    pub swim: swim::Config,
    /// The planner the meta range's leader runs.
    pub planner: PlannerConfig,
    /// Followers' and candidates' timers are rounded up to a multiple of
    /// this (a leader's, to a multiple of the heartbeat interval, so that
    /// every range it leads beats at the same instants and each peer gets
    /// one batch per beat: coalesced heartbeats). A timer fires at most
    /// this late.
    pub tick_ms: u64,
    /// How often a node reports the ranges it leads to the meta leader.
    pub report_interval_ms: u64,
    /// How long the meta leader waits for an operation before giving up.
    pub operation_timeout_ms: u64,
    /// Least time between two fetches of the descriptors.
    pub meta_fetch_interval_ms: u64,
    /// How long a replica this node does not belong to is kept before it is
    /// destroyed (a learner being added is not yet in any descriptor).
    pub orphan_grace_ms: u64,
    /// Most quiesced ranges woken per `tick_ms` (after SWIM declares their
    /// leader failed, or after a restart): a failed node or a restart does
    /// not wake every range at once.
    pub max_wakes_per_tick: usize,
    /// Largest number of range replicas this node hosts.
    pub max_ranges: usize,
    /// Largest encoded message sent or accepted.
    pub max_message_bytes: usize,
    /// Seeds this node's random choices (disk ids, the planner).
    pub rng_seed: u64,
    /// A deliberate bug, for proving the simulator's checkers; `None` in
    /// production (and refused without the `bug-injection` feature).
    pub injected_bug: Option<super::ClusterBug>,
}

/// Why a cluster configuration was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClusterConfigError {
    /// A Raft setting is invalid.
    #[error("raft: {0}")]
    Raft(#[from] raft::ConfigError),
    /// A SWIM setting is invalid.
    #[error("swim: {0}")]
    Swim(#[from] swim::ConfigError),
    /// A planner setting is invalid.
    #[error("planner: {0}")]
    Planner(#[from] PlannerConfigError),
    /// The bootstrap layout is invalid.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// A limit or interval is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// The capacity is zero.
    #[error("capacity must be at least 1")]
    Capacity,
    /// A bug was asked for in a build without the `bug-injection` feature.
    #[error("injected bugs need the bug-injection feature")]
    BugInjectionDisabled,
    /// The planner would split or merge ranges, which the cluster does not
    /// carry out yet.
    #[error("planner.split must disable splits and merges (split_bytes u64::MAX, merge_bytes 0, split_qps None): the cluster does not split or merge ranges yet")]
    SplitsUnsupported,
}

impl ClusterConfig {
    /// A configuration with defaults: LAN Raft timings, SWIM's defaults,
    /// the balanced planner, reports every second.
    pub fn new(id: NodeId, address: Address) -> ClusterConfig {
        ClusterConfig {
            id,
            address: address.clone(),
            seeds: Vec::new(),
            peers: Vec::new(),
            bootstrap: None,
            locality: Locality::default(),
            capacity: 1,
            raft: raft::Config { quiesce_after_ms: QUIESCE_AFTER_MS, ..raft::Config::new(id, vec![id]) },
            swim: swim::Config::new(id, address),
            planner: PlannerConfig { split: no_splits(), ..PlannerConfig::default() },
            tick_ms: 10,
            report_interval_ms: 1_000,
            operation_timeout_ms: 10_000,
            meta_fetch_interval_ms: 500,
            orphan_grace_ms: 30_000,
            max_wakes_per_tick: 64,
            max_ranges: 100_000,
            max_message_bytes: crate::wire::MAX_MESSAGE_BYTES,
            rng_seed: id.0,
            injected_bug: None,
        }
    }

    pub(super) fn bug(&self, bug: super::ClusterBug) -> bool {
        cfg!(feature = "bug-injection") && self.injected_bug == Some(bug)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        self.raft.validate_limits()?;
        self.swim.validate()?;
        self.planner.validate()?;
        if self.capacity == 0 {
            return Err(ClusterConfigError::Capacity);
        }
        let split = &self.planner.split;
        if split.split_bytes != u64::MAX || split.merge_bytes != 0 || split.split_qps.is_some() {
            return Err(ClusterConfigError::SplitsUnsupported);
        }
        for (value, name) in [
            (self.tick_ms, "tick_ms"),
            (self.report_interval_ms, "report_interval_ms"),
            (self.operation_timeout_ms, "operation_timeout_ms"),
            (self.meta_fetch_interval_ms, "meta_fetch_interval_ms"),
            (self.max_ranges as u64, "max_ranges"),
            (self.max_wakes_per_tick as u64, "max_wakes_per_tick"),
            (self.max_message_bytes as u64, "max_message_bytes"),
        ] {
            if value == 0 {
                return Err(ClusterConfigError::Zero(name));
            }
        }
        if let Some(bootstrap) = &self.bootstrap {
            bootstrap.validate().map_err(ClusterConfigError::Bootstrap)?;
        }
        if self.injected_bug.is_some() && !cfg!(feature = "bug-injection") {
            return Err(ClusterConfigError::BugInjectionDisabled);
        }
        Ok(())
    }
}

/// A split policy under which ranges never split or merge.
fn no_splits() -> SplitPolicy {
    SplitPolicy { split_bytes: u64::MAX, merge_bytes: 0, split_qps: None, ..SplitPolicy::default() }
}

/// The layout of a new cluster: who holds the meta range, and the first
/// user ranges with their voters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// The meta range's voters.
    pub meta_voters: Vec<NodeId>,
    /// The user ranges; they must cover the (hashed) keyspace.
    pub ranges: Vec<RangeDescriptor>,
}

impl Bootstrap {
    /// `ranges` ranges of equal width over the hashed keyspace, each on
    /// `rf` of `nodes` in turn, and the meta range on the first
    /// `min(nodes, meta_voters)`.
    pub fn even(nodes: &[NodeId], ranges: usize, rf: usize, meta_voters: usize) -> Result<Bootstrap, String> {
        check_layout_size(nodes.len(), ranges, rf)?;
        let descriptors = (0..ranges)
            .map(|i| {
                let voters = (0..rf).map(|k| nodes[(i + k) % nodes.len()]);
                RangeDescriptor::new(RangeId(i as u64 + 1), even_span(i, ranges), voters)
            })
            .collect();
        let meta_voters = nodes.iter().copied().take(meta_voters.clamp(1, nodes.len())).collect();
        Ok(Bootstrap { meta_voters, ranges: descriptors })
    }

    /// As [`Bootstrap::even`], but each range's voters chosen the way the
    /// planner chooses a new replica (the most diverse place, then the less
    /// loaded), so that the planner finds nothing to move in a layout it
    /// starts from: a large cluster does not begin by moving thousands of
    /// replicas for diversity. `seed` drives the allocator's random
    /// choices; the meta range goes on the first `meta_voters` nodes the
    /// same way.
    pub fn placed(
        nodes: &[NodeInfo],
        ranges: usize,
        rf: usize,
        meta_voters: usize,
        seed: u64,
    ) -> Result<Bootstrap, String> {
        check_layout_size(nodes.len(), ranges, rf)?;
        let infos: BTreeMap<NodeId, NodeInfo> = nodes.iter().map(|n| (n.id, n.clone())).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut counts = Counts::default();
        let mut place = |id: RangeId, span: Span, count: usize| {
            let mut descriptor = RangeDescriptor::new(id, span.clone(), std::iter::empty());
            for _ in 0..count {
                let allocator = Allocator::new(&infos, &counts, 5, Time::ZERO, 0);
                let node = allocator.choose_add(&descriptor, None, &mut rng).ok_or("no node can take a replica")?;
                counts.adjust_replicas(node, 1);
                let voters: Vec<NodeId> = descriptor.voters().chain([node]).collect();
                descriptor = RangeDescriptor::new(id, span.clone(), voters);
            }
            Ok::<_, String>(descriptor)
        };
        let meta = place(META_RANGE, Span::full(), meta_voters.clamp(1, nodes.len()))?;
        let meta_voters = meta.voters().collect();
        let descriptors =
            (0..ranges).map(|i| place(RangeId(i as u64 + 1), even_span(i, ranges), rf)).collect::<Result<_, _>>()?;
        Ok(Bootstrap { meta_voters, ranges: descriptors })
    }

    /// Checks the layout: meta voters, ids, cover.
    pub fn validate(&self) -> Result<(), String> {
        if self.meta_voters.is_empty() {
            return Err("no meta voters".into());
        }
        if self.meta_voters.iter().collect::<BTreeSet<_>>().len() != self.meta_voters.len() {
            return Err(format!("meta voters {:?} repeat a node", self.meta_voters));
        }
        if self.ranges.len() > MAX_BOOTSTRAP_RANGES {
            return Err(format!("{} ranges, more than {MAX_BOOTSTRAP_RANGES}", self.ranges.len()));
        }
        if let Some(d) = self.ranges.iter().find(|d| d.id == META_RANGE || d.voter_count() == 0) {
            return Err(format!("{} uses the meta range's id or has no voter", d.id));
        }
        crate::partition::check_cover(&self.ranges).map_err(|error| error.to_string())
    }
}
