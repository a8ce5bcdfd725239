//! Log output: to stderr, level from `--log-level` or else `RUST_LOG`, colour
//! only when stderr and stdout are both terminals.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` (e.g. `info`, `chorus_runtime=debug`)
/// wins over `RUST_LOG`; with neither, `info`. Returns an error naming a bad
/// filter instead of panicking.
pub(crate) fn init(level: Option<&str>) -> Result<(), String> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).map_err(|error| format!("--log-level {level:?}: {error}"))?,
        None => match std::env::var("RUST_LOG") {
            Ok(text) if !text.is_empty() => {
                EnvFilter::try_new(&text).map_err(|error| format!("RUST_LOG={text:?}: {error}"))?
            }
            _ => EnvFilter::new("info"),
        },
    };
    let colour = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|error| error.to_string())
}
