//! Checkers: Raft safety (online, as the run goes), linearizability of the
//! client history (offline, after the run). Liveness is checked by the
//! simulation loop itself, which owns time.

pub mod linearizability;
pub mod safety;
