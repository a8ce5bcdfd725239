//! Client histories: types, parsers for Jepsen's formats, and an EDN writer.
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

use std::collections::HashMap;
use std::fmt;

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

fn write_edn_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

// ---------------------------------------------------------------------------
// A small EDN reader
// ---------------------------------------------------------------------------

/// An EDN value as read from text. Maps remember the line they start on.
#[derive(Clone, Debug, PartialEq)]
enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Char(char),
    Keyword(String),
    Symbol(String),
    List(Vec<Edn>),
    Vector(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>, usize),
    Tagged(String, Box<Edn>),
}

impl fmt::Display for Edn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Edn], close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(close)
        }
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Float(x) => write!(f, "{x:?}"),
            Edn::Str(s) => write_edn_string(f, s),
            Edn::Char(c) => write!(f, "\\{c}"),
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => f.write_str(s),
            Edn::List(v) => seq(f, "(", v, ")"),
            Edn::Vector(v) => seq(f, "[", v, "]"),
            Edn::Set(v) => seq(f, "#{", v, "}"),
            Edn::Map(kvs, _) => {
                f.write_str("{")?;
                for (i, (k, v)) in kvs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
            Edn::Tagged(t, v) => write!(f, "#{t} {v}"),
        }
    }
}

/// Error from the EDN reader: (line, message).
type EdnError = (usize, String);

const MAX_DEPTH: usize = 128;

struct EdnReader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';')
}

fn valid_symbol(tok: &str) -> bool {
    !tok.is_empty()
        && !tok.starts_with(['#', ':', '\''])
        && tok.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    '.' | '*'
                        | '+'
                        | '!'
                        | '-'
                        | '_'
                        | '?'
                        | '$'
                        | '%'
                        | '&'
                        | '='
                        | '<'
                        | '>'
                        | '/'
                        | ':'
                        | '#'
                        | '\''
                )
        })
}

impl<'a> EdnReader<'a> {
    fn new(text: &'a str, first_line: usize) -> Self {
        EdnReader { text, bytes: text.as_bytes(), pos: 0, line: first_line }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, EdnError> {
        Err((self.line, message.into()))
    }

    /// Skips whitespace, commas and `;` comments. Returns false at end of input.
    fn skip_ws(&mut self) -> bool {
        while self.pos < self.bytes.len() {
            match self.bytes[self.pos] {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b',' => self.pos += 1,
                b';' => {
                    while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b if b.is_ascii_whitespace() => self.pos += 1,
                _ => return true,
            }
        }
        false
    }

    /// Reads the next form, or `None` at end of input.
    fn next_form(&mut self) -> Result<Option<Edn>, EdnError> {
        if !self.skip_ws() {
            return Ok(None);
        }
        self.read_form(0).map(Some)
    }

    fn read_form(&mut self, depth: usize) -> Result<Edn, EdnError> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        if !self.skip_ws() {
            return self.err("unexpected end of input");
        }
        let start_line = self.line;
        let b = self.bytes[self.pos];
        match b {
            b'(' => {
                self.pos += 1;
                Ok(Edn::List(self.read_seq(b')', depth)?))
            }
            b'[' => {
                self.pos += 1;
                Ok(Edn::Vector(self.read_seq(b']', depth)?))
            }
            b'{' => {
                self.pos += 1;
                let items = self.read_seq(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return Err((start_line, "map literal has an odd number of forms".into()));
                }
                let mut kvs: Vec<(Edn, Edn)> = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if kvs.iter().any(|(k2, _)| *k2 == k) {
                        return Err((start_line, format!("duplicate map key {k}")));
                    }
                    kvs.push((k, v));
                }
                Ok(Edn::Map(kvs, start_line))
            }
            b')' | b']' | b'}' => self.err(format!("unexpected '{}'", b as char)),
            b'"' => {
                self.pos += 1;
                self.read_string().map(Edn::Str)
            }
            b'\\' => {
                self.pos += 1;
                self.read_char()
            }
            b'#' => {
                self.pos += 1;
                match self.bytes.get(self.pos) {
                    Some(b'{') => {
                        self.pos += 1;
                        Ok(Edn::Set(self.read_seq(b'}', depth)?))
                    }
                    Some(b'_') => {
                        self.pos += 1;
                        self.read_form(depth + 1)?; // discarded
                        self.read_form(depth)
                    }
                    Some(c) if c.is_ascii_alphabetic() => {
                        let tag = self.read_token();
                        let v = self.read_form(depth + 1)?;
                        Ok(Edn::Tagged(tag.to_string(), Box::new(v)))
                    }
                    _ => self.err("unsupported dispatch character after '#'"),
                }
            }
            b':' => {
                self.pos += 1;
                let tok = self.read_token();
                if !valid_symbol(tok) {
                    return self.err(format!("invalid keyword ':{tok}'"));
                }
                Ok(Edn::Keyword(tok.to_string()))
            }
            _ => {
                let tok = self.read_token();
                if tok.is_empty() {
                    // A byte that cannot start a form (e.g. a stray quote char).
                    let c = self.text[self.pos..].chars().next().unwrap_or('?');
                    return self.err(format!("unexpected character '{c}'"));
                }
                self.parse_atom(tok)
            }
        }
    }

    fn read_seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, EdnError> {
        let open_line = self.line;
        let mut items = Vec::new();
        loop {
            if !self.skip_ws() {
                return Err((open_line, format!("unterminated collection (missing '{}')", close as char)));
            }
            if self.bytes[self.pos] == close {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.read_form(depth + 1)?);
        }
    }

    fn read_token(&mut self) -> &'a str {
        let start = self.pos;
        while self.pos < self.bytes.len() && !is_delimiter(self.bytes[self.pos]) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn read_string(&mut self) -> Result<String, EdnError> {
        let start_line = self.line;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err((start_line, "unterminated string".into()));
            };
            match b {
                b'"' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    let Some(&e) = self.bytes.get(self.pos) else {
                        return Err((start_line, "unterminated string".into()));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let hex = self.text.get(self.pos..self.pos + 4).unwrap_or("");
                            let code = if hex.len() == 4 && hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                                u32::from_str_radix(hex, 16).ok()
                            } else {
                                None
                            };
                            match code.and_then(char::from_u32) {
                                Some(c) => {
                                    out.push(c);
                                    self.pos += 4;
                                }
                                None => return self.err("invalid \\u escape in string"),
                            }
                        }
                        other => {
                            let c = self.text[self.pos - 1..].chars().next().unwrap_or(other as char);
                            return self.err(format!("invalid escape '\\{c}' in string"));
                        }
                    }
                    run = self.pos;
                }
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
    }

    fn read_char(&mut self) -> Result<Edn, EdnError> {
        // A character literal: \c, \newline, \space, \tab, \return, \uXXXX.
        let rest = &self.text[self.pos..];
        let Some(first) = rest.chars().next() else {
            return self.err("unexpected end of input after '\\'");
        };
        self.pos += first.len_utf8();
        let more = self.read_token();
        if more.is_empty() {
            return Ok(Edn::Char(first));
        }
        let name = format!("{first}{more}");
        let c = match name.as_str() {
            "newline" => '\n',
            "space" => ' ',
            "tab" => '\t',
            "return" => '\r',
            "backspace" => '\u{8}',
            "formfeed" => '\u{c}',
            n if n.len() == 5 && n.starts_with('u') => {
                match u32::from_str_radix(&n[1..], 16).ok().and_then(char::from_u32) {
                    Some(c) => c,
                    None => return self.err(format!("invalid character literal \\{n}")),
                }
            }
            n => return self.err(format!("invalid character literal \\{n}")),
        };
        Ok(Edn::Char(c))
    }

    fn parse_atom(&self, tok: &str) -> Result<Edn, EdnError> {
        match tok {
            "nil" => return Ok(Edn::Nil),
            "true" => return Ok(Edn::Bool(true)),
            "false" => return Ok(Edn::Bool(false)),
            _ => {}
        }
        let b = tok.as_bytes();
        let numeric = b[0].is_ascii_digit() || ((b[0] == b'-' || b[0] == b'+') && b.len() > 1 && b[1].is_ascii_digit());
        if numeric {
            let digits = tok.strip_suffix('N').unwrap_or(tok);
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if !unsigned.is_empty() && unsigned.bytes().all(|c| c.is_ascii_digit()) {
                return match digits.strip_prefix('+').unwrap_or(digits).parse::<i64>() {
                    Ok(i) => Ok(Edn::Int(i)),
                    Err(_) => self.err(format!("integer {tok} out of range")),
                };
            }
            let float = tok.strip_suffix('M').unwrap_or(tok);
            let float_ok = float.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
            return match (float_ok, float.parse::<f64>()) {
                (true, Ok(x)) => Ok(Edn::Float(x)),
                _ => self.err(format!("invalid number '{tok}'")),
            };
        }
        if !valid_symbol(tok) {
            return self.err(format!("invalid token '{tok}'"));
        }
        Ok(Edn::Symbol(tok.to_string()))
    }
}

// ---------------------------------------------------------------------------
// Building operations from history lines
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FnKind {
    Read,
    Write,
    Cas,
    Append,
    Delete,
}

impl FnKind {
    fn name(self) -> &'static str {
        match self {
            FnKind::Read => ":read",
            FnKind::Write => ":write",
            FnKind::Cas => ":cas",
            FnKind::Append => ":append",
            FnKind::Delete => ":delete",
        }
    }
}

/// One parsed history line (an invocation or a completion).
struct Line {
    line: usize,
    process: u64,
    ty: EventType,
    f: FnKind,
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

fn parse_fn(line: usize, e: &Edn) -> Result<FnKind, HistoryError> {
    match e {
        Edn::Keyword(k) => match k.as_str() {
            "read" | "get" => Ok(FnKind::Read),
            "write" | "put" => Ok(FnKind::Write),
            "cas" => Ok(FnKind::Cas),
            "append" => Ok(FnKind::Append),
            "delete" => Ok(FnKind::Delete),
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

fn function_of(l: &Line) -> Result<Function, HistoryError> {
    Ok(match l.f {
        FnKind::Read => Function::Read,
        FnKind::Delete => Function::Delete,
        FnKind::Write => Function::Write(scalar(l.line, "the :write value", &l.value)?),
        FnKind::Append => Function::Append(scalar(l.line, "the :append value", &l.value)?),
        FnKind::Cas => match &l.value {
            Edn::Vector(v) | Edn::List(v) if v.len() == 2 => Function::Cas {
                expected: scalar(l.line, "the :cas expected value", &v[0])?,
                new: scalar(l.line, "the :cas new value", &v[1])?,
            },
            other => {
                return Err(HistoryError::BadValue {
                    line: l.line,
                    message: format!("the :cas value must be a vector [expected new], found {other}"),
                })
            }
        },
    })
}

struct PendingInvoke {
    line: usize,
    slot: usize,
    f: FnKind,
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
    fn push(&mut self, l: Line) -> Result<(), HistoryError> {
        if l.f == FnKind::Append || matches!((l.f, &l.value), (FnKind::Read | FnKind::Write, Edn::Str(_))) {
            self.string_mode = true;
        }
        match l.ty {
            EventType::Invoke => {
                if let Some(p) = self.pending.get(&l.process) {
                    return Err(HistoryError::AlreadyPending {
                        line: l.line,
                        process: l.process,
                        pending_line: p.line,
                    });
                }
                let function = function_of(&l)?;
                let slot = self.slots.len();
                self.slots.push(None);
                self.pending.insert(
                    l.process,
                    PendingInvoke { line: l.line, slot, f: l.f, key: l.key, function, time: l.time },
                );
            }
            ty => {
                let Some(p) = self.pending.remove(&l.process) else {
                    return Err(HistoryError::NoPendingInvoke { line: l.line, process: l.process });
                };
                let mismatch = |message: String| HistoryError::MismatchedCompletion {
                    line: l.line,
                    process: l.process,
                    invoke_line: p.line,
                    message,
                };
                if p.f != l.f {
                    return Err(mismatch(format!("completion is {} but the invoke is {}", l.f.name(), p.f.name())));
                }
                if l.key.is_some() && l.key != p.key {
                    return Err(mismatch(format!(
                        "completion has :key {:?} but the invoke has :key {:?}",
                        l.key, p.key
                    )));
                }
                if ty != EventType::Info && l.time < p.time {
                    return Err(HistoryError::BadValue {
                        line: l.line,
                        message: format!("completion :time {} is before its invoke's :time {}", l.time, p.time),
                    });
                }
                let op = |outcome: Outcome, complete_at: Option<u64>| Operation {
                    process: l.process,
                    key: p.key.clone(),
                    function: p.function.clone(),
                    outcome,
                    invoke_at: p.time,
                    complete_at,
                };
                self.slots[p.slot] = match ty {
                    EventType::Ok => {
                        let read = match l.f {
                            FnKind::Read => Some(scalar(l.line, "the value read", &l.value)?),
                            _ => None,
                        };
                        Some(op(Outcome::Ok { read }, Some(l.time)))
                    }
                    EventType::Fail if l.f == FnKind::Cas && !l.has_error => {
                        Some(op(Outcome::CasMismatch, Some(l.time)))
                    }
                    EventType::Fail => None,                        // definitely did not happen
                    EventType::Info if l.f == FnKind::Read => None, // constrains nothing
                    EventType::Info => Some(op(Outcome::Unknown, None)),
                    EventType::Invoke => unreachable!("handled above"),
                };
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<Operation> {
        // Invocations that never completed: unknown outcome.
        let mut pending: Vec<_> = self.pending.drain().collect();
        pending.sort_by_key(|(_, p)| p.slot);
        for (process, p) in pending {
            if p.f == FnKind::Read {
                continue;
            }
            self.slots[p.slot] = Some(Operation {
                process,
                key: p.key,
                function: p.function,
                outcome: Outcome::Unknown,
                invoke_at: p.time,
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
    line.starts_with(|c: char| c.is_whitespace() || c.is_ascii_digit()) || LEVELS.iter().any(|l| line.starts_with(l))
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
    let mut b = Builder::default();
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
        // "jepsen.util - 3 ..." or "jepsen.util: 3 ...".
        let after = &raw[at + LOG_MARKER.len()..];
        let after = after.strip_prefix(':').unwrap_or(after).trim_start();
        let rest = match after.strip_prefix('-') {
            Some(r) if r.starts_with(char::is_whitespace) => r.trim_start(),
            _ => after,
        };
        let mut cursor = rest;
        let process = take_token(&mut cursor);
        let ty = take_token(&mut cursor);
        let f = take_token(&mut cursor);
        if f.is_empty() {
            return Err(HistoryError::Log {
                line,
                message: format!("expected PROCESS TYPE FUNCTION [VALUE], found {:?}", truncate(rest)),
            });
        }
        let value_text = cursor.trim();
        let read_one = |what: &str, s: &str| -> Result<Edn, HistoryError> {
            let mut rd = EdnReader::new(s, line);
            let v = rd
                .next_form()
                .map_err(|(_, m)| HistoryError::Log { line, message: format!("{what}: {m}") })?
                .ok_or_else(|| HistoryError::Log { line, message: format!("missing {what}") })?;
            match rd.next_form() {
                Ok(None) => Ok(v),
                _ => Err(HistoryError::Log {
                    line,
                    message: format!("unexpected text after the {what}: {:?}", truncate(s)),
                }),
            }
        };
        let process = match read_one("process", process)? {
            Edn::Int(p) if p >= 0 => p as u64,
            Edn::Keyword(_) => continue, // :nemesis
            other => {
                return Err(HistoryError::Log {
                    line,
                    message: format!("process must be a non-negative integer, found {other}"),
                })
            }
        };
        let ty = parse_type(line, &read_one("type", ty)?)?;
        let f = read_one("function", f)?;
        let fk = match &f {
            Edn::Keyword(k) if k == "read" => FnKind::Read,
            Edn::Keyword(k) if k == "write" => FnKind::Write,
            Edn::Keyword(k) if k == "cas" => FnKind::Cas,
            other => return Err(HistoryError::UnknownFunction { line, found: other.to_string() }),
        };
        let value = match (value_text.is_empty(), ty) {
            (true, _) => Edn::Nil,
            // The value of a :fail/:info line is not used (it may be an error text).
            (false, EventType::Fail | EventType::Info) => read_one("value", value_text).unwrap_or(Edn::Nil),
            (false, _) => read_one("value", value_text)?,
        };
        b.push(Line { line, process, ty, f: fk, key: None, value, time: line as u64, has_error: false })?;
    }
    Ok(History { initial: Value::Nil, operations: b.finish() })
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

#[cfg(test)]
fn kw(name: &str) -> Edn {
    Edn::Keyword(name.to_string())
}

fn get<'e>(kvs: &'e [(Edn, Edn)], name: &str) -> Option<&'e Edn> {
    kvs.iter().find(|(k, _)| matches!(k, Edn::Keyword(n) if n == name)).map(|(_, v)| v)
}

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
/// written by [`write_edn`] when needed), which sets `initial` explicitly and
/// disables that inference.
pub fn parse_edn(text: &str) -> Result<History, HistoryError> {
    let mut reader = EdnReader::new(text, 1);
    let mut maps: Vec<(Vec<(Edn, Edn)>, usize)> = Vec::new();
    loop {
        let form_line = {
            reader.skip_ws();
            reader.line
        };
        let form = reader.next_form().map_err(|(line, message)| HistoryError::Edn { line, message })?;
        match form {
            None => break,
            Some(Edn::Map(kvs, line)) => maps.push((kvs, line)),
            Some(Edn::Vector(items)) => {
                for item in items {
                    match item {
                        Edn::Map(kvs, line) => maps.push((kvs, line)),
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

    let mut explicit_initial: Option<Value> = None;
    let uses_time = maps.iter().any(|(kvs, _)| get(kvs, "time").is_some() && get(kvs, "type").is_some());
    let mut b = Builder::default();
    let mut seen_op = false;
    for (kvs, line) in &maps {
        let line = *line;
        let Some(ty) = get(kvs, "type") else {
            if let Some(init) = get(kvs, "initial") {
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
        let process = match get(kvs, "process") {
            Some(Edn::Int(p)) if *p >= 0 => *p as u64,
            Some(Edn::Keyword(_)) => continue, // :nemesis
            Some(other) => {
                return Err(HistoryError::BadValue {
                    line,
                    message: format!(":process must be a non-negative integer, found {other}"),
                })
            }
            None => return Err(HistoryError::MissingField { line, field: ":process".into() }),
        };
        let ty = parse_type(line, ty)?;
        let f = parse_fn(line, get(kvs, "f").ok_or_else(|| HistoryError::MissingField { line, field: ":f".into() })?)?;
        let key = match get(kvs, "key") {
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
        let time = if uses_time {
            match get(kvs, "time") {
                Some(Edn::Int(t)) if *t >= 0 => *t as u64,
                Some(other) => {
                    return Err(HistoryError::BadValue {
                        line,
                        message: format!(":time must be a non-negative integer, found {other}"),
                    })
                }
                None => {
                    return Err(HistoryError::MissingField { line, field: ":time (other entries have one)".into() })
                }
            }
        } else {
            line as u64
        };
        let has_error = get(kvs, "error").is_some();
        let value = get(kvs, "value").cloned().unwrap_or(Edn::Nil);
        b.push(Line { line, process, ty, f, key, value, time, has_error })?;
    }
    let string_mode = b.string_mode;
    let mut operations = b.finish();
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

/// Detects the format from the first non-blank line: EDN if it starts with
/// `{`, `[` or `;`, the jepsen.util log format if it contains `jepsen.util` or
/// looks like log output; otherwise an error. Empty text is an empty history.
pub fn parse_auto(text: &str) -> Result<History, HistoryError> {
    let first = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
    match first {
        None => Ok(History { initial: Value::Nil, operations: Vec::new() }),
        Some((_, l)) if l.trim_start().starts_with(['{', '[', ';']) => parse_edn(text),
        Some((_, l)) if l.contains(LOG_MARKER) || is_other_log_output(l) => parse_jepsen_log(text),
        Some((idx, _)) => Err(HistoryError::UnknownFormat { line: idx + 1 }),
    }
}

// ---------------------------------------------------------------------------
// EDN writer
// ---------------------------------------------------------------------------

/// The `initial` that [`parse_edn`] infers for these operations when there is
/// no header, and whether it would rewrite reads of `nil` (to `""`).
fn inferred_initial(ops: &[Operation]) -> (Value, bool) {
    let string_mode = ops.iter().any(|op| {
        matches!(
            (&op.function, &op.outcome),
            (Function::Append(_), _)
                | (Function::Write(Value::Str(_)), _)
                | (Function::Read, Outcome::Ok { read: Some(Value::Str(_)) })
        )
    });
    if string_mode {
        let rewrites = ops
            .iter()
            .any(|op| matches!(op.outcome, Outcome::Ok { read: Some(Value::Nil) }) && op.function == Function::Read);
        (Value::Str(String::new()), rewrites)
    } else {
        (Value::Nil, false)
    }
}

/// Writes the history as Jepsen-style EDN, one map per line, e.g.
/// `{:process 0, :type :invoke, :f :read, :key "k", :value nil, :time 3}`.
///
/// Each operation gives an invoke line at `invoke_at` and a completion line at
/// `complete_at` (`:ok`, `:fail` for `CasMismatch`, `:info` for `Unknown`; an
/// `:info` line is placed just before the process's next invocation, or at the
/// end). Lines are ordered by time. A header `{:initial VALUE}` is written first
/// only when [`parse_edn`] would not infer `initial` by itself.
///
/// `parse_edn(&write_edn(h)) == Ok(h)` for histories in the normal form the
/// parsers produce: operations sorted by `invoke_at`, a process's completed
/// operations not overlapping each other, no `Unknown` reads, `Ok { read: Some(_) }`
/// exactly for reads, `CasMismatch` only for `Cas`, and `complete_at == None` iff
/// `Unknown`. (Anything else is still written, but may not read back identically.)
pub fn write_edn(history: &History) -> String {
    use std::fmt::Write as _;
    let ops = &history.operations;
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| ops[i].invoke_at); // stable
    let mut seq = vec![0usize; ops.len()];
    for (s, &i) in order.iter().enumerate() {
        seq[i] = s;
    }
    let end_time = ops.iter().flat_map(|o| [Some(o.invoke_at), o.complete_at]).flatten().max().unwrap_or(0);

    // (time, class, tiebreak, op index, is_invoke)
    let mut events: Vec<(u64, u8, usize, usize, bool)> = Vec::with_capacity(ops.len() * 2);
    for (s, &i) in order.iter().enumerate() {
        let op = &ops[i];
        events.push((op.invoke_at, 1, 2 * s, i, true));
        match op.complete_at {
            Some(t) if t > op.invoke_at => events.push((t, 0, 0, i, false)),
            Some(t) => events.push((t, 1, 2 * s + 1, i, false)),
            None => {
                // Before the same process's next invocation, or at the end.
                let next = order[s + 1..].iter().find(|&&j| ops[j].process == op.process);
                match next {
                    Some(&j) => events.push((ops[j].invoke_at, 1, 2 * s + 1, i, false)),
                    None => events.push((end_time, 2, 2 * s + 1, i, false)),
                }
            }
        }
    }
    events.sort();

    let mut out = String::new();
    let (inferred, rewrites) = inferred_initial(ops);
    if history.initial != inferred || rewrites {
        let _ = writeln!(out, "{{:initial {}}}", history.initial);
    }
    for (time, _, _, i, is_invoke) in events {
        let op = &ops[i];
        let ty = if is_invoke {
            "invoke"
        } else {
            match op.outcome {
                Outcome::Ok { .. } => "ok",
                Outcome::CasMismatch => "fail",
                Outcome::Unknown => "info",
            }
        };
        let (f, value) = match &op.function {
            Function::Read => {
                let v = match (&op.outcome, is_invoke) {
                    (Outcome::Ok { read: Some(v) }, false) => v.to_string(),
                    _ => "nil".to_string(),
                };
                ("read", v)
            }
            Function::Write(v) => ("write", v.to_string()),
            Function::Cas { expected, new } => ("cas", format!("[{expected} {new}]")),
            Function::Append(v) => ("append", v.to_string()),
            Function::Delete => ("delete", "nil".to_string()),
        };
        let _ = write!(out, "{{:process {}, :type :{ty}, :f :{f}", op.process);
        if let Some(k) = &op.key {
            out.push_str(", :key ");
            let _ = write_edn_string(&mut out, k);
        }
        let _ = writeln!(out, ", :value {value}, :time {time}}}");
    }
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(read: Option<Value>) -> Outcome {
        Outcome::Ok { read }
    }

    #[test]
    fn edn_reader_basics() {
        let mut r = EdnReader::new(
            r#"{:a 1, :b [nil true false -3 +4 5N 1.5], "s\"\n\u0041" #{:x} (x y) \c, #_ 7 :z :w ; comment
            }"#,
            1,
        );
        let v = r.next_form().unwrap().unwrap();
        let Edn::Map(kvs, line) = v else { panic!("not a map") };
        assert_eq!(line, 1);
        assert_eq!(get(&kvs, "a"), Some(&Edn::Int(1)));
        assert_eq!(
            get(&kvs, "b"),
            Some(&Edn::Vector(vec![
                Edn::Nil,
                Edn::Bool(true),
                Edn::Bool(false),
                Edn::Int(-3),
                Edn::Int(4),
                Edn::Int(5),
                Edn::Float(1.5)
            ]))
        );
        assert_eq!(kvs[2], (Edn::Str("s\"\nA".into()), Edn::Set(vec![kw("x")])));
        assert_eq!(kvs[3].0, Edn::List(vec![Edn::Symbol("x".into()), Edn::Symbol("y".into())]));
        assert_eq!(kvs[3].1, Edn::Char('c'));
        assert_eq!(kvs[4], (kw("z"), kw("w")));
        assert_eq!(kvs.len(), 5);
        assert!(r.next_form().unwrap().is_none());
    }

    #[test]
    fn edn_reader_rejects_malformed() {
        for (text, line) in [
            ("{:a 1", 1),
            ("{:a 1 :b}", 1),
            ("\n\n{:a \"unterminated}", 3),
            ("[1 2)", 1),
            (")", 1),
            ("{:a 99999999999999999999}", 1),
            ("{:a 1, :a 2}", 1),
            ("\n{:a \"bad \\q escape\"}", 2),
            ("{: 1}", 1),
            ("{:a 1.2.3}", 1),
            ("{:a @x}", 1),
        ] {
            let mut r = EdnReader::new(text, 1);
            let mut res = Ok(None);
            for _ in 0..10 {
                res = r.next_form();
                if !matches!(res, Ok(Some(_))) {
                    break;
                }
            }
            match res {
                Err((l, _)) => assert_eq!(l, line, "wrong line for {text:?}"),
                Ok(v) => panic!("{text:?} should be rejected, got {v:?}"),
            }
        }
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

    #[test]
    fn write_edn_format_and_round_trip() {
        let h = History {
            initial: Value::Nil,
            operations: vec![
                Operation {
                    process: 0,
                    key: Some("k".into()),
                    function: Function::Read,
                    outcome: ok(Some(Value::Int(3))),
                    invoke_at: 1,
                    complete_at: Some(5),
                },
                Operation {
                    process: 1,
                    key: Some("k".into()),
                    function: Function::Cas { expected: Value::Int(1), new: Value::Int(2) },
                    outcome: Outcome::CasMismatch,
                    invoke_at: 2,
                    complete_at: Some(3),
                },
                Operation {
                    process: 1,
                    key: Some("k\"q".into()),
                    function: Function::Write(Value::Int(3)),
                    outcome: Outcome::Unknown,
                    invoke_at: 3,
                    complete_at: None,
                },
            ],
        };
        let text = write_edn(&h);
        assert_eq!(
            text,
            r#"{:process 0, :type :invoke, :f :read, :key "k", :value nil, :time 1}
{:process 1, :type :invoke, :f :cas, :key "k", :value [1 2], :time 2}
{:process 1, :type :fail, :f :cas, :key "k", :value [1 2], :time 3}
{:process 1, :type :invoke, :f :write, :key "k\"q", :value 3, :time 3}
{:process 0, :type :ok, :f :read, :key "k", :value 3, :time 5}
{:process 1, :type :info, :f :write, :key "k\"q", :value 3, :time 5}
"#
        );
        assert_eq!(parse_edn(&text).unwrap(), h);
    }

    #[test]
    fn write_edn_header_when_initial_not_inferable() {
        for initial in [Value::Int(7), Value::Str("".into()), Value::Str("ab".into())] {
            let h = History {
                initial: initial.clone(),
                operations: vec![Operation {
                    process: 0,
                    key: None,
                    function: Function::Read,
                    outcome: ok(Some(Value::Nil)),
                    invoke_at: 0,
                    complete_at: Some(0),
                }],
            };
            let text = write_edn(&h);
            assert!(text.starts_with("{:initial "), "{text}");
            assert_eq!(parse_edn(&text).unwrap(), h);
        }
        // Inferable: no header.
        let h = History {
            initial: Value::Str(String::new()),
            operations: vec![Operation {
                process: 0,
                key: None,
                function: Function::Append(Value::Str("x".into())),
                outcome: ok(None),
                invoke_at: 0,
                complete_at: Some(1),
            }],
        };
        let text = write_edn(&h);
        assert!(text.starts_with("{:process"), "{text}");
        assert_eq!(parse_edn(&text).unwrap(), h);
    }

    // ---- round-trip property ----
    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Nil),
            (-3i64..5).prop_map(Value::Int),
            any::<i64>().prop_map(Value::Int),
            "[a-z \"\\\\\n\t\u{e9}]{0,4}".prop_map(Value::Str),
        ]
    }

    /// A normal-form history: per process, operations in sequence.
    fn arb_history() -> impl Strategy<Value = History> {
        let op_spec = (
            0u8..5, // function kind
            arb_value(),
            arb_value(),
            0u8..4,  // outcome kind
            0u64..4, // gap before invoke
            0u64..4, // duration
            prop::option::of(prop_oneof![Just("a".to_string()), Just("b\\\"".to_string()), Just("0".to_string())]),
        );
        (
            prop::collection::vec(prop::collection::vec(op_spec, 0..5), 1..4),
            prop_oneof![Just(Value::Nil), Just(Value::Str(String::new())), arb_value()],
        )
            .prop_map(|(procs, initial)| {
                let mut ops = Vec::new();
                for (p, specs) in procs.into_iter().enumerate() {
                    let mut t = 0u64;
                    for (fk, v1, v2, ok_kind, gap, dur, key) in specs {
                        let function = match fk {
                            0 => Function::Read,
                            1 => Function::Write(v1.clone()),
                            2 => Function::Cas { expected: v1.clone(), new: v2.clone() },
                            3 => Function::Append(v1.clone()),
                            _ => Function::Delete,
                        };
                        let invoke_at = t + gap;
                        let outcome = match (ok_kind, &function) {
                            (_, Function::Read) if ok_kind != 3 => Outcome::Ok { read: Some(v2.clone()) },
                            (_, Function::Read) => Outcome::Ok { read: Some(Value::Nil) },
                            (1, Function::Cas { .. }) => Outcome::CasMismatch,
                            (3, _) => Outcome::Unknown,
                            _ => Outcome::Ok { read: None },
                        };
                        let complete_at = match outcome {
                            Outcome::Unknown => None,
                            _ => Some(invoke_at + dur),
                        };
                        t = complete_at.unwrap_or(invoke_at);
                        ops.push(Operation {
                            process: p as u64 * 3 + 1,
                            key,
                            function,
                            outcome,
                            invoke_at,
                            complete_at,
                        });
                    }
                }
                ops.sort_by_key(|o| o.invoke_at);
                History { initial, operations: ops }
            })
    }

    proptest! {
        #[test]
        fn round_trip(h in arb_history()) {
            let text = write_edn(&h);
            let back = parse_edn(&text);
            prop_assert_eq!(back.as_ref().ok(), Some(&h), "text:\n{}\nerr: {:?}", text, back.as_ref().err());
            prop_assert_eq!(parse_auto(&text).ok(), Some(h));
        }

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
