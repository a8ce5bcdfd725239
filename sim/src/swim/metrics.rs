//! What a SWIM run measured: detection times, false positives, message load
//! and convergence times, per seed and summed over seeds.
//!
//! Times are integers (microseconds) until they are printed, so sums do not
//! depend on the order in which seeds finish.

use serde::Serialize;

/// One seed's measurements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedMetrics {
    /// Per crash of a member that stayed down until every member declared it
    /// failed: simulated microseconds from the crash to the first suspicion
    /// of it.
    pub detect_suspect_us: Vec<u64>,
    /// Per such crash: simulated microseconds from the crash to the first
    /// member declaring it failed.
    pub detect_first_us: Vec<u64>,
    /// Per such crash: simulated microseconds from the crash to the moment
    /// every running member had declared it failed.
    pub detect_all_us: Vec<u64>,
    /// Failure declarations of running members (each declarer counts).
    pub false_positives: u64,
    /// How many of `false_positives` the accuracy checker excused: a
    /// partition or heavy loss, or the declarer, the victim or a member that
    /// suspected it paused or slow, now or recently. Unexcused ones fail the
    /// seed.
    pub false_positives_excused: u64,
    /// False positives about healthy members: neither paused nor slow
    /// (recently). Lifeguard exists to keep slow members from declaring
    /// healthy ones failed; a slow member declared failed is a different,
    /// much less avoidable, matter.
    pub false_positives_healthy: u64,
    /// Suspicions of running members (each suspecter counts).
    pub false_suspicions: u64,
    /// Messages of all kinds sent during the measured window (after the
    /// join wave converged, until healing).
    pub messages: u64,
    /// Encoded bytes of those messages.
    pub bytes: u64,
    /// The part of `messages` that was full-state push-pull exchanges.
    pub push_pull_messages: u64,
    /// The encoded bytes of those push-pull messages.
    pub push_pull_bytes: u64,
    /// Member-periods in the window: the sum over running members of the
    /// time they ran, in probe intervals, times 1000.
    pub member_periods_milli: u64,
    /// Simulated microseconds from the last member's start to every member
    /// seeing all of them alive; `None` if that never happened.
    pub converge_join_us: Option<u64>,
    /// As `converge_join_us`, until 99.99% of them did.
    pub converge_join_9999_us: Option<u64>,
    /// From healing to every running member seeing exactly the running
    /// members as live (runs with a heal only).
    pub converge_heal_us: Option<u64>,
    /// The probe interval, to turn times into periods.
    pub probe_interval_us: u64,
}

/// Measurements summed over seeds, as printed (and serialized to JSON) by
/// `chorus-sim --system swim`.
///
/// Detection times are in probe intervals (protocol periods), rounded to
/// 0.01; loads are per member-period, rounded to 0.01; convergence times are
/// whole simulated milliseconds (truncated). Percentiles are nearest-rank
/// over all seeds' values pooled; an empty set gives 0 (or `None` for the
/// convergence times).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Crashes with a detection time: members that stayed down until every
    /// member declared them failed, over all seeds.
    pub crashes_measured: usize,
    /// Median time from a crash to the first suspicion, in probe intervals.
    pub detect_suspect_p50: f64,
    /// Median time from a crash to the first failure declaration, in probe
    /// intervals.
    pub detect_first_p50: f64,
    /// 99th percentile of the time to the first failure declaration, in
    /// probe intervals.
    pub detect_first_p99: f64,
    /// Median time from a crash until every running member declared it
    /// failed, in probe intervals.
    pub detect_all_p50: f64,
    /// 99th percentile of that time, in probe intervals.
    pub detect_all_p99: f64,
    /// Failure declarations of running members, summed over seeds.
    pub false_positives: u64,
    /// The excused part of `false_positives`.
    pub false_positives_excused: u64,
    /// The part of `false_positives` about healthy (neither paused nor slow)
    /// members.
    pub false_positives_healthy: u64,
    /// Suspicions of running members, summed over seeds.
    pub false_suspicions: u64,
    /// Messages of all kinds per member per probe interval in the measured
    /// window.
    pub msgs_per_member_period: f64,
    /// Encoded bytes of all kinds per member per probe interval.
    pub bytes_per_member_period: f64,
    /// Messages other than push-pull exchanges (probes, acks, gossip) per
    /// member per probe interval.
    pub probe_msgs_per_member_period: f64,
    /// Bytes of messages other than push-pull exchanges per member per probe
    /// interval.
    pub probe_bytes_per_member_period: f64,
    /// The slowest seed's join convergence, in milliseconds; `None` if no
    /// seed converged.
    pub converge_join_ms: Option<u64>,
    /// The median seed's join convergence, in milliseconds.
    pub converge_join_p50_ms: Option<u64>,
    /// The slowest seed's time to 99.99% join convergence, in milliseconds.
    pub converge_join_9999_ms: Option<u64>,
    /// The slowest seed's convergence after healing, in milliseconds; `None`
    /// without heals.
    pub converge_heal_ms: Option<u64>,
    /// The median seed's convergence after healing, in milliseconds.
    pub converge_heal_p50_ms: Option<u64>,
}

/// The `percent`-th percentile (nearest rank) of `values`, or 0 when empty.
pub fn percentile(values: &mut [u64], percent: u64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = (values.len() as u64 * percent).div_ceil(100).max(1);
    values[(rank - 1) as usize]
}

fn periods(micros: u64, interval_us: u64) -> f64 {
    let value = micros as f64 / interval_us.max(1) as f64;
    (value * 100.0).round() / 100.0
}

fn per_member_period(count: u64, member_periods_milli: u64) -> f64 {
    if member_periods_milli == 0 {
        return 0.0;
    }
    let value = count as f64 * 1000.0 / member_periods_milli as f64;
    (value * 100.0).round() / 100.0
}

impl Summary {
    /// Sums seeds (in seed order; the result does not depend on it).
    pub fn of<'a>(seeds: impl IntoIterator<Item = &'a SeedMetrics>) -> Summary {
        let mut suspect = Vec::new();
        let mut first = Vec::new();
        let mut all = Vec::new();
        let mut join = Vec::new();
        let mut join_9999 = Vec::new();
        let mut heal = Vec::new();
        let mut summary = Summary::default();
        let (mut messages, mut bytes, mut push_pull_messages, mut push_pull_bytes, mut member_periods) =
            (0, 0, 0, 0, 0);
        let mut interval_us = 1;
        for seed in seeds {
            interval_us = seed.probe_interval_us;
            suspect.extend(&seed.detect_suspect_us);
            first.extend(&seed.detect_first_us);
            all.extend(&seed.detect_all_us);
            summary.false_positives += seed.false_positives;
            summary.false_positives_excused += seed.false_positives_excused;
            summary.false_positives_healthy += seed.false_positives_healthy;
            summary.false_suspicions += seed.false_suspicions;
            messages += seed.messages;
            bytes += seed.bytes;
            push_pull_messages += seed.push_pull_messages;
            push_pull_bytes += seed.push_pull_bytes;
            member_periods += seed.member_periods_milli;
            join.extend(seed.converge_join_us);
            join_9999.extend(seed.converge_join_9999_us);
            heal.extend(seed.converge_heal_us);
        }
        summary.crashes_measured = first.len();
        summary.detect_suspect_p50 = periods(percentile(&mut suspect, 50), interval_us);
        summary.detect_first_p50 = periods(percentile(&mut first, 50), interval_us);
        summary.detect_first_p99 = periods(percentile(&mut first, 99), interval_us);
        summary.detect_all_p50 = periods(percentile(&mut all, 50), interval_us);
        summary.detect_all_p99 = periods(percentile(&mut all, 99), interval_us);
        summary.msgs_per_member_period = per_member_period(messages, member_periods);
        summary.bytes_per_member_period = per_member_period(bytes, member_periods);
        summary.probe_msgs_per_member_period = per_member_period(messages - push_pull_messages, member_periods);
        summary.probe_bytes_per_member_period = per_member_period(bytes - push_pull_bytes, member_periods);
        let ms = |values: &mut Vec<u64>, percent| (!values.is_empty()).then(|| percentile(values, percent) / 1000);
        summary.converge_join_ms = ms(&mut join, 100);
        summary.converge_join_p50_ms = ms(&mut join, 50);
        summary.converge_join_9999_ms = ms(&mut join_9999, 100);
        summary.converge_heal_ms = ms(&mut heal, 100);
        summary.converge_heal_p50_ms = ms(&mut heal, 50);
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut values: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut values, 50), 50);
        assert_eq!(percentile(&mut values, 99), 99);
        assert_eq!(percentile(&mut values, 100), 100);
        assert_eq!(percentile(&mut [7], 99), 7);
        assert_eq!(percentile(&mut [], 50), 0);
    }

    #[test]
    fn summaries_turn_times_into_periods_and_loads_into_rates() {
        let seed = SeedMetrics {
            detect_first_us: vec![1_500_000, 2_500_000],
            detect_all_us: vec![3_000_000, 4_000_000],
            messages: 300,
            bytes: 30_000,
            push_pull_messages: 100,
            push_pull_bytes: 20_000,
            member_periods_milli: 100_000,
            converge_join_us: Some(2_345_000),
            probe_interval_us: 1_000_000,
            ..SeedMetrics::default()
        };
        let summary = Summary::of([&seed]);
        assert_eq!(summary.detect_first_p50, 1.5);
        assert_eq!(summary.detect_all_p99, 4.0);
        assert_eq!(summary.msgs_per_member_period, 3.0);
        assert_eq!(summary.probe_msgs_per_member_period, 2.0);
        assert_eq!(summary.probe_bytes_per_member_period, 100.0);
        assert_eq!(summary.converge_join_ms, Some(2_345));
        assert_eq!(summary.converge_heal_ms, None);
    }
}
