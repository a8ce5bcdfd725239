//! The cluster in the simulator: `chorus-sim run --system cluster`.
//!
//! One seed runs several [`ClusterNode`](chorus_core::cluster::ClusterNode)s
//! — SWIM, the meta range, the planner and one Raft group per range in each
//! — over the simulated network (messages cross it as bytes through the
//! cluster codec) with crashes that lose unsynced writes, partitions, a node
//! lost for good and a node that joins mid-run. Clients route keys with
//! their own caches and retry on redirects. Checkers: Raft safety per range,
//! every answer served by the range that owns the key, linearizability per
//! key, the descriptors always covering the keyspace, and, after the faults,
//! convergence: every range back to `rf` voters on live nodes, recorded in
//! the meta range, and every node routing by the same descriptors.
//!
//! Code map: [`world`] (nodes, disks, network, faults, the event loop),
//! `client.rs` (the workload and its history), `checks.rs` (the checkers),
//! [`report`] (metrics, summaries, text and JSON).

mod checks;
mod client;
mod phases;
pub mod report;
pub mod world;

use crate::skeleton::{SeedOutcome, SeedReport};
pub use chorus_core::cluster::ClusterBug;
pub use report::{SeedMetrics, Summary};

/// Most initial nodes `--system cluster` accepts.
pub const MAX_NODES: usize = 32;
/// Most ranges `--system cluster` accepts.
pub const MAX_RANGES: usize = 100_000;

/// The faults of a cluster run (`--faults`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMix {
    /// Crashes, partitions, maybe a node lost for good, maybe a join, for
    /// 30 s (the default).
    Swarm,
    /// None: a calm run (idle-cluster scale runs).
    None,
    /// Only one node lost for good, 2 s in: measures the repair alone.
    Lose,
}

impl FaultMix {
    /// The name `--faults` takes.
    pub fn name(self) -> &'static str {
        match self {
            FaultMix::Swarm => "swarm",
            FaultMix::None => "none",
            FaultMix::Lose => "lose",
        }
    }
}

/// Longest idle phase `--idle-secs` accepts (simulated seconds).
pub const MAX_IDLE_SECS: u64 = 3_600;

/// What to run for one seed.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// Nodes at the start (one more may join during the run).
    pub nodes: usize,
    /// Ranges at the start.
    pub ranges: usize,
    /// Replication factor.
    pub rf: usize,
    /// Run the client workload (`false`: `--workload none`).
    pub workload: bool,
    /// Which faults to inject.
    pub faults: FaultMix,
    /// Idle ranges quiesce (`false`: `--quiesce off`, every range beats).
    pub quiesce: bool,
    /// After convergence and the final round, idle this many simulated
    /// seconds and measure the cost of idling (0: end at convergence).
    pub idle_secs: u64,
    /// A deliberate cluster bug, or `None`.
    pub bug: Option<ClusterBug>,
    /// Keep a readable trace (replay); the hash is always computed.
    pub keep_trace_text: bool,
}

impl ClusterOptions {
    /// The defaults for `seed`: 5 nodes, 16 ranges, rf 3, workload and
    /// faults on.
    pub fn new(seed: u64) -> ClusterOptions {
        ClusterOptions {
            seed,
            nodes: 5,
            ranges: 16,
            rf: 3,
            workload: true,
            faults: FaultMix::Swarm,
            quiesce: true,
            idle_secs: 0,
            bug: None,
            keep_trace_text: false,
        }
    }
}

/// One cluster seed's outcome.
pub type ClusterSeedOutcome = SeedOutcome<SeedMetrics>;
/// One cluster seed's report, with the client history.
pub type ClusterReport = SeedReport<SeedMetrics, crate::history::History>;

/// Runs one seed.
pub fn run_seed(options: ClusterOptions) -> ClusterReport {
    world::ClusterWorld::new(options).run()
}
