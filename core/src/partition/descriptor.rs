//! Range descriptors: which span of the keyspace a range covers, which nodes
//! hold its replicas, and a generation that grows with every change.
//!
//! A descriptor only changes through the methods here, each of which checks
//! its precondition and bumps the generation, so every holder of a
//! descriptor (the meta range, a routing cache, the planner, the simulator)
//! agrees on what a change means and can tell an older copy from a newer one.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of a range. Never reused: a split gives the right half a new id,
/// a merge retires the right range's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RangeId(pub u64);

impl fmt::Display for RangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A half-open span `[start, end)` of routing keys, compared as bytes. `end`
/// `None` is the end of the keyspace. For ordered ranges the routing key is
/// the user's key; for hashed ranges it is [`super::hashed_routing_key`], so
/// one span type serves both.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First routing key in the span (inclusive). The empty key is the start
    /// of the keyspace.
    pub start: Vec<u8>,
    /// First routing key after the span (exclusive); `None`: no end.
    pub end: Option<Vec<u8>>,
}

impl Span {
    /// The whole keyspace.
    pub fn full() -> Span {
        Span { start: Vec::new(), end: None }
    }

    /// `[start, end)`; `None` if the span would be empty.
    pub fn new(start: Vec<u8>, end: Option<Vec<u8>>) -> Option<Span> {
        match &end {
            Some(end) if end.as_slice() <= start.as_slice() => None,
            _ => Some(Span { start, end }),
        }
    }

    /// Whether `key` lies in the span.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// Whether `key` may split the span: strictly inside it, so that both
    /// halves are non-empty.
    pub fn can_split_at(&self, key: &[u8]) -> bool {
        key > self.start.as_slice() && self.contains(key)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, ", Key(&self.start))?;
        match &self.end {
            Some(end) => write!(f, "{})", Key(end)),
            None => write!(f, "end)"),
        }
    }
}

/// Displays a key as text when it is printable ASCII, as hex otherwise.
struct Key<'a>(&'a [u8]);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "\"\"");
        }
        if self.0.iter().all(|b| b.is_ascii_graphic()) {
            return write!(f, "\"{}\"", String::from_utf8_lossy(self.0));
        }
        write!(f, "0x")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// What a replica does in its range's Raft group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReplicaKind {
    /// Votes and counts towards the quorum.
    Voter,
    /// Receives the log but does not vote: a replica being added, caught up
    /// before it is promoted.
    Learner,
}

/// One replica of a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Replica {
    /// The node that holds it.
    pub node: NodeId,
    /// Voter or learner.
    pub kind: ReplicaKind,
}

/// Why a descriptor change was refused. Each names the precondition that
/// failed; none of them changes the descriptor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// The node already holds a replica of the range.
    #[error("{node:?} already holds a replica of {range}")]
    AlreadyReplica {
        /// The range.
        range: RangeId,
        /// The node.
        node: NodeId,
    },
    /// The node holds no replica of the range.
    #[error("{node:?} holds no replica of {range}")]
    NotReplica {
        /// The range.
        range: RangeId,
        /// The node.
        node: NodeId,
    },
    /// Promotion asked of a replica that already votes.
    #[error("{node:?} is already a voter of {range}")]
    AlreadyVoter {
        /// The range.
        range: RangeId,
        /// The node.
        node: NodeId,
    },
    /// Removing the voter would leave the range with no voter.
    #[error("removing {node:?} would leave {range} without a voter")]
    LastVoter {
        /// The range.
        range: RangeId,
        /// The node.
        node: NodeId,
    },
    /// The split key is not strictly inside the range's span.
    #[error("split key is not strictly inside {range}'s span {span}")]
    SplitOutsideSpan {
        /// The range.
        range: RangeId,
        /// Its span.
        span: Span,
    },
    /// A merge of two ranges that are not neighbours (left's end must be
    /// right's start).
    #[error("{left} and {right} are not neighbours")]
    NotAdjacent {
        /// The range on the left.
        left: RangeId,
        /// The range that should follow it.
        right: RangeId,
    },
    /// A merge of two ranges whose replica sets differ (the right range's
    /// replicas must first be moved onto the left range's nodes).
    #[error("{left} and {right} have different replica sets")]
    ReplicasDiffer {
        /// The range on the left.
        left: RangeId,
        /// The range that should follow it.
        right: RangeId,
    },
}

/// A range: its span, its replicas and its generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RangeDescriptor {
    /// The range's identity.
    pub id: RangeId,
    /// The routing keys it covers.
    pub span: Span,
    /// Its replicas, sorted by node, at most one per node.
    replicas: Vec<Replica>,
    /// Grows by one with every split, merge or replica change.
    pub generation: u64,
}

impl RangeDescriptor {
    /// A range of generation 0 with `voters` as its voters. Duplicate nodes
    /// are collapsed into one replica.
    pub fn new(id: RangeId, span: Span, voters: impl IntoIterator<Item = NodeId>) -> Self {
        let mut replicas: Vec<Replica> =
            voters.into_iter().map(|node| Replica { node, kind: ReplicaKind::Voter }).collect();
        replicas.sort();
        replicas.dedup_by_key(|replica| replica.node);
        RangeDescriptor { id, span, replicas, generation: 0 }
    }

    /// Every replica, sorted by node.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// The voters' nodes, sorted.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas.iter().filter(|r| r.kind == ReplicaKind::Voter).map(|r| r.node)
    }

    /// The learners' nodes, sorted.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas.iter().filter(|r| r.kind == ReplicaKind::Learner).map(|r| r.node)
    }

    /// Number of voters.
    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// The kind of `node`'s replica, if it holds one.
    pub fn replica_kind(&self, node: NodeId) -> Option<ReplicaKind> {
        self.position(node).ok().map(|at| self.replicas[at].kind)
    }

    /// Whether `node` holds a replica (voter or learner).
    pub fn has_replica(&self, node: NodeId) -> bool {
        self.position(node).is_ok()
    }

    fn position(&self, node: NodeId) -> Result<usize, usize> {
        self.replicas.binary_search_by_key(&node, |replica| replica.node)
    }

    /// Replaces the replica set by `replicas` (a node listed twice keeps its
    /// first kind) and moves to the next generation: how a range's
    /// committed configuration, read from its Raft group, is recorded.
    pub fn set_replicas(&mut self, replicas: impl IntoIterator<Item = (NodeId, ReplicaKind)>) {
        let mut replicas: Vec<Replica> = replicas.into_iter().map(|(node, kind)| Replica { node, kind }).collect();
        replicas.sort_by_key(|replica| replica.node);
        replicas.dedup_by_key(|replica| replica.node);
        self.replicas = replicas;
        self.generation += 1;
    }

    /// Adds `node` as a learner (the first step of adding a replica).
    pub fn add_learner(&mut self, node: NodeId) -> Result<(), DescriptorError> {
        match self.position(node) {
            Ok(_) => Err(DescriptorError::AlreadyReplica { range: self.id, node }),
            Err(at) => {
                self.replicas.insert(at, Replica { node, kind: ReplicaKind::Learner });
                self.generation += 1;
                Ok(())
            }
        }
    }

    /// Makes `node`'s learner a voter.
    pub fn promote(&mut self, node: NodeId) -> Result<(), DescriptorError> {
        let at = self.position(node).map_err(|_| DescriptorError::NotReplica { range: self.id, node })?;
        if self.replicas[at].kind == ReplicaKind::Voter {
            return Err(DescriptorError::AlreadyVoter { range: self.id, node });
        }
        self.replicas[at].kind = ReplicaKind::Voter;
        self.generation += 1;
        Ok(())
    }

    /// Removes `node`'s replica (voter or learner), unless it is the last
    /// voter.
    pub fn remove(&mut self, node: NodeId) -> Result<(), DescriptorError> {
        let at = self.position(node).map_err(|_| DescriptorError::NotReplica { range: self.id, node })?;
        if self.replicas[at].kind == ReplicaKind::Voter && self.voter_count() == 1 {
            return Err(DescriptorError::LastVoter { range: self.id, node });
        }
        self.replicas.remove(at);
        self.generation += 1;
        Ok(())
    }

    /// Splits the range at `key`: `self` keeps `[start, key)`, the returned
    /// range `right_id` takes `[key, end)` with the same replicas. Both come
    /// out with the next generation.
    pub fn split(&mut self, key: &[u8], right_id: RangeId) -> Result<RangeDescriptor, DescriptorError> {
        if !self.span.can_split_at(key) {
            return Err(DescriptorError::SplitOutsideSpan { range: self.id, span: self.span.clone() });
        }
        let right_span = Span { start: key.to_vec(), end: self.span.end.take() };
        self.span.end = Some(key.to_vec());
        self.generation += 1;
        Ok(RangeDescriptor {
            id: right_id,
            span: right_span,
            replicas: self.replicas.clone(),
            generation: self.generation,
        })
    }

    /// Absorbs `right`, the range that follows `self`, whose replicas must
    /// be on the same nodes with the same kinds. The generation becomes one
    /// more than the larger of the two, so no older copy of either range can
    /// pass for the merged one.
    pub fn merge(&mut self, right: &RangeDescriptor) -> Result<(), DescriptorError> {
        if self.span.end.as_deref() != Some(right.span.start.as_slice()) {
            return Err(DescriptorError::NotAdjacent { left: self.id, right: right.id });
        }
        if self.replicas != right.replicas {
            return Err(DescriptorError::ReplicasDiffer { left: self.id, right: right.id });
        }
        self.span.end = right.span.end.clone();
        self.generation = self.generation.max(right.generation) + 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(voters: &[u64]) -> RangeDescriptor {
        RangeDescriptor::new(RangeId(1), Span::full(), voters.iter().map(|&n| NodeId(n)))
    }

    #[test]
    fn a_replica_move_is_learner_then_promote_then_remove_and_each_step_bumps_the_generation() {
        let mut r = range(&[1, 2, 3]);
        r.add_learner(NodeId(4)).unwrap();
        assert_eq!(r.replica_kind(NodeId(4)), Some(ReplicaKind::Learner));
        assert_eq!(r.voter_count(), 3);
        r.promote(NodeId(4)).unwrap();
        assert_eq!(r.voter_count(), 4);
        r.remove(NodeId(1)).unwrap();
        assert_eq!(r.voters().collect::<Vec<_>>(), vec![NodeId(2), NodeId(3), NodeId(4)]);
        assert_eq!(r.generation, 3);
    }

    #[test]
    fn refused_changes_name_their_precondition_and_change_nothing() {
        let mut r = range(&[1]);
        let before = r.clone();
        assert!(matches!(r.add_learner(NodeId(1)), Err(DescriptorError::AlreadyReplica { .. })));
        assert!(matches!(r.promote(NodeId(1)), Err(DescriptorError::AlreadyVoter { .. })));
        assert!(matches!(r.promote(NodeId(9)), Err(DescriptorError::NotReplica { .. })));
        assert!(matches!(r.remove(NodeId(1)), Err(DescriptorError::LastVoter { .. })));
        assert!(matches!(r.split(b"", RangeId(2)), Err(DescriptorError::SplitOutsideSpan { .. })));
        assert_eq!(r, before);
    }

    #[test]
    fn split_then_merge_restores_the_span_with_a_newer_generation() {
        let mut left = range(&[1, 2, 3]);
        let right = left.split(b"m", RangeId(2)).unwrap();
        assert!(left.span.contains(b"a") && !left.span.contains(b"m"));
        assert!(right.span.contains(b"m") && right.span.contains(b"zzzz"));
        assert_eq!(left.generation, right.generation);
        assert!(matches!(right.clone().merge(&left), Err(DescriptorError::NotAdjacent { .. })));
        let mut moved = right.clone();
        moved.add_learner(NodeId(4)).unwrap();
        assert!(matches!(left.clone().merge(&moved), Err(DescriptorError::ReplicasDiffer { .. })));
        left.merge(&right).unwrap();
        assert_eq!(left.span, Span::full());
        assert_eq!(left.generation, 2);
    }

    #[test]
    fn spans_display_text_keys_as_text_and_others_as_hex() {
        let span = Span::new(b"apple".to_vec(), Some(vec![0xff, 0x00])).unwrap();
        assert_eq!(span.to_string(), "[\"apple\", 0xff00)");
        assert_eq!(Span::full().to_string(), "[\"\", end)");
        assert!(Span::new(b"b".to_vec(), Some(b"a".to_vec())).is_none());
    }
}
