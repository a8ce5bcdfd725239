//! How a key finds its place: the three keyspace modes, the routing key of
//! hashed ranges, and jump consistent hashing.

use serde::{Deserialize, Serialize};

/// How a keyspace maps keys to ranges or shards. Chosen per keyspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyMode {
    /// Ranges over the raw keys, in byte order, so a scan of a key prefix
    /// touches consecutive ranges (CockroachDB's layout). Sequential keys
    /// land in one range until it splits.
    Ordered,
    /// Ranges over [`hashed_routing_key`]: contiguous spans of the hash
    /// space that split and merge like ordered ones, but spread sequential
    /// keys evenly. Scans touch every range.
    Hashed,
    /// A fixed number of shards; key → [`jump_consistent_hash`] of its
    /// [`key_hash`]. Growing the shard count moves only the minimal fraction
    /// of keys; shards never split or merge.
    Jump {
        /// Number of shards (at least 1).
        shards: u32,
    },
}

/// The 64-bit hash of a key: the first eight bytes of its BLAKE3 digest,
/// little-endian. Stable across platforms and versions.
pub fn key_hash(key: &[u8]) -> u64 {
    let digest = blake3::hash(key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The routing key of `key` in a [`KeyMode::Hashed`] keyspace: its
/// [`key_hash`] as eight big-endian bytes, so that byte order on routing
/// keys is numeric order on hashes and spans of the hash space are ordinary
/// [`super::Span`]s.
pub fn hashed_routing_key(key: &[u8]) -> [u8; 8] {
    key_hash(key).to_be_bytes()
}

/// Jump consistent hash (Lamping and Veach, "A Fast, Minimal Memory,
/// Consistent Hash Algorithm", 2014): the bucket in `0..buckets` for `key`.
/// Growing `buckets` by one moves exactly the keys that land in the new
/// bucket, an expected `1/(buckets+1)` of them. `buckets` 0 is treated as 1.
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets.max(1));
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // As the paper: (b + 1) * (2^31 / ((key >> 33) + 1)), in doubles.
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    // `bucket` < `buckets` <= u32::MAX.
    bucket as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_stays_in_range_and_moves_only_into_the_new_bucket() {
        for key in 0..2_000u64 {
            let key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut previous = jump_consistent_hash(key, 1);
            assert_eq!(previous, 0);
            for buckets in 2..64 {
                let bucket = jump_consistent_hash(key, buckets);
                assert!(bucket < buckets);
                assert!(bucket == previous || bucket == buckets - 1, "key {key:#x} moved between old buckets");
                previous = bucket;
            }
        }
    }

    /// Keys sampled for the movement test.
    const MOVEMENT_KEYS: u64 = 200_000;

    #[test]
    fn growing_buckets_from_n_to_n_plus_one_moves_about_one_in_n_plus_one_keys() {
        for buckets in [1u32, 2, 9, 99] {
            let moved = (0..MOVEMENT_KEYS)
                .map(|i| key_hash(format!("key-{i}").as_bytes()))
                .filter(|&hash| jump_consistent_hash(hash, buckets) != jump_consistent_hash(hash, buckets + 1))
                .count() as f64;
            let fraction = moved / MOVEMENT_KEYS as f64;
            let optimal = 1.0 / f64::from(buckets + 1);
            // At 100 buckets 200,000 keys expect 2,000 moves with a binomial
            // standard deviation of 2.2%: 8% is over 3.5 deviations, while a
            // hash that moved keys between old buckets would move far more.
            assert!(
                (fraction / optimal - 1.0).abs() < 0.08,
                "{buckets}→{}: moved {fraction}, optimal {optimal}",
                buckets + 1
            );
        }
    }

    #[test]
    fn hashed_routing_keys_order_like_their_hashes() {
        let a = hashed_routing_key(b"a");
        let b = hashed_routing_key(b"b");
        assert_eq!(a.cmp(&b), key_hash(b"a").cmp(&key_hash(b"b")));
    }
}
