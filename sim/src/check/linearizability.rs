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

/// Identity hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const NONE: u32 = u32::MAX;

/// Lowe's cache of configurations seen, with subsumption on optional operations.
///
/// A configuration is (set of linearized operations, state, whether the last
/// operation linearized is optional) — the last part because the moves allowed
/// next depend on it (see [`Search::run`]). Every configuration recorded either
/// is on the current search path ("active") or has been fully explored without
/// success ("finished"). A new configuration C is pruned if it was recorded
/// before (it cannot be active: sets grow along the path), or if a *finished*
/// one has the same state, flag and definite operations and a *subset* of C's
/// optional operations: any way to complete C is also a way to complete that
/// one (optional operations never need to be linearized and never block
/// others; identical ones can be swapped), which has none.
///
/// The definite part of a set is stored exactly but compactly (see
/// [`Search::encode`]), followed by the optional-operation bitset, in a flat
/// arena. Entries are chained by a hash of (definite set, state, flag) for the
/// subsumption check, and by a hash of the whole configuration for the exact
/// check.
struct Cache {
    groups: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    exact: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    entries: Vec<CacheEntry>,
    arena: Vec<u64>,
}

struct CacheEntry {
    state: u32,
    last_optional: bool,
    active: bool,
    def_len: u32,
    next_in_group: u32,
    next_exact: u32,
    offset: usize,
}

/// How many entries of a group are compared for subsumption (the oldest ones,
/// which tend to have the fewest optional operations). Checking fewer only
/// prunes less; exact repeats are always found.
const SUBSUMPTION_SCAN: usize = 64;

impl Cache {
    fn new() -> Self {
        Cache { groups: HashMap::default(), exact: HashMap::default(), entries: Vec::new(), arena: Vec::new() }
    }

    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Approximate bytes held: entries, the arena, and both hash maps.
    fn memory_bytes(&self) -> u64 {
        let entries = self.entries.capacity() * std::mem::size_of::<CacheEntry>();
        let arena = self.arena.capacity() * 8;
        let maps = (self.groups.capacity() + self.exact.capacity()) * 16;
        (entries + arena + maps) as u64
    }

    /// Records the configuration as active and returns its index, or None if
    /// it is pruned. `group_hash` covers the definite set, the state and the
    /// flag; `exact_hash` the optional set too.
    fn insert(
        &mut self,
        group_hash: u64,
        exact_hash: u64,
        def_key: &[u64],
        opt: &[u64],
        state: u32,
        last_optional: bool,
    ) -> Option<u32> {
        let same_group = |c: &CacheEntry, arena: &[u64]| {
            c.state == state
                && c.last_optional == last_optional
                && c.def_len as usize == def_key.len()
                && arena[c.offset..c.offset + def_key.len()] == *def_key
        };
        let exact_head = self.exact.get(&exact_hash).copied().unwrap_or(NONE);
        let mut e = exact_head;
        while e != NONE {
            let c = &self.entries[e as usize];
            let def_end = c.offset + c.def_len as usize;
            if same_group(c, &self.arena) && self.arena[def_end..def_end + opt.len()] == *opt {
                return None;
            }
            e = c.next_exact;
        }
        let group_head = self.groups.get(&group_hash).copied().unwrap_or(NONE);
        let mut e = group_head;
        let mut scanned = 0;
        while e != NONE && scanned < SUBSUMPTION_SCAN {
            let c = &self.entries[e as usize];
            let def_end = c.offset + c.def_len as usize;
            if !c.active
                && same_group(c, &self.arena)
                && self.arena[def_end..def_end + opt.len()].iter().zip(opt).all(|(old, cur)| old & !cur == 0)
            {
                return None;
            }
            scanned += 1;
            e = c.next_in_group;
        }
        // Keep the oldest entry first in its group: the search tends to
        // record small sets of optional operations before their supersets.
        let idx = self.entries.len() as u32;
        let next_in_group = if group_head == NONE {
            self.groups.insert(group_hash, idx);
            NONE
        } else {
            std::mem::replace(&mut self.entries[group_head as usize].next_in_group, idx)
        };
        self.exact.insert(exact_hash, idx);
        self.entries.push(CacheEntry {
            state,
            last_optional,
            active: true,
            def_len: def_key.len() as u32,
            next_in_group,
            next_exact: exact_head,
            offset: self.arena.len(),
        });
        self.arena.extend_from_slice(def_key);
        self.arena.extend_from_slice(opt);
        Some(idx)
    }

    /// Marks a configuration as fully explored without success.
    fn finish(&mut self, idx: u32) {
        self.entries[idx as usize].active = false;
    }
}

/// The deepest point the search reached, for the explanation.
struct Best {
    done: usize,
    linearized: Vec<bool>,
    state: u32,
    /// The last few operations linearized, oldest first.
    tail: Vec<usize>,
}

fn key_label(key: Option<&str>) -> String {
    match key {
        None => "the register".to_string(),
        Some(k) => format!("key {}", Value::Str(k.to_string())),
    }
}

/// One linearized operation on the search stack.
struct Frame {
    op: usize,
    /// The state before the operation.
    state: u32,
    /// Highest definite bit position linearized so far (prefix maximum), or -1.
    def_hi: i64,
    /// The cache entry of the configuration this operation leads to.
    entry: u32,
}

/// The WGL search over the operations of one key.
///
/// Call/return entries form a doubly linked list: 0 = head, 2i+1 = call of op
/// i, 2i+2 = return of op i, 2n+1 = tail. Returns are at their completion time
/// (+infinity for unknown operations); at equal times calls come first, so
/// operations whose intervals touch are concurrent.
///
/// The set of linearized operations is kept as two bitsets: definite
/// operations ordered by completion time (so that they are linearized roughly
/// in bit order: all bits below `lo_word` are set and few above), and optional
/// (unknown) operations. The definite part is encoded exactly as
/// `[lo_word | hi_word << 32, definite words lo_word..=hi_word]`, which stays
/// small whatever the history's length.
struct Search<'h> {
    kops: Vec<KeyOp<'h>>,
    values: Values,
    next: Vec<usize>,
    prev: Vec<usize>,
    tail: usize,
    /// Bit position of each op in `def_bits` or `opt_bits`.
    pos: Vec<usize>,
    def_bits: Vec<u64>,
    opt_bits: Vec<u64>,
    /// First word of `def_bits` that is not all ones (padding bits are set).
    lo_word: usize,
    /// Optional operations with identical steps form a class; `rank` orders a
    /// class by invocation and `class_used` counts its linearized members.
    class: Vec<u32>,
    rank: Vec<u32>,
    class_used: Vec<u32>,
    zobrist: Vec<u64>,
    /// Zobrist hashes of the linearized definite / optional operations.
    hash: u64,
    opt_hash: u64,
    state: u32,
    done: usize,
    total_definite: usize,
    stack: Vec<Frame>,
    linearized: Vec<bool>,
    cache: Cache,
    key_buf: Vec<u64>,
    /// Moves to try, for every configuration on the current path.
    cands: Vec<u32>,
    best: Best,
    /// Operations not linearized whose step can replace the state (see
    /// [`Step::replaces`]); while there are none, the state can only grow
    /// by appends (see [`Search::contradicts_reads`]).
    replacing_left: u32,
    /// Definite reads by completion time, with the value each observed.
    reads: Vec<(usize, u32)>,
    /// Each operation's place in `reads` (`NONE` for others).
    read_rank: Vec<u32>,
    /// No read before this place in `reads` is unlinearized.
    read_cursor: usize,
    /// Where the search is, so that [`Search::run`] can resume: one level
    /// per configuration on the current path (where its moves start in
    /// `cands`, and the next one to try), and whether the last move arrived
    /// at a new configuration.
    levels: Vec<(usize, usize)>,
    arrived: bool,
}

enum SearchResult {
    Linearizable,
    NotLinearizable,
    OutOfBudget,
}

impl<'h> Search<'h> {
    fn new(kops: Vec<KeyOp<'h>>, values: Values, init: u32) -> Self {
        let n = kops.len();
        let tail = 2 * n + 1;
        let (next, prev) = Self::linked_events(&kops);
        let (pos, total_definite, opt) = Self::bit_positions(&kops);
        let mut def_bits = vec![0u64; total_definite.div_ceil(64)];
        if !total_definite.is_multiple_of(64) {
            // Padding bits count as set, so a full word is always !0.
            *def_bits.last_mut().expect("non-empty") |= !0u64 << (total_definite % 64);
        }
        let opt_bits = vec![0u64; opt.len().div_ceil(64)];
        let zobrist = (0..n).map(|i| splitmix64(i as u64 ^ 0x5eed_1234_abcd_0000)).collect();
        let (class, rank, class_used) = Self::classes(&kops, &opt);
        let replacing_left = kops.iter().filter(|k| k.step.replaces()).count() as u32;
        let mut reads: Vec<(usize, u32)> = (0..n)
            .filter_map(|i| match kops[i].step {
                Step::Read(value) if kops[i].definite => Some((i, value)),
                _ => None,
            })
            .collect();
        reads.sort_by_key(|&(i, _)| (kops[i].ret_time(), kops[i].op.invoke_at, i));
        let mut read_rank = vec![NONE; n];
        for (rank, &(i, _)) in reads.iter().enumerate() {
            read_rank[i] = rank as u32;
        }
        Search {
            replacing_left,
            reads,
            read_rank,
            read_cursor: 0,
            levels: Vec::new(),
            arrived: true,
            class,
            rank,
            class_used,
            values,
            next,
            prev,
            tail,
            pos,
            def_bits,
            opt_bits,
            lo_word: 0,
            zobrist,
            hash: 0,
            opt_hash: 0,
            state: init,
            done: 0,
            total_definite,
            stack: Vec::new(),
            linearized: vec![false; n],
            cache: Cache::new(),
            key_buf: Vec::new(),
            cands: Vec::new(),
            best: Best { done: 0, linearized: vec![false; n], state: init, tail: Vec::new() },
            kops,
        }
    }

    /// The call/return list as `(next, prev)` links: entries sorted by time,
    /// calls before definite returns before unknown returns at equal times.
    fn linked_events(kops: &[KeyOp<'h>]) -> (Vec<usize>, Vec<usize>) {
        let n = kops.len();
        let tail = 2 * n + 1;
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
        for (i, k) in kops.iter().enumerate() {
            events.push((k.op.invoke_at, 0, 2 * i + 1));
            events.push((k.ret_time(), if k.definite { 1 } else { 2 }, 2 * i + 2));
        }
        events.sort_unstable();
        let mut next = vec![0usize; 2 * n + 2];
        let mut prev = vec![0usize; 2 * n + 2];
        let mut last = 0;
        for &(_, _, e) in &events {
            next[last] = e;
            prev[e] = last;
            last = e;
        }
        next[last] = tail;
        prev[tail] = last;
        next[tail] = tail;
        (next, prev)
    }

    /// Bit positions: definite ops by (completion, invocation), optional ops
    /// by invocation. Returns the positions, the number of definite ops and
    /// the optional ops in position order.
    fn bit_positions(kops: &[KeyOp<'h>]) -> (Vec<usize>, usize, Vec<usize>) {
        let n = kops.len();
        let mut def: Vec<usize> = (0..n).filter(|&i| kops[i].definite).collect();
        def.sort_by_key(|&i| (kops[i].ret_time(), kops[i].op.invoke_at, i));
        let mut opt: Vec<usize> = (0..n).filter(|&i| !kops[i].definite).collect();
        opt.sort_by_key(|&i| (kops[i].op.invoke_at, i));
        let mut pos = vec![0usize; n];
        for (p, &i) in def.iter().enumerate() {
            pos[i] = p;
        }
        for (p, &i) in opt.iter().enumerate() {
            pos[i] = p;
        }
        (pos, def.len(), opt)
    }

    /// The classes of optional ops with identical steps: `(class, rank,
    /// class_used)` with ranks in `opt`'s order and every count zero.
    fn classes(kops: &[KeyOp<'h>], opt: &[usize]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        let n = kops.len();
        let mut class = vec![NONE; n];
        let mut rank = vec![0u32; n];
        let mut class_ids: HashMap<Step, u32> = HashMap::new();
        let mut class_used = Vec::new();
        for &i in opt {
            let next_id = class_ids.len() as u32;
            let c = *class_ids.entry(kops[i].step).or_insert(next_id);
            if c == next_id {
                class_used.push(0u32);
            }
            class[i] = c;
            rank[i] = class_used[c as usize];
            class_used[c as usize] += 1;
        }
        class_used.iter_mut().for_each(|c| *c = 0);
        (class, rank, class_used)
    }

    fn state_hash(s: u32) -> u64 {
        splitmix64(s as u64 ^ 0xdead_beef_0000_0000)
    }

    fn set_bit(&mut self, i: usize, on: bool) {
        let p = self.pos[i];
        let (w, b) = (p / 64, 1u64 << (p % 64));
        let bits = if self.kops[i].definite { &mut self.def_bits } else { &mut self.opt_bits };
        if on {
            bits[w] |= b;
        } else {
            bits[w] &= !b;
        }
        if self.kops[i].definite {
            if on {
                while self.lo_word < self.def_bits.len() && self.def_bits[self.lo_word] == !0 {
                    self.lo_word += 1;
                }
            } else {
                self.lo_word = self.lo_word.min(w);
            }
        }
        self.linearized[i] = on;
        if self.kops[i].definite {
            self.hash ^= self.zobrist[i];
        } else {
            self.opt_hash ^= self.zobrist[i];
        }
    }

    /// The exact, compact encoding of the current set of linearized definite ops.
    fn encode(&mut self, def_hi: i64) {
        let lo = self.lo_word;
        let hi_word = if def_hi < 0 { 0 } else { def_hi as usize / 64 };
        self.key_buf.clear();
        if def_hi >= 0 && hi_word >= lo {
            self.key_buf.push(lo as u64 | (hi_word as u64) << 32);
            self.key_buf.extend_from_slice(&self.def_bits[lo..=hi_word]);
        } else {
            self.key_buf.push(lo as u64 | u64::MAX << 32);
        }
    }

    /// Linearizes op `i` (whose step from the current state gives `new_state`)
    /// unless the cache prunes the resulting configuration. Returns false (and
    /// changes nothing) if it does.
    fn push(&mut self, i: usize, new_state: u32) -> bool {
        self.set_bit(i, true);
        let prev_hi = self.stack.last().map_or(-1, |f| f.def_hi);
        let def_hi = if self.kops[i].definite { prev_hi.max(self.pos[i] as i64) } else { prev_hi };
        self.encode(def_hi);
        let last_optional = !self.kops[i].definite;
        let h = self.hash ^ Self::state_hash(new_state) ^ if last_optional { 0x0f0f_5555_3333_cccc } else { 0 };
        let key = std::mem::take(&mut self.key_buf);
        let entry = self.cache.insert(h, splitmix64(h ^ self.opt_hash), &key, &self.opt_bits, new_state, last_optional);
        self.key_buf = key;
        let Some(entry) = entry else {
            self.set_bit(i, false);
            return false;
        };
        self.stack.push(Frame { op: i, state: self.state, def_hi, entry });
        if self.kops[i].step.replaces() {
            self.replacing_left -= 1;
        }
        while self.read_cursor < self.reads.len() && self.linearized[self.reads[self.read_cursor].0] {
            self.read_cursor += 1;
        }
        if !self.kops[i].definite {
            self.class_used[self.class[i] as usize] += 1;
        }
        self.state = new_state;
        for e in [2 * i + 1, 2 * i + 2] {
            self.next[self.prev[e]] = self.next[e];
            self.prev[self.next[e]] = self.prev[e];
        }
        if self.kops[i].definite {
            self.done += 1;
            if self.done > self.best.done {
                self.best.done = self.done;
                self.best.linearized.copy_from_slice(&self.linearized);
                self.best.state = self.state;
                let from = self.stack.len().saturating_sub(3);
                self.best.tail = self.stack[from..].iter().map(|f| f.op).collect();
            }
        }
        true
    }

    /// Undoes the last linearization, whose configuration has been fully
    /// explored without success.
    fn pop(&mut self) {
        let f = self.stack.pop().expect("pop on an empty stack");
        self.cache.finish(f.entry);
        let i = f.op;
        for e in [2 * i + 2, 2 * i + 1] {
            self.next[self.prev[e]] = e;
            self.prev[self.next[e]] = e;
        }
        self.set_bit(i, false);
        self.state = f.state;
        if self.kops[i].step.replaces() {
            self.replacing_left += 1;
        }
        if self.read_rank[i] != NONE {
            self.read_cursor = self.read_cursor.min(self.read_rank[i] as usize);
        }
        if self.kops[i].definite {
            self.done -= 1;
        } else {
            self.class_used[self.class[i] as usize] -= 1;
        }
    }

    /// Computes the moves to try from the current configuration and appends
    /// them to `cands`.
    ///
    /// The pending calls are those before the first return in the list (the
    /// first operation that must be linearized by its completion). If one of
    /// them is a definite pure observer (an operation that never changes any
    /// state: a read, a mismatching cas, a cas of x to x) whose step is valid
    /// now, it is the only move: if the configuration has any linearization,
    /// it has one starting with that operation — moving it to the front keeps
    /// every other step valid (it changes nothing, wherever it is) and breaks
    /// no real-time order (its invocation precedes every pending completion).
    /// (A write of the current value does not qualify: later on, it might
    /// change the state.) Otherwise all pending calls are tried, definite ones
    /// by earliest completion first, then optional ones by invocation.
    fn moves(&mut self) {
        let start = self.cands.len();
        let mut e = self.next[0];
        while e != self.tail && e % 2 == 1 {
            let i = (e - 1) / 2;
            let k = &self.kops[i];
            let observer = match k.step {
                Step::Read(_) | Step::CasMismatch { .. } => true,
                Step::Cas { expected, new } => expected == new,
                _ => false,
            };
            if k.definite && observer && self.values.step(self.state, k.step).is_some() {
                self.cands.truncate(start);
                self.cands.push(i as u32);
                return;
            }
            self.cands.push(i as u32);
            e = self.next[e];
        }
        let kops = &self.kops;
        self.cands[start..].sort_unstable_by_key(|&i| {
            let k = &kops[i as usize];
            (!k.definite, k.ret_time(), k.op.invoke_at, i)
        });
    }

    /// Whether optional operation `i` is worth linearizing now, giving `new_state`.
    fn optional_move_useful(&self, i: usize, new_state: u32) -> bool {
        // With no effect here it is pointless: leaving it out is always allowed.
        if new_state == self.state {
            return false;
        }
        // Identical pending optional operations are interchangeable: only the
        // first (by invocation) not yet linearized is tried.
        if self.rank[i] != self.class_used[self.class[i] as usize] {
            return false;
        }
        !self.write_after_optional(i)
    }

    /// Whether op `i` is a write and the last operation linearized is optional.
    /// Such a move is never needed: the write would make that optional
    /// operation pointless (see [`Search::run`]).
    fn write_after_optional(&self, i: usize) -> bool {
        matches!(self.kops[i].step, Step::Write(_)) && self.last_optional()
    }

    fn last_optional(&self) -> bool {
        self.stack.last().is_some_and(|f| !self.kops[f.op].definite)
    }

    /// The search: a depth-first search over configurations, each trying the
    /// moves computed by [`Search::moves`], skipping the pointless ones and
    /// those leading to configurations already covered by the cache.
    fn run(&mut self, max_states: u64) -> SearchResult {
        loop {
            if self.arrived {
                if self.done == self.total_definite {
                    return SearchResult::Linearizable;
                }
                if self.cache.len() > max_states {
                    // Paused: calling `run` again resumes right here.
                    return SearchResult::OutOfBudget;
                }
                self.arrived = false;
                let start = self.cands.len();
                self.moves();
                self.levels.push((start, start));
            }
            let level = self.levels.last_mut().expect("a level per configuration");
            if level.1 == self.cands.len() {
                // No move from here leads to a linearization.
                self.cands.truncate(level.0);
                self.levels.pop();
                if self.levels.is_empty() {
                    return SearchResult::NotLinearizable;
                }
                self.pop();
                continue;
            }
            let i = self.cands[level.1] as usize;
            level.1 += 1;
            let k = &self.kops[i];
            let (definite, step) = (k.definite, k.step);
            if let Some(new_state) = self.values.step(self.state, step) {
                let useful =
                    if definite { !self.write_after_optional(i) } else { self.optional_move_useful(i, new_state) };
                if !useful {
                    continue;
                }
                if self.contradicts_reads(i, new_state) {
                    self.note_pruned(i, new_state);
                } else if self.push(i, new_state) {
                    self.arrived = true;
                }
            }
        }
    }

    /// Would linearizing `i` (reaching `new_state`) contradict a read still to
    /// be linearized? Once no operation left can replace the state, it can
    /// only grow by appends until each remaining read, so every such read
    /// must observe an extension of `new_state`. Only the first few
    /// unlinearized reads (by completion) are looked at: checking fewer only
    /// prunes less. This turns the search for the order of concurrent
    /// appends, exponential without it, into a walk guided by what the reads
    /// saw.
    fn contradicts_reads(&self, i: usize, new_state: u32) -> bool {
        let replacing = self.replacing_left - u32::from(self.kops[i].step.replaces());
        if replacing > 0 {
            return false;
        }
        let mut looked = 0;
        for &(read, value) in self.reads[self.read_cursor..].iter().take(READ_LOOKAHEAD_SCAN) {
            if read == i || self.linearized[read] {
                continue;
            }
            if !self.values.is_prefix(new_state, value) {
                return true;
            }
            looked += 1;
            if looked == READ_LOOKAHEAD {
                break;
            }
        }
        false
    }

    /// A move `contradicts_reads` pruned is still a valid step: if it makes
    /// the longest prefix yet, remember it for the explanation (which then
    /// shows the read that rules it out).
    fn note_pruned(&mut self, i: usize, new_state: u32) {
        if !self.kops[i].definite || self.done < self.best.done {
            return;
        }
        self.best.done = self.done + 1;
        self.best.linearized.copy_from_slice(&self.linearized);
        self.best.linearized[i] = true;
        self.best.state = new_state;
        let from = self.stack.len().saturating_sub(2);
        self.best.tail = self.stack[from..].iter().map(|f| f.op).chain([i]).collect();
    }

    /// Approximate bytes this search holds (its cache, values and lists).
    fn memory_bytes(&self) -> u64 {
        self.cache.memory_bytes() + self.values.memory_bytes() + (self.kops.len() as u64) * 96
    }
}

/// How many unlinearized reads [`Search::contradicts_reads`] compares with
/// a new state, and how far along the reads it looks for them.
const READ_LOOKAHEAD: usize = 4;
const READ_LOOKAHEAD_SCAN: usize = 64;

impl KeyOp<'_> {
    /// Completion time; +infinity for optional (unknown) operations.
    fn ret_time(&self) -> u64 {
        match (self.definite, self.op.complete_at) {
            (true, Some(t)) => t.max(self.op.invoke_at),
            _ => u64::MAX,
        }
    }
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
mod tests {
    use super::*;
    use crate::history::{Function as F, Outcome as O, Value as V};
    use proptest::prelude::*;

    fn op(process: u64, function: F, outcome: O, invoke_at: u64, complete_at: Option<u64>) -> Operation {
        Operation { process, key: None, function, outcome, invoke_at, complete_at }
    }
    fn read(p: u64, v: V, i: u64, c: u64) -> Operation {
        op(p, F::Read, O::Ok { read: Some(v) }, i, Some(c))
    }
    fn write(p: u64, v: V, i: u64, c: u64) -> Operation {
        op(p, F::Write(v), O::Ok { read: None }, i, Some(c))
    }
    fn write_unknown(p: u64, v: V, i: u64) -> Operation {
        op(p, F::Write(v), O::Unknown, i, None)
    }
    fn cas(p: u64, e: V, n: V, outcome: O, i: u64, c: Option<u64>) -> Operation {
        op(p, F::Cas { expected: e, new: n }, outcome, i, c)
    }
    fn hist(ops: Vec<Operation>) -> History {
        History { initial: V::Nil, operations: ops }
    }
    fn verdict(h: &History) -> Verdict {
        check(h, &SearchLimits::default())
    }
    fn lin(h: &History) -> bool {
        match verdict(h) {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable { .. } => false,
            Verdict::Unknown { reason, .. } => panic!("unknown: {reason}"),
        }
    }
    use V::Int as I;

    #[test]
    fn empty_and_trivial() {
        assert!(lin(&hist(vec![])));
        assert!(lin(&hist(vec![read(0, V::Nil, 0, 1)])));
        assert!(!lin(&hist(vec![read(0, I(1), 0, 1)])));
        assert!(lin(&hist(vec![write_unknown(0, I(1), 0)])));
        assert!(lin(&hist(vec![op(0, F::Read, O::Unknown, 0, None)])));
    }

    #[test]
    fn sequential_write_then_read() {
        assert!(lin(&hist(vec![write(0, I(1), 0, 1), read(1, I(1), 2, 3)])));
    }

    #[test]
    fn stale_read_is_not_linearizable() {
        let h = hist(vec![write(0, I(1), 0, 1), write(0, I(2), 2, 3), read(1, I(1), 4, 5)]);
        let v = verdict(&h);
        let Verdict::NotLinearizable { key, explanation } = v else { panic!("{v:?}") };
        assert_eq!(key, None);
        assert!(explanation.contains("process 1 read -> ok, read 1 [invoked 4, completed 5]"), "{explanation}");
        assert!(explanation.contains("after which the value is 2"), "{explanation}");
    }

    #[test]
    fn lost_write_is_not_linearizable() {
        // A write acknowledged before a read that sees the initial value.
        assert!(!lin(&hist(vec![write(0, I(1), 0, 1), read(1, V::Nil, 2, 3)])));
        // Two acknowledged sequential writes; a later read sees the first one.
        assert!(!lin(&hist(vec![
            write(0, I(1), 0, 1),
            write(1, I(2), 2, 3),
            read(2, I(2), 4, 5),
            read(2, I(1), 6, 7),
        ])));
    }

    #[test]
    fn cas_semantics() {
        // cas on the wrong value.
        assert!(!lin(&hist(vec![write(0, I(1), 0, 1), cas(1, I(2), I(3), O::Ok { read: None }, 2, Some(3))])));
        assert!(lin(&hist(vec![
            write(0, I(1), 0, 1),
            cas(1, I(1), I(3), O::Ok { read: None }, 2, Some(3)),
            read(0, I(3), 4, 5)
        ])));
        // A mismatch constrains the state.
        assert!(!lin(&hist(vec![write(0, I(1), 0, 1), cas(1, I(1), I(3), O::CasMismatch, 2, Some(3))])));
        assert!(lin(&hist(vec![write(0, I(1), 0, 1), cas(1, I(2), I(3), O::CasMismatch, 2, Some(3))])));
        // Unknown cas: effect only if the value matched.
        assert!(lin(&hist(vec![write(0, I(1), 0, 1), cas(1, I(1), I(5), O::Unknown, 2, None), read(0, I(5), 4, 5)])));
        assert!(!lin(&hist(vec![write(0, I(1), 0, 1), cas(1, I(2), I(5), O::Unknown, 2, None), read(0, I(5), 4, 5)])));
    }

    #[test]
    fn unknown_write_that_must_have_happened() {
        assert!(lin(&hist(vec![write_unknown(0, I(7), 0), read(1, I(7), 5, 6)])));
        // ... but not before it was invoked.
        assert!(!lin(&hist(vec![read(1, I(7), 0, 1), write_unknown(0, I(7), 2)])));
        // Once it happened, it cannot un-happen.
        assert!(!lin(&hist(vec![write_unknown(0, I(7), 0), read(1, I(7), 5, 6), read(1, V::Nil, 7, 8)])));
    }

    #[test]
    fn unknown_write_that_may_never_happen() {
        assert!(lin(&hist(vec![
            write_unknown(0, I(7), 0),
            read(1, V::Nil, 5, 6),
            write(1, I(2), 7, 8),
            read(1, I(2), 9, 10),
        ])));
        // It may also happen late, after other operations.
        assert!(lin(&hist(vec![
            write_unknown(0, I(7), 0),
            write(1, I(2), 7, 8),
            read(1, I(2), 9, 10),
            read(1, I(7), 11, 12),
        ])));
    }

    #[test]
    fn concurrent_ops_in_either_order() {
        // Two overlapping writes; reads after both see either — consistently.
        let base = || vec![write(0, I(1), 0, 10), write(1, I(2), 1, 9)];
        for last in [1, 2] {
            let mut ops = base();
            ops.push(read(2, I(last), 11, 12));
            assert!(lin(&hist(ops)), "last {last}");
        }
        let mut ops = base();
        ops.push(read(2, I(1), 11, 12));
        ops.push(read(2, I(2), 13, 14));
        assert!(!lin(&hist(ops)));
        // A read concurrent with a write may see the old or the new value.
        for seen in [V::Nil, I(1)] {
            assert!(lin(&hist(vec![write(0, I(1), 0, 10), read(1, seen, 2, 3)])));
        }
        // Touching intervals (complete == invoke) overlap.
        assert!(lin(&hist(vec![write(0, I(1), 0, 5), read(1, V::Nil, 5, 6)])));
        assert!(!lin(&hist(vec![write(0, I(1), 0, 4), read(1, V::Nil, 5, 6)])));
    }

    #[test]
    fn append_and_delete() {
        let h = History {
            initial: V::Str(String::new()),
            operations: vec![
                op(0, F::Append(V::Str("a".into())), O::Ok { read: None }, 0, Some(1)),
                op(1, F::Append(V::Str("b".into())), O::Ok { read: None }, 0, Some(1)),
                read(2, V::Str("ba".into()), 2, 3),
            ],
        };
        assert!(lin(&h));
        let mut bad = h.clone();
        bad.operations[2] = read(2, V::Str("a".into()), 2, 3);
        assert!(!lin(&bad));
        // Append on Nil treats Nil as "".
        assert!(lin(&hist(vec![
            op(0, F::Append(V::Str("x".into())), O::Ok { read: None }, 0, Some(1)),
            read(1, V::Str("x".into()), 2, 3),
            op(0, F::Delete, O::Ok { read: None }, 4, Some(5)),
            read(1, V::Nil, 6, 7),
        ])));
    }

    #[test]
    fn keys_are_independent_and_reported() {
        let mut a = write(0, I(1), 0, 1);
        a.key = Some("a".into());
        let mut b = read(1, I(1), 2, 3);
        b.key = Some("b".into());
        let h = hist(vec![a, b]);
        let v = verdict(&h);
        assert!(
            matches!(&v, Verdict::NotLinearizable { key: Some(k), explanation } if k == "b" && explanation.contains("key \"b\"")),
            "{v:?}"
        );
    }

    /// Key "a" (checked first in key order) is exponentially hard: 22
    /// concurrent writes, then two reads that no order explains, so the
    /// search must refute every subset of the writes. Key "b" is plainly not
    /// linearizable. With no per-key limit, "b" is still found at once: keys
    /// take turns, so "a" never holds the check.
    #[test]
    fn a_hard_key_does_not_hold_up_another_keys_violation() {
        let keyed = |mut operation: Operation, key: &str| {
            operation.key = Some(key.to_string());
            operation
        };
        let mut operations: Vec<Operation> = (0..22).map(|p| keyed(write(p, I(p as i64), 0, 100), "a")).collect();
        operations.push(keyed(read(30, I(1), 200, 210), "a"));
        operations.push(keyed(read(31, I(2), 300, 310), "a"));
        operations.push(keyed(write(40, I(1), 0, 1), "b"));
        operations.push(keyed(write(40, I(2), 2, 3), "b"));
        operations.push(keyed(read(41, I(1), 4, 5), "b"));
        let limits = SearchLimits { max_states_per_key: u64::MAX, ..SearchLimits::default() };
        let v = check(&hist(operations), &limits);
        assert!(matches!(&v, Verdict::NotLinearizable { key: Some(key), .. } if key == "b"), "{v:?}");
    }

    /// When the searches together outgrow the memory budget, the largest is
    /// given up and the verdict says so.
    #[test]
    fn the_memory_budget_gives_up_the_largest_search() {
        let mut operations: Vec<Operation> = (0..22).map(|p| write(p, I(p as i64), 0, 100)).collect();
        operations.push(read(30, I(1), 200, 210));
        operations.push(read(31, I(2), 300, 310));
        let limits = SearchLimits { max_states_per_key: u64::MAX, max_memory_bytes: 8 << 20 };
        let v = check(&hist(operations), &limits);
        let Verdict::Unknown { reason, .. } = &v else { panic!("{v:?}") };
        assert!(reason.contains("max_memory_bytes = 8 MB"), "{reason}");
    }

    #[test]
    fn budget_exhaustion_gives_unknown() {
        // Many concurrent writes, then reads that cannot both be right: the
        // search must explore many orders of the writes before refuting it.
        let mut ops: Vec<Operation> = (0..12).map(|p| write(p, I(p as i64), 0, 100)).collect();
        ops.push(read(99, I(1), 101, 102));
        ops.push(read(99, I(2), 103, 104));
        let h = hist(ops);
        let v = check(&h, &SearchLimits { max_states_per_key: 50, ..SearchLimits::default() });
        assert!(
            matches!(&v, Verdict::Unknown { key: None, reason } if reason.contains("max_states_per_key = 50")),
            "{v:?}"
        );
        assert!(!lin(&h));
    }

    #[test]
    fn many_concurrent_writes() {
        // 14 fully concurrent writes with reads; linearizable. Exercises the
        // cache (without it the search would try 14! orders).
        let mut ops: Vec<Operation> = (0..14).map(|p| write(p, I(p as i64), 0, 1000)).collect();
        ops.push(read(100, I(13), 1001, 1002));
        assert!(lin(&hist(ops.clone())));
        ops.push(read(100, I(3), 1003, 1004));
        assert!(!lin(&hist(ops)));
    }

    // ---- differential test against a brute-force reference ----

    fn text(v: &V) -> String {
        match v {
            V::Nil => String::new(),
            V::Int(i) => format!("{i}"),
            V::Str(s) => s.clone(),
        }
    }

    /// Applies `o` to `state`; None if it cannot happen there.
    fn reference_step(o: &Operation, state: &V) -> Option<V> {
        let unknown = o.outcome == O::Unknown;
        match (&o.function, &o.outcome) {
            (F::Read, O::Ok { read: Some(v) }) => (v == state).then(|| state.clone()),
            (F::Read, _) => Some(state.clone()),
            (F::Write(v), _) => Some(v.clone()),
            (F::Delete, _) => Some(V::Nil),
            (F::Append(v), _) => Some(V::Str(text(state) + &text(v))),
            (F::Cas { expected, .. }, O::CasMismatch) => (expected != state).then(|| state.clone()),
            (F::Cas { expected, new }, _) => {
                if expected == state {
                    Some(new.clone())
                } else if unknown {
                    Some(state.clone())
                } else {
                    None
                }
            }
        }
    }

    /// Tries every order consistent with real time, each unknown operation
    /// either placed somewhere or left out.
    fn reference_linearizable(h: &History) -> bool {
        fn dfs(h: &History, placed: &mut Vec<bool>, state: &mut BTreeMap<Option<String>, V>) -> bool {
            let ops = &h.operations;
            let definite_left = (0..ops.len()).any(|i| !placed[i] && ops[i].outcome != O::Unknown);
            if !definite_left {
                return true;
            }
            for j in 0..ops.len() {
                if placed[j] {
                    continue;
                }
                // Every unplaced completed op that finished before j started blocks j.
                let blocked = (0..ops.len()).any(|i| {
                    !placed[i]
                        && i != j
                        && ops[i].outcome != O::Unknown
                        && ops[i].complete_at.unwrap() < ops[j].invoke_at
                });
                if blocked {
                    continue;
                }
                let cur = state.get(&ops[j].key).cloned().unwrap_or_else(|| h.initial.clone());
                if let Some(next) = reference_step(&ops[j], &cur) {
                    placed[j] = true;
                    state.insert(ops[j].key.clone(), next);
                    let ok = dfs(h, placed, state);
                    state.insert(ops[j].key.clone(), cur);
                    placed[j] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        dfs(h, &mut vec![false; h.operations.len()], &mut BTreeMap::new())
    }

    fn arb_small_value() -> impl Strategy<Value = V> {
        prop_oneof![Just(V::Nil), (0i64..3).prop_map(V::Int), Just(V::Str("a".into())), Just(V::Str("ab".into()))]
    }

    fn arb_op() -> impl Strategy<Value = Operation> {
        (0u64..3, 0u8..6, arb_small_value(), arb_small_value(), 0u8..5, 0u64..12, 0u64..6, 0u8..4).prop_map(
            |(process, fk, v1, v2, ok, invoke_at, dur, key)| {
                let function = match fk {
                    0 | 1 => F::Read,
                    2 => F::Write(v1),
                    3 => F::Cas { expected: v1, new: v2.clone() },
                    4 => F::Append(if v1 == V::Nil { V::Str("b".into()) } else { v1 }),
                    _ => F::Delete,
                };
                let outcome = match (ok, &function) {
                    (0, _) => O::Unknown,
                    (1, F::Cas { .. }) => O::CasMismatch,
                    (_, F::Read) => O::Ok { read: Some(v2) },
                    _ => O::Ok { read: None },
                };
                let complete_at = (outcome != O::Unknown).then_some(invoke_at + dur);
                let key = match key {
                    3 => Some("k".to_string()),
                    _ => None,
                };
                Operation { process, key, function, outcome, invoke_at, complete_at }
            },
        )
    }

    fn arb_history() -> impl Strategy<Value = History> {
        (
            prop::collection::vec(arb_op(), 0..=7),
            prop_oneof![Just(V::Nil), Just(V::Str(String::new())), Just(V::Int(0))],
        )
            .prop_map(|(operations, initial)| History { initial, operations })
    }

    proptest! {
        // PROPTEST_CASES overrides the number of cases.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3000),
            ..ProptestConfig::default()
        })]
        #[test]
        fn agrees_with_brute_force(h in arb_history()) {
            let expected = reference_linearizable(&h);
            let got = verdict(&h);
            prop_assert!(!matches!(got, Verdict::Unknown { .. }), "unknown: {:?}", got);
            prop_assert_eq!(got.is_linearizable(), expected, "history: {:#?}\nverdict: {:?}", h, got);
        }
    }

    /// Appends of one letter and reads of short strings of those letters: the
    /// histories where the read lookahead (`Search::contradicts_reads`)
    /// prunes, so that it is compared with the definition.
    fn arb_append_op() -> impl Strategy<Value = Operation> {
        const SEEN: [&str; 9] = ["", "a", "b", "ab", "ba", "abc", "bac", "ac", "cab"];
        (0u64..3, any::<bool>(), 0usize..3, 0usize..SEEN.len(), 0u8..6, 0u64..12, 0u64..6).prop_map(
            |(process, append, letter, seen, ok, invoke_at, dur)| {
                let function = if append { F::Append(V::Str(["a", "b", "c"][letter].to_string())) } else { F::Read };
                let outcome = match (ok, &function) {
                    (0, _) => O::Unknown,
                    (_, F::Read) => O::Ok { read: Some(V::Str(SEEN[seen].to_string())) },
                    _ => O::Ok { read: None },
                };
                let complete_at = (outcome != O::Unknown).then_some(invoke_at + dur);
                Operation { process, key: None, function, outcome, invoke_at, complete_at }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3000),
            ..ProptestConfig::default()
        })]
        #[test]
        fn agrees_with_brute_force_on_append_histories(
            operations in prop::collection::vec(arb_append_op(), 0..=7)
        ) {
            let h = History { initial: V::Nil, operations };
            let expected = reference_linearizable(&h);
            let got = verdict(&h);
            prop_assert!(!matches!(got, Verdict::Unknown { .. }), "unknown: {:?}", got);
            prop_assert_eq!(got.is_linearizable(), expected, "history: {:#?}\nverdict: {:?}", h, got);
        }
    }

    #[test]
    fn append_histories_produce_both_verdicts() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = prop::collection::vec(arb_append_op(), 3..=7);
        let (mut linearizable, mut not) = (0, 0);
        for _ in 0..500 {
            let operations = strategy.new_tree(&mut runner).expect("a history").current();
            if reference_linearizable(&History { initial: V::Nil, operations }) {
                linearizable += 1;
            } else {
                not += 1;
            }
        }
        assert!(linearizable >= 25 && not >= 25, "{linearizable} linearizable, {not} not");
    }

    /// Reference for larger histories: the definition of linearizability as a
    /// plain memoised search over (set of linearized ops, register states).
    fn reference_memo(h: &History) -> bool {
        type States = BTreeMap<Option<String>, V>;
        fn go(h: &History, mask: u64, st: &mut States, failed: &mut std::collections::HashSet<(u64, States)>) -> bool {
            let ops = &h.operations;
            let n = ops.len();
            if (0..n).all(|i| mask & (1 << i) != 0 || ops[i].outcome == O::Unknown) {
                return true;
            }
            if failed.contains(&(mask, st.clone())) {
                return false;
            }
            for j in 0..n {
                if mask & (1 << j) != 0 {
                    continue;
                }
                let blocked = (0..n).any(|i| {
                    mask & (1 << i) == 0
                        && i != j
                        && ops[i].outcome != O::Unknown
                        && ops[i].complete_at.unwrap() < ops[j].invoke_at
                });
                if blocked {
                    continue;
                }
                let cur = st.get(&ops[j].key).cloned().unwrap_or_else(|| h.initial.clone());
                if let Some(next) = reference_step(&ops[j], &cur) {
                    st.insert(ops[j].key.clone(), next);
                    let ok = go(h, mask | 1 << j, st, failed);
                    st.insert(ops[j].key.clone(), cur);
                    if ok {
                        return true;
                    }
                }
            }
            failed.insert((mask, st.clone()));
            false
        }
        assert!(h.operations.len() <= 64);
        go(h, 0, &mut BTreeMap::new(), &mut std::collections::HashSet::new())
    }

    /// Medium histories: a few sequential processes, outcomes computed from a
    /// real execution (with random linearization points and unknown outcomes
    /// that did or did not take effect), then possibly one outcome corrupted.
    fn arb_medium_history() -> impl Strategy<Value = History> {
        (any::<u64>(), 2usize..5, 8usize..26, 0u32..40, any::<bool>(), any::<bool>()).prop_map(
            |(seed, procs, nops, unknown_pct, corrupt, two_keys)| {
                let mut x = seed | 1;
                let mut rnd = move |n: u64| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % n
                };
                let val = |r: u64| if r == 0 { V::Nil } else { V::Int(r as i64) };
                let mut free = vec![0u64; procs];
                let mut planned = Vec::new();
                for _ in 0..nops {
                    let p = rnd(procs as u64) as usize;
                    let inv = free[p] + rnd(4);
                    let dur = rnd(8);
                    free[p] = inv + dur + 1;
                    let lin_point = inv * 2 + rnd(2 * dur + 1);
                    let function = match rnd(6) {
                        0 | 1 => F::Read,
                        2 | 3 => F::Write(val(rnd(4))),
                        4 => F::Cas { expected: val(rnd(4)), new: val(rnd(4)) },
                        _ => F::Delete,
                    };
                    let unknown = (rnd(100) as u32) < unknown_pct;
                    let happens = !unknown || rnd(2) == 0;
                    let key = if two_keys && rnd(2) == 0 { Some("b".to_string()) } else { None };
                    planned.push((lin_point, p as u64, key, function, inv, inv + dur, unknown, happens));
                }
                planned.sort_by_key(|t| t.0);
                let mut st: BTreeMap<Option<String>, V> = BTreeMap::new();
                let mut ops = Vec::new();
                for (_, process, key, function, inv, comp, unknown, happens) in planned {
                    let cur = st.get(&key).cloned().unwrap_or(V::Nil);
                    let (outcome, next) = match &function {
                        F::Read => (O::Ok { read: Some(cur.clone()) }, cur.clone()),
                        F::Write(v) => (O::Ok { read: None }, v.clone()),
                        F::Delete => (O::Ok { read: None }, V::Nil),
                        F::Cas { expected, new } if *expected == cur => (O::Ok { read: None }, new.clone()),
                        F::Cas { .. } => (O::CasMismatch, cur.clone()),
                        F::Append(_) => unreachable!(),
                    };
                    if happens {
                        st.insert(key.clone(), next);
                    }
                    let (outcome, complete_at) = if unknown { (O::Unknown, None) } else { (outcome, Some(comp)) };
                    ops.push(Operation { process, key, function, outcome, invoke_at: inv, complete_at });
                }
                for _ in 0..if corrupt { 2 } else { 0 } {
                    let i = rnd(ops.len() as u64) as usize;
                    let o = &mut ops[i];
                    o.outcome = match (&o.function, &o.outcome) {
                        (_, O::Unknown) => O::Unknown,
                        (F::Read, _) => O::Ok { read: Some(val(rnd(4))) },
                        (F::Cas { .. }, O::Ok { .. }) => O::CasMismatch,
                        (F::Cas { .. }, O::CasMismatch) => O::Ok { read: None },
                        (_, other) => other.clone(),
                    };
                }
                ops.sort_by_key(|o| o.invoke_at);
                History { initial: V::Nil, operations: ops }
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400),
            ..ProptestConfig::default()
        })]
        #[test]
        fn agrees_with_memoised_reference_on_medium_histories(h in arb_medium_history()) {
            let expected = reference_memo(&h);
            let got = verdict(&h);
            prop_assert!(!matches!(got, Verdict::Unknown { .. }), "unknown: {:?}", got);
            prop_assert_eq!(got.is_linearizable(), expected, "history: {:#?}\nverdict: {:?}", h, got);
        }
    }

    #[test]
    fn medium_generator_produces_both_verdicts() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strat = arb_medium_history();
        let (mut yes, mut no) = (0, 0);
        for _ in 0..300 {
            let h = strat.new_tree(&mut runner).unwrap().current();
            if reference_memo(&h) {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 60 && no > 60, "linearizable {yes}, not {no}");
    }

    /// The generator must produce both verdicts often, or the differential
    /// test above proves little.
    #[test]
    fn generator_produces_both_verdicts() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strat = arb_history();
        let (mut yes, mut no) = (0, 0);
        for _ in 0..1000 {
            let h = strat.new_tree(&mut runner).unwrap().current();
            if reference_linearizable(&h) {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 200 && no > 200, "linearizable {yes}, not {no}");
    }
}
