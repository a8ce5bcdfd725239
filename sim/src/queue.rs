//! The discrete-event queue shared by the Raft and SWIM worlds.
//!
//! Events come out in time order; events scheduled for the same microsecond
//! come out in the order they were scheduled, which is what makes a run
//! deterministic. The heap moves only small keys; the events themselves wait
//! in a slab whose freed slots are reused.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A heap entry: the event waits in the slab at `slot`.
struct Scheduled {
    at: u64,
    sequence: u64,
    slot: u32,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.sequence).cmp(&(self.at, self.sequence))
    }
}

/// Pending events of one run, earliest first, ties in scheduling order.
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    sequence: u64,
    /// Sequence numbers of events that go after their ties; they start at
    /// [`AFTER_TIES`], above any ordinary sequence number.
    late_sequence: u64,
}

/// First sequence number of [`EventQueue::schedule_after_ties_at`]: no run
/// schedules 2^63 ordinary events.
const AFTER_TIES: u64 = 1 << 63;

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            sequence: 0,
            late_sequence: AFTER_TIES,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at simulated time `at` (microseconds).
    pub fn schedule_at(&mut self, at: u64, event: E) {
        self.sequence += 1;
        let sequence = self.sequence;
        self.push(at, sequence, event);
    }

    /// Schedules `event` at `at`, after every event scheduled for the same
    /// microsecond with [`schedule_at`](EventQueue::schedule_at), even later
    /// ones (among themselves, in scheduling order): an event planned ahead
    /// that stands for one a handler would schedule at that moment.
    pub fn schedule_after_ties_at(&mut self, at: u64, event: E) {
        self.late_sequence += 1;
        let sequence = self.late_sequence;
        self.push(at, sequence, event);
    }

    fn push(&mut self, at: u64, sequence: u64, event: E) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("invariant: fewer than 2^32 events are ever pending")
            }
        };
        self.heap.push(Scheduled { at, sequence, slot });
    }

    /// The earliest pending event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Scheduled { at, slot, .. } = self.heap.pop()?;
        self.free.push(slot);
        let event = self.slots[slot as usize].take().expect("invariant: a queued slot holds its event");
        Some((at, event))
    }

    /// Events still pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_in_time_order_and_ties_in_scheduling_order() {
        let mut queue = EventQueue::default();
        queue.schedule_at(5, "late");
        queue.schedule_at(1, "first");
        queue.schedule_at(3, "tie a");
        queue.schedule_at(3, "tie b");
        assert_eq!(queue.pop(), Some((1, "first")));
        queue.schedule_at(3, "tie c");
        let rest: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(rest, vec![(3, "tie a"), (3, "tie b"), (3, "tie c"), (5, "late")]);
        assert!(queue.is_empty());
    }

    #[test]
    fn events_scheduled_after_ties_follow_every_ordinary_tie() {
        let mut queue = EventQueue::default();
        queue.schedule_after_ties_at(3, "planned a");
        queue.schedule_after_ties_at(3, "planned b");
        queue.schedule_at(3, "tie");
        queue.schedule_at(4, "later");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).map(|(_, event)| event).collect();
        assert_eq!(order, vec!["tie", "planned a", "planned b", "later"]);
    }

    #[test]
    fn freed_slots_are_reused() {
        let mut queue = EventQueue::default();
        for round in 0..100u64 {
            queue.schedule_at(round, round);
            queue.schedule_at(round, round + 1000);
            queue.pop();
            queue.pop();
        }
        assert_eq!(queue.slots.len(), 2);
        assert_eq!(queue.len(), 0);
    }
}
