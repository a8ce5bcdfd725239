//! The per-key search: the Wing–Gong–Lowe depth-first search over
//! configurations, with its reductions and the read lookahead.

use super::*;

/// The deepest point the search reached, for the explanation.
pub(super) struct Best {
    pub(super) done: usize,
    pub(super) linearized: Vec<bool>,
    pub(super) state: u32,
    /// The last few operations linearized, oldest first.
    pub(super) tail: Vec<usize>,
}

pub(super) fn key_label(key: Option<&str>) -> String {
    match key {
        None => "the register".to_string(),
        Some(k) => format!("key {}", Value::Str(k.to_string())),
    }
}

/// One linearized operation on the search stack.
pub(super) struct Frame {
    pub(super) op: usize,
    /// The state before the operation.
    pub(super) state: u32,
    /// Highest definite bit position linearized so far (prefix maximum), or -1.
    pub(super) def_hi: i64,
    /// The cache entry of the configuration this operation leads to.
    pub(super) entry: u32,
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
pub(super) struct Search<'h> {
    pub(super) kops: Vec<KeyOp<'h>>,
    pub(super) values: Values,
    pub(super) next: Vec<usize>,
    pub(super) prev: Vec<usize>,
    pub(super) tail: usize,
    /// Bit position of each op in `def_bits` or `opt_bits`.
    pub(super) pos: Vec<usize>,
    pub(super) def_bits: Vec<u64>,
    pub(super) opt_bits: Vec<u64>,
    /// First word of `def_bits` that is not all ones (padding bits are set).
    pub(super) lo_word: usize,
    /// Optional operations with identical steps form a class; `rank` orders a
    /// class by invocation and `class_used` counts its linearized members.
    pub(super) class: Vec<u32>,
    pub(super) rank: Vec<u32>,
    pub(super) class_used: Vec<u32>,
    pub(super) zobrist: Vec<u64>,
    /// Zobrist hashes of the linearized definite / optional operations.
    pub(super) hash: u64,
    pub(super) opt_hash: u64,
    pub(super) state: u32,
    pub(super) done: usize,
    pub(super) total_definite: usize,
    pub(super) stack: Vec<Frame>,
    pub(super) linearized: Vec<bool>,
    pub(super) cache: Cache,
    pub(super) key_buf: Vec<u64>,
    /// Moves to try, for every configuration on the current path.
    pub(super) cands: Vec<u32>,
    pub(super) best: Best,
    /// Operations not linearized whose step can replace the state (see
    /// [`Step::replaces`]); while there are none, the state can only grow
    /// by appends (see [`Search::contradicts_reads`]).
    pub(super) replacing_left: u32,
    /// Definite reads by completion time, with the value each observed.
    pub(super) reads: Vec<(usize, u32)>,
    /// Each operation's place in `reads` (`NONE` for others).
    pub(super) read_rank: Vec<u32>,
    /// No read before this place in `reads` is unlinearized.
    pub(super) read_cursor: usize,
    /// Where the search is, so that [`Search::run`] can resume: one level
    /// per configuration on the current path (where its moves start in
    /// `cands`, and the next one to try), and whether the last move arrived
    /// at a new configuration.
    pub(super) levels: Vec<(usize, usize)>,
    pub(super) arrived: bool,
}

pub(super) enum SearchResult {
    Linearizable,
    NotLinearizable,
    OutOfBudget,
}

impl<'h> Search<'h> {
    pub(super) fn new(kops: Vec<KeyOp<'h>>, values: Values, init: u32) -> Self {
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
    pub(super) fn linked_events(kops: &[KeyOp<'h>]) -> (Vec<usize>, Vec<usize>) {
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
    pub(super) fn bit_positions(kops: &[KeyOp<'h>]) -> (Vec<usize>, usize, Vec<usize>) {
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
    pub(super) fn classes(kops: &[KeyOp<'h>], opt: &[usize]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
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

    pub(super) fn state_hash(s: u32) -> u64 {
        splitmix64(s as u64 ^ 0xdead_beef_0000_0000)
    }

    pub(super) fn set_bit(&mut self, i: usize, on: bool) {
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
    pub(super) fn encode(&mut self, def_hi: i64) {
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
    pub(super) fn push(&mut self, i: usize, new_state: u32) -> bool {
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
    pub(super) fn pop(&mut self) {
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
    pub(super) fn moves(&mut self) {
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
    pub(super) fn optional_move_useful(&self, i: usize, new_state: u32) -> bool {
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
    pub(super) fn write_after_optional(&self, i: usize) -> bool {
        matches!(self.kops[i].step, Step::Write(_)) && self.last_optional()
    }

    pub(super) fn last_optional(&self) -> bool {
        self.stack.last().is_some_and(|f| !self.kops[f.op].definite)
    }

    /// The search: a depth-first search over configurations, each trying the
    /// moves computed by [`Search::moves`], skipping the pointless ones and
    /// those leading to configurations already covered by the cache.
    pub(super) fn run(&mut self, max_states: u64) -> SearchResult {
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
    pub(super) fn contradicts_reads(&self, i: usize, new_state: u32) -> bool {
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
    pub(super) fn note_pruned(&mut self, i: usize, new_state: u32) {
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
    pub(super) fn memory_bytes(&self) -> u64 {
        self.cache.memory_bytes() + self.values.memory_bytes() + (self.kops.len() as u64) * 96
    }
}

/// How many unlinearized reads [`Search::contradicts_reads`] compares with
/// a new state, and how far along the reads it looks for them.
pub(super) const READ_LOOKAHEAD: usize = 4;
pub(super) const READ_LOOKAHEAD_SCAN: usize = 64;

impl KeyOp<'_> {
    /// Completion time; +infinity for optional (unknown) operations.
    pub(super) fn ret_time(&self) -> u64 {
        match (self.definite, self.op.complete_at) {
            (true, Some(t)) => t.max(self.op.invoke_at),
            _ => u64::MAX,
        }
    }
}
