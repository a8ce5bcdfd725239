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
    assert!(!lin(&hist(vec![write(0, I(1), 0, 1), write(1, I(2), 2, 3), read(2, I(2), 4, 5), read(2, I(1), 6, 7),])));
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
                !placed[i] && i != j && ops[i].outcome != O::Unknown && ops[i].complete_at.unwrap() < ops[j].invoke_at
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
    (prop::collection::vec(arb_op(), 0..=7), prop_oneof![Just(V::Nil), Just(V::Str(String::new())), Just(V::Int(0))])
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
