//! # chorus-sim
//!
//! A deterministic discrete-event simulator for Chorus. One seed drives a
//! whole cluster — network, disks, clocks, clients and faults — in virtual
//! time on one thread; the same seed and build replay byte for byte.
//!
//! Code map: [`skeleton`] (what every system plugs into: time, queue, RNG,
//! trace, node slots, the event loop), [`runner`] (many seeds in parallel,
//! summaries), [`raft`] (the Raft world: events, faults, operator, checker
//! glue), [`swim`] (the SWIM world, `--system swim`), [`network`], [`disk`],
//! [`clock`], [`heap`] (heap accounting for scale runs), [`faults`] (fault kinds and swarm profiles), [`scenario`]
//! (timed fault schedules from TOML), [`shrink`] (failing seed to minimal
//! scenario), [`workload`] (clients), [`check`]
//! (safety and linearizability), [`history`] (Jepsen histories), [`queue`],
//! [`trace`], [`timeline`] (a run as an HTML page or a Perfetto trace).

pub mod check;
pub mod clock;
pub mod cluster;
pub mod disk;
pub mod faults;
pub mod heap;
pub mod history;
pub mod network;
pub mod placement;
pub mod placement_stats;
pub mod queue;
pub mod raft;
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod skeleton;
pub mod swim;
pub mod timeline;
pub mod trace;
pub mod workload;

pub use raft::{run_seed, SimOptions, SimReport};
