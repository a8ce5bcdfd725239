//! The routing table of one keyspace: its [`RangeDescriptor`]s in key order,
//! a lookup from a routing key to its range and replicas, and the changes
//! (split, merge, newer descriptors) that keep it current.
//!
//! The meta range holds the authoritative table, which always covers the
//! keyspace ([`RangeTable::check_cover`]); a routing cache holds a partial
//! one, filled with [`RangeTable::insert`], whose generation check makes it
//! ignore news older than what it already knows.
//!
//! ## Lookup
//!
//! A lookup binary-searches a contiguous `Vec<u64>`: for each range, the
//! first eight bytes of its start key after the prefix that all start keys
//! share (big-endian, zero-padded), so that comparing two of them compares
//! the keys — unless they are equal, and only then are full keys compared,
//! among the starts with that same eight-byte prefix. Hashed routing keys
//! are exactly eight bytes, so they refine at most when a key is itself a
//! start. Changes cost O(ranges): tables change rarely and are read per
//! request.

use super::descriptor::{DescriptorError, RangeDescriptor, RangeId, Span};
use super::keyspace::{hashed_routing_key, KeyMode};
use crate::types::NodeId;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Most ranges a table holds; an insert or split beyond it is refused.
pub const MAX_TABLE_RANGES: usize = 1 << 22;

/// Why a table change was refused. None of them changes the table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The descriptor is older than one the table holds for the same range
    /// or for an overlapping span: stale news, ignored.
    #[error("{range} generation {generation} is older than {held} generation {held_generation}")]
    Stale {
        /// The refused descriptor's range.
        range: RangeId,
        /// Its generation.
        generation: u64,
        /// The newer range held.
        held: RangeId,
        /// Its generation.
        held_generation: u64,
    },
    /// The descriptor has the same generation as a different descriptor the
    /// table holds for an overlapping span: two histories disagree.
    #[error("{range} generation {generation} conflicts with {held} of the same generation")]
    Conflict {
        /// The refused descriptor's range.
        range: RangeId,
        /// Its generation.
        generation: u64,
        /// The range held.
        held: RangeId,
    },
    /// No range with this id is in the table.
    #[error("no range {0} in the table")]
    UnknownRange(RangeId),
    /// A split asked for a right-hand id that is already in the table.
    #[error("range id {0} is already in use")]
    RangeIdInUse(RangeId),
    /// The table already holds [`MAX_TABLE_RANGES`] ranges.
    #[error("the table is full ({MAX_TABLE_RANGES} ranges)")]
    Full,
    /// The descriptor refused the change (split key outside the span, merge
    /// of non-neighbours or of different replica sets).
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
}

/// Where the ranges fail to cover the keyspace exactly once: the first
/// problem in key order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoverError {
    /// There are no ranges at all.
    #[error("no ranges")]
    Empty,
    /// The first range does not start at the start of the keyspace.
    #[error("gap before {range}: it starts at {span}, not at the empty key")]
    StartsLate {
        /// The first range.
        range: RangeId,
        /// Its span.
        span: Span,
    },
    /// Keys between two consecutive ranges belong to neither.
    #[error("gap between {left} {left_span} and {right} {right_span}")]
    Gap {
        /// The range before the gap.
        left: RangeId,
        /// Its span.
        left_span: Span,
        /// The range after the gap.
        right: RangeId,
        /// Its span.
        right_span: Span,
    },
    /// Two ranges share keys.
    #[error("{left} {left_span} overlaps {right} {right_span}")]
    Overlap {
        /// The range that starts first.
        left: RangeId,
        /// Its span.
        left_span: Span,
        /// The range that starts inside it.
        right: RangeId,
        /// Its span.
        right_span: Span,
    },
    /// The last range ends before the end of the keyspace.
    #[error("gap after {range}: it ends at {span}")]
    EndsEarly {
        /// The last range.
        range: RangeId,
        /// Its span.
        span: Span,
    },
}

/// What [`RangeTable::insert`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The table already held exactly this descriptor.
    Unchanged,
    /// The descriptor is in; `evicted` lists the older descriptors it
    /// replaced (same id, or overlapping span), in key order.
    Added {
        /// Ranges removed to make room.
        evicted: Vec<RangeId>,
    },
}

/// A key's range and its voters, as [`RangeTable::route`] finds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    /// The range.
    pub range: RangeId,
    /// Its voters, sorted by node.
    pub voters: &'a [NodeId],
}

/// The ranges of one keyspace, sorted by span start, never overlapping.
#[derive(Clone, Debug)]
pub struct RangeTable {
    /// For each range, the first eight bytes of its start key after
    /// `shared`, big-endian and zero-padded (0 for the empty start key).
    prefixes: Vec<u64>,
    /// The ranges in key order; `ranges[i]` goes with `prefixes[i]`.
    ranges: Vec<RangeDescriptor>,
    /// `followed[i]`: range `i` ends where range `i + 1` starts (or, last,
    /// at the end of the keyspace), so a key found below the next start is
    /// inside it without reading its end key (a cache miss saved).
    followed: Vec<bool>,
    /// The prefix that every non-empty start key begins with.
    shared: Vec<u8>,
    /// `route_ids[i]`: the id of range `i`.
    route_ids: Vec<RangeId>,
    /// The voters of every range, range after range: range `i`'s are
    /// `route_nodes[route_offsets[i]..route_offsets[i + 1]]`.
    route_nodes: Vec<NodeId>,
    /// Where each range's voters start in `route_nodes`, and their end.
    route_offsets: Vec<usize>,
    /// Each range's start key, by id.
    starts: BTreeMap<RangeId, Vec<u8>>,
}

/// The first eight bytes of `key`, big-endian, zero-padded.
#[inline]
fn prefix_of(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(first) => u64::from_be_bytes(*first),
        // A byte loop, not a variable-length copy (a memcpy call).
        None => key.iter().enumerate().fold(0, |prefix, (at, &byte)| prefix | u64::from(byte) << (56 - 8 * at)),
    }
}

/// Whether two spans share a key.
fn spans_overlap(a: &Span, b: &Span) -> bool {
    let a_before_b = a.end.as_deref().is_some_and(|end| end <= b.start.as_slice());
    let b_before_a = b.end.as_deref().is_some_and(|end| end <= a.start.as_slice());
    !a_before_b && !b_before_a
}

impl Default for RangeTable {
    fn default() -> RangeTable {
        RangeTable {
            prefixes: Vec::new(),
            ranges: Vec::new(),
            followed: Vec::new(),
            shared: Vec::new(),
            route_ids: Vec::new(),
            route_nodes: Vec::new(),
            route_offsets: vec![0],
            starts: BTreeMap::new(),
        }
    }
}

impl RangeTable {
    /// An empty table.
    pub fn new() -> RangeTable {
        RangeTable::default()
    }

    /// A table of `descriptors`, which must not overlap or share ids (they
    /// need not cover the keyspace; see [`RangeTable::check_cover`]).
    pub fn from_descriptors(descriptors: impl IntoIterator<Item = RangeDescriptor>) -> Result<RangeTable, TableError> {
        let mut table = RangeTable::new();
        for descriptor in descriptors {
            match table.insert(descriptor.clone())? {
                Inserted::Added { evicted } if evicted.is_empty() => {}
                // An eviction or an unchanged insert means two given
                // descriptors overlap or repeat.
                _ => return Err(table.conflict_with(&descriptor)),
            }
        }
        Ok(table)
    }

    /// The error for a descriptor that collides with one already given.
    fn conflict_with(&self, descriptor: &RangeDescriptor) -> TableError {
        let held = self.lookup(&descriptor.span.start).map_or(descriptor.id, |held| held.id);
        TableError::Conflict { range: descriptor.id, generation: descriptor.generation, held }
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the table holds no range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges in key order.
    pub fn iter(&self) -> impl Iterator<Item = &RangeDescriptor> + '_ {
        self.ranges.iter()
    }

    /// The ranges with a replica (voter or learner) on `node`, in key order.
    pub fn ranges_on(&self, node: NodeId) -> impl Iterator<Item = &RangeDescriptor> + '_ {
        self.ranges.iter().filter(move |range| range.has_replica(node))
    }

    /// The range with id `id`.
    pub fn get(&self, id: RangeId) -> Option<&RangeDescriptor> {
        self.index_of(id).map(|at| &self.ranges[at])
    }

    fn index_of(&self, id: RangeId) -> Option<usize> {
        let start = self.starts.get(&id)?;
        self.ranges.binary_search_by(|range| range.span.start.as_slice().cmp(start)).ok()
    }

    /// The range whose span holds `routing_key`, if the table has one.
    #[inline]
    pub fn lookup(&self, routing_key: &[u8]) -> Option<&RangeDescriptor> {
        self.search(routing_key).map(|at| &self.ranges[at])
    }

    /// The id and voters of the range whose span holds `routing_key`: what
    /// a router needs, read from compact arrays (a few hundred KiB at
    /// 10,000 ranges) rather than from the descriptors and their heap
    /// allocations, so a lookup stays in cache.
    #[inline]
    pub fn route(&self, routing_key: &[u8]) -> Option<Route<'_>> {
        let at = self.search(routing_key)?;
        Some(Route {
            range: self.route_ids[at],
            voters: &self.route_nodes[self.route_offsets[at]..self.route_offsets[at + 1]],
        })
    }

    /// [`RangeTable::route`] for a user's key in a keyspace of `mode` (see
    /// [`RangeTable::lookup_key`]).
    pub fn route_key(&self, mode: KeyMode, key: &[u8]) -> Option<Route<'_>> {
        match mode {
            KeyMode::Ordered => self.route(key),
            KeyMode::Hashed => self.route(&hashed_routing_key(key)),
            KeyMode::Jump { .. } => None,
        }
    }

    /// The index of the range holding `routing_key`.
    #[inline]
    fn search(&self, routing_key: &[u8]) -> Option<usize> {
        let shared = self.shared.len();
        // A byte loop, not `strip_prefix`: a libc memcmp call costs more than
        // the whole search when the shared prefix is short or empty.
        let under_shared = routing_key.len() >= shared && routing_key.iter().zip(&self.shared).all(|(a, b)| a == b);
        if !under_shared {
            // Before every non-empty start, or after every start.
            let at = match routing_key.cmp(&self.shared) {
                Ordering::Less => 0,
                _ => self.ranges.len().checked_sub(1)?,
            };
            return self.ranges.get(at).filter(|range| range.span.contains(routing_key)).map(|_| at);
        }
        let prefix = prefix_of(&routing_key[shared..]);
        let after = self.prefixes.partition_point(|&start| start <= prefix);
        let mut at = after.checked_sub(1)?;
        if self.prefixes[at] == prefix {
            // Starts with the key's eight-byte prefix may lie on either side
            // of the key: compare full keys among them.
            let first = self.prefixes[..at].partition_point(|&start| start < prefix);
            let within = self.ranges[first..after].partition_point(|range| range.span.start.as_slice() <= routing_key);
            at = (first + within).checked_sub(1)?;
        }
        // The search left the key below the next range's start.
        let inside = self.followed[at] || self.ranges[at].span.end.as_deref().is_none_or(|end| routing_key < end);
        inside.then_some(at)
    }

    /// The range of the user's `key` in a keyspace of `mode`: the raw key
    /// for [`KeyMode::Ordered`], its [`hashed_routing_key`] for
    /// [`KeyMode::Hashed`]. `None` for [`KeyMode::Jump`], which has shards,
    /// not ranges (see [`super::ShardMap`]).
    pub fn lookup_key(&self, mode: KeyMode, key: &[u8]) -> Option<&RangeDescriptor> {
        match mode {
            KeyMode::Ordered => self.lookup(key),
            KeyMode::Hashed => self.lookup(&hashed_routing_key(key)),
            KeyMode::Jump { .. } => None,
        }
    }

    /// Puts `descriptor` in, evicting what it supersedes: the held
    /// descriptor of the same range and any held descriptor whose span
    /// overlaps. Refused if one of those is newer ([`TableError::Stale`]) or
    /// as new but different ([`TableError::Conflict`]): generations grow
    /// along every key's history, so of two overlapping descriptors the
    /// higher generation is the newer. Evicting may leave gaps, which a
    /// routing cache fills on its next miss.
    pub fn insert(&mut self, descriptor: RangeDescriptor) -> Result<Inserted, TableError> {
        let mut superseded: Vec<usize> = self.overlapping(&descriptor.span).collect();
        if let Some(at) = self.index_of(descriptor.id).filter(|at| !superseded.contains(at)) {
            superseded.push(at);
            superseded.sort_unstable();
        }
        for &at in &superseded {
            let held = &self.ranges[at];
            if *held == descriptor {
                return Ok(Inserted::Unchanged);
            }
            let (range, generation, held_generation) = (descriptor.id, descriptor.generation, held.generation);
            match held_generation.cmp(&generation) {
                Ordering::Greater => {
                    return Err(TableError::Stale { range, generation, held: held.id, held_generation })
                }
                Ordering::Equal => return Err(TableError::Conflict { range, generation, held: held.id }),
                Ordering::Less => {}
            }
        }
        if self.ranges.len() - superseded.len() >= MAX_TABLE_RANGES {
            return Err(TableError::Full);
        }
        let evicted: Vec<RangeId> = superseded.iter().map(|&at| self.ranges[at].id).collect();
        for &at in superseded.iter().rev() {
            self.remove_at(at);
        }
        let at = self.ranges.partition_point(|range| range.span.start < descriptor.span.start);
        self.insert_at(at, descriptor);
        Ok(Inserted::Added { evicted })
    }

    /// Indexes of the held ranges whose spans overlap `span`.
    fn overlapping<'a>(&'a self, span: &'a Span) -> impl Iterator<Item = usize> + 'a {
        // Held ranges are sorted and disjoint, so their ends are sorted too:
        // those that end at or before `span` starts form a prefix.
        let first = self
            .ranges
            .partition_point(|range| range.span.end.as_deref().is_some_and(|end| end <= span.start.as_slice()));
        (first..self.ranges.len()).take_while(move |&at| spans_overlap(&self.ranges[at].span, span))
    }

    /// Splits range `id` at `key`: it keeps `[start, key)`, a new range
    /// `right_id` takes `[key, end)` with the same replicas, both at the
    /// next generation (see [`RangeDescriptor::split`]).
    pub fn apply_split(&mut self, id: RangeId, key: &[u8], right_id: RangeId) -> Result<(), TableError> {
        let at = self.index_of(id).ok_or(TableError::UnknownRange(id))?;
        if self.starts.contains_key(&right_id) {
            return Err(TableError::RangeIdInUse(right_id));
        }
        if self.ranges.len() >= MAX_TABLE_RANGES {
            return Err(TableError::Full);
        }
        let right = self.ranges[at].split(key, right_id)?;
        self.insert_at(at + 1, right);
        Ok(())
    }

    /// Merges range `right` into its left neighbour `left` (see
    /// [`RangeDescriptor::merge`]); `right`'s id is retired.
    pub fn apply_merge(&mut self, left: RangeId, right: RangeId) -> Result<(), TableError> {
        let left_at = self.index_of(left).ok_or(TableError::UnknownRange(left))?;
        let right_at = self.index_of(right).ok_or(TableError::UnknownRange(right))?;
        let absorbed = self.ranges[right_at].clone();
        self.ranges[left_at].merge(&absorbed)?;
        // Adjacent spans in a disjoint sorted table: `right` is next.
        debug_assert_eq!(right_at, left_at + 1);
        self.remove_at(right_at);
        self.refresh_followed(left_at);
        Ok(())
    }

    /// Removes range `id`, leaving a gap; returns it if it was there.
    pub fn remove(&mut self, id: RangeId) -> Option<RangeDescriptor> {
        let at = self.index_of(id)?;
        Some(self.remove_at(at))
    }

    /// Checks that the ranges cover the keyspace exactly once; the error
    /// names the first gap or overlap in key order.
    pub fn check_cover(&self) -> Result<(), CoverError> {
        check_cover_sorted(self.ranges.iter())
    }

    fn insert_at(&mut self, at: usize, descriptor: RangeDescriptor) {
        self.starts.insert(descriptor.id, descriptor.span.start.clone());
        self.prefixes.insert(at, 0);
        self.followed.insert(at, false);
        let start = self.route_offsets[at];
        let voters: Vec<NodeId> = descriptor.voters().collect();
        let count = voters.len();
        self.route_nodes.splice(start..start, voters);
        self.route_offsets.insert(at, start);
        self.route_offsets[at + 1..].iter_mut().for_each(|offset| *offset += count);
        self.route_ids.insert(at, descriptor.id);
        self.ranges.insert(at, descriptor);
        self.refresh_prefixes(Some(at));
        self.refresh_followed(at);
    }

    fn remove_at(&mut self, at: usize) -> RangeDescriptor {
        let removed = self.ranges.remove(at);
        let (start, end) = (self.route_offsets[at], self.route_offsets[at + 1]);
        self.route_nodes.drain(start..end);
        self.route_offsets.remove(at);
        self.route_offsets[at..].iter_mut().for_each(|offset| *offset -= end - start);
        self.route_ids.remove(at);
        self.prefixes.remove(at);
        self.followed.remove(at);
        self.starts.remove(&removed.id);
        self.refresh_prefixes(None);
        self.refresh_followed(at);
        removed
    }

    /// Recomputes `followed` of the ranges around index `at` (those whose
    /// end or next range may have changed).
    fn refresh_followed(&mut self, at: usize) {
        for i in at.saturating_sub(1)..(at + 1).min(self.ranges.len()) {
            let next_start = self.ranges.get(i + 1).map(|next| next.span.start.as_slice());
            self.followed[i] = self.ranges[i].span.end.as_deref() == next_start;
        }
    }

    /// Recomputes the shared prefix (that of the smallest and largest
    /// non-empty starts, hence of all) and the prefixes: all of them if the
    /// shared prefix changed, else only the one at `changed`.
    fn refresh_prefixes(&mut self, changed: Option<usize>) {
        let non_empty = self.ranges.iter().position(|range| !range.span.start.is_empty());
        let shared: Vec<u8> = match (non_empty, self.ranges.last()) {
            (Some(first), Some(last)) => {
                let (a, b) = (&self.ranges[first].span.start, &last.span.start);
                a.iter().zip(b).take_while(|(x, y)| x == y).map(|(x, _)| *x).collect()
            }
            _ => Vec::new(),
        };
        let suffix_prefix = |start: &[u8]| start.strip_prefix(shared.as_slice()).map_or(0, prefix_of);
        if shared != self.shared {
            self.prefixes = self.ranges.iter().map(|range| suffix_prefix(&range.span.start)).collect();
            self.shared = shared;
        } else if let Some(at) = changed {
            self.prefixes[at] = suffix_prefix(&self.ranges[at].span.start);
        }
    }
}

/// Checks that `ranges`, in any order, cover the keyspace exactly once; the
/// error names the first gap or overlap in key order. For holders of
/// descriptors other than a [`RangeTable`] (a table cannot overlap itself).
pub fn check_cover<'a>(ranges: impl IntoIterator<Item = &'a RangeDescriptor>) -> Result<(), CoverError> {
    let mut sorted: Vec<&RangeDescriptor> = ranges.into_iter().collect();
    sorted.sort_by(|a, b| a.span.cmp(&b.span));
    check_cover_sorted(sorted.into_iter())
}

fn check_cover_sorted<'a>(mut ranges: impl Iterator<Item = &'a RangeDescriptor>) -> Result<(), CoverError> {
    let first = ranges.next().ok_or(CoverError::Empty)?;
    if !first.span.start.is_empty() {
        return Err(CoverError::StartsLate { range: first.id, span: first.span.clone() });
    }
    let mut left = first;
    for right in ranges {
        let (left_span, right_span) = (|| left.span.clone(), || right.span.clone());
        match left.span.end.as_deref().map(|end| end.cmp(right.span.start.as_slice())) {
            Some(Ordering::Equal) => {}
            Some(Ordering::Less) => {
                return Err(CoverError::Gap {
                    left: left.id,
                    left_span: left_span(),
                    right: right.id,
                    right_span: right_span(),
                });
            }
            None | Some(Ordering::Greater) => {
                return Err(CoverError::Overlap {
                    left: left.id,
                    left_span: left_span(),
                    right: right.id,
                    right_span: right_span(),
                });
            }
        }
        left = right;
    }
    match left.span.end {
        None => Ok(()),
        Some(_) => Err(CoverError::EndsEarly { range: left.id, span: left.span.clone() }),
    }
}

#[cfg(test)]
mod tests;
