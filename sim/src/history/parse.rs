//! Turning history text (EDN or `jepsen.util` log lines) into a [`History`].

use std::collections::HashMap;

use super::edn::{field, Edn, EdnReader};
use super::{Function, History, HistoryError, Operation, Outcome, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FunctionKind {
    Read,
    Write,
    Cas,
    Append,
    Delete,
}

impl FunctionKind {
    fn name(self) -> &'static str {
        match self {
            FunctionKind::Read => ":read",
            FunctionKind::Write => ":write",
            FunctionKind::Cas => ":cas",
            FunctionKind::Append => ":append",
            FunctionKind::Delete => ":delete",
        }
    }
}

/// One parsed history line (an invocation or a completion).
struct HistoryLine {
    line: usize,
    process: u64,
    event_type: EventType,
    function_kind: FunctionKind,
    key: Option<String>,
    value: Edn,
    time: u64,
    has_error: bool,
}

fn parse_type(line: usize, e: &Edn) -> Result<EventType, HistoryError> {
    match e {
        Edn::Keyword(k) if k == "invoke" => Ok(EventType::Invoke),
        Edn::Keyword(k) if k == "ok" => Ok(EventType::Ok),
        Edn::Keyword(k) if k == "fail" => Ok(EventType::Fail),
        Edn::Keyword(k) if k == "info" => Ok(EventType::Info),
        other => Err(HistoryError::UnknownType { line, found: other.to_string() }),
    }
}

fn parse_function(line: usize, e: &Edn) -> Result<FunctionKind, HistoryError> {
    match e {
        Edn::Keyword(k) => match k.as_str() {
            "read" | "get" => Ok(FunctionKind::Read),
            "write" | "put" => Ok(FunctionKind::Write),
            "cas" => Ok(FunctionKind::Cas),
            "append" => Ok(FunctionKind::Append),
            "delete" => Ok(FunctionKind::Delete),
            _ => Err(HistoryError::UnknownFunction { line, found: e.to_string() }),
        },
        other => Err(HistoryError::UnknownFunction { line, found: other.to_string() }),
    }
}

fn scalar(line: usize, what: &str, e: &Edn) -> Result<Value, HistoryError> {
    match e {
        Edn::Nil => Ok(Value::Nil),
        Edn::Int(i) => Ok(Value::Int(*i)),
        Edn::Str(s) => Ok(Value::Str(s.clone())),
        other => Err(HistoryError::BadValue {
            line,
            message: format!("{what} must be nil, an integer or a string, found {other}"),
        }),
    }
}

fn function_of(entry: &HistoryLine) -> Result<Function, HistoryError> {
    Ok(match entry.function_kind {
        FunctionKind::Read => Function::Read,
        FunctionKind::Delete => Function::Delete,
        FunctionKind::Write => Function::Write(scalar(entry.line, "the :write value", &entry.value)?),
        FunctionKind::Append => Function::Append(scalar(entry.line, "the :append value", &entry.value)?),
        FunctionKind::Cas => match &entry.value {
            Edn::Vector(v) | Edn::List(v) if v.len() == 2 => Function::Cas {
                expected: scalar(entry.line, "the :cas expected value", &v[0])?,
                new: scalar(entry.line, "the :cas new value", &v[1])?,
            },
            other => {
                return Err(HistoryError::BadValue {
                    line: entry.line,
                    message: format!("the :cas value must be a vector [expected new], found {other}"),
                })
            }
        },
    })
}

struct PendingInvoke {
    line: usize,
    slot: usize,
    function_kind: FunctionKind,
    key: Option<String>,
    function: Function,
    time: u64,
}

/// Pairs invocations with completions, process by process.
#[derive(Default)]
struct Builder {
    slots: Vec<Option<Operation>>,
    pending: HashMap<u64, PendingInvoke>,
    /// Some line used `:append`, or a string value with a read/write.
    string_mode: bool,
}

impl Builder {
    fn push(&mut self, entry: HistoryLine) -> Result<(), HistoryError> {
        if entry.function_kind == FunctionKind::Append
            || matches!((entry.function_kind, &entry.value), (FunctionKind::Read | FunctionKind::Write, Edn::Str(_)))
        {
            self.string_mode = true;
        }
        match entry.event_type {
            EventType::Invoke => self.invoke(entry),
            event_type => self.complete(entry, event_type),
        }
    }

    /// An invocation: the process's operation is pending until it completes.
    fn invoke(&mut self, entry: HistoryLine) -> Result<(), HistoryError> {
        if let Some(invoke) = self.pending.get(&entry.process) {
            return Err(HistoryError::AlreadyPending {
                line: entry.line,
                process: entry.process,
                pending_line: invoke.line,
            });
        }
        let function = function_of(&entry)?;
        let slot = self.slots.len();
        self.slots.push(None);
        self.pending.insert(
            entry.process,
            PendingInvoke {
                line: entry.line,
                slot,
                function_kind: entry.function_kind,
                key: entry.key,
                function,
                time: entry.time,
            },
        );
        Ok(())
    }

    /// A completion (`:ok`, `:fail` or `:info`) of the process's pending
    /// operation.
    fn complete(&mut self, entry: HistoryLine, event_type: EventType) -> Result<(), HistoryError> {
        let Some(invoke) = self.pending.remove(&entry.process) else {
            return Err(HistoryError::NoPendingInvoke { line: entry.line, process: entry.process });
        };
        let mismatch = |message: String| HistoryError::MismatchedCompletion {
            line: entry.line,
            process: entry.process,
            invoke_line: invoke.line,
            message,
        };
        if invoke.function_kind != entry.function_kind {
            return Err(mismatch(format!(
                "completion is {} but the invoke is {}",
                entry.function_kind.name(),
                invoke.function_kind.name()
            )));
        }
        if entry.key.is_some() && entry.key != invoke.key {
            return Err(mismatch(format!(
                "completion has :key {:?} but the invoke has :key {:?}",
                entry.key, invoke.key
            )));
        }
        if event_type != EventType::Info && entry.time < invoke.time {
            return Err(HistoryError::BadValue {
                line: entry.line,
                message: format!("completion :time {} is before its invoke's :time {}", entry.time, invoke.time),
            });
        }
        let op = |outcome: Outcome, complete_at: Option<u64>| Operation {
            process: entry.process,
            key: invoke.key.clone(),
            function: invoke.function.clone(),
            outcome,
            invoke_at: invoke.time,
            complete_at,
        };
        self.slots[invoke.slot] = match event_type {
            EventType::Ok => {
                let read = match entry.function_kind {
                    FunctionKind::Read => Some(scalar(entry.line, "the value read", &entry.value)?),
                    _ => None,
                };
                Some(op(Outcome::Ok { read }, Some(entry.time)))
            }
            EventType::Fail if entry.function_kind == FunctionKind::Cas && !entry.has_error => {
                Some(op(Outcome::CasMismatch, Some(entry.time)))
            }
            EventType::Fail => None, // definitely did not happen
            EventType::Info if entry.function_kind == FunctionKind::Read => None, // constrains nothing
            EventType::Info => Some(op(Outcome::Unknown, None)),
            EventType::Invoke => unreachable!("push hands invocations to invoke"),
        };
        Ok(())
    }

    fn finish(mut self) -> Vec<Operation> {
        // Invocations that never completed: unknown outcome.
        let mut pending: Vec<_> = self.pending.drain().collect();
        pending.sort_by_key(|(_, invoke)| invoke.slot);
        for (process, invoke) in pending {
            if invoke.function_kind == FunctionKind::Read {
                continue;
            }
            self.slots[invoke.slot] = Some(Operation {
                process,
                key: invoke.key,
                function: invoke.function,
                outcome: Outcome::Unknown,
                invoke_at: invoke.time,
                complete_at: None,
            });
        }
        self.slots.into_iter().flatten().collect()
    }
}

// ---------------------------------------------------------------------------
// jepsen.util log format
// ---------------------------------------------------------------------------

const LOG_MARKER: &str = "jepsen.util";

fn is_other_log_output(line: &str) -> bool {
    const LEVELS: [&str; 6] = ["INFO", "WARN", "DEBUG", "ERROR", "TRACE", "FATAL"];
    line.starts_with(|c: char| c.is_whitespace() || c.is_ascii_digit())
        || LEVELS.iter().any(|level| line.starts_with(level))
}

/// Parses the `jepsen.util` log format of Jepsen's etcd test:
/// `INFO  jepsen.util - PROCESS\tTYPE\tFUNCTION\tVALUE`, with functions `:read`,
/// `:write v` and `:cas [expected new]`. The register starts as `nil`; the key
/// is `None`; times are line numbers.
///
/// Blank lines and other log output (lines that start with a log level, a
/// timestamp or whitespace and do not contain `jepsen.util`) are skipped, as are
/// lines of the `:nemesis` process. Anything else that is not a well-formed
/// history line is an error naming the line.
pub fn parse_jepsen_log(text: &str) -> Result<History, HistoryError> {
    let mut builder = Builder::default();
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let Some(at) = raw.find(LOG_MARKER) else {
            if is_other_log_output(raw) {
                continue;
            }
            return Err(HistoryError::Log {
                line,
                message: format!("not a jepsen.util history line: {:?}", truncate(raw)),
            });
        };
        if let Some(history_line) = log_history_line(raw, at, line)? {
            builder.push(history_line)?;
        }
    }
    Ok(History { initial: Value::Nil, operations: builder.finish() })
}

/// The history line of a log line whose `jepsen.util` marker is at `at`;
/// `None` for a line of the `:nemesis` process.
fn log_history_line(raw: &str, at: usize, line: usize) -> Result<Option<HistoryLine>, HistoryError> {
    // "jepsen.util - 3 ..." or "jepsen.util: 3 ...".
    let after = &raw[at + LOG_MARKER.len()..];
    let after = after.strip_prefix(':').unwrap_or(after).trim_start();
    let rest = match after.strip_prefix('-') {
        Some(r) if r.starts_with(char::is_whitespace) => r.trim_start(),
        _ => after,
    };
    let mut cursor = rest;
    let process = take_token(&mut cursor);
    let event_type = take_token(&mut cursor);
    let function = take_token(&mut cursor);
    if function.is_empty() {
        return Err(HistoryError::Log {
            line,
            message: format!("expected PROCESS TYPE FUNCTION [VALUE], found {:?}", truncate(rest)),
        });
    }
    let value_text = cursor.trim();
    let read_one = |what: &str, s: &str| read_log_form(line, what, s);
    let process = match read_one("process", process)? {
        Edn::Int(process) if process >= 0 => process as u64,
        Edn::Keyword(_) => return Ok(None), // :nemesis
        other => {
            return Err(HistoryError::Log {
                line,
                message: format!("process must be a non-negative integer, found {other}"),
            })
        }
    };
    let event_type = parse_type(line, &read_one("type", event_type)?)?;
    let function = read_one("function", function)?;
    let function_kind = match &function {
        Edn::Keyword(k) if k == "read" => FunctionKind::Read,
        Edn::Keyword(k) if k == "write" => FunctionKind::Write,
        Edn::Keyword(k) if k == "cas" => FunctionKind::Cas,
        other => return Err(HistoryError::UnknownFunction { line, found: other.to_string() }),
    };
    let value = match (value_text.is_empty(), event_type) {
        (true, _) => Edn::Nil,
        // The value of a :fail/:info line is not used (it may be an error text).
        (false, EventType::Fail | EventType::Info) => read_one("value", value_text).unwrap_or(Edn::Nil),
        (false, _) => read_one("value", value_text)?,
    };
    Ok(Some(HistoryLine {
        line,
        process,
        event_type,
        function_kind,
        key: None,
        value,
        time: line as u64,
        has_error: false,
    }))
}

/// Reads exactly one EDN form (the `what` of a log line) from `text`.
fn read_log_form(line: usize, what: &str, text: &str) -> Result<Edn, HistoryError> {
    let mut reader = EdnReader::new(text, line);
    let form = reader
        .next_form()
        .map_err(|(_, message)| HistoryError::Log { line, message: format!("{what}: {message}") })?
        .ok_or_else(|| HistoryError::Log { line, message: format!("missing {what}") })?;
    match reader.next_form() {
        Ok(None) => Ok(form),
        _ => {
            Err(HistoryError::Log { line, message: format!("unexpected text after the {what}: {:?}", truncate(text)) })
        }
    }
}

/// Splits off the next whitespace-separated token (empty at the end).
fn take_token<'s>(s: &mut &'s str) -> &'s str {
    let t = s.trim_start();
    let end = t.find(char::is_whitespace).unwrap_or(t.len());
    let (tok, rest) = t.split_at(end);
    *s = rest;
    tok
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 80 {
        let t: String = s.chars().take(80).collect();
        format!("{t}...")
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------------------
// EDN format
// ---------------------------------------------------------------------------

/// Parses a Jepsen `history.edn`: one EDN map per line (a top-level vector of
/// maps, maps spanning lines, commas and `;` comments are tolerated too).
///
/// Fields: `:process`, `:type`, `:f`, `:key` (string or integer, stored as a
/// string), `:value`, optional `:time` (if any entry has one, every entry must;
/// otherwise times are line numbers), optional `:error`. Unknown keys are
/// ignored. Functions: `:get`/`:read`, `:put`/`:write`, `:append`,
/// `:cas [expected new]`, `:delete`.
///
/// `initial` is `Str("")` if some entry is an `:append` or a read/write with a
/// string value (then a read of `nil` is recorded as a read of `""`), and `Nil`
/// otherwise — unless the first form is a header map `{:initial VALUE}` (as
/// written by [`write_edn`](super::write_edn) when needed), which sets `initial` explicitly and
/// disables that inference.
pub fn parse_edn(text: &str) -> Result<History, HistoryError> {
    let maps = read_edn_maps(text)?;
    let mut explicit_initial: Option<Value> = None;
    let uses_time =
        maps.iter().any(|(entries, _)| field(entries, "time").is_some() && field(entries, "type").is_some());
    let mut builder = Builder::default();
    let mut seen_op = false;
    for (entries, line) in &maps {
        let line = *line;
        let Some(event_type) = field(entries, "type") else {
            if let Some(init) = field(entries, "initial") {
                if seen_op || explicit_initial.is_some() {
                    return Err(HistoryError::Edn {
                        line,
                        message: "an {:initial ...} header must come first and only once".into(),
                    });
                }
                explicit_initial = Some(scalar(line, "the :initial value", init)?);
                continue;
            }
            return Err(HistoryError::MissingField { line, field: ":type".into() });
        };
        seen_op = true;
        if let Some(history_line) = edn_history_line(entries, line, event_type, uses_time)? {
            builder.push(history_line)?;
        }
    }
    let string_mode = builder.string_mode;
    let mut operations = builder.finish();
    let initial = match explicit_initial {
        Some(v) => v,
        None if string_mode => {
            for op in &mut operations {
                if let Outcome::Ok { read: Some(v @ Value::Nil) } = &mut op.outcome {
                    *v = Value::Str(String::new());
                }
            }
            Value::Str(String::new())
        }
        None => Value::Nil,
    };
    Ok(History { initial, operations })
}

/// A map of an EDN history and the line it starts on.
type EdnMap = (Vec<(Edn, Edn)>, usize);

/// Every map of an EDN history, top-level or inside a top-level vector.
fn read_edn_maps(text: &str) -> Result<Vec<EdnMap>, HistoryError> {
    let mut reader = EdnReader::new(text, 1);
    let mut maps: Vec<EdnMap> = Vec::new();
    loop {
        let form_line = {
            reader.skip_whitespace();
            reader.line()
        };
        let form = reader.next_form().map_err(|(line, message)| HistoryError::Edn { line, message })?;
        match form {
            None => return Ok(maps),
            Some(Edn::Map(entries, line)) => maps.push((entries, line)),
            Some(Edn::Vector(items)) => {
                for item in items {
                    match item {
                        Edn::Map(entries, line) => maps.push((entries, line)),
                        other => {
                            return Err(HistoryError::Edn {
                                line: form_line,
                                message: format!("expected a map in the history vector, found {other}"),
                            })
                        }
                    }
                }
            }
            Some(other) => {
                return Err(HistoryError::Edn {
                    line: form_line,
                    message: format!("expected a map per history entry, found {other}"),
                })
            }
        }
    }
}

/// The history line of one EDN map with a `:type`; `None` for a line of the
/// `:nemesis` process.
fn edn_history_line(
    entries: &[(Edn, Edn)],
    line: usize,
    event_type: &Edn,
    uses_time: bool,
) -> Result<Option<HistoryLine>, HistoryError> {
    let process = match field(entries, "process") {
        Some(Edn::Int(process)) if *process >= 0 => *process as u64,
        Some(Edn::Keyword(_)) => return Ok(None), // :nemesis
        Some(other) => {
            return Err(HistoryError::BadValue {
                line,
                message: format!(":process must be a non-negative integer, found {other}"),
            })
        }
        None => return Err(HistoryError::MissingField { line, field: ":process".into() }),
    };
    let event_type = parse_type(line, event_type)?;
    let function_kind = parse_function(
        line,
        field(entries, "f").ok_or_else(|| HistoryError::MissingField { line, field: ":f".into() })?,
    )?;
    let key = match field(entries, "key") {
        None | Some(Edn::Nil) => None,
        Some(Edn::Str(s)) => Some(s.clone()),
        Some(Edn::Int(i)) => Some(i.to_string()),
        Some(other) => {
            return Err(HistoryError::BadValue {
                line,
                message: format!(":key must be a string or an integer, found {other}"),
            })
        }
    };
    let time = if uses_time { edn_time(entries, line)? } else { line as u64 };
    let has_error = field(entries, "error").is_some();
    let value = field(entries, "value").cloned().unwrap_or(Edn::Nil);
    Ok(Some(HistoryLine { line, process, event_type, function_kind, key, value, time, has_error }))
}

/// The `:time` of an entry of a history whose entries all have one.
fn edn_time(entries: &[(Edn, Edn)], line: usize) -> Result<u64, HistoryError> {
    match field(entries, "time") {
        Some(Edn::Int(t)) if *t >= 0 => Ok(*t as u64),
        Some(other) => Err(HistoryError::BadValue {
            line,
            message: format!(":time must be a non-negative integer, found {other}"),
        }),
        None => Err(HistoryError::MissingField { line, field: ":time (other entries have one)".into() }),
    }
}

/// Detects the format from the first non-blank line: EDN if it starts with
/// `{`, `[` or `;`, the jepsen.util log format if it contains `jepsen.util` or
/// looks like log output; otherwise an error. Empty text is an empty history.
pub fn parse_auto(text: &str) -> Result<History, HistoryError> {
    let first = text.lines().enumerate().find(|(_, first_line)| !first_line.trim().is_empty());
    match first {
        None => Ok(History { initial: Value::Nil, operations: Vec::new() }),
        Some((_, first_line)) if first_line.trim_start().starts_with(['{', '[', ';']) => parse_edn(text),
        Some((_, first_line)) if first_line.contains(LOG_MARKER) || is_other_log_output(first_line) => {
            parse_jepsen_log(text)
        }
        Some((idx, _)) => Err(HistoryError::UnknownFormat { line: idx + 1 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(read: Option<Value>) -> Outcome {
        Outcome::Ok { read }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        assert!(parse_edn(&text).is_err());
        let text = format!("{{:a {}}}", "[".repeat(100_000));
        assert!(parse_edn(&text).is_err());
    }

    const ETCD: &str = "INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:invoke\t:write\t4
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.util - 1\t:ok\t:write\t4
INFO  jepsen.util - 2\t:invoke\t:cas\t[4 1]
INFO  jepsen.util - 3\t:invoke\t:cas\t[0 3]
INFO  jepsen.util - 2\t:ok\t:cas\t[4 1]
INFO  jepsen.util - 3\t:fail\t:cas\t[0 3]
INFO  jepsen.util - 4\t:invoke\t:read\tnil
INFO  jepsen.util - 4\t:fail\t:read\t:timed-out
INFO  jepsen.util - 0\t:invoke\t:write\t2
INFO  jepsen.util - 0\t:info\t:write\t:timed-out
INFO  jepsen.util - 5\t:invoke\t:cas\t[1 2]
INFO  jepsen.util - 6\t:invoke\t:read\tnil
INFO  jepsen.util - 7\t:invoke\t:write\t0
INFO  jepsen.util - 7\t:fail\t:write\t0
";

    #[test]
    fn parses_etcd_log() {
        let h = parse_jepsen_log(ETCD).unwrap();
        assert_eq!(h.initial, Value::Nil);
        let op = |process, function, outcome, invoke_at, complete_at| Operation {
            process,
            key: None,
            function,
            outcome,
            invoke_at,
            complete_at,
        };
        assert_eq!(
            h.operations,
            vec![
                op(0, Function::Read, ok(Some(Value::Nil)), 1, Some(3)),
                op(1, Function::Write(Value::Int(4)), ok(None), 2, Some(4)),
                op(2, Function::Cas { expected: Value::Int(4), new: Value::Int(1) }, ok(None), 5, Some(7)),
                op(3, Function::Cas { expected: Value::Int(0), new: Value::Int(3) }, Outcome::CasMismatch, 6, Some(8)),
                // read timed out: dropped
                op(0, Function::Write(Value::Int(2)), Outcome::Unknown, 11, None),
                op(5, Function::Cas { expected: Value::Int(1), new: Value::Int(2) }, Outcome::Unknown, 13, None),
                // pending read of process 6: dropped; failed write of 7: dropped
            ]
        );
        assert_eq!(parse_auto(ETCD).unwrap(), h);
    }

    #[test]
    fn etcd_log_tolerates_other_log_output_and_nemesis() {
        let text = "INFO  jepsen.core - Running test\n\nINFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
                    INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\n";
        let h = parse_jepsen_log(text).unwrap();
        assert_eq!(h.operations.len(), 1);
        assert_eq!(h.operations[0].invoke_at, 4);
        assert_eq!(h.operations[0].complete_at, Some(5));
    }

    #[test]
    fn etcd_log_ignores_unparseable_info_values() {
        let text = "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:info\t:write\tindeterminate: read timed out (x\n";
        let h = parse_jepsen_log(text).unwrap();
        assert_eq!(h.operations.len(), 1);
        assert_eq!(h.operations[0].outcome, Outcome::Unknown);
    }

    #[test]
    fn etcd_log_errors_name_the_line() {
        let cases: Vec<(String, usize, &str)> = vec![
            (format!("{}INFO  jepsen.util - 9\t:foo\t:read\tnil\n", ETCD), 17, "unknown :type :foo"),
            (format!("{}INFO  jepsen.util - 9\t:ok\t:read\t3\n", ETCD), 17, "no pending invoke"),
            (format!("{}INFO  jepsen.util - 6\t:invoke\t:read\tnil\n", ETCD), 17, "still pending"),
            (format!("{}INFO  jepsen.util - 9\t:invoke\t:cas\t[1]\n", ETCD), 17, "[expected new]"),
            (format!("{}INFO  jepsen.util - 9\t:invoke\t:cas\t5\n", ETCD), 17, "[expected new]"),
            (format!("{}INFO  jepsen.util - 9\t:invoke\t:frob\tnil\n", ETCD), 17, "unknown :f :frob"),
            (format!("{}INFO  jepsen.util - 9\t:invoke\t:write\t[1\n", ETCD), 17, "unterminated"),
            (format!("{}INFO  jepsen.util - 9\t:invoke\n", ETCD), 17, "expected PROCESS"),
            (format!("{}INFO  jepsen.util - x\t:invoke\t:read\tnil\n", ETCD), 17, "process"),
            (format!("{}INFO  jepsen.util - 6\t:ok\t:write\t3\n", ETCD), 17, "completion is :write"),
            (format!("{}garbage\n", ETCD), 17, "not a jepsen.util history line"),
            (format!("{}INFO  jepsen.util - 6\t:ok\t:read\t[1 2]\n", ETCD), 17, "value read"),
        ];
        for (text, line, needle) in cases {
            let err = parse_jepsen_log(&text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("line {line}: ")), "{msg}");
            assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
            assert_eq!(err.line(), line);
        }
    }

    const KV: &str = r#"{:process 6, :type :invoke, :f :append, :key "0", :value "x 6 0 y"}
{:process 6, :type :ok, :f :append, :key "0", :value "x 6 0 y"}
{:process 8, :type :invoke, :f :get, :key "9", :value nil}
{:process 8, :type :ok, :f :get, :key "9", :value nil}
{:process 8, :type :invoke, :f :put, :key 9, :value "a"}
{:process 6, :type :invoke, :f :get, :key "0", :value nil, :extra [1 2 {:x "y"}]}
{:process :nemesis, :type :info, :f :start, :value nil}
{:process 6, :type :ok, :f :get, :key "0", :value "x 6 0 y"}
{:process 8, :type :fail, :f :put, :key "9", :value "a", :error :timeout}
"#;

    #[test]
    fn parses_kv_edn() {
        let h = parse_edn(KV).unwrap();
        assert_eq!(h.initial, Value::Str(String::new()));
        let k = |s: &str| Some(s.to_string());
        assert_eq!(
            h.operations,
            vec![
                Operation {
                    process: 6,
                    key: k("0"),
                    function: Function::Append(Value::Str("x 6 0 y".into())),
                    outcome: ok(None),
                    invoke_at: 1,
                    complete_at: Some(2)
                },
                Operation {
                    process: 8,
                    key: k("9"),
                    function: Function::Read,
                    // nil read in a string history reads as ""
                    outcome: ok(Some(Value::Str(String::new()))),
                    invoke_at: 3,
                    complete_at: Some(4)
                },
                Operation {
                    process: 6,
                    key: k("0"),
                    function: Function::Read,
                    outcome: ok(Some(Value::Str("x 6 0 y".into()))),
                    invoke_at: 6,
                    complete_at: Some(8)
                },
            ]
        );
        assert_eq!(parse_auto(KV).unwrap(), h);
    }

    #[test]
    fn edn_cas_and_times() {
        let text = r#"{:process 1, :type :invoke, :f :cas, :value [1 2], :time 100}
{:process 2, :type :invoke, :f :cas, :value [nil 2], :time 150}
{:process 1, :type :fail, :f :cas, :value [1 2], :time 200}
{:process 2, :type :fail, :f :cas, :value [nil 2], :time 210, :error :conn-refused}
{:process 3, :type :invoke, :f :write, :value 7, :time 300}
{:process 3, :type :info, :f :write, :value 7, :time 400}
{:process 3, :type :invoke, :f :delete, :time 500}
"#;
        let h = parse_edn(text).unwrap();
        assert_eq!(h.initial, Value::Nil);
        assert_eq!(
            h.operations,
            vec![
                Operation {
                    process: 1,
                    key: None,
                    function: Function::Cas { expected: Value::Int(1), new: Value::Int(2) },
                    outcome: Outcome::CasMismatch,
                    invoke_at: 100,
                    complete_at: Some(200)
                },
                Operation {
                    process: 3,
                    key: None,
                    function: Function::Write(Value::Int(7)),
                    outcome: Outcome::Unknown,
                    invoke_at: 300,
                    complete_at: None
                },
                Operation {
                    process: 3,
                    key: None,
                    function: Function::Delete,
                    outcome: Outcome::Unknown,
                    invoke_at: 500,
                    complete_at: None
                },
            ]
        );
    }

    #[test]
    fn edn_errors_name_the_line() {
        let base = "{:process 0, :type :invoke, :f :read, :key \"a\"}\n{:process 0, :type :ok, :f :read, :key \"a\", :value 1}\n";
        let cases: Vec<(String, usize, &str)> = vec![
            (format!("{base}{{:process 0, :type :foo, :f :read}}\n"), 3, "unknown :type :foo (expected :invoke, :ok, :fail or :info)"),
            (format!("{base}{{:process 4, :type :ok, :f :read, :value 1}}\n"), 3, "completion for process 4 which has no pending invoke"),
            (format!("{base}{{:process 1, :type :invoke, :f :read}}\n{{:process 1, :type :invoke, :f :read}}\n"), 4, "process 1 invokes while its previous operation"),
            (format!("{base}{{:process 1, :type :invoke, :f :cas, :value [1 2 3]}}\n"), 3, ":cas value must be a vector [expected new]"),
            (format!("{base}{{:process 1, :type :invoke, :f :cas, :value \"12\"}}\n"), 3, ":cas value must be a vector"),
            (format!("{base}{{:process 1, :type :invoke, :f :cas, :value [[1] 2]}}\n"), 3, "expected value must be nil"),
            (format!("{base}{{:process 1, :type :invoke, :f :read\n"), 3, "malformed EDN"),
            (format!("{base}{{:process 1 :type}}\n"), 3, "odd number"),
            (format!("{base}{{:process 1, :type :invoke, :f :frob}}\n"), 3, "unknown :f :frob"),
            (format!("{base}{{:process 1, :f :read}}\n"), 3, "missing field :type"),
            (format!("{base}{{:type :invoke, :f :read}}\n"), 3, "missing field :process"),
            (format!("{base}{{:process 1, :type :invoke}}\n"), 3, "missing field :f"),
            (format!("{base}{{:process -1, :type :invoke, :f :read}}\n"), 3, ":process must be"),
            (format!("{base}{{:process 1, :type :invoke, :f :write, :value :kw}}\n"), 3, ":write value must be"),
            (format!("{base}{{:process 1, :type :invoke, :f :write, :value 1, :key [1]}}\n"), 3, ":key must be"),
            (format!("{base}[1 2]\n"), 3, "expected a map"),
            (format!("{base}\"x\"\n"), 3, "expected a map"),
            (format!("{base}{{:process 1, :type :invoke, :f :write, :value 1, :time 5}}\n"), 1, "missing field :time"),
            ("{:process 1, :type :invoke, :f :write, :value 1, :time 5}\n{:process 1, :type :ok, :f :write, :value 1, :time 4}\n".to_string(), 2, "before its invoke"),
            (format!("{base}{{:process 1, :type :invoke, :f :write, :value 1}}\n{{:process 1, :type :ok, :f :read, :value 1}}\n"), 4, "does not match its pending invoke at line 3"),
            (format!("{base}{{:initial 3}}\n"), 3, "header"),
        ];
        for (text, line, needle) in cases {
            let err = parse_edn(&text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("line {line}: ")), "{msg:?} for {text:?}");
            assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
        }
    }

    #[test]
    fn parse_auto_detection() {
        assert_eq!(parse_auto("").unwrap().operations, vec![]);
        assert_eq!(parse_auto("\n  \n").unwrap().operations, vec![]);
        let err = parse_auto("\n\nhello world\n").unwrap_err();
        assert_eq!(err, HistoryError::UnknownFormat { line: 3 });
        assert!(err.to_string().starts_with("line 3: "));
        // Vector-of-maps EDN.
        let h = parse_auto(
            "[{:process 0, :type :invoke, :f :write, :value 1}\n {:process 0, :type :ok, :f :write, :value 1}]",
        )
        .unwrap();
        assert_eq!(h.operations.len(), 1);
        assert_eq!((h.operations[0].invoke_at, h.operations[0].complete_at), (1, Some(2)));
    }

    use proptest::prelude::*;

    proptest! {

        #[test]
        fn parsers_never_panic(s in "[{}\\[\\]():,;\" a-z0-9\\\\#\n\t-]{0,60}") {
            let _ = parse_edn(&s);
            let _ = parse_jepsen_log(&s);
            let _ = parse_auto(&s);
        }

        #[test]
        fn parsers_never_panic_on_mutated_lines(
            idx in 0usize..200, byte in any::<u8>(), which in 0usize..2
        ) {
            let base = if which == 0 { KV } else { ETCD };
            let mut bytes = base.as_bytes().to_vec();
            let i = idx % bytes.len();
            bytes[i] = byte;
            if let Ok(s) = String::from_utf8(bytes) {
                let _ = parse_edn(&s);
                let _ = parse_jepsen_log(&s);
                let _ = parse_auto(&s);
            }
        }
    }
}
