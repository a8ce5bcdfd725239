//! Client histories: the model ([`History`], [`Operation`], ...) here, the
//! parsers for Jepsen's formats in `parse.rs` (on top of the small EDN reader
//! in `edn.rs`), and the EDN writer in `write.rs`.
//!
//! Two input formats are understood:
//!
//! * the `jepsen.util` log format of Jepsen's etcd register test
//!   (`INFO  jepsen.util - 3\t:invoke\t:write\t4`), see [`parse_jepsen_log`];
//! * Jepsen's `history.edn` shape, one EDN map per line
//!   (`{:process 6, :type :invoke, :f :append, :key "0", :value "x 6 0 y"}`),
//!   see [`parse_edn`].
//!
//! Both are turned into a [`History`]: a list of [`Operation`]s, each with an
//! invocation time, an optional completion time and an [`Outcome`].
//!
//! Semantics of the Jepsen completion types (shared by both formats):
//!
//! * `:ok` — the operation completed and took effect ([`Outcome::Ok`]; for a
//!   read, the value on the `:ok` line is the observation);
//! * `:fail :cas` without an `:error` key — the compare ran and the register
//!   did not hold the expected value ([`Outcome::CasMismatch`]);
//! * any other `:fail` — the operation definitely did not happen: it is dropped;
//! * `:info`, or an invocation that never completes — the outcome is unknown
//!   ([`Outcome::Unknown`], `complete_at == None`); unknown reads are dropped
//!   because they neither change nor constrain anything.
//!
//! Lines whose `:process` is a keyword (Jepsen's `:nemesis`) are skipped.

use std::fmt;

mod edn;
mod parse;
mod write;

use edn::write_edn_string;

pub use parse::{parse_auto, parse_edn, parse_jepsen_log};
pub use write::write_edn;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A register value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Nil,
    Int(i64),
    Str(String),
}

/// What an operation does to its register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    /// Observes the value.
    Read,
    /// Sets the value.
    Write(Value),
    /// Compare-and-set: if the value is `expected`, set it to `new`.
    Cas { expected: Value, new: Value },
    /// String append (`Nil` counts as `""`, an integer as its decimal text).
    Append(Value),
    /// Sets `Nil`.
    Delete,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed and took effect. `read` is Some(observed value) for Read, None otherwise.
    Ok { read: Option<Value> },
    /// Only meaningful for Cas: the compare ran and the value was NOT `expected`
    /// (no effect, but it constrains the state at that moment).
    CasMismatch,
    /// May or may not have taken effect, at any point after invoke.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    /// `None`: a single register.
    pub key: Option<String>,
    pub function: Function,
    pub outcome: Outcome,
    /// Any monotonic clock; only the order matters.
    pub invoke_at: u64,
    /// `None` iff outcome is Unknown.
    pub complete_at: Option<u64>,
}

/// A whole history: every register (key) starts as `initial`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub initial: Value,
    pub operations: Vec<Operation>,
}

/// Why a history could not be parsed. Every variant names the 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: malformed EDN: {message}")]
    Edn { line: usize, message: String },
    #[error("line {line}: malformed jepsen log line: {message}")]
    Log { line: usize, message: String },
    #[error("line {line}: unknown :type {found} (expected :invoke, :ok, :fail or :info)")]
    UnknownType { line: usize, found: String },
    #[error("line {line}: unknown :f {found} (expected :read, :get, :write, :put, :cas, :append or :delete)")]
    UnknownFunction { line: usize, found: String },
    #[error("line {line}: missing field {field}")]
    MissingField { line: usize, field: String },
    #[error("line {line}: bad value: {message}")]
    BadValue { line: usize, message: String },
    #[error("line {line}: completion for process {process} which has no pending invoke")]
    NoPendingInvoke { line: usize, process: u64 },
    #[error(
        "line {line}: process {process} invokes while its previous operation (invoked at line {pending_line}) is still pending"
    )]
    AlreadyPending { line: usize, process: u64, pending_line: usize },
    #[error(
        "line {line}: completion for process {process} does not match its pending invoke at line {invoke_line}: {message}"
    )]
    MismatchedCompletion { line: usize, process: u64, invoke_line: usize, message: String },
    #[error("line {line}: cannot detect the history format (expected an EDN map '{{...}}' or a jepsen.util log line)")]
    UnknownFormat { line: usize },
}

impl HistoryError {
    /// The 1-based line the error refers to.
    pub fn line(&self) -> usize {
        match self {
            HistoryError::Edn { line, .. }
            | HistoryError::Log { line, .. }
            | HistoryError::UnknownType { line, .. }
            | HistoryError::UnknownFunction { line, .. }
            | HistoryError::MissingField { line, .. }
            | HistoryError::BadValue { line, .. }
            | HistoryError::NoPendingInvoke { line, .. }
            | HistoryError::AlreadyPending { line, .. }
            | HistoryError::MismatchedCompletion { line, .. }
            | HistoryError::UnknownFormat { line } => *line,
        }
    }
}

impl fmt::Display for Value {
    /// EDN syntax: `nil`, `3`, `"text"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write_edn_string(f, s),
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Function::Read => f.write_str("read"),
            Function::Write(v) => write!(f, "write {v}"),
            Function::Cas { expected, new } => write!(f, "cas [{expected} {new}]"),
            Function::Append(v) => write!(f, "append {v}"),
            Function::Delete => f.write_str("delete"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok { read: Some(v) } => write!(f, "ok, read {v}"),
            Outcome::Ok { read: None } => f.write_str("ok"),
            Outcome::CasMismatch => f.write_str("fail (cas mismatch)"),
            Outcome::Unknown => f.write_str("unknown"),
        }
    }
}

impl fmt::Display for Operation {
    /// E.g. `process 3 read -> ok, read 2 [invoked 40, completed 45]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {}", self.process)?;
        if let Some(k) = &self.key {
            f.write_str(" key ")?;
            write_edn_string(f, k)?;
        }
        write!(f, " {} -> {} [invoked {}, ", self.function, self.outcome, self.invoke_at)?;
        match self.complete_at {
            Some(t) => write!(f, "completed {t}]"),
            None => f.write_str("never completed]"),
        }
    }
}
