use super::*;
use crate::partition::Distribution;

/// Keys sampled by the spread and movement tests.
const KEYS: u64 = 40_000;

fn ring(placement: TokenPlacement, nodes: u64, vnodes: u32) -> HashRing {
    let mut ring = HashRing::new(placement).unwrap();
    for node in 0..nodes {
        ring.add_node(NodeId(node), vnodes).unwrap();
    }
    ring
}

fn hashes() -> impl Iterator<Item = u64> {
    (0..KEYS).map(|i| key_hash(format!("key-{i}").as_bytes()))
}

/// Standard deviation (% of the mean) of replica slots per node over
/// [`KEYS`] keys.
fn replica_spread(ring: &HashRing, replication: usize) -> f64 {
    let mut counts: BTreeMap<NodeId, u64> = ring.nodes().map(|(node, _)| (node, 0)).collect();
    let mut out = Vec::new();
    for hash in hashes() {
        ring.nodes_for_hash(hash, replication, &mut out);
        for node in &out {
            *counts.get_mut(node).unwrap() += 1;
        }
    }
    Distribution::from_counts(counts).unwrap().sd_pct
}

#[test]
fn a_keys_replicas_are_the_next_distinct_nodes_clockwise_from_its_hash() {
    let ring = ring(TokenPlacement::Random, 5, 4);
    assert_eq!((ring.node_count(), ring.partition_count()), (5, 20));
    let tokens: Vec<(u64, NodeId)> = ring.tokens().collect();
    for i in 0..200 {
        let key = format!("key-{i}");
        let hash = key_hash(key.as_bytes());
        let replicas = ring.nodes_for_key(key.as_bytes(), 3);
        // The reference: walk two laps of the token list from the first
        // token at or after the hash.
        let first = tokens.iter().position(|&(token, _)| token >= hash).unwrap_or(0);
        let mut expected: Vec<NodeId> = Vec::new();
        for step in 0..2 * tokens.len() {
            let owner = tokens[(first + step) % tokens.len()].1;
            if !expected.contains(&owner) && expected.len() < 3 {
                expected.push(owner);
            }
        }
        assert_eq!(replicas, expected, "key {key}");
        assert_eq!(ring.primary_for_hash(hash), Some(expected[0]));
        assert!(ring.is_node_responsible(expected[2], key.as_bytes(), 3));
        assert!(!ring.is_node_responsible(expected[2], key.as_bytes(), 2));
    }
    assert_eq!(ring.nodes_for_key(b"k", 9).len(), 5, "no more replicas than nodes");
    assert!(HashRing::default().nodes_for_key(b"k", 3).is_empty());
}

#[test]
fn random_tokens_do_not_depend_on_the_order_of_joins() {
    let forward = ring(TokenPlacement::Random, 6, 8);
    let mut backward = HashRing::new(TokenPlacement::Random).unwrap();
    for node in (0..6).rev() {
        backward.add_node(NodeId(node), 8).unwrap();
    }
    assert_eq!(forward.tokens().collect::<Vec<_>>(), backward.tokens().collect::<Vec<_>>());
}

#[test]
fn balanced_rings_are_deterministic_and_spread_replicas_better_than_random_tokens() {
    let balanced = ring(TokenPlacement::default(), 20, 50);
    let again = ring(TokenPlacement::default(), 20, 50);
    assert_eq!(balanced.tokens().collect::<Vec<_>>(), again.tokens().collect::<Vec<_>>());
    let random = ring(TokenPlacement::Random, 20, 50);
    let (balanced_sd, random_sd) = (replica_spread(&balanced, 3), replica_spread(&random, 3));
    // Theory for random tokens: about 1/sqrt(3 × 50) ≈ 8%; 40,000 keys add
    // about 1.3% of sampling noise.
    assert!(balanced_sd < 4.0, "balanced {balanced_sd:.2}% (random {random_sd:.2}%)");
    assert!(balanced_sd < random_sd / 1.5, "balanced {balanced_sd:.2}% vs random {random_sd:.2}%");
}

#[test]
fn adding_a_node_moves_keys_only_to_it_and_removing_one_only_its_keys() {
    for placement in [TokenPlacement::Random, TokenPlacement::default()] {
        let before = ring(placement, 10, 20);
        let mut grown = before.clone();
        grown.add_node(NodeId(10), 20).unwrap();
        let mut shrunk = before.clone();
        shrunk.remove_node(NodeId(3)).unwrap();
        let (mut to_new, mut from_removed) = (0u64, 0u64);
        for hash in hashes() {
            let old = before.primary_for_hash(hash).unwrap();
            let new = grown.primary_for_hash(hash).unwrap();
            if new != old {
                assert_eq!(new, NodeId(10), "{placement:?}: a key moved between old nodes");
                to_new += 1;
            }
            let after_removal = shrunk.primary_for_hash(hash).unwrap();
            assert!(after_removal == old || old == NodeId(3), "{placement:?}: a key of a staying node moved");
            from_removed += u64::from(old == NodeId(3));
        }
        // Something moved: the new node took keys, the removed one had some.
        assert!(to_new > 0 && from_removed > 0);
    }
}

#[test]
fn bad_changes_are_refused_and_leave_the_ring_as_it_was() {
    let mut ring = ring(TokenPlacement::default(), 3, 4);
    let tokens: Vec<(u64, NodeId)> = ring.tokens().collect();
    assert_eq!(ring.add_node(NodeId(1), 4), Err(RingError::AlreadyMember(NodeId(1))));
    assert_eq!(ring.add_node(NodeId(9), 0), Err(RingError::VnodeCount { vnodes: 0 }));
    assert_eq!(ring.add_node(NodeId(9), MAX_VNODES + 1), Err(RingError::VnodeCount { vnodes: MAX_VNODES + 1 }));
    assert_eq!(ring.remove_node(NodeId(9)), Err(RingError::NotMember(NodeId(9))));
    assert_eq!(ring.tokens().collect::<Vec<_>>(), tokens);
    let bad = TokenPlacement::Balanced { candidates: 0, replication: 3 };
    assert_eq!(HashRing::new(bad).err(), Some(RingError::Placement(bad)));
    ring.remove_node(NodeId(1)).unwrap();
    assert_eq!((ring.node_count(), ring.partition_count()), (2, 8));
}
