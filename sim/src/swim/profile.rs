//! What the world does to a SWIM cluster: fault mixes and the per-seed fault
//! profile (swarm testing: each seed draws its own mix from its seed and
//! turns some fault kinds off completely).

use crate::clock::MAX_DRIFT_PPM;
use crate::network::NetworkParams;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// Loss at or above this rate (parts per million) is "heavy": wrong failure
/// declarations made while it lasts are excused by the accuracy checker
/// (they are still counted as false positives).
pub const HEAVY_LOSS_PPM: u32 = 50_000;

/// Which family of faults a run draws from (`--faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMix {
    /// Every fault kind, each turned on or off per seed: loss (up to 50%),
    /// partitions that heal, crashes, restarts with the same identity,
    /// paused nodes and slow nodes, clock drift.
    Swarm,
    /// Only crashes (which stay down) on a clean network: for detection
    /// times.
    Crashes,
    /// 10% loss and some slow members (inbound processing lagging by up to
    /// two seconds), nothing else: the condition Lifeguard is for.
    Slow,
    /// The cluster split in two halves for the whole fault phase, then
    /// healed: for convergence after a partition heals.
    Partition,
    /// No faults: a join wave, then a steady state. For message load and
    /// convergence times.
    None,
}

impl FaultMix {
    /// Every mix.
    pub const ALL: [FaultMix; 5] =
        [FaultMix::Swarm, FaultMix::Crashes, FaultMix::Slow, FaultMix::Partition, FaultMix::None];

    /// The mix's name on the command line (`--faults NAME`).
    pub fn name(self) -> &'static str {
        match self {
            FaultMix::Swarm => "swarm",
            FaultMix::Crashes => "crashes",
            FaultMix::Slow => "slow",
            FaultMix::Partition => "partition",
            FaultMix::None => "none",
        }
    }

    /// The mix called `name`, if any (the inverse of [`name`](FaultMix::name)).
    pub fn from_name(name: &str) -> Option<FaultMix> {
        FaultMix::ALL.into_iter().find(|mix| mix.name() == name)
    }
}

/// One seed's fault profile. Mean intervals are in milliseconds of simulated
/// time; `None` turns a fault kind off for the whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimProfile {
    /// Random loss of every datagram during the fault phase.
    pub loss_ppm: u32,
    /// Largest one-way delay; the smallest is [`DELAY_MIN_US`].
    pub delay_max_us: u64,
    /// Mean interval between crashes.
    pub crash_every_ms: Option<u64>,
    /// Chance (ppm) that a crashed node restarts during the fault phase.
    pub restart_ppm: u32,
    /// Mean interval between partitions (each heals after a while).
    pub partition_every_ms: Option<u64>,
    /// Mean interval between process pauses (timers fire late afterwards).
    pub pause_every_ms: Option<u64>,
    /// Members made slow (their inbound processing lags) when the fault
    /// phase starts, until healing.
    pub slow_members: usize,
    /// Largest inbound lag of a slow member, in milliseconds; each slow
    /// member draws its lag from 100 ms up to this (at least 100 ms).
    pub slow_lag_max_ms: u64,
    /// Clock drift bound (±ppm).
    pub drift_ppm: i64,
    /// Split the cluster in two halves for the whole fault phase.
    pub split_halves: bool,
    /// Sizes at their limits: the longest address is exactly
    /// `max_address_bytes`, every member's metadata exactly
    /// `max_metadata_bytes`, and `max_members` is the cluster size, so a
    /// full push-pull state carries exactly `max_members` records.
    pub tight_limits: bool,
    /// `tombstone_retention_ms` when set (the default is a day, longer than
    /// any run): 15 to 30 s in half the seeds without partitions or pauses,
    /// so that members forget the failed within the run.
    pub tombstone_retention_ms: Option<u64>,
    /// Mean interval between metadata changes (a random running member
    /// publishes a new version) during the fault phase.
    pub metadata_every_ms: Option<u64>,
}

/// Smallest one-way delay: a LAN.
pub const DELAY_MIN_US: u64 = 200;

impl SwimProfile {
    /// No faults at all: a healthy LAN.
    pub fn quiet() -> SwimProfile {
        SwimProfile {
            loss_ppm: 0,
            delay_max_us: 2_000,
            crash_every_ms: None,
            restart_ppm: 0,
            partition_every_ms: None,
            pause_every_ms: None,
            slow_members: 0,
            slow_lag_max_ms: 0,
            drift_ppm: 0,
            split_halves: false,
            tight_limits: false,
            tombstone_retention_ms: None,
            metadata_every_ms: None,
        }
    }

    /// The profile of one seed under `mix`, drawn from the seed's stream.
    pub fn draw(mix: FaultMix, nodes: usize, rng: &mut ChaCha8Rng) -> SwimProfile {
        let quiet = SwimProfile::quiet();
        // Larger clusters see proportionally more faults, so that each
        // member's experience does not depend on the cluster size.
        let scale = (nodes as u64 / 20).max(1);
        match mix {
            FaultMix::None => quiet,
            FaultMix::Partition => SwimProfile { split_halves: true, ..quiet },
            FaultMix::Crashes => SwimProfile { crash_every_ms: Some(4_000 / scale.min(40)), ..quiet },
            FaultMix::Slow => {
                SwimProfile { loss_ppm: 100_000, slow_members: (nodes / 20).max(1), slow_lag_max_ms: 10_000, ..quiet }
            }
            FaultMix::Swarm => {
                let on = |rng: &mut ChaCha8Rng| rng.random_bool(0.5);
                let loss_ppm = if on(rng) {
                    // Half of the lossy seeds lose little, half up to 50%.
                    if on(rng) {
                        rng.random_range(1_000..HEAVY_LOSS_PPM)
                    } else {
                        rng.random_range(HEAVY_LOSS_PPM..=500_000)
                    }
                } else {
                    0
                };
                let delay_max_us = if on(rng) { rng.random_range(2_000..=50_000) } else { 2_000 };
                let crash_every_ms = on(rng).then(|| rng.random_range(2_000..=10_000) / scale.min(20));
                let restart_ppm = rng.random_range(0..=1_000_000);
                let partition_every_ms = on(rng).then(|| rng.random_range(5_000..=20_000));
                let pause_every_ms = on(rng).then(|| rng.random_range(2_000..=10_000) / scale.min(20));
                let (slow_members, slow_lag_max_ms) = if on(rng) {
                    (rng.random_range(1..=(nodes / 10).max(1)), rng.random_range(200..=2_000))
                } else {
                    (0, 0)
                };
                let drift_ppm = if on(rng) { rng.random_range(0..=MAX_DRIFT_PPM / 5) } else { 0 };
                let tight_limits = rng.random_bool(0.3);
                // Only where every member hears each failure before it is
                // forgotten: no partitions or pauses to miss it in (a member
                // cut off past the retention must find each failure by its
                // own probes and an unconfirmed suspicion, which the
                // completeness bound does not allow for).
                let calm = partition_every_ms.is_none() && pause_every_ms.is_none();
                let tombstone_retention_ms = (calm && on(rng)).then(|| rng.random_range(15_000..=30_000));
                let metadata_every_ms = on(rng).then(|| rng.random_range(1_000..=8_000) / scale.min(20));
                SwimProfile {
                    loss_ppm,
                    delay_max_us,
                    crash_every_ms,
                    restart_ppm,
                    partition_every_ms,
                    pause_every_ms,
                    slow_members,
                    slow_lag_max_ms,
                    drift_ppm,
                    split_halves: false,
                    tight_limits,
                    tombstone_retention_ms,
                    metadata_every_ms,
                }
            }
        }
    }

    /// Whether the profile ever makes a wrong failure declaration excusable
    /// (see the accuracy checker).
    pub fn heavy_loss(&self) -> bool {
        self.loss_ppm >= HEAVY_LOSS_PPM
    }

    /// The shared network model's parameters before the fault phase: this
    /// profile's delays, nothing lost, duplicated or reordered (the fault
    /// phase sets [`SwimProfile::loss_ppm`]).
    pub fn network_params(&self) -> NetworkParams {
        NetworkParams {
            delay_min_us: DELAY_MIN_US,
            delay_max_us: self.delay_max_us,
            loss_ppm: 0,
            duplicate_ppm: 0,
            reorder_ppm: 0,
            reorder_delay_max_us: 0,
        }
    }
}

impl fmt::Display for SwimProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let every = |value: Option<u64>| value.map_or("off".to_string(), |ms| format!("every ~{ms} ms"));
        write!(
            f,
            "loss {:.1}%, delay {}..{} us, crashes {} (restart {:.0}%), partitions {}, pauses {}, slow members {} (lag <= {} ms), drift +-{} ppm{}{}",
            f64::from(self.loss_ppm) / 1e4,
            DELAY_MIN_US,
            self.delay_max_us,
            every(self.crash_every_ms),
            f64::from(self.restart_ppm) / 1e4,
            every(self.partition_every_ms),
            every(self.pause_every_ms),
            self.slow_members,
            self.slow_lag_max_ms,
            self.drift_ppm,
            if self.split_halves { ", split in halves" } else { "" },
            if self.tight_limits { ", sizes at their limits" } else { "" }
        )?;
        if let Some(ms) = self.tombstone_retention_ms {
            write!(f, ", tombstones kept {ms} ms")?;
        }
        if let Some(ms) = self.metadata_every_ms {
            write!(f, ", metadata changes every ~{ms} ms")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn swarm_profiles_differ_between_seeds_and_repeat_for_one_seed() {
        let draw = |seed| SwimProfile::draw(FaultMix::Swarm, 50, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(3), draw(3));
        let profiles: Vec<_> = (0..40).map(draw).collect();
        assert!(profiles.iter().any(|profile| profile.crash_every_ms.is_none()));
        assert!(profiles.iter().any(|profile| profile.crash_every_ms.is_some()));
        assert!(profiles.iter().any(|profile| profile.heavy_loss()));
        assert!(profiles.iter().any(|profile| profile.loss_ppm > 0 && !profile.heavy_loss()));
        assert!(profiles.iter().all(|profile| profile.loss_ppm <= 500_000));
        assert!(profiles.iter().any(|profile| profile.partition_every_ms.is_some()));
        assert!(profiles.iter().any(|profile| profile.slow_members > 0));
        assert!(profiles.iter().any(|profile| profile.pause_every_ms.is_some()));
        assert!(profiles.iter().any(|profile| profile.tight_limits));
        assert!(profiles.iter().any(|profile| !profile.tight_limits));
        assert!(profiles.iter().any(|profile| profile.metadata_every_ms.is_some()));
    }

    #[test]
    fn mixes_have_names() {
        for mix in FaultMix::ALL {
            assert_eq!(FaultMix::from_name(mix.name()), Some(mix));
        }
        assert_eq!(FaultMix::from_name("most"), None);
    }
}
