//! The piggyback queue: membership updates waiting to be spread.
//!
//! SWIM spreads news epidemically by piggybacking it on protocol messages,
//! and, while a backlog waits, on gossip rounds of their own (memberlist's
//! `GossipInterval`; see [`Config::gossip_backlog_bytes`](super::Config::gossip_backlog_bytes)).
//! Each update is sent about `λ · log10(n)` times (λ =
//! [`retransmit_multiplier`](super::Config::retransmit_multiplier), `n` the
//! cluster size, computed when the update is sent, as in memberlist), after
//! which it is dropped: by then it has reached everyone with high
//! probability, and push-pull anti-entropy repairs the rest.
//!
//! The queue holds at most one update per member: news about a member
//! replaces older news about it. When a message has room, updates go out
//! least-transmitted first and, among equals, newest first, as many as fit in
//! the byte budget (measured with the real encoder; the search stops after a
//! few updates that do not fit, so its cost does not grow with the queue).
//! [`bytes`](Dissemination::bytes) is the backlog that opens gossip rounds.
//! The queue is bounded by
//! [`max_dissemination_queue`](super::Config::max_dissemination_queue); when
//! full, the most-transmitted, oldest update is evicted.

use super::member::MemberId;
use super::message::Update;
use super::wire;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct Entry {
    update: Update,
    transmits: u32,
    /// Insertion order: higher is newer.
    sequence: u64,
    encoded_bytes: usize,
}

/// Priority key: fewest transmits first, then newest first. Sequences are
/// unique, so `(transmits, u64::MAX − sequence)` packed in one integer orders
/// the queue with a single comparison.
type Priority = u128;

fn priority(transmits: u32, sequence: u64) -> Priority {
    (u128::from(transmits) << 64) | u128::from(u64::MAX - sequence)
}

/// Updates waiting to be piggybacked.
#[derive(Clone, Debug)]
pub struct Dissemination {
    entries: BTreeMap<MemberId, Entry>,
    /// The same updates in sending order, each with its member and encoded
    /// size, so that choosing what fits never looks into `entries`.
    by_priority: BTreeMap<Priority, (MemberId, usize)>,
    next_sequence: u64,
    capacity: usize,
    /// Sum of the encoded sizes of the queued updates.
    bytes: usize,
}

impl Dissemination {
    /// An empty queue holding at most `capacity` updates.
    pub fn new(capacity: usize) -> Dissemination {
        assert!(capacity > 0, "invariant: validated configs have a non-zero queue capacity");
        Dissemination { entries: BTreeMap::new(), by_priority: BTreeMap::new(), next_sequence: 0, capacity, bytes: 0 }
    }

    /// Updates queued (at most one per member).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no update is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded bytes of every queued update: the backlog.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues `update`, replacing any queued update about the same member.
    pub fn enqueue(&mut self, update: Update) {
        let member = update.member();
        if let Some(old) = self.entries.remove(&member) {
            self.by_priority.remove(&priority(old.transmits, old.sequence));
            self.bytes -= old.encoded_bytes;
        } else if self.entries.len() >= self.capacity {
            let (_, (evicted, bytes)) = self.by_priority.pop_last().expect("invariant: a full queue has entries");
            self.entries.remove(&evicted);
            self.bytes -= bytes;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let encoded_bytes = wire::encoded_len(&update);
        self.by_priority.insert(priority(0, sequence), (member, encoded_bytes));
        self.bytes += encoded_bytes;
        self.entries.insert(member, Entry { update, transmits: 0, sequence, encoded_bytes });
        debug_assert_eq!(self.entries.len(), self.by_priority.len());
    }

    /// The backlog counted afresh from the queued updates (for the
    /// invariant that [`bytes`](Dissemination::bytes) keeps it).
    pub fn recounted_bytes(&self) -> usize {
        self.entries.values().map(|entry| wire::encoded_len(&entry.update)).sum()
    }

    /// The queued update about `member`, if any.
    pub fn get(&self, member: MemberId) -> Option<&Update> {
        self.entries.get(&member).map(|entry| &entry.update)
    }

    /// Picks updates for one message whose updates list (including its length
    /// prefix) may take at most `room_bytes`. `already` updates are in the
    /// list before these (the buddy system's suspicion); they are neither
    /// counted nor duplicated. Each picked update counts as one transmission;
    /// updates sent `retransmit_limit` times leave the queue.
    pub fn select(&mut self, room_bytes: usize, already: &[Update], retransmit_limit: u32) -> Vec<Update> {
        let mut used = already.iter().map(wire::encoded_len).sum::<usize>() + wire::length_prefix_len(already.len());
        let mut picked: Vec<(Priority, MemberId)> = Vec::new();
        let mut misfits = 0;
        for (&key, &(member, encoded_bytes)) in &self.by_priority {
            if already.iter().any(|update| update.member() == member) {
                continue;
            }
            let count = already.len() + picked.len() + 1;
            let prefix_growth = wire::length_prefix_len(count) - wire::length_prefix_len(count - 1);
            if used + encoded_bytes + prefix_growth <= room_bytes {
                used += encoded_bytes + prefix_growth;
                picked.push((key, member));
            } else {
                // Past a few updates that do not fit, the message is as good
                // as full: stop rather than scan the whole queue.
                misfits += 1;
                if misfits >= MAX_MISFITS {
                    break;
                }
            }
            if room_bytes.saturating_sub(used) < MIN_UPDATE_BYTES {
                break;
            }
        }
        let mut updates = Vec::with_capacity(picked.len());
        for (key, member) in picked {
            self.by_priority.remove(&key);
            let entry = self.entries.get_mut(&member).expect("invariant: priority keys mirror entries");
            entry.transmits += 1;
            updates.push(entry.update.clone());
            if entry.transmits >= retransmit_limit {
                self.bytes -= entry.encoded_bytes;
                self.entries.remove(&member);
            } else {
                self.by_priority.insert(priority(entry.transmits, entry.sequence), (member, entry.encoded_bytes));
            }
        }
        debug_assert_eq!(self.entries.len(), self.by_priority.len());
        updates
    }
}

/// How many queued updates too large for the room left one selection skips
/// before it stops looking: bounds the work per message whatever the queue
/// length, at the price of a few bytes of room left unused.
const MAX_MISFITS: usize = 8;

/// The smallest possible encoded update (a `Left` with one-byte varints).
const MIN_UPDATE_BYTES: usize = 3;

/// How many times each update is sent: `multiplier · ⌈log10(n + 1)⌉`, with
/// the logarithm computed exactly as the number of decimal digits of `n`.
pub fn retransmit_limit(multiplier: u32, cluster_size: usize) -> u32 {
    let digits = cluster_size.max(1).ilog10() + 1;
    multiplier.saturating_mul(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::member::{Address, Incarnation, Metadata};
    use crate::types::NodeId;

    fn alive(member: u64, incarnation: u64) -> Update {
        Update::Alive {
            member: NodeId(member),
            incarnation: Incarnation(incarnation),
            address: Address::new(vec![0; 8]),
            metadata: Metadata::new(vec![]),
        }
    }

    #[test]
    fn retransmit_limit_is_lambda_times_log_n() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 99), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
    }

    #[test]
    fn newer_news_about_a_member_replaces_older() {
        let mut queue = Dissemination::new(10);
        queue.enqueue(alive(1, 1));
        queue.enqueue(alive(1, 2));
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.get(NodeId(1)), Some(&alive(1, 2)));
    }

    #[test]
    fn least_transmitted_then_newest_go_first() {
        let mut queue = Dissemination::new(10);
        for member in 1..=3 {
            queue.enqueue(alive(member, 0));
        }
        let one = wire::encoded_len(&alive(1, 0));
        let room_for_one = 1 + one;
        assert_eq!(queue.select(room_for_one, &[], 10), vec![alive(3, 0)]);
        assert_eq!(queue.select(room_for_one, &[], 10), vec![alive(2, 0)]);
        assert_eq!(queue.select(room_for_one, &[], 10), vec![alive(1, 0)]);
        assert_eq!(queue.select(room_for_one, &[], 10), vec![alive(3, 0)]);
    }

    #[test]
    fn updates_leave_after_the_retransmit_limit() {
        let mut queue = Dissemination::new(10);
        queue.enqueue(alive(1, 0));
        for _ in 0..3 {
            assert_eq!(queue.select(1000, &[], 3).len(), 1);
        }
        assert!(queue.is_empty());
        assert!(queue.select(1000, &[], 3).is_empty());
    }

    #[test]
    fn selection_fits_the_room_exactly() {
        let mut queue = Dissemination::new(1000);
        for member in 0..600 {
            queue.enqueue(alive(member, 0));
        }
        for room in [0, 1, 10, 100, 1400, 9000] {
            let picked = queue.select(room, &[], 1000);
            assert!(wire::encoded_len(&picked) <= room.max(1), "room {room}: {}", wire::encoded_len(&picked));
        }
    }

    #[test]
    fn a_full_queue_evicts_the_most_transmitted_oldest_update() {
        let mut queue = Dissemination::new(2);
        queue.enqueue(alive(1, 0));
        queue.enqueue(alive(2, 0));
        queue.select(1000, &[], 10);
        queue.enqueue(alive(3, 0));
        assert_eq!(queue.len(), 2);
        assert!(queue.get(NodeId(1)).is_none());
        assert!(queue.get(NodeId(3)).is_some());
    }

    #[test]
    fn the_backlog_counts_the_encoded_bytes_of_what_waits() {
        let mut queue = Dissemination::new(2);
        let one = wire::encoded_len(&alive(1, 0));
        queue.enqueue(alive(1, 0));
        queue.enqueue(alive(1, 1));
        assert_eq!(queue.bytes(), one);
        queue.enqueue(alive(2, 0));
        queue.enqueue(alive(3, 0));
        assert_eq!(queue.bytes(), 2 * one, "an eviction gives its bytes back");
        queue.select(1000, &[], 1);
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn updates_already_in_the_message_are_not_duplicated() {
        let mut queue = Dissemination::new(10);
        queue.enqueue(alive(1, 0));
        queue.enqueue(alive(2, 0));
        let picked = queue.select(1000, &[alive(1, 0)], 10);
        assert_eq!(picked, vec![alive(2, 0)]);
    }
}
