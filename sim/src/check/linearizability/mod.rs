//! A Wing–Gong–Lowe linearizability checker for register histories.
//!
//! The history is split by key (linearizability is compositional, so every key
//! can be checked on its own, in sorted key order). For each key the checker
//! runs the WGL search with Lowe's memoisation, as Porcupine and Knossos' `wgl`
//! do: operations are call/return entries in a doubly linked list ordered by
//! time; from each configuration (set of linearized operations, register
//! state) the search tries to linearize next one of the pending calls (those
//! before the first return still in the list) whose model step is legal, and
//! backtracks when none leads anywhere; configurations already seen are pruned.
//!
//! On top of that, a few reductions that never change the verdict (each is
//! justified where it is implemented):
//! * a definite *pure observer* (read, failed cas) that can go next is the only
//!   move tried (`Search::moves`) — this removes most branching;
//! * a completed read or successful cas of a value that nothing ever writes is
//!   reported at once, without a search;
//! * unknown operations are optional: they are tried only when they change the
//!   state, identical ones only in invocation order, never followed directly
//!   by a write (which would make them pointless), and a configuration is also
//!   pruned when a fully explored one differs only by using fewer of them
//!   (`Cache`);
//! * the set of linearized operations is stored compactly (what matters is
//!   the frontier of completed operations), so memory per configuration does
//!   not grow with the length of the history.
//!
//! Semantics (see [`crate::history`]):
//! * an `Ok` operation took effect exactly once between its invocation and
//!   completion; an `Ok` read observes its value; an `Ok` cas needs the
//!   register to hold `expected`;
//! * a `CasMismatch` took effect (with no change) at a moment when the register
//!   did not hold `expected`;
//! * an `Unknown` operation may take effect at any point after its invocation,
//!   or never: its return is at +infinity, and the search succeeds once every
//!   other operation is linearized (an `Unknown` cas has an effect only if the
//!   register holds `expected`). `Unknown` reads constrain nothing and are
//!   ignored, as are reads without an observed value and `CasMismatch` on
//!   anything other than a cas;
//! * `Append` concatenates text: `Nil` counts as `""`, an integer as its
//!   decimal digits; the result is always a `Str`;
//! * operation A precedes operation B in real time iff A completed strictly
//!   before B was invoked (`A.complete_at < B.invoke_at`); equal times overlap.

use crate::history::{Function, History, Operation, Outcome, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

mod cache;
mod search;

use cache::*;
use search::*;

/// Bounds on the search effort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchLimits {
    /// Distinct (linearized set, state) configurations the search may record
    /// for one key before it gives up on that key.
    pub max_states_per_key: u64,
    /// Approximate bytes all keys' searches may hold together; beyond it the
    /// largest is given up (the others go on). Default 512 MiB.
    pub max_memory_bytes: u64,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits { max_states_per_key: 20_000_000, max_memory_bytes: 512 << 20 }
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations have a legal order consistent with real time.
    Linearizable,
    /// Some key's operations have none.
    NotLinearizable {
        /// The first key (in sorted order) found not linearizable; `None`
        /// for a single-register history.
        key: Option<String>,
        /// Readable: the operations that could not be ordered, and how far
        /// the deepest attempt got.
        explanation: String,
    },
    /// The search budget ran out before a decision.
    Unknown {
        /// The first key that ran out of budget.
        key: Option<String>,
        /// Which limit was reached.
        reason: String,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`] (`Unknown` is not).
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// The verdict as a simulator failure (`linearizability: ...`), or
    /// `None` when the history is linearizable.
    pub fn failure(self) -> Option<String> {
        match self {
            Verdict::Linearizable => None,
            Verdict::NotLinearizable { key, explanation } => Some(format!(
                "linearizability: history of key {} is not linearizable: {explanation}",
                key.unwrap_or_default()
            )),
            Verdict::Unknown { key, reason } => {
                Some(format!("linearizability: check of key {} was inconclusive: {reason}", key.unwrap_or_default()))
            }
        }
    }
}

/// Checks whether `history` is linearizable with respect to a register per key
/// (all starting at `history.initial`).
///
/// Keys are independent (P-compositionality), and their searches are
/// interleaved: each undecided key gets a slice of search effort in turn
/// (in sorted key order, `None` first), and the slices double every round.
/// So a key that is hard to decide never keeps an easier key's violation
/// from being found. The first key found not linearizable decides the
/// verdict. A key whose search outgrows [`SearchLimits::max_states_per_key`]
/// is given up, and so is the largest search whenever all of them together
/// outgrow [`SearchLimits::max_memory_bytes`]; the others go on. If no key
/// is found not linearizable but some key was given up, the verdict is
/// `Unknown` for the first key given up.
pub fn check(history: &History, limits: &SearchLimits) -> Verdict {
    let mut by_key: BTreeMap<Option<&str>, Vec<&Operation>> = BTreeMap::new();
    for op in &history.operations {
        by_key.entry(op.key.as_deref()).or_default().push(op);
    }
    let mut searches: Vec<(Option<&str>, Search)> = Vec::new();
    for (key, ops) in by_key {
        match prepare_key(key, &ops, &history.initial) {
            Ok(None) => {}
            Ok(Some(search)) => searches.push((key, search)),
            Err(verdict) => return verdict,
        }
    }
    let mut given_up = None;
    let mut slice = FIRST_SLICE_STATES;
    while !searches.is_empty() {
        let mut index = 0;
        while index < searches.len() {
            let (key, search) = &mut searches[index];
            match search.run(slice.min(limits.max_states_per_key)) {
                SearchResult::Linearizable => {
                    searches.remove(index);
                    continue;
                }
                SearchResult::NotLinearizable => return not_linearizable(*key, &history.initial, search),
                SearchResult::OutOfBudget if search.cache.len() > limits.max_states_per_key => {
                    let reason = format!("SearchLimits::max_states_per_key = {}", limits.max_states_per_key);
                    given_up.get_or_insert_with(|| gave_up(*key, search, &reason));
                    searches.remove(index);
                    continue;
                }
                SearchResult::OutOfBudget => index += 1,
            }
            let memory: u64 = searches.iter().map(|(_, search)| search.memory_bytes()).sum();
            if memory > limits.max_memory_bytes {
                let largest = (0..searches.len())
                    .max_by_key(|&at| searches[at].1.memory_bytes())
                    .expect("searches hold the memory");
                let (key, search) = searches.remove(largest);
                let reason = format!(
                    "the searches held about {} MB together, over SearchLimits::max_memory_bytes = {} MB; this key's \
                     was the largest",
                    memory >> 20,
                    limits.max_memory_bytes >> 20
                );
                given_up.get_or_insert_with(|| gave_up(key, &search, &reason));
                if largest < index {
                    index -= 1;
                }
            }
        }
        slice = slice.saturating_mul(2);
    }
    given_up.unwrap_or(Verdict::Linearizable)
}

/// Configurations each undecided key may record in the first round of
/// [`check`]; the allowance doubles every round.
const FIRST_SLICE_STATES: u64 = 1 << 12;

// ---------------------------------------------------------------------------
// Per-key search
// ---------------------------------------------------------------------------

/// The model step of one operation, on interned values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Read(u32),
    Write(u32),
    Cas {
        expected: u32,
        new: u32,
    },
    CasMismatch {
        expected: u32,
    },
    /// Unknown cas: sets `new` if the register holds `expected`.
    CasMaybe {
        expected: u32,
        new: u32,
    },
    /// Appends the text of the interned suffix.
    Append(u32),
}

impl Step {
    /// Can this step replace the state with something other than an
    /// extension of it? (Reads and mismatching cas change nothing; appends
    /// only extend.)
    fn replaces(self) -> bool {
        matches!(self, Step::Write(_) | Step::Cas { .. } | Step::CasMaybe { .. })
    }
}

struct KeyOp<'h> {
    op: &'h Operation,
    step: Step,
    /// Must be linearized (Ok or CasMismatch); otherwise optional.
    definite: bool,
}

/// Value interning plus memoised appends.
struct Values {
    values: Vec<Value>,
    ids: HashMap<Value, u32>,
    appends: HashMap<(u32, u32), u32>,
    /// Bytes of text the interned values hold (each is stored twice: in
    /// `values` and as a key of `ids`).
    text_bytes: u64,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => s.clone(),
    }
}

impl Values {
    fn new() -> Self {
        Values { values: Vec::new(), ids: HashMap::new(), appends: HashMap::new(), text_bytes: 0 }
    }

    fn id(&mut self, v: &Value) -> u32 {
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        let id = self.values.len() as u32;
        if let Value::Str(text) = v {
            self.text_bytes += 2 * text.len() as u64;
        }
        self.values.push(v.clone());
        self.ids.insert(v.clone(), id);
        id
    }

    fn append(&mut self, state: u32, suffix: u32) -> u32 {
        if let Some(&r) = self.appends.get(&(state, suffix)) {
            return r;
        }
        let mut s = text_of(&self.values[state as usize]);
        s.push_str(&text_of(&self.values[suffix as usize]));
        let r = self.id(&Value::Str(s));
        self.appends.insert((state, suffix), r);
        r
    }

    /// Is the text of `state` a prefix of the text of `value`? (What a read
    /// of `value` needs of the state before it when only appends can come
    /// in between.)
    fn is_prefix(&self, state: u32, value: u32) -> bool {
        match (&self.values[state as usize], &self.values[value as usize]) {
            (Value::Str(state), Value::Str(value)) => value.starts_with(state.as_str()),
            (Value::Nil, _) => true,
            (state, value) => text_of(value).starts_with(&text_of(state)),
        }
    }

    /// Approximate bytes held.
    fn memory_bytes(&self) -> u64 {
        self.text_bytes + (self.values.len() as u64) * 64 + (self.appends.len() as u64) * 24
    }

    fn step(&mut self, state: u32, step: Step) -> Option<u32> {
        match step {
            Step::Read(v) => (state == v).then_some(state),
            Step::Write(v) => Some(v),
            Step::Cas { expected, new } => (state == expected).then_some(new),
            Step::CasMismatch { expected } => (state != expected).then_some(state),
            Step::CasMaybe { expected, new } => Some(if state == expected { new } else { state }),
            Step::Append(suffix) => Some(self.append(state, suffix)),
        }
    }
}

/// Turns an operation into a search step; `None` if it can be ignored.
fn key_op<'h>(op: &'h Operation, values: &mut Values) -> Option<KeyOp<'h>> {
    let definite = !matches!(op.outcome, Outcome::Unknown);
    let step = match (&op.function, &op.outcome) {
        (Function::Read, Outcome::Ok { read: Some(v) }) => Step::Read(values.id(v)),
        (Function::Read, _) => return None,
        (Function::Cas { expected, .. }, Outcome::CasMismatch) => Step::CasMismatch { expected: values.id(expected) },
        (_, Outcome::CasMismatch) => return None,
        (Function::Cas { expected, new }, Outcome::Ok { .. }) => {
            Step::Cas { expected: values.id(expected), new: values.id(new) }
        }
        (Function::Cas { expected, new }, Outcome::Unknown) => {
            Step::CasMaybe { expected: values.id(expected), new: values.id(new) }
        }
        (Function::Write(v), _) => Step::Write(values.id(v)),
        (Function::Delete, _) => Step::Write(values.id(&Value::Nil)),
        (Function::Append(v), _) => Step::Append(values.id(&Value::Str(text_of(v)))),
    };
    Some(KeyOp { op, step, definite })
}

/// One key's check before any search: `Ok(None)` if it is trivially
/// linearizable, `Err` with the verdict if an observation is plainly
/// impossible, otherwise the search to run.
fn prepare_key<'h>(key: Option<&str>, ops: &[&'h Operation], initial: &Value) -> Result<Option<Search<'h>>, Verdict> {
    let mut values = Values::new();
    let init = values.id(initial);
    let kops: Vec<KeyOp> = ops.iter().filter_map(|op| key_op(op, &mut values)).collect();
    if kops.iter().all(|k| !k.definite) {
        return Ok(None);
    }
    if let Some(explanation) = impossible_observation(key, initial, &kops, &values, init) {
        return Err(Verdict::NotLinearizable { key: key.map(str::to_string), explanation });
    }
    Ok(Some(Search::new(kops, values, init)))
}

fn not_linearizable(key: Option<&str>, initial: &Value, search: &Search) -> Verdict {
    Verdict::NotLinearizable {
        key: key.map(str::to_string),
        explanation: explain(key, initial, &search.kops, &search.values, &search.best),
    }
}

fn gave_up(key: Option<&str>, search: &Search, limit: &str) -> Verdict {
    Verdict::Unknown {
        key: key.map(str::to_string),
        reason: format!(
            "gave up on {} after exploring {} configurations ({limit}); at best {} of its {} operations that must \
             take effect were linearized",
            key_label(key),
            search.cache.len().saturating_sub(1),
            search.best.done,
            search.total_definite
        ),
    }
}

/// A quick necessary condition: a completed read (or successful cas) that
/// observed a value that is neither the initial value nor written by any
/// operation on the key can never be linearized. Returns the explanation.
fn impossible_observation(
    key: Option<&str>,
    initial: &Value,
    kops: &[KeyOp],
    values: &Values,
    init: u32,
) -> Option<String> {
    if kops.iter().any(|k| matches!(k.step, Step::Append(_))) {
        return None; // appends can build many strings
    }
    let mut producible = vec![false; values.values.len()];
    producible[init as usize] = true;
    for k in kops {
        match k.step {
            Step::Write(v) | Step::Cas { new: v, .. } | Step::CasMaybe { new: v, .. } => producible[v as usize] = true,
            _ => {}
        }
    }
    let (k, v) = kops.iter().find_map(|k| match k.step {
        Step::Read(v) | Step::Cas { expected: v, .. } if k.definite && !producible[v as usize] => Some((k, v)),
        _ => None,
    })?;
    Some(format!(
        "{} (starting at {initial}) has no linearization: {} observed {}, but no operation on it ever writes that value.\n",
        key_label(key),
        k.op,
        values.values[v as usize]
    ))
}

/// Whether an optional step would leave `state` unchanged (appends always change it).
fn values_step_is_noop(values: &Values, state: u32, step: Step) -> bool {
    match step {
        Step::Write(v) => v == state,
        Step::CasMaybe { expected, new } => expected != state || new == state,
        Step::Append(suffix) => {
            matches!(&values.values[suffix as usize], Value::Str(s) if s.is_empty())
                && matches!(values.values[state as usize], Value::Str(_))
        }
        _ => false,
    }
}

fn explain(key: Option<&str>, initial: &Value, kops: &[KeyOp], values: &Values, best: &Best) -> String {
    let is_lin = |i: usize| best.linearized[i];
    let total_definite = kops.iter().filter(|k| k.definite).count();
    let state = &values.values[best.state as usize];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (starting at {initial}) has no linearization of its {} operations ({} of them must take effect).",
        key_label(key),
        kops.len(),
        total_definite
    );
    let _ = writeln!(
        out,
        "The longest linearizable prefix found contains {} of the {} operations that must take effect, after which the value is {state}.",
        best.done, total_definite
    );
    if !best.tail.is_empty() {
        let _ = writeln!(out, "It ends with:");
        for &j in &best.tail {
            let _ = writeln!(out, "  {}", kops[j].op);
        }
    }
    // The operation that had to take effect first among those left over.
    let deadline_op = (0..kops.len())
        .filter(|&i| kops[i].definite && !is_lin(i))
        .min_by_key(|&i| (kops[i].op.complete_at.unwrap_or(u64::MAX), kops[i].op.invoke_at));
    let Some(d) = deadline_op else {
        return out;
    };
    let deadline = kops[d].op.complete_at.unwrap_or(u64::MAX);
    let _ = writeln!(
        out,
        "Next, {} had to take effect before it completed, but no operation that could come next can be linearized from value {state}:",
        kops[d].op
    );
    let mut candidates: Vec<usize> =
        (0..kops.len()).filter(|&i| !is_lin(i) && kops[i].op.invoke_at <= deadline).collect();
    candidates.sort_by_key(|&i| (kops[i].op.invoke_at, i));
    const SHOWN: usize = 12;
    for &i in candidates.iter().take(SHOWN) {
        let k = &kops[i];
        let val = |id: u32| values.values[id as usize].to_string();
        let why = match k.step {
            Step::Read(v) if v != best.state => format!("it read {}", val(v)),
            Step::Cas { expected, .. } if expected != best.state => {
                format!("the cas succeeded, so the value was {}", val(expected))
            }
            Step::CasMismatch { expected } if expected == best.state => {
                format!("the cas failed, so the value was not {}", val(expected))
            }
            _ if !k.definite && values_step_is_noop(values, best.state, k.step) => {
                "its outcome is unknown, and here it would change nothing".to_string()
            }
            _ if !k.definite => "its outcome is unknown; taking effect here leads to no linearization".to_string(),
            _ => "it is possible here, but no linearization of the rest follows it".to_string(),
        };
        let _ = writeln!(out, "  - {}: {why}", k.op);
    }
    if candidates.len() > SHOWN {
        let _ = writeln!(out, "  ... and {} more", candidates.len() - SHOWN);
    }
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests;
