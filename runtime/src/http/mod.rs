//! The client API over HTTP/JSON (axum), for a node running
//! [`KvStore`](chorus_core::kv::KvStore).
//!
//! | request                                   | answer                                              |
//! |-------------------------------------------|-----------------------------------------------------|
//! | `PUT /v1/kv/{key}` (value = body)         | 200 `{"ok":true,"session":N}`                       |
//! | `GET /v1/kv/{key}?consistency=C&session=N`| 200 raw value, 404 if absent                        |
//! | `DELETE /v1/kv/{key}`                     | 200 `{"ok":true,"session":N}`                       |
//! | `POST /v1/kv/{key}/cas` `{"expected":E,"new":V}` | 200 `{"applied":true,...}`, 409 `{"applied":false,"current":...}` |
//! | `GET /v1/status`                          | 200 JSON: node, role, term, leader, members, indexes |
//! | `GET /health`                             | 200 when the node knows a leader, else 503          |
//! | `POST /v1/members` `{"id":N,"address":A,"http":H}` | on the leader: adds or renews member N; 200 once it votes |
//!
//! Keys are arbitrary bytes, percent-encoded in the path (`%2F` for a `/`
//! inside a key). Values are the raw body; in the compare-and-set JSON,
//! `expected` and `new` are UTF-8 strings (`expected: null` means "absent").
//! `C` is `linearizable` (the default), `lease`, `session` (with
//! `session=N`, the token from an earlier answer: read-your-writes) or
//! `stale`. Every answer carries the session token in the
//! `x-chorus-session` header.
//!
//! A write sent to a follower is answered `307` to the leader's HTTP
//! address when [`HttpOptions::peer_http`] knows it (the `chorus` CLI
//! follows it), else forwarded to the leader by the core. Reads are served
//! by the node asked (a follower asks the leader for a read index for
//! linearizable and lease reads). When the core refuses (`NotLeader`, e.g.
//! during a leadership transfer), the answer is the same `307`, or `503`
//! with `{"error":"not_leader","leader":ID}` when the address is unknown.
//!
//! Errors are JSON `{"error": CODE, "message": TEXT}`: 400 for malformed
//! input, 404 unknown key, 413 body over [`MAX_BODY_BYTES`], 503 when the
//! node cannot serve now (no leader, overloaded, stopping; retry), 504 when
//! no answer came within [`REQUEST_TIMEOUT`] (a write's outcome is then
//! unknown).

// Handlers return an early `Response` as the error of small helpers; it is
// built only on error paths, so its size does not matter.
#![allow(clippy::result_large_err)]

mod cors;
mod limit;
mod members;
mod observe;
pub mod tls;

pub use cors::{validate_origin, CORS_MAX_AGE_SECONDS};
pub use limit::DEFAULT_MAX_REQUESTS_PER_SECOND;
pub use members::{JoinAnswer, MemberAddress, MemberInfo, MembersAnswer, JOIN_TIMEOUT, MEMBERSHIP_CHANGE_TIMEOUT};
pub use observe::{render_metrics, MAX_EVENT_SUBSCRIBERS};

use crate::driver::{Answer, DriverHandle, DriverStopped, NodeStatus};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chorus_core::kv::{KvCommand, KvOp, KvQuery, KvResponse};
use chorus_core::raft::{ClientResult, DropReason, ReadConsistency};
use chorus_core::types::{LogIndex, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted, in bytes (the core refuses commands over
/// its `max_command_bytes`, 64 KiB by default, with 413 too).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a request waits for the node's answer before 504.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest key accepted, in bytes (after percent-decoding).
pub const MAX_KEY_BYTES: usize = 4 * 1024;

/// The header carrying the session token.
pub const SESSION_HEADER: &str = "x-chorus-session";

/// How the HTTP API is served.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// The HTTP address of the nodes (this one may be included), for
    /// redirects to the leader and `leader_http` in the status.
    pub peer_http: BTreeMap<NodeId, SocketAddr>,
    /// This node's own peer (QUIC) address, told to joining nodes.
    pub listen: Option<SocketAddr>,
    /// Requests per second served (a burst of one second's worth); beyond
    /// it 429. 0: no limit.
    pub max_requests_per_second: u32,
    /// The scheme of the nodes' APIs (`https` when they serve TLS), for
    /// redirects; `http` when empty.
    pub scheme: &'static str,
    /// Browser origins (`scheme://host[:port]`) allowed to call the API
    /// across origins; none by default (no CORS headers are sent).
    pub cors_origins: Vec<String>,
}

struct Shared {
    handle: DriverHandle,
    /// [`HttpOptions::peer_http`], and the addresses of members that joined.
    peer_http: std::sync::RwLock<BTreeMap<NodeId, SocketAddr>>,
    listen: Option<SocketAddr>,
    rate_limiter: Option<limit::RateLimiter>,
    scheme: &'static str,
    cors_origins: Vec<String>,
}

impl Shared {
    fn http_of(&self, node: NodeId) -> Option<SocketAddr> {
        self.peer_http.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&node).copied()
    }
}

type AppState = Arc<Shared>;

/// The API's routes, for `handle`'s node.
pub fn router(handle: DriverHandle, options: HttpOptions) -> Router {
    let rate_limiter = (options.max_requests_per_second > 0)
        .then(|| limit::RateLimiter::new(options.max_requests_per_second, std::time::Instant::now()));
    let state = Arc::new(Shared {
        handle,
        peer_http: std::sync::RwLock::new(options.peer_http),
        listen: options.listen,
        rate_limiter,
        scheme: if options.scheme.is_empty() { "http" } else { options.scheme },
        cors_origins: options.cors_origins,
    });
    Router::new()
        .route("/v1/kv/{key}", get(get_key).put(put_key).delete(delete_key))
        .route("/v1/kv/{key}/cas", post(cas_key))
        .route("/v1/status", get(status))
        .route("/health", get(health))
        .route("/metrics", get(observe::metrics))
        .route("/v1/events", get(observe::events))
        .route("/v1/members", post(members::join_member).get(members::list_members))
        .route("/v1/members/{id}", axum::routing::delete(members::remove_member))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no_route", "no such endpoint; see docs/runtime.md") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), limit::limit_rate))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), cors::cors))
        .with_state(state)
}

/// Serves the API on `listener` (a `tokio::net::TcpListener`, or a
/// [`tls::TlsListener`]) until `shutdown` resolves (requests in progress are
/// finished first).
pub async fn serve<L>(
    listener: L,
    handle: DriverHandle,
    options: HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(handle, options)).with_graceful_shutdown(shutdown).await
}

/// A JSON error answer.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": code, "message": message.into() });
    (status, Json(body)).into_response()
}

fn with_session(mut response: Response, session: LogIndex) -> Response {
    response.headers_mut().insert(SESSION_HEADER, HeaderValue::from(session.0));
    response
}

/// The key in `/v1/kv/{key}` or `/v1/kv/{key}/cas`, percent-decoded to bytes.
fn key_of(uri: &Uri, suffix: &str) -> Result<Vec<u8>, Response> {
    let encoded = uri
        .path()
        .strip_prefix("/v1/kv/")
        .and_then(|rest| rest.strip_suffix(suffix))
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_key", "no key in the path"))?;
    let key = percent_decode(encoded)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_key", "the key has a malformed %-escape"))?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_key",
            format!("a key must be 1 to {MAX_KEY_BYTES} bytes, got {}", key.len()),
        ));
    }
    Ok(key)
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        if bytes[position] == b'%' {
            let hex = bytes.get(position + 1..position + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            position += 3;
        } else {
            decoded.push(bytes[position]);
            position += 1;
        }
    }
    Some(decoded)
}

fn body_error(rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_body" };
    error(status, code, format!("{rejection} (limit {MAX_BODY_BYTES} bytes)"))
}

/// Sends a request to the node, bounded by [`REQUEST_TIMEOUT`].
async fn ask<F>(request: F) -> Result<Answer, Response>
where
    F: std::future::Future<Output = Result<Answer, DriverStopped>>,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(DriverStopped)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "stopping", "the node is stopping")),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("no answer within {REQUEST_TIMEOUT:?}; a write may or may not have taken effect"),
        )),
    }
}

/// Turns the core's answer into the store's response, or an HTTP error.
fn outcome(state: &Shared, uri: &Uri, answer: Answer) -> Result<(KvResponse, LogIndex), Response> {
    let session = answer.session_index;
    let response = match answer.result {
        ClientResult::Ok(bytes) => {
            return KvResponse::decode(&bytes).map(|response| (response, session)).map_err(|problem| {
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("undecodable answer: {problem}"))
            })
        }
        ClientResult::NotLeader { leader_hint } => match redirect(state, uri, leader_hint) {
            Some(response) => response,
            None => {
                let body = serde_json::json!({
                    "error": "not_leader",
                    "leader": leader_hint.0,
                    "message": format!("node {} is the leader; send the request there", leader_hint.0),
                });
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
            }
        },
        ClientResult::NoLeader => {
            error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", "no leader is known (an election is under way); retry")
        }
        ClientResult::Dropped(DropReason::Overloaded) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests in flight; retry")
        }
        ClientResult::Dropped(DropReason::TooLarge) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request is larger than the node accepts")
        }
        ClientResult::Dropped(DropReason::LeadershipLost) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leadership_lost",
            "the leader changed while the request was in flight; a write may or may not have taken effect",
        ),
    };
    Err(with_session(response, session))
}

/// `307` to `leader`'s HTTP address for the same path and query, if known.
fn redirect(state: &Shared, uri: &Uri, leader: NodeId) -> Option<Response> {
    let address = state.http_of(leader)?;
    let target = format!("{}://{address}{}", state.scheme, uri.path_and_query().map_or("/", |path| path.as_str()));
    let mut response =
        error(StatusCode::TEMPORARY_REDIRECT, "not_leader", format!("node {leader} is the leader; retry at {target}"));
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&target).ok()?);
    Some(response)
}

async fn propose(state: &Shared, uri: &Uri, op: KvOp) -> Result<(KvResponse, LogIndex), Response> {
    // A follower sends writes to the leader when it knows the leader's HTTP
    // address: the client then hears the leader's own answer. (The core's
    // forwarding is the fallback; a forwarded proposal whose entry this
    // node applies before the leader's placement answer arrives is answered
    // "outcome unknown", which a direct write never is.)
    let status = state.handle.status();
    if let Some(leader) = status.raft.leader.filter(|leader| *leader != status.raft.id) {
        if let Some(response) = redirect(state, uri, leader) {
            return Err(response);
        }
    }
    let command = KvCommand { session: None, op }.encode();
    let answer = ask(state.handle.propose(command)).await?;
    outcome(state, uri, answer)
}

fn done(result: Result<(KvResponse, LogIndex), Response>) -> Response {
    match result {
        Ok((KvResponse::Done, session)) => {
            with_session(Json(serde_json::json!({ "ok": true, "session": session.0 })).into_response(), session)
        }
        Ok((other, session)) => with_session(unexpected(other), session),
        Err(response) => response,
    }
}

fn unexpected(response: KvResponse) -> Response {
    match response {
        KvResponse::Malformed(problem) => error(StatusCode::BAD_REQUEST, "malformed", problem),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected answer {other:?}")),
    }
}

async fn put_key(State(state): State<AppState>, uri: Uri, body: Result<Bytes, BytesRejection>) -> Response {
    let key = match key_of(&uri, "") {
        Ok(key) => key,
        Err(response) => return response,
    };
    let value = match body {
        Ok(value) => value.to_vec(),
        Err(rejection) => return body_error(rejection),
    };
    done(propose(&state, &uri, KvOp::Put { key, value }).await)
}

async fn delete_key(State(state): State<AppState>, uri: Uri) -> Response {
    let key = match key_of(&uri, "") {
        Ok(key) => key,
        Err(response) => return response,
    };
    done(propose(&state, &uri, KvOp::Delete { key }).await)
}

/// The JSON body of a compare-and-set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasRequest {
    /// The value the key must hold; `null` for "absent".
    expected: Option<String>,
    /// The value to set.
    new: String,
}

#[derive(Debug, Serialize)]
struct CasAnswer {
    applied: bool,
    /// The value before the operation (lossy UTF-8), `null` if absent.
    current: Option<String>,
    session: u64,
}

async fn cas_key(State(state): State<AppState>, uri: Uri, body: Result<Json<CasRequest>, JsonRejection>) -> Response {
    let key = match key_of(&uri, "/cas") {
        Ok(key) => key,
        Err(response) => return response,
    };
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            let status = rejection.status();
            return error(
                status,
                "bad_body",
                format!("{}: expected {{\"expected\": string or null, \"new\": string}}", rejection.body_text()),
            );
        }
    };
    let op = KvOp::Cas { key, expected: request.expected.map(String::into_bytes), new: request.new.into_bytes() };
    match propose(&state, &uri, op).await {
        Ok((KvResponse::Cas { applied, current }, session)) => {
            let current = current.map(|value| String::from_utf8_lossy(&value).into_owned());
            let status = if applied { StatusCode::OK } else { StatusCode::CONFLICT };
            with_session((status, Json(CasAnswer { applied, current, session: session.0 })).into_response(), session)
        }
        Ok((other, session)) => with_session(unexpected(other), session),
        Err(response) => response,
    }
}

/// The query of a read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    consistency: Option<String>,
    session: Option<u64>,
}

fn consistency_of(params: &ReadParams) -> Result<ReadConsistency, Response> {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, "bad_consistency", message);
    let consistency = match params.consistency.as_deref().unwrap_or("linearizable") {
        "linearizable" => ReadConsistency::Linearizable,
        "lease" => ReadConsistency::Lease,
        "session" => ReadConsistency::Session { after: LogIndex(params.session.unwrap_or(0)) },
        "stale" => ReadConsistency::Stale,
        other => return Err(bad(format!("consistency {other:?} is not one of linearizable, lease, session, stale"))),
    };
    if params.session.is_some() && !matches!(consistency, ReadConsistency::Session { .. }) {
        return Err(bad("session=N only goes with consistency=session".to_string()));
    }
    Ok(consistency)
}

async fn get_key(
    State(state): State<AppState>,
    uri: Uri,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Response {
    let key = match key_of(&uri, "") {
        Ok(key) => key,
        Err(response) => return response,
    };
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, "bad_query", rejection.body_text()),
    };
    let consistency = match consistency_of(&params) {
        Ok(consistency) => consistency,
        Err(response) => return response,
    };
    let answer = match ask(state.handle.read(KvQuery::Get { key }.encode(), consistency)).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    match outcome(&state, &uri, answer) {
        Ok((KvResponse::Value(Some(value)), session)) => {
            let response = ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response();
            with_session(response, session)
        }
        Ok((KvResponse::Value(None), session)) => {
            with_session(error(StatusCode::NOT_FOUND, "not_found", "no such key"), session)
        }
        Ok((other, session)) => with_session(unexpected(other), session),
        Err(response) => response,
    }
}

/// What `GET /v1/status` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node.
    pub node: u64,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader it follows, if known.
    pub leader: Option<u64>,
    /// The leader's HTTP address, if known.
    pub leader_http: Option<String>,
    /// Voters of the configuration in force.
    pub voters: Vec<u64>,
    /// Learners of the configuration in force.
    pub learners: Vec<u64>,
    /// The disk this node runs on (0 for a member of the initial
    /// configuration; a random id for one that joined).
    pub disk: u64,
    /// Last log index.
    pub last_index: u64,
    /// Highest index known committed.
    pub commit_index: u64,
    /// Highest index applied.
    pub applied_index: u64,
    /// Peer messages dropped because their sender was forged.
    pub forged_messages_dropped: u64,
    /// Incoming peer connections refused (bad or missing certificate).
    pub connections_refused: u64,
}

fn report(state: &Shared, status: &NodeStatus) -> StatusReport {
    let leader_http = status.raft.leader.and_then(|leader| state.http_of(leader)).map(|address| address.to_string());
    StatusReport {
        node: status.raft.id.0,
        role: crate::events::role_name(status.raft.role).to_string(),
        term: status.raft.term.0,
        leader: status.raft.leader.map(|leader| leader.0),
        leader_http,
        voters: status.voters.iter().map(|voter| voter.0).collect(),
        learners: status.learners.iter().map(|learner| learner.0).collect(),
        disk: status.raft.disk.0,
        last_index: status.raft.last_index.0,
        commit_index: status.raft.commit_index.0,
        applied_index: status.raft.applied_index.0,
        forged_messages_dropped: status.transport.forged_from_dropped,
        connections_refused: status.transport.handshakes_failed + status.transport.connections_without_node,
    }
}

async fn status(State(state): State<AppState>) -> Response {
    Json(report(&state, &state.handle.status())).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    let status = state.handle.status();
    match status.raft.leader {
        Some(leader) => Json(serde_json::json!({ "healthy": true, "leader": leader.0 })).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "healthy": false, "message": "no leader known; the node cannot serve writes" })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_gives_bytes_and_refuses_broken_escapes() {
        assert_eq!(percent_decode("a%2Fb%00%ff"), Some(b"a/b\x00\xff".to_vec()));
        assert_eq!(percent_decode("plain"), Some(b"plain".to_vec()));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }

    #[test]
    fn consistency_names_parse_and_unknown_ones_are_refused() {
        let params =
            |consistency: Option<&str>, session| ReadParams { consistency: consistency.map(String::from), session };
        assert_eq!(consistency_of(&params(None, None)).unwrap(), ReadConsistency::Linearizable);
        assert_eq!(
            consistency_of(&params(Some("session"), Some(7))).unwrap(),
            ReadConsistency::Session { after: LogIndex(7) }
        );
        assert_eq!(consistency_of(&params(Some("stale"), None)).unwrap(), ReadConsistency::Stale);
        assert_eq!(consistency_of(&params(Some("eventual"), None)).unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(consistency_of(&params(Some("stale"), Some(3))).unwrap_err().status(), StatusCode::BAD_REQUEST);
    }
}
