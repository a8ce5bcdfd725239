//! Traces you can look at: one run as a timeline (a lane per node with its
//! role and term, crashes and pauses; messages between nodes; faults; client
//! operations as bars; the verdict), written as a self-contained HTML page
//! ([`html`]) or as Chrome trace-event JSON for Perfetto ([`perfetto`]).
//!
//! A world fills a [`Recorder`] while it runs (only when asked to: replay
//! with `--html` or `--perfetto`); the recorder is outside the trace hash, so
//! keeping one changes nothing in the run. [`Recorder::finish`] turns it into
//! a [`Timeline`], the plain data both writers render. Everything is kept in
//! the order it happened, so the same seed gives byte-identical files.

pub mod html;
pub mod perfetto;

use serde::Serialize;

/// Most messages a timeline keeps. A run has up to millions; beyond this
/// limit every message of the last [`MAX_MESSAGES_SHOWN`]` / 2` before the
/// end of the run is kept (where a failure is) and the earlier ones are
/// sampled evenly. The page and the Perfetto file say how many were left out.
pub const MAX_MESSAGES_SHOWN: usize = 20_000;

/// Most state spans, marks or operations a timeline keeps of each; beyond
/// it the earliest are dropped (counted in [`Timeline::dropped`]).
pub const MAX_ITEMS_SHOWN: usize = 200_000;

/// One run as plain data: what the HTML page and the Perfetto file show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    /// `raft` or `swim`.
    pub system: String,
    /// One line: the seed and options of the run.
    pub title: String,
    /// The seed's fault profile, as text.
    pub profile: String,
    /// The run's trace hash, hexadecimal (as `replay` prints it).
    pub trace_hash: String,
    /// Simulated microseconds the run covered.
    pub end_us: u64,
    /// One name per node lane (`n1`, ... with the node's clock drift).
    pub lanes: Vec<String>,
    /// Stretches of time: a node's role, a pause, a partition.
    pub spans: Vec<Span>,
    /// Instants: faults, restarts, violations, the verdict.
    pub marks: Vec<Mark>,
    /// Messages between nodes (at most [`MAX_MESSAGES_SHOWN`]).
    pub messages: Vec<MessageArrow>,
    /// Messages the run sent, shown or not.
    pub messages_total: u64,
    /// How the shown messages were chosen when some were left out.
    pub messages_note: String,
    /// Client operations as bars (Raft; empty for SWIM).
    pub ops: Vec<OpBar>,
    /// The failure (or the pass).
    pub verdict: VerdictMark,
    /// Spans, marks and operations left out beyond [`MAX_ITEMS_SHOWN`].
    pub dropped: u64,
}

/// Where a span lies: on a node's lane, or on the cluster's network lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The node's role (or down): the lane's main bar.
    State,
    /// The node is paused (drawn over its state).
    Pause,
    /// A partition or cut in force (the network lane; `lane` is `None`).
    Network,
}

/// A stretch of time on one lane.
#[derive(Clone, Debug, Serialize)]
pub struct Span {
    /// The node lane, or `None` for the network lane.
    pub lane: Option<usize>,
    /// What the span shows.
    pub layer: Layer,
    /// Start, simulated microseconds.
    pub start_us: u64,
    /// End, simulated microseconds.
    pub end_us: u64,
    /// `Leader t4`, `down`, `paused`, `partition {n1,n2} | {n3}`.
    pub label: String,
    /// The style: `leader`, `candidate`, `follower`, `down`, `paused`, ...
    pub class: String,
}

/// One instant, on a node's lane or (lane `None`) the whole cluster.
#[derive(Clone, Debug, Serialize)]
pub struct Mark {
    /// The node lane, or `None` for the cluster.
    pub lane: Option<usize>,
    /// When, simulated microseconds.
    pub at_us: u64,
    /// What happened.
    pub label: String,
    /// The style: `fault`, `heal`, `restart`, `violation`, `event`, ...
    pub class: String,
}

/// What became of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// The receiver handled it.
    Delivered,
    /// Lost at random when sent.
    Lost,
    /// Cut by a partition when sent.
    Cut,
    /// Cut by a partition while in flight.
    CutInFlight,
    /// Arrived at a node that was down.
    ReceiverDown,
}

/// One message from a node to a node.
#[derive(Clone, Debug, Serialize)]
pub struct MessageArrow {
    /// The sender's lane.
    pub from: usize,
    /// The receiver's lane.
    pub to: usize,
    /// When it was sent, simulated microseconds.
    pub sent_us: u64,
    /// When it arrived (handled, or dropped on arrival); `None` if it never
    /// left.
    pub arrived_us: Option<u64>,
    /// The message in short: `Append t3 prev=i4/t2 entries=1`.
    pub label: String,
    /// What became of it.
    pub fate: Fate,
}

/// A client operation as a bar from invocation to completion.
#[derive(Clone, Debug, Serialize)]
pub struct OpBar {
    /// The client process (Jepsen's `:process`; a client that gives up on
    /// an operation continues as a new process).
    pub process: u64,
    /// The key it acts on, if any.
    pub key: Option<String>,
    /// Invoked, simulated microseconds.
    pub invoke_us: u64,
    /// Completed, or `None` if the outcome stayed unknown.
    pub complete_us: Option<u64>,
    /// The operation as the checker prints it.
    pub label: String,
    /// `ok`, `fail` or `unknown`.
    pub outcome: String,
    /// Why the checker names it, for a linearizability failure (`tail` of
    /// the longest linearizable prefix, `deadline`: had to take effect next,
    /// `candidate`: could not come next); `None` otherwise.
    pub named: Option<String>,
}

/// The verdict and when it was reached.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerdictMark {
    /// No checker failed.
    pub passed: bool,
    /// `PASS`, or `FAIL: ` and the first failure.
    pub text: String,
    /// Further failures, if any.
    pub more: Vec<String>,
    /// When, simulated microseconds (a safety failure stops the run at the
    /// step that broke it; linearizability is checked after the run).
    pub at_us: u64,
}

/// An open stretch: since when, and what it shows.
#[derive(Clone, Debug)]
struct Open {
    start_us: u64,
    label: String,
    class: String,
}

/// Collects one run's timeline while the world runs. Not part of the trace
/// hash: a world with a recorder runs exactly as one without.
#[derive(Debug, Default)]
pub struct Recorder {
    lanes: Vec<String>,
    state: Vec<Option<Open>>,
    pause: Vec<Option<Open>>,
    network: Option<Open>,
    spans: Vec<Span>,
    marks: Vec<Mark>,
    messages: Vec<MessageArrow>,
    dropped: u64,
}

impl Recorder {
    /// A recorder for nodes named `lanes` (lane `i` is node index `i`).
    pub fn new(lanes: Vec<String>) -> Recorder {
        let count = lanes.len();
        Recorder { lanes, state: vec![None; count], pause: vec![None; count], ..Recorder::default() }
    }

    /// Node `lane` is in a new state from `at_us` (`Leader t4`, class
    /// `leader`); its previous state ends there. Out-of-range lanes are
    /// ignored.
    pub fn state(&mut self, lane: usize, at_us: u64, label: String, class: &str) {
        let Some(slot) = self.state.get_mut(lane) else { return };
        let previous = slot.replace(Open { start_us: at_us, label, class: class.to_string() });
        self.close(Some(lane), Layer::State, previous, at_us);
    }

    /// Node `lane` pauses (`true`) or resumes (`false`) at `at_us`.
    pub fn pause(&mut self, lane: usize, at_us: u64, paused: bool) {
        let Some(slot) = self.pause.get_mut(lane) else { return };
        if paused {
            if slot.is_none() {
                *slot = Some(Open { start_us: at_us, label: "paused".into(), class: "paused".into() });
            }
        } else {
            let previous = slot.take();
            self.close(Some(lane), Layer::Pause, previous, at_us);
        }
    }

    /// A network cut from `at_us`, described by `label`: it `replaces`
    /// every earlier cut (a partition), or adds to them (a one-way cut, a
    /// cut link).
    pub fn network_cut(&mut self, at_us: u64, label: String, replaces: bool) {
        let previous = self.network.take();
        let label = match (&previous, replaces) {
            (Some(open), false) => format!("{} + {label}", open.label),
            _ => label,
        };
        self.network = Some(Open { start_us: at_us, label, class: "partition".into() });
        self.close(None, Layer::Network, previous, at_us);
    }

    /// Every cut heals at `at_us`.
    pub fn network_heal(&mut self, at_us: u64) {
        let previous = self.network.take();
        self.close(None, Layer::Network, previous, at_us);
    }

    /// An instant on node `lane`, or on the whole cluster (`None`).
    pub fn mark(&mut self, lane: Option<usize>, at_us: u64, label: String, class: &str) {
        if self.marks.len() >= MAX_ITEMS_SHOWN {
            self.dropped += 1;
            return;
        }
        self.marks.push(Mark { lane, at_us, label, class: class.to_string() });
    }

    /// One message (kept in full; [`Recorder::finish`] samples them).
    pub fn message(&mut self, message: MessageArrow) {
        self.messages.push(message);
    }

    fn close(&mut self, lane: Option<usize>, layer: Layer, open: Option<Open>, end_us: u64) {
        let Some(open) = open else { return };
        if self.spans.len() >= MAX_ITEMS_SHOWN {
            self.dropped += 1;
            return;
        }
        let Open { start_us, label, class } = open;
        self.spans.push(Span { lane, layer, start_us, end_us, label, class });
    }

    /// Ends every open span at `end_us` and returns the timeline, its
    /// messages limited to [`MAX_MESSAGES_SHOWN`]. The caller fills in the
    /// title, profile, hash, operations and verdict.
    pub fn finish(mut self, end_us: u64) -> Timeline {
        for lane in 0..self.lanes.len() {
            let state = self.state[lane].take();
            self.close(Some(lane), Layer::State, state, end_us);
            let pause = self.pause[lane].take();
            self.close(Some(lane), Layer::Pause, pause, end_us);
        }
        let network = self.network.take();
        self.close(None, Layer::Network, network, end_us);
        let messages_total = self.messages.len() as u64;
        let (messages, messages_note) = limit_messages(self.messages, MAX_MESSAGES_SHOWN);
        Timeline {
            end_us,
            lanes: self.lanes,
            spans: self.spans,
            marks: self.marks,
            messages,
            messages_total,
            messages_note,
            dropped: self.dropped,
            ..Timeline::default()
        }
    }
}

/// At most `limit` of `messages` (in send order): all of them if they fit;
/// otherwise the last `limit / 2` and every k-th of the earlier ones. Also
/// says what was left out.
fn limit_messages(messages: Vec<MessageArrow>, limit: usize) -> (Vec<MessageArrow>, String) {
    let total = messages.len();
    if total <= limit {
        return (messages, String::new());
    }
    let recent = limit / 2;
    let earlier = total - recent;
    let stride = earlier.div_ceil(limit - recent);
    let kept: Vec<MessageArrow> = messages
        .into_iter()
        .enumerate()
        .filter(|(index, _)| *index >= earlier || index % stride == 0)
        .map(|(_, message)| message)
        .collect();
    let note = format!(
        "{} of {total} messages shown (limit {limit}): all of the last {recent}, and one in {stride} of the {earlier} before",
        kept.len()
    );
    (kept, note)
}

/// Keeps at most [`MAX_ITEMS_SHOWN`] operations (the earliest), counting the
/// rest in `timeline.dropped`.
pub fn push_ops(timeline: &mut Timeline, ops: impl IntoIterator<Item = OpBar>) {
    for op in ops {
        if timeline.ops.len() >= MAX_ITEMS_SHOWN {
            timeline.dropped += 1;
        } else {
            timeline.ops.push(op);
        }
    }
}

/// The verdict of `failures` at `at_us`.
pub fn verdict(failures: &[String], at_us: u64) -> VerdictMark {
    match failures.split_first() {
        None => VerdictMark { passed: true, text: "PASS".into(), more: Vec::new(), at_us },
        Some((first, rest)) => {
            VerdictMark { passed: false, text: format!("FAIL: {first}"), more: rest.to_vec(), at_us }
        }
    }
}

#[cfg(test)]
mod tests;
