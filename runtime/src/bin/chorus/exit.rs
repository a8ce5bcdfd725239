//! Exit codes of every `chorus` command (documented in `docs/runtime.md`).

use std::process::ExitCode;

/// Success (a node that stopped on SIGTERM or Ctrl-C exits with it too).
pub(crate) const OK: u8 = 0;
/// The answer is "no": the key does not exist (get), or a compare-and-set
/// did not match. Also a node that failed while running.
pub(crate) const NO: u8 = 1;
/// Bad flags or arguments (clap uses it too), or a refused start that the
/// operator must fix (empty data directory without `--bootstrap`, ...).
pub(crate) const USAGE: u8 = 2;
/// The node could not be reached or cannot serve now (no leader, shutting
/// down, overloaded); trying again later may succeed.
pub(crate) const UNAVAILABLE: u8 = 3;
/// The request was refused as invalid by the node, or an unexpected error.
pub(crate) const FAILED: u8 = 4;

pub(crate) fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}
