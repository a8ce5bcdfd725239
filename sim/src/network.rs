//! The simulated network: per-message delay with jitter, loss, duplication,
//! reordering, and a connectivity matrix for partitions (including one-way).
//! Connectivity is checked when a message is sent *and* when it arrives, so a
//! partition also cuts messages already in flight.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One million, the denominator of every `_ppm` rate.
pub const PPM: u32 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkParams {
    pub delay_min_us: u64,
    pub delay_max_us: u64,
    pub loss_ppm: u32,
    pub duplicate_ppm: u32,
    /// Chance a message is held back by an extra `reorder_delay_max_us`,
    /// letting later messages overtake it.
    pub reorder_ppm: u32,
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
    Arrives { first_us: u64, second_us: Option<u64> },
}

pub struct Network {
    pub params: NetworkParams,
    nodes: usize,
    /// `blocked[from * nodes + to]`: messages from `from` to `to` are dropped.
    blocked: Vec<bool>,
}

impl Network {
    pub fn new(nodes: usize, params: NetworkParams) -> Network {
        Network { params, nodes, blocked: vec![false; nodes * nodes] }
    }

    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.nodes + to]
    }

    pub fn is_partitioned(&self) -> bool {
        self.blocked.iter().any(|blocked| *blocked)
    }

    /// Nodes in different groups cannot talk; a node in no group is cut off
    /// from everyone.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let group_of = |node: usize| groups.iter().position(|group| group.contains(&node));
        for from in 0..self.nodes {
            for to in 0..self.nodes {
                let same = from == to || (group_of(from).is_some() && group_of(from) == group_of(to));
                self.blocked[from * self.nodes + to] = !same;
            }
        }
    }

    /// Drops every message from a node in `senders` to a node in `receivers`
    /// (the reverse direction is untouched).
    pub fn block_one_way(&mut self, senders: &[usize], receivers: &[usize]) {
        for from in senders {
            for to in receivers {
                if from != to {
                    self.blocked[from * self.nodes + to] = true;
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|blocked| *blocked = false);
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
    }
}
