//! `/v1/members`: listing the members, a node's join (add as learner,
//! promote; or renew the disk of a wiped voter), and removing a member.

use super::{error, redirect, AppState, Shared};
use crate::driver::DriverStopped;
use crate::transport::Peer;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chorus_core::raft::{ChangeError, ClientResult, MembershipChange};
use chorus_core::types::NodeId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// How long `POST /v1/members` keeps driving a join (catching up, then
/// the promotion) before answering 504; the joining node asks again.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a join waiting for the new member to catch up tries again.
const JOIN_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// The body of `POST /v1/members`: the node that joins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinRequest {
    /// Its node id (its certificate must name it).
    id: u64,
    /// Its peer (QUIC) address.
    address: SocketAddr,
    /// Its HTTP address, for redirects to it once it leads.
    http: Option<SocketAddr>,
    /// The disk it runs on (`/v1/status` shows it). With it, the join is
    /// done only once the configuration records this disk; without it, once
    /// the leader believes the node votes from its current disk (which,
    /// right after a wiped node restarts, may still be its old one).
    disk: Option<u64>,
}

/// A member in the answer to `POST /v1/members`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberAddress {
    /// Its node id.
    pub id: u64,
    /// Its peer (QUIC) address.
    pub address: SocketAddr,
    /// Its HTTP address, if known.
    pub http: Option<SocketAddr>,
}

/// The answer to a successful `POST /v1/members`.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinAnswer {
    /// The node that joined, now a voter on its current disk.
    pub id: u64,
    /// The voters after the change.
    pub voters: Vec<u64>,
    /// The leader, and every peer it knows, with their addresses.
    pub members: Vec<MemberAddress>,
}

/// `POST /v1/members`: makes node `id` a voter on the disk it runs on now.
/// On the leader, step by step until it holds: a node in no role is added
/// as a learner; a learner that has caught up is promoted; a voter whose
/// disk was replaced (a wiped node that came back with `--join`) has its
/// new disk recorded once it has caught up (`RenewDisk`). Answers 200 once
/// the node votes from its current disk; asking again then changes nothing.
pub(super) async fn join_member(
    State(state): State<AppState>,
    uri: Uri,
    body: Result<Json<JoinRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return error(
                rejection.status(),
                "bad_body",
                format!(
                    "{}: expected {{\"id\": N, \"address\": \"IP:PORT\", \"http\": \"IP:PORT\"}}",
                    rejection.body_text()
                ),
            )
        }
    };
    if request.id == 0 {
        return error(StatusCode::BAD_REQUEST, "bad_body", "node ids start at 1");
    }
    let node = NodeId(request.id);
    let status = state.handle.status();
    if !status.is_leader() {
        return not_leader_answer(&state, &uri, status.raft.leader);
    }
    if node != status.id() && !state.handle.add_peer(Peer { id: node, address: request.address }) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "too_many_peers", "the transport's peer limit is reached");
    }
    if let Some(http) = request.http {
        state.peer_http.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(node, http);
    }
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let status = state.handle.status();
        if !status.is_leader() {
            return not_leader_answer(&state, &uri, status.raft.leader);
        }
        let recorded = status.voter_disks.get(&node).map(|disk| disk.0);
        if recorded.is_some() && recorded == request.disk {
            return joined(&state, node);
        }
        let change = if status.learners.contains(&node) {
            MembershipChange::Promote(node)
        } else if status.voters.contains(&node) {
            MembershipChange::RenewDisk(node)
        } else {
            MembershipChange::AddLearner(node)
        };
        let asked = tokio::time::timeout_at(deadline, state.handle.change_membership(change.clone())).await;
        let retry = match asked {
            Err(_) => break,
            Ok(Err(DriverStopped)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "stopping", "the node is stopping; ask again")
            }
            Ok(Ok(Ok(answer))) => match answer.result {
                ClientResult::Ok(_) => {
                    tracing::info!(%node, ?change, "membership change applied");
                    false
                }
                ClientResult::NotLeader { leader_hint } => return not_leader_answer(&state, &uri, Some(leader_hint)),
                other => {
                    tracing::info!(%node, ?change, ?other, "membership change not applied; retrying");
                    true
                }
            },
            // The node votes from the disk the leader last heard it on:
            // done, unless it said it runs on another one (the leader has not
            // heard from the new disk yet).
            Ok(Ok(Err(ChangeError::DiskCurrent(_)))) if request.disk.is_none() => return joined(&state, node),
            Ok(Ok(Err(ChangeError::DiskCurrent(_)))) => true,
            Ok(Ok(Err(ChangeError::NotCaughtUp(_) | ChangeError::ChangeInFlight))) => true,
            Ok(Ok(Err(ChangeError::NotLeader))) => return not_leader_answer(&state, &uri, None),
            Ok(Ok(Err(refused))) => {
                return error(StatusCode::CONFLICT, "membership_refused", format!("{change:?} refused: {refused}"))
            }
        };
        if retry {
            if tokio::time::Instant::now() + JOIN_RETRY_INTERVAL > deadline {
                break;
            }
            tokio::time::sleep(JOIN_RETRY_INTERVAL).await;
        }
    }
    error(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        format!("node {node} did not become a voter within {JOIN_TIMEOUT:?} (still catching up?); ask again"),
    )
}

/// Not the leader: `307` to it when its address is known, else 503.
pub(super) fn not_leader_answer(state: &Shared, uri: &Uri, leader: Option<NodeId>) -> Response {
    match leader.and_then(|leader| redirect(state, uri, leader)) {
        Some(response) => response,
        None => {
            error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", "this node is not the leader and knows no other; retry")
        }
    }
}

fn joined(state: &Shared, node: NodeId) -> Response {
    let status = state.handle.status();
    let mut members: Vec<MemberAddress> = state
        .handle
        .peers()
        .into_iter()
        .map(|peer| MemberAddress { id: peer.id.0, address: peer.address, http: state.http_of(peer.id) })
        .collect();
    if let Some(listen) = state.listen {
        members.push(MemberAddress { id: status.id().0, address: listen, http: state.http_of(status.id()) });
    }
    members.sort_by_key(|member| member.id);
    let voters = status.voters.iter().map(|voter| voter.0).collect();
    Json(JoinAnswer { id: node.0, voters, members }).into_response()
}

/// How long `DELETE /v1/members/{id}` keeps trying (while another change is
/// in flight) before answering 504.
pub const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// One member in the answer to `GET /v1/members`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its node id.
    pub id: u64,
    /// `voter` or `learner`.
    pub role: String,
    /// The disk it votes from (voters only; 0 for the initial members).
    pub disk: Option<u64>,
    /// Its peer (QUIC) address, if this node knows it.
    pub address: Option<SocketAddr>,
    /// Its HTTP address, if this node knows it.
    pub http: Option<SocketAddr>,
}

/// The answer to `GET /v1/members` and `DELETE /v1/members/{id}`: the
/// configuration in force as this node knows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MembersAnswer {
    /// The node that answered.
    pub node: u64,
    /// The leader it follows, if known.
    pub leader: Option<u64>,
    /// Voters, then learners, by id.
    pub members: Vec<MemberInfo>,
}

fn members_answer(state: &Shared) -> MembersAnswer {
    let status = state.handle.status();
    let addresses: std::collections::BTreeMap<NodeId, SocketAddr> = state
        .handle
        .peers()
        .into_iter()
        .map(|peer| (peer.id, peer.address))
        .chain(state.listen.map(|listen| (status.id(), listen)))
        .collect();
    let info = |id: NodeId, role: &str, disk: Option<u64>| MemberInfo {
        id: id.0,
        role: role.to_string(),
        disk,
        address: addresses.get(&id).copied(),
        http: state.http_of(id),
    };
    let voters = status.voter_disks.iter().map(|(id, disk)| info(*id, "voter", Some(disk.0)));
    let learners = status.learners.iter().map(|id| info(*id, "learner", None));
    MembersAnswer {
        node: status.id().0,
        leader: status.raft.leader.map(|leader| leader.0),
        members: voters.chain(learners).collect(),
    }
}

/// `GET /v1/members`: the configuration in force as this node knows it.
pub(super) async fn list_members(State(state): State<AppState>) -> Response {
    Json(members_answer(&state)).into_response()
}

/// `DELETE /v1/members/{id}`: on the leader, removes node `id` (a learner at
/// once, a voter through a joint configuration); answers 200 with the
/// members once the node is out of the configuration in force. A follower
/// redirects to the leader. 404 if the node is not a member; 409 if the core
/// refuses (the last voter, or a change that could not commit).
pub(super) async fn remove_member(
    State(state): State<AppState>,
    uri: Uri,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Response {
    let node = match id {
        Ok(Path(id)) if id > 0 => NodeId(id),
        _ => return error(StatusCode::BAD_REQUEST, "bad_id", "expected /v1/members/{id} with a node id from 1"),
    };
    let is_member = |state: &Shared| {
        let status = state.handle.status();
        status.voters.contains(&node) || status.learners.contains(&node)
    };
    let status = state.handle.status();
    if !status.is_leader() {
        return not_leader_answer(&state, &uri, status.raft.leader);
    }
    if !is_member(&state) {
        let message = format!("node {node} is not a member (already removed?)");
        return error(StatusCode::NOT_FOUND, "not_member", message);
    }
    let deadline = tokio::time::Instant::now() + MEMBERSHIP_CHANGE_TIMEOUT;
    let change = MembershipChange::Remove(node);
    loop {
        let asked = tokio::time::timeout_at(deadline, state.handle.change_membership(change.clone())).await;
        match asked {
            Err(_) => break,
            Ok(Err(DriverStopped)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "stopping", "the node is stopping; ask again")
            }
            Ok(Ok(Ok(answer))) => match answer.result {
                // Applied here: answered even if this node just removed
                // itself and stepped down.
                ClientResult::Ok(_) if !is_member(&state) => {
                    tracing::info!(%node, "member removed");
                    return Json(members_answer(&state)).into_response();
                }
                ClientResult::NotLeader { leader_hint } => return not_leader_answer(&state, &uri, Some(leader_hint)),
                other => tracing::info!(%node, ?other, "removal not applied yet; retrying"),
            },
            Ok(Ok(Err(ChangeError::ChangeInFlight))) => {}
            Ok(Ok(Err(ChangeError::NotMember(_)))) => return Json(members_answer(&state)).into_response(),
            Ok(Ok(Err(ChangeError::NotLeader))) => return not_leader_answer(&state, &uri, None),
            Ok(Ok(Err(refused))) => {
                return error(StatusCode::CONFLICT, "membership_refused", format!("removing {node} refused: {refused}"))
            }
        }
        if tokio::time::Instant::now() + JOIN_RETRY_INTERVAL > deadline {
            break;
        }
        tokio::time::sleep(JOIN_RETRY_INTERVAL).await;
    }
    let message = format!("node {node} was not removed within {MEMBERSHIP_CHANGE_TIMEOUT:?}; ask again");
    error(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
}
