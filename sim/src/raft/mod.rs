//! One seed's run: a cluster of Raft nodes, a network, disks, clocks and
//! clients, driven by a discrete-event loop in virtual time.
//!
//! The run has two phases, as in TigerBeetle's VOPR. In the *fault phase*
//! faults strike (randomly from the seed's swarm profile, and/or from a
//! scenario file) while clients work and the safety checker watches every
//! step. Then everything heals — partitions lift, crashed nodes restart,
//! paused ones resume, the network stops losing messages — and the *liveness
//! phase* requires a leader to commit and every client operation to finish
//! within [`LIVENESS_BOUND_US`]. Finally the client history is checked for
//! linearizability.
//!
//! Determinism: every random choice comes from one ChaCha8 stream seeded by
//! the seed; events at the same instant run in the order they were scheduled;
//! no hash-map iteration order reaches behaviour.
//!
//! Code map: [`RaftWorld`] in `world.rs` (nodes, events, what each event
//! does; it plugs into [`crate::skeleton`]), `faults.rs` (the fault
//! injector), `operator.rs` (membership churn and transfers), `probe.rs` (the calm probe: what requests cost once the faults are over),
//! `quiet.rs` (quiescence: the failure detector and the quiet tail), `checks.rs`
//! (checker glue), `timeline.rs` (what `replay --html` shows), [`describe`] (trace record kinds, message text).

mod checks;
pub mod describe;
mod faults;
mod operator;
mod probe;
mod quiet;
mod timeline;
mod world;

use crate::history::History;
use crate::scenario::Scenario;
use crate::workload::OpCounts;
use chorus_core::raft::Bug;

pub use world::RaftWorld;

/// Default length of the fault phase.
pub const FAULT_PHASE_US: u64 = 10_000_000;
/// After healing, a leader must commit and every client operation must finish
/// within this much simulated time.
pub const LIVENESS_BOUND_US: u64 = 10_000_000;
/// Clients keep starting operations this long after healing.
pub const WORKLOAD_TAIL_US: u64 = 1_000_000;
/// Hard cap on events in one run; a run with more fails its seed.
pub const MAX_EVENTS_PER_RUN: u64 = 20_000_000;
/// Clients of the workload.
pub const DEFAULT_CLIENTS: usize = 5;
/// Keys of the workload (`k0`, `k1`, `k2`).
pub const DEFAULT_KEYS: usize = 3;
/// The nodes' election timeout, in milliseconds of their local clocks.
pub const ELECTION_TIMEOUT_MS: u64 = 150;
/// The leaders' heartbeat interval, in milliseconds of their local clocks.
pub const HEARTBEAT_INTERVAL_MS: u64 = 40;
/// The operator retries a scheduled membership change the leader refused
/// after this long.
pub const OPERATOR_RETRY_US: u64 = 100_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Seeds the run's one RNG: the fault profile, the nodes' settings, the
    /// workload and every fault and network fate follow from it.
    pub seed: u64,
    /// Voters in the initial configuration (at least 1); spare nodes come on
    /// top of them.
    pub nodes: usize,
    /// A bug injected into every node, for proving the checkers catch it;
    /// `None` for the real protocol.
    pub bug: Option<Bug>,
    /// A timed fault schedule; with one, the seed's random faults run only
    /// if the scenario asks for them.
    pub scenario: Option<Scenario>,
    /// Keep a readable trace (replay); the hash is always computed.
    pub keep_trace_text: bool,
    /// Keep the run's timeline (`replay --html`, `--perfetto`); outside the
    /// trace hash, it changes nothing in the run.
    pub keep_timeline: bool,
    /// After healing, a leader must commit and every client operation must
    /// finish within this much simulated time.
    pub liveness_bound_us: u64,
}

impl SimOptions {
    /// The defaults for `seed`: 5 nodes, no bug, no scenario, no trace text,
    /// the default liveness bound.
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            nodes: 5,
            bug: None,
            scenario: None,
            keep_trace_text: false,
            keep_timeline: false,
            liveness_bound_us: LIVENESS_BOUND_US,
        }
    }
}

/// One Raft seed's outcome; its metrics count client operations.
pub type SeedOutcome = crate::skeleton::SeedOutcome<OpCounts>;

/// What one Raft run found; it keeps the client history.
pub type SimReport = crate::skeleton::SeedReport<OpCounts, History>;

/// Runs one seed.
pub fn run_seed(options: SimOptions) -> SimReport {
    world::RaftWorld::new(options).run()
}

/// Runs one seed and also returns every fault and operator action applied,
/// `(at_us, action)` in order, with "the leader" resolved to a node: with a
/// `seed_profile` scenario of these events, the same seed and options replay
/// the run.
pub fn run_seed_recorded(options: SimOptions) -> (SimReport, Vec<(u64, crate::faults::FaultAction)>) {
    world::RaftWorld::new(options).run_recorded()
}
