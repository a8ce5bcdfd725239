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
    /// No value: EDN `nil`; the initial value of a register in a history
    /// without appends or string values.
    Nil,
    /// An integer value (EDN `3`, or a bare number in a `jepsen.util` log).
    Int(i64),
    /// A string value (EDN `"text"`); appends build these.
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
    Cas {
        /// The value the register must hold for the set to happen.
        expected: Value,
        /// The value written if the compare succeeds.
        new: Value,
    },
    /// String append (`Nil` counts as `""`, an integer as its decimal text).
    Append(Value),
    /// Sets `Nil`.
    Delete,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed and took effect.
    Ok {
        /// `Some(observed value)` for a read, `None` otherwise.
        read: Option<Value>,
    },
    /// Only meaningful for Cas: the compare ran and the value was NOT `expected`
    /// (no effect, but it constrains the state at that moment).
    CasMismatch,
    /// May or may not have taken effect, at any point after invoke.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The Jepsen process (client) that ran the operation; a process has at
    /// most one operation pending at a time.
    pub process: u64,
    /// The register the operation acts on; `None` for a single-register
    /// history (the etcd `jepsen.util` logs), where every operation shares one.
    pub key: Option<String>,
    /// What the operation does (read, write, cas, append, delete).
    pub function: Function,
    /// How it ended; an `Unknown` outcome may take effect at any point after
    /// `invoke_at`.
    pub outcome: Outcome,
    /// When the operation was invoked, on any monotonic clock; only the order
    /// matters. Parsed histories use the EDN `:time` (nanoseconds in Jepsen)
    /// or, without one, the 1-based line number; the simulator's workload
    /// uses simulated microseconds.
    pub invoke_at: u64,
    /// When the completion was observed, on the same clock as `invoke_at`
    /// (never before it); `None` iff the outcome is `Unknown`.
    pub complete_at: Option<u64>,
}

/// A whole history: every register (key) starts as `initial`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The value every register holds before the first operation: `Nil`
    /// unless the history appends or writes strings (then `Str("")`) or an
    /// EDN `{:initial ...}` header says otherwise.
    pub initial: Value,
    /// The operations in invocation order (the order their invoke lines
    /// appear); failed (`:fail` other than a cas mismatch) and unknown reads
    /// are not included.
    pub operations: Vec<Operation>,
}

/// Why a history could not be parsed. Every variant names the 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The input is not valid EDN, or an entry is not a map.
    #[error("line {line}: malformed EDN: {message}")]
    Edn {
        /// The 1-based line of the error.
        line: usize,
        /// What the reader expected and found.
        message: String,
    },
    /// A `jepsen.util` log line without the tab-separated process, type,
    /// function and value columns, or with text after them.
    #[error("line {line}: malformed jepsen log line: {message}")]
    Log {
        /// The 1-based line of the error.
        line: usize,
        /// Which column is missing or malformed.
        message: String,
    },
    /// The `:type` is none of `:invoke`, `:ok`, `:fail`, `:info`.
    #[error("line {line}: unknown :type {found} (expected :invoke, :ok, :fail or :info)")]
    UnknownType {
        /// The 1-based line of the error.
        line: usize,
        /// The type as written.
        found: String,
    },
    /// The `:f` is not a register or key-value function the checker models.
    #[error("line {line}: unknown :f {found} (expected :read, :get, :write, :put, :cas, :append or :delete)")]
    UnknownFunction {
        /// The 1-based line of the error.
        line: usize,
        /// The function as written.
        found: String,
    },
    /// A required EDN key is absent.
    #[error("line {line}: missing field {field}")]
    MissingField {
        /// The 1-based line of the error.
        line: usize,
        /// The missing key, e.g. `:process`.
        field: String,
    },
    /// A field has the wrong shape, e.g. a cas value that is not a pair
    /// `[expected new]`, or a completion `:time` before its invoke's.
    #[error("line {line}: bad value: {message}")]
    BadValue {
        /// The 1-based line of the error.
        line: usize,
        /// Which field is wrong and what it holds.
        message: String,
    },
    /// An `:ok`, `:fail` or `:info` line for a process with nothing pending.
    #[error("line {line}: completion for process {process} which has no pending invoke")]
    NoPendingInvoke {
        /// The 1-based line of the completion.
        line: usize,
        /// The Jepsen process of the completion.
        process: u64,
    },
    /// A process invokes again before its previous operation completed.
    #[error(
        "line {line}: process {process} invokes while its previous operation (invoked at line {pending_line}) is still pending"
    )]
    AlreadyPending {
        /// The 1-based line of the second invoke.
        line: usize,
        /// The Jepsen process that invoked twice.
        process: u64,
        /// The 1-based line of the still-pending invoke.
        pending_line: usize,
    },
    /// A completion names another function or key than its invoke.
    #[error(
        "line {line}: completion for process {process} does not match its pending invoke at line {invoke_line}: {message}"
    )]
    MismatchedCompletion {
        /// The 1-based line of the completion.
        line: usize,
        /// The Jepsen process of both lines.
        process: u64,
        /// The 1-based line of the pending invoke.
        invoke_line: usize,
        /// What differs (function or key).
        message: String,
    },
    /// [`parse_auto`] found neither an EDN form nor a `jepsen.util` line.
    #[error("line {line}: cannot detect the history format (expected an EDN map '{{...}}' or a jepsen.util log line)")]
    UnknownFormat {
        /// The 1-based line of the first non-blank line.
        line: usize,
    },
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
