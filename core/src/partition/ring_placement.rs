//! The ring as the planner's placement strategy ([`Placement::Ring`]):
//! a range's desired voters are the nodes the ring names for the hash of
//! its start key, walking clockwise and skipping a node whose zone is
//! already chosen while other zones remain (as Cassandra's
//! NetworkTopologyStrategy skips racks), then filling up with the skipped
//! nodes in ring order when there are fewer zones than replicas.
//!
//! The balanced token placement depends on the order of joins, so the ring
//! is never edited in place: it is rebuilt from its member set, adding the
//! nodes in id order, so that any planner (a restarted one on another node)
//! holding the same members computes the same ring.
//!
//! [`Placement::Ring`]: super::Placement::Ring

use super::keyspace::key_hash;
use super::ring::{HashRing, RingError, TokenPlacement, DEFAULT_CANDIDATES, MAX_BALANCED_REPLICATION, MAX_VNODES};
use crate::types::NodeId;

/// A ring over a set of member nodes, for one replication factor.
#[derive(Clone, Debug)]
pub struct RingPlacement {
    /// (node, capacity), sorted by node.
    members: Vec<(NodeId, u32)>,
    vnodes: u32,
    ring: HashRing,
}

impl RingPlacement {
    /// The ring of `members` ((node, capacity) pairs), each with `vnodes`
    /// tokens per unit of capacity (at most [`MAX_VNODES`]), its tokens
    /// placed to balance `replication` replicas. Members are added in id
    /// order whatever order they come in; a repeated node counts once.
    pub fn build(
        members: impl IntoIterator<Item = (NodeId, u32)>,
        vnodes: u32,
        replication: usize,
    ) -> Result<RingPlacement, RingError> {
        let mut members: Vec<(NodeId, u32)> = members.into_iter().collect();
        members.sort();
        members.dedup_by_key(|(id, _)| *id);
        let replication = replication.clamp(1, MAX_BALANCED_REPLICATION as usize) as u32;
        let mut ring = HashRing::new(TokenPlacement::Balanced { candidates: DEFAULT_CANDIDATES, replication })?;
        for &(id, capacity) in &members {
            ring.add_node(id, vnodes.saturating_mul(capacity.max(1)).min(MAX_VNODES))?;
        }
        Ok(RingPlacement { members, vnodes, ring })
    }

    /// The members, (node, capacity) sorted by node.
    pub fn members(&self) -> &[(NodeId, u32)] {
        &self.members
    }

    /// Tokens per unit of capacity.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The ring itself.
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    /// The `rf` nodes (fewer if the ring has fewer) that should hold the
    /// voters of a range starting at `start_key`, in the order of the walk;
    /// `zone` names a node's widest failure domain.
    pub fn targets<'z>(&self, start_key: &[u8], rf: usize, zone: impl Fn(NodeId) -> Option<&'z str>) -> Vec<NodeId> {
        zone_aware_walk(self.ring.owners_from(key_hash(start_key)), rf, zone)
    }
}

/// The first `rf` distinct nodes of `walk` whose zones differ, then (if
/// fewer than `rf` zones were met) the skipped nodes in walk order.
fn zone_aware_walk<'z>(
    walk: impl Iterator<Item = NodeId>,
    rf: usize,
    zone: impl Fn(NodeId) -> Option<&'z str>,
) -> Vec<NodeId> {
    let mut chosen: Vec<NodeId> = Vec::with_capacity(rf);
    let mut zones: Vec<Option<&str>> = Vec::with_capacity(rf);
    let mut skipped: Vec<NodeId> = Vec::new();
    for node in walk {
        if chosen.len() == rf {
            break;
        }
        if chosen.contains(&node) || skipped.contains(&node) {
            continue;
        }
        let z = zone(node);
        if zones.contains(&z) {
            skipped.push(node);
        } else {
            zones.push(z);
            chosen.push(node);
        }
    }
    let missing = rf.saturating_sub(chosen.len());
    chosen.extend(skipped.into_iter().take(missing));
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone_of(zones: u64) -> impl Fn(NodeId) -> Option<&'static str> {
        const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
        move |id: NodeId| Some(NAMES[(id.0 % zones) as usize])
    }

    #[test]
    fn the_walk_skips_a_chosen_zone_while_other_zones_remain() {
        // Zones: 1 b, 2 c, 3 a, 4 b, 5 c, 6 a (id mod 3).
        let walk = [1, 4, 1, 2, 5, 3].map(NodeId);
        assert_eq!(zone_aware_walk(walk.into_iter(), 3, zone_of(3)), [1, 2, 3].map(NodeId));
    }

    #[test]
    fn with_fewer_zones_than_replicas_the_skipped_nodes_fill_up_in_walk_order() {
        let walk = [1, 3, 5, 2, 4].map(NodeId); // zones b, b, b, a, a (mod 2)
        assert_eq!(zone_aware_walk(walk.into_iter(), 4, zone_of(2)), [1, 2, 3, 5].map(NodeId));
        assert_eq!(zone_aware_walk(walk.into_iter(), 9, zone_of(2)).len(), 5, "no more than the ring has");
    }

    #[test]
    fn targets_are_distinct_in_distinct_zones_and_the_same_whatever_the_order_of_members() {
        let members: Vec<(NodeId, u32)> = (1..=12).map(|n| (NodeId(n), 1)).collect();
        let forward = RingPlacement::build(members.clone(), 16, 3).unwrap();
        let backward = RingPlacement::build(members.into_iter().rev(), 16, 3).unwrap();
        for key in 0..200u64 {
            let key = key.to_be_bytes();
            let targets = forward.targets(&key, 3, zone_of(4));
            assert_eq!(targets, backward.targets(&key, 3, zone_of(4)));
            let zones: std::collections::BTreeSet<_> = targets.iter().map(|&n| zone_of(4)(n)).collect();
            assert_eq!((targets.len(), zones.len()), (3, 3), "{targets:?}");
        }
    }

    #[test]
    fn a_bad_vnode_count_is_an_error_not_a_panic() {
        assert!(RingPlacement::build([(NodeId(1), 1)], 0, 3).is_err());
        assert!(RingPlacement::build([], 16, 3).unwrap().targets(b"k", 3, |_| None).is_empty());
    }
}
