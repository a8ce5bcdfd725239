//! # chorus-sim
//!
//! A deterministic discrete-event simulator for Chorus. One seed drives a
//! whole cluster — network, disks, clocks, clients and faults — in virtual
//! time on one thread; the same seed and build replay byte for byte.
//!
//! Code map: [`simulation`] (the event loop and the two phases), [`network`],
//! [`disk`], [`clock`], [`faults`] (fault kinds and swarm profiles),
//! [`scenario`] (timed fault schedules from TOML), [`workload`] (clients),
//! [`check`] (safety and linearizability), [`history`] (Jepsen histories),
//! [`trace`], [`runner`] (many seeds in parallel, summaries), [`swim`] (the
//! SWIM membership simulation, `--system swim`).

pub mod check;
pub mod clock;
pub mod disk;
pub mod faults;
pub mod history;
pub mod network;
pub mod queue;
pub mod runner;
pub mod scenario;
pub mod simulation;
pub mod swim;
pub mod trace;
pub mod workload;

pub use simulation::{run_seed, SimOptions, SimReport};
