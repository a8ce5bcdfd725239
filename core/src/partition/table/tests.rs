use super::*;
use proptest::prelude::*;

fn voters(ids: &[u64]) -> Vec<NodeId> {
    ids.iter().map(|&id| NodeId(id)).collect()
}

/// A table of one range covering everything, split at `keys` (in order),
/// range ids 1, 2, 3, ...
fn split_table(keys: &[&[u8]]) -> RangeTable {
    let mut table = RangeTable::from_descriptors([RangeDescriptor::new(RangeId(1), Span::full(), voters(&[1, 2, 3]))])
        .expect("one range");
    for (i, key) in keys.iter().enumerate() {
        let id = table.lookup(key).expect("covered").id;
        table.apply_split(id, key, RangeId(i as u64 + 2)).expect("split inside");
    }
    table
}

/// The range holding `key`, by a linear scan: what `lookup` must agree with.
fn linear_lookup<'a>(table: &'a RangeTable, key: &[u8]) -> Option<&'a RangeDescriptor> {
    table.iter().find(|range| range.span.contains(key))
}

#[test]
fn lookup_finds_the_range_of_keys_at_inside_and_around_split_points() {
    let table = split_table(&[b"m", b"c", b"user/0005", b"user/0001", b"user/00010"]);
    table.check_cover().unwrap();
    for key in [&b""[..], b"a", b"c", b"c\0", b"l", b"m", b"user/", b"user/0001", b"user/00010", b"user/0002", b"zz"] {
        assert_eq!(table.lookup(key).map(|r| r.id), linear_lookup(&table, key).map(|r| r.id), "key {key:?}");
        assert!(table.lookup(key).unwrap().span.contains(key));
    }
    assert_eq!(table.lookup(b"user/0001").unwrap().span.start, b"user/0001");
}

#[test]
fn keys_sharing_a_long_prefix_are_told_apart() {
    // Every start shares "tenant/0000000042/" (18 bytes): the eight-byte
    // prefixes are taken after it.
    let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("tenant/0000000042/row{i:05}").into_bytes()).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let table = split_table(&refs);
    assert_eq!(table.shared, b"tenant/0000000042/row000".to_vec());
    for probe in [&b"tenant/0000000042/row00017x"[..], b"tenant/0000000041", b"tenant/0000000043", b"a", b"z"] {
        assert_eq!(table.lookup(probe).map(|r| r.id), linear_lookup(&table, probe).map(|r| r.id), "{probe:?}");
    }
}

#[test]
fn hashed_and_jump_modes_route_as_their_keyspace_says() {
    let split = hashed_routing_key(b"some key");
    let table = split_table(&[&split]);
    let range = table.lookup_key(KeyMode::Hashed, b"some key").unwrap();
    assert_eq!(range.span.start, split.to_vec());
    assert_eq!(table.lookup_key(KeyMode::Ordered, b"some key").unwrap().id, table.lookup(b"some key").unwrap().id);
    assert!(table.lookup_key(KeyMode::Jump { shards: 4 }, b"some key").is_none());
}

#[test]
fn a_stale_descriptor_is_refused_and_a_newer_one_evicts_what_it_supersedes() {
    let mut table = split_table(&[b"m"]);
    let left_old = table.get(RangeId(1)).unwrap().clone();
    let right = table.get(RangeId(2)).unwrap().clone();
    // News from before the split: older than both halves.
    let whole = RangeDescriptor::new(RangeId(1), Span::full(), voters(&[1, 2, 3]));
    assert!(matches!(table.insert(whole), Err(TableError::Stale { held_generation: 1, .. })));
    assert_eq!(table.insert(left_old.clone()), Ok(Inserted::Unchanged));
    // A merged range (generation 2) supersedes both halves.
    let mut merged = left_old.clone();
    merged.merge(&right).unwrap();
    assert_eq!(table.insert(merged.clone()), Ok(Inserted::Added { evicted: vec![RangeId(1), RangeId(2)] }));
    assert_eq!(table.len(), 1);
    table.check_cover().unwrap();
    // The same generation with other content is a conflict.
    let mut other = merged.clone();
    other.span.end = Some(b"x".to_vec());
    assert!(matches!(table.insert(other), Err(TableError::Conflict { .. })));
    assert_eq!(table.get(RangeId(1)), Some(&merged));
}

#[test]
fn a_replica_change_replaces_the_held_descriptor_and_ranges_on_follows_it() {
    let mut table = split_table(&[b"m"]);
    let mut moved = table.get(RangeId(2)).unwrap().clone();
    moved.add_learner(NodeId(4)).unwrap();
    assert_eq!(table.insert(moved), Ok(Inserted::Added { evicted: vec![RangeId(2)] }));
    assert_eq!(table.ranges_on(NodeId(4)).map(|r| r.id).collect::<Vec<_>>(), vec![RangeId(2)]);
    // A learner is not routed to; once promoted it is.
    assert_eq!(table.route(b"x").unwrap().voters, &voters(&[1, 2, 3])[..]);
    let mut promoted = table.get(RangeId(2)).unwrap().clone();
    promoted.promote(NodeId(4)).unwrap();
    table.insert(promoted).unwrap();
    assert_eq!(table.route(b"x").unwrap(), Route { range: RangeId(2), voters: &voters(&[1, 2, 3, 4]) });
    assert_eq!(table.route(b"a").unwrap().voters, &voters(&[1, 2, 3])[..]);
    assert_eq!(table.ranges_on(NodeId(1)).count(), 2);
    table.check_cover().unwrap();
}

#[test]
fn check_cover_names_the_first_gap_or_overlap() {
    let mut table = split_table(&[b"g", b"p"]);
    assert_eq!(table.check_cover(), Ok(()));
    table.remove(RangeId(2)).unwrap();
    assert!(matches!(table.check_cover(), Err(CoverError::Gap { left: RangeId(1), right: RangeId(3), .. })));
    assert!(table.lookup(b"h").is_none());
    table.remove(RangeId(1)).unwrap();
    assert!(matches!(table.check_cover(), Err(CoverError::StartsLate { range: RangeId(3), .. })));
    assert_eq!(RangeTable::new().check_cover(), Err(CoverError::Empty));

    let a = RangeDescriptor::new(RangeId(1), Span::new(Vec::new(), Some(b"k".to_vec())).unwrap(), voters(&[1]));
    let b = RangeDescriptor::new(RangeId(2), Span::new(b"j".to_vec(), None).unwrap(), voters(&[1]));
    let c = RangeDescriptor::new(RangeId(3), Span::new(b"k".to_vec(), Some(b"q".to_vec())).unwrap(), voters(&[1]));
    assert!(matches!(check_cover([&b, &a]), Err(CoverError::Overlap { left: RangeId(1), right: RangeId(2), .. })));
    assert!(matches!(check_cover([&c, &a]), Err(CoverError::EndsEarly { range: RangeId(3), .. })));
    assert!(RangeTable::from_descriptors([a, b]).is_err());
}

#[test]
fn refused_splits_and_merges_change_nothing() {
    let mut table = split_table(&[b"m"]);
    let before: Vec<RangeDescriptor> = table.iter().cloned().collect();
    assert_eq!(table.apply_split(RangeId(9), b"x", RangeId(3)), Err(TableError::UnknownRange(RangeId(9))));
    assert_eq!(table.apply_split(RangeId(1), b"c", RangeId(2)), Err(TableError::RangeIdInUse(RangeId(2))));
    assert!(matches!(table.apply_split(RangeId(1), b"x", RangeId(3)), Err(TableError::Descriptor(_))));
    assert!(matches!(table.apply_merge(RangeId(2), RangeId(1)), Err(TableError::Descriptor(_))));
    assert_eq!(table.iter().cloned().collect::<Vec<_>>(), before);
    table.apply_merge(RangeId(1), RangeId(2)).unwrap();
    assert_eq!(table.len(), 1);
    assert_eq!(table.get(RangeId(2)), None);
    table.check_cover().unwrap();
}

/// A split (at a key), a merge (of the range holding a key with its right
/// neighbour), a removal (of the range holding a key, leaving a gap) or a
/// new voter (for the range holding a key).
#[derive(Clone, Debug)]
enum Change {
    Split(Vec<u8>),
    Merge(Vec<u8>),
    Remove(Vec<u8>),
    Grow(Vec<u8>),
}

impl Change {
    fn key(&self) -> &[u8] {
        match self {
            Change::Split(key) | Change::Merge(key) | Change::Remove(key) | Change::Grow(key) => key,
        }
    }
}

fn change() -> impl Strategy<Value = Change> {
    // Short keys over a small alphabet: many shared prefixes and exact hits.
    let key = proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xff)], 0..12);
    prop_oneof![
        6 => key.clone().prop_map(Change::Split),
        3 => key.clone().prop_map(Change::Merge),
        1 => key.clone().prop_map(Change::Remove),
        2 => key.prop_map(Change::Grow),
    ]
}

proptest! {
    #[test]
    fn random_splits_and_merges_keep_the_cover_and_lookup_agrees_with_a_scan(
        changes in proptest::collection::vec(change(), 1..80),
        probes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 20),
    ) {
        let mut table = split_table(&[]);
        let mut next_id = 2;
        let mut removed = false;
        for change in &changes {
            let Some(id) = table.lookup(change.key()).map(|r| r.id) else { continue };
            match change {
                Change::Split(key) => {
                    if table.apply_split(id, key, RangeId(next_id)).is_ok() {
                        next_id += 1;
                    }
                }
                Change::Merge(_) => {
                    let right = table.iter().skip_while(|r| r.id != id).nth(1).map(|r| r.id);
                    if let Some(right) = right {
                        let merged = table.apply_merge(id, right);
                        // Neighbours merge unless a removal left a gap
                        // between them or their voters differ.
                        let differ = matches!(merged, Err(TableError::Descriptor(DescriptorError::ReplicasDiffer { .. })));
                        prop_assert!(merged.is_ok() || removed || differ, "{:?}", merged);
                    }
                }
                Change::Remove(_) => {
                    table.remove(id).expect("held");
                    removed = true;
                }
                Change::Grow(_) => {
                    let mut grown = table.get(id).expect("held").clone();
                    let node = NodeId(100 + next_id);
                    next_id += 1;
                    grown.add_learner(node).expect("a new node");
                    grown.promote(node).expect("its learner");
                    let added = matches!(table.insert(grown), Ok(Inserted::Added { .. }));
                    prop_assert!(added);
                }
            }
            if removed {
                prop_assert!(table.check_cover().is_err());
            } else {
                prop_assert_eq!(table.check_cover(), Ok(()));
            }
            for key in changes.iter().map(Change::key).chain(probes.iter().map(Vec::as_slice)) {
                let expected = linear_lookup(&table, key);
                prop_assert_eq!(table.lookup(key).map(|r| r.id), expected.map(|r| r.id));
                let voters = expected.map(|r| r.voters().collect::<Vec<_>>());
                prop_assert_eq!(table.route(key).map(|route| (route.range, route.voters.to_vec())), expected.map(|r| r.id).zip(voters));
            }
        }
    }
}
