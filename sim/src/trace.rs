//! The run's trace: every step the simulator takes, hashed as it goes and,
//! when asked for (replay), rendered as readable lines.
//!
//! The hash covers a compact binary record of each step, not the text, so
//! `run` (hash only) and `replay` (hash and text) agree byte for byte.

use chorus_core::raft::{AppendResponse, ClientResult, ForwardOutcome, Message, MessageBody, RequestTag};
use std::fmt::Write as _;

/// Bytes buffered before they are fed to the hasher.
const HASH_BUFFER_BYTES: usize = 64 * 1024;

pub struct Trace {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
    text: Option<String>,
    /// Most bytes of text kept; beyond it the text is cut (the hash is not).
    text_limit_bytes: usize,
    text_truncated: bool,
    steps: u64,
}

impl Trace {
    pub fn new(keep_text: bool, text_limit_bytes: usize) -> Trace {
        Trace {
            hasher: blake3::Hasher::new(),
            buffer: Vec::with_capacity(HASH_BUFFER_BYTES),
            text: keep_text.then(String::new),
            text_limit_bytes,
            text_truncated: false,
            steps: 0,
        }
    }

    /// Is readable text being kept? Callers skip formatting when not.
    pub fn wants_text(&self) -> bool {
        self.text.is_some() && !self.text_truncated
    }

    /// Records one step: its binary form always, its text if kept.
    pub fn record(&mut self, time_micros: u64, words: &[u64], text: impl FnOnce() -> String) {
        self.steps += 1;
        self.buffer.extend_from_slice(&time_micros.to_le_bytes());
        self.buffer.push(words.len() as u8);
        for word in words {
            self.buffer.extend_from_slice(&word.to_le_bytes());
        }
        if self.buffer.len() >= HASH_BUFFER_BYTES {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
        if self.wants_text() {
            let line = text();
            let out = self.text.as_mut().expect("wants_text checked");
            let _ = writeln!(out, "[{:>4}.{:06}] {}", time_micros / 1_000_000, time_micros % 1_000_000, line);
            if out.len() > self.text_limit_bytes {
                out.push_str("... trace text cut here (limit reached); the hash covers the whole run\n");
                self.text_truncated = true;
            }
        }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Finishes the hash; returns it with the text, if kept.
    pub fn finish(mut self) -> ([u8; 32], Option<String>) {
        self.hasher.update(&self.buffer);
        (*self.hasher.finalize().as_bytes(), self.text)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
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
