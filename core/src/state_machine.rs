//! The replicated state machine that Raft drives.

use crate::types::LogIndex;

/// A deterministic state machine replicated by Raft.
///
/// `apply` is called once per committed command, in log order, on every
/// member; given the same commands it must produce the same state and answers
/// everywhere. Commands come from clients and may be malformed: answer them
/// with an error value, never panic.
pub trait StateMachine {
    /// Applies the committed command at `index` and returns the client's answer.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Vec<u8>;
    /// Applies the committed command at `index` where no client waits for
    /// the answer (on every node but the one that answers the client). It
    /// must change the state exactly as [`apply`](Self::apply) would; the
    /// default calls it and drops the answer. Override it to skip building
    /// answers nobody reads.
    fn apply_unanswered(&mut self, index: LogIndex, command: &[u8]) {
        let _ = self.apply(index, command);
    }
    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Vec<u8>;
    /// Serialises the whole state.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot. On error the state is unchanged.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;
}

/// A snapshot could not be restored; the state machine is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot rejected: {0}")]
pub struct RestoreError(pub String);
