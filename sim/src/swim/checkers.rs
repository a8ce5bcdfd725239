//! The SWIM checkers: what must hold of every member's view, checked online
//! from the events each node reports and from the simulator's ground truth.
//!
//! - **Incarnations** (on every event): the incarnation an observer reports
//!   for a member never goes backwards, and never exceeds what the member
//!   itself ever held (nobody invents incarnations).
//! - **No resurrection** (on every event): once an observer declares a
//!   member failed or left at incarnation `i`, it never sees it alive again
//!   at `i` or below.
//! - **Accuracy** (on every failure declaration a node makes on its own):
//!   declaring a running member failed is a false positive. All are counted;
//!   none is allowed unless the member or the declarer was paused or slow,
//!   or the network was partitioned or losing heavily, recently enough for
//!   the suspicion to have come from it.
//! - **Completeness and convergence** (after healing; see `world.rs`):
//!   every crashed member is declared failed by every running member, and
//!   every running member sees exactly the running members as live, within
//!   a bound derived from the configuration.
//! - **Events** (on every event): `Updated` reports a changed address or
//!   metadata. Each member publishes one address and one metadata for the
//!   whole run, so an `Updated` that brings them to an observer that last
//!   reported them right is spurious.
//! - **Tombstones** (on every `Forgotten`): a member declared failed or left
//!   is forgotten no sooner than `tombstone_retention_ms` after (on the
//!   slowest clock), unless the observer is at `max_members` and evicts its
//!   oldest tombstone for a newcomer. Forgetting early lets stale news bring
//!   the member back.
//! - **Message size** (on every send; see `world.rs`): never over budget.
//! - **Per-run bounds** (see `bounds.rs`): load per member per window and
//!   per life, dissemination, detection, the suspicion timeout's window, and
//!   refutation, each derived from the configuration.
//!
//! Each checker is shown to fire by an injected bug (`chorus_core::swim::Bug`
//! and `sim/tests/swim.rs`).

use chorus_core::swim::{Event, Incarnation};
use chorus_core::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// Most failure messages kept per run (the first is what matters).
pub const MAX_FAILURES_KEPT: usize = 20;

/// What one observer has reported about one member. Only members with news
/// beyond "alive at incarnation 0" get an entry, so the table stays small in
/// large clusters.
#[derive(Clone, Copy, Debug, Default)]
struct View {
    incarnation: Incarnation,
    /// The incarnation at which the observer last declared the member failed
    /// or left, until it sees it alive again.
    tombstone: Option<Incarnation>,
    /// When that declaration was reported.
    tombstone_at_us: u64,
}

/// The online checkers of one run: every member's view of every other, and
/// the failures found so far (a failure does not stop the run).
#[derive(Default)]
pub struct Checkers {
    failures: Vec<String>,
    failure_count: usize,
    /// `views[observer]`: member id -> view.
    views: Vec<BTreeMap<u64, View>>,
    /// `(observer, member id)` whose last reported record carried an
    /// address or metadata other than what the member publishes now (after
    /// a metadata change until the news arrives, and under injected bugs).
    untrue_records: BTreeSet<(usize, u64)>,
}

impl Checkers {
    /// Checkers for a cluster of `nodes` members, with empty views.
    pub fn new(nodes: usize) -> Checkers {
        Checkers {
            failures: Vec::new(),
            failure_count: 0,
            views: vec![BTreeMap::new(); nodes],
            untrue_records: BTreeSet::new(),
        }
    }

    /// Records a failure; only the first [`MAX_FAILURES_KEPT`] messages are
    /// kept, but every failure counts.
    pub fn fail(&mut self, message: String) {
        self.failure_count += 1;
        if self.failures.len() < MAX_FAILURES_KEPT {
            self.failures.push(message);
        }
    }

    /// The kept failure messages, first first.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Whether any failure was recorded (even one not kept).
    pub fn failed(&self) -> bool {
        self.failure_count > 0
    }

    /// The observer restarted with a fresh state: its old views no longer
    /// bind it.
    pub fn forget_observer(&mut self, observer: usize) {
        self.views[observer].clear();
    }

    /// Checks that an `Updated` event reports a change: `truthful` says
    /// whether the event's record carries the address and metadata its
    /// member publishes.
    pub fn observe_record(&mut self, at_us: u64, observer: usize, event: &Event, truthful: bool) {
        let (Event::Joined(record) | Event::Updated(record) | Event::AliveAgain(record)) = event else {
            return;
        };
        let key = (observer, record.id.0);
        let knew_truth = !self.untrue_records.contains(&key);
        if matches!(event, Event::Updated(_)) && truthful && knew_truth {
            self.fail(format!(
                "events: n{} about {} at {}: reported Updated at {}, though its address and metadata are those it \
                 already knew",
                observer + 1,
                record.id,
                time(at_us),
                record.incarnation
            ));
        }
        if truthful {
            self.untrue_records.remove(&key);
        } else {
            self.untrue_records.insert(key);
        }
    }

    /// `member` published new metadata: every observer's record of it is
    /// now out of date, until an event brings the new one.
    pub fn metadata_changed(&mut self, member: NodeId, nodes: usize) {
        self.untrue_records.extend((0..nodes).map(|observer| (observer, member.0)));
    }

    /// How long ago (at `now_us`) `observer` declared `member` failed or
    /// left, if it holds that declaration.
    pub fn tombstone_age_us(&self, observer: usize, member: NodeId, now_us: u64) -> Option<u64> {
        let view = self.views[observer].get(&member.0)?;
        view.tombstone.map(|_| now_us - view.tombstone_at_us)
    }

    /// Checks one event reported by `observer` (a node index; node ids are
    /// index + 1). `issued(member)` is the highest incarnation the member
    /// itself ever held.
    pub fn observe(&mut self, at_us: u64, observer: usize, event: &Event, issued: impl Fn(NodeId) -> Incarnation) {
        let (member, incarnation, tombstone, alive) = match event {
            Event::Joined(record) | Event::Updated(record) | Event::AliveAgain(record) => {
                (record.id, record.incarnation, false, true)
            }
            Event::Suspected { member, incarnation } => (*member, *incarnation, false, false),
            Event::Failed { member, incarnation } | Event::Left { member, incarnation } => {
                (*member, *incarnation, true, false)
            }
            Event::Forgotten { member } => {
                self.views[observer].remove(&member.0);
                return;
            }
            Event::Refuted { .. } | Event::MemberLimitReached { .. } => return,
        };
        let who = || format!("n{} about n{}", observer + 1, member.0);

        if incarnation > issued(member) {
            self.fail(format!(
                "incarnation: {} at {}: {} reports {}, which n{} never held (its highest is {})",
                who(),
                time(at_us),
                event_name(event),
                incarnation,
                member.0,
                issued(member)
            ));
        }
        let view = self.views[observer].get(&member.0).copied().unwrap_or_default();
        if incarnation < view.incarnation {
            self.fail(format!(
                "incarnation: {} at {}: {} at {} after it already reported {}",
                who(),
                time(at_us),
                event_name(event),
                incarnation,
                view.incarnation
            ));
        }
        if alive {
            if let Some(dead) = view.tombstone.filter(|dead| incarnation <= *dead) {
                self.fail(format!(
                    "resurrection: {} at {}: alive again at {} after being declared failed or left at {}",
                    who(),
                    time(at_us),
                    incarnation,
                    dead
                ));
            }
        }
        let updated = View {
            tombstone_at_us: if tombstone && view.tombstone.is_none() { at_us } else { view.tombstone_at_us },
            incarnation: incarnation.max(view.incarnation),
            tombstone: if tombstone {
                Some(incarnation)
            } else if alive {
                None
            } else {
                view.tombstone
            },
        };
        if updated.incarnation == Incarnation::ZERO && updated.tombstone.is_none() {
            self.views[observer].remove(&member.0);
        } else {
            self.views[observer].insert(member.0, updated);
        }
    }
}

/// Simulated time for messages: seconds with microseconds.
pub fn time(at_us: u64) -> String {
    format!("{}.{:06}s", at_us / 1_000_000, at_us % 1_000_000)
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Joined(_) => "Joined",
        Event::Updated(_) => "Updated",
        Event::Suspected { .. } => "Suspected",
        Event::AliveAgain(_) => "AliveAgain",
        Event::Failed { .. } => "Failed",
        Event::Left { .. } => "Left",
        Event::Forgotten { .. } => "Forgotten",
        Event::Refuted { .. } => "Refuted",
        Event::MemberLimitReached { .. } => "MemberLimitReached",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_core::swim::{Address, MemberRecord, MemberState, Metadata};

    fn alive(member: u64, incarnation: u64) -> Event {
        Event::AliveAgain(MemberRecord {
            id: NodeId(member),
            address: Address::default(),
            metadata: Metadata::default(),
            incarnation: Incarnation(incarnation),
            state: MemberState::Alive,
        })
    }

    fn issued(_: NodeId) -> Incarnation {
        Incarnation(10)
    }

    #[test]
    fn a_member_alive_again_at_its_failed_incarnation_is_a_resurrection() {
        let mut checkers = Checkers::new(2);
        checkers.observe(0, 0, &Event::Failed { member: NodeId(2), incarnation: Incarnation(3) }, issued);
        checkers.observe(1, 0, &alive(2, 3), issued);
        assert!(checkers.failures()[0].starts_with("resurrection: n1 about n2"), "{:?}", checkers.failures());
    }

    #[test]
    fn a_higher_incarnation_brings_a_member_back_legitimately() {
        let mut checkers = Checkers::new(2);
        checkers.observe(0, 0, &Event::Failed { member: NodeId(2), incarnation: Incarnation(3) }, issued);
        checkers.observe(1, 0, &alive(2, 4), issued);
        checkers.observe(2, 0, &Event::Suspected { member: NodeId(2), incarnation: Incarnation(4) }, issued);
        assert!(!checkers.failed(), "{:?}", checkers.failures());
    }

    #[test]
    fn incarnations_going_backwards_or_invented_are_caught() {
        let mut checkers = Checkers::new(2);
        checkers.observe(0, 1, &alive(1, 5), issued);
        checkers.observe(1, 1, &Event::Suspected { member: NodeId(1), incarnation: Incarnation(4) }, issued);
        assert!(checkers.failures()[0].contains("after it already reported inc5"), "{:?}", checkers.failures());
        let mut checkers = Checkers::new(2);
        checkers.observe(0, 1, &alive(1, 11), issued);
        assert!(checkers.failures()[0].contains("never held"), "{:?}", checkers.failures());
    }

    #[test]
    fn a_restarted_observer_starts_afresh() {
        let mut checkers = Checkers::new(2);
        checkers.observe(0, 0, &alive(2, 5), issued);
        checkers.forget_observer(0);
        checkers.observe(1, 0, &alive(2, 1), issued);
        assert!(!checkers.failed());
    }
}
