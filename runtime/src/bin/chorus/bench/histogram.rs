//! Latencies in a log-linear histogram: bounded memory whatever the run's
//! length, every value within 1/64 (1.6 %) of the one recorded, integer
//! arithmetic only (so merging the clients' histograms in any order gives
//! the same percentiles).

use std::time::Duration;

/// Values below `2^MANTISSA_BITS` µs get a bucket each; above, every power
/// of two is cut into `2^(MANTISSA_BITS - 1)` buckets.
const MANTISSA_BITS: u32 = 7;
const HALF: u64 = 1 << (MANTISSA_BITS - 1);
/// Largest value kept apart, in microseconds (about 19 hours); longer ones
/// count as this.
pub(crate) const MAX_MICROS: u64 = (1 << 36) - 1;
const BUCKETS: usize = bucket_of(MAX_MICROS) + 1;

/// The bucket of `micros` (at most `MAX_MICROS`).
const fn bucket_of(micros: u64) -> usize {
    if micros < 2 * HALF {
        return micros as usize;
    }
    // `micros >> shift` lies in [HALF, 2 * HALF).
    let shift = (63 - micros.leading_zeros()) - (MANTISSA_BITS - 1);
    (shift as u64 * HALF + (micros >> shift)) as usize
}

/// The largest value of bucket `index`.
fn bucket_max(index: usize) -> u64 {
    let index = index as u64;
    if index < 2 * HALF {
        return index;
    }
    let shift = index / HALF - 1;
    let mantissa = index % HALF + HALF;
    ((mantissa + 1) << shift) - 1
}

/// Latencies recorded by one client, or merged from all of them.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max_micros: u64,
    sum_micros: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], count: 0, max_micros: 0, sum_micros: 0 }
    }
}

impl Histogram {
    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).min(MAX_MICROS);
        self.counts[bucket_of(micros)] += 1;
        self.count += 1;
        self.max_micros = self.max_micros.max(micros);
        self.sum_micros += u128::from(micros);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max_micros = self.max_micros.max(other.max_micros);
        self.sum_micros += other.sum_micros;
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn max_micros(&self) -> u64 {
        self.max_micros
    }

    /// The mean, rounded down; 0 when empty.
    pub(crate) fn mean_micros(&self) -> u64 {
        if self.count == 0 {
            return 0;
        }
        u64::try_from(self.sum_micros / u128::from(self.count)).unwrap_or(u64::MAX)
    }

    /// The latency that `numerator / denominator` of the values do not
    /// exceed (nearest rank: the value of rank ceil(count × fraction)),
    /// given as its bucket's largest value but never above the largest
    /// value recorded; 0 when empty.
    pub(crate) fn quantile_micros(&self, numerator: u64, denominator: u64) -> u64 {
        assert!(0 < denominator && numerator <= denominator, "a fraction in [0, 1]: {numerator}/{denominator}");
        if self.count == 0 {
            return 0;
        }
        let product = u128::from(self.count) * u128::from(numerator);
        let rank = product.div_ceil(u128::from(denominator)).max(1);
        let mut seen: u128 = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += u128::from(*count);
            if seen >= rank {
                return bucket_max(index).min(self.max_micros);
            }
        }
        unreachable!("the counts add up to count, and rank <= count")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(micros: impl IntoIterator<Item = u64>) -> Histogram {
        let mut histogram = Histogram::default();
        for value in micros {
            histogram.record(Duration::from_micros(value));
        }
        histogram
    }

    #[test]
    fn buckets_are_contiguous_and_hold_their_values_within_one_sixty_fourth() {
        for micros in (0..100_000).chain([MAX_MICROS - 1, MAX_MICROS]) {
            let index = bucket_of(micros);
            assert!(bucket_max(index) >= micros, "{micros} above its bucket {index}");
            assert!(index == 0 || bucket_max(index - 1) < micros, "{micros} also fits bucket {}", index - 1);
            assert!(bucket_max(index) - micros <= micros / 64, "{micros}: bucket max {}", bucket_max(index));
        }
        assert_eq!(BUCKETS, bucket_of(MAX_MICROS) + 1);
        assert_eq!(bucket_max(BUCKETS - 1), MAX_MICROS);
    }

    #[test]
    fn small_values_are_exact_and_percentiles_take_the_nearest_rank() {
        let histogram = of(1..=100);
        assert_eq!(histogram.quantile_micros(50, 100), 50);
        assert_eq!(histogram.quantile_micros(99, 100), 99);
        assert_eq!(histogram.quantile_micros(999, 1000), 100);
        assert_eq!(histogram.quantile_micros(1, 1), 100);
        assert_eq!(histogram.quantile_micros(0, 1), 1, "rank 0 is the smallest value");
        assert_eq!(histogram.mean_micros(), 50, "5050 / 100, rounded down");
        assert_eq!((histogram.count(), histogram.max_micros()), (100, 100));
    }

    #[test]
    fn large_values_are_reported_within_one_sixty_fourth_and_never_above_the_max() {
        let histogram = of((1..=10_000).map(|value| value * 100));
        for (numerator, denominator, exact) in [(50, 100, 500_000), (99, 100, 990_000), (999, 1000, 999_000)] {
            let got = histogram.quantile_micros(numerator, denominator);
            assert!(got >= exact && got - exact <= exact / 64, "{numerator}/{denominator}: {got} vs {exact}");
        }
        assert_eq!(histogram.quantile_micros(1, 1), 1_000_000);
        let single = of([1_000_003]);
        assert_eq!(single.quantile_micros(50, 100), 1_000_003, "clamped to the largest value recorded");
    }

    #[test]
    fn a_tail_of_one_in_a_thousand_shows_in_the_p999_and_not_in_the_p99() {
        let histogram = of((0..9_990).map(|_| 100).chain((0..10).map(|_| 200_000)));
        assert_eq!(histogram.quantile_micros(99, 100), 100);
        assert_eq!(histogram.quantile_micros(999, 1000), 100, "rank 9990 is the last fast one");
        let heavier = of((0..9_989).map(|_| 100).chain((0..11).map(|_| 200_000)));
        let p999 = heavier.quantile_micros(999, 1000);
        assert!((200_000..=200_000 + 200_000 / 64).contains(&p999), "{p999}");
    }

    #[test]
    fn merging_equals_recording_everything_in_one_and_empty_reports_zero() {
        let (mut left, right) = (of(0..500), of((500..2_000).map(|value| value * 37)));
        left.merge(&right);
        let all = of((0..500).chain((500..2_000).map(|value| value * 37)));
        assert_eq!(left.counts, all.counts);
        assert_eq!((left.count, left.max_micros, left.sum_micros), (all.count, all.max_micros, all.sum_micros));
        let empty = Histogram::default();
        assert_eq!((empty.quantile_micros(99, 100), empty.mean_micros(), empty.max_micros()), (0, 0, 0));
    }

    #[test]
    fn latencies_beyond_the_range_are_clamped_not_lost() {
        let histogram = of([u64::MAX / 2]);
        assert_eq!((histogram.count(), histogram.max_micros()), (1, MAX_MICROS));
    }
}
