//! When a range splits or merges: by size, by sustained load, with
//! hysteresis so that a range never splits and merges back in a loop, and
//! with a range of one hot key reported instead of split forever.

use crate::types::Time;
use serde::{Deserialize, Serialize};

/// One mebibyte.
const MIB: u64 = 1 << 20;

/// When ranges split and merge. [`SplitPolicy::default`] is StemeDB's: split
/// above 64 MiB, merge neighbours that together stay under 20 MiB.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitPolicy {
    /// A range larger than this splits (at its size midpoint).
    pub split_bytes: u64,
    /// Two neighbours merge when together they are smaller than this. Must
    /// be under half of `split_bytes`: the two halves of a fresh split hold
    /// more than `split_bytes` together, so they never merge back, and a
    /// merged range must double before it splits again.
    pub merge_bytes: u64,
    /// A range serving more requests per second than this, for at least
    /// `load_sustain_us`, splits at its load midpoint. `None`: no load
    /// splits.
    pub split_qps: Option<f64>,
    /// How long the load must stay above `split_qps` before a load split.
    pub load_sustain_us: u64,
    /// Neighbours merge only when together they serve fewer requests per
    /// second than this share of `split_qps` (the load hysteresis).
    pub merge_qps_share: f64,
    /// A range split for load does not merge again for this long.
    pub merge_delay_after_split_us: u64,
    /// A key serving more than this share of its range's load is a hot key:
    /// splitting around it cannot spread the load, so it is reported.
    pub hot_key_share: f64,
}

impl Default for SplitPolicy {
    fn default() -> Self {
        SplitPolicy {
            split_bytes: 64 * MIB,
            merge_bytes: 20 * MIB,
            split_qps: Some(2_500.0),
            load_sustain_us: 10_000_000,
            merge_qps_share: 0.5,
            merge_delay_after_split_us: 60_000_000,
            hot_key_share: 0.5,
        }
    }
}

/// A [`SplitPolicy`] that could split and merge the same range in a loop,
/// or that cannot work.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SplitPolicyError {
    /// `merge_bytes` is not under half of `split_bytes`.
    #[error("merge_bytes ({merge_bytes}) must be under half of split_bytes ({split_bytes}), or a fresh split could merge back")]
    SizeHysteresis {
        /// The split size.
        split_bytes: u64,
        /// The merge size.
        merge_bytes: u64,
    },
    /// `merge_qps_share` is not in `[0, 0.5]`.
    #[error("merge_qps_share ({0}) must be between 0 and 0.5, or a merged range could be split for load again")]
    LoadHysteresis(f64),
    /// `split_qps` is not a positive number.
    #[error("split_qps ({0}) must be a positive number")]
    SplitQps(f64),
    /// `hot_key_share` is not in `(0, 1]`.
    #[error("hot_key_share ({0}) must be above 0 and at most 1")]
    HotKeyShare(f64),
}

impl SplitPolicy {
    /// Checks the hysteresis rules.
    pub fn validate(&self) -> Result<(), SplitPolicyError> {
        if self.merge_bytes.saturating_mul(2) >= self.split_bytes {
            return Err(SplitPolicyError::SizeHysteresis {
                split_bytes: self.split_bytes,
                merge_bytes: self.merge_bytes,
            });
        }
        if !(0.0..=0.5).contains(&self.merge_qps_share) {
            return Err(SplitPolicyError::LoadHysteresis(self.merge_qps_share));
        }
        if let Some(qps) = self.split_qps.filter(|qps| !(qps.is_finite() && *qps > 0.0)) {
            return Err(SplitPolicyError::SplitQps(qps));
        }
        if !(self.hot_key_share > 0.0 && self.hot_key_share <= 1.0) {
            return Err(SplitPolicyError::HotKeyShare(self.hot_key_share));
        }
        Ok(())
    }
}

/// What a range's leaseholder reports about it: size, load, and where it
/// could split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RangeLoad {
    /// Bytes stored.
    pub size_bytes: u64,
    /// Requests per second over the reporting window.
    pub qps: f64,
    /// The key that halves the range by size (a split point), if the range
    /// has at least two keys.
    pub size_midpoint: Option<Vec<u8>>,
    /// The key that halves the range by load, if known.
    pub load_midpoint: Option<Vec<u8>>,
    /// The busiest key and its share of the range's load (0.0 to 1.0).
    pub hottest_key: Option<(Vec<u8>, f64)>,
}

/// What the policy says about one range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitDecision {
    /// Nothing to do.
    Keep,
    /// Split at this key.
    Split {
        /// The first key of the right half.
        at: Vec<u8>,
        /// Split for load (not size): it must not merge for a while.
        for_load: bool,
    },
    /// The range is hot because of one key; splitting cannot help.
    HotKey {
        /// The key.
        key: Vec<u8>,
    },
}

/// Per-range memory the policy needs between reports: since when the load
/// has been above the split threshold, and when the range last split for
/// load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadHistory {
    /// Since when the load has been above `split_qps`, if it is.
    pub hot_since: Option<Time>,
    /// When this range last split for load.
    pub last_load_split: Option<Time>,
}

impl SplitPolicy {
    /// Whether `load` (reported at `now`) splits the range; updates
    /// `history`.
    pub fn decide(&self, now: Time, load: &RangeLoad, history: &mut LoadHistory) -> SplitDecision {
        if load.size_bytes > self.split_bytes {
            if let Some(at) = &load.size_midpoint {
                return SplitDecision::Split { at: at.clone(), for_load: false };
            }
        }
        let Some(split_qps) = self.split_qps else { return SplitDecision::Keep };
        if load.qps <= split_qps {
            history.hot_since = None;
            return SplitDecision::Keep;
        }
        let since = *history.hot_since.get_or_insert(now);
        if now.micros_since(since) < self.load_sustain_us {
            return SplitDecision::Keep;
        }
        if let Some((key, share)) = &load.hottest_key {
            if *share >= self.hot_key_share {
                return SplitDecision::HotKey { key: key.clone() };
            }
        }
        match &load.load_midpoint {
            Some(at) => SplitDecision::Split { at: at.clone(), for_load: true },
            None => SplitDecision::Keep,
        }
    }

    /// Whether two neighbours, `left` and `right`, should merge at `now`.
    pub fn should_merge(&self, now: Time, left: (&RangeLoad, &LoadHistory), right: (&RangeLoad, &LoadHistory)) -> bool {
        let size = left.0.size_bytes.saturating_add(right.0.size_bytes);
        if size >= self.merge_bytes {
            return false;
        }
        if let Some(split_qps) = self.split_qps {
            if left.0.qps + right.0.qps >= split_qps * self.merge_qps_share {
                return false;
            }
        }
        let recently_split = |history: &LoadHistory| {
            history.last_load_split.is_some_and(|at| now.micros_since(at) < self.merge_delay_after_split_us)
        };
        !recently_split(left.1) && !recently_split(right.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(size_mib: u64, qps: f64) -> RangeLoad {
        RangeLoad {
            size_bytes: size_mib * MIB,
            qps,
            size_midpoint: Some(b"m".to_vec()),
            load_midpoint: Some(b"k".to_vec()),
            hottest_key: None,
        }
    }

    #[test]
    fn the_default_policy_is_steme_dbs_and_valid() {
        let policy = SplitPolicy::default();
        assert_eq!((policy.split_bytes, policy.merge_bytes), (64 * MIB, 20 * MIB));
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn a_policy_that_could_loop_is_refused() {
        let policy = SplitPolicy { merge_bytes: 32 * MIB, ..SplitPolicy::default() };
        assert!(matches!(policy.validate(), Err(SplitPolicyError::SizeHysteresis { .. })));
        let policy = SplitPolicy { merge_qps_share: 0.6, ..SplitPolicy::default() };
        assert!(matches!(policy.validate(), Err(SplitPolicyError::LoadHysteresis(_))));
        let policy = SplitPolicy { split_qps: Some(f64::NAN), ..SplitPolicy::default() };
        assert!(matches!(policy.validate(), Err(SplitPolicyError::SplitQps(_))));
    }

    #[test]
    fn size_splits_at_once_and_load_splits_only_when_sustained() {
        let policy = SplitPolicy::default();
        let mut history = LoadHistory::default();
        assert_eq!(
            policy.decide(Time::ZERO, &load(65, 0.0), &mut history),
            SplitDecision::Split { at: b"m".to_vec(), for_load: false }
        );
        assert_eq!(policy.decide(Time::ZERO, &load(10, 5_000.0), &mut history), SplitDecision::Keep);
        assert_eq!(policy.decide(Time::from_millis(9_999), &load(10, 5_000.0), &mut history), SplitDecision::Keep);
        assert_eq!(
            policy.decide(Time::from_millis(10_000), &load(10, 5_000.0), &mut history),
            SplitDecision::Split { at: b"k".to_vec(), for_load: true }
        );
        // A dip below the threshold restarts the clock.
        policy.decide(Time::from_millis(10_001), &load(10, 10.0), &mut history);
        assert_eq!(policy.decide(Time::from_millis(10_002), &load(10, 5_000.0), &mut history), SplitDecision::Keep);
    }

    #[test]
    fn a_range_hot_because_of_one_key_is_reported_not_split() {
        let policy = SplitPolicy::default();
        let mut history = LoadHistory { hot_since: Some(Time::ZERO), last_load_split: None };
        let hot = RangeLoad { hottest_key: Some((b"celebrity".to_vec(), 0.9)), ..load(1, 9_000.0) };
        assert_eq!(
            policy.decide(Time::from_millis(20_000), &hot, &mut history),
            SplitDecision::HotKey { key: b"celebrity".to_vec() }
        );
    }

    #[test]
    fn neighbours_merge_only_when_small_cool_and_not_freshly_split_for_load() {
        let policy = SplitPolicy::default();
        let quiet = LoadHistory::default();
        assert!(policy.should_merge(Time::ZERO, (&load(5, 10.0), &quiet), (&load(5, 10.0), &quiet)));
        assert!(
            !policy.should_merge(Time::ZERO, (&load(15, 10.0), &quiet), (&load(5, 10.0), &quiet)),
            "20 MiB together"
        );
        assert!(!policy.should_merge(Time::ZERO, (&load(5, 1_000.0), &quiet), (&load(5, 300.0), &quiet)), "too busy");
        let split = LoadHistory { hot_since: None, last_load_split: Some(Time::from_millis(1_000)) };
        assert!(!policy.should_merge(Time::from_millis(30_000), (&load(5, 10.0), &split), (&load(5, 10.0), &quiet)));
        assert!(policy.should_merge(Time::from_millis(61_000), (&load(5, 10.0), &split), (&load(5, 10.0), &quiet)));
    }
}
