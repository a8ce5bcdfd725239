//! What happens to a node, as a stream of events: `DriverHandle::subscribe`
//! in code, `GET /v1/events` (server-sent events) over HTTP.

use chorus_core::raft::{Event, Role};
use serde::Serialize;

/// Events kept for each subscriber: one that falls further behind misses
/// the oldest and is told how many (`Lagged`).
pub const EVENT_BUFFER_CAPACITY: usize = 256;

/// How often the driver compares its peers' connection state with the last
/// one reported (connections come and go inside the transport's tasks).
pub const PEER_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// One thing that happened to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// The node learned of a new leader (itself included) or a new term of
    /// the same leader.
    LeaderElected {
        /// The leader's term.
        term: u64,
        /// The leader.
        leader: u64,
    },
    /// This node's role changed.
    RoleChanged {
        /// `leader`, `follower`, `candidate` or `pre-candidate`.
        role: String,
        /// The term it changed in.
        term: u64,
    },
    /// The configuration in force changed (at log index `index`).
    MembershipChanged {
        /// The log index of the configuration entry.
        index: u64,
        /// The configuration, as text.
        membership: String,
    },
    /// A snapshot was stored on disk (taken here or installed from the
    /// leader).
    SnapshotTaken {
        /// The last index it covers.
        index: u64,
        /// The term of that entry.
        term: u64,
    },
    /// A snapshot from the leader was installed.
    SnapshotInstalled {
        /// The last index it covers.
        index: u64,
        /// The term of that entry.
        term: u64,
    },
    /// A connection to the peer works now.
    PeerConnected {
        /// The peer.
        peer: u64,
    },
    /// The peer has no working connection any more.
    PeerDisconnected {
        /// The peer.
        peer: u64,
    },
    /// A follower came back without entries it had acknowledged (its
    /// storage lost them): see the node's log.
    FollowerLostEntries {
        /// The follower.
        follower: u64,
        /// What it had acknowledged.
        acknowledged: u64,
        /// What it holds now.
        holds: u64,
    },
    /// A leadership transfer started.
    TransferStarted {
        /// The node that should take over.
        target: u64,
        /// The term.
        term: u64,
    },
}

/// The name of `role` in events, metrics and `/v1/status`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}

impl NodeEvent {
    /// The event's name (`type` in its JSON, `event:` in server-sent events).
    pub fn name(&self) -> &'static str {
        match self {
            NodeEvent::LeaderElected { .. } => "leader_elected",
            NodeEvent::RoleChanged { .. } => "role_changed",
            NodeEvent::MembershipChanged { .. } => "membership_changed",
            NodeEvent::SnapshotTaken { .. } => "snapshot_taken",
            NodeEvent::SnapshotInstalled { .. } => "snapshot_installed",
            NodeEvent::PeerConnected { .. } => "peer_connected",
            NodeEvent::PeerDisconnected { .. } => "peer_disconnected",
            NodeEvent::FollowerLostEntries { .. } => "follower_lost_entries",
            NodeEvent::TransferStarted { .. } => "transfer_started",
        }
    }

    /// The event a core event is reported as, if any.
    pub(crate) fn from_core(event: &Event) -> Option<NodeEvent> {
        Some(match event {
            Event::RoleChanged { role, term } => NodeEvent::RoleChanged { role: role_name(*role).into(), term: term.0 },
            Event::MembershipChanged { index, membership } => {
                NodeEvent::MembershipChanged { index: index.0, membership: membership.to_string() }
            }
            Event::SnapshotInstalled { index, term } => NodeEvent::SnapshotInstalled { index: index.0, term: term.0 },
            Event::FollowerLostEntries { follower, acknowledged, holds } => {
                NodeEvent::FollowerLostEntries { follower: follower.0, acknowledged: acknowledged.0, holds: holds.0 }
            }
            Event::TransferStarted { target, term } => NodeEvent::TransferStarted { target: target.0, term: term.0 },
            Event::Violation { .. } | Event::TransferAbandoned { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_name_as_type() {
        let event = NodeEvent::LeaderElected { term: 3, leader: 2 };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json, serde_json::json!({"type": "leader_elected", "term": 3, "leader": 2}));
        assert_eq!(json["type"], event.name());
        let peer = NodeEvent::PeerDisconnected { peer: 4 };
        assert_eq!(serde_json::to_value(&peer).unwrap()["type"], peer.name());
    }
}
