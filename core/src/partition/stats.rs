//! Distribution statistics: how evenly keys, replica slots or ranges are
//! spread over nodes, whatever placed them (the ring, jump shards, the
//! balanced allocator).
//!
//! The input is plain per-node counts, so every strategy reports the same
//! figures: the mean, the standard deviation in percent of the mean, the
//! largest and smallest count over the mean, and each node's share.

use crate::types::NodeId;

/// Most nodes a distribution takes; counts beyond it are refused, so that a
/// report stays a bounded amount of work and memory.
pub const MAX_DISTRIBUTION_NODES: usize = 1 << 20;

/// How counts are spread over nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    /// Each node's count, sorted by node (a node given twice is summed).
    pub counts: Vec<(NodeId, u64)>,
    /// Sum of the counts.
    pub total: u64,
    /// Mean count per node.
    pub mean: f64,
    /// Population standard deviation of the counts, in percent of the mean.
    pub sd_pct: f64,
    /// Largest count over the mean (1.0: perfectly even).
    pub max_over_mean: f64,
    /// Smallest count over the mean.
    pub min_over_mean: f64,
}

/// Why no distribution could be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DistributionError {
    /// No node was given.
    #[error("no nodes")]
    NoNodes,
    /// Every count is zero: there is no mean to compare with.
    #[error("all {nodes} nodes have a count of zero")]
    AllZero {
        /// Number of nodes given.
        nodes: usize,
    },
    /// More than [`MAX_DISTRIBUTION_NODES`] nodes.
    #[error("more than {MAX_DISTRIBUTION_NODES} nodes")]
    TooManyNodes,
    /// The counts add up to more than `u64::MAX`.
    #[error("the counts overflow a u64")]
    Overflow,
}

impl Distribution {
    /// The distribution of `counts`, one `(node, count)` per node. Nodes
    /// that hold nothing must be given with a count of 0, or the mean is
    /// taken over fewer nodes than there are.
    pub fn from_counts(counts: impl IntoIterator<Item = (NodeId, u64)>) -> Result<Distribution, DistributionError> {
        let mut sorted: Vec<(NodeId, u64)> = Vec::new();
        for (node, count) in counts {
            if sorted.len() >= MAX_DISTRIBUTION_NODES {
                return Err(DistributionError::TooManyNodes);
            }
            sorted.push((node, count));
        }
        sorted.sort_by_key(|&(node, _)| node);
        let mut merged: Vec<(NodeId, u64)> = Vec::with_capacity(sorted.len());
        for (node, count) in sorted {
            match merged.last_mut() {
                Some((last, sum)) if *last == node => {
                    *sum = sum.checked_add(count).ok_or(DistributionError::Overflow)?
                }
                _ => merged.push((node, count)),
            }
        }
        if merged.is_empty() {
            return Err(DistributionError::NoNodes);
        }
        let total = merged.iter().try_fold(0u64, |sum, &(_, count)| sum.checked_add(count));
        let total = total.ok_or(DistributionError::Overflow)?;
        if total == 0 {
            return Err(DistributionError::AllZero { nodes: merged.len() });
        }
        // Summed in node order: the same counts give the same bits.
        let nodes = merged.len() as f64;
        let mean = total as f64 / nodes;
        let variance = merged.iter().map(|&(_, count)| (count as f64 - mean).powi(2)).sum::<f64>() / nodes;
        let max = merged.iter().map(|&(_, count)| count).max().unwrap_or(0);
        let min = merged.iter().map(|&(_, count)| count).min().unwrap_or(0);
        Ok(Distribution {
            counts: merged,
            total,
            mean,
            sd_pct: 100.0 * variance.sqrt() / mean,
            max_over_mean: max as f64 / mean,
            min_over_mean: min as f64 / mean,
        })
    }

    /// Each node's share of the total (0.0 to 1.0), sorted by node.
    pub fn shares(&self) -> impl Iterator<Item = (NodeId, f64)> + '_ {
        self.counts.iter().map(|&(node, count)| (node, count as f64 / self.total as f64))
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(values: &[u64]) -> Vec<(NodeId, u64)> {
        values.iter().enumerate().map(|(node, &count)| (NodeId(node as u64), count)).collect()
    }

    #[test]
    fn an_even_spread_has_no_deviation_and_max_over_mean_one() {
        let even = Distribution::from_counts(counts(&[10, 10, 10, 10])).unwrap();
        assert_eq!(even.mean, 10.0);
        assert_eq!(even.sd_pct, 0.0);
        assert_eq!(even.max_over_mean, 1.0);
        assert_eq!(even.min_over_mean, 1.0);
        assert!(even.shares().all(|(_, share)| share == 0.25));
    }

    #[test]
    fn an_uneven_spread_reports_its_deviation_and_extremes() {
        // Mean 10, deviations ±5: standard deviation 5 = 50% of the mean.
        let uneven = Distribution::from_counts(counts(&[5, 15, 5, 15])).unwrap();
        assert!((uneven.sd_pct - 50.0).abs() < 1e-9);
        assert_eq!(uneven.max_over_mean, 1.5);
        assert_eq!(uneven.min_over_mean, 0.5);
    }

    #[test]
    fn a_node_given_twice_is_summed_and_order_does_not_matter() {
        let a = Distribution::from_counts(vec![(NodeId(2), 4), (NodeId(1), 3), (NodeId(2), 4)]).unwrap();
        let b = Distribution::from_counts(vec![(NodeId(1), 3), (NodeId(2), 8)]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.node_count(), 2);
    }

    #[test]
    fn empty_zero_and_overflowing_counts_are_errors_not_panics() {
        assert_eq!(Distribution::from_counts(Vec::new()), Err(DistributionError::NoNodes));
        assert_eq!(Distribution::from_counts(counts(&[0, 0])), Err(DistributionError::AllZero { nodes: 2 }));
        assert_eq!(Distribution::from_counts(counts(&[u64::MAX, 1])), Err(DistributionError::Overflow));
    }
}
