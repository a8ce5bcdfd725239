//! Partitioning in the simulator: `chorus-sim run --system placement`.
//!
//! One seed runs the core's [`Planner`](chorus_core::partition::Planner)
//! against a cluster modelled at the level of range descriptors: nodes join
//! in waves, fail briefly or for good, come back, are decommissioned and
//! change capacity; ranges grow, shrink and get hot; every operation the
//! planner asks for takes simulated time and can fail; and the planner
//! itself crashes and restarts on another node from the descriptors alone.
//! Checkers watch every step; after the fault phase the cluster must
//! converge within a bound derived from the configuration.
//!
//! Code map: [`world`] (nodes, ranges, events, the executor, the faults),
//! `checks.rs` (the step checkers and the convergence check), [`report`]
//! (per-seed metrics, summaries, text and JSON).

mod checks;
pub mod report;
pub mod world;

use crate::skeleton::{SeedOutcome, SeedReport};
pub use chorus_core::partition::Bug;
pub use report::{SeedMetrics, Summary};

/// Most nodes `--system placement` accepts.
pub const MAX_NODES: usize = 1_000;
/// Most ranges `--system placement` accepts.
pub const MAX_RANGES: usize = 100_000;

/// Which placement strategy the planner uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The balanced allocator: failure domains, capacity, counts, leaders.
    Balanced,
    /// The ring with [`RING_VNODES`] virtual nodes per unit of capacity,
    /// zone-aware (see [`RingPlacement`](chorus_core::partition::RingPlacement)).
    Ring,
}

/// Virtual nodes per unit of capacity of [`Strategy::Ring`].
pub const RING_VNODES: u32 = 32;

impl Strategy {
    /// Every strategy, in the order the command line lists them.
    pub const ALL: [Strategy; 2] = [Strategy::Balanced, Strategy::Ring];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Balanced => "balanced",
            Strategy::Ring => "ring",
        }
    }

    /// The planner's placement for this strategy.
    pub fn placement(self) -> chorus_core::partition::Placement {
        match self {
            Strategy::Balanced => chorus_core::partition::Placement::Balanced,
            Strategy::Ring => chorus_core::partition::Placement::Ring { vnodes: RING_VNODES },
        }
    }

    /// Looks a strategy up by its command-line name.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What to run for one seed.
#[derive(Clone, Debug)]
pub struct PlacementOptions {
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// Nodes in the cluster at the end of the join waves (at least the
    /// replication factor + 1).
    pub nodes: usize,
    /// Ranges at the start (they split and merge during the run).
    pub ranges: usize,
    /// Replication factor.
    pub rf: usize,
    /// Placement strategy.
    pub strategy: Strategy,
    /// A planner bug, or `None`.
    pub bug: Option<Bug>,
    /// Keep a readable trace (replay); the hash is always computed.
    pub keep_trace_text: bool,
}

impl PlacementOptions {
    /// The defaults for `seed`: 9 nodes, 64 ranges, rf 3, balanced, no bug.
    pub fn new(seed: u64) -> PlacementOptions {
        PlacementOptions {
            seed,
            nodes: 9,
            ranges: 64,
            rf: 3,
            strategy: Strategy::Balanced,
            bug: None,
            keep_trace_text: false,
        }
    }
}

/// One placement seed's outcome.
pub type PlacementSeedOutcome = SeedOutcome<SeedMetrics>;
/// One placement seed's report.
pub type PlacementReport = SeedReport<SeedMetrics>;

/// Runs one seed.
pub fn run_seed(options: PlacementOptions) -> PlacementReport {
    world::PlacementWorld::new(options).run()
}
