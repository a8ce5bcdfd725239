//! Who a member is (identity, address, metadata), what we believe about it
//! (state and incarnation), and the precedence rules that decide which of two
//! beliefs wins.
//!
//! # Incarnation rules
//!
//! Only a member itself ever raises its own incarnation: to refute a
//! suspicion, to change its metadata, or to reclaim its identity after a
//! restart. Everyone else merely relays what they heard. So for two claims
//! about one member:
//!
//! - a claim with a **lower** incarnation is stale and never wins;
//! - at the **same** incarnation the more severe state wins:
//!   `Alive < Suspect < Failed < Left`. In particular a stale `Alive` never
//!   resurrects a member declared failed (failed wins at equal incarnation);
//! - a claim with a **higher** incarnation wins, except that a `Suspect` never
//!   reopens a tombstone (`Failed` or `Left`): only the member's own `Alive`
//!   with a strictly higher incarnation brings it back.

use crate::types::{NodeId, Time};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Identity of a cluster member, stable across restarts. The same identity
/// Raft uses, so the layers above can map one to the other without a table.
pub type MemberId = NodeId;

/// How many times a member has had to contradict what others said about it.
/// Raised only by the member itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

/// The highest incarnation a node accepts from a peer. Far beyond anything a
/// real member reaches, and far enough below `u64::MAX` that refuting an
/// accepted incarnation (adding one) can never overflow.
pub const MAX_INCARNATION: Incarnation = Incarnation(1 << 62);

impl Incarnation {
    /// Where every member starts unless configured otherwise
    /// ([`Config::initial_incarnation`](super::Config::initial_incarnation)).
    pub const ZERO: Incarnation = Incarnation(0);

    /// The next incarnation. Callers only pass incarnations at most
    /// [`MAX_INCARNATION`], so this never overflows.
    pub const fn next(self) -> Incarnation {
        match self.0.checked_add(1) {
            Some(next) => Incarnation(next),
            None => panic!("invariant: incarnations stay below MAX_INCARNATION, so they never overflow"),
        }
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inc{}", self.0)
    }
}

/// Immutable bytes behind a reference count, for addresses and metadata.
///
/// Every member record, piggybacked update and push-pull record that names a
/// member carries its address and metadata, and every node keeps one of each
/// per known member: with `n` members that is `n²` copies. Cloning shares the
/// buffer instead (a thin pointer, 8 bytes), so a driver that moves messages
/// as values (the simulator) keeps one buffer per member in all. The wire
/// format is the plain byte sequence, exactly as a `Vec<u8>` encodes.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedBytes(Arc<Vec<u8>>);

impl SharedBytes {
    /// Takes ownership of `bytes` (no copy for a `Vec<u8>`); clones share it.
    pub fn new(bytes: impl Into<Vec<u8>>) -> SharedBytes {
        SharedBytes(Arc::new(bytes.into()))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (what the size limits count).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_bytes(), f)
    }
}

impl Serialize for SharedBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A sequence of u8, the same encoding as `Vec<u8>`.
        self.as_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SharedBytes, D::Error> {
        Vec::<u8>::deserialize(deserializer).map(SharedBytes::new)
    }
}

/// Where a member can be reached. Opaque to SWIM (a socket address, a QUIC
/// endpoint name, a simulator id): the driver gives it meaning. Bounded by
/// [`Config::max_address_bytes`](super::Config::max_address_bytes). Clones
/// share one buffer ([`SharedBytes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address(pub SharedBytes);

impl Address {
    /// An address from the driver's bytes. Its length is checked against
    /// `max_address_bytes` by [`Config::validate`](super::Config::validate)
    /// and on every message received, not here.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Address {
        Address(SharedBytes::new(bytes))
    }

    /// The address's bytes, as the driver gave them.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(text) => write!(f, "{text}"),
            Err(_) => self.as_bytes().iter().try_for_each(|byte| write!(f, "{byte:02x}")),
        }
    }
}

/// Application data a member publishes about itself (zone, capacity, ...).
///
/// Metadata is versioned by the member's [`Incarnation`]: changing it raises
/// the incarnation, so the newest metadata wins by the same precedence rules
/// as liveness. Bounded by
/// [`Config::max_metadata_bytes`](super::Config::max_metadata_bytes). Clones
/// share one buffer ([`SharedBytes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Metadata(pub SharedBytes);

impl Metadata {
    /// Metadata from the application's bytes. Its length is checked against
    /// `max_metadata_bytes` by [`Config::validate`](super::Config::validate),
    /// [`SwimNode::set_metadata`](super::SwimNode::set_metadata) and on every
    /// message received, not here.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Metadata {
        Metadata(SharedBytes::new(bytes))
    }

    /// The metadata's bytes, as the member published them.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// What we believe about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Answering probes, as far as we know.
    Alive,
    /// Missed a probe; declared failed when its suspicion timer fires unless
    /// it refutes first. Still probed.
    Suspect,
    /// Declared failed. Kept as a tombstone (so that stale news cannot revive
    /// it) and contacted now and then to heal partitions.
    Failed,
    /// Left on purpose. Kept as a tombstone, never contacted.
    Left,
}

impl MemberState {
    /// Severity at equal incarnation: the higher rank wins.
    const fn rank(self) -> u8 {
        match self {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Failed => 2,
            MemberState::Left => 3,
        }
    }

    /// Alive or suspect: part of the cluster, probed, counted in its size.
    pub const fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }

    /// Failed or left.
    pub const fn is_tombstone(self) -> bool {
        !self.is_live()
    }
}

/// Does a claim `(new_incarnation, new_state)` override our belief
/// `(old_incarnation, old_state)`? See the module docs for the rules.
pub fn supersedes(
    new_incarnation: Incarnation,
    new_state: MemberState,
    old_incarnation: Incarnation,
    old_state: MemberState,
) -> bool {
    match new_incarnation.cmp(&old_incarnation) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => new_state.rank() > old_state.rank(),
        std::cmp::Ordering::Greater => !(new_state == MemberState::Suspect && old_state.is_tombstone()),
    }
}

/// Everything a node knows about one other member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's identity.
    pub id: MemberId,
    /// Where to reach it, from the latest `Alive` claim about it that won
    /// (a tombstone keeps the address it had).
    pub address: Address,
    /// Its metadata, from the same claim as `address`.
    pub metadata: Metadata,
    /// The incarnation of the latest claim about it that won.
    pub incarnation: Incarnation,
    /// What this node believes of it.
    pub state: MemberState,
    /// When `state` last changed (in the local clock); tombstones are
    /// forgotten `tombstone_retention_ms` after this.
    pub state_changed_at: Time,
    /// Whether this node has queued news of the member's current state for
    /// dissemination. False while the state is known only from a push-pull
    /// exchange (which is repair, not news): the first gossip that repeats
    /// it makes this node spread it too, so that nodes that already knew do
    /// not stop an epidemic.
    pub(crate) spreading: bool,
}

impl Member {
    /// What others may learn about this member in a push-pull exchange.
    pub fn record(&self) -> MemberRecord {
        MemberRecord {
            id: self.id,
            address: self.address.clone(),
            metadata: self.metadata.clone(),
            incarnation: self.incarnation,
            state: self.state,
        }
    }
}

/// One member's full state as carried by a push-pull exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member's identity.
    pub id: MemberId,
    /// Where to reach it.
    pub address: Address,
    /// Its metadata.
    pub metadata: Metadata,
    /// The incarnation the record is at.
    pub incarnation: Incarnation,
    /// The state believed. In a push-pull exchange the receiver takes a
    /// `Failed` only as a suspicion (the record may be old), so a live member
    /// refutes it.
    pub state: MemberState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::*;

    const ALL: [MemberState; 4] = [Alive, Suspect, Failed, Left];

    #[test]
    fn shared_bytes_encode_exactly_as_a_byte_vector_and_clones_share_one_buffer() {
        let limit = crate::swim::wire::MAX_DATAGRAM_BYTES;
        for bytes in [Vec::new(), b"10.0.0.1:7946".to_vec(), vec![0xff; 300]] {
            let address = Address::new(bytes.clone());
            let as_vector = crate::wire::encode_bounded::<_, 65_507>(&bytes, limit).unwrap();
            assert_eq!(crate::wire::encode_bounded::<_, 65_507>(&address, limit).unwrap(), as_vector);
            let decoded: Address = crate::wire::decode_bounded::<_, 65_507>(&as_vector, limit).unwrap();
            assert_eq!(decoded, address);
        }
        let metadata = Metadata::new(b"zone=a".to_vec());
        let copy = metadata.clone();
        assert_eq!(copy.as_bytes().as_ptr(), metadata.as_bytes().as_ptr());
    }

    #[test]
    fn a_lower_incarnation_never_wins() {
        for new in ALL {
            for old in ALL {
                assert!(!supersedes(Incarnation(1), new, Incarnation(2), old), "{new:?} over {old:?}");
            }
        }
    }

    #[test]
    fn failed_wins_over_alive_and_suspect_at_equal_incarnation() {
        assert!(supersedes(Incarnation(3), Failed, Incarnation(3), Alive));
        assert!(supersedes(Incarnation(3), Failed, Incarnation(3), Suspect));
        assert!(!supersedes(Incarnation(3), Alive, Incarnation(3), Failed));
        assert!(!supersedes(Incarnation(3), Alive, Incarnation(3), Suspect));
        assert!(!supersedes(Incarnation(3), Suspect, Incarnation(3), Failed));
    }

    #[test]
    fn an_equal_claim_is_not_news() {
        for state in ALL {
            assert!(!supersedes(Incarnation(3), state, Incarnation(3), state));
        }
    }

    #[test]
    fn only_a_higher_alive_or_a_tombstone_overrides_a_tombstone() {
        for old in [Failed, Left] {
            assert!(supersedes(Incarnation(4), Alive, Incarnation(3), old));
            assert!(!supersedes(Incarnation(4), Suspect, Incarnation(3), old));
            assert!(supersedes(Incarnation(4), Failed, Incarnation(3), old));
            assert!(supersedes(Incarnation(4), Left, Incarnation(3), old));
        }
        assert!(supersedes(Incarnation(3), Left, Incarnation(3), Failed));
    }
}
