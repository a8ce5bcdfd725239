//! Consistent hashing with virtual nodes (KotobaDB's ring): each node owns
//! tokens on a 64-bit ring; a key at [`key_hash`] belongs to the first
//! token clockwise from it, and its `n` replicas are the first `n` distinct
//! nodes met going on clockwise.
//!
//! ## Token placement
//!
//! Every token comes from BLAKE3 of (node id, vnode index, candidate index),
//! so rings are deterministic. Two placements:
//!
//! - [`TokenPlacement::Random`]: candidate 0 of each vnode. A ring depends
//!   only on which nodes it holds, not on the order they came in. With 100
//!   nodes of 100 vnodes the replica-slot share (rf 3) spreads with a
//!   standard deviation near 6–7% of the mean, as theory says for sums of
//!   exponential arcs.
//! - [`TokenPlacement::Balanced`] (the default): a joining node's vnode takes
//!   whichever of `candidates` BLAKE3 tokens best evens out the primary and
//!   replica shares: the one that most reduces the sum of squared distances
//!   from the mean, where the joining node aims at its pro-rata part of the
//!   mean for the vnodes placed so far (so it ends near its fair share, and
//!   the keys it takes stay near the minimum). Other nodes' tokens never
//!   move, so adding a node moves only keys to it and removing one moves only
//!   its keys. The ring then depends on the order of joins and leaves: every
//!   holder must apply the same sequence (as they do, from a replicated
//!   log). Replica shares in the score ignore the distinctness of replicas
//!   (a window of `replication` arcs per token), which is exact unless a node
//!   owns two tokens within one window — so a candidate next to one of the
//!   joining node's own tokens is taken only when every candidate is. See
//!   docs/partitioning.md for the measured figures.

use super::keyspace::key_hash;
use crate::types::NodeId;
use std::collections::BTreeMap;

/// Most nodes on a ring.
pub const MAX_RING_NODES: usize = 100_000;

/// Most virtual nodes (tokens) of one node.
pub const MAX_VNODES: u32 = 4_096;

/// Most tokens on a ring, over all nodes.
pub const MAX_RING_TOKENS: usize = 1 << 22;

/// Most candidate tokens a balanced placement weighs per vnode.
pub const MAX_CANDIDATES: u32 = 64;

/// Most replicas a balanced placement balances for.
pub const MAX_BALANCED_REPLICATION: u32 = 16;

/// Candidates weighed per vnode by the default placement.
pub const DEFAULT_CANDIDATES: u32 = 4;

/// Further candidates tried when every weighed candidate collides with a
/// token already on the ring (astronomically rare with 64-bit tokens).
const COLLISION_ATTEMPTS: u32 = 64;

/// How a joining node's tokens are chosen. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPlacement {
    /// Each vnode's token is BLAKE3 of (node, vnode): independent of the
    /// other nodes and of the order of joins.
    Random,
    /// Each vnode's token is the best of `candidates` BLAKE3 candidates for
    /// the balance of primary and `replication`-replica shares.
    Balanced {
        /// Candidates weighed per vnode (1 to [`MAX_CANDIDATES`]; 1 is
        /// [`TokenPlacement::Random`]).
        candidates: u32,
        /// The replication factor whose replica shares are balanced (1 to
        /// [`MAX_BALANCED_REPLICATION`]).
        replication: u32,
    },
}

impl Default for TokenPlacement {
    /// Balanced, [`DEFAULT_CANDIDATES`] candidates, replication 3.
    fn default() -> TokenPlacement {
        TokenPlacement::Balanced { candidates: DEFAULT_CANDIDATES, replication: 3 }
    }
}

/// Why a ring change was refused. None of them changes the ring.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The node is already on the ring.
    #[error("{0:?} is already on the ring")]
    AlreadyMember(NodeId),
    /// The node is not on the ring.
    #[error("{0:?} is not on the ring")]
    NotMember(NodeId),
    /// A vnode count of 0 or above [`MAX_VNODES`].
    #[error("{vnodes} vnodes: must be between 1 and {MAX_VNODES}")]
    VnodeCount {
        /// The count asked for.
        vnodes: u32,
    },
    /// The ring would hold more than [`MAX_RING_NODES`] nodes or
    /// [`MAX_RING_TOKENS`] tokens.
    #[error("the ring is full ({MAX_RING_NODES} nodes, {MAX_RING_TOKENS} tokens)")]
    Full,
    /// A balanced placement with 0 or too many candidates, or a replication
    /// outside 1 to [`MAX_BALANCED_REPLICATION`].
    #[error("bad token placement {0:?}")]
    Placement(TokenPlacement),
    /// Every candidate token of a vnode is taken.
    #[error("no free token for {node:?} vnode {vnode}")]
    NoFreeToken {
        /// The node.
        node: NodeId,
        /// The vnode.
        vnode: u32,
    },
}

/// One node's loads while a node joins (exact when it starts, then moved
/// by the approximate [`HashRing::insertion_effects`]), as fractions of the
/// ring: its primary arcs and its replica windows.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    primary: f64,
    replica: f64,
}

/// A consistent-hash ring with virtual nodes. `HashRing::default()` is an
/// empty ring with the default [`TokenPlacement`].
#[derive(Clone, Debug, Default)]
pub struct HashRing {
    placement: TokenPlacement,
    /// Token → owner: the ring itself.
    ring: BTreeMap<u64, NodeId>,
    /// Node → its vnode count.
    nodes: BTreeMap<NodeId, u32>,
    /// The ring's tokens in order, for lookups.
    tokens: Vec<u64>,
    /// `owners[i]` owns `tokens[i]`.
    owners: Vec<NodeId>,
}

/// The token of `node`'s `vnode`, candidate `candidate`: the first eight
/// bytes of BLAKE3 over the three as little-endian integers.
fn candidate_token(node: NodeId, vnode: u32, candidate: u32) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&node.0.to_le_bytes());
    bytes[8..12].copy_from_slice(&vnode.to_le_bytes());
    bytes[12..].copy_from_slice(&candidate.to_le_bytes());
    key_hash(&bytes)
}

/// The clockwise distance from token `from` to token `to`, as a fraction of
/// the ring.
fn distance(from: u64, to: u64) -> f64 {
    to.wrapping_sub(from) as f64 / 18_446_744_073_709_551_616.0
}

impl HashRing {
    /// An empty ring whose joining nodes place tokens by `placement`.
    pub fn new(placement: TokenPlacement) -> Result<HashRing, RingError> {
        if let TokenPlacement::Balanced { candidates, replication } = placement {
            if !(1..=MAX_CANDIDATES).contains(&candidates) || !(1..=MAX_BALANCED_REPLICATION).contains(&replication) {
                return Err(RingError::Placement(placement));
            }
        }
        Ok(HashRing { placement, ..HashRing::default() })
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of tokens (virtual nodes), hence of arcs of the ring.
    pub fn partition_count(&self) -> usize {
        self.tokens.len()
    }

    /// The nodes and their vnode counts, sorted by node.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, u32)> + '_ {
        self.nodes.iter().map(|(&node, &vnodes)| (node, vnodes))
    }

    /// The tokens and their owners, in ring order.
    pub fn tokens(&self) -> impl Iterator<Item = (u64, NodeId)> + '_ {
        self.tokens.iter().copied().zip(self.owners.iter().copied())
    }

    /// Puts `node` on the ring with `vnodes` tokens.
    pub fn add_node(&mut self, node: NodeId, vnodes: u32) -> Result<(), RingError> {
        if self.nodes.contains_key(&node) {
            return Err(RingError::AlreadyMember(node));
        }
        if !(1..=MAX_VNODES).contains(&vnodes) {
            return Err(RingError::VnodeCount { vnodes });
        }
        if self.nodes.len() >= MAX_RING_NODES || self.ring.len() + vnodes as usize > MAX_RING_TOKENS {
            return Err(RingError::Full);
        }
        let placed = match self.placement {
            TokenPlacement::Random => self.place_tokens(node, vnodes, 1, None),
            TokenPlacement::Balanced { candidates, replication } => {
                self.place_tokens(node, vnodes, candidates, Some(replication as usize))
            }
        };
        match placed {
            Ok(()) => {
                self.nodes.insert(node, vnodes);
                self.flatten();
                Ok(())
            }
            Err(error) => {
                self.ring.retain(|_, owner| *owner != node);
                Err(error)
            }
        }
    }

    /// Takes `node` and its tokens off the ring. No other token moves.
    pub fn remove_node(&mut self, node: NodeId) -> Result<(), RingError> {
        self.nodes.remove(&node).ok_or(RingError::NotMember(node))?;
        self.ring.retain(|_, owner| *owner != node);
        self.flatten();
        Ok(())
    }

    fn flatten(&mut self) {
        self.tokens = self.ring.keys().copied().collect();
        self.owners = self.ring.values().copied().collect();
    }

    /// Places `node`'s `vnodes` tokens in `self.ring`, each the best of
    /// `candidates` for the balance of `replication` replicas (`None`: the
    /// first free candidate).
    fn place_tokens(
        &mut self,
        node: NodeId,
        vnodes: u32,
        candidates: u32,
        replication: Option<usize>,
    ) -> Result<(), RingError> {
        let nodes_after = (self.nodes.len() + 1) as f64;
        let mut loads = replication.map(|replication| self.current_loads(replication)).unwrap_or_default();
        let mut effects = Vec::new();
        for vnode in 0..vnodes {
            let progress = f64::from(vnode + 1) / f64::from(vnodes);
            let mut best: Option<(f64, u64)> = None;
            for candidate in 0..candidates + COLLISION_ATTEMPTS {
                if candidate >= candidates && best.is_some() {
                    break;
                }
                let token = candidate_token(node, vnode, candidate);
                if self.ring.contains_key(&token) {
                    continue;
                }
                let score = match replication {
                    Some(replication) if self.ring.len() > replication => {
                        let crowded = self.insertion_effects(token, node, replication, &mut effects);
                        // Any balance beats a token next to one of the
                        // node's own (squared shares are far below 1).
                        let penalty = if crowded { 1.0 } else { 0.0 };
                        penalty + score(&effects, &loads, node, progress, nodes_after, replication)
                    }
                    _ => 0.0,
                };
                if best.is_none_or(|(best_score, _)| score < best_score) {
                    best = Some((score, token));
                }
            }
            let (_, token) = best.ok_or(RingError::NoFreeToken { node, vnode })?;
            if let Some(replication) = replication.filter(|&replication| self.ring.len() > replication) {
                self.insertion_effects(token, node, replication, &mut effects);
                for &(owner, primary, replica) in &effects {
                    let load = loads.entry(owner).or_default();
                    load.primary += primary;
                    load.replica += replica;
                }
            }
            self.ring.insert(token, node);
            if replication.is_some_and(|replication| self.ring.len() == replication + 1) {
                // The ring just became large enough to score: start counting.
                loads = self.current_loads(replication.unwrap_or(1));
            }
        }
        Ok(())
    }

    /// Each node's primary arcs and replica arcs (the arcs whose first
    /// `replication` distinct nodes clockwise include it), from scratch;
    /// empty while the ring has `replication` tokens or fewer.
    fn current_loads(&self, replication: usize) -> BTreeMap<NodeId, Load> {
        let mut loads: BTreeMap<NodeId, Load> = BTreeMap::new();
        let tokens: Vec<(u64, NodeId)> = self.ring.iter().map(|(&token, &owner)| (token, owner)).collect();
        let count = tokens.len();
        if count <= replication {
            return loads;
        }
        let mut replicas: Vec<NodeId> = Vec::with_capacity(replication);
        for (i, &(token, owner)) in tokens.iter().enumerate() {
            let arc = distance(tokens[(i + count - 1) % count].0, token);
            loads.entry(owner).or_default().primary += arc;
            replicas.clear();
            // At most one lap.
            for step in 0..count {
                let next = tokens[(i + step) % count].1;
                if !replicas.contains(&next) {
                    replicas.push(next);
                    loads.entry(next).or_default().replica += arc;
                    if replicas.len() == replication {
                        break;
                    }
                }
            }
        }
        loads
    }

    /// What putting `node`'s token at `token` (free, on a ring of more than
    /// `replication` tokens) does to loads: `(node, primary change, replica
    /// change)` entries, written to `out`. With `p0, p1, ...` the tokens
    /// before `token` and `s1, s2, ...` those after: the node gains the arc
    /// `(p0, token]` from `s1`'s owner and the window `(p[r-1], token]`;
    /// `s_j`'s window loses arc `(p[r-j], p[r-j-1]]` (`(p0, token]` for
    /// `j = r`). Returns whether `node` already owns one of those tokens: then
    /// the token would share replica windows with another of its own, which
    /// the windows count twice but replica sets only once.
    fn insertion_effects(
        &self,
        token: u64,
        node: NodeId,
        replication: usize,
        out: &mut Vec<(NodeId, f64, f64)>,
    ) -> bool {
        out.clear();
        let before: Vec<(u64, NodeId)> = self
            .ring
            .range(..token)
            .rev()
            .chain(self.ring.range(token..).rev())
            .map(|(&t, &owner)| (t, owner))
            .take(replication)
            .collect();
        let after = self.ring.range(token..).chain(self.ring.range(..token)).take(replication);
        let arc = distance(before[0].0, token);
        let mut crowded = before.iter().any(|&(_, owner)| owner == node);
        out.push((node, arc, distance(before[replication - 1].0, token)));
        for (j, (_, &owner)) in after.enumerate().map(|(j, entry)| (j + 1, entry)) {
            crowded |= owner == node;
            let primary = if j == 1 { -arc } else { 0.0 };
            let lost =
                if j < replication { distance(before[replication - j].0, before[replication - j - 1].0) } else { arc };
            out.push((owner, primary, -lost));
        }
        crowded
    }

    /// The first `n` distinct nodes clockwise from `key`'s hash (fewer if
    /// the ring has fewer nodes); the first is the key's primary.
    pub fn nodes_for_key(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let mut nodes = Vec::with_capacity(n.min(self.nodes.len()));
        self.nodes_for_hash(key_hash(key), n, &mut nodes);
        nodes
    }

    /// [`HashRing::nodes_for_key`] for a key whose [`key_hash`] is `hash`,
    /// written to `out` (cleared first) so a caller can reuse it.
    #[inline]
    pub fn nodes_for_hash(&self, hash: u64, n: usize, out: &mut Vec<NodeId>) {
        out.clear();
        let want = n.min(self.nodes.len());
        if want == 0 {
            return;
        }
        let start = self.tokens.partition_point(|&token| token < hash);
        // At most one lap: every node is met within it.
        for step in 0..self.owners.len() {
            let owner = self.owners[(start + step) % self.owners.len()];
            if !out.contains(&owner) {
                out.push(owner);
                if out.len() == want {
                    return;
                }
            }
        }
    }

    /// The owners of the ring's tokens clockwise from `hash` (from the
    /// first token at or after it), one lap: a node appears once per token.
    pub fn owners_from(&self, hash: u64) -> impl Iterator<Item = NodeId> + '_ {
        let start = self.tokens.partition_point(|&token| token < hash);
        let len = self.owners.len();
        (0..len).map(move |step| self.owners[(start + step) % len])
    }

    /// The primary node of a key whose [`key_hash`] is `hash`.
    #[inline]
    pub fn primary_for_hash(&self, hash: u64) -> Option<NodeId> {
        let start = self.tokens.partition_point(|&token| token < hash);
        self.owners.get(start).or(self.owners.first()).copied()
    }

    /// Whether `node` is among the `n` replicas of `key`.
    pub fn is_node_responsible(&self, node: NodeId, key: &[u8], n: usize) -> bool {
        self.nodes_for_key(key, n).contains(&node)
    }
}

/// The change in the sum of squared distances from target loads that
/// `effects` would make. Primary terms are weighed by `replication²` so
/// they count as much as the replica terms (replica loads are
/// `replication` times larger). `node` (joining) aims at `progress` of its
/// targets.
fn score(
    effects: &[(NodeId, f64, f64)],
    loads: &BTreeMap<NodeId, Load>,
    node: NodeId,
    progress: f64,
    nodes_after: f64,
    replication: usize,
) -> f64 {
    let weight = (replication * replication) as f64;
    let mut total = 0.0;
    for (i, &(owner, _, _)) in effects.iter().enumerate() {
        if effects[..i].iter().any(|&(seen, _, _)| seen == owner) {
            continue;
        }
        let (primary, replica) = effects[i..]
            .iter()
            .filter(|&&(other, _, _)| other == owner)
            .fold((0.0, 0.0), |(p, r), &(_, dp, dr)| (p + dp, r + dr));
        let load = loads.get(&owner).copied().unwrap_or_default();
        let share = if owner == node { progress } else { 1.0 };
        let (primary_target, replica_target) = (share / nodes_after, share * replication as f64 / nodes_after);
        let change = |now: f64, delta: f64, target: f64| (now + delta - target).powi(2) - (now - target).powi(2);
        total += weight * change(load.primary, primary, primary_target) + change(load.replica, replica, replica_target);
    }
    total
}

#[cfg(test)]
mod tests;
