//! Leadership transfer (Raft thesis §3.10): the leader stops taking writes,
//! brings the target's log up to date, then tells it to campaign at once with
//! [`MessageBody::TimeoutNow`](super::message::MessageBody::TimeoutNow).

use super::message::MessageBody;
use super::node::{RaftNode, Role};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Time};

/// Why [`RaftNode::transfer_leadership`](super::node::RaftNode::transfer_leadership)
/// refused. In every case nothing changed: no transfer started, none in
/// progress was cancelled, and proposals are accepted as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only a leader can hand leadership over.
    #[error("this node is not the leader")]
    NotLeader,
    /// The target is this node, which already leads.
    #[error("the transfer target is this node itself")]
    ToSelf,
    /// The target is not a voting member, so it could never win.
    #[error("node {0} is not a voter")]
    NotVoter(NodeId),
}

/// A transfer in progress on the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Transfer {
    pub target: NodeId,
    /// When the transfer is abandoned if this node still leads.
    pub deadline: Time,
    /// `TimeoutNow` went out (once per transfer).
    pub timeout_now_sent: bool,
}

impl<S: StateMachine> RaftNode<S> {
    /// Sends `TimeoutNow` once the transfer target holds our whole log.
    pub(super) fn maybe_send_timeout_now(&mut self, now: Time) {
        let Some(transfer) = self.transfer else {
            return;
        };
        if transfer.timeout_now_sent || self.role != Role::Leader {
            return;
        }
        let caught_up =
            self.progress.get(&transfer.target).is_some_and(|progress| progress.match_index == self.log.last_index());
        if !caught_up {
            return;
        }
        self.transfer = Some(Transfer { timeout_now_sent: true, ..transfer });
        // The target may now win votes that bypass our followers' leases.
        self.lease_suspended_until = now.add_millis(2 * self.config.election_timeout_ms);
        self.send(transfer.target, MessageBody::TimeoutNow);
    }
}
