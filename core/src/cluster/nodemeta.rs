//! What a cluster node publishes about itself in its SWIM metadata: what the
//! planner needs (locality, capacity) and what routing caches need to know
//! they are stale (the meta version), and whether it is the active node.

use crate::partition::Locality;
use crate::swim::Metadata;
use crate::types::{LogIndex, Term};
use serde::{Deserialize, Serialize};

/// A node's published facts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Failure domains.
    pub locality: Locality,
    /// Relative capacity.
    pub capacity: u32,
    /// The version of the descriptors this node holds.
    pub meta_version: LogIndex,
    /// Set while this node leads the meta range: the meta term.
    pub active_term: Option<Term>,
}

impl NodeMeta {
    /// As SWIM metadata.
    pub fn encode(&self) -> Metadata {
        Metadata::new(
            crate::wire::encode_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(self, usize::MAX)
                .expect("node metadata always encodes"),
        )
    }

    /// From a member's SWIM metadata; `None` when it is not a cluster
    /// node's (or is malformed).
    pub fn decode(metadata: &Metadata) -> Option<NodeMeta> {
        crate::wire::decode_bounded::<_, { crate::wire::MAX_MESSAGE_BYTES }>(metadata.as_bytes(), usize::MAX).ok()
    }
}
