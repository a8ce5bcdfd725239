//! Lifeguard's suspicion timer.
//!
//! Classic SWIM declares a suspect failed after a fixed timeout. Lifeguard
//! starts the timer long (`max`) and shortens it as *independent
//! confirmations* arrive: other members that, on their own, suspect the same
//! member at the same incarnation. A suspect that really failed is soon
//! suspected by many and declared failed quickly; a healthy member wrongly
//! suspected by one slow node gets the full `max` to refute.
//!
//! With `c` confirmations of `k` expected (as in memberlist):
//!
//! ```text
//! timeout(c) = max(min, max − (max − min) · ln(c + 1) / ln(k + 1))
//! ```
//!
//! measured from when the suspicion started. The formula is a closed form of
//! integers, so its floating-point evaluation does not depend on the order in
//! which confirmations arrived.
//!
//! Without Lifeguard, `min == max` and confirmations change nothing.

use super::member::{Incarnation, MemberId};
use crate::types::Time;
use std::collections::BTreeSet;

/// Suspicion timeout bounds for one suspicion, derived from the config and
/// the cluster size when the suspicion starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuspicionTimeouts {
    /// The shortest timeout, reached at `expected_confirmations` (and the
    /// only one when that is 0): SWIM's classic timeout
    /// ([`SuspicionTimeouts::base_micros`]).
    pub min_micros: u64,
    /// The timeout with no confirmation: `min_micros` times β with Lifeguard,
    /// `min_micros` without.
    pub max_micros: u64,
    /// Confirmations after which the timeout reaches `min` (`k`).
    pub expected_confirmations: u32,
}

impl SuspicionTimeouts {
    /// The classic SWIM timeout, which Lifeguard uses as its minimum:
    /// `multiplier · max(1, log10(n)) · probe_interval`.
    pub fn base_micros(multiplier: u32, cluster_size: usize, probe_interval_micros: u64) -> u64 {
        let scale = (cluster_size.max(1) as f64).log10().max(1.0);
        let micros = f64::from(multiplier) * scale * probe_interval_micros as f64;
        // `as` saturates; the inputs are validated to keep this far from u64::MAX.
        micros as u64
    }

    /// The timeout after `confirmations` independent confirmations.
    pub fn timeout_micros(self, confirmations: u32) -> u64 {
        if self.expected_confirmations == 0 || self.max_micros <= self.min_micros {
            return self.min_micros;
        }
        let fraction = f64::from(confirmations.saturating_add(1)).ln()
            / f64::from(self.expected_confirmations.saturating_add(1)).ln();
        let span = (self.max_micros - self.min_micros) as f64;
        let shrunk = self.max_micros as f64 - span * fraction;
        (shrunk.floor() as u64).clamp(self.min_micros, self.max_micros)
    }
}

/// One running suspicion of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspicion {
    /// The incarnation under suspicion; a refutation carries a higher one.
    pub incarnation: Incarnation,
    /// When this node started suspecting (its own clock); every timeout is
    /// measured from here.
    pub started_at: Time,
    timeouts: SuspicionTimeouts,
    /// Members known to suspect, the first suspecter included (empty while
    /// the suspicion is [unattributed](Suspicion::unattributed)). Holds at
    /// most `expected_confirmations + 1`: further confirmations change
    /// nothing, so a peer inventing suspecters cannot grow it.
    suspecters: BTreeSet<MemberId>,
}

impl Suspicion {
    /// A suspicion raised by `by` at `now`.
    pub fn new(incarnation: Incarnation, by: MemberId, timeouts: SuspicionTimeouts, now: Time) -> Suspicion {
        Suspicion { incarnation, started_at: now, timeouts, suspecters: BTreeSet::from([by]) }
    }

    /// A suspicion whose suspecter is unknown: learned from a push-pull
    /// state, which says that the sender believes the member suspect, not
    /// that it suspected on its own. The first suspecter named later takes
    /// the place of the original one and is no confirmation; only the ones
    /// after it are.
    pub fn unattributed(incarnation: Incarnation, timeouts: SuspicionTimeouts, now: Time) -> Suspicion {
        Suspicion { incarnation, started_at: now, timeouts, suspecters: BTreeSet::new() }
    }

    /// Records that `by` suspects too. Returns whether `by` is a new
    /// suspecter (worth gossiping on, so that others can count it): an
    /// independent confirmation that shortened the timeout, or the first
    /// named suspecter of an unattributed suspicion. Once
    /// `expected_confirmations` are in, none is.
    pub fn confirm(&mut self, by: MemberId) -> bool {
        if self.confirmations() >= self.timeouts.expected_confirmations {
            return false;
        }
        self.suspecters.insert(by)
    }

    /// Independent confirmations beyond the first suspecter.
    pub fn confirmations(&self) -> u32 {
        u32::try_from(self.suspecters.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// When the member is declared failed unless it refutes.
    pub fn deadline(&self) -> Time {
        self.started_at.add_micros(self.timeouts.timeout_micros(self.confirmations()))
    }

    /// The bounds fixed when the suspicion started (a later change of the
    /// cluster size does not move them).
    pub fn timeouts(&self) -> SuspicionTimeouts {
        self.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    const TIMEOUTS: SuspicionTimeouts =
        SuspicionTimeouts { min_micros: 1_000_000, max_micros: 6_000_000, expected_confirmations: 3 };

    #[test]
    fn the_timeout_starts_at_max_and_reaches_min_at_k_confirmations() {
        assert_eq!(TIMEOUTS.timeout_micros(0), 6_000_000);
        let mut previous = u64::MAX;
        for confirmations in 0..=3 {
            let timeout = TIMEOUTS.timeout_micros(confirmations);
            assert!(timeout < previous, "shrinks strictly: {confirmations} -> {timeout}");
            previous = timeout;
        }
        assert_eq!(TIMEOUTS.timeout_micros(3), 1_000_000);
        assert_eq!(TIMEOUTS.timeout_micros(100), 1_000_000);
    }

    #[test]
    fn the_shrinking_is_logarithmic() {
        // ln(2)/ln(4) = 0.5: one confirmation of three halves the span.
        assert_eq!(TIMEOUTS.timeout_micros(1), 3_500_000);
    }

    #[test]
    fn without_expected_confirmations_the_timeout_is_min() {
        let timeouts = SuspicionTimeouts { expected_confirmations: 0, ..TIMEOUTS };
        assert_eq!(timeouts.timeout_micros(0), 1_000_000);
    }

    #[test]
    fn only_distinct_suspecters_confirm() {
        let mut suspicion = Suspicion::new(Incarnation(2), NodeId(1), TIMEOUTS, Time::from_millis(10));
        assert_eq!(suspicion.deadline(), Time::from_millis(6_010));
        assert!(!suspicion.confirm(NodeId(1)));
        assert!(suspicion.confirm(NodeId(2)));
        assert!(!suspicion.confirm(NodeId(2)));
        assert_eq!(suspicion.confirmations(), 1);
        assert_eq!(suspicion.deadline(), Time::from_millis(3_510));
    }

    #[test]
    fn an_unattributed_suspicion_counts_its_first_named_suspecter_as_the_original() {
        let mut suspicion = Suspicion::unattributed(Incarnation(0), TIMEOUTS, Time::ZERO);
        assert_eq!(suspicion.deadline(), Time::from_micros(TIMEOUTS.max_micros));
        assert!(suspicion.confirm(NodeId(2)), "recorded: the next suspecter confirms it");
        assert_eq!(suspicion.confirmations(), 0);
        assert_eq!(suspicion.deadline(), Time::from_micros(TIMEOUTS.max_micros));
        assert!(suspicion.confirm(NodeId(3)));
        assert_eq!(suspicion.confirmations(), 1);
    }

    #[test]
    fn confirmations_beyond_k_are_not_recorded() {
        let mut suspicion = Suspicion::new(Incarnation(0), NodeId(1), TIMEOUTS, Time::ZERO);
        for by in 2..100 {
            suspicion.confirm(NodeId(by));
        }
        assert_eq!(suspicion.confirmations(), 3);
        assert!(!suspicion.confirm(NodeId(500)));
        assert_eq!(suspicion.deadline(), Time::from_micros(TIMEOUTS.min_micros));
    }

    #[test]
    fn the_base_timeout_grows_with_log_of_the_cluster_size() {
        assert_eq!(SuspicionTimeouts::base_micros(4, 5, 1_000_000), 4_000_000);
        assert_eq!(SuspicionTimeouts::base_micros(4, 100, 1_000_000), 8_000_000);
    }
}
