//! The skeleton every simulated system plugs into.
//!
//! A system (Raft, SWIM, ...) writes its *world*: its node type, its events,
//! its faults and its checkers. The skeleton gives it the rest:
//!
//! * [`Engine`]: virtual time, the event queue, the run's one RNG stream and
//!   its trace — what every handler needs to schedule and record;
//! * [`NodeSlot`]: what the driver keeps around each node whatever the
//!   protocol — its drifting clock, its timer with a token that makes stale
//!   timer events harmless, and the stash of inputs that wait while it is
//!   paused (at most [`PAUSED_STASH_LIMIT`]);
//! * [`run_events`]: the event loop, with a named limit on events and a
//!   panic inside a handler turned into a failure with its trace;
//! * [`SeedOutcome`] and [`crate::runner`]: one seed's outcome, many seeds in
//!   parallel and their summary; `main.rs` shares the run, replay and JSON plumbing.

use crate::clock::DriftClock;
use crate::queue::EventQueue;
use crate::timeline::{Recorder, Timeline};
use crate::trace::Trace;
use chorus_core::{NodeId, Time};
use rand_chacha::ChaCha8Rng;

/// Inputs stashed for a paused node; beyond it they are dropped (as a real
/// socket buffer would overflow).
pub const PAUSED_STASH_LIMIT: usize = 10_000;
/// Most bytes of readable trace kept by a replay.
pub const TRACE_TEXT_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// The id of the node at `index` (ids start at 1).
pub fn node_id(index: usize) -> NodeId {
    NodeId(index as u64 + 1)
}

/// Virtual time, pending events, the RNG stream and the trace of one run.
pub struct Engine<E> {
    /// Simulated microseconds since the start of the run.
    pub now: u64,
    /// Events handled so far.
    pub events: u64,
    /// Events still to happen, by simulated time (equal times in scheduling
    /// order).
    pub queue: EventQueue<E>,
    /// Every random choice of the run comes from this one stream.
    pub rng: ChaCha8Rng,
    /// The run's trace: hashed always, text kept for replay.
    pub trace: Trace,
    /// The run's timeline, kept when asked for (`replay --html` or
    /// `--perfetto`). Outside the trace hash: keeping one changes nothing.
    pub timeline: Option<Recorder>,
}

impl<E> Engine<E> {
    /// An engine at time zero; `rng` is the run's stream (the world may
    /// already have drawn its profile from it).
    pub fn new(rng: ChaCha8Rng, keep_trace_text: bool) -> Engine<E> {
        Engine {
            now: 0,
            events: 0,
            queue: EventQueue::default(),
            rng,
            trace: Trace::new(keep_trace_text, TRACE_TEXT_LIMIT_BYTES),
            timeline: None,
        }
    }

    /// Tells the timeline, if one is kept, what happens now: `note` gets the
    /// recorder and the current time. Nothing runs without a timeline.
    pub fn note(&mut self, note: impl FnOnce(&mut Recorder, u64)) {
        if let Some(recorder) = self.timeline.as_mut() {
            note(recorder, self.now);
        }
    }

    /// Schedules `event` `delay_us` from now.
    pub fn schedule(&mut self, delay_us: u64, event: E) {
        self.queue.schedule_at(self.now + delay_us, event);
    }

    /// Schedules `event` at `at`, or now if that is already past.
    pub fn schedule_at(&mut self, at: u64, event: E) {
        self.queue.schedule_at(at.max(self.now), event);
    }

    /// Records one step of the run at the current time.
    pub fn record(&mut self, kind: impl Into<u64>, fields: &[u64], text: impl FnOnce() -> String) {
        self.trace.record(self.now, kind, fields, text);
    }
}

/// The driver's side of one node, whatever the protocol: its clock, its
/// timer and what waits for it while it is paused. `S` is a stashed input.
pub struct NodeSlot<S> {
    /// The node's drifting clock: local times for its inputs, and true times
    /// for its deadlines.
    pub clock: DriftClock,
    /// Bumped whenever the timer is re-armed or cancelled: a timer event
    /// carrying an older token is stale and ignored.
    pub timer_token: u64,
    /// When the armed timer fires, if one is armed.
    pub timer_at: Option<u64>,
    /// The process is frozen: inputs are stashed, timers wait.
    pub paused: bool,
    /// Inputs that arrived while paused, in arrival order (at most
    /// [`PAUSED_STASH_LIMIT`]).
    pub stash: Vec<S>,
}

impl<S> NodeSlot<S> {
    /// A running node's slot with `clock`, no timer armed, nothing stashed.
    pub fn new(clock: DriftClock) -> NodeSlot<S> {
        NodeSlot { clock, timer_token: 0, timer_at: None, paused: false, stash: Vec::new() }
    }

    /// Arms the timer for the node's next `deadline` (on its own clock),
    /// unless it is paused (its timers fire late, when it resumes). Returns
    /// the true time and token of the timer event to schedule, or `None`
    /// when paused or when one is already armed for that time.
    pub fn arm_timer(&mut self, deadline: Time, now: u64) -> Option<(u64, u64)> {
        if self.paused {
            return None;
        }
        let at = self.clock.true_time_of(deadline, now);
        if at == u64::MAX {
            // No timer running (a quiesced node): none to schedule.
            self.cancel_timer();
            return None;
        }
        if self.timer_at == Some(at) {
            return None;
        }
        self.timer_token += 1;
        self.timer_at = Some(at);
        Some((at, self.timer_token))
    }

    /// Makes every scheduled timer event stale.
    pub fn cancel_timer(&mut self) {
        self.timer_token += 1;
        self.timer_at = None;
    }

    /// Whether a timer event with `token` should run now (it is the latest
    /// and the node is not paused).
    pub fn timer_is_due(&self, token: u64) -> bool {
        self.timer_token == token && !self.paused
    }

    /// The timer event with `token` runs now: nothing is armed any more.
    pub fn timer_fired(&mut self) {
        self.timer_at = None;
    }

    /// The node's process died: it is no longer paused, what waited for it
    /// is lost, and its timer is cancelled.
    pub fn crash(&mut self) {
        self.paused = false;
        self.stash.clear();
        self.cancel_timer();
    }

    /// Keeps an input for when the node resumes, up to
    /// [`PAUSED_STASH_LIMIT`]; beyond it the input is lost.
    pub fn stash(&mut self, input: S) {
        if self.stash.len() < PAUSED_STASH_LIMIT {
            self.stash.push(input);
        }
    }
}

/// A simulated system's world, as the event loop sees it.
pub trait World {
    /// What can happen in this world.
    type Event;
    /// The world's engine: time, queue, RNG and trace.
    fn engine(&mut self) -> &mut Engine<Self::Event>;
    /// Handles one event at `engine().now`.
    fn handle(&mut self, event: Self::Event);
    /// Whether the run is over (finished, or a check failed).
    fn finished(&self) -> bool;
    /// Called after time advances, before each event (progress reports).
    fn before_event(&mut self) {}
}

/// Events one node may cause per simulated second, on average over the
/// cluster, before [`run_events`] calls it a storm. Healthy runs stay two
/// orders of magnitude below (a 7-node Raft soak averages about 2,400 events
/// per simulated second for the whole cluster).
pub const MAX_EVENTS_PER_NODE_PER_SIMULATED_SECOND: u64 = 50_000;

/// Why [`run_events`] stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoopEnd {
    /// The world says the run is over.
    Finished,
    /// Nothing is left to happen.
    QueueEmpty,
    /// More than the allowed number of events.
    EventLimit,
    /// More than the allowed number of events within one simulated second:
    /// a storm (a timer re-armed at once, messages answered by more
    /// messages) that would otherwise run for minutes before the total
    /// limit ends it.
    EventStorm {
        /// The simulated second (from the start of the run).
        second: u64,
        /// The limit it went over.
        limit: u64,
    },
    /// A handler panicked (a broken internal invariant, in the core or the
    /// world): `"panic: ..."`.
    Panic(String),
}

/// The event loop: pops events in time order (ties in scheduling order),
/// advances time and hands each to the world, until the world is finished,
/// the queue is empty, more than `max_events` events ran, or a handler
/// panicked.
pub fn run_events<W: World>(world: &mut W, max_events: u64, max_events_per_second: u64) -> LoopEnd {
    let (mut second, mut in_second) = (0, 0u64);
    while !world.finished() {
        let engine = world.engine();
        let Some((at, event)) = engine.queue.pop() else {
            return LoopEnd::QueueEmpty;
        };
        debug_assert!(at >= engine.now, "invariant: time never goes backwards");
        engine.now = at;
        world.before_event();
        let engine = world.engine();
        engine.events += 1;
        if engine.events > max_events {
            return LoopEnd::EventLimit;
        }
        if engine.now / 1_000_000 != second {
            (second, in_second) = (engine.now / 1_000_000, 0);
        }
        in_second += 1;
        if in_second > max_events_per_second {
            return LoopEnd::EventStorm { second, limit: max_events_per_second };
        }
        if let Err(message) = crate::runner::catch_panic(|| world.handle(event)) {
            return LoopEnd::Panic(message);
        }
    }
    LoopEnd::Finished
}

/// What one seed's run found: its outcome, the readable trace (replay only),
/// the profile it drew, and what else the system keeps (Raft: the client
/// history).
#[derive(Clone, Debug)]
pub struct SeedReport<M, Extra = ()> {
    /// The verdict, hash, counts and metrics.
    pub outcome: SeedOutcome<M>,
    /// The readable trace when the run kept text (replay), cut at the text
    /// limit; `None` otherwise.
    pub trace_text: Option<String>,
    /// The fault profile the seed drew (or was given), as text.
    pub profile: String,
    /// What else the system keeps: the Raft client history; `()` for SWIM.
    pub history: Extra,
    /// The run's timeline, when it was kept (`replay --html` or
    /// `--perfetto`); `None` otherwise.
    pub timeline: Option<Timeline>,
}

impl<M: Default, Extra> SeedReport<M, Extra> {
    /// Whether the seed passed (no failures).
    pub fn passed(&self) -> bool {
        self.outcome.passed()
    }
}

/// One seed's outcome, without its trace text: what every system reports,
/// and the system's own `metrics` (Raft: client operations; SWIM: detection,
/// accuracy, load and convergence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedOutcome<M> {
    /// The seed that was run.
    pub seed: u64,
    /// BLAKE3 of the run's binary trace: equal hashes mean identical runs.
    pub trace_hash: [u8; 32],
    /// Empty when the seed passed.
    pub failures: Vec<String>,
    /// Events the run handled.
    pub events: u64,
    /// Simulated microseconds the run covered (the time of its last event).
    pub sim_micros: u64,
    /// The system's own measurements.
    pub metrics: M,
}

impl<M: Default> SeedOutcome<M> {
    /// Whether the seed passed (no failures).
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The outcome of a seed whose run panicked outside the event loop: it
    /// failed, and its "trace hash" is the message's.
    pub fn from_panic(seed: u64, message: String) -> SeedOutcome<M> {
        SeedOutcome {
            seed,
            trace_hash: *blake3::hash(message.as_bytes()).as_bytes(),
            failures: vec![message],
            events: 0,
            sim_micros: 0,
            metrics: M::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_rearmed_timer_makes_the_old_token_stale_and_the_same_deadline_arms_once() {
        let mut slot: NodeSlot<()> = NodeSlot::new(DriftClock::perfect());
        let (at, first) = slot.arm_timer(Time::from_micros(100), 0).expect("nothing armed yet");
        assert_eq!(at, 100);
        assert_eq!(slot.arm_timer(Time::from_micros(100), 0), None, "already armed for then");
        let (_, second) = slot.arm_timer(Time::from_micros(200), 0).expect("a new deadline");
        assert!(!slot.timer_is_due(first) && slot.timer_is_due(second));
        slot.paused = true;
        assert!(!slot.timer_is_due(second), "a paused node's timer waits");
        assert_eq!(slot.arm_timer(Time::from_micros(300), 0), None, "a paused node arms nothing");
        slot.crash();
        assert!(!slot.paused && !slot.timer_is_due(second));
    }

    #[test]
    fn the_pause_stash_keeps_at_most_its_limit() {
        let mut slot: NodeSlot<usize> = NodeSlot::new(DriftClock::perfect());
        for input in 0..PAUSED_STASH_LIMIT + 5 {
            slot.stash(input);
        }
        assert_eq!(slot.stash.len(), PAUSED_STASH_LIMIT);
        assert_eq!(slot.stash.last(), Some(&(PAUSED_STASH_LIMIT - 1)), "the newest inputs are the ones lost");
    }

    /// A world whose every event schedules another one, and which panics on
    /// event `panic_at`.
    struct Endless {
        engine: Engine<u64>,
        panic_at: u64,
    }

    impl World for Endless {
        type Event = u64;
        fn engine(&mut self) -> &mut Engine<u64> {
            &mut self.engine
        }
        fn handle(&mut self, event: u64) {
            assert!(event != self.panic_at, "event {event} breaks an invariant");
            self.engine.schedule(1, event + 1);
        }
        fn finished(&self) -> bool {
            false
        }
    }

    fn endless(panic_at: u64) -> Endless {
        let mut engine = Engine::new(ChaCha8Rng::seed_from_u64(0), false);
        engine.schedule(0, 0);
        Endless { engine, panic_at }
    }

    #[test]
    fn the_event_loop_stops_past_its_event_limit() {
        let mut world = endless(u64::MAX);
        assert_eq!(run_events(&mut world, 10, u64::MAX), LoopEnd::EventLimit);
        assert_eq!(world.engine.events, 11);
        assert_eq!(world.engine.now, 10);
    }

    #[test]
    fn a_storm_within_one_simulated_second_stops_the_run() {
        // One event per simulated microsecond: a million per second.
        let mut world = endless(u64::MAX);
        assert_eq!(run_events(&mut world, u64::MAX, 1_000), LoopEnd::EventStorm { second: 0, limit: 1_000 });
        assert_eq!(world.engine.now, 1_000, "stopped at the event over the limit");
    }

    #[test]
    fn a_panic_in_a_handler_ends_the_loop_as_a_failure() {
        let mut world = endless(3);
        let end = run_events(&mut world, 100, u64::MAX);
        assert!(matches!(&end, LoopEnd::Panic(message) if message.contains("event 3 breaks an invariant")), "{end:?}");
    }
}
