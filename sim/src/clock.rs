//! Per-node clocks that drift against simulated (true) time.
//!
//! A node's local time is `offset + t + floor(t * drift_ppm / 1e6)` for true
//! time `t`. Drift is bounded well below 100% so local time is strictly
//! increasing and every local deadline maps back to a true time.

use chorus_core::Time;

/// Largest drift the simulator draws, in parts per million (±).
pub const MAX_DRIFT_PPM: i64 = 50_000;

/// One node's clock: a fixed offset and a constant drift against simulated
/// time, both in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriftClock {
    offset_micros: u64,
    drift_ppm: i64,
}

/// Local deadlines later than this (about 53 simulated days, far past any
/// run) mean "never": the arithmetic below stays within `i64`.
pub const NEVER_AFTER_US: u64 = (i64::MAX / 2_000_000) as u64;

impl DriftClock {
    /// A clock that reads `offset_micros` at true time zero and gains
    /// (positive) or loses `drift_ppm` microseconds per simulated second.
    /// Panics if `|drift_ppm|` exceeds [`MAX_DRIFT_PPM`].
    pub fn new(offset_micros: u64, drift_ppm: i64) -> DriftClock {
        assert!(drift_ppm.abs() <= MAX_DRIFT_PPM, "drift {drift_ppm} ppm is out of range");
        DriftClock { offset_micros, drift_ppm }
    }

    /// A clock that reads true time: no offset, no drift.
    pub fn perfect() -> DriftClock {
        DriftClock { offset_micros: 0, drift_ppm: 0 }
    }

    /// The drift in parts per million (positive: runs fast).
    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }

    /// The node's reading at true time `true_micros`.
    pub fn local(&self, true_micros: u64) -> Time {
        // i64 suffices: |drift| <= 5e4 and runs last far less than 1.8e14 µs.
        let true_micros = i64::try_from(true_micros).expect("simulated time fits in i64");
        let skew = (true_micros * self.drift_ppm).div_euclid(1_000_000);
        let local = self.offset_micros as i64 + true_micros + skew;
        Time::from_micros(local.max(0) as u64)
    }

    /// The earliest true time at which the node's clock reads `deadline` or
    /// later (never before `not_before`); `u64::MAX` for a deadline past
    /// [`NEVER_AFTER_US`] (a node with no timer running, such as a
    /// quiesced one, asks for `Time::from_micros(u64::MAX)`).
    pub fn true_time_of(&self, deadline: Time, not_before: u64) -> u64 {
        if deadline.as_micros() > NEVER_AFTER_US {
            return u64::MAX;
        }
        let target = deadline.as_micros() as i64 - self.offset_micros as i64;
        if self.drift_ppm == 0 {
            return (target.max(0) as u64).max(not_before);
        }
        let mut guess = (target * 1_000_000).div_euclid(1_000_000 + self.drift_ppm).max(0) as u64;
        // The inverse is exact up to rounding; settle it with a few steps.
        while self.local(guess) < deadline {
            guess += 1;
        }
        while guess > 0 && self.local(guess - 1) >= deadline {
            guess -= 1;
        }
        guess.max(not_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn deadlines_map_to_the_first_true_time_that_reaches_them(
            offset in 0u64..10_000_000,
            drift in -MAX_DRIFT_PPM..=MAX_DRIFT_PPM,
            deadline in 0u64..1_000_000_000,
        ) {
            let clock = DriftClock::new(offset, drift);
            let deadline = Time::from_micros(deadline);
            let at = clock.true_time_of(deadline, 0);
            prop_assert!(clock.local(at) >= deadline || at == 0 && clock.local(0) >= deadline);
            if at > 0 {
                prop_assert!(clock.local(at - 1) < deadline);
            }
        }
    }

    #[test]
    fn a_fast_clock_reaches_deadlines_early() {
        let clock = DriftClock::new(0, 10_000); // 1% fast
        assert_eq!(clock.true_time_of(Time::from_micros(1_010_000), 0), 1_000_000);
    }
}
