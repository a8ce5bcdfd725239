//! How the Raft world describes its steps: the kinds of trace record, and the
//! compact words and readable text of messages and client results.

use chorus_core::raft::{AppendResponse, ClientResult, ForwardOutcome, Message, MessageBody, RequestTag};

/// The kind of a trace record: the first word of its binary form. The
/// numbers are part of the trace hash; never renumber them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum RaftRecord {
    /// The seed and its profile.
    RunStarted = 0,
    /// A message reached a node the network cut off while it was in flight.
    CutInFlight = 10,
    Delivered = 11,
    TimerFired = 12,
    WriteSynced = 13,
    ClientRequest = 14,
    ClientResponse = 15,
    ClientTimedOut = 16,
    /// A message the network cut at send time.
    CutAtSend = 17,
    /// A message the network lost at random.
    Lost = 18,
    WriteSubmitted = 20,
    RoleChanged = 21,
    Violation = 22,
    TransferStarted = 23,
    TransferAbandoned = 24,
    /// A node answered one of the operator's membership changes.
    MembershipChangeAnswered = 25,
    MembershipChanged = 26,
    SnapshotInstalled = 27,
    FollowerLostEntries = 28,
    /// A node asked its disk for a write no correct node asks for (words:
    /// the node, the write's id). The run fails with it.
    ImpossibleWrite = 29,
    Fault = 30,
    Restarted = 31,
    FaultPhaseEnded = 32,
    OperatorAsked = 33,
    OperatorTransfer = 34,
    Panic = 98,
    Verdict = 99,
}

impl From<RaftRecord> for u64 {
    fn from(kind: RaftRecord) -> u64 {
        kind as u64
    }
}

/// Compact trace words for a message: kind, from, to, term and the fields
/// that matter.
pub fn message_words(message: &Message) -> [u64; 7] {
    let (kind, a, b, c) = match &message.body {
        MessageBody::RequestVote { pre_vote, last_log_index, last_log_term, transfer } => {
            (1 + *pre_vote as u64, last_log_index.0, last_log_term.0, *transfer as u64)
        }
        MessageBody::RequestVoteResponse { pre_vote, granted } => (3 + *pre_vote as u64, *granted as u64, 0, 0),
        MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit } => {
            (5, prev_log_index.0, prev_log_term.0 ^ ((entries.len() as u64) << 32), leader_commit.0)
        }
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => (6, match_index.0, 0, 0),
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected { rejected_prev_index, hint }) => {
            (7, rejected_prev_index.0, hint.first_index.0, hint.conflict_term.map_or(0, |term| term.0 + 1))
        }
        MessageBody::Heartbeat { commit, read_context } => (8, commit.0, *read_context, 0),
        MessageBody::HeartbeatResponse { read_context } => (9, *read_context, 0, 0),
        MessageBody::TimeoutNow => (10, 0, 0, 0),
        MessageBody::InstallSnapshot { meta, offset, total_bytes, chunk } => {
            (11, meta.index.0, *offset ^ ((chunk.len() as u64) << 40), *total_bytes)
        }
        MessageBody::SnapshotChunkResponse { index, received } => (12, index.0, *received, 0),
        MessageBody::Forward { id, command } => (13, tag_word(id), command.len() as u64, 0),
        MessageBody::ForwardResponse { id, outcome } => match outcome {
            ForwardOutcome::Placed { index, term } => (14, tag_word(id), index.0, term.0),
            ForwardOutcome::NotLeader => (15, tag_word(id), 0, 0),
            ForwardOutcome::Overloaded => (15, tag_word(id), 1, 0),
            ForwardOutcome::TooLarge => (15, tag_word(id), 2, 0),
        },
        MessageBody::ReadIndex { id, allow_lease } => (16, tag_word(id), *allow_lease as u64, 0),
        MessageBody::ReadIndexResponse { id, index } => (17, tag_word(id), index.map_or(0, |index| index.0 + 1), 0),
    };
    let envelope = message.term.0 ^ (message.disk.0 << 48) ^ message.incarnation.rotate_left(32);
    [kind, message.from.0, message.to.0, envelope, a, b, c]
}

/// One trace word for a request tag.
fn tag_word(tag: &RequestTag) -> u64 {
    tag.seq ^ tag.incarnation.rotate_left(40) ^ tag.disk.0.rotate_left(20)
}

pub fn describe_message(message: &Message) -> String {
    let detail = match &message.body {
        MessageBody::RequestVote { last_log_index, last_log_term, .. } => {
            format!("last={}/{}", last_log_index, last_log_term)
        }
        MessageBody::RequestVoteResponse { granted, .. } => {
            if *granted {
                "granted".into()
            } else {
                "rejected".into()
            }
        }
        MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit } => {
            format!("prev={}/{} entries={} commit={}", prev_log_index, prev_log_term, entries.len(), leader_commit)
        }
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => {
            format!("accepted match={match_index}")
        }
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected { rejected_prev_index, hint }) => format!(
            "rejected prev={} hint={:?}@{}",
            rejected_prev_index,
            hint.conflict_term.map(|term| term.0),
            hint.first_index
        ),
        MessageBody::Heartbeat { commit, read_context } => format!("commit={commit} round={read_context}"),
        MessageBody::HeartbeatResponse { read_context } => format!("round={read_context}"),
        MessageBody::TimeoutNow => String::new(),
        MessageBody::InstallSnapshot { meta, offset, total_bytes, chunk } => format!(
            "upto={}/{} bytes {}..{} of {} ({})",
            meta.index,
            meta.term,
            offset,
            offset + chunk.len() as u64,
            total_bytes,
            meta.membership
        ),
        MessageBody::SnapshotChunkResponse { index, received } => format!("upto={index} received={received}"),
        MessageBody::Forward { id, command } => format!("id={id} {} bytes", command.len()),
        MessageBody::ForwardResponse { id, outcome } => format!("id={id} {outcome:?}"),
        MessageBody::ReadIndex { id, allow_lease } => format!("id={id} lease={allow_lease}"),
        MessageBody::ReadIndexResponse { id, index } => format!("id={id} index={index:?}"),
    };
    format!("{} -> {} {} {} {}", message.from, message.to, message.body.kind(), message.term, detail)
}

pub fn describe_result(result: &ClientResult) -> String {
    match result {
        ClientResult::Ok(bytes) => match chorus_core::kv::KvResponse::decode(bytes) {
            Ok(response) => format!("ok {response:?}"),
            Err(_) => "ok <undecodable>".into(),
        },
        other => format!("{other:?}"),
    }
}
