//! Jump shards ([`KeyMode::Jump`](super::KeyMode::Jump)): a fixed number of
//! shards, key → [`jump_consistent_hash`] of its [`key_hash`], and each
//! shard's replica set.

use super::keyspace::{jump_consistent_hash, key_hash};
use crate::types::NodeId;

/// Most shards a map holds.
pub const MAX_SHARDS: u32 = 1 << 20;

/// Most replicas of one shard.
pub const MAX_SHARD_REPLICAS: usize = 16;

/// Why a shard map could not be built or changed. None of them changes the
/// map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardMapError {
    /// No shards, or more than [`MAX_SHARDS`].
    #[error("{0} shards: must be between 1 and {MAX_SHARDS}")]
    ShardCount(usize),
    /// A shard with no replica, or more than [`MAX_SHARD_REPLICAS`].
    #[error("shard {shard} has {replicas} replicas: must be between 1 and {MAX_SHARD_REPLICAS}")]
    ReplicaCount {
        /// The shard.
        shard: u32,
        /// How many replicas it was given.
        replicas: usize,
    },
    /// A node named twice in one shard's replica set.
    #[error("shard {shard} names {node:?} twice")]
    DuplicateReplica {
        /// The shard.
        shard: u32,
        /// The node.
        node: NodeId,
    },
    /// A shard number at or above the shard count.
    #[error("no shard {0}")]
    UnknownShard(u32),
    /// A replica set older than (or as old as) the one held: stale news.
    #[error("shard {shard} generation {generation} is not newer than the held generation {held_generation}")]
    Stale {
        /// The shard.
        shard: u32,
        /// The refused generation.
        generation: u64,
        /// The generation held.
        held_generation: u64,
    },
}

/// One shard's replicas and the generation of that replica set.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Shard {
    replicas: Vec<NodeId>,
    generation: u64,
}

/// Shard → replica set for a [`KeyMode::Jump`](super::KeyMode::Jump)
/// keyspace. A shard's first replica is its preferred leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<Shard>,
}

impl ShardMap {
    /// A map of `replicas.len()` shards, shard `i` on `replicas[i]`, all at
    /// generation 0.
    pub fn new(replicas: Vec<Vec<NodeId>>) -> Result<ShardMap, ShardMapError> {
        if replicas.is_empty() || replicas.len() > MAX_SHARDS as usize {
            return Err(ShardMapError::ShardCount(replicas.len()));
        }
        let mut shards = Vec::with_capacity(replicas.len());
        for (shard, nodes) in replicas.into_iter().enumerate() {
            // `shard` < MAX_SHARDS, checked above.
            check_replicas(shard as u32, &nodes)?;
            shards.push(Shard { replicas: nodes, generation: 0 });
        }
        Ok(ShardMap { shards })
    }

    /// One shard per node of `nodes`: shard `i` on `nodes[i]` and the
    /// `replication - 1` nodes after it, wrapping around (the layout
    /// `chorus-sim placement-stats --strategy jump` measures).
    pub fn successors(nodes: &[NodeId], replication: usize) -> Result<ShardMap, ShardMapError> {
        if replication == 0 || replication > nodes.len().min(MAX_SHARD_REPLICAS) {
            return Err(ShardMapError::ReplicaCount { shard: 0, replicas: replication });
        }
        let sets = (0..nodes.len()).map(|i| (0..replication).map(|k| nodes[(i + k) % nodes.len()]).collect()).collect();
        ShardMap::new(sets)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        // At most MAX_SHARDS, checked when built.
        self.shards.len() as u32
    }

    /// The shard of a user's key.
    #[inline]
    pub fn shard_for(&self, key: &[u8]) -> u32 {
        self.shard_for_hash(key_hash(key))
    }

    /// The shard of a key whose [`key_hash`] is `hash`.
    #[inline]
    pub fn shard_for_hash(&self, hash: u64) -> u32 {
        jump_consistent_hash(hash, self.shard_count())
    }

    /// The replicas of `shard`.
    #[inline]
    pub fn replicas(&self, shard: u32) -> Option<&[NodeId]> {
        self.shards.get(shard as usize).map(|shard| shard.replicas.as_slice())
    }

    /// A key's shard and its replicas.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> (u32, &[NodeId]) {
        let shard = self.shard_for(key);
        // `jump_consistent_hash` returns a bucket below the shard count.
        (shard, &self.shards[shard as usize].replicas)
    }

    /// The generation of `shard`'s replica set.
    pub fn generation(&self, shard: u32) -> Option<u64> {
        self.shards.get(shard as usize).map(|shard| shard.generation)
    }

    /// Replaces `shard`'s replica set with `replicas` at `generation`, which
    /// must be newer than the one held (older news is refused, so a cache
    /// ignores it).
    pub fn set_replicas(&mut self, shard: u32, replicas: Vec<NodeId>, generation: u64) -> Result<(), ShardMapError> {
        let held = self.shards.get_mut(shard as usize).ok_or(ShardMapError::UnknownShard(shard))?;
        if generation <= held.generation {
            return Err(ShardMapError::Stale { shard, generation, held_generation: held.generation });
        }
        check_replicas(shard, &replicas)?;
        *held = Shard { replicas, generation };
        Ok(())
    }

    /// The shards with a replica on `node`, in shard order.
    pub fn shards_on(&self, node: NodeId) -> impl Iterator<Item = u32> + '_ {
        // Shard numbers are below MAX_SHARDS.
        self.shards.iter().enumerate().filter(move |(_, shard)| shard.replicas.contains(&node)).map(|(i, _)| i as u32)
    }
}

fn check_replicas(shard: u32, nodes: &[NodeId]) -> Result<(), ShardMapError> {
    if nodes.is_empty() || nodes.len() > MAX_SHARD_REPLICAS {
        return Err(ShardMapError::ReplicaCount { shard, replicas: nodes.len() });
    }
    for (i, node) in nodes.iter().enumerate() {
        if nodes[..i].contains(node) {
            return Err(ShardMapError::DuplicateReplica { shard, node: *node });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().map(|&id| NodeId(id)).collect()
    }

    #[test]
    fn successors_place_each_shard_on_its_node_and_the_next_ones() {
        let map = ShardMap::successors(&nodes(&[10, 11, 12, 13]), 3).unwrap();
        assert_eq!(map.shard_count(), 4);
        assert_eq!(map.replicas(0), Some(&nodes(&[10, 11, 12])[..]));
        assert_eq!(map.replicas(3), Some(&nodes(&[13, 10, 11])[..]));
        assert_eq!(map.shards_on(NodeId(10)).collect::<Vec<_>>(), vec![0, 2, 3]);
        assert_eq!(map.replicas(4), None);
    }

    #[test]
    fn a_key_goes_to_the_jump_hash_of_its_blake3_hash() {
        let map = ShardMap::successors(&nodes(&[1, 2, 3, 4, 5]), 1).unwrap();
        for i in 0..100 {
            let key = format!("key-{i}");
            let (shard, replicas) = map.lookup(key.as_bytes());
            assert_eq!(shard, jump_consistent_hash(key_hash(key.as_bytes()), 5));
            assert_eq!(replicas, &[NodeId(u64::from(shard) + 1)]);
        }
    }

    #[test]
    fn older_replica_sets_and_bad_sets_are_refused_without_change() {
        let mut map = ShardMap::successors(&nodes(&[1, 2, 3]), 2).unwrap();
        let before = map.clone();
        assert!(matches!(map.set_replicas(0, nodes(&[3]), 0), Err(ShardMapError::Stale { .. })));
        assert!(matches!(map.set_replicas(0, nodes(&[3, 3]), 1), Err(ShardMapError::DuplicateReplica { .. })));
        assert!(matches!(map.set_replicas(0, Vec::new(), 1), Err(ShardMapError::ReplicaCount { .. })));
        assert!(matches!(map.set_replicas(7, nodes(&[1]), 1), Err(ShardMapError::UnknownShard(7))));
        assert_eq!(map, before);
        map.set_replicas(0, nodes(&[3]), 1).unwrap();
        assert_eq!((map.replicas(0), map.generation(0)), (Some(&nodes(&[3])[..]), Some(1)));
        assert!(matches!(ShardMap::new(Vec::new()), Err(ShardMapError::ShardCount(0))));
        assert!(matches!(ShardMap::successors(&nodes(&[1, 2]), 3), Err(ShardMapError::ReplicaCount { .. })));
    }
}
