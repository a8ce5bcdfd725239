//! PLACEHOLDER until the history module lands (being written in parallel).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Nil,
    Int(i64),
    Str(String),
}
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    Read,
    Write(Value),
    Cas { expected: Value, new: Value },
    Append(Value),
    Delete,
}
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok { read: Option<Value> },
    CasMismatch,
    Unknown,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    pub key: Option<String>,
    pub function: Function,
    pub outcome: Outcome,
    pub invoke_at: u64,
    pub complete_at: Option<u64>,
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub initial: Value,
    pub operations: Vec<Operation>,
}
#[derive(Debug, thiserror::Error)]
#[error("history error")]
pub struct HistoryError;
pub fn parse_auto(_text: &str) -> Result<History, HistoryError> {
    Err(HistoryError)
}
pub fn write_edn(_history: &History) -> String {
    String::new()
}
