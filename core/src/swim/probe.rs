//! Probe scheduling and the bookkeeping of probes in flight.
//!
//! [`ProbeOrder`] picks one target per protocol period, round-robin over a
//! shuffled list of the live members, reshuffled at the start of every full
//! pass (SWIM's "round-robin probe target selection"). Every live member is
//! therefore probed once per pass, which bounds the time to first detection
//! by two passes, unlike uniformly random selection. A member that joins
//! mid-pass is inserted at a random position among those still to come.
//!
//! [`Probe`] is this node's own probe of the current period; [`Relay`] is a
//! ping this node sends on behalf of another member's indirect probe.

use super::member::{Address, Incarnation, MemberId};
use super::message::ProbeNumber;
use crate::types::Time;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// The round-robin order of probe targets.
#[derive(Clone, Debug, Default)]
pub struct ProbeOrder {
    order: Vec<MemberId>,
    /// Index of the next member to probe in `order`.
    next: usize,
}

impl ProbeOrder {
    /// The next target among `candidates` (the members that may be probed
    /// now), starting a freshly shuffled pass when the current one is done.
    /// Members of the current pass that are no longer candidates are skipped.
    /// The tests' shorthand: the node itself uses
    /// [`next_target_where`](Self::next_target_where).
    #[cfg(test)]
    pub fn next_target(&mut self, candidates: &BTreeSet<MemberId>, rng: &mut ChaCha8Rng) -> Option<MemberId> {
        self.next_target_where(|member| candidates.contains(&member), || candidates.iter().copied().collect(), rng)
    }

    /// The next target to probe, starting a freshly shuffled pass when the
    /// current one is done (members of the current pass that are no longer
    /// candidates are skipped), without building the candidate set each
    /// period: `is_candidate` tells whether a member may be probed
    /// now, and `all_candidates` lists them (in any deterministic order) when
    /// a new pass starts. Costs amortised constant time per call, plus the
    /// members skipped, rather than time linear in the cluster size.
    pub fn next_target_where(
        &mut self,
        is_candidate: impl Fn(MemberId) -> bool,
        all_candidates: impl FnOnce() -> Vec<MemberId>,
        rng: &mut ChaCha8Rng,
    ) -> Option<MemberId> {
        while let Some(&member) = self.order.get(self.next) {
            self.next += 1;
            if is_candidate(member) {
                return Some(member);
            }
        }
        // A fresh pass holds only candidates, so its first member is one.
        self.order = all_candidates();
        shuffle(&mut self.order, rng);
        self.next = 0;
        let first = self.order.first().copied()?;
        debug_assert!(is_candidate(first), "invariant: a fresh pass holds only candidates");
        self.next = 1;
        Some(first)
    }

    /// Adds a member that just joined (or came back) at a random position
    /// among those not yet probed in this pass, in constant time (the member
    /// it displaces moves to the end, as in memberlist). A member that went
    /// away and came back within one pass may appear twice and then be
    /// probed twice. So that flapping news cannot grow the pass without
    /// bound, a pass holding `limit` members still to probe is dropped, and
    /// the next target starts a fresh one.
    pub fn insert(&mut self, member: MemberId, limit: usize, rng: &mut ChaCha8Rng) {
        if self.order.len() - self.next >= limit {
            self.order.clear();
            self.next = 0;
            return;
        }
        let at = rng.random_range(self.next..=self.order.len());
        self.order.push(member);
        let last = self.order.len() - 1;
        self.order.swap(at, last);
    }

    /// Up to `count` distinct members of the current pass (probed or not)
    /// for which `keep` holds, drawn uniformly with at most `4 · count + 4`
    /// draws: constant work whatever the cluster size, unlike building the
    /// candidate list. May return fewer when most of the pass no longer
    /// qualifies (members that left or failed since the pass started).
    pub fn sample_where(&self, count: usize, keep: impl Fn(MemberId) -> bool, rng: &mut ChaCha8Rng) -> Vec<MemberId> {
        let mut chosen: Vec<MemberId> = Vec::with_capacity(count);
        if self.order.is_empty() {
            return chosen;
        }
        for _ in 0..4 * count + 4 {
            if chosen.len() >= count {
                break;
            }
            let member = self.order[rng.random_range(0..self.order.len())];
            if !chosen.contains(&member) && keep(member) {
                chosen.push(member);
            }
        }
        chosen
    }

    /// Members still to be probed in the current pass, for tests.
    pub fn remaining(&self) -> &[MemberId] {
        &self.order[self.next..]
    }
}

/// Fisher–Yates shuffle driven by the node's seeded RNG.
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for last in (1..items.len()).rev() {
        let pick = rng.random_range(0..=last);
        items.swap(last, pick);
    }
}

/// Up to `count` distinct members chosen uniformly from `candidates`, in a
/// random order.
pub fn choose_distinct(candidates: &[MemberId], count: usize, rng: &mut ChaCha8Rng) -> Vec<MemberId> {
    let mut pool = candidates.to_vec();
    let count = count.min(pool.len());
    for slot in 0..count {
        let pick = rng.random_range(slot..pool.len());
        pool.swap(slot, pick);
    }
    pool.truncate(count);
    pool
}

/// Where this node's probe of the current protocol period stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbePhase {
    /// The ping is out; at `deadline` ask helpers to probe indirectly.
    Direct {
        /// When the direct phase ends unanswered (the probe timeout, scaled
        /// by the local health multiplier).
        deadline: Time,
    },
    /// Ping-reqs are out; the verdict comes at the end of the period.
    Indirect,
}

/// This node's probe of the current protocol period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// This node's number for the probe, carried by its ping and ping-reqs.
    pub number: ProbeNumber,
    /// The member probed.
    pub target: MemberId,
    /// The target's incarnation when the probe started. If the target has
    /// since shown itself alive at a higher one (it restarted, or refuted),
    /// the probe's silence is about its past and suspects nobody.
    pub target_incarnation: Incarnation,
    /// Direct or indirect.
    pub phase: ProbePhase,
    /// The helpers asked to probe indirectly; acks and nacks are accepted
    /// from them and from the target only.
    pub helpers: Vec<MemberId>,
    /// Helpers that promised (and sent) a nack.
    pub nacks: BTreeSet<MemberId>,
    /// Whether the helpers were asked for nacks (Lifeguard).
    pub nacks_expected: bool,
    /// An ack came from the target or a helper: the target is alive.
    pub acked: bool,
}

impl Probe {
    /// How many promised nacks never came (Lifeguard's evidence of local
    /// trouble), or `None` if no nacks were promised.
    pub fn missed_nacks(&self) -> Option<usize> {
        if !self.nacks_expected || self.helpers.is_empty() {
            return None;
        }
        Some(self.helpers.len() - self.nacks.len())
    }
}

/// A ping this node sends for another member's indirect probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// The member that asked, and where to answer it.
    pub origin: MemberId,
    /// Where the ack or nack goes.
    pub origin_address: Address,
    /// The number the origin used in its ping-req.
    pub origin_probe: ProbeNumber,
    /// The member pinged on the origin's behalf; only its ack counts.
    pub target: MemberId,
    /// When to give up (and nack, if asked).
    pub deadline: Time,
    /// The origin asked for a nack if the target stays silent.
    pub want_nack: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;
    use rand::SeedableRng;

    fn members(ids: impl IntoIterator<Item = u64>) -> BTreeSet<MemberId> {
        ids.into_iter().map(NodeId).collect()
    }

    #[test]
    fn every_member_is_probed_once_per_pass() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let candidates = members(1..=9);
        let mut order = ProbeOrder::default();
        let mut passes = Vec::new();
        for _ in 0..4 {
            let pass: Vec<_> = (0..9).map(|_| order.next_target(&candidates, &mut rng).unwrap()).collect();
            assert_eq!(pass.iter().copied().collect::<BTreeSet<_>>(), candidates);
            passes.push(pass);
        }
        assert!(passes.windows(2).any(|pair| pair[0] != pair[1]), "passes are reshuffled");
    }

    #[test]
    fn members_that_are_gone_are_skipped_and_newcomers_are_probed_this_pass() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut candidates = members(1..=4);
        let mut order = ProbeOrder::default();
        let first = order.next_target(&candidates, &mut rng).unwrap();
        let gone = order.remaining()[0];
        candidates.remove(&gone);
        candidates.insert(NodeId(9));
        order.insert(NodeId(9), 100, &mut rng);
        let rest: BTreeSet<_> = (0..3).map(|_| order.next_target(&candidates, &mut rng).unwrap()).collect();
        assert!(!rest.contains(&gone));
        assert!(rest.contains(&NodeId(9)));
        assert!(!rest.contains(&first));
    }

    #[test]
    fn flapping_members_cannot_grow_a_pass_past_the_limit() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let candidates = members(1..=4);
        let mut order = ProbeOrder::default();
        order.next_target(&candidates, &mut rng).unwrap();
        for _ in 0..1000 {
            order.insert(NodeId(2), 8, &mut rng);
            assert!(order.remaining().len() <= 8);
        }
        // A dropped pass starts afresh with every candidate exactly once.
        let mut order = ProbeOrder::default();
        for _ in 0..8 {
            order.insert(NodeId(2), 8, &mut rng);
        }
        order.insert(NodeId(2), 8, &mut rng);
        assert!(order.remaining().is_empty());
        let pass: Vec<_> = (0..4).map(|_| order.next_target(&candidates, &mut rng).unwrap()).collect();
        assert_eq!(pass.iter().copied().collect::<BTreeSet<_>>(), candidates);
    }

    #[test]
    fn no_candidates_means_no_target() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(ProbeOrder::default().next_target(&BTreeSet::new(), &mut rng), None);
    }

    #[test]
    fn choose_distinct_picks_without_repetition() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let pool: Vec<_> = (1..=10).map(NodeId).collect();
        let chosen = choose_distinct(&pool, 4, &mut rng);
        assert_eq!(chosen.len(), 4);
        assert_eq!(chosen.iter().collect::<BTreeSet<_>>().len(), 4);
        assert_eq!(choose_distinct(&pool[..2], 4, &mut rng).len(), 2);
    }
}
