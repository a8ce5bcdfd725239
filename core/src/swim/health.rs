//! Lifeguard's local health multiplier (LHM).
//!
//! A node that is itself slow (overloaded CPU, a congested link) misses acks
//! and wrongly suspects healthy peers. Lifeguard lets a node notice this from
//! its own experience and back off: a saturating score in `0..=max` rises on
//! evidence of local trouble and falls on evidence of health, and the probe
//! interval and probe timeout are both multiplied by `score + 1`.
//!
//! | evidence | delta |
//! | --- | --- |
//! | a probe (direct or indirect) got its ack | −1 |
//! | a probe failed, and `m` of the helpers that promised a nack stayed silent | +m |
//! | a probe failed with no helpers to ask | +1 |
//! | this node had to refute a suspicion about itself | +1 |
//!
//! Missing nacks are the telling signal: a helper answers with a nack when
//! the target is silent, so if even the nacks do not arrive the problem is
//! most likely on our side.

/// The local health score. Zero is healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalHealth {
    score: u32,
    max: u32,
}

impl LocalHealth {
    /// A healthy node whose score saturates at `max`.
    pub fn new(max: u32) -> LocalHealth {
        LocalHealth { score: 0, max }
    }

    /// The current score, in `0..=max`.
    pub fn score(self) -> u32 {
        self.score
    }

    /// Adds `delta`, saturating at both ends of `0..=max`.
    pub fn apply(&mut self, delta: i64) {
        let score = i64::from(self.score).saturating_add(delta).clamp(0, i64::from(self.max));
        self.score = u32::try_from(score).expect("invariant: clamped into 0..=max, which fits u32");
    }

    /// `duration` scaled by the multiplier `score + 1`, saturating.
    pub fn scale_micros(self, duration_micros: u64) -> u64 {
        duration_micros.saturating_mul(u64::from(self.score) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_saturates_at_both_ends() {
        let mut health = LocalHealth::new(3);
        health.apply(-1);
        assert_eq!(health.score(), 0);
        health.apply(2);
        health.apply(2);
        assert_eq!(health.score(), 3);
        health.apply(i64::MAX);
        assert_eq!(health.score(), 3);
        health.apply(i64::MIN);
        assert_eq!(health.score(), 0);
    }

    #[test]
    fn durations_scale_with_the_score_plus_one() {
        let mut health = LocalHealth::new(8);
        assert_eq!(health.scale_micros(500), 500);
        health.apply(2);
        assert_eq!(health.scale_micros(500), 1500);
        assert_eq!(health.scale_micros(u64::MAX), u64::MAX);
    }
}
