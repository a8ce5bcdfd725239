//! Shrinking a failing Raft seed to a small scenario that fails the same
//! checker (`chorus-sim shrink`).
//!
//! 1. The seed runs once as asked, recording every fault and operator action
//!    it applied ([`crate::raft::run_seed_recorded`]).
//! 2. Those become the events of a `seed_profile` scenario: the seed's
//!    profile and random draws, with only the events striking. Run with the
//!    same seed, it replays the failure (checked; if it does not, shrinking
//!    stops with [`ShrinkError::NotReproduced`]).
//! 3. Delta debugging (ddmin) removes events; then a shorter fault phase,
//!    fewer clients and fewer nodes are tried, and ddmin runs again after
//!    any of them helped. Every candidate is one deterministic run, kept
//!    when its first failure has the same [`FailureClass`].
//!
//! At most [`ShrinkRequest::max_runs`] runs ([`MAX_SHRINK_RUNS`] by
//! default); when they run out, the smallest failing scenario so far is
//! the result.

mod class;
mod write;

pub use class::FailureClass;
pub use write::scenario_toml;

use crate::faults::{FaultAction, NodeRef};
use crate::raft::{run_seed_recorded, SimOptions, FAULT_PHASE_US};
use crate::runner::catch_panic;
use crate::scenario::Scenario;
use chorus_core::raft::{Bug, MembershipChange};
use chorus_core::NodeId;

/// Default bound on the runs one shrink makes.
pub const MAX_SHRINK_RUNS: usize = 2_000;

/// What to shrink: a seed and the options that make it fail.
#[derive(Clone, Debug)]
pub struct ShrinkRequest {
    /// The failing seed.
    pub seed: u64,
    /// Voters, as given to `run`/`replay`.
    pub nodes: usize,
    /// The injected bug, if any.
    pub bug: Option<Bug>,
    /// The scenario the seed ran with, if any.
    pub scenario: Option<Scenario>,
    /// Most candidate runs (each a whole deterministic simulation).
    pub max_runs: usize,
}

/// A shrunk failure.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The checker both the original and the shrunk run fail.
    pub class: FailureClass,
    /// The original run's first failure.
    pub original_failure: String,
    /// The shrunk run's first failure.
    pub failure: String,
    /// Voters the shrunk scenario runs with (`--nodes`).
    pub nodes: usize,
    /// The shrunk scenario.
    pub scenario: Scenario,
    /// Fault and operator events before shrinking (those the run applied, or
    /// the given explicit scenario's).
    pub events_before: usize,
    /// Runs made, the first two (original and explicit replay) included.
    pub runs: usize,
    /// Whether the run budget ran out before shrinking finished.
    pub budget_exhausted: bool,
}

/// Why there is nothing to shrink.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The seed passes with these options.
    #[error("seed {0} passes with these options: there is no failure to shrink")]
    Passes(u64),
    /// The seed fails, but not with its faults made explicit.
    #[error(
        "seed {seed} fails ({class}: {failure}), but not when its {events} recorded fault events replay it \
         explicitly ({explicit})"
    )]
    NotReproduced {
        /// The seed.
        seed: u64,
        /// The original failure's class.
        class: FailureClass,
        /// The original failure.
        failure: String,
        /// Events recorded.
        events: usize,
        /// What the explicit run gave instead.
        explicit: String,
    },
}

/// The search state: the best failing candidate so far and the budget.
struct Search<'a> {
    request: &'a ShrinkRequest,
    class: FailureClass,
    runs: usize,
    best: (Scenario, usize, String),
    /// When the best candidate's run ended (at its failure, for a failure
    /// found during the run).
    failed_at_us: u64,
    progress: &'a mut dyn FnMut(&str),
}

/// The first failure of one run of `seed` (a panic outside the loop counts)
/// and the simulated microsecond the run ended at.
fn first_failure(seed: u64, nodes: usize, bug: Option<Bug>, scenario: Option<Scenario>) -> (Option<String>, u64) {
    let options = SimOptions { nodes, bug, scenario, ..SimOptions::new(seed) };
    match catch_panic(|| run_seed_recorded(options).0) {
        Ok(report) => (report.outcome.failures.into_iter().next(), report.outcome.sim_micros),
        Err(message) => (Some(message), 0),
    }
}

impl Search<'_> {
    fn exhausted(&self) -> bool {
        self.runs >= self.request.max_runs
    }

    /// Runs a candidate; keeps it as the best if it fails the same checker.
    fn try_candidate(&mut self, scenario: &Scenario, nodes: usize) -> bool {
        if self.exhausted() {
            return false;
        }
        self.runs += 1;
        let (failure, ended_us) = first_failure(self.request.seed, nodes, self.request.bug, Some(scenario.clone()));
        match failure {
            Some(failure) if FailureClass::of(&failure) == self.class => {
                self.best = (scenario.clone(), nodes, failure);
                self.failed_at_us = ended_us;
                true
            }
            _ => false,
        }
    }

    fn with_events(&self, events: Vec<(u64, FaultAction)>) -> Scenario {
        Scenario { events, ..self.best.0.clone() }
    }

    /// Delta debugging over the best scenario's events: ends 1-minimal
    /// (no single event can go) unless the budget runs out.
    fn ddmin(&mut self) {
        let nodes = self.best.1;
        if self.try_candidate(&self.with_events(Vec::new()), nodes) {
            return;
        }
        let mut granularity = 2;
        loop {
            let events = self.best.0.events.clone();
            if events.len() < 2 || self.exhausted() {
                return;
            }
            let chunks = split(&events, granularity);
            if let Some(kept) = self.first_failing_subset(&chunks, granularity) {
                granularity = if kept { 2 } else { (granularity - 1).max(2) };
                (self.progress)(&format!("ddmin: {} events (run {})", self.best.0.events.len(), self.runs));
                continue;
            }
            if granularity >= events.len() {
                return;
            }
            granularity = (granularity * 2).min(events.len());
        }
    }

    /// Tries each chunk alone, then each complement: `Some(true)` if a chunk
    /// failed, `Some(false)` if a complement did (both now the best).
    fn first_failing_subset(&mut self, chunks: &[Vec<(u64, FaultAction)>], granularity: usize) -> Option<bool> {
        // Late events disturb less of the run than early ones: their chunks
        // and complements (which keep the early part) are tried first.
        for chunk in chunks.iter().rev() {
            if self.try_candidate(&self.with_events(chunk.clone()), self.best.1) {
                return Some(true);
            }
        }
        if granularity == 2 {
            return None; // the complements are the chunks
        }
        for skip in (0..chunks.len()).rev() {
            let complement: Vec<_> =
                chunks.iter().enumerate().filter(|(i, _)| *i != skip).flat_map(|(_, c)| c.clone()).collect();
            if self.try_candidate(&self.with_events(complement), self.best.1) {
                return Some(false);
            }
        }
        None
    }
}

/// `events` in `parts` nearly equal consecutive chunks.
fn split(events: &[(u64, FaultAction)], parts: usize) -> Vec<Vec<(u64, FaultAction)>> {
    let parts = parts.min(events.len()).max(1);
    (0..parts).map(|part| events[part * events.len() / parts..(part + 1) * events.len() / parts].to_vec()).collect()
}

/// The explicit scenario a shrink starts from: the given one if it already
/// is explicit, else the recorded events under the seed's profile.
fn explicit_start(request: &ShrinkRequest, recorded: Vec<(u64, FaultAction)>) -> Scenario {
    match &request.scenario {
        Some(scenario) if scenario.seed_profile || !scenario.random_faults => scenario.clone(),
        given => {
            let fault_phase_us = given.as_ref().map_or(FAULT_PHASE_US, |scenario| {
                scenario.duration_ms.map_or(FAULT_PHASE_US.max(scenario.last_event_us() + 1_000_000), |ms| ms * 1000)
            });
            let events = recorded.into_iter().filter(|(at_us, _)| *at_us < fault_phase_us).collect();
            let mut knobs = given.as_ref().map(|scenario| scenario.knobs.clone()).unwrap_or_default();
            // The file names spare nodes, so it states how many there are:
            // the seed's own count (its profile is the first draw of a run).
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(request.seed);
            knobs.spares = Some(knobs.spares.unwrap_or(crate::faults::FaultProfile::draw(&mut rng).spares));
            Scenario {
                duration_ms: Some(fault_phase_us.div_ceil(1000)),
                random_faults: false,
                seed_profile: true,
                knobs,
                events,
            }
        }
    }
}

/// Shrinks `request`'s failing seed; `progress` gets a short line now and
/// then (the CLI prints them on standard error).
pub fn shrink(request: &ShrinkRequest, progress: &mut dyn FnMut(&str)) -> Result<Shrunk, ShrinkError> {
    let options = SimOptions {
        nodes: request.nodes,
        bug: request.bug,
        scenario: request.scenario.clone(),
        ..SimOptions::new(request.seed)
    };
    let (original_failure, recorded) = match catch_panic(|| run_seed_recorded(options)) {
        Ok((report, recorded)) => (report.outcome.failures.into_iter().next(), recorded),
        Err(message) => (Some(message), Vec::new()),
    };
    let original_failure = original_failure.ok_or(ShrinkError::Passes(request.seed))?;
    let class = FailureClass::of(&original_failure);
    let start = explicit_start(request, recorded);
    let events_before = start.events.len();
    progress(&format!("seed {} fails the {class} checker; {events_before} fault events", request.seed));
    let mut search = Search {
        request,
        class,
        runs: 1,
        best: (start.clone(), request.nodes, original_failure.clone()),
        failed_at_us: u64::MAX,
        progress,
    };
    if !search.try_candidate(&start, request.nodes) {
        let (explicit, _) = first_failure(request.seed, request.nodes, request.bug, Some(start));
        return Err(ShrinkError::NotReproduced {
            seed: request.seed,
            class,
            failure: original_failure,
            events: events_before,
            explicit: explicit.unwrap_or_else(|| "it passes".into()),
        });
    }
    search.reduce();
    let (scenario, nodes, failure) = search.best.clone();
    let reread = Scenario::parse(&scenario_toml(&scenario), nodes);
    assert!(
        reread.as_ref().is_ok_and(|reread| *reread == scenario),
        "invariant: a written scenario reads back as itself: {reread:?}"
    );
    Ok(Shrunk {
        class,
        original_failure,
        failure,
        nodes,
        scenario,
        events_before,
        runs: search.runs,
        budget_exhausted: search.exhausted(),
    })
}

impl Search<'_> {
    /// Cuts what comes after the failure, then ddmin, then the other
    /// dimensions; ddmin again while they help.
    fn reduce(&mut self) {
        self.cut_after_failure();
        self.ddmin();
        for _ in 0..3 {
            let before = (self.best.0.duration_ms, self.best.0.knobs.clients, self.best.1);
            self.shorter_phase();
            self.fewer_clients();
            self.fewer_nodes();
            if before == (self.best.0.duration_ms, self.best.0.knobs.clients, self.best.1) || self.exhausted() {
                return;
            }
            self.ddmin();
        }
    }

    /// Events after the moment the run failed cannot have caused it: drop
    /// them and end the fault phase just after the failure (kept only if the
    /// run still fails the same way, as the workload's timing changes).
    fn cut_after_failure(&mut self) {
        let failed_at_us = self.failed_at_us;
        let Some(duration_ms) = self.best.0.duration_ms.filter(|ms| failed_at_us < ms * 1000) else {
            return;
        };
        let events: Vec<_> = self.best.0.events.iter().filter(|(at_us, _)| *at_us <= failed_at_us).cloned().collect();
        let last_ms = events.last().map_or(0, |(at_us, _)| at_us / 1000);
        let candidate = Scenario {
            duration_ms: Some((failed_at_us / 1000 + 1).max(last_ms + 1).min(duration_ms)),
            events,
            ..self.best.0.clone()
        };
        if self.try_candidate(&candidate, self.best.1) {
            (self.progress)(&format!("cut after the failure: {} events (run {})", self.best.0.events.len(), self.runs));
        } else {
            let events = candidate.events;
            if self.try_candidate(&self.with_events(events), self.best.1) {
                (self.progress)(&format!(
                    "cut after the failure: {} events (run {})",
                    self.best.0.events.len(),
                    self.runs
                ));
            }
        }
    }

    /// A shorter fault phase, by bisection between just after the last
    /// event and the current length (a failure need not be monotone in it;
    /// every kept length failed).
    fn shorter_phase(&mut self) {
        let Some(mut high) = self.best.0.duration_ms else {
            return;
        };
        let mut low = self.best.0.last_event_us() / 1000 + 1;
        while low < high && !self.exhausted() {
            let middle = low + (high - low) / 2;
            let candidate = Scenario { duration_ms: Some(middle), ..self.best.0.clone() };
            if self.try_candidate(&candidate, self.best.1) {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        (self.progress)(&format!("fault phase: {} ms (run {})", high, self.runs));
    }

    /// The fewest clients (from one up) that still fail.
    fn fewer_clients(&mut self) {
        let current = self.best.0.knobs.clients.unwrap_or(crate::raft::DEFAULT_CLIENTS);
        for clients in 1..current {
            let mut candidate = self.best.0.clone();
            candidate.knobs.clients = Some(clients);
            if self.try_candidate(&candidate, self.best.1) {
                (self.progress)(&format!("clients: {clients} (run {})", self.runs));
                return;
            }
        }
    }

    /// The fewest voters (from one up) that still fail; events naming a
    /// voter that is gone are dropped, spares are renumbered.
    fn fewer_nodes(&mut self) {
        let current = self.best.1;
        for nodes in 1..current {
            let keep = |index: usize| match index {
                index if index < nodes => Some(index),
                index if index >= current => Some(index - (current - nodes)),
                _ => None,
            };
            let events = self.best.0.events.iter().filter_map(|(at, action)| Some((*at, remap(action, &keep)?)));
            let candidate = self.with_events(events.collect());
            if self.try_candidate(&candidate, nodes) {
                (self.progress)(&format!("nodes: {nodes} (run {})", self.runs));
                return;
            }
        }
    }
}

/// `action` with node indexes mapped by `keep`; `None` when it loses what
/// it acts on.
fn remap(action: &FaultAction, keep: &dyn Fn(usize) -> Option<usize>) -> Option<FaultAction> {
    let node = |node: &NodeRef| match node {
        NodeRef::Index(index) => keep(*index).map(NodeRef::Index),
        other => Some(other.clone()),
    };
    let id = |id: &NodeId| keep(id.0 as usize - 1).map(|index| NodeId(index as u64 + 1));
    Some(match action {
        FaultAction::Partition { groups } => {
            let groups: Vec<Vec<usize>> = groups
                .iter()
                .map(|group| group.iter().filter_map(|index| keep(*index)).collect::<Vec<_>>())
                .filter(|group| !group.is_empty())
                .collect();
            (groups.len() >= 2).then_some(FaultAction::Partition { groups })?
        }
        FaultAction::Isolate { node: n } => FaultAction::Isolate { node: node(n)? },
        FaultAction::Crash { node: n } => FaultAction::Crash { node: node(n)? },
        FaultAction::Restart { node: n } => FaultAction::Restart { node: node(n)? },
        FaultAction::Pause { node: n } => FaultAction::Pause { node: node(n)? },
        FaultAction::Resume { node: n } => FaultAction::Resume { node: node(n)? },
        FaultAction::Wipe { node: n } => FaultAction::Wipe { node: node(n)? },
        FaultAction::Transfer { to } => FaultAction::Transfer { to: node(to)? },
        FaultAction::CutLink { a, b } => FaultAction::CutLink { a: node(a)?, b: node(b)? },
        FaultAction::OneWay { senders, receivers } => {
            let senders: Vec<usize> = senders.iter().filter_map(|index| keep(*index)).collect();
            let receivers: Vec<NodeRef> = receivers.iter().filter_map(node).collect();
            (!senders.is_empty() && !receivers.is_empty()).then_some(FaultAction::OneWay { senders, receivers })?
        }
        FaultAction::Change(change) => FaultAction::Change(match change {
            MembershipChange::AddLearner(n) => MembershipChange::AddLearner(id(n)?),
            MembershipChange::Promote(n) => MembershipChange::Promote(id(n)?),
            MembershipChange::Remove(n) => MembershipChange::Remove(id(n)?),
            MembershipChange::RenewDisk(n) => MembershipChange::RenewDisk(id(n)?),
            MembershipChange::Replace { remove, add } => {
                MembershipChange::Replace { remove: id(remove)?, add: id(add)? }
            }
        }),
        FaultAction::Heal | FaultAction::SetLoss { .. } | FaultAction::SetReorder { .. } => action.clone(),
    })
}
