//! Writing a [`History`] back as Jepsen-style EDN.

use super::edn::write_edn_string;
use super::{Function, History, Operation, Outcome, Value};

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
/// only when [`parse_edn`](super::parse_edn) would not infer `initial` by itself.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse_auto;
    use crate::history::parse_edn;

    fn ok(read: Option<Value>) -> Outcome {
        Outcome::Ok { read }
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
    }
}
