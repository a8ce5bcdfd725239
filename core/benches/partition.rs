//! Routing lookups: a key's range and replicas at 10,000 ranges (ordered and
//! hashed keyspaces), a key's jump shard, and a key's replicas on a ring of
//! 100 nodes × 100 vnodes.
//!
//!     cargo bench -p chorus-core --bench partition
//!
//! Each row is nanoseconds per lookup of a key's range (or shard) and its
//! first replica, over 100,000 precomputed keys in a pseudo-random order (so
//! the table is warm in cache, as a router's is, but branch prediction
//! cannot learn the keys): the median of chunks of 1,000 lookups, and the
//! best chunk.
//! Hashing a key with BLAKE3 is timed on its own row: hashed ranges, jump
//! shards and the ring pay it once per key on top of their lookup.
//!
//! Run without `--bench` (as `cargo test` does, this target has
//! `test = true`) it does one short pass per row and checks every answer
//! against the table, so CI keeps it compiling and correct.

use chorus_core::partition::{
    hashed_routing_key, key_hash, HashRing, KeyMode, RangeDescriptor, RangeId, RangeTable, ShardMap, Span,
    TokenPlacement,
};
use chorus_core::types::NodeId;
use std::hint::black_box;
use std::time::Instant;

/// Ranges in each table.
const RANGES: u64 = 10_000;
/// Keys looked up per pass.
const KEYS: usize = 100_000;
/// Timed passes per row under `cargo bench`.
const PASSES: usize = 10;
/// Keys per timed chunk.
const CHUNK: usize = 1_000;
/// Nodes and vnodes of the ring; nodes holding ranges and shards.
const NODES: u64 = 100;
const VNODES: u32 = 100;
/// Replicas per range, shard and key.
const RF: usize = 3;

/// SplitMix64: the bench's deterministic stream of key numbers.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn replicas_of(i: u64) -> Vec<NodeId> {
    (0..RF as u64).map(|k| NodeId((i + k) % NODES)).collect()
}

/// A table of `starts.len()` ranges, range `i` from `starts[i]` to the next
/// start (`starts[0]` must be empty, the rest sorted).
fn table(starts: Vec<Vec<u8>>) -> RangeTable {
    let ends: Vec<Option<Vec<u8>>> = starts.iter().skip(1).cloned().map(Some).chain([None]).collect();
    let descriptors = starts.into_iter().zip(ends).enumerate().map(|(i, (start, end))| {
        let span = Span::new(start, end).expect("sorted starts");
        RangeDescriptor::new(RangeId(i as u64), span, replicas_of(i as u64))
    });
    let table = RangeTable::from_descriptors(descriptors).expect("disjoint ranges");
    table.check_cover().expect("the ranges cover the keyspace");
    table
}

/// Ordered keys `user/NNNNNNNNNN`: every split key shares `user/000`, as
/// real keyspaces share table and tenant prefixes. Fixed size, so the
/// looked-up keys sit in one array, as a key just read from a request sits
/// in cache.
fn user_key(id: u64) -> [u8; 15] {
    let mut key = [0u8; 15];
    key.copy_from_slice(format!("user/{id:010}").as_bytes());
    key
}

/// Times `lookup` (of the key at an index; returns something to sum) over
/// every key, `passes` times, in chunks of [`CHUNK`] keys, and prints the
/// median and the best chunk in ns per lookup. Short chunks let the figures
/// dodge preemption on a shared machine: a chunk takes well under a
/// scheduler time slice.
fn row(name: &str, passes: usize, mut lookup: impl FnMut(usize) -> u64) {
    let mut chunks: Vec<f64> = Vec::with_capacity(passes * KEYS / CHUNK);
    let mut sum = 0u64;
    for _ in 0..passes {
        for chunk in 0..KEYS / CHUNK {
            let started = Instant::now();
            for at in chunk * CHUNK..(chunk + 1) * CHUNK {
                sum = sum.wrapping_add(lookup(at));
            }
            chunks.push(started.elapsed().as_nanos() as f64 / CHUNK as f64);
        }
    }
    black_box(sum);
    chunks.sort_by(f64::total_cmp);
    let (median, best) = (chunks[chunks.len() / 2], chunks[0]);
    println!("{name:<58} {median:>7.1} ns  (best chunk {best:.1})");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let full = std::env::args().any(|argument| argument == "--bench");
    let passes = if full { PASSES } else { 1 };
    if !full {
        println!("(smoke run: one pass per row; `cargo bench` runs the real one)");
    }
    let mut state = 42;
    let ids: Vec<u64> = (0..KEYS).map(|_| splitmix(&mut state) % (RANGES * 1_000)).collect();

    let ordered = table((0..RANGES).map(|i| if i == 0 { Vec::new() } else { user_key(i * 1_000).to_vec() }).collect());
    let ordered_keys: Vec<[u8; 15]> = ids.iter().map(|&id| user_key(id)).collect();
    for (key, id) in ordered_keys.iter().zip(&ids) {
        let range = ordered.lookup(key).expect("covered");
        assert_eq!(range.id, RangeId(id / 1_000), "ordered lookup of {id}");
        let mut voters = replicas_of(id / 1_000);
        voters.sort();
        assert_eq!(ordered.route(key).map(|route| route.voters), Some(&voters[..]));
    }
    row("ordered: route (range + voters), 10,000 ranges", passes, |at| {
        ordered.route(black_box(&ordered_keys[at])).map_or(0, |route| route.voters[0].0)
    });
    row("ordered: lookup (descriptor, its replicas), 10,000 ranges", passes, |at| {
        ordered.lookup(black_box(&ordered_keys[at])).map_or(0, |range| range.replicas()[0].node.0)
    });

    let step = u64::MAX / RANGES + 1;
    let hashed =
        table((0..RANGES).map(|i| if i == 0 { Vec::new() } else { (i * step).to_be_bytes().to_vec() }).collect());
    let user_keys: Vec<Vec<u8>> = (0..KEYS).map(|i| format!("key-{i}").into_bytes()).collect();
    let routing_keys: Vec<[u8; 8]> = user_keys.iter().map(|key| hashed_routing_key(key)).collect();
    for (key, routing) in user_keys.iter().zip(&routing_keys) {
        let expected = RangeId(u64::from_be_bytes(*routing) / step);
        assert_eq!(hashed.lookup_key(KeyMode::Hashed, key).map(|range| range.id), Some(expected));
        assert_eq!(hashed.route_key(KeyMode::Hashed, key).map(|route| route.range), Some(expected));
    }
    row("hashed: route, 10,000 ranges (key pre-hashed)", passes, |at| {
        hashed.route(black_box(&routing_keys[at])).map_or(0, |route| route.voters[0].0)
    });
    row("hashed: lookup (descriptor), 10,000 ranges (key pre-hashed)", passes, |at| {
        hashed.lookup(black_box(&routing_keys[at])).map_or(0, |range| range.replicas()[0].node.0)
    });
    row("BLAKE3 key hash (key-N, 5-9 bytes)", passes, |at| key_hash(black_box(&user_keys[at])));
    row("hashed: route_key (hash + route), 10,000 ranges", passes, |at| {
        hashed.route_key(KeyMode::Hashed, black_box(&user_keys[at])).map_or(0, |route| route.voters[0].0)
    });

    let hashes: Vec<u64> = user_keys.iter().map(|key| key_hash(key)).collect();
    let nodes: Vec<NodeId> = (0..RANGES).map(|i| NodeId(i % NODES)).collect();
    let shards = ShardMap::successors(&nodes, RF).expect("10,000 shards");
    row("jump shard + replicas, 10,000 shards (key pre-hashed)", passes, |at| {
        shards.replicas(shards.shard_for_hash(black_box(hashes[at]))).map_or(0, |replicas| replicas[0].0)
    });

    let mut ring = HashRing::new(TokenPlacement::default()).expect("default placement");
    for node in 0..NODES {
        ring.add_node(NodeId(node), VNODES).expect("room on the ring");
    }
    let mut out = Vec::with_capacity(RF);
    for &hash in hashes.iter().take(1_000) {
        ring.nodes_for_hash(hash, RF, &mut out);
        assert_eq!(out.len(), RF);
    }
    row("ring nodes_for_hash, 100 × 100 vnodes, rf 3 (pre-hashed)", passes, |at| {
        ring.nodes_for_hash(black_box(hashes[at]), RF, &mut out);
        out[0].0
    });
}
