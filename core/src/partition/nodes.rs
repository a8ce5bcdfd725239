//! What the planner knows of the nodes: where each one sits (its failure
//! domains), how much it can hold, and whether it is alive — as SWIM and the
//! operator report it.

use crate::types::{NodeId, Time};
use serde::{Deserialize, Serialize};

/// Most locality tiers a node may have (zone, rack, host, ...).
pub const MAX_LOCALITY_TIERS: usize = 8;

/// Where a node sits, as failure domains from the widest to the narrowest,
/// for example `["zone=eu-1a", "rack=r7", "host=h3"]`. Two nodes share a
/// domain at tier `i` when their first `i + 1` tiers are equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Locality(Vec<String>);

impl Locality {
    /// A locality of `tiers`, widest first; beyond [`MAX_LOCALITY_TIERS`]
    /// tiers are ignored.
    pub fn new(tiers: impl IntoIterator<Item = String>) -> Locality {
        Locality(tiers.into_iter().take(MAX_LOCALITY_TIERS).collect())
    }

    /// The tiers, widest first.
    pub fn tiers(&self) -> &[String] {
        &self.0
    }

    /// The widest failure domain (the zone), if any.
    pub fn top(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// How far apart two nodes are, from 0.0 (same place in every tier, or
    /// no tiers) to 1.0 (different widest domain): the share of tiers below
    /// their common prefix.
    pub fn diversity(&self, other: &Locality) -> f64 {
        let tiers = self.0.len().max(other.0.len());
        if tiers == 0 {
            return 0.0;
        }
        let common = self.0.iter().zip(&other.0).take_while(|(a, b)| a == b).count();
        (tiers - common) as f64 / tiers as f64
    }
}

/// Whether a node is up, as the membership layer (SWIM) last reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Liveness {
    /// Alive.
    Live,
    /// Suspected by SWIM: no new replicas go there, none are taken away.
    Suspect,
    /// Declared failed by SWIM. Its replicas are replaced once it has been
    /// dead for the grace period.
    Dead,
    /// Left the cluster for good (gracefully or by the operator's removal);
    /// its replicas are replaced at once.
    Left,
}

/// One node as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node.
    pub id: NodeId,
    /// Its failure domains.
    pub locality: Locality,
    /// Relative capacity (1 = a standard node); replica and leader targets
    /// are proportional to it. At least 1.
    pub capacity: u32,
    /// Up or not.
    pub liveness: Liveness,
    /// When `liveness` last changed (planner time).
    pub since: Time,
    /// The operator asked for the node to be emptied: it takes no new
    /// replicas and its replicas move away, although it is alive.
    pub decommissioning: bool,
}

impl NodeInfo {
    /// A live node with `locality` and `capacity` (at least 1), up since
    /// `now`.
    pub fn new(id: NodeId, locality: Locality, capacity: u32, now: Time) -> NodeInfo {
        NodeInfo {
            id,
            locality,
            capacity: capacity.max(1),
            liveness: Liveness::Live,
            since: now,
            decommissioning: false,
        }
    }

    /// Whether new replicas may be placed here.
    pub fn can_take_replicas(&self) -> bool {
        self.liveness == Liveness::Live && !self.decommissioning
    }

    /// Whether its replicas should be replaced at `now`: it left, is being
    /// decommissioned, or has been dead for at least `grace_us`.
    pub fn should_be_replaced(&self, now: Time, grace_us: u64) -> bool {
        match self.liveness {
            Liveness::Left => true,
            Liveness::Dead => now.micros_since(self.since) >= grace_us,
            Liveness::Live | Liveness::Suspect => self.decommissioning,
        }
    }

    /// Whether its replica counts towards a range's live quorum.
    pub fn is_up(&self) -> bool {
        matches!(self.liveness, Liveness::Live | Liveness::Suspect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locality(tiers: &[&str]) -> Locality {
        Locality::new(tiers.iter().map(|t| t.to_string()))
    }

    #[test]
    fn diversity_is_the_share_of_tiers_below_the_common_prefix() {
        let a = locality(&["zone=a", "rack=1", "host=1"]);
        assert_eq!(a.diversity(&a), 0.0);
        assert!((a.diversity(&locality(&["zone=a", "rack=1", "host=2"])) - 1.0 / 3.0).abs() < 1e-9);
        assert!((a.diversity(&locality(&["zone=a", "rack=2", "host=1"])) - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.diversity(&locality(&["zone=b", "rack=1", "host=1"])), 1.0);
        assert_eq!(Locality::default().diversity(&Locality::default()), 0.0);
    }

    #[test]
    fn a_dead_node_is_replaced_only_after_the_grace_period_and_a_departed_one_at_once() {
        let mut node = NodeInfo::new(NodeId(1), Locality::default(), 0, Time::ZERO);
        assert_eq!(node.capacity, 1, "capacity is at least 1");
        node.liveness = Liveness::Dead;
        node.since = Time::from_millis(1_000);
        assert!(!node.should_be_replaced(Time::from_millis(1_999), 1_000_000));
        assert!(node.should_be_replaced(Time::from_millis(2_000), 1_000_000));
        node.liveness = Liveness::Left;
        assert!(node.should_be_replaced(Time::from_millis(1_000), 1_000_000));
        node.liveness = Liveness::Live;
        node.decommissioning = true;
        assert!(node.should_be_replaced(Time::ZERO, u64::MAX) && !node.can_take_replicas());
    }
}
