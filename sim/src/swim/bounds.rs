//! Per-run bounds on what SWIM exists for: how many messages a member sends,
//! how fast news spreads, how fast a crash is detected, and how fast a
//! suspected member refutes. The other checkers judge *what* members believe;
//! these judge *how soon* and *at what cost*, so that a protocol that is
//! correct but slow, chatty or forgetful fails its seed with a verdict.
//!
//! Every bound is derived from the template configuration (probe interval
//! `T`, timeout, `k` indirect checks, λ, α, β, gossip rounds, push-pull and
//! reconnection intervals) and the cluster size `n`. Slack for the seed's
//! faults comes in two forms: the constant slack written next to each bound
//! (light loss, network delay, clock drift, the checks' own granularity),
//! and *excuses*: a sample is dropped, not judged, when the world was
//! partitioned, losing heavily, or one of the members it depends on was
//! paused or slow, during it (the accuracy checker's excuses, see
//! `checks.rs`).
//!
//! - **Load** (`load:`), per member, every [`LOAD_WINDOW_PERIODS`] periods
//!   and cumulatively over each life: own probe pings at most one per period
//!   (+2: a restart and a window edge), ping-reqs at most `k` per period,
//!   relay pings at most one per ping-req handled, acks and nacks at most one
//!   per ping and ping-req handled, gossip messages at most `fanout` per
//!   gossip round, push-pull exchanges started at most one per push-pull
//!   interval plus one per half reconnection interval (the shortest jittered
//!   one) plus one per seed per half join-retry interval. Bytes are bounded
//!   per message by the message-size checker, hence per window by these
//!   counts times the budget.
//! - **Dissemination** (`dissemination:`): an update first reported by some
//!   member at time `t` (a suspicion, a failure, an alive or join record at
//!   some incarnation) is known (or superseded) by every running member that
//!   was running at `t` by `t + 3·R·T + slack`, where `R = λ·⌈log10(n + 1)⌉`
//!   is the number of times each holder piggybacks it: every holder sends at
//!   least one message per period, so the origin has spent its `R` copies
//!   within `R` periods and the epidemic has had `R` rounds; the other `2R`
//!   cover its tail under light loss. Measured over 300 swarm seeds: p99
//!   3.0 s and at most 6.9 s at 20 members (bound 25 s), at most 4.2 s at 5
//!   (bound 13 s). The one sample past `2R` in 2000 seeds (20 members, seed
//!   887: 22.4 s) was a member holding a stale suspicion of the refuter,
//!   which nothing answers with the newer incarnation; push-pull repaired
//!   it. Each mutant that slows dissemination (λ = 1, no piggybacking, a
//!   ten times longer period) leaves news unknown until push-pull, 30 s.
//! - **Detection** (`detection:`): a crashed member is declared failed (or
//!   left, or forgotten) by every running member within `P + T + S + D`,
//!   where `P` is the longest a crashed member can go unprobed (two probe
//!   passes, `2(n−1)−1` periods, capped at 20 periods, after which the
//!   chance that none of `n−1` probers chose it is below `e^−20`), `T` to
//!   judge the probe, `S` the longest suspicion timeout (β·α·log10 n·T with
//!   Lifeguard) and `D` the dissemination bound for the failure.
//! - **Relays** (`relay:`): a helper that takes a ping-req asking for a nack
//!   (Lifeguard) answers the requester, with the target's ack or with a
//!   nack, within Lifeguard's relay timeout, 80% of the probe timeout (plus
//!   clock drift and two check intervals). Unless it ignores the request:
//!   the target is itself, or `max_pending_relays` are already waiting. A
//!   late nack makes the requester's missed-nack count (its local health)
//!   wrong, and a missing one makes it blame itself.
//! - **Refutation** (`refutation:`): a member that handles a suspicion or
//!   failure claim about itself at or above its incarnation refutes at once
//!   (its incarnation rises while handling the message), and sends the
//!   refutation within one gossip interval plus one probe period (a gossip
//!   round goes out for an unsent refutation; otherwise its next ping or ack
//!   carries it).

use super::checkers::time;
use super::world::SwimWorld;
use crate::skeleton::node_id;
use chorus_core::swim::{Event, Incarnation, MemberState, Message, MessageBody, ProbeNumber, Update};
use chorus_core::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// Length of a load window, in probe periods.
pub(super) const LOAD_WINDOW_PERIODS: u64 = 10;

/// At most this many dissemination samples are tracked at once; news beyond
/// goes unjudged (keeps very large clusters cheap).
const MAX_NEWS_TRACKED: usize = 4_096;

/// At most this many ping-reqs are timed at once; more go unjudged.
const MAX_RELAYS_TRACKED: usize = 4_096;

/// A ping-req a helper took and has not answered yet.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingRelay {
    helper: usize,
    life: u32,
    origin: NodeId,
    probe: ProbeNumber,
    since_us: u64,
}

/// Messages one member sent (and handled) in one window or one life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sends {
    pings: u64,
    ping_reqs: u64,
    answers: u64,
    gossip: u64,
    push_pull_started: u64,
    pings_handled: u64,
    ping_reqs_handled: u64,
}

/// One member's load counters: the current window and the current life.
#[derive(Clone, Debug, Default)]
pub(super) struct Load {
    window: Sends,
    life: Sends,
    /// Pings and ping-reqs handled before this window and not answered yet:
    /// a relay answers when its timer fires, which a pause delays by seconds.
    carried_answers: u64,
    life_started_us: u64,
}

/// A piece of news being timed: `(member, incarnation, rank)` first reported
/// at `origin_us` by `origin`.
#[derive(Clone, Debug)]
pub(super) struct News {
    member: NodeId,
    incarnation: Incarnation,
    rank: u8,
    origin: usize,
    origin_life: u32,
    origin_us: u64,
    /// For news that the member is down: the running members that did not
    /// know the member when it was reported, in order. Such news cannot
    /// reach them (it carries no address); if they learn the member later,
    /// from a stale record, the detection bound judges how soon they find
    /// out (20-member seed 7645: a restarted member learned a member long
    /// crashed from the state of one just resumed from a 10 s pause, after
    /// the failure news had died out).
    strangers: Vec<usize>,
}

/// The bounds' state of one run.
#[derive(Clone, Debug, Default)]
pub(super) struct BoundsState {
    pub(super) load: Vec<Load>,
    window_started_us: u64,
    news: Vec<News>,
    /// Ping-reqs taken and not answered yet.
    relays: Vec<PendingRelay>,
    /// `(node, life, incarnation, since)`: a refutation not sent yet.
    refutations: Vec<(usize, u32, Incarnation, u64)>,
    /// When each member's current life started.
    pub(super) started_us: Vec<u64>,
    /// `(observer, member, incarnation)` -> when the observer started
    /// suspecting the member at that incarnation.
    suspected_at: BTreeMap<(usize, u64, Incarnation), u64>,
    /// Every piece of news ever tracked `(member, incarnation, rank)`: news
    /// is timed from its first report only, even after its sample was
    /// dropped (a late report, e.g. by a restarted member, is not news).
    news_seen: BTreeSet<(u64, Incarnation, u8)>,
}

impl BoundsState {
    /// State for `nodes` members.
    pub(super) fn new(nodes: usize) -> BoundsState {
        BoundsState { load: vec![Load::default(); nodes], started_us: vec![0; nodes], ..BoundsState::default() }
    }
}

/// Orders what a member can believe about another at one incarnation: alive,
/// then suspect, then failed or left.
fn rank(state: MemberState) -> u8 {
    match state {
        MemberState::Alive => 0,
        MemberState::Suspect => 1,
        _ => 2,
    }
}

impl SwimWorld {
    fn period_us(&self) -> u64 {
        self.template.probe_interval_ms * 1000
    }

    /// `R = λ·⌈log10(n + 1)⌉`: how often each holder piggybacks an update.
    pub fn retransmits(&self) -> u64 {
        let digits = u64::from(self.options.nodes.max(1).ilog10()) + 1;
        u64::from(self.template.retransmit_multiplier) * digits
    }

    /// The dissemination bound: `3·R` periods, plus the probe timeout (an
    /// update riding on an indirect probe), the network's largest delay and
    /// two check intervals (the checks' granularity).
    pub fn dissemination_bound_us(&self) -> u64 {
        let config = &self.template;
        3 * self.retransmits() * self.period_us()
            + config.probe_timeout_ms * 1000
            + self.profile.delay_max_us
            + 2 * self.check_interval_us
    }

    /// The detection bound `P + T + S + D` (see the module docs).
    pub fn detection_bound_us(&self) -> u64 {
        let passes = (2 * self.options.nodes.saturating_sub(1)).saturating_sub(1).clamp(1, 20) as u64;
        (passes + 1) * self.period_us() + self.max_suspicion_us() + self.dissemination_bound_us()
    }

    /// How soon a refutation must be sent once raised: a gossip interval, a
    /// probe period and two check intervals.
    pub fn refutation_bound_us(&self) -> u64 {
        self.template.gossip_interval_ms * 1000 + self.period_us() + 2 * self.check_interval_us
    }

    /// The caps of one member's sends over `span_us` (see the module docs):
    /// `(own pings, ping-reqs, gossip, push-pull exchanges started)`.
    fn load_caps(&self, span_us: u64) -> (u64, u64, u64, u64) {
        let config = &self.template;
        let periods = span_us.div_ceil(self.period_us()) + 2;
        let gossip = config.gossip_fanout as u64 * (span_us / (config.gossip_interval_ms * 1000) + 2);
        let push_pull = span_us / config.push_pull_interval_micros(self.options.nodes)
            + span_us / (config.reconnect_interval_ms * 500)
            + config.seeds.len() as u64 * (span_us / (config.join_retry_interval_ms * 500) + 1)
            + 2;
        (periods, config.indirect_checks as u64 * periods, gossip, push_pull)
    }

    // ----- load -------------------------------------------------------------

    /// Counts one message `node` sent.
    pub(super) fn count_send(&mut self, node: usize, message: &Message) {
        let kind = |sends: &mut Sends| match &message.body {
            MessageBody::Ping { .. } => sends.pings += 1,
            MessageBody::PingReq { .. } => sends.ping_reqs += 1,
            MessageBody::Ack { .. } | MessageBody::Nack { .. } => sends.answers += 1,
            MessageBody::Gossip => sends.gossip += 1,
            MessageBody::PushPull { want_reply: true, .. } => sends.push_pull_started += 1,
            MessageBody::PushPull { .. } => {}
        };
        let load = &mut self.bounds.load[node];
        kind(&mut load.window);
        kind(&mut load.life);
        self.refutation_sent(node, message);
        self.relay_answered(node, message);
    }

    /// Counts one message `node` is about to handle.
    pub(super) fn count_handled(&mut self, node: usize, message: &Message) {
        self.relay_taken(node, message);
        let load = &mut self.bounds.load[node];
        for sends in [&mut load.window, &mut load.life] {
            match message.body {
                MessageBody::Ping { .. } => sends.pings_handled += 1,
                MessageBody::PingReq { .. } => sends.ping_reqs_handled += 1,
                _ => {}
            }
        }
    }

    /// A member (re)started: its life's counters start afresh.
    pub(super) fn life_started(&mut self, node: usize) {
        let now = self.engine.now;
        self.bounds.load[node] = Load { life_started_us: now, ..Load::default() };
        self.bounds.started_us[node] = now;
    }

    /// The fault phase starts: load is measured from now on (the join wave
    /// is bounded by its own convergence check).
    pub(super) fn reset_load(&mut self) {
        let now = self.engine.now;
        self.bounds.window_started_us = now;
        for load in &mut self.bounds.load {
            *load = Load { life_started_us: now, ..Load::default() };
        }
    }

    /// Judges one member's sends over `span_us` against the caps.
    fn judge_sends(&self, node: usize, sends: &Sends, span_us: u64, what: &str, carried: u64) -> Option<String> {
        let (pings, ping_reqs, gossip, push_pull) = self.load_caps(span_us);
        let own_pings = sends.pings.saturating_sub(sends.ping_reqs_handled);
        let answers = sends.pings_handled + sends.ping_reqs_handled + carried;
        let over = [
            ("probe pings", own_pings, pings),
            ("ping-reqs", sends.ping_reqs, ping_reqs),
            ("acks and nacks", sends.answers, answers),
            ("gossip messages", sends.gossip, gossip),
            ("push-pull exchanges", sends.push_pull_started, push_pull),
        ]
        .into_iter()
        .find(|(_, sent, cap)| sent > cap)?;
        let (name, sent, cap) = over;
        Some(format!(
            "load: n{} sent {sent} {name} in {what} of {:.1} periods ending at {}, over the bound of {cap}",
            node + 1,
            span_us as f64 / self.period_us() as f64,
            time(self.engine.now)
        ))
    }

    /// Ends a load window when due: judges every running member's window and
    /// life so far, then starts the next window.
    pub(super) fn check_load(&mut self) {
        let window_us = LOAD_WINDOW_PERIODS * self.period_us();
        if self.engine.now < self.bounds.window_started_us + window_us {
            return;
        }
        let span_us = self.engine.now - self.bounds.window_started_us;
        let mut failures = Vec::new();
        for node in 0..self.nodes.len() {
            let load = &self.bounds.load[node];
            let window_span = span_us.min(self.engine.now - load.life_started_us);
            let life_span = self.engine.now - load.life_started_us;
            if self.nodes[node].swim.is_some() {
                let carried = load.carried_answers;
                failures.extend(self.judge_sends(node, &load.window, window_span, "a window", carried));
                failures.extend(self.judge_sends(node, &load.life, life_span, "its life", 0));
            }
        }
        for load in &mut self.bounds.load {
            let life = &load.life;
            load.carried_answers = (life.pings_handled + life.ping_reqs_handled).saturating_sub(life.answers);
            load.window = Sends::default();
        }
        self.bounds.window_started_us = self.engine.now;
        for failure in failures.into_iter().take(2) {
            self.checkers.fail(failure);
        }
    }

    // ----- dissemination ----------------------------------------------------

    /// An event some member reported: news to time, if it is new.
    pub(super) fn news_reported(&mut self, observer: usize, event: &Event) {
        let (member, incarnation, state) = match event {
            Event::Joined(record) | Event::Updated(record) | Event::AliveAgain(record) => {
                (record.id, record.incarnation, MemberState::Alive)
            }
            Event::Suspected { member, incarnation } => (*member, *incarnation, MemberState::Suspect),
            Event::Failed { member, incarnation } => (*member, *incarnation, MemberState::Failed),
            _ => return,
        };
        let rank = rank(state);
        let news = &mut self.bounds.news;
        let known = news.iter().any(|old| old.member == member && (old.incarnation, old.rank) >= (incarnation, rank));
        if known || news.len() >= MAX_NEWS_TRACKED || !self.bounds.news_seen.insert((member.0, incarnation, rank)) {
            return;
        }
        let strangers = if rank == 0 {
            Vec::new()
        } else {
            let stranger = |node: &super::world::SimNode| {
                node.swim.as_ref().is_some_and(|swim| swim.id() != member && swim.member(member).is_none())
            };
            self.nodes.iter().enumerate().filter(|(_, node)| stranger(node)).map(|(index, _)| index).collect()
        };
        let origin_life = self.nodes[observer].life;
        let origin_us = self.engine.now;
        self.bounds.news.push(News { member, incarnation, rank, origin: observer, origin_life, origin_us, strangers });
    }

    /// Whether `observer` knows `news` or something newer about its member
    /// (a forgotten member counts as failed; for alive news, seeing the
    /// member alive at any incarnation is enough).
    fn knows(&self, observer: usize, news: &News) -> bool {
        let Some(swim) = &self.nodes[observer].swim else {
            return true;
        };
        match swim.member(news.member) {
            // An incarnation bump of a member already seen alive (a restart
            // nobody suspected) changes nothing the observer does.
            Some(member) if news.rank == 0 && member.state == MemberState::Alive => true,
            // Likewise a suspicion its subject has since refuted, to an
            // observer that sees the subject alive: the refutation would
            // only bring it back to what it believes (50-member seed 2126:
            // suspected at 1, refuted to 2 0.16 s later).
            Some(member) if news.rank == 1 && member.state == MemberState::Alive && self.subject_refuted(news) => true,
            // A suspicion of a member the observer holds failed or left, at
            // any incarnation: a suspicion never reopens a tombstone (as in
            // memberlist), and the observer already treats the member as
            // down (5-member seed 17548: n5 declared n1 failed at 0, missed
            // its restart at 1, and then its suspicion at 1).
            Some(member) if news.rank == 1 && member.state.is_tombstone() => true,
            Some(member) => (member.incarnation, rank(member.state)) >= (news.incarnation, news.rank),
            // A member the observer never knew: news that it is down cannot
            // introduce it (no address), and the observer does not see it
            // live, which is all the news would teach (seeds 478 and 16267
            // at 50 members: the observer restarted after the subject
            // crashed). Whether it learns live members is convergence's.
            None => news.member == swim.id() || news.rank >= 1,
        }
    }

    /// Whether the subject of `news` was since reported alive at a higher
    /// incarnation (it refuted).
    fn subject_refuted(&self, news: &News) -> bool {
        let subject = news.member.0;
        self.bounds
            .news_seen
            .range((subject, news.incarnation.next(), 0)..(subject + 1, Incarnation::ZERO, 0))
            .any(|&(_, _, rank)| rank == 0)
    }

    /// Members that must know `news` by now: running, not excused, running
    /// since before it, and not its subject. For news that a member is
    /// alive, not a member that declared it failed meanwhile (a false
    /// positive, which the accuracy checker judges): it no longer probes it,
    /// and reconnection, bounded by the settle check, brings it back.
    fn must_know(&self, observer: usize, news: &News) -> bool {
        let Some(swim) = &self.nodes[observer].swim else {
            return false;
        };
        let declared_failed = news.rank == 0 && swim.member(news.member).is_some_and(|member| rank(member.state) == 2);
        !self.excused(observer)
            && !declared_failed
            && news.strangers.binary_search(&observer).is_err()
            && self.bounds.started_us[observer] <= news.origin_us
            && node_id(observer) != news.member
    }

    /// Judges the news being timed: resolved news is dropped, news whose
    /// origin or world is excused is dropped, late news fails the seed.
    pub(super) fn check_news(&mut self) {
        let bound = self.dissemination_bound_us();
        let excused_all = self.everyone_excused();
        let news = std::mem::take(&mut self.bounds.news);
        let mut kept = Vec::with_capacity(news.len());
        let mut late = None;
        for item in news {
            let origin = &self.nodes[item.origin];
            // News that a member is alive is moot once it crashed: it was
            // its main spreader (a restarted member joins through one seed).
            let subject_down = (item.member.0 as usize)
                .checked_sub(1)
                .and_then(|index| self.nodes.get(index))
                .is_none_or(|subject| subject.swim.is_none());
            if excused_all
                || origin.swim.is_none()
                || origin.life != item.origin_life
                || self.excused(item.origin)
                || (item.rank == 0 && subject_down)
            {
                continue;
            }
            let missing = (0..self.nodes.len()).find(|&o| self.must_know(o, &item) && !self.knows(o, &item));
            let Some(observer) = missing else {
                continue;
            };
            if self.engine.now - item.origin_us > bound {
                late.get_or_insert((item, observer));
            } else {
                kept.push(item);
            }
        }
        self.bounds.news = kept;
        if let Some((item, observer)) = late {
            let state = ["alive", "suspect", "failed"][usize::from(item.rank)];
            self.checkers.fail(format!(
                "dissemination: n{} reported n{} {state} at {} at {}, yet n{} still did not know it {:.1} s later (bound {:.1} s = 3·λ·⌈log10(n+1)⌉ periods + slack)",
                item.origin + 1,
                item.member.0,
                item.incarnation,
                time(item.origin_us),
                observer + 1,
                (self.engine.now - item.origin_us) as f64 / 1e6,
                bound as f64 / 1e6
            ));
        }
    }

    // ----- detection --------------------------------------------------------

    /// Whether a running, unexcused member that ran since before `crashed_us`
    /// still sees `node` (crashed then) as live; the first such member.
    pub(super) fn still_live_at(&self, node: usize, crashed_us: u64) -> Option<usize> {
        let id = node_id(node);
        (0..self.nodes.len()).find(|&observer| {
            !self.excused(observer)
                && self.bounds.started_us[observer] <= crashed_us
                && self.nodes[observer]
                    .swim
                    .as_ref()
                    .is_some_and(|swim| swim.member(id).is_some_and(|member| member.state.is_live()))
        })
    }

    /// The detection checker: fails the seed if the crash of `node` at
    /// `crashed_us` is still undetected by some member past the bound.
    /// Returns whether it failed.
    pub(super) fn detection_late(&mut self, node: usize, crashed_us: u64) -> bool {
        let bound = self.detection_bound_us();
        if self.engine.now - crashed_us <= bound {
            return false;
        }
        let Some(observer) = self.still_live_at(node, crashed_us) else {
            return false;
        };
        self.checkers.fail(format!(
            "detection: n{} crashed at {} and n{} still sees it live {:.1} s later (bound {:.1} s = probe passes + suspicion timeout + dissemination)",
            node + 1,
            time(crashed_us),
            observer + 1,
            (self.engine.now - crashed_us) as f64 / 1e6,
            bound as f64 / 1e6
        ));
        true
    }

    // ----- suspicion timeouts ----------------------------------------------

    /// The suspicion-timeout checker's window: a member declares a suspect
    /// failed on its own no sooner than α·T after it started suspecting it
    /// (the formula's minimum at any cluster size, less clock drift), and no
    /// later than the longest timeout of this cluster ([`max_suspicion_us`],
    /// which confirmations only shorten) plus clock drift and a check
    /// interval.
    ///
    /// [`max_suspicion_us`]: SwimWorld::max_suspicion_us
    pub fn suspicion_window_us(&self) -> (u64, u64) {
        let config = &self.template;
        let drift = |micros: u64| micros / 1_000_000 * self.profile.drift_ppm.unsigned_abs() + 1;
        let min = u64::from(config.suspicion_multiplier) * self.period_us();
        let max = self.max_suspicion_us();
        (min - drift(min), max + drift(max) + self.check_interval_us)
    }

    /// Times `observer`'s suspicions: a suspicion starts, a member is seen
    /// alive again (the suspicion ends), or the observer declares it failed
    /// on its own (`own`): then the time it took must lie in the window.
    pub(super) fn time_suspicion(&mut self, observer: usize, event: &Event, own: bool) {
        let now = self.engine.now;
        match event {
            Event::Suspected { member, incarnation } => {
                self.bounds.suspected_at.entry((observer, member.0, *incarnation)).or_insert(now);
            }
            Event::Joined(record) | Event::Updated(record) | Event::AliveAgain(record) => {
                let id = record.id.0;
                self.bounds.suspected_at.retain(|&(who, member, _), _| who != observer || member != id);
            }
            Event::Failed { member, incarnation } => {
                let Some(since) = self.bounds.suspected_at.remove(&(observer, member.0, *incarnation)) else {
                    return;
                };
                let (min, max) = self.suspicion_window_us();
                let took = now - since;
                if own && !self.excused(observer) && !(min..=max).contains(&took) {
                    self.checkers.fail(format!(
                        "suspicion: n{} declared n{} failed {:.2} s after suspecting it at {}, outside the suspicion timeout's window of {:.2} to {:.2} s",
                        observer + 1,
                        member.0,
                        took as f64 / 1e6,
                        time(since),
                        min as f64 / 1e6,
                        max as f64 / 1e6
                    ));
                }
            }
            _ => {}
        }
    }

    /// A member restarted: its old suspicions are gone.
    pub(super) fn forget_suspicions(&mut self, observer: usize) {
        self.bounds.suspected_at.retain(|&(who, _, _), _| who != observer);
    }

    // ----- relays -----------------------------------------------------------

    /// The relay bound: Lifeguard's relay timeout (80% of the probe
    /// timeout), clock drift and two check intervals.
    pub fn relay_bound_us(&self) -> u64 {
        let timeout = self.template.probe_timeout_ms * 1000 * 4 / 5;
        let drift = timeout / 1_000_000 * self.profile.drift_ppm.unsigned_abs() + 1;
        timeout + drift + 2 * self.check_interval_us
    }

    /// `node` is about to handle `message`: a ping-req it will relay (see
    /// the module docs for the ones it may ignore) is timed.
    fn relay_taken(&mut self, node: usize, message: &Message) {
        let MessageBody::PingReq { probe, target, want_nack: true, .. } = message.body else {
            return;
        };
        let life = self.nodes[node].life;
        let waiting = self.bounds.relays.iter().filter(|relay| relay.helper == node && relay.life == life).count();
        if target == node_id(node) || waiting >= self.template.max_pending_relays {
            return;
        }
        if self.bounds.relays.len() < MAX_RELAYS_TRACKED {
            let since_us = self.engine.now;
            self.bounds.relays.push(PendingRelay { helper: node, life, origin: message.from, probe, since_us });
        }
    }

    /// `node` sent `message`: an ack or nack to a requester answers its
    /// ping-req.
    fn relay_answered(&mut self, node: usize, message: &Message) {
        let (MessageBody::Ack { probe } | MessageBody::Nack { probe }) = message.body else {
            return;
        };
        let Some(to) = message.to else {
            return;
        };
        self.bounds.relays.retain(|relay| relay.helper != node || relay.origin != to || relay.probe != probe);
    }

    /// Ping-reqs not answered within the bound fail the seed; those of
    /// helpers that crashed, restarted or are excused are dropped.
    pub(super) fn check_relays(&mut self) {
        let bound = self.relay_bound_us();
        let now = self.engine.now;
        let pending = std::mem::take(&mut self.bounds.relays);
        let mut kept = Vec::with_capacity(pending.len());
        let mut late = None;
        for relay in pending {
            let sim_node = &self.nodes[relay.helper];
            if sim_node.life != relay.life || sim_node.swim.is_none() || self.excused(relay.helper) {
                continue;
            }
            if now - relay.since_us <= bound {
                kept.push(relay);
            } else if late.is_none() {
                late = Some(relay);
            }
        }
        self.bounds.relays = kept;
        if let Some(relay) = late {
            self.checkers.fail(format!(
                "relay: n{} took a ping-req from n{} at {} and sent it neither ack nor nack within {:.2} s (Lifeguard's relay timeout, 80% of the probe timeout, + slack)",
                relay.helper + 1,
                relay.origin.0,
                time(relay.since_us),
                bound as f64 / 1e6
            ));
        }
    }

    // ----- refutation -------------------------------------------------------

    /// Claims in `message` that `node` must refute: suspicion, failure or
    /// departure at or above its incarnation.
    pub(super) fn claims_against(&self, node: usize, message: &Message) -> bool {
        let Some(swim) = &self.nodes[node].swim else {
            return false;
        };
        let (id, own) = (swim.id(), swim.incarnation());
        let push_pull = match &message.body {
            MessageBody::PushPull { members, .. } => members.as_slice(),
            _ => &[],
        };
        !swim.has_left()
            && (message.updates.iter().any(|update| match update {
                Update::Suspect { member, incarnation, .. }
                | Update::Failed { member, incarnation, .. }
                | Update::Left { member, incarnation, .. } => *member == id && *incarnation >= own,
                Update::Alive { .. } => false,
            }) || push_pull
                .iter()
                .any(|record| record.id == id && record.incarnation >= own && record.state != MemberState::Alive))
    }

    /// After `node` handled a message with a claim against it at or above
    /// `before`: it must have refuted.
    pub(super) fn check_refuted(&mut self, node: usize, from: usize, before: Incarnation) {
        let Some(swim) = &self.nodes[node].swim else {
            return;
        };
        if swim.incarnation() > before {
            return;
        }
        self.checkers.fail(format!(
            "refutation: n{} handled a claim from n{} at {} that it is suspect or failed at {before}, and did not refute",
            node + 1,
            from + 1,
            time(self.engine.now)
        ));
    }

    /// `node` reported that it refuted, at `incarnation`: the refutation
    /// must go out (the event comes before the sends of the same input).
    pub(super) fn refuted(&mut self, node: usize, incarnation: Incarnation) {
        let life = self.nodes[node].life;
        self.bounds.refutations.push((node, life, incarnation, self.engine.now));
    }

    /// `node` sent `message`: a pending refutation it carries is sent.
    fn refutation_sent(&mut self, node: usize, message: &Message) {
        if self.bounds.refutations.is_empty() {
            return;
        }
        let id = node_id(node);
        self.bounds.refutations.retain(|&(pending, _, incarnation, _)| {
            pending != node
                || !message.updates.iter().any(|update| {
                    matches!(update, Update::Alive { member, incarnation: sent, .. } if *member == id && *sent >= incarnation)
                })
        });
    }

    /// Refutations not sent within the bound fail the seed; those of
    /// members that crashed, restarted or are excused are dropped.
    pub(super) fn check_refutations(&mut self) {
        let bound = self.refutation_bound_us();
        let excused_all = self.everyone_excused();
        let pending = std::mem::take(&mut self.bounds.refutations);
        let mut kept = Vec::with_capacity(pending.len());
        for (node, life, incarnation, since) in pending {
            let sim_node = &self.nodes[node];
            if excused_all || sim_node.life != life || sim_node.swim.is_none() || self.excused(node) {
                continue;
            }
            if self.engine.now - since <= bound {
                kept.push((node, life, incarnation, since));
                continue;
            }
            self.checkers.fail(format!(
                "refutation: n{} refuted at {incarnation} at {} but sent no alive record at it within {:.1} s",
                node + 1,
                time(since),
                bound as f64 / 1e6
            ));
        }
        self.bounds.refutations = kept;
    }
}
