//! How the Raft world describes its steps: the kinds of trace record, and the
//! compact words and readable text of messages and client results.

use chorus_core::raft::{AppendResponse, ClientResult, ForwardOutcome, Message, MessageBody, RequestTag};

/// The kind of a trace record: the first word of its binary form. The
/// numbers are part of the trace hash; never renumber them.
///
/// Each record is the simulated time in microseconds, this kind, and the
/// words listed per kind below. A "node" word is a 0-based node index (node
/// id minus one); node ids in message words are 1-based. "Message words"
/// are [`message_words`]: kind, sender id, receiver id, envelope, then three
/// body fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum RaftRecord {
    /// The run begins. Word: the seed. (The text also shows the drawn
    /// profile, which follows from the seed.)
    RunStarted = 0,
    /// A message reached a node the network cut off while it was in flight,
    /// and was dropped. Words: the first three message words (kind, sender,
    /// receiver).
    CutInFlight = 10,
    /// A running node handled a message. Words: all seven message words.
    Delivered = 11,
    /// A node's election or heartbeat timer fired. Word: the node.
    TimerFired = 12,
    /// A node's disk finished a write and the node was told. Words: the node,
    /// the write's persist id.
    WriteSynced = 13,
    /// A client request reached a running node. Words: the node, the client
    /// index, the attempt number, 1 for a read or 0 for a proposal.
    ClientRequest = 14,
    /// A node's answer reached a client. Words: the client index, the
    /// attempt, the answering node's applied index when it answered.
    ClientResponse = 15,
    /// A client's attempt got no answer within the attempt timeout (only
    /// recorded for the attempt still current). Words: the client index, the
    /// attempt.
    ClientTimedOut = 16,
    /// A message the network cut at send time (a partition). Words: the
    /// first four message words.
    CutAtSend = 17,
    /// A message the network lost at random. Words: the first four message
    /// words.
    Lost = 18,
    /// A node handed a write to its disk. Words: the node, the persist id,
    /// the number of entries, the index the snapshot in it ends at (0 if
    /// none).
    WriteSubmitted = 20,
    /// A node changed role. Words: the node, the role (0 follower,
    /// 1 pre-candidate, 2 candidate, 3 leader), the term.
    RoleChanged = 21,
    /// A node reported a protocol violation, or rejected a malformed message
    /// whole; the seed fails. Word: the node. (The description is in the
    /// text only.)
    Violation = 22,
    /// A leader started handing leadership over. Words: the node, the
    /// target's id, the term.
    TransferStarted = 23,
    /// A leader gave up a leadership transfer. Words: the node, the target's
    /// id, the term.
    TransferAbandoned = 24,
    /// A node answered one of the operator's membership changes. Words: the
    /// node, the operator's request id.
    MembershipChangeAnswered = 25,
    /// A node adopted a new configuration. Words: the node, the log index of
    /// the configuration entry.
    MembershipChanged = 26,
    /// A node installed a snapshot. Words: the node, the last index and the
    /// last term the snapshot covers.
    SnapshotInstalled = 27,
    /// A leader saw a follower hold fewer entries than it had acknowledged
    /// (a disk that lost synced writes). Words: the node, the follower's id,
    /// the acknowledged index, the index the follower holds.
    FollowerLostEntries = 28,
    /// A node asked its disk for a write no correct node asks for (a hole
    /// in the log, a truncation outside it, a discard past the snapshot); the
    /// seed fails with a durability verdict. Words: the node, the write's
    /// persist id.
    ImpossibleWrite = 29,
    /// A fault struck (random, churn or scenario). No words: what it was is
    /// in the text only; its effects show in the records that follow.
    Fault = 30,
    /// A crashed node restarted (from its disk, or empty to rejoin). Words:
    /// the node, the term and commit index of its stored hard state, its
    /// disk id.
    Restarted = 31,
    /// The fault phase ended: everything heals. No words.
    FaultPhaseEnded = 32,
    /// The operator asked the leader for a membership change. Words: the
    /// leader's node index, the operator's request id.
    OperatorAsked = 33,
    /// The operator asked the leader to transfer leadership. Words: the
    /// leader's node index, the target (a node id from churn, a node index
    /// from a scenario).
    OperatorTransfer = 34,
    /// The world's failure detector woke a quiesced follower whose leader
    /// is down, paused or cut off from it. Words: the follower, the
    /// leader's node index.
    DetectorWoke = 35,
    /// The quiet tail began (quiescence on): the workload is done and a
    /// leader committed after healing. No words.
    QuietTailStarted = 36,
    /// The quiet tail began and the operator stopped a node the leader's
    /// configuration does not list. Word: the node.
    RemovedNodeStopped = 37,
    /// The calm probe began: it waits for the group to settle. No words.
    ProbeStarted = 38,
    /// The calm probe sent a request. Words: its number, the node, its
    /// kind.
    ProbeSent = 39,
    /// The calm probe's request was answered. Words: its number, the node,
    /// how long it took in microseconds.
    ProbeAnswered = 40,
    /// A handler panicked (a broken internal invariant); the seed fails. No
    /// words.
    Panic = 98,
    /// The last record. Word: the number of failures (0 passed).
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
        MessageBody::Quiesce { commit } => (18, commit.0, 0, 0),
        MessageBody::Wake => (19, 0, 0, 0),
    };
    let envelope = message.term.0 ^ (message.disk.0 << 48) ^ message.incarnation.rotate_left(32);
    [kind, message.from.0, message.to.0, envelope, a, b, c]
}

/// One trace word for a request tag.
fn tag_word(tag: &RequestTag) -> u64 {
    tag.seq ^ tag.incarnation.rotate_left(40) ^ tag.disk.0.rotate_left(20)
}

/// One message as trace text: `FROM -> TO KIND TERM DETAIL`, e.g.
/// `n1 -> n2 Append t3 prev=i4/t2 entries=1 commit=i4`.
pub fn describe_message(message: &Message) -> String {
    format!("{} -> {} {}", message.from, message.to, describe_body(message))
}

/// One message without its ends: `KIND TERM DETAIL`, e.g.
/// `Append t3 prev=i4/t2 entries=1 commit=i4`.
pub fn describe_body(message: &Message) -> String {
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
        MessageBody::Quiesce { commit } => format!("commit={commit}"),
        MessageBody::Wake => String::new(),
    };
    format!("{} {} {}", message.body.kind(), message.term, detail)
}

/// A client result as trace text: `ok` and the decoded key-value response,
/// or the error variant.
pub fn describe_result(result: &ClientResult) -> String {
    match result {
        ClientResult::Ok(bytes) => match chorus_core::kv::KvResponse::decode(bytes) {
            Ok(response) => format!("ok {response:?}"),
            Err(_) => "ok <undecodable>".into(),
        },
        other => format!("{other:?}"),
    }
}
