//! The timeline as Chrome trace-event JSON (`{"traceEvents": [...]}`), which
//! Perfetto UI (ui.perfetto.dev) and `chrome://tracing` open. Timestamps are
//! microseconds of simulated time.
//!
//! Layout: process 0 is the cluster (thread 1 the network's partitions,
//! thread 2 cluster-wide faults and the verdict); process `i + 1` is node
//! `n{i+1}` (thread 1 its role, thread 2 its pauses, thread 3 its messages,
//! each a 1 µs slice joined sender to receiver by a flow arrow); the last
//! process holds the clients, one thread per client process.

use super::{Fate, Layer, Timeline};
use serde_json::{json, Value};

/// Thread of a node's role spans and marks.
const ROLE_THREAD: u64 = 1;
/// Thread of a node's pauses.
const PAUSE_THREAD: u64 = 2;
/// Thread of a node's messages.
const MESSAGE_THREAD: u64 = 3;

/// The trace-event JSON of `timeline`.
pub fn render(timeline: &Timeline) -> String {
    let clients_pid = timeline.lanes.len() as u64 + 1;
    let mut events = names(timeline, clients_pid);
    spans(timeline, &mut events);
    marks(timeline, &mut events);
    messages(timeline, &mut events);
    ops(timeline, clients_pid, &mut events);
    let verdict = &timeline.verdict;
    events.push(json!({
        "ph": "i", "s": "g", "pid": 0, "tid": 2, "ts": verdict.at_us, "cat": "verdict",
        "name": first_line(&verdict.text), "args": { "verdict": verdict.text, "more": verdict.more },
    }));
    let document = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "title": timeline.title, "profile": timeline.profile, "trace_hash": timeline.trace_hash,
            "messages_total": timeline.messages_total, "messages_note": timeline.messages_note,
        },
    });
    serde_json::to_string(&document).expect("invariant: JSON values always serialize")
}

/// Process and thread names.
fn names(timeline: &Timeline, clients_pid: u64) -> Vec<Value> {
    let process =
        |pid: u64, name: &str| json!({ "ph": "M", "name": "process_name", "pid": pid, "args": { "name": name } });
    let thread = |pid: u64, tid: u64, name: &str| json!({ "ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": { "name": name } });
    let mut events = vec![process(0, "cluster"), thread(0, 1, "network"), thread(0, 2, "faults")];
    for (lane, name) in timeline.lanes.iter().enumerate() {
        let pid = lane as u64 + 1;
        events.push(process(pid, name));
        events.push(json!({ "ph": "M", "name": "process_sort_index", "pid": pid, "args": { "sort_index": pid } }));
        events.push(thread(pid, ROLE_THREAD, "role"));
        events.push(thread(pid, PAUSE_THREAD, "paused"));
        events.push(thread(pid, MESSAGE_THREAD, "messages"));
    }
    events.push(process(clients_pid, "clients"));
    let mut processes: Vec<u64> = timeline.ops.iter().map(|op| op.process).collect();
    processes.sort_unstable();
    processes.dedup();
    for process in processes {
        events.push(thread(clients_pid, process + 1, &format!("client p{process}")));
    }
    events
}

fn spans(timeline: &Timeline, events: &mut Vec<Value>) {
    for span in &timeline.spans {
        let (pid, tid) = match (span.lane, span.layer) {
            (None, _) => (0, 1),
            (Some(lane), Layer::Pause) => (lane as u64 + 1, PAUSE_THREAD),
            (Some(lane), _) => (lane as u64 + 1, ROLE_THREAD),
        };
        events.push(json!({
            "ph": "X", "pid": pid, "tid": tid, "ts": span.start_us,
            "dur": span.end_us.saturating_sub(span.start_us), "name": span.label, "cat": span.class,
        }));
    }
}

fn marks(timeline: &Timeline, events: &mut Vec<Value>) {
    for mark in &timeline.marks {
        let event = match mark.lane {
            None => {
                json!({ "ph": "i", "s": "g", "pid": 0, "tid": 2, "ts": mark.at_us, "name": mark.label, "cat": mark.class })
            }
            Some(lane) => json!({
                "ph": "i", "s": "t", "pid": lane as u64 + 1, "tid": ROLE_THREAD, "ts": mark.at_us,
                "name": mark.label, "cat": mark.class,
            }),
        };
        events.push(event);
    }
}

/// Each message: a 1 µs slice on the sender and one on the receiver, joined
/// by a flow (`s` then `f`); one that never left is an instant on the sender.
fn messages(timeline: &Timeline, events: &mut Vec<Value>) {
    for (id, message) in timeline.messages.iter().enumerate() {
        let from = message.from as u64 + 1;
        let to = message.to as u64 + 1;
        let fate = fate_name(message.fate);
        let Some(arrived) = message.arrived_us else {
            events.push(json!({
                "ph": "i", "s": "t", "pid": from, "tid": MESSAGE_THREAD, "ts": message.sent_us,
                "name": format!("{fate}: {}", message.label), "cat": "message",
            }));
            continue;
        };
        let slice = |pid: u64, ts: u64, name: String| {
            json!({ "ph": "X", "pid": pid, "tid": MESSAGE_THREAD, "ts": ts, "dur": 1, "name": name, "cat": "message",
                    "args": { "fate": fate } })
        };
        events.push(slice(from, message.sent_us, format!("send {}", message.label)));
        events.push(slice(to, arrived, format!("{fate} {}", message.label)));
        events.push(json!({ "ph": "s", "id": id, "pid": from, "tid": MESSAGE_THREAD, "ts": message.sent_us, "name": "message", "cat": "message" }));
        events.push(json!({ "ph": "f", "bp": "e", "id": id, "pid": to, "tid": MESSAGE_THREAD, "ts": arrived, "name": "message", "cat": "message" }));
    }
}

fn ops(timeline: &Timeline, clients_pid: u64, events: &mut Vec<Value>) {
    for op in &timeline.ops {
        let end = op.complete_us.unwrap_or(timeline.end_us);
        events.push(json!({
            "ph": "X", "pid": clients_pid, "tid": op.process + 1, "ts": op.invoke_us,
            "dur": end.saturating_sub(op.invoke_us).max(1),
            "name": if op.named.is_some() { format!("NAMED {}", op.label) } else { op.label.clone() },
            "cat": op.outcome, "args": { "named": op.named },
        }));
    }
}

fn fate_name(fate: Fate) -> &'static str {
    match fate {
        Fate::Delivered => "delivered",
        Fate::Lost => "lost",
        Fate::Cut => "cut",
        Fate::CutInFlight => "cut in flight",
        Fate::ReceiverDown => "receiver down",
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(200).collect()
}
