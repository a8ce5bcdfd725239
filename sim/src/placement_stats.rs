//! `chorus-sim placement-stats`: how evenly a placement strategy spreads
//! keys and replica slots over nodes, how many keys move when one node is
//! added or removed (next to the theoretical minimum), and what a lookup
//! costs.
//!
//! Keys are `key-0`, `key-1`, ... so every run with the same flags gives the
//! same distribution and movement figures; only the lookup times vary.
//!
//! - `ring`: [`HashRing`] with nodes `0..N` joining in order, `V` vnodes
//!   each. Added: node `N`. Removed: node 0 (the first to join).
//! - `jump`: [`ShardMap::successors`]: one jump shard per node, shard `i` on
//!   nodes `i, i+1, ..., i+rf-1` (mod N). Added: shard and node `N`.
//!   Removed: the last shard and node `N-1` (jump consistent hashing can
//!   only drop the last bucket; a failed node elsewhere has its shard's
//!   replicas replaced instead, which moves no keys between shards).
//! - `balanced`: the balanced allocator over ranges of the hashed keyspace;
//!   see `placement_stats/balanced.rs` for the definition. Added: node `N`;
//!   removed: node 0, both followed by rebalancing to a fixed point.
//!
//! A key moves when its primary node changes; a replica slot moves when a
//! node leaves the key's replica set. The minimum on adding a node is
//! `1/(N+1)` of keys (the new node's fair share) and, likewise, `1/(N+1)` of
//! replica slots; on removing one, `1/N`.

mod balanced;

pub use balanced::{KEYS_PER_RANGE, MAX_BALANCED_RANGES, MAX_REBALANCE_ROUNDS, RANGES_PER_NODE};
use chorus_core::partition::{key_hash, HashRing, ShardMap, TokenPlacement};
use chorus_core::types::NodeId;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// Most nodes `placement-stats` measures.
pub const MAX_STATS_NODES: u64 = 10_000;
/// Most vnodes per node.
pub const MAX_STATS_VNODES: u64 = 1_000;
/// Most tokens on a measured ring (nodes × vnodes).
pub const MAX_STATS_TOKENS: u64 = 1_000_000;
/// Most replicas per key.
pub const MAX_STATS_RF: u64 = 16;
/// Most keys.
pub const MAX_STATS_KEYS: u64 = 10_000_000;
/// Keys whose lookups are timed (the first ones of the run's keys).
pub const LOOKUP_SAMPLE_KEYS: u64 = 100_000;
/// Lookups timed in all: the sample, looped.
pub const LOOKUPS_TIMED: u64 = 2_000_000;
/// Lookups per timed chunk.
pub const LOOKUP_CHUNK_KEYS: u64 = 1_000;

/// Which placement is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Consistent hashing with virtual nodes, with the given token placement.
    Ring(TokenPlacement),
    /// Jump shards, one per node.
    Jump,
    /// The balanced allocator.
    Balanced,
}

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct StatsOptions {
    /// Nodes before the one added (at least 2: one is also removed).
    pub nodes: u64,
    /// Vnodes per node (ring only).
    pub vnodes: u64,
    /// Replicas per key.
    pub rf: u64,
    /// Keys.
    pub keys: u64,
    /// The placement.
    pub strategy: Strategy,
}

/// The figures of one measurement. Fractions are of all keys (or all
/// replica slots); spreads are standard deviations in % of the mean.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementStats {
    /// Spread of keys (primary replicas) per node.
    pub share_sd_pct: f64,
    /// Largest key count over the mean.
    pub max_over_mean: f64,
    /// Smallest key count over the mean.
    pub min_over_mean: f64,
    /// Spread of replica slots per node.
    pub replica_share_sd_pct: f64,
    /// Largest replica-slot count over the mean.
    pub replica_max_over_mean: f64,
    /// Smallest replica-slot count over the mean.
    pub replica_min_over_mean: f64,
    /// Keys whose primary changes when a node is added.
    pub move_on_add: f64,
    /// `1/(N+1)`.
    pub move_on_add_optimal: f64,
    /// Replica slots that change node when a node is added.
    pub replica_move_on_add: f64,
    /// Keys whose primary changes when a node is removed.
    pub move_on_remove: f64,
    /// `1/N`.
    pub move_on_remove_optimal: f64,
    /// Replica slots that change node when a node is removed.
    pub replica_move_on_remove: f64,
    /// Nanoseconds to find a key's replicas, hashing included.
    pub lookup_ns: f64,
    /// Of which hashing the key (BLAKE3).
    pub hash_ns: f64,
}

/// Checks the options' sizes; the message names the flag.
pub fn validate(options: &StatsOptions) -> Result<(), String> {
    let StatsOptions { nodes, vnodes, rf, keys, strategy } = *options;
    if !(2..=MAX_STATS_NODES).contains(&nodes) {
        return Err(format!("--nodes {nodes}: must be between 2 and {MAX_STATS_NODES} (a node is also removed)"));
    }
    if !(1..=MAX_STATS_VNODES).contains(&vnodes) {
        return Err(format!("--vnodes {vnodes}: must be between 1 and {MAX_STATS_VNODES}"));
    }
    if (nodes + 1) * vnodes > MAX_STATS_TOKENS && matches!(strategy, Strategy::Ring(_)) {
        return Err(format!("--nodes {nodes} --vnodes {vnodes}: more than {MAX_STATS_TOKENS} tokens on the ring"));
    }
    if rf == 0 || rf > nodes.min(MAX_STATS_RF) {
        return Err(format!("--rf {rf}: must be between 1 and the node count ({nodes}), at most {MAX_STATS_RF}"));
    }
    if !(1..=MAX_STATS_KEYS).contains(&keys) {
        return Err(format!("--keys {keys}: must be between 1 and {MAX_STATS_KEYS}"));
    }
    Ok(())
}

/// Where keys go: a key's hash → its replicas, first the primary.
trait Placement {
    fn replicas(&self, hash: u64, rf: usize, out: &mut Vec<NodeId>);
}

impl Placement for HashRing {
    fn replicas(&self, hash: u64, rf: usize, out: &mut Vec<NodeId>) {
        self.nodes_for_hash(hash, rf, out);
    }
}

impl Placement for ShardMap {
    fn replicas(&self, hash: u64, _rf: usize, out: &mut Vec<NodeId>) {
        out.clear();
        out.extend_from_slice(self.replicas(self.shard_for_hash(hash)).unwrap_or_default());
    }
}

/// Measures `options` (checked with [`validate`] first).
pub fn measure(options: &StatsOptions) -> Result<PlacementStats, String> {
    validate(options)?;
    let nodes: Vec<NodeId> = (0..options.nodes).map(NodeId).collect();
    let rf = options.rf as usize;
    match options.strategy {
        Strategy::Ring(placement) => {
            // Sizes were checked against the ring's limits above.
            let vnodes = options.vnodes as u32;
            let ring_error = |error: chorus_core::partition::RingError| error.to_string();
            let mut base = HashRing::new(placement).map_err(ring_error)?;
            for &node in &nodes {
                base.add_node(node, vnodes).map_err(ring_error)?;
            }
            let mut grown = base.clone();
            grown.add_node(NodeId(options.nodes), vnodes).map_err(ring_error)?;
            let mut shrunk = base.clone();
            shrunk.remove_node(NodeId(0)).map_err(ring_error)?;
            Ok(measure_placement(options, &nodes, [&base, &grown, &shrunk]))
        }
        Strategy::Jump => {
            let shard_error = |error: chorus_core::partition::ShardMapError| error.to_string();
            let base = ShardMap::successors(&nodes, rf).map_err(shard_error)?;
            let mut more = nodes.clone();
            more.push(NodeId(options.nodes));
            let grown = ShardMap::successors(&more, rf).map_err(shard_error)?;
            let shrunk =
                ShardMap::successors(&nodes[..nodes.len() - 1], rf.min(nodes.len() - 1)).map_err(shard_error)?;
            Ok(measure_placement(options, &nodes, [&base, &grown, &shrunk]))
        }
        Strategy::Balanced => {
            let base = balanced::Layout::place(options.nodes, rf, options.keys)?;
            let grown = base.with_node(options.nodes);
            let shrunk = base.without_node(0)?;
            Ok(measure_placement(options, &nodes, [&base, &grown, &shrunk]))
        }
    }
}

/// Counts over every key of the run.
#[derive(Default)]
struct Counts {
    primary: BTreeMap<NodeId, u64>,
    replica: BTreeMap<NodeId, u64>,
    moved_on_add: u64,
    slots_moved_on_add: u64,
    moved_on_remove: u64,
    slots_moved_on_remove: u64,
}

/// Replica slots of `before` whose node is not in `after`.
fn slots_moved(before: &[NodeId], after: &[NodeId]) -> u64 {
    before.iter().filter(|node| !after.contains(node)).count() as u64
}

fn measure_placement<P: Placement>(
    options: &StatsOptions,
    nodes: &[NodeId],
    [base, grown, shrunk]: [&P; 3],
) -> PlacementStats {
    let rf = options.rf as usize;
    let mut counts = Counts {
        primary: nodes.iter().map(|&node| (node, 0)).collect(),
        replica: nodes.iter().map(|&node| (node, 0)).collect(),
        ..Counts::default()
    };
    let (mut before, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    let mut key = String::new();
    for i in 0..options.keys {
        key.clear();
        let _ = write!(key, "key-{i}");
        let hash = key_hash(key.as_bytes());
        base.replicas(hash, rf, &mut before);
        grown.replicas(hash, rf, &mut added);
        shrunk.replicas(hash, rf, &mut removed);
        if let Some(&primary) = before.first() {
            *counts.primary.entry(primary).or_default() += 1;
        }
        for &node in &before {
            *counts.replica.entry(node).or_default() += 1;
        }
        counts.moved_on_add += u64::from(added.first() != before.first());
        counts.slots_moved_on_add += slots_moved(&before, &added);
        counts.moved_on_remove += u64::from(removed.first() != before.first());
        // A slot moves on removal when a new node fills it: the removed
        // node's slots when the cluster still has rf nodes.
        counts.slots_moved_on_remove += slots_moved(&removed, &before);
    }
    let (lookup_ns, hash_ns) = time_lookups(base, rf, options.keys);
    figures(options, &counts, lookup_ns, hash_ns)
}

fn figures(options: &StatsOptions, counts: &Counts, lookup_ns: f64, hash_ns: f64) -> PlacementStats {
    let keys = options.keys as f64;
    let slots = keys * options.rf as f64;
    let n = options.nodes as f64;
    let spread = |counts: &BTreeMap<NodeId, u64>| {
        chorus_core::partition::Distribution::from_counts(counts.iter().map(|(&node, &count)| (node, count)))
            .map_or((0.0, 0.0, 0.0), |d| (d.sd_pct, d.max_over_mean, d.min_over_mean))
    };
    let (share_sd_pct, max_over_mean, min_over_mean) = spread(&counts.primary);
    let (replica_share_sd_pct, replica_max_over_mean, replica_min_over_mean) = spread(&counts.replica);
    PlacementStats {
        share_sd_pct,
        max_over_mean,
        min_over_mean,
        replica_share_sd_pct,
        replica_max_over_mean,
        replica_min_over_mean,
        move_on_add: counts.moved_on_add as f64 / keys,
        move_on_add_optimal: 1.0 / (n + 1.0),
        replica_move_on_add: counts.slots_moved_on_add as f64 / slots,
        move_on_remove: counts.moved_on_remove as f64 / keys,
        move_on_remove_optimal: 1.0 / n,
        replica_move_on_remove: counts.slots_moved_on_remove as f64 / slots,
        lookup_ns,
        hash_ns,
    }
}

/// Nanoseconds per lookup of a key's replicas (hash included) and per
/// hash alone: the median over chunks of [`LOOKUP_CHUNK_KEYS`] lookups,
/// [`LOOKUPS_TIMED`] lookups of the first keys in all. Chunks far shorter
/// than a scheduler time slice keep preemption on a shared machine out of
/// the median.
fn time_lookups<P: Placement>(placement: &P, rf: usize, keys: u64) -> (f64, f64) {
    let sample: Vec<String> = (0..keys.min(LOOKUP_SAMPLE_KEYS)).map(|i| format!("key-{i}")).collect();
    let mut out = Vec::with_capacity(rf);
    let mut sink = 0u64;
    let lookup_ns = median_chunk_ns(&sample, |key| {
        placement.replicas(key_hash(key), rf, &mut out);
        sink = sink.wrapping_add(out.first().map_or(0, |node| node.0));
    });
    let hash_ns = median_chunk_ns(&sample, |key| sink = sink.wrapping_add(key_hash(key)));
    std::hint::black_box(sink);
    (lookup_ns, hash_ns)
}

/// The median nanoseconds per call of `call` over chunks of
/// [`LOOKUP_CHUNK_KEYS`] keys of `sample`, [`LOOKUPS_TIMED`] calls in all.
fn median_chunk_ns(sample: &[String], mut call: impl FnMut(&[u8])) -> f64 {
    let chunk = (LOOKUP_CHUNK_KEYS as usize).min(sample.len()).max(1);
    let chunks = (LOOKUPS_TIMED as usize / chunk).max(1);
    let mut times: Vec<f64> = Vec::with_capacity(chunks);
    let mut next = 0;
    for _ in 0..chunks {
        let started = Instant::now();
        for _ in 0..chunk {
            call(std::hint::black_box(sample[next].as_bytes()));
            next = (next + 1) % sample.len();
        }
        times.push(started.elapsed().as_nanos() as f64 / chunk as f64);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The figures as JSON, with the options.
pub fn to_json(options: &StatsOptions, stats: &PlacementStats) -> serde_json::Value {
    serde_json::json!({
        "strategy": strategy_name(options.strategy),
        "nodes": options.nodes,
        "vnodes": options.vnodes,
        "rf": options.rf,
        "keys": options.keys,
        "share_sd_pct": stats.share_sd_pct,
        "max_over_mean": stats.max_over_mean,
        "min_over_mean": stats.min_over_mean,
        "replica_share_sd_pct": stats.replica_share_sd_pct,
        "replica_max_over_mean": stats.replica_max_over_mean,
        "replica_min_over_mean": stats.replica_min_over_mean,
        "move_on_add": stats.move_on_add,
        "move_on_add_optimal": stats.move_on_add_optimal,
        "replica_move_on_add": stats.replica_move_on_add,
        "move_on_remove": stats.move_on_remove,
        "move_on_remove_optimal": stats.move_on_remove_optimal,
        "replica_move_on_remove": stats.replica_move_on_remove,
        "lookup_ns": stats.lookup_ns,
        "hash_ns": stats.hash_ns,
    })
}

/// The strategy as the report names it.
pub fn strategy_name(strategy: Strategy) -> String {
    match strategy {
        Strategy::Ring(TokenPlacement::Random) => "ring (random tokens)".into(),
        Strategy::Ring(TokenPlacement::Balanced { candidates, replication }) => {
            format!("ring (balanced tokens: best of {candidates} for rf {replication})")
        }
        Strategy::Jump => "jump (one shard per node, replicas on the next nodes)".into(),
        Strategy::Balanced => "balanced".into(),
    }
}

/// The figures as text.
pub fn to_text(options: &StatsOptions, stats: &PlacementStats) -> String {
    let ratio = |moved: f64, optimal: f64| moved / optimal;
    format!(
        "strategy:            {}\n\
         nodes/vnodes/rf:     {} / {} / {}\n\
         keys:                {}\n\
         key share:           sd {:.2}% of mean, max/mean {:.3}, min/mean {:.3}\n\
         replica-slot share:  sd {:.2}% of mean, max/mean {:.3}, min/mean {:.3}\n\
         move on add:         {:.5} of keys (optimal {:.5}, ratio {:.3}); replica slots {:.5} (ratio {:.3})\n\
         move on remove:      {:.5} of keys (optimal {:.5}, ratio {:.3}); replica slots {:.5} (ratio {:.3})\n\
         lookup:              {:.1} ns per key, of which {:.1} ns hashing (BLAKE3)\n",
        strategy_name(options.strategy),
        options.nodes,
        options.vnodes,
        options.rf,
        options.keys,
        stats.share_sd_pct,
        stats.max_over_mean,
        stats.min_over_mean,
        stats.replica_share_sd_pct,
        stats.replica_max_over_mean,
        stats.replica_min_over_mean,
        stats.move_on_add,
        stats.move_on_add_optimal,
        ratio(stats.move_on_add, stats.move_on_add_optimal),
        stats.replica_move_on_add,
        ratio(stats.replica_move_on_add, stats.move_on_add_optimal),
        stats.move_on_remove,
        stats.move_on_remove_optimal,
        ratio(stats.move_on_remove, stats.move_on_remove_optimal),
        stats.replica_move_on_remove,
        ratio(stats.replica_move_on_remove, stats.move_on_remove_optimal),
        stats.lookup_ns,
        stats.hash_ns,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(strategy: Strategy) -> StatsOptions {
        StatsOptions { nodes: 10, vnodes: 20, rf: 3, keys: 20_000, strategy }
    }

    #[test]
    fn bad_sizes_are_refused_with_the_flag_named() {
        let ring = Strategy::Ring(TokenPlacement::default());
        for (bad, flag) in [
            (StatsOptions { nodes: 0, ..options(ring) }, "--nodes"),
            (StatsOptions { nodes: 1, ..options(ring) }, "--nodes"),
            (StatsOptions { vnodes: 0, ..options(ring) }, "--vnodes"),
            (StatsOptions { rf: 11, ..options(ring) }, "--rf"),
            (StatsOptions { rf: 0, ..options(ring) }, "--rf"),
            (StatsOptions { keys: 0, ..options(ring) }, "--keys"),
            (StatsOptions { keys: u64::MAX, ..options(ring) }, "--keys"),
            (StatsOptions { nodes: 5_000, vnodes: 1_000, ..options(ring) }, "tokens"),
        ] {
            let error = measure(&bad).unwrap_err();
            assert!(error.contains(flag), "{error}");
        }
    }

    #[test]
    fn the_balanced_allocator_keeps_every_node_within_five_percent_of_the_mean_replica_count() {
        let stats = measure(&options(Strategy::Balanced)).unwrap();
        // 10 nodes, 100 ranges (10 per node), 300 replica slots: 30 each.
        assert!(stats.replica_max_over_mean <= 1.05 && stats.replica_min_over_mean >= 0.95, "{stats:?}");
        assert!(stats.move_on_add > 0.0 && stats.move_on_remove > 0.0, "{stats:?}");
        assert_eq!(measure(&options(Strategy::Balanced)).unwrap().replica_move_on_add, stats.replica_move_on_add);
    }

    #[test]
    fn jump_moves_exactly_the_new_shards_keys_and_the_figures_are_deterministic() {
        let first = measure(&options(Strategy::Jump)).unwrap();
        let second = measure(&options(Strategy::Jump)).unwrap();
        let without_times = |s: &PlacementStats| PlacementStats { lookup_ns: 0.0, hash_ns: 0.0, ..s.clone() };
        assert_eq!(without_times(&first), without_times(&second));
        // 20,000 keys, optimum 1/11: within 10% (binomial sd about 3%).
        assert!((first.move_on_add / first.move_on_add_optimal - 1.0).abs() < 0.1, "{first:?}");
        assert!((first.move_on_remove / first.move_on_remove_optimal - 1.0).abs() < 0.1, "{first:?}");
        assert!(first.lookup_ns > 0.0);
    }

    #[test]
    fn a_balanced_ring_spreads_replica_slots_evenly_and_moves_near_the_minimum() {
        let stats = measure(&options(Strategy::Ring(TokenPlacement::default()))).unwrap();
        let random = measure(&options(Strategy::Ring(TokenPlacement::Random))).unwrap();
        assert!(stats.replica_share_sd_pct < random.replica_share_sd_pct, "{stats:?} vs {random:?}");
        assert!(stats.move_on_add / stats.move_on_add_optimal < 1.15, "{stats:?}");
        assert!(stats.move_on_remove / stats.move_on_remove_optimal < 1.15, "{stats:?}");
        let text = to_text(&options(Strategy::Jump), &stats);
        assert!(text.contains("move on add:"));
        let json = to_json(&options(Strategy::Jump), &stats);
        for key in ["share_sd_pct", "replica_share_sd_pct", "max_over_mean", "move_on_add", "move_on_add_optimal"] {
            assert!(json.get(key).is_some(), "{key}");
        }
        for key in ["move_on_remove", "move_on_remove_optimal", "lookup_ns"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
