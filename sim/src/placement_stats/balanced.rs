//! `placement-stats --strategy balanced`: the balanced allocator measured
//! like the ring and jump shards.
//!
//! The definition:
//! - the hashed keyspace is cut into `max(nodes × 10, keys / 1,000)` equal
//!   spans of the 64-bit hash space (at most [`MAX_BALANCED_RANGES`]), a key
//!   routed by [`hashed_routing_key`] through a [`RangeTable`];
//! - nodes have capacity 1 and no failure domains (as the ring's nodes here);
//! - each range, in order, gets `rf` replicas, each where
//!   [`Allocator::choose_add`] puts it given the counts so far (seeded
//!   power-of-two draws: deterministic), then [`Allocator::rebalance`] moves
//!   replicas until no range moves (at most [`MAX_REBALANCE_ROUNDS`] sweeps);
//! - a key's primary is its range's first replica (the first placed: a move
//!   puts the new replica in the old one's slot). The allocator balances
//!   replica counts, not first replicas (the planner balances leaders
//!   separately, by transfers), so the key-share figures are not what it
//!   promises; the replica-slot figures are;
//! - added: node `N` joins empty, and rebalancing runs to its fixed point;
//!   removed: node 0 leaves, each of its replicas is replaced where
//!   `choose_add` puts it, and rebalancing runs to its fixed point. The
//!   movement figures count the keys and replica slots that these moves
//!   relocate, next to the minimum `1/(N+1)` and `1/N`.

use super::Placement;
use chorus_core::partition::{
    Allocator, Counts, Liveness, Locality, NodeInfo, RangeDescriptor, RangeId, RangeTable, Span,
};
use chorus_core::types::{NodeId, Time};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Most ranges the balanced layout cuts the keyspace into.
pub const MAX_BALANCED_RANGES: u64 = 100_000;
/// Ranges per node at least.
pub const RANGES_PER_NODE: u64 = 10;
/// Keys per range at most (before [`MAX_BALANCED_RANGES`]).
pub const KEYS_PER_RANGE: u64 = 1_000;
/// Most sweeps over every range while rebalancing to a fixed point.
pub const MAX_REBALANCE_ROUNDS: usize = 100;
/// The allocator's balance band, in percent (the planner's default).
const THRESHOLD_PCT: u32 = 5;
/// Seeds the allocator's power-of-two draws.
const SEED: u64 = 42;

/// Ranges (their voters, first placed first) and the table that routes
/// keys to them.
#[derive(Clone)]
pub(super) struct Layout {
    nodes: BTreeMap<NodeId, NodeInfo>,
    voters: Vec<Vec<NodeId>>,
    spans: Vec<Span>,
    table: RangeTable,
}

impl Placement for Layout {
    fn replicas(&self, hash: u64, _rf: usize, out: &mut Vec<NodeId>) {
        out.clear();
        let range = self.table.lookup(&hash.to_be_bytes()).map(|d| d.id.0 as usize);
        if let Some(voters) = range.and_then(|r| self.voters.get(r)) {
            out.extend_from_slice(voters);
        }
    }
}

/// The routing key that starts range `i` of `ranges` equal spans.
fn span_start(i: u64, ranges: u64) -> Vec<u8> {
    if i == 0 {
        return Vec::new();
    }
    (((u128::from(i) << 64) / u128::from(ranges)) as u64).to_be_bytes().to_vec()
}

fn node(id: u64) -> (NodeId, NodeInfo) {
    (NodeId(id), NodeInfo::new(NodeId(id), Locality::default(), 1, Time::ZERO))
}

impl Layout {
    /// `nodes` nodes, the keyspace cut for `keys` keys, `rf` replicas each.
    pub(super) fn place(nodes: u64, rf: usize, keys: u64) -> Result<Layout, String> {
        let ranges = (nodes * RANGES_PER_NODE).max(keys / KEYS_PER_RANGE).min(MAX_BALANCED_RANGES);
        let spans: Vec<Span> = (0..ranges)
            .map(|i| Span { start: span_start(i, ranges), end: (i + 1 < ranges).then(|| span_start(i + 1, ranges)) })
            .collect();
        let table = RangeTable::from_descriptors(
            spans.iter().enumerate().map(|(i, span)| RangeDescriptor::new(RangeId(i as u64), span.clone(), [])),
        )
        .map_err(|e| e.to_string())?;
        let mut layout =
            Layout { nodes: (0..nodes).map(node).collect(), voters: vec![Vec::new(); spans.len()], spans, table };
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let mut counts = Counts::default();
        for r in 0..layout.voters.len() {
            for _ in 0..rf {
                let descriptor = layout.descriptor(r);
                let alloc = Allocator::new(&layout.nodes, &counts, THRESHOLD_PCT, Time::ZERO, 0);
                let add = alloc.choose_add(&descriptor, None, &mut rng).ok_or("no node can take a replica")?;
                layout.voters[r].push(add);
                counts.adjust_replicas(add, 1);
            }
        }
        layout.rebalance(&mut counts);
        Ok(layout)
    }

    fn descriptor(&self, r: usize) -> RangeDescriptor {
        RangeDescriptor::new(RangeId(r as u64), self.spans[r].clone(), self.voters[r].iter().copied())
    }

    fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for node in self.voters.iter().flatten() {
            counts.adjust_replicas(*node, 1);
        }
        counts
    }

    /// Sweeps every range, moving replicas as [`Allocator::rebalance`]
    /// says, until a sweep moves none.
    fn rebalance(&mut self, counts: &mut Counts) {
        for _ in 0..MAX_REBALANCE_ROUNDS {
            let mut moved = false;
            for r in 0..self.voters.len() {
                let descriptor = self.descriptor(r);
                let alloc = Allocator::new(&self.nodes, counts, THRESHOLD_PCT, Time::ZERO, 0);
                if let Some((add, remove)) = alloc.rebalance(&descriptor) {
                    self.replace(r, remove, add, counts);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn replace(&mut self, r: usize, remove: NodeId, add: NodeId, counts: &mut Counts) {
        if let Some(slot) = self.voters[r].iter_mut().find(|v| **v == remove) {
            *slot = add;
            counts.adjust_replicas(remove, -1);
            counts.adjust_replicas(add, 1);
        }
    }

    /// The layout after node `id` joins empty and rebalancing settles.
    pub(super) fn with_node(&self, id: u64) -> Layout {
        let mut grown = self.clone();
        grown.nodes.extend([node(id)]);
        let mut counts = grown.counts();
        grown.rebalance(&mut counts);
        grown
    }

    /// The layout after node `id` leaves: its replicas replaced, then
    /// rebalancing settled.
    pub(super) fn without_node(&self, id: u64) -> Result<Layout, String> {
        let mut shrunk = self.clone();
        let gone = NodeId(id);
        if let Some(info) = shrunk.nodes.get_mut(&gone) {
            info.liveness = Liveness::Left;
        }
        let mut counts = shrunk.counts();
        let mut rng = ChaCha8Rng::seed_from_u64(SEED + 1);
        for r in 0..shrunk.voters.len() {
            if !shrunk.voters[r].contains(&gone) {
                continue;
            }
            let descriptor = shrunk.descriptor(r);
            let alloc = Allocator::new(&shrunk.nodes, &counts, THRESHOLD_PCT, Time::ZERO, 0);
            let add = alloc.choose_add(&descriptor, Some(gone), &mut rng).ok_or("no node can take a replica")?;
            shrunk.replace(r, gone, add, &mut counts);
        }
        shrunk.nodes.remove(&gone);
        counts.replicas.remove(&gone);
        shrunk.rebalance(&mut counts);
        Ok(shrunk)
    }
}
