//! Checkers: Raft safety (online, as the run goes), session and stale reads
//! against the replayed committed log (online), linearizability of the client
//! history (offline, after the run). Liveness is checked by the
//! simulation loop itself, which owns time.

pub mod linearizability;
pub mod reads;
pub mod safety;
