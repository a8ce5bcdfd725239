//! Client requests: routed by key to the range that holds it, served only by
//! a replica of that range, redirected otherwise.

use super::node::{ClusterNode, Waiter};
use super::output::{ClusterAction, ClusterResult};
use super::ClusterBug;
use crate::partition::RangeId;
use crate::raft::{ClientResult, DropReason, ReadConsistency};
use crate::state_machine::StateMachine;
use crate::types::{RequestId, Time};
use bytes::Bytes;

/// What a client asks of the key's range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// A command for the range's state machine, committed through its log.
    Write(Bytes),
    /// A read-only query at a consistency level.
    Read {
        /// The query for the state machine.
        query: Vec<u8>,
        /// How fresh the answer must be.
        consistency: ReadConsistency,
    },
}

impl<S: StateMachine + Default> ClusterNode<S> {
    /// A client request about `key`. Served when this node hosts the key's
    /// range (a follower forwards writes to its leader); otherwise answered
    /// [`ClusterResult::Redirect`] or [`ClusterResult::RangeUnknown`].
    pub fn request(&mut self, now: Time, request: RequestId, key: &[u8], op: ClientOp) {
        self.now = now;
        self.route_request(request, key, op);
        self.finish_input();
    }

    fn route_request(&mut self, request: RequestId, key: &[u8], op: ClientOp) {
        let Some(range) = self.table.lookup(key).map(|d| d.id) else {
            return self.respond(request, ClusterResult::RangeUnknown);
        };
        let range = match self.ranges.keys().next() {
            Some(&hosted) if !self.ranges.contains_key(&range) && self.config.bug(ClusterBug::ServesForeignKeys) => {
                hosted
            }
            _ => range,
        };
        if !self.ranges.contains_key(&range) {
            let leader = self.table.leader(range).filter(|&l| l != self.config.id);
            return self.respond(request, ClusterResult::Redirect { range, leader });
        }
        let Some(inner) = self.request_id(range, Waiter::Client(request)) else {
            return self.respond(request, ClusterResult::Dropped(DropReason::Overloaded));
        };
        self.release(range);
        let now = self.now;
        let raft = &mut self.ranges.get_mut(&range).expect("checked above").raft;
        match op {
            ClientOp::Write(command) => raft.propose(now, inner, command),
            ClientOp::Read { query, .. } if self.config.bug(ClusterBug::LocalLinearizableReads) => {
                raft.read_with(now, inner, query, ReadConsistency::Stale)
            }
            ClientOp::Read { query, consistency } => raft.read_with(now, inner, query, consistency),
        }
        self.touched.insert(range);
    }

    pub(super) fn respond(&mut self, request: RequestId, result: ClusterResult) {
        self.actions.push_back(ClusterAction::Respond { request, result, served_by: None });
    }

    /// A range answered a client's request.
    pub(super) fn answer_client(&mut self, range: RangeId, client: RequestId, result: ClientResult) {
        let result = match result {
            ClientResult::Ok(answer) => ClusterResult::Ok(answer),
            ClientResult::NotLeader { leader_hint } => {
                if let Some(hosted) = self.ranges.get(&range) {
                    self.table.note_leader(range, leader_hint, hosted.raft.term());
                }
                ClusterResult::Redirect { range, leader: Some(leader_hint) }
            }
            ClientResult::NoLeader => ClusterResult::Redirect { range, leader: None },
            ClientResult::Dropped(reason) => ClusterResult::Dropped(reason),
        };
        let applied = self.ranges.get(&range).map(|hosted| hosted.raft.applied_index()).unwrap_or_default();
        self.actions.push_back(ClusterAction::Respond { request: client, result, served_by: Some((range, applied)) });
    }
}
