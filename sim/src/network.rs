//! The simulated network: per-message delay with jitter, loss, duplication,
//! reordering, and a connectivity matrix for partitions (including one-way).
//! Connectivity is checked when a message is sent *and* when it arrives, so a
//! partition also cuts messages already in flight.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// One million, the denominator of every `_ppm` rate.
pub const PPM: u32 = 1_000_000;

/// How the network treats each message. Rates are parts per million of
/// messages ([`PPM`]); times are simulated microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkParams {
    /// Shortest one-way delay.
    pub delay_min_us: u64,
    /// Longest one-way delay before reordering (uniform between the two; a
    /// value below `delay_min_us` counts as `delay_min_us`).
    pub delay_max_us: u64,
    /// Chance a message is lost.
    pub loss_ppm: u32,
    /// Chance a message arrives twice, the copy with its own delay.
    pub duplicate_ppm: u32,
    /// Chance a message is held back by up to an extra
    /// `reorder_delay_max_us`, letting later messages overtake it.
    pub reorder_ppm: u32,
    /// Largest extra delay of a held-back message.
    pub reorder_delay_max_us: u64,
}

impl NetworkParams {
    /// A healthy LAN: 0.5–2 ms, nothing lost.
    pub fn reliable() -> NetworkParams {
        NetworkParams {
            delay_min_us: 500,
            delay_max_us: 2_000,
            loss_ppm: 0,
            duplicate_ppm: 0,
            reorder_ppm: 0,
            reorder_delay_max_us: 0,
        }
    }
}

/// What happens to one message handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Cut by a partition at send time.
    Blocked,
    /// Lost at random.
    Lost,
    /// Arrives after `first_us`, and once more after `second_us` if duplicated.
    Arrives {
        /// Delay of the first copy, in simulated microseconds from now.
        first_us: u64,
        /// Delay of the duplicate, if any (it may arrive first).
        second_us: Option<u64>,
    },
}

/// The network of one run: its parameters and who can reach whom.
///
/// Connectivity is kept in O(nodes) space (SWIM runs 10,000 members): each
/// node has a partition label, and nodes with different labels cannot talk;
/// one-way cuts are listed separately.
pub struct Network {
    /// The current delays and rates; faults change them during a run.
    pub params: NetworkParams,
    /// `label[node]`: the node's side of the current partition.
    label: Vec<usize>,
    /// `(from, to)`: messages from `from` to `to` are dropped.
    one_way: BTreeSet<(usize, usize)>,
    /// Some pair of nodes cannot talk (a cache of the two fields above).
    partitioned: bool,
}

impl Network {
    /// A fully connected network of `nodes` nodes (indexes `0..nodes`).
    pub fn new(nodes: usize, params: NetworkParams) -> Network {
        Network { params, label: vec![0; nodes], one_way: BTreeSet::new(), partitioned: false }
    }

    /// Whether a message from `from` to `to` is cut now (by a partition or a
    /// one-way cut). Checked at send time and again at arrival.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.label[from] != self.label[to] || (!self.one_way.is_empty() && self.one_way.contains(&(from, to)))
    }

    /// Whether some pair of nodes cannot talk.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// Nodes in different groups cannot talk; a node in no group is cut off
    /// from everyone. Replaces every earlier cut, one-way ones included.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let nodes = self.label.len();
        // A node in no group gets a label of its own (past the groups').
        let mut label: Vec<Option<usize>> = vec![None; nodes];
        for (group_index, group) in groups.iter().enumerate() {
            for &node in group.iter().filter(|&&node| node < nodes) {
                label[node].get_or_insert(group_index);
            }
        }
        for (node, label) in label.into_iter().enumerate() {
            self.label[node] = label.unwrap_or(groups.len() + node);
        }
        self.one_way.clear();
        self.partitioned = self.label.iter().any(|label| *label != self.label[0]);
    }

    /// Drops every message from a node in `senders` to a node in `receivers`
    /// (the reverse direction is untouched).
    pub fn block_one_way(&mut self, senders: &[usize], receivers: &[usize]) {
        for &from in senders {
            for &to in receivers {
                if from != to {
                    self.one_way.insert((from, to));
                    self.partitioned = true;
                }
            }
        }
    }

    /// Restores full connectivity (the rates are left as they are).
    pub fn heal(&mut self) {
        self.label.iter_mut().for_each(|label| *label = 0);
        self.one_way.clear();
        self.partitioned = false;
    }

    fn delay(&self, rng: &mut ChaCha8Rng) -> u64 {
        let params = &self.params;
        let mut delay = rng.random_range(params.delay_min_us..=params.delay_max_us.max(params.delay_min_us));
        if params.reorder_ppm > 0 && rng.random_range(0..PPM) < params.reorder_ppm {
            delay += rng.random_range(0..=params.reorder_delay_max_us);
        }
        delay
    }

    /// Decides the fate of a message between two nodes.
    pub fn route(&self, rng: &mut ChaCha8Rng, from: usize, to: usize) -> Fate {
        if self.is_blocked(from, to) {
            return Fate::Blocked;
        }
        self.route_unpartitioned(rng)
    }

    /// Decides the fate of a message that no partition can cut (client
    /// traffic: clients sit outside the cluster's network splits).
    pub fn route_unpartitioned(&self, rng: &mut ChaCha8Rng) -> Fate {
        if self.params.loss_ppm > 0 && rng.random_range(0..PPM) < self.params.loss_ppm {
            return Fate::Lost;
        }
        let first_us = self.delay(rng);
        let second_us = (self.params.duplicate_ppm > 0 && rng.random_range(0..PPM) < self.params.duplicate_ppm)
            .then(|| self.delay(rng));
        Fate::Arrives { first_us, second_us }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_cuts_between_groups_only() {
        let mut network = Network::new(5, NetworkParams::reliable());
        network.partition(&[vec![0, 1], vec![2, 3, 4]]);
        assert!(!network.is_blocked(0, 1));
        assert!(network.is_blocked(1, 2));
        assert!(network.is_blocked(4, 0));
        assert!(!network.is_blocked(3, 4));
        network.heal();
        assert!(!network.is_partitioned());
    }

    #[test]
    fn one_way_block_leaves_the_reverse_direction_open() {
        let mut network = Network::new(3, NetworkParams::reliable());
        network.block_one_way(&[1, 2], &[0]);
        assert!(network.is_blocked(1, 0));
        assert!(!network.is_blocked(0, 1));
        assert!(network.is_partitioned());
    }

    #[test]
    fn a_node_in_no_group_is_cut_off_and_a_partition_replaces_one_way_cuts() {
        let mut network = Network::new(4, NetworkParams::reliable());
        network.block_one_way(&[0], &[1]);
        network.partition(&[vec![0, 1], vec![2]]);
        assert!(!network.is_blocked(0, 1), "the partition replaced the one-way cut");
        assert!(network.is_blocked(3, 2) && network.is_blocked(3, 0) && network.is_blocked(2, 3));
        assert!(!network.is_blocked(3, 3));
        network.partition(&[vec![0, 1, 2, 3]]);
        assert!(!network.is_partitioned());
    }
}
