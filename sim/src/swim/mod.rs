//! SWIM in the simulator: `chorus-sim run --system swim`.
//!
//! One seed runs a whole SWIM cluster (up to [`MAX_NODES`] members) on one
//! thread in virtual time: a join wave through three seeds, a fault phase
//! drawn from the seed's swarm profile, and a settle phase after healing.
//! Checkers watch every event; metrics measure detection, accuracy, load and
//! convergence. The same seed and build replay byte for byte, and the trace
//! hash covers every step.
//!
//! Code map: [`world`] (members, events, messages, the join wave),
//! `faults.rs` (the fault injector), `checks.rs` (the periodic join,
//! detection and settle checks, and the accuracy check's excuses),
//! [`checkers`] (incarnations, resurrection, accuracy), `bounds.rs` (per-run
//! bounds: load, dissemination, detection, suspicion timeout, refutation),
//! `timeline.rs` (what
//! `replay --html` shows), [`describe`] (trace
//! record kinds, message and event text), [`profile`] (fault mixes and
//! per-seed profiles), [`metrics`] (what a run measured), [`runner`] (many
//! seeds in parallel, summaries), [`report`] (text and JSON output).

mod bounds;
pub mod checkers;
mod checks;
pub mod describe;
mod faults;
pub mod metrics;
pub mod profile;
pub mod report;
pub mod runner;
mod timeline;
pub mod world;

pub use chorus_core::swim::Bug;
pub use metrics::{SeedMetrics, Summary};
pub use profile::{FaultMix, SwimProfile};

/// Largest cluster `--system swim` accepts.
pub const MAX_NODES: usize = 10_000;

/// What to run for one seed.
#[derive(Clone, Debug)]
pub struct SwimOptions {
    /// Seeds the run's one RNG: the fault profile, start times, clocks,
    /// faults and network fates all follow from it.
    pub seed: u64,
    /// Cluster size, 1 to [`MAX_NODES`] (the command line enforces the
    /// limit); the first three members are the seeds everyone joins through.
    pub nodes: usize,
    /// A bug injected into every member's protocol, for proving a checker
    /// fires; `None` for the real protocol.
    pub bug: Option<Bug>,
    /// Lifeguard's extensions on (the default) or classic SWIM.
    pub lifeguard: bool,
    /// Which family of faults the seed's profile is drawn from.
    pub faults: FaultMix,
    /// Length of the fault phase in simulated microseconds (the steady state
    /// with `FaultMix::None`); default [`world::FAULT_PHASE_US`].
    pub fault_phase_us: u64,
    /// Keep a readable trace (replay); the hash is always computed.
    pub keep_trace_text: bool,
    /// Keep the run's timeline (`replay --html`, `--perfetto`); outside the
    /// trace hash, it changes nothing in the run.
    pub keep_timeline: bool,
    /// Report the phase, simulated time and events on standard error every
    /// [`world::PROGRESS_EVERY_US`] of simulated time. Does not touch the
    /// trace.
    pub progress: bool,
}

impl SwimOptions {
    /// The defaults for `seed`: 50 members, no bug, Lifeguard on, the swarm
    /// fault mix, a 30 s fault phase, no trace text, no progress lines.
    pub fn new(seed: u64) -> SwimOptions {
        SwimOptions {
            seed,
            nodes: 50,
            bug: None,
            lifeguard: true,
            faults: FaultMix::Swarm,
            fault_phase_us: world::FAULT_PHASE_US,
            keep_trace_text: false,
            keep_timeline: false,
            progress: false,
        }
    }
}

/// One SWIM seed's outcome, with what it measured.
pub type SwimSeedOutcome = crate::skeleton::SeedOutcome<SeedMetrics>;

/// What one SWIM run found.
pub type SwimReport = crate::skeleton::SeedReport<SeedMetrics>;

/// Runs one seed.
pub fn run_seed(options: SwimOptions) -> SwimReport {
    world::SwimWorld::new(options).run()
}
