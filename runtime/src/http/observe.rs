//! `GET /metrics` (Prometheus text) and `GET /v1/events` (server-sent
//! events).

use super::{error, AppState};
use crate::driver::DriverHandle;
use crate::events::{role_name, NodeEvent};
use crate::metrics::{MetricsText, READ_CONSISTENCIES};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chorus_core::raft::Role;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use tokio::sync::broadcast;

/// Most `GET /v1/events` streams open at once on one node; beyond it 503.
pub const MAX_EVENT_SUBSCRIBERS: usize = 64;

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let text = render_metrics(&state.handle);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// The node's metrics in Prometheus text format.
pub fn render_metrics(handle: &DriverHandle) -> String {
    let mut text = MetricsText::default();
    raft_metrics(&mut text, handle);
    client_metrics(&mut text, handle);
    transport_metrics(&mut text, handle);
    storage_metrics(&mut text, handle);
    text.finish()
}

fn raft_metrics(text: &mut MetricsText, handle: &DriverHandle) {
    let status = handle.status();
    let raft = &status.raft;
    text.single("chorus_term", "gauge", "The node's current Raft term.", raft.term.0);
    text.single("chorus_last_index", "gauge", "The last index of the node's log.", raft.last_index.0);
    text.single("chorus_commit_index", "gauge", "The highest log index known committed.", raft.commit_index.0);
    text.single("chorus_applied_index", "gauge", "The highest log index applied.", raft.applied_index.0);
    text.single(
        "chorus_leader_id",
        "gauge",
        "The leader this node follows (0: none known).",
        raft.leader.map_or(0, |id| id.0),
    );
    text.family("chorus_role", "gauge", "1 for the node's current role, 0 for the others.");
    for role in [Role::Leader, Role::Follower, Role::Candidate, Role::PreCandidate] {
        text.sample("chorus_role", &[("role", role_name(role))], u8::from(raft.role == role));
    }
    text.single("chorus_voters", "gauge", "Voters of the configuration in force.", status.voters.len());
    text.single("chorus_learners", "gauge", "Learners of the configuration in force.", status.learners.len());
    let elections = handle.metrics().elections_won.load(Ordering::Relaxed);
    text.single("chorus_elections_won_total", "counter", "Times this node became leader.", elections);
}

fn client_metrics(text: &mut MetricsText, handle: &DriverHandle) {
    let metrics = handle.metrics();
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    text.single("chorus_proposals_total", "counter", "Writes proposed through this node.", load(&metrics.proposals));
    text.single(
        "chorus_proposals_applied_total",
        "counter",
        "Writes proposed through this node that were committed and applied.",
        load(&metrics.proposals_applied),
    );
    text.histogram(
        "chorus_proposal_seconds",
        "Time from a write's submission to its answer.",
        &metrics.proposal_latency.snapshot(),
    );
    text.family("chorus_reads_total", "counter", "Reads asked of this node, by consistency.");
    for (name, counter) in READ_CONSISTENCIES.iter().zip(&metrics.reads) {
        text.sample("chorus_reads_total", &[("consistency", name)], load(counter));
    }
}

fn transport_metrics(text: &mut MetricsText, handle: &DriverHandle) {
    let counters = handle.status().transport;
    text.family("chorus_peer_connected", "gauge", "1 if the peer has a working connection, else 0.");
    for (peer, connected) in handle.peer_connections() {
        text.sample("chorus_peer_connected", &[("peer", &peer.0.to_string())], u8::from(connected));
    }
    text.single("chorus_messages_sent_total", "counter", "Peer messages sent.", counters.messages_sent);
    text.single("chorus_messages_received_total", "counter", "Peer messages received.", counters.messages_received);
    text.single("chorus_message_bytes_sent_total", "counter", "Bytes of peer messages sent.", counters.bytes_sent);
    let received = counters.bytes_received;
    text.single("chorus_message_bytes_received_total", "counter", "Bytes of peer messages received.", received);
    text.family("chorus_messages_dropped_total", "counter", "Peer messages dropped, by reason.");
    for (reason, count) in [
        ("forged_from", counters.forged_from_dropped),
        ("undecodable", counters.undecodable_dropped),
        ("inbox_full", counters.inbox_full_dropped),
        ("unreachable", counters.unreachable_dropped),
    ] {
        text.sample("chorus_messages_dropped_total", &[("reason", reason)], count);
    }
    text.family("chorus_connections_refused_total", "counter", "Incoming peer connections refused, by reason.");
    text.sample("chorus_connections_refused_total", &[("reason", "handshake")], counters.handshakes_failed);
    text.sample("chorus_connections_refused_total", &[("reason", "no_node")], counters.connections_without_node);
    text.single(
        "chorus_connections_failed_total",
        "counter",
        "Peer connections found dead.",
        counters.connections_failed,
    );
}

fn storage_metrics(text: &mut MetricsText, handle: &DriverHandle) {
    let storage = &handle.metrics().storage;
    text.histogram(
        "chorus_wal_fsync_seconds",
        "Latency of each fsync of the write-ahead log.",
        &storage.fsync_latency.snapshot(),
    );
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    text.single("chorus_snapshots_total", "counter", "Snapshots written to disk.", load(&storage.snapshots_written));
    text.single("chorus_wal_segments", "gauge", "Segment files of the write-ahead log.", load(&storage.segments));
    let removed = load(&storage.segments_removed);
    text.single("chorus_wal_segments_removed_total", "counter", "Segments removed by compaction.", removed);
}

/// `GET /v1/events`: the node's events as server-sent events, until the
/// node stops.
pub(super) async fn events(State(state): State<AppState>) -> Response {
    if state.handle.subscribers() >= MAX_EVENT_SUBSCRIBERS {
        let message = format!("at most {MAX_EVENT_SUBSCRIBERS} event streams at once; retry later");
        return error(StatusCode::SERVICE_UNAVAILABLE, "too_many_subscribers", message);
    }
    let receiver = state.handle.subscribe();
    let stopped: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(state.handle.stopped_signal());
    let stream = futures_util::stream::unfold((receiver, stopped), |(mut receiver, mut stopped)| async move {
        let outgoing = tokio::select! {
            outgoing = next_event(&mut receiver) => outgoing?,
            () = &mut stopped => return None,
        };
        Some((Ok::<_, Infallible>(outgoing.into_sse()), (receiver, stopped)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// What a subscriber is sent next.
#[derive(Debug, PartialEq, Eq)]
enum Outgoing {
    Event(NodeEvent),
    /// The subscriber fell behind and missed this many events.
    Lagged(u64),
}

impl Outgoing {
    fn into_sse(self) -> SseEvent {
        match self {
            Outgoing::Event(event) => {
                let data = serde_json::to_string(&event).expect("invariant: events serialize");
                SseEvent::default().event(event.name()).data(data)
            }
            Outgoing::Lagged(missed) => {
                let data = serde_json::json!({ "type": "lagged", "missed": missed }).to_string();
                SseEvent::default().event("lagged").data(data)
            }
        }
    }
}

/// The next thing to send, or `None` once the events end.
async fn next_event(receiver: &mut broadcast::Receiver<NodeEvent>) -> Option<Outgoing> {
    match receiver.recv().await {
        Ok(event) => Some(Outgoing::Event(event)),
        Err(broadcast::error::RecvError::Lagged(missed)) => Some(Outgoing::Lagged(missed)),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_many_events_it_missed() {
        let (sender, mut receiver) = broadcast::channel(4);
        for peer in 1..=10 {
            sender.send(NodeEvent::PeerConnected { peer }).unwrap();
        }
        assert_eq!(next_event(&mut receiver).await, Some(Outgoing::Lagged(6)));
        for peer in 7..=10 {
            assert_eq!(next_event(&mut receiver).await, Some(Outgoing::Event(NodeEvent::PeerConnected { peer })));
        }
        drop(sender);
        assert_eq!(next_event(&mut receiver).await, None);
    }
}
